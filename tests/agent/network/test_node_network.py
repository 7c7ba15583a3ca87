"""The node side in host mode (no root, or --pod-network host): the Node says so through
its NetworkUnavailable condition and annotation, written once."""

from __future__ import annotations

import asyncio

from agent.network.node import ANNOTATION, CONDITION, NodeNetwork
from control.api import convert
from control.api.pb import core_pb2
from tests.conftest import Cluster


async def test_host_mode_is_reported_on_the_node(api_cluster: Cluster) -> None:
    c = api_cluster.client
    await c.create(convert.from_dict({"apiVersion": "v1", "kind": "Node",
                                      "metadata": {"name": "n1"}}, core_pb2.Node()))
    nn = NodeNetwork(c, "n1", None, host_reason="the agent is not running as root")
    task = asyncio.create_task(nn.run(), name="test-node-network")
    try:
        async with asyncio.timeout(10):
            await nn.ready.wait()
            while True:
                node = await c.get(core_pb2.Node, "n1")
                cond = next((x for x in node.status.conditions if x.type == CONDITION), None)
                if cond is not None:
                    break
                await asyncio.sleep(0.05)
        assert node.metadata.annotations[ANNOTATION] == "host"
        assert (cond.status, cond.reason) == ("False", "HostNetworkOnly")
        assert "not running as root" in cond.message
        rv = node.metadata.resource_version
        await asyncio.sleep(0.5)  # nothing changed: nothing written again
        assert (await c.get(core_pb2.Node, "n1")).metadata.resource_version == rv
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
