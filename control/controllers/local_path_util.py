"""Pure logic of the local-path provisioner: which claims it serves, what it refuses, and the
PersistentVolume it creates (k3s' local-path-provisioner's volume, as Flotilla lays it out).

- ``refusal``: why a claim cannot have a local-path volume ("" when it can): only
  ReadWriteOnce and ReadWriteOncePod (a directory on one machine cannot be shared between
  machines: ReadWriteMany and ReadOnlyMany are refused, as local-path does), Filesystem
  volume mode, no data source, a storage request, StorageClass parameters it knows.
- ``directory_name``: ``pvc-<uid>_<namespace>_<name>``, local-path's folder name.
- ``build_volume``: the PersistentVolume for a claim on a node: named ``pvc-<claim uid>`` (so
  a second attempt finds the first one's volume), a ``hostPath`` (type DirectoryOrCreate;
  ``local`` with the class parameter ``volumeType: local``) under the node's volume
  directory, required node affinity to the node's hostname, capacity = the request, the
  claim's access modes, the class' reclaim policy (Delete by default), pre-bound to the
  claim (claimRef with its uid: the binder completes the binding) and carrying the cleanup
  finalizer that the node's agent removes once the directory is dealt with.

Concurrency contract: plain functions; safe anywhere.
"""

from __future__ import annotations

import os

from control.api import storageutil as su
from control.api.pb import core_pb2, meta_pb2, storage_pb2

PV = core_pb2.PersistentVolume
PVC = core_pb2.PersistentVolumeClaim
SUPPORTED_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteOncePod")
VOLUME_TYPES = ("hostPath", "local")
# StorageClass parameters this provisioner reads
KNOWN_PARAMETERS = frozenset({"volumeType"})


def volume_name(claim: PVC) -> str:
    return f"pvc-{claim.metadata.uid}"


def directory_name(claim: PVC) -> str:
    return f"{volume_name(claim)}_{claim.metadata.namespace}_{claim.metadata.name}"


def refusal(claim: PVC, cls: storage_pb2.StorageClass) -> str:
    """Why this claim cannot be provisioned ("" when it can)."""
    bad = [m for m in claim.spec.access_modes if m not in SUPPORTED_ACCESS_MODES]
    if bad:
        return (f"access mode {', '.join(bad)} is not supported: local-path volumes are a "
                f"directory on one node and support only {' and '.join(SUPPORTED_ACCESS_MODES)}")
    if claim.spec.HasField("volume_mode") and claim.spec.volume_mode not in ("", "Filesystem"):
        return f"volumeMode {claim.spec.volume_mode} is not supported: only Filesystem"
    if claim.spec.data_source.name or claim.spec.data_source_ref.name:
        return "a dataSource is not supported: local-path volumes start empty"
    if "storage" not in claim.spec.resources.requests:
        return "the claim requests no storage (spec.resources.requests.storage)"
    unknown = sorted(set(cls.parameters) - KNOWN_PARAMETERS)
    if unknown:
        return (f"StorageClass {cls.metadata.name!r}: unknown parameter(s) "
                f"{', '.join(unknown)} (known: {', '.join(sorted(KNOWN_PARAMETERS))})")
    vtype = cls.parameters.get("volumeType", "hostPath")
    if vtype not in VOLUME_TYPES:
        return (f"StorageClass {cls.metadata.name!r}: volumeType {vtype!r} is not one of "
                f"{', '.join(VOLUME_TYPES)}")
    return ""


def build_volume(claim: PVC, cls: storage_pb2.StorageClass, node: str,
                 volume_dir: str) -> PV:
    """The volume for ``claim`` on ``node`` whose agent keeps volumes under ``volume_dir``."""
    path = os.path.join(volume_dir, directory_name(claim))
    pv = PV(api_version="v1", kind="PersistentVolume")
    pv.metadata.name = volume_name(claim)
    pv.metadata.annotations[su.PROVISIONED_BY] = cls.provisioner or su.PROVISIONER
    pv.metadata.finalizers.append(su.CLEANUP_FINALIZER)
    spec = pv.spec
    spec.capacity["storage"].CopyFrom(claim.spec.resources.requests["storage"])
    spec.access_modes.extend(claim.spec.access_modes or ["ReadWriteOnce"])
    spec.persistent_volume_reclaim_policy = (cls.reclaim_policy
                                             if cls.HasField("reclaim_policy") else "Delete")
    spec.storage_class_name = cls.metadata.name
    spec.volume_mode = "Filesystem"
    m = claim.metadata
    spec.claim_ref.CopyFrom(meta_pb2.ObjectReference(
        kind="PersistentVolumeClaim", api_version="v1", namespace=m.namespace, name=m.name,
        uid=m.uid, resource_version=m.resource_version))
    if cls.parameters.get("volumeType", "hostPath") == "local":
        spec.local.path = path
    else:
        spec.host_path.path = path
        spec.host_path.type = "DirectoryOrCreate"
    term = spec.node_affinity.required.node_selector_terms.add()
    term.match_expressions.add(key=su.HOSTNAME_LABEL, operator="In", values=[node])
    return pv
