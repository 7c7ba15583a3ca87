"""Time helpers with Kubernetes' conventions: RFC 3339 timestamps, Go durations, kubectl ages.

Owns:
- ``now_timestamp()``: a ``google.protobuf.Timestamp`` at seconds precision (metav1.Time
  serialises seconds only, so storing more would make a read-modify-write look like a change);
  ``time_at(seconds)`` the same for a time read from a Clock, ``micro_time_at(seconds)`` at
  microseconds (metav1.MicroTime: leases, events' eventTime);
- ``parse_rfc3339`` / ``format_rfc3339``: the JSON form of timestamps (``Z``; seconds when the
  nanos are zero, else microseconds like metav1.MicroTime);
- ``parse_duration`` / ``format_duration``: Go's ``time.ParseDuration`` / ``Duration.String``;
- ``human_age``: kubectl's AGE column (``duration.HumanDuration``).

Pure module apart from reading the clock in ``now_timestamp``.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import time

from google.protobuf.timestamp_pb2 import Timestamp

__all__ = [
    "format_duration",
    "format_rfc3339",
    "human_age",
    "micro_time_at",
    "now_timestamp",
    "parse_duration",
    "parse_rfc3339",
    "parse_rfc3339_parts",
    "time_at",
    "timestamp_seconds",
]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
# Timestamp's own limits: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


def now_timestamp() -> Timestamp:
    """The current time at seconds precision, as Kubernetes' metav1.Now() once serialised."""
    return time_at(time.time())


def time_at(seconds: float) -> Timestamp:
    """``seconds`` (wall clock) at metav1.Time's precision: whole seconds."""
    return Timestamp(seconds=int(seconds))


def micro_time_at(seconds: float) -> Timestamp:
    """``seconds`` (wall clock) at metav1.MicroTime's precision: rounded to microseconds."""
    micros = round(seconds * 1_000_000)
    return Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def parse_rfc3339_parts(s: str) -> tuple[int, int]:
    """``(seconds since the epoch, nanos)`` of an RFC 3339 time; ValueError if malformed."""
    m = _RFC3339.fullmatch(s) if isinstance(s, str) else None
    if m is None:
        raise ValueError(f'invalid time {s!r}: expected RFC 3339 like "2006-01-02T15:04:05Z"')
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        # datetime validates the calendar (no February 30th); leap second 60 is refused as Go does.
        _dt.datetime(year, month, day, hour, minute, second)
    except ValueError as e:
        raise ValueError(f"invalid time {s!r}: {e}") from None
    frac = m.group(7) or ""
    nanos = int((frac + "000000000")[:9])  # digits past nanoseconds are truncated, as Go does
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        if int(m.group(10)) > 23 or int(m.group(11)) > 59:
            raise ValueError(f"invalid time {s!r}: time zone offset out of range")
        seconds -= offset if m.group(9) == "+" else -offset
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        raise ValueError(f"invalid time {s!r}: out of range")
    return seconds, nanos


def parse_rfc3339(s: str) -> Timestamp:
    """An RFC 3339 string (``Z`` or an offset, optional fraction) as a Timestamp."""
    seconds, nanos = parse_rfc3339_parts(s)
    return Timestamp(seconds=seconds, nanos=nanos)


def format_rfc3339(ts: Timestamp | _dt.datetime | float) -> str:
    """``2024-01-02T03:04:05Z``; with ``.ffffff`` (microseconds) when there is a fraction."""
    if isinstance(ts, Timestamp):
        seconds, nanos = ts.seconds, ts.nanos
    elif isinstance(ts, _dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=_dt.UTC)
        whole = ts.replace(microsecond=0)
        seconds, nanos = calendar.timegm(whole.utctimetuple()), ts.microsecond * 1000
    else:
        seconds = int(ts // 1)
        nanos = round((ts - seconds) * 1e9)
        if nanos >= 1_000_000_000:
            seconds, nanos = seconds + 1, nanos - 1_000_000_000
    t = time.gmtime(seconds)
    base = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )
    if nanos == 0:
        return base + "Z"
    return f"{base}.{nanos // 1000:06d}Z"


def timestamp_seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]+)")


def parse_duration(s: str) -> float:
    """Go's ``time.ParseDuration``: ``"40s"``, ``"1h30m"``, ``"300ms"``, ``"-1.5h"`` -> seconds."""
    if not isinstance(s, str):
        raise ValueError(f'invalid duration {s!r}: expected a string like "1h30m"')
    orig = s
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'invalid duration "{orig}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or (not m.group(1) and not m.group(2)):
            raise ValueError(f'invalid duration "{orig}"')
        unit = m.group(3)
        if unit not in _UNITS:
            if (unit and unit[0].isalpha()) or unit[:1] in "µμ":
                raise ValueError(f'unknown unit "{unit}" in duration "{orig}"')
            raise ValueError(f'invalid duration "{orig}"')
        number = float(f"{m.group(1) or '0'}.{m.group(2) or '0'}")
        total += number * _UNITS[unit]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's ``Duration.String()``: ``5m0s``, ``1h30m0s``, ``300ms``, ``0s``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        # Below a second Go picks the largest unit that keeps an integer part.
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    h, rem = divmod(ns, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    out = sign
    if h:
        out += f"{h}h"
    if h or m:
        out += f"{m}m"
    return out + _fraction(rem, 1_000_000_000) + "s"


def _fraction(n: int, size: int) -> str:
    whole, frac = divmod(n, size)
    if not frac:
        return str(whole)
    width = len(str(size)) - 1
    return f"{whole}." + f"{frac:0{width}d}".rstrip("0")


def human_age(seconds: float) -> str:
    """kubectl's AGE column (``k8s.io/apimachinery/pkg/util/duration.HumanDuration``)."""
    secs = int(seconds)  # truncation toward zero, as Go's int(d.Seconds())
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        s = secs % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"
