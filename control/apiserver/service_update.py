"""What an update of a Service keeps from the stored one and what it drops on a type change,
as Kubernetes' service storage does (``patchAllocatedValues`` in its REST storage,
``dropTypeDependentFields`` in its strategy).

- Kept: what the cluster allocated and the update leaves out, while the old and the new
  type both use it: the cluster IPs, the node ports, the health-check node port. So
  ``replace`` of a manifest, or an apply that never listed them, does not try to change
  them.
- Dropped when the type changes: each field the new type has no use for, if the update
  left it as stored (so the user did not ask for it; a value the user sets is kept and
  validation judges it). Leaving a type that needs a cluster IP (for ExternalName): the
  cluster IPs, IP families and family policy. Leaving NodePort/LoadBalancer: the node
  ports. No longer needing one: the health-check node port. Leaving LoadBalancer:
  allocateLoadBalancerNodePorts, loadBalancerClass, loadBalancerIP,
  loadBalancerSourceRanges and the load-balancer status. No longer reachable from outside:
  externalTrafficPolicy. Leaving ExternalName: externalName. So ``apply`` of a NodePort
  Service's manifest changed to ``type: ClusterIP`` succeeds, as it does in Kubernetes.

Pure functions on ``core_pb2.Service`` messages; the apiserver calls
:func:`prepare_service_update` from admission, on the event loop.
"""

from __future__ import annotations

from control.api.pb import core_pb2

__all__ = ["prepare_service_update"]

_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def _needs_cluster_ip(spec: core_pb2.ServiceSpec) -> bool:
    return spec.type != "ExternalName"


def _needs_node_ports(spec: core_pb2.ServiceSpec) -> bool:
    return spec.type in _NODE_PORT_TYPES


def _needs_health_check_node_port(spec: core_pb2.ServiceSpec) -> bool:
    return spec.type == "LoadBalancer" and spec.external_traffic_policy == "Local"


def _externally_accessible(spec: core_pb2.ServiceSpec) -> bool:
    return spec.type in _NODE_PORT_TYPES or (spec.type == "ClusterIP" and bool(spec.external_ips))


def _port_key(p: core_pb2.ServicePort) -> tuple[int, str]:
    return p.port, p.protocol or "TCP"


def keep_allocated(new: core_pb2.ServiceSpec, old: core_pb2.ServiceSpec) -> None:
    """Carry over the allocated values the update left out, while both types use them."""
    if _needs_cluster_ip(old) and _needs_cluster_ip(new):
        if not new.cluster_ip and old.cluster_ip:
            new.cluster_ip = old.cluster_ip
            if not new.cluster_ips:
                new.cluster_ips.extend(old.cluster_ips)
    if _needs_node_ports(old) and _needs_node_ports(new):
        old_ports = {_port_key(p): p.node_port for p in old.ports}
        for p in new.ports:
            if not p.node_port:
                p.node_port = old_ports.get(_port_key(p), 0)
    if _needs_health_check_node_port(old) and _needs_health_check_node_port(new):
        if not new.health_check_node_port:
            new.health_check_node_port = old.health_check_node_port


def drop_type_dependent(new: core_pb2.Service, old: core_pb2.Service) -> None:
    """Clear what the new type has no use for, where the update left it as stored."""
    ns, os_ = new.spec, old.spec
    if _needs_cluster_ip(os_) and not _needs_cluster_ip(ns):
        if list(ns.cluster_ips) == list(os_.cluster_ips) and ns.cluster_ip == os_.cluster_ip:
            ns.cluster_ip = ""
            del ns.cluster_ips[:]
        if list(ns.ip_families) == list(os_.ip_families):
            del ns.ip_families[:]
        if ns.HasField("ip_family_policy") == os_.HasField("ip_family_policy") and (
            ns.ip_family_policy == os_.ip_family_policy
        ):
            ns.ClearField("ip_family_policy")
    if _needs_node_ports(os_) and not _needs_node_ports(ns):
        old_ports = {_port_key(p): p.node_port for p in os_.ports}
        # Only when no port asks for another node port than it had (Kubernetes' sameNodePorts).
        if all(p.node_port in (0, old_ports.get(_port_key(p), 0)) for p in ns.ports):
            for p in ns.ports:
                p.node_port = 0
    if _needs_health_check_node_port(os_) and not _needs_health_check_node_port(ns):
        if ns.health_check_node_port == os_.health_check_node_port:
            ns.health_check_node_port = 0
    if os_.type == "LoadBalancer" and ns.type != "LoadBalancer":
        for field in ("allocate_load_balancer_node_ports", "load_balancer_class"):
            if ns.HasField(field) and os_.HasField(field) and (
                getattr(ns, field) == getattr(os_, field)
            ):
                ns.ClearField(field)
        if ns.load_balancer_ip == os_.load_balancer_ip:
            ns.load_balancer_ip = ""
        if list(ns.load_balancer_source_ranges) == list(os_.load_balancer_source_ranges):
            del ns.load_balancer_source_ranges[:]
    if _externally_accessible(os_) and not _externally_accessible(ns):
        if ns.external_traffic_policy == os_.external_traffic_policy:
            ns.external_traffic_policy = ""
    if os_.type == "ExternalName" and ns.type != "ExternalName":
        if ns.external_name == os_.external_name:
            ns.external_name = ""
    if ns.type != "LoadBalancer":
        # Not asynchronous de-provisioning to expose: the status says no balancer at once.
        new.status.ClearField("load_balancer")


def prepare_service_update(new: core_pb2.Service, old: core_pb2.Service) -> None:
    """An update of ``old`` into ``new`` (spec from the request, status already kept)."""
    keep_allocated(new.spec, old.spec)
    drop_type_dependent(new, old)
