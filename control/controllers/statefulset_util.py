"""Pure logic of the StatefulSet controller: no I/O.

- Identity: ``pod_name`` (``<set>-<ordinal>``), ``ordinal_of`` (its inverse),
  ``claim_name`` (``<template>-<set>-<ordinal>``), ``start_ordinal`` (spec.ordinals.start).
- ``pod_template``: the template a replica is created from — the identity labels
  (``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index``,
  ``controller-revision-hash`` = the revision's name), hostname = pod name, subdomain =
  serviceName, and each volumeClaimTemplate as a ``persistentVolumeClaim`` volume of the
  ordinal's claim (replacing a template volume of the same name, as Kubernetes does).
- ``new_claim``: the claim of one template for one ordinal.
- ``plan``: one pass of Kubernetes' StatefulSet update algorithm over the replicas by
  ordinal — recreate failed pods, create missing ones (OrderedReady: ascending, one at a
  time, each Running and Ready for minReadySeconds before the next; Parallel: all),
  delete condemned ordinals (OrderedReady: descending, one at a time, only while every
  other replica is healthy), then RollingUpdate from the highest ordinal down to the
  partition within maxUnavailable. OnDelete only replaces pods that are gone.
- ``count_status``: the status counts.

Concurrency contract: plain functions; safe anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import is_pod_available, is_pod_ready
from control.controllers import deployment_util as du

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_HASH_LABEL = "controller-revision-hash"
ORDERED_READY = "OrderedReady"
PARALLEL = "Parallel"
RETAIN = "Retain"
DELETE = "Delete"


def pod_name(set_name: str, ordinal: int) -> str:
    return f"{set_name}-{ordinal}"


_ORDINAL = re.compile(r"^(.*)-(0|[1-9][0-9]*)$")


def ordinal_of(set_name: str, name: str) -> int | None:
    """The ordinal of a pod named ``<set>-<ordinal>``; None for any other name."""
    m = _ORDINAL.match(name)
    if m is None or m.group(1) != set_name:
        return None
    return int(m.group(2))


def claim_name(template: str, set_name: str, ordinal: int) -> str:
    return f"{template}-{set_name}-{ordinal}"


def start_ordinal(ss: apps_pb2.StatefulSet) -> int:
    return int(ss.spec.ordinals.start) if ss.spec.HasField("ordinals") else 0


def replicas_of(ss: apps_pb2.StatefulSet) -> int:
    return int(ss.spec.replicas) if ss.spec.HasField("replicas") else 1


def pod_template(ss: apps_pb2.StatefulSet, template: core_pb2.PodTemplateSpec, ordinal: int,
                 revision: str) -> core_pb2.PodTemplateSpec:
    """The template replica ``ordinal`` is created from (``template``: its revision's)."""
    name = pod_name(ss.metadata.name, ordinal)
    out = core_pb2.PodTemplateSpec()
    out.CopyFrom(template)
    out.metadata.labels[POD_NAME_LABEL] = name
    out.metadata.labels[POD_INDEX_LABEL] = str(ordinal)
    out.metadata.labels[REVISION_HASH_LABEL] = revision
    out.spec.hostname = name
    if ss.spec.service_name:
        out.spec.subdomain = ss.spec.service_name
    for claim in ss.spec.volume_claim_templates:
        kept = [v for v in out.spec.volumes if v.name != claim.metadata.name]
        del out.spec.volumes[:]
        out.spec.volumes.extend(kept)
        vol = out.spec.volumes.add(name=claim.metadata.name)
        vol.persistent_volume_claim.claim_name = claim_name(claim.metadata.name,
                                                            ss.metadata.name, ordinal)
    return out


def new_claim(ss: apps_pb2.StatefulSet, template: core_pb2.PersistentVolumeClaim,
              ordinal: int) -> core_pb2.PersistentVolumeClaim:
    """The claim of ``template`` for ``ordinal``, labelled with the set's selector."""
    pvc = core_pb2.PersistentVolumeClaim(api_version="v1", kind="PersistentVolumeClaim")
    pvc.metadata.name = claim_name(template.metadata.name, ss.metadata.name, ordinal)
    pvc.metadata.namespace = ss.metadata.namespace
    pvc.metadata.labels.update(template.metadata.labels)
    pvc.metadata.labels.update(ss.spec.selector.match_labels)
    pvc.metadata.annotations.update(template.metadata.annotations)
    pvc.spec.CopyFrom(template.spec)
    return pvc


# -- the update algorithm -------------------------------------------------------------------


def is_terminating(pod: core_pb2.Pod) -> bool:
    return pod.metadata.HasField("deletion_timestamp")


def is_failed(pod: core_pb2.Pod) -> bool:
    return pod.status.phase in ("Failed", "Succeeded")


def is_healthy(pod: core_pb2.Pod, min_ready_seconds: int, now: float) -> bool:
    """Running, Ready for minReadySeconds and not terminating."""
    return (pod.status.phase == "Running" and not is_terminating(pod)
            and is_pod_available(pod, min_ready_seconds, now))


@dataclass(frozen=True)
class Policy:
    """What ``plan`` needs of the spec (read once from the StatefulSet)."""

    start: int
    replicas: int
    parallel: bool
    rolling: bool
    partition: int
    max_unavailable: int
    min_ready_seconds: int


def policy_of(ss: apps_pb2.StatefulSet) -> Policy:
    spec = ss.spec
    replicas = replicas_of(ss)
    ru = spec.update_strategy.rolling_update
    rolling = spec.update_strategy.type in ("", "RollingUpdate")
    partition = ru.partition if rolling and ru.HasField("partition") else 0
    mu = du.scaled_value(ru.max_unavailable if ru.HasField("max_unavailable") else None,
                         replicas, round_up=False) if rolling else 0
    return Policy(start_ordinal(ss), replicas, spec.pod_management_policy == PARALLEL, rolling,
                  partition, max(1, mu), spec.min_ready_seconds)


@dataclass
class Plan:
    """What one pass does: ordinals to create (with the update revision unless listed in
    ``create_current``), pods to delete, and whether it stopped waiting for a pod."""

    create: list[int] = field(default_factory=list)
    create_current: set[int] = field(default_factory=set)
    delete: list[core_pb2.Pod] = field(default_factory=list)
    waiting: bool = False


def plan(pods: Mapping[int, core_pb2.Pod], policy: Policy, update_revision: str,
         current_revision: str, now: float) -> Plan:
    """One reconcile pass of the update algorithm over ``pods`` (ordinal -> our pod)."""
    out = Plan()
    first = policy.start
    end = policy.start + policy.replicas
    monotonic = not policy.parallel
    mrs = policy.min_ready_seconds

    def healthy(p: core_pb2.Pod) -> bool:
        return is_healthy(p, mrs, now)

    def revision(p: core_pb2.Pod) -> str:
        return str(p.metadata.labels.get(REVISION_HASH_LABEL, ""))

    # replicas in range, ascending
    for ordinal in range(first, end):
        pod = pods.get(ordinal)
        if pod is not None and is_failed(pod) and not is_terminating(pod):
            out.delete.append(pod)  # recreated with the same name once it is gone
            if monotonic:
                out.waiting = True
                return out
            continue
        if pod is None:
            out.create.append(ordinal)
            if policy.rolling and ordinal < first + policy.partition:
                out.create_current.add(ordinal)
            if monotonic:
                out.waiting = True
                return out
            continue
        if is_terminating(pod) or not healthy(pod):
            if monotonic:
                out.waiting = True
                return out
    condemned = sorted((o for o in pods if not first <= o < end), reverse=True)
    # Kubernetes' firstUnhealthyPod: the lowest-ordinal unhealthy pod, replicas first
    first_unhealthy = next((o for o in [*range(first, end), *reversed(condemned)]
                            if o in pods and not healthy(pods[o])), None)
    for ordinal in condemned:
        pod = pods[ordinal]
        if is_terminating(pod):
            if monotonic:
                out.waiting = True
                return out
            continue
        # OrderedReady scales down only while no other pod is unhealthy
        if monotonic and first_unhealthy is not None and first_unhealthy != ordinal:
            out.waiting = True
            return out
        out.delete.append(pod)
        if monotonic:
            return out
    if not policy.rolling or out.create or out.delete:
        return out
    # RollingUpdate: highest ordinal first, down to the partition, within maxUnavailable
    unavailable = sum(1 for o in range(first, end)
                      if o not in pods or is_terminating(pods[o]) or not healthy(pods[o]))
    budget = policy.max_unavailable - unavailable
    for ordinal in range(end - 1, first + policy.partition - 1, -1):
        pod = pods.get(ordinal)
        if pod is None or is_terminating(pod):
            continue
        if revision(pod) != update_revision:
            if not healthy(pod):
                out.delete.append(pod)  # already down: replacing it costs nothing
            elif budget > 0:
                out.delete.append(pod)
                budget -= 1
            else:
                out.waiting = True
                break
        elif not healthy(pod) and policy.max_unavailable <= 1:
            out.waiting = True  # wait for the updated pod before the next one
            break
    return out


# -- status --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    replicas: int
    ready: int
    available: int
    current: int
    updated: int


def count_status(pods: Mapping[int, core_pb2.Pod], min_ready_seconds: int, now: float,
                 current_revision: str, update_revision: str) -> Counts:
    replicas = ready = available = current = updated = 0
    for pod in pods.values():
        if is_terminating(pod):
            continue
        replicas += 1
        if is_pod_ready(pod) and pod.status.phase == "Running":
            ready += 1
        if is_healthy(pod, min_ready_seconds, now):
            available += 1
        rev = pod.metadata.labels.get(REVISION_HASH_LABEL, "")
        if rev == current_revision:
            current += 1
        if rev == update_revision:
            updated += 1
    return Counts(replicas, ready, available, current, updated)
