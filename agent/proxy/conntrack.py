"""Stale UDP conntrack entries of Services (what kube-proxy's conntrack cleanup does).

UDP has no connection to break: once a client's flow is in the conntrack table, its
datagrams keep their first translation for as long as the client keeps sending (the entry's
timeout restarts with each one). So when a rules change leaves a flow pointing the wrong way
it must be deleted, or the client keeps talking to a pod that is gone:

- an endpoint leaves a UDP Service port (pod deleted, unready, the port or the Service
  removed): flows to the cluster IP or a load-balancer address at that port whose replies
  come from that endpoint, and flows to the node port whose replies come from it;
- a UDP Service port gets its first endpoint: flows to its addresses and node port that
  were set up while it had none (they were rejected, and would stay un-NATed and rejected).

Node-port flows are matched on the node's own addresses (``node_ips``): the port number
alone would also match other programs' flows to other machines (kube-proxy matches the
port alone; on a machine it does not own, that touches what is not its own). Without
the node's addresses, node-port flows are left to time out.

:func:`stale_flows` computes the deletions from the previous and the new ruleset (pure,
table-tested); :class:`ConntrackCli` runs them with the ``conntrack`` tool in the calling
process' network namespace; :class:`FakeConntrack` records them.

Concurrency contract: :func:`stale_flows` is pure; the proxier calls ``delete`` from its
one sync task (the tool runs in a thread).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from agent.proxy.nft_rules import Ruleset, ServicePort

log = structlog.get_logger(component="proxy")


@dataclass(frozen=True, order=True)
class Flow:
    """UDP conntrack entries matching every field that is set: original destination
    address and port, and the address replies come from (the endpoint a DNAT chose)."""

    orig_dst: str = ""
    orig_port: int = 0
    reply_src: str = ""

    def argv(self) -> list[str]:
        out = ["-D", "-p", "udp"]
        if self.orig_dst:
            out += ["--orig-dst", self.orig_dst]
        if self.orig_port:
            out += ["--orig-port-dst", str(self.orig_port)]
        if self.reply_src:
            out += ["--reply-src", self.reply_src]
        return out


def _key(sp: ServicePort) -> tuple[str, str, str]:
    return sp.namespace, sp.name, sp.port_name


def _addresses(sp: ServicePort) -> list[tuple[str, int]]:
    return [(ip, sp.port) for ip in (sp.cluster_ip, *sp.load_balancer_ips)]


def stale_flows(old: Ruleset | None, new: Ruleset, node_ips: Sequence[str] = ()
                ) -> list[Flow]:
    """The UDP flows to delete after ``old`` became ``new`` (nothing for the first sync:
    there is no earlier state to be stale against)."""
    if old is None:
        return []
    before = {_key(sp): sp for sp in old.ports if sp.protocol == "UDP"}
    after = {_key(sp): sp for sp in new.ports if sp.protocol == "UDP"}
    out: set[Flow] = set()
    for key, was in before.items():
        now = after.get(key)
        kept = {e.ip for e in now.endpoints} if now is not None else set()
        for ip in {e.ip for e in was.endpoints} - kept:
            for addr, port in _addresses(was):
                out.add(Flow(addr, port, ip))
            if was.node_port:
                out.update(Flow(node, was.node_port, ip) for node in node_ips)
    for key, sp in after.items():
        earlier = before.get(key)
        if sp.endpoints and (earlier is None or not earlier.endpoints):
            for addr, port in _addresses(sp):
                out.add(Flow(addr, port))
            if sp.node_port:
                out.update(Flow(node, sp.node_port) for node in node_ips)
    return sorted(out)


class Conntrack(Protocol):
    async def delete(self, flows: Sequence[Flow]) -> None: ...


class ConntrackCli:
    """Deletes with ``conntrack -D`` (Debian's conntrack), one run per flow; "0 flow
    entries" is not an error. A missing tool is said once, then cleanups are skipped."""

    def __init__(self, binary: str = "", *, prefix: Sequence[str] = ()) -> None:
        self.binary = binary or shutil.which("conntrack") or "/usr/sbin/conntrack"
        # run under this command (tests: ``ip netns exec NS``)
        self.prefix = list(prefix)
        self._warned = False

    def _run(self, flow: Flow) -> None:
        try:
            r = subprocess.run([*self.prefix, self.binary, *flow.argv()], capture_output=True, text=True,
                               timeout=10, check=False)
        except FileNotFoundError:
            if not self._warned:
                self._warned = True
                log.warning("conntrack is not installed: stale UDP flows of Services are "
                            "not deleted (Debian package conntrack)")
            return
        if r.returncode != 0 and "0 flow entries" not in r.stderr:
            raise RuntimeError(f"conntrack {' '.join(flow.argv())}: {r.stderr.strip()}")

    async def delete(self, flows: Sequence[Flow]) -> None:
        for flow in flows:
            await asyncio.to_thread(self._run, flow)


class FakeConntrack:
    def __init__(self) -> None:
        self.deleted: list[Flow] = []

    async def delete(self, flows: Sequence[Flow]) -> None:
        self.deleted.extend(flows)


__all__ = ["Conntrack", "ConntrackCli", "FakeConntrack", "Flow", "stale_flows"]
