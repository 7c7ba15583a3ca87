"""What the scheduler knows about one pod and one node, precomputed once.

Owns ``Resources`` (integer requests/allocatable: milli-CPU, bytes, pod slots, extended
resources), ``PodInfo`` (a pod plus everything the plugins derive from it: effective
requests, host ports, compiled affinity terms, priority, controller owner) and ``NodeInfo``
(a node plus the pods placed on it and their running totals).

Why precompute: the scheduling hot path asks the same questions of thousands of nodes per
pod. Parsing a Quantity or compiling a selector once per pod (or once per distinct string,
through small memo tables) instead of once per (pod, node) is what makes the filter loop a
few attribute reads per node.

Concurrency contract: plain data, owned by the scheduler cache and mutated only from the
event loop between awaits; a scheduling cycle reads them without awaiting.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from control.api import labels as labelsmod
from control.api import quantity
from control.api.pb import core_pb2, meta_pb2
from control.api.podutil import controller_uid

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL_STORAGE = "ephemeral-storage"
PODS = "pods"

# Kubernetes' defaults for containers without requests, used only for scoring
# (pkg/scheduler/util: DefaultMilliCPURequest, DefaultMemoryRequest).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"

# Process-wide, so that a NodeInfo's generation identifies its state across re-creation
# (the framework memoises per-node results on it).
_GENERATION = itertools.count(1)

_QTY_MEMO: dict[tuple[str, bool], int] = {}


def qty(text: str, milli: bool = False) -> int:
    """A Quantity string as an int (milli units for CPU), memoised: replicas of one template
    repeat the same few strings, and Fraction arithmetic is slow."""
    key = (text, milli)
    v = _QTY_MEMO.get(key)
    if v is None:
        v = quantity.milli_value(text) if milli else quantity.value(text)
        if len(_QTY_MEMO) > 10_000:
            _QTY_MEMO.clear()
        _QTY_MEMO[key] = v
    return v


@dataclass(slots=True)
class Resources:
    """Integer amounts of the resources the scheduler counts."""

    milli_cpu: int = 0
    memory: int = 0
    ephemeral_storage: int = 0
    allowed_pods: int = 0
    scalar: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def from_map(m: Mapping[str, Any]) -> Resources:
        r = Resources()
        for name, q in m.items():
            text = q.string if hasattr(q, "string") else str(q)
            if name == CPU:
                r.milli_cpu = qty(text, milli=True)
            elif name == MEMORY:
                r.memory = qty(text)
            elif name == EPHEMERAL_STORAGE:
                r.ephemeral_storage = qty(text)
            elif name == PODS:
                r.allowed_pods = qty(text)
            elif _is_scalar(name):
                r.scalar[name] = qty(text)
        return r

    def add(self, o: Resources) -> None:
        self.milli_cpu += o.milli_cpu
        self.memory += o.memory
        self.ephemeral_storage += o.ephemeral_storage
        for k, v in o.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) + v

    def sub(self, o: Resources) -> None:
        self.milli_cpu -= o.milli_cpu
        self.memory -= o.memory
        self.ephemeral_storage -= o.ephemeral_storage
        for k, v in o.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) - v

    def set_max(self, o: Resources) -> None:
        self.milli_cpu = max(self.milli_cpu, o.milli_cpu)
        self.memory = max(self.memory, o.memory)
        self.ephemeral_storage = max(self.ephemeral_storage, o.ephemeral_storage)
        for k, v in o.scalar.items():
            self.scalar[k] = max(self.scalar.get(k, 0), v)

    def copy(self) -> Resources:
        return Resources(self.milli_cpu, self.memory, self.ephemeral_storage,
                         self.allowed_pods, dict(self.scalar))

    def is_zero(self) -> bool:
        return not (self.milli_cpu or self.memory or self.ephemeral_storage
                    or any(self.scalar.values()))


def _is_scalar(name: str) -> bool:
    # Extended resources (vendor.io/gpu) and hugepages are counted; anything else
    # unknown is ignored as Kubernetes' NodeResourcesFit does for non-scalar names.
    return "/" in name or name.startswith("hugepages-")


def _container_requests(c: core_pb2.Container, non_zero: bool) -> Resources:
    r = Resources.from_map(c.resources.requests)
    if non_zero:
        if CPU not in c.resources.requests:
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST
        if MEMORY not in c.resources.requests:
            r.memory = DEFAULT_MEMORY_REQUEST
    return r


def pod_requests(spec: core_pb2.PodSpec, non_zero: bool = False) -> Resources:
    """Kubernetes' ComputePodResourceRequest: the sum of the app containers, sidecars (init
    containers with restartPolicy Always) added to it, the maximum of each init container
    (plus the sidecars started before it) taken over that, then pod overhead.
    Pod-level ``spec.resources.requests`` replace cpu/memory when set.

    ``non_zero`` substitutes the scoring defaults (100m, 200Mi) for missing requests."""
    reqs = Resources()
    for c in spec.containers:
        reqs.add(_container_requests(c, non_zero))
    sidecars = Resources()
    init_max = Resources()
    for c in spec.init_containers:
        cr = _container_requests(c, non_zero)
        if c.HasField("restart_policy") and c.restart_policy == "Always":
            reqs.add(cr)
            sidecars.add(cr)
            cand = sidecars.copy()
        else:
            cand = cr.copy()
            cand.add(sidecars)
        init_max.set_max(cand)
    reqs.set_max(init_max)
    if spec.HasField("resources") and spec.resources.requests:
        pl = spec.resources.requests
        if CPU in pl:
            reqs.milli_cpu = qty(pl[CPU].string, milli=True)
        if MEMORY in pl:
            reqs.memory = qty(pl[MEMORY].string)
    if spec.overhead:
        reqs.add(Resources.from_map(spec.overhead))
    return reqs


# -- affinity terms ------------------------------------------------------------------------

_SELECTOR_MEMO: dict[bytes, labelsmod.Selector] = {}


def compile_selector(sel: meta_pb2.LabelSelector) -> labelsmod.Selector:
    """``labels.from_label_selector`` memoised by the selector's bytes (replicas share them)."""
    key = sel.SerializeToString(deterministic=True)
    s = _SELECTOR_MEMO.get(key)
    if s is None:
        s = labelsmod.from_label_selector(sel)
        if len(_SELECTOR_MEMO) > 10_000:
            _SELECTOR_MEMO.clear()
        _SELECTOR_MEMO[key] = s
    return s


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A compiled PodAffinityTerm. ``namespaces`` empty with ``namespace_selector`` None means
    "the pod's own namespace" (already substituted); a namespace selector that is empty
    matches every namespace."""

    selector: labelsmod.Selector
    namespaces: frozenset[str]
    namespace_selector: labelsmod.Selector | None
    topology_key: str
    weight: int = 0
    # canonical text: terms of replicas of one template compare equal and group together
    signature: str = ""

    def matches(self, pod: PodInfo, ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if pod.namespace not in self.namespaces:
            ns_sel = self.namespace_selector
            if ns_sel is None or not ns_sel.matches(ns_labels.get(pod.namespace, {})):
                return False
        return self.selector.matches(pod.labels)


def compile_term(t: core_pb2.PodAffinityTerm, pod: core_pb2.Pod, weight: int = 0) -> AffinityTerm:
    sel = compile_selector(t.label_selector) if t.HasField("label_selector") \
        else labelsmod.nothing()
    if t.match_label_keys or t.mismatch_label_keys:
        # matchLabelKeys: key in (pod's value); mismatchLabelKeys: key notin (pod's value).
        extra = [labelsmod.Requirement(k, labelsmod.IN, (pod.metadata.labels[k],))
                 for k in t.match_label_keys if k in pod.metadata.labels]
        extra += [labelsmod.Requirement(k, labelsmod.NOT_IN, (pod.metadata.labels[k],))
                  for k in t.mismatch_label_keys if k in pod.metadata.labels]
        sel = sel.add(*extra)
    ns_sel = compile_selector(t.namespace_selector) if t.HasField("namespace_selector") \
        else None
    namespaces = frozenset(t.namespaces)
    if not namespaces and ns_sel is None:
        namespaces = frozenset((pod.metadata.namespace,))
    sig = f"{sorted(namespaces)}|{ns_sel}|{sel}|{t.topology_key}|{sel.is_nothing}"
    return AffinityTerm(sel, namespaces, ns_sel, t.topology_key, weight, sig)


@dataclass(frozen=True, slots=True)
class TolerationInfo:
    key: str
    operator: str  # "Equal" or "Exists"
    value: str
    effect: str  # "" tolerates every effect

    def tolerates(self, key: str, value: str, effect: str) -> bool:
        """Kubernetes' Toleration.ToleratesTaint."""
        if self.effect and self.effect != effect:
            return False
        if self.key and self.key != key:
            return False
        if self.operator == "Exists":
            return True
        return self.operator == "Equal" and self.value == value


