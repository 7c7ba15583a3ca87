"""EventRecorder: core/v1 Events about objects, aggregated the way client-go's recorder does.

Controllers tell users what they did ("Created pod: web-x7k2p") and what failed ("Error
creating: ...") through Events. A controller retrying a failure every few seconds must not
flood the API with one Event per attempt, so every Event goes through an ``EventCorrelator``
(client-go's ``tools/record/events_cache.go``) before it is written:

1. **Similar-event aggregation.** Events about one object with the same source, type and
   reason but *different* messages are counted per 10-minute window; from the 10th distinct
   message on, they become one Event whose message is
   ``"(combined from similar events): <latest message>"``.
2. **Deduplication.** An Event identical to one already written (same involvedObject,
   reason, message, type and source) is not created again: the existing Event's ``count``
   goes up and its ``lastTimestamp`` moves (one merge patch); ``firstTimestamp`` stays.
3. **Spam filter.** Per (source, involvedObject) a token bucket (burst 25, one token per 5
   minutes) drops Events beyond the budget, as client-go's ``EventSourceObjectSpamFilter``.

The correlator is pure and synchronous (table-tested); ``EventRecorder`` does the writes.
Recording never raises: an Event is a report, and a controller must not fail because its
report could not be written (failures are logged). If the patched Event has expired (Events
have a TTL) or was deleted, a new one is created with the carried count.

Concurrency contract: one event loop. ``EventRecorder.event`` may be awaited from many
tasks at once; writes for one aggregation key are serialised by a per-key lock (so a
repeat never patches an Event whose create is still in flight), different keys proceed in
parallel. The correlator's caches are bounded (LRU).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import errors, kinds
from control.api.pb import core_pb2, meta_pb2
from control.api.timeutil import format_rfc3339
from control.client.client import ApiClient
from control.runtime.clock import Clock, RealClock

log = structlog.get_logger(__name__, component="event-recorder")

NORMAL = "Normal"
WARNING = "Warning"

# client-go's defaults (tools/record/events_cache.go).
MAX_LRU_CACHE_ENTRIES = 4096
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL_SECONDS = 600.0
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
COMBINED_PREFIX = "(combined from similar events): "


@dataclass(frozen=True)
class EventKey:
    """What makes two Events "the same" for deduplication."""

    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str
    type: str
    reason: str
    message: str
    component: str
    host: str


@dataclass
class _Aggregate:
    messages: set[str] = field(default_factory=set)
    window_start: float = 0.0


@dataclass
class _Logged:
    """An Event already written: its name and how many times it has happened."""

    name: str
    count: int
    first_timestamp: float


@dataclass
class _Bucket:
    tokens: float
    last: float


@dataclass(frozen=True)
class Decision:
    """What to write for one recorded Event.

    ``action``: "create" (a new Event named ``name``), "patch" (bump the Event ``name`` to
    ``count``) or "drop" (spam filtered). ``message`` may be the aggregated one.
    """

    action: str
    key: EventKey
    message: str
    name: str = ""
    count: int = 1
    first_timestamp: float = 0.0


class EventCorrelator:
    """Decides create / patch / drop for each Event; see the module docstring. Pure."""

    def __init__(self, *, max_entries: int = MAX_LRU_CACHE_ENTRIES,
                 aggregate_max: int = AGGREGATE_MAX_EVENTS,
                 aggregate_interval: float = AGGREGATE_INTERVAL_SECONDS,
                 spam_burst: int = SPAM_BURST, spam_qps: float = SPAM_QPS) -> None:
        self._max = max_entries
        self._aggregate_max = aggregate_max
        self._aggregate_interval = aggregate_interval
        self._burst = spam_burst
        self._qps = spam_qps
        self._aggregates: OrderedDict[tuple[str, ...], _Aggregate] = OrderedDict()
        self._logged: OrderedDict[EventKey, _Logged] = OrderedDict()
        self._buckets: OrderedDict[tuple[str, ...], _Bucket] = OrderedDict()
        self._seq = 0

    def _lru_put(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._max:
            cache.popitem(last=False)

    def _allow(self, key: EventKey, now: float) -> bool:
        source = (key.component, key.host, key.kind, key.namespace, key.name, key.uid,
                  key.api_version)
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = _Bucket(tokens=float(self._burst), last=now)
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.last) * self._qps)
        bucket.last = now
        self._lru_put(self._buckets, source, bucket)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _aggregate(self, key: EventKey, now: float) -> EventKey:
        """The key (and message) the Event is deduplicated under after aggregation."""
        similar = (key.component, key.host, key.kind, key.namespace, key.name, key.uid,
                   key.api_version, key.type, key.reason)
        agg = self._aggregates.get(similar)
        if agg is None or now - agg.window_start > self._aggregate_interval:
            agg = _Aggregate(window_start=now)
        agg.messages.add(key.message)
        self._lru_put(self._aggregates, similar, agg)
        if len(agg.messages) < self._aggregate_max:
            return key
        # Every further similar Event lands on one combined Event (keyed without its own
        # message, so they all count up the same one), showing the latest message.
        return EventKey(key.kind, key.namespace, key.name, key.uid, key.api_version,
                        key.type, key.reason, COMBINED_PREFIX, key.component, key.host)

    def observe(self, key: EventKey, now: float) -> Decision:
        """Account for one occurrence of ``key`` at wall time ``now``."""
        if not self._allow(key, now):
            return Decision("drop", key, key.message)
        dedup = self._aggregate(key, now)
        message = key.message if dedup.message != COMBINED_PREFIX else (
            COMBINED_PREFIX + key.message)
        logged = self._logged.get(dedup)
        if logged is not None:
            logged.count += 1
            self._lru_put(self._logged, dedup, logged)
            return Decision("patch", dedup, message, logged.name, logged.count,
                            logged.first_timestamp)
        name = self._new_name(key.name, now)
        self._lru_put(self._logged, dedup, _Logged(name, 1, now))
        return Decision("create", dedup, message, name, 1, now)

    def forget(self, key: EventKey) -> None:
        """The Event written for ``key`` is gone (expired): the next one is created anew."""
        self._logged.pop(key, None)

    def rename(self, key: EventKey, name: str) -> None:
        """A re-created Event got a new name; later repeats patch that one."""
        logged = self._logged.get(key)
        if logged is not None:
            logged.name = name

    def _new_name(self, obj_name: str, now: float) -> str:
        # client-go names Events "<object>.<unix nanos in hex>"; the sequence keeps two
        # Events recorded in the same (possibly fake) instant apart.
        self._seq += 1
        return f"{obj_name}.{int(now * 1e9) + self._seq:x}"


def _timestamp(seconds: float) -> Timestamp:
    # Events carry seconds precision, like metav1.Time.
    return Timestamp(seconds=int(seconds))


def object_reference(obj: Any) -> meta_pb2.ObjectReference:
    """The involvedObject for ``obj`` (a kind's message)."""
    info = kinds.by_message(obj)
    m = obj.metadata
    return meta_pb2.ObjectReference(kind=info.kind, namespace=m.namespace, name=m.name,
                                    uid=m.uid, api_version=info.api_version,
                                    resource_version=m.resource_version)


class EventRecorder:
    """Writes aggregated Events for one component; see the module docstring."""

    def __init__(self, client: ApiClient, component: str, *, host: str = "",
                 clock: Clock | None = None, correlator: EventCorrelator | None = None) -> None:
        self._client = client
        self.component = component
        self.host = host
        self._clock = clock or RealClock()
        self.correlator = correlator or EventCorrelator()
        self._locks: dict[EventKey, asyncio.Lock] = {}

    async def event(self, obj: Any, event_type: str, reason: str, message: str) -> None:
        """Record that ``reason``/``message`` happened to ``obj``; never raises."""
        try:
            ref = object_reference(obj)
        except KeyError:
            log.warning("event about an object of unknown kind dropped", reason=reason)
            return
        await self.event_for(ref, event_type, reason, message)

    async def event_for(self, ref: meta_pb2.ObjectReference, event_type: str, reason: str,
                        message: str) -> None:
        """``event`` for an object known only by reference (e.g. one already deleted)."""
        key = EventKey(ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version,
                       event_type, reason, message, self.component, self.host)
        now = self._clock.now()
        decision = self.correlator.observe(key, now)
        if decision.action == "drop":
            log.debug("event dropped by the spam filter", object=ref.name, reason=reason)
            return
        lock = self._locks.setdefault(decision.key, asyncio.Lock())
        try:
            async with lock:
                await self._write(ref, decision, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not write event", object=f"{ref.namespace}/{ref.name}",
                        reason=reason, error=str(exc))
        finally:
            if not lock.locked() and self._locks.get(decision.key) is lock:
                del self._locks[decision.key]

    async def _write(self, ref: meta_pb2.ObjectReference, d: Decision, now: float) -> None:
        namespace = ref.namespace or "default"
        if d.action == "patch":
            patch = {"count": d.count, "lastTimestamp": format_rfc3339(_timestamp(now)),
                     "message": d.message}
            try:
                await self._client.patch(core_pb2.Event, d.name, patch, namespace)
                return
            except errors.NotFound:
                pass  # expired or deleted: create it again below, keeping the count
        ev = core_pb2.Event(
            api_version="v1", kind="Event",
            metadata=meta_pb2.ObjectMeta(name=d.name, namespace=namespace),
            involved_object=ref, reason=d.key.reason, message=d.message,
            source=core_pb2.EventSource(component=self.component, host=self.host),
            first_timestamp=_timestamp(d.first_timestamp), last_timestamp=_timestamp(now),
            count=d.count, type=d.key.type, reporting_component=self.component,
            reporting_instance=self.host)
        try:
            await self._client.create(ev)
        except errors.AlreadyExists:
            # A stale name (an Event of ours from before a restart of the correlator):
            # start a fresh one rather than overwrite someone else's count.
            ev.metadata.name = f"{ref.name}.{time.time_ns():x}"
            self.correlator.rename(d.key, ev.metadata.name)
            await self._client.create(ev)
