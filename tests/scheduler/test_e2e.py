"""The scheduler against a real in-process apiserver: Node objects created directly (no
agents), pods created through the API, outcomes read back through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control.api.pb import core_pb2, scheduling_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.scheduler.scheduler import Scheduler
from control.server import ControlPlane, ServerOptions
from tests.conftest import Cluster
from tests.scheduler.builders import anti_affinity, node, pod
from tests.support import eventually


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The shared fixture's control plane minus its own scheduler: each test runs the one
    it configures (two schedulers would race for the same pods)."""
    plane = ControlPlane(ServerOptions(data_dir=tmp_path / "data", listen="127.0.0.1:0",
                                       bookmark_interval=0.2, shutdown_grace=0.5,
                                       disable={"scheduler"}))
    address = await plane.start()
    channel = open_channel(address, plane.admin_credentials)
    try:
        yield Cluster(plane, ApiClient(channel, address, timeout=10), address,
                      tmp_path / "data")
    finally:
        await channel.close(None)
        await plane.stop()


@pytest.fixture
async def sched(cluster: Cluster) -> AsyncIterator[Scheduler]:
    s = Scheduler(cluster.client, sync_timeout=10)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def bound_to(c: Cluster, name: str, ns: str = "default") -> str:
    async def get() -> str:
        p = await c.client.get("pods", name, ns)
        return str(p.spec.node_name)
    return str(await eventually(get))


async def unschedulable_message(c: Cluster, name: str, ns: str = "default") -> str:
    async def get() -> str:
        p = await c.client.get("pods", name, ns)
        for cond in p.status.conditions:
            if cond.type == "PodScheduled" and cond.status == "False" \
                    and cond.reason == "Unschedulable":
                return str(cond.message)
        return ""
    return str(await eventually(get))


async def events_for(c: Cluster, name: str, reason: str) -> list[core_pb2.Event]:
    res = await c.client.list("events", "default")
    return [e for e in res.items if e.involved_object.name == name and e.reason == reason]


async def create_nodes(c: Cluster, *nodes: core_pb2.Node) -> None:
    for n in nodes:
        await c.client.create(n)


async def test_binds_pod_and_records_scheduled_event(cluster: Cluster, sched: Scheduler) -> None:
    await create_nodes(cluster, node("n1"), node("n2"))
    await cluster.client.create(pod("web", cpu="100m", memory="64Mi", uid=""))
    where = await bound_to(cluster, "web")
    assert where in ("n1", "n2")
    p = await cluster.client.get("pods", "web", "default")
    assert any(c.type == "PodScheduled" and c.status == "True" for c in p.status.conditions)
    evs = await eventually(lambda: events_for(cluster, "web", "Scheduled"))
    assert evs[0].message == f"Successfully assigned default/web to {where}"
    assert evs[0].type == "Normal" and evs[0].source.component == "default-scheduler"


async def test_resource_fit_and_pending_pod_scheduled_when_node_added(
        cluster: Cluster, sched: Scheduler) -> None:
    await create_nodes(cluster, node("small1", cpu="1"), node("small2", cpu="1"))
    await cluster.client.create(pod("big", cpu="2", uid=""))
    msg = await unschedulable_message(cluster, "big")
    assert msg == "0/2 nodes are available: 2 Insufficient cpu."
    evs = await eventually(lambda: events_for(cluster, "big", "FailedScheduling"))
    assert evs[0].message == msg and evs[0].type == "Warning"
    p = await cluster.client.get("pods", "big", "default")
    assert not p.spec.node_name
    await create_nodes(cluster, node("large", cpu="4"))
    assert await bound_to(cluster, "big") == "large"


