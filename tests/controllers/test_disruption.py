"""Table tests of the PodDisruptionBudget arithmetic (the disruption controller)."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api.pb import core_pb2, meta_pb2, policy_pb2
from control.controllers.disruption import (
    INSUFFICIENT,
    SUFFICIENT,
    SYNC_FAILED,
    BudgetStatus,
    build_status,
    compute_status,
    count_healthy,
    disruptions_allowed,
    expected_and_desired,
    needs_controller_scale,
    prune_disrupted,
)

NOW = 1_000.0


def spec(min_available: int | str | None = None,
         max_unavailable: int | str | None = None) -> policy_pb2.PodDisruptionBudgetSpec:
    s = policy_pb2.PodDisruptionBudgetSpec()
    for field, value in (("min_available", min_available),
                         ("max_unavailable", max_unavailable)):
        if isinstance(value, int):
            getattr(s, field).int_val = value
        elif isinstance(value, str):
            getattr(s, field).str_val = value
    return s


def pod(name: str, ready: bool = True, deleting: bool = False) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = name
    p.status.conditions.add(type="Ready", status="True" if ready else "False")
    if deleting:
        p.metadata.deletion_timestamp.CopyFrom(Timestamp(seconds=1))
    return p


@pytest.mark.parametrize(("the_spec", "matching", "scale", "expected", "desired"), [
    (spec(min_available=2), 3, 99, 3, 2),  # an int: the pod count, not the scale
    (spec(min_available="50%"), 3, 5, 5, 3),  # 2.5 rounded up
    (spec(min_available="100%"), 3, 4, 4, 4),
    (spec(max_unavailable=1), 3, 4, 4, 3),
    (spec(max_unavailable="25%"), 3, 10, 10, 7),  # 2.5 unavailable rounded up = 3
    (spec(max_unavailable=5), 3, 3, 3, 0),  # never below 0
    (spec(max_unavailable=0), 3, 3, 3, 3),
    (spec(), 3, 3, 0, 0),
])
def test_expected_and_desired(the_spec: policy_pb2.PodDisruptionBudgetSpec, matching: int,
                              scale: int, expected: int, desired: int) -> None:
    assert expected_and_desired(the_spec, matching, scale) == (expected, desired)


@pytest.mark.parametrize(("the_spec", "needs"), [
    (spec(min_available=1), False), (spec(min_available="10%"), True),
    (spec(max_unavailable=1), True), (spec(), False)])
def test_needs_controller_scale(the_spec: policy_pb2.PodDisruptionBudgetSpec,
                                needs: bool) -> None:
    assert needs_controller_scale(the_spec) is needs


@pytest.mark.parametrize(("current", "desired", "expected", "allowed"), [
    (3, 2, 3, 1), (2, 2, 3, 0), (1, 2, 3, 0), (5, 0, 5, 5), (3, 0, 0, 0)])
def test_disruptions_allowed(current: int, desired: int, expected: int, allowed: int) -> None:
    assert disruptions_allowed(current, desired, expected) == allowed


def test_count_healthy() -> None:
    pods = [pod("a"), pod("b", ready=False), pod("c", deleting=True), pod("d"), pod("e")]
    # d was just evicted (pending delete); e was evicted long ago and is still there
    disrupted = {"d": NOW - 10, "e": NOW - 500}
    assert count_healthy(pods, disrupted, NOW) == 2  # a and e


def test_prune_disrupted() -> None:
    pods = {"live": pod("live"), "deleting": pod("deleting", deleting=True),
            "old": pod("old")}
    kept, recheck = prune_disrupted(
        {"live": NOW - 20, "deleting": NOW - 5, "gone": NOW - 5, "old": NOW - 121}, pods, NOW)
    assert kept == {"live": NOW - 20}
    assert recheck == NOW - 20 + 120


def test_compute_status_min_available() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False)]
    st = compute_status(spec(min_available=2), pods, {}, NOW, 0)
    assert (st.expected, st.desired, st.current, st.allowed) == (3, 2, 2, 0)
    pods[2] = pod("c")
    st = compute_status(spec(min_available=2), pods, {"a": NOW - 1}, NOW, 0)
    assert (st.current, st.allowed) == (2, 0)  # a is on its way out
    assert st.disrupted == {"a": NOW - 1}


def test_build_status_conditions() -> None:
    old = policy_pb2.PodDisruptionBudgetStatus()
    now = Timestamp(seconds=500)
    ok = build_status(old, BudgetStatus(3, 2, 3, 1, {}), 4, now)
    assert (ok.observed_generation, ok.disruptions_allowed, ok.current_healthy,
            ok.desired_healthy, ok.expected_pods) == (4, 1, 3, 2, 3)
    (cond,) = ok.conditions
    assert (cond.type, cond.status, cond.reason) == ("DisruptionAllowed", "True", SUFFICIENT)
    # Same status later: the transition time stays.
    again = build_status(ok, BudgetStatus(3, 2, 3, 1, {}), 4, Timestamp(seconds=900))
    assert again.conditions[0].last_transition_time.seconds == 500
    assert again == ok
    none_left = build_status(ok, BudgetStatus(3, 2, 2, 0, {"x": 450.0}), 4,
                             Timestamp(seconds=900))
    assert (none_left.conditions[0].status, none_left.conditions[0].reason) == (
        "False", INSUFFICIENT)
    assert none_left.conditions[0].last_transition_time.seconds == 900
    assert none_left.disrupted_pods["x"].seconds == 450
    failed = build_status(ok, BudgetStatus(0, 0, 3, 0, {}, "NoControllerRef: x"), 4, now)
    assert failed.conditions[0].reason == SYNC_FAILED
    assert failed.disruptions_allowed == 0


def test_meta_condition_type_is_shared() -> None:
    # The status conditions are meta Conditions (policy.proto reuses them).
    assert isinstance(policy_pb2.PodDisruptionBudgetStatus().conditions.add(),
                      meta_pb2.Condition)
