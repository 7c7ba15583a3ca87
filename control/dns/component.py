"""The cluster DNS as a control-plane component: an API client like the scheduler, with
Service and EndpointSlice informers feeding the catalog, the DNS server, and the keeper of the
``kube-dns`` Service. ``flotilla server`` starts it unless ``--disable dns``.

Start: informers, wait for their caches (answers never come from an empty cache), then the
server and the keeper as supervised tasks. A server that cannot bind (the port taken) is
retried with the supervisor's backoff and logged, the control plane keeps running.
Forwarding goes to the nameservers of ``resolv_conf`` read once at start, without the DNS'
own address and the kube-dns ClusterIP (which would loop back here).

Concurrency: one event loop; ``stop`` stops the tasks (server, keeper, informers) in reverse
order and closes the channel.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

from control.api.pb import core_pb2, discovery_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.credentials import Credentials
from control.client.listwatch import ApiListWatcher, ListWatcher
from control.dns.catalog import SERVICE_NAME_LABEL, InformerCatalog
from control.dns.forward import DEFAULT_TIMEOUT, Forwarder, upstreams_from_resolv_conf
from control.dns.kubedns import APISERVER_SERVICE, KubeDNSKeeper
from control.dns.resolver import DEFAULT_TTL, Zone
from control.dns.server import DNSServer
from control.runtime.informer import InformerSet
from control.runtime.supervisor import Supervisor

log = structlog.get_logger(component="cluster-dns")

# the DNS port without root (binding 53 needs CAP_NET_BIND_SERVICE)
UNPRIVILEGED_PORT = 10053


@dataclass
class DNSOptions:
    host: str
    port: int
    cluster_ip: str = "10.96.0.10"
    domain: str = "cluster.local"
    ttl: int = DEFAULT_TTL
    resolv_conf: Path = Path("/etc/resolv.conf")
    forward_timeout: float = DEFAULT_TIMEOUT
    sync_timeout: float = 30.0


class ClusterDNS:
    def __init__(self, client: ApiClient, options: DNSOptions) -> None:
        self.client = client
        self.options = options
        self.informers = InformerSet(self._list_watcher)
        self.supervisor = Supervisor("cluster-dns")
        self.server: DNSServer | None = None
        self.keeper: KubeDNSKeeper | None = None
        self._channel: grpc.aio.Channel | None = None

    @classmethod
    def connect(cls, address: str, credentials: Credentials,
                options: DNSOptions) -> ClusterDNS:
        channel = open_channel(address, credentials)
        dns = cls(ApiClient(channel, address), options)
        dns._channel = channel
        return dns

    def _list_watcher(self, resource: str) -> ListWatcher[Any]:
        return ApiListWatcher(self.client, resource)

    async def start(self) -> None:
        opts = self.options
        services = self.informers.informer(core_pb2.Service)
        slices = self.informers.informer(discovery_pb2.EndpointSlice)
        catalog = InformerCatalog(services, slices)
        self.informers.start(self.supervisor)
        if not await self.informers.wait_for_sync(opts.sync_timeout):
            await self.stop()
            raise TimeoutError(f"cluster DNS caches did not sync within {opts.sync_timeout} s")
        exclude = [opts.cluster_ip] + ([opts.host] if opts.port == 53 else [])
        try:
            text = opts.resolv_conf.read_text()
        except OSError as e:
            log.warning("no upstream resolvers: names outside the cluster get SERVFAIL",
                        path=str(opts.resolv_conf), error=e.strerror or str(e))
            text = ""
        upstreams = upstreams_from_resolv_conf(text, exclude=exclude)
        self.server = DNSServer(
            Zone(opts.domain, ttl=opts.ttl, serial=int(time.time())), catalog,
            Forwarder(upstreams, timeout=opts.forward_timeout), host=opts.host, port=opts.port)
        server = self.server
        self.keeper = KubeDNSKeeper(
            self.client, opts.cluster_ip, lambda: server.port,
            lambda: [e.ip for e in catalog.endpoints(*APISERVER_SERVICE) if e.ready],
            own_address=opts.host)
        keeper = self.keeper

        def on_slice(es: discovery_pb2.EndpointSlice) -> None:
            if (es.metadata.namespace, es.metadata.labels.get(SERVICE_NAME_LABEL)) == \
                    APISERVER_SERVICE:
                keeper.poke()

        slices.add_event_handler(on_add=on_slice, on_update=lambda _old, new: on_slice(new),
                                 on_delete=on_slice)
        self.supervisor.start("cluster-dns/server", server.run)
        if opts.port == 0:
            # the Endpoints name the bound port: any free one is known once bound
            try:
                await asyncio.wait_for(server.bound.wait(), opts.sync_timeout)
            except TimeoutError:
                log.warning("the cluster DNS could not bind yet",
                            address=f"{opts.host}:{opts.port}")
        self.supervisor.start("cluster-dns/kube-dns-service", keeper.run)

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - clock-measured
        await self.supervisor.stop(timeout)
        if self._channel is not None:
            # ours (connect made it): close the one the client uses now, which a
            # certificate renewal may have put in place of the first
            self._channel = None
            await self.client.channel.close(None)
