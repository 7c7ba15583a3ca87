"""The Service environment variables of a container (Kubernetes' kubelet
``getServiceEnvVarMap`` and ``envvars.FromServices``).

For each Service with a cluster IP (not headless, not ExternalName) in the pod's namespace
when ``enableServiceLinks`` is true, and always for the ``kubernetes`` Service of
``default``, a Service named ``redis-primary`` with port 6379/TCP at 10.96.0.11 gives:

- ``REDIS_PRIMARY_SERVICE_HOST=10.96.0.11``, ``REDIS_PRIMARY_SERVICE_PORT=6379`` (first
  port) and ``REDIS_PRIMARY_SERVICE_PORT_<NAME>`` for each named port;
- the docker-link variables: ``REDIS_PRIMARY_PORT=tcp://10.96.0.11:6379`` (first port) and
  per port ``REDIS_PRIMARY_PORT_6379_TCP`` (+ ``_PROTO``, ``_PORT``, ``_ADDR``).

A Service of the pod's own namespace wins over ``default``'s of the same name. The
container's own env and envFrom win over all of these; ``$(VAR)`` may refer to them.

Pure: the caller lists the Services.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from control.api.pb import core_pb2

MASTER_NAMESPACE = "default"
MASTER_SERVICE = "kubernetes"


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _host_port(ip: str, port: int) -> str:
    try:
        v6 = ipaddress.ip_address(ip).version == 6
    except ValueError:
        v6 = False
    return f"[{ip}]:{port}" if v6 else f"{ip}:{port}"


def has_cluster_ip(svc: core_pb2.Service) -> bool:
    return bool(svc.spec.cluster_ip) and svc.spec.cluster_ip != "None"


def variables_of(svc: core_pb2.Service) -> list[tuple[str, str]]:
    """The variables of one Service (empty without a cluster IP)."""
    if not has_cluster_ip(svc) or not svc.spec.ports:
        return []
    prefix = _env_name(svc.metadata.name)
    ip = svc.spec.cluster_ip
    first = svc.spec.ports[0]
    out = [(f"{prefix}_SERVICE_HOST", ip), (f"{prefix}_SERVICE_PORT", str(first.port))]
    for p in svc.spec.ports:
        if p.name:
            out.append((f"{prefix}_SERVICE_PORT_{_env_name(p.name)}", str(p.port)))
    out.append((f"{prefix}_PORT",
                f"{(first.protocol or 'TCP').lower()}://{_host_port(ip, first.port)}"))
    for p in svc.spec.ports:
        proto = (p.protocol or "TCP")
        base = f"{prefix}_PORT_{p.port}_{proto.upper()}"
        out += [(base, f"{proto.lower()}://{_host_port(ip, p.port)}"),
                (f"{base}_PROTO", proto.lower()), (f"{base}_PORT", str(p.port)),
                (f"{base}_ADDR", ip)]
    return out


def service_env(pod: core_pb2.Pod, services: Iterable[core_pb2.Service]) -> list[tuple[str, str]]:
    """The variables for ``pod`` from the Services of its namespace and ``default``."""
    ns = pod.metadata.namespace
    links = not pod.spec.HasField("enable_service_links") or pod.spec.enable_service_links
    chosen: dict[str, core_pb2.Service] = {}
    for svc in services:
        if not has_cluster_ip(svc):
            continue
        name, svc_ns = svc.metadata.name, svc.metadata.namespace
        if svc_ns == MASTER_NAMESPACE and name == MASTER_SERVICE and ns != MASTER_NAMESPACE:
            chosen.setdefault(name, svc)  # the pod's namespace may override it
        elif svc_ns == ns and links:
            chosen[name] = svc
        elif svc_ns == ns and name == MASTER_SERVICE and ns == MASTER_NAMESPACE:
            chosen[name] = svc
    out: list[tuple[str, str]] = []
    for name in sorted(chosen):
        out.extend(variables_of(chosen[name]))
    return out


__all__ = ["service_env", "variables_of"]
