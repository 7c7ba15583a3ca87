"""The kubelet's pod side: ``Kubelet(client, runtime, node_name, options, clock)``.

Owns, under one :class:`~control.runtime.Supervisor`:

- ``pods`` — the :class:`~agent.kubelet.pods.PodManager` (informer on
  ``spec.nodeName=<node>``, full resync every ``options.sync_period``) feeding
  :class:`~agent.kubelet.pods.PodWorkers`, one serial worker per pod uid;
- ``pleg`` — a relist of the runtime every ``options.relist_period`` (Kubernetes' PLEG):
  a pod whose containers changed (an exit, a new container) is synced, and a sandbox whose
  pod is not in the API (after the informer synced) is an orphan whose worker stops and
  removes it;
- ``status`` — the :class:`~agent.kubelet.status_manager.StatusManager`;
- ``fence`` — the :class:`~agent.kubelet.fencing.Fence`: pods that asked to be stopped when
  the node loses the API server are, and the worker of a fenced pod only keeps it stopped;
- ``volume-refresh`` — every ``options.volume_refresh_period`` the configMap, secret,
  downwardAPI and projected volumes of every pod set up here are re-projected (kubelet does
  this on its sync period: that is how a configMap update reaches a mounted file).

A pod worker's sync (:meth:`Kubelet.sync`) is one of three things:

1. the pod is in the API and not being deleted: :meth:`PodSyncer.sync_pod`, then the
   status goes to the status manager and the worker is requeued when the sync asks;
2. the pod has a ``deletionTimestamp``: stop it gracefully (preStop, SIGTERM, SIGKILL after
   min(terminationGracePeriodSeconds, the deletion's remaining grace)), remove its sandbox,
   post its final status, then confirm with ``delete(grace_period_seconds=0)`` and a uid
   precondition (so a new pod of the same name is never deleted);
3. the pod is not in the API: an orphan; its containers are stopped and removed.

Restart: nothing is kept but the runtime's state. On start the informer lists this node's
pods and the first relist enqueues every sandbox the runtime has, so the syncs *adopt* what
is running (no duplicates: sync looks at the runtime first) and clean up what is not wanted.
``stop()`` stops the kubelet's tasks and leaves containers running.

Concurrency contract: one event loop; ``run()`` is called once and returns after ``stop()``;
``stop()`` is idempotent. Per-pod work is serialised by PodWorkers; everything else
(informer handlers, PLEG, probe callbacks) only asks for syncs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import structlog

from agent.images.service import ImageService
from agent.kubelet.backoff import DEFAULT_INITIAL, DEFAULT_MAX, CrashLoopBackoff
from agent.kubelet.fencing import Fence
from agent.kubelet.fetch import M
from agent.kubelet.images import ImagePuller
from agent.kubelet.metrics import KubeletMetrics
from agent.kubelet.pods import PodManager, PodWorkers
from agent.kubelet.status import OWN_CONDITIONS
from agent.kubelet.status_manager import StatusManager
from agent.kubelet.sync import (
    PodState,
    PodSyncer,
    ProbeManagerLike,
    SyncConfig,
    VolumeManagerLike,
    kill_grace,
)
from agent.runtime.interface import Runtime, SandboxState
from control.api import errors
from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.runtime.backoff import Backoff
from control.runtime.clock import Clock, RealClock
from control.runtime.events import Recorder
from control.runtime.supervisor import Supervisor

log = structlog.get_logger(__name__)


@dataclass
class KubeletOptions:
    """The pod side's settings, with the kubelet's defaults; tests shorten the timings."""

    # <data_dir>/pods/<pod-uid>/{volumes,logs}
    data_dir: Path
    # the node's address: status.hostIP, and status.podIP while pods share the host network
    node_ip: str = "127.0.0.1"
    # node allocatable (cpu, memory, ephemeral-storage): resourceFieldRef's default limits
    allocatable: Mapping[str, str] = field(default_factory=dict)
    # full resync of every pod (kubelet's --sync-frequency)
    sync_period: float = 60.0
    # runtime relist (kubelet's PLEG relist period)
    relist_period: float = 1.0
    # crash-loop backoff (kubelet: 10 s doubling to 300 s, reset after 10 minutes)
    backoff_initial: float = DEFAULT_INITIAL
    backoff_max: float = DEFAULT_MAX
    backoff_reset: float | None = None
    # never stop a container with less grace than this (kubelet's minimum: 2 s)
    minimum_grace: float = 2.0
    # retry a container whose config or creation failed after this long
    retry_period: float = 10.0
    status_workers: int = 4
    stop_timeout: float = 10.0
    # re-project configMap/secret/downwardAPI/projected volumes (kubelet: its sync period)
    volume_refresh_period: float = 60.0
    # the runtime handler of pods that name no RuntimeClass ("image" or "host")
    default_handler: str = "image"
    # pods' DNS (kubelet's --cluster-dns, --cluster-domain, --resolv-conf); None: no cluster
    # DNS (pods on the host's network), ClusterFirst pods get the node's resolvers
    cluster_dns: list[str] | None = None
    cluster_domain: str = "cluster.local"
    resolv_conf: Path = Path("/etc/resolv.conf")
    # fencing (agent.kubelet.fencing): stop every pod after this long without the API
    # server (None: only pods annotated flotilla.io/stop-after-disconnect), checked this often
    stop_pods_after_disconnect: float | None = None
    fence_period: float = 1.0


@runtime_checkable
class VolumeRefresher(Protocol):
    """A volume manager that can re-project volumes already set up (the real one can)."""

    async def refresh(self, pod: core_pb2.Pod) -> dict[str, str]: ...


# volume kinds whose content comes from the API and changes while the pod runs
_REFRESHED = ("config_map", "secret", "downward_api", "projected")


class Kubelet:
    """This node's pods; see the module docstring.

    ``probes`` (agent.kubelet.probes.ProbeManager) and ``volumes``
    (agent.kubelet.volumes.VolumeManager) are optional: without probes a running container
    is ready and started; without volumes each volume is an empty directory.
    """

    def __init__(self, client: ApiClient, runtime: Runtime, node_name: str,
                 options: KubeletOptions, clock: Clock | None = None, *,
                 probes: ProbeManagerLike | None = None,
                 volumes: VolumeManagerLike | None = None,
                 images: ImageService | None = None,
                 recorder: Recorder | None = None,
                 metrics: KubeletMetrics | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.images = images
        self.metrics = metrics or KubeletMetrics()
        self.runtime = runtime
        self.node_name = node_name
        self.options = options
        self.clock = clock or RealClock()
        self.probes = probes
        self.volumes = volumes
        self.backoff = CrashLoopBackoff(self.clock, initial=options.backoff_initial,
                                        max_delay=options.backoff_max,
                                        reset_after=options.backoff_reset)
        self.syncer = PodSyncer(
            runtime, self.clock,
            SyncConfig(node_name=node_name, data_dir=options.data_dir,
                       host_ip=options.node_ip, allocatable=dict(options.allocatable),
                       minimum_grace=options.minimum_grace,
                       retry_period=options.retry_period,
                       default_handler=options.default_handler,
                       cluster_dns=options.cluster_dns,
                       cluster_domain=options.cluster_domain,
                       resolv_conf=options.resolv_conf),
            self.backoff, fetch=self._fetch, probes=probes, volumes=volumes,
            recorder=recorder, services=self._list_services,
            images=None if images is None else ImagePuller(
                images,
                # kubelet's image pull backoff: its own table, the crash loop's timings
                CrashLoopBackoff(self.clock, initial=options.backoff_initial,
                                 max_delay=options.backoff_max,
                                 reset_after=options.backoff_reset),
                fetch=self._fetch, recorder=recorder))
        self.workers = PodWorkers(self.sync, clock=self.clock)
        self.pods = PodManager(client, node_name, self.workers, clock=self.clock,
                               resync_period=options.sync_period)
        self.status = StatusManager(client, clock=self.clock, workers=options.status_workers)
        self.fence = Fence(self.clock, self.pods.pods, self._fence_changed,
                           node_default=options.stop_pods_after_disconnect,
                           recorder=recorder, period=options.fence_period)
        self._states: dict[str, PodState] = {}
        self._fingerprints: dict[str, tuple[tuple[str, str], ...]] = {}
        self._supervisor: Supervisor | None = None
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._log = log.bind(component="kubelet", node=node_name)
        if probes is not None and hasattr(probes, "on_change"):
            probes.on_change = self._probe_changed

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`."""
        self.options.data_dir.mkdir(parents=True, exist_ok=True)
        (self.options.data_dir / "pods").mkdir(exist_ok=True)
        sup = Supervisor(f"kubelet/{self.node_name}", clock=self.clock)
        self._supervisor = sup
        task_backoff = Backoff(initial=1.0, max_delay=30.0, jitter=0.2)
        try:
            sup.start("pod-informer", self.pods.run, backoff=task_backoff)
            sup.start("pod-status", self.status.run, backoff=task_backoff)
            sup.start("pleg", self._pleg, backoff=task_backoff)
            sup.start("fence", self.fence.run, backoff=task_backoff)
            if isinstance(self.volumes, VolumeRefresher):
                sup.start("volume-refresh", self._refresh_volumes, backoff=task_backoff)
            self._log.info("kubelet started")
            await self._stop.wait()
        finally:
            await self.workers.stop()
            await sup.stop(self.options.stop_timeout)
            self._done.set()
            self._log.info("kubelet stopped")

    async def stop(self) -> None:
        """Stop the kubelet's tasks (containers keep running); waits for run() to end."""
        self._stop.set()
        if self._supervisor is not None:
            await self._done.wait()

    async def wait_synced(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        return await self.pods.informer.wait_for_sync(timeout)

    # -- the per-pod sync -------------------------------------------------------------------

    async def sync(self, uid: str) -> float | None:
        """One pod worker run; returns when to sync again (None: on the next event)."""
        start = self.clock.monotonic()
        operation = "sync" if uid in self._states else "create"
        try:
            return await self._sync(uid)
        finally:
            if uid not in self._states:
                operation = "kill"
            self.metrics.pod_worker_duration.labels(operation).observe(
                self.clock.monotonic() - start)

    async def _sync(self, uid: str) -> float | None:
        pod = self.pods.get(uid)
        if pod is None:
            if not self.pods.has_synced():
                return None  # we cannot tell an orphan from a pod not listed yet
            await self.syncer.terminate(None, uid, None, self.options.minimum_grace)
            self._forget(uid)
            return None
        state = self._states.setdefault(uid, PodState(uid))
        if pod.metadata.HasField("deletion_timestamp"):
            await self._terminate(pod, state)
            return None
        if self.fence.is_fenced(uid):
            # stopped, and kept so until the API server is back (no status reaches it now)
            await self.syncer.stop_containers(pod, kill_grace(pod, self.clock.now(),
                                                              self.options.minimum_grace))
            return None
        view = self._with_last_status(pod)
        result = await self.syncer.sync_pod(view, state)
        self.status.set_status(view, result.status)
        return result.requeue_after

    async def _terminate(self, pod: core_pb2.Pod, state: PodState) -> None:
        uid = pod.metadata.uid
        grace = kill_grace(pod, self.clock.now(), self.options.minimum_grace)
        view = self._with_last_status(pod)
        self._log.info("stopping deleted pod", pod=f"{pod.metadata.namespace}/"
                       f"{pod.metadata.name}", grace=grace)
        final = await self.syncer.terminate(view, uid, state, grace)
        if final is not None:
            self.status.set_status(view, final)
            with contextlib.suppress(TimeoutError):
                await self.status.flush(uid, timeout=5.0)
        try:
            await self.client.delete(core_pb2.Pod, pod.metadata.name, pod.metadata.namespace,
                                     grace_period_seconds=0, uid=uid)
        except (errors.NotFound, errors.Conflict):
            pass  # already gone, or the name now belongs to a new pod
        self._forget(uid)

    def _fence_changed(self, uid: str) -> None:
        if not self.fence.is_fenced(uid):
            # stopped by us, not crashing: its restart owes nothing to the crash loop
            self.backoff.forget_pod(uid)
        self.workers.update(uid)

    def _forget(self, uid: str) -> None:
        self.fence.forget(uid)
        self._states.pop(uid, None)
        self._fingerprints.pop(uid, None)
        self.status.forget(uid)
        self.workers.forget(uid)

    def _with_last_status(self, pod: core_pb2.Pod) -> core_pb2.Pod:
        """The pod with the newest status we computed (the informer's copy may lag behind
        our own writes), keeping conditions that others own from the API's copy."""
        last = self.status.last_status(pod.metadata.uid)
        if last is None:
            return pod
        out = core_pb2.Pod()
        out.CopyFrom(pod)
        out.status.CopyFrom(last)
        del out.status.conditions[:]
        out.status.conditions.extend(c for c in last.conditions if c.type in OWN_CONDITIONS)
        out.status.conditions.extend(c for c in pod.status.conditions
                                     if c.type not in OWN_CONDITIONS)
        if pod.status.phase in ("Succeeded", "Failed"):
            out.status.phase = pod.status.phase
        return out

    async def _fetch(self, kind: type[M], namespace: str, name: str) -> M | None:
        try:
            return await self.client.get(kind, name, namespace)
        except errors.NotFound:
            return None

    async def _list_services(self, namespace: str) -> list[core_pb2.Service]:
        """The Services of ``namespace`` and of "default" (the kubernetes Service)."""
        out = list((await self.client.list(core_pb2.Service, namespace)).items)
        if namespace != "default":
            out += [s for s in (await self.client.list(core_pb2.Service, "default")).items
                    if s.metadata.name == "kubernetes"]
        return out

    def _probe_changed(self, uid: str) -> None:
        self.workers.update(uid)

    # -- volume refresh ---------------------------------------------------------------------

    async def _refresh_volumes(self) -> None:
        while True:
            await self.clock.sleep(self.options.volume_refresh_period)
            await self.refresh_volumes()

    async def refresh_volumes(self) -> None:
        """Re-project the API-backed volumes of every live pod whose volumes are set up.

        Runs beside the pod workers: the volume manager's per-pod lock orders it with setup
        and teardown, and a refresh of a pod torn down meanwhile writes nothing."""
        if not isinstance(self.volumes, VolumeRefresher):
            return
        for uid, state in list(self._states.items()):
            pod = self.pods.get(uid)
            if (pod is None or state.volume_paths is None or state.phase_override
                    or pod.metadata.HasField("deletion_timestamp")
                    or pod.status.phase in ("Succeeded", "Failed")):
                continue
            if not any(v.HasField(k) for v in pod.spec.volumes for k in _REFRESHED):
                continue
            await self.volumes.refresh(pod)

    # -- PLEG -------------------------------------------------------------------------------

    async def _pleg(self) -> None:
        """Relist the runtime; sync pods whose containers changed, and orphans."""
        while True:
            await self.relist()
            await self.clock.sleep(self.options.relist_period)

    async def relist(self) -> None:
        start = self.clock.monotonic()
        sandboxes = await self.runtime.list_pod_sandboxes()
        containers = await self.runtime.list_containers()
        self.metrics.relisted(
            self.clock.monotonic() - start,
            sum(1 for sb in sandboxes if sb.state is SandboxState.READY),
            (c.state.value.lower() for c in containers))
        owner = {sb.id: sb.pod_uid for sb in sandboxes}
        prints: dict[str, list[tuple[str, str]]] = {sb.pod_uid: [] for sb in sandboxes}
        for c in containers:
            uid = owner.get(c.sandbox_id)
            if uid is not None:
                prints[uid].append((c.id, c.state.value))
        synced = self.pods.has_synced()
        for uid, items in prints.items():
            fp = tuple(sorted(items))
            changed = self._fingerprints.get(uid) != fp
            self._fingerprints[uid] = fp
            orphan = synced and self.pods.get(uid) is None
            if changed or orphan:
                self.workers.update(uid)
        for uid in [u for u in self._fingerprints if u not in prints]:
            del self._fingerprints[uid]
