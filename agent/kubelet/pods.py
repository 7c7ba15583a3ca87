"""The pods bound to this node, and one serial worker per pod.

**PodManager** watches only this node's pods: an ``ApiListWatcher`` with the field selector
``spec.nodeName=<node>`` feeding a ``SharedInformer``, whose periodic resync (``on_update``
for every cached pod every ``resync_period``) re-drives every pod — the full resync that
repairs anything missed. Handlers only look up the pod's uid and call ``workers.update``.
Pods are keyed by **uid**, not name: a pod deleted and re-created under the same name is a
different pod with its own worker, and the old one's cleanup never touches the new one.

**PodWorkers** (kopf-style): ``update(uid)`` asks for a sync of that pod. Each uid has at
most one worker task; a sync requested while one is running is coalesced into one more run
afterwards (sync is level-triggered: running it once more covers any number of requests),
so operations for one pod never overlap while different pods proceed in parallel. A worker
with nothing left to do exits. The sync function returns when to look again
(``requeue_after``) and a failure retries with a per-pod exponential backoff (1 s doubling
to 60 s); both are timers measured on the clock, one per pod, the earliest one winning.

Concurrency contract: one event loop; ``update`` / ``update_after`` / ``forget`` are
synchronous and callable from any task (informer handlers, the PLEG loop, probe callbacks);
``PodWorkers.stop()`` cancels every worker and timer and waits for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.client.listwatch import ApiListWatcher
from control.runtime.backoff import Backoff, BackoffState
from control.runtime.clock import Clock, RealClock
from control.runtime.informer import SharedInformer

log = structlog.get_logger(__name__)

SyncFunc = Callable[[str], Awaitable[float | None]]
# a failing sync retries after 1 s, doubling to 60 s
ERROR_BACKOFF = Backoff(initial=1.0, max_delay=60.0, factor=2.0, jitter=0.0)


class PodWorkers:
    """One serial worker per pod uid; see the module docstring."""

    def __init__(self, sync: SyncFunc, *, clock: Clock | None = None,
                 error_backoff: Backoff = ERROR_BACKOFF) -> None:
        self._sync = sync
        self._clock = clock or RealClock()
        self._error_backoff = error_backoff
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._pending: set[str] = set()
        self._timers: dict[str, tuple[float, asyncio.Task[None]]] = {}
        self._failures: dict[str, BackoffState] = {}
        self._stopped = False
        self.syncs = 0  # completed sync calls, for tests

    def update(self, uid: str) -> None:
        """Sync pod ``uid`` soon (once more after the running sync, if one runs)."""
        if self._stopped:
            return
        self._pending.add(uid)
        if uid not in self._workers:
            self._workers[uid] = asyncio.get_running_loop().create_task(
                self._work(uid), name=f"pod-worker/{uid}")

    def update_after(self, uid: str, delay: float) -> None:
        """Sync pod ``uid`` after ``delay`` clock seconds (an earlier timer wins)."""
        if self._stopped:
            return
        if delay <= 0:
            self.update(uid)
            return
        deadline = self._clock.monotonic() + delay
        existing = self._timers.get(uid)
        if existing is not None and not existing[1].done():
            if existing[0] <= deadline:
                return
            existing[1].cancel()
        task = asyncio.get_running_loop().create_task(self._timer(uid, delay),
                                                      name=f"pod-timer/{uid}")
        self._timers[uid] = (deadline, task)

    def forget(self, uid: str) -> None:
        """Drop timers and failure history of a pod that is gone."""
        timer = self._timers.pop(uid, None)
        if timer is not None:
            timer[1].cancel()
        self._failures.pop(uid, None)

    def active(self) -> list[str]:
        """Uids with a worker task right now."""
        return list(self._workers)

    async def wait_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait (real time, bounded) until no worker runs; for tests."""
        async def _wait() -> None:
            while self._workers:
                await asyncio.gather(*list(self._workers.values()), return_exceptions=True)
        await asyncio.wait_for(_wait(), timeout)

    async def stop(self) -> None:
        self._stopped = True
        tasks = [t for _, t in self._timers.values()] + list(self._workers.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._timers.clear()
        self._workers.clear()

    async def _timer(self, uid: str, delay: float) -> None:
        await self._clock.sleep(delay)
        current = self._timers.get(uid)
        if current is not None and current[1] is asyncio.current_task():
            del self._timers[uid]
        self.update(uid)

    async def _work(self, uid: str) -> None:
        try:
            while uid in self._pending:
                self._pending.discard(uid)
                try:
                    requeue = await self._sync(uid)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    state = self._failures.setdefault(
                        uid, BackoffState(self._error_backoff, self._clock))
                    delay = state.next_delay()
                    log.exception("pod sync failed; retrying", pod_uid=uid, retry_in=delay)
                    self.update_after(uid, delay)
                    continue
                finally:
                    self.syncs += 1
                self._failures.pop(uid, None)
                if requeue is not None:
                    self.update_after(uid, requeue)
        finally:
            # idle: the worker exits; a later update() starts a new one
            if self._workers.get(uid) is asyncio.current_task():
                del self._workers[uid]


def node_field_selector(node_name: str) -> str:
    return f"spec.nodeName={node_name}"


class PodManager:
    """This node's pods, by uid, from a shared informer; see the module docstring."""

    def __init__(self, client: ApiClient, node_name: str, workers: PodWorkers, *,
                 clock: Clock | None = None, resync_period: float | None = 60.0) -> None:
        self.node_name = node_name
        self.workers = workers
        self.informer: SharedInformer[core_pb2.Pod] = SharedInformer(
            f"pods@{node_name}",
            ApiListWatcher(client, core_pb2.Pod, field_selector=node_field_selector(node_name)),
            clock=clock, resync_period=resync_period)
        self._by_uid: dict[str, core_pb2.Pod] = {}
        self.informer.add_event_handler(on_add=self._on_add, on_update=self._on_update,
                                        on_delete=self._on_delete)

    def get(self, uid: str) -> core_pb2.Pod | None:
        return self._by_uid.get(uid)

    def pods(self) -> list[core_pb2.Pod]:
        return list(self._by_uid.values())

    def has_synced(self) -> bool:
        return self.informer.has_synced()

    async def run(self) -> None:
        await self.informer.run()

    def _on_add(self, pod: core_pb2.Pod) -> None:
        self._by_uid[pod.metadata.uid] = pod
        self.workers.update(pod.metadata.uid)

    def _on_update(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if old.metadata.uid != new.metadata.uid:
            # same name, new pod: the old one is gone
            self._by_uid.pop(old.metadata.uid, None)
            self.workers.update(old.metadata.uid)
        self._by_uid[new.metadata.uid] = new
        self.workers.update(new.metadata.uid)

    def _on_delete(self, pod: core_pb2.Pod) -> None:
        self._by_uid.pop(pod.metadata.uid, None)
        self.workers.update(pod.metadata.uid)
