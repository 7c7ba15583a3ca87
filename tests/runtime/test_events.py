"""Events: the correlator's decisions (dedupe, similar-event aggregation, spam filter)
without I/O, the broadcaster's bounded queue against a slow API, then aggregated Events
written to a real control plane."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from control.api import errors
from control.api.pb import core_pb2
from control.runtime.clock import FakeClock
from control.runtime.events import (
    COMBINED_PREFIX,
    MAX_TRIES,
    NORMAL,
    WARNING,
    EventBroadcaster,
    EventCorrelator,
    EventKey,
    FakeRecorder,
)
from tests.conftest import Cluster
from tests.support.objects import cm


def key(message: str = "Created pod: a", reason: str = "SuccessfulCreate", name: str = "web",
        type_: str = NORMAL, field_path: str = "") -> EventKey:
    return EventKey("ReplicaSet", "default", name, "uid-1", "apps/v1", type_, reason, message,
                    "replicaset-controller", "", field_path)


def test_repeats_patch_the_first_event() -> None:
    c = EventCorrelator()
    first = c.observe(key(), 100.0)
    assert (first.action, first.count, first.first_timestamp) == ("create", 1, 100.0)
    second = c.observe(key(), 105.0)
    third = c.observe(key(), 110.0)
    assert (second.action, second.name, second.count) == ("patch", first.name, 2)
    assert (third.action, third.count, third.first_timestamp) == ("patch", 3, 100.0)


def test_different_objects_reasons_types_and_messages_are_different_events() -> None:
    c = EventCorrelator()
    names = {c.observe(k, 1.0).name for k in (
        key(), key(name="other"), key(reason="SuccessfulDelete"), key(type_=WARNING),
        key(message="Created pod: b"), key(field_path="spec.containers{a}"))}
    assert len(names) == 6


def test_similar_events_are_combined_after_ten_messages() -> None:
    c = EventCorrelator()
    decisions = [c.observe(key(message=f"Created pod: p{i}"), 1.0 + i) for i in range(12)]
    assert [d.action for d in decisions[:9]] == ["create"] * 9
    assert decisions[9].action == "create"
    assert decisions[9].message == COMBINED_PREFIX + "Created pod: p9"
    assert decisions[10].action == "patch" and decisions[10].name == decisions[9].name
    assert decisions[11].count == 3
    assert decisions[11].message == COMBINED_PREFIX + "Created pod: p11"
    # a new window starts over
    later = c.observe(key(message="Created pod: late"), 1.0 + 11 + 601)
    assert later.action == "create" and not later.message.startswith(COMBINED_PREFIX)


def test_spam_filter_drops_beyond_the_burst_and_refills() -> None:
    c = EventCorrelator(spam_burst=3, spam_qps=1.0)
    actions = [c.observe(key(), 10.0).action for _ in range(5)]
    assert actions == ["create", "patch", "patch", "drop", "drop"]
    assert c.observe(key(), 11.0).action == "patch"  # one token back after a second
    # another object has its own budget
    assert c.observe(key(name="other"), 11.0).action == "create"


def test_caches_are_bounded() -> None:
    c = EventCorrelator(max_entries=2)
    first = c.observe(key(name="a"), 1.0)
    c.observe(key(name="b"), 1.0)
    c.observe(key(name="c"), 1.0)
    again = c.observe(key(name="a"), 2.0)
    assert again.action == "create" and again.name != first.name


@contextlib.asynccontextmanager
async def running(b: EventBroadcaster) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(b.run(), name="test/events")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _SlowSink:
    """An API whose writes wait until released (a server busy with binds)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.created: list[core_pb2.Event] = []
        self.patched: list[tuple[str, Any]] = []

    async def create(self, ev: core_pb2.Event) -> core_pb2.Event:
        await self.release.wait()
        self.created.append(ev)
        return ev

    async def patch(self, resource: Any, name: str, patch: Any, namespace: str = "") -> Any:
        await self.release.wait()
        self.patched.append((name, patch))
        return None


async def test_a_burst_is_queued_not_dropped_and_beyond_the_bound_counted() -> None:
    """event() never waits; a 10,000-object burst fits the queue and drains later; beyond
    the bound, Events are dropped and counted; repeats of a queued Event coalesce."""
    sink = _SlowSink()
    drops: list[int] = []
    b = EventBroadcaster(sink, writers=2, on_drop=lambda: drops.append(1))
    rec = b.new_recorder("default-scheduler", "sched-1")
    pods = [cm(f"p{i}") for i in range(b.max_pending + 5)]
    for i, p in enumerate(pods):
        p.metadata.uid = f"uid-{i}"
    async with running(b):
        for p in pods[:10_000]:
            rec.event(p, NORMAL, "Scheduled", f"assigned {p.metadata.name}", action="Binding")
        rec.event(pods[0], NORMAL, "Scheduled", "assigned p0", action="Binding")  # a repeat
        assert b.dropped == 0 and b.pending == 10_000
        for _ in range(5):  # the writers start and each takes one Event
            await asyncio.sleep(0)
        for p in pods[10_000:]:
            rec.event(p, NORMAL, "Scheduled", f"assigned {p.metadata.name}", action="Binding")
        assert b.dropped == 3 and len(drops) == 3  # 2 in the writers' hands: 2 of 5 fitted
        sink.release.set()
        await b.flush(20.0)
        assert len(sink.created) == 10_002 and not sink.patched
        [p0] = [e for e in sink.created if e.involved_object.name == "p0"]
        assert (p0.count, p0.action, p0.source.component, p0.source.host) == (
            2, "Binding", "default-scheduler", "sched-1")


