"""What the cluster DNS answers from: Services and their endpoints, behind :class:`Catalog`.

The resolver reads only this interface, so its tables run against :class:`MemoryCatalog`
and the server against :class:`InformerCatalog` (Service and EndpointSlice informers of the
API, as CoreDNS reads them: a Service's slices carry its ``kubernetes.io/service-name``
label; an endpoint whose ``ready`` condition is unset counts as ready, as the API's
documentation asks of consumers; FQDN slices are not addresses and are skipped).

Concurrency contract: one event loop; reads are synchronous and never wait. The informer
catalog reads the informers' caches directly (they are updated before any handler runs), so
an answer always reflects the cache as it is at that moment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from control.api.pb import core_pb2, discovery_pb2
from control.runtime.informer import SharedInformer


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str  # TCP, UDP or SCTP
    port: int


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    # empty for headless and ExternalName Services
    cluster_ips: tuple[str, ...] = ()
    headless: bool = False
    external_name: str = ""
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    ip: str
    hostname: str = ""
    ready: bool = True
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class IPOwner:
    """Who an address belongs to: a Service's ClusterIP (``hostname`` empty, ``endpoint``
    False) or one of its endpoints."""

    namespace: str
    service: str
    endpoint: bool = False
    hostname: str = ""


class Catalog(Protocol):
    @property
    def generation(self) -> int:
        """Changes whenever any answer may have: the server's answer cache is kept only
        while it stays the same."""
        ...

    def service(self, namespace: str, name: str) -> ServiceInfo | None: ...

    def endpoints(self, namespace: str, name: str) -> Sequence[Endpoint]: ...

    def has_namespace(self, namespace: str) -> bool:
        """A namespace holding at least one Service (``<ns>.svc.<zone>`` exists)."""
        ...

    def owners(self, ip: str) -> Sequence[IPOwner]: ...


def service_info(svc: core_pb2.Service) -> ServiceInfo:
    spec = svc.spec
    headless = spec.cluster_ip == "None"
    ips: tuple[str, ...] = ()
    if spec.type != "ExternalName" and not headless:
        ips = tuple(ip for ip in (spec.cluster_ips or [spec.cluster_ip]) if _is_ip(ip))
    return ServiceInfo(
        namespace=svc.metadata.namespace, name=svc.metadata.name, cluster_ips=ips,
        headless=headless and spec.type != "ExternalName",
        external_name=spec.external_name if spec.type == "ExternalName" else "",
        ports=tuple(Port(p.name, p.protocol or "TCP", p.port) for p in spec.ports))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass
class MemoryCatalog:
    """A catalog of plain records: the tests' double, and what the benchmark serves."""

    services: dict[tuple[str, str], ServiceInfo] = field(default_factory=dict)
    endpoint_lists: dict[tuple[str, str], list[Endpoint]] = field(default_factory=dict)
    generation: int = 0

    def add(self, svc: ServiceInfo, endpoints: Iterable[Endpoint] = ()) -> None:
        self.generation += 1
        self.services[(svc.namespace, svc.name)] = svc
        self.endpoint_lists[(svc.namespace, svc.name)] = list(endpoints)

    def service(self, namespace: str, name: str) -> ServiceInfo | None:
        return self.services.get((namespace, name))

    def endpoints(self, namespace: str, name: str) -> Sequence[Endpoint]:
        return self.endpoint_lists.get((namespace, name), [])

    def has_namespace(self, namespace: str) -> bool:
        return any(ns == namespace for ns, _ in self.services)

    def owners(self, ip: str) -> Sequence[IPOwner]:
        out = [IPOwner(s.namespace, s.name) for s in self.services.values()
               if ip in s.cluster_ips]
        for (ns, name), eps in self.endpoint_lists.items():
            out += [IPOwner(ns, name, True, e.hostname) for e in eps if e.ip == ip]
        return out


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def slice_endpoints(es: discovery_pb2.EndpointSlice) -> list[Endpoint]:
    if es.address_type not in ("IPv4", "IPv6"):
        return []
    ports = tuple(Port(p.name, p.protocol or "TCP", p.port) for p in es.ports
                  if p.HasField("port"))
    out = []
    for e in es.endpoints:
        ready = not e.conditions.HasField("ready") or e.conditions.ready
        out += [Endpoint(ip, e.hostname, ready, ports) for ip in e.addresses if _is_ip(ip)]
    return out


BY_IP = "dns-by-ip"
BY_NAMESPACE = "dns-by-namespace"
BY_SERVICE = "dns-by-service"


def _service_ips(obj: core_pb2.Service) -> list[str]:
    return list(service_info(obj).cluster_ips)


def _slice_ips(obj: discovery_pb2.EndpointSlice) -> list[str]:
    return sorted({e.ip for e in slice_endpoints(obj)})


def _slice_service(obj: discovery_pb2.EndpointSlice) -> list[str]:
    name = obj.metadata.labels.get(SERVICE_NAME_LABEL)
    return [f"{obj.metadata.namespace}/{name}"] if name else []


def _namespace(obj: core_pb2.Service) -> list[str]:
    return [obj.metadata.namespace]


class InformerCatalog:
    """The catalog over the API's Service and EndpointSlice informers, with indexes by
    address (reverse lookups), namespace and a slice's Service, so every read is a
    dictionary look-up."""

    def __init__(self, services: SharedInformer[core_pb2.Service],
                 slices: SharedInformer[discovery_pb2.EndpointSlice]) -> None:
        self._services = services
        self._slices = slices
        self.generation = 0
        services.add_indexers({BY_IP: _service_ips, BY_NAMESPACE: _namespace})
        slices.add_indexers({BY_IP: _slice_ips, BY_SERVICE: _slice_service})
        # handlers run after the cache changed, so a bumped generation never pairs with
        # the old contents
        for inf in (services, slices):
            inf.add_event_handler(on_add=self._bump, on_update=lambda _o, _n: self._bump(),
                                  on_delete=self._bump)

    def _bump(self, *_: object) -> None:
        self.generation += 1

    def service(self, namespace: str, name: str) -> ServiceInfo | None:
        svc = self._services.indexer.get(f"{namespace}/{name}")
        return None if svc is None else service_info(svc)

    def endpoints(self, namespace: str, name: str) -> Sequence[Endpoint]:
        out: list[Endpoint] = []
        for es in self._slices.indexer.by_index(BY_SERVICE, f"{namespace}/{name}"):
            out += slice_endpoints(es)
        return out

    def has_namespace(self, namespace: str) -> bool:
        return bool(self._services.indexer.by_index(BY_NAMESPACE, namespace))

    def owners(self, ip: str) -> Sequence[IPOwner]:
        out = [IPOwner(s.metadata.namespace, s.metadata.name)
               for s in self._services.indexer.by_index(BY_IP, ip)]
        for es in self._slices.indexer.by_index(BY_IP, ip):
            service = es.metadata.labels.get(SERVICE_NAME_LABEL)
            if service:
                out += [IPOwner(es.metadata.namespace, service, True, e.hostname)
                        for e in slice_endpoints(es) if e.ip == ip]
        return out
