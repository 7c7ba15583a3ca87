"""The EndpointSlice controllers: each Service's discovery.k8s.io/v1 EndpointSlices, from
its pods when it has a selector (``endpointslice-controller.k8s.io``) or mirrored from the
Endpoints its user keeps when it has none (``endpointslicemirroring-controller.k8s.io``,
as the ``kubernetes`` Service's are). ``endpointslice_util`` says what goes in them.

Keyed by the Service's ``namespace/name``; slices are found by their
``kubernetes.io/service-name`` label and owned by the Service (the garbage collector
removes them with it too). Events map to keys: the Service's; a pod's (every Service of
its namespace whose selector matches its old or new labels); an Endpoints' (its Service,
for mirroring); a slice's (its Service, so an edited or deleted slice is put back).
``reconcile`` reads the caches, keeps a slice whose content is right, rewrites or creates
the others and deletes the rest; it writes nothing when all is right.

Concurrency contract: ``control.runtime.Controller`` never runs one key twice at once.
Slices created under generateName are seen by the cache after create returns; a slice
created but not yet cached would be created again, so a key is requeued (not rewritten)
while a slice it created is missing from the cache, for at most ``CREATE_CACHE_WAIT``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from control.api import errors, labels
from control.api.pb import core_pb2, discovery_pb2, meta_pb2
from control.client.client import ApiClient
from control.controllers.endpoints_util import selects_pods
from control.controllers.endpointslice_util import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MIRROR_MANAGED_BY,
    SERVICE_NAME_LABEL,
    SKIP_MIRROR_LABEL,
    SliceContent,
    fill,
    same_content,
    slice_labels,
    slices_from_endpoints,
    slices_from_pods,
)
from control.runtime.controller import Controller, Result
from control.runtime.indexer import meta_namespace_key, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="endpointslice")

NAME = "endpointslice"
NAMESPACE_INDEX = "namespace"
SERVICE_INDEX = "service"
CREATE_CACHE_WAIT = 5.0
_OURS = (MANAGED_BY, MIRROR_MANAGED_BY)


def service_index(es: discovery_pb2.EndpointSlice) -> list[str]:
    name = es.metadata.labels.get(SERVICE_NAME_LABEL)
    return [f"{es.metadata.namespace}/{name}"] if name else []


class EndpointSliceController:
    """Keeps every Service's EndpointSlices; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        by_ns = {NAMESPACE_INDEX: namespace_index}
        self._services = ctx.informers.informer(core_pb2.Service, indexers=by_ns)
        self._pods = ctx.informers.informer(core_pb2.Pod, indexers=by_ns)
        self._endpoints = ctx.informers.informer(core_pb2.Endpoints)
        self._slices = ctx.informers.informer(discovery_pb2.EndpointSlice,
                                              indexers={SERVICE_INDEX: service_index})
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        self._clock = ctx.clock
        # key -> (names of slices it created, when): until the cache has them
        self._created: dict[str, tuple[set[str], float]] = {}
        enq = self._enqueue
        self._services.add_event_handler(on_add=enq, on_update=lambda _o, n: enq(n),
                                         on_delete=enq)
        self._endpoints.add_event_handler(on_add=enq, on_update=lambda _o, n: enq(n),
                                          on_delete=enq)
        self._pods.add_event_handler(on_add=self._on_pod, on_update=self._on_pod_update,
                                     on_delete=self._on_pod)
        self._slices.add_event_handler(on_add=self._on_slice,
                                       on_update=lambda _o, n: self._on_slice(n),
                                       on_delete=self._on_slice)

    def _enqueue(self, obj: core_pb2.Service | core_pb2.Endpoints) -> None:
        self.controller.enqueue(meta_namespace_key(obj))

    def _on_slice(self, es: discovery_pb2.EndpointSlice) -> None:
        if es.metadata.labels.get(MANAGED_BY_LABEL) in _OURS:
            for key in service_index(es):
                self.controller.enqueue(key)

    def _on_pod(self, pod: core_pb2.Pod) -> None:
        self._enqueue_matching(pod.metadata.namespace, [dict(pod.metadata.labels)])

    def _on_pod_update(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        self._enqueue_matching(new.metadata.namespace,
                               [dict(old.metadata.labels), dict(new.metadata.labels)])

    def _enqueue_matching(self, namespace: str, label_sets: list[dict[str, str]]) -> None:
        for svc in self._services.indexer.by_index(NAMESPACE_INDEX, namespace):
            if selects_pods(svc):
                selector = labels.from_map(dict(svc.spec.selector))
                if any(selector.matches(ls) for ls in label_sets):
                    self._enqueue(svc)

    def _desired(self, key: str, svc: core_pb2.Service) -> tuple[str, list[SliceContent]]:
        if selects_pods(svc):
            pods = self._pods.indexer.by_index(NAMESPACE_INDEX, svc.metadata.namespace)
            return MANAGED_BY, slices_from_pods(svc, pods)
        if svc.spec.type == "ExternalName":
            return MANAGED_BY, []
        ep = self._endpoints.indexer.get(key)
        if ep is None or SKIP_MIRROR_LABEL in ep.metadata.labels:
            return MIRROR_MANAGED_BY, []
        return MIRROR_MANAGED_BY, slices_from_endpoints(ep)

    async def reconcile(self, key: str) -> Result | None:
        mine = [es for es in self._slices.indexer.by_index(SERVICE_INDEX, key)
                if es.metadata.labels.get(MANAGED_BY_LABEL) in _OURS]
        svc = self._services.indexer.get(key)
        if svc is None:
            self._created.pop(key, None)
            for es in mine:
                await self._delete(es)
            return None
        pending = self._created.get(key)
        if pending is not None:
            names, at = pending
            if names - {es.metadata.name for es in mine} and (
                    self._clock.monotonic() - at < CREATE_CACHE_WAIT):
                return Result(requeue_after=0.1)  # our own creates are not cached yet
            del self._created[key]
        managed_by, want = self._desired(key, svc)
        want_labels = slice_labels(svc, managed_by)
        keep = [es for es in mine if es.metadata.labels.get(MANAGED_BY_LABEL) == managed_by]
        for es in mine:
            if es not in keep:
                await self._delete(es)
        todo: list[SliceContent] = []
        for content in want:
            match = next((es for es in keep if same_content(es, content)), None)
            if match is None:
                todo.append(content)
                continue
            keep.remove(match)
            if dict(match.metadata.labels) != want_labels:
                await self._write(match, content, want_labels)
        created: set[str] = set()
        for content in todo:
            if keep:
                await self._write(keep.pop(0), content, want_labels)
            else:
                created.add(await self._create(svc, content, want_labels))
        for es in keep:
            await self._delete(es)
        if created:
            self._created[key] = (created, self._clock.monotonic())
        return None

    async def _write(self, current: discovery_pb2.EndpointSlice, content: SliceContent,
                     want_labels: dict[str, str]) -> None:
        new = discovery_pb2.EndpointSlice()
        new.CopyFrom(current)
        fill(new, content)
        new.metadata.labels.clear()
        new.metadata.labels.update(want_labels)
        await self._client.update(new)

    async def _create(self, svc: core_pb2.Service, content: SliceContent,
                      want_labels: dict[str, str]) -> str:
        es = discovery_pb2.EndpointSlice()
        es.metadata.generate_name = f"{svc.metadata.name}-"
        es.metadata.namespace = svc.metadata.namespace
        es.metadata.labels.update(want_labels)
        es.metadata.owner_references.append(meta_pb2.OwnerReference(
            api_version="v1", kind="Service", name=svc.metadata.name, uid=svc.metadata.uid,
            controller=True, block_owner_deletion=True))
        fill(es, content)
        made = await self._client.create(es)
        return str(made.metadata.name)

    async def _delete(self, es: discovery_pb2.EndpointSlice) -> None:
        try:
            await self._client.delete(discovery_pb2.EndpointSlice, es.metadata.name,
                                      es.metadata.namespace, uid=es.metadata.uid)
        except errors.NotFound:
            pass


__all__ = ["EndpointSliceController"]
