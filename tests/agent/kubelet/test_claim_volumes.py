"""Claim volumes on the node: local-path directories made at first use (only on their node,
only inside --volume-dir), ephemeral claims owned by their pod, subPath preparation and the
claim's readOnly, against a real in-process API server and real directories."""
# Checking the file system after each awaited step is what these tests are for.
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.kubelet import container_spec as cs
from agent.kubelet.volumes import VolumeError, VolumeManager, safe_subpath
from control.api import storageutil
from control.api.pb import core_pb2, meta_pb2
from control.client.client import ApiClient
from tests.conftest import Cluster

NS = "default"


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_safe_subpath(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    os.chmod(root, 0o770)
    got = safe_subpath(str(root), "a/b")
    assert got == str(root / "a" / "b") and (root / "a" / "b").is_dir()
    assert mode(root / "a" / "b") == 0o770  # the volume's own mode
    (root / "f").write_text("x")
    assert safe_subpath(str(root), "f") == str(root / "f")
    (root / "inner").symlink_to(root / "a")
    assert safe_subpath(str(root), "inner/b") == str(root / "a" / "b")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "dangling").symlink_to("/nonexistent-flotilla-test")
    for sub in ("escape", "escape/x", "dangling"):
        with pytest.raises(ValueError, match="leads outside the volume"):
            safe_subpath(str(root), sub)
    assert not (outside / "x").exists()


def test_claim_read_only_and_subpath_expr_mounts() -> None:
    pod = core_pb2.Pod(
        metadata=meta_pb2.ObjectMeta(name="web-0", namespace=NS, uid="u"),
        spec=core_pb2.PodSpec(volumes=[
            core_pb2.Volume(name="ro", persistent_volume_claim=(
                core_pb2.PersistentVolumeClaimVolumeSource(claim_name="c1", read_only=True))),
            core_pb2.Volume(name="rw", persistent_volume_claim=(
                core_pb2.PersistentVolumeClaimVolumeSource(claim_name="c2")))]))
    c = core_pb2.Container(name="app", volume_mounts=[
        core_pb2.VolumeMount(name="ro", mount_path="/a"),
        core_pb2.VolumeMount(name="rw", mount_path="/b", sub_path_expr="$(POD)/data"),
        core_pb2.VolumeMount(name="rw", mount_path="/c", read_only=True)])
    prepared: list[tuple[str, str]] = []

    def subpath(root: str, sub: str) -> str:
        prepared.append((root, sub))
        return f"{root}/{sub}"

    got = cs.map_mounts(c, {"ro": "/v/ro", "rw": "/v/rw"}, {"POD": "web-0"},
                        read_only=cs.read_only_volumes(pod), subpath=subpath)
    assert [(m.host_path, m.container_path, m.read_only) for m in got] == [
        ("/v/ro", "/a", True), ("/v/rw/web-0/data", "/b", False), ("/v/rw", "/c", True)]
    assert prepared == [("/v/rw", "web-0/data")]

    def refuse(root: str, sub: str) -> str:
        raise ValueError("leads outside the volume")

    with pytest.raises(cs.ContainerConfigError, match="failed to prepare subPath"):
        cs.map_mounts(c, {"ro": "/v/ro", "rw": "/v/rw"}, {"POD": "web-0"}, subpath=refuse)


def _pod(*volumes: core_pb2.Volume, uid: str = "pod-uid-1") -> core_pb2.Pod:
    return core_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", namespace=NS, uid=uid),
                        spec=core_pb2.PodSpec(volumes=list(volumes),
                                              containers=[core_pb2.Container(name="app")]))


