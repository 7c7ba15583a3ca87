"""The ReplicaSet and ReplicationController controller: keep ``spec.replicas`` pods.

One module serves both kinds (Kubernetes runs its ReplicaSet code for ReplicationControllers
too): a ``Flavor`` says what differs — the resource, how the selector reads (a
LabelSelector for ReplicaSets, a plain map for ReplicationControllers) and so which owner
kind the pods' controller references name.

``reconcile(namespace/name)``, Kubernetes' ``syncReplicaSet``:

1. Read the owner from the cache; gone -> forget its expectations.
2. Claim pods (``claim_pods``): of the active pods in the namespace (not terminating, not
   Succeeded/Failed), keep those whose controller is this owner and that still match the
   selector; release ours that no longer match (remove our ownerReference); adopt matching
   orphans (add a controller reference) after a fresh read of the owner confirms it is not
   being deleted. Pods controlled by someone else are never touched.
3. Only when the expectations are satisfied (every create and delete we issued has been
   seen by the pod informer, or 5 minutes passed) and the owner is not being deleted:
   create the missing pods in slow-start batches (1, 2, 4, ... — a quota refusal then
   costs one failed call, not hundreds; the first failing batch stops the rest), or delete
   the surplus, least valuable first (``rank_for_deletion``: unscheduled, pending, not
   ready, doubled up on a node, ready for less time, more restarts, newer). At most
   ``burst_replicas`` (500) pods move per pass.
4. Write status (``compute_status``): replicas, fullyLabeledReplicas, readyReplicas,
   availableReplicas (Ready for minReadySeconds), observedGeneration, and a
   ``ReplicaFailure`` condition while creating or deleting fails. When pods are ready but
   not yet available, look again after minReadySeconds.

Expectations: before creating n pods we expect n creations; the pod informer's add handler
counts them down. Deletions are tracked by pod uid (client-go's UIDTrackingExpectations),
so a pod deleted by someone else is not mistaken for one of ours. A stale cache therefore
never makes the controller create twice.

Concurrency contract: runs under ``control.runtime.Controller`` (one owner is never
reconciled by two workers at once; different owners in parallel). Event handlers run
synchronously in the event loop and only update expectations and enqueue keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import structlog
from google.protobuf.message import Message

from control.api import errors, kinds, labels
from control.api.pb import apps_pb2, core_pb2, meta_pb2
from control.api.podutil import (
    controller_of,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    ready_since,
)
from control.api.timeutil import time_at, timestamp_seconds
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.controllers.podbatch import PodBatches
from control.controllers.podcontrol import (
    CONTROLLER_UID_INDEX,
    PodControl,
    controller_uid_index,
)
from control.runtime.controller import Controller, Result
from control.runtime.expectations import ControllerExpectations
from control.runtime.indexer import NAMESPACE_INDEX, meta_namespace_key, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller")

# Kubernetes' BurstReplicas: how many pods one pass may create or delete.
BURST_REPLICAS = 500
REPLICA_FAILURE = "ReplicaFailure"

# The two kinds this controller keeps replicas for, and their statuses.
Owner = apps_pb2.ReplicaSet | core_pb2.ReplicationController
OwnerStatus = apps_pb2.ReplicaSetStatus | core_pb2.ReplicationControllerStatus
M = TypeVar("M", bound=Message)

_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


# -- flavours ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Flavor:
    """What differs between ReplicaSets and ReplicationControllers."""

    name: str  # controller name, also the Event source component
    message: type[Owner]
    selector: Callable[[Owner], labels.Selector]

    @property
    def info(self) -> kinds.KindInfo:
        return kinds.by_message(self.message)


def _rs_selector(rs: Owner) -> labels.Selector:
    if not isinstance(rs, apps_pb2.ReplicaSet):
        raise TypeError(f"a ReplicaSet's selector asked of a {type(rs).__name__}")
    if not rs.spec.HasField("selector"):
        return labels.nothing()  # an absent selector selects nothing, as Kubernetes
    return labels.from_label_selector(rs.spec.selector)


def _rc_selector(rc: Owner) -> labels.Selector:
    if not isinstance(rc, core_pb2.ReplicationController):
        raise TypeError(f"a ReplicationController's selector asked of a {type(rc).__name__}")
    if not rc.spec.selector:
        return labels.nothing()  # the apiserver defaults it; never adopt the namespace
    return labels.from_map(rc.spec.selector)


REPLICASET = Flavor("replicaset", apps_pb2.ReplicaSet, _rs_selector)
REPLICATIONCONTROLLER = Flavor("replicationcontroller", core_pb2.ReplicationController,
                               _rc_selector)


# -- pure helpers ------------------------------------------------------------------------












def max_restarts(pod: core_pb2.Pod) -> int:
    return max((cs.restart_count for cs in pod.status.container_statuses), default=0)


def _creation(pod: core_pb2.Pod) -> float:
    if not pod.metadata.HasField("creation_timestamp"):
        return math.inf  # Kubernetes: an empty creation time is the "newest"
    return timestamp_seconds(pod.metadata.creation_timestamp)


def deletion_rank(pod: core_pb2.Pod, colocated: int = 0) -> tuple[float | str, ...]:
    """Sort key: ascending = delete first (Kubernetes' ActivePodsWithRanks).

    ``colocated``: how many of the same owner's pods share the pod's node; doubled-up pods
    go first, which spreads the survivors."""
    ready = is_pod_ready(pod)
    since = ready_since(pod) if ready else None
    return (
        1 if pod.spec.node_name else 0,                  # unscheduled first
        _PHASE_ORDER.get(pod.status.phase, 0),           # pending < unknown < running
        1 if ready else 0,                               # not ready first
        -colocated,                                      # more pods on its node first
        -(since if since is not None else 0.0),          # ready for less time first
        -max_restarts(pod),                              # more restarts first
        -_creation(pod),                                 # newer first
        pod.metadata.uid,                                # deterministic tie-break
    )


def pods_to_delete(pods: Sequence[core_pb2.Pod], count: int) -> list[core_pb2.Pod]:
    """The ``count`` least valuable of ``pods``."""
    if count <= 0:
        return []
    on_node: dict[str, int] = {}
    for p in pods:
        if p.spec.node_name:
            on_node[p.spec.node_name] = on_node.get(p.spec.node_name, 0) + 1
    ranked = sorted(pods, key=lambda p: deletion_rank(p, on_node.get(p.spec.node_name, 0)
                                                      if p.spec.node_name else 0))
    return ranked[:count]


def matches_template_labels(pod: core_pb2.Pod, template_labels: Mapping[str, str]) -> bool:
    """Every template label present on the pod with the same value (fullyLabeledReplicas)."""
    return all(pod.metadata.labels.get(k) == v for k, v in template_labels.items())


@dataclass(frozen=True)
class StatusCounts:
    replicas: int
    fully_labeled_replicas: int
    ready_replicas: int
    available_replicas: int


def count_status(pods: Iterable[core_pb2.Pod], template_labels: Mapping[str, str],
                 min_ready_seconds: int,
                 now: float) -> StatusCounts:
    """The counts of ``status`` for the owner's active ``pods``."""
    pods = list(pods)
    return StatusCounts(
        replicas=len(pods),
        fully_labeled_replicas=sum(1 for p in pods if matches_template_labels(p, template_labels)),
        ready_replicas=sum(1 for p in pods if is_pod_ready(p)),
        available_replicas=sum(1 for p in pods if is_pod_available(p, min_ready_seconds, now)),
    )


def compute_status(owner: Owner, pods: Iterable[core_pb2.Pod], manage_error: Exception | None,
                   now: float) -> OwnerStatus:
    """The owner's new status message (a copy; the owner is not changed).

    ``manage_error``: the failure of this pass's creates or deletes, which sets the
    ReplicaFailure condition; None removes it (calculateStatus in Kubernetes)."""
    status = _copy(owner.status)
    counts = count_status(pods, owner.spec.template.metadata.labels,
                          owner.spec.min_ready_seconds, now)
    status.replicas = counts.replicas
    status.fully_labeled_replicas = counts.fully_labeled_replicas
    status.ready_replicas = counts.ready_replicas
    status.available_replicas = counts.available_replicas
    status.observed_generation = owner.metadata.generation
    current = next((c for c in status.conditions if c.type == REPLICA_FAILURE), None)
    if manage_error is not None and current is None:
        diff = counts.replicas - owner.spec.replicas
        reason = "FailedCreate" if diff < 0 else "FailedDelete"
        status.conditions.add(type=REPLICA_FAILURE, status="True", reason=reason,
                              message=str(manage_error) or type(manage_error).__name__,
                              last_transition_time=time_at(now))
    elif manage_error is None and current is not None:
        for i in reversed(range(len(status.conditions))):
            if status.conditions[i].type == REPLICA_FAILURE:
                del status.conditions[i]
    return status


def _copy(msg: M) -> M:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _set_status(owner: Owner, status: OwnerStatus) -> None:
    # Narrowed pairwise so the type checker sees each kind get its own status message.
    if isinstance(owner, apps_pb2.ReplicaSet) and isinstance(status, apps_pb2.ReplicaSetStatus):
        owner.status.CopyFrom(status)
    elif (isinstance(owner, core_pb2.ReplicationController)
          and isinstance(status, core_pb2.ReplicationControllerStatus)):
        owner.status.CopyFrom(status)
    else:
        raise TypeError(f"{type(status).__name__} is not the status of a {type(owner).__name__}")


# -- the controller ----------------------------------------------------------------------


class ManageError(Exception):
    """Creating or deleting pods failed this pass (the first error, and how many)."""


class ReplicaSetController:
    """Reconciles one kind of replica owner; see the module docstring."""

    def __init__(self, ctx: ControllerContext, flavor: Flavor = REPLICASET, *,
                 burst_replicas: int = BURST_REPLICAS) -> None:
        self.flavor = flavor
        self.name = flavor.name
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self._burst = burst_replicas
        self._log = log.bind(controller=flavor.name)
        self.expectations = ControllerExpectations(ctx.clock)
        self.recorder = ctx.events.new_recorder(f"{flavor.name}-controller")
        self.pod_control = PodControl(ctx.client, self.recorder)
        self.batches = PodBatches(self.pod_control, self.expectations)
        self.controller = Controller(flavor.name, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        self._owners = ctx.informers.informer(flavor.message,
                                              indexers={NAMESPACE_INDEX: namespace_index})
        self._pods = ctx.informers.informer(
            core_pb2.Pod, indexers={NAMESPACE_INDEX: namespace_index,
                              CONTROLLER_UID_INDEX: controller_uid_index})
        self._owners.add_event_handler(on_add=self._owner_changed,
                                       on_update=lambda _o, n: self._owner_changed(n),
                                       on_delete=self._owner_deleted)
        self._pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                     on_delete=self._pod_deleted)

    # -- event handlers (synchronous: bookkeeping and enqueueing only) -------------------

    def _owner_changed(self, owner: Owner) -> None:
        self.controller.enqueue(meta_namespace_key(owner))

    def _owner_deleted(self, owner: Owner) -> None:
        key = meta_namespace_key(owner)
        self.batches.forget(key)
        self.controller.enqueue(key)

    def _resolve(self, pod: core_pb2.Pod, ref: meta_pb2.OwnerReference) -> str | None:
        """The key of the owner ``ref`` names, if it is one of ours and still exists."""
        if ref.kind != self.flavor.info.kind:
            return None
        key = f"{pod.metadata.namespace}/{ref.name}"
        owner = self._owners.indexer.get(key)
        if owner is None or owner.metadata.uid != ref.uid:
            return None
        return key

    def _owners_selecting(self, pod: core_pb2.Pod) -> list[str]:
        """Keys of the owners in the pod's namespace whose selector matches it."""
        out = []
        for owner in self._owners.indexer.by_index(NAMESPACE_INDEX, pod.metadata.namespace):
            if self.flavor.selector(owner).matches(pod.metadata.labels):
                out.append(meta_namespace_key(owner))
        return out

    def _pod_added(self, pod: core_pb2.Pod) -> None:
        if pod.metadata.HasField("deletion_timestamp"):
            # Seen for the first time already terminating (e.g. after a relist).
            self._pod_deleted(pod)
            return
        ref = controller_of(pod)
        if ref is not None:
            key = self._resolve(pod, ref)
            if key is not None:
                self.expectations.creation_observed(key)
                self.controller.enqueue(key)
            return
        for key in self._owners_selecting(pod):  # an orphan: someone may adopt it
            self.controller.enqueue(key)

    def _pod_updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return  # periodic resync: the owners' own resync covers it
        labels_changed = dict(old.metadata.labels) != dict(new.metadata.labels)
        if new.metadata.HasField("deletion_timestamp"):
            # A terminating pod no longer counts: treat as deleted now (a graceful delete
            # may take long) so that the replacement is created at once.
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, new_ref = controller_of(old), controller_of(new)
        if old_ref is not None and (new_ref is None or new_ref.uid != old_ref.uid):
            key = self._resolve(old, old_ref)
            if key is not None:
                self.controller.enqueue(key)
        if new_ref is not None:
            key = self._resolve(new, new_ref)
            if key is not None:
                self.controller.enqueue(key)
                owner = self._owners.indexer.get(key)
                if (owner is not None and owner.spec.min_ready_seconds > 0
                        and not is_pod_ready(old) and is_pod_ready(new)):
                    # Becomes available only minReadySeconds from now: look again then.
                    self.controller.enqueue_after(key, float(owner.spec.min_ready_seconds))
            return
        if labels_changed or old_ref is not None:
            for key in self._owners_selecting(new):
                self.controller.enqueue(key)

    def _pod_deleted(self, pod: core_pb2.Pod) -> None:
        ref = controller_of(pod)
        if ref is None:
            return
        key = self._resolve(pod, ref)
        if key is None:
            return
        self.batches.deletion_seen(key, pod)
        self.controller.enqueue(key)

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        owner = self._owners.indexer.get(key)
        if owner is None:
            self.batches.forget(key)
            return None
        klog = self._log.bind(key=key)
        needs_sync = self.expectations.satisfied(key)
        pods = await self.claim_pods(owner)
        manage_error: Exception | None = None
        if needs_sync and not owner.metadata.HasField("deletion_timestamp"):
            try:
                await self._manage_replicas(key, owner, pods)
            except ManageError as exc:
                manage_error = exc
        now = self._clock.now()
        status = compute_status(owner, pods, manage_error, now)
        updated = await self._write_status(owner, status)
        if manage_error is not None:
            klog.info("managing replicas failed; retrying", error=str(manage_error))
            raise manage_error
        if (updated is not None and owner.spec.min_ready_seconds > 0
                and updated.status.ready_replicas != updated.status.available_replicas):
            return Result(requeue_after=float(owner.spec.min_ready_seconds))
        return None

    async def claim_pods(self, owner: Owner) -> list[core_pb2.Pod]:
        """The active pods this owner controls after adopting and releasing; see step 2."""
        selector = self.flavor.selector(owner)
        uid = owner.metadata.uid
        owner_deleting = owner.metadata.HasField("deletion_timestamp")
        claimed: list[core_pb2.Pod] = []
        can_adopt: bool | None = None
        for pod in self._pods.indexer.by_index(NAMESPACE_INDEX, owner.metadata.namespace):
            if not is_pod_active(pod):
                continue
            ref = controller_of(pod)
            matches = selector.matches(pod.metadata.labels)
            if ref is not None:
                if ref.uid != uid:
                    continue  # someone else's
                if matches:
                    claimed.append(pod)
                elif not owner_deleting:
                    await self.pod_control.release(pod, owner)
                continue
            if not matches or owner_deleting:
                continue
            if can_adopt is None:
                can_adopt = await self._owner_still_current(owner)
            if not can_adopt:
                continue
            if await self.pod_control.adopt(
                    pod, owner, lambda p: selector.matches(p.metadata.labels)):
                claimed.append(pod)
        return claimed

    async def _owner_still_current(self, owner: Owner) -> bool:
        """Adoption needs a fresh read: a cached owner may already be deleted (and its
        replacement a namesake), and adopting into a dying owner would orphan the pods
        again (RecheckDeletionTimestamp in Kubernetes)."""
        try:
            fresh = await self._client.get(self.flavor.message, owner.metadata.name,
                                           owner.metadata.namespace)
        except errors.NotFound:
            return False
        return bool(fresh.metadata.uid == owner.metadata.uid
                    and not fresh.metadata.HasField("deletion_timestamp"))

    async def _manage_replicas(self, key: str, owner: Owner, pods: list[core_pb2.Pod]) -> None:
        diff = len(pods) - owner.spec.replicas
        if diff < 0:
            await self._create(key, owner, min(-diff, self._burst))
        elif diff > 0:
            await self._delete(key, owner, pods, min(diff, self._burst))

    async def _create(self, key: str, owner: Owner, count: int) -> None:
        try:
            await self.batches.create(key, owner, [(owner.spec.template, None)] * count)
        except Exception as exc:
            raise ManageError(str(exc) or type(exc).__name__) from exc
        self._log.info("created pods", key=key, count=count)

    async def _delete(self, key: str, owner: Owner, pods: list[core_pb2.Pod], count: int) -> None:
        victims = pods_to_delete(pods, count)
        try:
            await self.batches.delete(key, owner, victims)
        except Exception as exc:
            raise ManageError(str(exc) or type(exc).__name__) from exc
        self._log.info("deleted pods", key=key, count=len(victims))

    async def _write_status(self, owner: Owner, status: OwnerStatus) -> Owner | None:
        """Write ``status`` unless unchanged: first over the cached owner, then (after a
        Conflict) over one fresh read; None when the owner is gone."""

        def apply(current: Owner) -> bool:
            want = _copy(status)
            want.observed_generation = min(status.observed_generation,
                                           current.metadata.generation)
            if current.status == want:
                return False
            _set_status(current, want)
            return True

        try:
            return await guaranteed_update(
                self._client, self.flavor.message, owner.metadata.namespace,
                owner.metadata.name, apply, current=owner, status=True, attempts=2)
        except errors.NotFound:
            return None


def replication_controller(ctx: ControllerContext) -> ReplicaSetController:
    """The manager's factory for the ReplicationController flavour."""
    return ReplicaSetController(ctx, REPLICATIONCONTROLLER)
