"""Cluster IPs and node ports of Services, allocated in the apiserver's write path.

What a Service gets, the way Kubernetes' service REST storage does it:

- A ClusterIP, NodePort or LoadBalancer Service gets a cluster IP from
  ``--service-cluster-ip-range`` unless it is headless (``clusterIP: None``); one it asks
  for is honoured if free and in range, refused by field otherwise ("spec.clusterIPs:
  Invalid value: ...: provided IP is already allocated"). ipFamilies and ipFamilyPolicy are
  settled against the one family this cluster serves.
- NodePort and LoadBalancer (unless allocateLoadBalancerNodePorts is false) Services get a
  node port per port from ``--service-node-port-range``; a LoadBalancer with
  externalTrafficPolicy Local also a healthCheckNodePort. Ports that differ only by
  protocol may share one node port.
- What a Service holds goes back when it is deleted or its type stops needing it.

State: one bitmap per range in the store, under its own key (``/registry/ranges/...``,
no kind of the API), changed only by compare-and-swap, so that several apiservers on one store
never hand out a value twice. A write takes what it needs before the object is written and
gives it back if the write fails (:class:`Claim`); what an update or delete releases goes
after the write. A crash between the two leaks a value: :meth:`ServiceAllocator.repair`
(at start and periodically) adds what Services hold and frees what no Service has held for
two runs in a row (one run could see a value taken by a create still in flight).

Concurrency: coroutines on the apiserver's event loop; changes of one bitmap queue on a lock
per key within a server, and each is one store compare-and-swap, retried on a lost race
(another server's write).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from control.api import errors
from control.api.pb import core_pb2
from control.apiserver import allocation_bitmap as ab
from control.apiserver.validation_util import invalid
from control.store.interface import KeyExists, RevisionMismatch, Store

log = structlog.get_logger(component="service-allocator")

IP_KEY = "/registry/ranges/serviceips"
PORT_KEY = "/registry/ranges/servicenodeports"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
_CAS_RETRIES = 32
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


# -- what a Service holds (pure) ------------------------------------------------------------

def needs_cluster_ip(spec: core_pb2.ServiceSpec) -> bool:
    return spec.type != "ExternalName" and spec.cluster_ip != "None"


def needs_node_ports(spec: core_pb2.ServiceSpec) -> bool:
    if spec.type == "NodePort":
        return True
    return spec.type == "LoadBalancer" and (
        not spec.HasField("allocate_load_balancer_node_ports")
        or spec.allocate_load_balancer_node_ports)


def needs_health_check_port(spec: core_pb2.ServiceSpec) -> bool:
    return spec.type == "LoadBalancer" and spec.external_traffic_policy == "Local"


def held_ips(spec: core_pb2.ServiceSpec) -> set[str]:
    if spec.type == "ExternalName" or spec.cluster_ip == "None":
        return set()
    return {ip for ip in [*spec.cluster_ips, spec.cluster_ip] if ip and ip != "None"}


def held_ports(spec: core_pb2.ServiceSpec) -> set[int]:
    out = {p.node_port for p in spec.ports if p.node_port}
    if spec.health_check_node_port:
        out.add(spec.health_check_node_port)
    return out


def settle_families(spec: core_pb2.ServiceSpec, family: str) -> list[errors.FieldError]:
    """ipFamilies and ipFamilyPolicy against a single-stack cluster of ``family``."""
    errs: list[errors.FieldError] = []
    if spec.type == "ExternalName":
        return errs
    for i, fam in enumerate(spec.ip_families):
        if fam != family:
            errs.append(invalid(f"spec.ipFamilies[{i}]", fam, "not configured on this cluster"))
    headless_selectorless = spec.cluster_ip == "None" and not spec.selector
    if spec.ip_family_policy == "RequireDualStack" and not headless_selectorless:
        errs.append(invalid("spec.ipFamilyPolicy", spec.ip_family_policy,
                            "this cluster is not configured for dual-stack services"))
    if not errs and not spec.ip_families:
        spec.ip_families.append(family)
    return errs


# -- the store-backed allocator ---------------------------------------------------------------

@dataclass
class Claim:
    """What one write took (given back if the write fails) and what it gives back once
    written."""

    allocator: ServiceAllocator
    took_ips: set[str] = field(default_factory=set)
    took_ports: set[int] = field(default_factory=set)
    frees_ips: set[str] = field(default_factory=set)
    frees_ports: set[int] = field(default_factory=set)

    async def commit(self) -> None:
        await self.allocator.release(self.frees_ips, self.frees_ports)

    async def revert(self) -> None:
        await self.allocator.release(self.took_ips, self.took_ports)


class ServiceAllocator:
    def __init__(self, store: Store, service_cidr: str = DEFAULT_SERVICE_CIDR,
                 node_port_range: str = DEFAULT_NODE_PORT_RANGE,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.ips = ab.IPRange.parse(service_cidr)
        self.ports = ab.PortRange.parse(node_port_range)
        self.rng = rng or random.Random()
        self._leak_suspects: dict[str, set[Any]] = {IP_KEY: set(), PORT_KEY: set()}
        # One change per key at a time from this server: its own writers queue here instead
        # of losing compare-and-swap races to each other; other servers' races retry.
        self._locks = {IP_KEY: asyncio.Lock(), PORT_KEY: asyncio.Lock()}

    # -- bitmaps in the store ----------------------------------------------------------------

    def _empty(self, key: str) -> ab.Bitmap:
        rng = self.ips if key == IP_KEY else self.ports
        return ab.Bitmap(str(rng), rng.size)

    async def _change(self, key: str, fn: Callable[[ab.Bitmap], None]) -> None:
        """Apply ``fn`` to the stored bitmap with compare-and-swap (``fn`` may raise to
        abandon the change)."""
        async with self._locks[key]:
            await self._change_locked(key, fn)

    async def _change_locked(self, key: str, fn: Callable[[ab.Bitmap], None]) -> None:
        for _ in range(_CAS_RETRIES):
            kv = await self.store.get(key)
            bm = self._empty(key)
            if kv is not None:
                stored = ab.decode(kv.value)
                if stored.range_text == bm.range_text:
                    bm = stored
                # else: the range flag changed; repair rebuilds it from the Services
            before = bytes(bm.bits)
            fn(bm)
            if kv is not None and bytes(bm.bits) == before:
                return
            try:
                if kv is None:
                    await self.store.create(key, ab.encode(bm))
                else:
                    await self.store.update(key, ab.encode(bm), kv.mod_revision)
                return
            except (RevisionMismatch, KeyExists):
                continue
        raise errors.ServiceUnavailable(
            f"could not update the allocation state {key}: too many concurrent writers; "
            "retry")

    async def bitmap(self, key: str) -> ab.Bitmap:
        kv = await self.store.get(key)
        return ab.decode(kv.value) if kv is not None else self._empty(key)

    async def release(self, ips: Iterable[str], ports: Iterable[int]) -> None:
        ip_offs = []
        for ip in ips:
            try:
                ip_offs.append(self.ips.offset(ip))
            except ab.NotInRange:
                pass  # never ours (the range changed): nothing to give back
        port_offs = []
        for port in ports:
            try:
                port_offs.append(self.ports.offset(port))
            except ab.NotInRange:
                pass

        def free(offs: list[int]) -> Callable[[ab.Bitmap], None]:
            def fn(bm: ab.Bitmap) -> None:
                for off in offs:
                    bm.release(off)
            return fn

        if ip_offs:
            await self._change(IP_KEY, free(ip_offs))
        if port_offs:
            await self._change(PORT_KEY, free(port_offs))

    # -- the write path -----------------------------------------------------------------------

    async def begin_create(self, svc: core_pb2.Service, dry_run: bool = False) -> Claim:
        return await self.begin_update(svc, None, dry_run)

    async def begin_update(self, svc: core_pb2.Service, old: core_pb2.Service | None,
                           dry_run: bool = False) -> Claim:
        """Fill in and take what ``svc`` needs beyond what ``old`` held (Invalid, by field,
        when a value asked for cannot be had); the claim frees what ``old`` held and
        ``svc`` does not."""
        spec = svc.spec
        old_ips = held_ips(old.spec) if old is not None else set()
        old_ports = held_ports(old.spec) if old is not None else set()
        errs = settle_families(spec, self.ips.family)
        if errs:
            raise errors.Invalid(f'Service "{svc.metadata.name}" is invalid', errs)
        claim = Claim(self)
        try:
            await self._claim_ips(svc, old_ips, claim, dry_run)
            await self._claim_ports(svc, old_ports, claim, dry_run)
        except BaseException:
            if not dry_run:
                await claim.revert()
            raise
        if dry_run:
            claim.took_ips.clear()
            claim.took_ports.clear()
        claim.frees_ips = old_ips - held_ips(spec)
        claim.frees_ports = old_ports - held_ports(spec)
        if dry_run:
            claim.frees_ips.clear()
            claim.frees_ports.clear()
        return claim

    async def _claim_ips(self, svc: core_pb2.Service, old_ips: set[str], claim: Claim,
                         dry_run: bool) -> None:
        spec = svc.spec
        if not needs_cluster_ip(spec):
            return
        wanted = [ip for ip in spec.cluster_ips] or ([spec.cluster_ip] if spec.cluster_ip else [])
        if len(wanted) > 1:
            raise errors.Invalid(f'Service "{svc.metadata.name}" is invalid', [invalid(
                "spec.clusterIPs", list(wanted),
                "this cluster is not configured for dual-stack services")])
        new_ip = wanted[0] if wanted else ""
        if new_ip and new_ip in old_ips:
            return
        name = svc.metadata.name
        result: list[str] = []

        def take(bm: ab.Bitmap) -> None:
            result.clear()
            if new_ip:
                try:
                    bm.take(self.ips.offset(new_ip))
                except ab.NotInRange:
                    raise errors.Invalid(f'Service "{name}" is invalid', [invalid(
                        "spec.clusterIPs", [new_ip],
                        f"failed to allocate IP {new_ip}: the provided IP ({new_ip}) is not "
                        f"in the valid range. The range of valid IPs is {self.ips}")]) from None
                except ab.AlreadyAllocated:
                    raise errors.Invalid(f'Service "{name}" is invalid', [invalid(
                        "spec.clusterIPs", [new_ip],
                        f"failed to allocate IP {new_ip}: provided IP is already "
                        "allocated")]) from None
                result.append(new_ip)
            else:
                try:
                    off = bm.take_next(self.ips.static_band(), self.rng)
                except ab.RangeFull:
                    raise errors.ApiError(
                        "Internal error occurred: failed to allocate a serviceIP: range is "
                        f"full ({self.ips})") from None
                result.append(self.ips.value(off))

        if dry_run:
            take(await self.bitmap(IP_KEY))
        else:
            await self._change(IP_KEY, take)
            claim.took_ips.update(result)
        ip = result[0]
        spec.cluster_ip = ip
        del spec.cluster_ips[:]
        spec.cluster_ips.append(ip)
        if not spec.ip_families:
            spec.ip_families.append(f"IPv{ipaddress.ip_address(ip).version}")

    async def _claim_ports(self, svc: core_pb2.Service, old_ports: set[int], claim: Claim,
                           dry_run: bool) -> None:
        spec = svc.spec
        # (port index or -1 for the health check, requested node port or 0)
        wanted: list[tuple[int, int]] = []
        if needs_node_ports(spec):
            wanted += [(i, p.node_port) for i, p in enumerate(spec.ports)]
        if needs_health_check_port(spec):
            wanted.append((-1, spec.health_check_node_port))
        if not wanted:
            return
        name = svc.metadata.name
        chosen: dict[int, int] = {}

        def take(bm: ab.Bitmap) -> None:
            chosen.clear()
            taken_here: set[int] = set()
            for i, port in wanted:
                path = "spec.healthCheckNodePort" if i < 0 else f"spec.ports[{i}].nodePort"
                if port:
                    if port in old_ports or port in taken_here:
                        chosen[i] = port  # already this Service's (or shared by protocol)
                        continue
                    try:
                        bm.take(self.ports.offset(port))
                    except ab.NotInRange:
                        raise errors.Invalid(f'Service "{name}" is invalid', [invalid(
                            path, port, "provided port is not in the valid range. The range "
                            f"of valid ports is {self.ports}")]) from None
                    except ab.AlreadyAllocated:
                        raise errors.Invalid(f'Service "{name}" is invalid', [invalid(
                            path, port, "provided port is already allocated")]) from None
                else:
                    try:
                        port = self.ports.value(bm.take_next(self.ports.static_band(),
                                                             self.rng))
                    except ab.RangeFull:
                        raise errors.ApiError(
                            "Internal error occurred: failed to allocate a nodePort: range is "
                            f"full ({self.ports})") from None
                chosen[i] = port
                taken_here.add(port)

        if dry_run:
            take(await self.bitmap(PORT_KEY))
        else:
            await self._change(PORT_KEY, take)
            claim.took_ports.update(p for p in chosen.values() if p not in old_ports)
        for i, port in chosen.items():
            if i < 0:
                spec.health_check_node_port = port
            else:
                spec.ports[i].node_port = port

    # -- repair ------------------------------------------------------------------------------

    async def repair(self, services: Iterable[core_pb2.Service]) -> None:
        """Make the bitmaps agree with the Services that exist: add what they hold, free
        what none has held for two runs in a row, and warn about values outside the ranges
        or held twice."""
        ip_owner: dict[int, str] = {}
        port_owner: dict[int, str] = {}
        for svc in services:
            who = f"{svc.metadata.namespace}/{svc.metadata.name}"
            for ip in held_ips(svc.spec):
                try:
                    off = self.ips.offset(ip)
                except ab.NotInRange:
                    log.warning("the cluster IP of a Service is not within the service range; "
                                "recreate the Service to move it", service=who, ip=ip,
                                range=str(self.ips))
                    continue
                if off in ip_owner and ip_owner[off] != who:
                    log.warning("two Services hold one cluster IP", ip=ip,
                                services=[ip_owner[off], who])
                ip_owner[off] = who
            for port in held_ports(svc.spec):
                try:
                    off = self.ports.offset(port)
                except ab.NotInRange:
                    log.warning("a node port of a Service is not within the node port range",
                                service=who, port=port, range=str(self.ports))
                    continue
                port_owner[off] = who
        await self._repair(IP_KEY, set(ip_owner))
        await self._repair(PORT_KEY, set(port_owner))

    async def _repair(self, key: str, held: set[int]) -> None:
        suspects = self._leak_suspects[key]
        leaked_now: set[int] = set()
        freed: set[int] = set()

        def fn(bm: ab.Bitmap) -> None:
            leaked_now.clear()
            freed.clear()
            for off in held:
                if not bm.has(off):
                    bm.take(off)
            for off in bm.offsets():
                if off not in held:
                    if off in suspects:
                        bm.release(off)
                        freed.add(off)
                    else:
                        leaked_now.add(off)

        await self._change(key, fn)
        if freed:
            log.info("freed values no Service holds", key=key, count=len(freed))
        self._leak_suspects[key] = set(leaked_now)


__all__ = ["DEFAULT_NODE_PORT_RANGE", "DEFAULT_SERVICE_CIDR", "IP_KEY", "PORT_KEY", "Claim",
           "ServiceAllocator", "held_ips", "held_ports", "needs_cluster_ip",
           "needs_node_ports", "settle_families"]
