"""NodeName: a pod that names its node (``spec.nodeName`` set at creation but not bound, or
requested through the scheduler) only fits that node. Pods arriving with spec.nodeName are
bound already and never reach the scheduler; this covers pods whose name is resolved by
the scheduler (e.g. set by a webhook-like defaulting) and keeps kube's plugin set.

Concurrency contract: stateless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.scheduler.framework import (
    SKIP,
    CycleState,
    FilterPlugin,
    Handle,
    PreFilterPlugin,
    PreFilterResult,
    Status,
)
from control.scheduler.types import NodeInfo, PodInfo

REASON = "node(s) didn't match the requested node name"
_REJECT = Status.unresolvable(REASON)


def fits(wanted: str, node_name: str) -> bool:
    return not wanted or wanted == node_name


class NodeName(PreFilterPlugin, FilterPlugin):
    name = "NodeName"
    node_local = True

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | PreFilterResult | None:
        if not pod.node_name:
            return SKIP
        return PreFilterResult({pod.node_name})

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None if fits(pod.node_name, node.name) else _REJECT
