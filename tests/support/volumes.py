"""PersistentVolumes and claims for the storage controllers' tests, and their phases."""

from __future__ import annotations

from typing import Any

from control.api import convert, errors
from control.api.pb import core_pb2


def volume(name: str, size: str, policy: str = "Retain", **spec: Any) -> core_pb2.PersistentVolume:
    out: core_pb2.PersistentVolume = convert.from_dict(
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
         "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": policy,
                  "hostPath": {"path": f"/tmp/flotilla-test-{name}"}, **spec}},
        core_pb2.PersistentVolume())
    return out


def claim(name: str, size: str, **spec: Any) -> core_pb2.PersistentVolumeClaim:
    out: core_pb2.PersistentVolumeClaim = convert.from_dict(
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": name, "namespace": "default"},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                  "resources": {"requests": {"storage": size}}, **spec}},
        core_pb2.PersistentVolumeClaim())
    return out


async def pv_phase(c: Any, name: str) -> str:
    try:
        return str((await c.get(core_pb2.PersistentVolume, name)).status.phase)
    except errors.NotFound:
        return "<gone>"


async def is_(got: Any, want: Any) -> bool:
    return bool(await got == want)