async def test_reasons_counted_like_kubernetes(cluster: Cluster, sched: Scheduler) -> None:
    await create_nodes(
        cluster,
        node("tainted", labels={"disk": "ssd"}, taints=[("dedicated", "gpu", "NoSchedule")]),
        node("hdd", labels={"disk": "hdd"}),
        node("full1", cpu="1", labels={"disk": "ssd"}),
        node("full2", cpu="1", labels={"disk": "ssd"}),
    )
    await cluster.client.create(pod("picky", cpu="2", node_selector={"disk": "ssd"}, uid=""))
    msg = await unschedulable_message(cluster, "picky")
    assert msg == ("0/4 nodes are available: 2 Insufficient cpu, 1 node(s) didn't match Pod's "
                   "node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}.")
    # Another failure with the same message aggregates into the same Event (count 2).
    n = await cluster.client.get("nodes", "hdd")
    n.metadata.labels["touched"] = "yes"
    await cluster.client.update(n)

    async def aggregated() -> bool:
        evs = await events_for(cluster, "picky", "FailedScheduling")
        return len(evs) == 1 and evs[0].count >= 2
    await eventually(aggregated)
    # Tolerating the taint makes the tainted node fit.
    tol = pod("tolerant", cpu="2", node_selector={"disk": "ssd"}, uid="",
              tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                            "effect": "NoSchedule"}])
    await cluster.client.create(tol)
    assert await bound_to(cluster, "tolerant") == "tainted"


async def test_cordoned_node_is_skipped(cluster: Cluster, sched: Scheduler) -> None:
    await create_nodes(cluster, node("cordoned", unschedulable=True))
    await cluster.client.create(pod("p", uid=""))
    assert await unschedulable_message(cluster, "p") == \
        "0/1 nodes are available: 1 node(s) were unschedulable."


async def test_anti_affinity_spreads_and_refuses(cluster: Cluster, sched: Scheduler) -> None:
    await create_nodes(cluster, node("a"), node("b"))
    for i in range(3):
        await cluster.client.create(anti_affinity(pod(f"db{i}", labels={"app": "db"}, uid=""),
                                                  {"app": "db"}))
    placed = set()
    for i in range(3):
        p = await cluster.client.get("pods", f"db{i}", "default")
        placed.add(p.spec.node_name)
    await asyncio.sleep(0.3)
    nodes = []
    for i in range(3):
        p = await cluster.client.get("pods", f"db{i}", "default")
        nodes.append(p.spec.node_name)
    assert sorted(n for n in nodes if n) == ["a", "b"]
    pending = f"db{nodes.index('')}"
    assert await unschedulable_message(cluster, pending) == \
        "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules."


async def test_host_port_conflict(cluster: Cluster, sched: Scheduler) -> None:
    await create_nodes(cluster, node("only"))
    await cluster.client.create(pod("first", host_port=8080, uid=""))
    assert await bound_to(cluster, "first") == "only"
    await cluster.client.create(pod("second", host_port=8080, uid=""))
    assert await unschedulable_message(cluster, "second") == (
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod "
        "ports.")
    await cluster.client.create(pod("third", host_port=9090, uid=""))
    assert await bound_to(cluster, "third") == "only"


async def test_preemption_evicts_lower_priority_pod(cluster: Cluster, sched: Scheduler) -> None:
    pc = scheduling_pb2.PriorityClass(value=1000)
    pc.metadata.name = "high"
    await cluster.client.create(pc)
    await create_nodes(cluster, node("n1", cpu="2"))
    await cluster.client.create(pod("low1", cpu="800m", uid=""))
    await cluster.client.create(pod("low2", cpu="800m", uid=""))
    assert await bound_to(cluster, "low1") == "n1"
    assert await bound_to(cluster, "low2") == "n1"
    high = pod("high", cpu="1", uid="")
    high.spec.priority_class_name = "high"
    await cluster.client.create(high)

    async def nominated() -> str:
        p = await cluster.client.get("pods", "high", "default")
        return str(p.status.nominated_node_name)
    assert await eventually(nominated) == "n1"

    # Exactly one victim (the fewest needed) is being deleted gracefully.
    async def terminating() -> list[str]:
        out = []
        for name in ("low1", "low2"):
            p = await cluster.client.get("pods", name, "default")
            if p.metadata.HasField("deletion_timestamp"):
                out.append(name)
        return out
    victims = await eventually(terminating)
    await asyncio.sleep(0.3)
    assert len(await terminating()) == 1
    # Play the agent: the victim's containers stopped, remove it for good.
    await cluster.client.delete("pods", victims[0], "default", grace_period_seconds=0)
    assert await bound_to(cluster, "high") == "n1"
    evs = await eventually(lambda: events_for(cluster, victims[0], "Preempted"))
    assert "on node n1" in evs[0].message
