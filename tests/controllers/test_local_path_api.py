"""The local-path StorageClass, provisioner, default-class assignment and ephemeral volume
controller against a real apiserver (the scheduler's part, the selected-node annotation, is
written by the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors, storageutil
from control.api.pb import core_pb2, storage_pb2
from control.client.client import ApiClient
from control.controllers.ephemeral_volume import EphemeralVolumeController
from control.controllers.local_path import LocalPathProvisioner
from control.controllers.manager import ControllerManager
from control.controllers.volume_binding import VolumeBindingController
from control.controllers.volume_protection import VolumeProtectionController
from tests.conftest import Cluster, running_cluster
from tests.support import eventually
from tests.support.volumes import claim

NS = "default"


@asynccontextmanager
async def storage_cluster(data: Path, **options: Any) -> AsyncIterator[Cluster]:
    async with running_cluster(data, disable={"scheduler", "controllers",
                                              *options.pop("disable", ())}, **options) as c:
        manager = ControllerManager(c.client, controllers={
            "persistentvolume-binder": VolumeBindingController,
            "persistentvolume-protection": VolumeProtectionController,
            "local-path-provisioner": LocalPathProvisioner,
            "ephemeral-volume": EphemeralVolumeController})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with storage_cluster(tmp_path / "data") as c:
        yield c


def local_claim(name: str, size: str = "1Gi", **spec: Any) -> core_pb2.PersistentVolumeClaim:
    out = claim(name, size, **spec)
    if "storageClassName" not in spec:
        out.spec.ClearField("storage_class_name")  # the default class, by admission
    return out


async def node(c: ApiClient, name: str, volume_dir: str | None) -> None:
    n = core_pb2.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    n.metadata.labels[storageutil.HOSTNAME_LABEL] = name
    if volume_dir is not None:
        n.metadata.annotations[storageutil.VOLUME_DIR_ANNOTATION] = volume_dir
    await c.create(n)


async def select_node(c: ApiClient, name: str, node_name: str) -> None:
    got = await c.get(core_pb2.PersistentVolumeClaim, name, NS)
    got.metadata.annotations[storageutil.SELECTED_NODE] = node_name
    await c.update(got)


async def reasons(c: ApiClient, name: str) -> dict[str, str]:
    evs = (await c.list_all("events", NS)).items
    return {e.reason: e.message for e in evs if e.involved_object.name == name}


async def bound(c: ApiClient, name: str) -> core_pb2.PersistentVolumeClaim | None:
    got: core_pb2.PersistentVolumeClaim = await c.get(core_pb2.PersistentVolumeClaim, name, NS)
    return got if got.status.phase == "Bound" else None


async def test_default_class_is_bootstrapped_once_and_never_overwritten(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_cluster(data, disable={"scheduler", "controllers", "dns"}) as c:
        sc = await c.client.get(storage_pb2.StorageClass, "local-path")
        assert sc.provisioner == "rancher.io/local-path"
        assert sc.volume_binding_mode == "WaitForFirstConsumer"
        assert sc.reclaim_policy == "Delete"
        assert storageutil.is_default_class(sc)
        # the user makes it an ordinary class
        sc.metadata.annotations[storageutil.DEFAULT_CLASS_ANNOTATIONS[0]] = "false"
        await c.client.update(sc)
    async with running_cluster(data, disable={"scheduler", "controllers", "dns"}) as c:
        sc = await c.client.get(storage_pb2.StorageClass, "local-path")
        assert not storageutil.is_default_class(sc)
        # deleted: back at the next start
        await c.client.delete(storage_pb2.StorageClass, "local-path")
    async with running_cluster(data, disable={"scheduler", "controllers", "dns"}) as c:
        await c.client.get(storage_pb2.StorageClass, "local-path")
    async with running_cluster(tmp_path / "other", disable={
            "scheduler", "controllers", "dns", "local-storage"}) as c:
        with pytest.raises(errors.NotFound):
            await c.client.get(storage_pb2.StorageClass, "local-path")


async def test_claims_get_the_default_class_at_creation_and_later(tmp_path: Path) -> None:
    async with storage_cluster(tmp_path / "data", disable={"local-storage"}) as cl:
        c = cl.client
        early = await c.create(local_claim("early"))
        assert not early.spec.HasField("storage_class_name")
        none = await c.create(claim("none", "1Gi"))  # storageClassName: "" means no class
        sc: storage_pb2.StorageClass = convert.from_dict(
            {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
             "metadata": {"name": "standard", "annotations": {
                 "storageclass.kubernetes.io/is-default-class": "true"}},
             "provisioner": "example.com/elsewhere"}, storage_pb2.StorageClass())
        await c.create(sc)

        async def assigned() -> bool:
            got = await c.get(core_pb2.PersistentVolumeClaim, "early", NS)
            return got.spec.storage_class_name == "standard"

        await eventually(assigned, "the default class given to an existing claim")
        late = await c.create(local_claim("late"))
        assert late.spec.storage_class_name == "standard"
        got = await c.get(core_pb2.PersistentVolumeClaim, "none", NS)
        assert got.spec.HasField("storage_class_name") and got.spec.storage_class_name == ""
        assert none.spec.storage_class_name == ""
        # a class set is immutable
        got.spec.storage_class_name = "standard"
        with pytest.raises(errors.Invalid):
            await c.update(got)
        # an external provisioner's claim says who is expected to create its volume
        await eventually(lambda: _has(reasons(c, "late"), "ExternalProvisioning"))


async def _has(got: Any, reason: str) -> bool:
    return reason in await got


async def test_provisions_on_the_selected_node_and_binds(api: Cluster, tmp_path: Path) -> None:
    c = api.client
    await node(c, "n1", str(tmp_path / "n1-volumes"))
    created = await c.create(local_claim("data", "3Gi"))
    assert created.spec.storage_class_name == "local-path"
    await eventually(lambda: _has(reasons(c, "data"), "WaitForFirstConsumer"))
    assert (await c.list(core_pb2.PersistentVolume)).items == []
    await select_node(c, "data", "n1")
    got = await eventually(lambda: bound(c, "data"), "claim bound")
    name = f"pvc-{created.metadata.uid}"
    assert got.spec.volume_name == name
    assert got.status.capacity["storage"].string == "3Gi"
    pv = await c.get(core_pb2.PersistentVolume, name)
    assert pv.spec.host_path.path == str(tmp_path / "n1-volumes" / f"{name}_default_data")
    assert storageutil.pinned_node(pv) == "n1"
    assert storageutil.CLEANUP_FINALIZER in pv.metadata.finalizers
    assert pv.spec.persistent_volume_reclaim_policy == "Delete"
    seen = await eventually(lambda: _reasons_with(c, "data", "ProvisioningSucceeded"))
    assert seen["Provisioning"] == ('External provisioner is provisioning volume for claim '
                                    '"default/data"')
    assert seen["ProvisioningSucceeded"] == f"Successfully provisioned volume {name}"


async def _reasons_with(c: ApiClient, name: str, reason: str) -> dict[str, str] | None:
    got = await reasons(c, name)
    return got if reason in got else None


async def test_refusals_and_waiting_for_the_node(api: Cluster, tmp_path: Path) -> None:
    c = api.client
    await c.create(local_claim("shared", accessModes=["ReadWriteMany"]))
    await select_node(c, "shared", "n1")
    seen = await eventually(lambda: _reasons_with(c, "shared", "ProvisioningFailed"))
    assert "access mode ReadWriteMany is not supported" in seen["ProvisioningFailed"]
    assert 'StorageClass "local-path"' in seen["ProvisioningFailed"]
    # a node not registered yet, then one without an agent's volume directory
    await c.create(local_claim("data"))
    await select_node(c, "data", "n2")
    seen = await eventually(lambda: _reasons_with(c, "data", "ProvisioningFailed"))
    assert 'node "n2" not found' in seen["ProvisioningFailed"]
    await node(c, "n2", None)

    async def no_dir() -> bool:
        got = await reasons(c, "data")
        return "advertises no volume directory" in got.get("ProvisioningFailed", "")

    await eventually(no_dir, timeout=15)
    n2 = await c.get(core_pb2.Node, "n2")
    n2.metadata.annotations[storageutil.VOLUME_DIR_ANNOTATION] = str(tmp_path / "v")
    await c.update(n2)
    await eventually(lambda: bound(c, "data"), "bound once the node says where", timeout=15)
    assert await bound(c, "shared") is None
    # an Immediate class of this provisioner cannot know the node
    sc: storage_pb2.StorageClass = convert.from_dict(
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "now"}, "provisioner": storageutil.PROVISIONER,
         "volumeBindingMode": "Immediate"}, storage_pb2.StorageClass())
    await c.create(sc)
    await c.create(local_claim("now", storageClassName="now"))
    seen = await eventually(lambda: _reasons_with(c, "now", "ProvisioningFailed"))
    assert "no node was specified" in seen["ProvisioningFailed"]


async def test_ephemeral_volume_claims_belong_to_their_pod(api: Cluster) -> None:
    c = api.client
    pod: core_pb2.Pod = convert.from_dict(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": NS},
         "spec": {"containers": [{"name": "c", "image": "busybox"}],
                  "volumes": [
                      {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                          "metadata": {"labels": {"kind": "scratch"}},
                          "spec": {"accessModes": ["ReadWriteOnce"],
                                   "resources": {"requests": {"storage": "1Gi"}}}}}},
                      {"name": "taken", "ephemeral": {"volumeClaimTemplate": {
                          "spec": {"accessModes": ["ReadWriteOnce"],
                                   "resources": {"requests": {"storage": "1Gi"}}}}}}]}},
        core_pb2.Pod())
    await c.create(claim("app-taken", "1Gi"))  # someone else's claim of that name
    created = await c.create(pod)

    async def made() -> core_pb2.PersistentVolumeClaim | None:
        try:
            got: core_pb2.PersistentVolumeClaim = await c.get(
                core_pb2.PersistentVolumeClaim, "app-scratch", NS)
        except errors.NotFound:
            return None
        return got

    got = await eventually(made, "the ephemeral claim")
    assert got.metadata.labels["kind"] == "scratch"
    assert got.spec.storage_class_name == "local-path"  # admission's default
    [ref] = got.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller) == (
        "Pod", "app", created.metadata.uid, True)
    seen = await eventually(lambda: _reasons_with(c, "app", "FailedBinding"))
    assert "PVC default/app-taken was not created for pod default/app" in seen["FailedBinding"]
