"""Storage object in-use protection (Kubernetes' pvc-protection and pv-protection
controllers): takes the protection finalizers, added by admission to every claim and
volume, off a deleted object once nothing uses it.

- A claim being deleted keeps ``kubernetes.io/pvc-protection`` while a pod that is not
  finished (Succeeded/Failed) names it in a ``persistentVolumeClaim`` volume — a claim
  deleted while in use waits for its last pod. The cache saying "unused" is confirmed with
  a live list of the namespace's pods before the finalizer goes.
- A volume being deleted keeps ``kubernetes.io/pv-protection`` while it is Bound.

Keys are ``claim/<namespace>/<name>`` and ``volume/<name>``; a pod that finishes or goes
enqueues the claims it names.

Concurrency contract: runs under ``control.runtime.Controller`` (one key never reconciled
by two workers at once); finalizer removal is a compare-and-swap update. Event handlers
are synchronous and only enqueue keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from control.api import errors, storageutil
from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime.controller import Controller, Result
from control.runtime.indexer import NAMESPACE_INDEX, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

NAME = "persistentvolume-protection"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
PV = core_pb2.PersistentVolume
PVC = core_pb2.PersistentVolumeClaim


def claims_of(pod: core_pb2.Pod) -> list[str]:
    """The claims a pod's volumes name (an ephemeral volume's is ``<pod>-<volume>``)."""
    return [v.persistent_volume_claim.claim_name if v.HasField("persistent_volume_claim")
            else storageutil.ephemeral_claim_name(pod.metadata.name, v.name)
            for v in pod.spec.volumes
            if v.HasField("persistent_volume_claim") or v.HasField("ephemeral")]


def in_use(claim: PVC, pods: Iterable[core_pb2.Pod]) -> bool:
    return any(p.metadata.namespace == claim.metadata.namespace
               and p.status.phase not in ("Succeeded", "Failed")
               and claim.metadata.name in claims_of(p) for p in pods)


class VolumeProtectionController:
    """Removes protection finalizers from unused deleted claims and volumes."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._claims = ctx.informers.informer(core_pb2.PersistentVolumeClaim)
        self._volumes = ctx.informers.informer(core_pb2.PersistentVolume)
        self._pods = ctx.informers.informer(core_pb2.Pod,
                                            indexers={NAMESPACE_INDEX: namespace_index})
        self._claims.add_event_handler(on_add=self._claim, on_update=lambda _o, n: self._claim(n))
        self._volumes.add_event_handler(on_add=self._volume,
                                        on_update=lambda _o, n: self._volume(n))
        self._pods.add_event_handler(on_update=lambda _o, n: self._pod(n), on_delete=self._pod)

    def _claim(self, claim: PVC) -> None:
        if claim.metadata.HasField("deletion_timestamp"):
            self.controller.enqueue(f"claim/{claim.metadata.namespace}/{claim.metadata.name}")

    def _volume(self, pv: PV) -> None:
        if pv.metadata.HasField("deletion_timestamp"):
            self.controller.enqueue(f"volume/{pv.metadata.name}")

    def _pod(self, pod: core_pb2.Pod) -> None:
        for name in claims_of(pod):
            self.controller.enqueue(f"claim/{pod.metadata.namespace}/{name}")

    async def reconcile(self, key: str) -> Result | None:
        kind, _, rest = key.partition("/")
        if kind == "claim":
            claim = self._claims.indexer.get(rest)
            if (claim is None or not claim.metadata.HasField("deletion_timestamp")
                    or PVC_PROTECTION not in claim.metadata.finalizers):
                return None
            ns = claim.metadata.namespace
            if in_use(claim, self._pods.indexer.by_index(NAMESPACE_INDEX, ns)):
                return None
            live = await self._client.list_all(core_pb2.Pod, ns)
            if in_use(claim, live.items):
                return None
            await self._drop(PVC, claim, PVC_PROTECTION)
        elif kind == "volume":
            pv = self._volumes.indexer.get(rest)
            if (pv is None or not pv.metadata.HasField("deletion_timestamp")
                    or PV_PROTECTION not in pv.metadata.finalizers
                    or pv.status.phase == "Bound"):
                return None
            await self._drop(PV, pv, PV_PROTECTION)
        return None

    async def _drop(self, cls: type[PV] | type[PVC], obj: PV | PVC, finalizer: str) -> None:
        def mutate(o: PV | PVC) -> bool:
            if finalizer not in o.metadata.finalizers:
                return False
            o.metadata.finalizers.remove(finalizer)
            return True

        try:
            await guaranteed_update(self._client, cls, obj.metadata.namespace,
                                    obj.metadata.name, mutate, current=obj)  # type: ignore[arg-type]
        except errors.NotFound:
            return
