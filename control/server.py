"""`flotilla server`: wires the store, the watch cache, the apiserver and (as later issues
add them) the scheduler, the controllers and an in-process agent.

Start order: load or create the PKI (``DATA_DIR/pki``) -> open the store -> load the watch
cache -> serve gRPC on two TLS ports (the API, ``--listen``, requires a client certificate
of the cluster CA; the supervisor port, 9345 by default, takes bearer tokens and serves the
CA bundle to joining agents; the ``kubernetes`` Service points there, for pods' tokens) -> create the default namespaces, the default StorageClass
``local-path`` (unless ``disable`` has "local-storage") and the ``cluster-info`` CA
bundle -> start the supervised background tasks (cache follower, bookmarks, store
maintenance) -> start the controller manager (unless ``disable`` has "controllers"). Stop
order is the reverse: stop the controllers, stop accepting calls (bounded grace), close the
watchers, stop the tasks, close the store (pending writes are finished, never dropped).

Concurrency: everything runs on one event loop; long-lived tasks belong to one Supervisor.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control.api import errors, kinds, storageutil
from control.apiserver import (
    authn,
    encryption,
    encryption_config,
    encryption_reload,
    jws,
    rbac_bootstrap,
    satoken,
)
from control.apiserver.apf import DEFAULT_QUEUE_WAIT_TIMEOUT, PriorityAndFairness
from control.apiserver.certs import (
    ServerPki,
    advertised_host,
    host_addresses,
    join_host_port,
)
from control.apiserver.connfront import (
    ConnectionFront,
    ConnectionGate,
    ConnectionLimits,
    NodeAddresses,
)
from control.apiserver.flowcontrol import Admission, RequestInfo
from control.apiserver.inflight import (
    DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
    DEFAULT_MAX_REQUESTS_INFLIGHT,
    InflightLimiter,
)
from control.apiserver.kubernetes_service import (
    KubernetesServiceKeeper,
    check_advertise_address,
    default_advertise_address,
)
from control.apiserver.metrics import ApiServerMetrics
from control.apiserver.node_proxy import NodeProxy
from control.apiserver.registry import Registry
from control.apiserver.satoken import DEFAULT_ISSUER
from control.apiserver.service import SERVICE_NAME, ApiService
from control.apiserver.service_alloc import (
    DEFAULT_NODE_PORT_RANGE,
    DEFAULT_SERVICE_CIDR,
    ServiceAllocator,
)
from control.apiserver.watchcache import UndecodableValue, WatchCache
from control.client import pki, tokens
from control.client.channel import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTION_IDLE,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_STREAMS_PER_CONNECTION,
    add_secure_port,
    server_options,
)
from control.client.config import DEFAULT_SUPERVISOR_PORT, write_admin_conf
from control.client.tls import Credentials
from control.controllers.manager import ControllerManager
from control.controllers.node_lifecycle_util import NodeLifecycleOptions
from control.runtime.cert_rotation import CertificateRotation
from control.runtime.metrics import Registry as MetricsRegistry
from control.runtime.supervisor import Supervisor
from control.store.interface import LogDamaged, Store
from control.store.sqlite import SqliteStore
from control.store.transformed import TransformedStore, TransformError, no_transformer

log = structlog.get_logger(component="server")

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# connections the front admits when only a per-source limit is given
DEFAULT_FRONT_MAX_CONNECTIONS = 4096
# how often the allocation bitmaps are checked against the Services (Kubernetes: 3 minutes)
SERVICE_REPAIR_INTERVAL = 180.0


@dataclass
class ServerOptions:
    data_dir: Path
    listen: str = "127.0.0.1:6443"
    # the join port (TLS without client certificates: bearer tokens, the CA bundle);
    # None: 9345, or a free port when ``listen`` asks for one (port 0)
    supervisor_port: int | None = None
    # more names and addresses for the serving certificate (--tls-san)
    tls_sans: list[str] = field(default_factory=list)
    # Kubernetes' --token-auth-file (static bearer tokens, CSV)
    token_auth_file: Path | None = None
    # service account tokens: the signing key (None: DATA_DIR/pki/service-account.key, made
    # at first start), more trusted public keys, the issuers (the first signs) and the
    # audiences a token must name to reach the API (empty: the first issuer)
    service_account_signing_key_file: Path | None = None
    service_account_key_files: list[Path] = field(default_factory=list)
    service_account_issuers: list[str] = field(default_factory=lambda: [DEFAULT_ISSUER])
    api_audiences: list[str] = field(default_factory=list)
    # the longest token TokenRequest issues (--service-account-max-token-expiration; None:
    # as asked, up to 2^32 s); longer requests are cut to it, as Kubernetes does
    service_account_max_token_expiration: float | None = None
    # the longest certificate the CSR signer issues (--cluster-signing-duration, 1 year)
    cluster_signing_duration: float = 365 * 24 * 3600.0
    # the serving certificate's and in-process identities' lifetime (one year)
    serving_cert_lifetime: float = 365 * 24 * 3600.0
    # how many revisions of history the store keeps behind the newest (auto-compaction)
    retain_revisions: int = 100_000
    compaction_interval: float = 300.0
    event_ttl_seconds: int = 3600
    watch_cache_history: int = 10_000
    # --watch-cache-size-bytes: what the watch cache's event windows hold, all kinds together
    watch_cache_size_bytes: int = 256 * 1024 * 1024
    # --max-request-bytes: the largest request accepted (checked before decoding)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # connections: closed when the TLS handshake is not done within handshake_timeout, sent
    # away after max_connection_idle without a call; at most max_connections (None: any)
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_connection_idle: float = DEFAULT_MAX_CONNECTION_IDLE
    max_connections: int | None = None
    # --max-connections-per-source: at most this many connections from one address, and
    # --reserved-connections of max_connections (default 4096) kept for loopback and the
    # Nodes' addresses; a connection front then owns the API's address (None: no front)
    max_connections_per_source: int | None = None
    # --http2-max-streams-per-connection: calls open at once on one connection (0: any)
    http2_max_streams_per_connection: int = DEFAULT_MAX_STREAMS_PER_CONNECTION
    reserved_connections: int | None = None
    # --max-requests-inflight / --max-mutating-requests-inflight (0: unlimited)
    max_requests_inflight: int = DEFAULT_MAX_REQUESTS_INFLIGHT
    max_mutating_requests_inflight: int = DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT
    # --enable-priority-and-fairness: the two limits above together are the seats that
    # priority levels share (off: each limit alone, no queues, no levels)
    enable_priority_and_fairness: bool = True
    # the longest a request waits in its priority level's queue before TooManyRequests
    apf_queue_wait_timeout: float = DEFAULT_QUEUE_WAIT_TIMEOUT
    # --encryption-provider-config: an EncryptionConfiguration (None: values stored as is)
    encryption_provider_config: Path | None = None
    # --encryption-provider-config-automatic-reload: follow the file without a restart,
    # checking it this often (seconds)
    encryption_provider_config_automatic_reload: bool = False
    encryption_config_reload_interval: float = 60.0
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
    # Services: the virtual IP range, the node port range, and the address pods reach the
    # apiserver at (the kubernetes Service's endpoint; None: this machine's InternalIP)
    service_cluster_ip_range: str = DEFAULT_SERVICE_CIDR
    service_node_port_range: str = DEFAULT_NODE_PORT_RANGE
    advertise_address: str | None = None
    # cluster DNS: its zone, and HOST:PORT it listens on (None: the advertised address, port
    # 53 as root, else 10053); ``disable`` with "dns" does not run it
    cluster_domain: str = "cluster.local"
    dns_listen: str | None = None
    # where the names outside the cluster go: this file's nameservers
    dns_resolv_conf: Path = Path("/etc/resolv.conf")

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
        self.address = ""  # what in-process clients dial
        self.advertised = ""  # what admin.conf says (a real address for a wildcard listen)
        self.supervisor_address = ""
        self.pki: ServerPki | None = None
        self.admin_credentials = Credentials()
        # renewed serving certificates waiting for the next handshake, per port
        self._pending: dict[str, grpc.ServerCertificateConfiguration] = {}
        # the join token made at first start (None on later starts: DATA_DIR/token has it)
        self.first_token: str | None = None
        self.supervisor = Supervisor("server")
        self._server: grpc.aio.Server | None = None
        # the API port's connection gate (only with a per-source limit)
        self.front: ConnectionFront | None = None
        self.store: SqliteStore | None = None
        self.cache: WatchCache | None = None
        self.registry: Registry | None = None
        self.kubernetes_service: KubernetesServiceKeeper | None = None
        self.controllers: ControllerManager | None = None
        self.scheduler: Any = None  # control.scheduler.scheduler.Scheduler when enabled
        # one metrics registry per component, all served at --metrics-listen
        self.apiserver_metrics = ApiServerMetrics()
        self.controller_metrics = MetricsRegistry()
        self.metrics: Any = None
        self.metrics_port = 0
        self._stopped = asyncio.Event()
        self.dns: Any = None
        # renews the in-process components' client certificates
        self.rotation: CertificateRotation | None = None
        self.dns_cluster_ip = ""

    async def start(self) -> str:
        """Start everything; returns the address the API listens on (host:port)."""
        opts = self.options
        front_limits = self._connection_limits()
        encryption_cfg = None
        encryption_digest = None
        if opts.encryption_provider_config is not None:
            encryption_digest = encryption_reload.file_digest(opts.encryption_provider_config)
            try:  # first: a bad file starts nothing
                encryption_cfg = encryption_config.load(opts.encryption_provider_config)
            except encryption_config.ConfigError as e:
                raise StartRefused(f"--encryption-provider-config: {e}") from None
        try:
            advertise = (check_advertise_address(opts.advertise_address)
                         if opts.advertise_address is not None else default_advertise_address())
        except ValueError as e:
            raise StartRefused(str(e)) from None
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        host = opts.listen.rpartition(":")[0].strip("[]")
        static_tokens = (authn.parse_token_file(opts.token_auth_file)
                         if opts.token_auth_file else {})
        wildcard = host in ("", "0.0.0.0", "::")
        addresses = await asyncio.to_thread(host_addresses) if wildcard else []
        self.pki = await asyncio.to_thread(
            ServerPki.load, opts.data_dir / "pki", [host or "0.0.0.0"], opts.tls_sans,
            addresses, datetime.timedelta(seconds=opts.serving_cert_lifetime))
        try:
            sa_key, sa_trusted = await asyncio.to_thread(
                satoken.load_or_create_keys, opts.data_dir / "pki",
                opts.service_account_signing_key_file, opts.service_account_key_files)
        except jws.JwsError as e:
            raise StartRefused(f"service account keys: {e}") from None
        if not opts.service_account_issuers:
            raise StartRefused("--service-account-issuer: at least one issuer is needed")
        try:
            self.store = await SqliteStore.open(
                opts.data_dir / "state.db", recover_to_last_good=opts.recover_to_last_good)
        except LogDamaged as e:
            raise StartRefused(e.describe(
                "start `flotilla server` with --recover-to-last-good")) from None
        # what the apiserver reads and writes through: values encrypted per resource at
        # this one boundary, so the watch cache, paging and history all see plain objects
        store: Store = self.store
        # without a configuration, writes go to the store as they are (no wrapper) and
        # only the watch cache's reads check that nothing is encrypted (a configuration
        # dropped: an error naming the object instead of garbage)
        cache_store: Store = TransformedStore(self.store, no_transformer,
                                              encryption.refuse_encrypted)
        transformed: TransformedStore | None = None
        if encryption_cfg is not None:
            transform_metrics = encryption.TransformMetrics(self.apiserver_metrics.registry)
            store = cache_store = transformed = TransformedStore(
                self.store, encryption.transformer_resolver(encryption_cfg,
                                                            metrics=transform_metrics),
                encryption.refuse_encrypted)
            log.info("encryption at rest", config=str(opts.encryption_provider_config),
                     encrypted=encryption.encrypted_resources(encryption_cfg))
        self.cache = WatchCache(cache_store, history=opts.watch_cache_history,
                                bookmark_interval=opts.bookmark_interval,
                                size_bytes=opts.watch_cache_size_bytes)
        try:
            await self.cache.load()
        except UndecodableValue as e:
            await self.store.close()
            raise StartRefused(
                f"refusing to start: a stored object is damaged: {e.key}: {e.reason}; "
                f"restore {opts.data_dir / 'state.db'} from a backup") from None
        except TransformError as e:
            await self.store.close()
            given = (f"with --encryption-provider-config {opts.encryption_provider_config}"
                     if encryption_cfg is not None else "without --encryption-provider-config")
            raise StartRefused(f"refusing to start: a stored object cannot be read {given}: "
                               f"{e.key}: {e.reason}") from None
        if transformed is not None and transformed.stale_count():
            log.info("objects stored with an old key or provider; `flotilla secrets "
                     "reencrypt` rewrites them", objects=transformed.stale_count())
        self.registry = Registry(store, self.cache,
                                 stale=transformed.stale if transformed is not None else None)
        self.registry.admission.event_ttl_seconds = opts.event_ttl_seconds
        self.registry.admission.default_not_ready_toleration_seconds = (
            opts.default_not_ready_toleration_seconds)
        self.registry.admission.default_unreachable_toleration_seconds = (
            opts.default_unreachable_toleration_seconds)
        try:
            allocator = ServiceAllocator(store, opts.service_cluster_ip_range,
                                         opts.service_node_port_range)
        except ValueError as e:
            await self.store.close()
            raise StartRefused(f"--service-cluster-ip-range / --service-node-port-range: {e}"
                               ) from None
        self.registry.services = allocator
        await allocator.repair(co.obj for co in self.cache.scan("services"))

        sup = self.supervisor
        cache, sqlite = self.cache, self.store
        sup.start("watch-cache", cache.run)
        sup.start("watch-cache-history", cache.load_history, restart=False)
        sup.start("watch-bookmarks", cache.run_bookmarks)
        sup.start("store-leases", sqlite.run_lease_expiry)
        sup.start("store-maintenance", lambda: sqlite.run_maintenance(
            opts.compaction_interval, opts.retain_revisions))
        sup.start("service-allocation-repair", lambda: self._repair_loop(allocator))
        if (transformed is not None and opts.encryption_provider_config is not None
                and opts.encryption_provider_config_automatic_reload):
            sup.start("encryption-config-reload", encryption_reload.EncryptionConfigReloader(
                opts.encryption_provider_config, transformed, self.apiserver_metrics.registry,
                encryption_digest, metrics=transform_metrics,
                interval=opts.encryption_config_reload_interval).run)

        server = grpc.aio.server(options=server_options(
            opts.max_request_bytes, handshake_timeout=opts.handshake_timeout,
            max_connection_idle=opts.max_connection_idle,
            max_connections=opts.max_connections,
            max_streams_per_connection=opts.http2_max_streams_per_connection))
        # logs and exec: forwarded to the pod's agent, as kube-apiserver-kubelet-client
        kubelet_client = self.pki.client(authn.APISERVER_KUBELET_CLIENT, [authn.MASTERS])
        proxy = NodeProxy(self.registry, credentials=kubelet_client)

        async def new_kubelet_client(creds: Credentials) -> None:
            proxy.credentials = creds  # the proxy dials each call: the next one uses it

        rotation = self.rotation = CertificateRotation(self.credentials)
        rotation.hold("node-proxy", authn.APISERVER_KUBELET_CLIENT, [authn.MASTERS],
                      kubelet_client, new_kubelet_client)
        sup.start("component-certificates", rotation.run)
        registry = self.registry

        def lookup(resource: str, namespace: str, name: str) -> Any:
            try:
                return registry.lookup(kinds.by_resource(resource), namespace, name).obj
            except errors.NotFound:
                return None

        def bootstrap_secret(token_id: str) -> Any:
            return lookup("secrets", "kube-system", authn.BOOTSTRAP_SECRET_PREFIX + token_id)

        sa_tokens = satoken.TokenAuthenticator(
            sa_trusted, opts.service_account_issuers, opts.api_audiences, lookup)
        authenticator = authn.Authenticator(static_tokens=static_tokens,
                                            bootstrap_secret=bootstrap_secret,
                                            service_account_tokens=sa_tokens.authenticate)
        max_seconds = opts.service_account_max_token_expiration
        token_issuer = satoken.TokenIssuer(
            sa_key, opts.service_account_issuers[0], sa_tokens.audiences,
            max_expiration_seconds=int(max_seconds) if max_seconds else None)
        server.add_generic_rpc_handlers((ApiService(
            self.registry, logs=proxy.logs, exec_=proxy.exec,
            metrics=self.apiserver_metrics, authenticator=authenticator,
            admission=self._admission(),
            token_issuer=token_issuer).handler(),))
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        # dynamic credentials: a renewed serving certificate is served from the next
        # handshake on (gRPC asks the fetchers before each one)
        mutual = grpc.dynamic_ssl_server_credentials(
            self._certificate(True), lambda: self._pending.pop("api", None),  # type: ignore[arg-type]
            require_client_authentication=True)
        backend = opts.data_dir / "api.sock"
        if front_limits is None:
            bound = add_secure_port(server, opts.listen, mutual, "the API")
        else:
            # gRPC serves the API on a Unix socket; the front owns the listen address
            backend.unlink(missing_ok=True)
            add_secure_port(server, f"unix:{backend}", mutual, "the API behind the front")
        sup_port = opts.supervisor_port
        if sup_port is None:
            sup_port = 0 if opts.listen.endswith(":0") else DEFAULT_SUPERVISOR_PORT
        plain = grpc.dynamic_ssl_server_credentials(
            self._certificate(False),
            lambda: self._pending.pop("supervisor", None),  # type: ignore[arg-type]
            require_client_authentication=False)
        sup_bound = add_secure_port(server, join_host_port(host or "0.0.0.0", sup_port),
                                    plain, "the supervisor port")
        sup.start("serving-certificate", self._renew_serving)
        await server.start()
        self._server = server
        if front_limits is not None:
            cache = self.cache
            gate = ConnectionGate(front_limits, NodeAddresses(
                lambda: (co.obj for co in cache.scan("nodes")),
                lambda: cache.generation("nodes")))
            self.front = ConnectionFront(gate, backend)
            try:
                bound = await self.front.start(host, int(opts.listen.rpartition(":")[2]))
            except OSError as e:
                raise OSError(f"the API cannot listen on {opts.listen}: {e}") from None
        self.advertised = advertised_host(host, addresses)
        local = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        self.address = join_host_port(local, bound)
        self.supervisor_address = join_host_port(self.advertised, sup_bound)
        await self._bootstrap()
        await self._publish_cluster_info(join_host_port(self.advertised, bound))
        await self._first_join_token()
        if not advertise:
            log.warning("this machine has no address pods can reach (no default route); the "
                        "kubernetes Service gets no endpoint: give --advertise-address")
        # pods authenticate with bearer tokens (their ServiceAccount's), which only the
        # supervisor port can take: gRPC's Python server either requires a client
        # certificate or never asks for one, so the API port cannot take both
        self.kubernetes_service = KubernetesServiceKeeper(
            self.registry, allocator.ips.value(0), advertise, sup_bound)
        await self.kubernetes_service.sync()
        sup.start("kubernetes-service", self.kubernetes_service.run)
        if "controllers" not in opts.disable:
            # A client of our own API like any other (the one rule of data flow).
            creds = self.credentials(authn.CONTROLLER_MANAGER)
            self.controllers = ControllerManager.connect(
                self.address, creds,
                node_lifecycle=opts.node_lifecycle(),
                # the built-in service load balancer is a component of its own to disable
                disable=opts.disable_controllers | ({"servicelb"} & opts.disable)
                | ({"local-path-provisioner"} if "local-storage" in opts.disable else set()),
                terminated_pod_gc_threshold=opts.terminated_pod_gc_threshold,
                cluster_cidr=opts.cluster_cidr, node_cidr_mask_size=opts.node_cidr_mask_size,
                registry=self.controller_metrics, signer=self.pki.ca,
                signing_duration=datetime.timedelta(seconds=opts.cluster_signing_duration))
            rotation.hold_client("controller-manager", authn.CONTROLLER_MANAGER, [], creds,
                                 self.controllers.client, self.address)
            await self.controllers.start()
        if "scheduler" not in opts.disable:
            # The scheduler is an API client too.
            from control.scheduler.scheduler import Scheduler, load_config
            creds = self.credentials(authn.SCHEDULER)
            self.scheduler = Scheduler.connect(self.address, creds,
                                               load_config(opts.scheduler_config))
            rotation.hold_client("scheduler", authn.SCHEDULER, [], creds,
                                 self.scheduler.client, self.address)
            await self.scheduler.start()
        if "dns" not in opts.disable:
            await self._start_dns(advertise)
        if opts.metrics_listen:
            await self._serve_metrics(opts.metrics_listen)
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self.admin_credentials = self.credentials("admin", [authn.MASTERS])
        api = join_host_port(self.advertised, bound)
        write_admin_conf(opts.data_dir, api, self.admin_credentials,
                         servers=[api], supervisor=self.supervisor_address)
        log.info("control plane serving", address=api, supervisor=self.supervisor_address,
                 data_dir=str(opts.data_dir), revision=self.store.revision)
        return self.address

    def _connection_limits(self) -> ConnectionLimits | None:
        opts = self.options
        if opts.max_connections_per_source is None:
            return None
        total = opts.max_connections if opts.max_connections is not None else \
            DEFAULT_FRONT_MAX_CONNECTIONS
        reserved = opts.reserved_connections if opts.reserved_connections is not None \
            else total // 10
        try:
            return ConnectionLimits(total, opts.max_connections_per_source, reserved)
        except ValueError as e:
            raise StartRefused(f"--max-connections / --max-connections-per-source / "
                               f"--reserved-connections: {e}") from None

    def _admission(self) -> Admission | None:
        """Priority and fairness, or the plain max-in-flight filter when it is off (as
        kube-apiserver: then watches are not limited); None when both limits are 0."""
        opts, cache = self.options, self.cache
        assert cache is not None
        seats = opts.max_requests_inflight + opts.max_mutating_requests_inflight
        if not opts.enable_priority_and_fairness:
            return InflightLimiter(opts.max_requests_inflight,
                                   opts.max_mutating_requests_inflight, self.apiserver_metrics)
        if opts.max_requests_inflight == 0 or opts.max_mutating_requests_inflight == 0:
            return None  # one of them unlimited: so is the sum

        def objects(req: RequestInfo) -> int:
            count = cache.count(req.resource, req.namespace)
            return min(count, req.limit) if req.limit > 0 else count

        return PriorityAndFairness(seats, queue_wait_timeout=opts.apf_queue_wait_timeout,
                                   registry=self.apiserver_metrics.registry,
                                   estimate_objects=objects)

    def _certificate(self, client_certificates: bool) -> grpc.ServerCertificateConfiguration:
        assert self.pki is not None
        pair = [(self.pki.serving.key_pem, self.pki.serving_chain())]
        return grpc.ssl_server_certificate_configuration(
            pair, root_certificates=self.pki.ca_pem if client_certificates else None)

    async def _renew_serving(self) -> None:
        """Renew the serving certificate when a third of its life is left; both ports
        serve the new one from their next handshake, no restart."""
        assert self.pki is not None
        while True:
            await asyncio.sleep(self.pki.serving_renewal_delay(pki.now()))
            await asyncio.to_thread(self.pki.renew_serving)
            self._pending["api"] = self._certificate(True)
            self._pending["supervisor"] = self._certificate(False)
            log.info("serving certificate renewed",
                     expires=pki.load_cert(self.pki.serving.cert_pem)
                     .not_valid_after_utc.isoformat())

    def credentials(self, user: str, groups: list[str] | None = None) -> Credentials:
        """A client identity issued by the cluster CA (in-process components, tests)."""
        assert self.pki is not None, "start() first"
        return self.pki.client(user, groups or [])

    def node_identity(self, node_name: str, addresses: list[str]) -> tuple[Credentials,
                                                                           pki.Issued]:
        """A node's client identity and its port's serving certificate, issued directly
        (``--with-agent`` and tests: no token, no CSR)."""
        assert self.pki is not None, "start() first"
        creds = self.credentials(authn.NODE_PREFIX + node_name, [authn.NODES])
        dns, ips = pki.split_sans([node_name, *addresses])
        serving = self.pki.ca.issue(authn.NODE_PREFIX + node_name, [authn.NODES],
                                    server=True, dns=dns, ips=ips)
        return creds, serving

    async def _first_join_token(self) -> None:
        """First start: a join token that does not expire (k3s' server token), written to
        DATA_DIR/token (0600); delete its Secret to revoke it."""
        assert self.registry is not None and self.pki is not None
        path = self.options.data_dir / "token"
        if path.exists():
            return
        token_id, secret = tokens.generate()
        await self.registry.create(kinds.by_resource("secrets"), tokens.NAMESPACE,
                                   tokens.token_secret(token_id, secret,
                                                       description="made by flotilla server "
                                                                   "at first start"))
        self.first_token = tokens.secure_format(self.pki.ca_pem, token_id, secret)
        pki.write_private(path, (self.first_token + "\n").encode())

    async def _publish_cluster_info(self, api: str) -> None:
        """``kube-public/cluster-info``: the CA bundle and the API's address, readable
        without credentials (kubeadm's discovery ConfigMap); a joining agent checks the
        CA against its token's hash before trusting either."""
        assert self.registry is not None and self.pki is not None
        info = kinds.by_resource("configmaps")
        data = {"ca.crt": self.pki.ca_pem.decode(), "server": api,
                "supervisor": self.supervisor_address}
        try:
            current = self.registry.lookup(info, "kube-public", "cluster-info").obj
        except errors.NotFound:
            current = None
        if current is not None and dict(current.data) == data:
            return
        cm: Any = info.message()
        cm.metadata.name, cm.metadata.namespace = "cluster-info", "kube-public"
        cm.data.update(data)
        if current is None:
            await self.registry.create(info, "kube-public", cm)
        else:
            cm.metadata.resource_version = current.metadata.resource_version
            await self.registry.update(info, "kube-public", cm)

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
        # the default RBAC roles and bindings (Kubernetes' bootstrap policy)
        await rbac_bootstrap.reconcile(self.registry)
        if "local-storage" not in self.options.disable:
            await self._bootstrap_storage_class()

    async def _bootstrap_storage_class(self) -> None:
        """k3s' local-storage: the default StorageClass ``local-path`` of the local-path
        provisioner, created when absent and never changed afterwards (a user's edit, or
        their removal of the default annotation, stays; one they delete comes back at the
        next start unless the server runs with ``--disable local-storage``)."""
        assert self.registry is not None
        info = kinds.by_resource("storageclasses")
        cls: Any = info.message()
        cls.metadata.name = storageutil.DEFAULT_CLASS
        cls.metadata.annotations[storageutil.DEFAULT_CLASS_ANNOTATIONS[0]] = "true"
        cls.provisioner = storageutil.PROVISIONER
        cls.volume_binding_mode = "WaitForFirstConsumer"
        cls.reclaim_policy = "Delete"
        try:
            await self.registry.create(info, "", cls)
        except errors.AlreadyExists:
            pass

    async def _repair_loop(self, allocator: ServiceAllocator) -> None:
        while True:
            await asyncio.sleep(SERVICE_REPAIR_INTERVAL)
            assert self.cache is not None
            await self.cache.wait_fresh()
            await allocator.repair(co.obj for co in self.cache.scan("services"))

    async def wait(self) -> None:
        await self._stopped.wait()

    async def _start_dns(self, advertise: str) -> None:
        from control.dns.component import UNPRIVILEGED_PORT, ClusterDNS, DNSOptions
        from control.dns.kubedns import default_cluster_dns_ip

        opts = self.options
        if opts.dns_listen:
            host, _, port = opts.dns_listen.rpartition(":")
            host, dns_port = host.strip("[]"), int(port)
        else:
            # where the kube-dns Endpoints point: pods reach the server there (the API's
            # own address when it listens on one, and no default route names another)
            api_host = opts.listen.rpartition(":")[0].strip("[]")
            specific = api_host not in ("", "0.0.0.0", "::", "localhost") and \
                not api_host.startswith("127.")
            host = advertise or (api_host if specific else "127.0.0.1")
            dns_port = 53 if os.geteuid() == 0 else UNPRIVILEGED_PORT
        self.dns_cluster_ip = default_cluster_dns_ip(opts.service_cluster_ip_range)
        creds = self.credentials(authn.CLUSTER_DNS)
        self.dns = ClusterDNS.connect(
            self.address, creds,
            DNSOptions(host=host, port=dns_port, cluster_ip=self.dns_cluster_ip,
                       domain=opts.cluster_domain, resolv_conf=opts.dns_resolv_conf))
        if self.rotation is not None:
            self.rotation.hold_client("cluster-dns", authn.CLUSTER_DNS, [], creds,
                                      self.dns.client, self.address)
        await self.dns.start()

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        log.info("control plane stopping")
        if self.metrics is not None:
            await self.metrics.stop()
        if self.dns is not None:
            await self.dns.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.controllers is not None:
            # first: they are API clients, and would only log the server going away
            await self.controllers.stop()
        if self.kubernetes_service is not None:
            await self.kubernetes_service.release()
        if self.cache is not None:
            self.cache.close_all()
        if self._server is not None:
            await self._server.stop(self.options.shutdown_grace)
        if self.front is not None:
            await self.front.stop()
        await self.supervisor.stop(timeout=10)
        if self.rotation is not None:
            await self.rotation.close()
        if self.store is not None:
            await self.store.close()
        self._stopped.set()
        log.info("control plane stopped")


__all__ = ["ControlPlane", "ServerOptions", "StartRefused"]
