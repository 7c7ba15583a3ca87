"""The disruption controller: keeps every PodDisruptionBudget's status current
(Kubernetes' pkg/controller/disruption).

The eviction subresource (``control/apiserver/subresources.py``) refuses an eviction with
TooManyRequests unless the covering budget has ``status.disruptionsAllowed > 0`` and an
``observedGeneration`` that has caught up with the spec; an allowed eviction decrements
``disruptionsAllowed`` and records the pod in ``disruptedPods``. This controller computes
the rest, per budget:

- the pods: every pod in the budget's namespace matching its selector (an empty selector
  matches all of them, as in policy/v1);
- ``expectedPods``: the count of those pods when ``minAvailable`` is a number; otherwise
  (``maxUnavailable``, or a percentage ``minAvailable``) the sum of the scales of the pods'
  controllers (a Deployment through its ReplicaSet, a ReplicaSet, a ReplicationController,
  a StatefulSet), each counted once. A pod without a controller, or whose controller
  cannot be found, makes the budget fail safe: ``disruptionsAllowed`` 0, condition
  ``DisruptionAllowed=False`` with reason ``SyncFailed``;
- ``desiredHealthy``: ``minAvailable``, or ``expectedPods - maxUnavailable`` (never below
  0); percentages of ``expectedPods`` are rounded up;
- ``currentHealthy``: pods that are Ready, not being deleted, and not in
  ``disruptedPods`` (an eviction the apiserver granted but whose delete we have not seen);
- ``disruptionsAllowed`` = max(0, currentHealthy - desiredHealthy), 0 when no pod is
  expected; ``observedGeneration``; condition ``DisruptionAllowed`` (reason
  ``SufficientPods`` or ``InsufficientPods``);
- ``disruptedPods`` entries are dropped when the pod is gone or being deleted, or two
  minutes after the eviction (the delete evidently did not happen); the budget is checked
  again when the oldest entry expires.

The arithmetic is plain functions (table-tested); the controller reads caches, looks up
scales and writes the status only when it changed.

Concurrency contract: keys are budgets ("ns/name") under ``control.runtime.Controller``,
so one budget is never computed twice at once. Pod events enqueue the budgets of the
pod's namespace whose selector matches the pod's old or new labels. The status write is a
compare-and-swap on the cached budget; a Conflict (the apiserver just granted an eviction)
is retried through the queue's backoff, with a fresh cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import errors, labels
from control.api.pb import apps_pb2, core_pb2, meta_pb2, policy_pb2
from control.api.podutil import controller_of, is_pod_ready
from control.api.timeutil import micro_time_at, timestamp_seconds
from control.client.client import ApiClient
from control.controllers.deployment_util import scaled_value
from control.runtime.controller import Controller, Result
from control.runtime.events import WARNING, Recorder
from control.runtime.indexer import meta_namespace_key, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="disruption")

NAME = "disruption"
COMPONENT = "controllermanager"
NAMESPACE_INDEX = "namespace"
# How long an eviction's pod may linger before its disruptedPods entry is dropped
# (Kubernetes' DeletionTimeout).
DELETION_TIMEOUT = 120.0

CONDITION = "DisruptionAllowed"
SUFFICIENT = "SufficientPods"
INSUFFICIENT = "InsufficientPods"
SYNC_FAILED = "SyncFailed"


class ScaleError(Exception):
    """The expected pod count could not be found out (no controller, unknown controller)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- pure arithmetic ---------------------------------------------------------------------------


def needs_controller_scale(spec: policy_pb2.PodDisruptionBudgetSpec) -> bool:
    """Whether expectedPods comes from the controllers' scale rather than a pod count."""
    if spec.HasField("max_unavailable"):
        return True
    return spec.HasField("min_available") and spec.min_available.WhichOneof("value") == "str_val"


def expected_and_desired(spec: policy_pb2.PodDisruptionBudgetSpec, matching_pods: int,
                         scale: int) -> tuple[int, int]:
    """(expectedPods, desiredHealthy) for a budget; ``scale`` is the controllers' total
    (used only when ``needs_controller_scale``)."""
    if spec.HasField("max_unavailable"):
        unavailable = scaled_value(spec.max_unavailable, scale, round_up=True)
        return scale, max(0, scale - unavailable)
    if spec.HasField("min_available"):
        if spec.min_available.WhichOneof("value") == "int_val":
            return matching_pods, int(spec.min_available.int_val)
        return scale, scaled_value(spec.min_available, scale, round_up=True)
    return 0, 0


def disruptions_allowed(current_healthy: int, desired_healthy: int, expected: int) -> int:
    if expected <= 0:
        return 0
    return max(0, current_healthy - desired_healthy)




