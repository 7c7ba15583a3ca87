"""In-memory doubles for the runtime tests: a tiny object type and a scripted ListWatcher.

``FakeListWatcher`` serves ``list`` from a dict of objects in pages, and each ``watch`` call
opens a ``FakeStream`` the test drives: ``send(event)``, ``fail(exc)`` (the stream raises),
``end()`` (the server closes it). Watch calls can be made to raise ``Gone`` up front, and
continue tokens can be made to expire. Every wait in these helpers is bounded by real time so
a broken test fails instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from control.api.errors import Gone
from control.api.pb.meta_pb2 import ObjectMeta
from control.client.listwatch import ListPage, WatchEvent
from control.runtime.informer import ADDED, BOOKMARK, DELETED, MODIFIED


@dataclass
class Obj:
    """A stand-in for a kind: a real ObjectMeta message plus a payload."""

    metadata: ObjectMeta
    value: str = ""


def obj(name: str, rv: int | str = 1, namespace: str = "default", value: str = "") -> Obj:
    return Obj(ObjectMeta(name=name, namespace=namespace, resource_version=str(rv)), value)


_END = object()


@dataclass
class FakeStream:
    resource_version: str
    allow_bookmarks: bool
    _queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def send(self, event: WatchEvent[Obj]) -> None:
        self._queue.put_nowait(event)

    def added(self, o: Obj) -> None:
        self.send(WatchEvent(ADDED, o, o.metadata.resource_version))

    def modified(self, o: Obj) -> None:
        self.send(WatchEvent(MODIFIED, o, o.metadata.resource_version))

    def deleted(self, o: Obj) -> None:
        self.send(WatchEvent(DELETED, o, o.metadata.resource_version))

    def bookmark(self, rv: int | str) -> None:
        self.send(WatchEvent(BOOKMARK, None, str(rv)))

    def fail(self, exc: BaseException) -> None:
        self._queue.put_nowait(exc)

    def end(self) -> None:
        self._queue.put_nowait(_END)

    async def events(self) -> AsyncIterator[WatchEvent[Obj]]:
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, WatchEvent)
                yield item
        finally:
            self.closed = True


@dataclass
class ListCall:
    limit: int
    continue_: str
    resource_version: str


class FakeListWatcher:
    def __init__(self, objects: list[Obj] | None = None, rv: int = 10) -> None:
        self.objects: dict[str, Obj] = {o.metadata.name: o for o in objects or []}
        self.rv = rv
        self.list_calls: list[ListCall] = []
        self.streams: list[FakeStream] = []
        self.watch_errors: list[BaseException] = []  # raised by the next watch() calls
        self.expire_continue = 0  # how many continued pages to fail with Gone
        self.list_errors: list[BaseException] = []
        self._stream_opened = asyncio.Event()

    def set_objects(self, objects: list[Obj], rv: int) -> None:
        self.objects = {o.metadata.name: o for o in objects}
        self.rv = rv

    async def list(self, *, limit: int, continue_: str, resource_version: str) -> ListPage[Obj]:
        self.list_calls.append(ListCall(limit, continue_, resource_version))
        await asyncio.sleep(0)
        if self.list_errors:
            raise self.list_errors.pop(0)
        if continue_ and self.expire_continue > 0:
            self.expire_continue -= 1
            raise Gone("continue token expired")
        names = sorted(self.objects)
        start = int(continue_) if continue_ else 0
        end = len(names) if limit <= 0 else start + limit
        page = [self.objects[n] for n in names[start:end]]
        next_token = str(end) if end < len(names) else ""
        return ListPage(page, str(self.rv), next_token)

    def watch(
        self, *, resource_version: str, allow_bookmarks: bool
    ) -> AsyncIterator[WatchEvent[Obj]]:
        if self.watch_errors:
            err = self.watch_errors.pop(0)

            async def failing() -> AsyncIterator[WatchEvent[Obj]]:
                raise err
                yield  # pragma: no cover - makes this an async generator

            return failing()
        stream = FakeStream(resource_version, allow_bookmarks)
        self.streams.append(stream)
        self._stream_opened.set()
        return stream.events()

    async def wait_streams(self, n: int, within: float = 5.0) -> FakeStream:
        """Wait until ``n`` watch streams have been opened; return the newest."""

        async def _wait() -> None:
            while len(self.streams) < n:
                self._stream_opened.clear()
                await self._stream_opened.wait()

        await asyncio.wait_for(_wait(), within)
        return self.streams[-1]


async def settle(rounds: int = 20) -> None:
    """Give every ready task a few turns of the loop."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@dataclass
class Recorder:
    """An event handler that records what it was told."""

    events: list[tuple[str, str, str]] = field(default_factory=list)

    def on_add(self, o: Obj) -> None:
        self.events.append(("add", o.metadata.name, o.metadata.resource_version))

    def on_update(self, old: Obj, new: Obj) -> None:
        self.events.append(("update", new.metadata.name, new.metadata.resource_version))

    def on_delete(self, o: Obj) -> None:
        self.events.append(("delete", o.metadata.name, o.metadata.resource_version))
