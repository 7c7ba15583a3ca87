"""Matching PersistentVolumes to claims, shared by the PV binder (controllers) and the
scheduler's VolumeBinding plugin: no I/O.

- ``volume_fits``: whether a PersistentVolume can satisfy a claim (Kubernetes'
  FindMatchingVolume checks): same storageClassName, the claim's accessModes all offered,
  capacity at least the request, the same volumeMode (Filesystem by default), the claim's
  selector matching the volume's labels, not being deleted, and free or pre-bound to this
  claim (claimRef by namespace/name, with no uid or this claim's uid).
- ``best_volume``: the volume pre-bound to the claim if there is one, else the smallest
  that fits (ties by name, so the choice is stable).
- ``bound_to``: whether a volume's claimRef names this very claim.

Concurrency contract: plain functions; safe anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from control.api import labels
from control.api.pb import core_pb2
from control.api.quantity import QuantityError, parse_quantity

PV = core_pb2.PersistentVolume
PVC = core_pb2.PersistentVolumeClaim
FILESYSTEM = "Filesystem"


def storage_of(capacity: object) -> Fraction:
    """``capacity["storage"]`` of a spec or status map; 0 when absent or malformed."""
    q = capacity.get("storage") if hasattr(capacity, "get") else None  # type: ignore[attr-defined]
    if q is None or not q.string:
        return Fraction(0)
    try:
        return parse_quantity(q.string)
    except QuantityError:
        return Fraction(0)


def requested(claim: PVC) -> Fraction:
    return storage_of(claim.spec.resources.requests)


def bound_to(pv: PV, claim: PVC) -> bool:
    """The volume's claimRef names ``claim`` (its uid, when the ref carries one)."""
    ref = pv.spec.claim_ref
    if not pv.spec.HasField("claim_ref") or not ref.name:
        return False
    return bool(ref.name == claim.metadata.name and ref.namespace == claim.metadata.namespace
                and (not ref.uid or ref.uid == claim.metadata.uid))


def volume_fits(pv: PV, claim: PVC) -> bool:
    if pv.metadata.HasField("deletion_timestamp"):
        return False
    if pv.spec.HasField("claim_ref") and pv.spec.claim_ref.name and not bound_to(pv, claim):
        return False
    if pv.spec.storage_class_name != claim.spec.storage_class_name:
        return False
    if not set(claim.spec.access_modes) <= set(pv.spec.access_modes):
        return False
    if (pv.spec.volume_mode or FILESYSTEM) != (claim.spec.volume_mode or FILESYSTEM):
        return False
    if storage_of(pv.spec.capacity) < requested(claim):
        return False
    if claim.spec.HasField("selector"):
        if not labels.from_label_selector(claim.spec.selector).matches(pv.metadata.labels):
            return False
    return True


def best_volume(claim: PVC, volumes: Iterable[PV]) -> PV | None:
    fits = [v for v in volumes if volume_fits(v, claim)]
    pre = [v for v in fits if bound_to(v, claim)]
    if pre:
        return pre[0]
    free = [v for v in fits if not (v.spec.HasField("claim_ref") and v.spec.claim_ref.name)]
    if not free:
        return None
    return min(free, key=lambda v: (storage_of(v.spec.capacity), v.metadata.name))
