"""Node lifecycle end to end: a real in-process control plane with short timings, nodes
whose "agent" is a test task renewing their Leases, pods bound to them by hand.

A node that stops renewing goes Ready=Unknown, gets the unreachable taints, its pods go
Ready=False, and they are deleted when their (short, admission-defaulted) toleration runs
out; pods tolerating forever stay; a node that comes back is untainted; and when every node
is down, nothing is evicted (the control plane is the likelier problem).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import errors
from control.api.pb import coordination_pb2, core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.server import ControlPlane, ServerOptions
from tests.support import eventually

GRACE = 1.5
TOLERATION = 3
WAIT = 20.0
UNREACHABLE = "node.kubernetes.io/unreachable"


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


@dataclass
class Env:
    client: ApiClient
    alive: set[str] = field(default_factory=set)


async def heartbeat(client: ApiClient, alive: set[str]) -> None:
    """The fake agents: renew the Lease of every node in ``alive``."""
    while True:
        for name in list(alive):
            try:
                lease = await client.get(coordination_pb2.Lease, name, "kube-node-lease")
                lease.spec.renew_time.CopyFrom(now_ts())
                await client.update(lease)
            except errors.ApiError:
                pass
        await asyncio.sleep(0.2)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    plane = ControlPlane(ServerOptions(
        data_dir=tmp_path / "data", listen="127.0.0.1:0", bookmark_interval=0.2,
        shutdown_grace=0.5, node_monitor_grace_period=GRACE, node_eviction_rate=10.0,
        default_unreachable_toleration_seconds=TOLERATION,
        default_not_ready_toleration_seconds=TOLERATION, disable={"scheduler"}))
    address = await plane.start()
    channel = open_channel(address, plane.admin_credentials)
    client = ApiClient(channel, address, timeout=10)
    e = Env(client)
    beat = asyncio.create_task(heartbeat(client, e.alive))
    try:
        yield e
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        await channel.close(None)
        await plane.stop()


async def add_node(e: Env, name: str, zone: str = "") -> None:
    node = core_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    if zone:
        node.metadata.labels["topology.kubernetes.io/zone"] = zone
    node.status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                               last_heartbeat_time=now_ts(), last_transition_time=now_ts())
    await e.client.create(node)
    lease = coordination_pb2.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
    lease.metadata.name, lease.metadata.namespace = name, "kube-node-lease"
    lease.spec.holder_identity = name
    lease.spec.lease_duration_seconds = 40
    lease.spec.renew_time.CopyFrom(now_ts())
    await e.client.create(lease)
    e.alive.add(name)


async def post_ready(e: Env, name: str) -> None:
    """What an agent does when it comes back: Ready=True with a fresh heartbeat."""
    node = await e.client.get(core_pb2.Node, name)
    for c in node.status.conditions:
        c.status, c.reason, c.message = "True" if c.type == "Ready" else "False", "", ""
        c.last_heartbeat_time.CopyFrom(now_ts())
        c.last_transition_time.CopyFrom(now_ts())
    await e.client.update_status(node)


async def add_running_pod(e: Env, name: str, node: str, *,
                          tolerate_forever: bool = False) -> core_pb2.Pod:
    pod = core_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.node_name = node
    pod.spec.containers.add(name="c", image="busybox")
    if tolerate_forever:
        pod.spec.tolerations.add(key=UNREACHABLE, operator="Exists", effect="NoExecute")
    created = await e.client.create(pod)
    created.status.phase = "Running"
    for ctype in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        created.status.conditions.add(type=ctype, status="True",
                                      last_transition_time=now_ts())
    return await e.client.update_status(created)  # type: ignore[no-any-return]


def taints(node: Any) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in node.spec.taints}


def ready(obj: Any) -> str:
    return next((c.status for c in obj.status.conditions if c.type == "Ready"), "")


async def test_unreachable_node_is_tainted_and_its_pods_evicted(env: Env) -> None:
    c = env.client
    await add_node(env, "n1")
    await add_node(env, "n2")
    doomed = await add_running_pod(env, "doomed", "n1")
    stays = await add_running_pod(env, "stays", "n1", tolerate_forever=True)
    elsewhere = await add_running_pod(env, "elsewhere", "n2")
    # DefaultTolerationSeconds admission, with the server's option.
    assert {(t.key, t.toleration_seconds) for t in doomed.spec.tolerations} == {
        ("node.kubernetes.io/not-ready", TOLERATION), (UNREACHABLE, TOLERATION)}
    assert [t.key for t in stays.spec.tolerations] == [UNREACHABLE,
                                                       "node.kubernetes.io/not-ready"]
    await asyncio.sleep(GRACE + 0.5)  # healthy nodes stay healthy past the grace period
    n1 = await c.get(core_pb2.Node, "n1")
    assert ready(n1) == "True" and not taints(n1)

    env.alive.discard("n1")  # the agent of n1 dies

    async def n1_unreachable() -> Any:
        node = await c.get(core_pb2.Node, "n1")
        want = {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
        return node if ready(node) == "Unknown" and want <= taints(node) else None

    node = await eventually(n1_unreachable, "n1 Unknown and tainted")
    cond = next(x for x in node.status.conditions if x.type == "Ready")
    assert (cond.reason, cond.message) == ("NodeStatusUnknown",
                                           "Kubelet stopped posting node status.")

    async def pods_not_ready() -> bool:
        pods = [await c.get(core_pb2.Pod, n, "default") for n in ("doomed", "stays")]
        return all(ready(p) == "False" for p in pods)

    await eventually(pods_not_ready, "n1's pods Ready=False")

    async def doomed_deleted() -> bool:
        try:
            pod = await c.get(core_pb2.Pod, "doomed", "default")
        except errors.NotFound:
            return True
        return pod.metadata.HasField("deletion_timestamp")

    await eventually(doomed_deleted, "the pod evicted after its toleration")
    pod = await c.get(core_pb2.Pod, "stays", "default")
    assert not pod.metadata.HasField("deletion_timestamp")
    pod = await c.get(core_pb2.Pod, "elsewhere", "default")
    assert ready(pod) == "True" and not pod.metadata.HasField("deletion_timestamp")
    assert not taints(await c.get(core_pb2.Node, "n2"))
    assert elsewhere.metadata.uid == pod.metadata.uid

    async def events() -> set[tuple[str, str]]:
        evs = (await c.list_all(core_pb2.Event, "default")).items
        seen = {(e.reason, e.involved_object.name) for e in evs}
        want = {("NodeNotReady", "n1"), ("TaintManagerEviction", "doomed")}
        return want if want <= seen else set()

    await eventually(events, "NodeNotReady and TaintManagerEviction events")
    evs = (await c.list_all(core_pb2.Event, "default")).items
    ev = next(e for e in evs if e.reason == "TaintManagerEviction")
    assert ev.message == "Marking for deletion Pod default/doomed"

    # The agent comes back: lease renewed, Ready=True posted -> untainted.
    env.alive.add("n1")
    await post_ready(env, "n1")

    async def n1_clean() -> bool:
        return not taints(await c.get(core_pb2.Node, "n1"))

    await eventually(n1_clean, "n1 untainted")


async def test_every_node_down_evicts_nothing(env: Env) -> None:
    c = env.client
    await add_node(env, "a1", zone="z1")
    await add_node(env, "b1", zone="z2")
    await add_running_pod(env, "p-a", "a1")
    await add_running_pod(env, "p-b", "b1")
    env.alive.clear()  # a partition: the control plane hears from no node

    async def both_unknown() -> bool:
        nodes = [await c.get(core_pb2.Node, n) for n in ("a1", "b1")]
        return all(ready(n) == "Unknown" and (UNREACHABLE, "NoSchedule") in taints(n)
                   for n in nodes)

    await eventually(both_unknown, "both nodes Unknown")
    await asyncio.sleep(TOLERATION + 1.0)
    for name in ("a1", "b1"):
        assert (UNREACHABLE, "NoExecute") not in taints(await c.get(core_pb2.Node, name))
    for name in ("p-a", "p-b"):
        pod = await c.get(core_pb2.Pod, name, "default")
        assert not pod.metadata.HasField("deletion_timestamp")
        assert ready(pod) == "False"  # still marked: no traffic to pods we cannot reach

    # One zone comes back: the other zone is fully disrupted while z1 is healthy, so
    # evictions resume at the normal rate there.
    env.alive.add("a1")
    await post_ready(env, "a1")

    async def b1_no_execute() -> bool:
        return (UNREACHABLE, "NoExecute") in taints(await c.get(core_pb2.Node, "b1"))

    await eventually(b1_no_execute, "b1 tainted NoExecute once a zone is healthy")
