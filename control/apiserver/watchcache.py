"""The apiserver's watch cache: every live object in memory, recent history, and watch fan-out.

One store watch on ``/registry/`` feeds the cache; reads (get, list) and watches are served
from here so that 1,000 watchers cost the store no more than one. For each kind the cache
keeps the live objects (decoded once), a window of recent events for watches that resume
from a resourceVersion, and its watchers, indexed by namespace and by ``spec.nodeName`` so
that an event is tested only against the watchers it may concern.

The window is bounded by events per kind and by bytes, per kind and in total (a few large
objects patched often would otherwise hold gigabytes): the oldest events leave first, and a
watch resuming from before the window gets "too old" (``Gone``) and relists, as in
Kubernetes. After load the window is filled from the store's log in the background (up to
``history_on_load`` revisions back, within the same bounds), so after a server restart
informers resume from their last resourceVersion instead of relisting.

An event is encoded once per watch-event type (ADDED/MODIFIED/DELETED) and the same bytes
go to every watcher that should see it. Each watcher has a queue bounded in events and in
bytes; one that falls too far behind is closed (its client resumes from the last
resourceVersion it saw, or relists if that has left the window).

Concurrency: single event loop. Applying a store batch and registering a watcher (with its
initial snapshot or replay) are synchronous, so a watcher never misses nor duplicates an
event. ``wait_for(revision)`` lets reads observe every acknowledged write.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from google.protobuf.message import DecodeError

from control.api import errors, kinds
from control.api.fields import object_fields
from control.api.pb import api_pb2
from control.apiserver import codec
from control.store.interface import Compacted, Event, EventType, Store
from control.store.transformed import TransformError

log = structlog.get_logger(component="watchcache")

PREFIX = "/registry/"
# the apiserver's own state under PREFIX that no API kind serves (service allocation
# bitmaps, the leases of the advertised addresses): not cached, not warned about
INTERNAL_RESOURCES = frozenset({"ranges", "masterleases"})
# --watch-cache-size-bytes default: the bytes all kinds' event windows may hold together
DEFAULT_SIZE_BYTES = 256 * 1024 * 1024
# Python objects around one event's payload (CacheEvent, CachedObject, deque slot), roughly
EVENT_OVERHEAD = 512
# A read or watch at a revision the cache has not reached waits this long for it, then is
# told to retry after TOO_LARGE_RETRY_SECONDS (Kubernetes: 3 s, then retryAfterSeconds 1).
TOO_LARGE_WAIT_SECONDS = 3.0
TOO_LARGE_RETRY_SECONDS = 1


def resource_of_key(key: str) -> str:
    # /registry/<resource>/...
    return key.split("/", 3)[2]


@dataclass(slots=True)
class CachedObject:
    key: str
    namespace: str
    # the kind's message, resourceVersion set; never mutated once cached. None until first
    # read for objects of the history loaded after a restart (``_info`` decodes it then):
    # most of those events are never sent to anyone.
    _obj: Any
    raw: bytes  # wire bytes (stored bytes + resourceVersion suffix)
    revision: int
    _fields: dict[str, str] | None = None
    _info: kinds.KindInfo | None = None

    @property
    def obj(self) -> Any:
        if self._obj is None:
            assert self._info is not None
            self._obj = codec.decode(self._info, self.raw)
        return self._obj

    @property
    def labels(self) -> Any:
        return self.obj.metadata.labels

    @property
    def fields(self) -> dict[str, str]:
        if self._fields is None:
            self._fields = object_fields(self.obj)
        return self._fields


@dataclass(slots=True)
class CacheEvent:
    revision: int
    deleted: bool
    new: CachedObject  # for a delete: the last state, at the delete's revision
    prev: CachedObject | None
    _encoded: dict[str, bytes] = field(default_factory=dict)

    @property
    def cost(self) -> int:
        """Bytes this event keeps alive, estimated: its object's wire bytes, the decoded
        message (about as large) and one encoded WatchEvent. ``prev`` is the previous
        event's object (or a live one): counted there."""
        return 3 * len(self.new.raw) + EVENT_OVERHEAD

    def encoded(self, type_: str) -> bytes:
        b = self._encoded.get(type_)
        if b is None:
            b = api_pb2.WatchEvent(type=type_, object=self.new.raw).SerializeToString()
            self._encoded[type_] = b
        return b


