"""The agent's Node: registration, then a status post every ``node_status_update_frequency``.

Owns the Node object's agent-written parts, as kubelet's ``kubelet_node_status.go`` does:
- registration: create the Node (labels ``kubernetes.io/hostname|os|arch`` and their
  ``beta.`` twins, ``--labels``, ``--register-with-taints``, the annotation
  ``local-path.flotilla.io/volume-dir`` naming ``--volume-dir``, full status); if it exists,
  update only the labels and annotations the agent owns and leave the rest of the spec alone — a cordon
  (``spec.unschedulable``) or a taint a user removed stays as the user left it;
- status: capacity and allocatable (capacity minus ``--system-reserved``), addresses,
  nodeInfo, and the Ready/MemoryPressure/DiskPressure/PIDPressure conditions, whose
  ``lastHeartbeatTime`` moves on every post and ``lastTransitionTime`` only when the
  condition's status changes. Conditions other components own (NetworkUnavailable...) are
  kept as they are.

Events on the Node, as kubelet records them (source ``kubelet``, host = the node):
``Starting`` when the manager starts, and one per condition our post changes or adds
(``NodeReady``/``NodeNotReady``, ``NodeHasSufficientMemory``, ``NodeHasDiskPressure``...,
"Node NAME status is now: REASON").

The pure helpers (capacity arithmetic, condition transitions, labels, the Node built from
options and machine facts) are plain functions so they are tested without I/O.

Concurrency contract: one :class:`NodeStatusManager` per agent, its :meth:`run` is one
supervised task; it only writes through the API (status via the status verb, so a spec
change made meanwhile is never overwritten) and retries conflicts by re-reading. An
unreachable server never ends the task: it backs off, logs once per state change
(:class:`Reachability`) and carries on when the server returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from agent.config import HOST_HANDLER, IMAGE_HANDLERS, AgentOptions
from agent.images.image import Image
from agent.kubelet.machine import MachineInfo, Pressure, primary_ip, read_pressure
from control.api import errors, quantity
from control.api.pb import core_pb2, meta_pb2
from control.api.storageutil import VOLUME_DIR_ANNOTATION
from control.api.timeutil import time_at
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime import Backoff, BackoffState, Clock, RealClock
from control.runtime.events import NORMAL, Recorder

AGENT_VERSION = "0.1.0"
CONTAINER_RUNTIME_VERSION = "flotilla-process://0.1.0"
KUBELET_VERSION = f"flotilla-agent/{AGENT_VERSION}"

LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_OS = "kubernetes.io/os"
LABEL_ARCH = "kubernetes.io/arch"
LABEL_BETA_OS = "beta.kubernetes.io/os"
LABEL_BETA_ARCH = "beta.kubernetes.io/arch"

# Pressure thresholds: kubelet's default hard eviction thresholds for memory and nodefs
# (memory.available<100Mi, nodefs.available<10%); pids have no kubelet default, 90 % of
# pid_max leaves room to act before fork() starts failing.
MEMORY_AVAILABLE_MIN = 100 * 1024 * 1024
DISK_AVAILABLE_MIN_FRACTION = 0.10
PID_USED_MAX_FRACTION = 0.90

# kubelet's nodeStatusUpdateRetry: conflicts are retried this many times per period.
STATUS_UPDATE_RETRIES = 5

log = structlog.get_logger(__name__)


# -- pure helpers ------------------------------------------------------------------------


def node_labels(node_name: str, machine: MachineInfo, extra: Mapping[str, str]) -> dict[str, str]:
    """The labels the agent owns: the well-known ones (which win) plus ``--labels``."""
    labels = dict(extra)
    labels.update({
        LABEL_HOSTNAME: node_name,
        LABEL_OS: machine.operating_system,
        LABEL_ARCH: machine.architecture,
        LABEL_BETA_OS: machine.operating_system,
        LABEL_BETA_ARCH: machine.architecture,
    })
    return labels


def machine_capacity(machine: MachineInfo, max_pods: int) -> dict[str, str]:
    """Capacity in kubelet's units: cpu in cores, memory and ephemeral-storage in bytes
    (BinarySI, so ``Ki`` when divisible), pods as a count."""
    return {
        "cpu": quantity.format_quantity(machine.cpus),
        "memory": quantity.format_quantity(machine.memory_bytes, quantity.SuffixFamily.BINARY_SI),
        "ephemeral-storage": quantity.format_quantity(
            machine.ephemeral_storage_bytes, quantity.SuffixFamily.BINARY_SI
        ),
        "pods": str(max_pods),
    }


def allocatable(capacity: Mapping[str, str], reserved: Mapping[str, str]) -> dict[str, str]:
    """capacity - reserved per resource, floored at zero, in the capacity's suffix family
    (a reservation larger than the machine leaves nothing, not a negative amount)."""
    out: dict[str, str] = {}
    for name, cap in capacity.items():
        if name not in reserved:
            out[name] = cap
            continue
        left = max(Fraction(0), quantity.sub(cap, reserved[name]))
        out[name] = quantity.format_quantity(left, quantity.quantity_family(cap))
    return out


@dataclass(frozen=True)
class ConditionWant:
    """What a condition should say now; times are decided by :func:`next_condition`."""

    type: str
    status: str
    reason: str
    message: str


def pressure_conditions(p: Pressure) -> list[ConditionWant]:
    """MemoryPressure, DiskPressure, PIDPressure from the live signals (unknown -> False:
    a machine that cannot tell must not be marked as failing)."""
    mem = p.memory_available_bytes is not None and p.memory_available_bytes < MEMORY_AVAILABLE_MIN
    disk = (
        p.disk_available_bytes is not None
        and bool(p.disk_total_bytes)
        and p.disk_available_bytes < DISK_AVAILABLE_MIN_FRACTION * (p.disk_total_bytes or 0)
    )
    pids = (
        p.processes is not None
        and bool(p.pid_max)
        and p.processes > PID_USED_MAX_FRACTION * (p.pid_max or 0)
    )
    # Reasons are kubelet's (tools match on them); messages name the agent.
    return [
        ConditionWant("MemoryPressure", "True", "KubeletHasInsufficientMemory",
                      "agent has insufficient memory available") if mem else
        ConditionWant("MemoryPressure", "False", "KubeletHasSufficientMemory",
                      "agent has sufficient memory available"),
        ConditionWant("DiskPressure", "True", "KubeletHasDiskPressure",
                      "agent has disk pressure") if disk else
        ConditionWant("DiskPressure", "False", "KubeletHasNoDiskPressure",
                      "agent has no disk pressure"),
        ConditionWant("PIDPressure", "True", "KubeletHasInsufficientPID",
                      "agent has insufficient PID available") if pids else
        ConditionWant("PIDPressure", "False", "KubeletHasSufficientPID",
                      "agent has sufficient PID available"),
    ]


def ready_condition() -> ConditionWant:
    # Until the runtime and network checks exist, a posting agent is a ready agent.
    return ConditionWant("Ready", "True", "KubeletReady", "agent is posting ready status")


def next_condition(
    old: core_pb2.NodeCondition | None, want: ConditionWant, now: Timestamp
) -> core_pb2.NodeCondition:
    """The condition to post: heartbeat = now; transition = now only if the status changed
    (or the condition is new), else the old transition time."""
    cond = core_pb2.NodeCondition(
        type=want.type, status=want.status, reason=want.reason, message=want.message
    )
    cond.last_heartbeat_time.CopyFrom(now)
    if old is not None and old.status == want.status and old.HasField("last_transition_time"):
        cond.last_transition_time.CopyFrom(old.last_transition_time)
    else:
        cond.last_transition_time.CopyFrom(now)
    return cond


def merge_conditions(
    existing: Sequence[core_pb2.NodeCondition], wants: Sequence[ConditionWant], now: Timestamp
) -> list[core_pb2.NodeCondition]:
    """Existing conditions with ours updated in place and missing ones appended; conditions
    of other owners pass through unchanged."""
    by_type = {w.type: w for w in wants}
    out: list[core_pb2.NodeCondition] = []
    done: set[str] = set()
    for cond in existing:
        want = by_type.get(cond.type)
        if want is None:
            out.append(cond)
        elif cond.type not in done:
            out.append(next_condition(cond, want, now))
            done.add(cond.type)
    out.extend(next_condition(None, w, now) for w in wants if w.type not in done)
    return out


def apply_status(
    node: core_pb2.Node,
    options: AgentOptions,
    machine: MachineInfo,
    pressure: Pressure,
    node_ip: str,
    now: Timestamp,
) -> None:
    """Write everything the agent reports into ``node.status`` (in place)."""
    status = node.status
    cap = machine_capacity(machine, options.max_pods)
    status.capacity.clear()
    status.allocatable.clear()
    for name, value in cap.items():
        status.capacity[name].string = value
    for name, value in allocatable(cap, options.system_reserved).items():
        status.allocatable[name].string = value
    del status.addresses[:]
    status.addresses.add(type="InternalIP", address=node_ip)
    status.addresses.add(type="Hostname", address=options.node_name)
    # where the apiserver reaches this agent for logs and exec (an ephemeral port: several
    # agents share a host)
    status.daemon_endpoints.kubelet_endpoint.port = options.daemon_port
    # the RuntimeClass handlers this node runs
    del status.runtime_handlers[:]
    for handler in (*IMAGE_HANDLERS, HOST_HANDLER):
        status.runtime_handlers.add(name=handler)
    info = status.node_info
    info.machine_id = machine.machine_id
    info.system_uuid = machine.system_uuid
    info.boot_id = machine.boot_id
    info.kernel_version = machine.kernel_version
    info.os_image = machine.os_image
    info.container_runtime_version = CONTAINER_RUNTIME_VERSION
    info.kubelet_version = KUBELET_VERSION
    info.operating_system = machine.operating_system
    info.architecture = machine.architecture
    wants = [*pressure_conditions(pressure), ready_condition()]
    merged = merge_conditions(list(status.conditions), wants, now)
    del status.conditions[:]
    status.conditions.extend(merged)


# (condition type, status) -> the Event kubelet records when a condition turns to it
_CONDITION_EVENTS = {
    ("Ready", "True"): "NodeReady",
    ("MemoryPressure", "False"): "NodeHasSufficientMemory",
    ("MemoryPressure", "True"): "NodeHasInsufficientMemory",
    ("DiskPressure", "False"): "NodeHasNoDiskPressure",
    ("DiskPressure", "True"): "NodeHasDiskPressure",
    ("PIDPressure", "False"): "NodeHasSufficientPID",
    ("PIDPressure", "True"): "NodeHasInsufficientPID",
}


def condition_events(before: Sequence[core_pb2.NodeCondition],
                     after: Sequence[core_pb2.NodeCondition]) -> list[str]:
    """The Event reasons for our conditions that ``after`` adds or whose status changed."""
    old = {c.type: c.status for c in before}
    out: list[str] = []
    for c in after:
        if c.type not in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
            continue
        if old.get(c.type) == c.status:
            continue
        out.append(_CONDITION_EVENTS.get((c.type, c.status), "NodeNotReady"))
    return out
# kubelet's --node-status-max-images: the biggest images are reported
MAX_NODE_IMAGES = 50


def node_images(images: Sequence[Image]) -> list[core_pb2.ContainerImage]:
    """Node.status.images: names (repo digests, then tags) and size, biggest first."""
    ordered = sorted(images, key=lambda i: (-i.size, i.id))[:MAX_NODE_IMAGES]
    return [core_pb2.ContainerImage(names=i.names() or [i.id], size_bytes=i.size)
            for i in ordered]


def build_node(options: AgentOptions, machine: MachineInfo, pressure: Pressure, node_ip: str,
               now: Timestamp) -> core_pb2.Node:
    """The Node as first registered."""
    node = core_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = options.node_name
    node.metadata.labels.update(node_labels(options.node_name, machine, options.labels))
    node.metadata.annotations.update(node_annotations(options))
    for t in options.taints:
        node.spec.taints.add(key=t.key, value=t.value, effect=t.effect)
    apply_status(node, options, machine, pressure, node_ip, now)
    return node


def node_annotations(options: AgentOptions) -> dict[str, str]:
    """The annotations the agent owns: where its local-path volumes live (read by the
    provisioner to place a volume on this node)."""
    return {VOLUME_DIR_ANNOTATION: str(options.local_volume_dir)}


def _set_entries(have: MutableMapping[str, str], wanted: Mapping[str, str]) -> bool:
    changed = False
    for key, value in wanted.items():
        if have.get(key) != value:
            have[key] = value
            changed = True
    return changed


def reconcile_annotations(node: core_pb2.Node, wanted: Mapping[str, str]) -> bool:
    """Set the agent-owned annotations on an existing Node; True if anything changed."""
    return _set_entries(node.metadata.annotations, wanted)


def reconcile_labels(node: core_pb2.Node, wanted: Mapping[str, str]) -> bool:
    """Set the agent-owned labels on an existing Node; True if anything changed. Spec
    (unschedulable, taints) is the user's once the Node exists, as with kubelet."""
    return _set_entries(node.metadata.labels, wanted)




