"""Rate limiters for work-queue retries (client-go's util/workqueue rate limiters).

A rate limiter answers "how long should this item wait before it is retried?":

- ``ItemExponentialFailureRateLimiter``: per item, ``base * 2**failures`` capped at ``max_delay``
  (client-go default: 5 ms doubling to 1000 s). ``forget(item)`` resets the item.
- ``BucketRateLimiter``: one token bucket shared by every item (default 10 qps, burst 100),
  so a storm of failures cannot turn into a storm of requests. Each ``when()`` reserves a
  token, possibly in the future, and returns how long until it is available.
- ``MaxOfRateLimiter``: the largest delay among several limiters.
- ``default_controller_rate_limiter(clock)``: the max-of the two above, as in client-go.

Concurrency contract: synchronous, no awaits, single event loop; every call is atomic with
respect to other tasks.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from control.runtime.clock import Clock, RealClock

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[K_contra]):
    def when(self, item: K_contra) -> float:
        """Seconds the item should wait before being processed again (and count a retry)."""
        ...

    def forget(self, item: K_contra) -> None:
        """The item succeeded (or gave up): stop tracking its failures."""
        ...

    def num_requeues(self, item: K_contra) -> int:
        """How many times ``when`` was asked for this item since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter(Generic[K]):
    """``base * 2**n`` for the item's n-th failure, capped at ``max_delay``."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0) -> None:
        if base <= 0 or max_delay < base:
            raise ValueError("need 0 < base <= max_delay")
        self.base = base
        self.max_delay = max_delay
        self._failures: dict[K, int] = {}

    def when(self, item: K) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        # Cap the exponent first: 2.0**exp overflows to an OverflowError past ~1024.
        if exp >= 1024:
            return self.max_delay
        return min(self.base * 2.0**exp, self.max_delay)

    def forget(self, item: K) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: K) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter(Generic[K]):
    """A token bucket over all items: ``qps`` tokens per second, at most ``burst`` saved.

    Like Go's ``rate.Limiter.Reserve().Delay()``: a call always takes a token, going into
    debt when the bucket is empty, and the delay is how long until that debt is paid.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("need qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock or RealClock()
        self._tokens = float(burst)
        self._last = self._clock.monotonic()

    def when(self, item: K) -> float:
        now = self._clock.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: K) -> None:
        # The bucket is shared: one item succeeding gives nothing back.
        pass

    def num_requeues(self, item: K) -> int:
        return 0


class MaxOfRateLimiter(Generic[K]):
    """Asks every limiter (so each one counts the retry) and returns the longest delay."""

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        if not limiters:
            raise ValueError("need at least one rate limiter")
        self.limiters = limiters

    def when(self, item: K) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: K) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: K) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> MaxOfRateLimiter[Hashable]:
    """client-go's DefaultControllerRateLimiter: per-item 5 ms..1000 s, overall 10 qps/100."""
    return MaxOfRateLimiter[Hashable](
        ItemExponentialFailureRateLimiter[Hashable](0.005, 1000.0),
        BucketRateLimiter[Hashable](10.0, 100, clock),
    )
