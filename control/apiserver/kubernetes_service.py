"""The ``kubernetes`` Service in ``default``: how pods find the apiserver, kept by the
apiserver itself (Kubernetes' "lease" endpoint reconciler).

- Every apiserver holds a key ``/registry/masterleases/<address>`` under a store lease it
  keeps alive; a server that stops stops renewing, and its address drops out when the
  lease expires. So several servers on one store each list themselves, and none lists a
  dead one for longer than the lease's TTL.
- The Service: ClusterIP, the first address of the service range, port ``https`` 443 to the
  server's supervisor port, the one that takes bearer tokens (pods authenticate with their
  ServiceAccount's; gRPC's Python server cannot make client certificates optional on the
  API port). A user's change of its ports is put back.
- Its Endpoints (selector-less, so no controller computes them): the live advertised
  addresses, port ``https`` = that port.

An address pods cannot reach is refused: loopback (``127.0.0.1`` of the server is not the
pod's), unspecified or multicast, as Kubernetes refuses them for ``--advertise-address``.

Concurrency: one supervised task on the apiserver's event loop calling :meth:`sync`
every ``interval`` seconds; every write goes through the registry (compare-and-swap).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import structlog

from control.api import errors, kinds
from control.api.pb import core_pb2
from control.store.interface import KeyExists, KeyNotFound, LeaseNotFound, RevisionMismatch

log = structlog.get_logger(component="kubernetes-service")

LEASE_PREFIX = "/registry/masterleases/"
NAME = "kubernetes"
NAMESPACE = "default"
PORT_NAME = "https"
SERVICE_PORT = 443
INTERVAL = 10.0
LEASE_TTL = 15


def check_advertise_address(text: str) -> str:
    """The address itself, or ValueError saying why pods could not use it."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ValueError(f"--advertise-address {text!r} is not an IP address") from None
    if addr.is_loopback:
        raise ValueError(
            f"--advertise-address {addr} is a loopback address: pods cannot reach the "
            "apiserver there (their 127.0.0.1 is their own); give an address of this machine "
            "that pods can reach")
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"--advertise-address {addr} is not a unicast address of this machine")
    return str(addr)


def default_advertise_address() -> str:
    """The machine's InternalIP: the source address of its default route (a UDP socket
    "connected" to a documentation address picks the route without sending anything), or
    "" when the machine has none."""
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                addr = str(s.getsockname()[0])
        except OSError:
            continue
        try:
            return check_advertise_address(addr)
        except ValueError:
            continue
    return ""


def desired_service(cluster_ip: str, port: int) -> core_pb2.Service:
    svc = core_pb2.Service()
    svc.metadata.name = NAME
    svc.metadata.namespace = NAMESPACE
    svc.metadata.labels["component"] = "apiserver"
    svc.metadata.labels["provider"] = "kubernetes"
    svc.spec.type = "ClusterIP"
    svc.spec.cluster_ip = cluster_ip
    svc.spec.session_affinity = "None"
    p = svc.spec.ports.add(name=PORT_NAME, port=SERVICE_PORT, protocol="TCP")
    p.target_port.int_val = port
    return svc


def desired_endpoints(addresses: list[str], port: int) -> core_pb2.Endpoints:
    ep = core_pb2.Endpoints()
    ep.metadata.name = NAME
    ep.metadata.namespace = NAMESPACE
    if addresses:
        subset = ep.subsets.add()
        for ip in sorted(addresses):
            subset.addresses.add(ip=ip)
        subset.ports.add(name=PORT_NAME, port=port, protocol="TCP")
    return ep


def _ports_of(svc: Any) -> list[tuple[str, int, str, int]]:
    return [(p.name, p.port, p.protocol, p.target_port.int_val) for p in svc.spec.ports]


class KubernetesServiceKeeper:
    def __init__(self, registry: Any, cluster_ip: str, advertise_address: str, port: int,
                 interval: float = INTERVAL, lease_ttl: int = LEASE_TTL) -> None:
        self.registry = registry
        self.store = registry.store
        self.cluster_ip = cluster_ip
        self.address = advertise_address
        self.port = port
        self.interval = interval
        self.lease_ttl = lease_ttl
        self._lease = 0

    async def run(self) -> None:
        while True:
            try:
                await self.sync()
            except errors.ApiError as e:
                log.warning("could not keep the kubernetes Service", error=str(e))
            await asyncio.sleep(self.interval)

    async def sync(self) -> None:
        if self.address:
            await self._hold_lease()
        await self._ensure_service()
        await self._ensure_endpoints(await self._live_addresses())

    async def release(self) -> None:
        """On a clean stop: this server's address goes at once, not at lease expiry."""
        if self._lease:
            try:
                await self.store.revoke_lease(self._lease)
            except LeaseNotFound:
                pass
            self._lease = 0
            try:
                await self._ensure_endpoints(await self._live_addresses())
            except errors.ApiError as e:
                log.warning("could not drop this server from the kubernetes Endpoints",
                            error=str(e))

    async def _hold_lease(self) -> None:
        if self._lease:
            try:
                await self.store.keepalive_lease(self._lease)
                return
            except LeaseNotFound:
                self._lease = 0
        self._lease = await self.store.grant_lease(self.lease_ttl)
        key = LEASE_PREFIX + self.address
        value = str(self.port).encode()
        for _ in range(8):
            kv = await self.store.get(key)
            try:
                if kv is None:
                    await self.store.create(key, value, lease=self._lease)
                else:
                    await self.store.update(key, value, kv.mod_revision, lease=self._lease)
                return
            except (KeyExists, KeyNotFound, RevisionMismatch):
                continue

    async def _live_addresses(self) -> list[str]:
        result = await self.store.range(LEASE_PREFIX)
        return [kv.key[len(LEASE_PREFIX):] for kv in result.kvs]

    async def _ensure_service(self) -> None:
        info = kinds.by_resource("services")
        want = desired_service(self.cluster_ip, self.port)
        try:
            current = await self.registry.get(info, NAMESPACE, NAME)
        except errors.NotFound:
            try:
                await self.registry.create(info, NAMESPACE, want)
                log.info("created the kubernetes Service", cluster_ip=self.cluster_ip)
            except errors.AlreadyExists:
                pass
            except errors.Invalid as e:
                log.warning("could not create the kubernetes Service", error=str(e))
            return
        if _ports_of(current.obj) == _ports_of(want) and current.obj.spec.type == "ClusterIP":
            return

        def mutate(cur: Any) -> Any:
            new = type(cur)()
            new.CopyFrom(cur)
            new.spec.type = "ClusterIP"
            del new.spec.ports[:]
            new.spec.ports.extend(want.spec.ports)
            return new

        await self.registry.guaranteed_update(info, NAMESPACE, NAME, mutate)

    async def _ensure_endpoints(self, addresses: list[str]) -> None:
        info = kinds.by_resource("endpoints")
        want = desired_endpoints(addresses, self.port)
        try:
            current = await self.registry.get(info, NAMESPACE, NAME)
        except errors.NotFound:
            try:
                await self.registry.create(info, NAMESPACE, want)
            except errors.AlreadyExists:
                pass
            return
        if list(current.obj.subsets) == list(want.subsets):
            return

        def mutate(cur: Any) -> Any:
            new = type(cur)()
            new.CopyFrom(cur)
            del new.subsets[:]
            new.subsets.extend(want.subsets)
            return new

        await self.registry.guaranteed_update(info, NAMESPACE, NAME, mutate)


__all__ = ["KubernetesServiceKeeper", "check_advertise_address", "default_advertise_address",
           "desired_endpoints", "desired_service"]
