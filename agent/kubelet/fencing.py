"""Fencing: a node cut off from the API server stops the pods that asked for it.

Kubernetes keeps a partitioned node's pods running: the control plane replaces them
elsewhere once the node lifecycle controller evicts them (node-monitor grace period plus
the pod's ``node.kubernetes.io/unreachable`` toleration, 40 s + 300 s by default), so for
the rest of the partition two copies run. A workload that must run at most once opts in
(Nomad's ``stop_after_client_disconnect``): the pod annotation
``flotilla.io/stop-after-disconnect: 90s`` (control/api/fencing.py), or the agent's
``--stop-pods-after-disconnect`` for every pod of the node (the annotation wins; "0" opts a
pod out). Once the agent has not reached the API server for that long, the pod's
containers are stopped as for a deletion (preStop, SIGTERM, SIGKILL after the grace
period) and stay stopped; choose a limit below the eviction delay, so the copy here is
gone before a replacement starts.

Contact is the node's Lease, the heartbeat the control plane judges the node by: once a
renewal fails, the node counts as away since its last successful renewal (or since the
agent started: an agent restarted during a partition counts from its start); while
renewals succeed it is not away at all, so a limit shorter than the renew interval never
fences a connected node. When contact returns the fence lifts: each
fenced pod syncs again as after its containers exited (its restartPolicy decides, with a
fresh crash-loop backoff), unless the control plane deleted it meanwhile.

Concurrency contract: one :class:`Fence` per kubelet, one event loop. ``contact()`` is
called by the lease task, ``run()`` is one supervised task, ``is_fenced()`` is read by pod
workers; changes are announced through ``on_change(uid)`` (a pod sync request).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from control.api.fencing import STOP_AFTER_DISCONNECT, parse_stop_after
from control.api.pb import core_pb2
from control.runtime.clock import Clock
from control.runtime.events import NORMAL, WARNING, Recorder

log = structlog.get_logger(__name__)

FENCED = "Fenced"
UNFENCED = "FenceLifted"


def stop_after(pod: core_pb2.Pod, node_default: float | None) -> float | None:
    """Seconds without the API server after which ``pod`` is stopped, or None (never).
    A value the apiserver would refuse (an object from before validation) falls back to
    the node's default."""
    value = pod.metadata.annotations.get(STOP_AFTER_DISCONNECT)
    if value is None:
        return node_default
    try:
        seconds = parse_stop_after(value)
    except ValueError:
        return node_default
    return seconds if seconds > 0 else None


def due(pods: Iterable[core_pb2.Pod], disconnected_for: float,
        node_default: float | None) -> list[tuple[core_pb2.Pod, float]]:
    """The pods to fence after ``disconnected_for`` seconds without the API server, with
    their limits (pods being deleted are already stopping: not theirs)."""
    out = []
    for pod in pods:
        if pod.metadata.HasField("deletion_timestamp"):
            continue
        limit = stop_after(pod, node_default)
        if limit is not None and disconnected_for >= limit:
            out.append((pod, limit))
    return out


class Fence:
    """Which of this node's pods are fenced; see the module docstring."""

    def __init__(self, clock: Clock, pods: Callable[[], Iterable[core_pb2.Pod]],
                 on_change: Callable[[str], None], *, node_default: float | None = None,
                 recorder: Recorder | None = None, period: float = 1.0) -> None:
        self._clock = clock
        self._pods = pods
        self._on_change = on_change
        self._recorder = recorder
        self.node_default = node_default
        self.period = period
        self._last_contact = clock.monotonic()
        self._connected = False
        # uid -> (the pod as fenced, its limit, monotonic time fenced): for the Event when
        # the fence lifts, which tells the whole story (the Fenced Event, recorded while
        # cut off, waits for the recorder's retries)
        self._fenced: dict[str, tuple[core_pb2.Pod, float, float]] = {}

    def is_fenced(self, uid: str) -> bool:
        return uid in self._fenced

    def disconnected_for(self) -> float:
        """Seconds since the last contact, if the latest renewal failed; else 0."""
        if self._connected:
            return 0.0
        return self._clock.monotonic() - self._last_contact

    def lost(self) -> None:
        """A renewal failed: the node is away since its last contact."""
        self._connected = False

    def contact(self) -> None:
        """A renewal succeeded: lift every fence."""
        now = self._clock.monotonic()
        away = now - self._last_contact
        self._last_contact = now
        self._connected = True
        if not self._fenced:
            return
        lifted, self._fenced = self._fenced, {}
        log.info("API server reached again: fenced pods may run", pods=len(lifted),
                 disconnected_for=round(away, 1))
        for uid, (pod, limit, fenced_at) in lifted.items():
            if self._recorder is not None:
                self._recorder.event(
                    pod, NORMAL, UNFENCED,
                    f"The node reached the API server again after {away:.0f}s away; the "
                    f"pod's containers were stopped for {now - fenced_at:.0f}s "
                    f"({STOP_AFTER_DISCONNECT} limit {limit:g}s) and may run again")
            self._on_change(uid)

    def check(self) -> list[str]:
        """Fence the pods whose limit has passed; returns the uids fenced now."""
        if self._connected:
            return []  # not away at all: no limit (all positive) can have passed
        away = self.disconnected_for()
        fenced_now = []
        for pod, limit in due(self._pods(), away, self.node_default):
            uid = pod.metadata.uid
            if uid in self._fenced:
                continue
            self._fenced[uid] = (pod, limit, self._clock.monotonic())
            fenced_now.append(uid)
            name = f"{pod.metadata.namespace}/{pod.metadata.name}"
            log.warning("stopping a pod: the node lost the API server", pod=name,
                        disconnected_for=round(away, 1), limit=limit)
            if self._recorder is not None:
                self._recorder.event(
                    pod, WARNING, FENCED,
                    f"Stopping the pod's containers: the node has not reached the API server "
                    f"for {away:.0f}s ({STOP_AFTER_DISCONNECT} limit {limit:g}s)")
            self._on_change(uid)
        return fenced_now

    def forget(self, uid: str) -> None:
        self._fenced.pop(uid, None)

    async def run(self) -> None:
        while True:
            await self._clock.sleep(self.period)
            self.check()
