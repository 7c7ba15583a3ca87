"""`flotilla wait`: block until objects reach a condition, watch-based, with a timeout.

Owns the ``--for`` forms (kubectl's): ``condition=C`` / ``condition=C=value`` (a
``status.conditions`` entry, compared without case, default value "True"), ``delete``
(the object is gone, or replaced by one with another uid), ``create`` (it exists), and
``jsonpath={.path}=value`` (or just ``jsonpath={.path}``: the field exists and is not
empty). The wait is a list at one revision followed by a watch from that revision (no
polling); a "too old" watch relists. Past ``--timeout`` (Go duration, default 30s) the verb
says which object it gave up on and exits 1.

Also exports :func:`wait_deleted` for ``delete --wait``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control.api import convert, kinds
from control.api import errors as api_errors
from control.cli.errors import CliError, UsageError
from control.cli.main import api_error_text, parse_refs, parse_timeout, ref_name

if TYPE_CHECKING:
    from control.cli.main import Context
    from control.client.client import ApiClient

Check = Callable[[Any], bool]  # the object (a message) or None when absent -> condition met


class WaitTimeout(CliError):
    pass


def register(sub: Any) -> None:
    p = sub.add_parser("wait", help="wait for a condition on objects (--for=...)")
    p.add_argument("resources", nargs="*", metavar="TYPE/NAME | TYPE NAME...")
    p.add_argument(
        "--for",
        dest="for_",
        required=True,
        metavar="CONDITION",
        help="condition=Ready[=True] | delete | create | jsonpath={.status.phase}=X",
    )
    p.add_argument("--timeout", default="30s", help="give up after this long (default 30s)")
    p.add_argument("-l", "--selector", default="", help="wait for every object matching")
    p.add_argument("--all", action="store_true", help="every object of the type")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.set_defaults(handler=run_wait)


# -- a small JSONPath: what ``--for=jsonpath`` needs ----------------------------------------

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-/]+)
       |\[(?P<index>-?\d+)\]
       |\[['"](?P<quoted>[^'"]+)['"]\]
       |\[\?\(@\.(?P<ffield>[A-Za-z0-9_\-.]+)\s*==\s*['"](?P<fvalue>[^'"]*)['"]\)\]
       |\[\*\]""",
    re.VERBOSE,
)


def jsonpath_values(expr: str, data: Any) -> list[Any]:
    """Values of ``{.a.b[0].c}``-style paths (with ``[*]`` and ``[?(@.k=="v")]``)."""
    body = expr.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    if body.startswith("$"):
        body = body[1:]
    current = [data]
    pos = 0
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if m is None:
            raise UsageError(f"unsupported jsonpath expression {expr!r} at {body[pos:]!r}")
        pos = m.end()
        nxt: list[Any] = []
        for value in current:
            if m.group("field") is not None or m.group("quoted") is not None:
                key = m.group("field") or m.group("quoted")
                if isinstance(value, dict) and key in value:
                    nxt.append(value[key])
            elif m.group("index") is not None:
                i = int(m.group("index"))
                if isinstance(value, list) and -len(value) <= i < len(value):
                    nxt.append(value[i])
            elif m.group("ffield") is not None:
                if isinstance(value, list):
                    for item in value:
                        got = jsonpath_values("." + m.group("ffield"), item)
                        if got and _text(got[0]) == m.group("fvalue"):
                            nxt.append(item)
            elif isinstance(value, list):  # [*]
                nxt.extend(value)
            elif isinstance(value, dict):
                nxt.extend(value.values())
        current = nxt
    return current


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- conditions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    check: Check
    description: str
    absent_ok: bool  # when the object is missing at the start: met (delete) or keep waiting


