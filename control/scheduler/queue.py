"""The scheduling queue: which pending pod is scheduled next, and when a failed one retries.

Three sub-queues, as kube-scheduler's PriorityQueue:

- **active**: ready now, ordered by the queue-sort plugin (priority, highest first, then the
  time the pod entered the queue);
- **backoff**: failed pods waiting out ``initial * 2**(attempts-1)`` seconds capped at
  ``max`` (1 s doubling to 10 s by default), moved to active by ``flush_backoff``;
- **unschedulable**: pods no node fitted. They stay until a cluster event could make them
  fit (``move_all_to_active_or_backoff``: node added or changed, a placed pod deleted...) or
  until they have waited ``unschedulable_timeout`` (60 s), whichever comes first. A pod whose
  backoff has not expired goes to backoff instead of active, so an event storm cannot turn
  into a retry storm.

A move request that happens *while* a pod is being scheduled (its cycle started before the
event) sends the pod to backoff rather than unschedulable when it fails: the event may be
the one that makes it fit, and it would otherwise wait for the next one (kube's
moveRequestCycle).

Concurrency contract: one event loop. Everything is synchronous except ``pop()`` (waits for
an active pod) and ``run()`` (the flush loop, owned by the scheduler's supervisor). Time comes
from the injected ``Clock`` so tests drive backoff with a FakeClock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from control.runtime.clock import Clock, RealClock
from control.scheduler.types import PodInfo

DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 10.0
DEFAULT_UNSCHEDULABLE_TIMEOUT = 60.0
FLUSH_INTERVAL = 1.0

ACTIVE = "active"
BACKOFF = "backoff"
UNSCHEDULABLE = "unschedulable"


@dataclass(slots=True, eq=False)
class QueuedPodInfo:
    info: PodInfo
    timestamp: float  # when it (last) entered the queue: the age tie-break
    initial_attempt: float | None = None  # first scheduling attempt, for e2e latency
    attempts: int = 0
    unschedulable_plugins: set[str] = field(default_factory=set)
    cycle: int = 0  # the scheduling cycle that last popped it
    backoff_until: float = 0.0
    where: str = ""

    @property
    def key(self) -> str:
        return self.info.key


def priority_sort_key(q: QueuedPodInfo) -> tuple[Any, ...]:
    """Kubernetes' PrioritySort: higher priority first, then older first."""
    return (-q.info.priority, q.timestamp)


