"""Cron schedules as Kubernetes' CronJob reads them (robfig/cron's standard parser).

- Five fields: minute, hour, day of month, month (1-12 or jan-dec), day of week (0-6 or
  sun-sat); each a comma list of ``*``/``?``, ``N``, ``N-M``, optionally ``/STEP`` (``N/STEP``
  means ``N-max/STEP``). When day of month and day of week are both restricted, a day
  matching either one matches (classic cron); when one is ``*`` both must match.
- Descriptors: ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``,
  ``@hourly``, and ``@every DURATION`` (Go duration syntax, a fixed interval).
- A leading ``CRON_TZ=Zone`` or ``TZ=Zone`` (robfig's own, older than the timeZone field;
  new schedules may not use it, stored ones keep working) is the schedule's zone:
  ``Schedule.zone``.
- ``parse`` raises ``CronError`` with robfig's messages; ``errors`` returns them as a list
  (what validation reports). ``Schedule.next(t)`` is the first activation strictly after
  the aware datetime ``t``, in ``t``'s time zone (wall-clock fields, as cron does).

Concurrency contract: pure; a ``Schedule`` is immutable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass

from control.api.timeutil import parse_duration

DESCRIPTORS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, min, max, names)
_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_DURATION_RE = re.compile(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+")
# Searching further than this for a match means the schedule never fires (e.g. Feb 30).
_SEARCH_YEARS = 5


class CronError(ValueError):
    """A schedule that does not parse; the message says why."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the allowed values per field, or a fixed ``every`` interval."""

    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    day_star: bool = False
    weekday_star: bool = False
    every: float | None = None
    zone: str | None = None  # a CRON_TZ=/TZ= prefix's zone name

    def _day_matches(self, t: dt.datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow

    def next(self, t: dt.datetime) -> dt.datetime | None:
        """The first activation strictly after ``t`` (aware), None if there is none."""
        if t.tzinfo is None:
            raise ValueError("Schedule.next needs an aware datetime")
        if self.every is not None:
            # robfig: a whole number of seconds (at least one) after t, on a whole second
            step = max(1, int(self.every))
            base = t.replace(microsecond=0)
            return base + dt.timedelta(seconds=step)
        tz = t.tzinfo
        wall = t.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
        wall += dt.timedelta(minutes=1)
        limit = wall.year + _SEARCH_YEARS
        while wall.year <= limit:
            if wall.month not in self.months:
                year, month = (wall.year + 1, 1) if wall.month == 12 else (wall.year,
                                                                          wall.month + 1)
                wall = dt.datetime(year, month, 1)
                continue
            if not self._day_matches(wall):
                wall = dt.datetime(wall.year, wall.month, wall.day) + dt.timedelta(days=1)
                continue
            if wall.hour not in self.hours:
                wall = dt.datetime(wall.year, wall.month, wall.day, wall.hour) + dt.timedelta(
                    hours=1)
                continue
            if wall.minute not in self.minutes:
                wall += dt.timedelta(minutes=1)
                continue
            found = wall.replace(tzinfo=tz)
            if found <= t:  # a wall time repeated when the clocks went back
                wall += dt.timedelta(minutes=1)
                continue
            return found
        return None


def parse(schedule: str) -> Schedule:
    """Parse a schedule; ``CronError`` says what is wrong."""
    spec = schedule.strip()
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("CRON_TZ=", "TZ=")):
        head, _, spec = spec.partition(" ")
        zone = head.partition("=")[2]
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise CronError(f"provided bad location {zone}: unknown time zone {zone}") from None
        spec = spec.strip()
        return dataclasses.replace(parse(spec), zone=zone)
    if spec.startswith("@"):
        if spec in DESCRIPTORS:
            spec = DESCRIPTORS[spec]
        elif spec.startswith("@every "):
            text = spec.removeprefix("@every ").strip()
            if not _DURATION_RE.fullmatch(text):
                raise CronError(f"failed to parse duration {spec}")
            return Schedule(every=parse_duration(text))
        else:
            raise CronError(f"unrecognized descriptor: {spec}")
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    sets: list[frozenset[int]] = []
    stars: list[bool] = []
    for text, (fname, lo, hi, aliases) in zip(fields, _FIELDS, strict=True):
        values: set[int] = set()
        star = False
        for part in text.split(","):
            try:
                got, part_star = _range(part, lo, hi, aliases)
            except CronError as e:
                raise CronError(f"{fname}: {e}") from None
            values |= got
            star = star or part_star
        sets.append(frozenset(values))
        stars.append(star)
    return Schedule(minutes=sets[0], hours=sets[1], days=sets[2], months=sets[3],
                    weekdays=sets[4], day_star=stars[2], weekday_star=stars[4])


def errors(schedule: str) -> list[str]:
    """Why ``schedule`` is not a valid cron expression (empty list when it is)."""
    try:
        parse(schedule)
    except CronError as e:
        return [str(e)]
    return []


def _value(text: str, aliases: Mapping[str, int]) -> int | None:
    if text.lower() in aliases:
        return aliases[text.lower()]
    return int(text) if text.isdigit() else None


def _range(part: str, lo: int, hi: int, aliases: Mapping[str, int]) -> tuple[set[int], bool]:
    """The values of one comma part, and whether it was a plain ``*``."""
    rng, slash, step_text = part.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit():
            raise CronError(f"failed to parse int from {step_text}")
        step = int(step_text)
        if step == 0:
            raise CronError(f"step of range should be a positive number: {part}")
    if rng in ("*", "?"):
        return set(range(lo, hi + 1, step)), step == 1
    start_text, dash, end_text = rng.partition("-")
    start = _value(start_text, aliases)
    if start is None:
        raise CronError(f"failed to parse int from {start_text or part}")
    end = start
    if dash:
        parsed_end = _value(end_text, aliases)
        if parsed_end is None:
            raise CronError(f"failed to parse int from {end_text or part}")
        end = parsed_end
    elif slash:
        end = hi  # "N/STEP" is "N-max/STEP"
    if start < lo:
        raise CronError(f"beginning of range ({start}) below minimum ({lo}): {part}")
    if end > hi:
        raise CronError(f"end of range ({end}) above maximum ({hi}): {part}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
    return set(range(start, end + 1, step)), False
