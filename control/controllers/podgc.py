"""Pod garbage collection (Kubernetes' podgc controller).

Every ``gc_period`` seconds (20 s, as Kubernetes' gcCheckPeriod) one pass over the pod and
node caches:

1. **Terminated pods beyond the threshold.** When more than ``terminated_pod_threshold``
   (``--terminated-pod-gc-threshold``, 12500; 0 disables) pods are Succeeded or Failed,
   the oldest (by creation time) beyond the threshold are deleted.
2. **Orphaned pods.** Pods bound to a node that does not exist are force-deleted (grace 0:
   no agent will ever confirm their termination), including pods already terminating
   there. A node must be missing for ``quarantine`` seconds (40 s, as Kubernetes) and still
   be NotFound on a live read before its pods go, so a node that is merely re-registering
   or not yet in our cache loses nothing.
3. **Unscheduled terminating pods.** A pod that is being deleted but was never bound has no
   agent to finish it: force-delete it.

Which pods go is decided by plain functions (``terminated_pods_to_delete``,
``orphaned_pods``, ``unscheduled_terminating_pods``) over cached objects; the controller
does the reads and deletes. Deletes carry a uid precondition, so a namesake created since
the cache was read is never hit.

Concurrency contract: one key ("podgc") under ``control.runtime.Controller``, so passes
never overlap; each pass requeues itself after ``gc_period``. Times come from the
injected Clock (quarantine uses its monotonic time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import structlog

from control.api import errors
from control.api.pb import core_pb2
from control.api.timeutil import timestamp_seconds
from control.client.client import ApiClient
from control.runtime.controller import Controller, Result

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="podgc")

NAME = "podgc"
KEY = "podgc"
DEFAULT_TERMINATED_POD_THRESHOLD = 12500
DEFAULT_GC_PERIOD = 20.0
DEFAULT_QUARANTINE = 40.0


def is_terminated(pod: core_pb2.Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def _created(pod: core_pb2.Pod) -> float:
    return timestamp_seconds(pod.metadata.creation_timestamp)


def terminated_pods_to_delete(pods: Iterable[core_pb2.Pod], threshold: int) -> list[core_pb2.Pod]:
    """The oldest terminated pods beyond ``threshold`` (0 disables this collection)."""
    if threshold <= 0:
        return []
    terminated = [p for p in pods
                  if is_terminated(p) and not p.metadata.HasField("deletion_timestamp")]
    excess = len(terminated) - threshold
    if excess <= 0:
        return []
    terminated.sort(key=lambda p: (_created(p), p.metadata.namespace, p.metadata.name))
    return terminated[:excess]


def orphaned_pods(pods: Iterable[core_pb2.Pod], nodes: Iterable[str]) -> dict[str,
                  list[core_pb2.Pod]]:
    """node name -> the pods bound to it, for every node not in ``nodes``."""
    known = set(nodes)
    out: dict[str, list[core_pb2.Pod]] = {}
    for p in pods:
        node = p.spec.node_name
        if node and node not in known:
            out.setdefault(node, []).append(p)
    return out


def unscheduled_terminating_pods(pods: Iterable[core_pb2.Pod]) -> list[core_pb2.Pod]:
    return [p for p in pods
            if not p.spec.node_name and p.metadata.HasField("deletion_timestamp")]


def quarantine_expired(first_missing: Mapping[str, float], node: str, now: float,
                       quarantine: float) -> bool:
    since = first_missing.get(node)
    return since is not None and now - since >= quarantine


class PodGarbageCollector:
    """Periodic pod clean-up; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *,
                 terminated_pod_threshold: int | None = None,
                 gc_period: float = DEFAULT_GC_PERIOD,
                 quarantine: float = DEFAULT_QUARANTINE) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self.threshold = (ctx.terminated_pod_gc_threshold if terminated_pod_threshold is None
                          else terminated_pod_threshold)
        self.gc_period = gc_period
        self.quarantine = quarantine
        # node name -> monotonic time it was first seen missing while pods were bound to it
        self._missing_since: dict[str, float] = {}
        self._pods = ctx.informers.informer(core_pb2.Pod)
        self._nodes = ctx.informers.informer(core_pb2.Node)
        # One worker: passes are serial by design (and share one key anyway).
        self.controller = Controller(NAME, self.reconcile, workers=1, clock=ctx.clock)
        self.controller.enqueue(KEY)

    async def reconcile(self, key: str) -> Result | None:
        pods = self._pods.indexer.list()
        await self._gc_terminated(pods)
        await self._gc_orphaned(pods)
        await self._gc_unscheduled_terminating(pods)
        return Result(requeue_after=self.gc_period)

    async def _force_delete(self, pod: core_pb2.Pod, why: str) -> None:
        m = pod.metadata
        try:
            await self._client.delete(core_pb2.Pod, m.name, m.namespace,
                                      grace_period_seconds=0, uid=m.uid)
        except (errors.NotFound, errors.Conflict):
            return
        log.info("deleted pod", pod=f"{m.namespace}/{m.name}", reason=why)

    async def _gc_terminated(self, pods: list[core_pb2.Pod]) -> None:
        victims = terminated_pods_to_delete(pods, self.threshold)
        if victims:
            log.info("deleting terminated pods beyond the threshold", count=len(victims),
                     threshold=self.threshold)
        for pod in victims:
            await self._force_delete(pod, "terminated pod beyond the threshold")

    async def _gc_orphaned(self, pods: list[core_pb2.Pod]) -> None:
        now = self._clock.monotonic()
        by_node = orphaned_pods(pods, self._nodes.indexer.list_keys())
        for node in list(self._missing_since):
            if node not in by_node:
                del self._missing_since[node]  # came back, or nothing left bound to it
        for node, node_pods in by_node.items():
            self._missing_since.setdefault(node, now)
            if not quarantine_expired(self._missing_since, node, now, self.quarantine):
                continue
            try:
                await self._client.get(core_pb2.Node, node)
                continue  # exists after all: our cache is behind
            except errors.NotFound:
                pass
            for pod in node_pods:
                await self._force_delete(pod, f"bound to node {node}, which no longer exists")

    async def _gc_unscheduled_terminating(self, pods: list[core_pb2.Pod]) -> None:
        for pod in unscheduled_terminating_pods(pods):
            await self._force_delete(pod, "terminating and never scheduled")
