"""The owner of long-lived tasks: named, logged, restarted with backoff, stopped in order.

``Supervisor.start(name, coro_factory, restart=..., backoff=...)`` runs ``coro_factory()`` in
a task named ``name``. Whatever way the coroutine ends is logged (structlog, with the task's
name bound): a failure with its traceback, a cancellation, or a return. With
``restart=True`` a failure or an unexpected return is followed by a restart after an
exponential backoff (``backoff.Backoff``: capped, and started over once a run has stayed up
for ``reset_after``).
With ``restart=False`` a return is the task's normal end.

``await stop(timeout)`` cancels the tasks in reverse start order (what started last, usually
depending on what started first, stops first), waiting for each before cancelling the next,
all within one overall bound measured on the clock. A task that ignores cancellation past
the bound is logged and left behind rather than hanging shutdown. ``async with Supervisor()``
stops on exit.

Concurrency contract: one event loop; ``start`` is synchronous and may be called from any
task (including a supervised one) until ``stop`` begins; ``stop`` is idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import structlog

from control.runtime.backoff import Backoff, BackoffState
from control.runtime.clock import Clock, RealClock, wait_for

log = structlog.get_logger(__name__)


@dataclass
class _Child:
    name: str
    task: asyncio.Task[None]
    restarts: int = 0
    error: BaseException | None = None


class Supervisor:
    """Owns named tasks; see the module docstring."""

    def __init__(self, name: str = "supervisor", *, clock: Clock | None = None) -> None:
        self.name = name
        self._clock = clock or RealClock()
        self._children: dict[str, _Child] = {}
        self._stopping = False
        self._log = log.bind(component="supervisor", supervisor=name)

    def start(
        self,
        name: str,
        coro_factory: Callable[[], Awaitable[Any]],
        *,
        restart: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        """Run ``coro_factory()`` as the supervised task ``name`` (unique among running ones)."""
        if self._stopping:
            raise RuntimeError(f"supervisor {self.name!r} is stopping; cannot start {name!r}")
        existing = self._children.get(name)
        if existing is not None and not existing.task.done():
            raise ValueError(f"task {name!r} is already running")
        task = asyncio.get_running_loop().create_task(
            self._run(name, coro_factory, restart, backoff or Backoff()), name=name
        )
        # Re-inserting keeps dict order = start order, which stop() walks backwards.
        self._children.pop(name, None)
        self._children[name] = _Child(name, task)

    def running(self) -> list[str]:
        """Names of tasks that have not finished, in start order."""
        return [c.name for c in self._children.values() if not c.task.done()]

    def restarts(self, name: str) -> int:
        """How many times task ``name`` was restarted."""
        return self._children[name].restarts

    def error(self, name: str) -> BaseException | None:
        """The exception that ended a ``restart=False`` task, if it failed."""
        return self._children[name].error

    async def join(self, name: str) -> None:
        """Wait for task ``name`` to finish for good (only ends if it does not restart)."""
        await asyncio.shield(self._children[name].task)

    # The bound is measured on the injected Clock, which asyncio.timeout cannot do.
    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Cancel every task, last started first, waiting at most ``timeout`` in total."""
        self._stopping = True
        deadline = self._clock.monotonic() + timeout
        for child in reversed(list(self._children.values())):
            if child.task.done():
                continue
            child.task.cancel()
            remaining = max(0.0, deadline - self._clock.monotonic())
            try:
                await wait_for(self._clock, asyncio.shield(child.task), remaining)
            except TimeoutError:
                self._log.error("task did not stop in time; abandoning it", task=child.name)
            except asyncio.CancelledError:
                if child.task.done():
                    continue  # the child's own cancellation, not ours
                raise

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(
        self,
        name: str,
        coro_factory: Callable[[], Awaitable[Any]],
        restart: bool,
        backoff: Backoff,
    ) -> None:
        tlog = self._log.bind(task=name)
        delays = BackoffState(backoff, self._clock)
        while True:
            try:
                await coro_factory()
            except asyncio.CancelledError:
                tlog.info("task cancelled")
                raise
            except Exception as exc:
                tlog.exception("task failed", restart=restart)
                if not restart or self._stopping:
                    # Recorded rather than re-raised: it is logged, and an exception left in
                    # a task nobody awaits would only resurface as a warning at exit.
                    self._record_error(name, exc)
                    return
            else:
                # During stop() a return is how a task that swallowed its cancellation ends;
                # restarting it would defeat the stop.
                if not restart or self._stopping:
                    tlog.info("task finished")
                    return
                tlog.warning("task exited unexpectedly; restarting")
            delay = delays.next_delay()
            tlog.info("restarting task", delay=round(delay, 3))
            await self._clock.sleep(delay)
            child = self._children.get(name)
            if child is not None:
                child.restarts += 1

    def _record_error(self, name: str, exc: BaseException) -> None:
        child = self._children.get(name)
        if child is not None:
            child.error = exc
