"""Supervisor: restart with backoff, logging of failure/cancel/exit, ordered bounded stop."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from control.runtime.backoff import Backoff
from control.runtime.clock import FakeClock
from control.runtime.supervisor import Supervisor
from tests.runtime.fakes import settle
from tests.support import eventually


async def test_restarts_failing_task_with_exponential_backoff() -> None:
    clock = FakeClock()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("boom")

    sup = Supervisor("test", clock=clock)
    with capture_logs() as logs:
        sup.start("flaky", flaky, backoff=Backoff(initial=1, max_delay=4, reset_after=100))
        delays = []
        for _ in range(5):
            await clock.wait_for_sleepers(1)
            deadline = clock.next_deadline()
            assert deadline is not None
            delays.append(deadline - clock.monotonic())
            clock.step()
        await eventually(lambda: runs == 6)
        await asyncio.wait_for(sup.stop(timeout=1), 5)
    assert delays == [1, 2, 4, 4, 4]
    assert sup.restarts("flaky") == 5
    failed = [e for e in logs if e["event"] == "task failed"]
    assert len(failed) == 6 and failed[0]["task"] == "flaky" and failed[0]["log_level"] == "error"


async def test_backoff_resets_after_a_healthy_run() -> None:
    clock = FakeClock()
    runs = 0

    async def fails_later() -> None:
        nonlocal runs
        runs += 1
        await clock.sleep(50)  # a healthy run of 50 s
        raise RuntimeError("boom")

    sup = Supervisor("test", clock=clock)
    sup.start("t", fails_later, backoff=Backoff(initial=1, max_delay=60, reset_after=30))
    delays = []
    for _ in range(3):
        await clock.wait_for_sleepers(1)
        clock.advance(50)  # the run
        await clock.wait_for_sleepers(1)  # now in the restart backoff
        deadline = clock.next_deadline()
        assert deadline is not None
        delays.append(deadline - clock.monotonic())
        clock.step()
    await asyncio.wait_for(sup.stop(timeout=1), 5)
    assert delays == [1, 1, 1]


async def test_unexpected_exit_is_logged_and_restarted() -> None:
    clock = FakeClock()
    runs = 0

    async def returns() -> None:
        nonlocal runs
        runs += 1

    sup = Supervisor("test", clock=clock)
    with capture_logs() as logs:
        sup.start("r", returns, backoff=Backoff(initial=1))
        await clock.wait_for_sleepers(1)
        clock.step()
        await eventually(lambda: runs == 2)
        await asyncio.wait_for(sup.stop(timeout=1), 5)
    events = [e["event"] for e in logs]
    assert "task exited unexpectedly; restarting" in events


async def test_no_restart_records_failure_and_normal_exit() -> None:
    clock = FakeClock()

    async def fails() -> None:
        raise ValueError("bad")

    async def finishes() -> None:
        return None

    sup = Supervisor("test", clock=clock)
    with capture_logs() as logs:
        sup.start("fails", fails, restart=False)
        sup.start("finishes", finishes, restart=False)
        await asyncio.wait_for(sup.join("fails"), 5)
        await asyncio.wait_for(sup.join("finishes"), 5)
    assert isinstance(sup.error("fails"), ValueError)
    assert sup.error("finishes") is None
    assert sup.running() == []
    assert clock.sleepers == 0
    events = {(e["task"], e["event"]) for e in logs}
    assert ("fails", "task failed") in events
    assert ("finishes", "task finished") in events


async def test_stop_cancels_in_reverse_start_order() -> None:
    clock = FakeClock()
    stopped: list[str] = []

    def forever(name: str) -> object:
        async def run() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append(name)

        return run

    with capture_logs() as logs:
        async with Supervisor("test", clock=clock) as sup:
            for name in ("store", "apiserver", "controllers"):
                sup.start(name, forever(name))  # type: ignore[arg-type]
            await settle()
            assert sup.running() == ["store", "apiserver", "controllers"]
    assert stopped == ["controllers", "apiserver", "store"]
    assert sup.running() == []
    assert sum(e["event"] == "task cancelled" for e in logs) == 3
    with pytest.raises(RuntimeError):
        sup.start("late", forever("late"))  # type: ignore[arg-type]


async def test_stop_is_bounded_when_a_task_ignores_cancellation() -> None:
    clock = FakeClock()
    release = asyncio.Event()

    async def stubborn() -> None:
        while True:
            try:
                await release.wait()
                return
            except asyncio.CancelledError:
                continue  # ignores cancellation (a bug we must survive)

    sup = Supervisor("test", clock=clock)
    sup.start("stubborn", stubborn, restart=False)
    await settle()
    with capture_logs() as logs:
        stopping = asyncio.create_task(sup.stop(timeout=5))
        await clock.wait_for_sleepers(1)
        clock.advance(5)
        await asyncio.wait_for(stopping, 5)
    assert any(e["event"] == "task did not stop in time; abandoning it" for e in logs)
    release.set()
    await asyncio.wait_for(sup.join("stubborn"), 5)


async def test_duplicate_name_is_refused_while_running() -> None:
    sup = Supervisor("test", clock=FakeClock())
    sup.start("a", asyncio.Event().wait)
    with pytest.raises(ValueError):
        sup.start("a", asyncio.Event().wait)
    await asyncio.wait_for(sup.stop(timeout=1), 5)


async def test_a_task_that_swallows_cancellation_is_not_restarted_by_stop() -> None:
    clock = FakeClock()
    runs = 0

    async def swallows() -> None:
        nonlocal runs
        runs += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return  # a bug: returns instead of re-raising

    sup = Supervisor("test", clock=clock)
    sup.start("s", swallows)
    await settle()
    await asyncio.wait_for(sup.stop(timeout=1), 5)
    assert sup.running() == []
    assert runs == 1