class SchedulingQueue:
    """See the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        sort_key: Callable[[QueuedPodInfo], tuple[Any, ...]] = priority_sort_key,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        unschedulable_timeout: float = DEFAULT_UNSCHEDULABLE_TIMEOUT,
    ) -> None:
        self._clock = clock or RealClock()
        self._sort_key = sort_key
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.unschedulable_timeout = unschedulable_timeout
        self._seq = itertools.count()
        # Heaps hold (key, seq, QueuedPodInfo); an entry whose qpi.where changed is stale.
        self._active: list[tuple[tuple[Any, ...], int, QueuedPodInfo]] = []
        self._backoff: list[tuple[float, int, QueuedPodInfo]] = []
        self._unschedulable: dict[str, QueuedPodInfo] = {}  # insertion order = age order
        self._pods: dict[str, QueuedPodInfo] = {}  # every queued pod, wherever it is
        self._in_flight: dict[str, QueuedPodInfo] = {}
        self._counts = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0}
        self.scheduling_cycle = 0
        self._move_request_cycle = -1
        self._wakeup = asyncio.Event()
        self._closed = False

    # -- adding ------------------------------------------------------------------------

    def add(self, info: PodInfo) -> None:
        """A new pending pod (or one seen again): into active unless already queued."""
        if info.key in self._pods:
            self.update(info)
            return
        if info.key in self._in_flight:
            self._in_flight[info.key].info = info
            return
        q = QueuedPodInfo(info, self._clock.monotonic())
        self._pods[info.key] = q
        self._push_active(q)

    def update(self, info: PodInfo) -> None:
        """A queued pod changed: keep its place; an unschedulable one gets another try."""
        q = self._pods.get(info.key)
        if q is None:
            if info.key in self._in_flight:
                self._in_flight[info.key].info = info
                return
            self.add(info)
            return
        old_priority = q.info.priority
        q.info = info
        if q.where == UNSCHEDULABLE:
            self._move(q)
        elif q.where == ACTIVE and info.priority != old_priority:
            self._push_active(q)  # re-sort; the old heap entry is now stale

    def refresh(self, info: PodInfo) -> None:
        """Replace a queued pod's object without moving it (a status-only update)."""
        q = self._pods.get(info.key) or self._in_flight.get(info.key)
        if q is not None:
            q.info = info

    def readd_backoff(self, q: QueuedPodInfo) -> None:
        """A pod that had left the queue (assumed) comes back after its bind failed."""
        if q.key in self._pods or q.key in self._in_flight:
            return
        self._in_flight[q.key] = q
        self.add_backoff(q)

    def delete(self, key: str) -> None:
        q = self._pods.pop(key, None)
        if q is not None:
            self._leave(q)
        self._in_flight.pop(key, None)

    def add_unschedulable(self, q: QueuedPodInfo) -> None:
        """The pod's cycle found no node. See the module docstring for where it goes."""
        if q.key not in self._in_flight:
            return  # deleted while being scheduled
        del self._in_flight[q.key]
        q.backoff_until = self._clock.monotonic() + self.backoff_duration(q.attempts)
        q.timestamp = self._clock.monotonic()
        self._pods[q.key] = q
        if self._move_request_cycle >= q.cycle:
            self._push_backoff(q)
        else:
            self._enter(q, UNSCHEDULABLE)
            self._unschedulable[q.key] = q

    def add_backoff(self, q: QueuedPodInfo) -> None:
        """The pod's cycle failed with an error (or its bind did): retry after backoff."""
        if q.key not in self._in_flight:
            return
        del self._in_flight[q.key]
        q.backoff_until = self._clock.monotonic() + self.backoff_duration(q.attempts)
        self._pods[q.key] = q
        self._push_backoff(q)

    def done(self, key: str) -> None:
        """The pod was scheduled (assumed): it leaves the queue for good."""
        self._in_flight.pop(key, None)

    # -- moving ------------------------------------------------------------------------

    def move_all_to_active_or_backoff(self, event: str = "") -> int:
        """A cluster event that could make unschedulable pods fit; returns how many moved."""
        moved = list(self._unschedulable.values())
        for q in moved:
            self._move(q)
        self._move_request_cycle = self.scheduling_cycle
        if moved:
            self._wakeup.set()
        return len(moved)

    def flush_backoff(self) -> int:
        now = self._clock.monotonic()
        n = 0
        while self._backoff and self._backoff[0][0] <= now:
            _, _, q = heapq.heappop(self._backoff)
            if q.where != BACKOFF or self._pods.get(q.key) is not q:
                continue
            self._push_active(q)
            n += 1
        return n

    def flush_unschedulable_leftover(self) -> int:
        now = self._clock.monotonic()
        due = []
        for q in self._unschedulable.values():
            if now - q.timestamp < self.unschedulable_timeout:
                break  # insertion order is age order
            due.append(q)
        for q in due:
            self._move(q)
        return len(due)

    def _move(self, q: QueuedPodInfo) -> None:
        if q.backoff_until > self._clock.monotonic():
            self._push_backoff(q)
        else:
            self._push_active(q)

    # -- popping -----------------------------------------------------------------------

    async def pop(self) -> QueuedPodInfo:
        """The next pod to schedule; waits while none is active."""
        while True:
            q = self.pop_nowait()
            if q is not None:
                return q
            if self._closed:
                raise QueueClosed
            self._wakeup.clear()
            await self._wakeup.wait()

    def pop_nowait(self) -> QueuedPodInfo | None:
        while self._active:
            _, _, q = heapq.heappop(self._active)
            if q.where != ACTIVE or self._pods.get(q.key) is not q:
                continue  # stale entry (moved, re-sorted or deleted)
            self._leave(q)
            del self._pods[q.key]
            self.scheduling_cycle += 1
            q.cycle = self.scheduling_cycle
            q.attempts += 1
            if q.initial_attempt is None:
                q.initial_attempt = self._clock.monotonic()
            self._in_flight[q.key] = q
            return q
        return None

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def run(self) -> None:
        """Flush backoff and long-unschedulable pods every second, until cancelled."""
        while True:
            await self._clock.sleep(FLUSH_INTERVAL)
            if self.flush_backoff() + self.flush_unschedulable_leftover():
                self._wakeup.set()

    # -- bookkeeping -------------------------------------------------------------------

    def backoff_duration(self, attempts: int) -> float:
        d = self.initial_backoff
        for _ in range(1, attempts):
            d *= 2
            if d >= self.max_backoff:
                return self.max_backoff
        return min(d, self.max_backoff)

    def _push_active(self, q: QueuedPodInfo) -> None:
        self._enter(q, ACTIVE)
        heapq.heappush(self._active, (self._sort_key(q), next(self._seq), q))
        self._wakeup.set()

    def _push_backoff(self, q: QueuedPodInfo) -> None:
        self._enter(q, BACKOFF)
        heapq.heappush(self._backoff, (q.backoff_until, next(self._seq), q))

    def _enter(self, q: QueuedPodInfo, where: str) -> None:
        self._leave(q)
        q.where = where
        self._counts[where] += 1

    def _leave(self, q: QueuedPodInfo) -> None:
        if q.where:
            self._counts[q.where] -= 1
            if q.where == UNSCHEDULABLE:
                self._unschedulable.pop(q.key, None)
            q.where = ""

    def where(self, key: str) -> str:
        """Which sub-queue holds ``key`` ("" if none; "in-flight" while being scheduled)."""
        q = self._pods.get(key)
        if q is not None:
            return q.where
        return "in-flight" if key in self._in_flight else ""

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def __len__(self) -> int:
        return len(self._pods) + len(self._in_flight)

    def __contains__(self, key: object) -> bool:
        return key in self._pods or key in self._in_flight


class QueueClosed(Exception):
    """``pop()`` on a closed queue."""
