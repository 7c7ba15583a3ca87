"""DefaultPreemption: when no node fits, find a node where evicting lower-priority pods
would make room, and the fewest such pods to evict.

For each node whose rejection was merely Unschedulable (not unresolvable: evicting pods
cannot fix a missing label or a taint), on a copy of the node: remove every pod of lower
priority (telling the pre-filter plugins, so affinity/spread counts follow), check that the
pod fits, then add the removed pods back from the most important down, keeping out only
those whose return would make it not fit again ("reprieve"). The node chosen has the fewest
victims, then the lowest highest-victim priority, then the lowest sum of priorities.

When no placed pod anywhere has a lower priority, preemption is silent (no message): the
FailedScheduling text is then exactly the filter reasons, as the issue's example shows.
Otherwise a failed attempt appends Kubernetes' "preemption: 0/N nodes are available: ..." part.

The plugin only decides; the scheduler evicts the victims (graceful delete) and records the
node in the pod's ``status.nominatedNodeName``. A pod with ``preemptionPolicy: Never`` never
preempts; assumed pods (bind in flight) and pods already terminating are never victims, and a
pod whose nominated node still has terminating lower-priority pods waits for them instead of
choosing more victims.

Concurrency contract: stateless; synchronous, inside the scheduling cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from control.scheduler.framework import (
    Code,
    CycleState,
    Handle,
    PostFilterPlugin,
    PostFilterResult,
    Status,
    reason_histogram,
)
from control.scheduler.types import NodeInfo, PodInfo

if TYPE_CHECKING:
    from control.scheduler.framework import Framework

R_NO_VICTIMS = "No preemption victims found for incoming pod"
R_NOT_HELPFUL = "Preemption is not helpful for scheduling"


def candidate_rank(victims: Sequence[PodInfo]) -> tuple[int, int, int]:
    """Lower is better: fewest victims, lowest top priority, lowest priority sum."""
    return (len(victims), max((v.priority for v in victims), default=-(2**31)),
            sum(v.priority for v in victims))


def importance(p: PodInfo) -> tuple[int, float]:
    """Most important first: higher priority, then the one that started earlier."""
    start = p.pod.status.start_time.seconds if p.pod.status.HasField("start_time") else 0
    return (-p.priority, start)


def select_victims(fw: Framework, state: CycleState, pod: PodInfo,
                   node: NodeInfo) -> list[PodInfo] | None:
    """The victims on ``node`` that make ``pod`` fit, or None if no eviction helps."""
    cache = state.snapshot
    lower = [p for p in node.pods.values()
             if p.priority < pod.priority and not p.terminating
             and not cache.is_assumed(p.key)]
    if not lower:
        return None
    ni = node.clone()
    st = state.clone()
    for p in lower:
        ni.remove_pod(p.key)
        fw.run_remove_pod(st, pod, p, ni)
    if fw.run_filters(st, pod, ni) is not None:
        return None
    victims: list[PodInfo] = []
    for p in sorted(lower, key=importance):
        ni.add_pod(p)
        fw.run_add_pod(st, pod, p, ni)
        if fw.run_filters(st, pod, ni) is not None:
            ni.remove_pod(p.key)
            fw.run_remove_pod(st, pod, p, ni)
            victims.append(p)
    return victims


class DefaultPreemption(PostFilterPlugin):
    name = "DefaultPreemption"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def post_filter(self, state: CycleState, pod: PodInfo, fw: Framework,
                    statuses: Mapping[str, Status]) -> tuple[PostFilterResult | None, str]:
        spec = pod.pod.spec
        if spec.HasField("preemption_policy") and spec.preemption_policy == "Never":
            return None, "preemption: not eligible due to preemptionPolicy=Never"
        cache = state.snapshot
        nominated = pod.pod.status.nominated_node_name
        if nominated:
            ni = cache.node(nominated)
            if ni is not None and any(p.terminating and p.priority < pod.priority
                                      for p in ni.pods.values()):
                return None, "preemption: not eligible: victims on the nominated node " \
                    "are still terminating"
        if not any(p.priority < pod.priority for ni in cache.node_list()
                   for p in ni.pods.values()):
            # Nothing anywhere could be preempted: say nothing rather than list every node
            # as "no victims" (the user's message stays the filter reasons alone).
            return None, ""
        best: tuple[tuple[int, int, int], str, list[PodInfo]] | None = None
        refusals: list[Status] = []
        for ni in cache.node_list():
            st = statuses.get(ni.name)
            if st is not None and st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                refusals.append(Status.unresolvable(R_NOT_HELPFUL))
                continue
            victims = select_victims(fw, state, pod, ni)
            if victims is None:
                refusals.append(Status.unschedulable(R_NO_VICTIMS))
                continue
            rank = candidate_rank(victims)
            if best is None or rank < best[0]:
                best = (rank, ni.name, victims)
        if best is None:
            total = len(cache.node_list())
            return None, (f"preemption: 0/{total} nodes are available: "
                          + ", ".join(reason_histogram(refusals)))
        return PostFilterResult(best[1], best[2]), ""
