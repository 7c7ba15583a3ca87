"""Pure logic of the node lifecycle controller (Kubernetes' pkg/controller/nodelifecycle).

Everything here is a plain function or a small value class, table-tested without I/O:

- **Options** (``NodeLifecycleOptions``): the kube-controller-manager flags with their
  Kubernetes defaults.
- **Health** (``NodeHealth``, ``observe_health``, ``is_stale``): a node is alive while its
  Lease's ``renewTime`` or its Ready condition's ``lastHeartbeatTime`` keeps changing. What
  counts is *when we saw it change* on our own monotonic clock, never the timestamps'
  values, so a skewed agent clock cannot make a node look alive or dead (Kubernetes'
  ``probeTimestamp``).
- **Stale status** (``mark_status_unknown``): every condition Unknown, reason
  ``NodeStatusUnknown`` ("Kubelet stopped posting node status.") or
  ``NodeStatusNeverUpdated`` for a node that never posted one.
- **Taints** (``desired_no_schedule_taints``, ``no_execute_taint_for``, ``reconcile_taints``):
  the NoSchedule taints follow the conditions at once; the NoExecute taint
  (``not-ready`` for Ready=False, ``unreachable`` for Ready=Unknown) goes through the zone's
  rate limiter.
- **Zones** (``zone_of``, ``compute_zone_state``, ``zone_eviction_rate``): Kubernetes'
  disruption rule. A zone is fully disrupted when none of its nodes is Ready, partially
  disrupted when more than 2 nodes and at least ``unhealthy_zone_threshold`` of them are
  not Ready; a partially disrupted zone taints at the secondary rate (0 unless the zone
  has more than ``large_cluster_size_threshold`` nodes), the others at the normal rate.
  When *every* zone is fully disrupted the control plane is the likelier culprit
  (a partition): the controller stops tainting altogether.
- **Rate limiting** (``TokenBucket``): client-go's token bucket with burst 1, whose rate
  can be swapped (0 = refuse everything) when a zone changes state.

Concurrency contract: none needed — no awaits, no shared state; ``TokenBucket`` is
mutated only by its owner (the controller's single worker) and takes ``now`` explicitly.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from control.api.pb import core_pb2

ZONE_LABEL = "topology.kubernetes.io/zone"

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"

# (condition type, status) -> the NoSchedule taint it implies (Kubernetes'
# nodeConditionToTaintKeyStatusMap).
CONDITION_TAINTS: dict[tuple[str, str], str] = {
    ("Ready", "False"): TAINT_NOT_READY,
    ("Ready", "Unknown"): TAINT_UNREACHABLE,
    ("MemoryPressure", "True"): TAINT_MEMORY_PRESSURE,
    ("DiskPressure", "True"): TAINT_DISK_PRESSURE,
    ("PIDPressure", "True"): TAINT_PID_PRESSURE,
    ("NetworkUnavailable", "True"): TAINT_NETWORK_UNAVAILABLE,
}
# Every NoSchedule taint key this controller owns (and so may remove).
MANAGED_NO_SCHEDULE = frozenset({*CONDITION_TAINTS.values(), TAINT_UNSCHEDULABLE})
MANAGED_NO_EXECUTE = frozenset({TAINT_NOT_READY, TAINT_UNREACHABLE})

# The conditions a stale node gets as Unknown even if it never posted them.
STANDARD_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
REASON_UNKNOWN = "NodeStatusUnknown"
MESSAGE_UNKNOWN = "Kubelet stopped posting node status."
REASON_NEVER_UPDATED = "NodeStatusNeverUpdated"
MESSAGE_NEVER_UPDATED = "Kubelet never posted node status."


@dataclass(frozen=True)
class NodeLifecycleOptions:
    """kube-controller-manager's node lifecycle flags, with Kubernetes' defaults."""

    node_monitor_grace_period: float = 50.0
    # Accepted for compatibility: with taint-based eviction (the only mode, as in
    # Kubernetes since 1.27) pods leave when their tolerations run out instead.
    pod_eviction_timeout: float = 300.0
    node_eviction_rate: float = 0.1
    secondary_node_eviction_rate: float = 0.01
    large_cluster_size_threshold: int = 50
    unhealthy_zone_threshold: float = 0.55
    # How often node health is checked; None: 5 s, or a fifth of the grace period if
    # that is shorter (so short test grace periods are honoured promptly).
    node_monitor_period: float | None = None

    def monitor_period(self) -> float:
        if self.node_monitor_period is not None:
            return self.node_monitor_period
        return max(0.05, min(5.0, self.node_monitor_grace_period / 5))


# -- health --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeHealth:
    """What was last seen of a node's heartbeats, and when (our monotonic time)."""

    heartbeat: float  # Ready condition's lastHeartbeatTime (epoch seconds; 0 = none)
    renew: float  # Lease renewTime (epoch seconds; 0 = no Lease)
    probe: float  # monotonic time either of them last changed


def observe_health(prev: NodeHealth | None, heartbeat: float, renew: float,
                   now: float) -> NodeHealth:
    """The health record after seeing ``heartbeat``/``renew`` at monotonic ``now``.

    A node seen for the first time gets a full grace period from now (a restarted
    controller must not declare every node dead at once)."""
    if prev is None:
        return NodeHealth(heartbeat, renew, now)
    if heartbeat != prev.heartbeat or renew > prev.renew:
        return NodeHealth(heartbeat, max(renew, prev.renew), now)
    return prev


def is_stale(health: NodeHealth, now: float, grace: float) -> bool:
    return now - health.probe > grace


def ready_status(node: core_pb2.Node) -> str:
    """The Ready condition's status ("True", "False", "Unknown"), "" if there is none."""
    for c in node.status.conditions:
        if c.type == "Ready":
            return str(c.status)
    return ""


