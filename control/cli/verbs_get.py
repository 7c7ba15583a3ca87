"""`flotilla get` (with ``-w``) and `flotilla describe`: reading objects.

Owns which objects a read selects (``TYPE [NAME...]``, ``TYPE/NAME``, ``pods,svc``, ``-n``,
``-A``, ``-l``, ``--field-selector``), kubectl's choice between one object and a List for
``-o json|yaml`` (a List whenever no single name was asked for, even for zero or one
match), "No resources found ..." on stderr for an empty table, and the watch loop of ``-w``
(initial list unless ``--watch-only``, then events, each line flushed at once so pipes and
files see it; a "too old" watch relists). Rendering belongs to :mod:`control.cli.printers`
and :mod:`control.cli.describe`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from control.api import errors as api_errors
from control.api import kinds
from control.cli import printers
from control.cli.errors import CliError, UsageError
from control.cli.main import ObjectRef, api_error_text, parse_refs

if TYPE_CHECKING:
    from control.cli.main import Context
    from control.client.client import ApiClient


def add_selection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (namespaced kinds)"
    )
    p.add_argument("-l", "--selector", default="", help="label selector (app=web,tier!=db)")
    p.add_argument("--field-selector", default="", help="field selector (status.phase=Running)")


def register(sub: Any) -> None:
    p = sub.add_parser("get", help="list objects or show some (TYPE [NAME...] | TYPE/NAME...)")
    p.add_argument("resources", nargs="*", metavar="TYPE [NAME...]")
    add_selection_flags(p)
    p.add_argument(
        "-o",
        "--output",
        default="",
        help="wide|json|yaml|name|jsonpath=TEMPLATE|jsonpath-as-json=TEMPLATE",
    )
    p.add_argument("-w", "--watch", action="store_true", help="after listing, watch for changes")
    p.add_argument("--watch-only", action="store_true", help="watch without the initial list")
    p.add_argument("--show-labels", action="store_true")
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--show-kind", action="store_true")
    p.add_argument(
        "--output-watch-events",
        action="store_true",
        help="with -w: show the event type (ADDED, MODIFIED, DELETED)",
    )
    p.set_defaults(handler=run_get)

    p = sub.add_parser("describe", help="show an object in detail, with its events")
    p.add_argument("resources", nargs="+", metavar="TYPE [NAME...]")
    add_selection_flags(p)
    p.set_defaults(handler=run_describe)


def _namespace(ctx: Context, info: kinds.KindInfo, all_namespaces: bool) -> str:
    if not info.namespaced or all_namespaces:
        return ""
    return ctx.namespace


def no_resources_message(ctx: Context, infos: list[kinds.KindInfo], all_namespaces: bool) -> str:
    if all_namespaces or not any(i.namespaced for i in infos):
        return "No resources found"
    return f"No resources found in {ctx.namespace} namespace."


async def _select(
    ctx: Context, client: ApiClient, ref: ObjectRef, args: argparse.Namespace
) -> tuple[list[Any], int]:
    """(objects, failures) for one ref: a named get or a selector list."""
    ns = _namespace(ctx, ref.info, args.all_namespaces)
    if ref.name is None:
        result = await client.list_all(
            ref.info, ns, label_selector=args.selector, field_selector=args.field_selector
        )
        return list(result.items), 0
    try:
        return [await client.get(ref.info, ref.name, ns)], 0
    except api_errors.NotFound as e:
        print(
            f"Error from server (NotFound): {api_error_text(e, ref.info, ref.name)}",
            file=ctx.stderr,
        )
        return [], 1


def _validate_output(output: str) -> None:
    try:
        printers.validate_output(output)
    except printers.OutputError as e:
        raise UsageError(str(e)) from None


async def run_get(ctx: Context, args: argparse.Namespace) -> int:
    if not args.resources:
        raise UsageError(
            'you must specify the type of resource to get. Use "flotilla '
            'api-resources" for a complete list of supported resources'
        )
    refs = parse_refs(args.resources, names_required=False, allow_many_types=True)
    _validate_output(args.output)
    if args.watch or args.watch_only:
        return await _watch(ctx, refs, args)
    if (args.selector or args.field_selector) and any(r.name for r in refs):
        raise UsageError("name cannot be provided when a selector is specified")
    client = await ctx.client()
    groups: list[tuple[kinds.KindInfo, list[Any]]] = []
    failed = 0
    for ref in refs:
        objs, bad = await _select(ctx, client, ref, args)
        failed += bad
        if groups and groups[-1][0] is ref.info:
            groups[-1][1].extend(objs)
        else:
            groups.append((ref.info, objs))
    named = any(r.name for r in refs)
    single = named and len(refs) == 1
    infos = [info for info, _ in groups]
    everything = [o for _, objs in groups for o in objs]
    total = len(everything)
    # One call for every kind: the printer groups tables by kind and makes one List for
    # json/yaml, as kubectl does for `get pods,services -o json`.
    printers.print_objects(
        everything,
        infos[0],
        args.output,
        ctx.stdout,
        list_kind=not single,
        show_namespace=args.all_namespaces and any(i.namespaced for i in infos),
        show_kind=args.show_kind or len(groups) > 1,
        no_headers=args.no_headers,
        show_labels=args.show_labels,
    )
    ctx.stdout.flush()
    if total == 0 and not named and args.output in ("", "wide", "name"):
        print(no_resources_message(ctx, infos, args.all_namespaces), file=ctx.stderr)
    return 1 if failed else 0


async def _watch(ctx: Context, refs: list[ObjectRef], args: argparse.Namespace) -> int:

    infos = {r.info.plural for r in refs}
    if len(infos) != 1 or (len(refs) > 1 and any(r.name is None for r in refs)):
        raise UsageError(
            "watch is only supported on individual resources and resource collections of one type"
        )
    if len(refs) > 1:
        raise UsageError("watch is only supported on one object or one collection at a time")
    ref = refs[0]
    info = ref.info
    field_selector = args.field_selector
    if ref.name is not None:
        by_name = f"metadata.name={ref.name}"
        field_selector = f"{field_selector},{by_name}" if field_selector else by_name
    ns = _namespace(ctx, info, args.all_namespaces)
    client = await ctx.client()
    printer = printers.WatchPrinter(
        info,
        args.output,
        ctx.stdout,
        show_namespace=args.all_namespaces and info.namespaced,
        show_kind=args.show_kind,
        no_headers=args.no_headers,
        show_labels=args.show_labels,
    )
    rv = ""  # "" means list first; else the revision to resume watching from
    initial = True
    while True:
        if not rv:
            listing = await client.list_all(
                info, ns, label_selector=args.selector, field_selector=field_selector
            )
            rv = listing.resource_version
            if initial and not args.watch_only:
                if not listing.items and args.output in ("", "wide"):
                    print(no_resources_message(ctx, [info], args.all_namespaces), file=ctx.stderr)
                printer.print_objects(listing.items)
                ctx.stdout.flush()
            initial = False
        try:
            async for ev in client.watch(
                info,
                ns,
                label_selector=args.selector,
                field_selector=field_selector,
                resource_version=rv,
            ):
                rv = ev.resource_version or rv
                if ev.type == "BOOKMARK" or ev.object is None:
                    continue
                printer.print_event(ev.type, ev.object)
                ctx.stdout.flush()
        except api_errors.Gone:
            rv = ""  # history compacted past our revision: relist, as an informer does
        # Otherwise the server ended the stream (restart, timeout): resume from ``rv``,
        # after a pause so a server that keeps closing streams is not hammered.
        await asyncio.sleep(0.5)


async def run_describe(ctx: Context, args: argparse.Namespace) -> int:
    from control.cli import describe

    refs = parse_refs(args.resources, names_required=False)
    client = await ctx.client()
    failed = 0
    printed = 0
    for ref in refs:
        objs, bad = await _select(ctx, client, ref, args)
        failed += bad
        for obj in objs:
            if printed:
                ctx.stdout.write("\n\n")
            text = await describe.describe(client, ref.info, obj)
            ctx.stdout.write(text if text.endswith("\n") else text + "\n")
            printed += 1
    ctx.stdout.flush()
    if not printed and not failed:
        raise CliError(no_resources_message(ctx, [r.info for r in refs], args.all_namespaces))
    return 1 if failed else 0
