"""Pure computation of a Pod's ``status`` from its spec and what the runtime reports.

Input: the pod (spec, and its current status for transition times and sticky fields), one
:class:`ContainerView` per container of the spec (the newest runtime container, the one
before it, the kubelet's own waiting reason and the probe results) and a few pod-level
facts (:class:`PodFacts`). Output: a fresh ``PodStatus``. Rules, as Kubernetes' kubelet
(``generateAPIPodStatus`` / ``getPhase``):

- container **state**: running; terminated (exit code, reason, times, message); or waiting
  with a reason (``ContainerCreating``, ``PodInitializing``, ``CrashLoopBackOff``,
  ``CreateContainerConfigError``...). A container waiting to restart shows its previous run
  as ``lastState.terminated``; so does a running container that restarted.
- **phase**: Pending until every init container (not sidecars) succeeded and every app
  container was started; Running while one runs or restarts; Succeeded / Failed when all
  app containers terminated for good per ``restartPolicy``; Failed when an init container
  failed under ``restartPolicy: Never``. Succeeded and Failed are terminal: once posted they
  never change (the kubelet stops the pod instead).
- **conditions** PodScheduled, Initialized, ContainersReady, Ready (readiness gates read the
  pod's own conditions of that type); ``lastTransitionTime`` is kept from the current status
  unless the condition's status flips. Conditions of other types (written by others, e.g.
  readiness gates, DisruptionTarget) are kept as they are.
- **qosClass** Guaranteed / Burstable / BestEffort from cpu and memory requests and limits.

Concurrency contract: pure functions; ``now`` comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.kubelet.container_spec import IMAGE_ID_LABEL
from agent.runtime.interface import ContainerState, ContainerStatus
from control.api import quantity
from control.api.pb import core_pb2
from control.api.timeutil import time_at

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
TERMINAL = (SUCCEEDED, FAILED)
SCHEDULED, INITIALIZED = "PodScheduled", "Initialized"
CONTAINERS_READY, READY = "ContainersReady", "Ready"
OWN_CONDITIONS = (SCHEDULED, INITIALIZED, CONTAINERS_READY, READY)
CONTAINER_ID_PREFIX = "flotilla://"


@dataclass(frozen=True)
class ContainerView:
    """What the kubelet knows about one container of the spec."""

    name: str
    current: ContainerStatus | None = None  # the newest runtime container
    previous: ContainerStatus | None = None  # the one before it (lastState)
    # the kubelet's reason for not running it now (overrides a terminated state)
    waiting_reason: str = ""
    waiting_message: str = ""
    ready: bool = False
    started: bool = False
    # False: it exited and will not run again (restartPolicy); status stays terminated
    will_restart: bool = True


@dataclass(frozen=True)
class PodFacts:
    now: float
    host_ip: str = ""
    pod_ip: str = ""
    # set when the kubelet decided the pod's fate itself (activeDeadlineSeconds, deletion)
    phase_override: str = ""
    reason: str = ""
    message: str = ""


def is_sidecar(c: core_pb2.Container) -> bool:
    return c.HasField("restart_policy") and c.restart_policy == "Always"


def container_field_path(pod: core_pb2.Pod, name: str) -> str:
    """The involvedObject fieldPath naming container ``name`` of ``pod``, as kubelet's."""
    if any(c.name == name for c in pod.spec.init_containers):
        return f"spec.initContainers{{{name}}}"
    if any(c.name == name for c in pod.spec.ephemeral_containers):
        return f"spec.ephemeralContainers{{{name}}}"
    return f"spec.containers{{{name}}}"




# -- containers -----------------------------------------------------------------------------


def _terminated(cs: ContainerStatus) -> core_pb2.ContainerStateTerminated:
    t = core_pb2.ContainerStateTerminated(
        exit_code=cs.exit_code,
        reason=cs.reason or ("Completed" if cs.exit_code == 0 else "Error"),
        message=cs.message,
        container_id=CONTAINER_ID_PREFIX + cs.id,
    )
    if cs.started_at:
        t.started_at.CopyFrom(time_at(cs.started_at))
    if cs.finished_at:
        t.finished_at.CopyFrom(time_at(cs.finished_at))
    return t


