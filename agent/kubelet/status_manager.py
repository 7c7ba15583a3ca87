"""Posting pod statuses to the API without ever blocking a pod worker.

A pod worker computes a status and calls :meth:`StatusManager.set_status` — synchronous,
it only records the wish and enqueues the pod's uid. :meth:`StatusManager.run` drains the
queue with a few poster tasks: for each uid it takes the *latest* wished status (so a
burst of changes costs one write), skips the write when the API already holds that status
(the informer's copy or what we posted last), and otherwise calls
``ApiClient.update_status``. On ``Conflict`` it re-reads the pod and tries again (our
status wins: the kubelet owns pod status); ``NotFound`` or a different uid means the pod is
gone and the wish is dropped; any other error retries with the queue's per-key backoff.

Concurrency contract: one event loop; ``set_status`` / ``forget`` are synchronous and safe
from any task; ``run()`` runs until cancelled and owns its poster tasks. The work queue
never hands one uid to two posters at once, so writes of one pod are ordered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from agent.kubelet.status import status_equal
from control.api import errors
from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime.clock import Clock, RealClock
from control.runtime.workqueue import ShutDown, WorkQueue

log = structlog.get_logger(__name__)

CONFLICT_RETRIES = 5


@dataclass
class _Wish:
    pod: core_pb2.Pod  # the newest pod object we know (metadata for the write)
    status: core_pb2.PodStatus


class StatusManager:
    """See the module docstring."""

    def __init__(self, client: ApiClient, *, clock: Clock | None = None,
                 workers: int = 4) -> None:
        self.client = client
        self.clock = clock or RealClock()
        self.workers = workers
        self._queue: WorkQueue[str] = WorkQueue("pod-status", clock=self.clock)
        self._wishes: dict[str, _Wish] = {}
        self._posted: dict[str, core_pb2.PodStatus] = {}
        self._progress = asyncio.Event()
        self.writes = 0  # successful update_status calls, for tests and metrics
        self._log = log.bind(component="status-manager")

    def set_status(self, pod: core_pb2.Pod, status: core_pb2.PodStatus) -> None:
        """Record the status ``pod`` should have; posted later, only if it differs."""
        uid = pod.metadata.uid
        if status_equal(pod.status, status) and uid not in self._wishes:
            self._posted[uid] = status
            return  # the API already says this
        posted = self._posted.get(uid)
        if posted is not None and status_equal(posted, status) and uid not in self._wishes:
            return
        self._wishes[uid] = _Wish(pod, status)
        self._queue.add(uid)

    def last_status(self, uid: str) -> core_pb2.PodStatus | None:
        """The newest status set for the pod (wished or posted)."""
        wish = self._wishes.get(uid)
        return wish.status if wish is not None else self._posted.get(uid)

    def forget(self, uid: str) -> None:
        self._wishes.pop(uid, None)
        self._posted.pop(uid, None)

    def pending(self) -> int:
        return len(self._wishes)

    async def flush(self, uid: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait (real time, bounded) until nothing is waiting to be posted for ``uid``."""
        async def _wait() -> None:
            while uid in self._wishes:
                event = self._progress
                await event.wait()
        await asyncio.wait_for(_wait(), timeout)

    def _progressed(self) -> None:
        # wake every flush() waiter; each re-checks its own uid with a fresh event
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for i in range(self.workers):
                    tg.create_task(self._worker(), name=f"status-poster-{i}")
        finally:
            self._queue.shutdown()

    async def _worker(self) -> None:
        while True:
            try:
                uid = await self._queue.get()
            except ShutDown:
                return
            try:
                await self._post(uid)
                self._queue.forget(uid)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._log.warning("status update failed; will retry", pod_uid=uid, error=str(e))
                self._queue.add_rate_limited(uid)
            finally:
                self._queue.done(uid)
                self._progressed()

    async def _post(self, uid: str) -> None:
        wish = self._wishes.get(uid)
        if wish is None:
            return
        status = wish.status

        def apply(pod: core_pb2.Pod) -> bool:
            pod.status.CopyFrom(status)
            return True

        try:
            await guaranteed_update(self.client, core_pb2.Pod, wish.pod.metadata.namespace,
                                    wish.pod.metadata.name, apply, current=wish.pod, uid=uid,
                                    status=True, attempts=CONFLICT_RETRIES)
        except errors.NotFound:
            self._drop(uid, wish)  # gone, or replaced by a namesake
            return
        self.writes += 1
        # remember what we computed, not the server's echo: the next wish compares to it
        self._posted[uid] = status
        if self._wishes.get(uid) is wish:
            del self._wishes[uid]

    def _drop(self, uid: str, wish: _Wish) -> None:
        if self._wishes.get(uid) is wish:
            del self._wishes[uid]