def count_healthy(pods: Iterable[core_pb2.Pod], disrupted: Mapping[str, float], now: float,
                  timeout: float = DELETION_TIMEOUT) -> int:
    healthy = 0
    for pod in pods:
        if pod.metadata.HasField("deletion_timestamp"):
            continue
        at = disrupted.get(pod.metadata.name)
        if at is not None and at + timeout > now:
            continue  # evicted: about to go
        if is_pod_ready(pod):
            healthy += 1
    return healthy


def prune_disrupted(disrupted: Mapping[str, float], pods: Mapping[str, core_pb2.Pod], now: float,
                    timeout: float = DELETION_TIMEOUT) -> tuple[dict[str, float], float | None]:
    """The disruptedPods entries still pending, and when the earliest of them expires."""
    kept: dict[str, float] = {}
    recheck: float | None = None
    for name, at in disrupted.items():
        pod = pods.get(name)
        if pod is None or pod.metadata.HasField("deletion_timestamp"):
            continue
        expires = at + timeout
        if expires <= now:
            log.info("pod was expected to be deleted but was not", pod=name)
            continue
        kept[name] = at
        recheck = expires if recheck is None else min(recheck, expires)
    return kept, recheck


@dataclass(frozen=True)
class BudgetStatus:
    """What the controller computed for one budget."""

    expected: int
    desired: int
    current: int
    allowed: int
    disrupted: dict[str, float]
    failure: str = ""  # "reason: message" when the budget failed safe


def compute_status(spec: policy_pb2.PodDisruptionBudgetSpec, pods: list[core_pb2.Pod],
                   disrupted: Mapping[str, float], now: float, scale: int) -> BudgetStatus:
    """The full status arithmetic for a budget whose pods and controllers' scale are
    known."""
    kept, _ = prune_disrupted(disrupted, {p.metadata.name: p for p in pods}, now)
    expected, desired = expected_and_desired(spec, len(pods), scale)
    current = count_healthy(pods, kept, now)
    return BudgetStatus(expected, desired, current,
                        disruptions_allowed(current, desired, expected), kept)


def condition_for(status: BudgetStatus) -> tuple[str, str, str]:
    """(status, reason, message) of the DisruptionAllowed condition."""
    if status.failure:
        return "False", SYNC_FAILED, status.failure
    if status.allowed > 0:
        return "True", SUFFICIENT, ""
    return "False", INSUFFICIENT, ""


def build_status(old: policy_pb2.PodDisruptionBudgetStatus, computed: BudgetStatus,
                 generation: int, now: Timestamp) -> policy_pb2.PodDisruptionBudgetStatus:
    """The status message to write (the condition's transition time moves only when its
    status flips)."""
    new = policy_pb2.PodDisruptionBudgetStatus(
        observed_generation=generation, disruptions_allowed=computed.allowed,
        current_healthy=computed.current, desired_healthy=computed.desired,
        expected_pods=computed.expected)
    for name, at in computed.disrupted.items():
        new.disrupted_pods[name].CopyFrom(micro_time_at(at))
    cstatus, reason, message = condition_for(computed)
    for c in old.conditions:
        if c.type != CONDITION:
            new.conditions.append(c)
    prev = next((c for c in old.conditions if c.type == CONDITION), None)
    cond = meta_pb2.Condition(type=CONDITION, status=cstatus, reason=reason, message=message,
                              observed_generation=generation)
    if prev is not None and prev.status == cstatus:
        cond.last_transition_time.CopyFrom(prev.last_transition_time)
    else:
        cond.last_transition_time.CopyFrom(now)
    new.conditions.append(cond)
    return new


# -- the controller ----------------------------------------------------------------------------