def container_status(spec: core_pb2.Container, view: ContainerView,
                     default_waiting: str = "ContainerCreating") -> core_pb2.ContainerStatus:
    """One ``ContainerStatus`` from what the kubelet observed."""
    out = core_pb2.ContainerStatus(name=spec.name, image=spec.image, image_id="",
                                   restart_count=0, ready=False)
    cur, prev = view.current, view.previous
    if cur is not None:
        out.container_id = CONTAINER_ID_PREFIX + cur.id
        out.restart_count = cur.attempt
        out.image_id = cur.labels.get(IMAGE_ID_LABEL, "")
    running = cur is not None and cur.state is ContainerState.RUNNING
    exited = cur is not None and cur.state is ContainerState.EXITED
    if running and cur is not None:
        out.state.running.started_at.CopyFrom(time_at(cur.started_at or cur.created_at))
        if prev is not None and prev.state is ContainerState.EXITED:
            out.last_state.terminated.CopyFrom(_terminated(prev))
        out.ready = view.ready
        out.started = view.started
    elif exited and cur is not None and (not view.waiting_reason or not view.will_restart):
        out.state.terminated.CopyFrom(_terminated(cur))
        if prev is not None and prev.state is ContainerState.EXITED:
            out.last_state.terminated.CopyFrom(_terminated(prev))
        out.started = False
    else:
        out.state.waiting.reason = view.waiting_reason or default_waiting
        out.state.waiting.message = view.waiting_message
        if exited and cur is not None:
            out.last_state.terminated.CopyFrom(_terminated(cur))
        elif prev is not None and prev.state is ContainerState.EXITED:
            out.last_state.terminated.CopyFrom(_terminated(prev))
        out.started = False
    return out


# -- phase ----------------------------------------------------------------------------------


def compute_phase(pod: core_pb2.Pod, init: Sequence[core_pb2.ContainerStatus],
                  app: Sequence[core_pb2.ContainerStatus]) -> str:
    """kubelet's getPhase, with sidecars."""
    spec = pod.spec
    policy = spec.restart_policy or "Always"
    pending_init = failed_init = 0
    for c, st in zip(spec.init_containers, init, strict=True):
        if is_sidecar(c):
            if not st.state.HasField("running"):
                pending_init += 1  # a sidecar must run before the next init container
            continue
        t = st.state.terminated if st.state.HasField("terminated") else None
        if t is not None and t.exit_code == 0:
            continue
        if t is not None or (st.state.HasField("waiting")
                             and st.last_state.HasField("terminated")
                             and st.last_state.terminated.exit_code != 0):
            failed_init += 1
        else:
            pending_init += 1
    # An app container that has ever existed proves initialisation finished earlier (a
    # sidecar that restarts later does not make the pod Pending again).
    started_app = any(st.container_id or st.state.HasField("terminated")
                      or st.last_state.HasField("terminated") for st in app)
    if (pending_init or failed_init) and not started_app:
        if failed_init and policy == "Never":
            return FAILED
        return PENDING
    running = waiting = stopped = succeeded = 0
    for st in app:
        if st.state.HasField("running"):
            running += 1
        elif st.state.HasField("terminated"):
            stopped += 1
            if st.state.terminated.exit_code == 0:
                succeeded += 1
        elif st.state.HasField("waiting") and st.last_state.HasField("terminated"):
            stopped += 1  # restarting
        else:
            waiting += 1
    if waiting:
        return PENDING
    if running:
        return RUNNING
    if stopped:
        if policy == "Always":
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        if policy == "Never":
            return FAILED
        return RUNNING
    return PENDING


# -- conditions -----------------------------------------------------------------------------


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> core_pb2.PodCondition:
    return core_pb2.PodCondition(type=type_, status="True" if ok else "False",
                                 reason="" if ok else reason, message="" if ok else message)


def _names(items: Sequence[str]) -> str:
    return "[" + " ".join(items) + "]"


def compute_conditions(pod: core_pb2.Pod, phase: str,
                       init: Sequence[core_pb2.ContainerStatus],
                       app: Sequence[core_pb2.ContainerStatus],
                       now: float) -> list[core_pb2.PodCondition]:
    """The pod's conditions: ours recomputed, others kept; transition times preserved."""
    spec = pod.spec
    old = {c.type: c for c in pod.status.conditions}
    incomplete = [st.name for c, st in zip(spec.init_containers, init, strict=True)
                  if not (st.state.HasField("running") and is_sidecar(c))
                  and not (st.state.HasField("terminated") and st.state.terminated.exit_code == 0
                           and not is_sidecar(c))]
    started_app = any(st.container_id or st.last_state.HasField("terminated") for st in app)
    if started_app or phase == SUCCEEDED:
        # initialisation is not undone by a sidecar restarting later; a pod that failed
        # before its app started (an init container failed, its deadline passed) was not
        # initialised, as kubelet reports it
        incomplete = []
    unready = [st.name for c, st in zip(spec.init_containers, init, strict=True)
               if is_sidecar(c) and not st.ready]
    unready += [st.name for st in app if not st.ready]
    completed = phase in TERMINAL
    initialized = _condition(INITIALIZED, not incomplete, "ContainersNotInitialized",
                             f"containers with incomplete status: {_names(incomplete)}")
    if completed and phase == SUCCEEDED:
        initialized.reason = "PodCompleted"
    if completed:
        containers_ready = _condition(CONTAINERS_READY, False, "PodCompleted")
        ready = _condition(READY, False, "PodCompleted")
    else:
        containers_ready = _condition(CONTAINERS_READY, not unready, "ContainersNotReady",
                                      f"containers with unready status: {_names(unready)}")
        ready = _condition(READY, not unready, "ContainersNotReady",
                           f"containers with unready status: {_names(unready)}")
        if not unready:
            gate_msgs = []
            for gate in spec.readiness_gates:
                cond = old.get(gate.condition_type)
                if cond is None:
                    gate_msgs.append(f'corresponding condition of pod readiness gate '
                                     f'"{gate.condition_type}" does not exist.')
                elif cond.status != "True":
                    gate_msgs.append(f'the status of pod readiness gate "{gate.condition_type}"'
                                     f' is not "True", but {cond.status}')
            if gate_msgs:
                ready = _condition(READY, False, "ReadinessGatesNotReady", ", ".join(gate_msgs))
    scheduled = _condition(SCHEDULED, True)
    ours = {SCHEDULED: scheduled, INITIALIZED: initialized, CONTAINERS_READY: containers_ready,
            READY: ready}
    out: list[core_pb2.PodCondition] = []
    for type_ in OWN_CONDITIONS:
        cond = ours[type_]
        prev = old.get(type_)
        if prev is not None and prev.status == cond.status and prev.HasField(
                "last_transition_time"):
            cond.last_transition_time.CopyFrom(prev.last_transition_time)
        else:
            cond.last_transition_time.CopyFrom(time_at(now))
        out.append(cond)
    out.extend(c for c in pod.status.conditions if c.type not in OWN_CONDITIONS)
    return out


