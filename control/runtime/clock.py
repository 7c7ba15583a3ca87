"""Time as a seam: the ``Clock`` protocol, the real clock, and a fake clock for tests.

Everything in the controller runtime that waits or measures (backoff, requeue delays,
expectation TTLs, resync periods, shutdown bounds) takes a ``Clock`` so that tests move time
by hand instead of sleeping.

- ``now()`` is wall-clock seconds since the epoch (for timestamps a human reads);
  ``monotonic()`` is for measuring intervals and deadlines (never jumps backwards).
- ``FakeClock.sleep`` parks the caller until a test calls ``advance()`` / ``step_to()`` /
  ``step()``. Sleepers are released in deadline order (ties in the order they went to sleep),
  each one's future resolved before the next, so their tasks are scheduled in that order.

Concurrency contract: single event loop, no threads. ``FakeClock`` methods are synchronous
except the ``wait_for_*`` helpers, which bound their wait by *real* time so that a broken test
fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """The time source every timing-sensitive component takes."""

    def now(self) -> float:
        """Wall-clock time, seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for intervals and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds`` (<= 0 only yields to the loop)."""
        ...


class RealClock:
    """The process's clocks and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when the test says so.

    ``now()`` and ``monotonic()`` move together: ``now() == start_wall + monotonic()``.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall_offset = start
        self._mono = 0.0
        # (deadline, seq, future): seq keeps equal deadlines in arrival order.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._changed: asyncio.Event | None = None

    def now(self) -> float:
        return self._wall_offset + self._mono

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        self._notify()
        # A cancelled sleeper's future is left in the heap and skipped when its turn comes:
        # cheaper than removing it, and it can never be resolved twice.
        await fut

    # -- test controls -------------------------------------------------------------------

    @property
    def sleepers(self) -> int:
        """How many tasks are currently parked in ``sleep``."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """The monotonic time the earliest live sleeper wakes, or None."""
        self._drop_dead()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper whose deadline passed."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.step_to(self._mono + seconds)

    def step_to(self, monotonic: float) -> None:
        """Move time forward to the absolute monotonic instant ``monotonic``."""
        if monotonic < self._mono:
            raise ValueError("time only moves forward")
        while self._sleepers and self._sleepers[0][0] <= monotonic:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
        # Woken tasks run only after this returns, so they all read the final time.
        self._mono = monotonic
        self._notify()

    def step(self) -> bool:
        """Advance to the earliest sleeper's deadline and wake it; False if nobody sleeps."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        self.step_to(deadline)
        return True

    async def wait_for_sleepers(self, n: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait (real time, bounded) until at least ``n`` tasks are parked in ``sleep``."""

        async def _wait() -> None:
            while self.sleepers < n:
                await self._event().wait()
                self._event().clear()

        await asyncio.wait_for(_wait(), timeout)

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _drop_dead(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


async def wait_for(clock: Clock, aw: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109
    """``asyncio.wait_for`` measured on ``clock``: raises ``TimeoutError`` after ``timeout``.

    On timeout the awaitable is cancelled and awaited, like ``asyncio.wait_for``.
    """
    if timeout is None:
        return await aw
    if isinstance(clock, RealClock):
        return await asyncio.wait_for(aw, timeout)
    task = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        timer.cancel()
        raise
    if task.done():
        timer.cancel()
        return task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we were cancelled ourselves while reaping: that wins over the timeout
    raise TimeoutError(f"timed out after {timeout} s")
