"""`flotilla delete`: removing objects by name, by manifest, by selector or all of a kind.

Owns the mapping of kubectl's delete flags onto the API's DeleteRequest:
``--cascade=background|foreground|orphan`` (old ``true``/``false`` too) is the propagation
policy; ``--grace-period N`` the grace period, where 0 means "immediately" only together
with ``--force`` (kubectl turns a bare 0 into 1, so a pod still gets its stop signal);
``--force`` without a grace period means 0. ``--wait`` then watches until each object is
really gone (finalizers, graceful pod termination) within ``--timeout``.
Each object succeeds or fails on its own; any failure makes the exit code 1.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from control.api import errors as api_errors
from control.api import kinds
from control.cli import manifest
from control.cli.errors import UsageError, describe_exception
from control.cli.main import api_error_text, parse_refs, parse_timeout, quoted_name
from control.cli.verbs_apply import add_file_flags

if TYPE_CHECKING:
    from control.cli.main import Context

_CASCADE = {
    "background": "Background",
    "foreground": "Foreground",
    "orphan": "Orphan",
    "true": "Background",
    "false": "Orphan",
}


def _cascade(value: str) -> str:
    try:
        return _CASCADE[value.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"invalid --cascade {value!r}: must be background, foreground or orphan"
        ) from None


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r}")


def register(sub: Any) -> None:
    p = sub.add_parser("delete", help="delete objects (TYPE NAME... | TYPE/NAME | -f FILE)")
    p.add_argument("resources", nargs="*", metavar="TYPE [NAME...]")
    add_file_flags(p, required=False)
    p.add_argument(
        "--cascade",
        type=_cascade,
        default="Background",
        help="background|foreground|orphan (default background)",
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=-1,
        help="seconds the object gets to stop (-1: the kind's default)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --grace-period 0: remove at once without waiting for the node",
    )
    p.add_argument(
        "--wait",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="wait until the objects are gone",
    )
    p.add_argument("--timeout", default="60s", help="how long --wait waits (default 60s)")
    p.add_argument("--all", action="store_true", help="every object of the type in the namespace")
    p.add_argument("-l", "--selector", default="", help="delete the objects matching a selector")
    p.add_argument("--field-selector", default="")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument(
        "--dry-run", choices=("none", "client", "server"), nargs="?", const="client", default="none"
    )
    p.set_defaults(handler=run_delete)


async def run_delete(ctx: Context, args: argparse.Namespace) -> int:
    selecting = args.all or args.selector or args.field_selector
    targets: list[tuple[kinds.KindInfo, str, str]] = []  # (kind, namespace, name)
    if args.filename:
        if args.resources:
            raise UsageError("give either -f FILE or TYPE NAME, not both")
        for m in manifest.load(
            args.filename,
            ctx.namespace,
            ctx.explicit_namespace,
            recursive=args.recursive,
            stdin=ctx.stdin,
        ):
            targets.append((m.info, m.namespace, m.name))
        refs = []
    else:
        if not args.resources:
            raise UsageError(
                "you must provide one or more resources by argument or filename "
                "(TYPE NAME, TYPE/NAME or -f FILE)"
            )
        refs = parse_refs(args.resources, names_required=False, allow_many_types=True)
        named = [r for r in refs if r.name is not None]
        if named and selecting:
            raise UsageError("names cannot be given together with --all or a selector")
        if not named and not selecting:
            raise UsageError(
                "resource(s) were provided, but no name was specified "
                "(give NAME, --all or -l SELECTOR)"
            )
    grace: int | None = args.grace_period if args.grace_period >= 0 else None
    if args.force:
        if grace is None:
            grace = 0
        if grace == 0:
            ctx.warn(
                "Immediate deletion does not wait for confirmation that the running "
                "resource has been terminated. The resource may continue to run on the "
                "cluster indefinitely."
            )
    elif grace == 0:
        grace = 1  # kubectl: 0 without --force still lets the object stop gracefully
    timeout = parse_timeout(args.timeout, "--timeout")
    client = await ctx.client()
    for ref in refs:
        ns = "" if not ref.info.namespaced else ("" if args.all_namespaces else ctx.namespace)
        if ref.name is not None:
            targets.append((ref.info, ns, ref.name))
            continue
        listing = await client.list_all(
            ref.info, ns, label_selector=args.selector, field_selector=args.field_selector
        )
        targets.extend((ref.info, o.metadata.namespace, o.metadata.name) for o in listing.items)
    if not targets and selecting:
        ctx.stderr.write("No resources found\n")
        return 0
    failed = 0
    gone: list[tuple[kinds.KindInfo, str, str, str]] = []
    suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(args.dry_run, "")
    verb = "force deleted" if args.force and grace == 0 else "deleted"
    for info, ns, name in targets:
        try:
            if args.dry_run == "client":
                await client.get(info, name, ns)
                obj, pending = None, False
            else:
                obj, pending = await client.delete(
                    info,
                    name,
                    ns,
                    grace_period_seconds=grace,
                    propagation_policy=args.cascade,
                    dry_run=args.dry_run == "server",
                )
        except api_errors.NotFound as e:
            if not args.ignore_not_found:
                failed += 1
                print(
                    f"Error from server (NotFound): {api_error_text(e, info, name)}",
                    file=ctx.stderr,
                )
            continue
        except api_errors.ServiceUnavailable:
            raise
        except api_errors.ApiError as e:
            failed += 1
            ctx.error(f"{quoted_name(info, name)}: {describe_exception(e)}")
            continue
        ctx.out(f"{quoted_name(info, name)} {verb}{suffix}")
        ctx.stdout.flush()
        if pending and obj is not None and args.wait and args.dry_run == "none":
            gone.append((info, ns, name, obj.metadata.uid))
    if gone:
        from control.cli.verbs_wait import WaitTimeout, wait_deleted

        for info, ns, name, uid in gone:
            try:
                await wait_deleted(client, info, ns, name, uid, timeout)
            except WaitTimeout as e:
                failed += 1
                ctx.error(str(e))
    return 1 if failed else 0
