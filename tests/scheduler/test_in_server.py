"""`flotilla server` runs the scheduler in-process unless disabled."""

from __future__ import annotations

import asyncio

from tests.conftest import Cluster
from tests.scheduler.builders import node, pod


async def test_server_schedules_pods(cluster: Cluster) -> None:
    assert cluster.plane.scheduler is not None
    await cluster.client.create(node("n1"))
    await cluster.client.create(pod("p", cpu="100m", uid=""))
    for _ in range(200):
        p = await cluster.client.get("pods", "p", "default")
        if p.spec.node_name:
            break
        await asyncio.sleep(0.05)
    assert p.spec.node_name == "n1"