class DisruptionController:
    """Maintains PodDisruptionBudget status; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *,
                 recorder: Recorder | None = None) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self.recorder = recorder or ctx.events.new_recorder(COMPONENT)
        by_ns = {NAMESPACE_INDEX: namespace_index}
        self._pdbs = ctx.informers.informer(policy_pb2.PodDisruptionBudget, indexers=by_ns)
        self._pods = ctx.informers.informer(core_pb2.Pod, indexers=by_ns)
        self._rss = ctx.informers.informer(apps_pb2.ReplicaSet)
        self._deployments = ctx.informers.informer(apps_pb2.Deployment)
        self._rcs = ctx.informers.informer(core_pb2.ReplicationController)
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        enqueue_pdb = self._enqueue_pdb
        self._pdbs.add_event_handler(on_add=enqueue_pdb,
                                     on_update=lambda _old, new: enqueue_pdb(new))
        self._pods.add_event_handler(on_add=self._on_pod, on_update=self._on_pod_update,
                                     on_delete=self._on_pod)

    def _enqueue_pdb(self, pdb: policy_pb2.PodDisruptionBudget) -> None:
        self.controller.enqueue(meta_namespace_key(pdb))

    def _on_pod(self, pod: core_pb2.Pod) -> None:
        self._enqueue_for_labels(pod.metadata.namespace, [dict(pod.metadata.labels)])

    def _on_pod_update(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        self._enqueue_for_labels(new.metadata.namespace,
                                 [dict(old.metadata.labels), dict(new.metadata.labels)])

    def _enqueue_for_labels(self, namespace: str, label_sets: list[dict[str, str]]) -> None:
        for pdb in self._pdbs.indexer.by_index(NAMESPACE_INDEX, namespace):
            try:
                selector = labels.from_label_selector(pdb.spec.selector)
            except errors.Invalid:
                continue
            if any(selector.matches(ls) for ls in label_sets):
                self._enqueue_pdb(pdb)

    async def reconcile(self, key: str) -> Result | None:
        pdb = self._pdbs.indexer.get(key)
        if pdb is None:
            return None
        now = self._clock.now()
        namespace = pdb.metadata.namespace
        try:
            selector = labels.from_label_selector(pdb.spec.selector)
        except errors.Invalid:
            selector = labels.nothing()
        pods = [p for p in self._pods.indexer.by_index(NAMESPACE_INDEX, namespace)
                if selector.matches(dict(p.metadata.labels))]
        if not pods:
            self.recorder.event(pdb, "Normal", "NoPods", "No matching pods found")
        disrupted = {n: timestamp_seconds(t) for n, t in pdb.status.disrupted_pods.items()}
        scale = 0
        failure = ""
        if needs_controller_scale(pdb.spec):
            try:
                scale = await self._expected_scale(pods)
            except ScaleError as exc:
                failure = f"{exc.reason}: {exc}"
                self.recorder.event(pdb, WARNING, exc.reason, str(exc))
        computed = compute_status(pdb.spec, pods, disrupted, now, scale)
        if failure:
            computed = BudgetStatus(computed.expected, computed.desired, computed.current, 0,
                                    computed.disrupted, failure)
        new_status = build_status(pdb.status, computed, pdb.metadata.generation,
                                  micro_time_at(now))
        if new_status != pdb.status:
            new = type(pdb)()
            new.CopyFrom(pdb)
            new.status.CopyFrom(new_status)
            try:
                await self._client.update_status(new)
            except errors.NotFound:
                return None
            log.debug("budget status updated", pdb=key, allowed=computed.allowed,
                      healthy=computed.current, desired=computed.desired)
        _, recheck = prune_disrupted(computed.disrupted,
                                     {p.metadata.name: p for p in pods}, now)
        if recheck is not None:
            return Result(requeue_after=max(0.0, recheck - now) + 0.01)
        return None

    async def _expected_scale(self, pods: list[core_pb2.Pod]) -> int:
        """The sum of the scales of the pods' controllers, each counted once."""
        scales: dict[str, int] = {}
        for pod in pods:
            ref = controller_of(pod)
            if ref is None:
                raise ScaleError("NoControllerRef",
                                 f'found no controller ref for pod "{pod.metadata.name}"')
            if ref.uid in scales:
                continue
            found = await self._controller_scale(ref, pod.metadata.namespace)
            if found is None:
                raise ScaleError("NoControllers",
                                 f'found no controllers for pod "{pod.metadata.name}"')
            uid, replicas = found
            scales[uid] = replicas
        return sum(scales.values())

    async def _controller_scale(self, ref: meta_pb2.OwnerReference, namespace: str) -> tuple[str,
                                int] | None:
        """(uid, replicas) of the workload a pod's controller ref leads to."""
        if ref.kind == "ReplicaSet":
            rs = self._rss.indexer.get(f"{namespace}/{ref.name}")
            if rs is None or rs.metadata.uid != ref.uid:
                return None
            owner = controller_of(rs)
            if owner is not None and owner.kind == "Deployment":
                dep = self._deployments.indexer.get(f"{namespace}/{owner.name}")
                if dep is None or dep.metadata.uid != owner.uid:
                    return None
                return dep.metadata.uid, int(dep.spec.replicas)
            return rs.metadata.uid, int(rs.spec.replicas)
        if ref.kind == "ReplicationController":
            rc = self._rcs.indexer.get(f"{namespace}/{ref.name}")
            if rc is None or rc.metadata.uid != ref.uid:
                return None
            return rc.metadata.uid, int(rc.spec.replicas)
        if ref.kind == "StatefulSet":
            try:
                scale = await self._client.get_scale("statefulsets", ref.name, namespace)
            except errors.NotFound:
                return None
            return ref.uid, scale.spec_replicas
        return None
