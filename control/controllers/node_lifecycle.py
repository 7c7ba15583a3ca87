"""The node lifecycle controller: notices dead nodes, taints them, and rate-limits evictions.

What it does (Kubernetes' pkg/controller/nodelifecycle, taint-based eviction only):

1. **Health.** A node is alive while its Lease (``kube-node-lease/<node>``) is renewed or
   its Ready condition's heartbeat moves. When neither has moved for
   ``node_monitor_grace_period`` (50 s) on our own clock, every condition of the node
   becomes Unknown (``NodeStatusUnknown``, "Kubelet stopped posting node status.").
2. **Pods not ready.** When a node stops being Ready, the Ready condition of each of its
   pods is set False at once (UpdateStatus), so endpoints stop sending them traffic, and
   the node gets a ``NodeNotReady`` Event.
3. **NoSchedule taints** follow the conditions immediately: ``not-ready`` (Ready=False),
   ``unreachable`` (Ready=Unknown), the pressure taints, and ``unschedulable`` for a
   cordoned node. Only keys this controller owns are ever removed.
4. **NoExecute taints** (``not-ready`` / ``unreachable``) are what makes the taint
   eviction controller evict pods, so applying them is rate limited per zone: each zone
   has a queue of nodes waiting for the taint and a ``TokenBucket`` whose rate follows the
   zone's state (see ``node_lifecycle_util``). Swapping one NoExecute taint for the other
   on an already tainted node is not limited. When every zone is fully disrupted, the
   rates drop to 0 and existing NoExecute taints are removed: a control plane cut off
   from every node must not evict the whole cluster. A node that is Ready again loses its
   NoExecute taints at once.

Design: one periodic pass (key ``"monitor"``, every ``monitor_period``, sooner when a
zone's next token is due) over the node, lease and pod caches, as Kubernetes'
monitorNodeHealth. Lease renewals are deliberately not events for us — a thousand nodes
renewing every 10 s would re-run the pass continuously; the period bounds the delay.
Writes are compare-and-swap; a conflict (the agent wrote first) is retried by the next
pass, which re-reads the cache.

Concurrency contract: one worker and one key, so passes never overlap and the in-memory
records (health per node, zone states and queues) are touched by one task only. Monotonic
time comes from the injected Clock; timestamps written into objects from its ``now()``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from control.api import errors
from control.api.pb import coordination_pb2, core_pb2
from control.api.timeutil import micro_time_at, timestamp_seconds
from control.client.client import ApiClient
from control.controllers.node_lifecycle_util import (
    MANAGED_NO_EXECUTE,
    MANAGED_NO_SCHEDULE,
    NO_EXECUTE,
    NO_SCHEDULE,
    NodeHealth,
    NodeLifecycleOptions,
    TokenBucket,
    ZoneState,
    all_fully_disrupted,
    compute_zone_state,
    desired_no_schedule_taints,
    has_taint,
    is_ready,
    is_stale,
    mark_status_unknown,
    no_execute_taint_for,
    observe_health,
    ready_status,
    reconcile_taints,
    zone_eviction_rate,
    zone_of,
)
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, WARNING, Recorder

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="nodelifecycle")

NAME = "nodelifecycle"
KEY = "monitor"
COMPONENT = "node-controller"
NODE_LEASE_NAMESPACE = "kube-node-lease"
POD_NODE_INDEX = "spec.nodeName"


def pod_node_index(pod: core_pb2.Pod) -> list[str]:
    return [pod.spec.node_name] if pod.spec.node_name else []




@dataclass
class ZoneTainter:
    """One zone's NoExecute queue (node names, FIFO) and its rate limiter."""

    bucket: TokenBucket
    queue: OrderedDict[str, None] = field(default_factory=OrderedDict)


