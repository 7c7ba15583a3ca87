"""Table tests of the node lifecycle controller's pure logic."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api.pb import core_pb2
from control.controllers.node_lifecycle_util import (
    MANAGED_NO_EXECUTE,
    MANAGED_NO_SCHEDULE,
    NO_EXECUTE,
    NO_SCHEDULE,
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
    NodeHealth,
    NodeLifecycleOptions,
    TokenBucket,
    ZoneState,
    all_fully_disrupted,
    compute_zone_state,
    desired_no_schedule_taints,
    is_stale,
    mark_status_unknown,
    no_execute_taint_for,
    observe_health,
    reconcile_taints,
    zone_eviction_rate,
    zone_of,
)

T, F, U = "True", "False", "Unknown"
NOW = Timestamp(seconds=1_700_000_000)


@pytest.mark.parametrize(("statuses", "state"), [
    ([], ZoneState.NORMAL),
    ([T, T, T], ZoneState.NORMAL),
    ([F], ZoneState.FULL_DISRUPTION),
    ([U, F, ""], ZoneState.FULL_DISRUPTION),  # "" (never reported) is not ready
    ([T, U], ZoneState.NORMAL),
    ([T, U, U], ZoneState.NORMAL),  # 2 not ready: never partial
    ([T, U, U, U], ZoneState.PARTIAL_DISRUPTION),  # 3 of 4 = 75 %
    ([T, T, U, U, U], ZoneState.PARTIAL_DISRUPTION),  # 60 %
    ([T, T, T, U, U, U], ZoneState.NORMAL),  # 50 % < 55 %
    ([T] * 9 + [U] * 11, ZoneState.PARTIAL_DISRUPTION),  # exactly 55 %
])
def test_zone_state(statuses: list[str], state: ZoneState) -> None:
    assert compute_zone_state(statuses, 0.55) is state


OPTS = NodeLifecycleOptions(node_eviction_rate=0.1, secondary_node_eviction_rate=0.01,
                            large_cluster_size_threshold=50)


@pytest.mark.parametrize(("state", "size", "rate"), [
    (ZoneState.NORMAL, 3, 0.1),
    (ZoneState.INITIAL, 3, 0.1),
    (ZoneState.FULL_DISRUPTION, 3, 0.1),  # others healthy: this zone's nodes are gone
    (ZoneState.PARTIAL_DISRUPTION, 10, 0.0),  # small: stop evicting
    (ZoneState.PARTIAL_DISRUPTION, 50, 0.0),
    (ZoneState.PARTIAL_DISRUPTION, 51, 0.01),  # large: the secondary rate
])
def test_zone_eviction_rate(state: ZoneState, size: int, rate: float) -> None:
    assert zone_eviction_rate(state, size, OPTS) == rate


@pytest.mark.parametrize(("states", "expected"), [
    ({}, False),
    ({"a": ZoneState.FULL_DISRUPTION}, True),
    ({"a": ZoneState.FULL_DISRUPTION, "b": ZoneState.FULL_DISRUPTION}, True),
    ({"a": ZoneState.FULL_DISRUPTION, "b": ZoneState.NORMAL}, False),
    ({"a": ZoneState.PARTIAL_DISRUPTION}, False),
])
def test_all_fully_disrupted(states: dict[str, ZoneState], expected: bool) -> None:
    assert all_fully_disrupted(states) is expected


def test_zone_of() -> None:
    node = core_pb2.Node()
    assert zone_of(node) == ""
    node.metadata.labels["topology.kubernetes.io/zone"] = "z1"
    assert zone_of(node) == "z1"


def test_token_bucket_burst_one_then_rate() -> None:
    b = TokenBucket(0.5, now=0.0)
    assert b.try_accept(0.0)  # the burst
    assert not b.try_accept(0.0)
    assert b.time_until_token(1.0) == pytest.approx(1.0)
    assert not b.try_accept(1.9)
    assert b.try_accept(2.0)
    assert not b.try_accept(2.0)
    # Idle time saves at most `burst` tokens.
    assert b.try_accept(100.0)
    assert not b.try_accept(100.0)


def test_token_bucket_rate_zero_refuses_and_swap_resumes() -> None:
    b = TokenBucket(0.1, now=0.0)
    b.swap(0.0, 1.0)
    assert not b.try_accept(1000.0)
    assert b.time_until_token(1000.0) is None
    b.swap(0.1, 1000.0)
    assert b.try_accept(1000.0)  # a new rate starts with a full bucket
    assert not b.try_accept(1001.0)


@pytest.mark.parametrize(("prev", "heartbeat", "renew", "now", "probe"), [
    (None, 0.0, 0.0, 5.0, 5.0),  # first sight: a full grace from now
    (NodeHealth(10.0, 20.0, 1.0), 10.0, 20.0, 9.0, 1.0),  # nothing moved
    (NodeHealth(10.0, 20.0, 1.0), 10.0, 30.0, 9.0, 9.0),  # lease renewed
    (NodeHealth(10.0, 20.0, 1.0), 11.0, 20.0, 9.0, 9.0),  # status heartbeat
    (NodeHealth(10.0, 20.0, 1.0), 10.0, 15.0, 9.0, 1.0),  # an older lease is no renewal
])
def test_observe_health(prev: NodeHealth | None, heartbeat: float, renew: float, now: float,
                        probe: float) -> None:
    assert observe_health(prev, heartbeat, renew, now).probe == probe


@pytest.mark.parametrize(("probe", "now", "stale"), [
    (0.0, 50.0, False), (0.0, 50.1, True), (10.0, 40.0, False)])
def test_is_stale(probe: float, now: float, stale: bool) -> None:
    assert is_stale(NodeHealth(0, 0, probe), now, 50.0) is stale


def test_mark_status_unknown() -> None:
    status = core_pb2.NodeStatus()
    status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                          last_heartbeat_time=Timestamp(seconds=5))
    status.conditions.add(type="MemoryPressure", status="False")
    assert mark_status_unknown(status, NOW)
    by_type = {c.type: c for c in status.conditions}
    assert set(by_type) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert all(c.status == "Unknown" for c in status.conditions)
    ready = by_type["Ready"]
    assert (ready.reason, ready.message) == ("NodeStatusUnknown",
                                             "Kubelet stopped posting node status.")
    assert ready.last_heartbeat_time.seconds == 5  # the agent's, untouched
    assert ready.last_transition_time == NOW
    assert by_type["DiskPressure"].reason == "NodeStatusNeverUpdated"
    assert not mark_status_unknown(status, NOW)  # idempotent


def _node(conditions: dict[str, str], unschedulable: bool = False,
          taints: list[tuple[str, str]] = ()) -> core_pb2.Node:  # type: ignore[assignment]
    node = core_pb2.Node()
    for ctype, status in conditions.items():
        node.status.conditions.add(type=ctype, status=status)
    node.spec.unschedulable = unschedulable
    for key, effect in taints:
        node.spec.taints.add(key=key, effect=effect)
    return node


@pytest.mark.parametrize(("conditions", "unschedulable", "want"), [
    ({"Ready": T}, False, set()),
    ({"Ready": F}, False, {TAINT_NOT_READY}),
    ({"Ready": U}, False, {TAINT_UNREACHABLE}),
    ({"Ready": T, "MemoryPressure": T}, False, {"node.kubernetes.io/memory-pressure"}),
    ({"Ready": T, "DiskPressure": F}, True, {TAINT_UNSCHEDULABLE}),
    ({}, False, set()),
])
def test_desired_no_schedule_taints(conditions: dict[str, str], unschedulable: bool,
                                    want: set[str]) -> None:
    assert desired_no_schedule_taints(_node(conditions, unschedulable)) == want


@pytest.mark.parametrize(("ready", "taint"), [
    (T, None), ("", None), (F, TAINT_NOT_READY), (U, TAINT_UNREACHABLE)])
def test_no_execute_taint_for(ready: str, taint: str | None) -> None:
    assert no_execute_taint_for(ready) == taint


@pytest.mark.parametrize(("taints", "effect", "want", "result"), [
    # nothing to do
    ([], NO_EXECUTE, [], None),
    ([(TAINT_UNREACHABLE, NO_EXECUTE)], NO_EXECUTE, [TAINT_UNREACHABLE], None),
    # add; the user's taints stay
    ([("user", NO_EXECUTE)], NO_EXECUTE, [TAINT_UNREACHABLE],
     [("user", NO_EXECUTE), (TAINT_UNREACHABLE, NO_EXECUTE)]),
    # swap not-ready for unreachable
    ([(TAINT_NOT_READY, NO_EXECUTE)], NO_EXECUTE, [TAINT_UNREACHABLE],
     [(TAINT_UNREACHABLE, NO_EXECUTE)]),
    # remove (node back); the NoSchedule twin is another effect: untouched
    ([(TAINT_UNREACHABLE, NO_SCHEDULE), (TAINT_UNREACHABLE, NO_EXECUTE)], NO_EXECUTE, [],
     [(TAINT_UNREACHABLE, NO_SCHEDULE)]),
    # a duplicate is collapsed
    ([(TAINT_NOT_READY, NO_EXECUTE), (TAINT_NOT_READY, NO_EXECUTE)], NO_EXECUTE,
     [TAINT_NOT_READY], [(TAINT_NOT_READY, NO_EXECUTE)]),
])
def test_reconcile_taints(taints: list[tuple[str, str]], effect: str, want: list[str],
                          result: list[tuple[str, str]] | None) -> None:
    node = _node({}, taints=taints)
    managed = MANAGED_NO_EXECUTE if effect == NO_EXECUTE else MANAGED_NO_SCHEDULE
    out = reconcile_taints(list(node.spec.taints), effect, managed, want, NOW)
    if result is None:
        assert out is None
    else:
        assert out is not None
        assert [(t.key, t.effect) for t in out] == result


def test_reconcile_taints_keeps_time_added_of_kept_taints() -> None:
    old = Timestamp(seconds=100)
    taints = [core_pb2.Taint(key=TAINT_UNREACHABLE, effect=NO_SCHEDULE, time_added=old)]
    out = reconcile_taints(taints, NO_SCHEDULE, MANAGED_NO_SCHEDULE,
                           [TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE], NOW)
    assert out is not None
    assert {t.key: t.time_added.seconds for t in out} == {
        TAINT_UNREACHABLE: 100, TAINT_UNSCHEDULABLE: NOW.seconds}


@pytest.mark.parametrize(("grace", "period"), [(50.0, 5.0), (40.0, 5.0), (2.0, 0.4)])
def test_monitor_period(grace: float, period: float) -> None:
    assert NodeLifecycleOptions(node_monitor_grace_period=grace).monitor_period() == period
