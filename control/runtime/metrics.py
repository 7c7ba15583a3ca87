"""Metrics: one Prometheus registry per component, on prometheus-client.

Every component (the apiserver, each controller's work queue and reconcile loop, the
scheduler, the kubelet) registers its metrics in a :class:`Registry` it is given (or makes
its own), under Kubernetes' names so that existing dashboards and alerts apply
(``workqueue_depth``, ``apiserver_request_duration_seconds``,
``scheduler_schedule_attempts_total``, ``kubelet_running_pods``...). ``render()`` is the text
exposition format; ``control/runtime/metrics_http.py`` serves one or more registries at
``/metrics``.

Cost: prometheus-client's ``labels()`` validates and locks (~4 µs), so every labelled
metric is a :class:`Family` that caches its children by label values: a hot-path update is
a dict lookup and one locked add (~1-3 µs). ``_created`` series (an OpenMetrics extra that
Kubernetes does not export) are turned off.

Concurrency contract: updates are thread-safe (prometheus-client locks each value); a
Family's child cache is filled from the event loop only (a lost race would only build one
child twice, which prometheus-client deduplicates). Callback gauges call their function at
scrape time, on the scraping task: it must be synchronous and quick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

prometheus_client.disable_created_metrics()

# Kubernetes' component-base default buckets for request and work latencies.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# client-go's workqueue buckets: 10^-8 .. 10^1 s
WORKQUEUE_BUCKETS = tuple(10.0 ** e for e in range(-8, 2))

M = TypeVar("M", Counter, Gauge, Histogram)


class Family(Generic[M]):
    """A labelled metric whose children are cached by label values."""

    __slots__ = ("_children", "metric")
    metric: M

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child

    def remove(self, *values: str) -> None:
        """Drop one series (e.g. a controller that stopped)."""
        if self._children.pop(values, None) is not None:
            self.metric.remove(*values)


class _CallbackGauge(Collector):
    """A labelled gauge whose values come from a function at scrape time."""

    def __init__(self, name: str, help_: str, labels: Sequence[str],
                 collect: Callable[[], Mapping[tuple[str, ...], float]]) -> None:
        self._name, self._help, self._labels, self._collect = name, help_, list(labels), collect

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._help, labels=self._labels)
        for values, value in self._collect().items():
            family.add_metric(list(values), value)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(self._name, self._help, labels=self._labels)


class Registry:
    """One component's metrics; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

    def counter(self, name: str, help_: str) -> Counter:
        return Counter(name, help_, registry=self.registry)

    def counters(self, name: str, help_: str, labels: Sequence[str]) -> Family[Counter]:
        return Family(Counter(name, help_, labels, registry=self.registry))

    def gauge(self, name: str, help_: str) -> Gauge:
        return Gauge(name, help_, registry=self.registry)

    def gauges(self, name: str, help_: str, labels: Sequence[str]) -> Family[Gauge]:
        return Family(Gauge(name, help_, labels, registry=self.registry))

    def histogram(self, name: str, help_: str,
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        return Histogram(name, help_, buckets=buckets, registry=self.registry)

    def histograms(self, name: str, help_: str, labels: Sequence[str],
                   buckets: Sequence[float] = LATENCY_BUCKETS) -> Family[Histogram]:
        return Family(Histogram(name, help_, labels, buckets=buckets, registry=self.registry))

    def gauge_callback(self, name: str, help_: str, labels: Sequence[str],
                       collect: Callable[[], Mapping[tuple[str, ...], float]]) -> None:
        """A gauge read at scrape time: ``collect()`` maps label values to the value."""
        self.registry.register(_CallbackGauge(name, help_, labels, collect))

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The current value of one sample (``x_total``, ``x_count``...), 0 if absent."""
        got = self.registry.get_sample_value(name, dict(labels or {}))
        return got if got is not None else 0.0

    def render(self) -> str:
        """Prometheus' text exposition format."""
        return prometheus_client.generate_latest(self.registry).decode()
