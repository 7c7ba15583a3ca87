"""Crash-loop backoff: immediate first restart, 10 s doubling to 300 s, reset after 10 min."""

from __future__ import annotations

import pytest

from agent.kubelet.backoff import CrashLoopBackoff, crash_loop_message, format_delay
from control.runtime.clock import FakeClock

KEY = ("uid", "app")


def test_doubling_and_cap() -> None:
    clock = FakeClock()
    b = CrashLoopBackoff(clock)
    delays = []
    for _ in range(8):
        finished = clock.now()
        wait = b.remaining(KEY, finished)
        delays.append(wait)
        clock.advance(wait)
        assert b.remaining(KEY, finished) == 0
        b.next(KEY, finished)
        clock.advance(1)  # the container runs a second, then crashes again
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


def test_reset_after_ten_minutes_running() -> None:
    clock = FakeClock()
    b = CrashLoopBackoff(clock)
    for _ in range(4):
        b.next(KEY, clock.now())
    assert b.delay(KEY) == 80
    clock.advance(601)  # ran for more than 10 minutes, then crashed
    finished = clock.now()
    assert b.remaining(KEY, finished) == 0
    b.next(KEY, finished)
    assert b.delay(KEY) == 10


def test_keys_are_independent_and_forgotten() -> None:
    clock = FakeClock()
    b = CrashLoopBackoff(clock, initial=1, max_delay=4)
    b.next(KEY, clock.now())
    b.next(("other", "app"), clock.now())
    b.forget_pod("uid")
    assert b.delay(KEY) == 0 and b.delay(("other", "app")) == 1


@pytest.mark.parametrize(("seconds", "text"), [(10, "10s"), (160, "2m40s"), (300, "5m0s")])
def test_format(seconds: float, text: str) -> None:
    assert format_delay(seconds) == text


def test_message() -> None:
    assert crash_loop_message(20, "app", "web", "default", "u") == (
        "back-off 20s restarting failed container=app pod=web_default(u)")