def parse_for(text: str) -> Condition:
    """The ``--for`` value as a check on the object (None: the object does not exist)."""
    if text == "delete":
        return Condition(lambda obj: obj is None, "delete", True)
    if text == "create":
        return Condition(lambda obj: obj is not None, "create", True)
    if text.startswith("condition="):
        rest = text[len("condition=") :]
        name, sep, value = rest.partition("=")
        if not name:
            raise UsageError(f"invalid --for {text!r}: expected condition=NAME[=VALUE]")
        want = value if sep else "True"

        def has_condition(obj: Any) -> bool:
            if obj is None:
                return False
            status = convert.to_dict(obj).get("status") or {}
            for cond in status.get("conditions") or []:
                if str(cond.get("type", "")).lower() == name.lower():
                    return str(cond.get("status", "")).lower() == want.lower()
            return False

        return Condition(has_condition, f"condition {name}={want}", False)
    if text.startswith("jsonpath="):
        rest = text[len("jsonpath=") :]
        quoted = rest[:1] in ("'", '"')
        if quoted:
            rest = rest[1:].replace(rest[0], "", 1)
        if not rest.startswith("{") or "}" not in rest:
            raise UsageError(f"invalid --for {text!r}: expected jsonpath={{.path}}=VALUE")
        end = rest.index("}") + 1
        expr, tail = rest[:end], rest[end:]
        if tail and not tail.startswith("="):
            raise UsageError(f"invalid --for {text!r}: expected jsonpath={{.path}}=VALUE")
        want_value = tail[1:] if tail else None
        jsonpath_values(expr, {})  # syntax check now, not at the first event

        def matches(obj: Any) -> bool:
            if obj is None:
                return False
            values = jsonpath_values(expr, convert.to_dict(obj))
            if want_value is None:
                return any(v not in (None, "", [], {}) for v in values)
            return any(_text(v) == want_value for v in values)

        label = f"jsonpath {expr}" + (f"={want_value}" if want_value is not None else "")
        return Condition(matches, label, False)
    raise UsageError(
        f"unrecognized condition {text!r}: use condition=NAME[=VALUE], delete, "
        "create or jsonpath={.path}=VALUE"
    )


async def _until(
    client: ApiClient, info: kinds.KindInfo, ns: str, name: str, check: Check, uid: str = ""
) -> Any:
    """Return the object (or None) once ``check`` holds; list + watch, relist on Gone.

    With ``uid``, an object of the same name but another uid counts as absent (it is a new
    object: the one waited for is gone).
    """
    selector = f"metadata.name={name}"

    def current(obj: Any) -> Any:
        if obj is not None and uid and obj.metadata.uid != uid:
            return None
        return obj

    while True:
        listing = await client.list(info, ns, field_selector=selector)
        obj = current(listing.items[0] if listing.items else None)
        if check(obj):
            return obj
        try:
            async for ev in client.watch(
                info, ns, field_selector=selector, resource_version=listing.resource_version
            ):
                if ev.type == "BOOKMARK" or ev.object is None:
                    continue
                if ev.object.metadata.name != name:
                    continue
                obj = None if ev.type == "DELETED" else current(ev.object)
                if check(obj):
                    return obj
        except api_errors.Gone:
            continue
        await asyncio.sleep(0.2)  # the server ended the stream: look again, then re-watch


async def wait_deleted(
    client: ApiClient, info: kinds.KindInfo, ns: str, name: str, uid: str, limit: float | None
) -> None:
    """Until the object (this uid) is gone; WaitTimeout after ``limit`` seconds."""
    try:
        async with asyncio.timeout(limit):
            await _until(client, info, ns, name, lambda obj: obj is None, uid)
    except TimeoutError:
        raise WaitTimeout(f"timed out waiting for the deletion of {info.plural}/{name}") from None


async def run_wait(ctx: Context, args: argparse.Namespace) -> int:
    cond = parse_for(args.for_)
    timeout = parse_timeout(args.timeout, "--timeout")
    refs = parse_refs(args.resources, names_required=False)
    client = await ctx.client()
    targets: list[tuple[kinds.KindInfo, str, str, str]] = []
    for ref in refs:
        ns = "" if not ref.info.namespaced else ("" if args.all_namespaces else ctx.namespace)
        if ref.name is not None:
            targets.append((ref.info, ns, ref.name, ""))
            continue
        if not (args.all or args.selector):
            raise UsageError("resource name may not be empty (give NAME, --all or -l SELECTOR)")
        listing = await client.list_all(ref.info, ns, label_selector=args.selector)
        targets.extend(
            (ref.info, o.metadata.namespace, o.metadata.name, o.metadata.uid) for o in listing.items
        )
    if not targets:
        raise CliError("no matching resources found")
    failed = 0
    for info, ns, name, uid in targets:
        if not cond.absent_ok:
            try:
                obj = await client.get(info, name, ns)
                uid = uid or obj.metadata.uid
            except api_errors.NotFound as e:
                failed += 1
                print(
                    f"Error from server (NotFound): {api_error_text(e, info, name)}",
                    file=ctx.stderr,
                )
                continue
        try:
            async with asyncio.timeout(timeout):
                await _until(
                    client, info, ns, name, cond.check, uid if cond.description == "delete" else ""
                )
        except TimeoutError:
            failed += 1
            ctx.error(
                f"timed out waiting for the condition on {info.plural}/{name} "
                f"({cond.description}, after {args.timeout})"
            )
            continue
        ctx.out(f"{ref_name(info, name)} condition met")
        ctx.stdout.flush()
    return 1 if failed else 0
