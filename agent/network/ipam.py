"""Host-local IPAM: pod addresses out of the node's range, one lease file per address.

As CNI's host-local plugin: the directory holds a file named by each leased address whose
content says who holds it (here JSON: the container id, the interface, the pod's port
mappings, so the node's hostPort rules can be rebuilt from the leases alone), plus
``last_reserved_ip`` so addresses are handed out round-robin rather than reused at once
(a stale connection or ARP entry for a gone pod then reaches nobody, not a new pod).
The files are the state: an agent restarted on the same data dir keeps every pod's
address, and ``release_unknown`` reclaims leases of sandboxes that no longer exist.

The range excludes the network address, the gateway (the range's first host, on the node's
bridge) and the broadcast address. ``next_address`` is the pure choice, table-tested.

Concurrency contract: the methods block (file I/O: call them through a thread); one lock
makes allocate/release atomic within the process; one agent owns a directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAST_RESERVED = "last_reserved_ip"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpamError(Exception):
    pass


@dataclass(frozen=True)
class Lease:
    address: str
    container_id: str
    if_name: str = "eth0"
    ports: list[dict[str, Any]] = field(default_factory=list)


def gateway_of(cidr: Network) -> Address:
    """The node bridge's address: the range's first host."""
    return cidr.network_address + 1


def next_address(cidr: Network, used: Collection[str], last: str | None) -> Address | None:
    """The first free address after ``last`` (round the range), or None when full."""
    first = int(cidr.network_address) + 2  # network address and gateway excluded
    end = int(cidr.broadcast_address) - (1 if cidr.version == 4 else 0)  # inclusive
    if cidr.num_addresses <= 4 and cidr.version == 4:
        return None  # /30 and smaller leave nothing after the gateway
    count = end - first + 1
    start = first
    if last:
        try:
            lv = int(ipaddress.ip_address(last))
            if first <= lv <= end:
                start = lv + 1 if lv < end else first
        except ValueError:
            pass
    taken = set(used)
    for k in range(count):
        cand = first + (start - first + k) % count
        addr = ipaddress.ip_address(cand)
        if str(addr) not in taken:
            return addr
    return None


class LeaseStore:
    """The lease directory; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, address: str) -> Path:
        return self.dir / address

    def leases(self) -> list[Lease]:
        out = []
        for entry in sorted(os.listdir(self.dir)):
            if entry == LAST_RESERVED or entry.startswith("."):
                continue
            try:
                ipaddress.ip_address(entry)
                data = json.loads((self.dir / entry).read_text())
                out.append(Lease(entry, str(data["container_id"]), str(data.get("if_name", "eth0")),
                                 list(data.get("ports", []))))
            except (ValueError, OSError, KeyError, TypeError):
                continue  # a torn or foreign file: never ours to interpret
        return out

    def find(self, container_id: str, if_name: str = "eth0") -> Lease | None:
        for lease in self.leases():
            if lease.container_id == container_id and lease.if_name == if_name:
                return lease
        return None

    def allocate(self, cidr: Network, container_id: str, if_name: str = "eth0",
                 ports: Iterable[dict[str, Any]] = ()) -> Lease:
        """The container's lease (the existing one when it has one) in ``cidr``."""
        with self._lock:
            existing = self.find(container_id, if_name)
            if existing is not None and ipaddress.ip_address(existing.address) in cidr:
                return existing
            used = [lease.address for lease in self.leases()]
            last = None
            with contextlib.suppress(OSError):
                last = (self.dir / LAST_RESERVED).read_text().strip() or None
            addr = next_address(cidr, used, last)
            if addr is None:
                raise IpamError(f"no free address left in {cidr} ({len(used)} leased)")
            lease = Lease(str(addr), container_id, if_name, list(ports))
            tmp = self.dir / f".{addr}.tmp"
            tmp.write_text(json.dumps({"container_id": container_id, "if_name": if_name,
                                       "ports": lease.ports}))
            os.replace(tmp, self._path(str(addr)))
            (self.dir / LAST_RESERVED).write_text(str(addr))
            return lease

    def release(self, container_id: str) -> list[str]:
        """Drop every lease of ``container_id``; returns the addresses freed."""
        with self._lock:
            freed = []
            for lease in self.leases():
                if lease.container_id == container_id:
                    with contextlib.suppress(FileNotFoundError):
                        self._path(lease.address).unlink()
                    freed.append(lease.address)
            return freed

    def release_unknown(self, keep: Collection[str]) -> list[str]:
        """Drop the leases of every container id not in ``keep``; returns those ids."""
        gone = sorted({lease.container_id for lease in self.leases()
                       if lease.container_id not in keep})
        for cid in gone:
            self.release(cid)
        return gone

    def clear(self) -> None:
        """Remove the whole directory (``flotilla agent --cleanup``)."""
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
