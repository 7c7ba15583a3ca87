"""``sync_pod``: the level-triggered reconcile of one pod against the runtime.

:class:`PodSyncer` owns no loop; a pod's serial worker calls it, and every call looks at
the runtime afresh (sandboxes and containers of the pod's uid), decides, acts, and returns
the status to post plus when to look again. It may run on any wake-up, after a kubelet
restart (it then *adopts* the sandbox and containers it finds: nothing is started twice),
or twice in a row, and converges anyway. Rules, as Kubernetes' ``computePodActions``:

1. A terminal pod (Succeeded/Failed, or one the kubelet failed for
   ``activeDeadlineSeconds`` with reason ``DeadlineExceeded``) has its running containers
   stopped and nothing started.
2. Sandbox: the pod's READY sandbox is reused, else one is created
   (``<data_dir>/pods/<uid>/``; volumes from the VolumeManager, else one empty directory
   per volume under ``volumes/``, so mounts always resolve; ``hostAliases`` appended to
   the host's /etc/hosts).
3. Init containers in order: a regular one must exit 0 before the next starts (a failure
   restarts it per ``restartPolicy``; under ``Never`` the pod fails); a sidecar
   (``restartPolicy: Always``) must be running and started before the next one, and keeps
   running. App containers start once initialisation is done — proven for good by any app
   container having existed.
4. App containers restart per ``restartPolicy`` (Always; OnFailure on a non-zero exit;
   Never), and when liveness failed; each restart goes through the crash-loop backoff
   (waiting ``CrashLoopBackOff`` meanwhile). When every app container has finished for
   good, sidecars are stopped, last first.
5. Starting a container: resolve its config (:mod:`container_spec`; errors show as waiting
   ``CreateContainerConfigError``), create with the next attempt number (= restartCount),
   log to ``logs/<container>/<attempt>.log``, start, run postStart (failure kills it:
   ``FailedPostStartHook``); older attempts beyond the previous one are removed.
6. Termination messages: the runtime reads ``terminationMessagePath``; under
   ``terminationMessagePolicy: FallbackToLogsOnError`` a container that failed with no
   message gets the tail of its log instead (80 lines, at most 2048 bytes, as kubelet).

:meth:`PodSyncer.terminate` stops a pod for deletion or as an orphan: preStop, then SIGTERM
and SIGKILL after the grace period, app containers together, then sidecars last first;
then the sandbox, volumes and the pod directory go.

Events: what the kubelet does to a container and what fails is recorded as kubelet does
(source ``kubelet``, the container named by the involvedObject's fieldPath
``spec.containers{NAME}``): Created, Started, Killing, Failed ("Error: <why>", for a config,
create or start error), BackOff, FailedPostStartHook, FailedPreStopHook,
ExceededGracePeriod, FailedMount. Recording never waits (``control.runtime.events``).

Runtime snapshot: a sync lists the pod's containers once and reuses that listing until it
changes something (create, start, stop, remove), so a sync that only reports status lists
the runtime once for its sandboxes and once for its containers.

Concurrency contract: one call at a time per pod (the pod worker guarantees it); calls for
different pods run concurrently and share only the runtime, the backoff table (keyed by pod)
and the probe manager.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from agent.config import HOST_HANDLER, IMAGE_HANDLERS
from agent.kubelet import container_spec, hooks
from agent.kubelet.backoff import CrashLoopBackoff, crash_loop_message
from agent.kubelet.dns import parse_resolv_conf, pod_resolv_conf
from agent.kubelet.fetch import Fetcher
from agent.kubelet.images import ImagePuller, PullFailure
from agent.kubelet.logs import LogOptions, read_logs
from agent.kubelet.service_env import service_env
from agent.kubelet.status import (
    FAILED,
    SUCCEEDED,
    TERMINAL,
    ContainerView,
    PodFacts,
    compute_status,
    container_field_path,
    is_sidecar,
)
from agent.kubelet.volumes import safe_subpath
from agent.network.interface import PortMapping
from agent.runtime.interface import (
    ContainerState,
    ContainerStatus,
    Mount,
    Runtime,
    RuntimeError_,
    SandboxConfig,
    SandboxState,
    SandboxStatus,
)
from control.api import errors
from control.api.pb import core_pb2, node_pb2
from control.api.timeutil import timestamp_seconds
from control.runtime.clock import Clock
from control.runtime.events import NORMAL, WARNING, Recorder

log = structlog.get_logger(__name__)


DEFAULT_GRACE = 30.0
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
# FallbackToLogsOnError: kubelet's MaxContainerTerminationMessageLogLines / ...LogLength
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


class ProbeManagerLike(Protocol):
    """What the kubelet needs of ``agent.kubelet.probes.ProbeManager``."""

    def add_pod(self, pod: core_pb2.Pod, container_ids: dict[str, str],
                pod_ip: str = "") -> None: ...

    def remove_pod(self, uid: str) -> None: ...

    def is_ready(self, uid: str, container: str) -> bool: ...

    def is_started(self, uid: str, container: str) -> bool: ...

    def liveness_failed(self, uid: str, container: str) -> str | None: ...


class VolumeManagerLike(Protocol):
    """What the kubelet needs of ``agent.kubelet.volumes.VolumeManager``."""

    async def setup(self, pod: core_pb2.Pod) -> dict[str, str]: ...

    async def teardown(self, pod_uid: str) -> None: ...


# namespace -> the Services of that namespace and of "default" (for their env variables)
ServiceLister = Callable[[str], Awaitable[list[core_pb2.Service]]]


@dataclass
class SyncConfig:
    node_name: str
    data_dir: Path
    host_ip: str = ""
    allocatable: Mapping[str, str] = field(default_factory=dict)
    # never give a container less than this to stop (kubelet's minimumGracePeriodInSeconds)
    minimum_grace: float = 2.0
    # how soon to retry a container whose config or creation failed
    retry_period: float = 10.0
    cluster_domain: str = "cluster.local"
    # the cluster DNS servers pods with ClusterFirst use (kubelet's --cluster-dns); None:
    # those pods get the host's resolvers (pods sharing the host's network cannot reach it)
    cluster_dns: list[str] | None = None
    # the node's resolv.conf (kubelet's --resolv-conf): dnsPolicy Default and the host's
    # search domains
    resolv_conf: Path = Path("/etc/resolv.conf")
    # the handler of pods that name no RuntimeClass: "image" runs containers in their
    # image, "host" on the host's filesystem
    default_handler: str = "image"


@dataclass
class PodState:
    """The kubelet's memory of one pod between syncs (owned by its worker)."""

    uid: str
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    volume_paths: dict[str, str] | None = None
    probe_ids: dict[str, str] = field(default_factory=dict)
    phase_override: str = ""
    reason: str = ""
    message: str = ""
    # FallbackToLogsOnError messages already read, by runtime container id
    log_messages: dict[str, str] = field(default_factory=dict)
    # the runtime handler this pod's RuntimeClass names (resolved once: both are immutable)
    handler: str = ""


