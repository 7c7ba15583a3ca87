"""The controller manager: builds every enabled controller around one shared InformerSet and
runs them under one Supervisor (kube-controller-manager's role).

Start order (``start``): construct the controllers (each asks the shared ``InformerSet`` for
the informers it needs and registers its event handlers, and takes an Event recorder from
the manager's one ``EventBroadcaster``) -> start the Event writer as the supervised task
``events`` -> start the informers as the supervised tasks ``informer/<resource>`` -> wait
until every cache has synced (bounded by ``sync_timeout``; a controller acting on an empty
cache would believe objects are gone) -> start each controller's reconcile loop as the supervised task ``controller/<name>``
(restarted with backoff if it ever dies). ``stop`` is the reverse: the Supervisor cancels the
controllers first (in-flight reconciles finish within their own bound), then the informers,
then the manager closes the channel it opened, if it opened one.

Leader election lives outside the manager: ``flotilla controller-manager --leader-elect``
runs a :class:`control.runtime.leaderelection.LeaderElector` and builds a fresh manager for
each term of leadership, stopping it completely when the Lease is lost. Inside ``flotilla
server`` the manager is the only one and runs unconditionally.

Concurrency contract: one event loop. ``start`` and ``stop`` are called once each, from the
task that owns the manager; ``stop`` is idempotent and safe after a failed ``start``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog

from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.credentials import Credentials
from control.client.listwatch import ApiListWatcher, ListWatcher
from control.client.pki import ClusterCA
from control.controllers.certificates import (
    DEFAULT_SIGNING_DURATION,
    CsrApprovingController,
    CsrSigningController,
)
from control.controllers.clusterrole_aggregation import ClusterRoleAggregationController
from control.controllers.cronjob import CronJobController
from control.controllers.daemonset import DaemonSetController
from control.controllers.deployment import DeploymentController
from control.controllers.disruption import DisruptionController
from control.controllers.endpoints import EndpointsController
from control.controllers.endpointslice import EndpointSliceController
from control.controllers.ephemeral_volume import EphemeralVolumeController
from control.controllers.gc import NAME as GC_NAME
from control.controllers.gc import GarbageCollector
from control.controllers.job import JobController
from control.controllers.local_path import LocalPathProvisioner
from control.controllers.namespace import NamespaceController
from control.controllers.node_lifecycle import NodeLifecycleController
from control.controllers.node_lifecycle_util import NodeLifecycleOptions
from control.controllers.nodeipam import (
    DEFAULT_CLUSTER_CIDR,
    DEFAULT_NODE_CIDR_MASK_SIZE,
    NodeIpamController,
)
from control.controllers.podgc import PodGarbageCollector
from control.controllers.replicaset import ReplicaSetController, replication_controller
from control.controllers.root_ca_publisher import RootCAPublisher
from control.controllers.serviceaccount import ServiceAccountsController
from control.controllers.servicelb import ServiceLBController
from control.controllers.statefulset import StatefulSetController
from control.controllers.taint_eviction import TaintEvictionController
from control.controllers.volume_binding import VolumeBindingController
from control.controllers.volume_protection import VolumeProtectionController
from control.runtime.clock import Clock, RealClock
from control.runtime.controller import Controller, ControllerMetrics
from control.runtime.events import EventBroadcaster
from control.runtime.informer import InformerSet
from control.runtime.metrics import Registry
from control.runtime.supervisor import Supervisor

log = structlog.get_logger(__name__, component="controller-manager")

DEFAULT_WORKERS = 5
DEFAULT_SYNC_TIMEOUT = 30.0
# Re-drives level-triggered controllers even if an event was somehow missed.
DEFAULT_RESYNC_PERIOD = 300.0


@dataclass(frozen=True)
class ControllerContext:
    """What a controller is built from: the API, the shared caches and the clock."""

    client: ApiClient
    informers: InformerSet
    clock: Clock
    workers: int
    # the process's one Event writer: controllers take a recorder from it
    events: EventBroadcaster
    # kube-controller-manager's node lifecycle flags (grace period, eviction rates)
    node_lifecycle: NodeLifecycleOptions = field(default_factory=NodeLifecycleOptions)
    # --terminated-pod-gc-threshold: finished pods kept before pod GC deletes the oldest
    terminated_pod_gc_threshold: int = 12_500
    # --cluster-cidr / --node-cidr-mask-size: node IPAM's pod ranges
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    node_cidr_mask_size: int = DEFAULT_NODE_CIDR_MASK_SIZE
    # the cluster CA that signs approved CertificateSigningRequests (None: nobody signs)
    signer: ClusterCA | None = None
    # --cluster-signing-duration: the longest certificate the signer issues
    signing_duration: datetime.timedelta = DEFAULT_SIGNING_DURATION
    # informers of objects reduced to their metadata (the garbage collector's, for kinds
    # no other controller watches in full); None: use ``informers``
    metadata_informers: InformerSet | None = None


class ManagedController(Protocol):
    """One controller as the manager sees it: a name and the reconcile loop to run."""

    @property
    def name(self) -> str: ...

    @property
    def controller(self) -> Controller: ...


ControllerFactory = Callable[[ControllerContext], ManagedController]


# name -> factory of every controller the manager knows (controller modules import this
# module's types only under TYPE_CHECKING, so this import is not circular).
CONTROLLERS: dict[str, ControllerFactory] = {
    "namespace": NamespaceController,
    "replicaset": ReplicaSetController,
    "replicationcontroller": replication_controller,
    "deployment": DeploymentController,
    "garbagecollector": GarbageCollector,
    "podgc": PodGarbageCollector,
    "nodelifecycle": NodeLifecycleController,
    "taint-eviction-controller": TaintEvictionController,
    "disruption": DisruptionController,
    "endpoint": EndpointsController,
    "endpointslice": EndpointSliceController,
    "nodeipam": NodeIpamController,
    "job": JobController,
    "cronjob": CronJobController,
    "daemonset": DaemonSetController,
    "statefulset": StatefulSetController,
    "persistentvolume-binder": VolumeBindingController,
    "persistentvolume-protection": VolumeProtectionController,
    "local-path-provisioner": LocalPathProvisioner,
    "ephemeral-volume": EphemeralVolumeController,
    "csrapproving": CsrApprovingController,
    "csrsigning": CsrSigningController,
    "clusterrole-aggregation": ClusterRoleAggregationController,
    "serviceaccount": ServiceAccountsController,
    "servicelb": ServiceLBController,
    "root-ca-cert-publisher": RootCAPublisher,
}


class ControllerManager:
    """Runs the enabled controllers; see the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        *,
        clock: Clock | None = None,
        workers: int | Mapping[str, int] = DEFAULT_WORKERS,
        controllers: Mapping[str, ControllerFactory] | None = None,
        disable: Iterable[str] = (),
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        resync_period: float | None = DEFAULT_RESYNC_PERIOD,
        node_lifecycle: NodeLifecycleOptions | None = None,
        terminated_pod_gc_threshold: int = 12_500,
        cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
        node_cidr_mask_size: int = DEFAULT_NODE_CIDR_MASK_SIZE,
        registry: Registry | None = None,
        signer: ClusterCA | None = None,
        signing_duration: datetime.timedelta = DEFAULT_SIGNING_DURATION,
    ) -> None:
        """``workers``: reconcile workers per controller (one number, or per name);
        ``controllers``: name -> factory (default: every known controller), minus
        ``disable``; ``registry``: where the controllers' metrics go (default: a new one)."""
        self.client = client
        self.metrics = registry or Registry()
        self._clock = clock or RealClock()
        self._workers = workers
        if controllers is None:
            controllers = CONTROLLERS
        skip = set(disable)
        self._factories = {n: f for n, f in controllers.items() if n not in skip}
        self._sync_timeout = sync_timeout
        self._node_lifecycle = node_lifecycle or NodeLifecycleOptions()
        self._terminated_pod_gc_threshold = terminated_pod_gc_threshold
        self._cluster_cidr = cluster_cidr
        self._node_cidr_mask_size = node_cidr_mask_size
        self._signer = signer
        self._signing_duration = signing_duration
        self.informers = InformerSet(self._list_watcher, clock=self._clock,
                                     resync_period=resync_period)
        self.metadata_informers = InformerSet(
            lambda resource: ApiListWatcher(self.client, resource, metadata_only=True),
            clock=self._clock, resync_period=resync_period, task_prefix="metadata-informer")
        self.supervisor = Supervisor("controller-manager", clock=self._clock)
        self.events = EventBroadcaster(client, clock=self._clock)
        self.controllers: dict[str, ManagedController] = {}
        self._channel: grpc.aio.Channel | None = None
        self._started = False

    @classmethod
    def connect(
        cls,
        address: str,
        credentials: Credentials,
        *,
        clock: Clock | None = None,
        workers: int | Mapping[str, int] = DEFAULT_WORKERS,
        disable: Iterable[str] = (),
        node_lifecycle: NodeLifecycleOptions | None = None,
        terminated_pod_gc_threshold: int = 12_500,
        cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
        node_cidr_mask_size: int = DEFAULT_NODE_CIDR_MASK_SIZE,
        registry: Registry | None = None,
        signer: ClusterCA | None = None,
        signing_duration: datetime.timedelta = DEFAULT_SIGNING_DURATION,
    ) -> ControllerManager:
        """A manager on its own channel to ``address``, closed by ``stop``."""
        channel = open_channel(address, credentials)
        manager = cls(ApiClient(channel, address), clock=clock, workers=workers,
                      disable=disable, node_lifecycle=node_lifecycle,
                      terminated_pod_gc_threshold=terminated_pod_gc_threshold,
                      cluster_cidr=cluster_cidr, node_cidr_mask_size=node_cidr_mask_size,
                      registry=registry, signer=signer,
                      signing_duration=signing_duration)
        manager._channel = channel
        return manager

    def _list_watcher(self, resource: str) -> ListWatcher[Any]:
        # Controllers see every namespace: one cluster-wide informer per resource.
        return ApiListWatcher(self.client, resource)

    def _workers_for(self, name: str) -> int:
        if isinstance(self._workers, int):
            return self._workers
        return self._workers.get(name, DEFAULT_WORKERS)

    async def start(self) -> None:
        """Build the controllers, sync the caches, start the reconcile loops."""
        if self._started:
            raise RuntimeError("controller manager already started")
        self._started = True
        # The garbage collector last: it shares the full informers the others asked for
        # and watches every other kind through a metadata-only one.
        for name, factory in sorted(self._factories.items(),
                                    key=lambda item: item[0] == GC_NAME):
            ctx = ControllerContext(self.client, self.informers, self._clock,
                                    self._workers_for(name), self.events,
                                    self._node_lifecycle,
                                    self._terminated_pod_gc_threshold,
                                    self._cluster_cidr, self._node_cidr_mask_size,
                                    self._signer, self._signing_duration,
                                    self.metadata_informers)
            self.controllers[name] = factory(ctx)
        controller_metrics = ControllerMetrics(self.metrics)
        for managed in self.controllers.values():
            managed.controller.instrument(controller_metrics)
        self.supervisor.start("events", self.events.run)
        self.informers.start(self.supervisor)
        self.metadata_informers.start(self.supervisor)
        if not (await self.informers.wait_for_sync(self._sync_timeout) and
                await self.metadata_informers.wait_for_sync(self._sync_timeout)):
            await self.stop()
            raise TimeoutError(
                f"controller caches did not sync within {self._sync_timeout} s "
                f"(informers: {', '.join(self.informers.resources())}; metadata only: "
                f"{', '.join(self.metadata_informers.resources())})")
        for name, managed in self.controllers.items():
            self.supervisor.start(f"controller/{name}", managed.controller.run, restart=True)
        log.info("controllers started", controllers=sorted(self.controllers))

    # The bound is measured on the injected Clock, as Supervisor.stop does.
    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop the controllers, then the informers; close our own channel."""
        await self.supervisor.stop(timeout)
        if self._channel is not None:
            # ours (connect made it): close the one the client uses now, which a
            # certificate renewal may have put in place of the first
            self._channel = None
            await self.client.channel.close(None)
        log.info("controllers stopped")
