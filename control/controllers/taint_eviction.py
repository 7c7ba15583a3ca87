"""The taint eviction controller: deletes pods from NoExecute-tainted nodes when their
tolerations run out (Kubernetes' taint manager, pkg/controller/tainteviction).

For a pod bound to a node with NoExecute taints:

- a taint the pod does not tolerate evicts it at once;
- a taint tolerated without ``tolerationSeconds`` (DaemonSet pods, a user's "forever")
  never evicts it;
- otherwise the pod goes ``tolerationSeconds`` after the taint was added (``timeAdded``;
  for a pod bound after that, after it was scheduled), taking the earliest deadline over
  the node's taints. For each taint the first matching toleration counts, as in
  Kubernetes. Every pod created through the apiserver carries 300 s tolerations for
  ``not-ready`` and ``unreachable`` (the DefaultTolerationSeconds admission).

Evicting means: a ``TaintManagerEviction`` Event ("Marking for deletion Pod ns/name"), the
pod's ``DisruptionTarget`` condition (reason ``DeletionByTaintManager``), then a delete with
the pod's own grace period and a uid precondition. PodDisruptionBudgets do not apply (a
dead node does not wait for budgets), again as in Kubernetes.

Which pods go, and when, is the plain function ``eviction_time`` (table-tested); the
controller only reads caches, waits (``requeue_after`` until the deadline) and deletes.
How many nodes get NoExecute taints per second is the node lifecycle controller's rate
limiter; this controller does not limit further.

Concurrency contract: keys are pods ("ns/name") under ``control.runtime.Controller``, so
one pod is never handled by two workers at once. A node whose NoExecute taints change
enqueues all of its pods; a pod that changes enqueues itself. Reconcile reads the caches
and re-reads the node from the API before deleting, so a taint just removed saves the pod.
Taints without ``timeAdded`` (a user's) count from when this controller first saw them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import structlog

from control.api import errors
from control.api.pb import core_pb2
from control.api.timeutil import micro_time_at, timestamp_seconds
from control.client.client import ApiClient
from control.controllers.node_lifecycle import POD_NODE_INDEX, pod_node_index
from control.controllers.node_lifecycle_util import NO_EXECUTE
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, Recorder
from control.runtime.indexer import meta_namespace_key

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="taint-eviction")

NAME = "taint-eviction-controller"
COMPONENT = "taint-eviction-controller"


def tolerates(toleration: core_pb2.Toleration, taint: core_pb2.Taint) -> bool:
    """Kubernetes' Toleration.ToleratesTaint."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator in ("", "Equal"):
        return bool(toleration.value == taint.value)
    return bool(toleration.operator == "Exists")


def no_execute_taints(node: core_pb2.Node) -> list[core_pb2.Taint]:
    return [t for t in node.spec.taints if t.effect == NO_EXECUTE]


def eviction_time(tolerations: Sequence[core_pb2.Toleration], taints: Iterable[core_pb2.Taint], *,
                  now: float,
                  scheduled_at: float = 0.0) -> float | None:
    """The wall time at which a pod with ``tolerations`` must leave a node with the
    NoExecute ``taints`` (``now`` or earlier: at once); None: it may stay forever.

    A taint without ``timeAdded`` counts as added ``now``."""
    deadline: float | None = None
    for taint in taints:
        if taint.effect != NO_EXECUTE:
            continue
        match = next((t for t in tolerations if tolerates(t, taint)), None)
        if match is None:
            return now
        if not match.HasField("toleration_seconds"):
            continue
        added = timestamp_seconds(taint.time_added) if taint.HasField("time_added") else now
        at = max(added, scheduled_at) + max(0, match.toleration_seconds)
        deadline = at if deadline is None else min(deadline, at)
    return deadline


def scheduled_time(pod: core_pb2.Pod) -> float:
    """When the pod was bound (its PodScheduled transition), 0 if unknown."""
    for c in pod.status.conditions:
        if c.type == "PodScheduled" and c.status == "True" and c.HasField(
                "last_transition_time"):
            return timestamp_seconds(c.last_transition_time)
    return 0.0


def _taint_ids(node: core_pb2.Node) -> list[tuple[str, str, str]]:
    return sorted((t.key, t.value, t.effect) for t in no_execute_taints(node))