class NodeLifecycleController:
    """Node health, taints and zone-aware eviction rate limiting; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *,
                 options: NodeLifecycleOptions | None = None,
                 recorder: Recorder | None = None) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self.options = options or ctx.node_lifecycle
        self.recorder = recorder or ctx.events.new_recorder(COMPONENT)
        self._nodes = ctx.informers.informer(core_pb2.Node)
        self._leases = ctx.informers.informer(coordination_pb2.Lease)
        self._pods = ctx.informers.informer(core_pb2.Pod,
                                            indexers={POD_NODE_INDEX: pod_node_index})
        self._health: dict[str, NodeHealth] = {}
        self._observed_ready: dict[str, str] = {}
        self._pods_marked: set[str] = set()  # not-ready nodes whose pods were marked
        self.zone_states: dict[str, ZoneState] = {}
        self.tainters: dict[str, ZoneTainter] = {}
        self.controller = Controller(NAME, self.reconcile, workers=1, clock=ctx.clock)
        self.controller.enqueue(KEY)

    # -- the pass ----------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        now = self._clock.monotonic()
        nodes: dict[str, core_pb2.Node] = {n.metadata.name: n for n in self._nodes.indexer.list()}
        self._forget_missing(nodes)
        ready: dict[str, str] = {}
        for name in sorted(nodes):
            nodes[name], ready[name] = await self._monitor(nodes[name], now)
        stop_evictions = self._handle_disruption(nodes, ready, now)
        for name in sorted(nodes):
            nodes[name] = await self._apply_taints(nodes[name], ready[name], stop_evictions)
        await self._taint_queued(nodes, ready, now)
        return Result(requeue_after=self._next_pass(now))

    def _forget_missing(self, nodes: dict[str, core_pb2.Node]) -> None:
        for records in (self._health, self._observed_ready):
            for name in [n for n in records if n not in nodes]:
                del records[name]
        self._pods_marked &= set(nodes)
        for tainter in self.tainters.values():
            for name in [n for n in tainter.queue if n not in nodes]:
                del tainter.queue[name]

    def _next_pass(self, now: float) -> float:
        delay = self.options.monitor_period()
        for tainter in self.tainters.values():
            if tainter.queue:
                due = tainter.bucket.time_until_token(now)
                if due is not None:
                    delay = min(delay, max(due, 0.01))
        return delay

    # -- health --------------------------------------------------------------------------------

    async def _monitor(self, node: core_pb2.Node, now: float) -> tuple[core_pb2.Node, str]:
        """Update the health record; mark a stale node Unknown and its pods not ready.
        Returns the (possibly rewritten) node and its Ready status."""
        name = node.metadata.name
        lease = self._leases.indexer.get(f"{NODE_LEASE_NAMESPACE}/{name}")
        renew = timestamp_seconds(lease.spec.renew_time) if lease is not None else 0.0
        heartbeat = 0.0
        for c in node.status.conditions:
            if c.type == "Ready":
                heartbeat = timestamp_seconds(c.last_heartbeat_time)
        health = observe_health(self._health.get(name), heartbeat, renew, now)
        self._health[name] = health
        ready = ready_status(node)
        if is_stale(health, now, self.options.node_monitor_grace_period):
            new = type(node)()
            new.CopyFrom(node)
            if mark_status_unknown(new.status, micro_time_at(self._clock.now())):
                try:
                    node = await self._client.update_status(new)
                except (errors.Conflict, errors.NotFound) as exc:
                    # The agent (or a delete) got there first: look again next pass.
                    log.debug("could not mark node unknown", node=name, error=str(exc))
                    return node, ready
                log.info("node stopped posting status; marked Unknown", node=name)
            ready = ready_status(node)
        previous = self._observed_ready.get(name)
        self._observed_ready[name] = ready
        if previous == "True" and not is_ready(ready):
            self.recorder.event(node, NORMAL, "NodeNotReady",
                                f"Node {name} status is now: NodeNotReady")
        if is_ready(ready) or not ready:
            self._pods_marked.discard(name)
        elif name not in self._pods_marked and await self._mark_pods_not_ready(name):
            self._pods_marked.add(name)
        return node, ready

    async def _mark_pods_not_ready(self, node_name: str) -> bool:
        """Ready=False on every pod of the node; False if some must be retried."""
        ok = True
        for pod in self._pods.indexer.by_index(POD_NODE_INDEX, node_name):
            if pod.spec.node_name != node_name or pod.status.phase in ("Succeeded", "Failed"):
                continue
            conds = [c for c in pod.status.conditions if c.type == "Ready"]
            if not conds or conds[0].status == "False":
                continue
            new = type(pod)()
            new.CopyFrom(pod)
            for c in new.status.conditions:
                if c.type == "Ready":
                    c.status = "False"
                    c.last_transition_time.CopyFrom(micro_time_at(self._clock.now()))
            try:
                await self._client.update_status(new)
            except errors.NotFound:
                continue
            except errors.ApiError as exc:
                log.info("could not mark pod not ready; retrying next pass",
                         pod=f"{pod.metadata.namespace}/{pod.metadata.name}", error=str(exc))
                ok = False
                continue
            self.recorder.event(pod, WARNING, "NodeNotReady", "Node is not ready")
        return ok

    # -- zones -----------------------------------------------------------------------------------

    def _handle_disruption(self, nodes: dict[str, core_pb2.Node], ready: dict[str, str],
                           now: float) -> bool:
        """Recompute zone states and swap the zone rate limiters; True when every zone is
        fully disrupted (evictions stop)."""
        by_zone: dict[str, list[str]] = {}
        for name, node in nodes.items():
            by_zone.setdefault(zone_of(node), []).append(ready[name])
        new_states = {z: compute_zone_state(s, self.options.unhealthy_zone_threshold)
                      for z, s in by_zone.items()}
        for zone in by_zone:
            if zone not in self.tainters:
                self.tainters[zone] = ZoneTainter(
                    TokenBucket(self.options.node_eviction_rate, now))
        for zone in [z for z in self.tainters if z not in by_zone]:
            del self.tainters[zone]
        all_was = all_fully_disrupted(self.zone_states)
        all_are = all_fully_disrupted(new_states)
        if all_are:
            if not all_was:
                log.warning("no node is ready in any zone; stopping evictions "
                            "(entering master disruption mode)", nodes=len(nodes))
            for tainter in self.tainters.values():
                tainter.bucket.swap(0.0, now)
        else:
            if all_was:
                log.warning("some nodes are ready again; resuming evictions "
                            "(leaving master disruption mode)")
                # Every node gets a fresh grace period to report in.
                for name, h in self._health.items():
                    self._health[name] = NodeHealth(h.heartbeat, h.renew, now)
            for zone, state in new_states.items():
                if all_was or self.zone_states.get(zone) is not state:
                    rate = zone_eviction_rate(state, len(by_zone[zone]), self.options)
                    self.tainters[zone].bucket.swap(rate, now)
                    if zone in self.zone_states:
                        log.info("zone state changed", zone=zone, state=state.value, rate=rate)
        self.zone_states = new_states
        return all_are

    # -- taints ----------------------------------------------------------------------------------

    async def _apply_taints(self, node: core_pb2.Node, ready: str,
                            stop_evictions: bool) -> core_pb2.Node:
        """NoSchedule taints from the conditions; NoExecute ones removed, swapped, or the
        node queued for them. Returns the node as written."""
        name = node.metadata.name
        ts = micro_time_at(self._clock.now())
        taints = list(node.spec.taints)
        no_schedule = reconcile_taints(taints, NO_SCHEDULE, MANAGED_NO_SCHEDULE,
                                       desired_no_schedule_taints(node), ts)
        if no_schedule is not None:
            taints = no_schedule
        want = None if stop_evictions else no_execute_taint_for(ready)
        tainter = self.tainters.get(zone_of(node))
        present = [t.key for t in taints if t.effect == NO_EXECUTE and t.key in MANAGED_NO_EXECUTE]
        no_execute = None
        if want is None or want in present:
            if tainter is not None:
                tainter.queue.pop(name, None)
            no_execute = reconcile_taints(taints, NO_EXECUTE, MANAGED_NO_EXECUTE,
                                          [want] if want else [], ts)
        elif present:
            # Already tainted for the other reason: swap at once, as Kubernetes does.
            no_execute = reconcile_taints(taints, NO_EXECUTE, MANAGED_NO_EXECUTE, [want], ts)
        elif tainter is not None and name not in tainter.queue and ready:
            tainter.queue[name] = None
        if no_execute is not None:
            taints = no_execute
        if no_schedule is None and no_execute is None:
            return node
        return await self._write_taints(node, taints)

    async def _write_taints(self, node: core_pb2.Node,
                            taints: list[core_pb2.Taint]) -> core_pb2.Node:
        new = type(node)()
        new.CopyFrom(node)
        del new.spec.taints[:]
        new.spec.taints.extend(taints)
        try:
            written = await self._client.update(new)
        except (errors.Conflict, errors.NotFound) as exc:
            log.debug("could not update node taints; next pass", node=node.metadata.name,
                      error=str(exc))
            return node
        log.info("node taints updated", node=node.metadata.name,
                 taints=[f"{t.key}:{t.effect}" for t in written.spec.taints])
        return written

    async def _taint_queued(self, nodes: dict[str, core_pb2.Node], ready: dict[str, str],
                            now: float) -> None:
        """Apply the NoExecute taint to queued nodes as far as each zone's bucket allows."""
        for zone, tainter in self.tainters.items():
            while tainter.queue:
                name = next(iter(tainter.queue))
                node = nodes.get(name)
                want = no_execute_taint_for(ready.get(name, ""))
                if node is None or want is None:
                    del tainter.queue[name]
                    continue
                if not tainter.bucket.try_accept(now):
                    break
                del tainter.queue[name]
                if has_taint(node.spec.taints, want, NO_EXECUTE):
                    continue
                taints = reconcile_taints(list(node.spec.taints), NO_EXECUTE,
                                          MANAGED_NO_EXECUTE, [want],
                                          micro_time_at(self._clock.now()))
                if taints is not None:
                    written = await self._write_taints(node, taints)
                    if written is node:
                        tainter.queue[name] = None  # failed: try again next pass
                        break
                    nodes[name] = written
                    log.info("node tainted for eviction", node=name, taint=want, zone=zone)
