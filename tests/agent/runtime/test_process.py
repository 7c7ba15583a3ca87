"""The process runtime for real, as plain process groups (``isolate=False``, which is what
an agent without root runs): exit codes and CRI logs, stop with SIGTERM and SIGKILL,
adoption by a new runtime after the agent was killed with SIGKILL, exec, termination
messages, and the refusals of what needs root. Every test removes what it started, even on
failure; every wait is bounded."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.runtime import linux
from agent.runtime.interface import (
    ContainerConfig,
    ContainerState,
    CreateContainerError,
    Mount,
    NotFoundError,
    Security,
    StartContainerError,
)
from agent.runtime.monitor import read_json
from agent.runtime.process import ProcessRuntime
from tests.support import eventually
from tests.support.process_runtime import (
    cleanup,
    log_entries,
    make_runtime,
    run,
    sandbox,
    wait_exited,
    wait_for_log,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = make_runtime(tmp_path / "rt", isolate=False)
    try:
        yield rt
    finally:
        await cleanup(rt)


async def test_exit_code_reason_and_cri_logs(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sh", "-c", "echo out; echo err >&2; echo $FOO; pwd; exit 3"],
                    tmp_path, env=[("FOO", "bar")], working_dir=str(tmp_path))
    st = await wait_exited(runtime, cid)
    assert (st.exit_code, st.reason, st.name, st.sandbox_id) == (3, "Error", "c", sid)
    assert st.started_at > 0 and st.finished_at >= st.started_at
    entries = log_entries(tmp_path / "logs" / "c" / "0.log")
    assert sorted(entries) == sorted([("stdout", "out"), ("stderr", "err"),
                                      ("stdout", "bar"), ("stdout", str(tmp_path))])


async def test_completed_and_listing(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    assert await sandbox(runtime, tmp_path) == sid  # idempotent per pod uid
    cid = await run(runtime, sid, ["true"], tmp_path)
    st = await wait_exited(runtime, cid)
    assert (st.exit_code, st.reason) == (0, "Completed")
    assert [c.id for c in await runtime.list_containers(sid)] == [cid]
    assert await runtime.list_containers("0" * 32) == []
    [sb] = await runtime.list_pod_sandboxes()
    assert (sb.id, sb.pod_uid, sb.state.value) == (sid, "uid-1", "READY")


async def test_no_command_and_missing_executable(runtime: ProcessRuntime,
                                                 tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    with pytest.raises(CreateContainerError, match="no command specified"):
        await runtime.create_container(sid, ContainerConfig(name="c", argv=[]))
    cid = await runtime.create_container(sid, ContainerConfig(
        name="c", argv=["/no/such/program"], log_path=str(tmp_path / "l.log")))
    with pytest.raises(StartContainerError, match="/no/such/program"):
        await runtime.start_container(cid)
    st = await runtime.container_status(cid)
    assert (st.state, st.exit_code, st.reason) == (ContainerState.EXITED, 128, "StartError")
    with pytest.raises(NotFoundError):
        await runtime.container_status("f" * 32)
    with pytest.raises(NotFoundError):
        await runtime.create_container("f" * 32, ContainerConfig(name="c", argv=["true"]))


async def test_stop_sigterm_then_sigkill(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    stubborn = await run(runtime, sid, ["sh", "-c", "trap '' TERM; echo ready; "
                                        "while :; do sleep 0.05; done"], tmp_path, name="a")
    polite = await run(runtime, sid, ["sleep", "100"], tmp_path, name="b")
    await wait_for_log(tmp_path / "logs" / "a" / "0.log", "ready")
    assert (await runtime.container_status(stubborn)).state == ContainerState.RUNNING
    t0 = time.monotonic()
    await runtime.stop_container(stubborn, 0.5)
    assert 0.5 <= time.monotonic() - t0 < 5
    st = await runtime.container_status(stubborn)
    assert (st.state, st.exit_code) == (ContainerState.EXITED, 137)
    t0 = time.monotonic()
    await runtime.stop_container(polite, 10)
    assert time.monotonic() - t0 < 3
    assert (await runtime.container_status(polite)).exit_code == 143
    await runtime.stop_container(polite, 10)  # stopping an exited container is a no-op


async def test_remove_sandbox_leaves_nothing_running(runtime: ProcessRuntime,
                                                     tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sh", "-c", "sleep 100 & sleep 100"], tmp_path)
    pid = (await runtime.container_status(cid)).pid
    start = linux.proc_start_time(pid)
    assert start is not None
    created = await runtime.create_container(sid, ContainerConfig(name="later", argv=["true"]))
    await runtime.stop_pod_sandbox(sid)
    assert (await runtime.list_pod_sandboxes())[0].state.value == "NOTREADY"
    with pytest.raises(CreateContainerError, match="not ready"):
        await runtime.create_container(sid, ContainerConfig(name="x", argv=["true"]))
    assert (await runtime.container_status(created)).state == ContainerState.EXITED
    await runtime.remove_pod_sandbox(sid)
    assert not linux.process_alive(pid, start)
    assert await runtime.list_pod_sandboxes() == []
    assert await runtime.list_containers() == []
    assert os.listdir(runtime.root_dir / "containers") == []
    await runtime.remove_pod_sandbox(sid)  # idempotent


async def test_agent_killed_runtime_readopts(tmp_path: Path) -> None:
    """An agent process starts a container and dies by SIGKILL; the container keeps
    running and writing its log, and a new runtime on the same directory reports it
    RUNNING, then its true exit code."""
    root = tmp_path / "rt"
    go = tmp_path / "signals"
    go.mkdir()
    log = tmp_path / "logs" / "c" / "0.log"
    argv = ["sh", "-c", f"echo started; while [ ! -e {go}/go ]; do sleep 0.02; done; "
                        "echo finishing; exit 7"]
    script = (
        "import asyncio\nfrom pathlib import Path\n"
        "from agent.runtime.process import ProcessRuntime\n"
        "from agent.runtime.interface import SandboxConfig, ContainerConfig, Mount\n"
        "async def main():\n"
        f"    rt = ProcessRuntime(Path({str(root)!r}), 'flotilla/test-adopt', isolate=False)\n"
        f"    sid = await rt.run_pod_sandbox(SandboxConfig('uid-a', 'default', 'a', 'a', "
        f"{str(tmp_path)!r}))\n"
        f"    cid = await rt.create_container(sid, ContainerConfig('c', {argv!r}, "
        f"log_path={str(log)!r}, mounts=[Mount({str(go)!r}, {str(go)!r})]))\n"
        "    await rt.start_container(cid)\n"
        "    print(cid, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n")
    agent_proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=REPO, stdout=subprocess.PIPE)
    rt = ProcessRuntime(root, "flotilla/test-adopt", isolate=False)
    try:
        assert agent_proc.stdout is not None
        cid = (await asyncio.wait_for(agent_proc.stdout.readline(), 20)).decode().strip()
        agent_proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(agent_proc.wait(), 10)
        await wait_for_log(log, "started")
        st = await rt.container_status(cid)
        assert st.state == ContainerState.RUNNING and st.pid > 0
        assert [c.id for c in await rt.list_containers()] == [cid]
        assert [s.pod_uid for s in await rt.list_pod_sandboxes()] == ["uid-a"]
        (go / "go").touch()
        st = await wait_exited(rt, cid)
        assert (st.exit_code, st.reason) == (7, "Error")
        assert ("stdout", "finishing") in log_entries(log)
    finally:
        if agent_proc.returncode is None:
            agent_proc.kill()
            await agent_proc.wait()
        await cleanup(rt)


def _name_of(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


async def test_monitors_come_from_one_fork_server_and_outlive_it(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    """Monitors are forked by the runtime's one fork server, are not its children, keep
    their containers when it dies; the next start brings up a new server, and close()
    stops the server while the containers run on."""
    sid = await sandbox(runtime, tmp_path)
    first = await run(runtime, sid, ["sleep", "60"], tmp_path, name="a")
    second = await run(runtime, sid, ["sleep", "60"], tmp_path, name="b")
    server = runtime._launcher.server_pid
    assert server > 0 and linux.proc_start_time(server) is not None
    monitors = [int(read_json(str(runtime._container_dir(c) / "monitor.json"))["monitor_pid"])
                for c in (first, second)]
    assert server not in monitors and len(set(monitors)) == 2
    assert _name_of(server) == "flotilla-mon-sv"
    assert {_name_of(m) for m in monitors} == {"flotilla-mon"}
    assert all(_parent_of(m) != server for m in monitors)
    os.kill(server, signal.SIGKILL)
    await eventually(lambda: linux.proc_start_time(server) is None,
                     "the fork server to die", timeout=10)
    third = await run(runtime, sid, ["sh", "-c", "echo third"], tmp_path, name="c")
    assert (await wait_exited(runtime, third)).exit_code == 0
    assert runtime._launcher.server_pid not in (0, server)
    for c in (first, second):
        assert (await runtime.container_status(c)).state == ContainerState.RUNNING
    replacement = runtime._launcher.server_pid
    await runtime.close()
    await eventually(lambda: linux.proc_start_time(replacement) is None,
                     "the fork server to stop", timeout=10)
    assert (await runtime.container_status(first)).state == ContainerState.RUNNING
    await runtime.stop_container(first, 0)
    assert (await wait_exited(runtime, first)).exit_code == 137


async def test_exec_sync_and_timeout(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sleep", "100"], tmp_path, env=[("FOO", "from-env")],
                    working_dir=str(tmp_path))
    r = await runtime.exec_sync(cid, ["sh", "-c", "echo $FOO; pwd; echo e >&2; exit 5"], 10)
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (
        5, f"from-env\n{tmp_path}\n".encode(), b"e\n", False)
    t0 = time.monotonic()
    r = await runtime.exec_sync(cid, ["sleep", "30"], 0.5)
    assert r.timed_out and time.monotonic() - t0 < 5
    r = await runtime.exec_sync(cid, ["/no/such/thing"], 10)
    assert r.exit_code == 127 and b"/no/such/thing" in r.stderr


@pytest.mark.parametrize("after", [0.0, 0.01, 0.05, 0.3])
async def test_a_cancelled_exec_leaves_its_helper_reaped(runtime: ProcessRuntime,
                                                        tmp_path: Path, after: float) -> None:
    # Cancelled while the helper starts or while it runs (the agent stopping mid-probe):
    # the helper is killed and reaped, never dropped running (an unreaped Popen is an
    # unraisable ResourceWarning, an error in this suite).
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sleep", "100"], tmp_path)
    task = asyncio.create_task(runtime.exec_sync(cid, ["sleep", "30"], 0))
    await asyncio.sleep(after)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    helpers = [int(p) for p in os.listdir("/proc") if p.isdigit() and
               f"{cid}".encode() in _cmdline(int(p)) and b" exec " in _cmdline(int(p))]

    def gone() -> bool:
        gc.collect()  # an unreaped Popen warns when collected
        return not [p for p in helpers if os.path.exists(f"/proc/{p}")]

    await eventually(gone, "the exec helper reaped", timeout=10)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


async def test_exec_session_stdin_and_tty(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sleep", "100"], tmp_path)
    session = await runtime.exec(cid, ["sh", "-c", "cat; echo bye >&2; exit 2"], stdin=True,
                                 tty=False)
    await session.write_stdin(b"hello\n")
    await session.close_stdin()
    chunks = [c async for c in session.output()]
    assert await asyncio.wait_for(session.wait(), 10) == 2
    assert b"".join(d for s, d in chunks if s == "stdout") == b"hello\n"
    assert b"".join(d for s, d in chunks if s == "stderr") == b"bye\n"
    session = await runtime.exec(cid, ["sh", "-c", "tty; exit 0"], stdin=True, tty=True)
    out = b"".join([d async for _, d in session.output()])
    assert await asyncio.wait_for(session.wait(), 10) == 0
    assert b"/dev/pts/" in out
    session = await runtime.exec(cid, ["sleep", "100"], stdin=False, tty=False)
    await asyncio.wait_for(session.kill(), 10)


async def test_termination_message(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    msg = tmp_path / "termination-log"
    cid = await run(runtime, sid, ["sh", "-c", f"printf 'all done' > {msg}; exit 1"],
                    tmp_path, termination_message_path=str(msg))
    st = await wait_exited(runtime, cid)
    assert (st.exit_code, st.message) == (1, "all done")


async def test_log_rotation(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path / "rt", isolate=False, log_max_bytes=4096, log_max_files=2)
    try:
        sid = await sandbox(rt, tmp_path)
        cid = await run(rt, sid, ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line $i; "
                                              "i=$((i+1)); done"], tmp_path)
        await wait_exited(rt, cid)
        base = tmp_path / "logs" / "c" / "0.log"
        files = [Path(f"{base}.2"), Path(f"{base}.1"), base]
        assert all(f.exists() and f.stat().st_size <= 4096 for f in files)
        numbers = [int(t.split()[1]) for f in files for _, t in log_entries(f)]
        assert numbers[-1] == 399 and numbers == list(range(numbers[0], 400))
    finally:
        await cleanup(rt)


async def test_what_needs_root_is_refused_by_name(runtime: ProcessRuntime,
                                                  tmp_path: Path) -> None:
    sid = await sandbox(runtime, tmp_path)
    vol = tmp_path / "vol"
    vol.mkdir()
    assert any("process groups" in line for line in runtime.isolation_report())
    with pytest.raises(CreateContainerError, match="volume mount /data"):
        await runtime.create_container(sid, ContainerConfig(
            name="c", argv=["true"], mounts=[Mount(str(vol), "/data")]))
    # the same path works: the container sees the host's filesystem
    await runtime.create_container(sid, ContainerConfig(
        name="c", argv=["true"], mounts=[Mount(str(vol), str(vol))]))
    for security, field in ((Security(read_only_root_filesystem=True), "readOnlyRoot"),
                            (Security(privileged=True), "privileged"),
                            (Security(capabilities_add=["NET_ADMIN"]), "capabilities.add"),
                            (Security(run_as_user=os.getuid() + 1), "runAsUser")):
        with pytest.raises(CreateContainerError, match=field):
            await runtime.create_container(sid, ContainerConfig(name="c", argv=["true"],
                                                                security=security))


async def test_listings_are_cached_but_follow_the_files(runtime: ProcessRuntime,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """spec.json is parsed once, sandbox/status/monitor files only when they changed; a
    sandbox's listing reads nothing of other sandboxes; a second runtime instance on the
    same dir sees changes made through the first, and removals through it are noticed."""
    from agent.runtime import process

    sids = [await sandbox(runtime, tmp_path, uid=f"uid-{i}", hostname=f"p{i}")
            for i in range(5)]
    cids = [await run(runtime, sid, ["sleep", "30"], tmp_path, name=f"c{i}")
            for i, sid in enumerate(sids)]
    other = make_runtime(runtime.root_dir, isolate=False)
    assert sorted(c.id for c in await other.list_containers()) == sorted(cids)
    reads: list[str] = []
    real = process.read_json

    def counting(path: str) -> dict[str, object] | None:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(process, "read_json", counting)
    for rt in (runtime, other):
        await rt.list_containers()
        await rt.list_pod_sandboxes()
    reads.clear()
    for _ in range(3):
        for rt in (runtime, other):
            assert {c.state for c in await rt.list_containers()} == {ContainerState.RUNNING}
            assert len(await rt.list_pod_sandboxes()) == 5
            assert [c.id for c in await rt.list_containers(sids[2])] == [cids[2]]
    assert reads == [], "unchanged files were parsed again"

    # a change through one instance is seen by the other (only that file is re-read)
    await runtime.stop_container(cids[0], 0)
    st = await other.container_status(cids[0])
    assert st.state == ContainerState.EXITED and st.exit_code == 137
    assert all(cids[0] in p for p in reads), reads
    await runtime.stop_pod_sandbox(sids[0])
    assert {s.id: s.state.value for s in await other.list_pod_sandboxes()}[sids[0]] == \
        "NOTREADY"
    # removed through the other instance: gone here too, listings and lookups
    await other.remove_container(cids[1])
    assert cids[1] not in {c.id for c in await runtime.list_containers()}
    assert await runtime.list_containers(sids[1]) == []
    await other.remove_container(cids[3])
    with pytest.raises(NotFoundError):
        await runtime.container_status(cids[3])
    # a fresh instance finds everything that is left, with its true state
    fresh = make_runtime(runtime.root_dir, isolate=False)
    states = {c.id: c.state for c in await fresh.list_containers()}
    assert states == {cids[0]: ContainerState.EXITED, cids[2]: ContainerState.RUNNING,
                      cids[4]: ContainerState.RUNNING}


EXEC_UNDER_GRPC = """
import asyncio, sys
import grpc.aio, uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from agent.runtime.interface import ContainerConfig, SandboxConfig
from agent.runtime.process import ProcessRuntime

