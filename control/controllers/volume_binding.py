"""The PersistentVolume binder (Kubernetes' PersistentVolumeController, binding and
reclaim): pairs claims with volumes and follows the volumes through their phases.

Keys are ``claim/<namespace>/<name>`` and ``volume/<name>``.

- A claim that names no StorageClass (the field absent) gets the default class once there
  is one (Kubernetes' retroactive default StorageClass assignment).
- A claim without ``spec.volumeName`` gets the best fitting volume
  (``control.api.volumes.best_volume``): the volume's claimRef is written first (the
  binding is decided there), then the claim's volumeName with the
  ``pv.kubernetes.io/bind-completed`` annotation, then both statuses Bound (the claim's
  with the volume's capacity and accessModes). A claim whose StorageClass binds
  WaitForFirstConsumer is bound only to a volume whose claimRef already names it (the
  scheduler's VolumeBinding writes that claimRef, or asks a provisioner for a volume by
  selecting a node). No fit: the claim stays Pending with a FailedBinding Event, a
  WaitForFirstConsumer Event while no node is selected, or an ExternalProvisioning Event
  while its class' provisioner is expected to create the volume.
- A claim naming a volume (pre-bound) is bound to it when the volume is free; a claim
  whose volume is gone, or bound to another claim after it was Bound, is Lost.
- A volume: no claimRef (or one by name only, waiting for its claim) -> Available; its
  claim there with the same uid -> Bound; its claim gone -> Released, then reclaimed:
  Retain keeps it Released, Delete deletes the volume (a finalizer such as the local
  provisioner's keeps it until its data is cleaned up), Recycle is refused (Failed).

Concurrency contract: runs under ``control.runtime.Controller`` (one key never reconciled
by two workers at once; a claim and its volume may be, so every write is a
compare-and-swap on the cached resourceVersion and a Conflict retries the key). Event
handlers are synchronous and only enqueue keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from control.api import errors, storageutil
from control.api import volumes as vbu
from control.api.pb import core_pb2, meta_pb2, storage_pb2
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, WARNING

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller")

NAME = "persistentvolume-binder"
PV = core_pb2.PersistentVolume
PVC = core_pb2.PersistentVolumeClaim
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
# a StorageClass of statically created volumes (Kubernetes' name for "nobody provisions")
NO_PROVISIONER = "kubernetes.io/no-provisioner"


class VolumeBindingController:
    """Binds claims to volumes and reclaims released volumes; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self.recorder = ctx.events.new_recorder("persistentvolume-controller")
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._claims = ctx.informers.informer(core_pb2.PersistentVolumeClaim)
        self._volumes = ctx.informers.informer(core_pb2.PersistentVolume)
        self._classes = ctx.informers.informer(storage_pb2.StorageClass)
        self._claims.add_event_handler(on_add=self._claim_changed,
                                       on_update=lambda _o, n: self._claim_changed(n),
                                       on_delete=self._claim_changed)
        self._classes.add_event_handler(on_add=self._class_changed,
                                        on_update=lambda _o, n: self._class_changed(n))
        self._volumes.add_event_handler(on_add=self._volume_changed,
                                        on_update=lambda _o, n: self._volume_changed(n),
                                        on_delete=self._volume_changed)

    def _class_changed(self, cls: storage_pb2.StorageClass) -> None:
        # a new default class is given to claims that name none; a class' claims re-check
        for claim in self._claims.indexer.list():
            if not claim.spec.volume_name and (
                    not claim.spec.HasField("storage_class_name")
                    or claim.spec.storage_class_name == cls.metadata.name):
                self.controller.enqueue(
                    f"claim/{claim.metadata.namespace}/{claim.metadata.name}")

    def _claim_changed(self, claim: PVC) -> None:
        self.controller.enqueue(f"claim/{claim.metadata.namespace}/{claim.metadata.name}")
        for pv in self._volumes.indexer.list():
            ref = pv.spec.claim_ref
            if ref.name == claim.metadata.name and ref.namespace == claim.metadata.namespace:
                self.controller.enqueue(f"volume/{pv.metadata.name}")

    def _volume_changed(self, pv: PV) -> None:
        self.controller.enqueue(f"volume/{pv.metadata.name}")
        ref = pv.spec.claim_ref
        if ref.name:
            self.controller.enqueue(f"claim/{ref.namespace}/{ref.name}")
        else:
            # a new free volume may fit a Pending claim, or be the one it names
            for claim in self._claims.indexer.list():
                if claim.status.phase in ("", "Pending") and claim.spec.volume_name in (
                        "", pv.metadata.name):
                    self.controller.enqueue(
                        f"claim/{claim.metadata.namespace}/{claim.metadata.name}")

    async def reconcile(self, key: str) -> Result | None:
        kind, _, rest = key.partition("/")
        if kind == "claim":
            claim = self._claims.indexer.get(rest)
            if claim is not None and not claim.metadata.HasField("deletion_timestamp"):
                await self._sync_claim(claim)
        elif kind == "volume":
            pv = self._volumes.indexer.get(rest)
            if pv is not None:
                await self._sync_volume(pv)
        return None

    # -- claims ----------------------------------------------------------------------------

    def _class(self, claim: PVC) -> storage_pb2.StorageClass | None:
        name = claim.spec.storage_class_name
        return self._classes.indexer.get(name) if name else None

    async def _sync_claim(self, claim: PVC) -> None:
        if not claim.spec.volume_name:
            if not claim.spec.HasField("storage_class_name"):
                default = storageutil.default_class(self._classes.indexer.list())
                if default is not None:
                    await self._assign_class(claim, default.metadata.name)
                    return
            volumes = self._volumes.indexer.list()
            cls = self._class(claim)
            if cls is not None and cls.volume_binding_mode == WAIT_FOR_FIRST_CONSUMER:
                # The scheduler picks the volume (by writing its claimRef) once it knows
                # the node of the claim's first pod: never bind such a claim to just any
                # volume that fits.
                volumes = [v for v in volumes if vbu.bound_to(v, claim)]
            pv = vbu.best_volume(claim, volumes)
            if pv is None:
                await self._unbound(claim)
                return
            await self._bind(claim, pv)
            return
        pv = self._volumes.indexer.get(claim.spec.volume_name)
        if pv is None:
            if claim.status.phase == "Bound":
                await self._claim_phase(claim, "Lost")
                self.recorder.event(claim, WARNING, "ClaimLost",
                                    "Bound claim has lost reference to PersistentVolume. "
                                    "Data on the volume is lost!")
            return
        if not pv.spec.claim_ref.name:
            if vbu.volume_fits(pv, claim):
                await self._bind(claim, pv)
            else:
                self.recorder.event(claim, WARNING, "FailedBinding",
                                    f"volume {pv.metadata.name} does not fit the claim")
            return
        if vbu.bound_to(pv, claim):
            await self._bind(claim, pv)
        elif claim.status.phase == "Bound":
            await self._claim_phase(claim, "Lost")
            self.recorder.event(claim, WARNING, "ClaimMisbound",
                                "Two claims are bound to the same volume, this one is bound "
                                "incorrectly")
        else:
            self.recorder.event(claim, WARNING, "FailedBinding",
                                f"volume {pv.metadata.name} already bound to a different claim")

    async def _assign_class(self, claim: PVC, name: str) -> None:
        """Retroactive default StorageClass: an unbound claim that names no class gets the
        default one once there is one."""
        def mutate(c: PVC) -> bool:
            if c.spec.HasField("storage_class_name") or c.spec.volume_name:
                return False
            c.spec.storage_class_name = name
            return True

        try:
            await guaranteed_update(self._client, PVC, claim.metadata.namespace,
                                    claim.metadata.name, mutate, current=claim)
        except errors.NotFound:
            return

    async def _unbound(self, claim: PVC) -> None:
        cls = self._class(claim)
        provisioner = cls.provisioner if cls is not None else ""
        external = provisioner not in ("", NO_PROVISIONER)
        if cls is not None and cls.volume_binding_mode == WAIT_FOR_FIRST_CONSUMER and not (
                external and claim.metadata.annotations.get(storageutil.SELECTED_NODE)):
            self.recorder.event(claim, NORMAL, "WaitForFirstConsumer",
                                "waiting for first consumer to be created before binding")
        elif external:
            self.recorder.event(claim, NORMAL, "ExternalProvisioning",
                                f"Waiting for a volume to be created either by the external "
                                f"provisioner '{provisioner}' or manually by the system "
                                "administrator. If volume creation is delayed, please verify "
                                "that the provisioner is running and correctly registered.")
        elif claim.spec.storage_class_name and cls is None:
            self.recorder.event(claim, WARNING, "ProvisioningFailed",
                                f'storageclass.storage.k8s.io "{claim.spec.storage_class_name}"'
                                " not found")
        else:
            self.recorder.event(claim, NORMAL, "FailedBinding",
                                "no persistent volumes available for this claim and no "
                                "storage class is set" if not claim.spec.storage_class_name
                                else "no persistent volumes available for this claim")
        if claim.status.phase != "Pending":
            await self._claim_phase(claim, "Pending")

    async def _bind(self, claim: PVC, pv: PV) -> None:
        """claimRef on the volume, volumeName on the claim, then both statuses."""
        m = claim.metadata
        ref = pv.spec.claim_ref
        if not (ref.name == m.name and ref.namespace == m.namespace and ref.uid == m.uid):
            new = PV()
            new.CopyFrom(pv)
            new.spec.claim_ref.CopyFrom(meta_pb2.ObjectReference(
                kind="PersistentVolumeClaim", api_version="v1", namespace=m.namespace,
                name=m.name, uid=m.uid, resource_version=m.resource_version))
            if not ref.name:
                new.metadata.annotations[BOUND_BY_CONTROLLER] = "yes"
            pv = await self._client.update(new)
        if pv.status.phase != "Bound":
            new = PV()
            new.CopyFrom(pv)
            new.status.phase = "Bound"
            new.status.message = ""
            pv = await self._client.update_status(new)
        if claim.spec.volume_name != pv.metadata.name or BIND_COMPLETED not in m.annotations:
            new_claim = PVC()
            new_claim.CopyFrom(claim)
            new_claim.spec.volume_name = pv.metadata.name
            new_claim.metadata.annotations[BIND_COMPLETED] = "yes"
            if not claim.spec.volume_name:
                new_claim.metadata.annotations[BOUND_BY_CONTROLLER] = "yes"
            claim = await self._client.update(new_claim)
        if claim.status.phase != "Bound":
            new_claim = PVC()
            new_claim.CopyFrom(claim)
            new_claim.status.phase = "Bound"
            del new_claim.status.access_modes[:]
            new_claim.status.access_modes.extend(pv.spec.access_modes)
            new_claim.status.capacity.clear()
            for k, v in pv.spec.capacity.items():
                new_claim.status.capacity[k].CopyFrom(v)
            await self._client.update_status(new_claim)
            self.recorder.event(claim, NORMAL, "Bound",
                                f"bound to PersistentVolume {pv.metadata.name}")

    async def _claim_phase(self, claim: PVC, phase: str) -> None:
        new = PVC()
        new.CopyFrom(claim)
        new.status.phase = phase
        try:
            await self._client.update_status(new)
        except errors.NotFound:
            return

    # -- volumes ---------------------------------------------------------------------------

    async def _sync_volume(self, pv: PV) -> None:
        ref = pv.spec.claim_ref
        if not ref.name or not ref.uid:
            await self._volume_phase(pv, "Available")
            return
        claim = self._claims.indexer.get(f"{ref.namespace}/{ref.name}")
        if claim is not None and claim.metadata.uid == ref.uid:
            if claim.spec.volume_name == pv.metadata.name or not claim.spec.volume_name:
                await self._volume_phase(pv, "Bound")
            return
        if claim is None:
            # the cache may be behind: ask the server before letting the data go
            try:
                fresh = await self._client.get(PVC, ref.name, ref.namespace)
                if fresh.metadata.uid == ref.uid:
                    return
            except errors.NotFound:
                pass
        if pv.status.phase in ("Bound", "Available", "Pending", ""):
            await self._volume_phase(pv, "Released")
            return
        if pv.status.phase != "Released":
            return
        policy = pv.spec.persistent_volume_reclaim_policy or "Retain"
        if policy == "Delete":
            if not pv.metadata.HasField("deletion_timestamp"):
                try:
                    await self._client.delete(PV, pv.metadata.name, uid=pv.metadata.uid)
                except errors.NotFound:
                    return
                self.recorder.event(pv, NORMAL, "VolumeDelete",
                                    f"deleted released volume {pv.metadata.name}")
        elif policy == "Recycle":
            await self._volume_phase(pv, "Failed", "Recycle is not supported; use Delete "
                                     "or Retain")
            self.recorder.event(pv, WARNING, "VolumeFailedRecycle",
                                "Recycle is not supported")

    async def _volume_phase(self, pv: PV, phase: str, message: str = "") -> None:
        if pv.status.phase == phase and pv.status.message == message:
            return
        new = PV()
        new.CopyFrom(pv)
        new.status.phase = phase
        new.status.message = message
        try:
            await self._client.update_status(new)
        except errors.NotFound:
            return
