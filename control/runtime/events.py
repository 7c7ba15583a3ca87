"""Events: core/v1 Events about objects, aggregated and written as client-go's recorder does.

Every component (controllers, the scheduler, the kubelet) tells users what it did and what
failed through Events. An ``EventBroadcaster`` is the one Event writer of a component's
wiring (the controller manager, the scheduler, an agent); each part takes an
``EventRecorder`` from it (``broadcaster.new_recorder(component, host)``) that stamps its
source. ``recorder.event(obj, type, reason, message)`` is synchronous and cheap:
it never awaits and never raises, so no reconcile, bind or pod sync ever waits for a report.

Recording only notes the occurrence in a bounded table of raw Events (a repeat of one still
waiting only bumps its count), so a caller pays a dict lookup: the scheduler records a
Scheduled Event per bind on its hot path. The writer then puts each occurrence through an
``EventCorrelator`` (client-go's ``tools/record/events_cache.go``; client-go also correlates
in its broadcaster, not in the caller), with the times it was recorded at:

1. **Spam filter.** Per (source, involvedObject) a token bucket (burst 25, one token per 5
   minutes) drops Events beyond the budget (``EventSourceObjectSpamFilter``).
2. **Similar-event aggregation.** Events about one object with the same source, type and
   reason but *different* messages are counted per 10-minute window; from the 10th distinct
   message on, they become one Event whose message is
   ``"(combined from similar events): <latest message>"``.
3. **Deduplication.** An Event identical to one already written (same involvedObject
   including its fieldPath, reason, message, type and source) is not created again: the
   existing Event's ``count`` goes up and its ``lastTimestamp`` moves (one merge patch);
   ``firstTimestamp`` stays.

The correlator's verdicts wait in a second table keyed by the deduplicated Event: a repeat
of one still waiting only updates it in memory, so a burst costs one write. When
``max_pending`` distinct Events wait (both tables), new ones are dropped and counted
(``dropped``; ``on_drop``): client-go's broadcaster drops rather than slow its caller
too, and an Event is advice to a human, not state anyone reconciles on. The bound (10,000,
~3 MB) holds a 10,000-pod scheduling burst's Scheduled Events, drained after the burst.

``run()`` is the broadcaster's one writer task (supervise it); it keeps up to ``writers``
writes in flight, few on purpose: each Event write costs the API server about what a bind
does. When the sink creates many per call (the API client's ``create_many``, one
``CreateMany`` request), waiting creates of one namespace go out together, up to
``batch_size`` (100) a call: a scheduling burst's Scheduled Events cost the server a
fraction of its binds. One deduplicated Event is written by one write at a time, so a repeat never patches
an Event whose create is still in flight. If the patched Event has expired (Events have a
TTL) or was deleted, it is created again with the carried count. A write that fails for a
reason that may pass (the server unreachable, overloaded or slow) is queued again and tried
after ``retry_delay`` (10 s), 12 tries at most, as client-go does: the Events of a node cut
off from the server (why its pods stopped) arrive when it is back.

Concurrency contract: one event loop. ``event``/``event_for`` may be called from any task
(synchronous); ``run`` is one supervised task; ``flush`` waits for the backlog (tests and
shutdown). The correlator's caches are bounded (LRU).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import structlog
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import errors, kinds
from control.api.pb import core_pb2, meta_pb2
from control.api.timeutil import format_rfc3339
from control.runtime.clock import Clock, RealClock

log = structlog.get_logger(__name__, component="events")

NORMAL = "Normal"
WARNING = "Warning"

# client-go's defaults (tools/record/events_cache.go).
MAX_LRU_CACHE_ENTRIES = 4096
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL_SECONDS = 600.0
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
COMBINED_PREFIX = "(combined from similar events): "

DEFAULT_MAX_PENDING = 10_000
DEFAULT_WRITERS = 4
# Creates per call when the sink takes many (``BatchEventSink``): a burst of Scheduled
# Events then costs the server a few requests instead of one per bind.
DEFAULT_BATCH_SIZE = 100
CORRELATE_BATCH = 256


class EventKey(NamedTuple):
    """What makes two Events "the same" for deduplication (a tuple: cheap to build and
    hash on the recording path)."""

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
    field_path: str = ""


@dataclass(slots=True)
class _Aggregate:
    messages: set[str] = field(default_factory=set)
    window_start: float = 0.0


@dataclass(slots=True)
class _Logged:
    """An Event already written: its name and how many times it has happened."""

    name: str
    count: int
    first_timestamp: float


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last: float


@dataclass(slots=True)
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
        if len(cache) > self._max:
            cache.popitem(last=False)

    def _allow(self, key: EventKey, now: float) -> bool:
        # the source and involved object: every field but type, reason and message
        source = key[:5] + key[8:]
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
        # every field but the message
        similar = key[:7] + key[8:]
        agg = self._aggregates.get(similar)
        if agg is None or now - agg.window_start > self._aggregate_interval:
            agg = _Aggregate(window_start=now)
        agg.messages.add(key.message)
        self._lru_put(self._aggregates, similar, agg)
        if len(agg.messages) < self._aggregate_max:
            return key
        # Every further similar Event lands on one combined Event (keyed without its own
        # message, so they all count up the same one), showing the latest message.
        return key._replace(message=COMBINED_PREFIX)

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
        """The Event for ``key`` was never written: the next one is created anew."""
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
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def object_reference(obj: Message, field_path: str = "") -> meta_pb2.ObjectReference:
    """The involvedObject for ``obj`` (a kind's message)."""
    info = kinds.by_message(obj)
    m = obj.metadata  # type: ignore[attr-defined]
    return meta_pb2.ObjectReference(kind=info.kind, namespace=m.namespace, name=m.name,
                                    uid=m.uid, api_version=info.api_version,
                                    resource_version=m.resource_version,
                                    field_path=field_path)


class EventSink(Protocol):
    """Where Events are written (the API client, or a test's double)."""

    async def create(self, obj: core_pb2.Event) -> Any: ...

    async def patch(self, resource: Any, name: str, patch: Any, namespace: str = "") -> Any: ...


class BatchEventSink(EventSink, Protocol):
    """A sink that also creates many Events of one namespace in one call (the API
    client's ``create_many``): one result per Event, the Event or the error."""

    async def create_many(self, objs: Sequence[core_pb2.Event]) -> list[Any]: ...


class Recorder(Protocol):
    """What components record through: ``EventRecorder`` or ``FakeRecorder``."""

    def event(self, obj: Message, event_type: str, reason: str, message: str, *,
              action: str = "", field_path: str = "") -> None: ...

    def event_for(self, ref: meta_pb2.ObjectReference, event_type: str, reason: str,
                  message: str, *, action: str = "") -> None: ...


@dataclass(slots=True)
class _Raw:
    """Occurrences of one Event recorded and not correlated yet."""

    count: int
    first: float
    last: float
    action: str
    resource_version: str


@dataclass(slots=True)
class _Pending:
    """One deduplicated Event waiting to be written."""

    create: bool
    name: str
    count: int
    message: str
    first: float
    last: float
    action: str
    resource_version: str
    tries: int = 0


# client-go's recordToSink: an Event whose write fails for a reason that may pass (the
# server unreachable or overloaded) is tried again, 12 times at most, 10 s apart.
MAX_TRIES = 12
RETRY_DELAY = 10.0
_TRANSIENT = (errors.ServiceUnavailable, errors.Timeout, errors.TooManyRequests)


class EventBroadcaster:
    """The one Event writer of a component's wiring; see the module docstring."""

    def __init__(self, client: EventSink, *, clock: Clock | None = None,
                 correlator: EventCorrelator | None = None,
                 max_pending: int = DEFAULT_MAX_PENDING, writers: int = DEFAULT_WRITERS,
                 on_drop: Callable[[], None] | None = None,
                 retry_delay: float = RETRY_DELAY,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._client = client
        self.retry_delay = retry_delay
        self._clock = clock or RealClock()
        self.correlator = correlator or EventCorrelator()
        self.max_pending = max_pending
        self.writers = writers
        self.batch_size = batch_size
        self._on_drop = on_drop
        self._raw: dict[EventKey, _Raw] = {}
        self._pending: OrderedDict[EventKey, _Pending] = OrderedDict()
        self._busy: set[EventKey] = set()
        self._wakeup = asyncio.Event()
        self.dropped = 0  # queue full
        self.filtered = 0  # spam filter
        self.written = 0

    def new_recorder(self, component: str, host: str = "") -> EventRecorder:
        """A recorder whose Events come from ``component`` on ``host``."""
        return EventRecorder(self, component, host)

    @property
    def pending(self) -> int:
        return len(self._raw) + len(self._pending)

    def submit(self, key: EventKey, action: str, resource_version: str = "") -> None:
        """Note one occurrence of ``key`` for the writer; never blocks."""
        now = self._clock.now()
        raw = self._raw.get(key)
        if raw is not None:
            raw.count += 1
            raw.last = now
            return
        if len(self._raw) + len(self._pending) >= self.max_pending:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return
        self._raw[key] = _Raw(1, now, now, action, resource_version)
        self._wakeup.set()

    def _correlate(self, limit: int) -> None:
        """Put up to ``limit`` raw Events through the correlator into the write table."""
        for key in list(itertools.islice(self._raw, limit)):
            raw = self._raw.pop(key)
            for i in range(raw.count):
                self._queue(key, raw, raw.first if i == 0 else raw.last)

    def _queue(self, key: EventKey, raw: _Raw, at: float) -> None:
        d = self.correlator.observe(key, at)
        if d.action == "drop":
            self.filtered += 1
            return
        p = self._pending.get(d.key)
        if p is not None:
            # One more occurrence of a queued Event (the correlator's count is lower only
            # if its LRU forgot the Event meanwhile).
            p.count, p.message, p.last = max(p.count + 1, d.count), d.message, at
            return
        self._pending[d.key] = _Pending(d.action == "create", d.name, d.count, d.message,
                                        d.first_timestamp, at, raw.action,
                                        raw.resource_version)

    async def run(self) -> None:
        """The writer, until cancelled (one supervised task, ``writers`` writes in flight)."""
        async with asyncio.TaskGroup() as tg:
            for i in range(max(1, self.writers)):
                tg.create_task(self._writer(), name=f"event-writer-{i}")

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - tests/shutdown
        """Wait (real time, bounded) until nothing is pending or being written."""
        deadline = time.monotonic() + timeout
        while ((self._raw or self._pending or self._busy)  # noqa: ASYNC110
               and time.monotonic() < deadline):
            await asyncio.sleep(0.01)

    async def _writer(self) -> None:
        while True:
            # in slices, so a burst of ten thousand never holds the event loop for long
            self._correlate(CORRELATE_BATCH)
            batch = self._take_creates()
            if batch:
                await self._write_batch(batch)
                continue
            item = self._take()
            if item is None:
                if self._raw:
                    await asyncio.sleep(0)
                    continue
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            key, p = item
            try:
                await self._write(key, p)
                self.written += 1
            except asyncio.CancelledError:
                raise
            except _TRANSIENT as exc:
                self._busy.discard(key)
                if self._retry(key, p):
                    log.debug("event write failed; will retry", reason=key.reason,
                              object=f"{key.namespace}/{key.name}", error=str(exc))
                    await self._clock.sleep(self.retry_delay)
                    continue
                log.warning("could not write event; dropped after retries",
                            object=f"{key.namespace}/{key.name}", reason=key.reason,
                            tries=p.tries, error=str(exc))
            except Exception as exc:
                log.warning("could not write event", object=f"{key.namespace}/{key.name}",
                            reason=key.reason, error=str(exc))
            finally:
                self._busy.discard(key)
                if self._pending or self._raw:
                    self._wakeup.set()

    def _retry(self, key: EventKey, p: _Pending) -> bool:
        """Queue ``p`` again after a transient failure; False once it had its tries. A
        newer occurrence queued meanwhile carries the count and wins; it stays a create
        if the failed write was one (nothing was written)."""
        p.tries += 1
        if p.tries >= MAX_TRIES:
            return False
        newer = self._pending.get(key)
        if newer is not None:
            newer.create = newer.create or p.create
            newer.tries = max(newer.tries, p.tries)
        else:
            self._pending[key] = p
            self._pending.move_to_end(key, last=False)  # oldest first, as before
        return True

    def _take_creates(self) -> list[tuple[EventKey, _Pending]]:
        """Up to ``batch_size`` waiting creates of the first waiting create's namespace,
        when the sink takes many per call and there are at least two (one is written as
        usual)."""
        if self.batch_size < 2 or not hasattr(self._client, "create_many"):
            return []
        keys: list[EventKey] = []
        namespace: str | None = None
        for key, p in self._pending.items():
            if not p.create or key in self._busy:
                continue
            if namespace is None:
                namespace = key.namespace or "default"
            elif (key.namespace or "default") != namespace:
                continue
            keys.append(key)
            if len(keys) >= self.batch_size:
                break
        if len(keys) < 2:
            return []
        self._busy.update(keys)
        return [(key, self._pending.pop(key)) for key in keys]

    async def _write_batch(self, batch: list[tuple[EventKey, _Pending]]) -> None:
        """Create ``batch`` with one call; each Event's failure is handled as a single
        write's would be (a stale name is created again under a fresh one, a transient
        failure queued again)."""
        client: BatchEventSink = self._client  # type: ignore[assignment]
        retry_later = False
        try:
            try:
                results: list[Any] = await client.create_many(
                    [self._event_message(key, p) for key, p in batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                results = [exc] * len(batch)
            for (key, p), result in zip(batch, results, strict=True):
                if not isinstance(result, Exception):
                    self.written += 1
                    continue
                if isinstance(result, errors.AlreadyExists):
                    try:
                        await self._create_renamed(key, self._event_message(key, p))
                        self.written += 1
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("could not write event", reason=key.reason,
                                    object=f"{key.namespace}/{key.name}", error=str(exc))
                elif isinstance(result, _TRANSIENT) and self._retry(key, p):
                    retry_later = True
                else:
                    log.warning("could not write event", object=f"{key.namespace}/{key.name}",
                                reason=key.reason, error=str(result))
        finally:
            for key, _ in batch:
                self._busy.discard(key)
            if self._pending or self._raw:
                self._wakeup.set()
        if retry_later:
            log.debug("event writes failed; will retry", events=len(batch))
            await self._clock.sleep(self.retry_delay)

    def _take(self) -> tuple[EventKey, _Pending] | None:
        for key in self._pending:
            if key not in self._busy:
                self._busy.add(key)
                return key, self._pending.pop(key)
        return None

    async def _write(self, key: EventKey, p: _Pending) -> None:
        namespace = key.namespace or "default"
        if not p.create:
            patch = {"count": p.count, "lastTimestamp": format_rfc3339(_timestamp(p.last)),
                     "message": p.message}
            try:
                await self._client.patch(core_pb2.Event, p.name, patch, namespace)
                return
            except errors.NotFound:
                pass  # expired or deleted: create it again below, keeping the count
        ev = self._event_message(key, p)
        try:
            await self._client.create(ev)
        except errors.AlreadyExists:
            await self._create_renamed(key, ev)

    async def _create_renamed(self, key: EventKey, ev: core_pb2.Event) -> None:
        # A stale name (an Event of ours from before a restart of the correlator): start
        # a fresh one rather than overwrite someone else's count.
        ev.metadata.name = f"{key.name}.{time.time_ns():x}"
        self.correlator.rename(key, ev.metadata.name)
        await self._client.create(ev)

    @staticmethod
    def _event_message(key: EventKey, p: _Pending) -> core_pb2.Event:
        ref = meta_pb2.ObjectReference(
            kind=key.kind, namespace=key.namespace, name=key.name, uid=key.uid,
            api_version=key.api_version, resource_version=p.resource_version,
            field_path=key.field_path)
        return core_pb2.Event(
            api_version="v1", kind="Event",
            metadata=meta_pb2.ObjectMeta(name=p.name, namespace=key.namespace or "default"),
            involved_object=ref, reason=key.reason, message=p.message,
            source=core_pb2.EventSource(component=key.component, host=key.host),
            first_timestamp=_timestamp(p.first), last_timestamp=_timestamp(p.last),
            count=p.count, type=key.type, action=p.action,
            reporting_component=key.component, reporting_instance=key.host)


class EventRecorder:
    """Records Events from one source through a broadcaster; never blocks, never raises."""

    __slots__ = ("_broadcaster", "component", "host")

    def __init__(self, broadcaster: EventBroadcaster, component: str, host: str = "") -> None:
        self._broadcaster = broadcaster
        self.component = component
        self.host = host

    def event(self, obj: Message, event_type: str, reason: str, message: str, *,
              action: str = "", field_path: str = "") -> None:
        """Record that ``reason``/``message`` happened to ``obj`` (a kind's message);
        ``field_path`` names a part of it (``spec.containers{web}``)."""
        try:
            info = kinds.by_message(obj)
        except KeyError:
            log.warning("event about an object of unknown kind dropped", reason=reason)
            return
        m = obj.metadata  # type: ignore[attr-defined]
        self._broadcaster.submit(
            EventKey(info.kind, m.namespace, m.name, m.uid, info.api_version, event_type,
                     reason, message, self.component, self.host, field_path),
            action, m.resource_version)

    def event_for(self, ref: meta_pb2.ObjectReference, event_type: str, reason: str,
                  message: str, *, action: str = "") -> None:
        """``event`` for an object known only by reference (e.g. one already deleted)."""
        self._broadcaster.submit(
            EventKey(ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version, event_type,
                     reason, message, self.component, self.host, ref.field_path),
            action, ref.resource_version)


@dataclass(frozen=True)
class RecordedEvent:
    """One Event as a ``FakeRecorder`` saw it."""

    type: str
    reason: str
    message: str
    kind: str
    namespace: str
    name: str
    field_path: str = ""


class FakeRecorder:
    """An in-memory ``Recorder`` for tests: keeps every Event, writes nothing."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []

    def event(self, obj: Message, event_type: str, reason: str, message: str, *,
              action: str = "", field_path: str = "") -> None:
        self.event_for(object_reference(obj, field_path), event_type, reason, message,
                       action=action)

    def event_for(self, ref: meta_pb2.ObjectReference, event_type: str, reason: str,
                  message: str, *, action: str = "") -> None:
        self.events.append(RecordedEvent(event_type, reason, message, ref.kind,
                                         ref.namespace, ref.name, ref.field_path))

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]
