"""Persistent storage end to end with REAL agents: an in-process control plane (apiserver,
scheduler with VolumeBinding, PV binder and protection, the local-path provisioner, the
ephemeral volume controller, the StatefulSet controller) and two in-process agents with the
process runtime, each keeping its local-path volumes under its own ``--volume-dir``.

The containers run this machine's ``sh`` (the ``host`` RuntimeClass) and end in
``exec sleep <N>`` with an ``N`` unique to the test, so the harness finds and sweeps them
(``tests.support.cluster.real_cluster``). What a container writes to its claim is read back
from the volume's directory on the host, where the agent put it.

Every wait is bounded; StatefulSets are deleted before the harness deletes the pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors, storageutil
from control.api.pb import apps_pb2, core_pb2, storage_pb2
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from tests.support import eventually
from tests.support.cluster import (
    NS,
    WAIT,
    Env,
    PodWatch,
    gone,
    is_ready,
    real_cluster,
    running,
    terminating,
)
from tests.support.runtimeclasses import HOST

PVC = core_pb2.PersistentVolumeClaim
PV = core_pb2.PersistentVolume
# a scheduled claim waits for its volume, then the pod for its mount: allow for both
SLOW = 2 * WAIT


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"st-{tag}-a", f"st-{tag}-b"]) as e:
        yield e


def pod_spec(env: Env, script: str, mounts: list[dict[str, Any]],
             volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "runtimeClassName": HOST,
        "containers": [{"name": "main", "image": "busybox",
                        "command": ["sh", "-c", f"{script}; exec {env.sleep}"],
                        "volumeMounts": mounts}],
    }
    if volumes is not None:
        spec["volumes"] = volumes
    return spec


def statefulset(env: Env, name: str, replicas: int) -> apps_pb2.StatefulSet:
    out: apps_pb2.StatefulSet = convert.from_dict({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         # every start of the replica leaves a line on its claim
                         "spec": pod_spec(env, "echo $(hostname) >> /data/boots",
                                          [{"name": "data", "mountPath": "/data"}])},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "16Mi"}}}}],
        }}, apps_pb2.StatefulSet())
    return out


@contextlib.asynccontextmanager
async def owned(c: ApiClient, obj: Any) -> AsyncIterator[Any]:
    """Create ``obj`` (a StatefulSet) and delete it on the way out, before the harness
    deletes pods (it would only recreate them)."""
    created = await c.create(obj)
    try:
        yield created
    finally:
        with contextlib.suppress(errors.NotFound):
            await c.delete(type(obj), obj.metadata.name, NS, propagation_policy="Orphan")


def started_twice(claim_dir: Path) -> list[str] | None:
    """The lines of a replica's ``boots`` file once it has two (the first start's and the
    next one's, written to the same claim)."""
    lines = (claim_dir / "boots").read_text().splitlines()
    return lines if len(lines) >= 2 else None


async def scale(c: ApiClient, name: str, replicas: int) -> None:
    def mutate(ss: apps_pb2.StatefulSet) -> bool:
        ss.spec.replicas = replicas
        return True

    await guaranteed_update(c, apps_pb2.StatefulSet, NS, name, mutate)


async def ready_pods(c: ApiClient, app: str, n: int) -> list[Any] | None:
    ps = [p for p in (await c.list(core_pb2.Pod, NS, label_selector=f"app={app}")).items
          if not terminating(p)]
    if len(ps) == n and all(running(p) and is_ready(p) for p in ps):
        return sorted(ps, key=lambda p: p.metadata.name)
    return None


async def volume_of(c: ApiClient, claim: str) -> PV | None:
    got: PVC = await c.get(PVC, claim, NS)
    if got.status.phase != "Bound":
        return None
    pv: PV = await c.get(PV, got.spec.volume_name)
    return pv


def order_check(log: list[str]) -> Callable[[dict[str, Any], str, Any], str]:
    """A PodWatch check recording creations and the first sign of each deletion; a pod
    created while a lower ordinal is not Ready is a violation (OrderedReady)."""
    deleting: set[str] = set()

    def check(pods: dict[str, Any], kind: str, pod: Any) -> str:
        if pod is None:
            return ""
        name = pod.metadata.name
        if kind == "ADDED":
            log.append(f"+{name}")
            ordinal = int(name.rpartition("-")[2])
            prefix = name.rpartition("-")[0]
            for i in range(ordinal):
                other = pods.get(f"{prefix}-{i}")
                if other is None or not is_ready(other):
                    return f"{name} created while {prefix}-{i} was not Ready"
        elif (kind == "DELETED" or terminating(pod)) and pod.metadata.uid not in deleting:
            deleting.add(pod.metadata.uid)
            log.append(f"-{name}")
        return ""

    return check