@dataclass(frozen=True)
class SyncResult:
    status: core_pb2.PodStatus
    requeue_after: float | None = None


# -- pure decisions -------------------------------------------------------------------------


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether an exited app container runs again under the pod's restartPolicy."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


@dataclass(frozen=True)
class InitStep:
    """What to do next with the init containers."""

    start: str = ""  # (re)start this one
    wait: bool = False  # one is running / starting: nothing else this time
    failed: str = ""  # this one failed under restartPolicy Never: the pod fails
    done: bool = False


def next_init_step(pod: core_pb2.Pod, latest: Mapping[str, ContainerStatus | None],
                   started: Callable[[str], bool]) -> InitStep:
    """Walk the init containers in order (Kubernetes' computeInitContainerActions)."""
    policy = pod.spec.restart_policy or "Always"
    for c in pod.spec.init_containers:
        cur = latest.get(c.name)
        if is_sidecar(c):
            if cur is not None and cur.state is ContainerState.RUNNING:
                if started(c.name):
                    continue
                return InitStep(wait=True)
            return InitStep(start=c.name)
        if cur is None or cur.state is ContainerState.CREATED:
            return InitStep(start=c.name)
        if cur.state is ContainerState.RUNNING:
            return InitStep(wait=True)
        if cur.exit_code == 0:
            continue
        if policy == "Never":
            return InitStep(failed=c.name)
        return InitStep(start=c.name)
    return InitStep(done=True)


def kill_grace(pod: core_pb2.Pod, now: float, minimum: float) -> float:
    """Seconds a deleted pod's containers get: min(terminationGracePeriodSeconds, what is
    left of the deletion's grace), never below ``minimum``."""
    spec_grace = (float(pod.spec.termination_grace_period_seconds)
                  if pod.spec.HasField("termination_grace_period_seconds") else DEFAULT_GRACE)
    grace = spec_grace
    meta = pod.metadata
    if meta.HasField("deletion_timestamp"):
        grace = min(grace, timestamp_seconds(meta.deletion_timestamp) - now)
    if meta.HasField("deletion_grace_period_seconds"):
        grace = min(grace, float(meta.deletion_grace_period_seconds))
    return max(grace, minimum)


def hosts_file(pod: core_pb2.Pod, host_hosts: str) -> str | None:
    """The pod's /etc/hosts: None (the host's, unchanged) unless it has ``hostAliases``,
    which are appended to the host's file as kubelet does for host-network pods (pods
    share the host's network until pod network namespaces exist)."""
    if not pod.spec.host_aliases:
        return None
    lines = [host_hosts.rstrip("\n"), "", "# Entries added by HostAliases."]
    lines += ["\t".join([a.ip, *a.hostnames]) for a in pod.spec.host_aliases]
    return "\n".join(lines) + "\n"


def pod_hosts_file(pod: core_pb2.Pod, ip: str, cluster_domain: str) -> str:
    """The /etc/hosts of a pod on the pod network, as kubelet writes it: localhost lines,
    the pod's own name (``<ip> <hostname>.<subdomain>.<ns>.svc.<domain> <hostname>`` when it
    has a subdomain), then its hostAliases."""
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    hostname = pod.spec.hostname or pod.metadata.name
    if pod.spec.subdomain:
        fqdn = f"{hostname}.{pod.spec.subdomain}.{pod.metadata.namespace}.svc.{cluster_domain}"
        lines.append(f"{ip}\t{fqdn}\t{hostname}")
    else:
        lines.append(f"{ip}\t{hostname}")
    if pod.spec.host_aliases:
        lines += ["", "# Entries added by HostAliases."]
        lines += ["\t".join([a.ip, *a.hostnames]) for a in pod.spec.host_aliases]
    return "\n".join(lines) + "\n"


