"""The PersistentVolume binder against a real apiserver: binding, pre-binding, phases and
reclaim."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from control.api import convert
from control.api.pb import core_pb2, storage_pb2
from control.controllers.manager import ControllerManager
from control.controllers.volume_binding import VolumeBindingController
from control.controllers.volume_protection import VolumeProtectionController
from tests.conftest import Cluster, running_cluster
from tests.support import eventually
from tests.support.volumes import claim, is_, pv_phase, volume


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    # static volumes only: no default StorageClass for claims that name none
    async with running_cluster(tmp_path / "data",
                               disable={"scheduler", "controllers", "local-storage"}) as c:
        # the protection controller too: admission gives claims and volumes its finalizers
        manager = ControllerManager(c.client, controllers={
            "persistentvolume-binder": VolumeBindingController,
            "persistentvolume-protection": VolumeProtectionController})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


async def pvc_state(c: Any, name: str) -> tuple[str, str]:
    got = await c.get(core_pb2.PersistentVolumeClaim, name, "default")
    return str(got.status.phase), str(got.spec.volume_name)


async def test_binds_the_smallest_fit_and_reclaims(api: Cluster) -> None:
    c = api.client
    await c.create(volume("big", "10Gi"))
    await c.create(volume("small", "2Gi", policy="Delete"))
    await eventually(lambda: is_(pv_phase(c, "big"), "Available"))
    await c.create(claim("data", "1Gi"))
    await eventually(lambda: is_(pvc_state(c, "data"), ("Bound", "small")))
    await eventually(lambda: is_(pv_phase(c, "small"), "Bound"))
    got = await c.get(core_pb2.PersistentVolumeClaim, "data", "default")
    assert got.status.capacity["storage"].string == "2Gi"
    assert list(got.status.access_modes) == ["ReadWriteOnce"]
    pv = await c.get(core_pb2.PersistentVolume, "small")
    assert (pv.spec.claim_ref.name, pv.spec.claim_ref.uid) == ("data", got.metadata.uid)
    # too big for anything: Pending, explained
    await c.create(claim("huge", "100Gi"))

    async def explained() -> bool:
        evs = (await c.list_all("events", "default")).items
        return any(e.reason == "FailedBinding" and e.involved_object.name == "huge"
                   for e in evs)

    await eventually(explained)
    assert (await pvc_state(c, "huge")) == ("Pending", "")
    # reclaim Delete: the volume goes with its claim
    await c.delete(core_pb2.PersistentVolumeClaim, "data", "default")
    await eventually(lambda: is_(pv_phase(c, "small"), "<gone>"))
    # reclaim Retain: Released, and not bound again
    await c.create(claim("keep", "5Gi"))
    await eventually(lambda: is_(pvc_state(c, "keep"), ("Bound", "big")))
    await c.delete(core_pb2.PersistentVolumeClaim, "keep", "default")
    await eventually(lambda: is_(pv_phase(c, "big"), "Released"))
    await c.create(claim("again", "5Gi"))
    await eventually(explained)
    assert (await pvc_state(c, "again")) == ("Pending", "")


async def test_pre_binding_and_wait_for_first_consumer(api: Cluster) -> None:
    c = api.client
    await c.create(volume("reserved", "1Gi", claimRef={"name": "mine", "namespace": "default"}))
    await c.create(claim("other", "1Gi"))
    await c.create(claim("mine", "1Gi"))
    await eventually(lambda: is_(pvc_state(c, "mine"), ("Bound", "reserved")))
    assert (await pvc_state(c, "other")) == ("Pending", "")
    # a claim naming its volume
    await c.create(volume("named", "1Gi"))
    await c.create(claim("by-name", "1Gi", volumeName="named"))
    await eventually(lambda: is_(pvc_state(c, "by-name"), ("Bound", "named")))
    sc: storage_pb2.StorageClass = convert.from_dict(
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "late"}, "provisioner": "example.com/none",
         "volumeBindingMode": "WaitForFirstConsumer"}, storage_pb2.StorageClass())
    await c.create(sc)
    # a free volume that fits does not bind a claim waiting for its first consumer ...
    await c.create(volume("free-late", "1Gi", storageClassName="late"))
    await c.create(claim("later", "1Gi", storageClassName="late"))

    async def waiting() -> bool:
        evs = (await c.list_all("events", "default")).items
        return any(e.reason == "WaitForFirstConsumer" and e.involved_object.name == "later"
                   for e in evs)

    await eventually(waiting)
    assert (await pvc_state(c, "later")) == ("Pending", "")
    # ... until the scheduler writes the volume's claimRef (its VolumeBinding PreBind)
    later = await c.get(core_pb2.PersistentVolumeClaim, "later", "default")
    chosen = await c.get(core_pb2.PersistentVolume, "free-late")
    chosen.spec.claim_ref.name = "later"
    chosen.spec.claim_ref.namespace = "default"
    chosen.spec.claim_ref.uid = later.metadata.uid
    await c.update(chosen)
    await eventually(lambda: is_(pvc_state(c, "later"), ("Bound", "free-late")))
