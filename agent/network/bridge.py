"""The real pod network: a Linux bridge per node, a veth per pod, host-local IPAM, hostPort
DNAT and masquerade in nftables, host-gw routes to the other nodes (the CNI bridge,
host-local and portmap plugins plus flannel's host-gw, in one object).

On the node (the agent's own network namespace), once the node has a pod range:

- bridge ``flotilla0`` holding the range's first address (the pods' gateway);
- ``unreachable`` routes over the cluster range and the service range, beneath the
  specific ones (the node's own range on the bridge, each other node's via its InternalIP),
  so a packet for a cluster address nobody routes is refused here and never follows the
  default route off the machine;
- forwarding on (remembered when it was off, and then limited to Flotilla's ranges by the
  table's forward chain), bridge netfilter on (same-node traffic passes conntrack);
- table ``ip flotilla-net`` (``nft.py``), rebuilt whole from the leases on every change.

Per pod: a veth pair, the host end ``flo<id>`` on the bridge with hairpin on (a pod reaches
itself through its own hostPort or, later, its Service), the other end ``eth0`` in the pod's
namespace with the leased address and a default route via the gateway; ``lo`` up.

Every link, route and table we create carries our names or our route protocol number
(``RTPROT_FLOTILLA``), and ``cleanup`` removes exactly those.

Concurrency contract: coroutines on the agent's loop; netlink and file work run in
threads. One asyncio lock serialises node-level changes (configure, routes, the table);
pod add/delete for different ids run concurrently apart from that lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import structlog
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent.network import netns, nft
from agent.network.interface import (
    Attachment,
    AttachRequest,
    NetworkError,
    NetworkNotReady,
    PortMapping,
)
from agent.network.ipam import IpamError, Lease, LeaseStore, gateway_of

log = structlog.get_logger(__name__, component="network")

BRIDGE = "flotilla0"
VETH_PREFIX = "flo"
# Our routes' protocol number (rtnetlink's rtm_protocol): how cleanup knows them.
RTPROT_FLOTILLA = 241
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
ENOENT, EEXIST, ESRCH = 2, 17, 3


def veth_name(container_id: str) -> str:
    """The host end's name: 15 characters at most (IFNAMSIZ); a digest of the whole id, so
    ids sharing a prefix never share a link."""
    return VETH_PREFIX + hashlib.sha256(container_id.encode()).hexdigest()[:12]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _write(path: str, value: str) -> bool:
    try:
        Path(path).write_text(value)
        return True
    except OSError:
        return False


class BridgeNetwork:
    """See the module docstring."""

    def __init__(self, state_dir: Path, *, cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
                 service_cidr: str = DEFAULT_SERVICE_CIDR, bridge: str = BRIDGE) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_cidr = str(ipaddress.ip_network(cluster_cidr))
        self.service_cidr = str(ipaddress.ip_network(service_cidr))
        self.bridge = bridge
        self.leases = LeaseStore(self.state_dir / "ipam")
        self.pod_cidr: ipaddress.IPv4Network | None = None
        self._lock = asyncio.Lock()
        self._routes: dict[str, str] = {}

    # -- node level ---------------------------------------------------------------------

    def _state_file(self) -> Path:
        return self.state_dir / "node.json"

    def _node_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_file().read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_node_state(self, data: dict[str, Any]) -> None:
        tmp = self._state_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._state_file())

    async def configure(self, pod_cidr: str) -> None:
        """Set the node up for ``pod_cidr`` (idempotent: safe at every start)."""
        net = ipaddress.ip_network(pod_cidr)
        if not isinstance(net, ipaddress.IPv4Network):
            raise NetworkError(f"pod range {pod_cidr}: only IPv4 is supported")
        async with self._lock:
            await asyncio.to_thread(self._configure_node, net)
            self.pod_cidr = net
            await self._apply_rules()
        log.info("node network configured", pod_cidr=str(net), bridge=self.bridge)

    def _configure_node(self, net: ipaddress.IPv4Network) -> None:
        state = self._node_state()
        if "forwarding_was" not in state:
            state["forwarding_was"] = _read("/proc/sys/net/ipv4/ip_forward") or "0"
        state["pod_cidr"] = str(net)
        self._save_node_state(state)
        gateway = str(gateway_of(net))
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.bridge)
            if not found:
                ipr.link("add", ifname=self.bridge, kind="bridge")
                found = ipr.link_lookup(ifname=self.bridge)
            idx = found[0]
            for a in ipr.get_addr(index=idx, family=2):
                addr = f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                if addr != f"{gateway}/{net.prefixlen}":
                    # an address of an older range of ours: replaced
                    ipr.addr("del", index=idx, address=a.get_attr("IFA_ADDRESS"),
                             prefixlen=a["prefixlen"])
            with contextlib.suppress(NetlinkError):
                ipr.addr("add", index=idx, address=gateway, prefixlen=net.prefixlen)
            ipr.link("set", index=idx, state="up")
            for cidr in (self.cluster_cidr, self.service_cidr):
                dst, plen = cidr.split("/")
                ipr.route("replace", dst=dst, dst_len=int(plen), type="unreachable",
                          proto=RTPROT_FLOTILLA)
        _write("/proc/sys/net/ipv4/ip_forward", "1")
        # bridge netfilter is per namespace (kernel >= 5.3) and exists only with br_netfilter
        if not _write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1"):
            log.info("bridge netfilter unavailable (br_netfilter not loaded): same-node "
                     "service traffic may bypass conntrack")

    async def set_routes(self, routes: Mapping[str, str]) -> None:
        """Make our host-gw routes exactly ``routes`` (podCIDR -> next hop)."""
        async with self._lock:
            await asyncio.to_thread(self._sync_routes, dict(routes))
            self._routes = dict(routes)

    def _sync_routes(self, routes: dict[str, str]) -> None:
        with IPRoute() as ipr:
            have: dict[str, str] = {}
            for r in ipr.get_routes(family=2, proto=RTPROT_FLOTILLA):
                if r["type"] != 1:  # unicast only: the unreachable ones stay
                    continue
                dst = f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
                have[dst] = str(r.get_attr("RTA_GATEWAY") or "")
            for dst, via in have.items():
                if routes.get(dst) != via:
                    a, plen = dst.split("/")
                    with contextlib.suppress(NetlinkError):
                        ipr.route("del", dst=a, dst_len=int(plen), proto=RTPROT_FLOTILLA)
            for dst, via in routes.items():
                if have.get(dst) == via:
                    continue
                a, plen = dst.split("/")
                try:
                    ipr.route("replace", dst=a, dst_len=int(plen), gateway=via,
                              proto=RTPROT_FLOTILLA)
                except NetlinkError as e:
                    # e.g. the next hop is not on a connected network of this machine
                    log.warning("cannot route to a node's pods", pod_cidr=dst, via=via,
                                error=str(e))

    async def _apply_rules(self) -> None:
        """Rebuild the table from the node's range and the leases (lock held)."""
        if self.pod_cidr is None:
            return
        host_ports: list[nft.HostPort] = []
        for lease in await asyncio.to_thread(self.leases.leases):
            for p in lease.ports:
                host_ports.append(nft.HostPort(lease.address, PortMapping(**p)))
        restrict = self._node_state().get("forwarding_was", "1") == "0"
        script = nft.render(nft.Rules(
            pod_cidr=str(self.pod_cidr), cluster_cidrs=(self.cluster_cidr, self.service_cidr),
            bridge=self.bridge, host_ports=host_ports, restrict_forwarding=restrict))
        await asyncio.to_thread(nft.apply, script)

    # -- pods ---------------------------------------------------------------------------

    async def add(self, req: AttachRequest) -> Attachment:
        net = self.pod_cidr
        if net is None:
            raise NetworkNotReady("the node has no pod range yet (waiting for the control "
                                  "plane to assign spec.podCIDR)")
        ports = [{"host_port": p.host_port, "container_port": p.container_port,
                  "protocol": p.protocol, "host_ip": p.host_ip} for p in req.port_mappings]
        try:
            lease = await asyncio.to_thread(self.leases.allocate, net, req.container_id,
                                            req.if_name, ports)
        except IpamError as e:
            raise NetworkError(str(e)) from None
        gateway = str(gateway_of(net))
        try:
            await asyncio.to_thread(self._plumb, req, lease, net.prefixlen, gateway)
        except (OSError, NetlinkError) as e:
            await self.delete(req)
            raise NetworkError(f"attaching the pod to {self.bridge}: {e}") from e
        if ports:
            async with self._lock:
                await self._apply_rules()
        return Attachment((lease.address,), net.prefixlen, gateway, req.if_name)

    def _plumb(self, req: AttachRequest, lease: Lease, prefixlen: int, gateway: str) -> None:
        host_if = veth_name(req.container_id)
        with IPRoute() as ipr:
            bridge = ipr.link_lookup(ifname=self.bridge)
            if not bridge:
                raise NetworkError(f"bridge {self.bridge} is missing")
            for stale in ipr.link_lookup(ifname=host_if):
                # left by an add that failed half-way (or an agent killed in one): its
                # other end may be in no namespace or a dead one; plumb afresh
                ipr.link("del", index=stale)
            fd = netns.open_fd(req.netns)
            try:
                ipr.link("add", ifname=host_if, kind="veth",
                         peer={"ifname": req.if_name, "net_ns_fd": fd})
            finally:
                os.close(fd)
            existing = ipr.link_lookup(ifname=host_if)
            idx = existing[0]
            ipr.link("set", index=idx, master=bridge[0], state="up")
            ipr.brport("set", index=idx, mode=1)  # hairpin

        def inside() -> None:
            with IPRoute() as pr:
                lo = pr.link_lookup(ifname="lo")
                if lo:
                    pr.link("set", index=lo[0], state="up")
                found = pr.link_lookup(ifname=req.if_name)
                if not found:
                    raise NetworkError(f"{req.if_name} missing in the pod's namespace")
                i = found[0]
                with contextlib.suppress(NetlinkError):
                    pr.addr("add", index=i, address=lease.address, prefixlen=prefixlen)
                pr.link("set", index=i, state="up")
                pr.route("replace", dst="0.0.0.0", dst_len=0, gateway=gateway)

        netns.run_in(req.netns, inside)

    async def delete(self, req: AttachRequest) -> None:
        def unplumb() -> None:
            with IPRoute() as ipr:
                for idx in ipr.link_lookup(ifname=veth_name(req.container_id)):
                    with contextlib.suppress(NetlinkError):
                        ipr.link("del", index=idx)

        await asyncio.to_thread(unplumb)
        had_ports = any(lease.ports for lease in await asyncio.to_thread(self.leases.leases)
                        if lease.container_id == req.container_id)
        await asyncio.to_thread(self.leases.release, req.container_id)
        if had_ports:
            async with self._lock:
                await self._apply_rules()

    async def check(self, req: AttachRequest) -> None:
        lease = await asyncio.to_thread(self.leases.find, req.container_id, req.if_name)
        if lease is None:
            raise NetworkError(f"no address leased to {req.container_id}")

        def inspect() -> None:
            with IPRoute() as ipr:
                if not ipr.link_lookup(ifname=veth_name(req.container_id)):
                    raise NetworkError(f"veth {veth_name(req.container_id)} is missing")

            def inside() -> list[str]:
                with IPRoute() as pr:
                    found = pr.link_lookup(ifname=req.if_name)
                    if not found:
                        return []
                    return [a.get_attr("IFA_ADDRESS") for a in pr.get_addr(index=found[0])]

            if lease.address not in netns.run_in(req.netns, inside):
                raise NetworkError(f"{req.if_name} in the pod does not hold {lease.address}")

        await asyncio.to_thread(inspect)

    async def gc(self, keep: Collection[str]) -> list[str]:
        keep = set(keep)
        gone = await asyncio.to_thread(self.leases.release_unknown, keep)
        prefixes = {veth_name(cid) for cid in keep}

        def stray_veths() -> None:
            with IPRoute() as ipr:
                for link in ipr.get_links():
                    name = str(link.get_attr("IFLA_IFNAME") or "")
                    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
                    if name.startswith(VETH_PREFIX) and kind == "veth" and \
                            name not in prefixes and len(name) == len(VETH_PREFIX) + 12:
                        with contextlib.suppress(NetlinkError):
                            ipr.link("del", index=link["index"])

        await asyncio.to_thread(stray_veths)
        if gone:
            log.info("released leaked pod addresses", sandboxes=gone)
            async with self._lock:
                await self._apply_rules()
        return gone

    # -- removal ------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Remove everything this object's node set up: veths, bridge, our routes, our
        table, the leases; forwarding back off when we switched it on."""
        state = self._node_state()

        def undo() -> None:
            with IPRoute() as ipr:
                for link in ipr.get_links():
                    name = str(link.get_attr("IFLA_IFNAME") or "")
                    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
                    if (name.startswith(VETH_PREFIX) and kind == "veth"
                            and len(name) == len(VETH_PREFIX) + 12) or \
                            (name == self.bridge and kind == "bridge"):
                        with contextlib.suppress(NetlinkError):
                            ipr.link("del", index=link["index"])
                for r in ipr.get_routes(family=2, proto=RTPROT_FLOTILLA):
                    with contextlib.suppress(NetlinkError):
                        ipr.route("del", dst=r.get_attr("RTA_DST"), dst_len=r["dst_len"],
                                  type=r["type"], proto=RTPROT_FLOTILLA)
            if state.get("forwarding_was") == "0":
                _write("/proc/sys/net/ipv4/ip_forward", "0")

        await asyncio.to_thread(undo)
        if await asyncio.to_thread(nft.exists):
            await asyncio.to_thread(nft.remove)
        await asyncio.to_thread(self.leases.clear)
        with contextlib.suppress(FileNotFoundError):
            self._state_file().unlink()
        self.pod_cidr = None
        log.info("node network removed", bridge=self.bridge)
