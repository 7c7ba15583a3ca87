"""Generic ephemeral volumes (Kubernetes' ephemeral volume controller): a pod volume with
``ephemeral.volumeClaimTemplate`` gets the claim ``<pod>-<volume>``, made from the
template and controlled by the pod, so the garbage collector deletes it with the pod (and
pvc-protection keeps it while the pod still runs). The kubelet mounts it once it is Bound.

- The claim: the template's labels and annotations, its spec unchanged, the namespace of
  the pod, an ownerReference to the pod (controller, blockOwnerDeletion).
- A claim of that name that the pod does not control is left alone; a Warning Event on the
  pod says so (the kubelet refuses to mount it).
- A pod that is being deleted gets no new claim.

Keys are the pods' ``<namespace>/<name>``. Concurrency contract: runs under
``control.runtime.Controller`` (one key never reconciled by two workers at once). The claim
names are fixed, so a create after a stale cache answers AlreadyExists and nothing is made
twice. Event handlers are synchronous and only enqueue keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control.api import errors, storageutil
from control.api.pb import core_pb2, meta_pb2
from control.client.client import ApiClient
from control.runtime.controller import Controller, Result
from control.runtime.events import WARNING

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

NAME = "ephemeral-volume"
PVC = core_pb2.PersistentVolumeClaim


def claim_name(pod: core_pb2.Pod, vol: core_pb2.Volume) -> str:
    return storageutil.ephemeral_claim_name(pod.metadata.name, vol.name)


def ephemeral_volumes(pod: core_pb2.Pod) -> list[core_pb2.Volume]:
    return [v for v in pod.spec.volumes
            if v.HasField("ephemeral") and v.ephemeral.HasField("volume_claim_template")]


def owned_by(claim: PVC, pod: core_pb2.Pod) -> bool:
    return any(r.controller and r.uid == pod.metadata.uid
               for r in claim.metadata.owner_references)


def build_claim(pod: core_pb2.Pod, vol: core_pb2.Volume) -> PVC:
    template = vol.ephemeral.volume_claim_template
    claim = PVC(api_version="v1", kind="PersistentVolumeClaim")
    claim.metadata.name = claim_name(pod, vol)
    claim.metadata.namespace = pod.metadata.namespace
    claim.metadata.labels.update(template.metadata.labels)
    claim.metadata.annotations.update(template.metadata.annotations)
    claim.metadata.owner_references.append(meta_pb2.OwnerReference(
        api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid,
        controller=True, block_owner_deletion=True))
    claim.spec.CopyFrom(template.spec)
    return claim


class EphemeralVolumeController:
    """Creates the claims of pods' ephemeral volumes; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self.recorder = ctx.events.new_recorder("ephemeral_volume")
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._pods = ctx.informers.informer(core_pb2.Pod)
        self._claims = ctx.informers.informer(core_pb2.PersistentVolumeClaim)
        self._pods.add_event_handler(on_add=self._pod, on_update=lambda _o, n: self._pod(n))
        self._claims.add_event_handler(on_delete=self._claim)

    def _pod(self, pod: core_pb2.Pod) -> None:
        if ephemeral_volumes(pod):
            self.controller.enqueue(f"{pod.metadata.namespace}/{pod.metadata.name}")

    def _claim(self, claim: PVC) -> None:
        # a claim deleted under a live pod is made again
        for ref in claim.metadata.owner_references:
            if ref.kind == "Pod" and ref.controller:
                self.controller.enqueue(f"{claim.metadata.namespace}/{ref.name}")

    async def reconcile(self, key: str) -> Result | None:
        pod = self._pods.indexer.get(key)
        if pod is None or pod.metadata.HasField("deletion_timestamp"):
            return None
        ns = pod.metadata.namespace
        for vol in ephemeral_volumes(pod):
            name = claim_name(pod, vol)
            existing = self._claims.indexer.get(f"{ns}/{name}")
            if existing is None:
                try:
                    await self._client.create(build_claim(pod, vol))
                    continue
                except errors.AlreadyExists:
                    existing = await self._client.get(PVC, name, ns)
                except errors.Invalid as e:
                    self.recorder.event(pod, WARNING, "FailedBinding",
                                        f"cannot create PVC {ns}/{name}: {e}")
                    continue
            if not owned_by(existing, pod):
                self.recorder.event(pod, WARNING, "FailedBinding",
                                    f"PVC {ns}/{name} was not created for pod {ns}/"
                                    f"{pod.metadata.name} (pod is not owner)")
        return None
