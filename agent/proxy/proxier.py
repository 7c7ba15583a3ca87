"""The proxy's sync loop: level-triggered, coalesced full resyncs of the rules from the
Service and EndpointSlice informers, through one :class:`Backend`.

- Any Service or EndpointSlice event marks the state dirty; the loop then computes the
  whole ruleset from the caches (:func:`agent.proxy.state.ruleset_from`) and hands it to
  the backend, never a diff, so a missed event or a restart cannot leave stale rules.
- Syncs are at least ``min_sync_interval`` apart (a burst of events is one sync) and happen
  at least every ``sync_period`` even without events (kube-proxy's ``--sync-period``).
- A failed sync is logged and retried at the next tick; the backend replaces its rules
  atomically, so a failure leaves the previous rules whole.
- After a sync the UDP conntrack entries the change made stale are deleted
  (:mod:`agent.proxy.conntrack`), so a client does not keep sending to an endpoint that
  left; a failed cleanup is logged and not retried (as kube-proxy).
- The health-check node ports of LoadBalancer Services with externalTrafficPolicy Local
  are served by a :class:`~agent.proxy.healthcheck.HealthServer` kept in step with each
  sync (unhealthy while syncs fail), closed when the loop stops.

Backends: :class:`NftablesBackend` (the ``flotilla-proxy`` table via ``nft -f``) and
:class:`FakeBackend` (records what it was given, for tests).

Concurrency contract: :meth:`Proxier.run` is one supervised task; it owns a Supervisor for
its two informers; the backend is called from that task only (``nft`` runs in a thread).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Protocol

import structlog

from agent.network import nft
from agent.proxy.conntrack import Conntrack, stale_flows
from agent.proxy.healthcheck import HealthServer
from agent.proxy.nft_rules import (
    FAMILY,
    TABLE,
    Ruleset,
    cleanup_script,
    render,
    render_adopt,
    render_update,
)
from agent.proxy.state import ruleset_from
from control.api.pb import core_pb2, discovery_pb2
from control.client.client import ApiClient
from control.client.listwatch import ApiListWatcher
from control.runtime.clock import Clock, RealClock, wait_for
from control.runtime.informer import InformerSet
from control.runtime.supervisor import Supervisor

log = structlog.get_logger(component="proxy")

DEFAULT_SYNC_PERIOD = 30.0
DEFAULT_MIN_SYNC_INTERVAL = 0.05


class Backend(Protocol):
    async def sync(self, rules: Ruleset) -> None: ...

    async def cleanup(self) -> None: ...


class NftablesBackend:
    """The first sync takes over the table an earlier run left, if any
    (:func:`render_adopt`, keeping its session-affinity sets: clients stay on their
    endpoints across an agent restart, as with kube-proxy), else writes it whole; later
    syncs change it in place (:func:`render_update`); after a failure the next sync
    replaces it whole."""

    def __init__(self) -> None:
        self._applied: str | None = None
        self._adopt = True

    async def sync(self, rules: Ruleset) -> None:
        if self._applied is None and self._adopt:
            self._adopt = False
            listing = await asyncio.to_thread(nft.listing, FAMILY, TABLE)
            if listing:
                script = render_adopt(rules, listing)
                try:
                    await asyncio.to_thread(nft.apply, script)
                    self._applied = script
                    return
                except Exception as e:  # written by something we cannot update: replace
                    log.info("replacing the proxy table left by an earlier run",
                             reason=str(e))
        script = render(rules) if self._applied is None else render_update(
            rules, self._applied)
        self._applied = None
        await asyncio.to_thread(nft.apply, script)
        self._applied = script

    async def cleanup(self) -> None:
        self._applied = None
        await asyncio.to_thread(nft.apply, cleanup_script())


class FakeBackend:
    def __init__(self) -> None:
        self.last: Ruleset | None = None
        self.syncs = 0
        self.cleaned = False
        self.changed = asyncio.Event()

    async def sync(self, rules: Ruleset) -> None:
        self.last = rules
        self.syncs += 1
        self.changed.set()

    async def cleanup(self) -> None:
        self.cleaned = True
        self.last = None


class Proxier:
    def __init__(self, client: ApiClient, node_name: str, backend: Backend, service_cidr: str,
                 *, sync_period: float = DEFAULT_SYNC_PERIOD,
                 min_sync_interval: float = DEFAULT_MIN_SYNC_INTERVAL,
                 clock: Clock | None = None, cluster_cidr: str = "",
                 conntrack: Conntrack | None = None,
                 health: HealthServer | None = None,
                 node_ips: Sequence[str] = ()) -> None:
        self.node_name = node_name
        self.node_ips = tuple(node_ips)
        self.conntrack = conntrack
        self.health = health
        self._synced: Ruleset | None = None
        self.cluster_cidr = cluster_cidr
        self.backend = backend
        self.service_cidr = service_cidr
        self.sync_period = sync_period
        self.min_sync_interval = min_sync_interval
        self.clock = clock or RealClock()
        self._informers = InformerSet(lambda resource: ApiListWatcher(client, resource),
                                      clock=self.clock)
        self._services = self._informers.informer(core_pb2.Service)
        self._slices = self._informers.informer(discovery_pb2.EndpointSlice)
        self._dirty = asyncio.Event()
        for inf in (self._services, self._slices):
            inf.add_event_handler(on_add=lambda _o: self._dirty.set(),
                                  on_update=lambda _o, _n: self._dirty.set(),
                                  on_delete=lambda _o: self._dirty.set())

    def current(self) -> Ruleset:
        rules = ruleset_from(self._services.indexer.list(), self._slices.indexer.list(),
                             self.service_cidr, self.node_name)
        return dataclasses.replace(rules, cluster_cidr=self.cluster_cidr)

    async def run(self) -> None:
        sup = Supervisor("proxy", clock=self.clock)
        self._informers.start(sup)
        try:
            await self._informers.wait_for_sync()
            while True:
                self._dirty.clear()
                await self._sync()
                await self.clock.sleep(self.min_sync_interval)
                try:
                    await wait_for(self.clock, self._dirty.wait(), self.sync_period)
                except TimeoutError:
                    pass
        finally:
            if self.health is not None:
                await self.health.close()
            await sup.stop()

    async def _sync(self) -> None:
        rules = self.current()
        try:
            await self.backend.sync(rules)
        except Exception as e:  # any failure: retried at the next tick
            log.warning("proxy sync failed; the previous rules stay", error=str(e))
            if self.health is not None:
                self.health.proxy_healthy = False
            return
        previous, self._synced = self._synced, rules
        if self.health is not None:
            self.health.proxy_healthy = True
            await self.health.sync(rules.health_checks)
        flows = stale_flows(previous, rules, self.node_ips)
        if flows and self.conntrack is not None:
            try:
                await self.conntrack.delete(flows)
            except Exception as e:  # the next change cleans again; a flow may linger
                log.warning("deleting stale UDP conntrack entries failed", error=str(e))


__all__ = ["Backend", "FakeBackend", "NftablesBackend", "Proxier"]
