"""NodeResourcesFit: does the pod's effective request fit in what the node has left, and how
full would the node be (LeastAllocated: prefer emptier nodes, the default; MostAllocated:
bin-pack)?

Requests are ``types.pod_requests`` (app containers + sidecars, max with init containers,
overhead); a node offers ``allocatable`` minus the requests of the pods placed there
(bound or assumed). Checked: pod slots, cpu, memory, ephemeral-storage and extended
resources. Scoring uses the "non-zero" requests (100m / 200Mi for containers without
requests), as Kubernetes does, so best-effort pods still spread.

Plugin args (KubeSchedulerConfiguration's NodeResourcesFitArgs)::

    scoringStrategy: {type: LeastAllocated|MostAllocated,
                      resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]}
    ignoredResources: [example.com/foo]

Concurrency contract: immutable after construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from control.scheduler.framework import (
    MAX_NODE_SCORE,
    CycleState,
    FilterPlugin,
    Handle,
    ScorePlugin,
    Status,
)
from control.scheduler.types import (
    CPU,
    EPHEMERAL_STORAGE,
    MEMORY,
    NodeInfo,
    PodInfo,
    Resources,
)

LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"
TOO_MANY_PODS = "Too many pods"


def insufficient(req: Resources, requested: Resources, allocatable: Resources, pods_on_node: int,
                 ignored: frozenset[str] = frozenset()) -> list[str]:
    """Kubernetes' fitsRequest: every reason the pod does not fit (empty: it fits)."""
    out: list[str] = []
    if pods_on_node + 1 > allocatable.allowed_pods:
        out.append(TOO_MANY_PODS)
    if req.milli_cpu and allocatable.milli_cpu < req.milli_cpu + requested.milli_cpu:
        out.append("Insufficient cpu")
    if req.memory and allocatable.memory < req.memory + requested.memory:
        out.append("Insufficient memory")
    if req.ephemeral_storage and \
            allocatable.ephemeral_storage < req.ephemeral_storage + requested.ephemeral_storage:
        out.append("Insufficient ephemeral-storage")
    for name, amount in req.scalar.items():
        if amount and name not in ignored and \
                allocatable.scalar.get(name, 0) < amount + requested.scalar.get(name, 0):
            out.append(f"Insufficient {name}")
    return out


def least_allocated(requested: int, capacity: int) -> int:
    if capacity <= 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_allocated(requested: int, capacity: int) -> int:
    if capacity <= 0:
        return 0
    return min(requested, capacity) * MAX_NODE_SCORE // capacity


def requested_and_capacity(resource: str, pod: PodInfo, node: NodeInfo) -> tuple[int, int]:
    """(node's requests + the pod's, allocatable) for scoring one resource."""
    if resource == CPU:
        return node.non_zero_cpu + pod.non_zero_cpu, node.allocatable.milli_cpu
    if resource == MEMORY:
        return node.non_zero_memory + pod.non_zero_memory, node.allocatable.memory
    if resource == EPHEMERAL_STORAGE:
        return (node.requested.ephemeral_storage + pod.requests.ephemeral_storage,
                node.allocatable.ephemeral_storage)
    return (node.requested.scalar.get(resource, 0) + pod.requests.scalar.get(resource, 0),
            node.allocatable.scalar.get(resource, 0))


class NodeResourcesFit(FilterPlugin, ScorePlugin):
    name = "NodeResourcesFit"
    node_local = True

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        args = args or {}
        strategy = args.get("scoringStrategy") or {}
        self.strategy = strategy.get("type", LEAST_ALLOCATED)
        if self.strategy not in (LEAST_ALLOCATED, MOST_ALLOCATED):
            raise ValueError(f"NodeResourcesFit: scoringStrategy.type {self.strategy!r} is not "
                             f"supported (use {LEAST_ALLOCATED} or {MOST_ALLOCATED})")
        resources = strategy.get("resources") or [{"name": CPU, "weight": 1},
                                                  {"name": MEMORY, "weight": 1}]
        self.resources: list[tuple[str, int]] = [(r["name"], int(r.get("weight", 1)))
                                                 for r in resources]
        self.ignored = frozenset(args.get("ignoredResources") or ())
        self._fn = least_allocated if self.strategy == LEAST_ALLOCATED else most_allocated

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        req = pod.requests
        alloc = node.allocatable
        used = node.requested
        # Inlined common case: nothing but cpu/memory requested and it all fits.
        if len(node.pods) < alloc.allowed_pods and not req.scalar \
                and not req.ephemeral_storage \
                and used.milli_cpu + req.milli_cpu <= alloc.milli_cpu \
                and used.memory + req.memory <= alloc.memory:
            return None
        reasons = insufficient(req, used, alloc, len(node.pods), self.ignored)
        return Status.unschedulable(*reasons) if reasons else None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = weights = 0
        fn = self._fn
        for name, weight in self.resources:
            requested, capacity = requested_and_capacity(name, pod, node)
            if capacity == 0 and name not in (CPU, MEMORY):
                continue  # an extended resource the node lacks does not count
            total += fn(requested, capacity) * weight
            weights += weight
        return total // weights if weights else 0

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        if self.resources == [(CPU, 1), (MEMORY, 1)]:
            fn = self._fn
            pc, pm = pod.non_zero_cpu, pod.non_zero_memory
            return [(fn(n.non_zero_cpu + pc, n.allocatable.milli_cpu)
                     + fn(n.non_zero_memory + pm, n.allocatable.memory)) // 2 for n in nodes]
        return super().score_nodes(state, pod, nodes)
