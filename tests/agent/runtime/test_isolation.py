"""The process runtime with root: PID, mount, UTS and IPC namespaces, the overlay root and
its volumes, read-only mounts and root filesystem, cgroup limits (OOM kill, CFS quota) and
their removal, exec inside the namespaces, user and capabilities. Skipped without root.

Nothing here touches the host's filesystem outside tmp_path: mounts live only in the
containers' mount namespaces, which vanish with them; cgroups go with ``cleanup``."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.runtime import linux
from agent.runtime.interface import (
    ContainerState,
    Mount,
    Resources,
    Security,
)
from agent.runtime.process import ProcessRuntime
from tests.support.process_runtime import (
    cleanup,
    exists,
    log_entries,
    make_runtime,
    read_text,
    run,
    sandbox,
    wait_exited,
    wait_for_log,
)

pytestmark = pytest.mark.root(reason="namespaces, overlay mounts and cgroups need root")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "token").write_text("s3cr3t")
    rt = make_runtime(tmp_path / "rt", isolate=True, mask_paths=[str(tmp_path / "secret")])
    try:
        yield rt
    finally:
        await cleanup(rt)


def stdout_of(tmp_path: Path, name: str = "c") -> list[str]:
    return [t for s, t in log_entries(tmp_path / "logs" / name / "0.log") if s == "stdout"]


async def test_pid_uts_namespaces_and_sandbox_files(runtime: ProcessRuntime,
                                                    tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path, hostname="web-0",
                        hosts_file="127.0.0.1 localhost\n10.0.0.7 web-0\n",
                        resolv_conf="nameserver 10.96.0.10\n")
    cid = await run(runtime, sid, ["sh", "-c", "echo $$; hostname; cat /etc/hostname; "
                                   "cat /etc/hosts; cat /etc/resolv.conf; ls /proc | "
                                   "grep -c '^[0-9]'; ls -A " + str(runtime.root_dir) + " " +
                                   str(tmp_path / "secret") +
                                   " | grep -cE 'token|containers|sandboxes'; exit 0"],
                    tmp_path)
    st = await wait_exited(runtime, cid)
    out = stdout_of(tmp_path)
    assert st.exit_code == 0, out
    assert out[:6] == ["1", "web-0", "web-0", "127.0.0.1 localhost", "10.0.0.7 web-0",
                       "nameserver 10.96.0.10"]
    assert int(out[6]) <= 4  # a fresh /proc: only sh and its pipeline
    assert out[7] == "0"  # masked: the runtime's own state and mask_paths
    assert os.uname().nodename != "web-0"


async def test_volumes_at_paths_absent_on_the_host(runtime: ProcessRuntime,
                                                   tmp_path: Path) -> None:
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "config.txt").write_text("from the host\n")
    top = f"/flotilla-test-{uuid.uuid4().hex[:8]}"
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, [
        "sh", "-c", f"cat {top}/config/config.txt; echo hi > {top}/data/out.txt; "
                    f"touch {top}/config/nope 2>/dev/null && echo ro-writable; "
                    "echo scratch > /root-layer-file; echo ok"],
        tmp_path, mounts=[Mount(str(rw), f"{top}/data"),
                          Mount(str(ro), f"{top}/config", read_only=True)])
    st = await wait_exited(runtime, cid)
    assert st.exit_code == 0
    assert stdout_of(tmp_path) == ["from the host", "ok"]
    assert (rw / "out.txt").read_text() == "hi\n"
    assert not (ro / "nope").exists()
    # nothing was created on the host: not the mount points, not the root-layer write
    assert not exists(top)
    assert not exists("/root-layer-file")


async def test_read_only_root_filesystem(runtime: ProcessRuntime, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, [
        "sh", "-c", "touch /tmp/x 2>/dev/null && echo root-writable; "
                    "echo fine > /data/y && echo volume-writable"],
        tmp_path, mounts=[Mount(str(vol), "/data")],
        security=Security(read_only_root_filesystem=True))
    await wait_exited(runtime, cid)
    assert stdout_of(tmp_path) == ["volume-writable"]


async def test_memory_limit_oom_killed(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["python3", "-c", "b = b'x' * (200 * 1024 * 1024)"],
                    tmp_path, resources=Resources(memory_limit_bytes=50 * 1024 * 1024))
    st = await wait_exited(runtime, cid, timeout=20)
    assert (st.exit_code, st.reason) == (137, "OOMKilled")


async def test_cpu_quota_and_cgroup_removal(runtime: ProcessRuntime, tmp_path: Path) -> None:
    assert runtime.cgroups is not None
    sid = await sandbox(runtime, tmp_path, uid="uid-cpu")
    cid = await run(runtime, sid, ["sleep", "100"], tmp_path,
                    resources=Resources(cpu_quota_millis=250, cpu_shares=512,
                                        memory_limit_bytes=64 * 1024 * 1024))
    rel = f"uid-cpu/{cid}"
    dirs = runtime.cgroups.dirs(rel)
    pid = (await runtime.container_status(cid)).pid
    assert pid in runtime.cgroups.pids(rel)
    cpu = runtime.cgroups.controller_dir("cpu", rel)
    memory = runtime.cgroups.controller_dir("memory", rel)
    assert cpu is not None and memory is not None
    if runtime.cgroups.version == 1:
        assert read_text(Path(cpu, "cpu.cfs_quota_us")).strip() == "25000"
        assert read_text(Path(cpu, "cpu.shares")).strip() == "512"
        assert read_text(Path(memory, "memory.limit_in_bytes")).strip() == str(64 << 20)
    else:
        assert read_text(Path(cpu, "cpu.max")).split() == ["25000", "100000"]
        assert read_text(Path(memory, "memory.max")).strip() == str(64 << 20)
    stats = await runtime.container_stats(cid)
    assert stats["memory_bytes"] > 0
    await runtime.remove_container(cid)
    assert not any(exists(d) for d in dirs)
    await runtime.remove_pod_sandbox(sid)
    assert not any(exists(d) for d in runtime.cgroups.dirs("uid-cpu"))


async def test_exec_inside_the_namespaces(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path, hostname="exec-pod")
    cid = await run(runtime, sid, ["sh", "-c", "echo inside > /tmp/marker; exec sleep 100"],
                    tmp_path, env=[("FOO", "bar")], working_dir="/created/by/runtime")
    assert not exists("/created")
    deadline = time.monotonic() + 10
    while True:  # the marker is written right after start
        r = await runtime.exec_sync(cid, ["cat", "/tmp/marker"], 10)
        if r.exit_code == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert r.stdout == b"inside\n"  # the container's overlay, not the host's /tmp
    r = await runtime.exec_sync(cid, ["sh", "-c", "hostname; echo $FOO; pwd; "
                                      "cat /proc/1/cmdline | tr '\\0' ' '; exit 4"], 10)
    assert (r.exit_code, r.stdout.decode().split("\n")[:4]) == (
        4, ["exec-pod", "bar", "/created/by/runtime", "sleep 100 "])
    # the exec'd command is accounted to the container's cgroup
    r = await runtime.exec_sync(cid, ["cat", "/proc/self/cgroup"], 10)
    assert f"memory:/{runtime.cgroup_prefix}/uid-1/{cid}" in r.stdout.decode()
    t0 = time.monotonic()
    r = await runtime.exec_sync(cid, ["sleep", "30"], 0.5)
    assert r.timed_out and time.monotonic() - t0 < 5
    # a terminal from the container's own devpts, echoing once
    session = await runtime.exec(cid, ["sh", "-c", "tty; read x; echo got $x"], stdin=True,
                                 tty=True)
    await session.write_stdin(b"abc\n")
    out = b"".join([d async for _, d in session.output()])
    assert await asyncio.wait_for(session.wait(), 10) == 0
    assert out.replace(b"\r\n", b"\n") == b"abc\n/dev/pts/0\ngot abc\n"
    # the timed-out command is gone from the container, not even a zombie of PID 1's
    r = await runtime.exec_sync(cid, ["sh", "-c", "cat /proc/[0-9]*/stat"], 10)
    assert b"(sleep)" in r.stdout and b" Z " not in r.stdout, r.stdout
    assert r.stdout.count(b"(sleep)") == 1


async def test_pid1_ignores_sigterm_and_is_killed_after_the_timeout(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sleep", "100"], tmp_path)
    t0 = time.monotonic()
    await runtime.stop_container(cid, 0.5)
    assert 0.5 <= time.monotonic() - t0 < 5
    assert (await runtime.container_status(cid)).exit_code == 137


async def test_run_as_user_and_capabilities(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sh", "-c", "id -u; id -g; id -G; "
                                   "grep CapBnd /proc/self/status; sleep 100"], tmp_path,
                    security=Security(run_as_user=1000, run_as_group=2000,
                                      supplemental_groups=[3000], capabilities_drop=["ALL"],
                                      capabilities_add=["NET_BIND_SERVICE"]))
    await wait_for_log(tmp_path / "logs" / "c" / "0.log", "CapBnd")
    out = stdout_of(tmp_path)
    assert out[:3] == ["1000", "2000", "2000 3000"]
    assert int(out[3].split()[1], 16) == 1 << linux.CAP_NUMBER["NET_BIND_SERVICE"]
    r = await runtime.exec_sync(cid, ["id", "-u"], 10)
    assert r.stdout == b"1000\n"
    cid2 = await run(runtime, sid, ["grep", "CapBnd", "/proc/self/status"], tmp_path,
                     name="default")
    await wait_exited(runtime, cid2)
    [line] = stdout_of(tmp_path, "default")
    expected = sum(1 << linux.CAP_NUMBER[c] for c in linux.DEFAULT_CAPABILITIES)
    assert int(line.split()[1], 16) == expected


async def test_termination_message_from_dev(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sh", "-c", "echo -n 'bad config' > /dev/termination-log;"
                                   " exit 2"], tmp_path,
                    termination_message_path="/dev/termination-log")
    st = await wait_exited(runtime, cid)
    assert (st.exit_code, st.reason, st.message) == (2, "Error", "bad config")
    assert not exists("/dev/termination-log")


async def test_readoption_with_namespaces(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path / "rt", isolate=True)
    try:
        sid = await sandbox(rt, tmp_path)
        cid = await run(rt, sid, ["sleep", "100"], tmp_path)
        again = ProcessRuntime(tmp_path / "rt", rt.cgroup_prefix)
        st = await again.container_status(cid)
        assert st.state == ContainerState.RUNNING
        await again.stop_container(cid, 0)
        assert (await rt.container_status(cid)).exit_code == 137
    finally:
        await cleanup(rt)
