"""Root CA publisher (Kubernetes' ``root-ca-cert-publisher``): a ConfigMap
``kube-root-ca.crt`` with the cluster's CA bundle (``ca.crt``) in every namespace that is
not terminating, put back when deleted or edited, so a pod can mount the CA it needs to
verify the API server.

The bundle is read from ``kube-public/cluster-info`` (the server publishes its CA there at
start), so a controller manager run as its own process needs no CA file of its own.

Keys are namespace names. A namespace added or updated, or its ``kube-root-ca.crt``
changed or deleted, enqueues it; a change of ``cluster-info`` enqueues every namespace.

Concurrency contract: runs under ``control.runtime.Controller`` (one key never reconciled
by two workers at once); writes are a create (AlreadyExists is success) or a
compare-and-swap update. Event handlers are synchronous and only enqueue keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control.api import errors
from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime.controller import Controller, Result

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

NAME = "root-ca-cert-publisher"
CONFIGMAP = "kube-root-ca.crt"
CLUSTER_INFO = "kube-public/cluster-info"


class RootCAPublisher:
    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._namespaces = ctx.informers.informer(core_pb2.Namespace)
        self._configmaps = ctx.informers.informer(core_pb2.ConfigMap)
        self._namespaces.add_event_handler(
            on_add=lambda ns: self.controller.enqueue(ns.metadata.name),
            on_update=lambda _o, ns: self.controller.enqueue(ns.metadata.name))
        self._configmaps.add_event_handler(on_add=self._configmap,
                                           on_update=lambda _o, cm: self._configmap(cm),
                                           on_delete=self._configmap)

    def _configmap(self, cm: core_pb2.ConfigMap) -> None:
        if f"{cm.metadata.namespace}/{cm.metadata.name}" == CLUSTER_INFO:
            for ns in self._namespaces.indexer.list():
                self.controller.enqueue(ns.metadata.name)
        elif cm.metadata.name == CONFIGMAP:
            self.controller.enqueue(cm.metadata.namespace)

    async def reconcile(self, key: str) -> Result | None:
        ns = self._namespaces.indexer.get(key)
        if ns is None or ns.metadata.HasField("deletion_timestamp") \
                or ns.status.phase == "Terminating":
            return None
        info = self._configmaps.indexer.get(CLUSTER_INFO)
        ca = info.data.get("ca.crt", "") if info is not None else ""
        if not ca:
            return None  # published by the server at start; its event re-drives us
        want = {"ca.crt": ca}
        current = self._configmaps.indexer.get(f"{key}/{CONFIGMAP}")
        try:
            if current is None:
                cm = core_pb2.ConfigMap()
                cm.metadata.name, cm.metadata.namespace = CONFIGMAP, key
                cm.data.update(want)
                await self._client.create(cm)
            elif dict(current.data) != want or current.binary_data:
                def mutate(c: core_pb2.ConfigMap) -> bool:
                    if dict(c.data) == want and not c.binary_data:
                        return False
                    c.data.clear()
                    c.data.update(want)
                    c.binary_data.clear()
                    return True

                await guaranteed_update(self._client, core_pb2.ConfigMap, key, CONFIGMAP,
                                        mutate, current=current)
        except (errors.AlreadyExists, errors.NotFound, errors.Forbidden):
            pass  # raced with another writer, or the namespace began terminating
        return None