POD_HOSTS = "etc-hosts"
# A sandbox that could not be created (a pod network not ready yet) is retried this soon.
SANDBOX_RETRY = 2.0


def write_pod_hosts(pod_dir: Path, pod: core_pb2.Pod, ip: str, cluster_domain: str) -> None:
    """``<pod dir>/etc-hosts``, mounted at /etc/hosts in each container (atomic replace)."""
    pod_dir.mkdir(parents=True, exist_ok=True)
    tmp = pod_dir / f".{POD_HOSTS}.tmp"
    tmp.write_text(pod_hosts_file(pod, ip, cluster_domain))
    tmp.replace(pod_dir / POD_HOSTS)


def port_mappings(pod: core_pb2.Pod) -> list[PortMapping]:
    """The hostPorts of the pod's containers (what CRI's PodSandboxConfig carries)."""
    out = []
    for c in (*pod.spec.init_containers, *pod.spec.containers):
        for p in c.ports:
            if p.host_port > 0:
                out.append(PortMapping(host_port=p.host_port,
                                       container_port=p.container_port or p.host_port,
                                       protocol=p.protocol or "TCP", host_ip=p.host_ip))
    return out


def _read_host_hosts() -> str:
    try:
        return Path("/etc/hosts").read_text()
    except OSError:
        return ""


def back_off_message(container: str, pod: core_pb2.Pod) -> str:
    """kubelet's BackOff Event: ``Back-off restarting failed container web in pod
    web-1_default(uid)``."""
    m = pod.metadata
    return (f"Back-off restarting failed container {container} in pod "
            f"{m.name}_{m.namespace}({m.uid})")


def group_containers(containers: Sequence[ContainerStatus]) -> dict[str, list[ContainerStatus]]:
    """Runtime containers by name, newest attempt first."""
    out: dict[str, list[ContainerStatus]] = {}
    for c in containers:
        out.setdefault(c.name, []).append(c)
    for lst in out.values():
        lst.sort(key=lambda c: (c.attempt, c.created_at), reverse=True)
    return out


async def log_tail_message(path: str) -> str:
    """The termination message FallbackToLogsOnError gives: the log's last lines."""
    try:
        chunks = [c async for c in read_logs(path, LogOptions(tail_lines=FALLBACK_LOG_LINES))]
    except OSError:
        return ""
    return b"".join(chunks)[-FALLBACK_LOG_BYTES:].decode("utf-8", "replace")


# -- the syncer -----------------------------------------------------------------------------