async def test_statefulset_claims_order_identity_and_data(env: Env) -> None:
    c = env.client
    log: list[str] = []
    async with PodWatch(c, NS, order_check(log)) as watch, \
            owned(c, statefulset(env, "db", 3)):
        ps = await eventually(lambda: ready_pods(c, "db", 3), "db-0..2 Ready", timeout=3 * SLOW)
        assert log == ["+db-0", "+db-1", "+db-2"], log
        homes: dict[str, tuple[str, Path]] = {}
        for p in ps:
            pv = await volume_of(c, f"data-{p.metadata.name}")
            assert pv is not None
            node = storageutil.pinned_node(pv)
            assert node == p.spec.node_name
            path = Path(pv.spec.host_path.path)
            assert path.parent == env.tmp / node / "storage"
            assert path.name.endswith(f"_default_data-{p.metadata.name}")
            assert (path / "boots").read_text() == f"{p.metadata.name}\n"
            homes[p.metadata.name] = (node, path)
        # a deleted replica comes back under its name, on its node, to its data
        old = next(p for p in ps if p.metadata.name == "db-1")
        await c.delete(core_pb2.Pod, "db-1", NS, uid=old.metadata.uid)

        async def back() -> Any:
            got = await ready_pods(c, "db", 3)
            new = next((p for p in got or [] if p.metadata.name == "db-1"), None)
            return new if new is not None and new.metadata.uid != old.metadata.uid else None

        again = await eventually(back, "db-1 again", timeout=SLOW)
        node, path = homes["db-1"]
        assert again.spec.node_name == node
        boots = await eventually(lambda: started_twice(path),
                                 "the second start's line beside the first")
        assert set(boots) == {"db-1"}, boots
        # scale down: the highest ordinal first; the claims stay
        await scale(c, "db", 1)
        await eventually(lambda: ready_pods(c, "db", 1), "only db-0", timeout=SLOW)
        deletions = [e for e in log if e.startswith("-")]
        assert deletions[-2:] == ["-db-2", "-db-1"], log
        for n in ("db-0", "db-1", "db-2"):
            assert (await c.get(PVC, f"data-{n}", NS)).status.phase == "Bound"
            assert homes[n][1].is_dir()
        assert not watch.violations, watch.violations


async def test_partitioned_rolling_update_keeps_lower_ordinals(env: Env) -> None:
    c = env.client
    ss = statefulset(env, "part", 3)
    ss.spec.update_strategy.type = "RollingUpdate"
    ss.spec.update_strategy.rolling_update.partition = 2
    async with owned(c, ss):
        before = await eventually(lambda: ready_pods(c, "part", 3), "part-0..2 Ready",
                                  timeout=3 * SLOW)
        old_hash = {p.metadata.labels["controller-revision-hash"] for p in before}
        assert len(old_hash) == 1
        def new_version(ss: apps_pb2.StatefulSet) -> bool:
            ss.spec.template.spec.containers[0].env.add(name="VERSION", value="2")
            return True

        await guaranteed_update(c, apps_pb2.StatefulSet, NS, "part", new_version)

        async def rolled() -> list[Any] | None:
            s = await c.get(apps_pb2.StatefulSet, "part", NS)
            ps = await ready_pods(c, "part", 3)
            if ps is None or s.status.update_revision == s.status.current_revision:
                return None
            new = [p for p in ps
                   if p.metadata.labels["controller-revision-hash"] == s.status.update_revision]
            return ps if [p.metadata.name for p in new] == ["part-2"] else None

        ps = await eventually(rolled, "only part-2 on the new revision", timeout=SLOW)
        for p in ps[:2]:
            assert p.metadata.labels["controller-revision-hash"] in old_hash
            assert p.metadata.uid in {b.metadata.uid for b in before}
        # part-2 came back to its own claim
        pv = await volume_of(c, "data-part-2")
        assert pv is not None
        boots = await eventually(lambda: started_twice(Path(pv.spec.host_path.path)),
                                 "part-2's second start on its claim")
        assert set(boots) == {"part-2"}, boots


async def test_claim_retention_policy_deletes_claims_and_their_directories(env: Env) -> None:
    c = env.client
    ss = statefulset(env, "ret", 2)
    ss.spec.persistent_volume_claim_retention_policy.when_deleted = "Delete"
    ss.spec.persistent_volume_claim_retention_policy.when_scaled = "Delete"
    async with owned(c, ss):
        await eventually(lambda: ready_pods(c, "ret", 2), "ret-0..1 Ready", timeout=2 * SLOW)
        pvs = {n: await volume_of(c, f"data-{n}") for n in ("ret-0", "ret-1")}
        dirs = {n: Path(v.spec.host_path.path) for n, v in pvs.items() if v is not None}
        assert all(d.is_dir() for d in dirs.values()) and len(dirs) == 2
        await scale(c, "ret", 1)
        # whenScaled Delete: the condemned replica's claim, volume and directory go
        await eventually(lambda: gone(c, PVC, "data-ret-1"), "data-ret-1 gone", timeout=SLOW)
        await eventually(lambda: not dirs["ret-1"].exists(), "ret-1's directory removed",
                         timeout=SLOW)
        assert dirs["ret-0"].is_dir()
        await c.delete(apps_pb2.StatefulSet, "ret", NS, propagation_policy="Background")
        # whenDeleted Delete: the rest goes with the set
        await eventually(lambda: gone(c, PVC, "data-ret-0"), "data-ret-0 gone", timeout=SLOW)
        await eventually(lambda: not dirs["ret-0"].exists(), "ret-0's directory removed",
                         timeout=SLOW)


