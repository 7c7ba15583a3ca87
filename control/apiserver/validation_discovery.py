"""Validation of discovery.k8s.io/v1 EndpointSlice (Kubernetes' rules): addressType one of
IPv4, IPv6, FQDN and immutable; 1 to 100 addresses per endpoint, each of the slice's type;
at most 1,000 endpoints and 100 ports; port names unique DNS labels (or empty), protocols
TCP/UDP/SCTP, port numbers 1-65535 when set; hostnames DNS labels; nodeName a node name.

Pure functions; called by ``validation.validate``.
"""

from __future__ import annotations

import ipaddress

from control.api import names
from control.api.errors import FieldError
from control.api.pb import discovery_pb2
from control.apiserver.validation_container import PROTOCOLS
from control.apiserver.validation_util import (
    child,
    duplicate,
    enum,
    immutable,
    index,
    messages,
    port_num_errors,
    required,
)

ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
MAX_ENDPOINTS = 1000
MAX_PORTS = 100
MAX_ADDRESSES = 100


def _address_errors(address_type: str, address: str) -> list[str]:
    if address_type == "FQDN":
        return names.is_dns1123_subdomain(address)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ["must be a valid IP address"]
    want = 4 if address_type == "IPv4" else 6
    if ip.version != want:
        return [f"must be an {address_type} address"]
    return []


def validate_endpoint_slice(es: discovery_pb2.EndpointSlice,
                            old: discovery_pb2.EndpointSlice | None) -> list[FieldError]:
    errs: list[FieldError] = []
    errs.extend(enum("addressType", es.address_type, ADDRESS_TYPES))
    if len(es.endpoints) > MAX_ENDPOINTS:
        errs.append(FieldError("endpoints", f"Too many: {len(es.endpoints)}: must have at "
                                            f"most {MAX_ENDPOINTS} items"))
    for i, ep in enumerate(es.endpoints):
        p = index("endpoints", i)
        if not ep.addresses:
            errs.append(required(child(p, "addresses"), "must contain at least 1 address"))
        elif len(ep.addresses) > MAX_ADDRESSES:
            errs.append(FieldError(child(p, "addresses"), f"Too many: {len(ep.addresses)}: "
                                                          f"must have at most {MAX_ADDRESSES}"))
        if es.address_type in ADDRESS_TYPES:
            for j, addr in enumerate(ep.addresses):
                errs.extend(messages(index(child(p, "addresses"), j), addr,
                                     _address_errors(es.address_type, addr)))
        if ep.HasField("hostname"):
            errs.extend(messages(child(p, "hostname"), ep.hostname,
                                 names.is_dns1123_label(ep.hostname)))
        if ep.HasField("node_name"):
            errs.extend(messages(child(p, "nodeName"), ep.node_name,
                                 names.is_dns1123_subdomain(ep.node_name)))
    if len(es.ports) > MAX_PORTS:
        errs.append(FieldError("ports", f"Too many: {len(es.ports)}: must have at most "
                                        f"{MAX_PORTS} items"))
    seen: set[str] = set()
    for i, port in enumerate(es.ports):
        p = index("ports", i)
        name = port.name if port.HasField("name") else ""
        if name:
            errs.extend(messages(child(p, "name"), name, names.is_dns1123_label(name)))
        if name in seen:
            errs.append(duplicate(child(p, "name"), name))
        seen.add(name)
        if port.HasField("protocol"):
            errs.extend(enum(child(p, "protocol"), port.protocol, PROTOCOLS))
        if port.HasField("port"):
            errs.extend(messages(child(p, "port"), port.port, port_num_errors(port.port)))
    if old is not None and old.address_type and es.address_type != old.address_type:
        errs.append(immutable("addressType", es.address_type))
    return errs
