"""`label`, `annotate`, `patch`, `scale`, `cordon`, `uncordon`: small edits of live objects.

Owns turning these verbs into API calls: label/annotate (``k=v`` sets, ``k-`` removes,
changing an existing value needs ``--overwrite``) and cordon/uncordon (``spec.unschedulable``)
become JSON merge patches; ``patch`` sends the user's patch as is (``--type merge|strategic``,
kubectl's default strategic); ``scale`` goes through the scale subresource. A write that
changes nothing is reported as such ("not labeled", "patched (no change)").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from control.api import errors as api_errors
from control.api import kinds, names
from control.cli.errors import CliError, UsageError, describe_exception
from control.cli.main import ObjectRef, api_error_text, parse_refs, ref_name, resolve_kind

if TYPE_CHECKING:
    from control.cli.main import Context
    from control.client.client import ApiClient


def register(sub: Any) -> None:
    for verb, what in (("label", "labels"), ("annotate", "annotations")):
        p = sub.add_parser(verb, help=f"set (k=v) or remove (k-) {what} of objects")
        p.add_argument("args", nargs="+", metavar="TYPE NAME KEY=VALUE... KEY-...")
        p.add_argument(
            "--overwrite", action="store_true", help="allow changing a key that already has a value"
        )
        p.add_argument("-l", "--selector", default="")
        p.add_argument("--all", action="store_true")
        p.add_argument(
            "--resource-version",
            default="",
            help="only if the object is still at this resourceVersion",
        )
        p.set_defaults(handler=run_label, field=what, verb=verb)

    p = sub.add_parser("patch", help="patch an object (--type merge|strategic -p JSON)")
    p.add_argument("resources", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    p.add_argument("-p", "--patch", default=None, help="the patch, JSON (or YAML)")
    p.add_argument("--patch-file", default=None, help="read the patch from a file")
    p.add_argument("--type", dest="patch_type", choices=("strategic", "merge"), default="strategic")
    p.add_argument("--subresource", choices=("status",), default=None)
    p.add_argument(
        "--dry-run", choices=("none", "server"), nargs="?", const="server", default="none"
    )
    p.set_defaults(handler=run_patch)

    p = sub.add_parser("scale", help="set the replicas of a deployment, replicaset, ...")
    p.add_argument("resources", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    p.add_argument("--replicas", type=int, required=True)
    p.add_argument(
        "--current-replicas",
        type=int,
        default=-1,
        help="only scale if the current replicas are this many",
    )
    p.set_defaults(handler=run_scale)

    for verb in ("cordon", "uncordon"):
        p = sub.add_parser(
            verb, help=f"mark nodes as {'un' if verb == 'cordon' else ''}schedulable"
        )
        p.add_argument("nodes", nargs="*", metavar="NODE")
        p.add_argument("-l", "--selector", default="")
        p.set_defaults(handler=run_cordon, unschedulable=verb == "cordon", verb=verb)


# -- label / annotate ---------------------------------------------------------------------


def parse_changes(items: list[str], field: str) -> dict[str, str | None]:
    """``k=v`` -> set, ``k-`` -> remove (None); keys and label values checked here."""
    changes: dict[str, str | None] = {}
    for item in items:
        if "=" in item:
            key, _, value = item.partition("=")
        elif item.endswith("-"):
            key, value = item[:-1], None
        else:
            raise UsageError(f"invalid {field[:-1]} spec {item!r}: expected KEY=VALUE or KEY-")
        problems = names.is_qualified_name(key)
        if value is not None and field == "labels":
            problems += names.is_valid_label_value(value)
        if problems:
            raise UsageError(f"invalid {field[:-1]} {item!r}: {'; '.join(problems)}")
        if key in changes:
            raise UsageError(f"{field[:-1]} {key!r} is given more than once")
        changes[key] = value
    return changes


def _split_label_args(args: list[str]) -> tuple[list[str], list[str]]:
    # Objects first, then changes: a change has "=" or ends with "-" (names cannot).
    for i, arg in enumerate(args):
        if "=" in arg or arg.endswith("-"):
            return args[:i], args[i:]
    return args, []


async def _targets(
    ctx: Context, client: ApiClient, refs: list[ObjectRef], selector: str, every: bool
) -> list[tuple[kinds.KindInfo, str, str]]:
    out: list[tuple[kinds.KindInfo, str, str]] = []
    for ref in refs:
        ns = ctx.namespace if ref.info.namespaced else ""
        if ref.name is not None:
            out.append((ref.info, ns, ref.name))
            continue
        if not (selector or every):
            raise UsageError(
                "resource(s) were provided, but no name was specified "
                "(give NAME, --all or -l SELECTOR)"
            )
        listing = await client.list_all(ref.info, ns, label_selector=selector)
        out.extend((ref.info, o.metadata.namespace, o.metadata.name) for o in listing.items)
    return out


async def run_label(ctx: Context, args: argparse.Namespace) -> int:
    field: str = args.field
    objects, change_args = _split_label_args(args.args)
    if not change_args:
        raise UsageError(f"at least one {field[:-1]} update is required (KEY=VALUE or KEY-)")
    changes = parse_changes(change_args, field)
    refs = parse_refs(objects, names_required=False)
    client = await ctx.client()
    done = "labeled" if field == "labels" else "annotated"
    failed = 0
    for info, ns, name in await _targets(ctx, client, refs, args.selector, args.all):
        try:
            live = await client.get(info, name, ns)
            current = getattr(live.metadata, field)
            if not args.overwrite:
                for key, value in changes.items():
                    if value is not None and key in current and current[key] != value:
                        raise CliError(
                            f"'{key}' already has a value ({current[key]}), and "
                            "--overwrite is false"
                        )
            patch_body: dict[str, Any] = {field: dict(changes)}
            if args.resource_version:
                patch_body["resourceVersion"] = args.resource_version
            wanted = {k: v for k, v in changes.items() if current.get(k) != v}
            if not wanted and not args.resource_version:
                ctx.out(f"{ref_name(info, name)} not {done}")
                continue
            await client.patch(info, name, {"metadata": patch_body}, ns, patch_type="merge")
        except api_errors.NotFound as e:
            failed += 1
            print(f"Error from server (NotFound): {api_error_text(e, info, name)}", file=ctx.stderr)
            continue
        except api_errors.ServiceUnavailable:
            raise
        except (api_errors.ApiError, CliError) as e:
            failed += 1
            ctx.error(f"{ref_name(info, name)}: {describe_exception(e)}")
            continue
        ctx.out(f"{ref_name(info, name)} {done}")
    ctx.stdout.flush()
    return 1 if failed else 0


# -- patch --------------------------------------------------------------------------------


def _read_patch(args: argparse.Namespace) -> dict[str, Any]:
    if (args.patch is None) == (args.patch_file is None):
        raise UsageError("give the patch with exactly one of -p PATCH or --patch-file FILE")
    if args.patch_file is not None:
        try:
            text = Path(args.patch_file).read_text(encoding="utf-8")
        except OSError as e:
            raise CliError(f"cannot read --patch-file: {e}") from None
    else:
        text = args.patch
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)  # kubectl accepts YAML patches too
        except yaml.YAMLError as e:
            raise CliError(f"the patch is neither JSON nor YAML: {e}") from None
    if not isinstance(doc, dict):
        raise CliError('the patch must be a JSON object, e.g. \'{"spec":{"replicas":2}}\'')
    return doc


async def run_patch(ctx: Context, args: argparse.Namespace) -> int:
    patch = _read_patch(args)
    refs = parse_refs(args.resources)
    client = await ctx.client()
    failed = 0
    for ref in refs:
        assert ref.name is not None
        ns = ctx.namespace if ref.info.namespaced else ""
        try:
            before = await client.get(ref.info, ref.name, ns)
            after = await client.patch(
                ref.info,
                ref.name,
                patch,
                ns,
                patch_type=args.patch_type,
                status=args.subresource == "status",
                dry_run=args.dry_run == "server",
            )
        except api_errors.NotFound as e:
            failed += 1
            print(
                f"Error from server (NotFound): {api_error_text(e, ref.info, ref.name)}",
                file=ctx.stderr,
            )
            continue
        except api_errors.ServiceUnavailable:
            raise
        except api_errors.ApiError as e:
            failed += 1
            ctx.error(f"{ref_name(ref.info, ref.name)}: {describe_exception(e)}")
            continue
        same = after.metadata.resource_version == before.metadata.resource_version
        suffix = (
            " (server dry run)" if args.dry_run == "server" else (" (no change)" if same else "")
        )
        ctx.out(f"{ref_name(ref.info, ref.name)} patched{suffix}")
    ctx.stdout.flush()
    return 1 if failed else 0


# -- scale --------------------------------------------------------------------------------


async def run_scale(ctx: Context, args: argparse.Namespace) -> int:
    if args.replicas < 0:
        raise UsageError("--replicas must not be negative")
    refs = parse_refs(args.resources)
    client = await ctx.client()
    failed = 0
    for ref in refs:
        assert ref.name is not None
        ns = ctx.namespace if ref.info.namespaced else ""
        try:
            rv = ""
            if args.current_replicas >= 0:
                scale = await client.get_scale(ref.info, ref.name, ns)
                if scale.spec_replicas != args.current_replicas:
                    raise CliError(
                        f"expected replicas to be {args.current_replicas}, was "
                        f"{scale.spec_replicas}"
                    )
                rv = scale.resource_version
            await client.update_scale(ref.info, ref.name, args.replicas, ns, resource_version=rv)
        except api_errors.NotFound as e:
            failed += 1
            print(
                f"Error from server (NotFound): {api_error_text(e, ref.info, ref.name)}",
                file=ctx.stderr,
            )
            continue
        except api_errors.ServiceUnavailable:
            raise
        except (api_errors.ApiError, CliError) as e:
            failed += 1
            ctx.error(f"{ref_name(ref.info, ref.name)}: {describe_exception(e)}")
            continue
        ctx.out(f"{ref_name(ref.info, ref.name)} scaled")
    ctx.stdout.flush()
    return 1 if failed else 0


# -- cordon / uncordon -----------------------------------------------------------------


async def run_cordon(ctx: Context, args: argparse.Namespace) -> int:
    nodes_info = resolve_kind("nodes")
    names_: list[str] = []
    for n in args.nodes:
        kind, sep, name = n.rpartition("/")
        if sep and resolve_kind(kind) is not nodes_info:
            raise UsageError(f"{args.verb} works on nodes only, not {kind!r}")
        names_.append(name)
    if not names_ and not args.selector:
        raise UsageError(f"usage: flotilla {args.verb} NODE... | -l SELECTOR")
    client = await ctx.client()
    if args.selector:
        listing = await client.list_all(nodes_info, label_selector=args.selector)
        names_.extend(o.metadata.name for o in listing.items)
    want: bool = args.unschedulable
    done = "cordoned" if want else "uncordoned"
    failed = 0
    for name in names_:
        try:
            node = await client.get(nodes_info, name)
            if bool(node.spec.unschedulable) == want:
                ctx.out(f"node/{name} already {done}")
                continue
            # null removes the field: an uncordoned node has no unschedulable field at all
            await client.patch(
                nodes_info,
                name,
                {"spec": {"unschedulable": True if want else None}},
                patch_type="merge",
            )
        except api_errors.NotFound as e:
            failed += 1
            print(
                f"Error from server (NotFound): {api_error_text(e, nodes_info, name)}",
                file=ctx.stderr,
            )
            continue
        except api_errors.ServiceUnavailable:
            raise
        except api_errors.ApiError as e:
            failed += 1
            ctx.error(f"node/{name}: {describe_exception(e)}")
            continue
        ctx.out(f"node/{name} {done}")
    ctx.stdout.flush()
    return 1 if failed else 0
