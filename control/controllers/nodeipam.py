"""Node IPAM: give every Node a pod range (``spec.podCIDR``) out of the cluster CIDR
(kube-controller-manager's ``--allocate-node-cidrs`` with the range allocator).

``--cluster-cidr`` (10.244.0.0/16 by default) is cut into ranges of ``--node-cidr-mask-size``
(/24) bits. A Node without a podCIDR gets the first free range after the last one handed
out (a freed range is reused only once the others are taken, so a route other machines
still hold for a deleted node does not point at a new one at once); ``spec.podCIDR`` and
``spec.podCIDRs`` are written together.

There is no allocation table: the Nodes are the state. The ranges in use are those of the
Nodes in the informer's cache plus the ones this controller wrote and the cache has not
shown yet; so a deleted Node's range is free as soon as its deletion is seen, and a
restarted controller rebuilds everything from the Nodes. The write is a compare-and-swap
on the Node (its resourceVersion): a Node changed meanwhile is re-read and tried again,
never overwritten, and the apiserver refuses to change a podCIDR once set.

A Node that already has a range keeps it, in the cluster CIDR or not (a range given by
hand, or from an older ``--cluster-cidr``); two Nodes claiming one range get a Warning
Event. When the CIDR is exhausted the Node gets a ``CIDRNotAvailable`` Event and is retried
with backoff.

The range arithmetic is in plain functions (``ranges_in_use``, ``next_free_range``),
table-tested.

Concurrency contract: one worker, so two Nodes are never given ranges concurrently and the
"written but not yet cached" set needs no lock; keys are node names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog

from control.api import errors
from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.runtime.controller import Controller, Result
from control.runtime.events import WARNING, Recorder

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="nodeipam")

NAME = "nodeipam"
COMPONENT = "cidrAllocator"
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_CIDR_MASK_SIZE = 24
# Kubernetes' range allocator retries an exhausted range after a while, not in a hot loop.
EXHAUSTED_RETRY = 30.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpamConfigError(ValueError):
    """A cluster CIDR or mask size that cannot work (said with the value and why)."""


def parse_cluster_cidr(cidr: str, mask_size: int) -> Network:
    """The cluster CIDR as a network, checked against the per-node mask size."""
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as e:
        raise IpamConfigError(f"--cluster-cidr {cidr!r}: {e}") from None
    if not net.prefixlen <= mask_size <= net.max_prefixlen:
        raise IpamConfigError(
            f"--node-cidr-mask-size {mask_size}: must be between the cluster CIDR's prefix "
            f"length ({net.prefixlen}) and {net.max_prefixlen}")
    if mask_size - net.prefixlen > 20:
        # The same bound Kubernetes puts on the range allocator's bitmap.
        raise IpamConfigError(
            f"--node-cidr-mask-size {mask_size}: more than 2^20 node ranges in {cidr}")
    return net


def node_ranges(node: core_pb2.Node) -> list[str]:
    """Every range a Node claims (``podCIDRs``, else ``podCIDR``)."""
    spec = node.spec
    if spec.pod_cidrs:
        return list(spec.pod_cidrs)
    return [spec.pod_cidr] if spec.pod_cidr else []


def ranges_in_use(nodes: Iterable[core_pb2.Node], pending: Iterable[str] = ()) -> dict[Network,
                  list[str]]:
    """range -> the names of the Nodes that claim it (``pending``: ranges written but not
    yet seen, claimed by no name). Unparseable ranges are ignored: validation refuses them."""
    out: dict[Network, list[str]] = {}
    for n in nodes:
        for cidr in node_ranges(n):
            try:
                out.setdefault(ipaddress.ip_network(cidr, strict=False), []).append(
                    n.metadata.name)
            except ValueError:
                continue
    for cidr in pending:
        out.setdefault(ipaddress.ip_network(cidr, strict=False), [])
    return out


def next_free_range(cluster: Network, mask_size: int, used: Iterable[Network],
                    after: int = -1) -> tuple[Network, int] | None:
    """The first range of ``cluster`` (subnets of ``mask_size``) that overlaps nothing in
    ``used``, searching from index ``after + 1`` round the ring; with its index. None when
    every range is taken."""
    step = 1 << (cluster.max_prefixlen - mask_size)
    count = 1 << (mask_size - cluster.prefixlen)
    base = int(cluster.network_address)
    taken: set[int] = set()
    for u in used:
        if u.version != cluster.version or not u.overlaps(cluster):
            continue
        # Mark every cluster range that ``u`` overlaps (u may be bigger or smaller).
        lo = max(int(u.network_address), base)
        hi = min(int(u.broadcast_address), int(cluster.broadcast_address))
        for i in range((lo - base) // step, (hi - base) // step + 1):
            taken.add(i)
    if len(taken) >= count:
        return None
    for k in range(count):
        i = (after + 1 + k) % count
        if i not in taken:
            net = ipaddress.ip_network((base + i * step, mask_size))
            return net, i
    return None


class NodeIpamController:
    """Gives Nodes their pod ranges; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *, recorder: Recorder | None = None
                 ) -> None:
        self._client: ApiClient = ctx.client
        self.mask_size = ctx.node_cidr_mask_size
        self.cluster = parse_cluster_cidr(ctx.cluster_cidr, self.mask_size)
        self.recorder = recorder or ctx.events.new_recorder(COMPONENT)
        # node name -> range written by us, until the cache shows it (or the node goes)
        self._pending: dict[str, str] = {}
        self._last = -1  # index of the range handed out last (round-robin cursor)
        self._nodes = ctx.informers.informer(core_pb2.Node)
        self._nodes.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda _old, new: self._enqueue(new),
            on_delete=self._deleted)
        self.controller = Controller(NAME, self.reconcile, workers=1, clock=ctx.clock)

    def _enqueue(self, node: core_pb2.Node) -> None:
        self.controller.enqueue(node.metadata.name)

    def _deleted(self, node: core_pb2.Node) -> None:
        self._pending.pop(node.metadata.name, None)
        if node_ranges(node):
            log.info("node deleted, pod range free", node=node.metadata.name,
                     range=",".join(node_ranges(node)))
            # Nodes left waiting on an exhausted CIDR may have a range now.
            for other in self._nodes.indexer.list():
                if not node_ranges(other):
                    self._enqueue(other)

    async def reconcile(self, key: str) -> Result | None:
        node = self._nodes.indexer.get(key)
        if node is None:
            self._pending.pop(key, None)
            return None
        if node_ranges(node):
            self._pending.pop(key, None)
            await self._check_duplicate(node)
            return None
        if key in self._pending:
            # Written by us, not in the cache yet: the cache's update event brings us back.
            return None
        used = ranges_in_use(self._nodes.indexer.list(), self._pending.values())
        found = next_free_range(self.cluster, self.mask_size, used, self._last)
        if found is None:
            self.recorder.event(node, WARNING, "CIDRNotAvailable",
                                f"Node {key} status is now: CIDRNotAvailable")
            log.warning("no pod range left for node", node=key, cluster_cidr=str(self.cluster))
            return Result(requeue_after=EXHAUSTED_RETRY)
        net, index = found
        cidr = str(net)
        updated = core_pb2.Node()
        updated.CopyFrom(node)
        updated.spec.pod_cidr = cidr
        del updated.spec.pod_cidrs[:]
        updated.spec.pod_cidrs.append(cidr)
        try:
            # Compare-and-swap: the cached resourceVersion must still be the Node's.
            await self._client.update(updated)
        except errors.Conflict:
            # Changed meanwhile (a heartbeat, a label): read it again and retry.
            fresh = await self._client.get(core_pb2.Node, key)
            if node_ranges(fresh):
                return None
            raise
        except errors.NotFound:
            return None
        self._pending[key] = cidr
        self._last = index
        log.info("pod range allocated", node=key, range=cidr)
        return None

    async def _check_duplicate(self, node: core_pb2.Node) -> None:
        used = ranges_in_use(self._nodes.indexer.list())
        for cidr in node_ranges(node):
            try:
                claimants = used.get(ipaddress.ip_network(cidr, strict=False), [])
            except ValueError:
                continue
            others = [n for n in claimants if n != node.metadata.name]
            if others:
                self.recorder.event(
                    node, WARNING, "CIDRAssignmentFailed",
                    f"pod range {cidr} of node {node.metadata.name} is also claimed by "
                    f"{', '.join(sorted(others))}")
