"""`api-resources` and `version`: questions about the API and its versions.

Owns:
- ``api-resources``: the server's discovery as kubectl's table (NAME SHORTNAMES APIVERSION
  NAMESPACED KIND; VERBS with ``-o wide``), ``--namespaced``, ``-o name``;
- ``version``: client and server versions (``--client`` needs no server, no event loop,
  and imports neither grpc nor protobuf; ``-o json|yaml``).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from control.version import VERSION

if TYPE_CHECKING:
    from control.cli.main import Context


def register(sub: Any) -> None:
    p = sub.add_parser("api-resources", help="list the kinds the server serves")
    p.add_argument("--namespaced", choices=("true", "false"), default=None)
    p.add_argument("-o", "--output", choices=("", "wide", "name"), default="")
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--api-group", default=None)
    p.set_defaults(handler=run_api_resources)

    p = sub.add_parser("version", help="client and server versions")
    p.add_argument("--client", action="store_true", help="only the client's version")
    p.add_argument("-o", "--output", choices=("", "json", "yaml"), default="")
    p.set_defaults(handler=run_version)


def table(header: list[str], rows: list[list[str]], no_headers: bool = False) -> str:
    """kubectl's plain alignment: columns left-aligned, three spaces apart."""
    all_rows = rows if no_headers else [header, *rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in all_rows
    ]
    return "\n".join(lines) + "\n"


# -- api-resources ------------------------------------------------------------------------


async def run_api_resources(ctx: Context, args: argparse.Namespace) -> int:
    client = await ctx.client()
    reply = await client.discovery()
    resources = sorted(reply.resources, key=lambda r: (r.group, r.name))
    if args.namespaced is not None:
        resources = [r for r in resources if r.namespaced == (args.namespaced == "true")]
    if args.api_group is not None:
        resources = [r for r in resources if r.group == args.api_group]
    if args.output == "name":
        for r in resources:
            ctx.out(f"{r.name}.{r.group}" if r.group else r.name)
        return 0
    header = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    if args.output == "wide":
        header.append("VERBS")
    rows = []
    for r in resources:
        row = [
            r.name,
            ",".join(r.short_names),
            f"{r.group}/{r.version}" if r.group else r.version,
            "true" if r.namespaced else "false",
            r.kind,
        ]
        if args.output == "wide":
            row.append(",".join(r.verbs))
        rows.append(row)
    ctx.stdout.write(table(header, rows, args.no_headers))
    return 0


# -- version ------------------------------------------------------------------------------


def client_version() -> str:
    return "v" + VERSION


def _print_version(ctx: Context, output: str, info: dict[str, Any]) -> None:
    if output == "json":
        import json  # only for -o json: version --client stays lean

        ctx.out(json.dumps(info, indent=2))
    elif output == "yaml":
        from control.cli import printers

        ctx.stdout.write(printers.dump_yaml(info))
    else:
        ctx.out(f"Client Version: {info['clientVersion']['gitVersion']}")
        if "serverVersion" in info:
            ctx.out(f"Server Version: {info['serverVersion']['gitVersion']}")


def run_version(ctx: Context, args: argparse.Namespace) -> int | Awaitable[int]:
    # A plain function, so that `version --client` runs without an event loop.
    info: dict[str, Any] = {"clientVersion": {"gitVersion": client_version()}}
    if args.client:
        _print_version(ctx, args.output, info)
        return 0
    return _server_version(ctx, args, info)


async def _server_version(ctx: Context, args: argparse.Namespace, info: dict[str, Any]) -> int:
    try:
        client = await ctx.client()
        reply = await client.discovery()
    except Exception:
        # kubectl prints what it knows (the client) before the connection error
        _print_version(ctx, args.output, info)
        ctx.stdout.flush()
        raise
    info["serverVersion"] = {"gitVersion": reply.server_version or "unknown"}
    _print_version(ctx, args.output, info)
    return 0
