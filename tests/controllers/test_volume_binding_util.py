"""Table tests of the PersistentVolume binder's matching."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert
from control.api import volumes as vbu
from control.api.pb import core_pb2


def pv(name: str = "pv", size: str = "1Gi", *, modes: tuple[str, ...] = ("ReadWriteOnce",),
       cls: str = "", claim: dict[str, str] | None = None, **extra: Any) -> core_pb2.PersistentVolume:
    spec: dict[str, Any] = {"capacity": {"storage": size}, "accessModes": list(modes),
                            "storageClassName": cls, **extra.pop("spec", {})}
    if claim is not None:
        spec["claimRef"] = claim
    out: core_pb2.PersistentVolume = convert.from_dict(
        {"metadata": {"name": name, "labels": extra.pop("labels", {})}, "spec": spec},
        core_pb2.PersistentVolume())
    return out


def pvc(size: str = "1Gi", *, modes: tuple[str, ...] = ("ReadWriteOnce",), cls: str = "",
        **spec: Any) -> core_pb2.PersistentVolumeClaim:
    out: core_pb2.PersistentVolumeClaim = convert.from_dict(
        {"metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
         "spec": {"resources": {"requests": {"storage": size}}, "accessModes": list(modes),
                  "storageClassName": cls, **spec}},
        core_pb2.PersistentVolumeClaim())
    return out


@pytest.mark.parametrize(("name", "volume", "claim", "fits"), [
    ("same size", pv(), pvc(), True),
    ("bigger volume", pv(size="2Gi"), pvc("1500Mi"), True),
    ("too small", pv(size="1Gi"), pvc("2Gi"), False),
    ("access mode missing", pv(), pvc(modes=("ReadWriteMany",)), False),
    ("subset of modes", pv(modes=("ReadWriteOnce", "ReadOnlyMany")), pvc(), True),
    ("other class", pv(cls="fast"), pvc(cls="slow"), False),
    ("class vs none", pv(cls="fast"), pvc(), False),
    ("block vs filesystem", pv(spec={"volumeMode": "Block"}), pvc(), False),
    ("block both", pv(spec={"volumeMode": "Block"}), pvc(volumeMode="Block"), True),
    ("selector matches", pv(labels={"tier": "db"}),
     pvc(selector={"matchLabels": {"tier": "db"}}), True),
    ("selector does not", pv(labels={"tier": "web"}),
     pvc(selector={"matchLabels": {"tier": "db"}}), False),
    ("pre-bound to it by name", pv(claim={"name": "c", "namespace": "ns"}), pvc(), True),
    ("pre-bound to it by uid", pv(claim={"name": "c", "namespace": "ns", "uid": "u1"}), pvc(),
     True),
    ("bound to an older namesake", pv(claim={"name": "c", "namespace": "ns", "uid": "u0"}),
     pvc(), False),
    ("bound to another claim", pv(claim={"name": "d", "namespace": "ns"}), pvc(), False),
])
def test_volume_fits(name: str, volume: Any, claim: Any, fits: bool) -> None:
    assert vbu.volume_fits(volume, claim) is fits, name


def test_best_volume_prefers_pre_bound_then_smallest() -> None:
    vols = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "1Mi")]
    assert vbu.best_volume(pvc("1Gi"), vols).metadata.name == "small"  # type: ignore[union-attr]
    vols.append(pv("mine", "50Gi", claim={"name": "c", "namespace": "ns"}))
    assert vbu.best_volume(pvc("1Gi"), vols).metadata.name == "mine"  # type: ignore[union-attr]
    assert vbu.best_volume(pvc("100Gi"), vols) is None