# -- QoS ------------------------------------------------------------------------------------


def qos_class(pod: core_pb2.Pod) -> str:
    """Guaranteed, Burstable or BestEffort (Kubernetes' GetPodQOS, cpu and memory only)."""
    requests: dict[str, int] = {}
    limits: dict[str, int] = {}
    guaranteed = True
    for c in (*pod.spec.init_containers, *pod.spec.containers):
        res = c.resources
        has_limits = set()
        for name in ("cpu", "memory"):
            if name in res.requests and res.requests[name].string and not quantity.is_zero(
                    res.requests[name].string):
                requests[name] = requests.get(name, 0) + quantity.milli_value(
                    res.requests[name].string)
            if name in res.limits and res.limits[name].string and not quantity.is_zero(
                    res.limits[name].string):
                limits[name] = limits.get(name, 0) + quantity.milli_value(
                    res.limits[name].string)
                has_limits.add(name)
        if has_limits != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    # requests default to limits at admission; an unset request equals the limit
    if guaranteed and all(requests.get(k, limits[k]) == limits[k] for k in limits):
        return "Guaranteed"
    return "Burstable"


# -- the pod --------------------------------------------------------------------------------


def compute_status(pod: core_pb2.Pod, views: Mapping[str, ContainerView],
                   facts: PodFacts) -> core_pb2.PodStatus:
    """The PodStatus the kubelet should post for ``pod``."""
    spec = pod.spec
    old = pod.status
    init = [container_status(c, views.get(c.name, ContainerView(c.name))) for c in
            spec.init_containers]
    app_default = "ContainerCreating"
    init_done = all(
        (st.state.HasField("terminated") and st.state.terminated.exit_code == 0)
        or (is_sidecar(c) and st.state.HasField("running"))
        for c, st in zip(spec.init_containers, init, strict=True))
    if not init_done:
        app_default = "PodInitializing"
    app = [container_status(c, views.get(c.name, ContainerView(c.name)), app_default)
           for c in spec.containers]
    phase = facts.phase_override or compute_phase(pod, init, app)
    if old.phase in TERMINAL:
        phase = old.phase  # terminal phases are final
    status = core_pb2.PodStatus(phase=phase, qos_class=qos_class(pod))
    if facts.phase_override or old.phase in TERMINAL:
        status.reason = facts.reason or old.reason
        status.message = facts.message or old.message
    status.init_container_statuses.extend(init)
    status.container_statuses.extend(app)
    status.conditions.extend(compute_conditions(pod, phase, init, app, facts.now))
    host_ip = facts.host_ip or old.host_ip
    if host_ip:
        status.host_ip = host_ip
        status.host_ips.add(ip=host_ip)
    pod_ip = facts.pod_ip or old.pod_ip
    if pod_ip:
        status.pod_ip = pod_ip
        status.pod_ips.add(ip=pod_ip)
    if old.HasField("start_time"):
        status.start_time.CopyFrom(old.start_time)
    else:
        status.start_time.CopyFrom(time_at(facts.now))
    status.nominated_node_name = old.nominated_node_name
    status.observed_generation = pod.metadata.generation
    return status


def status_equal(a: core_pb2.PodStatus, b: core_pb2.PodStatus) -> bool:
    """Whether two statuses say the same thing (what the status manager posts on)."""
    return bool(a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True))
