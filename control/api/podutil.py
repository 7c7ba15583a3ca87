"""Reading pods and controller references as Kubernetes' controllers do (its
``pkg/api/v1/pod`` and ``metav1.GetControllerOf``), shared by the controllers, the scheduler,
the kubelet and the CLI so that "ready", "available" and "controlled by" mean one thing.

Owns:
- readiness: ``ready_condition``, ``is_pod_ready``, ``ready_since`` (when the Ready
  condition last turned True), ``is_pod_available`` (ready for ``minReadySeconds``) and
  ``is_pod_active`` (counts toward a controller's replicas);
- controller references: ``controller_of`` (the one ownerReference with
  ``controller: true``), ``controller_uid``, ``is_controlled_by``.

Timestamps in Kubernetes' precisions are ``control.api.timeutil``'s (``time_at``,
``micro_time_at``).

Pure functions over the messages; safe anywhere. They never modify what they are given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from control.api.timeutil import timestamp_seconds

if TYPE_CHECKING:  # annotations only: importing this module stays cheap (the CLI uses it)
    from control.api.pb import core_pb2, meta_pb2

__all__ = [
    "Object",
    "controller_of",
    "controller_uid",
    "is_controlled_by",
    "is_pod_active",
    "is_pod_available",
    "is_pod_ready",
    "ready_condition",
    "ready_since",
]

READY = "Ready"


class Object(Protocol):
    """Any kind: every top-level message has ``metadata`` (an ``ObjectMeta``)."""

    @property
    def metadata(self) -> meta_pb2.ObjectMeta: ...


# -- readiness -------------------------------------------------------------------------------


def ready_condition(pod: core_pb2.Pod) -> core_pb2.PodCondition | None:
    """The pod's Ready condition, None when it has none."""
    for c in pod.status.conditions:
        if c.type == READY:
            return c
    return None


def is_pod_ready(pod: core_pb2.Pod) -> bool:
    """Ready condition True (podutil.IsPodReady)."""
    c = ready_condition(pod)
    return c is not None and c.status == "True"


def ready_since(pod: core_pb2.Pod) -> float | None:
    """When the pod last became Ready (wall seconds), None if not ready or unknown."""
    c = ready_condition(pod)
    if c is None or c.status != "True" or not c.HasField("last_transition_time"):
        return None
    return timestamp_seconds(c.last_transition_time)


def is_pod_available(pod: core_pb2.Pod, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` at ``now`` (podutil.IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and since + min_ready_seconds <= now


def is_pod_active(pod: core_pb2.Pod) -> bool:
    """Counts toward replicas: not terminal, not being deleted (FilterActivePods)."""
    return (pod.status.phase not in ("Succeeded", "Failed")
            and not pod.metadata.HasField("deletion_timestamp"))


# -- controller references -------------------------------------------------------------------


def controller_of(obj: Object) -> meta_pb2.OwnerReference | None:
    """The ownerReference with ``controller: true``, if any (validation allows at most one)."""
    for ref in obj.metadata.owner_references:
        if ref.HasField("controller") and ref.controller:
            return ref
    return None


def controller_uid(obj: Object) -> str:
    """The controller's uid, "" for an object no controller owns."""
    ref = controller_of(obj)
    return ref.uid if ref is not None else ""


def is_controlled_by(obj: Object, owner: Object) -> bool:
    """Whether ``owner`` is ``obj``'s controller (matched by uid, as Kubernetes does)."""
    ref = controller_of(obj)
    return ref is not None and ref.uid == owner.metadata.uid
