"""Table tests of toleration matching and eviction times (the taint eviction controller)."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api.pb import core_pb2
from control.apiserver.admission import add_default_tolerations
from control.controllers.taint_eviction import eviction_time, scheduled_time, tolerates

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
NOW = 10_000.0


def tol(key: str = "", operator: str = "", value: str = "", effect: str = "",
        seconds: int | None = None) -> core_pb2.Toleration:
    t = core_pb2.Toleration(key=key, operator=operator, value=value, effect=effect)
    if seconds is not None:
        t.toleration_seconds = seconds
    return t


def taint(key: str, effect: str = "NoExecute", value: str = "",
          added: float | None = None) -> core_pb2.Taint:
    t = core_pb2.Taint(key=key, value=value, effect=effect)
    if added is not None:
        t.time_added.CopyFrom(Timestamp(seconds=int(added)))
    return t


@pytest.mark.parametrize(("toleration", "the_taint", "expected"), [
    (tol(UNREACHABLE, "Exists", effect="NoExecute"), taint(UNREACHABLE), True),
    (tol(UNREACHABLE, "Exists"), taint(UNREACHABLE), True),  # any effect
    (tol(UNREACHABLE, "Exists", effect="NoSchedule"), taint(UNREACHABLE), False),
    (tol(NOT_READY, "Exists"), taint(UNREACHABLE), False),
    (tol("", "Exists"), taint(UNREACHABLE), True),  # tolerates everything
    (tol("k", "Equal", "v"), taint("k", value="v"), True),
    (tol("k", "", "v"), taint("k", value="v"), True),  # Equal is the default
    (tol("k", "Equal", "v"), taint("k", value="w"), False),
    (tol("k", "Bogus"), taint("k"), False),
])
def test_tolerates(toleration: core_pb2.Toleration, the_taint: core_pb2.Taint,
                   expected: bool) -> None:
    assert tolerates(toleration, the_taint) is expected


@pytest.mark.parametrize(("tolerations", "taints", "scheduled", "expected"), [
    # no NoExecute taint: stays
    ([], [taint(UNREACHABLE, "NoSchedule", added=NOW)], 0.0, None),
    # not tolerated: at once
    ([], [taint(UNREACHABLE, added=NOW - 5)], 0.0, NOW),
    ([tol(NOT_READY, "Exists", seconds=300)], [taint(UNREACHABLE, added=NOW)], 0.0, NOW),
    # tolerated for 300 s from timeAdded
    ([tol(UNREACHABLE, "Exists", effect="NoExecute", seconds=300)],
     [taint(UNREACHABLE, added=NOW - 100)], 0.0, NOW + 200),
    # expired already
    ([tol(UNREACHABLE, "Exists", seconds=30)], [taint(UNREACHABLE, added=NOW - 100)], 0.0,
     NOW - 70),
    # forever (DaemonSet pods: no tolerationSeconds)
    ([tol(UNREACHABLE, "Exists", effect="NoExecute")], [taint(UNREACHABLE, added=NOW)], 0.0,
     None),
    # negative seconds count as 0
    ([tol(UNREACHABLE, "Exists", seconds=-5)], [taint(UNREACHABLE, added=NOW)], 0.0, NOW),
    # the earliest deadline over several taints
    ([tol(UNREACHABLE, "Exists", seconds=300), tol("maint", "Exists", seconds=10)],
     [taint(UNREACHABLE, added=NOW), taint("maint", added=NOW)], 0.0, NOW + 10),
    # one tolerated forever, one not at all: at once
    ([tol(UNREACHABLE, "Exists")], [taint(UNREACHABLE, added=NOW), taint("maint")], 0.0,
     NOW),
    # the first matching toleration counts (Kubernetes' getMatchingTolerations)
    ([tol(UNREACHABLE, "Exists", seconds=5), tol("", "Exists")],
     [taint(UNREACHABLE, added=NOW)], 0.0, NOW + 5),
    # a taint without timeAdded counts from now
    ([tol(UNREACHABLE, "Exists", seconds=60)], [taint(UNREACHABLE)], 0.0, NOW + 60),
    # a pod bound after the taint gets its full toleration from its binding
    ([tol(UNREACHABLE, "Exists", seconds=60)], [taint(UNREACHABLE, added=NOW - 500)],
     NOW - 10, NOW + 50),
])
def test_eviction_time(tolerations: list[core_pb2.Toleration], taints: list[core_pb2.Taint],
                       scheduled: float, expected: float | None) -> None:
    assert eviction_time(tolerations, taints, now=NOW, scheduled_at=scheduled) == expected


def test_scheduled_time() -> None:
    pod = core_pb2.Pod()
    assert scheduled_time(pod) == 0.0
    pod.status.conditions.add(type="PodScheduled", status="True",
                              last_transition_time=Timestamp(seconds=42))
    assert scheduled_time(pod) == 42.0


@pytest.mark.parametrize(("existing", "added"), [
    ([], {NOT_READY: 300, UNREACHABLE: 300}),
    ([tol(UNREACHABLE, "Exists", effect="NoExecute", seconds=5)], {NOT_READY: 300}),
    ([tol(NOT_READY, "Exists")], {UNREACHABLE: 300}),  # any effect covers NoExecute
    ([tol(NOT_READY, "Exists", effect="NoSchedule")], {NOT_READY: 300, UNREACHABLE: 300}),
    ([tol("", "Exists")], {}),  # tolerates everything already
])
def test_default_toleration_seconds(existing: list[core_pb2.Toleration],
                                    added: dict[str, int]) -> None:
    pod = core_pb2.Pod()
    pod.spec.tolerations.extend(existing)
    add_default_tolerations(pod, 300, 300)
    new = list(pod.spec.tolerations)[len(existing):]
    assert {t.key: t.toleration_seconds for t in new} == added
    assert all(t.effect == "NoExecute" and t.operator == "Exists" for t in new)