class UndecodableValue(TransformError):
    """A stored value that is no object of its kind (bytes damaged inside a sound log)."""


def cached_object(info: kinds.KindInfo, key: str, value: bytes, revision: int,
                  lazy: bool = False) -> CachedObject:
    """Decode a stored value at ``revision`` (the one place objects leave the store);
    ``lazy``: on first use instead (the namespace then comes from the key)."""
    raw = codec.with_revision(value, revision)
    if lazy:
        # /registry/<plural>/<namespace>/<name> for namespaced kinds
        namespace = key.split("/", 4)[3] if info.namespaced else ""
        return CachedObject(key, namespace, None, raw, revision, None, info)
    obj = codec.decode(info, raw)
    return CachedObject(key, obj.metadata.namespace, obj, raw, revision)


Matcher = Callable[[CachedObject], bool]

_CLOSED = object()


class Watcher:
    """One watch stream's filter and bounded queue of encoded WatchEvents."""

    def __init__(self, resource: str, namespace: str, node_name: str | None,
                 matches: Matcher, min_revision: int, capacity: int,
                 allow_bookmarks: bool, capacity_bytes: int = DEFAULT_SIZE_BYTES) -> None:
        self.resource = resource
        self.namespace = namespace
        self.node_name = node_name  # exact spec.nodeName the field selector requires
        self.matches = matches
        self.min_revision = min_revision
        self.allow_bookmarks = allow_bookmarks
        # the initial snapshot (a watch without resourceVersion): sent first, not bounded
        self.initial: collections.deque[bytes] = collections.deque()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.queued_bytes = 0
        self.closed = False
        self.too_slow = False
        self.sent_revision = min_revision

    def _put(self, item: bytes) -> None:
        if self.closed:
            return
        if (self.queue.qsize() >= self.capacity
                or self.queued_bytes + len(item) > self.capacity_bytes):
            # the client falls too far behind: end its stream; it resumes from its last RV
            self.too_slow = True
            self.close()
            return
        self.queued_bytes += len(item)
        self.queue.put_nowait(item)

    def offer(self, ev: CacheEvent) -> None:
        if ev.revision <= self.min_revision:
            return
        if self.namespace and ev.new.namespace != self.namespace:
            # the window's replay and the by-node index offer every namespace's events
            return
        new_match = (not ev.deleted) and self.matches(ev.new)
        old_match = ev.prev is not None and self.matches(ev.prev)
        if ev.deleted:
            if self.matches(ev.new):
                self._put(ev.encoded("DELETED"))
        elif new_match and old_match:
            self._put(ev.encoded("MODIFIED"))
        elif new_match:
            self._put(ev.encoded("ADDED"))
        elif old_match:
            # left the selector: the client sees it deleted (with its new state)
            self._put(ev.encoded("DELETED"))
        else:
            return
        self.sent_revision = ev.revision

    def bookmark(self, revision: int, encoded: bytes) -> None:
        """Tell the client it has seen everything up to ``revision`` (``encoded`` is the
        BOOKMARK event, encoded once for every watcher due at this tick)."""
        if self.allow_bookmarks and not self.closed and revision > self.sent_revision:
            self._put(encoded)
            self.sent_revision = revision

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(_CLOSED)

    async def next(self) -> bytes | None:
        """The next encoded event, or None once closed."""
        if self.initial:
            return self.initial.popleft()
        item = await self.queue.get()
        if item is _CLOSED:
            return None
        self.queued_bytes -= len(item)
        return item  # type: ignore[no-any-return]


