"""The local-path provisioner's pure logic: refusals and the volume it builds."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert, storageutil
from control.api.pb import core_pb2, storage_pb2
from control.controllers import local_path_util as lpu


def _claim(**spec: Any) -> core_pb2.PersistentVolumeClaim:
    body = {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
            "resources": {"requests": {"storage": "2Gi"}}, **spec}
    out: core_pb2.PersistentVolumeClaim = convert.from_dict(
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "data", "namespace": "ns1", "uid": "u-1",
                      "resourceVersion": "7"},
         "spec": {k: v for k, v in body.items() if v is not None}},
        core_pb2.PersistentVolumeClaim())
    return out


def _class(**fields: Any) -> storage_pb2.StorageClass:
    out: storage_pb2.StorageClass = convert.from_dict(
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "local-path"}, "provisioner": storageutil.PROVISIONER,
         "volumeBindingMode": "WaitForFirstConsumer", **fields}, storage_pb2.StorageClass())
    return out


@pytest.mark.parametrize("spec,fields,problem", [
    ({}, {}, ""),
    ({"accessModes": ["ReadWriteOncePod"]}, {}, ""),
    ({"accessModes": ["ReadWriteOnce", "ReadWriteOncePod"]}, {}, ""),
    ({"accessModes": ["ReadWriteMany"]}, {}, "access mode ReadWriteMany is not supported"),
    ({"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}, {},
     "access mode ReadOnlyMany is not supported"),
    ({"volumeMode": "Block"}, {}, "volumeMode Block is not supported"),
    ({"volumeMode": "Filesystem"}, {}, ""),
    ({"dataSource": {"kind": "PersistentVolumeClaim", "name": "src"}}, {},
     "dataSource is not supported"),
    ({"resources": {}}, {}, "requests no storage"),
    ({}, {"parameters": {"nodePath": "/x"}}, "unknown parameter(s) nodePath"),
    ({}, {"parameters": {"volumeType": "nfs"}}, "volumeType 'nfs' is not one of"),
    ({}, {"parameters": {"volumeType": "local"}}, ""),
])
def test_refusal(spec: dict[str, Any], fields: dict[str, Any], problem: str) -> None:
    got = lpu.refusal(_claim(**spec), _class(**fields))
    if problem:
        assert problem in got
    else:
        assert got == ""


def test_build_volume_host_path() -> None:
    pv = lpu.build_volume(_claim(), _class(), "n1", "/var/storage")
    assert pv.metadata.name == "pvc-u-1"
    assert pv.spec.host_path.path == "/var/storage/pvc-u-1_ns1_data"
    assert pv.spec.host_path.type == "DirectoryOrCreate"
    assert not pv.spec.HasField("local")
    assert pv.spec.capacity["storage"].string == "2Gi"
    assert list(pv.spec.access_modes) == ["ReadWriteOnce"]
    assert pv.spec.persistent_volume_reclaim_policy == "Delete"
    assert pv.spec.storage_class_name == "local-path"
    assert pv.spec.volume_mode == "Filesystem"
    ref = pv.spec.claim_ref
    assert (ref.namespace, ref.name, ref.uid, ref.kind) == (
        "ns1", "data", "u-1", "PersistentVolumeClaim")
    assert storageutil.pinned_node(pv) == "n1"
    assert list(pv.metadata.finalizers) == [storageutil.CLEANUP_FINALIZER]
    assert pv.metadata.annotations[storageutil.PROVISIONED_BY] == storageutil.PROVISIONER


def test_build_volume_local_and_retain() -> None:
    pv = lpu.build_volume(_claim(accessModes=["ReadWriteOncePod"]),
                          _class(reclaimPolicy="Retain", parameters={"volumeType": "local"}),
                          "n2", "/d")
    assert pv.spec.local.path == "/d/pvc-u-1_ns1_data" and not pv.spec.HasField("host_path")
    assert pv.spec.persistent_volume_reclaim_policy == "Retain"
    assert list(pv.spec.access_modes) == ["ReadWriteOncePod"]
    assert storageutil.pinned_node(pv) == "n2"
