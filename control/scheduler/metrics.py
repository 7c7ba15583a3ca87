"""The scheduler's metrics, under kube-scheduler's names, in a ``control.runtime.metrics``
registry: ``scheduler_schedule_attempts_total{result,profile}``,
``scheduler_scheduling_attempt_duration_seconds{result,profile}``,
``scheduler_pod_scheduling_sli_duration_seconds{attempts}`` and the older
``scheduler_pod_scheduling_duration_seconds{attempts}`` (from entering the queue to a
successful bind), ``scheduler_pending_pods{queue}`` (read from the queue at scrape time),
``scheduler_preemption_attempts_total``, ``scheduler_preemption_victims_total`` and
``scheduler_events_dropped_total``.

Concurrency contract: event loop only; every method is synchronous and cheap (label
children are cached), so the scheduling cycle pays about a microsecond per update.
"""

from __future__ import annotations

from collections.abc import Callable

from control.runtime.metrics import Registry

# kube-scheduler's buckets for a scheduling attempt (exponential from 1 ms).
ATTEMPT_BUCKETS = tuple(0.001 * 2.0 ** i for i in range(15))
# ... and for the pod's whole scheduling (exponential from 10 ms).
POD_BUCKETS = tuple(0.01 * 2.0 ** i for i in range(20))


class SchedulerMetrics:
    """Every metric the scheduler exports, in ``registry`` (a fresh one by default)."""

    def __init__(self, pending: Callable[[], dict[str, int]] | None = None, *,
                 registry: Registry | None = None) -> None:
        self.registry = r = registry or Registry()
        self.attempts = r.counters(
            "scheduler_schedule_attempts_total",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod "
            "could not be scheduled, while 'error' means an internal scheduler problem.",
            ("result", "profile"))
        self.attempt_duration = r.histograms(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            ("result", "profile"), ATTEMPT_BUCKETS)
        self.sli_duration = r.histograms(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the "
            "scheduling queue, which may include multiple scheduling attempts.",
            ("attempts",), POD_BUCKETS)
        self.pod_duration = r.histograms(
            "scheduler_pod_scheduling_duration_seconds",
            "E2e latency for a pod being scheduled which may include multiple scheduling "
            "attempts.", ("attempts",), POD_BUCKETS)
        if pending is not None:
            r.gauge_callback(
                "scheduler_pending_pods",
                "Number of pending pods, by the queue type. 'active' means number of pods in "
                "activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means "
                "number of pods in unschedulablePods.",
                ("queue",), lambda: {(k,): float(v) for k, v in pending().items()})
        self.preemption_attempts = r.counter("scheduler_preemption_attempts_total",
                                             "Total preemption attempts in the cluster till now")
        self.preemption_victims = r.counter("scheduler_preemption_victims_total",
                                            "Pods evicted to make room for higher-priority pods.")
        self.events_dropped = r.counter("scheduler_events_dropped_total",
                                        "Events not written because the recorder was full.")

    def attempt(self, result: str, profile: str, seconds: float) -> None:
        """One scheduling cycle ended with ``result``."""
        self.attempts.labels(result, profile).inc()
        self.attempt_duration.labels(result, profile).observe(seconds)

    def scheduled(self, attempts: int, seconds: float) -> None:
        """A pod was bound after ``attempts`` cycles, ``seconds`` after it was queued."""
        label = str(min(attempts, 15))
        self.sli_duration.labels(label).observe(seconds)
        self.pod_duration.labels(label).observe(seconds)

    def render(self) -> str:
        return self.registry.render()
