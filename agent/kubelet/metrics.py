"""The kubelet's metrics, under Kubernetes' kubelet names: ``kubelet_pod_worker_duration_seconds
{operation_type}`` (one pod worker run: ``create`` for a pod's first sync, ``sync`` after,
``kill`` for stopping it), ``kubelet_running_pods`` and ``kubelet_running_containers
{container_state}`` (from the latest relist of the runtime), and
``kubelet_pleg_relist_duration_seconds``.

Concurrency contract: event loop only; every method is synchronous and cheap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from control.runtime.metrics import Registry

CONTAINER_STATES = ("created", "running", "exited", "unknown")


class KubeletMetrics:
    """Every metric the kubelet exports, in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = r = registry or Registry()
        self.pod_worker_duration = r.histograms(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod. Broken down by operation type: create, "
            "update, or sync", ("operation_type",))
        self.running_pods = r.gauge("kubelet_running_pods",
                                    "Number of pods that have a running pod sandbox")
        self.running_containers = r.gauges("kubelet_running_containers",
                                           "Number of containers currently running",
                                           ("container_state",))
        self.relist_duration = r.histogram("kubelet_pleg_relist_duration_seconds",
                                           "Duration in seconds for relisting pods in PLEG.")

    def relisted(self, seconds: float, ready_sandboxes: int,
                 container_states: Iterable[str]) -> None:
        """One relist took ``seconds`` and saw these sandboxes and container states."""
        self.relist_duration.observe(seconds)
        self.running_pods.set(ready_sandboxes)
        counts = Counter(container_states)
        for state in CONTAINER_STATES:
            self.running_containers.labels(state).set(counts.get(state, 0))

    def render(self) -> str:
        return self.registry.render()
