"""Reflector and shared informer: keep a local cache of one resource in step with the API.

The chain (client-go's tools/cache)::

    ListWatcher --list/watch--> Reflector --replace/add/update/delete--> SharedInformer
        --> Indexer (the cache)  +  event handlers (on_add / on_update / on_delete)

**Reflector.** Lists in pages of ``page_size`` (500), following continue tokens; if a continue
token expires mid-list (``Gone``), the list starts over (after three expiries in a row it
lists without paging, as client-go's pager falls back to a full list). The result replaces
the store, and a watch starts from the list's resourceVersion. The reflector tracks the last
resourceVersion it saw (events *and* bookmarks). When the stream breaks (any exception, or the
server ending it) the reflector resumes the watch from that resourceVersion after a backoff
(0.8 s doubling to 30 s, jittered, reset after 2 healthy minutes or a stream that delivered
events; never sooner than a ``TooManyRequests``' retry-after); the resumed watch waits for
the connection to come back (``wait_for_ready``), so it starts as soon as a restarted
server serves. It relists **only** on
``Gone`` (the resourceVersion is older than the server's history): relisting is expensive and
resuming loses nothing. The first ``Gone`` relists at once; a second in a row backs off.

**SharedInformer.** One reflector per resource feeding one ``Indexer``, shared by every
consumer. Handlers run synchronously in the event loop, in registration order, after the
cache has been updated (so a handler reading the cache sees the new state); they should only
compute keys and enqueue them. A handler's exception is logged and does not stop the others.
A full list after a reconnect is turned into deltas against the old contents: adds for new
keys, updates where the resourceVersion changed, deletes (with the last known object as the
tombstone) for keys that disappeared while we were away. An optional resync calls
``on_update(obj, obj)`` for every cached object every ``resync_period`` seconds, which
re-drives level-triggered controllers. A handler added after the informer synced first gets
``on_add`` for every object already cached.

**InformerSet.** One shared informer per resource name, created on first request from an
injected ``ListWatcher`` factory, started under a ``Supervisor``.

Concurrency contract: one event loop. ``SharedInformer.run()`` owns its reflector and resync
tasks (a TaskGroup) and runs until cancelled; cache reads and handler registration are
synchronous and may happen from any task at any time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, overload

import structlog
from google.protobuf.message import Message

from control.api import kinds
from control.api.errors import Gone, TooManyRequests
from control.client.listwatch import ListWatcher, WatchEvent
from control.runtime.backoff import Backoff, BackoffState
from control.runtime.clock import Clock, RealClock, wait_for
from control.runtime.indexer import Indexer, IndexFunc, KeyFunc, meta_namespace_key
from control.runtime.supervisor import Supervisor

T = TypeVar("T")
M = TypeVar("M", bound=Message)
T_contra = TypeVar("T_contra", contravariant=True)

log = structlog.get_logger(__name__)

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
BOOKMARK = "BOOKMARK"

DEFAULT_PAGE_SIZE = 500
# client-go's reflector backoff: 800 ms doubling to 30 s, reset after 2 quiet minutes.
WATCH_BACKOFF = Backoff(initial=0.8, max_delay=30.0, factor=2.0, jitter=0.2, reset_after=120.0)
# Continue-token expiries in a row before falling back to one unpaged list.
_MAX_PAGED_RESTARTS = 3


class ReflectorStore(Protocol[T_contra]):
    """Where a reflector writes (an ``Indexer`` is one; the informer wraps one)."""

    def add(self, obj: T_contra) -> None: ...

    def update(self, obj: T_contra) -> None: ...

    def delete(self, obj: T_contra) -> None: ...

    def replace(self, objs: Sequence[T_contra], resource_version: str) -> None: ...


class WatchError(Exception):
    """The watch stream delivered something the reflector cannot apply."""


class Reflector(Generic[T]):
    """List, then watch, one resource into a ``ReflectorStore``; see the module docstring."""

    def __init__(
        self,
        name: str,
        list_watcher: ListWatcher[T],
        store: ReflectorStore[T],
        *,
        clock: Clock | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        backoff: Backoff = WATCH_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._lw = list_watcher
        self._store = store
        self._clock = clock or RealClock()
        self._page_size = page_size
        self._backoff = BackoffState(backoff, self._clock, rng)
        self._last_rv = ""
        self.lists = 0  # completed full lists, for tests and metrics
        self.watches = 0  # watch streams opened
        self.events = 0  # watch events applied (bookmarks included)
        self._log = log.bind(component="reflector", reflector=name)

    @property
    def last_sync_resource_version(self) -> str:
        """The newest resourceVersion seen (list, event or bookmark)."""
        return self._last_rv

    async def run(self) -> None:
        """List and watch until cancelled."""
        need_list = True
        gone_in_a_row = 0
        while True:
            events_before = self.events
            retry_after = 0.0
            try:
                if need_list:
                    await self._list_and_replace()
                    need_list = False
                await self._watch()
                self._log.info("watch stream ended; resuming", resource_version=self._last_rv)
            except Gone as exc:
                need_list = True
                if self.events != events_before:
                    gone_in_a_row = 0  # the watch made progress: this Gone is not a repeat
                gone_in_a_row += 1
                self._log.info("resourceVersion too old; relisting", error=str(exc))
                if gone_in_a_row == 1:
                    continue
            except Exception as exc:
                gone_in_a_row = 0
                if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
                    # the server is shedding load: never come back sooner than it asked
                    retry_after = float(exc.retry_after)
                self._log.warning(
                    "list failed" if need_list else "watch broke; resuming",
                    resource_version=self._last_rv,
                    error=repr(exc),
                )
            else:
                gone_in_a_row = 0
            if self.events != events_before:
                # The stream delivered events: it was healthy, and what broke it now (a
                # server restart, typically) is a new outage, which starts again from the
                # initial delay instead of where the last outage left the backoff.
                self._backoff.reset()
            await self._clock.sleep(max(self._backoff.next_delay(), retry_after))

    async def _list_and_replace(self) -> None:
        items: list[T] = []
        rv = ""
        limit = self._page_size
        continue_ = ""
        restarts = 0
        while True:
            try:
                page = await self._lw.list(limit=limit, continue_=continue_, resource_version="")
            except Gone:
                if not continue_:
                    raise  # not a paging problem: let run() decide
                restarts += 1
                self._log.info("continue token expired mid-list; listing again", restarts=restarts)
                if restarts >= _MAX_PAGED_RESTARTS:
                    limit = 0
                items, continue_ = [], ""
                continue
            items.extend(page.items)
            rv = page.resource_version
            if not page.continue_:
                break
            continue_ = page.continue_
        self._store.replace(items, rv)
        self._last_rv = rv
        self.lists += 1
        self._log.debug("listed", items=len(items), resource_version=rv)

    async def _watch(self) -> None:
        self.watches += 1
        stream = self._lw.watch(resource_version=self._last_rv, allow_bookmarks=True)
        try:
            async for event in stream:
                self._apply(event)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _apply(self, event: WatchEvent[T]) -> None:
        self.events += 1
        if event.type == BOOKMARK:
            pass
        elif event.object is None:
            raise WatchError(f"{event.type} event without an object")
        elif event.type == ADDED:
            self._store.add(event.object)
        elif event.type == MODIFIED:
            self._store.update(event.object)
        elif event.type == DELETED:
            self._store.delete(event.object)
        else:
            raise WatchError(f"unexpected watch event type {event.type!r}")
        rv = event.resource_version
        if not rv and event.object is not None:
            rv = str(event.object.metadata.resource_version)  # type: ignore[attr-defined]
        if rv:
            self._last_rv = rv


@dataclass(frozen=True)
class EventHandler(Generic[T]):
    """Callbacks one consumer registers; any may be None."""

    on_add: Callable[[T], None] | None = None
    on_update: Callable[[T, T], None] | None = None
    on_delete: Callable[[T], None] | None = None


def _changed(old: Any, new: Any) -> bool:
    old_rv = old.metadata.resource_version
    new_rv = new.metadata.resource_version
    if old_rv and new_rv:
        return bool(old_rv != new_rv)
    return bool(old != new)


class SharedInformer(Generic[T]):
    """One resource's cache and event fan-out; see the module docstring."""

    def __init__(
        self,
        name: str,
        list_watcher: ListWatcher[T],
        *,
        indexers: Mapping[str, IndexFunc] | None = None,
        key_func: KeyFunc = meta_namespace_key,
        clock: Clock | None = None,
        resync_period: float | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        backoff: Backoff = WATCH_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._clock = clock or RealClock()
        self.indexer: Indexer[T] = Indexer(indexers, key_func=key_func)
        self._handlers: list[EventHandler[T]] = []
        self._synced = asyncio.Event()
        self._resync_period = resync_period
        self._running = False
        self.reflector: Reflector[T] = Reflector(
            name,
            list_watcher,
            _InformerStore(self),
            clock=self._clock,
            page_size=page_size,
            backoff=backoff,
            rng=rng,
        )
        self._log = log.bind(component="informer", informer=name)

    # -- consumers -----------------------------------------------------------------------

    def add_event_handler(
        self,
        handler: EventHandler[T] | None = None,
        *,
        on_add: Callable[[T], None] | None = None,
        on_update: Callable[[T, T], None] | None = None,
        on_delete: Callable[[T], None] | None = None,
    ) -> EventHandler[T]:
        """Register callbacks (an ``EventHandler`` or keyword callables); returns the handle
        for ``remove_event_handler``. Late handlers get ``on_add`` for cached objects."""
        if handler is None:
            handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self.has_synced() and handler.on_add is not None:
            for obj in self.indexer.list():
                self._call(handler.on_add, obj)
        return handler

    def remove_event_handler(self, handler: EventHandler[T]) -> None:
        self._handlers.remove(handler)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self.indexer.add_indexers(indexers)

    def has_synced(self) -> bool:
        """True once the first full list is in the cache."""
        return self._synced.is_set()

    # Timeouts here are measured on the injected Clock, which asyncio.timeout cannot do.
    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait for the first full list; False if ``timeout`` (clock seconds) passed first."""
        if self.has_synced():
            return True
        try:
            await wait_for(self._clock, self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the reflector (and the resync loop) until cancelled."""
        if self._running:
            raise RuntimeError(f"informer {self.name!r} is already running")
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.reflector.run(), name=f"reflector/{self.name}")
                if self._resync_period:
                    tg.create_task(
                        self._resync_loop(self._resync_period), name=f"resync/{self.name}"
                    )
        finally:
            self._running = False

    async def _resync_loop(self, period: float) -> None:
        while True:
            await self._clock.sleep(period)
            if not self.has_synced():
                continue
            for obj in self.indexer.list():
                self._dispatch_update(obj, obj)

    # -- dispatch (called by _InformerStore) ---------------------------------------------

    def _dispatch_add(self, obj: T) -> None:
        for h in list(self._handlers):
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _dispatch_update(self, old: T, new: T) -> None:
        for h in list(self._handlers):
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: T) -> None:
        for h in list(self._handlers):
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    def _call(self, fn: Callable[..., None], *args: T) -> None:
        try:
            fn(*args)
        except Exception:
            # One consumer's bug must not starve the others or break the reflector.
            self._log.exception("event handler failed", handler=getattr(fn, "__qualname__", fn))

    def _mark_synced(self) -> None:
        if not self._synced.is_set():
            self._log.info("cache synced", objects=len(self.indexer))
            self._synced.set()


