"""API Priority and Fairness: the apiserver's admission of requests under load, as
kube-apiserver's APF filter (``--enable-priority-and-fairness``, on by default).

Owns :class:`PriorityAndFairness`. Every request (unary calls, and watches while they
start) is classified by the flow schemas of :mod:`control.apiserver.flowcontrol` into a
priority level and a flow. The server's seats (``--max-requests-inflight`` plus
``--max-mutating-requests-inflight``, as Kubernetes when APF is on) are split between the
limited levels by their shares; within a level, flows are queued fairly
(:mod:`control.apiserver.fairqueue`). So a client flooding the server fills its own
level's queues and is refused there, while nodes renewing their Leases, the controllers
and the scheduler run on seats the flood cannot take. ``system:masters`` is exempt.

Refusals are ``TooManyRequests`` (gRPC RESOURCE_EXHAUSTED) with a retry-after in the
trailing metadata and in the message: the queue was full, the level takes no queue
(catch-all), or the wait timed out. The retry-after is 1 s while a level refuses no more
than it serves; beyond that it grows with the ratio of refusals to dispatches over the
last seconds (at most ``MAX_RETRY_AFTER_SECONDS``), so clients that honour it spread their
retries over the time the level needs to serve them: a one-second hint to thousands of
refused callers would bring them all back at once, and a single-threaded server spends
its CPU refusing them instead of serving anyone, nodes included. A queued request waits at most
``queue_wait_timeout`` (Kubernetes: a quarter of the 60 s request timeout) and never past
its caller's own deadline, so the caller hears "retry later" rather than a bare deadline.

Seats: one per request, a list as many as its estimated objects / 100 (at most 10, as
Kubernetes' work estimator); a watch holds one seat only while it starts (authorisation,
the wait for a fresh cache, registration), not for its lifetime. Kubernetes also lets idle
levels lend seats; Flotilla's levels keep their nominal seats: on a server with one event
loop every executing request slows every other, so a flood borrowing workload-low's idle
seats would slow the nodes' Leases by as much as it gained.

Metrics (kube-apiserver's names), per ``priority_level`` and ``flow_schema``:
``apiserver_flowcontrol_dispatched_requests_total``, ``..._rejected_requests_total{reason}``,
``..._current_inqueue_requests``, ``..._current_executing_requests``,
``..._request_wait_duration_seconds{execute}``, and per level
``..._nominal_limit_seats`` and ``..._current_executing_seats``.

Concurrency: event-loop only, as the queue sets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from control.api import errors
from control.apiserver.fairqueue import QueueSet, Rejected
from control.apiserver.flowcontrol import (
    DEFAULT_LEVELS,
    DEFAULT_SCHEMAS,
    FlowSchema,
    PriorityLevel,
    RequestInfo,
    classify,
    nominal_limits,
)
from control.runtime.clock import Clock, RealClock
from control.runtime.metrics import Registry

RETRY_AFTER_SECONDS = 1
MAX_RETRY_AFTER_SECONDS = 30
# how far back the refusal and dispatch rates look (the time constant of their decay)
RATE_WINDOW = 2.0
DEFAULT_QUEUE_WAIT_TIMEOUT = 15.0
# seconds of a caller's deadline kept back when it bounds the wait, so the refusal arrives
MIN_REPLY_MARGIN = 0.1
MAX_SEATS = 10
OBJECTS_PER_SEAT = 100

_WAIT_BUCKETS = (0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)


class DecayingRate:
    """Events per second, exponentially weighted over about ``window`` seconds."""

    def __init__(self, clock: Clock, window: float = RATE_WINDOW) -> None:
        self.clock = clock
        self.window = window
        self._value = 0.0
        self._at = clock.monotonic()

    def _decay(self) -> None:
        now = self.clock.monotonic()
        self._value *= math.exp(-(now - self._at) / self.window)
        self._at = now

    def add(self, n: float = 1.0) -> None:
        self._decay()
        self._value += n

    def per_second(self) -> float:
        self._decay()
        return self._value / self.window


def retry_after(refused_per_second: float, dispatched_per_second: float) -> int:
    """The hint for a refused caller: 1 s while a level refuses no more than it serves,
    else the refusals per dispatch (seconds for the level to serve that many), capped."""
    ratio = refused_per_second / max(dispatched_per_second, 1.0)
    return max(RETRY_AFTER_SECONDS, min(MAX_RETRY_AFTER_SECONDS, math.ceil(ratio)))


def list_seats(objects: int) -> int:
    """Seats a list of about ``objects`` objects occupies."""
    return max(1, min(MAX_SEATS, math.ceil(objects / OBJECTS_PER_SEAT)))


class FlowControlMetrics:
    def __init__(self, registry: Registry) -> None:
        r = registry
        labels = ("priority_level", "flow_schema")
        self.dispatched = r.counters(
            "apiserver_flowcontrol_dispatched_requests_total",
            "Number of requests executed by API Priority and Fairness subsystem", labels)
        self.rejected = r.counters(
            "apiserver_flowcontrol_rejected_requests_total",
            "Number of requests rejected by API Priority and Fairness subsystem",
            (*labels, "reason"))
        self.inqueue = r.gauges(
            "apiserver_flowcontrol_current_inqueue_requests",
            "Number of requests currently pending in queues of the API Priority and "
            "Fairness subsystem", labels)
        self.executing = r.gauges(
            "apiserver_flowcontrol_current_executing_requests",
            "Number of requests in initial (for a WATCH) or any (for a non-WATCH) execution "
            "stage in the API Priority and Fairness subsystem", labels)
        self.wait = r.histograms(
            "apiserver_flowcontrol_request_wait_duration_seconds",
            "Length of time a request spent waiting in its queue", (*labels, "execute"),
            buckets=_WAIT_BUCKETS)
        self.nominal = r.gauges(
            "apiserver_flowcontrol_nominal_limit_seats",
            "Nominal number of execution seats configured for each priority level",
            ("priority_level",))
        self.seats = r.gauges(
            "apiserver_flowcontrol_current_executing_seats",
            "Concurrency (number of seats) occupied by the currently executing requests in "
            "the API Priority and Fairness subsystem", ("priority_level",))


class PriorityAndFairness:
    def __init__(self, server_limit: int, *,
                 levels: Sequence[PriorityLevel] = DEFAULT_LEVELS,
                 schemas: Sequence[FlowSchema] = DEFAULT_SCHEMAS,
                 queue_wait_timeout: float = DEFAULT_QUEUE_WAIT_TIMEOUT,
                 clock: Clock | None = None,
                 registry: Registry | None = None,
                 estimate_objects: Callable[[RequestInfo], int] | None = None) -> None:
        if server_limit < 1:
            raise ValueError("priority and fairness needs a server limit of at least 1 seat")
        self.clock = clock or RealClock()
        self.schemas = sorted(schemas, key=lambda s: s.precedence)
        self.levels = {lv.name: lv for lv in levels}
        for s in self.schemas:
            if s.level not in self.levels:
                raise ValueError(f"flow schema {s.name} names unknown priority level {s.level}")
        self.limits = nominal_limits(server_limit, levels)
        self.sets = {name: QueueSet(limit, self.levels[name].queues, self.levels[name].hand_size,
                                    self.levels[name].queue_length_limit, self.clock)
                     for name, limit in self.limits.items()}
        self.queue_wait_timeout = queue_wait_timeout
        self.estimate_objects = estimate_objects
        self.metrics = FlowControlMetrics(registry) if registry is not None else None
        self.rejected: dict[str, int] = {name: 0 for name in self.levels}
        self.dispatched: dict[str, int] = {name: 0 for name in self.levels}
        self._refusals = {name: DecayingRate(self.clock) for name in self.limits}
        self._dispatches = {name: DecayingRate(self.clock) for name in self.limits}
        if self.metrics is not None:
            for name, limit in self.limits.items():
                self.metrics.nominal.labels(name).set(limit)

    def seats(self, req: RequestInfo) -> int:
        if req.verb == "list" and self.estimate_objects is not None:
            return list_seats(self.estimate_objects(req))
        return 1

    async def enter(self, req: RequestInfo,
                    time_remaining: float | None = None) -> Callable[[], None]:
        """Wait for a seat for ``req``; TooManyRequests when refused. Returns the release
        to call when the request is done (or, for a watch, has started)."""
        schema = classify(req, self.schemas)
        level = self.levels[schema.level]
        m = self.metrics
        labels = (level.name, schema.name)
        if level.exempt:
            return self._started(labels, None)
        qs = self.sets[level.name]
        timeout = self.queue_wait_timeout
        if time_remaining is not None:
            timeout = min(timeout, time_remaining - MIN_REPLY_MARGIN)
        began = time.perf_counter()
        if m is not None:
            m.inqueue.labels(*labels).inc()
        try:
            release = await qs.acquire(schema.flow(req), self.seats(req), timeout)
        except Rejected as e:
            self.rejected[level.name] += 1
            self._refusals[level.name].add()
            hint = retry_after(self._refusals[level.name].per_second(),
                               self._dispatches[level.name].per_second())
            if m is not None:
                m.rejected.labels(*labels, e.reason).inc()
                m.wait.labels(*labels, "false").observe(time.perf_counter() - began)
            raise errors.TooManyRequests(
                f"too many requests ({_REASONS[e.reason]} at priority level "
                f'"{level.name}"), please try again later: retry after {hint}s',
                retry_after=hint) from None
        finally:
            if m is not None:
                m.inqueue.labels(*labels).dec()
        self._dispatches[level.name].add()
        if m is not None:
            m.wait.labels(*labels, "true").observe(time.perf_counter() - began)
        return self._started(labels, (qs, release))

    def _started(self, labels: tuple[str, str],
                 held: tuple[QueueSet, Callable[[], None]] | None) -> Callable[[], None]:
        self.dispatched[labels[0]] += 1
        m = self.metrics
        if m is not None:
            m.dispatched.labels(*labels).inc()
            m.executing.labels(*labels).inc()
            if held is not None:
                m.seats.labels(labels[0]).set(held[0].seats_in_use)
        done = False

        def release() -> None:
            nonlocal done
            if done:
                return
            done = True
            if held is not None:
                held[1]()
            if m is not None:
                m.executing.labels(*labels).dec()
                if held is not None:
                    m.seats.labels(labels[0]).set(held[0].seats_in_use)

        return release


_REASONS = {"queue-full": "queue full", "time-out": "timed out waiting in the queue",
            "concurrency-limit": "no seat free"}


__all__ = ["DEFAULT_QUEUE_WAIT_TIMEOUT", "MAX_RETRY_AFTER_SECONDS", "RETRY_AFTER_SECONDS",
           "DecayingRate", "PriorityAndFairness", "list_seats", "retry_after"]
