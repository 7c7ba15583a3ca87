"""The node lifecycle controller's pass on a FakeClock: caches filled by hand, writes
captured by an in-memory client (they land back in the caches, as a watch would bring
them). Checks the grace period, the per-zone NoExecute rate limit and disruption modes
deterministically; the real apiserver is exercised in test_node_lifecycle_e2e.py."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from control.api.pb import coordination_pb2, core_pb2
from control.controllers.manager import ControllerContext
from control.controllers.node_lifecycle import KEY, NodeLifecycleController
from control.controllers.node_lifecycle_util import NodeLifecycleOptions
from control.runtime.clock import FakeClock
from control.runtime.events import EventBroadcaster, FakeRecorder
from control.runtime.informer import InformerSet

UNREACHABLE = "node.kubernetes.io/unreachable"


class FakeClient:
    """Just enough of ApiClient: writes go to the informers' caches."""

    def __init__(self, informers: InformerSet) -> None:
        self._informers = informers
        self._rv = 100

    def _store(self, obj: Any, resource: str) -> Any:
        new = type(obj)()
        new.CopyFrom(obj)
        self._rv += 1
        new.metadata.resource_version = str(self._rv)
        self._informers.informer(resource).indexer.add(new)
        return new

    async def update(self, obj: Any) -> Any:
        return self._store(obj, "nodes")

    async def update_status(self, obj: Any) -> Any:
        return self._store(obj, "nodes" if isinstance(obj, core_pb2.Node) else "pods")

    async def create(self, obj: Any) -> Any:
        return obj

    async def patch(self, *args: Any, **kw: Any) -> Any:
        return None


def _never(resource: str) -> Any:
    return None  # the informers are never started: the tests fill their caches


class Harness:
    def __init__(self, **opts: Any) -> None:
        self.clock = FakeClock()
        self.informers = InformerSet(_never, clock=self.clock)
        self.client = FakeClient(self.informers)
        self.recorder = FakeRecorder()
        ctx = ControllerContext(self.client, self.informers, self.clock, 1,  # type: ignore[arg-type]
                                EventBroadcaster(self.client))  # type: ignore[arg-type]
        options = NodeLifecycleOptions(node_monitor_grace_period=40.0, **opts)
        self.ctl = NodeLifecycleController(
            ctx, options=options,
            recorder=self.recorder)
        self.alive: set[str] = set()

    def _ts(self) -> Timestamp:
        return Timestamp(seconds=int(self.clock.now()), nanos=0)

    def add_node(self, name: str, zone: str = "") -> None:
        node = core_pb2.Node()
        node.metadata.name = name
        node.metadata.resource_version = "1"
        if zone:
            node.metadata.labels["topology.kubernetes.io/zone"] = zone
        node.status.conditions.add(type="Ready", status="True", last_heartbeat_time=self._ts())
        self.informers.informer("nodes").indexer.add(node)
        self.alive.add(name)
        self.renew()

    def renew(self) -> None:
        for name in self.alive:
            lease = coordination_pb2.Lease()
            lease.metadata.name, lease.metadata.namespace = name, "kube-node-lease"
            lease.spec.renew_time.CopyFrom(Timestamp(seconds=int(self.clock.now()),
                                                     nanos=int(self.clock.monotonic() * 1e3)))
            self.informers.informer("leases").indexer.add(lease)

    async def run(self, seconds: float, step: float = 1.0) -> None:
        """Advance time, renewing the live nodes and running a pass every ``step``."""
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.advance(step)
            elapsed += step
            self.renew()
            await self.ctl.reconcile(KEY)

    def node(self, name: str) -> Any:
        return self.informers.informer("nodes").indexer.get(name)

    def no_execute(self) -> set[str]:
        return {n.metadata.name for n in self.informers.informer("nodes").indexer.list()
                if any(t.key == UNREACHABLE and t.effect == "NoExecute"
                       for t in n.spec.taints)}


def ready(node: Any) -> str:
    return next(c.status for c in node.status.conditions if c.type == "Ready")


async def test_grace_period_then_unknown_and_taints() -> None:
    h = Harness()
    for name in ("a", "b"):
        h.add_node(name)
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "p", "default"
    pod.spec.node_name = "a"
    pod.status.conditions.add(type="Ready", status="True")
    h.informers.informer("pods").indexer.add(pod)
    await h.run(10)
    h.alive.discard("a")
    await h.run(40)  # exactly the grace period: not yet
    assert ready(h.node("a")) == "True"
    await h.run(1)
    assert ready(h.node("a")) == "Unknown"
    assert {(t.key, t.effect) for t in h.node("a").spec.taints} == {
        (UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    assert ready(h.informers.informer("pods").indexer.get("default/p")) == "False"
    assert ("NodeNotReady", "a") in [(e.reason, e.name) for e in h.recorder.events]
    assert not h.node("b").spec.taints


async def test_no_execute_taints_are_rate_limited_per_zone() -> None:
    # 10 nodes, 2 die (20 %: a normal zone): 0.1 nodes/s, burst 1.
    h = Harness(node_eviction_rate=0.1)
    for i in range(10):
        h.add_node(f"n{i}")
    await h.run(5)
    h.alive -= {"n0", "n1"}
    await h.run(41)
    assert len(h.no_execute()) == 1  # the burst
    await h.run(5)
    assert len(h.no_execute()) == 1
    await h.run(5)
    assert h.no_execute() == {"n0", "n1"}  # the next token, 10 s later


async def test_partial_disruption_of_a_small_zone_stops_tainting() -> None:
    h = Harness()
    for i in range(4):
        h.add_node(f"z{i}", zone="z")
    h.add_node("other", zone="y")
    await h.run(5)
    h.alive -= {"z0", "z1", "z2"}  # 3 of 4 down: partial; 4 nodes < 50: rate 0
    await h.run(120)
    assert all(ready(h.node(f"z{i}")) == "Unknown" for i in range(3))
    assert h.no_execute() == set()
    assert h.ctl.zone_states["z"].value == "PartialDisruption"


async def test_every_zone_down_then_one_back() -> None:
    h = Harness()
    h.add_node("a", zone="z1")
    h.add_node("b", zone="z2")
    await h.run(5)
    h.alive.clear()
    await h.run(120)
    assert h.no_execute() == set()  # master disruption mode
    # z1 comes back: its agent posts Ready=True.
    h.alive.add("a")
    node = h.node("a")
    node.status.conditions[0].status = "True"
    node.status.conditions[0].last_heartbeat_time.CopyFrom(h._ts())
    h.informers.informer("nodes").indexer.add(node)
    await h.run(2)
    assert h.ctl.zone_states["z2"].value == "FullDisruption"
    assert h.no_execute() == {"b"}  # z2 fully down while z1 is healthy: normal rate
    assert not h.node("a").spec.taints
