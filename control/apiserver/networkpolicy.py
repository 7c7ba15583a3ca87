"""NetworkPolicy (networking.k8s.io/v1): validated and stored, and NOT enforced: no part
of Flotilla filters pod traffic by it yet. So that nobody relies on it unknowingly, every
create or update of one is answered with a Warning, and its status carries the condition
``Enforced=False`` (reason ``NotImplemented``), which the apiserver puts back on every
write. Never silently ignored.

Validation follows Kubernetes: policyTypes Ingress/Egress (defaulted from the rules),
peers' selectors, ipBlock CIDRs with ``except`` inside ``cidr``, ports (protocol
TCP/UDP/SCTP, port number or name, endPort only with a numeric port and not below it).

Pure functions on the message; called by admission and validation on the event loop.
"""

from __future__ import annotations

import ipaddress

from control.api import labels
from control.api.errors import FieldError
from control.api.pb import meta_pb2, networking_pb2
from control.api.timeutil import time_at
from control.apiserver import warnings
from control.apiserver.validation_container import PROTOCOLS
from control.apiserver.validation_util import (
    child,
    cidr_errors,
    enum,
    index,
    int_or_string_value,
    invalid,
    messages,
    port_name_errors,
    port_num_errors,
)

CONDITION = "Enforced"
REASON = "NotImplemented"
MESSAGE = ("Flotilla does not enforce NetworkPolicy yet: this policy is stored but pod "
           "traffic is NOT restricted by it")


def default(np: networking_pb2.NetworkPolicy) -> None:
    """policyTypes from the rules when unset (Ingress always; Egress when rules say so)."""
    spec = np.spec
    if not spec.policy_types:
        spec.policy_types.append("Ingress")
        if spec.egress:
            spec.policy_types.append("Egress")
    for rule in spec.ingress:
        for p in rule.ports:
            if not p.HasField("protocol"):
                p.protocol = "TCP"
    for erule in spec.egress:
        for p in erule.ports:
            if not p.HasField("protocol"):
                p.protocol = "TCP"


def mark_not_enforced(np: networking_pb2.NetworkPolicy, now: float) -> None:
    """The Warning for the request and the condition on the object."""
    warnings.add(f'NetworkPolicy "{np.metadata.name}": {MESSAGE}')
    for c in np.status.conditions:
        if c.type == CONDITION:
            if c.status == "False" and c.reason == REASON:
                return
            np.status.conditions.remove(c)
            break
    np.status.conditions.append(meta_pb2.Condition(
        type=CONDITION, status="False", reason=REASON, message=MESSAGE,
        observed_generation=np.metadata.generation, last_transition_time=time_at(now)))


def _peer_errors(path: str, peer: networking_pb2.NetworkPolicyPeer) -> list[FieldError]:
    errs: list[FieldError] = []
    has_ip = peer.HasField("ip_block")
    if has_ip and (peer.HasField("pod_selector") or peer.HasField("namespace_selector")):
        errs.append(FieldError(path, "Forbidden: may not specify more than 1 peer type when "
                                     "ipBlock is set"))
    if not has_ip and not peer.HasField("pod_selector") and not (
            peer.HasField("namespace_selector")):
        errs.append(FieldError(path, "Required value: must specify a peer"))
    for field in ("pod_selector", "namespace_selector"):
        if peer.HasField(field):
            name = "podSelector" if field == "pod_selector" else "namespaceSelector"
            errs.extend(labels.validate_label_selector(getattr(peer, field),
                                                       child(path, name)))
    if has_ip:
        block = peer.ip_block
        bp = child(path, "ipBlock")
        errs.extend(messages(child(bp, "cidr"), block.cidr, cidr_errors(block.cidr)))
        if not cidr_errors(block.cidr):
            outer = ipaddress.ip_network(block.cidr, strict=False)
            for i, ex in enumerate(getattr(block, "except")):  # a Python keyword
                ep = index(child(bp, "except"), i)
                if cidr_errors(ex):
                    errs.extend(messages(ep, ex, cidr_errors(ex)))
                    continue
                inner = ipaddress.ip_network(ex, strict=False)
                if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
                    errs.append(invalid(ep, ex, "must be a strict subset of `cidr`"))
    return errs


def _port_errors(path: str, port: networking_pb2.NetworkPolicyPort) -> list[FieldError]:
    errs: list[FieldError] = []
    if port.HasField("protocol"):
        errs.extend(enum(child(path, "protocol"), port.protocol, PROTOCOLS))
    value = int_or_string_value(port.port) if port.HasField("port") else None
    if isinstance(value, int):
        errs.extend(messages(child(path, "port"), value, port_num_errors(value)))
    elif isinstance(value, str) and value:
        errs.extend(messages(child(path, "port"), value, port_name_errors(value)))
    if port.HasField("end_port"):
        if not isinstance(value, int):
            errs.append(FieldError(child(path, "endPort"),
                                   "Required value: may not be specified when `port` is not "
                                   "a number"))
        elif port.end_port < value:
            errs.append(invalid(child(path, "endPort"), port.end_port,
                                "must be greater than or equal to `port`"))
    return errs


def validate(np: networking_pb2.NetworkPolicy,
             old: networking_pb2.NetworkPolicy | None) -> list[FieldError]:
    spec = np.spec
    errs: list[FieldError] = []
    errs.extend(labels.validate_label_selector(spec.pod_selector, "spec.podSelector"))
    for i, t in enumerate(spec.policy_types):
        errs.extend(enum(index("spec.policyTypes", i), t, ("Ingress", "Egress")))
    for i, rule in enumerate(spec.ingress):
        rp = index("spec.ingress", i)
        for j, port in enumerate(rule.ports):
            errs.extend(_port_errors(index(child(rp, "ports"), j), port))
        for j, peer in enumerate(getattr(rule, "from")):
            errs.extend(_peer_errors(index(child(rp, "from"), j), peer))
    for i, erule in enumerate(spec.egress):
        rp = index("spec.egress", i)
        for j, port in enumerate(erule.ports):
            errs.extend(_port_errors(index(child(rp, "ports"), j), port))
        for j, peer in enumerate(erule.to):
            errs.extend(_peer_errors(index(child(rp, "to"), j), peer))
    return errs


__all__ = ["CONDITION", "MESSAGE", "REASON", "default", "mark_not_enforced", "validate"]
