"""podutil: readiness and controller references as Kubernetes reads them; timeutil's
Kubernetes-precision timestamps."""

from __future__ import annotations

import pytest

from control.api import podutil
from control.api.pb import apps_pb2, core_pb2, meta_pb2
from control.api.timeutil import micro_time_at, time_at

NOW = 1_700_000_000.0


def pod(*conditions: tuple[str, str, float | None]) -> core_pb2.Pod:
    p = core_pb2.Pod()
    for ctype, status, at in conditions:
        c = p.status.conditions.add(type=ctype, status=status)
        if at is not None:
            c.last_transition_time.CopyFrom(time_at(at))
    return p


@pytest.mark.parametrize(
    ("p", "ready", "since"),
    [
        (pod(), False, None),
        (pod(("PodScheduled", "True", NOW)), False, None),
        (pod(("Ready", "False", NOW)), False, None),
        (pod(("Ready", "Unknown", NOW)), False, None),
        (pod(("Ready", "True", NOW - 30)), True, NOW - 30),
        # ready, but when is not known: never counts as available for minReadySeconds > 0
        (pod(("Ready", "True", None)), True, None),
        (pod(("ContainersReady", "True", NOW - 5), ("Ready", "True", NOW - 10)), True, NOW - 10),
    ],
)
def test_readiness(p: core_pb2.Pod, ready: bool, since: float | None) -> None:
    assert podutil.is_pod_ready(p) is ready
    assert podutil.ready_since(p) == since
    assert (podutil.ready_condition(p) is not None) is any(
        c.type == "Ready" for c in p.status.conditions)


@pytest.mark.parametrize(
    ("p", "min_ready", "available"),
    [
        (pod(("Ready", "True", NOW - 30)), 0, True),
        (pod(("Ready", "True", NOW - 30)), 30, True),
        (pod(("Ready", "True", NOW - 30)), 31, False),
        (pod(("Ready", "True", None)), 0, True),
        (pod(("Ready", "True", None)), 1, False),
        (pod(("Ready", "False", NOW - 300)), 0, False),
    ],
)
def test_available(p: core_pb2.Pod, min_ready: int, available: bool) -> None:
    assert podutil.is_pod_available(p, min_ready, NOW) is available


def owned(*refs: meta_pb2.OwnerReference) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.owner_references.extend(refs)
    return p


def ref(uid: str, controller: bool | None) -> meta_pb2.OwnerReference:
    r = meta_pb2.OwnerReference(kind="ReplicaSet", name=f"rs-{uid}", uid=uid)
    if controller is not None:
        r.controller = controller
    return r


@pytest.mark.parametrize(
    ("p", "controller"),
    [
        (owned(), ""),
        (owned(ref("a", None)), ""),  # an owner, not a controller
        (owned(ref("a", False)), ""),
        (owned(ref("a", True)), "a"),
        (owned(ref("a", False), ref("b", True)), "b"),
    ],
)
def test_controller_refs(p: core_pb2.Pod, controller: str) -> None:
    got = podutil.controller_of(p)
    assert (got.uid if got is not None else "") == controller
    assert podutil.controller_uid(p) == controller
    for uid in ("a", "b"):
        owner = apps_pb2.ReplicaSet(metadata=meta_pb2.ObjectMeta(uid=uid))
        assert podutil.is_controlled_by(p, owner) is (uid == controller)


@pytest.mark.parametrize(
    ("p", "active"),
    [
        (core_pb2.Pod(status=core_pb2.PodStatus(phase="Running")), True),
        (core_pb2.Pod(status=core_pb2.PodStatus(phase="Pending")), True),
        (core_pb2.Pod(status=core_pb2.PodStatus(phase="Succeeded")), False),
        (core_pb2.Pod(status=core_pb2.PodStatus(phase="Failed")), False),
    ],
)
def test_active(p: core_pb2.Pod, active: bool) -> None:
    assert podutil.is_pod_active(p) is active
    p.metadata.deletion_timestamp.CopyFrom(time_at(NOW))
    assert podutil.is_pod_active(p) is False


@pytest.mark.parametrize(
    ("seconds", "whole", "micro"),
    [
        (NOW, (1_700_000_000, 0), (1_700_000_000, 0)),
        (NOW + 0.1234567, (1_700_000_000, 0), (1_700_000_000, 123_457_000)),
        (NOW + 0.9999996, (1_700_000_000, 0), (1_700_000_001, 0)),  # rounds into the next second
    ],
)
def test_kubernetes_time_precisions(seconds: float, whole: tuple[int, int],
                                    micro: tuple[int, int]) -> None:
    t = time_at(seconds)
    assert (t.seconds, t.nanos) == whole
    m = micro_time_at(seconds)
    assert (m.seconds, m.nanos) == micro
