"""Validation of a PodSpec's volumes: unique DNS-label names, exactly one source per
volume, and each source's own required fields (paths, keys, modes, projections).

Owns :func:`validate_volumes`, which also returns the names defined, for checking the
containers' volume mounts, and :func:`validate_in_tree_source` for the in-tree network and
cloud disk sources (cinder, rbd, azureDisk...) that PersistentVolumes share. Those are
accepted as Kubernetes' API accepts them even though no agent mounts them: the pod is
refused by the node (a FailedMount Event), not by the API. Rules and messages follow
Kubernetes' core validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.message import Message

from control.api import names
from control.api.pb import core_pb2
from control.apiserver.validation_container import (
    PULL_POLICIES,
    VOLUME_FIELD_PATHS,
    relative_path,
    validate_field_ref,
    validate_resource_field_ref,
)
from control.apiserver.validation_util import (
    Errors,
    child,
    duplicate,
    enum,
    forbidden,
    index,
    invalid,
    messages,
    not_supported,
    required,
)

__all__ = ["IN_TREE_SOURCES", "validate_in_tree_source", "validate_volumes"]

HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
MAX_FILE_MODE = 0o777

# Every field but the name is a source, read from the descriptor so a new one is covered.
_VOLUME_SOURCES: tuple[str, ...] = tuple(
    f.name for f in core_pb2.Volume.DESCRIPTOR.fields if f.name != "name"
)
# json names of the sources, for messages ("downwardAPI", not "downward_api").
_JSON_NAME = {f.name: f.json_name for f in core_pb2.Volume.DESCRIPTOR.fields}

# In-tree source -> its fields that must be set (Kubernetes' validateXVolumeSource); the
# field names are the same in the Volume and the PersistentVolume variants.
_IN_TREE_REQUIRED: dict[str, tuple[str, ...]] = {
    "aws_elastic_block_store": ("volume_id",),
    "gce_persistent_disk": ("pd_name",),
    "iscsi": ("target_portal", "iqn"),
    "cinder": ("volume_id",),
    "azure_disk": ("disk_name", "disk_uri"),
    "azure_file": ("secret_name", "share_name"),
    "cephfs": ("monitors",),
    "rbd": ("monitors", "image"),
    "glusterfs": ("endpoints", "path"),
    "quobyte": ("registry", "volume"),
    "portworx_volume": ("volume_id",),
    "scale_io": ("gateway", "system", "volume_name", "secret_ref"),
    "storageos": ("volume_name",),
    "vsphere_volume": ("volume_path",),
    "photon_persistent_disk": ("pd_id",),
    "flex_volume": ("driver",),
    "git_repo": ("repository",),
    "flocker": (),
    "fc": (),
}
IN_TREE_SOURCES = frozenset(_IN_TREE_REQUIRED)
AZURE_CACHING_MODES = ("None", "ReadOnly", "ReadWrite")
AZURE_DISK_KINDS = ("Dedicated", "Shared", "Managed")


def _unset(msg: Message, name: str) -> bool:
    f = msg.DESCRIPTOR.fields_by_name[name]
    if f.is_repeated:
        return not getattr(msg, name)
    if f.message_type is not None:
        return not msg.HasField(name)
    return not getattr(msg, name)


def validate_in_tree_source(src: Message, source: str, path: str) -> Errors:
    """The required fields and enums of in-tree source ``source`` (``src``) at ``path``."""
    fields = src.DESCRIPTOR.fields_by_name
    errs: Errors = [required(child(path, fields[n].json_name), "")
                    for n in _IN_TREE_REQUIRED.get(source, ()) if _unset(src, n)]
    if isinstance(src, core_pb2.FlockerVolumeSource):
        name, uuid = src.dataset_name, src.dataset_uuid
        if bool(name) == bool(uuid):
            errs.append(required(path, "one and only one of datasetName and datasetUUID "
                                       "must be specified"))
        if "/" in name:
            errs.append(invalid(child(path, "datasetName"), name, "must not contain '/'"))
    elif isinstance(src, core_pb2.FCVolumeSource):
        wwns, wwids = list(src.target_wwns), list(src.wwids)
        if not wwns and not wwids:
            errs.append(required(child(path, "targetWWNs"),
                                 "must specify either targetWWNs or wwids, but not both"))
        elif wwns and wwids:
            errs.append(invalid(child(path, "targetWWNs"), wwns,
                                "targetWWNs and wwids can not be specified simultaneously"))
        elif wwns and not src.HasField("lun"):
            errs.append(required(child(path, "lun"), "lun is required if targetWWNs is specified"))
    elif isinstance(src, core_pb2.AzureDiskVolumeSource):
        if src.HasField("caching_mode"):
            errs.extend(enum(child(path, "cachingMode"), src.caching_mode,
                             AZURE_CACHING_MODES))
        if src.HasField("kind"):
            errs.extend(enum(child(path, "kind"), src.kind, AZURE_DISK_KINDS))
    elif isinstance(src, core_pb2.GitRepoVolumeSource) and src.directory:
        errs.extend(relative_path(child(path, "directory"), src.directory))
    return errs


# ---------------------------------------------------------------------------------------
# Volumes


def _validate_file_mode(path: str, mode: int) -> Errors:
    if 0 <= mode <= MAX_FILE_MODE:
        return []
    return [invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")]


def _validate_key_to_paths(items: Iterable[core_pb2.KeyToPath], path: str) -> Errors:
    errs: Errors = []
    for i, item in enumerate(items):
        p = index(path, i)
        if not item.key:
            errs.append(required(child(p, "key"), ""))
        if not item.path:
            errs.append(required(child(p, "path"), ""))
        else:
            errs.extend(relative_path(child(p, "path"), item.path))
        if item.HasField("mode"):
            errs.extend(_validate_file_mode(child(p, "mode"), item.mode))
    return errs


def _validate_downward_files(files: Iterable[core_pb2.DownwardAPIVolumeFile], path: str) -> Errors:
    errs: Errors = []
    for i, f in enumerate(files):
        p = index(path, i)
        if not f.path:
            errs.append(required(child(p, "path"), ""))
        else:
            errs.extend(relative_path(child(p, "path"), f.path))
        has_field = f.HasField("field_ref")
        has_res = f.HasField("resource_field_ref")
        if has_field and has_res:
            errs.append(
                invalid(
                    p,
                    "resource",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                )
            )
        elif not has_field and not has_res:
            errs.append(required(p, "one of fieldRef and resourceFieldRef is required"))
        if has_field:
            errs.extend(validate_field_ref(f.field_ref, child(p, "fieldRef"), VOLUME_FIELD_PATHS))
        if has_res:
            errs.extend(
                validate_resource_field_ref(f.resource_field_ref, child(p, "resourceFieldRef"))
            )
        if f.HasField("mode"):
            errs.extend(_validate_file_mode(child(p, "mode"), f.mode))
    return errs


def _validate_volume_source(v: core_pb2.Volume, source: str, path: str) -> Errors:
    errs: Errors = []
    if source == "host_path":
        if not v.host_path.path:
            errs.append(required(child(path, "path"), ""))
        if v.host_path.HasField("type"):
            errs.extend(
                enum(child(path, "type"), v.host_path.type, HOST_PATH_TYPES, allow_empty=True)
            )
    elif source == "empty_dir":
        medium = v.empty_dir.medium
        if medium not in ("", "Memory") and not medium.startswith("HugePages"):
            errs.append(not_supported(child(path, "medium"), medium, ("", "Memory", "HugePages")))
    elif source == "secret":
        if not v.secret.secret_name:
            errs.append(required(child(path, "secretName"), ""))
        errs.extend(_validate_key_to_paths(v.secret.items, child(path, "items")))
        if v.secret.HasField("default_mode"):
            errs.extend(_validate_file_mode(child(path, "defaultMode"), v.secret.default_mode))
    elif source == "config_map":
        if not v.config_map.name:
            errs.append(required(child(path, "name"), ""))
        errs.extend(_validate_key_to_paths(v.config_map.items, child(path, "items")))
        if v.config_map.HasField("default_mode"):
            errs.extend(_validate_file_mode(child(path, "defaultMode"), v.config_map.default_mode))
    elif source == "persistent_volume_claim":
        if not v.persistent_volume_claim.claim_name:
            errs.append(required(child(path, "claimName"), ""))
    elif source == "nfs":
        if not v.nfs.server:
            errs.append(required(child(path, "server"), ""))
        if not v.nfs.path:
            errs.append(required(child(path, "path"), ""))
        elif not v.nfs.path.startswith("/"):
            errs.append(invalid(child(path, "path"), v.nfs.path, "must be an absolute path"))
    elif source == "downward_api":
        errs.extend(_validate_downward_files(v.downward_api.items, child(path, "items")))
        if v.downward_api.HasField("default_mode"):
            errs.extend(
                _validate_file_mode(child(path, "defaultMode"), v.downward_api.default_mode)
            )
    elif source == "projected":
        errs.extend(_validate_projected(v.projected, path))
    elif source == "csi":
        if not v.csi.driver:
            errs.append(required(child(path, "driver"), ""))
    elif source == "image":
        if not v.image.reference:
            errs.append(required(child(path, "reference"), ""))
        errs.extend(
            enum(child(path, "pullPolicy"), v.image.pull_policy, PULL_POLICIES, allow_empty=True)
        )
    elif source == "ephemeral":
        if not v.ephemeral.HasField("volume_claim_template"):
            errs.append(required(child(path, "volumeClaimTemplate"), ""))
    elif source in IN_TREE_SOURCES:
        errs.extend(validate_in_tree_source(getattr(v, source), source, path))
    return errs


def _validate_projected(src: core_pb2.ProjectedVolumeSource, path: str) -> Errors:
    errs: Errors = []
    if src.HasField("default_mode"):
        errs.extend(_validate_file_mode(child(path, "defaultMode"), src.default_mode))
    for i, proj in enumerate(src.sources):
        p = index(child(path, "sources"), i)
        present = [f.json_name for f, _ in proj.ListFields()]
        if not present:
            errs.append(required(p, "must specify exactly 1 projection type"))
        elif len(present) > 1:
            errs.append(
                forbidden(child(p, present[1]), "may not specify more than 1 projection type")
            )
        if proj.HasField("secret"):
            errs.extend(_validate_key_to_paths(proj.secret.items, child(p, "secret.items")))
        if proj.HasField("config_map"):
            errs.extend(_validate_key_to_paths(proj.config_map.items, child(p, "configMap.items")))
        if proj.HasField("downward_api"):
            errs.extend(
                _validate_downward_files(proj.downward_api.items, child(p, "downwardAPI.items"))
            )
        if proj.HasField("service_account_token"):
            sat = proj.service_account_token
            sp = child(p, "serviceAccountToken")
            if not sat.path:
                errs.append(required(child(sp, "path"), ""))
            if sat.HasField("expiration_seconds") and sat.expiration_seconds < 600:
                errs.append(
                    invalid(
                        child(sp, "expirationSeconds"),
                        sat.expiration_seconds,
                        "may not specify a duration less than 10 minutes",
                    )
                )
    return errs


def validate_volumes(volumes: Sequence[core_pb2.Volume], path: str) -> tuple[set[str], Errors]:
    errs: Errors = []
    seen: set[str] = set()
    for i, v in enumerate(volumes):
        p = index(path, i)
        if not v.name:
            errs.append(required(child(p, "name"), ""))
        else:
            msgs = names.is_dns1123_label(v.name)
            if msgs:
                errs.extend(messages(child(p, "name"), v.name, msgs))
            elif v.name in seen:
                errs.append(duplicate(child(p, "name"), v.name))
            seen.add(v.name)
        present = [s for s in _VOLUME_SOURCES if v.HasField(s)]
        if not present:
            errs.append(required(p, "must specify a volume type"))
        for s in present[1:]:
            errs.append(
                forbidden(child(p, _JSON_NAME[s]), "may not specify more than 1 volume type")
            )
        for s in present[:1]:
            errs.extend(_validate_volume_source(v, s, child(p, _JSON_NAME[s])))
    return seen, errs
