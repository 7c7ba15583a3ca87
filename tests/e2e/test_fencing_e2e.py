"""Fencing end to end: a real agent (process runtime) whose connection to the API server
is cut by a relay. The pod that asked for it (flotilla.io/stop-after-disconnect) has its
container stopped once the node has been away that long while the other pod runs on; when
the connection heals, the fenced pod runs again and its Events tell what happened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.kubelet.fencing import UNFENCED
from agent.main import Agent
from control.api.fencing import STOP_AFTER_DISCONNECT
from control.api.pb import core_pb2
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.agents import NODE, pod, stop_agent_and_pods, wait_pod
from tests.support.cluster import pgrep, start_agent, unique_sleep
from tests.support.runtimeclasses import ensure_host_runtime_class
from tests.support.tcp_proxy import TcpRelay

LIMIT = 2.0


@pytest.fixture
async def relay(cluster: Cluster) -> AsyncIterator[TcpRelay]:
    host, _, port = cluster.address.rpartition(":")
    async with TcpRelay(host, int(port)) as r:
        yield r


@pytest.fixture
async def cut_off_agent(cluster: Cluster, relay: TcpRelay,
                        tmp_path: Path) -> AsyncIterator[Agent]:
    a = start_agent(cluster, NODE, tmp_path / "agent", server=relay.address,
                    request_timeout=1.0, retry_max=0.5, kubelet={"fence_period": 0.2})
    await a.start()
    try:
        await ensure_host_runtime_class(cluster.client)
        yield a
    finally:
        relay.heal()
        await stop_agent_and_pods(cluster, a, NODE)


async def test_fenced_pod_stops_while_cut_off_and_runs_again(
        cluster: Cluster, relay: TcpRelay, cut_off_agent: Agent) -> None:
    c = cluster.client
    fenced_cmd, other_cmd = unique_sleep(), unique_sleep()
    once = pod("once", fenced_cmd.split())
    once.metadata.annotations[STOP_AFTER_DISCONNECT] = f"{LIMIT:g}s"
    await c.create(once)
    await c.create(pod("other", other_cmd.split()))
    for name in ("once", "other"):
        await wait_pod(cluster, name, lambda p: p.status.phase == "Running")
    first = await eventually(lambda: pgrep(fenced_cmd, exact=True), "fenced pod's process",
                             timeout=10)
    other = pgrep(other_cmd, exact=True)
    assert other

    loop = asyncio.get_running_loop()
    relay.cut()
    cut_at = loop.time()
    await eventually(lambda: not pgrep(fenced_cmd, exact=True), "fenced container stopped",
                     timeout=LIMIT + 10)
    assert loop.time() - cut_at >= LIMIT - 0.5  # not before its limit
    await asyncio.sleep(1.0)  # stays stopped while cut off, and the other pod runs on
    assert not pgrep(fenced_cmd, exact=True)
    assert pgrep(other_cmd, exact=True) == other

    relay.heal()
    again = await eventually(lambda: pgrep(fenced_cmd, exact=True), "fenced pod running again",
                             timeout=20)
    assert set(again).isdisjoint(first)
    assert pgrep(other_cmd, exact=True) == other
    p = await wait_pod(cluster, "once", lambda p: p.status.phase == "Running" and any(
        cs.restart_count >= 1 and cs.state.HasField("running")
        for cs in p.status.container_statuses), limit=20)
    assert not p.metadata.HasField("deletion_timestamp")

    async def lifted() -> core_pb2.Event | None:
        evs = (await c.list(core_pb2.Event, "default")).items
        return next((e for e in evs if e.involved_object.name == "once"
                     and e.reason == UNFENCED), None)

    # (the Fenced Event was recorded while no call got through: this one tells the story)
    ev = await eventually(lifted, "a FenceLifted Event", timeout=15)
    assert f"{STOP_AFTER_DISCONNECT} limit {LIMIT:g}s" in ev.message
    assert "containers were stopped for" in ev.message
