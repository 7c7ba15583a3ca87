"""The agent's reclaim of local-path volumes: the path checks (tables on real directories)
and the cleaner against a real apiserver, as the node itself (its authorization included)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.kubelet.local_volumes import CleanupRefused, LocalVolumeCleaner, checked_directory
from control.api import convert, errors, storageutil
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.controllers.manager import ControllerManager
from control.controllers.volume_protection import VolumeProtectionController
from control.runtime.events import EventBroadcaster
from tests.conftest import Cluster, running_cluster
from tests.support import eventually


@pytest.fixture
def vdir(tmp_path: Path) -> Path:
    d = tmp_path / "volumes"
    d.mkdir()
    return d


def test_checked_directory(vdir: Path, tmp_path: Path) -> None:
    (vdir / "pvc-1_ns_a").mkdir()
    (vdir / "pvc-1_ns_a" / "data").write_text("x")
    assert checked_directory(str(vdir / "pvc-1_ns_a"), vdir) == vdir / "pvc-1_ns_a"
    assert checked_directory(str(vdir / "pvc-1_ns_a") + "/", vdir) == vdir / "pvc-1_ns_a"
    assert checked_directory(str(vdir / "pvc-gone"), vdir) is None
    # through a symlinked volume directory
    link_dir = tmp_path / "vlink"
    link_dir.symlink_to(vdir)
    assert checked_directory(str(link_dir / "pvc-1_ns_a"), vdir) == vdir / "pvc-1_ns_a"
    outside = tmp_path / "precious"
    outside.mkdir()
    (vdir / "pvc-link").symlink_to(outside)
    (vdir / "pvc-file").write_text("x")
    for bad, why in [
        (str(vdir / "pvc-link"), "symbolic link"),
        (str(vdir / "pvc-file"), "not a directory"),
        (str(outside), "not directly inside"),
        (str(vdir / "pvc-1_ns_a" / "data"), "not directly inside"),
        (str(vdir / ".." / "precious"), "not directly inside"),
        (str(vdir), "not directly inside"),
        ("relative/pvc-1", "not an absolute path"),
        ("", "not an absolute path"),
        ("/", "not directly inside"),
    ]:
        with pytest.raises(CleanupRefused, match=why):
            checked_directory(bad, vdir)
    assert outside.is_dir()


def _pv(name: str, path: str, policy: str, node: str = "n1") -> core_pb2.PersistentVolume:
    out: core_pb2.PersistentVolume = convert.from_dict(
        {"apiVersion": "v1", "kind": "PersistentVolume",
         "metadata": {"name": name, "finalizers": [storageutil.CLEANUP_FINALIZER],
                      "annotations": {storageutil.PROVISIONED_BY: storageutil.PROVISIONER}},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": policy, "storageClassName": "local-path",
                  "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                  "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                      {"key": "kubernetes.io/hostname", "operator": "In",
                       "values": [node]}]}]}}}},
        core_pb2.PersistentVolume())
    return out


@contextlib.asynccontextmanager
async def node_client(c: Cluster, node: str) -> AsyncIterator[ApiClient]:
    creds, _ = c.plane.node_identity(node, ["127.0.0.1"])
    channel = open_channel(c.address, creds)
    try:
        yield ApiClient(channel, c.address, timeout=10)
    finally:
        await channel.close(None)


async def gone(c: ApiClient, name: str) -> bool:
    try:
        await c.get(core_pb2.PersistentVolume, name)
    except errors.NotFound:
        return True
    return False


async def reasons(c: ApiClient, name: str) -> dict[str, str]:
    evs = (await c.list_all("events", "default")).items
    return {e.reason: e.message for e in evs if e.involved_object.name == name}


async def test_cleaner_deletes_retains_and_refuses(tmp_path: Path, vdir: Path) -> None:
    async with running_cluster(tmp_path / "data",
                               disable={"scheduler", "controllers", "dns"}) as cl, \
            node_client(cl, "n1") as n1:
        admin = cl.client
        # pv-protection's finalizer goes once the volume is not Bound
        manager = ControllerManager(admin, controllers={
            "persistentvolume-protection": VolumeProtectionController})
        await manager.start()
        events = EventBroadcaster(n1)
        cleaner = LocalVolumeCleaner(n1, "n1", vdir,
                                     recorder=events.new_recorder("kubelet", "n1"))
        tasks = [asyncio.create_task(cleaner.run(), name="test/cleaner"),
                 asyncio.create_task(events.run(), name="test/events")]
        try:
            deleted, kept = vdir / "pvc-d_ns_a", vdir / "pvc-r_ns_b"
            for d in (deleted, kept):
                d.mkdir()
                (d / "file").write_text("data")
            outside = tmp_path / "not-ours"
            outside.mkdir()
            await admin.create(_pv("pvc-d", str(deleted), "Delete"))
            await admin.create(_pv("pvc-r", str(kept), "Retain"))
            await admin.create(_pv("pvc-x", str(outside), "Delete"))
            await admin.create(_pv("pvc-other", str(vdir / "pvc-o"), "Delete", node="n2"))
            (vdir / "pvc-o").mkdir()
            # an unbound volume not being deleted is left alone
            await asyncio.sleep(0.5)
            assert deleted.is_dir() and kept.is_dir()
            for name in ("pvc-d", "pvc-r", "pvc-x", "pvc-other"):
                await admin.delete(core_pb2.PersistentVolume, name)
            await eventually(lambda: gone(admin, "pvc-d"), "the Delete volume gone")
            assert not deleted.exists()
            await eventually(lambda: gone(admin, "pvc-r"), "the Retain volume gone")
            assert (kept / "file").read_text() == "data"

            async def refused() -> dict[str, str] | None:
                got = await reasons(admin, "pvc-x")
                return got if "VolumeFailedDelete" in got else None

            seen = await eventually(refused)
            assert "not directly inside" in seen["VolumeFailedDelete"]
            assert outside.is_dir()
            pv = await admin.get(core_pb2.PersistentVolume, "pvc-x")
            assert storageutil.CLEANUP_FINALIZER in pv.metadata.finalizers
            # another node's volume: not ours to clean, nor to update
            other = await admin.get(core_pb2.PersistentVolume, "pvc-other")
            assert storageutil.CLEANUP_FINALIZER in other.metadata.finalizers
            assert (vdir / "pvc-o").is_dir()
            other.metadata.finalizers.remove(storageutil.CLEANUP_FINALIZER)
            with pytest.raises(errors.Forbidden):
                await n1.update(other)
            seen = await reasons(admin, "pvc-d")
            assert seen["VolumeDeleted"] == f"deleted {deleted} on node n1"
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await manager.stop()
            for name in ("pvc-x", "pvc-other"):
                with contextlib.suppress(errors.NotFound):
                    await _drop_all_finalizers(admin, name)


async def _drop_all_finalizers(c: ApiClient, name: str) -> Any:
    pv = await c.get(core_pb2.PersistentVolume, name)
    del pv.metadata.finalizers[:]
    return await c.update(pv)



async def test_a_volume_deleted_while_the_agent_was_away_is_cleaned_at_start(
        tmp_path: Path, vdir: Path) -> None:
    async with running_cluster(tmp_path / "data",
                               disable={"scheduler", "controllers", "dns"}) as cl, \
            node_client(cl, "n1") as n1:
        admin = cl.client
        manager = ControllerManager(admin, controllers={
            "persistentvolume-protection": VolumeProtectionController})
        await manager.start()
        away = vdir / "pvc-away_ns_a"
        away.mkdir()
        (away / "file").write_text("data")
        await admin.create(_pv("pvc-away", str(away), "Delete"))
        await admin.delete(core_pb2.PersistentVolume, "pvc-away")
        assert (await admin.get(core_pb2.PersistentVolume, "pvc-away")).metadata.HasField("deletion_timestamp")
        cleaner = LocalVolumeCleaner(n1, "n1", vdir)
        task = asyncio.create_task(cleaner.run(), name="test/cleaner")
        try:
            await eventually(lambda: gone(admin, "pvc-away"), "the volume gone")
            assert not away.exists()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await manager.stop()
