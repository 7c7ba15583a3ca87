"""The kinds registry: every API kind Flotilla serves, with its names and message class.

One :class:`KindInfo` per kind maps between the names a kind goes by — ``kind``
("Deployment"), ``apiVersion`` ("apps/v1"), the resource (plural, "deployments") used on the
wire by ``api.proto``, singular and kubectl's short names — and its generated protobuf
message class. Lookups: :func:`by_resource`, :func:`by_kind`, :func:`by_message`, and
:func:`resolve` for the CLI's forgiving lookup. Pure module: no I/O.

The registry is lazy: a kind names its message as ``"module.Message"`` under
``control.api.pb``, and the generated module is imported the first time
:attr:`KindInfo.message` is read. So a process that only looks names up (``flotilla get
pods`` resolving "po") loads the one message module it decodes, and one that only prints
its version loads none, nor protobuf itself. Every generated module shares the proto
package :data:`PROTO_PACKAGE`, so :func:`by_message` maps a message to its kind by full
name without importing anything. Module imports are atomic under the import lock, so
concurrent first reads from several threads are safe.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.protobuf.message import Message

# The ``package`` of every .proto file under proto/flotilla/v1.
PROTO_PACKAGE = "flotilla.v1"
_PB = "control.api.pb"


@dataclass(frozen=True)
class KindInfo:
    """One API kind: its names, scope and generated message class."""

    kind: str
    group: str
    version: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    message_path: str  # ""core_pb2.Pod"": the generated module under control.api.pb, the class
    has_status: bool

    # cached_property writes the instance __dict__ directly, which a frozen dataclass allows.
    @cached_property
    def message(self) -> type[Message]:
        """The generated message class, imported on first use."""
        module, _, name = self.message_path.rpartition(".")
        cls: type[Message] = getattr(importlib.import_module(f"{_PB}.{module}"), name)
        return cls

    @property
    def full_name(self) -> str:
        """The message's protobuf full name ("flotilla.v1.Pod"), known without importing it."""
        return f"{PROTO_PACKAGE}.{self.message_path.rpartition('.')[2]}"

    @property
    def api_version(self) -> str:
        """``group/version``, or just ``version`` for the core group ("v1")."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``plural.group`` ("deployments.apps"), or the plural alone for the core group."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _k(
    kind: str,
    group: str,
    plural: str,
    short: tuple[str, ...],
    namespaced: bool,
    message: str,
    has_status: bool,
    version: str = "v1",
) -> KindInfo:
    return KindInfo(
        kind=kind,
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        short_names=short,
        namespaced=namespaced,
        message_path=message,
        has_status=has_status,
    )


_RBAC = "rbac.authorization.k8s.io"

KINDS: tuple[KindInfo, ...] = (
    # core/v1
    _k("Pod", "", "pods", ("po",), True, "core_pb2.Pod", True),
    _k("PodTemplate", "", "podtemplates", (), True, "core_pb2.PodTemplate", False),
    _k("Node", "", "nodes", ("no",), False, "core_pb2.Node", True),
    _k("Namespace", "", "namespaces", ("ns",), False, "core_pb2.Namespace", True),
    _k("Service", "", "services", ("svc",), True, "core_pb2.Service", True),
    _k("Endpoints", "", "endpoints", ("ep",), True, "core_pb2.Endpoints", False),
    _k("ConfigMap", "", "configmaps", ("cm",), True, "core_pb2.ConfigMap", False),
    _k("Secret", "", "secrets", (), True, "core_pb2.Secret", False),
    _k("ServiceAccount", "", "serviceaccounts", ("sa",), True, "core_pb2.ServiceAccount", False),
    _k("Event", "", "events", ("ev",), True, "core_pb2.Event", False),
    _k(
        "PersistentVolume",
        "",
        "persistentvolumes",
        ("pv",),
        False,
        "core_pb2.PersistentVolume",
        True,
    ),
    _k(
        "PersistentVolumeClaim",
        "",
        "persistentvolumeclaims",
        ("pvc",),
        True,
        "core_pb2.PersistentVolumeClaim",
        True,
    ),
    _k("ResourceQuota", "", "resourcequotas", ("quota",), True, "core_pb2.ResourceQuota", True),
    _k("LimitRange", "", "limitranges", ("limits",), True, "core_pb2.LimitRange", False),
    _k(
        "ReplicationController",
        "",
        "replicationcontrollers",
        ("rc",),
        True,
        "core_pb2.ReplicationController",
        True,
    ),
    # apps/v1
    _k("Deployment", "apps", "deployments", ("deploy",), True, "apps_pb2.Deployment", True),
    _k("ReplicaSet", "apps", "replicasets", ("rs",), True, "apps_pb2.ReplicaSet", True),
    _k("DaemonSet", "apps", "daemonsets", ("ds",), True, "apps_pb2.DaemonSet", True),
    _k("StatefulSet", "apps", "statefulsets", ("sts",), True, "apps_pb2.StatefulSet", True),
    _k(
        "ControllerRevision",
        "apps",
        "controllerrevisions",
        (),
        True,
        "apps_pb2.ControllerRevision",
        False,
    ),
    # batch/v1
    _k("Job", "batch", "jobs", (), True, "batch_pb2.Job", True),
    _k("CronJob", "batch", "cronjobs", ("cj",), True, "batch_pb2.CronJob", True),
    # certificates.k8s.io/v1
    _k("CertificateSigningRequest", "certificates.k8s.io", "certificatesigningrequests",
       ("csr",), False, "certificates_pb2.CertificateSigningRequest", True),
    # coordination.k8s.io/v1
    _k("Lease", "coordination.k8s.io", "leases", (), True, "coordination_pb2.Lease", False),
    # rbac.authorization.k8s.io/v1
    _k("Role", _RBAC, "roles", (), True, "rbac_pb2.Role", False),
    _k("ClusterRole", _RBAC, "clusterroles", (), False, "rbac_pb2.ClusterRole", False),
    _k("RoleBinding", _RBAC, "rolebindings", (), True, "rbac_pb2.RoleBinding", False),
    _k(
        "ClusterRoleBinding",
        _RBAC,
        "clusterrolebindings",
        (),
        False,
        "rbac_pb2.ClusterRoleBinding",
        False,
    ),
    # storage.k8s.io/v1
    _k(
        "StorageClass",
        "storage.k8s.io",
        "storageclasses",
        ("sc",),
        False,
        "storage_pb2.StorageClass",
        False,
    ),
    # node.k8s.io/v1
    _k(
        "RuntimeClass",
        "node.k8s.io",
        "runtimeclasses",
        (),
        False,
        "node_pb2.RuntimeClass",
        False,
    ),
    # scheduling.k8s.io/v1
    _k(
        "PriorityClass",
        "scheduling.k8s.io",
        "priorityclasses",
        ("pc",),
        False,
        "scheduling_pb2.PriorityClass",
        False,
    ),
    # networking.k8s.io/v1
    _k(
        "NetworkPolicy",
        "networking.k8s.io",
        "networkpolicies",
        ("netpol",),
        True,
        "networking_pb2.NetworkPolicy",
        True,
    ),
    # discovery.k8s.io/v1
    _k(
        "EndpointSlice",
        "discovery.k8s.io",
        "endpointslices",
        (),
        True,
        "discovery_pb2.EndpointSlice",
        False,
    ),
    # policy/v1
    _k(
        "PodDisruptionBudget",
        "policy",
        "poddisruptionbudgets",
        ("pdb",),
        True,
        "policy_pb2.PodDisruptionBudget",
        True,
    ),
)


def _index() -> tuple[
    MappingProxyType[str, KindInfo],
    MappingProxyType[str, KindInfo],
    MappingProxyType[str, KindInfo],
    MappingProxyType[str, KindInfo],
]:
    by_plural: dict[str, KindInfo] = {}
    by_kind_name: dict[str, KindInfo] = {}
    by_full_name: dict[str, KindInfo] = {}
    aliases: dict[str, KindInfo] = {}
    for info in KINDS:
        for table, key in (
            (by_plural, info.plural),
            (by_kind_name, info.kind),
            (by_full_name, info.full_name),
        ):
            if key in table:
                raise RuntimeError(f"duplicate kind registration: {key!r}")
            table[key] = info
        names = {info.kind.lower(), info.plural, info.singular, *info.short_names}
        if info.group:
            names |= {f"{info.plural}.{info.group}", f"{info.singular}.{info.group}"}
            names.add(f"{info.kind.lower()}.{info.group}")
        for name in names:
            other = aliases.setdefault(name, info)
            if other is not info:
                raise RuntimeError(f"name {name!r} is claimed by {other.kind} and {info.kind}")
    return (
        MappingProxyType(by_plural),
        MappingProxyType(by_kind_name),
        MappingProxyType(by_full_name),
        MappingProxyType(aliases),
    )


_BY_PLURAL, _BY_KIND, _BY_FULL_NAME, _ALIASES = _index()


def by_resource(plural: str) -> KindInfo:
    """The kind served under ``plural`` ("deployments"); raises ``KeyError``."""
    try:
        return _BY_PLURAL[plural]
    except KeyError:
        raise KeyError(f"unknown resource {plural!r}") from None


def by_kind(kind: str, api_version: str | None = None) -> KindInfo:
    """The kind named ``kind`` ("Deployment"), checked against ``api_version`` if given.

    Raises ``KeyError`` for an unknown kind, or a known kind at an apiVersion we do not
    serve ("extensions/v1beta1" Deployment).
    """
    info = _BY_KIND.get(kind)
    if info is None:
        raise KeyError(f"unknown kind {kind!r}")
    if api_version is not None and api_version != info.api_version:
        raise KeyError(
            f"kind {kind!r} is served as apiVersion {info.api_version!r}, not {api_version!r}"
        )
    return info


def by_message(cls_or_instance: type[Message] | Message) -> KindInfo:
    """The kind whose message class is ``cls_or_instance`` (a class or an instance)."""
    full_name = cls_or_instance.DESCRIPTOR.full_name
    try:
        return _BY_FULL_NAME[full_name]
    except KeyError:
        raise KeyError(f"message {full_name!r} is not a top-level kind") from None


def resolve(name: str) -> KindInfo:
    """The CLI's lookup: kind in any case, plural, singular, short name or ``plural.group``.

    ``resolve("deploy")``, ``resolve("Deployment")``, ``resolve("deployments.apps")`` all
    return the Deployment kind. Raises ``KeyError`` naming the input when nothing matches.
    """
    key = name.strip().lower()
    info = _ALIASES.get(key)
    if info is None and "." in key:
        # "deployments.v1.apps" (kubectl's resource.version.group form)
        resource, _, rest = key.partition(".")
        version, _, group = rest.partition(".")
        candidate = _ALIASES.get(resource)
        if candidate is not None and candidate.version == version and candidate.group == group:
            info = candidate
    if info is None:
        raise KeyError(f'the server doesn\'t have a resource type "{name}"')
    return info


def new(kind_info: KindInfo) -> Message:
    """A fresh, empty message of the kind with ``apiVersion`` and ``kind`` set."""
    msg = kind_info.message()
    msg.api_version = kind_info.api_version  # type: ignore[attr-defined]
    msg.kind = kind_info.kind  # type: ignore[attr-defined]
    return msg


__all__ = ["KINDS", "KindInfo", "by_kind", "by_message", "by_resource", "new", "resolve"]
