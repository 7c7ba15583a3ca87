"""EventRecorder: the correlator's decisions (dedupe, similar-event aggregation, spam
filter) without I/O, then aggregated Events written to a real control plane."""

from __future__ import annotations

from control.api.pb import core_pb2
from control.controllers.events import (
    COMBINED_PREFIX,
    NORMAL,
    WARNING,
    EventCorrelator,
    EventKey,
    EventRecorder,
)
from control.runtime.clock import FakeClock
from tests.apiserver.test_api import cm
from tests.conftest import Cluster


def key(message: str = "Created pod: a", reason: str = "SuccessfulCreate", name: str = "web",
        type_: str = NORMAL) -> EventKey:
    return EventKey("ReplicaSet", "default", name, "uid-1", "apps/v1", type_, reason, message,
                    "replicaset-controller", "")


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
        key(message="Created pod: b"))}
    assert len(names) == 5


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


async def test_recorder_aggregates_into_one_event(cluster: Cluster) -> None:
    c = cluster.client
    obj = await c.create(cm("subject"))
    clock = FakeClock(start=1_800_000_000.0)
    rec = EventRecorder(c, "tester", clock=clock)
    for _ in range(3):
        await rec.event(obj, WARNING, "Broken", "it broke")
        clock.advance(30)
    await rec.event(obj, NORMAL, "Fixed", "it works")
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
    await rec.event(obj, WARNING, "Broken", "it broke")
    again = [e for e in (await c.list_all("events", "default")).items if e.reason == "Broken"]
    assert [e.count for e in again] == [4]


async def test_recorder_never_raises(cluster: Cluster) -> None:
    rec = EventRecorder(cluster.client, "tester")
    # an object in a namespace that does not exist: the write fails, recording does not
    ghost = cm("ghost", ns="nowhere")
    await rec.event(ghost, NORMAL, "Hello", "nobody hears this")