# -- PodInfo -------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class PodInfo:
    """A pod and what the plugins derive from it (see the module docstring)."""

    pod: core_pb2.Pod
    key: str
    uid: str
    namespace: str
    name: str
    labels: dict[str, str]
    node_name: str
    priority: int
    requests: Resources
    non_zero_cpu: int
    non_zero_memory: int
    host_ports: list[tuple[str, str, int]]
    owner_uid: str
    required_affinity: list[AffinityTerm]
    required_anti_affinity: list[AffinityTerm]
    preferred_affinity: list[AffinityTerm]
    preferred_anti_affinity: list[AffinityTerm]
    terminating: bool
    tolerations: tuple[TolerationInfo, ...] = ()
    # Pods with equal class keys get equal answers from node-local plugins on a node
    # (same requests, tolerations, node constraints, ports): see Framework's memo.
    class_key: int = 0

    @property
    def has_affinity(self) -> bool:
        return bool(self.required_affinity or self.required_anti_affinity
                    or self.preferred_affinity or self.preferred_anti_affinity)


def pod_key(pod: core_pb2.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def host_ports(spec: core_pb2.PodSpec) -> list[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) of every container port that claims a host port."""
    out: list[tuple[str, str, int]] = []
    for cs in (spec.init_containers, spec.containers):
        for c in cs:
            for p in c.ports:
                if p.host_port > 0:
                    out.append((p.host_ip or "0.0.0.0", p.protocol or "TCP", p.host_port))
    return out




def new_pod_info(pod: core_pb2.Pod, priority: int = 0) -> PodInfo:
    spec = pod.spec
    req = pod_requests(spec)
    nz = pod_requests(spec, non_zero=True)
    ra: list[AffinityTerm] = []
    raa: list[AffinityTerm] = []
    pa: list[AffinityTerm] = []
    paa: list[AffinityTerm] = []
    if spec.HasField("affinity"):
        aff = spec.affinity
        if aff.HasField("pod_affinity"):
            ra = [compile_term(t, pod) for t in
                  aff.pod_affinity.required_during_scheduling_ignored_during_execution]
            pa = [compile_term(w.pod_affinity_term, pod, w.weight) for w in
                  aff.pod_affinity.preferred_during_scheduling_ignored_during_execution]
        if aff.HasField("pod_anti_affinity"):
            raa = [compile_term(t, pod) for t in
                   aff.pod_anti_affinity.required_during_scheduling_ignored_during_execution]
            paa = [compile_term(w.pod_affinity_term, pod, w.weight) for w in
                   aff.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution]
    return PodInfo(
        pod=pod, key=pod_key(pod), uid=pod.metadata.uid, namespace=pod.metadata.namespace,
        name=pod.metadata.name, labels=dict(pod.metadata.labels), node_name=spec.node_name,
        priority=priority, requests=req, non_zero_cpu=nz.milli_cpu,
        non_zero_memory=nz.memory, host_ports=host_ports(spec),
        owner_uid=controller_uid(pod), required_affinity=ra,
        required_anti_affinity=raa, preferred_affinity=pa, preferred_anti_affinity=paa,
        terminating=pod.metadata.HasField("deletion_timestamp"),
        tolerations=tuple(TolerationInfo(t.key, t.operator or "Equal", t.value, t.effect)
                          for t in spec.tolerations),
        class_key=_class_key(pod, req, nz),
    )


_CLASS_KEYS: dict[tuple[object, ...], int] = {}


def _class_key(pod: core_pb2.Pod, req: Resources, nz: Resources) -> int:
    """A small int naming what node-local plugins see of the pod (interned)."""
    spec = pod.spec
    node_aff = spec.affinity.node_affinity.SerializeToString(deterministic=True) \
        if spec.HasField("affinity") else b""
    key = (spec.scheduler_name, req.milli_cpu, req.memory, req.ephemeral_storage,
           tuple(sorted(req.scalar.items())), nz.milli_cpu, nz.memory,
           tuple(sorted(spec.node_selector.items())), node_aff, spec.node_name,
           tuple((t.key, t.operator, t.value, t.effect) for t in spec.tolerations),
           tuple(host_ports(spec)))
    k = _CLASS_KEYS.get(key)
    if k is None:
        if len(_CLASS_KEYS) > 100_000:
            _CLASS_KEYS.clear()  # ids stay unique: the counter never restarts
        k = _CLASS_KEYS[key] = next(_CLASS_IDS)
    return k


_CLASS_IDS = itertools.count(1)


# -- NodeInfo ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaintInfo:
    key: str
    value: str
    effect: str


class NodeInfo:
    """A node and the pods placed on it (bound, assumed or nominated-and-running).

    ``requested`` sums the pods' effective requests; ``non_zero_*`` the scoring variants;
    ``used_ports`` maps (protocol, port) to the host IPs holding it."""

    __slots__ = ("allocatable", "generation", "labels", "name", "node", "non_zero_cpu",
                 "non_zero_memory", "pods", "pods_with_affinity",
                 "pods_with_required_anti_affinity", "requested", "taints", "unschedulable",
                 "used_ports")

    def __init__(self, node: core_pb2.Node | None = None, name: str = "") -> None:
        self.node: core_pb2.Node | None = None
        self.name = name
        self.labels: dict[str, str] = {}
        self.taints: tuple[TaintInfo, ...] = ()
        self.unschedulable = False
        self.allocatable = Resources()
        self.requested = Resources()
        self.non_zero_cpu = 0
        self.non_zero_memory = 0
        self.pods: dict[str, PodInfo] = {}
        self.pods_with_affinity = 0
        self.pods_with_required_anti_affinity = 0
        self.used_ports: dict[tuple[str, int], list[str]] = {}
        self.generation = next(_GENERATION)
        if node is not None:
            self.set_node(node)

    def set_node(self, node: core_pb2.Node) -> None:
        self.node = node
        self.name = node.metadata.name
        self.labels = dict(node.metadata.labels)
        self.taints = tuple(TaintInfo(t.key, t.value, t.effect) for t in node.spec.taints)
        self.unschedulable = node.spec.unschedulable
        self.allocatable = Resources.from_map(node.status.allocatable)
        self.generation = next(_GENERATION)

    def add_pod(self, pi: PodInfo) -> None:
        self.pods[pi.key] = pi
        self.requested.add(pi.requests)
        self.non_zero_cpu += pi.non_zero_cpu
        self.non_zero_memory += pi.non_zero_memory
        if pi.has_affinity:
            self.pods_with_affinity += 1
        if pi.required_anti_affinity:
            self.pods_with_required_anti_affinity += 1
        for ip, proto, port in pi.host_ports:
            self.used_ports.setdefault((proto, port), []).append(ip)
        self.generation = next(_GENERATION)

    def remove_pod(self, key: str) -> PodInfo | None:
        pi = self.pods.pop(key, None)
        if pi is None:
            return None
        self.requested.sub(pi.requests)
        self.non_zero_cpu -= pi.non_zero_cpu
        self.non_zero_memory -= pi.non_zero_memory
        if pi.has_affinity:
            self.pods_with_affinity -= 1
        if pi.required_anti_affinity:
            self.pods_with_required_anti_affinity -= 1
        for ip, proto, port in pi.host_ports:
            ips = self.used_ports.get((proto, port))
            if ips is not None:
                if ip in ips:
                    ips.remove(ip)
                if not ips:
                    del self.used_ports[(proto, port)]
        self.generation = next(_GENERATION)
        return pi

    def clone(self) -> NodeInfo:
        """A copy whose pod set may be changed (preemption's what-if) without touching us."""
        c = NodeInfo(name=self.name)
        c.node = self.node
        c.labels = self.labels
        c.taints = self.taints
        c.unschedulable = self.unschedulable
        c.allocatable = self.allocatable
        c.requested = self.requested.copy()
        c.non_zero_cpu = self.non_zero_cpu
        c.non_zero_memory = self.non_zero_memory
        c.pods = dict(self.pods)
        c.pods_with_affinity = self.pods_with_affinity
        c.pods_with_required_anti_affinity = self.pods_with_required_anti_affinity
        c.used_ports = {k: list(v) for k, v in self.used_ports.items()}
        c.generation = next(_GENERATION)  # a what-if copy never shares memoised results
        return c


def port_conflict(used: Mapping[tuple[str, int], Iterable[str]], ip: str, proto: str,
                  port: int) -> bool:
    """Kubernetes' HostPortInfo.CheckConflict: 0.0.0.0 conflicts with every IP."""
    ips = used.get((proto, port))
    if not ips:
        return False
    if ip == "0.0.0.0":
        return True
    return any(u == ip or u == "0.0.0.0" for u in ips)
