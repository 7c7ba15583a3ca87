"""Events about pods (Scheduled, FailedScheduling, Preempted), aggregated, never flooding.

``record(pod, type, reason, message)`` is synchronous and cheap: it notes the event in a
pending table keyed by (pod uid, type, reason, message). A repeat of a pending event only
bumps its count in memory; a repeat of an event already written updates that Event object
(``count += n``, ``lastTimestamp``) instead of creating another, as client-go's
EventCorrelator does. Writers (a few tasks) drain the table through the API.

When more than ``max_pending`` distinct events wait, new ones are dropped and counted
(``scheduler_events_dropped_total``): client-go's broadcaster also drops rather than slow
the scheduler, and an Event is advice to a human, not state anyone reconciles on.

``record`` never awaits, so no bind ever waits for an Event. The bound (10,000 distinct
events, ~3 MB) is sized so that a burst of ten thousand pending pods - which binds at
~1,000 pods/s while the few writers, sharing the server with the binds, write ~30
Events/s - still gets every pod its Scheduled Event: the backlog drains after the burst
(bench/scheduler_bench.py reports how long). With the former bound of 1,000, 82% of a
10,000-pod burst's Scheduled Events were dropped. Few writers (4) on purpose: each Event
write costs the server about what a bind does, so more writers slow the binds themselves.

Concurrency contract: one event loop. ``record`` may be called from any task; ``run``
(the writers) is one supervised task; one key is written by one writer at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

import structlog

from control.api import errors
from control.api.pb import core_pb2
from control.runtime.clock import Clock, RealClock
from control.scheduler.metrics import SchedulerMetrics

log = structlog.get_logger(__name__, component="scheduler-events")

NORMAL = "Normal"
WARNING = "Warning"

_Key = tuple[str, str, str, str]  # (uid, type, reason, message)


@dataclass
class _Pending:
    namespace: str
    name: str
    uid: str
    type: str
    reason: str
    message: str
    action: str
    count: int
    first: float
    last: float


class EventRecorder:
    def __init__(self, client: object, component: str, *, instance: str = "",
                 clock: Clock | None = None, metrics: SchedulerMetrics | None = None,
                 max_pending: int = 10_000, writers: int = 4, remembered: int = 4096) -> None:
        self._client = client
        self.component = component
        self.instance = instance
        self._clock = clock or RealClock()
        self._metrics = metrics
        self.max_pending = max_pending
        self.writers = writers
        self._pending: OrderedDict[_Key, _Pending] = OrderedDict()
        self._written: OrderedDict[_Key, core_pb2.Event] = OrderedDict()
        self._remembered = remembered
        self._busy: set[_Key] = set()
        self._wakeup = asyncio.Event()
        self.dropped = 0
        self.written = 0

    def record(self, pod: core_pb2.Pod, type_: str, reason: str, message: str,
               action: str = "") -> None:
        m = pod.metadata
        key = (m.uid, type_, reason, message)
        now = self._clock.now()
        p = self._pending.get(key)
        if p is not None:
            p.count += 1
            p.last = now
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.events_dropped.inc()
            return
        self._pending[key] = _Pending(m.namespace, m.name, m.uid, type_, reason, message,
                                      action, 1, now, now)
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """The writers, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for i in range(self.writers):
                tg.create_task(self._writer(), name=f"event-writer-{i}")

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - for tests/shutdown
        """Wait (real time, bounded) until nothing is pending or being written."""
        deadline = time.monotonic() + timeout
        while (self._pending or self._busy) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def _writer(self) -> None:
        while True:
            item = self._take()
            if item is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            key, p = item
            try:
                await self._write(key, p)
            except Exception as e:
                log.warning("cannot write event", reason=p.reason,
                            pod=f"{p.namespace}/{p.name}", error=str(e))
            finally:
                self._busy.discard(key)
                if self._pending:
                    self._wakeup.set()

    def _take(self) -> tuple[_Key, _Pending] | None:
        for key in self._pending:
            if key not in self._busy:
                self._busy.add(key)
                return key, self._pending.pop(key)
        return None

    async def _write(self, key: _Key, p: _Pending) -> None:
        client = self._client
        old = self._written.get(key)
        if old is not None:
            ev = core_pb2.Event()
            ev.CopyFrom(old)
            ev.count += p.count
            ev.last_timestamp.FromNanoseconds(int(p.last * 1e9))
            try:
                new = await client.update(ev)  # type: ignore[attr-defined]
                self._remember(key, new)
                self.written += 1
                return
            except (errors.NotFound, errors.Conflict):
                pass  # expired or changed under us: write a fresh one
        ev = core_pb2.Event()
        ev.metadata.namespace = p.namespace
        ev.metadata.name = f"{p.name}.{time.time_ns():x}"
        io = ev.involved_object
        io.kind, io.api_version = "Pod", "v1"
        io.namespace, io.name, io.uid = p.namespace, p.name, p.uid
        ev.reason, ev.message, ev.type = p.reason, p.message, p.type
        ev.source.component = self.component
        ev.source.host = self.instance
        ev.reporting_component = self.component
        ev.reporting_instance = self.instance
        ev.action = p.action
        ev.count = p.count
        ev.first_timestamp.FromNanoseconds(int(p.first * 1e9))
        ev.last_timestamp.FromNanoseconds(int(p.last * 1e9))
        new = await client.create(ev)  # type: ignore[attr-defined]
        self._remember(key, new)
        self.written += 1

    def _remember(self, key: _Key, ev: core_pb2.Event) -> None:
        self._written[key] = ev
        self._written.move_to_end(key)
        while len(self._written) > self._remembered:
            self._written.popitem(last=False)