class ResourceCache:
    """Live objects, recent events and watchers of one resource (kind)."""

    def __init__(self, info: kinds.KindInfo, history: int, start_revision: int,
                 max_bytes: int = DEFAULT_SIZE_BYTES) -> None:
        self.info = info
        self.objects: dict[str, CachedObject] = {}
        self.by_namespace: dict[str, dict[str, CachedObject]] = collections.defaultdict(dict)
        self.events: collections.deque[CacheEvent] = collections.deque()
        self.max_events = history
        self.max_bytes = max_bytes
        self.bytes = 0  # sum of the cost of self.events
        # every event with revision > window_start is in self.events
        self.window_start = start_revision
        self.watchers_all: set[Watcher] = set()
        self.watchers_by_ns: dict[str, set[Watcher]] = collections.defaultdict(set)
        self.watchers_by_node: dict[str, set[Watcher]] = collections.defaultdict(set)
        # bumped by every put and remove: readers that derive state from this kind's
        # objects (the RBAC index) rebuild only when it moved
        self.generation = 0

    def put(self, co: CachedObject) -> CachedObject | None:
        self.generation += 1
        prev = self.objects.get(co.key)
        self.objects[co.key] = co
        self.by_namespace[co.namespace][co.key] = co
        return prev

    def remove(self, key: str) -> CachedObject | None:
        self.generation += 1
        prev = self.objects.pop(key, None)
        if prev is not None:
            ns = self.by_namespace.get(prev.namespace)
            if ns is not None:
                ns.pop(key, None)
                if not ns:
                    del self.by_namespace[prev.namespace]
        return prev

    def record(self, ev: CacheEvent) -> int:
        """Add ``ev`` to the window and offer it to the watchers; returns the change in
        the window's bytes (its cost less what left the window for it)."""
        self.append(ev)
        for w in self._candidates(ev):
            w.offer(ev)
        return ev.cost - self.trim()

    def append(self, ev: CacheEvent) -> None:
        self.events.append(ev)
        self.bytes += ev.cost

    def trim(self) -> int:
        """Drop the oldest events beyond this kind's bounds; returns the bytes freed."""
        freed = 0
        while self.events and (len(self.events) > self.max_events
                               or self.bytes > self.max_bytes):
            freed += self.evict_oldest()
        return freed

    def evict_oldest(self) -> int:
        ev = self.events.popleft()
        self.window_start = ev.revision
        self.bytes -= ev.cost
        return ev.cost

    def _candidates(self, ev: CacheEvent) -> Iterable[Watcher]:
        out: set[Watcher] = set(self.watchers_all)
        ns = self.watchers_by_ns.get(ev.new.namespace)
        if ns:
            out |= ns
        if self.watchers_by_node:
            for co in (ev.new, ev.prev):
                if co is not None:
                    node = co.obj.spec.node_name if self.info.plural == "pods" else None
                    if node is not None:
                        ws = self.watchers_by_node.get(node)
                        if ws:
                            out |= ws
        return out

    def add_watcher(self, w: Watcher) -> None:
        if w.node_name is not None and self.info.plural == "pods":
            self.watchers_by_node[w.node_name].add(w)
        elif w.namespace:
            self.watchers_by_ns[w.namespace].add(w)
        else:
            self.watchers_all.add(w)

    def remove_watcher(self, w: Watcher) -> None:
        self.watchers_all.discard(w)
        for index in (self.watchers_by_ns, self.watchers_by_node):
            for k in (w.namespace, w.node_name):
                if k is not None and k in index:
                    index[k].discard(w)
                    if not index[k]:
                        del index[k]

    def all_watchers(self) -> Iterable[Watcher]:
        yield from self.watchers_all
        for ws in self.watchers_by_ns.values():
            yield from ws
        for ws in self.watchers_by_node.values():
            yield from ws

    def scan(self, namespace: str) -> Iterable[CachedObject]:
        if namespace:
            return self.by_namespace.get(namespace, {}).values()
        return self.objects.values()