class _InformerStore(Generic[T]):
    """The reflector's view of an informer: update the cache, then notify handlers."""

    def __init__(self, informer: SharedInformer[T]) -> None:
        self._inf = informer

    def add(self, obj: T) -> None:
        idx = self._inf.indexer
        old = idx.get_by_object(obj)
        idx.add(obj)
        if old is None:
            self._inf._dispatch_add(obj)
        else:
            self._inf._dispatch_update(old, obj)

    update = add

    def delete(self, obj: T) -> None:
        idx = self._inf.indexer
        if idx.get_by_object(obj) is not None:
            idx.delete(obj)
        self._inf._dispatch_delete(obj)

    def replace(self, objs: Sequence[T], resource_version: str) -> None:
        inf = self._inf
        idx = inf.indexer
        old = idx.items()
        idx.replace(objs, resource_version)
        new = idx.items()
        for key, obj in new.items():
            before = old.get(key)
            if before is None:
                inf._dispatch_add(obj)
            elif _changed(before, obj):
                inf._dispatch_update(before, obj)
        for key, obj in old.items():
            if key not in new:
                # The object vanished while we were not watching: its last known state
                # is the tombstone handlers get.
                inf._dispatch_delete(obj)
        inf._mark_synced()


class InformerSet:
    """One ``SharedInformer`` per resource, shared by all consumers (a SharedInformerFactory).

    Ask for informers (``informer(resource)``) while wiring controllers, then
    ``start(supervisor)``; informers requested after ``start`` are started by the next call.
    """

    def __init__(
        self,
        list_watcher_factory: Callable[[str], ListWatcher[Any]],
        *,
        clock: Clock | None = None,
        resync_period: float | None = None,
        task_prefix: str = "informer",
    ) -> None:
        self._factory = list_watcher_factory
        self._task_prefix = task_prefix  # two sets under one supervisor need two
        self._clock = clock or RealClock()
        self._resync_period = resync_period
        self._informers: dict[str, SharedInformer[Any]] = {}
        self._started: set[str] = set()

    @overload
    def informer(
        self, resource: type[M], *, indexers: Mapping[str, IndexFunc] | None = None
    ) -> SharedInformer[M]: ...
    @overload
    def informer(
        self, resource: str, *, indexers: Mapping[str, IndexFunc] | None = None
    ) -> SharedInformer[Any]: ...

    def informer(
        self, resource: type[Message] | str, *, indexers: Mapping[str, IndexFunc] | None = None
    ) -> SharedInformer[Any]:
        """The shared informer for ``resource`` (a message class such as ``core_pb2.Pod``,
        typed by it, or a resource name such as ``"pods"``), created on first use; both
        forms name the same informer. ``indexers`` not yet present are added (two consumers
        may each need their own index)."""
        if not isinstance(resource, str):
            resource = kinds.by_message(resource).plural
        inf = self._informers.get(resource)
        if inf is None:
            inf = SharedInformer(
                resource,
                self._factory(resource),
                clock=self._clock,
                resync_period=self._resync_period,
            )
            self._informers[resource] = inf
        if indexers:
            missing = {n: f for n, f in indexers.items() if n not in inf.indexer.indexers}
            if missing:
                inf.add_indexers(missing)
        return inf

    def __getitem__(self, resource: str) -> SharedInformer[Any]:
        return self._informers[resource]

    def __contains__(self, resource: object) -> bool:
        return resource in self._informers

    def resources(self) -> list[str]:
        return list(self._informers)

    def start(self, supervisor: Supervisor) -> None:
        """Start every informer not started yet, each as the supervised task
        ``informer/<resource>`` (``task_prefix``; restarted with backoff if it ever fails)."""
        for resource, inf in self._informers.items():
            if resource in self._started:
                continue
            supervisor.start(f"{self._task_prefix}/{resource}", inf.run, restart=True)
            self._started.add(resource)

    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once every informer has synced; False if ``timeout`` passed first."""
        pending = [inf for inf in self._informers.values() if not inf.has_synced()]
        if not pending:
            return True

        async def _all() -> None:
            for inf in pending:
                await inf.wait_for_sync()

        try:
            await wait_for(self._clock, _all(), timeout)
        except TimeoutError:
            return False
        return True
