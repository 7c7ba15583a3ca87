"""Crashes, for real: `flotilla server` and `flotilla agent` run as subprocesses (as in
production) and are killed with SIGKILL while pods run.

- agent kill -9: the containers live on (each has its own monitor process); an agent started
  again on the same data dir re-adopts them (same container id and restartCount, no second
  process) and manages them (exec, deletion) as before;
- server kill -9: pods keep running; the server comes back on the same data dir and port,
  the agent reconnects within its backoff and reports what changed meanwhile.

Every container's command line carries a marker unique to the test, so ``pgrep -f`` counts
its processes on the host. Cleanup in ``finally``: pods deleted through a live agent when
possible, then the agent and server stopped, then any process still carrying the test's
marker or data directory killed by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from tests.conftest import admin_credentials, node_config
from tests.support import eventually
from tests.support.runtimeclasses import HOST, ensure_host_runtime_class

REPO = Path(__file__).resolve().parents[2]
NODE = "restart-node"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pgrep(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True,
                         check=False).stdout
    return sorted(int(x) for x in out.split())


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Proc:
    """One flotilla subprocess, its output in a log file."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _logs: list[Any] = field(default_factory=list)

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self._logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "control.cli.main", *self.argv], cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        for log in self._logs:
            log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    tmp: Path
    port: int
    server: Proc
    agent: Proc
    client: ApiClient
    marker: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def server_proc(tmp: Path, port: int) -> Proc:
    return Proc("server", ["server", "--data-dir", str(tmp / "server"),
                           "--listen", f"127.0.0.1:{port}", "--log-format", "json",
                           "--disable", "scheduler", "--supervisor-port", "0"],
                tmp / "server.log")


def agent_proc(tmp: Path, port: int) -> Proc:
    conf = node_config(tmp / "server", NODE, tmp / "node.conf", server=f"127.0.0.1:{port}")
    return Proc("agent", ["--config", str(conf), "agent", "--node-name", NODE,
                          "--data-dir", str(tmp / "agent"), "--log-format", "json",
                          "--pod-network", "host",
                          "--node-status-update-frequency", "1s",
                          "--node-lease-duration-seconds", "4"],
                tmp / "agent.log")


async def until(what: str, check: Callable[[], Any], limit: float = 30.0,
                every: float = 0.2, logs: tuple[Proc, ...] = ()) -> Any:
    """:func:`eventually` ``check``, with the tails of the ``logs`` in the failure."""
    try:
        return await eventually(check, what, timeout=limit, interval=every,
                                retry_on=(errors.ApiError, OSError))
    except AssertionError as e:
        tails = "\n".join(f"--- {p.name} log:\n{p.tail()}" for p in logs)
        raise AssertionError(f"{e}\n{tails}") from None

async def get_pod(client: ApiClient, name: str) -> Any:
    return await client.get(core_pb2.Pod, name, "default")


async def node_ready(client: ApiClient) -> bool:
    node = await client.get(core_pb2.Node, NODE)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions) \
        and node.status.daemon_endpoints.kubelet_endpoint.port > 0


@pytest.fixture
async def procs(tmp_path: Path) -> AsyncIterator[Cluster]:
    port = free_port()
    server = server_proc(tmp_path, port)
    agent = agent_proc(tmp_path, port)
    marker = f"flotilla-e2e-{uuid.uuid4().hex[:12]}"
    channel = open_channel(f"127.0.0.1:{port}", admin_credentials(tmp_path / "server"))
    client = ApiClient(channel, f"127.0.0.1:{port}", timeout=5)
    cluster = Cluster(tmp_path, port, server, agent, client, marker)
    try:
        server.start()
        await until("server serving", lambda: client.list(core_pb2.Namespace),
                    logs=(server,))
        agent.start()
        await until("node Ready", lambda: node_ready(client), logs=(server, agent))
        await ensure_host_runtime_class(client)
        yield cluster
    finally:
        try:
            if cluster.server.alive() and cluster.agent.alive():
                # let the agent stop every container the way a user's delete would
                with contextlib.suppress(errors.ApiError, TimeoutError):
                    async with asyncio.timeout(20):
                        for p in (await client.list(core_pb2.Pod)).items:
                            with contextlib.suppress(errors.NotFound):
                                await client.delete(core_pb2.Pod, p.metadata.name,
                                                    p.metadata.namespace,
                                                    grace_period_seconds=1)
                        while (await client.list(core_pb2.Pod)).items:
                            await asyncio.sleep(0.2)
        finally:
            await channel.close(None)
            cluster.agent.stop()
            cluster.server.stop()
            # whatever survived (a failed test): the containers and their monitors
            kill_pids(pgrep(marker))
            kill_pids(pgrep(str(tmp_path)))


def marked_pod(name: str, marker: str, **spec: Any) -> core_pb2.Pod:
    # $0 of the shell is the marker: `pgrep -f` finds exactly this container's process
    extra = spec.pop("container", {})
    return convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2,
                 "runtimeClassName": HOST, **spec,
                 "containers": [{
                     "name": "main", "image": "busybox",
                     "command": ["sh", "-c",
                                 "trap 'exit 0' TERM; while true; do sleep 0.2; done",
                                 f"{marker}-{name}"],
                     **extra}]},
    }, core_pb2.Pod())


def running(p: Any) -> bool:
    return p.status.phase == "Running" and bool(p.status.container_statuses) \
        and p.status.container_statuses[0].state.HasField("running")