class TaintEvictionController:
    """Evicts pods whose NoExecute tolerations ran out; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *,
                 recorder: Recorder | None = None) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self.recorder = recorder or ctx.events.new_recorder(COMPONENT)
        self._pods = ctx.informers.informer(core_pb2.Pod,
                                            indexers={POD_NODE_INDEX: pod_node_index})
        self._nodes = ctx.informers.informer(core_pb2.Node)
        # (node, key, value) of taints without timeAdded -> wall time first seen
        self._first_seen: dict[tuple[str, str, str], float] = {}
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        self._pods.add_event_handler(on_add=self._on_pod,
                                     on_update=lambda _old, new: self._on_pod(new))
        self._nodes.add_event_handler(on_add=self._on_node, on_update=self._on_node_update)

    def _on_pod(self, pod: core_pb2.Pod) -> None:
        if pod.spec.node_name and not pod.metadata.HasField("deletion_timestamp"):
            self.controller.enqueue(meta_namespace_key(pod))

    def _on_node(self, node: core_pb2.Node) -> None:
        if no_execute_taints(node):
            self._enqueue_pods_of(node.metadata.name)

    def _on_node_update(self, old: core_pb2.Node, new: core_pb2.Node) -> None:
        if _taint_ids(old) != _taint_ids(new):
            self._enqueue_pods_of(new.metadata.name)

    def _enqueue_pods_of(self, node_name: str) -> None:
        for pod in self._pods.indexer.by_index(POD_NODE_INDEX, node_name):
            self._on_pod(pod)

    def _taints_with_start(self, node: core_pb2.Node, now: float) -> list[core_pb2.Taint]:
        out = []
        for t in no_execute_taints(node):
            copy = core_pb2.Taint()
            copy.CopyFrom(t)
            if not t.HasField("time_added"):
                seen = self._first_seen.setdefault((node.metadata.name, t.key, t.value), now)
                copy.time_added.CopyFrom(micro_time_at(seen))
            out.append(copy)
        return out

    def _deadline(self, pod: core_pb2.Pod, node: core_pb2.Node, now: float) -> float | None:
        return eviction_time(list(pod.spec.tolerations), self._taints_with_start(node, now),
                             now=now, scheduled_at=scheduled_time(pod))

    async def reconcile(self, key: str) -> Result | None:
        pod = self._pods.indexer.get(key)
        if pod is None or pod.metadata.HasField("deletion_timestamp") or not pod.spec.node_name:
            return None
        node = self._nodes.indexer.get(pod.spec.node_name)
        if node is None or not no_execute_taints(node):
            return None
        now = self._clock.now()
        at = self._deadline(pod, node, now)
        if at is None:
            return None
        if at > now:
            return Result(requeue_after=at - now)
        try:
            # The cache may be behind a taint that was just removed: ask the API.
            node = await self._client.get(core_pb2.Node, pod.spec.node_name)
        except errors.NotFound:
            return None
        at = self._deadline(pod, node, now)
        if at is None:
            return None
        if at > now:
            return Result(requeue_after=at - now)
        await self._evict(pod, node)
        return None

    async def _evict(self, pod: core_pb2.Pod, node: core_pb2.Node) -> None:
        m = pod.metadata
        name = f"{m.namespace}/{m.name}"
        self.recorder.event(pod, NORMAL, "TaintManagerEviction",
                            f"Marking for deletion Pod {name}")
        await self._mark_disruption_target(pod)
        try:
            await self._client.delete(core_pb2.Pod, m.name, m.namespace, uid=m.uid)
        except (errors.NotFound, errors.Conflict):
            return
        log.info("evicted pod from tainted node", pod=name, node=node.metadata.name,
                 taints=[f"{t.key}:{t.effect}" for t in no_execute_taints(node)])

    async def _mark_disruption_target(self, pod: core_pb2.Pod) -> None:
        new = type(pod)()
        new.CopyFrom(pod)
        conds = [c for c in new.status.conditions if c.type != "DisruptionTarget"]
        del new.status.conditions[:]
        new.status.conditions.extend(conds)
        new.status.conditions.add(
            type="DisruptionTarget", status="True", reason="DeletionByTaintManager",
            message="Taint manager: deleting due to NoExecute taint",
            last_transition_time=micro_time_at(self._clock.now()))
        try:
            await self._client.update_status(new)
        except errors.ApiError as exc:
            # A report only: the delete below is what matters.
            log.debug("could not set DisruptionTarget", pod=pod.metadata.name, error=str(exc))
