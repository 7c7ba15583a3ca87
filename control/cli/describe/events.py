"""The Events section that ends every describe output, as kubectl's ``DescribeEvents``.

Pure function; no I/O, no shared state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.cli import columns
from control.cli.columns import age
from control.cli.describe._text import (
    _get,
    _i,
    _s,
    _Writer,
)


def _events(w: _Writer, events: list[dict[str, Any]], now: float) -> None:
    """kubectl's ``DescribeEvents``: oldest first, ``Age`` as ``2m (x3 over 5m)``."""
    if not events:
        w.write(0, "Events:\t<none>\n")
        return

    def when(e: Mapping[str, Any]) -> float:
        t = columns.time_seconds(_get(e, "lastTimestamp")) or columns.time_seconds(
            _get(e, "eventTime")
        )
        return t or 0.0

    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")
    for e in sorted(events, key=when):
        first = age(_get(e, "eventTime") or _get(e, "firstTimestamp"), now)
        series = _get(e, "series")
        if isinstance(series, Mapping):
            interval = (
                f"{age(_get(series, 'lastObservedTime'), now)} "
                f"(x{_i(series, 'count')} over {first})"
            )
        elif _i(e, "count") > 1:
            interval = f"{age(_get(e, 'lastTimestamp'), now)} (x{_i(e, 'count')} over {first})"
        else:
            interval = first
        source = _s(e, "source", "component") or _s(e, "reportingComponent")
        w.write(
            1,
            f"{_s(e, 'type')}\t{_s(e, 'reason')}\t{interval}\t{source}\t"
            f"{_s(e, 'message').strip()}\n",
        )


# ------------------------------------------------------------------------------ entry points
