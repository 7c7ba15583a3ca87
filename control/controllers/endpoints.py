"""The endpoints controller: each Service with a selector gets an Endpoints object of the
same name listing its pods (``endpoints_util`` says which, and how).

Keyed by the Service's ``namespace/name``. Events map to keys: a Service's own events; a
pod's add, update or delete enqueues every Service of its namespace whose selector matches
its old or new labels (so a readiness change reaches the Endpoints as soon as the pod
informer sees it); an Endpoints' update or delete enqueues its Service (a selector
Service's Endpoints are the controller's, and are put back). ``reconcile`` reads only the
caches, writes only when the result differs, and deletes the Endpoints of a Service that
is gone. Services without a selector are left to their users.

Concurrency contract: ``control.runtime.Controller`` never runs one key twice at once;
different Services reconcile in parallel on the manager's workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from control.api import errors, labels
from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.controllers.endpoints_util import desired_endpoints, selects_pods
from control.runtime.controller import Controller, Result
from control.runtime.indexer import meta_namespace_key, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="endpoint")

NAME = "endpoint"
NAMESPACE_INDEX = "namespace"


class EndpointsController:
    """Keeps selector Services' Endpoints; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        by_ns = {NAMESPACE_INDEX: namespace_index}
        self._services = ctx.informers.informer(core_pb2.Service, indexers=by_ns)
        self._pods = ctx.informers.informer(core_pb2.Pod, indexers=by_ns)
        self._endpoints = ctx.informers.informer(core_pb2.Endpoints)
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        enqueue = self._enqueue
        self._services.add_event_handler(on_add=enqueue, on_update=lambda _o, n: enqueue(n),
                                         on_delete=enqueue)
        self._pods.add_event_handler(on_add=self._on_pod, on_update=self._on_pod_update,
                                     on_delete=self._on_pod)
        self._endpoints.add_event_handler(on_update=lambda _o, n: enqueue(n),
                                          on_delete=enqueue)

    def _enqueue(self, obj: core_pb2.Service | core_pb2.Endpoints) -> None:
        self.controller.enqueue(meta_namespace_key(obj))

    def _on_pod(self, pod: core_pb2.Pod) -> None:
        self._enqueue_matching(pod.metadata.namespace, [dict(pod.metadata.labels)])

    def _on_pod_update(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        self._enqueue_matching(new.metadata.namespace,
                               [dict(old.metadata.labels), dict(new.metadata.labels)])

    def _enqueue_matching(self, namespace: str, label_sets: list[dict[str, str]]) -> None:
        for svc in self._services.indexer.by_index(NAMESPACE_INDEX, namespace):
            if not selects_pods(svc):
                continue
            selector = labels.from_map(dict(svc.spec.selector))
            if any(selector.matches(ls) for ls in label_sets):
                self._enqueue(svc)

    async def reconcile(self, key: str) -> Result | None:
        namespace, _, name = key.partition("/")
        svc = self._services.indexer.get(key)
        current = self._endpoints.indexer.get(key)
        if svc is None:
            if current is not None:
                try:
                    await self._client.delete(core_pb2.Endpoints, name, namespace)
                except errors.NotFound:
                    pass
            return None
        if not selects_pods(svc):
            return None
        pods = self._pods.indexer.by_index(NAMESPACE_INDEX, namespace)
        want = desired_endpoints(svc, pods)
        if current is None:
            try:
                await self._client.create(want)
            except errors.AlreadyExists:
                return Result(requeue=True)  # our cache is behind: next time it is an update
            return None
        if list(current.subsets) == list(want.subsets) and (
                dict(current.metadata.labels) == dict(want.metadata.labels)):
            return None
        new = core_pb2.Endpoints()
        new.CopyFrom(current)
        del new.subsets[:]
        new.subsets.extend(want.subsets)
        new.metadata.labels.clear()
        new.metadata.labels.update(want.metadata.labels)
        await self._client.update(new)
        return None


__all__ = ["EndpointsController"]
