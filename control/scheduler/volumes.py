"""The scheduler's view of storage: PersistentVolumeClaims, PersistentVolumes and
StorageClasses as its informers show them, with the scheduler's own assumptions on top
(Kubernetes' assume cache for volume binding).

Why assumptions: between the scheduling cycle that picks a static volume for a claim (or
a node for a claim to provision on) and the API write of that choice at PreBind, the next
pods' cycles must already see the volume as taken, or two pods would pick the same
volume. ``assume_volume`` / ``assume_claim`` store the changed copy; readers
(``volume``, ``claim``, ``volumes_of_class``) get it instead of the informer's object until
the informer delivers a newer version of the object (a higher resourceVersion: our write
arrived, or someone else's, which wins either way) or ``restore_*`` drops it (the pod
was unreserved).

``informer_claim`` / ``informer_volume`` read what the API last said, ignoring
assumptions: the PreBind wait checks those. ``wait_changed`` lets a binding cycle sleep
until the next informer change.

Concurrency contract: one event loop; the informer handlers and the scheduling cycle
call the synchronous methods between awaits, so readers see a consistent state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from control.api.pb import core_pb2, storage_pb2

PVC = core_pb2.PersistentVolumeClaim
PV = core_pb2.PersistentVolume
StorageClass = storage_pb2.StorageClass


def resource_version(obj: PVC | PV) -> int:
    try:
        return int(obj.metadata.resource_version or 0)
    except ValueError:
        return 0


def claim_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class VolumeStore:
    """See the module docstring."""

    def __init__(self) -> None:
        self._claims: dict[str, PVC] = {}
        self._volumes: dict[str, PV] = {}
        self._classes: dict[str, StorageClass] = {}
        self._assumed_claims: dict[str, PVC] = {}
        self._assumed_volumes: dict[str, PV] = {}
        self._changed = asyncio.Event()

    # -- informer side ---------------------------------------------------------------------

    def set_claim(self, pvc: PVC) -> None:
        key = claim_key(pvc.metadata.namespace, pvc.metadata.name)
        self._claims[key] = pvc
        assumed = self._assumed_claims.get(key)
        if assumed is not None and (resource_version(pvc) > resource_version(assumed)
                                    or assumed.metadata.uid != pvc.metadata.uid):
            del self._assumed_claims[key]
        self._notify()

    def delete_claim(self, pvc: PVC) -> None:
        key = claim_key(pvc.metadata.namespace, pvc.metadata.name)
        self._claims.pop(key, None)
        self._assumed_claims.pop(key, None)
        self._notify()

    def set_volume(self, pv: PV) -> None:
        name = pv.metadata.name
        self._volumes[name] = pv
        assumed = self._assumed_volumes.get(name)
        if assumed is not None and (resource_version(pv) > resource_version(assumed)
                                    or assumed.metadata.uid != pv.metadata.uid):
            del self._assumed_volumes[name]
        self._notify()

    def delete_volume(self, pv: PV) -> None:
        self._volumes.pop(pv.metadata.name, None)
        self._assumed_volumes.pop(pv.metadata.name, None)
        self._notify()

    def set_class(self, sc: StorageClass) -> None:
        self._classes[sc.metadata.name] = sc
        self._notify()

    def delete_class(self, sc: StorageClass) -> None:
        self._classes.pop(sc.metadata.name, None)
        self._notify()

    def _notify(self) -> None:
        # Wake every waiter, then start a fresh generation of waiters.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self) -> None:
        """Return at the next informer change (callers re-check their condition)."""
        await self._changed.wait()

    # -- readers ---------------------------------------------------------------------------

    def claim(self, namespace: str, name: str) -> PVC | None:
        key = claim_key(namespace, name)
        return self._assumed_claims.get(key) or self._claims.get(key)

    def volume(self, name: str) -> PV | None:
        return self._assumed_volumes.get(name) or self._volumes.get(name)

    def storage_class(self, name: str) -> StorageClass | None:
        return self._classes.get(name)

    def volumes_of_class(self, class_name: str) -> Iterator[PV]:
        for name, pv in self._volumes.items():
            pv = self._assumed_volumes.get(name, pv)
            if pv.spec.storage_class_name == class_name:
                yield pv

    def informer_claim(self, namespace: str, name: str) -> PVC | None:
        return self._claims.get(claim_key(namespace, name))

    def informer_volume(self, name: str) -> PV | None:
        return self._volumes.get(name)

    # -- assumptions -----------------------------------------------------------------------

    def assume_claim(self, pvc: PVC) -> None:
        self._assumed_claims[claim_key(pvc.metadata.namespace, pvc.metadata.name)] = pvc

    def assume_volume(self, pv: PV) -> None:
        self._assumed_volumes[pv.metadata.name] = pv

    def restore_claim(self, namespace: str, name: str) -> None:
        self._assumed_claims.pop(claim_key(namespace, name), None)

    def restore_volume(self, name: str) -> None:
        self._assumed_volumes.pop(name, None)

    def assumed_counts(self) -> tuple[int, int]:
        """(claims, volumes) currently assumed, for tests."""
        return len(self._assumed_claims), len(self._assumed_volumes)
