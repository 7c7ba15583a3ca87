"""`flotilla create token SA [--audience A]... [--duration D] [--bound-object-kind Pod
--bound-object-name P [--bound-object-uid U]]`: kubectl's ``create token``.

Asks the ``serviceaccounts/token`` subresource for a token of ServiceAccount SA in the
namespace in effect and prints it (or, with ``-o yaml|json``, the TokenRequest answered).
``--duration`` 0 (the default) leaves the lifetime to the server (an hour); anything else
is whole seconds of at least 10 minutes, as the server checks. Only Pods can be bound.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from control.api import convert, timeutil
from control.cli.errors import UsageError

if TYPE_CHECKING:
    from control.cli.main import Context


def duration_seconds(text: str) -> int:
    """``--duration``: a Go duration ("10m", "1h30m"), 0 for the server's default; whole
    seconds (kubectl refuses fractions too)."""
    try:
        value = timeutil.parse_duration(text)
    except ValueError as e:
        raise UsageError(f"--duration {text!r}: {e}") from None
    if value < 0:
        raise UsageError(f"--duration must be greater than or equal to 0, got {text}")
    if value != int(value):
        raise UsageError(f"--duration must be a whole number of seconds, got {text}")
    return int(value)


def token_request(args: argparse.Namespace) -> object:
    from control.api.pb import authentication_pb2

    tr = authentication_pb2.TokenRequest(api_version="authentication.k8s.io/v1",
                                         kind="TokenRequest")
    tr.spec.audiences.extend(a for a in args.audience if a)
    if any(not a for a in args.audience):
        raise UsageError("--audience may not be empty")
    seconds = duration_seconds(args.duration)
    if seconds:
        tr.spec.expiration_seconds = seconds
    kind, name, uid = args.bound_object_kind, args.bound_object_name, args.bound_object_uid
    if kind:
        if kind != "Pod":
            raise UsageError(f"--bound-object-kind {kind!r}: only Pod is supported")
        if not name:
            raise UsageError("--bound-object-name is required if --bound-object-kind is "
                             "provided")
        ref = tr.spec.bound_object_ref
        ref.kind, ref.api_version, ref.name, ref.uid = kind, "v1", name, uid
    elif name or uid:
        raise UsageError("--bound-object-name and --bound-object-uid can only be set if "
                         "--bound-object-kind is provided")
    return tr


async def run(ctx: Context, args: argparse.Namespace) -> int:
    if len(args.what) != 2:
        raise UsageError("usage: flotilla create token SERVICE_ACCOUNT [-n NS] "
                         "[--audience AUD]... [--duration D]")
    if args.output not in ("", "yaml", "json"):
        raise UsageError(f"create token: -o {args.output}: yaml or json (or nothing: the "
                         "token alone)")
    request = token_request(args)
    client = await ctx.client()
    answer = await client.create_token(ctx.namespace, args.what[1], request,
                                       dry_run=args.dry_run == "server")
    if args.output:
        from control.cli import printers

        doc = convert.to_dict(answer)
        text = printers.dump_yaml(doc) if args.output == "yaml" else printers.dump_json(doc)
        ctx.out(text.rstrip("\n"))
    else:
        ctx.out(answer.status.token)
    return 0
