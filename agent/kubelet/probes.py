"""The probe manager: liveness, readiness and startup workers and the results the kubelet reads.

Owns, per pod and container, one worker task per configured probe (kubelet's
``prober_manager.go`` and ``worker.go``) and the three results derived from them:

- *started*: false while a startup probe exists and has not yet succeeded, else true. The
  startup probe gates the other two: liveness and readiness do not run until it succeeds.
- *ready*: with a readiness probe, false until ``successThreshold`` consecutive successes
  (and back to false after ``failureThreshold`` consecutive failures); without one, true
  once the container is running (and started).
- *liveness failure*: after ``failureThreshold`` consecutive liveness (or startup) failures,
  a message such as ``Liveness probe failed: HTTP probe failed with statuscode: 500`` that
  :meth:`ProbeManager.liveness_failed` hands to the kubelet once; the kubelet kills the
  container and restarts it per restartPolicy. That worker then stops probing until the
  container comes back with a new id (kubelet's ``onHold``: probing a container that is
  being killed only produces noise).

Schedule, as kubelet: ``initialDelaySeconds`` after the container started (i.e. after
``add_pod`` saw its id), then one attempt every ``periodSeconds``. An attempt whose outcome is
unknown (a named port that does not exist, a runtime error) is thrown away, not counted.
The threshold arithmetic is the plain function :func:`apply_result`.

Concurrency contract: one event loop. ``add_pod`` / ``remove_pod`` / the getters are
synchronous and never block; workers are tasks named ``probe:<kind>:<ns>/<pod>:<container>``
kept in ``_workers`` (keyed by pod uid, container, kind) and cancelled when their container
changes id, leaves, its pod is removed, or on :meth:`close`. A cancelled worker is kept in
``_stopping`` until it has finished, and ``close`` awaits them all, so no task is ever
unowned. A worker publishes only into the container state it was started for, so a stale
worker racing its replacement cannot overwrite newer results. ``on_change(uid)`` is called
synchronously whenever started, ready or a liveness failure changes, for the kubelet to
re-sync that pod; it must not block.

Every failed attempt is also an ``Unhealthy`` Event on the pod (``Liveness probe failed:
<output>``, fieldPath naming the container), as kubelet's prober records; the recorder
aggregates repeats and never blocks.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from agent.kubelet.prober import ExecRunner, ProbeOutcome, Result, run_probe
from agent.kubelet.status import container_field_path
from control.api.pb import core_pb2
from control.runtime import Clock
from control.runtime.events import WARNING, Recorder

log = structlog.get_logger(__name__)

# kubelet's defaults, used when a field is 0 (our proto ints cannot tell unset from 0; the
# apiserver defaults them anyway).
DEFAULT_PERIOD = 10
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3


class ProbeType(enum.Enum):
    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"


_FIELD = {ProbeType.LIVENESS: "liveness_probe", ProbeType.READINESS: "readiness_probe",
          ProbeType.STARTUP: "startup_probe"}


# -- pure helpers ------------------------------------------------------------------------


@dataclass
class ThresholdState:
    """The current run of equal results (kubelet's ``lastResult`` / ``resultRun``)."""

    last: Result | None = None
    run: int = 0


def apply_result(state: ThresholdState, result: Result, success_threshold: int,
                 failure_threshold: int) -> Result | None:
    """Count ``result`` into ``state``; return the result to publish once its run reaches
    its threshold (and on every attempt after), or None while below it. UNKNOWN is never
    counted nor published."""
    if result is Result.UNKNOWN:
        return None
    if state.last is result:
        state.run += 1
    else:
        state.last, state.run = result, 1
    threshold = success_threshold if result is Result.SUCCESS else failure_threshold
    if state.run < max(1, threshold):
        return None
    return result


def probed_containers(pod: core_pb2.Pod) -> list[core_pb2.Container]:
    """Containers that can be probed: app containers and sidecars (init containers with
    restartPolicy Always); ordinary init containers run to completion and are not probed."""
    sidecars = [c for c in pod.spec.init_containers
                if c.HasField("restart_policy") and c.restart_policy == "Always"]
    return [*sidecars, *pod.spec.containers]


def failure_message(kind: ProbeType, outcome: ProbeOutcome) -> str:
    head = f"{kind.value} probe failed"
    return f"{head}: {outcome.message}" if outcome.message else head


# -- state -------------------------------------------------------------------------------


@dataclass(eq=False)
class _Container:
    """Results for one incarnation (container id) of one container."""

    container_id: str
    has_readiness: bool
    started: bool
    ready: bool = False
    liveness_failure: str | None = None
    started_event: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Pod:
    pod: core_pb2.Pod
    pod_ip: str
    containers: dict[str, _Container] = field(default_factory=dict)


WorkerKey = tuple[str, str, ProbeType]


class ProbeManager:
    def __init__(self, runtime: ExecRunner, clock: Clock, *,
                 recorder: Recorder | None = None) -> None:
        self._runtime = runtime
        self._clock = clock
        self._recorder = recorder
        self._pods: dict[str, _Pod] = {}
        self._workers: dict[WorkerKey, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False
        self.on_change: Callable[[str], None] | None = None

    # -- kubelet-facing API --------------------------------------------------------------

    def add_pod(self, pod: core_pb2.Pod, container_ids: Mapping[str, str],
                pod_ip: str = "") -> None:
        """Track ``pod`` whose running containers are ``container_ids`` (name -> id).

        Idempotent: containers whose id is unchanged keep their workers and results; a new
        id (a restart) starts fresh workers and results; a container missing from
        ``container_ids`` is not running, so its workers stop and it is neither started nor
        ready."""
        if self._closed:
            raise RuntimeError("ProbeManager is closed")
        uid = pod.metadata.uid
        entry = self._pods.get(uid)
        if entry is None:
            entry = self._pods[uid] = _Pod(pod, pod_ip)
        # Workers read these on every attempt, so an IP learned later is used from then on.
        entry.pod, entry.pod_ip = pod, pod_ip
        changed = False
        specs = {c.name: c for c in probed_containers(pod)}
        for name in list(entry.containers):
            if name not in container_ids or name not in specs:
                self._stop_container(uid, name)
                del entry.containers[name]
                changed = True
        for name, cid in container_ids.items():
            spec = specs.get(name)
            if spec is None:
                continue
            current = entry.containers.get(name)
            if current is not None and current.container_id == cid:
                continue
            if current is not None:
                self._stop_container(uid, name)
            entry.containers[name] = self._start_container(pod, spec, cid)
            changed = True
        if changed:
            self._notify(uid)

    def remove_pod(self, uid: str) -> None:
        """Stop every worker of the pod and forget its results."""
        entry = self._pods.pop(uid, None)
        if entry is None:
            return
        for name in entry.containers:
            self._stop_container(uid, name)

    def is_ready(self, uid: str, container: str) -> bool:
        c = self._container(uid, container)
        if c is None or not c.started:
            return False
        return c.ready if c.has_readiness else True

    def is_started(self, uid: str, container: str) -> bool:
        c = self._container(uid, container)
        return c is not None and c.started

    def liveness_failed(self, uid: str, container: str) -> str | None:
        """The pending liveness/startup failure message of the container, handed out once."""
        c = self._container(uid, container)
        if c is None or c.liveness_failure is None:
            return None
        msg, c.liveness_failure = c.liveness_failure, None
        return msg

    async def close(self) -> None:
        """Cancel every worker and wait for all of them to finish."""
        self._closed = True
        for uid in list(self._pods):
            self.remove_pod(uid)
        pending = list(self._stopping)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- internals -----------------------------------------------------------------------

    def _container(self, uid: str, name: str) -> _Container | None:
        entry = self._pods.get(uid)
        return entry.containers.get(name) if entry is not None else None

    def _start_container(self, pod: core_pb2.Pod, spec: core_pb2.Container,
                         cid: str) -> _Container:
        uid = pod.metadata.uid
        state = _Container(container_id=cid, has_readiness=spec.HasField("readiness_probe"),
                           started=not spec.HasField("startup_probe"))
        if state.started:
            state.started_event.set()
        for kind, fname in _FIELD.items():
            if not spec.HasField(fname):
                continue
            probe: core_pb2.Probe = getattr(spec, fname)
            name = (f"probe:{kind.value.lower()}:{pod.metadata.namespace}/"
                    f"{pod.metadata.name}:{spec.name}")
            task = asyncio.get_running_loop().create_task(
                self._worker(uid, spec, kind, probe, state), name=name)
            task.add_done_callback(self._worker_done)
            self._workers[(uid, spec.name, kind)] = task
        return state

    def _stop_container(self, uid: str, name: str) -> None:
        for kind in ProbeType:
            task = self._workers.pop((uid, name, kind), None)
            if task is not None and not task.done():
                task.cancel()
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            log.debug("probe worker stopped", task=task.get_name())
        elif task.exception() is not None:
            log.error("probe worker failed", task=task.get_name(), exc_info=task.exception())

    def _notify(self, uid: str) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(uid)
        except Exception:
            log.exception("probe on_change callback failed", pod_uid=uid)

    def _current(self, uid: str, name: str, state: _Container) -> bool:
        return self._container(uid, name) is state

    async def _attempt(self, uid: str, spec: core_pb2.Container, probe: core_pb2.Probe,
                       state: _Container) -> ProbeOutcome:
        entry = self._pods.get(uid)
        pod_ip = entry.pod_ip if entry is not None else ""
        host_network = entry.pod.spec.host_network if entry is not None else False
        try:
            return await run_probe(probe, container=spec, container_id=state.container_id,
                                   runtime=self._runtime, pod_ip=pod_ip,
                                   host_network=host_network)
        except Exception as e:  # a bug in an executor must not end probing
            log.exception("probe attempt raised", pod_uid=uid, container=spec.name)
            return ProbeOutcome(Result.UNKNOWN, f"probe errored: {e}")

    async def _worker(self, uid: str, spec: core_pb2.Container, kind: ProbeType,
                      probe: core_pb2.Probe, state: _Container) -> None:
        if probe.initial_delay_seconds > 0:
            await self._clock.sleep(probe.initial_delay_seconds)
        period = probe.period_seconds or DEFAULT_PERIOD
        counts = ThresholdState()
        while True:
            if kind is ProbeType.STARTUP and state.started:
                return  # its job is done for this container id
            if kind is not ProbeType.STARTUP and not state.started:
                # Gated by the startup probe; run at once when it succeeds.
                await state.started_event.wait()
                continue
            outcome = await self._attempt(uid, spec, probe, state)
            if not self._current(uid, spec.name, state):
                return
            if outcome.result is Result.FAILURE:
                self._unhealthy(uid, spec.name, kind, outcome)
            published = apply_result(
                counts, outcome.result,
                probe.success_threshold or DEFAULT_SUCCESS_THRESHOLD,
                probe.failure_threshold or DEFAULT_FAILURE_THRESHOLD)
            if published is not None and self._publish(uid, spec.name, kind, state,
                                                       published, outcome):
                return
            await self._clock.sleep(period)

    def _unhealthy(self, uid: str, name: str, kind: ProbeType, outcome: ProbeOutcome) -> None:
        entry = self._pods.get(uid)
        if self._recorder is None or entry is None:
            return
        self._recorder.event(entry.pod, WARNING, "Unhealthy", failure_message(kind, outcome),
                             field_path=container_field_path(entry.pod, name))

    def _publish(self, uid: str, name: str, kind: ProbeType, state: _Container,
                 result: Result, outcome: ProbeOutcome) -> bool:
        """Record a result that reached its threshold; True when the worker should stop."""
        ok = result is Result.SUCCESS
        if kind is ProbeType.READINESS:
            if state.ready != ok:
                state.ready = ok
                log.info("readiness changed", pod_uid=uid, container=name, ready=ok,
                         message=outcome.message)
                self._notify(uid)
            return False
        if kind is ProbeType.STARTUP and ok:
            state.started = True
            state.started_event.set()
            self._notify(uid)
            return True
        if ok:
            return False
        # Liveness or startup failure: the container must be restarted.
        state.liveness_failure = failure_message(kind, outcome)
        log.info("container unhealthy", pod_uid=uid, container=name,
                 message=state.liveness_failure)
        self._notify(uid)
        return True
