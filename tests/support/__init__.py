"""Helpers shared by tests across directories (test modules never import each other).

:func:`eventually` is the one way a test waits for a condition it cannot await: state in
another task, process or server that has no event to wait on. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["DEFAULT_TIMEOUT", "eventually"]

T = TypeVar("T")

# Long enough for a busy shared machine; a wait that is met returns at once.
DEFAULT_TIMEOUT = 20.0


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    what: str = "",
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a poll deadline, not a call's
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``check`` (a function or a coroutine function) until it returns something
    truthy, and return that; fail the test with ``AssertionError`` after ``timeout``
    seconds, naming ``what`` and the last value (or the last exception in ``retry_on``,
    which count as "not yet": a server still starting, an object not yet created).

    ``interval`` is the pause between polls: the default suits polling an API server;
    in-memory state changed by other tasks on this loop can be polled every millisecond.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            last = value
            if value:
                return value  # type: ignore[return-value]
        except retry_on as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what or 'the condition'} "
                f"(last: {last!r})"
            )
        await asyncio.sleep(interval)
