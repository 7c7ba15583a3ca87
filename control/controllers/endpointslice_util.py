"""What a Service's EndpointSlices should hold (Kubernetes' endpointslice and
endpointslice-mirroring controllers), as plain functions:

- From pods (a Service with a selector): every matching pod with an IP that has not
  finished, terminating ones included; conditions ``ready`` (Ready and not terminating,
  or always with publishNotReadyAddresses), ``serving`` (Ready, terminating or not) and
  ``terminating``; targetPort by number or each pod's named container port; hostname when
  the pod's subdomain is the Service; nodeName and targetRef.
- Mirrored (a Service without a selector): its Endpoints' subsets, addresses ready and
  not-ready, unless the Endpoints carry ``endpointslice.kubernetes.io/skip-mirror``.
- Endpoints that serve the same ports share slices of at most ``MAX_PER_SLICE``; slices
  are sorted so that the same input gives the same slices.

Pure: no I/O; the controller passes cached objects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from control.api import labels
from control.api.pb import core_pb2, discovery_pb2
from control.api.podutil import is_pod_ready
from control.controllers.endpoints_util import HEADLESS_LABEL, target_port

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
MIRROR_MANAGED_BY = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
MAX_PER_SLICE = 100

PortKey = tuple[str, int, str, str]  # name, port, protocol, app protocol


@dataclass(frozen=True)
class SliceContent:
    address_type: str
    ports: tuple[PortKey, ...]
    endpoints: tuple[discovery_pb2.Endpoint, ...]


def _family(ip: str) -> str:
    try:
        return f"IPv{ipaddress.ip_address(ip).version}"
    except ValueError:
        return ""


def _service_family(svc: core_pb2.Service) -> str:
    return svc.spec.ip_families[0] if svc.spec.ip_families else "IPv4"


def _pack(address_type: str,
          groups: dict[frozenset[PortKey], list[discovery_pb2.Endpoint]]) -> list[SliceContent]:
    out = []
    for ports in sorted(groups, key=lambda k: sorted(k)):
        eps = sorted(groups[ports], key=lambda e: list(e.addresses))
        for i in range(0, max(len(eps), 1), MAX_PER_SLICE):
            out.append(SliceContent(address_type, tuple(sorted(ports)),
                                    tuple(eps[i:i + MAX_PER_SLICE])))
    return out


def slices_from_pods(svc: core_pb2.Service,
                     pods: Iterable[core_pb2.Pod]) -> list[SliceContent]:
    selector = labels.from_map(dict(svc.spec.selector))
    publish = svc.spec.publish_not_ready_addresses
    family = _service_family(svc)
    groups: dict[frozenset[PortKey], list[discovery_pb2.Endpoint]] = {}
    seen: set[str] = set()
    for pod in pods:
        ip = pod.status.pod_ip
        if (not selector.matches(pod.metadata.labels) or not ip
                or pod.status.phase in ("Succeeded", "Failed") or _family(ip) != family
                or ip in seen):
            continue
        ports: set[PortKey] = set()
        for sp in svc.spec.ports:
            number = target_port(sp, pod)
            if number is not None:
                app = sp.app_protocol if sp.HasField("app_protocol") else ""
                ports.add((sp.name, number, sp.protocol or "TCP", app))
        if svc.spec.ports and not ports:
            continue
        seen.add(ip)
        terminating = pod.metadata.HasField("deletion_timestamp")
        serving = is_pod_ready(pod)
        ep = discovery_pb2.Endpoint(addresses=[ip])
        ep.conditions.ready = publish or (serving and not terminating)
        ep.conditions.serving = publish or serving
        ep.conditions.terminating = terminating
        if pod.spec.hostname and pod.spec.subdomain == svc.metadata.name:
            ep.hostname = pod.spec.hostname
        if pod.spec.node_name:
            ep.node_name = pod.spec.node_name
        ref = ep.target_ref
        ref.kind, ref.namespace = "Pod", pod.metadata.namespace
        ref.name, ref.uid = pod.metadata.name, pod.metadata.uid
        groups.setdefault(frozenset(ports), []).append(ep)
    if not groups:
        # an empty slice still says "this Service has no endpoints" to its readers
        groups[frozenset((p.name, _int_port(p), p.protocol or "TCP", "")
                         for p in svc.spec.ports)] = []
    return _pack(family, groups)


def _int_port(p: core_pb2.ServicePort) -> int:
    tp = p.target_port
    return int(tp.int_val) if tp.WhichOneof("value") == "int_val" and tp.int_val else p.port


def slices_from_endpoints(ep: core_pb2.Endpoints) -> list[SliceContent]:
    """The mirror of user-managed Endpoints (one address type per slice)."""
    by_type: dict[str, dict[frozenset[PortKey], list[discovery_pb2.Endpoint]]] = {}
    for subset in ep.subsets:
        ports = frozenset((p.name, p.port, p.protocol or "TCP",
                           p.app_protocol if p.HasField("app_protocol") else "")
                          for p in subset.ports)
        for group, ready in ((subset.addresses, True), (subset.not_ready_addresses, False)):
            for a in group:
                family = _family(a.ip)
                if not family:
                    continue
                e = discovery_pb2.Endpoint(addresses=[a.ip])
                e.conditions.ready = ready
                if a.hostname:
                    e.hostname = a.hostname
                if a.HasField("node_name"):
                    e.node_name = a.node_name
                if a.HasField("target_ref"):
                    e.target_ref.CopyFrom(a.target_ref)
                by_type.setdefault(family, {}).setdefault(ports, []).append(e)
    out = []
    for family in sorted(by_type):
        out.extend(_pack(family, by_type[family]))
    return out


def slice_labels(svc: core_pb2.Service, managed_by: str) -> dict[str, str]:
    out = {k: v for k, v in svc.metadata.labels.items()
           if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    out[SERVICE_NAME_LABEL] = svc.metadata.name
    out[MANAGED_BY_LABEL] = managed_by
    if svc.spec.cluster_ip == "None":
        out[HEADLESS_LABEL] = ""
    return out


def fill(es: discovery_pb2.EndpointSlice, content: SliceContent) -> None:
    es.address_type = content.address_type
    del es.endpoints[:]
    es.endpoints.extend(content.endpoints)
    del es.ports[:]
    for name, port, protocol, app in content.ports:
        p = es.ports.add(name=name, port=port, protocol=protocol)
        if app:
            p.app_protocol = app


def same_content(es: discovery_pb2.EndpointSlice, content: SliceContent) -> bool:
    want = discovery_pb2.EndpointSlice()
    fill(want, content)
    return (es.address_type == want.address_type and list(es.endpoints) == list(want.endpoints)
            and list(es.ports) == list(want.ports))


__all__ = ["MANAGED_BY", "MANAGED_BY_LABEL", "MAX_PER_SLICE", "MIRROR_MANAGED_BY",
           "SERVICE_NAME_LABEL", "SKIP_MIRROR_LABEL", "SliceContent", "fill", "same_content",
           "slice_labels", "slices_from_endpoints", "slices_from_pods"]