async def test_agent_kill9_and_restart_readopts_running_pods(procs: Cluster) -> None:
    c, marker = procs.client, procs.marker
    await c.create(marked_pod("survivor", marker))
    before = await until("pod Running", lambda: _running(c, "survivor"),
                         logs=(procs.agent,))
    cs = before.status.container_statuses[0]
    pids = await until("container process", lambda: pgrep(f"{marker}-survivor"))
    assert len(pids) == 1

    old_port = (await c.get(core_pb2.Node, NODE)).status.daemon_endpoints.kubelet_endpoint.port
    procs.agent.kill()
    await asyncio.sleep(1.0)
    assert pgrep(f"{marker}-survivor") == pids, "the container died with its agent"

    # whole seconds, as the heartbeat is written: the old agent's last one is before this
    restarted_at = int(time.time())
    procs.agent.start()  # same data dir

    async def new_agent_ready() -> bool:
        # Ready as posted by the restarted agent (it serves before its first post), not
        # the old agent's status still standing
        node = await c.get(core_pb2.Node, NODE)
        cond = next((x for x in node.status.conditions if x.type == "Ready"), None)
        return (cond is not None and cond.status == "True"
                and cond.last_heartbeat_time.seconds >= restarted_at)

    await until("node Ready again", new_agent_ready, logs=(procs.agent,))
    # back on its port (remembered in its data dir): what the Node advertised stays true
    node = await c.get(core_pb2.Node, NODE)
    assert node.status.daemon_endpoints.kubelet_endpoint.port == old_port

    async def adopted() -> Any:
        p = await get_pod(c, "survivor")
        hb = next((x for x in p.status.conditions if x.type == "Ready"), None)
        return p if running(p) and hb is not None and hb.status == "True" else None

    after = await until("pod re-adopted", adopted, logs=(procs.agent,))
    # give PLEG and a status post time to do something wrong, if they were going to
    await asyncio.sleep(2.5)
    after = await get_pod(c, "survivor")
    acs = after.status.container_statuses[0]
    assert running(after)
    # the same container, not restarted by the crash (a first start that failed for an
    # unrelated reason may already have counted one restart before the kill)
    assert (acs.container_id, acs.restart_count) == (cs.container_id, cs.restart_count)
    assert acs.state.running.started_at == cs.state.running.started_at
    assert pgrep(f"{marker}-survivor") == pids, "duplicate or replaced container"

    # the new agent serves exec for the adopted container and stops it on deletion
    code, out, _ = await c.exec("default", "survivor", ["sh", "-c", "echo adopted"]).wait()
    await c.delete(core_pb2.Pod, "survivor", "default")

    async def gone() -> bool:
        try:
            await get_pod(c, "survivor")
        except errors.NotFound:
            return True
        return False

    await until("pod deleted", gone, logs=(procs.agent,))
    await until("container stopped", lambda: not pgrep(f"{marker}-survivor"))
    assert (code, out) == (0, b"adopted\n")


async def test_pods_survive_a_server_restart(procs: Cluster) -> None:
    c, marker = procs.client, procs.marker
    flag_dir = procs.tmp / "flag"
    flag_dir.mkdir()
    # Ready only once /flag/ready exists: created on the host while the server is down,
    # so the Ready=True seen afterwards was posted by the agent to the restarted server.
    await c.create(marked_pod("steady", marker, volumes=[
        {"name": "flag", "hostPath": {"path": str(flag_dir), "type": "Directory"}}],
        container={
            "readinessProbe": {"exec": {"command": ["cat", "/flag/ready"]},
                               "periodSeconds": 1},
            "volumeMounts": [{"name": "flag", "mountPath": "/flag"}]}))
    before = await until("pod Running", lambda: _running(c, "steady"), logs=(procs.agent,))
    assert not before.status.container_statuses[0].ready
    pids = await until("container process", lambda: pgrep(f"{marker}-steady"))

    procs.server.kill()
    down_at = time.time()
    (flag_dir / "ready").write_text("yes")
    await asyncio.sleep(2.0)  # the agent's calls fail meanwhile; it must not give up
    assert procs.agent.alive(), procs.agent.tail()
    assert pgrep(f"{marker}-steady") == pids

    procs.server.start()  # same data dir, same port
    await until("server serving again", lambda: c.list(core_pb2.Namespace),
                logs=(procs.server,))

    async def ready_again() -> Any:
        p = await get_pod(c, "steady")
        return p if running(p) and p.status.container_statuses[0].ready else None

    # the agent's retry backoff is capped at 7 s; its watch resumes after a jittered delay
    after = await until("agent reconnected, pod Ready", ready_again, limit=30,
                        logs=(procs.agent, procs.server))
    acs, bcs = after.status.container_statuses[0], before.status.container_statuses[0]
    assert (acs.container_id, acs.restart_count) == (bcs.container_id, bcs.restart_count)
    ready = next(x for x in after.status.conditions if x.type == "Ready")
    assert ready.last_transition_time.seconds >= int(down_at)

    async def lease_renewed() -> bool:
        lease = await c.get("leases", NODE, "kube-node-lease")
        return bool(lease.spec.renew_time.seconds >= int(down_at) + 1)

    await until("lease renewed after the restart", lease_renewed, logs=(procs.agent,))
    assert pgrep(f"{marker}-steady") == pids


async def _running(c: ApiClient, name: str) -> Any:
    p = await get_pod(c, name)
    return p if running(p) else None
