"""Text building blocks shared by the describers: field access, kubectl's PrefixWriter,
time and label formatting, and the label/annotation/taint/toleration sections.

Pure functions over the Kubernetes JSON dict of an object; no I/O, no shared state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from control.api import convert
from control.cli import columns
from control.cli.printers import tabwrite

_MAX_ANNOTATION = 140
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------------- helpers


def _get(obj: Any, *path: str | int) -> Any:
    cur = obj
    for p in path:
        if isinstance(p, int):
            if not isinstance(cur, list) or not -len(cur) <= p < len(cur):
                return None
            cur = cur[p]
        elif isinstance(cur, Mapping):
            cur = cur.get(p)
        else:
            return None
        if cur is None:
            return None
    return cur


def _s(obj: Any, *path: str | int) -> str:
    v = _get(obj, *path)
    return "" if v is None else _go(v)


def _i(obj: Any, *path: str | int) -> int:
    v = _get(obj, *path)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _list(obj: Any, *path: str | int) -> list[Any]:
    v = _get(obj, *path)
    return v if isinstance(v, list) else []


def _map(obj: Any, *path: str | int) -> Mapping[str, Any]:
    v = _get(obj, *path)
    return v if isinstance(v, Mapping) else {}


def _go(v: Any) -> str:
    """A scalar as Go's ``%v`` prints it (``true``/``false`` for booleans)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _title_bool(v: Any) -> str:
    """kubectl's ``printBool``: ``True``/``False``."""
    return "True" if v else "False"


def format_time(ts: Any) -> str:
    """An RFC 3339 string as Go's ``time.RFC1123Z`` in local time; ``<unset>`` if absent."""
    if not isinstance(ts, str) or not ts:
        return "<unset>"
    secs = columns.time_seconds(ts)
    if secs is None:
        return ts
    t = time.localtime(int(secs))
    off = t.tm_gmtoff or 0
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{off // 3600:02d}{off % 3600 // 60:02d}"
    )


_WORD = re.compile(r"[A-Z]+s?(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_ACRONYMS = {"API", "URL", "UID", "OSB", "GUID"}


def smart_label(field: str) -> str:
    """kubectl's ``smartLabelFor``: ``creationTimestamp`` -> ``Creation Timestamp``."""
    if any(not (c.isalpha() or c == "-") for c in field):
        return field
    if "-" in field:
        return "-".join(smart_label(piece) for piece in field.split("-"))
    words = []
    for part in _WORD.findall(field):
        words.append(part.upper() if part.upper() in _ACRONYMS else part[:1].upper() + part[1:])
    return " ".join(words) or field


class _Writer:
    """kubectl's PrefixWriter: each level indents two spaces; text keeps its tabs."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, level: int, text: str) -> None:
        self._parts.append("  " * level + text)

    def text(self) -> str:
        return tabwrite("".join(self._parts))


def _labels(w: _Writer, title: str, labels: Mapping[str, Any] | None) -> None:
    """``printLabelsMultiline``: first label on the title line, the others below it."""
    if not labels:
        w.write(0, f"{title}:\t<none>\n")
        return
    for n, k in enumerate(sorted(labels)):
        w.write(0, f"{title}:\t" if n == 0 else "\t")
        w.write(0, f"{k}={labels[k]}\n")


def _annotations(w: _Writer, title: str, annotations: Mapping[str, Any] | None) -> None:
    # kubectl hides the (large, redundant) last-applied-configuration.
    shown = {
        k: v
        for k, v in (annotations or {}).items()
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    if not shown:
        w.write(0, f"{title}:\t<none>\n")
        return
    for n, k in enumerate(sorted(shown)):
        w.write(0, f"{title}:\t" if n == 0 else "\t")
        value = str(shown[k]).removesuffix("\n")
        if len(value) + len(k) + 2 > _MAX_ANNOTATION or "\n" in value:
            w.write(0, f"{k}:\n")
            for line in value.split("\n"):
                if len(line) > _MAX_ANNOTATION - 2:
                    line = line[: _MAX_ANNOTATION - 5] + "..."
                w.write(0, f"\t  {line}\n")
        else:
            w.write(0, f"{k}: {value}\n")


def _tolerations(w: _Writer, title: str, tolerations: list[Any]) -> None:
    if not tolerations:
        w.write(0, f"{title}:\t<none>\n")
        return
    for n, t in enumerate(tolerations):
        w.write(0, f"{title}:\t" if n == 0 else "\t")
        text = _s(t, "key")
        if _s(t, "value"):
            text += f"={_s(t, 'value')}"
        if _s(t, "effect"):
            text += f":{_s(t, 'effect')}"
        if _s(t, "operator") == "Exists" and not _s(t, "value"):
            text += " op=Exists" if (_s(t, "key") or _s(t, "effect")) else "op=Exists"
        if _get(t, "tolerationSeconds") is not None:
            text += f" for {_i(t, 'tolerationSeconds')}s"
        w.write(0, text + "\n")


def _taints(w: _Writer, title: str, taints: list[Any]) -> None:
    if not taints:
        w.write(0, f"{title}:\t<none>\n")
        return
    for n, t in enumerate(taints):
        w.write(0, f"{title}:\t" if n == 0 else "\t")
        value = f"={_s(t, 'value')}" if _s(t, "value") else ""
        w.write(0, f"{_s(t, 'key')}{value}:{_s(t, 'effect')}\n")


def _controller(meta: Mapping[str, Any]) -> str:
    for ref in _list(meta, "ownerReferences"):
        if _get(ref, "controller") is True:
            return f"{_s(ref, 'kind')}/{_s(ref, 'name')}"
    return ""


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Message):
        d: dict[str, Any] = convert.to_dict(obj)
        return d
    return dict(obj)
