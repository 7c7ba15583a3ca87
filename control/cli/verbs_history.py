"""`history TYPE NAME`: every revision of one object still in the store's log.

A table (REVISION TYPE GENERATION AGE CHANGES), ``--diff`` (unified YAML diffs between
consecutive revisions), or ``-o json|yaml`` (a List of the object at each revision).
"""

from __future__ import annotations

import argparse
import difflib
import json
import time
from typing import TYPE_CHECKING, Any

from control.api import convert, timeutil
from control.api import errors as api_errors
from control.cli import printers
from control.cli.errors import UsageError, describe_exception
from control.cli.main import api_error_text, parse_refs
from control.cli.verbs_misc import table

if TYPE_CHECKING:
    from control.cli.main import Context


def register(sub: Any) -> None:
    p = sub.add_parser("history", help="every stored revision of one object")
    p.add_argument("resources", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    p.add_argument(
        "--diff", action="store_true", help="unified diffs (YAML) between consecutive revisions"
    )
    p.add_argument("-o", "--output", choices=("", "json", "yaml"), default="")
    p.set_defaults(handler=run_history)


def _newest_time(data: dict[str, Any]) -> float | None:
    """The latest timestamp recorded in an object: the best guess at when a revision was
    written, since the store's log keeps no write time."""
    found: list[float] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and (key.endswith("Timestamp") or key.endswith("Time")):
            try:
                found.append(float(timeutil.parse_rfc3339_parts(value)[0]))
            except ValueError:
                pass

    walk(data, "")
    return max(found) if found else None


def changed_paths(before: Any, after: Any, prefix: str = "", depth: int = 2) -> list[str]:
    """Top-level-ish field paths that differ (``spec.replicas``, ``metadata.labels``)."""
    if before == after:
        return []
    if depth == 0 or not isinstance(before, dict) or not isinstance(after, dict):
        return [prefix or "."]
    out: list[str] = []
    for key in list(before) + [k for k in after if k not in before]:
        if key == "resourceVersion" and prefix == "metadata":
            continue
        path = f"{prefix}.{key}" if prefix else key
        out.extend(changed_paths(before.get(key), after.get(key), path, depth - 1))
    return out


def _yaml(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    clean = json.loads(json.dumps(data))
    clean.get("metadata", {}).pop("resourceVersion", None)  # differs on every revision
    return printers.dump_yaml(clean)


async def run_history(ctx: Context, args: argparse.Namespace) -> int:
    refs = parse_refs(args.resources)
    if len(refs) != 1:
        raise UsageError("history takes exactly one object (TYPE NAME or TYPE/NAME)")
    ref = refs[0]
    assert ref.name is not None
    ns = ctx.namespace if ref.info.namespaced else ""
    client = await ctx.client()
    try:
        # Any: ApiClient's own ``list`` method shadows the builtin in its annotations
        entries: Any = await client.history(ref.info, ref.name, ns)
    except api_errors.NotFound as e:
        print(
            f"Error from server (NotFound): {api_error_text(e, ref.info, ref.name)} "
            "(no revision of it is left in the store's log)",
            file=ctx.stderr,
        )
        return 1
    except api_errors.ServiceUnavailable:
        raise
    except api_errors.ApiError as e:
        ctx.error(describe_exception(e))
        return 1
    docs = [(etype, rev, convert.to_dict(obj)) for etype, rev, obj in entries]
    if args.output in ("json", "yaml"):
        doc = {
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": ""},
            "items": [d for _, _, d in docs],
        }
        if args.output == "json":
            ctx.stdout.write(printers.dump_json(doc))
        else:
            ctx.stdout.write(printers.dump_yaml(doc))
        return 0
    if args.diff:
        previous: dict[str, Any] | None = None
        prev_label = "(nothing)"
        for etype, rev, data in docs:
            label = f"revision {rev} ({etype})"
            after = None if etype == "DELETED" else data
            for line in difflib.unified_diff(
                _yaml(previous).splitlines(keepends=True),
                _yaml(after).splitlines(keepends=True),
                fromfile=prev_label,
                tofile=label,
            ):
                ctx.stdout.write(line if line.endswith("\n") else line + "\n")
            previous, prev_label = after, label
        return 0
    now = time.time()
    rows = []
    previous = None
    for etype, rev, data in docs:
        when = _newest_time(data)
        age = timeutil.human_age(now - when) if when is not None else "<unknown>"
        if etype == "ADDED" or previous is None:
            changes = "created"
        elif etype == "DELETED":
            changes = "deleted"
        else:
            changes = ",".join(changed_paths(previous, data)) or "-"
        generation = str(data.get("metadata", {}).get("generation", ""))
        rows.append([str(rev), etype, generation or "-", age, changes])
        previous = data
    ctx.stdout.write(table(["REVISION", "TYPE", "GENERATION", "AGE", "CHANGES"], rows))
    return 0
