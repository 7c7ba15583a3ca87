"""`flotilla agent`'s wiring: one channel to the server, the node-side tasks under a Supervisor.

Owns the agent's lifecycle. :class:`Agent` reads the machine's facts, opens the one channel
(:func:`control.client.channel.open_channel`), opens the container runtime (the process
runtime unless one is injected), starts the agent's own gRPC server (logs, exec) on the
port that the Node advertises (``--daemon-port``, else the one its last run bound, else an
ephemeral one: :mod:`agent.daemon_port`), and supervises these named tasks: ``events`` (the
one Event writer: node status, probes and the kubelet record as source ``kubelet`` with the
node's name as host), ``node-status`` (registration, then status posts), ``node-lease``
(heartbeats), ``kubelet`` (the pods bound to this node: workers, probes, volumes,
status) and ``local-volumes`` (the reclaim of this node's local-path volumes under
``--volume-dir``). With ``--metrics-listen`` it serves the kubelet's metrics at ``/metrics``. Node
status and lease are independent on purpose: the Lease is the cheap heartbeat the control
plane watches, and it keeps beating while a status post is slow or retrying. With the
nftables proxy: ``proxy`` (the Service rules) on a client of its own, and
``proxy-certificate``, which gets it the ``system:kube-proxy`` certificate (asked for
with the node's identity; until then, or if nothing approves it, the proxy uses the
node's) and keeps it renewed.

:func:`run_agent` is the entry point used by the CLI and tests: start, wait for
``stop_event``, stop. Nothing here parses flags or configures logging (the CLI does), so
the agent also runs inside ``flotilla server --with-agent``.

Concurrency contract: one event loop; ``start`` and ``stop`` are called from one task;
``stop`` is idempotent and bounded by ``stop_timeout``.
"""

from __future__ import annotations

import asyncio
import datetime

import grpc
import structlog

from agent import certs, daemon_port
from agent.config import AgentOptions
from agent.images.registry import RegistryClient, RegistryConfig
from agent.images.service import ImageService, LocalImageService
from agent.images.store import Store
from agent.kubelet.container_spec import IMAGE_LABEL
from agent.kubelet.image_gc import GCPolicy, ImageGC
from agent.kubelet.kubelet import Kubelet, KubeletOptions
from agent.kubelet.lease import LeaseController
from agent.kubelet.local_volumes import LocalVolumeCleaner
from agent.kubelet.machine import MachineInfo, read_machine
from agent.kubelet.metrics import KubeletMetrics
from agent.kubelet.node_status import NodeStatusManager, allocatable, machine_capacity
from agent.kubelet.probes import ProbeManager
from agent.kubelet.volumes import VolumeManager
from agent.network.bridge import BridgeNetwork
from agent.network.node import NodeNetwork
from agent.proxy_identity import ProxyIdentity
from agent.runtime import linux
from agent.runtime.interface import Runtime
from agent.runtime.process import ProcessRuntime
from agent.server import AgentServer
from control.api import errors
from control.client import pki
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.credentials import Credentials
from control.runtime import Backoff, Clock, RealClock, Supervisor
from control.runtime.events import EventBroadcaster
from control.runtime.metrics_http import MetricsServer

log = structlog.get_logger(__name__)

# A task that fails outside the API's error handling (a bug) restarts after this backoff.
TASK_BACKOFF = Backoff(initial=1.0, max_delay=30.0, jitter=0.2)


