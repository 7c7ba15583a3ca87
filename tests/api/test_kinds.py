"""Tests for control/api/kinds.py and the shape of the generated API messages.

Covers the registry lookups, the common header every top-level kind carries
(api_version/kind/metadata as fields 1/2/3), and that every JSON name keeps Kubernetes'
all-caps acronyms (hostIP, podCIDRs, hostPID, volumeID, nonResourceURLs...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from control.api import kinds
from control.api.pb import apps_pb2, batch_pb2, core_pb2, meta_pb2

# Every kind the architecture names, with its apiVersion and resource.
EXPECTED = {
    ("v1", "Pod"): "pods",
    ("v1", "Service"): "services",
    ("v1", "Endpoints"): "endpoints",
    ("v1", "Node"): "nodes",
    ("v1", "Namespace"): "namespaces",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "Event"): "events",
    ("v1", "PersistentVolume"): "persistentvolumes",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("v1", "ReplicationController"): "replicationcontrollers",
    ("v1", "ResourceQuota"): "resourcequotas",
    ("v1", "LimitRange"): "limitranges",
    ("v1", "PodTemplate"): "podtemplates",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "ReplicaSet"): "replicasets",
    ("apps/v1", "DaemonSet"): "daemonsets",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("apps/v1", "ControllerRevision"): "controllerrevisions",
    ("batch/v1", "Job"): "jobs",
    ("batch/v1", "CronJob"): "cronjobs",
    ("coordination.k8s.io/v1", "Lease"): "leases",
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): "certificatesigningrequests",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "clusterroles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "clusterrolebindings",
    ("storage.k8s.io/v1", "StorageClass"): "storageclasses",
    ("scheduling.k8s.io/v1", "PriorityClass"): "priorityclasses",
    ("node.k8s.io/v1", "RuntimeClass"): "runtimeclasses",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("discovery.k8s.io/v1", "EndpointSlice"): "endpointslices",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
}

CLUSTER_SCOPED = {
    "CertificateSigningRequest",
    "Node",
    "Namespace",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "PriorityClass",
    "RuntimeClass",
}

# kubectl's short names.
SHORT_NAMES = {
    "po": "Pod",
    "svc": "Service",
    "deploy": "Deployment",
    "rs": "ReplicaSet",
    "rc": "ReplicationController",
    "ds": "DaemonSet",
    "sts": "StatefulSet",
    "ns": "Namespace",
    "no": "Node",
    "cm": "ConfigMap",
    "ep": "Endpoints",
    "sa": "ServiceAccount",
    "pv": "PersistentVolume",
    "pvc": "PersistentVolumeClaim",
    "cj": "CronJob",
    "ev": "Event",
    "pdb": "PodDisruptionBudget",
    "pc": "PriorityClass",
    "sc": "StorageClass",
    "quota": "ResourceQuota",
    "limits": "LimitRange",
}


def test_every_expected_kind_is_registered() -> None:
    got = {(k.api_version, k.kind): k.plural for k in kinds.KINDS}
    assert got == EXPECTED


def test_scope() -> None:
    for info in kinds.KINDS:
        assert info.namespaced == (info.kind not in CLUSTER_SCOPED), info.kind


@pytest.mark.parametrize(("short", "kind"), sorted(SHORT_NAMES.items()))
def test_short_names(short: str, kind: str) -> None:
    assert kinds.resolve(short).kind == kind
    assert short in kinds.by_kind(kind).short_names


def test_by_resource() -> None:
    info = kinds.by_resource("deployments")
    assert info.kind == "Deployment"
    assert info.group == "apps"
    assert info.api_version == "apps/v1"
    assert info.singular == "deployment"
    assert info.message is apps_pb2.Deployment
    assert kinds.by_resource("pods").api_version == "v1"
    with pytest.raises(KeyError):
        kinds.by_resource("Deployment")
    with pytest.raises(KeyError):
        kinds.by_resource("widgets")


def test_by_kind() -> None:
    assert kinds.by_kind("Job").message is batch_pb2.Job
    assert kinds.by_kind("Job", "batch/v1").plural == "jobs"
    with pytest.raises(KeyError, match="extensions/v1beta1"):
        kinds.by_kind("Deployment", "extensions/v1beta1")
    with pytest.raises(KeyError):
        kinds.by_kind("deployment")  # kind is case-sensitive; resolve() is not
    with pytest.raises(KeyError):
        kinds.by_kind("PodPreset")


def test_by_message() -> None:
    assert kinds.by_message(core_pb2.Pod).kind == "Pod"
    assert kinds.by_message(core_pb2.Pod()).kind == "Pod"
    assert kinds.by_message(apps_pb2.StatefulSet()).plural == "statefulsets"
    with pytest.raises(KeyError):
        kinds.by_message(core_pb2.PodSpec)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Deployment", "Deployment"),
        ("deployment", "Deployment"),
        ("DEPLOYMENT", "Deployment"),
        ("deployments", "Deployment"),
        ("deploy", "Deployment"),
        ("deployments.apps", "Deployment"),
        ("deployment.apps", "Deployment"),
        ("deployments.v1.apps", "Deployment"),
        ("pods", "Pod"),
        ("pod", "Pod"),
        ("endpoints", "Endpoints"),
        ("roles.rbac.authorization.k8s.io", "Role"),
        ("clusterrolebinding", "ClusterRoleBinding"),
        ("leases.coordination.k8s.io", "Lease"),
        ("pdb", "PodDisruptionBudget"),
    ],
)
def test_resolve(name: str, kind: str) -> None:
    assert kinds.resolve(name).kind == kind


def test_resolve_unknown_names_input() -> None:
    with pytest.raises(KeyError, match="widgets"):
        kinds.resolve("widgets")
    with pytest.raises(KeyError):
        kinds.resolve("deployments.batch")


def test_new_sets_header() -> None:
    for info in kinds.KINDS:
        msg = kinds.new(info)
        assert isinstance(msg, info.message)
        doc = json_format.MessageToDict(msg)
        assert doc == {"apiVersion": info.api_version, "kind": info.kind}


def test_every_kind_has_common_header() -> None:
    for info in kinds.KINDS:
        fields = info.message.DESCRIPTOR.fields_by_number
        assert fields[1].name == "api_version" and fields[1].json_name == "apiVersion", info.kind
        assert fields[1].type == FieldDescriptor.TYPE_STRING
        assert fields[2].name == "kind" and fields[2].type == FieldDescriptor.TYPE_STRING
        assert fields[3].name == "metadata"
        assert fields[3].message_type is meta_pb2.ObjectMeta.DESCRIPTOR, info.kind


def test_status_subresource_matches_message() -> None:
    for info in kinds.KINDS:
        fields = info.message.DESCRIPTOR.fields_by_name
        assert info.has_status == ("status" in fields), info.kind


def _all_messages() -> Iterator[Any]:
    seen: set[str] = set()
    stack = [info.message.DESCRIPTOR for info in kinds.KINDS]
    while stack:
        desc = stack.pop()
        if desc.full_name in seen or desc.full_name.startswith("google.protobuf."):
            continue
        seen.add(desc.full_name)
        yield desc
        for field in desc.fields:
            if field.message_type is not None:
                stack.append(field.message_type)


# Acronyms Kubernetes writes in capitals inside a JSON name (hostIP, podCIDRs, targetWWNs).
_ACRONYMS = {
    "ip", "ips", "cidr", "cidrs", "pid", "ipc", "id", "ids", "url", "urls", "uri",
    "uuid", "uid", "fqdn", "wwns", "api", "io", "tls", "dns", "http", "tcp", "grpc", "os",
}  # fmt: skip
# JSON names where Kubernetes itself writes an acronym in mixed case (none known so far).
_ALLOWED: set[str] = set()
_HUMP = re.compile(r"[A-Z][a-z0-9]+")


def test_json_names_keep_kubernetes_acronyms() -> None:
    bad = []
    for desc in _all_messages():
        for field in desc.fields:
            name = field.json_name
            if name in _ALLOWED or desc.GetOptions().map_entry:
                continue
            for hump in _HUMP.findall(name[1:]):
                if hump.lower() in _ACRONYMS:
                    bad.append(f"{desc.full_name}.{field.name}: {name!r}")
    assert not bad, "JSON names with a mixed-case acronym:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("message", "field", "json_name"),
    [
        (core_pb2.PodStatus, "host_ip", "hostIP"),
        (core_pb2.PodStatus, "host_ips", "hostIPs"),
        (core_pb2.PodStatus, "pod_ip", "podIP"),
        (core_pb2.PodStatus, "pod_ips", "podIPs"),
        (core_pb2.PodSpec, "host_pid", "hostPID"),
        (core_pb2.PodSpec, "host_ipc", "hostIPC"),
        (core_pb2.PodSpec, "set_hostname_as_fqdn", "setHostnameAsFQDN"),
        (core_pb2.PodSpec, "service_account", "serviceAccount"),
        (core_pb2.ServiceSpec, "cluster_ip", "clusterIP"),
        (core_pb2.ServiceSpec, "cluster_ips", "clusterIPs"),
        (core_pb2.ServiceSpec, "external_ips", "externalIPs"),
        (core_pb2.ServiceSpec, "load_balancer_ip", "loadBalancerIP"),
        (core_pb2.SessionAffinityConfig, "client_ip", "clientIP"),
        (core_pb2.NodeSpec, "pod_cidr", "podCIDR"),
        (core_pb2.NodeSpec, "pod_cidrs", "podCIDRs"),
        (core_pb2.NodeSpec, "provider_id", "providerID"),
        (core_pb2.DaemonEndpoint, "port", "Port"),
        (core_pb2.NodeSystemInfo, "machine_id", "machineID"),
        (core_pb2.NodeSystemInfo, "system_uuid", "systemUUID"),
        (core_pb2.NodeSystemInfo, "boot_id", "bootID"),
        (core_pb2.ContainerStatus, "image_id", "imageID"),
        (core_pb2.ContainerStatus, "container_id", "containerID"),
        (core_pb2.ContainerPort, "host_ip", "hostIP"),
        (core_pb2.AWSElasticBlockStoreVolumeSource, "volume_id", "volumeID"),
        (core_pb2.FCVolumeSource, "target_wwns", "targetWWNs"),
        (core_pb2.Volume, "downward_api", "downwardAPI"),
        (core_pb2.VolumeProjection, "downward_api", "downwardAPI"),
    ],
)
def test_specific_json_names(message: type[Message], field: str, json_name: str) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].json_name == json_name


# Go pointer scalars in Kubernetes' types: presence must survive (replicas: 0 is not unset).
@pytest.mark.parametrize(
    ("message", "field"),
    [
        (apps_pb2.DeploymentSpec, "replicas"),
        (apps_pb2.DeploymentSpec, "revision_history_limit"),
        (apps_pb2.DeploymentSpec, "progress_deadline_seconds"),
        (apps_pb2.ReplicaSetSpec, "replicas"),
        (apps_pb2.StatefulSetSpec, "replicas"),
        (apps_pb2.RollingUpdateStatefulSetStrategy, "partition"),
        (core_pb2.ReplicationControllerSpec, "replicas"),
        (core_pb2.PodSpec, "termination_grace_period_seconds"),
        (core_pb2.PodSpec, "active_deadline_seconds"),
        (core_pb2.PodSpec, "automount_service_account_token"),
        (core_pb2.PodSpec, "enable_service_links"),
        (core_pb2.PodSpec, "priority"),
        (core_pb2.SecurityContext, "run_as_user"),
        (core_pb2.SecurityContext, "run_as_non_root"),
        (core_pb2.SecurityContext, "privileged"),
        (core_pb2.Toleration, "toleration_seconds"),
        (core_pb2.ContainerStatus, "started"),
        (core_pb2.ConfigMap, "immutable"),
        (core_pb2.PersistentVolumeClaimSpec, "storage_class_name"),
        (batch_pb2.JobSpec, "parallelism"),
        (batch_pb2.JobSpec, "completions"),
        (batch_pb2.JobSpec, "backoff_limit"),
        (batch_pb2.JobSpec, "suspend"),
    ],
)
def test_pointer_scalars_have_presence(message: type[Message], field: str) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].has_presence


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (apps_pb2.DeploymentSpec, "min_ready_seconds"),
        (apps_pb2.DeploymentSpec, "paused"),
        (core_pb2.VolumeMount, "read_only"),
        (core_pb2.PodSpec, "host_network"),
    ],
)
def test_plain_scalars_have_no_presence(message: type[Message], field: str) -> None:
    assert not message.DESCRIPTOR.fields_by_name[field].has_presence


def test_replicas_zero_round_trips() -> None:
    d = apps_pb2.Deployment()
    json_format.ParseDict({"spec": {"replicas": 0}}, d)
    assert d.spec.HasField("replicas")
    assert json_format.MessageToDict(d) == {"spec": {"replicas": 0}}
