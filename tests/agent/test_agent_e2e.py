"""The agent's node side against a real control plane (in-process), with short intervals:
registration, lease renewals, status posts, a cordon surviving them, a clean stop; then
the same through `flotilla agent` and `flotilla server` subprocesses.

Every wait is bounded; every task and process is stopped in a finally.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.config import AgentOptions, TaintSpec
from agent.main import Agent, run_agent
from control.api import errors
from control.api.pb import coordination_pb2, core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from tests.conftest import Cluster, admin_config, node_config
from tests.support import eventually

# What a read answers before the agent has registered its node or lease: poll again.
NOT_YET = (errors.ApiError,)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def fast_options(cluster: Cluster, tmp_path: Path, **kw: Any) -> AgentOptions:
    return AgentOptions(
        server=cluster.address, node_name="n1", data_dir=tmp_path / "agent",
        lease_renew_interval=0.2, node_status_update_frequency=0.3, retry_initial=0.05,
        retry_max=0.5, request_timeout=5.0, **{**cluster.agent_identity("n1"), **kw},
    )


def heartbeat(node: core_pb2.Node, kind: str = "Ready") -> float:
    cond = next(c for c in node.status.conditions if c.type == kind)
    return cond.last_heartbeat_time.seconds


async def test_agent_registers_renews_and_survives_cordon(cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client
    options = fast_options(cluster, tmp_path, labels={"zone": "eu"},
                           taints=[TaintSpec("dedicated", "infra", "NoSchedule")],
                           system_reserved={"cpu": "100m"}, max_pods=50)
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(options, stop), name="agent-under-test")
    try:
        node: core_pb2.Node = await eventually(
            lambda: client.get(core_pb2.Node, "n1"), retry_on=NOT_YET)
        labels = dict(node.metadata.labels)
        assert labels["kubernetes.io/hostname"] == "n1"
        assert labels["kubernetes.io/os"] == "linux"
        assert labels["kubernetes.io/arch"] in ("amd64", "arm64")
        assert labels["beta.kubernetes.io/arch"] == labels["kubernetes.io/arch"]
        assert labels["zone"] == "eu"
        assert [(t.key, t.effect) for t in node.spec.taints] == [("dedicated", "NoSchedule")]
        st = node.status
        assert st.capacity["pods"].string == "50"
        assert int(st.capacity["cpu"].string) >= 1
        assert st.allocatable["cpu"].string == f"{int(st.capacity['cpu'].string) * 1000 - 100}m"
        assert st.capacity["memory"].string and st.capacity["ephemeral-storage"].string
        assert {a.type for a in st.addresses} == {"InternalIP", "Hostname"}
        assert next(a.address for a in st.addresses if a.type == "InternalIP") == "127.0.0.1"
        assert st.node_info.kubelet_version.startswith("flotilla-agent/")
        assert st.node_info.kernel_version == os.uname().release
        conds = {c.type: c for c in st.conditions}
        assert conds["Ready"].status == "True" and conds["Ready"].reason == "KubeletReady"
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
            assert conds[kind].status == "False"

        # The lease exists, is owned by the Node, and its renewTime advances.
        lease: coordination_pb2.Lease = await eventually(
            lambda: client.get(coordination_pb2.Lease, "n1", "kube-node-lease"), retry_on=NOT_YET)
        assert lease.spec.holder_identity == "n1"
        assert lease.spec.lease_duration_seconds == 40
        first_renew = lease.spec.renew_time.ToNanoseconds()

        async def renewed() -> coordination_pb2.Lease | None:
            le = await client.get(coordination_pb2.Lease, "n1", "kube-node-lease")
            ok = (le.spec.renew_time.ToNanoseconds() > first_renew
                  and [r.uid for r in le.metadata.owner_references] == [node.metadata.uid])
            return le if ok else None

        await eventually(renewed, retry_on=NOT_YET)

        # A cordon made by a user survives the agent's next status posts.
        await client.patch(core_pb2.Node, "n1", {"spec": {"unschedulable": True}})
        before = heartbeat(node)

        async def posted_after_cordon() -> core_pb2.Node | None:
            n = await client.get(core_pb2.Node, "n1")
            return n if heartbeat(n) >= before + 2 else None

        # Heartbeats are whole seconds: wait for two of them past the cordon.
        later = await eventually(posted_after_cordon, timeout=15, retry_on=NOT_YET)
        assert later.spec.unschedulable
        ready = next(c for c in later.status.conditions if c.type == "Ready")
        assert ready.last_transition_time == conds["Ready"].last_transition_time
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert task.exception() is None


async def test_agent_adopts_existing_node_and_recovers_a_deleted_lease(
    cluster: Cluster, tmp_path: Path
) -> None:
    client = cluster.client
    existing = core_pb2.Node(api_version="v1", kind="Node")
    existing.metadata.name = "n1"
    existing.metadata.labels["kubernetes.io/hostname"] = "stale"
    existing.metadata.labels["user"] = "mine"
    existing.spec.unschedulable = True
    await client.create(existing)
    agent = Agent(fast_options(cluster, tmp_path))
    try:
        await agent.start()

        async def adopted() -> core_pb2.Node | None:
            n = await client.get(core_pb2.Node, "n1")
            ok = n.metadata.labels.get("kubernetes.io/hostname") == "n1" and n.status.conditions
            return n if ok else None

        node = await eventually(adopted, retry_on=NOT_YET)
        assert node.spec.unschedulable and node.metadata.labels["user"] == "mine"
        await eventually(lambda: client.get(coordination_pb2.Lease, "n1", "kube-node-lease"), retry_on=NOT_YET)
        await client.delete(coordination_pb2.Lease, "n1", "kube-node-lease")
        await eventually(lambda: client.get(coordination_pb2.Lease, "n1", "kube-node-lease"), retry_on=NOT_YET)
    finally:
        await agent.stop(5)


async def test_agent_waits_for_an_unreachable_server_then_registers(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Started against a port nobody listens on, the agent keeps retrying (no crash);
    the same retry loop then succeeds against the real server."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    options = fast_options(cluster, tmp_path)
    options.server = dead
    options.request_timeout = 0.5
    agent = Agent(options)
    try:
        await agent.start()
        await asyncio.sleep(1.0)
        assert agent.node_status is not None and not agent.node_status.registered.is_set()
        assert agent.lease is not None and agent.lease.renewals == 0
        # Point the managers at the live server (what a reconnect looks like to them).
        live = ApiClient(open_channel(cluster.address, cluster.credentials), cluster.address,
                         timeout=5)
        try:
            agent.node_status.client = live
            agent.lease.client = live
            await asyncio.wait_for(agent.node_status.registered.wait(), 10)
            await eventually(lambda: cluster.client.get(core_pb2.Node, "n1"), retry_on=NOT_YET)
            lease_ctl = agent.lease

            async def renewed() -> bool:
                return lease_ctl.renewals > 0

            await eventually(renewed, retry_on=NOT_YET)
        finally:
            await agent.stop(5)
            await live.channel.close(None)
    finally:
        await agent.stop(5)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FLOTILLA_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 5)


@pytest.mark.e2e
async def test_flotilla_agent_subprocess_joins_flotilla_server(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "control.cli.main"]
    server = await asyncio.create_subprocess_exec(
        *cli, "server", "--data-dir", str(tmp_path / "server"), "--listen", "127.0.0.1:0",
        "--log-format", "json",
        env=_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    agent: asyncio.subprocess.Process | None = None
    try:
        conf = tmp_path / "server" / "admin.conf"
        deadline = time.monotonic() + 30
        while not conf.exists():
            assert server.returncode is None, "server exited"
            assert time.monotonic() < deadline, "server did not write admin.conf"
            await asyncio.sleep(0.1)
        address = admin_config(tmp_path / "server").server
        agent = await asyncio.create_subprocess_exec(
            *cli, "--config", str(node_config(tmp_path / "server", "n1", tmp_path / "n1.conf")),
            "agent", "--node-name", "n1",
            "--data-dir", str(tmp_path / "agent"), "--labels", "zone=lab",
            "--pod-network", "host",
            "--node-lease-duration-seconds", "4", "--node-status-update-frequency", "1s",
            env=_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        client = ApiClient(open_channel(address, admin_config(tmp_path / "server").credentials),
                           address, timeout=5)
        try:
            node = await eventually(lambda: client.get(core_pb2.Node, "n1"), timeout=30, retry_on=NOT_YET)
            assert node.metadata.labels["zone"] == "lab"
            lease = await eventually(
                lambda: client.get(coordination_pb2.Lease, "n1", "kube-node-lease"), retry_on=NOT_YET)
            assert lease.spec.lease_duration_seconds == 4
            first = lease.spec.renew_time.ToNanoseconds()

            async def renewed() -> bool:
                le = await client.get(coordination_pb2.Lease, "n1", "kube-node-lease")
                return le.spec.renew_time.ToNanoseconds() > first

            await eventually(renewed, timeout=10, retry_on=NOT_YET)  # renew interval is 1 s here
        finally:
            await client.channel.close(None)
        agent.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(agent.communicate(), 15)
        assert agent.returncode == 0, err.decode()
        assert b"agent stopped" in err
    finally:
        await _stop(agent)
        await _stop(server)


async def test_agent_restarts_on_its_daemon_port_unless_taken(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A restarted agent binds the port its last run bound (what the Node advertises stays
    true); if that port is taken it serves on a new one and advertises that."""
    client = cluster.client

    async def advertised() -> int:
        n = await client.get(core_pb2.Node, "n1")
        return n.status.daemon_endpoints.kubelet_endpoint.port

    async def run_once() -> tuple[int, str]:
        agent = Agent(fast_options(cluster, tmp_path))
        try:
            await agent.start()
            assert agent.agent_server is not None
            port, address = agent.agent_server.port, agent.agent_server.address
            await eventually(lambda: _equal(advertised(), port), retry_on=NOT_YET)
            return port, address
        finally:
            await agent.stop(5)

    first, address = await run_once()
    assert (await run_once())[0] == first
    host = address.rpartition(":")[0].strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as taken:
        taken.bind((host, first))
        taken.listen()
        third = (await run_once())[0]
    assert third != first
    assert (tmp_path / "agent" / "daemon-port").read_text().strip() == str(third)


async def _equal(value: Any, want: object) -> bool:
    return bool(await value == want)
