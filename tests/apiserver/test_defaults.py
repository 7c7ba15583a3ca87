"""Table tests for control.apiserver.defaults: every kind's defaults, and idempotence."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message

from control.api import convert, kinds
from control.apiserver.defaults import apply_defaults, default_image_pull_policy


def build(doc: dict[str, Any]) -> Message:
    info = kinds.by_kind(doc["kind"])
    msg = info.message()
    convert.from_dict(doc, msg)
    return msg


def defaulted(doc: dict[str, Any]) -> dict[str, Any]:
    msg = build(doc)
    apply_defaults(msg)
    out: dict[str, Any] = convert.to_dict(msg)
    return out


def pod_template(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}], **spec},
    }


MINIMAL_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template()},
}


def test_minimal_deployment_gets_every_default() -> None:
    out = defaulted(MINIMAL_DEPLOYMENT)
    spec = out["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["dnsPolicy"] == "ClusterFirst"
    assert pod["schedulerName"] == "default-scheduler"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"] == {}
    # Pod-only defaults stay off templates (Kubernetes' SetDefaults_Pod).
    assert "enableServiceLinks" not in pod
    c = pod["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"


def test_defaults_are_idempotent_for_every_kind_example() -> None:
    unlabelled_job = {**JOB, "spec": {"template": {"spec": JOB["spec"]["template"]["spec"]}}}  # type: ignore[index]
    for doc in (MINIMAL_DEPLOYMENT, SERVICE, JOB, unlabelled_job):
        once = build(doc)
        apply_defaults(once)
        twice = type(once)()
        twice.CopyFrom(once)
        apply_defaults(twice)
        assert once == twice


def test_explicit_values_are_kept() -> None:
    doc = {
        **MINIMAL_DEPLOYMENT,
        "spec": {
            **MINIMAL_DEPLOYMENT["spec"],  # type: ignore[dict-item]
            "replicas": 0,
            "revisionHistoryLimit": 0,
            "strategy": {"type": "Recreate"},
            "template": pod_template(terminationGracePeriodSeconds=0, restartPolicy="Never"),
        },
    }
    spec = defaulted(doc)["spec"]
    assert spec["replicas"] == 0  # presence, not truthiness
    assert spec["revisionHistoryLimit"] == 0
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
        ("localhost:5000/app:v2", "IfNotPresent"),
        ("registry.example.com/team/app:latest", "Always"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:1.25@sha256:" + "a" * 64, "IfNotPresent"),
        ("", "IfNotPresent"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    assert default_image_pull_policy(image) == policy


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}], **spec},
    }


def test_probe_defaults() -> None:
    probe = {"httpGet": {"port": 8080}}
    doc = _pod(
        containers=[
            {
                "name": "c",
                "image": "x:1",
                "livenessProbe": probe,
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
                "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/quit"}}},
            }
        ]
    )
    c = defaulted(doc)["spec"]["containers"][0]
    assert c["livenessProbe"] == {
        "httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert c["readinessProbe"]["periodSeconds"] == 5
    assert c["readinessProbe"]["timeoutSeconds"] == 1
    assert c["lifecycle"]["preStop"]["httpGet"] == {"path": "/quit", "port": 80, "scheme": "HTTP"}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"limits": {"cpu": "1", "memory": "1Gi"}}, {"cpu": "1", "memory": "1Gi"}),
        (
            {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m"}},
            {"cpu": "250m", "memory": "1Gi"},
        ),
        ({"requests": {"cpu": "0.1"}}, {"cpu": "100m"}),
        ({"limits": {"cpu": "0.5m"}}, {"cpu": "1m"}),  # rounded up to milli precision
    ],
)
def test_pod_requests_default_to_limits(
    resources: dict[str, Any], expected: dict[str, str]
) -> None:
    doc = _pod(containers=[{"name": "c", "image": "x:1", "resources": resources}])
    out = defaulted(doc)
    assert out["spec"]["containers"][0]["resources"]["requests"] == expected
    assert out["spec"]["enableServiceLinks"] is True


def test_templates_do_not_get_requests_from_limits() -> None:
    tmpl = pod_template(
        containers=[{"name": "c", "image": "x:1", "resources": {"limits": {"cpu": "1"}}}]
    )
    doc = {**MINIMAL_DEPLOYMENT, "spec": {**MINIMAL_DEPLOYMENT["spec"], "template": tmpl}}  # type: ignore[dict-item]
    c = defaulted(doc)["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"cpu": "1"}}


def test_pod_spec_nested_defaults() -> None:
    doc = _pod(
        hostNetwork=True,
        containers=[
            {
                "name": "c",
                "image": "x:1",
                "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }
        ],
        volumes=[
            {"name": "a", "configMap": {"name": "cm"}},
            {"name": "b", "secret": {"secretName": "s", "defaultMode": 256}},
            {
                "name": "c",
                "downwardAPI": {
                    "items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]
                },
            },
            {"name": "d", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
            {"name": "e", "hostPath": {"path": "/data"}},
            {"name": "f"},
            {"name": "g", "emptyDir": {}},
        ],
        serviceAccount="robot",
    )
    spec = defaulted(doc)["spec"]
    c = spec["containers"][0]
    assert [p.get("protocol") for p in c["ports"]] == ["TCP", "UDP"]
    assert [p.get("hostPort") for p in c["ports"]] == [80, 53]
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["a"]["configMap"]["defaultMode"] == 420
    assert vols["b"]["secret"]["defaultMode"] == 256
    assert vols["c"]["downwardAPI"]["defaultMode"] == 420
    assert vols["c"]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"] == "v1"
    assert vols["d"]["projected"]["defaultMode"] == 420
    assert vols["d"]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3600
    assert vols["e"]["hostPath"] == {"path": "/data", "type": ""}
    assert vols["f"] == {"name": "f", "emptyDir": {}}
    assert vols["g"] == {"name": "g", "emptyDir": {}}
    assert spec["serviceAccountName"] == "robot"


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "selector": {"app": "web"},
        "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}],
    },
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {},
            {
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
            },
        ),
        ({"type": "NodePort"}, {"externalTrafficPolicy": "Cluster"}),
        ({"type": "LoadBalancer"}, {"allocateLoadBalancerNodePorts": True}),
        ({"clusterIP": "10.96.0.20"}, {"clusterIPs": ["10.96.0.20"], "ipFamilies": ["IPv4"]}),
        ({"clusterIP": "None", "selector": {}}, {"ipFamilyPolicy": "RequireDualStack"}),
        (
            {"sessionAffinity": "ClientIP"},
            {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}},
        ),
    ],
)
def test_service_defaults(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    doc = {**SERVICE, "spec": {**SERVICE["spec"], **spec}}  # type: ignore[dict-item]
    out = defaulted(doc)["spec"]
    for k, v in expected.items():
        assert out[k] == v, k
    assert [p["protocol"] for p in out["ports"]] == ["TCP", "TCP"]
    # targetPort defaults to the port; a named one is kept.
    assert [p["targetPort"] for p in out["ports"]] == [80, "https"]


def test_external_name_service_gets_no_cluster_defaults() -> None:
    doc = {**SERVICE, "spec": {"type": "ExternalName", "externalName": "example.com"}}
    out = defaulted(doc)["spec"]
    assert "internalTrafficPolicy" not in out
    assert "ipFamilyPolicy" not in out


JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "pi", "namespace": "default", "uid": "1234"},
    "spec": {"template": pod_template(restartPolicy="Never")},
}


def test_job_defaults_and_generated_selector() -> None:
    out = defaulted(JOB)
    spec = out["spec"]
    assert spec["completions"] == 1
    assert spec["parallelism"] == 1
    assert spec["backoffLimit"] == 6
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "pi"
    assert labels["controller-uid"] == "1234"
    # metadata.labels come from the template's labels, generated ones included.
    assert out["metadata"]["labels"] == labels
    assert labels["app"] == "web"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"parallelism": 3}, {"parallelism": 3}),  # completions stays unset: a work queue
        ({"completions": 5}, {"completions": 5, "parallelism": 1}),
        (
            {"backoffLimitPerIndex": 1, "completionMode": "Indexed", "completions": 2},
            {"backoffLimit": 2**31 - 1},
        ),
        ({"manualSelector": True}, {"manualSelector": True}),
    ],
)
def test_job_parallelism_rules(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    doc = {**JOB, "spec": {**JOB["spec"], **spec}}  # type: ignore[dict-item]
    out = defaulted(doc)["spec"]
    for k, v in expected.items():
        assert out[k] == v
    if "completions" not in spec and "parallelism" in spec:
        assert "completions" not in out
    if spec.get("manualSelector"):
        assert "selector" not in out


def test_job_template_restart_policy_is_not_defaulted() -> None:
    doc = {**JOB, "spec": {"template": pod_template()}}
    assert "restartPolicy" not in defaulted(doc)["spec"]["template"]["spec"]


def _kind(kind: str, api_version: str, namespaced: bool = True, **body: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x"}
    if namespaced:
        meta["namespace"] = "default"
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


@pytest.mark.parametrize(
    ("doc", "path", "value"),
    [
        (_kind("ReplicaSet", "apps/v1", spec={"template": pod_template()}), "spec.replicas", 1),
        (
            _kind("DaemonSet", "apps/v1", spec={"template": pod_template()}),
            "spec.updateStrategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        ),
        (
            _kind("DaemonSet", "apps/v1", spec={"template": pod_template()}),
            "spec.revisionHistoryLimit",
            10,
        ),
        (
            _kind("StatefulSet", "apps/v1", spec={"template": pod_template()}),
            "spec.podManagementPolicy",
            "OrderedReady",
        ),
        (
            _kind("StatefulSet", "apps/v1", spec={"template": pod_template()}),
            "spec.updateStrategy",
            {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        ),
        (
            _kind("StatefulSet", "apps/v1", spec={"template": pod_template()}),
            "spec.persistentVolumeClaimRetentionPolicy",
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        ),
        (_kind("StatefulSet", "apps/v1", spec={"template": pod_template()}), "spec.replicas", 1),
        (
            _kind("CronJob", "batch/v1", spec={"schedule": "* * * * *"}),
            "spec.concurrencyPolicy",
            "Allow",
        ),
        (_kind("CronJob", "batch/v1", spec={"schedule": "* * * * *"}), "spec.suspend", False),
        (
            _kind("CronJob", "batch/v1", spec={"schedule": "* * * * *"}),
            "spec.successfulJobsHistoryLimit",
            3,
        ),
        (
            _kind("CronJob", "batch/v1", spec={"schedule": "* * * * *"}),
            "spec.failedJobsHistoryLimit",
            1,
        ),
        (
            _kind("ReplicationController", "v1", spec={"template": pod_template()}),
            "spec.selector",
            {"app": "web"},
        ),
        (
            _kind("ReplicationController", "v1", spec={"template": pod_template()}),
            "metadata.labels",
            {"app": "web"},
        ),
        (
            _kind("ReplicationController", "v1", spec={"template": pod_template()}),
            "spec.replicas",
            1,
        ),
        (_kind("Secret", "v1"), "type", "Opaque"),
        (_kind("Secret", "v1", stringData={"k": "v"}), "data", {"k": "dg=="}),
        (_kind("Namespace", "v1", False), "metadata.labels", {"kubernetes.io/metadata.name": "x"}),
        (
            _kind("PersistentVolume", "v1", False, spec={"hostPath": {"path": "/d"}}),
            "spec.persistentVolumeReclaimPolicy",
            "Retain",
        ),
        (_kind("PersistentVolume", "v1", False), "spec.volumeMode", "Filesystem"),
        (_kind("PersistentVolume", "v1", False), "status.phase", "Pending"),
        (_kind("PersistentVolumeClaim", "v1"), "spec.volumeMode", "Filesystem"),
        (_kind("PersistentVolumeClaim", "v1"), "status.phase", "Pending"),
        (
            _kind("StorageClass", "storage.k8s.io/v1", False, provisioner="p"),
            "reclaimPolicy",
            "Delete",
        ),
        (
            _kind("StorageClass", "storage.k8s.io/v1", False, provisioner="p"),
            "volumeBindingMode",
            "Immediate",
        ),
        (
            _kind("PriorityClass", "scheduling.k8s.io/v1", False, value=1),
            "preemptionPolicy",
            "PreemptLowerPriority",
        ),
        (
            _kind(
                "RoleBinding",
                "rbac.authorization.k8s.io/v1",
                roleRef={"kind": "Role", "name": "r"},
                subjects=[
                    {"kind": "User", "name": "alice"},
                    {"kind": "ServiceAccount", "name": "sa", "namespace": "d"},
                ],
            ),
            "subjects",
            [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
                {"kind": "ServiceAccount", "name": "sa", "namespace": "d"},
            ],
        ),
        (
            _kind(
                "ClusterRoleBinding",
                "rbac.authorization.k8s.io/v1",
                False,
                roleRef={"kind": "ClusterRole", "name": "r"},
            ),
            "roleRef",
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
        ),
        (
            _kind(
                "Endpoints",
                "v1",
                subsets=[{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}],
            ),
            "subsets",
            [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}],
        ),
        (
            _kind("Node", "v1", False, status={"capacity": {"cpu": "4"}}),
            "status.allocatable",
            {"cpu": "4"},
        ),
        (
            _kind(
                "LimitRange",
                "v1",
                spec={
                    "limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]
                },
            ),
            "spec.limits",
            [
                {
                    "type": "Container",
                    "max": {"cpu": "2"},
                    "min": {"memory": "1Mi"},
                    "default": {"cpu": "2"},
                    "defaultRequest": {"cpu": "2", "memory": "1Mi"},
                }
            ],
        ),
    ],
)
def test_kind_defaults(doc: dict[str, Any], path: str, value: Any) -> None:
    out: Any = defaulted(doc)
    for part in path.split("."):
        out = out[part]
    assert out == value


def test_kinds_without_defaults_are_untouched() -> None:
    for doc in (
        _kind("ConfigMap", "v1", data={"a": "b"}),
        _kind("Lease", "coordination.k8s.io/v1", spec={"holderIdentity": "me"}),
        _kind("PodDisruptionBudget", "policy/v1", spec={"minAvailable": 1}),
        _kind("ServiceAccount", "v1"),
    ):
        msg = build(doc)
        before = type(msg)()
        before.CopyFrom(msg)
        apply_defaults(msg)
        assert msg == before, doc["kind"]