async def traffic(stop):
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        # gRPC's threads busy, paced so that the traffic does not starve the execs
        while not stop.is_set():
            await asyncio.gather(*(stub.Check(health_pb2.HealthCheckRequest())
                                   for _ in range(20)))
            await asyncio.sleep(0.005)
    await server.stop(None)

async def main(root, name):
    stop = asyncio.Event()
    t = asyncio.ensure_future(traffic(stop))
    await asyncio.sleep(0.3)
    rt = ProcessRuntime(root, name, isolate=False)
    sid = await rt.run_pod_sandbox(SandboxConfig(pod_uid="u", namespace="d", name="p",
                                                 hostname="p", pod_dir=root + "/pod"))
    cid = await rt.create_container(sid, ContainerConfig(
        name="c", argv=["sleep", "60"], log_path=root + "/c.log"))
    await rt.start_container(cid)
    sem = asyncio.Semaphore(4)
    async def one(i):
        async with sem:
            try:
                async with asyncio.timeout(30):  # one hung exec is named, not a test timeout
                    if i % 2:
                        r = await rt.exec_sync(cid, ["sh", "-c", "echo ok"], 10)
                        return r.exit_code, r.stdout
                    s = await rt.exec(cid, ["sh", "-c", "echo ok"], stdin=False, tty=False)
                    out = b"".join([d async for _, d in s.output()])
                    return await s.wait(), out
            except TimeoutError:
                return "hung", i
    results = await asyncio.gather(*(one(i) for i in range(60)))
    await rt.remove_container(cid)
    await rt.remove_pod_sandbox(sid)
    stop.set()
    await t
    bad = [r for r in results if r != (0, b"ok\\n")]
    print("BAD", len(bad), bad[:3], flush=True)

uvloop.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_exec_under_uvloop_with_grpc_traffic(tmp_path: Path) -> None:
    """The agent runs on uvloop beside gRPC's threads: helpers started by the loop's own
    fork used to die of SIGSEGV before running (exit 139, no output, ~1 in 10)."""
    pytest.importorskip("uvloop")
    pytest.importorskip("grpc_health")
    name = f"flotilla/test-{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", EXEC_UNDER_GRPC, str(tmp_path), name, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "GRPC_VERBOSITY": "ERROR"})
    try:
        out, err = b"", b""
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        # the container's monitor left the script's session: remove what the script left
        await cleanup(ProcessRuntime(tmp_path, name, isolate=False))
    assert b"BAD 0 " in out, (proc.returncode, out.decode(), err.decode()[:6000])
