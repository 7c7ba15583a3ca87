"""The work queue between event handlers and reconcile workers (client-go's util/workqueue).

Semantics, all from client-go:

- **Dedupe.** A key that is waiting is queued once however often it is added ("dirty" set).
- **No concurrent processing of one key.** ``get()`` marks the key "processing"; adding it
  again meanwhile only marks it dirty, and ``done(key)`` puts it back in the queue. So a key
  re-added while being processed is processed once more afterwards, never twice at once.
- **Delays.** ``add_after(key, delay)`` adds the key once the delay has passed; adding the same
  key with a sooner deadline moves it earlier, a later one is ignored.
- **Retries.** ``add_rate_limited(key)`` is ``add_after(key, rate_limiter.when(key))``;
  ``forget(key)`` resets the key's failure count once it succeeded (or was given up on).
- **Shutdown.** After ``shutdown()`` adds are ignored and ``get()`` raises ``ShutDown`` (also in
  waiting getters). Keys still waiting are dropped: reconcile is level-triggered, so a
  restarted controller finds them again by listing. ``wait_drained()`` waits for keys being
  processed to be ``done()``.

Metrics: an instrumented queue (``instrument(WorkQueueMetrics)``) exports client-go's
``workqueue_*`` series under its name: depth, adds, retries, queue duration (add to get),
work duration (get to done), unfinished work and longest running processor (read at scrape
time). An uninstrumented queue pays one ``is None`` test per operation.

Concurrency contract: one event loop, any number of tasks calling ``get()``. Everything but
``get()``/``wait_drained()`` is synchronous and atomic. Delayed keys are moved into the queue
by one timer task owned by the queue (created lazily, cancelled by ``shutdown()``); its
failure is logged, never silently lost.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from prometheus_client import Counter, Histogram

from control.runtime.clock import Clock, RealClock
from control.runtime.metrics import WORKQUEUE_BUCKETS, Registry
from control.runtime.ratelimit import RateLimiter, default_controller_rate_limiter

K = TypeVar("K", bound=Hashable)

log = structlog.get_logger(__name__)


class ShutDown(Exception):
    """Raised by ``get()`` once the queue is shut down."""


class WorkQueueMetrics:
    """client-go's workqueue metrics for every queue instrumented with one registry."""

    def __init__(self, registry: Registry) -> None:
        self._queues: dict[str, WorkQueue[Any]] = {}
        self.adds = registry.counters("workqueue_adds_total",
                                      "Total number of adds handled by workqueue", ("name",))
        self.retries = registry.counters("workqueue_retries_total",
                                         "Total number of retries handled by workqueue",
                                         ("name",))
        self.queue_duration = registry.histograms(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            ("name",), WORKQUEUE_BUCKETS)
        self.work_duration = registry.histograms(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            ("name",), WORKQUEUE_BUCKETS)
        registry.gauge_callback("workqueue_depth", "Current depth of workqueue", ("name",),
                                lambda: {(n,): float(len(q)) for n, q in self._queues.items()})
        registry.gauge_callback(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been "
            "observed by work_duration.", ("name",),
            lambda: {(n,): q.in_progress()[0] for n, q in self._queues.items()})
        registry.gauge_callback(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            ("name",), lambda: {(n,): q.in_progress()[1] for n, q in self._queues.items()})

    def register(self, queue: WorkQueue[Any]) -> None:
        self._queues[queue.name] = queue


@dataclass(slots=True)
class _Instruments:
    adds: Counter
    retries: Counter
    queue_duration: Histogram
    work_duration: Histogram


