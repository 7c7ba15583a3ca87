"""The node's nftables table ``flotilla-net``: masquerade for pod traffic leaving the
cluster range, hostPort DNAT (the CNI portmap plugin's job), and the forwarding policy.

``render`` is pure (table-tested): it turns a :class:`Rules` into one ``nft -f`` script
that replaces the whole table atomically (create it if missing, delete it, define it again:
one transaction), so the rules are always rebuilt from the state (the node's range and the
leases' port mappings) and never patched. Only our own table is ever touched.

Concurrency contract: ``apply``/``remove`` block (they run ``nft``): call them through a
thread; the caller serialises them (one writer per node).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from agent.network.interface import NetworkError, PortMapping

TABLE = "flotilla-net"
FAMILY = "ip"


@dataclass(frozen=True)
class HostPort:
    pod_ip: str
    mapping: PortMapping


@dataclass(frozen=True)
class Rules:
    pod_cidr: str  # this node's range
    cluster_cidrs: Sequence[str]  # the cluster's pod range (+ service range): never masqueraded
    bridge: str
    host_ports: Sequence[HostPort] = ()
    # True when Flotilla switched forwarding on: then only its ranges are forwarded
    restrict_forwarding: bool = False


def _set(items: Sequence[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def render(rules: Rules) -> str:
    """The ``nft -f`` script that makes the table exactly ``rules``."""
    cluster = _set(list(rules.cluster_cidrs))
    lines = [
        f"table {FAMILY} {TABLE}",
        f"delete table {FAMILY} {TABLE}",
        f"table {FAMILY} {TABLE} {{",
        "  chain hostports {",
    ]
    for hp in sorted(rules.host_ports, key=lambda h: (h.mapping.protocol, h.mapping.host_port,
                                                       h.mapping.host_ip)):
        m = hp.mapping
        proto = m.protocol.lower()
        match = f"ip daddr {m.host_ip} " if m.host_ip and m.host_ip != "0.0.0.0" else ""
        lines.append(f"    {match}{proto} dport {m.host_port} "
                     f"dnat to {hp.pod_ip}:{m.container_port}")
    lines += [
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority -100; policy accept;",
        "    fib daddr type local jump hostports",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump hostports",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority 100; policy accept;",
        # a pod reaching a hostPort of its own node through the node's address comes back
        # to the bridge: masquerade so the reply goes through the node, not straight back
        f"    ct status dnat ip saddr {rules.pod_cidr} oifname \"{rules.bridge}\" masquerade",
        f"    ip saddr {rules.pod_cidr} ip daddr != {cluster} masquerade",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        f"    ip saddr {cluster} accept",
        f"    ip daddr {cluster} accept",
    ]
    if rules.restrict_forwarding:
        lines.append("    drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _nft() -> str:
    path = shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None)
    if path is None:
        raise NetworkError("nft not found (Debian package nftables)")
    return path


def apply(script: str) -> None:
    r = subprocess.run([_nft(), "-f", "-"], input=script, text=True, capture_output=True,
                       timeout=30, check=False)
    if r.returncode != 0:
        raise NetworkError(f"nft: {r.stderr.strip()}")


def remove() -> None:
    """Delete the table if it exists."""
    apply(f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")


def listing(family: str, table: str) -> str:
    """``nft list table`` of any table (the service proxy's too); "" when it is missing."""
    r = subprocess.run([_nft(), "list", "table", family, table], capture_output=True,
                       text=True, timeout=30, check=False)
    return r.stdout if r.returncode == 0 else ""


def exists() -> bool:
    r = subprocess.run([_nft(), "list", "table", FAMILY, TABLE], capture_output=True,
                       timeout=30, check=False)
    return r.returncode == 0
