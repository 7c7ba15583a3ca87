"""Pod garbage collection: which pods go (tables), then one pass end to end with short
timings on a control plane whose manager runs only the pod GC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import convert
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.controllers.manager import ControllerContext, ControllerManager
from control.controllers.podgc import (
    PodGarbageCollector,
    orphaned_pods,
    quarantine_expired,
    terminated_pods_to_delete,
    unscheduled_terminating_pods,
)
from control.server import ControlPlane, ServerOptions
from tests.support import eventually
from tests.support.replicasets import bare_pod


def mkpod(name: str, phase: str = "Running", created: int = 100, node: str = "",
          deleting: bool = False) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.metadata.creation_timestamp.CopyFrom(Timestamp(seconds=created))
    if deleting:
        p.metadata.deletion_timestamp.seconds = 1
    p.spec.node_name = node
    p.status.phase = phase
    return p


@pytest.mark.parametrize(("pods", "threshold", "expected"), [
    ([mkpod("a", "Succeeded"), mkpod("b", "Failed")], 0, []),  # 0 disables
    ([mkpod("a", "Succeeded"), mkpod("b", "Failed")], 2, []),
    ([mkpod("new", "Succeeded", 300), mkpod("old", "Failed", 100),
      mkpod("mid", "Succeeded", 200), mkpod("run", "Running", 1)], 1, ["old", "mid"]),
    # terminating ones are already going
    ([mkpod("a", "Succeeded", 1, deleting=True), mkpod("b", "Succeeded", 2),
      mkpod("c", "Succeeded", 3)], 1, ["b"]),
])
def test_terminated_pods_to_delete(pods: list[Any], threshold: int,
                                   expected: list[str]) -> None:
    assert [p.metadata.name for p in terminated_pods_to_delete(pods, threshold)] == expected


def test_orphaned_and_unscheduled_terminating() -> None:
    pods = [mkpod("on-live", node="n1"), mkpod("on-gone", node="n2"),
            mkpod("terminating-on-gone", node="n2", deleting=True), mkpod("unbound"),
            mkpod("unbound-deleting", deleting=True)]
    by_node = orphaned_pods(pods, ["n1"])
    assert {n: [p.metadata.name for p in ps] for n, ps in by_node.items()} == {
        "n2": ["on-gone", "terminating-on-gone"]}
    assert [p.metadata.name for p in unscheduled_terminating_pods(pods)] == [
        "unbound-deleting"]


@pytest.mark.parametrize(("since", "now", "expired"), [
    (None, 100.0, False), (90.0, 100.0, False), (60.0, 100.0, True), (50.0, 100.0, True),
])
def test_quarantine_expired(since: float | None, now: float, expired: bool) -> None:
    first = {} if since is None else {"n": since}
    assert quarantine_expired(first, "n", now, 40.0) is expired


@pytest.fixture
async def podgc_plane(tmp_path: Path) -> AsyncIterator[ApiClient]:
    plane = ControlPlane(ServerOptions(data_dir=tmp_path / "data", listen="127.0.0.1:0",
                                       bookmark_interval=0.2, shutdown_grace=0.5,
                                       disable={"controllers", "scheduler"}))
    address = await plane.start()
    channel = open_channel(address, plane.admin_credentials)
    client = ApiClient(channel, address, timeout=10)

    def factory(ctx: ControllerContext) -> PodGarbageCollector:
        return PodGarbageCollector(ctx, terminated_pod_threshold=2, gc_period=0.2,
                                   quarantine=0.5)

    manager = ControllerManager(client, controllers={"podgc": factory})
    await manager.start()
    try:
        yield client
    finally:
        await manager.stop()
        await channel.close(None)
        await plane.stop()


def node(name: str) -> core_pb2.Node:
    n: core_pb2.Node = convert.from_dict({"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": name}}, core_pb2.Node())
    return n


async def test_podgc_end_to_end(podgc_plane: ApiClient) -> None:
    c = podgc_plane
    await c.create(node("alive"))
    await c.create(node("doomed"))
    for name, target in (("on-alive", "alive"), ("on-doomed", "doomed"),
                         ("stuck", "doomed")):
        p = bare_pod(name)
        p.spec.node_name = target
        await c.create(p)
    # "stuck" is terminating gracefully on a node that is about to go
    _, pending = await c.delete(core_pb2.Pod, "stuck", "default")
    assert pending
    for i in range(4):
        p = await c.create(bare_pod(f"done-{i}"))
        p.status.phase = "Succeeded"
        await c.update_status(p)

    await c.delete(core_pb2.Node, "doomed")

    async def names() -> set[str]:
        return {p.metadata.name for p in (await c.list_all("pods", "default")).items}

    async def settled() -> bool:
        return await names() == {"on-alive", "done-2", "done-3"}

    await eventually(settled)
