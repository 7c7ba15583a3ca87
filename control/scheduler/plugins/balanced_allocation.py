"""NodeResourcesBalancedAllocation: prefer nodes where, with the pod added, the fractions of
cpu and memory in use are close to each other (a node full of CPU but empty of memory
strands the memory). Score = (1 - standard deviation of the fractions) * 100.

Args: ``resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]``.

Concurrency contract: immutable after construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from control.scheduler.framework import MAX_NODE_SCORE, CycleState, Handle, ScorePlugin
from control.scheduler.plugins.node_resources_fit import requested_and_capacity
from control.scheduler.types import CPU, MEMORY, NodeInfo, PodInfo


def balanced_score(fractions: Sequence[float]) -> int:
    """(1 - std) * 100 of the used fractions (each capped at 1)."""
    fs = [min(f, 1.0) for f in fractions]
    if len(fs) < 2:
        return MAX_NODE_SCORE
    if len(fs) == 2:
        std = abs(fs[0] - fs[1]) / 2
    else:
        mean = sum(fs) / len(fs)
        std = math.sqrt(sum((f - mean) ** 2 for f in fs) / len(fs))
    return int((1 - std) * MAX_NODE_SCORE)


class NodeResourcesBalancedAllocation(ScorePlugin):
    name = "NodeResourcesBalancedAllocation"
    node_local = True

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        res = (args or {}).get("resources") or [{"name": CPU}, {"name": MEMORY}]
        self.resources = [r["name"] for r in res]

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        fractions = []
        for name in self.resources:
            requested, capacity = requested_and_capacity(name, pod, node)
            if capacity > 0:
                fractions.append(requested / capacity)
        return balanced_score(fractions)

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        if self.resources != [CPU, MEMORY]:
            return super().score_nodes(state, pod, nodes)
        pc, pm = pod.non_zero_cpu, pod.non_zero_memory
        out = []
        for n in nodes:
            ac, am = n.allocatable.milli_cpu, n.allocatable.memory
            if ac <= 0 or am <= 0:
                out.append(balanced_score([(n.non_zero_cpu + pc) / ac] if ac > 0 else
                                          [(n.non_zero_memory + pm) / am] if am > 0 else []))
                continue
            fc = min((n.non_zero_cpu + pc) / ac, 1.0)
            fm = min((n.non_zero_memory + pm) / am, 1.0)
            out.append(int((1 - abs(fc - fm) / 2) * MAX_NODE_SCORE))
        return out