class WorkQueue(Generic[K]):
    """A deduplicating, rate-limited, delaying work queue of hashable keys."""

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter[K] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self._clock = clock or RealClock()
        self._limiter: RateLimiter[K] = (
            rate_limiter
            if rate_limiter is not None
            else default_controller_rate_limiter(self._clock)
        )
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained: asyncio.Event | None = None
        # Delayed keys: a heap of (ready_at, seq, key) with lazy deletion; _waiting holds
        # each key's current deadline so a superseded heap entry is recognised and skipped.
        self._delayed: list[tuple[float, int, K]] = []
        self._waiting: dict[K, float] = {}
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_deadline = float("inf")
        self._m: _Instruments | None = None
        self._added_at: dict[K, float] = {}  # waiting keys: when they were queued
        self._started_at: dict[K, float] = {}  # processing keys: when they were handed out

    def instrument(self, metrics: WorkQueueMetrics) -> None:
        """Export this queue's ``workqueue_*`` series (labelled with its name)."""
        n = self.name
        self._m = _Instruments(metrics.adds.labels(n), metrics.retries.labels(n),
                               metrics.queue_duration.labels(n), metrics.work_duration.labels(n))
        metrics.register(self)

    def in_progress(self) -> tuple[float, float]:
        """(total, longest) seconds the keys being processed have been running."""
        if not self._started_at:
            return 0.0, 0.0
        now = self._clock.monotonic()
        ages = [now - t for t in self._started_at.values()]
        return sum(ages), max(ages)

    # -- the basic queue -----------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue ``key`` unless it is already waiting; if it is being processed, queue it
        again when it is ``done()``."""
        if self._shutting_down or key in self._dirty:
            return
        if self._m is not None:
            self._m.adds.inc()
            self._added_at.setdefault(key, self._clock.monotonic())
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake_one()

    async def get(self) -> K:
        """The next key to process; the caller must call ``done(key)`` afterwards.

        Raises ``ShutDown`` once the queue is shut down.
        """
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # If we were woken and cancelled at once, pass the wake-up on, or the key
                # would sit in the queue with other getters still asleep.
                if fut.done() and not fut.cancelled():
                    self._wake_one()
                raise
            finally:
                if fut in self._getters:
                    self._getters.remove(fut)
        if self._shutting_down:
            raise ShutDown(self.name)
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        if self._m is not None:
            now = self._clock.monotonic()
            added = self._added_at.pop(key, None)
            if added is not None:
                self._m.queue_duration.observe(now - added)
            self._started_at[key] = now
        return key

    def done(self, key: K) -> None:
        """Processing of ``key`` finished; requeue it if it was added meanwhile."""
        self._processing.discard(key)
        if self._m is not None:
            started = self._started_at.pop(key, None)
            if started is not None:
                self._m.work_duration.observe(self._clock.monotonic() - started)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._wake_one()
        if self._drained is not None and not self._processing:
            self._drained.set()

    def __len__(self) -> int:
        """Keys waiting to be handed out (not counting delayed or processing keys)."""
        return len(self._queue)

    @property
    def processing(self) -> frozenset[K]:
        return frozenset(self._processing)

    @property
    def delayed(self) -> int:
        """Keys waiting for their ``add_after`` deadline."""
        return len(self._waiting)

    # -- delays and rate limiting --------------------------------------------------------

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds (immediately if ``delay <= 0``)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready_at = self._clock.monotonic() + delay
        current = self._waiting.get(key)
        if current is not None and current <= ready_at:
            return  # already due sooner; the later request is subsumed
        self._waiting[key] = ready_at
        heapq.heappush(self._delayed, (ready_at, next(self._seq), key))
        if self._timer is None or self._timer.done() or ready_at < self._timer_deadline:
            self._restart_timer()

    def add_rate_limited(self, key: K) -> None:
        """Add ``key`` after the rate limiter's delay for it (and count a retry)."""
        if self._shutting_down:
            return
        if self._m is not None:
            self._m.retries.inc()
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: K) -> None:
        """Reset ``key``'s retry history (it does not remove the key from the queue)."""
        self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._limiter.num_requeues(key)

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop handing out keys: getters raise ``ShutDown``; adds are ignored from now on."""
        self._shutting_down = True
        self._queue.clear()
        self._dirty.clear()
        self._delayed.clear()
        self._waiting.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    async def wait_drained(self) -> None:
        """Wait until no key is being processed (use after ``shutdown()``)."""
        if not self._processing:
            return
        if self._drained is None:
            self._drained = asyncio.Event()
        self._drained.clear()
        while self._processing:
            await self._drained.wait()
            self._drained.clear()

    # -- internals -----------------------------------------------------------------------

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _restart_timer(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer_deadline = self._delayed[0][0]
        self._timer = asyncio.get_running_loop().create_task(
            self._run_timer(), name=f"workqueue-timer/{self.name}"
        )
        self._timer.add_done_callback(self._timer_finished)

    async def _run_timer(self) -> None:
        while self._delayed:
            ready_at = self._delayed[0][0]
            self._timer_deadline = ready_at
            wait = ready_at - self._clock.monotonic()
            if wait > 0:
                await self._clock.sleep(wait)
            now = self._clock.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                due, _, key = heapq.heappop(self._delayed)
                if self._waiting.get(key) != due:
                    continue  # superseded by a sooner add_after
                del self._waiting[key]
                self.add(key)
        self._timer_deadline = float("inf")

    def _timer_finished(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "workqueue timer failed", component="workqueue", queue=self.name, exc_info=exc
            )
