"""PodBatches: a workload controller's pod creations and deletions under expectations.

What the ReplicaSet, Job and DaemonSet controllers share: creations go in slow-start batches (1, 2, 4, ...; the first failing batch
stops the rest, so a quota refusal costs one call, not hundreds) after expecting them all;
deletions are expected by pod uid (client-go's UIDTrackingControllerExpectations), so a pod
deleted by someone else is not mistaken for one of ours. A refused call will never be
observed, so its expectation is lowered at once.

Concurrency contract: synchronous bookkeeping from the controller's event handlers
(``deletion_seen``, ``forget``) and awaited writes from its reconcile; one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from control.api.pb import core_pb2
from control.controllers.podcontrol import PodControl
from control.runtime.expectations import ControllerExpectations

# Kubernetes' SlowStartInitialBatchSize.
SLOW_START_INITIAL_BATCH = 1


def slow_start_batches(count: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """Batch sizes for creating ``count`` pods: 1, 2, 4, ... (the last one partial)."""
    out: list[int] = []
    size = max(1, initial)
    remaining = count
    while remaining > 0:
        n = min(size, remaining)
        out.append(n)
        remaining -= n
        size *= 2
    return out


class PodBatches:
    """Creates and deletes one controller's pods; see the module docstring."""

    def __init__(self, pod_control: PodControl, expectations: ControllerExpectations) -> None:
        self.pod_control = pod_control
        self.expectations = expectations
        # owner key -> uids of the pods we deleted and have not yet seen go
        self._deleting: dict[str, set[str]] = {}

    def deletion_seen(self, key: str, pod: core_pb2.Pod) -> None:
        """The informer saw ``pod`` go (or start terminating)."""
        uids = self._deleting.get(key)
        if uids is not None and pod.metadata.uid in uids:
            uids.discard(pod.metadata.uid)
            self.expectations.deletion_observed(key)

    def forget(self, key: str) -> None:
        self.expectations.delete(key)
        self._deleting.pop(key, None)

    async def create(self, key: str, owner: Any,
                     pods: Sequence[tuple[core_pb2.PodTemplateSpec, str | None]]) -> None:
        """Create one pod per (template, name prefix or None for ``<owner>-``)."""
        if not pods:
            return
        self.expectations.expect_creations(key, len(pods))
        done = 0
        for size in slow_start_batches(len(pods)):
            batch = pods[done:done + size]
            results = await asyncio.gather(
                *(self.pod_control.create_pod(t, owner, prefix) for t, prefix in batch),
                return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            for exc in failures:
                if not isinstance(exc, Exception):
                    raise exc  # cancellation and the like are not pod failures
                self.expectations.creation_observed(key)
            done += size
            if failures:
                if len(pods) - done:
                    self.expectations.lower_expectations(key, len(pods) - done, 0)
                raise failures[0]

    async def delete(self, key: str, owner: Any, victims: Sequence[core_pb2.Pod]) -> None:
        if not victims:
            return
        uids = {p.metadata.uid for p in victims}
        self._deleting.setdefault(key, set()).update(uids)
        self.expectations.raise_expectations(key, 0, len(uids))
        results = await asyncio.gather(*(self.pod_control.delete_pod(p, owner) for p in victims),
                                       return_exceptions=True)
        first: Exception | None = None
        for pod, res in zip(victims, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                self._deleting[key].discard(pod.metadata.uid)
                self.expectations.deletion_observed(key)
                first = first or res
        if first is not None:
            raise first
