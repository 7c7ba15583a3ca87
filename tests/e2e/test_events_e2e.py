"""Why a container failed, as a user sees it: the kubelet's Events in ``describe pod``; and
the kubelet's metrics as `flotilla agent --metrics-listen` serves them.

A real control plane and an agent with the process runtime (the ``agent`` fixture of the
pod e2e tests, which deletes every pod before it stops); every wait is bounded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.config import AgentOptions
from agent.kubelet.kubelet import KubeletOptions
from agent.main import Agent
from control.api import convert, kinds
from control.api.pb import core_pb2
from control.cli import describe
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.agents import NODE, pod, stop_agent_and_pods, wait_pod
from tests.support.http import http_get
from tests.support.runtimeclasses import ensure_host_runtime_class


async def kubelet_events(cluster: Cluster, name: str, reason: str,
                         limit: float = 30.0) -> list[Any]:
    async def found() -> list[Any]:
        return [e for e in (await cluster.client.list(core_pb2.Event, "default")).items
                if e.involved_object.name == name and e.reason == reason]

    evs: list[Any] = await eventually(found, f"{reason} events of {name}", timeout=limit,
                                      interval=0.1)
    return evs


async def describe_pod(cluster: Cluster, name: str) -> str:
    p = await cluster.client.get(core_pb2.Pod, name, "default")
    return await describe.describe(cluster.client, kinds.by_kind("Pod"), p)


async def test_a_command_that_does_not_exist(cluster: Cluster, agent: Agent) -> None:
    await cluster.client.create(pod("no-such-cmd", ["/no/such/command"]))
    [failed] = await kubelet_events(cluster, "no-such-cmd", "Failed")
    assert failed.type == "Warning"
    assert (failed.source.component, failed.source.host) == ("kubelet", NODE)
    assert failed.involved_object.field_path == "spec.containers{main}"
    assert "/no/such/command" in failed.message and failed.message.startswith("Error: ")
    text = await describe_pod(cluster, "no-such-cmd")
    assert "Warning  Failed" in text and "/no/such/command" in text, text
    assert "kubelet" in text


async def test_a_missing_configmap_key(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default"}, "data": {"other": "x"}},
        core_pb2.ConfigMap()))
    p = pod("needs-key", ["sh", "-c", "sleep 60"])
    p.spec.containers[0].env.add(name="MODE").value_from.config_map_key_ref.CopyFrom(
        core_pb2.ConfigMapKeySelector(name="settings", key="mode"))
    await c.create(p)
    got = await wait_pod(cluster, "needs-key", lambda p: p.status.container_statuses and (
        p.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError"))
    assert got.status.phase == "Pending"
    [failed] = await kubelet_events(cluster, "needs-key", "Failed")
    message = "Error: couldn't find key mode in ConfigMap default/settings"
    assert failed.message == message
    text = await describe_pod(cluster, "needs-key")
    assert "CreateContainerConfigError" in text
    assert message in text, text


async def test_an_in_tree_volume_is_accepted_and_reported_by_the_node(
        cluster: Cluster, agent: Agent) -> None:
    p = pod("cinder-user", ["sh", "-c", "sleep 60"],
            volumes=[{"name": "data", "cinder": {"volumeID": "vol-1", "fsType": "ext4"}}])
    p.spec.containers[0].volume_mounts.add(name="data", mount_path="/data")
    await cluster.client.create(p)  # accepted, as Kubernetes' API accepts it
    [mount] = await kubelet_events(cluster, "cinder-user", "FailedMount")
    assert mount.type == "Warning"
    assert mount.message == ('MountVolume.SetUp failed for volume "data" : cinder volumes '
                             "are not supported by this agent")
    got = await cluster.client.get(core_pb2.Pod, "cinder-user", "default")
    assert got.status.phase == "Pending"
    assert got.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert "cinder volumes are not supported" in await describe_pod(cluster, "cinder-user")


async def test_agent_serves_kubelet_metrics(cluster: Cluster, tmp_path: Path) -> None:
    data = tmp_path / "metrics-agent"
    node = "metrics-node"
    a = Agent(AgentOptions(server=cluster.address, node_name=node, data_dir=data,
                           node_status_update_frequency=0.5, lease_renew_interval=0.5,
                           metrics_listen="127.0.0.1:0", **cluster.agent_identity(node)),
              kubelet_options=KubeletOptions(data_dir=data, sync_period=2.0,
                                             relist_period=0.2, retry_period=0.5))
    await a.start()
    try:
        await ensure_host_runtime_class(cluster.client)
        p = pod("measured", ["sh", "-c", "sleep 60"])
        p.spec.node_name = node
        await cluster.client.create(p)
        await wait_pod(cluster, "measured", lambda p: p.status.phase == "Running")

        async def scrape() -> str:
            status, body = await http_get(a.metrics_port, "/metrics")
            assert status == "HTTP/1.1 200 OK"
            return body

        running = 'kubelet_running_containers{container_state="running"} 1.0'
        async with asyncio.timeout(10):
            while running not in (body := await scrape()):  # as of the next relist
                await asyncio.sleep(0.2)
        assert "kubelet_running_pods 1.0" in body
        assert 'kubelet_pod_worker_duration_seconds_count{operation_type="create"} 1.0' in body
        assert "kubelet_pleg_relist_duration_seconds_count" in body
    finally:
        await stop_agent_and_pods(cluster, a, node)
