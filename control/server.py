"""`flotilla server`: wires the store, the watch cache, the apiserver and (as later issues
add them) the scheduler, the controllers and an in-process agent.

Start order: open the store -> load the watch cache -> serve gRPC -> create the default
namespaces -> start the supervised background tasks (cache follower, bookmarks, store
maintenance) -> start the controller manager (unless ``disable`` has "controllers"). Stop
order is the reverse: stop the controllers, stop accepting calls (bounded grace), close the
watchers, stop the tasks, close the store (pending writes are finished, never dropped).

Concurrency: everything runs on one event loop; long-lived tasks belong to one Supervisor.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control.api import errors, kinds
from control.apiserver.metrics import ApiServerMetrics
from control.apiserver.node_proxy import NodeProxy
from control.apiserver.registry import Registry
from control.apiserver.service import SERVICE_NAME, ApiService
from control.apiserver.watchcache import WatchCache
from control.client.channel import SERVER_OPTIONS
from control.client.config import write_admin_conf
from control.controllers.manager import ControllerManager
from control.controllers.node_lifecycle_util import NodeLifecycleOptions
from control.runtime.metrics import Registry as MetricsRegistry
from control.runtime.supervisor import Supervisor
from control.store.interface import LogDamaged
from control.store.sqlite import SqliteStore

log = structlog.get_logger(component="server")

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class ServerOptions:
    data_dir: Path
    listen: str = "127.0.0.1:6443"
    # how many revisions of history the store keeps behind the newest (auto-compaction)
    retain_revisions: int = 100_000
    compaction_interval: float = 300.0
    event_ttl_seconds: int = 3600
    watch_cache_history: int = 10_000
    # --watch-cache-size-bytes: what the watch cache's event windows hold, all kinds together
    watch_cache_size_bytes: int = 256 * 1024 * 1024
    # --recover-to-last-good: open a log that lost acknowledged history, accepting the loss
    recover_to_last_good: bool = False
    # about how often an idle watcher hears a BOOKMARK (Kubernetes: about a minute)
    bookmark_interval: float = 60.0
    shutdown_grace: float = 5.0
    disable: set[str] = field(default_factory=set)
    # controllers of the controller manager not to run (as --controllers=-NAME would)
    disable_controllers: set[str] = field(default_factory=set)
    # --scheduler-config: profiles and plugins of the in-process scheduler (None: defaults)
    scheduler_config: str | None = None
    # HOST:PORT serving Prometheus metrics at /metrics (None: not served)
    metrics_listen: str | None = None
    # node lifecycle (kube-controller-manager's flags and defaults)
    node_monitor_grace_period: float = 50.0
    pod_eviction_timeout: float = 300.0
    node_eviction_rate: float = 0.1
    secondary_node_eviction_rate: float = 0.01
    large_cluster_size_threshold: int = 50
    unhealthy_zone_threshold: float = 0.55
    # pod GC: finished pods kept before the oldest are deleted (kube-controller-manager's)
    terminated_pod_gc_threshold: int = 12_500
    # node IPAM: the pod range of the cluster and the size of each node's share
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    # DefaultTolerationSeconds admission
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300

    def node_lifecycle(self) -> NodeLifecycleOptions:
        return NodeLifecycleOptions(
            node_monitor_grace_period=self.node_monitor_grace_period,
            pod_eviction_timeout=self.pod_eviction_timeout,
            node_eviction_rate=self.node_eviction_rate,
            secondary_node_eviction_rate=self.secondary_node_eviction_rate,
            large_cluster_size_threshold=self.large_cluster_size_threshold,
            unhealthy_zone_threshold=self.unhealthy_zone_threshold)


class StartRefused(Exception):
    """The control plane will not start on this data directory (the message says why and
    what the operator can do)."""


class ControlPlane:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.address = ""
        self.supervisor = Supervisor("server")
        self._server: grpc.aio.Server | None = None
        self.store: SqliteStore | None = None
        self.cache: WatchCache | None = None
        self.registry: Registry | None = None
        self.controllers: ControllerManager | None = None
        self.scheduler: Any = None  # control.scheduler.scheduler.Scheduler when enabled
        # one metrics registry per component, all served at --metrics-listen
        self.apiserver_metrics = ApiServerMetrics()
        self.controller_metrics = MetricsRegistry()
        self.metrics: Any = None
        self.metrics_port = 0
        self._stopped = asyncio.Event()

    async def start(self) -> str:
        """Start everything; returns the address the API listens on (host:port)."""
        opts = self.options
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.store = await SqliteStore.open(
                opts.data_dir / "state.db", recover_to_last_good=opts.recover_to_last_good)
        except LogDamaged as e:
            raise StartRefused(e.describe(
                "start `flotilla server` with --recover-to-last-good")) from None
        self.cache = WatchCache(self.store, history=opts.watch_cache_history,
                                bookmark_interval=opts.bookmark_interval,
                                size_bytes=opts.watch_cache_size_bytes)
        await self.cache.load()
        self.registry = Registry(self.store, self.cache)
        self.registry.admission.event_ttl_seconds = opts.event_ttl_seconds
        self.registry.admission.default_not_ready_toleration_seconds = (
            opts.default_not_ready_toleration_seconds)
        self.registry.admission.default_unreachable_toleration_seconds = (
            opts.default_unreachable_toleration_seconds)

        sup = self.supervisor
        cache, store = self.cache, self.store
        sup.start("watch-cache", cache.run)
        sup.start("watch-cache-history", cache.load_history, restart=False)
        sup.start("watch-bookmarks", cache.run_bookmarks)
        sup.start("store-leases", store.run_lease_expiry)
        sup.start("store-maintenance", lambda: store.run_maintenance(
            opts.compaction_interval, opts.retain_revisions))

        server = grpc.aio.server(options=SERVER_OPTIONS)
        proxy = NodeProxy(self.registry)  # logs and exec: forwarded to the pod's agent
        server.add_generic_rpc_handlers(
            (ApiService(self.registry, logs=proxy.logs, exec_=proxy.exec,
                        metrics=self.apiserver_metrics).handler(),))
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        host = opts.listen.rpartition(":")[0]
        try:
            bound = server.add_insecure_port(opts.listen)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {opts.listen}: {e}") from None
        if bound == 0:
            raise OSError(f"cannot listen on {opts.listen} (address in use?)")
        await server.start()
        self._server = server
        self.address = f"{host or '127.0.0.1'}:{bound}"
        await self._bootstrap()
        if "controllers" not in opts.disable:
            # A client of our own API like any other (the one rule of data flow).
            self.controllers = ControllerManager.connect(
                self.address, node_lifecycle=opts.node_lifecycle(),
                disable=opts.disable_controllers,
                terminated_pod_gc_threshold=opts.terminated_pod_gc_threshold,
                cluster_cidr=opts.cluster_cidr, node_cidr_mask_size=opts.node_cidr_mask_size,
                registry=self.controller_metrics)
            await self.controllers.start()
        if "scheduler" not in opts.disable:
            # The scheduler is an API client too.
            from control.scheduler.scheduler import Scheduler, load_config
            self.scheduler = Scheduler.connect(self.address, load_config(opts.scheduler_config))
            await self.scheduler.start()
        if opts.metrics_listen:
            await self._serve_metrics(opts.metrics_listen)
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        write_admin_conf(opts.data_dir, self.address)
        log.info("control plane serving", address=self.address, data_dir=str(opts.data_dir),
                 revision=self.store.revision)
        return self.address

    async def _serve_metrics(self, listen: str) -> None:
        from control.runtime.metrics_http import MetricsServer

        sources = [self.apiserver_metrics.registry.render, self.controller_metrics.render]
        if self.scheduler is not None:
            sources.append(self.scheduler.metrics.render)
        self.metrics = MetricsServer(sources)
        host, _, port = listen.rpartition(":")
        self.metrics_port = await self.metrics.start(host or "127.0.0.1", int(port))

    async def _bootstrap(self) -> None:
        assert self.registry is not None
        info = kinds.by_resource("namespaces")
        for name in DEFAULT_NAMESPACES:
            ns: Any = info.message()
            ns.metadata.name = name
            try:
                await self.registry.create(info, "", ns)
            except errors.AlreadyExists:
                pass

    async def wait(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        log.info("control plane stopping")
        if self.metrics is not None:
            await self.metrics.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.controllers is not None:
            # first: they are API clients, and would only log the server going away
            await self.controllers.stop()
        if self.cache is not None:
            self.cache.close_all()
        if self._server is not None:
            await self._server.stop(self.options.shutdown_grace)
        await self.supervisor.stop(timeout=10)
        if self.store is not None:
            await self.store.close()
        self._stopped.set()
        log.info("control plane stopped")


__all__ = ["ControlPlane", "ServerOptions", "StartRefused"]
