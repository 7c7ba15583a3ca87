"""The ``kube-dns`` Service in ``kube-system``: how pods reach the cluster DNS.

- The Service: ClusterIP requested explicitly (``10.96.0.10``, the tenth address of the
  default service range, where kubelets' ``--cluster-dns`` points), ports ``dns`` 53/UDP and
  ``dns-tcp`` 53/TCP to the DNS server's port, no selector. A user's change of its ports is
  put back; its ClusterIP cannot change (immutable), so a different one is only reported.
- Its Endpoints (selector-less, so no controller computes them; the mirroring controller
  copies them to an EndpointSlice): the servers' advertised addresses, read from the
  ``kubernetes`` Service's endpoints in ``default`` (each live server keeps its own address
  there) and this DNS server's own listen address (:func:`endpoint_addresses`), at the
  DNS server's port.

Pure ``desired_*`` functions; :class:`KubeDNSKeeper` writes them through the API.

Concurrency: one supervised task (:meth:`KubeDNSKeeper.run`) syncing every ``interval``
seconds and whenever :meth:`KubeDNSKeeper.poke` is called (the ``kubernetes`` Service's
endpoints changed); every write is a compare-and-swap (``guaranteed_update``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any

import structlog

from control.api import errors
from control.api.pb import core_pb2
from control.client.retry import guaranteed_update

log = structlog.get_logger(component="kube-dns-service")

NAME = "kube-dns"
NAMESPACE = "kube-system"
SERVICE_PORT = 53
INTERVAL = 10.0
APISERVER_SERVICE = ("default", "kubernetes")


def default_cluster_dns_ip(service_cidr: str) -> str:
    """The tenth address of the service range (10.96.0.10 for 10.96.0.0/12), as kubeadm
    picks the DNS Service's address."""
    net = ipaddress.ip_network(service_cidr, strict=False)
    return str(net[10])


def desired_service(cluster_ip: str, port: int) -> core_pb2.Service:
    svc = core_pb2.Service(api_version="v1", kind="Service")
    svc.metadata.name = NAME
    svc.metadata.namespace = NAMESPACE
    svc.metadata.labels["k8s-app"] = "kube-dns"
    svc.metadata.labels["kubernetes.io/cluster-service"] = "true"
    svc.metadata.labels["kubernetes.io/name"] = "CoreDNS"
    svc.spec.type = "ClusterIP"
    svc.spec.cluster_ip = cluster_ip
    for name, proto in (("dns", "UDP"), ("dns-tcp", "TCP")):
        p = svc.spec.ports.add(name=name, port=SERVICE_PORT, protocol=proto)
        p.target_port.int_val = port
    return svc


def desired_endpoints(addresses: list[str], port: int) -> core_pb2.Endpoints:
    ep = core_pb2.Endpoints(api_version="v1", kind="Endpoints")
    ep.metadata.name = NAME
    ep.metadata.namespace = NAMESPACE
    ep.metadata.labels["k8s-app"] = "kube-dns"
    if addresses:
        subset = ep.subsets.add()
        for ip in sorted(set(addresses)):
            subset.addresses.add(ip=ip)
        subset.ports.add(name="dns", port=port, protocol="UDP")
        subset.ports.add(name="dns-tcp", port=port, protocol="TCP")
    return ep


def endpoint_addresses(apiserver: list[str], own: str) -> list[str]:
    """Where pods reach the cluster DNS: each live server's advertised address (the
    ``kubernetes`` Service's endpoints) when this one listens on every address, those and
    its own when it listens on one address pods can reach, none when it listens on
    loopback (a pod's 127.0.0.1 is its own)."""
    try:
        ip = ipaddress.ip_address(own)
    except ValueError:
        return sorted(set(apiserver))
    if ip.is_unspecified:
        return sorted(set(apiserver))
    if ip.is_loopback:
        return []
    return sorted({*apiserver, str(ip)})


def _ports(svc: core_pb2.Service) -> list[tuple[str, int, str, int]]:
    return [(p.name, p.port, p.protocol, p.target_port.int_val) for p in svc.spec.ports]


class KubeDNSKeeper:
    def __init__(self, client: Any, cluster_ip: str, port: Callable[[], int],
                 apiserver_addresses: Callable[[], list[str]],
                 own_address: str = "", interval: float = INTERVAL) -> None:
        """``port()`` is the DNS server's (bound) port; ``apiserver_addresses()`` the
        ready addresses of the ``kubernetes`` Service (the live servers'); ``own_address`` this DNS server's address, listed
        too (a server without an advertised address is not in the ``kubernetes``
        Endpoints), unless loopback or unspecified."""
        self.client = client
        self.cluster_ip = cluster_ip
        self.port = port
        self.apiserver_addresses = apiserver_addresses
        self.own = own_address
        self.interval = interval
        self._poked = asyncio.Event()
        self._warned_ip = ""

    def poke(self) -> None:
        self._poked.set()

    async def run(self) -> None:
        while True:
            self._poked.clear()
            try:
                await self.sync()
            except errors.ApiError as e:
                log.warning("could not keep the kube-dns Service", error=str(e))
            try:
                await asyncio.wait_for(self._poked.wait(), self.interval)
            except TimeoutError:
                pass

    async def sync(self) -> None:
        await self._ensure_service()
        await self._ensure_endpoints(endpoint_addresses(self.apiserver_addresses(), self.own))

    async def _ensure_service(self) -> None:
        want = desired_service(self.cluster_ip, self.port())
        try:
            current = await self.client.get(core_pb2.Service, NAME, NAMESPACE)
        except errors.NotFound:
            try:
                await self.client.create(want)
                log.info("created the kube-dns Service", cluster_ip=self.cluster_ip)
            except errors.AlreadyExists:
                pass
            return
        if current.spec.cluster_ip != self.cluster_ip and self._warned_ip != \
                current.spec.cluster_ip:
            self._warned_ip = current.spec.cluster_ip
            log.warning("the kube-dns Service has another ClusterIP than pods are told "
                        "(--cluster-dns); delete it to have it recreated",
                        has=current.spec.cluster_ip, want=self.cluster_ip)
        if _ports(current) == _ports(want) and current.spec.type == "ClusterIP" and \
                not current.spec.selector:
            return

        def mutate(svc: core_pb2.Service) -> bool:
            svc.spec.type = "ClusterIP"
            svc.spec.selector.clear()
            del svc.spec.ports[:]
            svc.spec.ports.extend(want.spec.ports)
            return True

        await guaranteed_update(self.client, core_pb2.Service, NAMESPACE, NAME, mutate,
                                current=current)

    async def _ensure_endpoints(self, addresses: list[str]) -> None:
        want = desired_endpoints(addresses, self.port())
        try:
            current = await self.client.get(core_pb2.Endpoints, NAME, NAMESPACE)
        except errors.NotFound:
            try:
                await self.client.create(want)
            except errors.AlreadyExists:
                pass
            return
        if list(current.subsets) == list(want.subsets):
            return

        def mutate(ep: core_pb2.Endpoints) -> bool:
            del ep.subsets[:]
            ep.subsets.extend(want.subsets)
            return True

        await guaranteed_update(self.client, core_pb2.Endpoints, NAMESPACE, NAME, mutate,
                                current=current)
