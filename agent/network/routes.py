"""Host-gw routing: which routes a node needs to reach the other nodes' pods (flannel's
host-gw backend). Pure functions over Node objects, table-tested; ``bridge.py`` applies.

Every other node with a pod range and an InternalIP gets ``<its podCIDR> via <its
InternalIP>``. A node without either is skipped until it has both (its pods are
unreachable until then: the ``unreachable`` route over the cluster range refuses them
locally, never sending them to the default route).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any


def internal_ip(node: Any) -> str:
    for a in node.status.addresses:
        if a.type == "InternalIP":
            return str(a.address)
    return ""


def node_pod_cidr(node: Any) -> str:
    if node.spec.pod_cidrs:
        return str(node.spec.pod_cidrs[0])
    return str(node.spec.pod_cidr)


def desired_routes(nodes: Iterable[Any], self_name: str) -> dict[str, str]:
    """podCIDR -> gateway (the node's InternalIP) for every other IPv4 node."""
    out: dict[str, str] = {}
    for n in nodes:
        if n.metadata.name == self_name:
            continue
        cidr, via = node_pod_cidr(n), internal_ip(n)
        if not cidr or not via:
            continue
        try:
            net = ipaddress.ip_network(cidr, strict=False)
            gw = ipaddress.ip_address(via)
        except ValueError:
            continue
        if net.version != 4 or gw.version != 4:
            continue
        out[str(net)] = str(gw)
    return out