async def bound_claim(c: ApiClient, name: str, pv_name: str, path: str, node: str,
                      owner_uid: str = "") -> None:
    pv = core_pb2.PersistentVolume(api_version="v1", kind="PersistentVolume")
    pv.metadata.name = pv_name
    pv.metadata.annotations[storageutil.PROVISIONED_BY] = storageutil.PROVISIONER
    pv.spec.capacity["storage"].string = "1Mi"
    pv.spec.access_modes.append("ReadWriteOnce")
    pv.spec.host_path.path = path
    pv.spec.host_path.type = "DirectoryOrCreate"
    term = pv.spec.node_affinity.required.node_selector_terms.add()
    term.match_expressions.add(key="kubernetes.io/hostname", operator="In", values=[node])
    await c.create(pv)
    claim = core_pb2.PersistentVolumeClaim(api_version="v1", kind="PersistentVolumeClaim")
    claim.metadata.name, claim.metadata.namespace = name, NS
    if owner_uid:
        claim.metadata.owner_references.add(api_version="v1", kind="Pod", name="web",
                                            uid=owner_uid, controller=True)
    claim.spec.access_modes.append("ReadWriteOnce")
    claim.spec.resources.requests["storage"].string = "1Mi"
    claim.spec.volume_name = pv_name
    claim = await c.create(claim)
    claim.status.phase = "Bound"
    await c.update_status(claim)


def _claim_vol(name: str, claim: str) -> core_pb2.Volume:
    return core_pb2.Volume(name=name, persistent_volume_claim=(
        core_pb2.PersistentVolumeClaimVolumeSource(claim_name=claim)))


async def test_local_path_directory_made_at_first_use_on_its_node_only(
        api_cluster: Cluster, pods_dir: Path, tmp_path: Path) -> None:
    c = api_cluster.client
    vdir = tmp_path / "storage"
    mgr = VolumeManager(c, pods_dir, node_name="n1", volume_dir=vdir)
    path = vdir / "pvc-1_default_data"
    await bound_claim(c, "data", "pvc-1", str(path), "n1")
    assert await mgr.setup(_pod(_claim_vol("d", "data"))) == {"d": str(path)}
    assert path.is_dir() and mode(path) == 0o777
    (path / "kept").write_text("x")
    assert await mgr.setup(_pod(_claim_vol("d", "data"))) == {"d": str(path)}
    assert (path / "kept").read_text() == "x"  # setup is idempotent
    await mgr.teardown("pod-uid-1")
    assert (path / "kept").read_text() == "x"  # a claim's data outlives its pod

    await bound_claim(c, "elsewhere", "pvc-2", str(vdir / "pvc-2"), "n2")
    with pytest.raises(VolumeError, match='is on node "n2", not on this node "n1"'):
        await mgr.setup(_pod(_claim_vol("d", "elsewhere")))
    escape = tmp_path / "escape"
    await bound_claim(c, "outside", "pvc-3", str(escape), "n1")
    with pytest.raises(VolumeError, match="is not inside this node's volume directory"):
        await mgr.setup(_pod(_claim_vol("d", "outside")))
    assert not escape.exists() and not (vdir / "pvc-2").exists()


@pytest.mark.root(reason="giving files to another group needs root")
async def test_fs_group_owns_a_claims_directory(api_cluster: Cluster, pods_dir: Path,
                                                tmp_path: Path) -> None:
    c = api_cluster.client
    vdir = tmp_path / "storage"
    path = vdir / "pvc-g"
    await bound_claim(c, "grouped", "pvc-g", str(path), "n1")
    p = _pod(_claim_vol("d", "grouped"))
    p.spec.security_context.fs_group = 2345
    await VolumeManager(c, pods_dir, node_name="n1", volume_dir=vdir).setup(p)
    st = os.stat(path)
    assert st.st_gid == 2345 and st.st_mode & stat.S_ISGID and st.st_mode & stat.S_IWGRP


async def test_ephemeral_claim_must_belong_to_the_pod(api_cluster: Cluster, pods_dir: Path,
                                                      tmp_path: Path) -> None:
    c = api_cluster.client
    vdir = tmp_path / "storage"
    mgr = VolumeManager(c, pods_dir, node_name="n1", volume_dir=vdir)
    eph = core_pb2.Volume(name="scratch")
    eph.ephemeral.volume_claim_template.spec.access_modes.append("ReadWriteOnce")
    with pytest.raises(VolumeError, match="waiting for the ephemeral volume controller"):
        await mgr.setup(_pod(eph))
    await bound_claim(c, "web-scratch", "pvc-e", str(vdir / "pvc-e"), "n1",
                      owner_uid="someone-else")
    with pytest.raises(VolumeError, match="was not created for pod default/web"):
        await mgr.setup(_pod(eph))
    assert await mgr.setup(_pod(eph, uid="someone-else")) == {"scratch": str(vdir / "pvc-e")}