def is_ready(status: str) -> bool:
    return status == "True"


def mark_status_unknown(status: core_pb2.NodeStatus, now: Timestamp) -> bool:
    """Set every condition Unknown (adding the standard ones the node never posted);
    True if anything changed. Heartbeat times are left alone: they are the agent's."""
    changed = False
    present = {c.type for c in status.conditions}
    for ctype in STANDARD_CONDITIONS:
        if ctype not in present:
            status.conditions.add(type=ctype, status="Unknown", reason=REASON_NEVER_UPDATED,
                                  message=MESSAGE_NEVER_UPDATED, last_transition_time=now)
            changed = True
    for c in status.conditions:
        if c.status != "Unknown":
            c.status = "Unknown"
            c.reason, c.message = REASON_UNKNOWN, MESSAGE_UNKNOWN
            c.last_transition_time.CopyFrom(now)
            changed = True
    return changed


# -- taints ----------------------------------------------------------------------------------


def desired_no_schedule_taints(node: core_pb2.Node) -> set[str]:
    """The NoSchedule taint keys this controller wants on ``node`` right now."""
    want = {CONDITION_TAINTS[(c.type, c.status)] for c in node.status.conditions
            if (c.type, c.status) in CONDITION_TAINTS}
    if node.spec.unschedulable:
        want.add(TAINT_UNSCHEDULABLE)
    return want


def no_execute_taint_for(ready: str) -> str | None:
    """The NoExecute taint a node with this Ready status should carry (None when Ready or
    when it never reported: a node that never posted is marked Unknown first)."""
    if ready == "False":
        return TAINT_NOT_READY
    if ready == "Unknown":
        return TAINT_UNREACHABLE
    return None


def has_taint(taints: Iterable[core_pb2.Taint], key: str, effect: str) -> bool:
    return any(t.key == key and t.effect == effect for t in taints)


def reconcile_taints(taints: Sequence[core_pb2.Taint], effect: str, managed: Iterable[str],
                     want: Iterable[str], now: Timestamp) -> list[core_pb2.Taint] | None:
    """The taint list with exactly ``want`` among the ``managed`` keys of ``effect``;
    None if ``taints`` already is. Other taints (the user's) are kept in place; kept
    managed taints keep their timeAdded, new ones get ``now``."""
    managed_set, want_set = set(managed), set(want)
    out: list[core_pb2.Taint] = []
    have: set[str] = set()
    changed = False
    for t in taints:
        if t.effect == effect and t.key in managed_set:
            if t.key not in want_set or t.key in have:
                changed = True
                continue
            have.add(t.key)
        copy = core_pb2.Taint()
        copy.CopyFrom(t)
        out.append(copy)
    for key in sorted(want_set - have):
        out.append(core_pb2.Taint(key=key, effect=effect, time_added=now))
        changed = True
    return out if changed else None


# -- zones -----------------------------------------------------------------------------------


class ZoneState(enum.Enum):
    INITIAL = "Initial"
    NORMAL = "Normal"
    PARTIAL_DISRUPTION = "PartialDisruption"
    FULL_DISRUPTION = "FullDisruption"


def zone_of(node: core_pb2.Node) -> str:
    """The node's zone ("" for nodes without the label: together they are one zone)."""
    return str(node.metadata.labels.get(ZONE_LABEL, ""))


def compute_zone_state(ready: Iterable[str], unhealthy_threshold: float) -> ZoneState:
    """Kubernetes' ComputeZoneState over the Ready statuses of one zone's nodes."""
    n_ready = n_not_ready = 0
    for status in ready:
        if is_ready(status):
            n_ready += 1
        else:
            n_not_ready += 1
    if n_not_ready > 0 and n_ready == 0:
        return ZoneState.FULL_DISRUPTION
    if n_not_ready > 2 and n_not_ready / (n_ready + n_not_ready) >= unhealthy_threshold:
        return ZoneState.PARTIAL_DISRUPTION
    return ZoneState.NORMAL


def zone_eviction_rate(state: ZoneState, zone_size: int, opts: NodeLifecycleOptions) -> float:
    """Nodes per second the zone may taint NoExecute in ``state`` (when not every zone is
    fully disrupted: then the rate is 0 everywhere)."""
    if state is ZoneState.PARTIAL_DISRUPTION:
        # Kubernetes' ReducedQPSFunc: a small zone stops evicting altogether.
        if zone_size > opts.large_cluster_size_threshold:
            return opts.secondary_node_eviction_rate
        return 0.0
    # Normal, and a fully disrupted zone while others are healthy (HealthyQPSFunc).
    return opts.node_eviction_rate


def all_fully_disrupted(states: Mapping[str, ZoneState]) -> bool:
    return bool(states) and all(s is ZoneState.FULL_DISRUPTION for s in states.values())


_EPSILON = 1e-9


class TokenBucket:
    """A token bucket (client-go's flowcontrol), burst 1 by default; rate 0 refuses all.

    Time is passed in (monotonic seconds) so the bucket stays pure."""

    def __init__(self, qps: float, now: float, burst: int = 1) -> None:
        self.burst = burst
        self.qps = qps
        self._tokens = float(burst)
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = max(self._last, now)

    def try_accept(self, now: float) -> bool:
        if self.qps <= 0:
            return False
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:  # refills add up in floating point
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def time_until_token(self, now: float) -> float | None:
        """Seconds until ``try_accept`` would succeed (None: never, at rate 0)."""
        if self.qps <= 0:
            return None
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.qps)

    def swap(self, qps: float, now: float) -> None:
        """Change the rate (Kubernetes' SwapLimiter); a new rate starts with a full bucket."""
        if qps == self.qps:
            return
        self.qps = qps
        self._tokens = float(self.burst)
        self._last = now
