"""The cron parser shared by CronJob validation and the CronJob controller: parse errors
with robfig/cron's messages, and next activation times (time zones, day-of-month vs
day-of-week, descriptors, @every)."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest

from control.api import cron

UTC = dt.UTC


def at(text: str, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    ("* * * * *", "2026-01-01T00:00:00", "2026-01-01T00:01:00"),
    ("* * * * *", "2026-01-01T00:00:30", "2026-01-01T00:01:00"),
    ("*/15 * * * *", "2026-01-01T00:16:00", "2026-01-01T00:30:00"),
    ("5/20 * * * *", "2026-01-01T00:26:00", "2026-01-01T00:45:00"),
    ("0 9-17/4 * * *", "2026-01-01T09:00:00", "2026-01-01T13:00:00"),
    ("0 0 1 1 *", "2026-03-01T00:00:00", "2027-01-01T00:00:00"),
    ("@yearly", "2026-03-01T00:00:00", "2027-01-01T00:00:00"),
    ("@monthly", "2026-01-31T12:00:00", "2026-02-01T00:00:00"),
    ("@weekly", "2026-01-01T00:00:00", "2026-01-04T00:00:00"),  # 1 Jan 2026 is a Thursday
    ("@daily", "2026-01-01T00:00:00", "2026-01-02T00:00:00"),
    ("@hourly", "2026-01-01T00:59:59", "2026-01-01T01:00:00"),
    ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
    # both day fields restricted: either matches (the 13th, or a Friday)
    ("0 0 13 * 5", "2026-01-01T00:00:00", "2026-01-02T00:00:00"),
    # day of week "*": only the day of month counts
    ("0 0 13 * *", "2026-01-01T00:00:00", "2026-01-13T00:00:00"),
    # day of month "*": only the day of week counts
    ("0 0 * * fri", "2026-01-03T00:00:00", "2026-01-09T00:00:00"),
    ("30 2 * jan-mar mon", "2026-03-31T00:00:00", "2027-01-04T02:30:00"),
    ("@every 90s", "2026-01-01T00:00:00.5", "2026-01-01T00:01:30"),
])
def test_next(schedule: str, after: str, expected: str) -> None:
    assert cron.parse(schedule).next(at(after)) == at(expected)


def test_next_in_a_time_zone() -> None:
    ny = zoneinfo.ZoneInfo("America/New_York")
    sched = cron.parse("0 9 * * *")
    got = sched.next(at("2026-01-01T12:00:00").astimezone(ny))  # 07:00 in New York
    assert got is not None and got.astimezone(UTC) == at("2026-01-01T14:00:00")
    # after the spring-forward change (2 am, 8 March) 09:00 is an hour earlier in UTC
    got = sched.next(at("2026-03-08T12:00:00").astimezone(ny))
    assert got is not None and got.astimezone(UTC) == at("2026-03-08T13:00:00")


def test_never_fires() -> None:
    assert cron.parse("0 0 30 2 *").next(at("2026-01-01T00:00:00")) is None


@pytest.mark.parametrize(("schedule", "message"), [
    ("", "empty spec string"),
    ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
    ("61 * * * *", "minute: end of range (61) above maximum (59): 61"),
    ("* 5-2 * * *", "hour: beginning of range (5) beyond end of range (2): 5-2"),
    ("* * 0 * *", "day of month: beginning of range (0) below minimum (1): 0"),
    ("* * * foo *", "month: failed to parse int from foo"),
    ("*/0 * * * *", "minute: step of range should be a positive number: */0"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("@every x", "failed to parse duration @every x"),
])
def test_errors(schedule: str, message: str) -> None:
    assert cron.errors(schedule) == [message]
    with pytest.raises(cron.CronError, match=re.escape(message)):
        cron.parse(schedule)


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        cron.parse("* * * * *").next(dt.datetime(2026, 1, 1))


def test_zone_prefix_of_stored_schedules() -> None:
    sched = cron.parse("CRON_TZ=Asia/Tokyo 0 9 * * *")
    assert sched.zone == "Asia/Tokyo" and sched.hours == frozenset({9})
    assert cron.parse("TZ=UTC @hourly").zone == "UTC"
    assert cron.errors("CRON_TZ=Mars/Olympus 0 9 * * *") == [
        "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"]
