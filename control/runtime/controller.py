"""The reconcile loop: N workers pull keys from a work queue and call ``reconcile(key)``.

What a controller author writes is one ``async def reconcile(key: str) -> Result | None``; the
outcome maps onto the queue (controller-runtime's contract):

- returns ``None`` or ``Result()``: the key is forgotten (its retry history reset);
- returns ``Result(requeue_after=s)``: forgotten, then added again after ``s`` seconds;
- returns ``Result(requeue=True)``: re-added through the rate limiter (backoff, no error log);
- raises ``TerminalError``: logged and forgotten, no retry until an event adds it again;
- raises any other exception: logged and re-added through the rate limiter (backoff).

Metrics: an instrumented controller (``instrument(ControllerMetrics)``) counts reconciles by
outcome and times them under controller-runtime's names
(``controller_runtime_reconcile_total{controller,result}``,
``controller_runtime_reconcile_errors_total``, ``controller_runtime_reconcile_time_seconds``),
and its queue exports client-go's ``workqueue_*`` series.

The work queue guarantees one key is never reconciled by two workers at once, so reconcile
needs no per-key locking.

Concurrency contract: ``run()`` owns its worker tasks and runs until cancelled. Cancelling it
is a graceful stop: the queue is shut down (no new keys are handed out), reconciles already
in flight finish (bounded by ``shutdown_timeout`` on the clock, after which they are
cancelled), then ``run()`` re-raises the cancellation. The controller is meant to be started
under a ``Supervisor``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from control.api import errors
from control.runtime.clock import Clock, RealClock, wait_for
from control.runtime.metrics import Registry
from control.runtime.workqueue import ShutDown, WorkQueue, WorkQueueMetrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Result:
    """What reconcile asks for next; ``None`` / ``Result()`` means "done until something changes"."""

    requeue_after: float | None = None
    requeue: bool = False


class TerminalError(Exception):
    """Reconcile failed in a way retrying cannot fix (e.g. an invalid spec): do not retry."""


Reconciler = Callable[[str], Awaitable[Result | None]]


class ControllerMetrics:
    """Reconcile and work-queue metrics for every controller instrumented with one registry."""

    def __init__(self, registry: Registry) -> None:
        self.workqueue = WorkQueueMetrics(registry)
        self.total = registry.counters("controller_runtime_reconcile_total",
                                       "Total number of reconciliations per controller",
                                       ("controller", "result"))
        self.errors = registry.counters("controller_runtime_reconcile_errors_total",
                                        "Total number of reconciliation errors per controller",
                                        ("controller",))
        self.time = registry.histograms("controller_runtime_reconcile_time_seconds",
                                        "Length of time per reconciliation per controller",
                                        ("controller",))


class Controller:
    """Runs ``workers`` concurrent reconcile workers over one work queue."""

    def __init__(
        self,
        name: str,
        reconcile: Reconciler,
        *,
        workers: int = 1,
        queue: WorkQueue[str] | None = None,
        clock: Clock | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.name = name
        self._reconcile = reconcile
        self._workers = workers
        self._clock = clock or RealClock()
        self.queue: WorkQueue[str] = (
            queue if queue is not None else WorkQueue(name, clock=self._clock)
        )
        self._shutdown_timeout = shutdown_timeout
        self._log = log.bind(component="controller", controller=name)
        self._metrics: ControllerMetrics | None = None

    def instrument(self, metrics: ControllerMetrics) -> None:
        """Export this controller's reconcile and queue metrics."""
        self._metrics = metrics
        self.queue.instrument(metrics.workqueue)

    def enqueue(self, key: str) -> None:
        """Ask for ``key`` to be reconciled (what event handlers call)."""
        self.queue.add(key)

    def enqueue_after(self, key: str, delay: float) -> None:
        self.queue.add_after(key, delay)

    async def run(self) -> None:
        """Run the workers until cancelled; see the module docstring for the stop contract."""
        tasks = [
            asyncio.get_running_loop().create_task(
                self._worker(), name=f"controller/{self.name}/worker-{i}"
            )
            for i in range(self._workers)
        ]
        self._log.info("controller started", workers=self._workers)
        try:
            # asyncio.wait, unlike gather, does not cancel the workers when we are cancelled:
            # that is what lets in-flight reconciles finish below.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            self._log.info("controller stopping; waiting for in-flight reconciles")
            self.queue.shutdown()
            try:
                await wait_for(self._clock, asyncio.wait(tasks), self._shutdown_timeout)
            except TimeoutError:
                self._log.warning("reconciles still running at shutdown; cancelling them")
            raise
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._log.info("controller stopped")
        # Reached when the queue was shut down under us (workers return) or a worker died.
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:
                raise RuntimeError(f"controller {self.name} worker died") from t.exception()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self._process(key)
            finally:
                self.queue.done(key)

    async def _process(self, key: str) -> None:
        if self._metrics is None:
            await self._outcome(key)
            return
        start = self._clock.monotonic()
        outcome = await self._outcome(key)
        m, name = self._metrics, self.name
        m.time.labels(name).observe(self._clock.monotonic() - start)
        m.total.labels(name, outcome).inc()
        if outcome == "error":
            m.errors.labels(name).inc()

    async def _outcome(self, key: str) -> str:
        """Reconcile ``key`` and act on the result; the outcome as controller-runtime
        labels it (success, error, requeue, requeue_after)."""
        klog = self._log.bind(key=key)
        try:
            result = await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except TerminalError as exc:
            klog.error("reconcile failed terminally; not retrying", error=str(exc))
            self.queue.forget(key)
            return "error"
        except errors.Conflict as exc:
            # optimistic concurrency at work (the cache was behind a write): routine, retried
            klog.info("conflict; retrying", error=str(exc))
            self.queue.add_rate_limited(key)
            return "error"
        except Exception:
            klog.exception("reconcile failed; retrying", retries=self.queue.num_requeues(key))
            self.queue.add_rate_limited(key)
            return "error"
        if result is not None and result.requeue:
            self.queue.add_rate_limited(key)
            return "requeue"
        self.queue.forget(key)
        if result is not None and result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)
            return "requeue_after"
        return "success"