class PodSyncer:
    """See the module docstring."""

    def __init__(self, runtime: Runtime, clock: Clock, config: SyncConfig,
                 backoff: CrashLoopBackoff, *, fetch: Fetcher | None = None,
                 probes: ProbeManagerLike | None = None,
                 volumes: VolumeManagerLike | None = None,
                 images: ImagePuller | None = None,
                 recorder: Recorder | None = None,
                 services: ServiceLister | None = None) -> None:
        self.runtime = runtime
        self.services = services
        self.images = images
        self.recorder = recorder
        self.clock = clock
        self.config = config
        self.backoff = backoff
        self.fetch = fetch
        self.probes = probes
        self.volumes = volumes
        # sandbox id -> (pod uid, its containers by name): the listing of the sync running
        # for that pod, until it changes something (see "Runtime snapshot")
        self._snapshots: dict[str, tuple[str, dict[str, list[ContainerStatus]]]] = {}

    def _event(self, pod: core_pb2.Pod, container: str, event_type: str, reason: str,
               message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(pod, event_type, reason, message,
                                field_path=container_field_path(pod, container))

    def pod_dir(self, uid: str) -> Path:
        return self.config.data_dir / "pods" / uid

    # -- runtime snapshot ---------------------------------------------------------------

    async def _sandboxes(self, uid: str) -> list[SandboxStatus]:
        return [s for s in await self.runtime.list_pod_sandboxes() if s.pod_uid == uid]

    async def _containers(self, sandbox_id: str,
                          uid: str | None = None) -> dict[str, list[ContainerStatus]]:
        """The sandbox's containers by name; with ``uid``, the sync's snapshot."""
        if uid is not None and (snap := self._snapshots.get(sandbox_id)) is not None:
            return snap[1]
        by_name = group_containers(await self.runtime.list_containers(sandbox_id))
        if uid is not None:
            self._snapshots[sandbox_id] = (uid, by_name)
        return by_name

    def _changed(self, sandbox_id: str) -> None:
        """The sandbox's containers changed: the next look lists them again."""
        self._snapshots.pop(sandbox_id, None)

    def _drop_snapshots(self, uid: str) -> None:
        for sid in [k for k, (u, _) in self._snapshots.items() if u == uid]:
            del self._snapshots[sid]

    # -- sync -------------------------------------------------------------------------------

    async def sync_pod(self, pod: core_pb2.Pod, state: PodState) -> SyncResult:
        try:
            return await self._sync_pod(pod, state)
        finally:
            self._drop_snapshots(pod.metadata.uid)

    async def _sync_pod(self, pod: core_pb2.Pod, state: PodState) -> SyncResult:
        uid = pod.metadata.uid
        now = self.clock.now()
        state.waiting = {}
        requeue: list[float] = []
        spec = pod.spec
        grace = kill_grace(pod, now, self.config.minimum_grace)
        if (not state.phase_override and pod.status.phase not in TERMINAL
                and spec.HasField("active_deadline_seconds")):
            # startTime is set by this very sync when the pod is new
            started = (timestamp_seconds(pod.status.start_time)
                       if pod.status.HasField("start_time") else now)
            left = started + spec.active_deadline_seconds - now
            if left <= 0:
                state.phase_override = FAILED
                state.reason, state.message = DEADLINE_REASON, DEADLINE_MESSAGE
            else:
                requeue.append(left)
        sandboxes = await self._sandboxes(uid)
        ready = [s for s in sandboxes if s.state is SandboxState.READY]
        if state.phase_override or pod.status.phase in TERMINAL:
            for sb in ready:
                await self._stop_all(pod, sb.id, grace)
            views = await self._views(pod, state, ready[0] if ready else None)
            facts = self._facts(ready[0] if ready else None, now, state)
            return SyncResult(compute_status(pod, views, facts), None)

        sandbox = ready[0] if ready else None
        for stale in sandboxes:
            if stale.state is not SandboxState.READY:
                # a sandbox that died (runtime restart): clear it, start over in a new one
                await self._stop_all(pod, stale.id, self.config.minimum_grace)
                await self.runtime.remove_pod_sandbox(stale.id)
        if sandbox is None:
            problem = await self._handler_problem(pod, state)
            if problem is not None:
                log.warning("cannot create pod sandbox", pod=pod.metadata.name, error=problem)
                if self.recorder is not None:
                    self.recorder.event(pod, "Warning", "FailedCreatePodSandBox", problem)
                views = await self._views(pod, state, None)
                return SyncResult(compute_status(pod, views, self._facts(None, now, state)),
                                  self.config.retry_period)
            try:
                sid = await self.runtime.run_pod_sandbox(self._sandbox_config(pod))
            except RuntimeError_ as e:
                # e.g. the node's pod network is not ready yet: retried soon
                log.warning("cannot create the pod's sandbox", pod=pod.metadata.name,
                            reason=e.reason, error=str(e))
                if self.recorder is not None:
                    self.recorder.event(pod, "Warning", "FailedCreatePodSandBox",
                                        f"Failed to create pod sandbox: {e}")
                for c in (*spec.init_containers, *spec.containers):
                    state.waiting[c.name] = ("ContainerCreating", f"{e.reason}: {e}")
                views = await self._views(pod, state, None)
                return SyncResult(compute_status(pod, views, self._facts(None, now, state)),
                                  min(self.config.retry_period, SANDBOX_RETRY))
            sandbox = next((s for s in await self._sandboxes(uid) if s.id == sid), None)
            if sandbox is not None and sandbox.ip:
                write_pod_hosts(self.pod_dir(uid), pod, sandbox.ip, self.config.cluster_domain)
        if state.volume_paths is None:
            try:
                state.volume_paths = await self._setup_volumes(pod)
            except Exception as e:
                if self.recorder is not None:
                    self.recorder.event(pod, WARNING, "FailedMount", str(e))
                for c in (*spec.init_containers, *spec.containers):
                    state.waiting[c.name] = ("ContainerCreating", f"volumes not ready: {e}")
                views = await self._views(pod, state, sandbox)
                return SyncResult(compute_status(pod, views, self._facts(sandbox, now, state)),
                                  self.config.retry_period)
        if sandbox is not None:
            await self._act(pod, state, sandbox, grace, requeue)
        views = await self._views(pod, state, sandbox)
        status = compute_status(pod, views, self._facts(sandbox, now, state))
        return SyncResult(status, min(requeue) if requeue else None)

    async def _handler_problem(self, pod: core_pb2.Pod, state: PodState) -> str | None:
        """Resolve the pod's runtime handler into ``state.handler``; what stops the sandbox
        from being created (a missing RuntimeClass, a handler this node lacks), or None."""
        if state.handler:
            return None
        name = pod.spec.runtime_class_name if pod.spec.HasField("runtime_class_name") else ""
        if not name:
            handler = self.config.default_handler
        else:
            rc = await self.fetch(node_pb2.RuntimeClass, "", name) if self.fetch else None
            if rc is None:
                return (f"Failed to create pod sandbox: RuntimeClass \"{name}\" not found")
            handler = rc.handler
        supported = {HOST_HANDLER} | (set(IMAGE_HANDLERS) if self.images is not None else set())
        if handler not in supported:
            return (f"Failed to create pod sandbox: no runtime for \"{handler}\" is "
                    f"configured on node {self.config.node_name}")
        state.handler = handler
        return None

    async def _image(self, pod: core_pb2.Pod, state: PodState,
                     c: core_pb2.Container) -> container_spec.ImageFacts | None:
        """The container's image on this node (pulled as its policy says), or None when the
        pod runs on the host's filesystem. Raises PullFailure."""
        if state.handler == HOST_HANDLER or self.images is None:
            return None
        ensured = await self.images.ensure(pod, c)
        await self.images.service.mark_used(ensured.image.id)
        return container_spec.ImageFacts(ensured.image.config,
                                         self.images.service.layer_dirs(ensured.image),
                                         ensured.image_ref, ensured.image.id)

    async def _act(self, pod: core_pb2.Pod, state: PodState, sandbox: SandboxStatus,
                   grace: float, requeue: list[float]) -> None:
        uid = pod.metadata.uid
        spec = pod.spec
        policy = spec.restart_policy or "Always"
        by_name = await self._containers(sandbox.id, uid)

        def latest(name: str) -> ContainerStatus | None:
            lst = by_name.get(name)
            return lst[0] if lst else None

        initialized = any(c.name in by_name for c in spec.containers)
        if not initialized:
            step = next_init_step(pod, {c.name: latest(c.name) for c in spec.init_containers},
                                  lambda n: self._started(pod, n, latest(n)))
            if step.failed:
                state.phase_override = FAILED
                await self._stop_all(pod, sandbox.id, grace)
                return
            if step.start:
                c = next(x for x in spec.init_containers if x.name == step.start)
                await self._start(pod, state, sandbox, c, latest(c.name), grace, requeue,
                                  by_name.get(c.name, []))
                return
            if step.wait:
                return
        # app containers (and sidecars that stopped after initialisation)
        app_done = True
        for c in spec.containers:
            cur = latest(c.name)
            if cur is not None and cur.state is ContainerState.RUNNING:
                if ((c.HasField("liveness_probe") or c.HasField("startup_probe"))
                        and self.probes is not None
                        and (failure := self.probes.liveness_failed(uid, c.name))):
                    log.info("liveness probe failed; restarting", pod=pod.metadata.name,
                             container=c.name)
                    probe = "startup" if failure.startswith("Startup") else "liveness"
                    await self._kill(pod, sandbox.id, cur.id, c, grace, run_pre_stop=True,
                                     why=f"Container {c.name} failed {probe} probe, will be "
                                         "restarted")
                    cur = await self.runtime.container_status(cur.id)
                else:
                    app_done = False
                    continue
            if cur is None or cur.state is ContainerState.CREATED:
                app_done = False
                await self._start(pod, state, sandbox, c, cur, grace, requeue,
                                  by_name.get(c.name, []))
            elif should_restart(policy, cur.exit_code):
                app_done = False
                await self._start(pod, state, sandbox, c, cur, grace, requeue,
                                  by_name.get(c.name, []))
        sidecars = [c for c in spec.init_containers if is_sidecar(c)]
        if app_done and spec.containers:
            # every app container finished for good: sidecars go, last started first
            for c in reversed(sidecars):
                cur = latest(c.name)
                if cur is not None and cur.state is ContainerState.RUNNING:
                    await self._kill(pod, sandbox.id, cur.id, c, grace, run_pre_stop=True)
            return
        for c in sidecars:
            cur = latest(c.name)
            if cur is None or cur.state is not ContainerState.RUNNING:
                await self._start(pod, state, sandbox, c, cur, grace, requeue,
                                  by_name.get(c.name, []))

    def _started(self, pod: core_pb2.Pod, name: str, cur: ContainerStatus | None) -> bool:
        if cur is None or cur.state is not ContainerState.RUNNING:
            return False
        spec = self._spec(pod, name)
        if spec is None or not spec.HasField("startup_probe") or self.probes is None:
            return True
        return self.probes.is_started(pod.metadata.uid, name)

    @staticmethod
    def _spec(pod: core_pb2.Pod, name: str) -> core_pb2.Container | None:
        for c in (*pod.spec.init_containers, *pod.spec.containers):
            if c.name == name:
                return c
        return None

    async def _start(self, pod: core_pb2.Pod, state: PodState, sandbox: SandboxStatus,
                     c: core_pb2.Container, cur: ContainerStatus | None, grace: float,
                     requeue: list[float],
                     attempts: Sequence[ContainerStatus] | None = None) -> bool:
        """Start (or restart) ``c``; False when it could not (state.waiting says why).
        ``attempts``: its containers in the runtime, newest first (``cur`` is the first),
        from the sync's listing; they spare listing again to collect old attempts."""
        uid = pod.metadata.uid
        key = (uid, c.name)
        if cur is not None and cur.state is ContainerState.EXITED:
            remaining = self.backoff.remaining(key, cur.finished_at)
            if remaining > 0:
                state.waiting[c.name] = ("CrashLoopBackOff", crash_loop_message(
                    self.backoff.delay(key), c.name, pod.metadata.name,
                    pod.metadata.namespace, uid))
                self._event(pod, c.name, WARNING, "BackOff", back_off_message(c.name, pod))
                requeue.append(remaining)
                return False
            self.backoff.next(key, cur.finished_at)
        attempt = cur.attempt + 1 if cur is not None else 0
        previous = list(attempts) if attempts is not None else None
        if cur is not None and cur.state is ContainerState.CREATED:
            # created but never started (we died in between): replace it, same attempt
            attempt = cur.attempt
            self._changed(sandbox.id)
            await self.runtime.remove_container(cur.id)
            if previous is not None:
                previous = [p for p in previous if p.id != cur.id]
        pod_dir = self.pod_dir(uid)
        log_path = pod_dir / "logs" / c.name / f"{attempt}.log"
        try:
            image = await self._image(pod, state, c)
        except PullFailure as e:
            state.waiting[c.name] = (e.reason, e.message)
            requeue.append(max(e.retry_after, 0.1))
            return False
        try:
            ctx = await self._context(pod, c, sandbox)
            config = container_spec.build_config(c, ctx, volume_paths=state.volume_paths or {},
                                                 log_path=str(log_path), image=image,
                                                 subpath=safe_subpath)
            hosts = pod_dir / POD_HOSTS
            if sandbox.ip and hosts.exists() and not any(
                    m.container_path == "/etc/hosts" for m in config.mounts):
                config = dataclasses.replace(config, mounts=[
                    *config.mounts, Mount(str(hosts), "/etc/hosts", read_only=False)])
        except container_spec.ContainerConfigError as e:
            state.waiting[c.name] = (container_spec.CONFIG_ERROR, str(e))
            self._event(pod, c.name, WARNING, "Failed", f"Error: {e}")
            requeue.append(self.config.retry_period)
            return False
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._changed(sandbox.id)
        try:
            cid = await self.runtime.create_container(sandbox.id, config, attempt)
        except RuntimeError_ as e:
            log.warning("cannot create container", pod=pod.metadata.name, container=c.name,
                        attempt=attempt, reason=e.reason, error=str(e))
            state.waiting[c.name] = (e.reason, str(e))
            self._event(pod, c.name, WARNING, "Failed", f"Error: {e}")
            requeue.append(self.config.retry_period)
            return False
        self._event(pod, c.name, NORMAL, "Created", f"Created container: {c.name}")
        try:
            await self.runtime.start_container(cid)
        except RuntimeError_ as e:
            log.warning("cannot start container", pod=pod.metadata.name, container=c.name,
                        attempt=attempt, error=str(e))
            state.waiting[c.name] = ("RunContainerError", str(e))
            self._event(pod, c.name, WARNING, "Failed", f"Error: {e}")
            requeue.append(self.config.retry_period)
            return False
        log.info("container started", pod=pod.metadata.name, container=c.name,
                 attempt=attempt)
        self._event(pod, c.name, NORMAL, "Started", f"Started container {c.name}")
        await self._gc_attempts(sandbox.id, c.name, previous)
        if c.lifecycle.HasField("post_start") and hooks.has_handler(c.lifecycle.post_start):
            err = await hooks.run_hook(self.runtime, self.clock, cid, c,
                                       c.lifecycle.post_start, pod_ip=sandbox.ip,
                                       host_ip=self.config.host_ip, timeout=grace)
            if err is not None:
                log.warning("FailedPostStartHook", pod=pod.metadata.name, container=c.name,
                            error=err)
                self._event(pod, c.name, WARNING, "FailedPostStartHook", err)
                self._event(pod, c.name, NORMAL, "Killing",
                            f"FailedPostStartHook: stopping container {c.name}")
                state.waiting[c.name] = ("PostStartHookError", err)
                self._changed(sandbox.id)
                await self.runtime.stop_container(cid, self.config.minimum_grace)
                requeue.append(0.0)
                return False
        return True

    async def _gc_attempts(self, sandbox_id: str, name: str,
                           previous: list[ContainerStatus] | None = None) -> None:
        """Keep the newest two attempts of a container (current + lastState), the current
        one having just been started; ``previous``: the attempts before it, newest first
        (listed when not given)."""
        if previous is None:
            old_ones = (await self._containers(sandbox_id)).get(name, [])[2:]
        else:
            old_ones = previous[1:]
        for old in old_ones:
            if old.state is not ContainerState.RUNNING:
                self._changed(sandbox_id)
                try:
                    await self.runtime.remove_container(old.id)
                except RuntimeError_ as e:
                    log.warning("cannot remove old container", container=old.id, error=str(e))

    async def _context(self, pod: core_pb2.Pod, c: core_pb2.Container,
                       sandbox: SandboxStatus) -> container_spec.PodContext:
        cms, secrets = container_spec.referenced_objects(c)
        ns = pod.metadata.namespace
        cm_objs: dict[str, core_pb2.ConfigMap | None] = {}
        secret_objs: dict[str, core_pb2.Secret | None] = {}
        if self.fetch is not None:
            for name in sorted(cms):
                cm_objs[name] = await self.fetch(core_pb2.ConfigMap, ns, name)
            for name in sorted(secrets):
                secret_objs[name] = await self.fetch(core_pb2.Secret, ns, name)
        svc_env: list[tuple[str, str]] = []
        if self.services is not None:
            try:
                svc_env = service_env(pod, await self.services(ns))
            except errors.ApiError as e:
                raise container_spec.ContainerConfigError(
                    f"cannot list the Services for the container's environment: {e}") from None
        return container_spec.PodContext(
            pod=pod, node_name=self.config.node_name, host_ip=self.config.host_ip,
            pod_ip=sandbox.ip or self.config.host_ip, config_maps=cm_objs, secrets=secret_objs,
            allocatable=self.config.allocatable, service_env=svc_env)

    # -- stopping ---------------------------------------------------------------------------

    async def _kill(self, pod: core_pb2.Pod, sandbox_id: str, cid: str,
                    c: core_pb2.Container | None, grace: float, *,
                    run_pre_stop: bool, why: str = "") -> None:
        """preStop (bounded by grace), then SIGTERM, SIGKILL after what is left; ``why``
        is the Killing Event's message (default: "Stopping container NAME")."""
        self._changed(sandbox_id)
        start = self.clock.monotonic()
        if c is not None and pod.metadata.uid:
            self._event(pod, c.name, NORMAL, "Killing", why or f"Stopping container {c.name}")
        if (run_pre_stop and c is not None and c.lifecycle.HasField("pre_stop")
                and hooks.has_handler(c.lifecycle.pre_stop)):
            err = await hooks.run_hook(self.runtime, self.clock, cid, c, c.lifecycle.pre_stop,
                                       pod_ip="", host_ip=self.config.host_ip, timeout=grace)
            if err is not None:
                log.warning("FailedPreStopHook", pod=pod.metadata.name, container=c.name,
                            error=err)
                self._event(pod, c.name, WARNING, "FailedPreStopHook", err)
            if self.clock.monotonic() - start >= grace:
                # the hook used the whole grace period: the container gets only the minimum
                self._event(pod, c.name, WARNING, "ExceededGracePeriod",
                            "Container runtime did not kill the pod within specified grace "
                            "period.")
        left = max(grace - (self.clock.monotonic() - start), self.config.minimum_grace)
        try:
            await self.runtime.stop_container(cid, left)
        except RuntimeError_ as e:
            log.warning("stop container failed", container=cid, error=str(e))

    async def _stop_all(self, pod: core_pb2.Pod | None, sandbox_id: str, grace: float) -> None:
        """Stop every running container of the sandbox: app containers together, then
        sidecars last started first, then anything else."""
        by_name = await self._containers(sandbox_id)
        running = {n: lst[0] for n, lst in by_name.items()
                   if lst and lst[0].state is ContainerState.RUNNING}
        if not running:
            return
        placeholder = pod or core_pb2.Pod()
        app = [c for c in placeholder.spec.containers if c.name in running]
        sidecars = [c for c in reversed(placeholder.spec.init_containers) if c.name in running]
        await asyncio.gather(*(self._kill(placeholder, sandbox_id, running.pop(c.name).id, c,
                                          grace, run_pre_stop=True) for c in app))
        for c in sidecars:
            await self._kill(placeholder, sandbox_id, running.pop(c.name).id, c, grace,
                             run_pre_stop=True)
        await asyncio.gather(*(self._kill(placeholder, sandbox_id, cs.id, None, grace,
                                          run_pre_stop=False)
                               for cs in running.values()))

    async def stop_containers(self, pod: core_pb2.Pod, grace: float) -> None:
        """Stop the pod's running containers as for a deletion, keeping its sandbox,
        volumes and logs (a fenced pod: it may run again)."""
        try:
            for sb in await self._sandboxes(pod.metadata.uid):
                await self._stop_all(pod, sb.id, grace)
        finally:
            self._drop_snapshots(pod.metadata.uid)

    async def terminate(self, pod: core_pb2.Pod | None, uid: str, state: PodState | None,
                        grace: float) -> core_pb2.PodStatus | None:
        """Stop everything of pod ``uid`` and remove its sandbox, volumes and directory.

        Returns the pod's final status (terminal phase) when ``pod`` is known."""
        try:
            return await self._terminate(pod, uid, state, grace)
        finally:
            self._drop_snapshots(uid)
            if pod is not None:
                self._drop_snapshots(pod.metadata.uid)

    async def _terminate(self, pod: core_pb2.Pod | None, uid: str, state: PodState | None,
                         grace: float) -> core_pb2.PodStatus | None:
        sandboxes = await self._sandboxes(uid)
        for sb in sandboxes:
            await self._stop_all(pod, sb.id, grace)
        status = None
        if pod is not None:
            st = state or PodState(uid)
            ready = next((s for s in sandboxes if s.state is SandboxState.READY), None)
            views = await self._views(pod, st, ready, terminating=True)
            app = [views[c.name] for c in pod.spec.containers if c.name in views]
            ok = all(v.current is not None and v.current.exit_code == 0 for v in app)
            if pod.status.phase in TERMINAL:
                phase = pod.status.phase
            else:
                phase = st.phase_override or (SUCCEEDED if ok and app else FAILED)
            facts = PodFacts(now=self.clock.now(), host_ip=self.config.host_ip,
                             pod_ip=(ready.ip if ready else "") or self.config.host_ip,
                             phase_override=phase, reason=st.reason, message=st.message)
            status = compute_status(pod, views, facts)
        if self.probes is not None:
            self.probes.remove_pod(uid)
        for sb in sandboxes:
            await self.runtime.stop_pod_sandbox(sb.id)
            await self.runtime.remove_pod_sandbox(sb.id)
        if self.volumes is not None:
            await self.volumes.teardown(uid)
        self._remove_pod_dir(uid)
        self.backoff.forget_pod(uid)
        if self.images is not None:
            self.images.forget_pod(uid)
        return status

    def _remove_pod_dir(self, uid: str) -> None:
        pod_dir = self.pod_dir(uid)
        if not pod_dir.exists():
            return
        volumes = pod_dir / "volumes"
        if self.volumes is not None and volumes.exists() and any(volumes.iterdir()):
            # the volume manager owns what is left there (mounts?): never delete through it
            shutil.rmtree(pod_dir / "logs", ignore_errors=True)
            log.warning("pod volumes left behind after teardown", path=str(volumes))
            return
        shutil.rmtree(pod_dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------

    def _sandbox_config(self, pod: core_pb2.Pod) -> SandboxConfig:
        uid = pod.metadata.uid
        pod_dir = self.pod_dir(uid)
        (pod_dir / "logs").mkdir(parents=True, exist_ok=True)
        (pod_dir / "volumes").mkdir(parents=True, exist_ok=True)
        return SandboxConfig(
            pod_uid=uid, namespace=pod.metadata.namespace, name=pod.metadata.name,
            hostname=pod.spec.hostname or pod.metadata.name, pod_dir=str(pod_dir),
            labels=dict(pod.metadata.labels), annotations=dict(pod.metadata.annotations),
            host_network=pod.spec.host_network, host_ipc=pod.spec.host_ipc,
            hosts_file=hosts_file(pod, _read_host_hosts()) if pod.spec.host_aliases else None,
            resolv_conf=self._resolv_conf(pod),
            port_mappings=[] if pod.spec.host_network else port_mappings(pod))

    def _resolv_conf(self, pod: core_pb2.Pod) -> str:
        try:
            host = parse_resolv_conf(self.config.resolv_conf.read_text())
        except OSError as e:
            # kubelet goes on with an empty host config too; say so on the pod
            host = parse_resolv_conf("")
            warnings = [("DNSConfigForming",
                         f"reading {self.config.resolv_conf}: {e.strerror or e}")]
        else:
            warnings = []
        conf, more = pod_resolv_conf(pod, host, self.config.cluster_dns,
                                     self.config.cluster_domain)
        if self.recorder is not None:
            for reason, message in (*warnings, *more):
                self.recorder.event(pod, WARNING, reason, message)
        return conf.render()

    async def _setup_volumes(self, pod: core_pb2.Pod) -> dict[str, str]:
        if self.volumes is not None:
            return await self.volumes.setup(pod)
        # no volume manager: an empty directory per volume, so every mount resolves
        base = self.pod_dir(pod.metadata.uid) / "volumes"
        paths: dict[str, str] = {}
        for v in pod.spec.volumes:
            path = base / v.name
            path.mkdir(parents=True, exist_ok=True)
            paths[v.name] = str(path)
        return paths

    async def _views(self, pod: core_pb2.Pod, state: PodState, sandbox: SandboxStatus | None,
                     *, terminating: bool = False) -> dict[str, ContainerView]:
        uid = pod.metadata.uid
        by_name = await self._containers(sandbox.id, uid) if sandbox is not None else {}
        policy = pod.spec.restart_policy or "Always"
        terminal = terminating or bool(state.phase_override) or pod.status.phase in TERMINAL
        views: dict[str, ContainerView] = {}
        ids: dict[str, str] = {}
        app_names = {c.name for c in pod.spec.containers}
        known = {cs.id for lst in by_name.values() for cs in lst}
        state.log_messages = {k: v for k, v in state.log_messages.items() if k in known}
        for c in (*pod.spec.init_containers, *pod.spec.containers):
            lst = by_name.get(c.name, [])
            cur = await self._message(c, lst[0], state) if lst else None
            prev = await self._message(c, lst[1], state) if len(lst) > 1 else None
            running = cur is not None and cur.state is ContainerState.RUNNING
            if running and cur is not None:
                ids[c.name] = cur.id
            ready = running and not terminating
            if ready and c.HasField("readiness_probe") and self.probes is not None:
                ready = self.probes.is_ready(uid, c.name)
            started = self._started(pod, c.name, cur)
            if c.name in app_names:
                will_restart = not terminal and cur is not None and should_restart(
                    policy, cur.exit_code)
            else:
                will_restart = not terminal and (is_sidecar(c) or (
                    cur is not None and cur.exit_code != 0 and policy != "Never"))
            reason, message = state.waiting.get(c.name, ("", ""))
            views[c.name] = ContainerView(c.name, cur, prev, reason, message, ready,
                                          started, will_restart)
        if self.probes is not None and not terminating and ids != state.probe_ids:
            state.probe_ids = dict(ids)
            # network probes without a host dial the pod's own address (its network
            # namespace), as the kubelet does; loopback here would be the node's
            self.probes.add_pod(pod, dict(ids), sandbox.ip if sandbox is not None else "")
        return views

    @staticmethod
    async def _message(c: core_pb2.Container, cs: ContainerStatus,
                       state: PodState) -> ContainerStatus:
        """``cs`` with its FallbackToLogsOnError message, when that policy applies."""
        if (c.termination_message_policy != "FallbackToLogsOnError" or cs.message
                or cs.state is not ContainerState.EXITED or cs.exit_code == 0
                or not cs.log_path):
            return cs
        message = state.log_messages.get(cs.id)
        if message is None:
            message = state.log_messages[cs.id] = await log_tail_message(cs.log_path)
        return dataclasses.replace(cs, message=message)

    def _facts(self, sandbox: SandboxStatus | None, now: float, state: PodState) -> PodFacts:
        pod_ip = (sandbox.ip if sandbox is not None else "") or self.config.host_ip
        return PodFacts(now=now, host_ip=self.config.host_ip, pod_ip=pod_ip,
                        phase_override=state.phase_override, reason=state.reason,
                        message=state.message)


