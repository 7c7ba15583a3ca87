"""The StatefulSet controller against a real apiserver (no scheduler, no agents): pods
become Running and Ready when the test says so; the garbage collector runs beside it for
the claim retention policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import apps_pb2, core_pb2
from control.api.timeutil import now_timestamp
from control.controllers import statefulset_util as ssu
from control.controllers.gc import GarbageCollector
from control.controllers.manager import ControllerManager
from control.controllers.statefulset import StatefulSetController
from tests.conftest import Cluster, running_cluster
from tests.support import eventually


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        manager = ControllerManager(c.client, controllers={
            "statefulset": StatefulSetController, "garbagecollector": GarbageCollector})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


def stateful_set(name: str, replicas: int = 3, **spec: Any) -> apps_pb2.StatefulSet:
    body: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "c", "image": "busybox",
                                              "env": [{"name": "V", "value": "1"}]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                  "spec": {"accessModes": ["ReadWriteOnce"], "resources": {
                                      "requests": {"storage": "1Mi"}}}}],
        **spec}
    out: apps_pb2.StatefulSet = convert.from_dict(
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": name, "namespace": "default"}, "spec": body},
        apps_pb2.StatefulSet())
    return out


async def change(c: Any, name: str, edit: Any) -> None:
    """Change the spec (retrying while the controller's status writes get between)."""
    for _ in range(10):
        ss = await c.get(apps_pb2.StatefulSet, name, "default")
        edit(ss.spec)
        try:
            await c.update(ss)
            return
        except errors.Conflict:
            continue
    raise AssertionError("the StatefulSet kept changing")


async def live(c: Any, app: str) -> dict[str, core_pb2.Pod]:
    items = (await c.list_all("pods", "default", label_selector=f"app={app}")).items
    return {p.metadata.name: p for p in items if not p.metadata.HasField("deletion_timestamp")}


async def names(c: Any, app: str) -> list[str]:
    return sorted(await live(c, app))


async def ready(c: Any, name: str) -> None:
    fresh = await c.get(core_pb2.Pod, name, "default")
    fresh.status.phase = "Running"
    cond = fresh.status.conditions.add(type="Ready", status="True")
    cond.last_transition_time.CopyFrom(now_timestamp())
    await c.update_status(fresh)


def is_ready(p: core_pb2.Pod) -> bool:
    return any(x.type == "Ready" and x.status == "True" for x in p.status.conditions)


async def claims(c: Any) -> dict[str, core_pb2.PersistentVolumeClaim]:
    items = (await c.list_all("persistentvolumeclaims", "default")).items
    return {p.metadata.name: p for p in items if not p.metadata.HasField("deletion_timestamp")}


async def status(c: Any, name: str) -> apps_pb2.StatefulSetStatus:
    out: apps_pb2.StatefulSetStatus = (await c.get(apps_pb2.StatefulSet, name,
                                                   "default")).status
    return out


async def bring_up(c: Any, app: str, n: int) -> None:
    """OrderedReady: each pod appears only once the one before it is Ready."""
    for i in range(n):
        want = [f"{app}-{k}" for k in range(i + 1)]

        async def appeared(want: list[str] = want) -> bool:
            return await names(c, app) == want

        await eventually(appeared)
        await ready(c, f"{app}-{i}")


async def test_ordered_identity_storage_and_scale_down(api: Cluster) -> None:
    c = api.client
    await c.create(stateful_set("web"))
    await bring_up(c, "web", 3)
    pod = (await live(c, "web"))["web-1"]
    assert pod.metadata.labels[ssu.POD_NAME_LABEL] == "web-1"
    assert pod.metadata.labels[ssu.POD_INDEX_LABEL] == "1"
    assert (pod.spec.hostname, pod.spec.subdomain) == ("web-1", "web")
    vols = {v.name: v.persistent_volume_claim.claim_name for v in pod.spec.volumes
            if v.HasField("persistent_volume_claim")}
    assert vols == {"data": "data-web-1"}
    assert sorted(await claims(c)) == ["data-web-0", "data-web-1", "data-web-2"]

    async def counted() -> bool:
        s = await status(c, "web")
        return (s.replicas, s.ready_replicas, s.available_replicas, s.updated_replicas) == (
            3, 3, 3, 3) and s.current_revision == s.update_revision != ""

    await eventually(counted)
    # a failed pod comes back under its name, with its claim
    old_uid = pod.metadata.uid
    failed = await c.get(core_pb2.Pod, "web-1", "default")
    failed.status.phase = "Failed"
    await c.update_status(failed)

    async def replaced() -> bool:
        p = (await live(c, "web")).get("web-1")
        return p is not None and p.metadata.uid != old_uid

    await eventually(replaced)
    await ready(c, "web-1")
    # scale down: the highest ordinal goes; claims are retained
    await change(c, "web", lambda s: setattr(s, "replicas", 2))
    await eventually(lambda: _names_are(c, "web", ["web-0", "web-1"]))
    await change(c, "web", lambda s: setattr(s, "replicas", 1))
    await eventually(lambda: _names_are(c, "web", ["web-0"]))
    assert sorted(await claims(c)) == ["data-web-0", "data-web-1", "data-web-2"]


async def _names_are(c: Any, app: str, want: list[str]) -> bool:
    return await names(c, app) == want


async def test_partitioned_rolling_update(api: Cluster) -> None:
    c = api.client
    await c.create(stateful_set("db", volumeClaimTemplates=[], podManagementPolicy="Parallel"))
    await eventually(lambda: _names_are(c, "db", ["db-0", "db-1", "db-2"]))
    for n in ("db-0", "db-1", "db-2"):
        await ready(c, n)
    await eventually(lambda: _status_is(c, "db", ready=3))
    first = (await status(c, "db")).update_revision

    def new_version(spec: Any) -> None:
        spec.template.spec.containers[0].env[0].value = "2"
        spec.update_strategy.rolling_update.partition = 2

    await change(c, "db", new_version)

    def rev(p: core_pb2.Pod) -> str:
        return str(p.metadata.labels[ssu.REVISION_HASH_LABEL])

    async def top_updated() -> bool:
        pods = await live(c, "db")
        return len(pods) == 3 and rev(pods["db-2"]) != first
    await eventually(top_updated)
    await ready(c, "db-2")
    await eventually(lambda: _status_is(c, "db", ready=3, updated=1, current=2))
    s = await status(c, "db")
    assert s.current_revision == first != s.update_revision
    assert {rev(p) for n, p in (await live(c, "db")).items() if n != "db-2"} == {first}
    # the partition down to 0: the rest follow, highest first, one at a time
    await change(c, "db", lambda s: setattr(s.update_strategy.rolling_update, "partition", 0))
    for n in ("db-1", "db-0"):
        async def updated(n: str = n) -> bool:
            p = (await live(c, "db")).get(n)
            return p is not None and rev(p) != first and not is_ready(p)
        await eventually(updated)
        await ready(c, n)
    await eventually(lambda: _status_is(c, "db", ready=3, updated=3, current=3))
    s = await status(c, "db")
    assert s.current_revision == s.update_revision != first


async def _status_is(c: Any, name: str, *, ready: int, updated: int | None = None,
                     current: int | None = None) -> bool:
    s = await status(c, name)
    return (s.ready_replicas == ready and (updated is None or s.updated_replicas == updated)
            and (current is None or s.current_replicas == current))


async def test_claim_retention_policy_delete(api: Cluster) -> None:
    c = api.client
    await c.create(stateful_set("kv", 2, podManagementPolicy="Parallel",
                                persistentVolumeClaimRetentionPolicy={
                                    "whenScaled": "Delete", "whenDeleted": "Delete"}))
    await eventually(lambda: _names_are(c, "kv", ["kv-0", "kv-1"]))
    for n in ("kv-0", "kv-1"):
        await ready(c, n)
    ss = await c.get(apps_pb2.StatefulSet, "kv", "default")

    async def owned_by_set() -> bool:
        got = await claims(c)
        return sorted(got) == ["data-kv-0", "data-kv-1"] and all(
            [r.uid for r in p.metadata.owner_references] == [ss.metadata.uid]
            for p in got.values())

    await eventually(owned_by_set)
    # scaled down: the condemned replica's claim goes with its pod
    await change(c, "kv", lambda s: setattr(s, "replicas", 1))
    await eventually(lambda: _names_are(c, "kv", ["kv-0"]))

    async def claims_are(want: list[str]) -> bool:
        return sorted(await claims(c)) == want

    await eventually(lambda: claims_are(["data-kv-0"]))
    # the set deleted: its claims go too
    await c.delete(apps_pb2.StatefulSet, "kv", "default")
    await eventually(lambda: claims_are([]))
