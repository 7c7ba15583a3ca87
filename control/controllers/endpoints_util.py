"""What a Service's Endpoints should hold, from the Service and its namespace's pods (the
rules of Kubernetes' endpoints controller), as plain functions:

- Only Services with a selector are computed; one without keeps the Endpoints its user
  writes. ExternalName Services have none.
- A pod counts when it matches the selector, has an IP, has not finished (Succeeded or
  Failed) and is not being deleted (unless publishNotReadyAddresses, which also lists pods
  that are not Ready as ready).
- Each Service port's targetPort is a number, or a container port's name looked up in each
  pod (a pod without that name is left out of that port).
- Ready pods go to ``addresses``, the others to ``notReadyAddresses``; a pod whose
  ``hostname`` is set and whose ``subdomain`` is the Service's name carries its hostname
  (the DNS name of a StatefulSet-style pod).
- Addresses that serve the same set of ports share one subset (Kubernetes' repacking);
  a headless Service without ports lists its addresses with no ports.

Pure: no I/O; the controller passes cached objects.
"""

from __future__ import annotations

from collections.abc import Iterable

from control.api import labels
from control.api.pb import core_pb2
from control.api.podutil import is_pod_ready

HEADLESS_LABEL = "service.kubernetes.io/headless"
# the order of ports within a subset (name, then number)
PortKey = tuple[str, int, str, str]  # name, port, protocol, app protocol


def selects_pods(svc: core_pb2.Service) -> bool:
    return bool(svc.spec.selector) and svc.spec.type != "ExternalName"


def pod_counts(pod: core_pb2.Pod, publish_not_ready: bool) -> bool:
    if not pod.status.pod_ip or pod.status.phase in ("Succeeded", "Failed"):
        return False
    return publish_not_ready or not pod.metadata.HasField("deletion_timestamp")


def target_port(port: core_pb2.ServicePort, pod: core_pb2.Pod) -> int | None:
    """The pod's port for a Service port (None: the pod has no container port of that
    name and protocol)."""
    tp = port.target_port
    kind = tp.WhichOneof("value")
    if kind == "str_val":
        for c in pod.spec.containers:
            for cp in c.ports:
                if cp.name == tp.str_val and (cp.protocol or "TCP") == (port.protocol or "TCP"):
                    return int(cp.container_port)
        return None
    if kind == "int_val" and tp.int_val:
        return int(tp.int_val)
    return int(port.port)


def _address(pod: core_pb2.Pod, svc: core_pb2.Service) -> core_pb2.EndpointAddress:
    addr = core_pb2.EndpointAddress(ip=pod.status.pod_ip)
    if pod.spec.node_name:
        addr.node_name = pod.spec.node_name
    if pod.spec.hostname and pod.spec.subdomain == svc.metadata.name:
        addr.hostname = pod.spec.hostname
    ref = addr.target_ref
    ref.kind = "Pod"
    ref.namespace = pod.metadata.namespace
    ref.name = pod.metadata.name
    ref.uid = pod.metadata.uid
    return addr


def compute_subsets(svc: core_pb2.Service,
                    pods: Iterable[core_pb2.Pod]) -> list[core_pb2.EndpointSubset]:
    selector = labels.from_map(dict(svc.spec.selector))
    publish = svc.spec.publish_not_ready_addresses
    # (ip, ready) -> (address, ports it serves)
    entries: dict[tuple[str, bool], tuple[core_pb2.EndpointAddress, set[PortKey]]] = {}
    for pod in pods:
        if not selector.matches(pod.metadata.labels) or not pod_counts(pod, publish):
            continue
        ready = publish or is_pod_ready(pod)
        ports: set[PortKey] = set()
        for sp in svc.spec.ports:
            number = target_port(sp, pod)
            if number is not None:
                app = sp.app_protocol if sp.HasField("app_protocol") else ""
                ports.add((sp.name, number, sp.protocol or "TCP", app))
        if svc.spec.ports and not ports:
            continue  # serves none of the Service's ports
        key = (pod.status.pod_ip, ready)
        if key not in entries:
            entries[key] = (_address(pod, svc), ports)
    groups: dict[frozenset[PortKey], tuple[list[core_pb2.EndpointAddress],
                                           list[core_pb2.EndpointAddress]]] = {}
    for (_, ready), (addr, ports) in entries.items():
        ready_list, not_ready = groups.setdefault(frozenset(ports), ([], []))
        (ready_list if ready else not_ready).append(addr)
    out = []
    for ports_key, (ready_list, not_ready) in groups.items():
        subset = core_pb2.EndpointSubset()
        subset.addresses.extend(sorted(ready_list, key=lambda a: a.ip))
        subset.not_ready_addresses.extend(sorted(not_ready, key=lambda a: a.ip))
        for name, number, protocol, app in sorted(ports_key):
            p = subset.ports.add(name=name, port=number, protocol=protocol)
            if app:
                p.app_protocol = app
        out.append(subset)
    out.sort(key=lambda s: (
        [(p.name, p.port) for p in s.ports],
        (s.addresses or s.not_ready_addresses)[0].ip))
    return out


def desired_endpoints(svc: core_pb2.Service,
                      pods: Iterable[core_pb2.Pod]) -> core_pb2.Endpoints:
    ep = core_pb2.Endpoints()
    ep.metadata.name = svc.metadata.name
    ep.metadata.namespace = svc.metadata.namespace
    ep.metadata.labels.update(svc.metadata.labels)
    if svc.spec.cluster_ip == "None":
        ep.metadata.labels[HEADLESS_LABEL] = ""
    else:
        ep.metadata.labels.pop(HEADLESS_LABEL, None)
    ep.subsets.extend(compute_subsets(svc, pods))
    return ep


__all__ = ["HEADLESS_LABEL", "compute_subsets", "desired_endpoints", "pod_counts",
           "selects_pods", "target_port"]