class WatchCache:
    """``history``: events kept per kind; ``size_bytes``: bytes all kinds' windows keep
    together, ``kind_size_bytes`` one kind's (default a quarter of the total, so one busy
    kind cannot push every other kind's history out); ``history_on_load``: revisions read
    back from the store's log by ``load_history``."""

    def __init__(self, store: Store, *, history: int = 10_000,
                 watcher_capacity: int = 10_000, bookmark_interval: float = 60.0,
                 size_bytes: int = DEFAULT_SIZE_BYTES, kind_size_bytes: int | None = None,
                 history_on_load: int | None = None) -> None:
        self.store = store
        self.history = history
        self.watcher_capacity = watcher_capacity
        self.bookmark_interval = bookmark_interval
        self.size_bytes = size_bytes
        self.kind_size_bytes = kind_size_bytes if kind_size_bytes is not None else max(
            1, size_bytes // 4)
        self.history_on_load = history if history_on_load is None else history_on_load
        self.bytes = 0  # sum over kinds of ResourceCache.bytes
        self.revision = 0
        self.resources: dict[str, ResourceCache] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._loaded_revision = 0
        self._history_loaded = asyncio.Event()

    # -- loading and applying store events ------------------------------------------------

    async def load(self) -> None:
        """Read every object at the store's current revision; ``run`` then follows changes
        and ``load_history`` fills the event windows behind them."""
        result = await self.store.range(PREFIX)
        self.revision = self._loaded_revision = result.revision
        self.resources = {
            i.plural: ResourceCache(i, self.history, self.revision, self.kind_size_bytes)
            for i in kinds.KINDS}
        for kv in result.kvs:
            rc = self.resources.get(resource_of_key(kv.key))
            if rc is None:
                if resource_of_key(kv.key) not in INTERNAL_RESOURCES:
                    log.warning("unknown resource in store", key=kv.key)
                continue
            try:
                rc.put(cached_object(rc.info, kv.key, kv.value, kv.mod_revision))
            except DecodeError as e:
                raise UndecodableValue(
                    kv.key, f"the value stored at revision {kv.mod_revision} is not a "
                    f"{rc.info.kind} ({e or 'damaged bytes'})") from None
        self._ready.set()
        log.info("watch cache loaded", objects=len(result.kvs), revision=self.revision)

    async def load_history(self) -> None:
        """Fill every kind's window with the store's history before the loaded revision
        (the newest ``history_on_load`` revisions still in the log), so that a watch resuming
        from a resourceVersion seen before a restart is served, not sent to relist. A
        one-shot task started after ``load``, beside ``run``: the server serves meanwhile,
        and watches from an older resourceVersion wait for it (``wait_history``)."""
        try:
            count = await self._load_history()
        finally:
            self._history_loaded.set()
        log.info("watch cache history loaded", events=count, history_bytes=self.bytes,
                 oldest_resumable=min((rc.window_start for rc in self.resources.values()),
                                      default=self.revision))

    async def wait_history(self, limit: float = 10.0) -> None:
        """Return once ``load_history`` is done (or after ``limit`` seconds regardless)."""
        if self._history_loaded.is_set():
            return  # the usual case: no task for wait_for
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._history_loaded.wait(), limit)

    async def _load_history(self) -> int:
        loaded = self._loaded_revision
        start = max(self.store.compacted_revision, loaded - self.history_on_load)
        if start >= loaded:
            return 0
        # Read with no lock on the cache: live events after ``loaded`` keep being applied
        # meanwhile. The prefix "" gives one event per revision, so the replay ends exactly
        # at the loaded revision.
        last: dict[str, CachedObject] = {}  # each key's newest object seen in the replay
        pending: dict[str, list[CacheEvent]] = {}
        stream = self.store.watch("", start + 1)
        try:
            async for batch in stream:
                for i, ev in enumerate(batch):
                    if ev.kv.mod_revision > loaded:
                        break
                    if ev.kv.key.startswith(PREFIX):
                        self._replay(ev, last, pending)
                    if i % 200 == 199:
                        await asyncio.sleep(0)  # serve requests meanwhile (a page is 1,000)
                if batch[-1].kv.mod_revision >= loaded:
                    break
        except Compacted:
            # compacted while we read: serve no history rather than a window with holes
            log.warning("watch cache history not loaded: compacted during the replay")
            return 0
        except TransformError as e:
            # an old revision this configuration cannot decrypt: watches resuming from
            # before the restart relist, as they would from a compacted revision
            log.warning("watch cache history not loaded", error=str(e))
            return 0
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        # Merge in one synchronous step, in front of the live events (all newer), for the
        # kinds whose window still starts at the loaded revision (a kind that has already
        # dropped live events would get a hole).
        count = 0
        for plural, rc in self.resources.items():
            if rc.window_start != loaded:
                continue
            evs = pending.get(plural, [])
            rc.events.extendleft(reversed(evs))
            added = sum(ev.cost for ev in evs)
            rc.bytes += added
            rc.window_start = start
            self.bytes += added - rc.trim()
            count += len(evs)
        self._trim_total()
        return count

    def _replay(self, ev: Event, last: dict[str, CachedObject],
                pending: dict[str, list[CacheEvent]]) -> None:
        plural = resource_of_key(ev.kv.key)
        rc = self.resources.get(plural)
        if rc is None:
            return
        key = ev.kv.key
        prev = None
        if ev.prev is not None:
            seen = last.get(key)
            prev = seen if seen is not None and seen.revision == ev.prev.mod_revision else (
                cached_object(rc.info, key, ev.prev.value, ev.prev.mod_revision, lazy=True))
        new = cached_object(rc.info, key, ev.kv.value, ev.kv.mod_revision, lazy=True)
        if ev.type is EventType.PUT:
            last[key] = new
        else:
            last.pop(key, None)
        evs = pending.setdefault(plural, [])
        evs.append(CacheEvent(ev.kv.mod_revision, ev.type is EventType.DELETE, new, prev))
        if len(evs) > 2 * rc.max_events:  # the oldest would be trimmed anyway
            del evs[: len(evs) - rc.max_events]

    def _trim_total(self) -> None:
        """Drop the oldest events of all kinds until the total fits ``size_bytes``."""
        while self.bytes > self.size_bytes:
            oldest: ResourceCache | None = None
            for rc in self.resources.values():
                if rc.events and (oldest is None
                                  or rc.events[0].revision < oldest.events[0].revision):
                    oldest = rc
            if oldest is None:
                return
            self.bytes -= oldest.evict_oldest()

    async def run(self) -> None:
        """Follow the store from the loaded revision (a supervised long-lived task).

        Each committed batch is applied synchronously in the store's publish step, before
        the writers are answered (``Store.follow``): the cache never lags an acknowledged
        write, so ``wait_fresh`` returns at once and no task wake-up, queue or async
        iteration is spent per batch."""
        await self.store.follow(PREFIX, self.revision + 1, self.apply)

    def apply(self, batch: list[Event]) -> None:
        for ev in batch:
            rc = self.resources.get(resource_of_key(ev.kv.key))
            if rc is not None:
                if ev.type is EventType.PUT:
                    co = cached_object(rc.info, ev.kv.key, ev.kv.value, ev.kv.mod_revision)
                    prev = rc.put(co)
                    self.bytes += rc.record(CacheEvent(ev.kv.mod_revision, False, co, prev))
                else:
                    prev = rc.remove(ev.kv.key)
                    last = cached_object(rc.info, ev.kv.key, ev.kv.value, ev.kv.mod_revision)
                    self.bytes += rc.record(CacheEvent(ev.kv.mod_revision, True, last, prev))
            self.revision = ev.kv.mod_revision
        if self.bytes > self.size_bytes:
            self._trim_total()
        self._wake()

    def _wake(self) -> None:
        if not self._waiters:
            return
        keep = []
        for rev, fut in self._waiters:
            if rev <= self.revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._waiters = keep

    async def wait_for(self, revision: int, limit: float = 10.0) -> None:
        """Return once the cache has applied ``revision``; Timeout after ``limit`` seconds."""
        if revision <= self.revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (revision, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, limit)
        except TimeoutError:
            raise errors.Timeout(
                f"Too large resource version: {revision}, current: {self.revision}",
                retry_after=TOO_LARGE_RETRY_SECONDS) from None
        finally:
            # a revision that never comes must not leave its waiter behind
            if not fut.done() or fut.cancelled():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)

    async def wait_for_requested(self, revision: int) -> None:
        """A client asked for ``revision`` (a read or a watch "not older than"): wait a
        bounded time for it, as Kubernetes does, then Timeout "Too large resource version"
        with a retry-after hint."""
        await self.wait_for(revision, TOO_LARGE_WAIT_SECONDS)

    async def wait_fresh(self, limit: float = 10.0) -> None:
        """Reach the store's newest durable revision: a read then reflects every
        acknowledged write."""
        await self.wait_for(self.store.revision, limit)

    async def run_bookmarks(self) -> None:
        """Every watcher gets a bookmark about once per ``bookmark_interval`` (Kubernetes:
        about a minute), spread over the interval by a per-watcher phase so that 1,000
        idle agents do not all get theirs in the same instant."""
        ticks = 10
        tick = 0
        while True:
            await asyncio.sleep(self.bookmark_interval / ticks)
            tick = (tick + 1) % ticks
            encoded = api_pb2.WatchEvent(type="BOOKMARK",
                                         resource_version=str(self.revision)).SerializeToString()
            for rc in self.resources.values():
                for w in list(rc.all_watchers()):
                    if (id(w) >> 4) % ticks == tick:  # ids are 16-byte aligned
                        w.bookmark(self.revision, encoded)

    # -- reads ---------------------------------------------------------------------------

    def get(self, resource: str, key: str) -> CachedObject | None:
        return self.resources[resource].objects.get(key)

    def scan(self, resource: str, namespace: str = "") -> Iterable[CachedObject]:
        return self.resources[resource].scan(namespace)

    def count(self, resource: str, namespace: str = "") -> int:
        """How many objects of ``resource`` (in ``namespace``) the cache holds; 0 for a
        kind it does not know."""
        rc = self.resources.get(resource)
        if rc is None:
            return 0
        return len(rc.by_namespace.get(namespace, {}) if namespace else rc.objects)

    def generation(self, resource: str) -> tuple[int, int]:
        """Changes when this kind's objects change (see ResourceCache.generation); a
        reload (new ResourceCache) changes it too."""
        rc = self.resources.get(resource)
        return (id(rc), rc.generation if rc is not None else 0)

    # -- watches -------------------------------------------------------------------------

    def watch(self, resource: str, namespace: str, node_name: str | None, matches: Matcher,
              resource_version: int | None, allow_bookmarks: bool) -> Watcher:
        """Register a watcher. ``resource_version`` None: an ADDED for every current object
        first; otherwise every event after it (Gone if the cache no longer holds them)."""
        rc = self.resources[resource]
        if resource_version is None:
            w = Watcher(resource, namespace, node_name, matches, self.revision,
                        self.watcher_capacity, allow_bookmarks, self.kind_size_bytes)
            # the initial snapshot may exceed the live capacity; it is sent first, unbounded
            for co in rc.scan(namespace):
                if matches(co):
                    w.initial.append(
                        api_pb2.WatchEvent(type="ADDED", object=co.raw).SerializeToString())
        else:
            if resource_version < rc.window_start:
                raise errors.Gone(
                    f"too old resource version: {resource_version} "
                    f"(oldest kept for {resource}: {rc.window_start})")
            w = Watcher(resource, namespace, node_name, matches, resource_version,
                        self.watcher_capacity, allow_bookmarks, self.kind_size_bytes)
            for ev in rc.events:
                if ev.revision > resource_version:
                    w.offer(ev)
        rc.add_watcher(w)
        return w

    def unwatch(self, w: Watcher) -> None:
        rc = self.resources.get(w.resource)
        if rc is not None:
            rc.remove_watcher(w)
        w.closed = True

    def close_all(self) -> None:
        for rc in self.resources.values():
            for w in list(rc.all_watchers()):
                w.close()

