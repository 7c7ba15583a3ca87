"""A Controller on a fake clock and reconcilers that record their calls, for tests of the
controller loop and of what it reports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from control.runtime.clock import FakeClock
from control.runtime.controller import Controller, Reconciler, Result
from control.runtime.ratelimit import ItemExponentialFailureRateLimiter
from control.runtime.workqueue import WorkQueue


class Harness:
    def __init__(self, reconcile: Reconciler, workers: int = 1) -> None:
        self.clock = FakeClock()
        self.queue = WorkQueue[str](
            "test",
            clock=self.clock,
            rate_limiter=ItemExponentialFailureRateLimiter[str](1.0, 100.0),
        )
        self.controller = Controller(
            "test", reconcile, workers=workers, queue=self.queue, clock=self.clock
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        self.task = asyncio.create_task(self.controller.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 5)


def recording(
    outcomes: list[Callable[[], Result | None]],
) -> tuple[Reconciler, list[str]]:
    calls: list[str] = []

    async def reconcile(key: str) -> Result | None:
        calls.append(key)
        outcome = outcomes.pop(0) if outcomes else (lambda: None)
        return outcome()

    return reconcile, calls


def fail() -> Result | None:
    raise RuntimeError("transient")
