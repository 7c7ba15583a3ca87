"""The pod's IPC namespace and /dev/shm (process runtime, root): shared by the containers of
one pod and by exec, separate between pods, the host's for hostIPC, overridden by a volume
mounted at /dev/shm, and gone (pin and tmpfs) when the sandbox is removed, also by a
restarted runtime, and reclaimed at start when a sandbox went without tidying up (or
made again for a ready sandbox that lost them)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.runtime import sandbox_ipc
from agent.runtime.interface import Mount, RuntimeError_
from agent.runtime.process import ProcessRuntime
from tests.support.process_runtime import (
    cleanup,
    exists,
    is_mount,
    log_entries,
    make_runtime,
    mounts_under,
    run,
    sandbox,
    wait_exited,
)

pytestmark = pytest.mark.root(reason="IPC namespaces and tmpfs mounts need root")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = make_runtime(tmp_path / "rt", isolate=True)
    try:
        yield rt
    finally:
        await cleanup(rt)


async def output(rt: ProcessRuntime, sid: str, script: str, tmp_path: Path,
                 name: str, **kwargs: object) -> list[str]:
    cid = await run(rt, sid, ["sh", "-c", script], tmp_path, name=name, **kwargs)
    st = await wait_exited(rt, cid)
    lines = [t for s, t in log_entries(tmp_path / "logs" / name / "0.log")]
    assert st.exit_code == 0, lines
    return lines


async def test_containers_of_a_pod_share_ipc_and_shm_other_pods_do_not(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    a = await sandbox(runtime, tmp_path, uid="uid-a", hostname="a")
    b = await sandbox(runtime, tmp_path, uid="uid-b", hostname="b")
    first = await output(runtime, a, "readlink /proc/self/ns/ipc; echo hello > /dev/shm/x; "
                         "ipcmk -M 4096 | grep -o '[0-9]*$'; "
                         "grep ' /dev/shm ' /proc/mounts; stat -c %a /dev/shm", tmp_path,
                         "a1")
    ns_a, shmid, mount = first[0], first[1], first[2].split()
    assert first[3] == "1777"
    assert ns_a != os.readlink("/proc/self/ns/ipc")
    assert mount[2] == "tmpfs"
    assert {"nosuid", "nodev", "noexec", "size=65536k"} <= \
        set(mount[3].split(","))
    # A second container of the pod (the first has exited: the pin keeps the namespace).
    second = await output(runtime, a, "readlink /proc/self/ns/ipc; cat /dev/shm/x; "
                          "ipcs -m | awk '{print $2}'", tmp_path, "a2")
    assert second[0] == ns_a
    assert second[1] == "hello"
    assert shmid in second[2:]
    # Exec joins the container's namespaces, hence the pod's.
    cid = await run(runtime, a, ["sleep", "30"], tmp_path, name="a3")
    res = await runtime.exec_sync(cid, ["sh", "-c", "readlink /proc/self/ns/ipc; "
                                        "cat /dev/shm/x"], 10)
    assert res.stdout.decode().split() == [ns_a, "hello"], res
    # Another pod: its own namespace and its own, empty /dev/shm.
    other = await output(runtime, b, "readlink /proc/self/ns/ipc; ls -A /dev/shm | wc -l; "
                         "ipcs -m | grep -c '^0x' || true", tmp_path, "b1")
    assert other[0] not in (ns_a, os.readlink("/proc/self/ns/ipc"))
    assert other[1:] == ["0", "0"]
    # The pod's /dev/shm lives on the host under its sandbox's state dir.
    assert (runtime.root_dir / "sandboxes" / a / "shm" / "x").read_text() == "hello\n"
    assert is_mount(runtime.root_dir / "sandboxes" / a / "shm")


async def test_removal_unmounts_and_unpins_also_from_a_restarted_runtime(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    a = await sandbox(runtime, tmp_path, uid="uid-a", hostname="a")
    b = await sandbox(runtime, tmp_path, uid="uid-b", hostname="b")
    await run(runtime, a, ["sleep", "30"], tmp_path, name="c")
    assert len(mounts_under(runtime.root_dir)) == 4  # two pins, two tmpfs
    await runtime.remove_pod_sandbox(a)
    assert not exists(runtime.ipcns_dir / a)
    assert not exists(runtime.root_dir / "sandboxes" / a)
    assert len(mounts_under(runtime.root_dir)) == 2
    # The agent restarts: a new runtime on the same state removes the other pod.
    again = ProcessRuntime(runtime.root_dir, runtime.cgroup_prefix)
    try:
        await again.stop_pod_sandbox(b)
        assert mounts_under(runtime.root_dir) == []  # stopped: IPC gone, as the network
        await again.remove_pod_sandbox(b)
        assert os.listdir(runtime.ipcns_dir) == []
    finally:
        await again.close()


async def test_restarted_runtime_reclaims_what_a_vanished_sandbox_left(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    keep = await sandbox(runtime, tmp_path, uid="uid-k", hostname="k")
    gone = await sandbox(runtime, tmp_path, uid="uid-g", hostname="g")
    # As if the agent died while removing it: the sandbox record went, not its IPC.
    (runtime.root_dir / "sandboxes" / gone / "sandbox.json").unlink()
    # As if the machine rebooted: a ready sandbox lost its pin and tmpfs.
    await asyncio.to_thread(sandbox_ipc.remove, runtime.ipcns_dir,
                            runtime.root_dir / "sandboxes" / keep, keep)
    again = ProcessRuntime(runtime.root_dir, runtime.cgroup_prefix)
    try:
        await again.reclaim_ipc()
    finally:
        await again.close()
    assert not exists(runtime.ipcns_dir / gone)
    assert not is_mount(runtime.root_dir / "sandboxes" / gone / "shm")
    assert sorted(mounts_under(runtime.root_dir)) == sorted([
        str(runtime.ipcns_dir / keep), str(runtime.root_dir / "sandboxes" / keep / "shm")])
    shutil.rmtree(runtime.root_dir / "sandboxes" / gone)
    out = await output(runtime, keep, "readlink /proc/self/ns/ipc", tmp_path, "k")
    assert out[0] != os.readlink("/proc/self/ns/ipc")


async def test_host_ipc_uses_the_hosts_namespace_and_dev_shm(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path, host_ipc=True)
    assert not exists(runtime.ipcns_dir / sid)
    assert mounts_under(runtime.root_dir) == []
    out = await output(runtime, sid, "readlink /proc/self/ns/ipc; stat -Lc '%d %i' /dev/shm",
                       tmp_path, "c")
    host = os.stat(sandbox_ipc.HOST_SHM)
    assert out == [os.readlink("/proc/self/ns/ipc"), f"{host.st_dev} {host.st_ino}"]


async def test_a_volume_at_dev_shm_replaces_the_pods(runtime: ProcessRuntime,
                                                     tmp_path: Path) -> None:
    # The Kubernetes idiom to enlarge /dev/shm: an emptyDir (medium Memory) mounted there.
    volume = tmp_path / "dshm"
    volume.mkdir()
    (volume / "from-volume").write_text("v\n")
    sid = await sandbox(runtime, tmp_path)
    out = await output(runtime, sid, "cat /dev/shm/from-volume; readlink /proc/self/ns/ipc",
                       tmp_path, "c", mounts=[Mount(str(volume), "/dev/shm")])
    assert out[0] == "v"
    assert out[1] != os.readlink("/proc/self/ns/ipc")


async def test_a_failed_ipc_setup_fails_the_sandbox_and_leaves_nothing(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    runtime.ipcns_dir = tmp_path / "not-a-dir"
    runtime.ipcns_dir.write_text("")  # the pin's directory cannot be made
    with pytest.raises(RuntimeError_, match="IPC namespace"):
        await sandbox(runtime, tmp_path)
    assert await runtime.list_pod_sandboxes() == []
    assert os.listdir(runtime.root_dir / "sandboxes") == []
    assert mounts_under(runtime.root_dir) == []
    if runtime.cgroups is not None:  # nor the pod's cgroup
        assert not any(exists(d) for d in runtime.cgroups.dirs("uid-1"))
