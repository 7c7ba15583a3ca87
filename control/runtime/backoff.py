"""Exponential backoff with jitter and a reset after a healthy period.

Shared by the ``Supervisor`` (restart delays) and the ``Reflector`` (watch reconnects), so
both back off the same way: ``initial * factor**n`` capped at ``max_delay``, stretched by a
random ``[0, jitter)`` fraction so that many clients that failed together do not retry in
lock-step, and started over at ``initial`` once ``reset_after`` seconds have passed since the
previous backoff *ended* (measuring from its end means a long sleep never counts as health).

Concurrency contract: plain synchronous state, owned by one task; time from the ``Clock``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from control.runtime.clock import Clock


@dataclass(frozen=True)
class Backoff:
    """A backoff policy (immutable; ``BackoffState`` carries the progress)."""

    initial: float = 1.0
    max_delay: float = 60.0
    factor: float = 2.0
    jitter: float = 0.0
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.max_delay < self.initial or self.factor < 1:
            raise ValueError("need 0 < initial <= max_delay and factor >= 1")
        if self.jitter < 0:
            raise ValueError("jitter must be >= 0")


class BackoffState:
    """The progress through one ``Backoff`` policy for one failing thing."""

    def __init__(self, policy: Backoff, clock: Clock, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self._current: float | None = None
        self._ended_at = 0.0

    def next_delay(self) -> float:
        """The delay to wait now; each call is one more failure."""
        now = self._clock.monotonic()
        p = self.policy
        if self._current is None or now - self._ended_at >= p.reset_after:
            self._current = p.initial
        else:
            self._current = min(self._current * p.factor, p.max_delay)
        delay = self._current * (1.0 + p.jitter * self._rng.random())
        self._ended_at = now + delay
        return delay

    def reset(self) -> None:
        self._current = None
