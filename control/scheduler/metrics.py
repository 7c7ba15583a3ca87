"""The scheduler's metrics: a small in-process registry with Prometheus' text format.

Kept dependency-free on purpose: three metric types are all the scheduler needs, and
``render()`` produces the exposition text any Prometheus can scrape once a component serves
it. Names follow kube-scheduler's (``scheduler_schedule_attempts_total{result,profile}``,
``scheduler_scheduling_attempt_duration_seconds``, ``scheduler_pod_scheduling_sli_duration_seconds``,
``scheduler_pending_pods{queue}``, ``scheduler_preemption_victims``...).

Concurrency contract: event loop only; every method is synchronous.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

LabelValues = tuple[str, ...]

DEFAULT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                   10.0, 30.0, 60.0)


def _fmt_labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{v}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    def __init__(self, name: str, help_: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labels = name, help_, labels
        self.values: dict[LabelValues, float] = {}

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        out += [f"{self.name}{_fmt_labels(self.labels, k)} {v:g}" for k, v in self.values.items()]
        return out


class Gauge:
    """A gauge whose value may come from a callback at render time."""

    def __init__(self, name: str, help_: str, labels: tuple[str, ...] = (),
                 collect: Callable[[], dict[LabelValues, float]] | None = None) -> None:
        self.name, self.help, self.labels = name, help_, labels
        self.values: dict[LabelValues, float] = {}
        self.collect = collect

    def set(self, value: float, *label_values: str) -> None:
        self.values[label_values] = value

    def get(self, *label_values: str) -> float:
        if self.collect is not None:
            return self.collect().get(label_values, 0.0)
        return self.values.get(label_values, 0.0)

    def render(self) -> list[str]:
        values = self.collect() if self.collect is not None else self.values
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        out += [f"{self.name}{_fmt_labels(self.labels, k)} {v:g}" for k, v in values.items()]
        return out


class Histogram:
    def __init__(self, name: str, help_: str, labels: tuple[str, ...] = (),
                 buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.name, self.help, self.labels = name, help_, labels
        self.buckets = buckets
        self.series: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *label_values: str) -> None:
        s = self.series.get(label_values)
        if s is None:
            s = self.series[label_values] = ([0] * (len(self.buckets) + 1), [0.0, 0.0])
        s[0][bisect.bisect_left(self.buckets, value)] += 1
        s[1][0] += value
        s[1][1] += 1

    def count(self, *label_values: str) -> int:
        s = self.series.get(label_values)
        return int(s[1][1]) if s else 0

    def quantile(self, q: float, *label_values: str) -> float:
        """The upper bound of the bucket holding quantile ``q`` (an estimate, as PromQL)."""
        s = self.series.get(label_values)
        if not s or not s[1][1]:
            return 0.0
        target = q * s[1][1]
        acc = 0
        for i, n in enumerate(s[0]):
            acc += n
            if acc >= target:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return float("inf")

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for k, (counts, (total, n)) in self.series.items():
            acc = 0
            for b, c in zip((*self.buckets, float("inf")), counts, strict=True):
                acc += c
                le = "+Inf" if b == float("inf") else f"{b:g}"
                lab = _fmt_labels(self.labels, k, 'le="' + le + '"')
                out.append(f"{self.name}_bucket{lab} {acc}")
            out.append(f"{self.name}_sum{_fmt_labels(self.labels, k)} {total:g}")
            out.append(f"{self.name}_count{_fmt_labels(self.labels, k)} {n:g}")
        return out


class SchedulerMetrics:
    """Every metric the scheduler exports."""

    def __init__(self, pending: Callable[[], dict[str, int]] | None = None) -> None:
        self.attempts = Counter("scheduler_schedule_attempts_total",
                                "Scheduling attempts by result (scheduled, unschedulable, error).",
                                ("result", "profile"))
        self.attempt_duration = Histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Time of one scheduling cycle (algorithm, no binding).", ("result", "profile"))
        self.e2e_duration = Histogram(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "From the pod entering the queue to its successful binding.", ("attempts",))
        self.pending = Gauge(
            "scheduler_pending_pods", "Pending pods by queue (active, backoff, unschedulable).",
            ("queue",),
            collect=(lambda: {(k,): float(v) for k, v in pending().items()}) if pending else None)
        self.preemption_attempts = Counter("scheduler_preemption_attempts_total",
                                           "Preemption attempts.")
        self.preemption_victims = Counter("scheduler_preemption_victims_total",
                                          "Pods evicted to make room for higher-priority pods.")
        self.events_dropped = Counter("scheduler_events_dropped_total",
                                      "Events not written because the recorder was full.")
        self.all: list[Counter | Gauge | Histogram] = [self.attempts, self.attempt_duration, self.e2e_duration, self.pending,
                    self.preemption_attempts, self.preemption_victims, self.events_dropped]

    def render(self) -> str:
        lines: list[str] = []
        for m in self.all:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
