"""Claim and volume protection against a real apiserver: admission adds the finalizers,
the protection controller takes them off once nothing uses the object; claim resize
admission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2
from control.controllers.manager import ControllerManager
from control.controllers.volume_binding import VolumeBindingController
from control.controllers.volume_protection import (
    PV_PROTECTION,
    PVC_PROTECTION,
    VolumeProtectionController,
    claims_of,
    in_use,
)
from tests.conftest import Cluster, running_cluster
from tests.support import eventually
from tests.support.volumes import claim, is_, pv_phase, volume


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        manager = ControllerManager(c.client, controllers={
            "persistentvolume-binder": VolumeBindingController,
            "persistentvolume-protection": VolumeProtectionController})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


def pod(name: str, claim_name: str, phase: str = "Running") -> core_pb2.Pod:
    out: core_pb2.Pod = convert.from_dict(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
         "spec": {"containers": [{"name": "c", "image": "busybox"}],
                  "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim_name}}]},
         "status": {"phase": phase}},
        core_pb2.Pod())
    return out


@pytest.mark.parametrize(("phase", "used"), [("Running", True), ("Pending", True),
                                             ("Succeeded", False), ("Failed", False)])
def test_in_use(phase: str, used: bool) -> None:
    c = claim("data", "1Gi")
    assert claims_of(pod("p", "data")) == ["data"]
    assert in_use(c, [pod("p", "data", phase)]) is used
    assert not in_use(c, [pod("p", "other")])


async def exists(c: Any, cls: Any, name: str, ns: str = "") -> bool:
    try:
        await c.get(cls, name, ns)
    except errors.NotFound:
        return False
    return True


async def test_claim_in_use_waits_for_its_pod(api: Cluster) -> None:
    c = api.client
    await c.create(volume("vol", "1Gi"))
    created = await c.create(claim("data", "1Gi"))
    assert PVC_PROTECTION in created.metadata.finalizers
    assert PV_PROTECTION in (await c.get(core_pb2.PersistentVolume, "vol")).metadata.finalizers
    await eventually(lambda: is_(pv_phase(c, "vol"), "Bound"))
    await c.create(pod("user", "data"))
    await c.delete(core_pb2.PersistentVolumeClaim, "data", "default")
    # a bound volume deleted waits too
    await c.delete(core_pb2.PersistentVolume, "vol")
    await asyncio.sleep(0.5)
    got = await c.get(core_pb2.PersistentVolumeClaim, "data", "default")
    assert got.metadata.HasField("deletion_timestamp")
    assert await exists(c, core_pb2.PersistentVolume, "vol")
    await c.delete(core_pb2.Pod, "user", "default")
    await eventually(lambda: _not(exists(c, core_pb2.PersistentVolumeClaim, "data", "default")))
    # the claim gone: the volume is Released, no longer Bound, and may go
    await eventually(lambda: _not(exists(c, core_pb2.PersistentVolume, "vol")))


async def _not(got: Any) -> bool:
    return not await got


async def test_resize_needs_an_expandable_class(api: Cluster) -> None:
    c = api.client
    await c.create(claim("grow", "1Gi"))
    got = await c.get(core_pb2.PersistentVolumeClaim, "grow", "default")
    got.spec.resources.requests["storage"].string = "2Gi"
    with pytest.raises(errors.Forbidden, match="storageclass that provisions the pvc must "
                                               "support resize"):
        await c.update(got)
