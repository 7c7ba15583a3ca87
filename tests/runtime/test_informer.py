"""Reflector and SharedInformer against a scripted FakeListWatcher and a FakeClock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from control.api.errors import Gone, TooManyRequests
from control.api.pb import apps_pb2, core_pb2
from control.runtime.backoff import Backoff
from control.runtime.clock import FakeClock
from control.runtime.indexer import Indexer
from control.runtime.informer import (
    BOOKMARK,
    InformerSet,
    ListWatcher,
    Reflector,
    SharedInformer,
    WatchEvent,
)
from control.runtime.supervisor import Supervisor
from tests.runtime.fakes import FakeListWatcher, Obj, Recorder, obj, settle
from tests.support import eventually

NO_JITTER = Backoff(initial=0.8, max_delay=30.0, factor=2.0, jitter=0.0, reset_after=120.0)


def new_informer(
    lw: FakeListWatcher, clock: FakeClock, **kw: Any
) -> tuple[SharedInformer[Obj], Recorder]:
    inf = SharedInformer[Obj]("things", lw, clock=clock, backoff=NO_JITTER, **kw)
    rec = Recorder()
    inf.add_event_handler(on_add=rec.on_add, on_update=rec.on_update, on_delete=rec.on_delete)
    return inf, rec


@asynccontextmanager
async def running(inf: SharedInformer[Obj]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(inf.run())
    try:
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def test_list_then_watch_feeds_cache_and_handlers() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a"), obj("b")], rv=10)
    inf, rec = new_informer(lw, clock)
    async with running(inf):
        assert await asyncio.wait_for(inf.wait_for_sync(), 5)
        stream = await lw.wait_streams(1)
        assert stream.resource_version == "10" and stream.allow_bookmarks
        stream.added(obj("c", rv=11))
        stream.modified(obj("a", rv=12, value="new"))
        stream.deleted(obj("b", rv=13))
        await eventually(lambda: inf.last_sync_resource_version == "13")
    assert rec.events == [
        ("add", "a", "1"),
        ("add", "b", "1"),
        ("add", "c", "11"),
        ("update", "a", "12"),
        ("delete", "b", "13"),
    ]
    assert sorted(inf.indexer.list_keys()) == ["default/a", "default/c"]
    a = inf.indexer.get("default/a")
    assert a is not None and a.value == "new"


async def test_broken_stream_resumes_from_last_rv_without_relist() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a")], rv=10)
    inf, rec = new_informer(lw, clock)
    async with running(inf):
        stream = await lw.wait_streams(1)
        stream.added(obj("b", rv=11))
        stream.modified(obj("b", rv=12))
        stream.fail(ConnectionError("reset by peer"))
        await clock.wait_for_sleepers(1)  # backing off, not relisting
        assert clock.next_deadline() == pytest.approx(0.8)
        clock.advance(0.8)
        stream2 = await lw.wait_streams(2)
        assert stream2.resource_version == "12"
        stream2.end()  # the server closing the stream is resumed the same way
        await clock.wait_for_sleepers(1)
        clock.step()
        stream3 = await lw.wait_streams(3)
        assert stream3.resource_version == "12"
    assert len(lw.list_calls) == 1
    assert inf.reflector.lists == 1
    assert stream.closed and stream2.closed
    assert [e[0] for e in rec.events] == ["add", "add", "update"]


async def test_backoff_doubles_to_the_cap_and_resets_after_a_healthy_period() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([], rv=10)
    inf, _ = new_informer(lw, clock)
    delays = []
    async with running(inf):
        for n in range(1, 8):
            stream = await lw.wait_streams(n)
            stream.fail(ConnectionError("flap"))
            await clock.wait_for_sleepers(1)
            deadline = clock.next_deadline()
            assert deadline is not None
            delays.append(round(deadline - clock.monotonic(), 3))
            clock.step()
        stream = await lw.wait_streams(8)
        clock.advance(121)  # a healthy stream for longer than reset_after
        stream.fail(ConnectionError("flap"))
        await clock.wait_for_sleepers(1)
        deadline = clock.next_deadline()
        assert deadline is not None
        delays.append(round(deadline - clock.monotonic(), 3))
    assert delays == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 0.8]
    assert len(lw.list_calls) == 1


async def test_a_stream_that_delivered_events_resets_the_backoff() -> None:
    """A server restart after a healthy stream is a new outage: the resume starts from the
    initial delay, not from where the previous outage left the backoff."""
    clock = FakeClock()
    lw = FakeListWatcher([], rv=10)
    inf, _ = new_informer(lw, clock)
    delays = []

    async def broken(n: int, events: int) -> None:
        stream = await lw.wait_streams(n)
        for i in range(events):
            stream.added(obj(f"o{n}-{i}", rv=100 * n + i))
        stream.fail(ConnectionError("server restarted"))
        await clock.wait_for_sleepers(1)
        deadline = clock.next_deadline()
        assert deadline is not None
        delays.append(round(deadline - clock.monotonic(), 3))
        clock.step()

    async with running(inf):
        await broken(1, 0)
        await broken(2, 0)
        await broken(3, 1)  # delivered an event: healthy until it broke
        await broken(4, 0)
    assert delays == [0.8, 1.6, 0.8, 1.6]
    assert len(lw.list_calls) == 1


async def test_jitter_stretches_delays_within_bounds() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([], rv=10)
    inf = SharedInformer[Obj](
        "things", lw, clock=clock, backoff=Backoff(initial=1.0, max_delay=30, jitter=0.5)
    )
    async with running(inf):
        stream = await lw.wait_streams(1)
        stream.fail(ConnectionError("flap"))
        await clock.wait_for_sleepers(1)
        deadline = clock.next_deadline()
        assert deadline is not None and 1.0 <= deadline - clock.monotonic() < 1.5


async def test_bookmarks_advance_the_resource_version() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a")], rv=10)
    inf, rec = new_informer(lw, clock)
    async with running(inf):
        stream = await lw.wait_streams(1)
        stream.bookmark(50)
        # An object carried by a bookmark is not an event: only its RV counts.
        stream.send(WatchEvent(BOOKMARK, obj("a", rv=60), "60"))
        await eventually(lambda: inf.last_sync_resource_version == "60")
        stream.fail(ConnectionError("gone away"))
        await clock.wait_for_sleepers(1)
        clock.step()
        stream2 = await lw.wait_streams(2)
        assert stream2.resource_version == "60"
    assert rec.events == [("add", "a", "1")]  # bookmarks are not events


async def test_gone_relists_immediately_and_handlers_see_the_deltas() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a"), obj("b"), obj("c", value="last")], rv=10)
    inf, rec = new_informer(lw, clock)
    async with running(inf):
        stream = await lw.wait_streams(1)
        # While we are "disconnected": b changes, c goes away, d appears, a is untouched.
        lw.set_objects([obj("a"), obj("b", rv=15, value="changed"), obj("d", rv=16)], rv=20)
        rec.events.clear()
        stream.fail(Gone("too old resource version: 10"))
        stream2 = await lw.wait_streams(2)
        assert clock.sleepers == 0  # no backoff for the first Gone
        assert stream2.resource_version == "20"
    assert len(lw.list_calls) == 2
    assert sorted(rec.events) == [
        ("add", "d", "16"),
        ("delete", "c", "1"),  # the tombstone is the last known object
        ("update", "b", "15"),
    ]
    assert sorted(inf.indexer.list_keys()) == ["default/a", "default/b", "default/d"]


async def test_gone_when_opening_the_watch_relists_and_repeats_back_off() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a")], rv=10)
    lw.watch_errors = [Gone("too old"), Gone("too old again")]
    inf, _ = new_informer(lw, clock)
    async with running(inf):
        await clock.wait_for_sleepers(1)  # second Gone in a row: backs off before relisting
        assert len(lw.list_calls) == 2  # the initial list and the immediate relist
        clock.step()
        await lw.wait_streams(1)
        assert len(lw.list_calls) == 3
    assert inf.reflector.lists == 3


async def test_gone_after_progress_relists_immediately_again() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a")], rv=10)
    lw.watch_errors = [Gone("too old")]
    inf, _ = new_informer(lw, clock)
    async with running(inf):
        stream = await lw.wait_streams(1)  # relisted at once after the first Gone
        stream.added(obj("b", rv=11))  # progress
        stream.fail(Gone("compacted"))
        await lw.wait_streams(2)
        assert clock.sleepers == 0
    assert len(lw.list_calls) == 3


async def test_chunked_list_follows_continue_tokens() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj(f"o{i:04d}") for i in range(1200)], rv=99)
    inf, rec = new_informer(lw, clock)
    async with running(inf):
        assert await asyncio.wait_for(inf.wait_for_sync(), 5)
    assert [(c.limit, c.continue_) for c in lw.list_calls] == [
        (500, ""),
        (500, "500"),
        (500, "1000"),
    ]
    assert len(inf.indexer) == 1200
    assert inf.indexer.resource_version == "99"
    assert len(rec.events) == 1200


async def test_expired_continue_token_restarts_the_list() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj(f"o{i:04d}") for i in range(1200)], rv=99)
    lw.expire_continue = 1
    inf, rec = new_informer(lw, clock)
    async with running(inf):
        assert await asyncio.wait_for(inf.wait_for_sync(), 5)
    assert [(c.limit, c.continue_) for c in lw.list_calls] == [
        (500, ""),
        (500, "500"),  # Gone: the token expired
        (500, ""),
        (500, "500"),
        (500, "1000"),
    ]
    assert len(inf.indexer) == 1200
    assert len(rec.events) == 1200  # no duplicates from the abandoned first pass


async def test_repeatedly_expiring_continue_falls_back_to_one_unpaged_list() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj(f"o{i:04d}") for i in range(600)], rv=99)
    lw.expire_continue = 3
    inf, _ = new_informer(lw, clock)
    async with running(inf):
        assert await asyncio.wait_for(inf.wait_for_sync(), 5)
    assert [(c.limit, c.continue_) for c in lw.list_calls][-1] == (0, "")
    assert len(inf.indexer) == 600


async def test_list_failure_is_retried_with_backoff() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a")], rv=10)
    lw.list_errors = [ConnectionError("apiserver down")]
    inf, _ = new_informer(lw, clock)
    async with running(inf):
        await clock.wait_for_sleepers(1)
        assert not inf.has_synced()
        clock.step()
        assert await asyncio.wait_for(inf.wait_for_sync(), 5)
    assert len(lw.list_calls) == 2


async def test_wait_for_sync_times_out_on_the_clock() -> None:
    clock = FakeClock()
    inf, _ = new_informer(FakeListWatcher(), clock)  # never run: never syncs
    waiting = asyncio.create_task(inf.wait_for_sync(timeout=5))
    await clock.wait_for_sleepers(1)
    clock.advance(4.9)
    await settle()
    assert not waiting.done()
    clock.advance(0.1)
    assert await asyncio.wait_for(waiting, 5) is False


async def test_resync_calls_update_for_every_object() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a"), obj("b")], rv=10)
    inf, rec = new_informer(lw, clock, resync_period=30.0)
    async with running(inf):
        assert await asyncio.wait_for(inf.wait_for_sync(), 5)
        await lw.wait_streams(1)
        rec.events.clear()
        await clock.wait_for_sleepers(1)  # the resync timer
        clock.advance(30)
        await eventually(lambda: len(rec.events) == 2)
    assert sorted(rec.events) == [("update", "a", "1"), ("update", "b", "1")]


async def test_late_handler_gets_adds_and_a_failing_handler_does_not_stop_others() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a")], rv=10)
    inf, rec = new_informer(lw, clock)

    def broken(o: Obj) -> None:
        raise RuntimeError("handler bug")

    inf.add_event_handler(on_add=broken)
    async with running(inf):
        assert await asyncio.wait_for(inf.wait_for_sync(), 5)
        late = Recorder()
        handle = inf.add_event_handler(on_add=late.on_add)
        assert late.events == [("add", "a", "1")]
        inf.remove_event_handler(handle)
        stream = await lw.wait_streams(1)
        stream.added(obj("b", rv=11))
        await eventually(lambda: len(rec.events) == 2)
    assert late.events == [("add", "a", "1")]
    assert rec.events == [("add", "a", "1"), ("add", "b", "11")]


async def test_reflector_can_feed_a_bare_indexer() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([obj("a")], rv=10)
    idx = Indexer[Obj]()
    r = Reflector[Obj]("bare", lw, idx, clock=clock)
    task = asyncio.create_task(r.run())
    stream = await lw.wait_streams(1)
    stream.added(obj("b", rv=11))
    await eventually(lambda: len(idx) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_informer_set_shares_one_informer_per_resource() -> None:
    clock = FakeClock()
    made: dict[str, FakeListWatcher] = {}

    def factory(resource: str) -> ListWatcher[Any]:
        made[resource] = FakeListWatcher([obj(f"{resource}-1")], rv=5)
        return made[resource]

    infs = InformerSet(factory, clock=clock)
    pods = infs.informer("pods")
    assert infs.informer("pods", indexers={"value": lambda o: [o.value]}) is pods
    assert "value" in pods.indexer.indexers
    nodes = infs.informer("nodes")
    assert sorted(made) == ["nodes", "pods"]
    assert infs.resources() == ["pods", "nodes"] and "pods" in infs and infs["nodes"] is nodes

    async with Supervisor("test", clock=clock) as sup:
        infs.start(sup)
        infs.start(sup)  # idempotent
        assert await asyncio.wait_for(infs.wait_for_sync(timeout=10), 5)
        assert sorted(sup.running()) == ["informer/nodes", "informer/pods"]
        svcs = infs.informer("services")
        assert not await asyncio.wait_for(_timed_out_sync(infs, clock), 5)
        infs.start(sup)
        assert await asyncio.wait_for(svcs.wait_for_sync(), 5)
        await sup.stop(timeout=5)
    assert pods.indexer.get("default/pods-1") is not None


def test_informer_set_by_message_class_is_the_resource_informer() -> None:
    made: list[str] = []

    def factory(resource: str) -> ListWatcher[Any]:
        made.append(resource)
        return FakeListWatcher()

    infs = InformerSet(factory, clock=FakeClock())
    pods = infs.informer(core_pb2.Pod)  # typed SharedInformer[Pod]
    assert infs.informer("pods") is pods and infs["pods"] is pods
    assert infs.informer(apps_pb2.Deployment) is infs.informer("deployments")
    assert made == ["pods", "deployments"]
    with pytest.raises(KeyError, match="not a top-level kind"):
        infs.informer(core_pb2.PodSpec)


async def _timed_out_sync(infs: InformerSet, clock: FakeClock) -> bool:
    waiting = asyncio.create_task(infs.wait_for_sync(timeout=1))
    await clock.wait_for_sleepers(1)
    clock.advance(1)
    return await waiting


async def test_a_throttled_watch_waits_at_least_the_retry_after() -> None:
    clock = FakeClock()
    lw = FakeListWatcher([], rv=10)
    inf, _ = new_informer(lw, clock)
    async with running(inf):
        stream = await lw.wait_streams(1)
        stream.fail(TooManyRequests("too many requests", retry_after=7))
        await clock.wait_for_sleepers(1)
        deadline = clock.next_deadline()
        assert deadline is not None
        assert round(deadline - clock.monotonic(), 3) == 7.0  # not the backoff's 0.8 s
        clock.step()
        stream = await lw.wait_streams(2)
        stream.fail(ConnectionError("flap"))  # a plain failure backs off as before
        await clock.wait_for_sleepers(1)
        deadline = clock.next_deadline()
        assert deadline is not None
        assert round(deadline - clock.monotonic(), 3) == 1.6
    assert len(lw.list_calls) == 1