class Agent:
    """One node's agent; see the module docstring."""

    def __init__(
        self,
        options: AgentOptions,
        *,
        clock: Clock | None = None,
        machine: MachineInfo | None = None,
        runtime: Runtime | None = None,
        kubelet_options: KubeletOptions | None = None,
        images: ImageService | None = None,
    ) -> None:
        options.validate()
        self.options = options
        self.clock = clock or RealClock()
        self._machine = machine
        self.runtime = runtime
        self.images = images
        self._own_images: LocalImageService | None = None
        self._kubelet_options = kubelet_options
        self.kubelet: Kubelet | None = None
        self.agent_server: AgentServer | None = None
        self.probes: ProbeManager | None = None
        self._supervisor: Supervisor | None = None
        self._client: ApiClient | None = None
        self.node_status: NodeStatusManager | None = None
        self.lease: LeaseController | None = None
        self.events: EventBroadcaster | None = None
        self.network: BridgeNetwork | None = None
        self.node_network: NodeNetwork | None = None
        self.metrics = KubeletMetrics()
        self.metrics_server: MetricsServer | None = None
        self.metrics_port = 0
        self.node_pki = certs.NodePki(options.data_dir / "pki")
        self.credentials: Credentials | None = None
        self.rotators: dict[str, certs.Rotator] = {}
        self._old_channels: list[grpc.aio.Channel] = []
        # the proxy's own client (its channel carries system:kube-proxy once issued)
        self.proxy_client: ApiClient | None = None
        self._log = log.bind(component="agent", node=options.node_name)

    async def start(self) -> None:
        opts = self.options
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        # Read before connecting: capacity must describe this machine, and a broken /proc
        # should fail start, not the first heartbeat.
        machine = self._machine or read_machine(opts.data_dir)
        api, creds, renewable = await self._identity()
        opts.server = api
        self.credentials = creds
        channel = open_channel(api, creds)
        self._client = ApiClient(channel, api, timeout=opts.request_timeout)
        host_reason = ""
        if self.runtime is None:
            self.network, host_reason = pod_network(opts)
            # state and cgroups under a per-node prefix: several agents may share a host
            # the data dir holds every pod's volumes (secrets included), the volume dir
            # every claim's data: hidden inside containers, which see only their own
            # volumes at their mount paths
            runtime = ProcessRuntime(opts.data_dir / "runtime",
                                     cgroup_prefix=f"flotilla/{opts.node_name}",
                                     mask_paths=(str(opts.data_dir),
                                                 str(opts.local_volume_dir), *opts.mask_paths),
                                     network=self.network)
            for line in runtime.isolation_report():
                self._log.warning("isolation off", detail=line)
            # leases and namespaces of sandboxes removed while no agent ran
            await runtime.reclaim_network()
            await runtime.reclaim_ipc()  # likewise IPC namespaces and /dev/shm mounts
            self.runtime = runtime
        else:
            host_reason = "the runtime has no pod network"
        self.node_network = NodeNetwork(self._client, opts.node_name, self.network,
                                        host_reason=host_reason, clock=self.clock)
        if self.images is None:
            store = Store(opts.data_dir / "images")
            await asyncio.to_thread(store.clear_tmp)
            self._own_images = LocalImageService(store, RegistryClient(RegistryConfig(
                mirrors=opts.registry_mirrors, insecure=frozenset(opts.insecure_registries))))
            self.images = self._own_images
        images = self.images
        self.events = EventBroadcaster(self._client, clock=self.clock)
        recorder = self.events.new_recorder("kubelet", opts.node_name)
        self.node_status = NodeStatusManager(self._client, opts, machine, clock=self.clock,
                                             recorder=recorder, images=images.list_images)
        status = self.node_status
        self.agent_server = AgentServer(self.runtime, node_name=opts.node_name)
        serving = opts.serving or self.node_pki.load_serving(self._serving_names(),
                                                            self._now())
        if serving is not None:
            await self._serve(serving)
        self.lease = LeaseController(self._client, opts, clock=self.clock,
                                     node_uid=lambda: status.node_uid,
                                     on_renewal=self._renewal_result)
        node_allocatable = allocatable(machine_capacity(machine, opts.max_pods),
                                       opts.system_reserved)
        kopts = self._kubelet_options or kubelet_options(opts)
        kopts.node_ip = status.node_ip
        kopts.allocatable = node_allocatable
        kopts.default_handler = opts.default_runtime_handler
        kopts.cluster_domain = opts.cluster_domain
        kopts.resolv_conf = opts.resolv_conf
        # pods on the host's network cannot reach the cluster DNS' Service address (and a
        # query to it there would leave the machine): they keep the host's resolvers
        kopts.cluster_dns = list(opts.cluster_dns) if self.network is not None else None
        self.probes = ProbeManager(self.runtime, self.clock, recorder=recorder)
        volumes = VolumeManager(self._client, kopts.data_dir / "pods", dict(node_allocatable),
                                node_name=opts.node_name, volume_dir=opts.local_volume_dir)
        cleaner = LocalVolumeCleaner(self._client, opts.node_name, opts.local_volume_dir,
                                     clock=self.clock, recorder=recorder)
        self.kubelet = Kubelet(self._client, self.runtime, opts.node_name, kopts, self.clock,
                               probes=self.probes, volumes=volumes, recorder=recorder,
                               images=images, metrics=self.metrics)
        runtime_ = self.runtime
        image_gc = ImageGC(images, lambda: images_in_use(runtime_), self.clock,
                           GCPolicy(high=opts.image_gc_high_threshold,
                                    low=opts.image_gc_low_threshold))
        if opts.metrics_listen:
            self.metrics_server = MetricsServer([self.metrics.render])
            host, _, port = opts.metrics_listen.rpartition(":")
            self.metrics_port = await self.metrics_server.start(host or "127.0.0.1", int(port))
        sup = Supervisor(f"agent/{opts.node_name}", clock=self.clock)
        self._supervisor = sup
        sup.start("events", self.events.run, backoff=TASK_BACKOFF)
        sup.start("node-status", status.run, backoff=TASK_BACKOFF)
        sup.start("node-lease", self.lease.run, backoff=TASK_BACKOFF)
        sup.start("kubelet", self.kubelet.run, backoff=TASK_BACKOFF)
        sup.start("pod-network", self.node_network.run, backoff=TASK_BACKOFF)
        sup.start("image-gc", image_gc.run, backoff=TASK_BACKOFF)
        sup.start("local-volumes", cleaner.run, backoff=TASK_BACKOFF)
        if proxy_mode(opts, self.network is not None) == "nftables":
            self._start_proxy(sup)
        if renewable:
            self._rotate_client(sup)
        if serving is None:
            sup.start("serving-certificate", self._serving_certificate, backoff=TASK_BACKOFF)
        elif opts.serving is None or opts.renew_credentials:
            self._rotate_serving(sup, serving.cert_pem)
        self._log.info(
            "agent started", server=opts.server, data_dir=str(opts.data_dir),
            node_ip=status.node_ip, cpus=machine.cpus, memory=machine.memory_bytes,
        )

    def _renewal_result(self, ok: bool) -> None:
        """The Lease is the node's contact with the API server: it drives fencing."""
        if self.kubelet is not None:
            if ok:
                self.kubelet.fence.contact()
            else:
                self.kubelet.fence.lost()

    async def stop(self, stop_timeout: float = 10.0) -> None:
        """Stop the tasks, then close the channel (in that order: no call on a closed one).
        Containers keep running: a restarted agent adopts them."""
        # the supervisor first: a kubelet stopped under it would look like a task that
        # exited unexpectedly (and be restarted); cancelling run() cleans up the same way
        if self._supervisor is not None:
            await self._supervisor.stop(stop_timeout)
            self._supervisor = None
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self.probes is not None:
            await self.probes.close()
            self.probes = None
        if self.agent_server is not None:
            await self.agent_server.stop()
            self.agent_server = None
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None
        if self.runtime is not None:
            await self.runtime.close()
        if self._own_images is not None:
            await self._own_images.aclose()
            self._own_images = None
            self.images = None
        for old in self._old_channels:
            await old.close(None)
        self._old_channels.clear()
        if self.proxy_client is not None:
            await self.proxy_client.channel.close(None)
            self.proxy_client = None
        if self._client is not None:
            await self._client.channel.close(None)
            self._client = None
            self._log.info("agent stopped")

    # -- identity ---------------------------------------------------------------------------

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.now(), datetime.UTC)

    async def _identity(self) -> tuple[str, Credentials, bool]:
        """(API address, client credentials, renewed by us?): given ones, else a stored
        earlier join, else a join with the token."""
        opts = self.options
        if opts.credentials is not None and certs.is_node_identity(opts.credentials,
                                                                   opts.node_name):
            return opts.server, opts.credentials, opts.renew_credentials
        stored = self.node_pki.load_client(self._now())
        if stored is not None:
            self._log.info("reusing the node's certificate", path=str(self.node_pki.config))
            return stored[0], stored[1], True
        if opts.credentials is not None and opts.credentials.cert_pem:
            # someone else's certificate (an administrator's admin.conf): it asks for this
            # node's own identity, which the agent then uses (and renews)
            return opts.server, await self._node_identity_from(opts.credentials), True
        if not opts.token:
            raise certs.JoinError(
                "this agent has no identity yet: join with --server <server>:9345 "
                "--token <token from `flotilla token create`>")
        api, creds = await certs.join(opts.server, opts.token, opts.node_name,
                                      self.node_pki, wait=opts.csr_timeout)
        return api, creds, True

    async def _node_identity_from(self, creds: Credentials) -> Credentials:
        opts = self.options
        if not creds.ca_pem:
            raise certs.JoinError("the agent's config carries no certificate authority")
        channel = open_channel(opts.server, creds)
        try:
            client = ApiClient(channel, opts.server, timeout=opts.request_timeout)
            try:
                return await certs.node_identity(client, opts.server, creds.ca_pem,
                                                 opts.node_name, self.node_pki,
                                                 wait=opts.csr_timeout)
            except errors.ApiError as e:
                raise certs.JoinError(f"cannot get node {opts.node_name}'s certificate with "
                                      f"{creds.identity()}: {e.message or e.reason}") from None
        finally:
            await channel.close(None)

    def _rotate_client(self, sup: Supervisor) -> None:
        assert self.credentials is not None and self.credentials.cert_pem
        opts = self.options

        async def renew(key: pki.PrivateKey) -> bytes:
            assert self._client is not None
            return await certs.request_certificate(
                self._client, key, opts.node_name, certs.CLIENT_SIGNER,
                ["digital signature", "client auth"], wait=opts.csr_timeout)

        async def installed(cert_pem: bytes, key_pem: bytes) -> None:
            assert self._client is not None and self.credentials is not None
            self.credentials = Credentials(ca_pem=self.credentials.ca_pem,
                                           cert_pem=cert_pem, key_pem=key_pem)
            # new calls use the new certificate; streams on the old channel end when it
            # closes (at the next rotation or at stop) and resume on the new one
            old = self._client.use_channel(open_channel(opts.server, self.credentials))
            for stale in self._old_channels:
                await stale.close(None)
            self._old_channels = [old]

        rot = certs.Rotator("client", self.credentials.cert_pem, renew, installed,
                            cert_path=self.node_pki.client_cert,
                            key_path=self.node_pki.client_key, clock=self.clock)
        self.rotators["client"] = rot
        sup.start("client-certificate", rot.run, backoff=TASK_BACKOFF)

    # -- the proxy's identity ---------------------------------------------------------------

    def _start_proxy(self, sup: Supervisor) -> None:
        """The proxy on a client of its own, moved to ``system:kube-proxy`` by
        :class:`agent.proxy_identity.ProxyIdentity`."""
        from agent.proxy.conntrack import ConntrackCli
        from agent.proxy.healthcheck import HealthServer
        from agent.proxy.proxier import NftablesBackend, Proxier
        opts = self.options
        assert self.credentials is not None
        self.proxy_client = ApiClient(open_channel(opts.server, self.credentials), opts.server,
                                      timeout=opts.request_timeout)
        proxier = Proxier(self.proxy_client, opts.node_name, NftablesBackend(),
                          opts.service_cidr, sync_period=opts.proxy_sync_period,
                          clock=self.clock, cluster_cidr=opts.cluster_cidr,
                          conntrack=ConntrackCli(), health=HealthServer(),
                          node_ips=[self.node_status.node_ip]
                          if self.node_status is not None and self.node_status.node_ip
                          else [])
        sup.start("proxy", proxier.run, backoff=TASK_BACKOFF)
        assert self._client is not None
        identity = ProxyIdentity(self._client, self.proxy_client, server=opts.server,
                                 ca_pem=self._client_ca(), node_name=opts.node_name,
                                 node_pki=self.node_pki, clock=self.clock,
                                 csr_timeout=opts.csr_timeout)
        sup.start("proxy-certificate", identity.run, backoff=TASK_BACKOFF)

    def _serving_names(self) -> list[str]:
        assert self.options.node_name
        names = [self.options.node_name]
        if self.node_status is not None:
            names.append(self.node_status.node_ip)
        elif self.options.node_ip:
            names.append(self.options.node_ip)
        return names

    def _client_ca(self) -> bytes:
        assert self.credentials is not None
        if not self.credentials.ca_pem:
            raise certs.JoinError("the agent's credentials carry no cluster CA to check the "
                                  "apiserver's certificate against")
        return self.credentials.ca_pem

    async def _serve(self, serving: pki.Issued) -> None:
        assert self.agent_server is not None and self.node_status is not None
        opts = self.options
        host = opts.daemon_listen or self.node_status.node_ip
        # a port of our own choosing is the one the last run bound: what the Node still
        # advertises (and clients dial) stays true across a restart, as kubelet's fixed port
        port = opts.daemon_port or daemon_port.remembered(opts.data_dir)
        try:
            bound = await self.agent_server.start(host, port, serving=serving,
                                                  client_ca=self._client_ca())
        except OSError as e:
            if opts.daemon_port or not port:
                raise
            self._log.warning("the agent's port of its last run is taken; serving on a new "
                              "one", port=port, error=str(e))
            bound = await self.agent_server.start(host, 0, serving=serving,
                                                  client_ca=self._client_ca())
        if not opts.daemon_port:
            daemon_port.remember(opts.data_dir, bound)
        opts.daemon_port = bound

    async def _request_serving(self, key: pki.PrivateKey) -> bytes:
        assert self._client is not None
        dns, ips = pki.split_sans(self._serving_names())
        return await certs.request_certificate(
            self._client, key, self.options.node_name, certs.SERVING_SIGNER,
            ["digital signature", "server auth"], dns=dns, ips=ips,
            wait=self.options.csr_timeout)

    async def _serving_certificate(self) -> None:
        """No serving certificate yet: ask for one once the Node is registered (its
        addresses are what the approver checks), serve, then keep it renewed (this task
        runs the renewals: it never returns; restarted, it resumes them)."""
        assert self.node_status is not None and self.agent_server is not None
        rot = self.rotators.get("serving")
        if rot is None:
            await self.node_status.registered.wait()
            key = pki.new_key()
            cert_pem = await self._request_serving(key)
            key_pem = pki.key_pem(key)
            certs.NodePki.write_pair(self.node_pki.serving_cert, self.node_pki.serving_key,
                                     cert_pem, key_pem)
            await self._serve(pki.Issued(cert_pem, key_pem))
            try:
                await self.node_status.post_status()  # advertise the port now
            except errors.ApiError:
                pass  # the next periodic post advertises it
            rot = self._serving_rotator(cert_pem)
        await rot.run()

    def _serving_rotator(self, cert_pem: bytes) -> certs.Rotator:
        async def installed(cert: bytes, key: bytes) -> None:
            assert self.agent_server is not None
            self.agent_server.rotate(pki.Issued(cert, key))

        rot = certs.Rotator("serving", cert_pem, self._request_serving, installed,
                            cert_path=self.node_pki.serving_cert,
                            key_path=self.node_pki.serving_key, clock=self.clock)
        self.rotators["serving"] = rot
        return rot

    def _rotate_serving(self, sup: Supervisor, cert_pem: bytes) -> None:
        sup.start("serving-certificate-renewal", self._serving_rotator(cert_pem).run,
                  backoff=TASK_BACKOFF)