def _condition_states(node: core_pb2.Node) -> list[core_pb2.NodeCondition]:
    """Each condition's type and status, for the events of what a post changes."""
    return [core_pb2.NodeCondition(type=c.type, status=c.status) for c in node.status.conditions]


# -- reachability logging ------------------------------------------------------------------


class Reachability:
    """Logs the server going away and coming back once per change, not once per retry
    (a 10-minute outage must not be 3,000 identical lines)."""

    def __init__(self, logger: Any, what: str) -> None:
        self._log = logger
        self._what = what
        self.ok = True

    def failed(self, exc: BaseException) -> None:
        if self.ok:
            self._log.warning(f"{self._what} failed; retrying with backoff", error=str(exc))
            self.ok = False
        else:
            self._log.debug(f"{self._what} failed again", error=str(exc))

    def succeeded(self) -> None:
        if not self.ok:
            self._log.info(f"{self._what} succeeded again")
            self.ok = True


# -- the manager -----------------------------------------------------------------------------


class NodeStatusManager:
    """Registers the Node, then posts its status every ``node_status_update_frequency``."""

    def __init__(
        self,
        client: ApiClient,
        options: AgentOptions,
        machine: MachineInfo,
        *,
        clock: Clock | None = None,
        pressure_reader: Callable[[], Pressure] | None = None,
        recorder: Recorder | None = None,
        images: Callable[[], Awaitable[Sequence[Image]]] | None = None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self._images = images
        self.options = options
        self.machine = machine
        self.clock = clock or RealClock()
        self._pressure = pressure_reader or (lambda: read_pressure(options.data_dir))
        self.node_ip = options.node_ip or primary_ip(options.server)
        self.node_uid: str | None = None
        self.registered = asyncio.Event()
        self._log = log.bind(component="node-status", node=options.node_name)
        self._reach = Reachability(self._log, "node status")
        self._backoff = BackoffState(
            Backoff(initial=options.retry_initial, max_delay=options.retry_max, jitter=0.2),
            self.clock,
        )

    def _now(self) -> Timestamp:
        return time_at(self.clock.now())

    def _node_event(self, event_type: str, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        name = self.options.node_name
        # kubelet's nodeRef; our real uid when known, so describe node matches it
        self.recorder.event_for(meta_pb2.ObjectReference(
            kind="Node", name=name, uid=self.node_uid or "", api_version="v1"),
            event_type, reason, message)

    def _condition_events(self, before: Sequence[core_pb2.NodeCondition],
                          node: core_pb2.Node) -> None:
        for reason in condition_events(before, node.status.conditions):
            self._node_event(NORMAL, reason,
                             f"Node {self.options.node_name} status is now: {reason}")

    async def run(self) -> None:
        """Register (retrying until it works), then post status forever."""
        self._node_event(NORMAL, "Starting", "Starting kubelet.")
        while not self.registered.is_set():
            try:
                await self.register()
            except errors.ApiError as e:
                self._reach.failed(e)
                await self.clock.sleep(self._backoff.next_delay())
        while True:
            await self.clock.sleep(self.options.node_status_update_frequency)
            while True:
                try:
                    await self.post_status()
                    break
                except errors.ApiError as e:
                    self._reach.failed(e)
                    # Retry sooner than the next period while down, but never spin.
                    delay = min(self._backoff.next_delay(),
                                self.options.node_status_update_frequency)
                    await self.clock.sleep(delay)

    async def register(self) -> core_pb2.Node:
        """Create the Node, or adopt an existing one (agent-owned labels, then status)."""
        desired = build_node(self.options, self.machine, self._pressure(), self.node_ip,
                             self._now())
        try:
            node: core_pb2.Node = await self.client.create(desired)
            self._log.info("node registered", uid=node.metadata.uid)
            self.node_uid = node.metadata.uid
            self._condition_events([], node)
        except errors.AlreadyExists:
            node = await self._adopt(desired)
            self._log.info("node already registered; adopted", uid=node.metadata.uid)
        self.node_uid = node.metadata.uid
        self._succeeded()
        self.registered.set()
        return node

    async def _adopt(self, desired: core_pb2.Node) -> core_pb2.Node:
        for attempt in range(STATUS_UPDATE_RETRIES):
            node: core_pb2.Node = await self.client.get(core_pb2.Node, self.options.node_name)
            try:
                labelled = reconcile_labels(node, desired.metadata.labels)
                if reconcile_annotations(node, desired.metadata.annotations) or labelled:
                    node = await self.client.update(node)
                return await self._update_status(node)
            except errors.Conflict:
                if attempt == STATUS_UPDATE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def post_status(self) -> core_pb2.Node:
        """One status post: read the Node, write our status; conflicts re-read. A Node
        deleted under us is registered again (kubelet does the same on restart)."""
        before: list[core_pb2.NodeCondition] = []
        images = node_images(await self._images()) if self._images is not None else None

        def apply(node: core_pb2.Node) -> bool:
            before[:] = _condition_states(node)
            apply_status(node, self.options, self.machine, self._pressure(), self.node_ip,
                         self._now())
            if images is not None:
                del node.status.images[:]
                node.status.images.extend(images)
            return True

        try:
            updated = await guaranteed_update(self.client, core_pb2.Node, "",
                                              self.options.node_name, apply, status=True,
                                              attempts=STATUS_UPDATE_RETRIES)
        except errors.NotFound:
            self._log.warning("node object was deleted; registering again")
            self.registered.clear()
            return await self.register()
        self.node_uid = updated.metadata.uid
        self._condition_events(before, updated)
        self._succeeded()
        return updated

    async def _update_status(self, node: core_pb2.Node) -> core_pb2.Node:
        before = _condition_states(node)
        apply_status(node, self.options, self.machine, self._pressure(), self.node_ip,
                     self._now())
        if self._images is not None:
            del node.status.images[:]
            node.status.images.extend(node_images(await self._images()))
        updated: core_pb2.Node = await self.client.update_status(node)
        self.node_uid = updated.metadata.uid
        self._condition_events(before, updated)
        return updated

    def _succeeded(self) -> None:
        self._reach.succeeded()
        self._backoff.reset()