async def test_a_repeat_while_the_create_is_in_flight_patches_after_it() -> None:
    sink = _SlowSink()
    b = EventBroadcaster(sink, writers=4)
    rec = b.new_recorder("kubelet", "node-1")
    obj = cm("subject")
    async with running(b):
        rec.event(obj, WARNING, "BackOff", "back-off", field_path="spec.containers{c}")
        for _ in range(3):
            await asyncio.sleep(0)
        assert b.pending == 0  # taken by a writer, waiting on the API
        rec.event(obj, WARNING, "BackOff", "back-off", field_path="spec.containers{c}")
        for _ in range(3):
            await asyncio.sleep(0)
        assert b.pending == 1  # not taken while its create is in flight
        sink.release.set()
        await b.flush(5.0)
    [ev] = sink.created
    assert ev.involved_object.field_path == "spec.containers{c}"
    assert [(name, patch["count"]) for name, patch in sink.patched] == [(ev.metadata.name, 2)]


class _FlakySink:
    """An API that answers UNAVAILABLE ``failures`` times, then writes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.created: list[core_pb2.Event] = []

    async def create(self, ev: core_pb2.Event) -> core_pb2.Event:
        self.calls += 1
        if self.calls <= self.failures:
            raise errors.ServiceUnavailable("cannot reach the Flotilla server")
        self.created.append(ev)
        return ev

    async def patch(self, resource: Any, name: str, patch: Any, namespace: str = "") -> Any:
        raise AssertionError("nothing was created yet: a create is retried, not a patch")


async def _settle(b: EventBroadcaster, clock: FakeClock, steps: int) -> None:
    for _ in range(steps):
        for _ in range(20):
            await asyncio.sleep(0)
        clock.advance(b.retry_delay)


async def test_an_event_written_while_the_server_is_away_is_retried() -> None:
    """As client-go: a transient failure is tried again after the retry delay; a repeat
    recorded meanwhile is folded into the same create."""
    clock = FakeClock()
    sink = _FlakySink(failures=3)
    b = EventBroadcaster(sink, clock=clock, writers=1)
    rec = b.new_recorder("kubelet", "n1")
    pod = cm("p")
    async with running(b):
        rec.event(pod, WARNING, "Fenced", "stopping")
        await _settle(b, clock, 1)
        rec.event(pod, WARNING, "Fenced", "stopping")  # a repeat while the server is away
        await _settle(b, clock, 5)
    assert sink.calls == 4 and len(sink.created) == 1
    assert sink.created[0].reason == "Fenced" and sink.created[0].count == 2


async def test_an_event_is_dropped_after_its_tries() -> None:
    clock = FakeClock()
    sink = _FlakySink(failures=100)
    b = EventBroadcaster(sink, clock=clock, writers=1)
    async with running(b):
        b.new_recorder("kubelet", "n1").event(cm("p"), NORMAL, "Started", "started")
        await _settle(b, clock, MAX_TRIES + 3)
    assert sink.calls == MAX_TRIES and not sink.created and b.pending == 0


def test_fake_recorder_keeps_what_was_recorded() -> None:
    rec = FakeRecorder()
    rec.event(cm("x"), WARNING, "Failed", "boom", field_path="spec.containers{a}")
    assert rec.reasons() == ["Failed"]
    assert rec.events[0].field_path == "spec.containers{a}"
    assert rec.events[0].kind == "ConfigMap"


async def test_recorder_aggregates_into_one_event(cluster: Cluster) -> None:
    c = cluster.client
    obj = await c.create(cm("subject"))
    clock = FakeClock(start=1_800_000_000.0)
    b = EventBroadcaster(c, clock=clock)
    rec = b.new_recorder("tester")
    async with running(b):
        for _ in range(3):
            rec.event(obj, WARNING, "Broken", "it broke")
            await b.flush()
            clock.advance(30)
        rec.event(obj, NORMAL, "Fixed", "it works")
        await b.flush()
        events = sorted((await c.list_all("events", "default")).items, key=lambda e: e.reason)
        assert [(e.reason, e.count) for e in events] == [("Broken", 3), ("Fixed", 1)]
        broken = events[0]
        assert broken.type == WARNING and broken.message == "it broke"
        assert broken.source.component == "tester"
        assert (broken.involved_object.kind, broken.involved_object.name,
                broken.involved_object.uid) == ("ConfigMap", "subject", obj.metadata.uid)
        assert broken.first_timestamp.seconds == 1_800_000_000
        assert broken.last_timestamp.seconds == 1_800_000_060

        # the Event expired (or was deleted): the next repeat recreates it with its count
        await c.delete(core_pb2.Event, broken.metadata.name, "default")
        rec.event(obj, WARNING, "Broken", "it broke")
        await b.flush()
        again = [e for e in (await c.list_all("events", "default")).items
                 if e.reason == "Broken"]
        assert [e.count for e in again] == [4]


async def test_recorder_never_raises(cluster: Cluster) -> None:
    b = EventBroadcaster(cluster.client)
    rec = b.new_recorder("tester")
    async with running(b):
        # an object in a namespace that does not exist: the write fails, recording does not
        rec.event(cm("ghost", ns="nowhere"), NORMAL, "Hello", "nobody hears this")
        rec.event(cm("here"), NORMAL, "Hello", "this one is written")
        await b.flush()
    assert b.written == 1


class _BatchSink:
    """An API that creates many Events per call: answers ``AlreadyExists`` once for the
    names in ``taken`` and ``ServiceUnavailable`` for ``flaky`` the first time."""

    def __init__(self, taken: set[str] = frozenset(), flaky: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.taken, self.flaky = set(taken), set(flaky)
        self.calls: list[list[str]] = []
        self.created: list[core_pb2.Event] = []

    def _one(self, ev: core_pb2.Event) -> Any:
        name = ev.involved_object.name
        if name in self.flaky:
            self.flaky.discard(name)
            return errors.ServiceUnavailable("busy")
        if name in self.taken:
            self.taken.discard(name)
            return errors.AlreadyExists(f"events {ev.metadata.name!r} already exists")
        self.created.append(ev)
        return ev

    async def create_many(self, evs: Any) -> list[Any]:
        assert len({e.metadata.namespace for e in evs}) == 1
        self.calls.append([e.involved_object.name for e in evs])
        return [self._one(e) for e in evs]

    async def create(self, ev: core_pb2.Event) -> core_pb2.Event:
        self.calls.append([ev.involved_object.name])
        result = self._one(ev)
        if isinstance(result, Exception):
            raise result
        return result

    async def patch(self, resource: Any, name: str, patch: Any, namespace: str = "") -> Any:
        raise AssertionError("every Event here happens once")


async def test_creates_go_out_in_batches_per_namespace_each_failure_handled_alone() -> None:
    """A burst is written in calls of at most ``batch_size`` Events of one namespace; a
    stale name is created again under a fresh one, a transient failure retried later,
    and the rest of the batch is written regardless."""
    clock = FakeClock()
    sink = _BatchSink(taken={"p7"}, flaky={"p9"})
    b = EventBroadcaster(sink, clock=clock, writers=2, batch_size=100)
    rec = b.new_recorder("default-scheduler")
    pods = [cm(f"p{i}") for i in range(250)] + [cm(f"q{i}", ns="other") for i in range(3)]
    for i, p in enumerate(pods):
        p.metadata.uid = f"uid-{i}"
    async with running(b):
        for p in pods:
            rec.event(p, NORMAL, "Scheduled", f"assigned {p.metadata.name}")
        await b.flush(5.0)  # the writer that failed p9 waits; the other one retries it
    batches = [c for c in sink.calls if len(c) > 1]
    assert [len(c) for c in batches] == [100, 100, 51, 3]  # p9 again in the third
    assert all(len({n[0] for n in c}) == 1 for c in batches)  # one namespace per call
    names = sorted(e.involved_object.name for e in sink.created)
    assert names == sorted(p.metadata.name for p in pods)
    assert ["p7"] in sink.calls  # created again alone, under a fresh name
    assert sum(c.count("p9") for c in sink.calls) == 2  # failed once, then retried
    [p7] = [e for e in sink.created if e.involved_object.name == "p7"]
    assert p7.metadata.name.startswith("p7.")
    assert (b.written, b.dropped) == (253, 0)


async def test_a_burst_is_written_through_create_many(cluster: Cluster) -> None:
    """Against the real server: 150 Events in one namespace, in two calls, all written;
    an Event whose namespace does not exist fails alone."""
    c = cluster.client
    calls: list[int] = []
    real = c.create_many

    async def counting(objs: Any) -> Any:
        calls.append(len(objs))
        return await real(objs)

    c.create_many = counting  # type: ignore[method-assign]
    b = EventBroadcaster(c, writers=1)
    rec = b.new_recorder("tester")
    objs = [cm(f"s{i}") for i in range(150)]
    for i, o in enumerate(objs):
        o.metadata.uid = f"uid-{i}"
    async with running(b):
        rec.event(cm("ghost", ns="nowhere"), NORMAL, "Hello", "nobody hears this")
        rec.event(cm("ghost2", ns="nowhere"), NORMAL, "Hello", "nor this")
        for o in objs:
            rec.event(o, NORMAL, "Scheduled", f"assigned {o.metadata.name}")
        await b.flush(20.0)
    events = (await c.list_all("events", "default")).items
    assert sorted(e.involved_object.name for e in events if e.reason == "Scheduled") == \
        sorted(o.metadata.name for o in objs)
    assert sorted(calls) == [2, 50, 100] and b.written == 150