def proxy_mode(opts: AgentOptions, pod_network: bool) -> str:
    """The proxy this agent runs: ``auto`` follows the pod network, since pods on their own
    network reach Services (and the cluster DNS' ClusterIP) only through the proxy's rules,
    while pods on the machine's network never needed them."""
    if opts.proxy_mode != "auto":
        return opts.proxy_mode
    return "nftables" if pod_network else "none"


def pod_network(opts: AgentOptions) -> tuple[BridgeNetwork | None, str]:
    """The pod network the options ask for, or None and why pods share the machine's."""
    if opts.pod_network == "host":
        return None, "--pod-network host"
    if not linux.is_root():
        if opts.pod_network == "bridge":
            raise ValueError("--pod-network bridge needs root (network namespaces, links)")
        return None, "the agent is not running as root"
    return BridgeNetwork(opts.data_dir / "network", cluster_cidr=opts.cluster_cidr,
                         service_cidr=opts.service_cidr), ""


async def cleanup_network(opts: AgentOptions) -> None:
    """``flotilla agent --cleanup``: every network object this node's agent created goes:
    pods' namespaces (network and IPC, with their /dev/shm mounts), veths, bridge, routes,
    the nftables tables (the pod network's and the service proxy's), the leases."""
    from agent.network import netns
    from agent.runtime import sandbox_ipc

    runtime_dir = opts.data_dir / "runtime"
    netns_dir = runtime_dir / "netns"
    if netns_dir.is_dir():
        for entry in sorted(netns_dir.iterdir()):
            await asyncio.to_thread(netns.remove, entry)
    await asyncio.to_thread(sandbox_ipc.remove_orphans, runtime_dir / "ipcns",
                            runtime_dir / "sandboxes", set())
    if linux.is_root():
        await BridgeNetwork(opts.data_dir / "network", cluster_cidr=opts.cluster_cidr,
                            service_cidr=opts.service_cidr).cleanup()
        from agent.proxy.proxier import NftablesBackend
        await NftablesBackend().cleanup()  # the service proxy's table
    log.info("pod network removed", node=opts.node_name)


async def images_in_use(runtime: Runtime) -> set[str]:
    """Ids of the images any container the runtime knows was created from."""
    return {c.labels[IMAGE_LABEL] for c in await runtime.list_containers()
            if c.labels.get(IMAGE_LABEL)}


def kubelet_options(opts: AgentOptions) -> KubeletOptions:
    """The kubelet's settings from the agent's (the flags' timings)."""
    return KubeletOptions(
        data_dir=opts.data_dir, sync_period=opts.sync_frequency,
        relist_period=opts.runtime_relist_period,
        backoff_initial=opts.crash_loop_backoff_initial,
        backoff_max=opts.crash_loop_backoff_max,
        volume_refresh_period=opts.volume_refresh_period,
        stop_pods_after_disconnect=opts.stop_pods_after_disconnect)


async def run_agent(options: AgentOptions, stop_event: asyncio.Event, *,
                    clock: Clock | None = None) -> None:
    """Run an agent until ``stop_event`` is set; always stops cleanly."""
    agent = Agent(options, clock=clock)
    try:
        await agent.start()
        await stop_event.wait()
    finally:
        await agent.stop()
