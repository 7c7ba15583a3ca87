"""NodeUnschedulable: a cordoned node (``spec.unschedulable``) takes no new pods, unless the
pod tolerates the ``node.kubernetes.io/unschedulable:NoSchedule`` taint.

Concurrency contract: stateless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.scheduler.framework import CycleState, FilterPlugin, Handle, Status
from control.scheduler.types import NodeInfo, PodInfo, TolerationInfo

TAINT_KEY = "node.kubernetes.io/unschedulable"
REASON = "node(s) were unschedulable"
_REJECT = Status.unresolvable(REASON)


def tolerates_unschedulable(tolerations: tuple[TolerationInfo, ...]) -> bool:
    return any(t.tolerates(TAINT_KEY, "", "NoSchedule") for t in tolerations)


class NodeUnschedulable(FilterPlugin):
    name = "NodeUnschedulable"
    node_local = True

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.unschedulable and not tolerates_unschedulable(pod.tolerations):
            return _REJECT
        return None
