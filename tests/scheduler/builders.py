"""Builders of Pods and Nodes for scheduler tests (protobuf messages, Kubernetes' shapes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from control.api.pb import core_pb2, meta_pb2, storage_pb2
from control.scheduler.types import NodeInfo, PodInfo, new_pod_info


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", *,
         labels: Mapping[str, str] | None = None,
         taints: Sequence[tuple[str, str, str]] = (), unschedulable: bool = False,
         extra: Mapping[str, str] | None = None) -> core_pb2.Node:
    n = core_pb2.Node()
    n.metadata.name = name
    n.metadata.labels["kubernetes.io/hostname"] = name
    n.metadata.labels.update(labels or {})
    for k, v in (("cpu", cpu), ("memory", memory), ("pods", pods), *(extra or {}).items()):
        n.status.allocatable[k].string = v
        n.status.capacity[k].string = v
    for key, value, effect in taints:
        n.spec.taints.add(key=key, value=value, effect=effect)
    n.spec.unschedulable = unschedulable
    n.status.conditions.add(type="Ready", status="True")
    return n


def pod(name: str, cpu: str = "", memory: str = "", *, namespace: str = "default",
        labels: Mapping[str, str] | None = None, node_selector: Mapping[str, str] | None = None,
        host_port: int = 0, priority: int | None = None, node_name: str = "",
        tolerations: Sequence[Mapping[str, Any]] = (), uid: str = "",
        init: Sequence[tuple[str, str, bool]] = (), overhead: Mapping[str, str] | None = None,
        owner_uid: str = "") -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = name
    p.metadata.namespace = namespace
    p.metadata.uid = uid or f"uid-{name}"
    p.metadata.labels.update(labels or {})
    c = p.spec.containers.add(name="c", image="busybox")
    if cpu:
        c.resources.requests["cpu"].string = cpu
    if memory:
        c.resources.requests["memory"].string = memory
    if host_port:
        c.ports.add(container_port=80, host_port=host_port, protocol="TCP")
    for i, (icpu, imem, sidecar) in enumerate(init):
        ic = p.spec.init_containers.add(name=f"init{i}", image="busybox")
        if icpu:
            ic.resources.requests["cpu"].string = icpu
        if imem:
            ic.resources.requests["memory"].string = imem
        if sidecar:
            ic.restart_policy = "Always"
    for k, v in (overhead or {}).items():
        p.spec.overhead[k].string = v
    p.spec.node_selector.update(node_selector or {})
    if priority is not None:
        p.spec.priority = priority
    p.spec.node_name = node_name
    p.spec.scheduler_name = "default-scheduler"
    for t in tolerations:
        p.spec.tolerations.add(**t)
    if owner_uid:
        p.metadata.owner_references.add(api_version="apps/v1", kind="ReplicaSet", name="rs",
                                        uid=owner_uid, controller=True)
    return p


def anti_affinity(p: core_pb2.Pod, match: Mapping[str, str],
                  topology_key: str = "kubernetes.io/hostname", required: bool = True,
                  affinity: bool = False, weight: int = 10) -> core_pb2.Pod:
    term = core_pb2.PodAffinityTerm(
        label_selector=meta_pb2.LabelSelector(match_labels=dict(match)),
        topology_key=topology_key)
    target = p.spec.affinity.pod_affinity if affinity else p.spec.affinity.pod_anti_affinity
    if required:
        target.required_during_scheduling_ignored_during_execution.append(term)
    else:
        target.preferred_during_scheduling_ignored_during_execution.add(
            weight=weight, pod_affinity_term=term)
    return p


def spread(p: core_pb2.Pod, match: Mapping[str, str], key: str, max_skew: int = 1,
           hard: bool = True, **kw: Any) -> core_pb2.Pod:
    c = p.spec.topology_spread_constraints.add(
        max_skew=max_skew, topology_key=key,
        when_unsatisfiable="DoNotSchedule" if hard else "ScheduleAnyway",
        label_selector=meta_pb2.LabelSelector(match_labels=dict(match)), **kw)
    del c
    return p


def node_info(n: core_pb2.Node, *pods: core_pb2.Pod) -> NodeInfo:
    ni = NodeInfo(n)
    for p in pods:
        ni.add_pod(new_pod_info(p))
    return ni


def info(p: core_pb2.Pod, priority: int = 0) -> PodInfo:
    return new_pod_info(p, p.spec.priority if p.spec.HasField("priority") else priority)


# -- storage -------------------------------------------------------------------------------


def storage_class(name: str, provisioner: str = "kubernetes.io/no-provisioner", *,
                  wait: bool = True,
                  allowed: Mapping[str, Sequence[str]] | None = None) -> storage_pb2.StorageClass:
    sc = storage_pb2.StorageClass(provisioner=provisioner)
    sc.metadata.name = name
    sc.volume_binding_mode = "WaitForFirstConsumer" if wait else "Immediate"
    if allowed:
        term = sc.allowed_topologies.add()
        for k, vals in allowed.items():
            term.match_label_expressions.add(key=k, values=list(vals))
    return sc


def pv(name: str, size: str = "1Gi", *, sc: str = "local", node_name: str = "",
       claim: core_pb2.PersistentVolumeClaim | None = None, rv: str = "1",
       modes: Sequence[str] = ("ReadWriteOnce",)) -> core_pb2.PersistentVolume:
    v = core_pb2.PersistentVolume()
    v.metadata.name = name
    v.metadata.uid = f"uid-{name}"
    v.metadata.resource_version = rv
    v.spec.capacity["storage"].string = size
    v.spec.access_modes.extend(modes)
    v.spec.storage_class_name = sc
    v.spec.local.path = f"/mnt/{name}"
    if node_name:
        term = v.spec.node_affinity.required.node_selector_terms.add()
        term.match_expressions.add(key="kubernetes.io/hostname", operator="In",
                                   values=[node_name])
    if claim is not None:
        v.spec.claim_ref.namespace = claim.metadata.namespace
        v.spec.claim_ref.name = claim.metadata.name
        v.spec.claim_ref.uid = claim.metadata.uid
        v.status.phase = "Bound"
    else:
        v.status.phase = "Available"
    return v


def pvc(name: str, size: str = "1Gi", *, sc: str | None = "local", volume: str = "",
        namespace: str = "default", rv: str = "1",
        annotations: Mapping[str, str] | None = None) -> core_pb2.PersistentVolumeClaim:
    c = core_pb2.PersistentVolumeClaim()
    c.metadata.name = name
    c.metadata.namespace = namespace
    c.metadata.uid = f"uid-{name}"
    c.metadata.resource_version = rv
    c.metadata.annotations.update(annotations or {})
    c.spec.access_modes.append("ReadWriteOnce")
    c.spec.resources.requests["storage"].string = size
    if sc is not None:
        c.spec.storage_class_name = sc
    if volume:
        c.spec.volume_name = volume
        c.metadata.annotations["pv.kubernetes.io/bind-completed"] = "yes"
        c.status.phase = "Bound"
    else:
        c.status.phase = "Pending"
    return c


def with_claims(p: core_pb2.Pod, *claims: str) -> core_pb2.Pod:
    for i, name in enumerate(claims):
        v = p.spec.volumes.add(name=f"v{i}")
        v.persistent_volume_claim.claim_name = name
    return p
