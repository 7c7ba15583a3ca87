"""FakeClock: sleepers wake only when time is moved, in deadline order."""

from __future__ import annotations

import asyncio

import pytest

from control.runtime.clock import FakeClock, RealClock, wait_for
from tests.runtime.fakes import settle


async def test_now_and_monotonic_move_together() -> None:
    clock = FakeClock(start=1000.0)
    assert clock.now() == 1000.0
    assert clock.monotonic() == 0.0
    clock.advance(2.5)
    assert clock.now() == 1002.5
    assert clock.monotonic() == 2.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.step_to(1.0)


async def test_sleepers_wake_in_deadline_order() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [
        asyncio.create_task(sleeper("c", 3)),
        asyncio.create_task(sleeper("a", 1)),
        asyncio.create_task(sleeper("b", 2)),
        asyncio.create_task(sleeper("a2", 1)),
    ]
    await clock.wait_for_sleepers(4)
    clock.advance(0.5)
    await settle()
    assert woke == []
    clock.advance(0.5)
    await settle()
    assert woke == ["a", "a2"]
    clock.advance(10)
    await settle()
    assert woke == ["a", "a2", "b", "c"]
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_step_wakes_earliest_and_skips_cancelled() -> None:
    clock = FakeClock()
    cancelled = asyncio.create_task(clock.sleep(1))
    kept = asyncio.create_task(clock.sleep(5))
    await clock.wait_for_sleepers(2)
    cancelled.cancel()
    await settle()
    assert clock.sleepers == 1
    assert clock.next_deadline() == 5
    assert clock.step()
    assert clock.monotonic() == 5
    await asyncio.wait_for(kept, 5)
    assert not clock.step()


async def test_sleep_zero_does_not_park() -> None:
    clock = FakeClock()
    await asyncio.wait_for(clock.sleep(0), 1)
    assert clock.sleepers == 0


async def test_wait_for_times_out_on_the_fake_clock() -> None:
    clock = FakeClock()
    never = asyncio.Event()
    task = asyncio.create_task(wait_for(clock, never.wait(), 10))
    await clock.wait_for_sleepers(1)
    clock.advance(9)
    await settle()
    assert not task.done()
    clock.advance(1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, 5)


async def test_wait_for_returns_the_result() -> None:
    clock = FakeClock()

    async def answer() -> int:
        return 42

    assert await asyncio.wait_for(wait_for(clock, answer(), 10), 5) == 42
    assert await wait_for(clock, answer(), None) == 42
    assert await wait_for(RealClock(), answer(), 1) == 42
    await settle()
    assert clock.sleepers == 0  # the timer was cancelled


async def test_real_clock() -> None:
    clock = RealClock()
    before = clock.monotonic()
    await clock.sleep(0.001)
    assert clock.monotonic() > before
    assert clock.now() > 1_600_000_000
