"""`secrets reencrypt`: rewrite every Secret so it is stored with the current first key.

After a key rotation (a new key put first in the server's ``--encryption-provider-config``,
the old one kept to read) or a change of provider, objects stay stored the old way until
they are written again. This verb writes each Secret back unchanged through the API (a
read-modify-write with ``guaranteed_update``, as ``kubectl get secrets -A -o json | kubectl
replace -f -`` does in Kubernetes); the server stores it with the first provider's first
key. An unchanged object already stored that way is not written (its resourceVersion stays).

Lists in pages (so that a large cluster is not one response), prints one line per Secret
and a summary; a Secret deleted meanwhile is skipped. Exit 1 if any Secret could not be
rewritten. Never prints a Secret's data.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from control.api import errors as api_errors
from control.api.pb import core_pb2
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
    r.add_argument("--quiet", "-q", action="store_true",
                   help="print only the summary, not a line per Secret")
    r.set_defaults(handler=run_reencrypt)


async def run_reencrypt(ctx: Context, args: argparse.Namespace) -> int:
    client = await ctx.client()
    rewritten = current = gone = failed = seen = 0
    token = ""
    while True:
        page = await client.list(core_pb2.Secret, "", limit=PAGE, continue_=token)
        for secret in page.items:
            seen += 1
            meta = secret.metadata
            where = f"secret/{meta.name} -n {meta.namespace}"
            try:
                after = await guaranteed_update(client, core_pb2.Secret, meta.namespace,
                                                meta.name, lambda _: True, current=secret)
            except api_errors.NotFound:
                gone += 1
                continue
            except api_errors.ApiError as e:
                failed += 1
                ctx.error(f"{where}: {e}")
                continue
            if after.metadata.resource_version != meta.resource_version:
                rewritten += 1
                if not args.quiet:
                    ctx.out(f"{where} rewritten")
            else:
                current += 1
                if not args.quiet:
                    ctx.out(f"{where} already stored with the current key")
        token = page.continue_
        if not token:
            break
    ctx.out(f"{seen} Secrets: {rewritten} rewritten, {current} already current"
            + (f", {gone} deleted meanwhile" if gone else "")
            + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0