async def test_claim_protection_and_reclaim_policies(env: Env) -> None:
    c = env.client
    keep: storage_pb2.StorageClass = convert.from_dict(
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "local-keep"}, "provisioner": storageutil.PROVISIONER,
         "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Retain"},
        storage_pb2.StorageClass())
    await c.create(keep)
    for name, cls in (("scratch", None), ("kept", "local-keep")):
        spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": "8Mi"}}}
        if cls:
            spec["storageClassName"] = cls
        await c.create(convert.from_dict({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                          "metadata": {"name": name, "namespace": NS},
                                          "spec": spec}, PVC()))
    pod: core_pb2.Pod = convert.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user", "namespace": NS},
        "spec": pod_spec(env, "echo a > /s/f; echo b > /k/f; echo c > /e/f; "
                              "mkdir -p /s/sub && echo d > /s/sub/g",
                         [{"name": "s", "mountPath": "/s"}, {"name": "k", "mountPath": "/k"},
                          {"name": "e", "mountPath": "/e"},
                          {"name": "s", "mountPath": "/ro", "readOnly": True}],
                         [{"name": "s", "persistentVolumeClaim": {"claimName": "scratch"}},
                          {"name": "k", "persistentVolumeClaim": {"claimName": "kept"}},
                          {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {
                              "accessModes": ["ReadWriteOnce"],
                              "resources": {"requests": {"storage": "8Mi"}}}}}}])},
        core_pb2.Pod())
    await c.create(pod)
    [running_pod] = await eventually(lambda: _ready(c, "user"), "the pod running",
                                     timeout=SLOW)
    vols = {n: await volume_of(c, n) for n in ("scratch", "kept", "user-e")}
    assert all(v is not None for v in vols.values()), vols
    paths = {n: Path(v.spec.host_path.path) for n, v in vols.items() if v is not None}
    await eventually(lambda: all((p / "f").exists() for p in paths.values()), "files written")
    assert (paths["kept"] / "f").read_text() == "b\n"
    assert {storageutil.pinned_node(v) for v in vols.values() if v is not None} == {
        running_pod.spec.node_name}
    # a claim deleted while in use waits for its pod
    for n in ("scratch", "kept"):
        await c.delete(PVC, n, NS)
    await asyncio.sleep(2)
    for n in ("scratch", "kept"):
        got = await c.get(PVC, n, NS)
        assert terminating(got) and "kubernetes.io/pvc-protection" in got.metadata.finalizers
    assert running(await c.get(core_pb2.Pod, "user", NS))
    await c.delete(core_pb2.Pod, "user", NS)
    for n in ("scratch", "kept", "user-e"):
        await eventually(lambda n=n: gone(c, PVC, n), f"claim {n} gone", timeout=SLOW)
    # Delete: the volume and its directory go; Retain: Released, the data stays
    for n in ("scratch", "user-e"):
        v = vols[n]
        assert v is not None
        await eventually(lambda v=v: gone(c, PV, v.metadata.name, ""), f"volume of {n} gone",
                         timeout=SLOW)
        assert not paths[n].exists()
    kept = vols["kept"]
    assert kept is not None

    async def released() -> bool:
        return (await c.get(PV, kept.metadata.name)).status.phase == "Released"

    await eventually(released, "the Retain volume Released", timeout=SLOW)
    assert (paths["kept"] / "f").read_text() == "b\n"


async def _ready(c: ApiClient, name: str) -> list[Any] | None:
    try:
        p = await c.get(core_pb2.Pod, name, NS)
    except errors.NotFound:
        return None
    return [p] if running(p) and is_ready(p) else None


async def test_unsupported_volume_source_is_reported(env: Env) -> None:
    c = env.client
    await c.create(convert.from_dict(
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "remote"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "nfs": {"server": "127.0.0.1", "path": "/exports"}}}, PV()))
    await c.create(convert.from_dict(
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "remote", "namespace": NS},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                  "resources": {"requests": {"storage": "1Gi"}}}}, PVC()))
    await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nfs-user", "namespace": NS},
        "spec": pod_spec(env, "true", [{"name": "r", "mountPath": "/r"}],
                         [{"name": "r", "persistentVolumeClaim": {"claimName": "remote"}}])},
        core_pb2.Pod()))

    async def reported() -> str:
        evs = (await c.list_all("events", NS)).items
        return next((e.message for e in evs if e.involved_object.name == "nfs-user"
                     and e.reason == "FailedMount" and "not supported" in e.message), "")

    message = await eventually(reported, "a FailedMount Event", timeout=SLOW)
    assert 'persistentvolume "remote": nfs volumes are not supported by this agent' in message

    async def waits() -> bool:
        pod = await c.get(core_pb2.Pod, "nfs-user", NS)
        return any(s.state.waiting.reason == "ContainerCreating"
                   and "not supported" in s.state.waiting.message
                   for s in pod.status.container_statuses)

    # the status follows the Event at the status manager's pace
    await eventually(waits, "the container waiting, saying why", timeout=SLOW)
