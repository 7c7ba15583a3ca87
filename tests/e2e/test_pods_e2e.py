"""Pods run for real: an in-process control plane, an agent with the process runtime, and
pods bound to its node by spec.nodeName (the scheduler is not needed for that)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentOptions
from agent.kubelet.kubelet import KubeletOptions
from agent.main import Agent
from control.api import convert, errors
from control.api.pb import core_pb2
from tests.conftest import Cluster

NODE = "e2e-node"


@pytest.fixture
async def agent(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Agent]:
    data = tmp_path / "agent"
    a = Agent(AgentOptions(server=cluster.address, node_name=NODE, data_dir=data,
                           node_status_update_frequency=0.5, lease_renew_interval=0.5),
              kubelet_options=KubeletOptions(data_dir=data, sync_period=2.0,
                                             relist_period=0.2, backoff_initial=0.2,
                                             backoff_max=1.0, retry_period=0.5))
    await a.start()
    try:
        yield a
    finally:
        # remove every pod so no process outlives the test
        pods = (await cluster.client.list(core_pb2.Pod)).items
        for p in pods:
            try:
                await cluster.client.delete(core_pb2.Pod, p.metadata.name, p.metadata.namespace,
                                            grace_period_seconds=1)
            except errors.NotFound:
                pass
        async with asyncio.timeout(30):
            while (await cluster.client.list(core_pb2.Pod)).items:
                await asyncio.sleep(0.2)
        await a.stop()


def pod(name: str, command: list[str], restart: str = "Always", **spec: Any) -> core_pb2.Pod:
    return convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "restartPolicy": restart,
                 "terminationGracePeriodSeconds": 2,
                 "containers": [{"name": "main", "image": "busybox", "command": command}],
                 **spec},
    }, core_pb2.Pod())


async def wait_pod(cluster: Cluster, name: str, pred: Any, limit: float = 30.0) -> Any:
    last = None
    try:
        async with asyncio.timeout(limit):
            while True:
                last = await cluster.client.get(core_pb2.Pod, name, "default")
                if pred(last):
                    return last
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"pod {name} never matched; last: {last}") from None


async def test_pod_runs_logs_exec_and_deletes(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    node = await wait_node(cluster)
    assert node.status.daemon_endpoints.kubelet_endpoint.port > 0
    await c.create(pod("hello", ["sh", "-c", "echo hello from $HOSTNAME; exec sleep 60"]))
    p = await wait_pod(cluster, "hello", lambda p: p.status.phase == "Running" and any(
        cs.ready for cs in p.status.container_statuses))
    assert p.status.host_ip and p.status.start_time.seconds > 0
    assert {c.type for c in p.status.conditions} >= {"Ready", "Initialized", "PodScheduled"}

    async def read_logs() -> str:
        return b"".join([chunk async for chunk in c.logs("default", "hello")]).decode()

    async with asyncio.timeout(10):
        while "hello from" not in (text := await read_logs()):
            await asyncio.sleep(0.2)
    assert "hello from" in text
    code, stdout, _ = await c.exec("default", "hello", ["sh", "-c", "echo out; exit 3"]).wait()
    assert code == 3 and b"out" in stdout
    _, pending = await c.delete(core_pb2.Pod, "hello", "default")
    assert pending  # bound to a node: graceful, the agent confirms
    async with asyncio.timeout(20):
        while True:
            try:
                await c.get(core_pb2.Pod, "hello", "default")
            except errors.NotFound:
                break
            await asyncio.sleep(0.1)


async def wait_node(cluster: Cluster) -> Any:
    async with asyncio.timeout(20):
        while True:
            try:
                node = await cluster.client.get(core_pb2.Node, NODE)
                if node.status.daemon_endpoints.kubelet_endpoint.port:
                    return node
            except errors.NotFound:
                pass
            await asyncio.sleep(0.1)


async def test_restart_policies(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(pod("fails-always", ["sh", "-c", "exit 1"], "Always"))
    await c.create(pod("fails-never", ["sh", "-c", "exit 2"], "Never"))
    await c.create(pod("succeeds", ["sh", "-c", "exit 0"], "OnFailure"))
    p = await wait_pod(cluster, "fails-always",
                       lambda p: p.status.container_statuses
                       and p.status.container_statuses[0].restart_count >= 2)
    assert p.status.phase == "Running"
    p = await wait_pod(cluster, "fails-never", lambda p: p.status.phase == "Failed")
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 2 and term.reason == "Error"
    p = await wait_pod(cluster, "succeeds", lambda p: p.status.phase == "Succeeded")
    assert p.status.container_statuses[0].restart_count == 0


async def test_init_container_then_app(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    spec = pod("with-init", ["sh", "-c", "cat /work/greeting; exec sleep 60"])
    init = spec.spec.init_containers.add()
    init.name, init.image = "init", "busybox"
    init.command.extend(["sh", "-c", "echo hi > /work/greeting"])
    init.volume_mounts.add(name="work", mount_path="/work")
    spec.spec.containers[0].volume_mounts.add(name="work", mount_path="/work")
    vol = spec.spec.volumes.add()
    vol.name = "work"
    vol.empty_dir.SetInParent()
    await c.create(spec)
    p = await wait_pod(cluster, "with-init", lambda p: p.status.phase == "Running")
    assert p.status.init_container_statuses[0].state.terminated.exit_code == 0
