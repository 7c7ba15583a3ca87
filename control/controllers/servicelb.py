"""The built-in service load balancer (k3s' ServiceLB): a LoadBalancer Service without a
``loadBalancerClass`` gets ``status.loadBalancer.ingress`` = the InternalIPs of the Ready
nodes (with externalTrafficPolicy Local, those running a ready endpoint), whose proxies
DNAT the Service's ports on those addresses. As with ServiceLB's
host ports, a (protocol, port) is held by one such Service at a time: the oldest holder
keeps it, and a later Service asking for a held port stays pending (no ingress) until it
is free. A Service that is no longer a LoadBalancer loses the ingress it had; one with a
``loadBalancerClass`` belongs to another implementation and is left alone. Run without
this controller (``flotilla server --disable servicelb``), LoadBalancer Services stay
pending, as on bare metal.

Keys are ``namespace/name`` of Services. A Service or a Node changing enqueues every
LoadBalancer Service (a port freed or a node gone changes the others' answers), and so
does an EndpointSlice changing (for the Local policy).

Concurrency contract: runs under ``control.runtime.Controller`` (one key never reconciled
by two workers at once); the status write is a compare-and-swap update. Event handlers
are synchronous and only enqueue keys. The pure rules are plain functions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from control.api import errors
from control.api.pb import core_pb2, discovery_pb2
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.controllers.endpointslice_util import SERVICE_NAME_LABEL
from control.controllers.node_lifecycle_util import is_ready, ready_status
from control.runtime.controller import Controller, Result

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

NAME = "servicelb"


def managed(svc: core_pb2.Service) -> bool:
    """A LoadBalancer Service this controller serves (no other implementation's class)."""
    return svc.spec.type == "LoadBalancer" and not svc.spec.load_balancer_class


def node_addresses(nodes: Iterable[core_pb2.Node],
                   only: set[str] | None = None) -> list[str]:
    """The IPv4 InternalIPs of the Ready nodes not being deleted (and named in ``only``,
    when given), sorted, each once."""
    ips: set[str] = set()
    for node in nodes:
        if node.metadata.HasField("deletion_timestamp") or not is_ready(ready_status(node)):
            continue
        if only is not None and node.metadata.name not in only:
            continue
        for a in node.status.addresses:
            if a.type == "InternalIP":
                try:
                    if ipaddress.ip_address(a.address).version == 4:
                        ips.add(a.address)
                except ValueError:
                    continue
    return sorted(ips, key=ipaddress.IPv4Address)


def endpoint_nodes(svc: core_pb2.Service,
                   slices: Iterable[discovery_pb2.EndpointSlice]) -> set[str]:
    """The nodes running a ready endpoint of ``svc`` (an unset ``ready`` counts as ready)."""
    out: set[str] = set()
    for es in slices:
        if (es.metadata.namespace != svc.metadata.namespace
                or es.metadata.labels.get(SERVICE_NAME_LABEL) != svc.metadata.name):
            continue
        for ep in es.endpoints:
            if ep.node_name and (not ep.conditions.HasField("ready") or ep.conditions.ready):
                out.add(ep.node_name)
    return out


def _key(svc: core_pb2.Service) -> str:
    return f"{svc.metadata.namespace}/{svc.metadata.name}"


def admitted(services: Iterable[core_pb2.Service]) -> set[str]:
    """The keys of the managed Services that hold all their ports. Those already
    advertising an ingress go first (a newcomer never displaces a holder; creation times
    are only to the second), then the oldest, then by key: a Service is admitted when none
    of its (protocol, port) is held by one before it."""
    held: set[tuple[str, int]] = set()
    out: set[str] = set()
    order = sorted((s for s in services if managed(s)),
                   key=lambda s: (not s.status.load_balancer.ingress,
                                  s.metadata.creation_timestamp.ToNanoseconds(), _key(s)))
    for svc in order:
        ports = {(p.protocol or "TCP", p.port) for p in svc.spec.ports}
        if ports & held:
            continue
        held |= ports
        out.add(_key(svc))
    return out


def desired_ingress(svc: core_pb2.Service, services: Iterable[core_pb2.Service],
                    nodes: Iterable[core_pb2.Node],
                    slices: Iterable[discovery_pb2.EndpointSlice] = ()) -> list[str] | None:
    """The ingress IPs ``svc`` should have; None when its status is not ours to write.
    externalTrafficPolicy Local advertises only the nodes running a ready endpoint (the
    others drop such traffic)."""
    if svc.spec.type != "LoadBalancer":
        return []  # no longer a LoadBalancer: nothing to advertise
    if not managed(svc):
        return None
    if _key(svc) not in admitted(services):
        return []
    only = endpoint_nodes(svc, slices) if svc.spec.external_traffic_policy == "Local" else None
    return node_addresses(nodes, only)


class ServiceLBController:
    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._services = ctx.informers.informer(core_pb2.Service)
        self._nodes = ctx.informers.informer(core_pb2.Node)
        self._slices = ctx.informers.informer(discovery_pb2.EndpointSlice)
        for informer in (self._services, self._nodes, self._slices):
            informer.add_event_handler(on_add=lambda _o: self._all(),
                                       on_update=lambda _o, _n: self._all(),
                                       on_delete=lambda _o: self._all())

    def _all(self) -> None:
        for svc in self._services.indexer.list():
            if svc.spec.type == "LoadBalancer" or svc.status.load_balancer.ingress:
                self.controller.enqueue(_key(svc))

    async def reconcile(self, key: str) -> Result | None:
        svc = self._services.indexer.get(key)
        if svc is None:
            return None
        want = desired_ingress(svc, self._services.indexer.list(), self._nodes.indexer.list(),
                               self._slices.indexer.list())
        if want is None or [i.ip for i in svc.status.load_balancer.ingress] == want:
            return None

        def mutate(s: core_pb2.Service) -> bool:
            if [i.ip for i in s.status.load_balancer.ingress] == want:
                return False
            del s.status.load_balancer.ingress[:]
            for ip in want:
                s.status.load_balancer.ingress.add(ip=ip, ip_mode="VIP")
            return True

        ns, name = key.split("/", 1)
        try:
            await guaranteed_update(self._client, core_pb2.Service, ns, name, mutate,
                                    current=svc, status=True)
        except errors.NotFound:
            pass  # deleted meanwhile
        return None
