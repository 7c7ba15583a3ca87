"""From the API's Services and EndpointSlices to the proxy's :class:`Ruleset` (what
kube-proxy's service and endpoint change trackers compute), as a plain function:

- Every Service with a cluster IP (not headless, not ExternalName) contributes one
  :class:`ServicePort` per port; NodePort/LoadBalancer ports carry their node port.
- A port's endpoints: the addresses of the Service's slices (``kubernetes.io/service-name``
  label, same namespace) whose port has the same name and protocol, when ready (an unset
  ``ready`` counts as ready, as Kubernetes reads it), each once.
- internalTrafficPolicy Local keeps only the endpoints on this node.
- A LoadBalancer Service's ports carry its status.loadBalancer.ingress IPv4 addresses.
- externalTrafficPolicy Local (NodePort/LoadBalancer) gives the port the subset of its
  endpoints on this node for external traffic.
- sessionAffinity ClientIP carries its timeoutSeconds (Kubernetes' 10800 when unset).
- A LoadBalancer Service's IPv4 loadBalancerSourceRanges go with its ports; one with
  externalTrafficPolicy Local and a healthCheckNodePort gets a :class:`HealthCheck` with
  the number of its ready endpoints (distinct addresses) on this node.

Pure: the caller passes cached objects and this node's name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from agent.proxy.nft_rules import Endpoint, HealthCheck, Ruleset, ServicePort
from control.api.pb import core_pb2, discovery_pb2

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_SECONDS = 10800


def _ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def _ipv4_network(text: str) -> bool:
    try:
        return ipaddress.ip_network(text, strict=False).version == 4
    except ValueError:
        return False


def _ready(ep: discovery_pb2.Endpoint) -> bool:
    return not ep.conditions.HasField("ready") or ep.conditions.ready


def ruleset_from(services: Iterable[core_pb2.Service],
                 slices: Iterable[discovery_pb2.EndpointSlice], service_cidr: str,
                 node_name: str) -> Ruleset:
    by_service: dict[tuple[str, str], list[discovery_pb2.EndpointSlice]] = {}
    for es in slices:
        name = es.metadata.labels.get(SERVICE_NAME_LABEL)
        if name and es.address_type == "IPv4":
            by_service.setdefault((es.metadata.namespace, name), []).append(es)
    ports: list[ServicePort] = []
    checks: list[HealthCheck] = []
    for svc in services:
        spec = svc.spec
        if spec.type == "ExternalName" or spec.cluster_ip in ("", "None"):
            continue
        local_only = spec.HasField("internal_traffic_policy") and (
            spec.internal_traffic_policy == "Local")
        external_local = spec.type in ("NodePort", "LoadBalancer") and (
            spec.external_traffic_policy == "Local")
        ns, name = svc.metadata.namespace, svc.metadata.name
        lb_ips: tuple[str, ...] = ()
        ranges: tuple[str, ...] = ()
        if spec.type == "LoadBalancer":
            lb_ips = tuple(i.ip for i in svc.status.load_balancer.ingress if _ipv4(i.ip))
            ranges = tuple(r.strip() for r in spec.load_balancer_source_ranges
                           if _ipv4_network(r.strip()))
            if external_local and spec.health_check_node_port:
                here = {a for es in by_service.get((ns, name), []) for ep in es.endpoints
                        if _ready(ep) and ep.node_name == node_name for a in ep.addresses}
                checks.append(HealthCheck(ns, name, spec.health_check_node_port, len(here)))
        affinity = 0
        if spec.session_affinity == "ClientIP":
            client_ip = spec.session_affinity_config.client_ip
            affinity = (client_ip.timeout_seconds if client_ip.HasField("timeout_seconds")
                        else DEFAULT_AFFINITY_SECONDS)
        for sp in spec.ports:
            protocol = sp.protocol or "TCP"
            if protocol not in ("TCP", "UDP"):
                continue
            seen: set[tuple[str, int]] = set()
            eps: list[Endpoint] = []
            local: list[Endpoint] = []
            for es in by_service.get((ns, name), []):
                number = next((p.port for p in es.ports
                               if (p.name if p.HasField("name") else "") == sp.name
                               and (p.protocol if p.HasField("protocol") else "TCP") == protocol
                               and p.HasField("port")), None)
                if number is None:
                    continue
                for ep in es.endpoints:
                    if not _ready(ep):
                        continue
                    if local_only and ep.node_name != node_name:
                        continue
                    for addr in ep.addresses:
                        if (addr, number) not in seen:
                            seen.add((addr, number))
                            eps.append(Endpoint(addr, number))
                            if ep.node_name == node_name:
                                local.append(Endpoint(addr, number))
            ports.append(ServicePort(ns, name, sp.name, protocol, spec.cluster_ip, sp.port,
                                     sp.node_port, tuple(eps), affinity, lb_ips,
                                     tuple(local) if external_local else None, ranges))
    return Ruleset(service_cidr, ports, health_checks=tuple(checks))


__all__ = ["ruleset_from"]
