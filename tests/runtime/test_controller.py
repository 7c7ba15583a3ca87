"""Controller: outcome of reconcile -> queue action, with a fake clock; graceful stop."""

from __future__ import annotations

import asyncio

import pytest

from control.runtime.clock import FakeClock
from control.runtime.controller import Controller, Result, TerminalError
from tests.runtime.fakes import settle
from tests.support import eventually
from tests.support.controller_harness import Harness, fail, recording


def terminal() -> Result | None:
    raise TerminalError("invalid spec")


async def test_success_forgets_the_key() -> None:
    reconcile, calls = recording([])
    async with Harness(reconcile) as h:
        h.queue.add_rate_limited("ns/a")  # a previous failure on record
        await h.clock.wait_for_sleepers(1)
        h.clock.advance(1)
        await eventually(lambda: calls == ["ns/a"])
        await settle()
        assert h.queue.num_requeues("ns/a") == 0


async def test_error_retries_with_exponential_backoff() -> None:
    reconcile, calls = recording([fail, fail, fail, lambda: None])
    async with Harness(reconcile) as h:
        h.controller.enqueue("ns/a")
        await eventually(lambda: len(calls) == 1)
        for n, delay in enumerate([1.0, 2.0, 4.0], start=2):
            await h.clock.wait_for_sleepers(1)
            assert h.clock.next_deadline() == pytest.approx(h.clock.monotonic() + delay)
            h.clock.advance(delay - 0.01)
            await settle()
            assert len(calls) == n - 1, "retried too early"
            h.clock.advance(0.01)
            await eventually(lambda: len(calls) == n)  # noqa: B023 - awaited right here
        await settle()
        assert h.queue.num_requeues("ns/a") == 0  # the success forgot the failures
        assert h.clock.sleepers == 0


async def test_requeue_after_adds_the_key_later() -> None:
    reconcile, calls = recording([lambda: Result(requeue_after=30.0), lambda: None])
    async with Harness(reconcile) as h:
        h.controller.enqueue("ns/a")
        await eventually(lambda: len(calls) == 1)
        await h.clock.wait_for_sleepers(1)
        h.clock.advance(29)
        await settle()
        assert len(calls) == 1
        h.clock.advance(1)
        await eventually(lambda: len(calls) == 2)
        assert h.queue.num_requeues("ns/a") == 0


async def test_requeue_true_uses_the_rate_limiter() -> None:
    reconcile, calls = recording([lambda: Result(requeue=True), lambda: None])
    async with Harness(reconcile) as h:
        h.controller.enqueue("ns/a")
        await eventually(lambda: len(calls) == 1)
        await h.clock.wait_for_sleepers(1)
        assert h.queue.num_requeues("ns/a") == 1
        h.clock.advance(1)
        await eventually(lambda: len(calls) == 2)


async def test_terminal_error_is_not_retried() -> None:
    reconcile, calls = recording([terminal])
    async with Harness(reconcile) as h:
        h.controller.enqueue("ns/a")
        await eventually(lambda: len(calls) == 1)
        await settle()
        assert h.clock.sleepers == 0
        assert h.queue.delayed == 0 and len(h.queue) == 0
        h.clock.advance(10_000)
        await settle()
        assert calls == ["ns/a"]
        h.controller.enqueue("ns/a")  # a new event still triggers it
        await eventually(lambda: len(calls) == 2)


async def test_workers_run_different_keys_in_parallel_but_never_one_key_twice() -> None:
    gate = asyncio.Event()
    running: list[str] = []
    peak = 0

    async def reconcile(key: str) -> Result | None:
        nonlocal peak
        assert key not in running
        running.append(key)
        peak = max(peak, len(running))
        await gate.wait()
        running.remove(key)
        return None

    async with Harness(reconcile, workers=3) as h:
        for key in ("a", "b", "c"):
            h.controller.enqueue(key)
        await eventually(lambda: len(running) == 3)
        h.controller.enqueue("a")  # re-added while running: waits for done
        await settle()
        assert running.count("a") == 1
        gate.set()
        await eventually(lambda: not running and len(h.queue) == 0 and not h.queue.processing)
    assert peak == 3


async def test_cancel_waits_for_in_flight_reconciles() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def reconcile(key: str) -> Result | None:
        started.set()
        await release.wait()
        finished.append(key)
        return None

    h = Harness(reconcile, workers=2)
    task = asyncio.create_task(h.controller.run())
    h.controller.enqueue("a")
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    await settle()
    assert not task.done()  # still draining
    h.controller.enqueue("b")  # refused: the queue is shut down
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert finished == ["a"]


async def test_stop_is_bounded_by_shutdown_timeout() -> None:
    cancelled = asyncio.Event()

    async def reconcile(key: str) -> Result | None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    clock = FakeClock()
    c = Controller("slow", reconcile, clock=clock, shutdown_timeout=10)
    task = asyncio.create_task(c.run())
    c.enqueue("a")
    await eventually(lambda: bool(c.queue.processing))
    task.cancel()
    await clock.wait_for_sleepers(1)
    clock.advance(10)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert cancelled.is_set()
