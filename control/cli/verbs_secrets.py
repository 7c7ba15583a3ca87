"""`secrets reencrypt`: rewrite every Secret so it is stored with the current first key.

After a key rotation (a new key put first in the server's ``--encryption-provider-config``,
the old one kept to read) or a change of provider, objects stay stored the old way until
they are written again. This verb writes each Secret back unchanged through the API (a
read-modify-write with ``guaranteed_update``, as ``kubectl get secrets -A -o json | kubectl
replace -f -`` does in Kubernetes); the server stores it with the first provider's first
key. An unchanged object already stored that way is not written (its resourceVersion stays).

``--resource configmaps`` (repeatable) does the same for other resources the
configuration encrypts. Lists in pages (so that a large cluster is not one response),
prints one line per object and a summary; an object deleted meanwhile is skipped. Exit 1
if any object could not be rewritten. Never prints an object's data.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from control.api import errors as api_errors
from control.api import kinds
from control.cli.errors import UsageError
from control.client.retry import guaranteed_update

if TYPE_CHECKING:
    from control.cli.main import Context

PAGE = 500


def register(sub: Any) -> None:
    p = sub.add_parser("secrets", help="Secrets at rest (reencrypt)")
    ssub = p.add_subparsers(dest="secrets_verb", metavar="VERB")
    ssub.required = True
    r = ssub.add_parser("reencrypt", help="rewrite every Secret with the server's current "
                                          "first encryption key (after a key rotation)")
    r.add_argument("--resource", action="append", default=[], metavar="RESOURCE",
                   help="rewrite this resource instead of secrets (repeatable, e.g. "
                        "configmaps)")
    r.add_argument("--quiet", "-q", action="store_true",
                   help="print only the summary, not a line per object")
    r.set_defaults(handler=run_reencrypt)


async def run_reencrypt(ctx: Context, args: argparse.Namespace) -> int:
    infos = []
    for name in args.resource or ["secrets"]:
        try:
            infos.append(kinds.resolve(name))
        except KeyError:
            raise UsageError(f"--resource {name!r}: no such resource") from None
    failed = 0
    for info in infos:
        failed += await _reencrypt(ctx, info, args.quiet)
    return 1 if failed else 0


async def _reencrypt(ctx: Context, info: kinds.KindInfo, quiet: bool) -> int:
    """Rewrite every object of ``info``; the number that failed."""
    client = await ctx.client()
    cls = info.message
    singular = info.singular if not info.group else f"{info.singular}.{info.group}"
    rewritten = current = gone = failed = seen = 0
    token = ""
    while True:
        page = await client.list(info, "", limit=PAGE, continue_=token)
        for obj in page.items:
            seen += 1
            meta = obj.metadata
            where = f"{singular}/{meta.name}" + (f" -n {meta.namespace}" if meta.namespace
                                                  else "")
            try:
                after = await guaranteed_update(client, cls, meta.namespace, meta.name,
                                                lambda _: True, current=obj)
            except api_errors.NotFound:
                gone += 1
                continue
            except api_errors.ApiError as e:
                failed += 1
                ctx.error(f"{where}: {e}")
                continue
            if after.metadata.resource_version != meta.resource_version:  # type: ignore[attr-defined]
                rewritten += 1
                if not quiet:
                    ctx.out(f"{where} rewritten")
            else:
                current += 1
                if not quiet:
                    ctx.out(f"{where} already stored with the current key")
        token = page.continue_
        if not token:
            break
    ctx.out(f"{seen} {info.kind} objects: {rewritten} rewritten, {current} already current"
            + (f", {gone} deleted meanwhile" if gone else "")
            + (f", {failed} failed" if failed else ""))
    return failed
