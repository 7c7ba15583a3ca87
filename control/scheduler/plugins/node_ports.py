"""NodePorts: a pod asking for a hostPort fits only a node where no placed pod holds that
(protocol, port) on the same host IP (0.0.0.0 clashes with every IP).

Concurrency contract: stateless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
from control.scheduler.types import NodeInfo, PodInfo, port_conflict

REASON = "node(s) didn't have free ports for the requested pod ports"
_REJECT = Status.unschedulable(REASON)


def ports_fit(wanted: Iterable[tuple[str, str, int]],
              used: Mapping[tuple[str, int], Iterable[str]]) -> bool:
    return not any(port_conflict(used, ip, proto, port) for ip, proto, port in wanted)


class NodePorts(PreFilterPlugin, FilterPlugin):
    name = "NodePorts"
    node_local = True

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | PreFilterResult | None:
        return None if pod.host_ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.used_ports and not ports_fit(pod.host_ports, node.used_ports):
            return _REJECT
        return None
