"""What a Deployment's revisions and rollout progress mean, read the same way by the
Deployment controller and by ``flotilla rollout`` (Kubernetes keeps these in the controller's
``deployment/util`` and kubectl's copy of it).

Owns the annotation and label names a Deployment and its ReplicaSets carry, revisions
(``revision_of``), template identity ignoring the pod-template-hash label
(``equal_ignore_hash``), and ``rollout_status_message`` (kubectl's rollout status).

Pure functions over the messages; safe anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing this module stays cheap (the CLI uses it)
    from control.api.pb import apps_pb2, core_pb2
    from control.api.podutil import Object

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO_ANNOTATION = "deprecated.deployment.rollback.to"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"

# Deployment annotations never copied to its ReplicaSets (and kept on rollback).
ANNOTATIONS_TO_SKIP = frozenset({
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    ROLLBACK_TO_ANNOTATION,
})

# The Progressing condition, and its reason once the progress deadline has passed.
PROGRESSING = "Progressing"
TIMED_OUT = "ProgressDeadlineExceeded"


def revision_of(obj: Object) -> int:
    """The revision annotation as a number (0 when absent or malformed)."""
    try:
        return int(obj.metadata.annotations.get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def template_without_hash(template: core_pb2.PodTemplateSpec) -> core_pb2.PodTemplateSpec:
    out = type(template)()
    out.CopyFrom(template)
    out.metadata.labels.pop(HASH_LABEL, None)
    return out


def equal_ignore_hash(a: core_pb2.PodTemplateSpec, b: core_pb2.PodTemplateSpec) -> bool:
    """Two templates are one revision if they differ at most in the pod-template-hash label."""
    return template_without_hash(a) == template_without_hash(b)


class RolloutStalled(Exception):
    """The rollout exceeded its progress deadline."""


def rollout_status_message(d: apps_pb2.Deployment) -> tuple[str, bool]:
    """(message, done) for ``rollout status``; raises RolloutStalled past the deadline."""
    name = d.metadata.name
    if d.metadata.generation > d.status.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    cond = next((c for c in d.status.conditions if c.type == PROGRESSING), None)
    if cond is not None and cond.reason == TIMED_OUT:
        raise RolloutStalled(f'deployment "{name}" exceeded its progress deadline')
    s = d.status
    if s.updated_replicas < d.spec.replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {s.updated_replicas} out '
                f"of {d.spec.replicas} new replicas have been updated...", False)
    if s.replicas > s.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: '
                f"{s.replicas - s.updated_replicas} old replicas are pending termination...",
                False)
    if s.available_replicas < s.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {s.available_replicas} '
                f"of {s.updated_replicas} updated replicas are available...", False)
    return f'deployment "{name}" successfully rolled out', True
