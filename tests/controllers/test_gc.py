"""The garbage collector: owner-graph decisions as tables, then propagation policies end to
end against a real control plane (the server runs the controller manager; the pods here
are unbound, so deleting them is immediate)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import apps_pb2, core_pb2, meta_pb2
from control.controllers.gc import (
    DANGLING,
    SOLID,
    WAITING,
    GarbageCollector,
    blocks,
    decide,
    deletion_policy,
    is_deleting_dependents,
)
from control.controllers.manager import ControllerManager
from control.controllers.replicaset import ReplicaSetController
from tests.conftest import Cluster, running_cluster
from tests.support import eventually
from tests.support.replicasets import count_is, live_pods, replica_set

# -- pure decisions ------------------------------------------------------------------------


@pytest.mark.parametrize(("states", "action"), [
    ({}, "keep"),
    ({"a": SOLID}, "keep"),
    ({"a": SOLID, "b": SOLID}, "keep"),
    ({"a": DANGLING}, "delete"),
    ({"a": WAITING}, "delete"),
    ({"a": DANGLING, "b": WAITING}, "delete"),
    ({"a": SOLID, "b": DANGLING}, "unlink"),  # another live owner: it survives
    ({"a": SOLID, "b": WAITING}, "unlink"),
])
def test_decide(states: dict[str, str], action: str) -> None:
    assert decide(states) == action


def meta_obj(finalizers: tuple[str, ...] = (), deleting: bool = False,
             refs: tuple[tuple[str, bool | None], ...] = ()) -> core_pb2.ConfigMap:
    o = core_pb2.ConfigMap()
    o.metadata.finalizers.extend(finalizers)
    if deleting:
        o.metadata.deletion_timestamp.seconds = 1
    for uid, block in refs:
        r = o.metadata.owner_references.add(uid=uid, kind="ConfigMap", name=uid)
        if block is not None:
            r.block_owner_deletion = block
    return o


@pytest.mark.parametrize(("obj", "waiting", "has_deps", "policy"), [
    (meta_obj(), False, False, "Background"),
    (meta_obj(), True, False, "Background"),
    (meta_obj(), True, True, "Foreground"),
    (meta_obj(), False, True, "Background"),
    (meta_obj(("orphan",)), False, True, "Orphan"),
    (meta_obj(("foregroundDeletion",)), False, False, "Foreground"),
])
def test_deletion_policy(obj: Any, waiting: bool, has_deps: bool, policy: str) -> None:
    assert deletion_policy(obj, waiting, has_deps) == policy


def test_blocks_and_deleting_dependents() -> None:
    dep = meta_obj(refs=(("a", True), ("b", False), ("c", None)))
    assert blocks(dep, "a")
    assert not blocks(dep, "b")
    assert not blocks(dep, "c")
    assert not blocks(dep, "zzz")
    assert is_deleting_dependents(meta_obj(("foregroundDeletion",), deleting=True))
    assert not is_deleting_dependents(meta_obj(("foregroundDeletion",)))
    assert not is_deleting_dependents(meta_obj(("orphan",), deleting=True))


# -- end to end ----------------------------------------------------------------------------


def configmap(name: str, *owners: Any, block: bool = True) -> core_pb2.ConfigMap:
    cm: core_pb2.ConfigMap = convert.from_dict(
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": name, "namespace": "default"}}, core_pb2.ConfigMap())
    for o in owners:
        kind = type(o).__name__
        api_version = "apps/v1" if isinstance(o, apps_pb2.ReplicaSet) else "v1"
        cm.metadata.owner_references.append(meta_pb2.OwnerReference(
            api_version=api_version, kind=kind, name=o.metadata.name, uid=o.metadata.uid,
            block_owner_deletion=block))
    return cm


async def gone(c: Any, resource: str, name: str) -> bool:
    try:
        await c.get(resource, name, "default")
    except errors.NotFound:
        return True
    return False


async def test_background_deletion_removes_the_pods(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(replica_set("bg", 3))
    await eventually(lambda: count_is(c, "app=bg", 3))
    await c.delete(apps_pb2.ReplicaSet, "bg", "default", propagation_policy="Background")
    assert await gone(c, "replicasets", "bg")
    await eventually(lambda: count_is(c, "app=bg", 0))


async def test_default_policy_is_background(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(replica_set("dflt", 2))
    await eventually(lambda: count_is(c, "app=dflt", 2))
    await c.delete(apps_pb2.ReplicaSet, "dflt", "default")
    await eventually(lambda: count_is(c, "app=dflt", 0))


async def test_foreground_deletion_keeps_the_owner_until_the_pods_are_gone(
        cluster: Cluster) -> None:
    c = cluster.client
    await c.create(replica_set("fg", 3))
    await eventually(lambda: count_is(c, "app=fg", 3))
    # a configmap that blocks too, and one that does not
    rs = await c.get(apps_pb2.ReplicaSet, "fg", "default")
    keep = configmap("fg-held", rs)
    keep.metadata.finalizers.append("example.com/hold")
    await c.create(keep)
    await c.create(configmap("fg-loose", rs, block=False))
    _, pending = await c.delete(apps_pb2.ReplicaSet, "fg", "default",
                                propagation_policy="Foreground")
    assert pending
    await eventually(lambda: count_is(c, "app=fg", 0))
    await eventually(lambda: gone(c, "configmaps", "fg-loose"))
    # the held configmap is deleted but its finalizer keeps it, so the owner stays
    await asyncio.sleep(0.5)
    held = await c.get(core_pb2.ConfigMap, "fg-held", "default")
    assert held.metadata.HasField("deletion_timestamp")
    owner = await c.get(apps_pb2.ReplicaSet, "fg", "default")
    assert owner.metadata.HasField("deletion_timestamp")
    assert "foregroundDeletion" in owner.metadata.finalizers
    # the replica set does not replace pods while it is being deleted
    assert await count_is(c, "app=fg", 0)
    del held.metadata.finalizers[:]
    await c.update(held)
    await eventually(lambda: gone(c, "replicasets", "fg"))


async def test_orphan_deletion_keeps_the_pods_without_owner(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(replica_set("orph", 2))
    await eventually(lambda: count_is(c, "app=orph", 2))
    await c.delete(apps_pb2.ReplicaSet, "orph", "default", propagation_policy="Orphan")
    await eventually(lambda: gone(c, "replicasets", "orph"))
    await asyncio.sleep(0.3)
    pods = await live_pods(c, "app=orph")
    assert len(pods) == 2
    assert all(not p.metadata.owner_references for p in pods)

    # a new replica set with the same selector adopts them instead of creating more
    rs = await c.create(replica_set("orph", 2))

    async def adopted() -> bool:
        ps = await live_pods(c, "app=orph")
        return len(ps) == 2 and all(
            p.metadata.owner_references and p.metadata.owner_references[0].uid
            == rs.metadata.uid for p in ps)

    await eventually(adopted)


async def test_dependent_with_another_live_owner_survives(cluster: Cluster) -> None:
    c = cluster.client
    a = await c.create(configmap("owner-a"))
    b = await c.create(configmap("owner-b"))
    await c.create(configmap("shared", a, b))
    await c.delete(core_pb2.ConfigMap, "owner-a", "default")

    async def unlinked() -> bool:
        s = await c.get(core_pb2.ConfigMap, "shared", "default")
        return [r.uid for r in s.metadata.owner_references] == [b.metadata.uid]

    await eventually(unlinked)
    # with the last owner gone, it goes too
    await c.delete(core_pb2.ConfigMap, "owner-b", "default")
    await eventually(lambda: gone(c, "configmaps", "shared"))


async def test_foreground_owner_not_blocked_by_a_dependent_another_owner_keeps(
        cluster: Cluster) -> None:
    c = cluster.client
    a = await c.create(configmap("fa"))
    b = await c.create(configmap("fb"))
    await c.create(configmap("kept", a, b))
    await c.delete(core_pb2.ConfigMap, "fa", "default", propagation_policy="Foreground")
    await eventually(lambda: gone(c, "configmaps", "fa"))
    kept = await c.get(core_pb2.ConfigMap, "kept", "default")
    assert [r.uid for r in kept.metadata.owner_references] == [b.metadata.uid]


async def test_dangling_owner_uid_mismatch_and_missing_owner(cluster: Cluster) -> None:
    c = cluster.client
    # an owner that never existed
    ghost = core_pb2.ConfigMap(metadata=meta_pb2.ObjectMeta(name="ghost", uid="no-such-uid"))
    await c.create(configmap("haunted", ghost))
    await eventually(lambda: gone(c, "configmaps", "haunted"))
    # a namesake of the owner (same name, another uid) does not keep a dependent alive
    await c.create(configmap("namesake"))
    stale = core_pb2.ConfigMap(metadata=meta_pb2.ObjectMeta(name="namesake", uid="old-uid"))
    await c.create(configmap("stale-dep", stale))
    await eventually(lambda: gone(c, "configmaps", "stale-dep"))
    assert not await gone(c, "configmaps", "namesake")


async def test_cycles_do_not_block_deletion(cluster: Cluster) -> None:
    c = cluster.client
    x = await c.create(configmap("cyc-x"))
    y = await c.create(configmap("cyc-y", x))
    # close the cycle: x owned by y
    x = await c.get(core_pb2.ConfigMap, "cyc-x", "default")
    x.metadata.owner_references.append(meta_pb2.OwnerReference(
        api_version="v1", kind="ConfigMap", name="cyc-y", uid=y.metadata.uid,
        block_owner_deletion=True))
    await c.update(x)
    await asyncio.sleep(0.3)  # both owners alive: nothing happens
    assert not await gone(c, "configmaps", "cyc-x")
    assert not await gone(c, "configmaps", "cyc-y")
    await c.delete(core_pb2.ConfigMap, "cyc-x", "default", propagation_policy="Foreground")
    await eventually(lambda: gone(c, "configmaps", "cyc-x"))
    await eventually(lambda: gone(c, "configmaps", "cyc-y"))

    # and in the background
    p = await c.create(configmap("cyc-p"))
    q = await c.create(configmap("cyc-q", p))
    p = await c.get(core_pb2.ConfigMap, "cyc-p", "default")
    p.metadata.owner_references.append(meta_pb2.OwnerReference(
        api_version="v1", kind="ConfigMap", name="cyc-q", uid=q.metadata.uid))
    await c.update(p)
    await c.delete(core_pb2.ConfigMap, "cyc-p", "default")
    await eventually(lambda: gone(c, "configmaps", "cyc-q"))


async def test_foreground_cascades_through_a_chain(cluster: Cluster) -> None:
    c = cluster.client
    top = await c.create(configmap("top"))
    mid = await c.create(configmap("mid", top))
    held = configmap("leaf", mid)
    held.metadata.finalizers.append("example.com/hold")
    await c.create(held)
    await c.delete(core_pb2.ConfigMap, "top", "default", propagation_policy="Foreground")

    async def mid_waits() -> bool:
        m = await c.get(core_pb2.ConfigMap, "mid", "default")
        return "foregroundDeletion" in m.metadata.finalizers

    await eventually(mid_waits)  # mid has a dependent: it is deleted in the foreground too
    assert not await gone(c, "configmaps", "top")
    leaf = await c.get(core_pb2.ConfigMap, "leaf", "default")
    del leaf.metadata.finalizers[:]
    await c.update(leaf)
    for name in ("leaf", "mid", "top"):
        await eventually(lambda n=name: gone(c, "configmaps", n))  # type: ignore[misc]


async def test_kinds_only_the_collector_watches_come_metadata_only(tmp_path: Path) -> None:
    """Built after the others whatever the order given, the collector shares the full
    informers other controllers watch and reads every other kind metadata-only; owners
    and dependents seen that way are collected all the same (foreground included)."""
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as cl:
        manager = ControllerManager(cl.client, controllers={
            "garbagecollector": GarbageCollector, "replicaset": ReplicaSetController})
        await manager.start()
        try:
            for shared in ("replicasets", "pods"):
                assert shared in manager.informers and shared not in manager.metadata_informers
            for alone in ("secrets", "configmaps", "deployments"):
                assert alone in manager.metadata_informers and alone not in manager.informers
            c = cl.client
            synced = manager.metadata_informers["secrets"].indexer
            top = await c.create(secret("top"))
            mid = await c.create(secret("mid", top))
            held = secret("leaf", mid)
            held.metadata.finalizers.append("example.com/hold")
            await c.create(held)
            await eventually(lambda: len(synced.items()) >= 3)
            assert all(not s.data for s in synced.items().values())  # metadata only
            await c.delete(core_pb2.Secret, "top", "default", propagation_policy="Foreground")

            async def mid_waits() -> bool:
                m = await c.get(core_pb2.Secret, "mid", "default")
                return "foregroundDeletion" in m.metadata.finalizers

            await eventually(mid_waits)
            assert not await gone(c, "secrets", "top")
            leaf = await c.get(core_pb2.Secret, "leaf", "default")
            del leaf.metadata.finalizers[:]
            await c.update(leaf)
            for name in ("leaf", "mid", "top"):
                await eventually(lambda name=name: gone(c, "secrets", name))  # type: ignore[misc]
        finally:
            await manager.stop()


def secret(name: str, *owners: Any) -> core_pb2.Secret:
    s = core_pb2.Secret(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"),
                        data={"key": b"value"})
    for o in owners:
        s.metadata.owner_references.append(meta_pb2.OwnerReference(
            api_version="v1", kind="Secret", name=o.metadata.name, uid=o.metadata.uid,
            block_owner_deletion=True))
    return s
