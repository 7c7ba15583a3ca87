"""WorkQueue semantics (client-go's): dedupe, one worker per key, re-add while processing,
delays, rate-limited retries, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from control.runtime.clock import FakeClock
from control.runtime.ratelimit import ItemExponentialFailureRateLimiter
from control.runtime.workqueue import ShutDown, WorkQueue
from tests.runtime.fakes import settle
from tests.support import eventually


async def run_script(q: WorkQueue[str], script: list[str]) -> None:
    """Ops: "add k", "get k" (expect k next), "done k", "len n"."""
    for step in script:
        op, arg = step.split()
        if op == "add":
            q.add(arg)
        elif op == "get":
            assert await asyncio.wait_for(q.get(), 1) == arg, step
        elif op == "done":
            q.done(arg)
        elif op == "len":
            assert len(q) == int(arg), step
        else:  # pragma: no cover
            raise AssertionError(step)


@pytest.mark.parametrize(
    ("name", "script"),
    [
        ("fifo", ["add a", "add b", "len 2", "get a", "get b", "len 0"]),
        ("dedupe while waiting", ["add a", "add b", "add a", "len 2", "get a", "get b", "len 0"]),
        (
            "re-add while processing runs again after done",
            ["add a", "get a", "add a", "len 0", "done a", "len 1", "get a", "done a", "len 0"],
        ),
        (
            "several re-adds while processing collapse to one",
            ["add a", "get a", "add a", "add a", "done a", "len 1", "get a", "done a", "len 0"],
        ),
        ("done without re-add does not requeue", ["add a", "get a", "done a", "len 0"]),
        (
            "other keys flow while one is processing",
            ["add a", "add b", "get a", "add a", "get b", "len 0", "done a", "get a"],
        ),
    ],
)
async def test_queue_semantics(name: str, script: list[str]) -> None:
    await run_script(WorkQueue[str](name, clock=FakeClock()), script)


async def test_key_never_processed_by_two_workers() -> None:
    q = WorkQueue[str]("q", clock=FakeClock())
    active: set[str] = set()
    overlaps = 0
    processed = 0

    async def worker() -> None:
        nonlocal overlaps, processed
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in active:
                overlaps += 1
            active.add(key)
            await asyncio.sleep(0)
            if processed < 50:
                q.add(key)  # re-added while processing: must wait for done()
            await asyncio.sleep(0)
            active.discard(key)
            processed += 1
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    q.add("a")
    q.add("b")
    await eventually(lambda: processed >= 50)
    q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 5)
    assert overlaps == 0


async def test_get_blocks_until_add() -> None:
    q = WorkQueue[str]("q", clock=FakeClock())
    getter = asyncio.create_task(q.get())
    await settle()
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_cancelled_getter_passes_wakeup_on() -> None:
    q = WorkQueue[str]("q", clock=FakeClock())
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await settle()
    q.add("x")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it can take the key
    assert await asyncio.wait_for(second, 1) == "x"


async def test_shutdown_wakes_getters_and_ignores_adds() -> None:
    q = WorkQueue[str]("q", clock=FakeClock())
    getter = asyncio.create_task(q.get())
    await settle()
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(getter, 1)
    q.add("a")
    q.add_after("b", 1)
    q.add_rate_limited("c")
    assert len(q) == 0
    assert q.delayed == 0
    with pytest.raises(ShutDown):
        await asyncio.wait_for(q.get(), 1)


async def test_wait_drained_waits_for_processing_keys() -> None:
    q = WorkQueue[str]("q", clock=FakeClock())
    q.add("a")
    key = await asyncio.wait_for(q.get(), 1)
    q.shutdown()
    drained = asyncio.create_task(q.wait_drained())
    await settle()
    assert not drained.done()
    q.done(key)
    await asyncio.wait_for(drained, 1)
    assert len(q) == 0  # done() after shutdown does not requeue


async def test_add_after_waits_for_the_clock() -> None:
    clock = FakeClock()
    q = WorkQueue[str]("q", clock=clock)
    q.add_after("a", 2.0)
    q.add_after("b", 1.0)
    q.add_after("now", 0)
    assert len(q) == 1 and q.delayed == 2
    assert await asyncio.wait_for(q.get(), 1) == "now"
    await clock.wait_for_sleepers(1)
    clock.advance(1.0)
    assert await asyncio.wait_for(q.get(), 1) == "b"
    assert q.delayed == 1
    clock.advance(1.0)
    assert await asyncio.wait_for(q.get(), 1) == "a"
    assert q.delayed == 0


async def test_add_after_keeps_the_sooner_deadline() -> None:
    clock = FakeClock()
    q = WorkQueue[str]("q", clock=clock)
    q.add_after("a", 10.0)
    q.add_after("a", 1.0)  # sooner wins
    q.add_after("a", 5.0)  # later is ignored
    assert q.delayed == 1
    await clock.wait_for_sleepers(1)
    clock.advance(1.0)
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    clock.advance(20.0)
    await settle()
    assert len(q) == 0  # the superseded 10 s entry does not fire again


async def test_add_after_dedupes_with_waiting_key() -> None:
    clock = FakeClock()
    q = WorkQueue[str]("q", clock=clock)
    q.add("a")
    q.add_after("a", 1.0)
    await clock.wait_for_sleepers(1)
    clock.advance(1.0)
    await settle()
    assert len(q) == 1


async def test_add_rate_limited_backs_off_and_forget_resets() -> None:
    clock = FakeClock()
    q = WorkQueue[str](
        "q", clock=clock, rate_limiter=ItemExponentialFailureRateLimiter[str](1.0, 60.0)
    )
    q.add_rate_limited("a")  # 1 s
    assert q.num_requeues("a") == 1
    await clock.wait_for_sleepers(1)
    clock.advance(0.9)
    await settle()
    assert len(q) == 0
    clock.advance(0.1)
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    q.add_rate_limited("a")  # 2 s
    await clock.wait_for_sleepers(1)
    clock.advance(1.9)
    await settle()
    assert len(q) == 0
    clock.advance(0.1)
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_shutdown_cancels_delayed_keys() -> None:
    clock = FakeClock()
    q = WorkQueue[str]("q", clock=clock)
    q.add_after("a", 1.0)
    await clock.wait_for_sleepers(1)
    q.shutdown()
    await settle()
    assert clock.sleepers == 0
    clock.advance(5)
    await settle()
    assert len(q) == 0
