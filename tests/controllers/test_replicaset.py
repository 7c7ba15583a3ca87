"""Pure logic of the ReplicaSet controller: pod ranking, slow start, status computation,
pods built from templates. No I/O."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import convert
from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import controller_of, is_pod_active, is_pod_available
from control.controllers.podbatch import slow_start_batches
from control.controllers.podcontrol import generate_name_prefix, pod_from_template
from control.controllers.replicaset import (
    REPLICA_FAILURE,
    REPLICASET,
    REPLICATIONCONTROLLER,
    compute_status,
    count_status,
    pods_to_delete,
)

NOW = 1_700_000_000.0


def mkpod(name: str, *, node: str = "", phase: str = "Pending", ready: bool = False,
          ready_at: float | None = None, restarts: int = 0, created: float = NOW - 100,
          labels: dict[str, str] | None = None, deleting: bool = False) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = name
    p.metadata.uid = f"uid-{name}"
    p.metadata.namespace = "default"
    p.metadata.creation_timestamp.CopyFrom(Timestamp(seconds=int(created)))
    p.metadata.labels.update(labels or {"app": "web"})
    if deleting:
        p.metadata.deletion_timestamp.CopyFrom(Timestamp(seconds=int(NOW)))
    p.spec.node_name = node
    p.status.phase = phase
    if ready or ready_at is not None:
        c = p.status.conditions.add(type="Ready", status="True" if ready else "False")
        if ready_at is not None:
            c.last_transition_time.CopyFrom(Timestamp(seconds=int(ready_at)))
    if restarts:
        p.status.container_statuses.add(name="c", restart_count=restarts)
    return p


@pytest.mark.parametrize(("pods", "count", "expected"), [
    # unscheduled before scheduled
    ([mkpod("bound", node="n1"), mkpod("unbound")], 1, ["unbound"]),
    # pending < unknown < running
    ([mkpod("run", node="n1", phase="Running"), mkpod("unk", node="n1", phase="Unknown"),
      mkpod("pend", node="n1", phase="Pending")], 2, ["pend", "unk"]),
    # not ready before ready
    ([mkpod("r", node="n1", phase="Running", ready=True),
      mkpod("nr", node="n2", phase="Running")], 1, ["nr"]),
    # doubled up on a node before alone on one
    ([mkpod("alone", node="n1", phase="Running", ready=True, ready_at=NOW - 50),
      mkpod("pair-a", node="n2", phase="Running", ready=True, ready_at=NOW - 50),
      mkpod("pair-b", node="n2", phase="Running", ready=True, ready_at=NOW - 50,
            created=NOW - 90)], 1, ["pair-b"]),
    # ready for less time first
    ([mkpod("old", node="n1", phase="Running", ready=True, ready_at=NOW - 500),
      mkpod("new", node="n2", phase="Running", ready=True, ready_at=NOW - 5)], 1, ["new"]),
    # more restarts first
    ([mkpod("calm", node="n1", phase="Running", restarts=0),
      mkpod("flappy", node="n2", phase="Running", restarts=7)], 1, ["flappy"]),
    # newer first
    ([mkpod("older", created=NOW - 500), mkpod("newer", created=NOW - 5)], 1, ["newer"]),
    # nothing asked, nothing given
    ([mkpod("a")], 0, []),
    # more asked than there are
    ([mkpod("a"), mkpod("b", created=NOW - 5)], 5, ["b", "a"]),
])
def test_pods_to_delete_picks_the_least_valuable(pods: list[Any], count: int,
                                                  expected: list[str]) -> None:
    assert [p.metadata.name for p in pods_to_delete(pods, count)] == expected


@pytest.mark.parametrize(("count", "batches"), [
    (0, []), (1, [1]), (2, [1, 1]), (3, [1, 2]), (7, [1, 2, 4]), (10, [1, 2, 4, 3]),
    (500, [1, 2, 4, 8, 16, 32, 64, 128, 245]),
])
def test_slow_start_batches(count: int, batches: list[int]) -> None:
    assert slow_start_batches(count) == batches
    assert sum(batches) == count


@pytest.mark.parametrize(("pod", "active"), [
    (mkpod("p"), True),
    (mkpod("r", phase="Running"), True),
    (mkpod("s", phase="Succeeded"), False),
    (mkpod("f", phase="Failed"), False),
    (mkpod("d", deleting=True), False),
])
def test_is_pod_active(pod: Any, active: bool) -> None:
    assert is_pod_active(pod) is active


@pytest.mark.parametrize(("pod", "min_ready", "available"), [
    (mkpod("nr"), 0, False),
    (mkpod("r", ready=True), 0, True),
    (mkpod("r-no-time", ready=True), 10, False),
    (mkpod("r-long", ready=True, ready_at=NOW - 30), 10, True),
    (mkpod("r-short", ready=True, ready_at=NOW - 5), 10, False),
    (mkpod("r-exact", ready=True, ready_at=NOW - 10), 10, True),
])
def test_is_pod_available(pod: Any, min_ready: int, available: bool) -> None:
    assert is_pod_available(pod, min_ready, NOW) is available


def replica_set(replicas: int = 3, min_ready: int = 0, generation: int = 4) -> apps_pb2.ReplicaSet:
    rs: apps_pb2.ReplicaSet = convert.from_dict({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid",
                     "generation": generation},
        "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "fe"},
                                           "annotations": {"note": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }, apps_pb2.ReplicaSet())
    return rs


def test_count_status() -> None:
    pods = [mkpod("a", labels={"app": "web", "tier": "fe"}, ready=True, ready_at=NOW - 60),
            mkpod("b", labels={"app": "web", "tier": "fe"}, ready=True, ready_at=NOW - 1),
            mkpod("c", labels={"app": "web"})]
    assert count_status(pods, {"app": "web", "tier": "fe"}, 30, NOW).__dict__ == {
        "replicas": 3, "fully_labeled_replicas": 2, "ready_replicas": 2,
        "available_replicas": 1}


def test_compute_status_sets_and_clears_replica_failure() -> None:
    rs = replica_set(replicas=3)
    pods = [mkpod("a", labels={"app": "web", "tier": "fe"}, ready=True)]
    failed = compute_status(rs, pods, RuntimeError("pods is forbidden: exceeded quota"), NOW)
    assert (failed.replicas, failed.ready_replicas, failed.available_replicas,
            failed.fully_labeled_replicas, failed.observed_generation) == (1, 1, 1, 1, 4)
    [cond] = failed.conditions
    assert (cond.type, cond.status, cond.reason) == (REPLICA_FAILURE, "True", "FailedCreate")
    assert "exceeded quota" in cond.message
    # the condition is not rewritten while the failure lasts
    rs.status.CopyFrom(failed)
    again = compute_status(rs, pods, RuntimeError("another message"), NOW + 10)
    assert list(again.conditions) == list(failed.conditions)
    # and goes once a pass succeeds
    rs.status.CopyFrom(again)
    ok = compute_status(rs, pods, None, NOW + 20)
    assert list(ok.conditions) == []
    assert rs.status == again  # the owner itself is untouched


def test_compute_status_failed_delete_reason() -> None:
    rs = replica_set(replicas=0)
    status = compute_status(rs, [mkpod("a")], RuntimeError("nope"), NOW)
    assert status.conditions[0].reason == "FailedDelete"


def test_pod_from_template() -> None:
    rs = replica_set()
    pod = pod_from_template(rs.spec.template, rs)
    assert pod.metadata.generate_name == "web-"
    assert pod.metadata.namespace == "default"
    assert dict(pod.metadata.labels) == {"app": "web", "tier": "fe"}
    assert dict(pod.metadata.annotations) == {"note": "x"}
    ref = controller_of(pod)
    assert ref is not None
    assert (ref.api_version, ref.kind, ref.name, ref.uid) == ("apps/v1", "ReplicaSet", "web",
                                                              "rs-uid")
    assert ref.controller and ref.block_owner_deletion
    assert pod.spec.containers[0].image == "busybox"
    assert generate_name_prefix("x" * 80) == "x" * 58


def test_flavors_read_their_selectors() -> None:
    rs = replica_set()
    assert REPLICASET.selector(rs).matches({"app": "web", "other": "1"})
    assert not REPLICASET.selector(rs).matches({"app": "db"})
    assert not REPLICASET.selector(apps_pb2.ReplicaSet()).matches({})
    rc = core_pb2.ReplicationController()
    rc.spec.selector["app"] = "web"
    assert REPLICATIONCONTROLLER.selector(rc).matches({"app": "web"})
    assert not REPLICATIONCONTROLLER.selector(core_pb2.ReplicationController()).matches({})
    assert REPLICATIONCONTROLLER.info.kind == "ReplicationController"
