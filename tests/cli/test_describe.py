"""Tests of control.cli.describe: kubectl-describe-like text."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.message import Message

from control.api import kinds
from control.cli import describe
from control.cli.printers import tabwrite
from tests.support.describe import NOW, lines, obj

CREATED = "2024-01-01T11:00:00Z"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # describe prints local times, as kubectl does; pin the zone for stable text.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def event(reason: str, message: str, count: int = 1, type_: str = "Normal") -> Message:
    return obj(
        "Event",
        {
            "metadata": {"name": f"e-{reason}", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet"},
            "firstTimestamp": "2024-01-01T11:55:00Z",
            "lastTimestamp": "2024-01-01T11:58:00Z",
            "count": count,
        },
    )


POD = obj(
    "Pod",
    {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "creationTimestamp": CREATED,
            "labels": {"app": "web", "pod-template-hash": "abc"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-abc",
                    "uid": "u",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "n1",
            "priority": 0,
            "serviceAccountName": "default",
            "containers": [
                {
                    "name": "app",
                    "image": "nginx:1.25",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}},
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                        "timeoutSeconds": 1,
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "failureThreshold": 3,
                    },
                    "env": [
                        {"name": "MODE", "value": "prod"},
                        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                    ],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "cfg", "configMap": {"name": "web-cfg"}}],
            "tolerations": [
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
        "status": {
            "phase": "Running",
            "hostIP": "192.168.0.10",
            "podIP": "10.1.0.7",
            "podIPs": [{"ip": "10.1.0.7"}],
            "startTime": CREATED,
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": True,
                    "restartCount": 1,
                    "containerID": "flotilla://123",
                    "state": {"running": {"startedAt": "2024-01-01T11:30:00Z"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "startedAt": CREATED,
                            "finishedAt": "2024-01-01T11:29:00Z",
                        }
                    },
                }
            ],
        },
    },
)


def test_describe_pod() -> None:
    text = describe.describe_object(
        POD,
        kinds.by_kind("Pod"),
        {"events": [event("Pulled", "ok"), event("BackOff", "x", 3)]},
        now=NOW,
    )
    got = lines(text)
    for expected in [
        "Name:             web",
        "Namespace:        default",
        "Priority:         0",
        "Service Account:  default",
        "Node:             n1/192.168.0.10",
        "Start Time:       Mon, 01 Jan 2024 11:00:00 +0000",
        "Labels:           app=web",
        "                  pod-template-hash=abc",
        "Annotations:      <none>",
        "Status:           Running",
        "IP:               10.1.0.7",
        "IPs:",
        "  IP:           10.1.0.7",
        "Controlled By:  ReplicaSet/web-abc",
        "Containers:",
        "  app:",
        "    Container ID:   flotilla://123",
        "    Image:          nginx:1.25",
        "    Port:           80/TCP",
        "    State:          Running",
        "      Started:      Mon, 01 Jan 2024 11:30:00 +0000",
        "    Last State:     Terminated",
        "      Reason:       OOMKilled",
        "      Exit Code:    137",
        "    Ready:          True",
        "    Restart Count:  1",
        "    Limits:",
        "      memory:  128Mi",
        "    Requests:",
        "      cpu:      100m",
        "    Readiness:  http-get http://:8080/ready delay=0s timeout=1s period=10s #success=1 #failure=3",
        "    Environment:",
        "      MODE:  prod",
        "      PW:    <set to the key 'pw' in secret 's'>  Optional: false",
        "    Mounts:",
        "      /etc/cfg from cfg (ro)",
        "Conditions:",
        "  Type    Status",
        "  Ready   True",
        "Volumes:",
        "  cfg:",
        "    Type:        ConfigMap (a volume populated by a ConfigMap)",
        "    Name:        web-cfg",
        "QoS Class:       Burstable",
        "Node-Selectors:  <none>",
        "Tolerations:     node.kubernetes.io/unreachable:NoExecute op=Exists for 300s",
        "Events:",
        "  Type    Reason   Age              From     Message",
        "  ----    ------   ----             ----     -------",
        "  Normal  Pulled   5m               kubelet  ok",
        "  Normal  BackOff  2m (x3 over 5m)  kubelet  x",
    ]:
        assert expected in got, expected
    assert got.index("Conditions:") < got.index("Volumes:") < got.index("Events:")


def test_events_none_and_absent() -> None:
    info = kinds.by_kind("Pod")
    assert "Events:          <none>" in lines(
        describe.describe_object(POD, info, {"events": []}, now=NOW)
    )
    assert "Events" not in describe.describe_object(POD, info, {}, now=NOW)


DEPLOYMENT = {
    "metadata": {
        "name": "web",
        "namespace": "default",
        "uid": "d1",
        "creationTimestamp": CREATED,
        "labels": {"app": "web"},
    },
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        },
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "nginx:1.25",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    }
                ]
            },
        },
    },
    "status": {
        "replicas": 3,
        "updatedReplicas": 3,
        "availableReplicas": 2,
        "unavailableReplicas": 1,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    },
}


def replicaset(name: str, image: str, replicas: int) -> Message:
    return obj(
        "ReplicaSet",
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "creationTimestamp": CREATED,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "web",
                        "uid": "d1",
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {"labels": {"app": "web", "pod-template-hash": name[-3:]}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": image,
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            }
                        ]
                    },
                },
            },
            "status": {"replicas": replicas},
        },
    )


def test_describe_deployment() -> None:
    related = {
        "replicasets": [
            replicaset("web-old", "nginx:1.24", 1),
            replicaset("web-new", "nginx:1.25", 3),
        ],
        "events": [],
    }
    text = describe.describe_object(
        obj("Deployment", DEPLOYMENT), kinds.by_kind("Deployment"), related, now=NOW
    )
    got = lines(text)
    for expected in [
        "Name:                   web",
        "Namespace:              default",
        "CreationTimestamp:      Mon, 01 Jan 2024 11:00:00 +0000",
        "Selector:               app=web",
        "Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable",
        "StrategyType:           RollingUpdate",
        "MinReadySeconds:        0",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "Pod Template:",
        "  Labels:  app=web",
        "  Containers:",
        "   app:",
        "    Image:         nginx:1.25",
        "    Port:          80/TCP",
        "    Host Port:     0/TCP",
        "    Environment:   <none>",
        "    Mounts:        <none>",
        "  Volumes:         <none>",
        "  Node-Selectors:  <none>",
        "  Tolerations:     <none>",
        "Conditions:",
        "  Type           Status  Reason",
        "  ----           ------  ------",
        "  Available      True    MinimumReplicasAvailable",
        "  Progressing    True    NewReplicaSetAvailable",
        "OldReplicaSets:  web-old (1/1 replicas created)",
        "NewReplicaSet:   web-new (3/3 replicas created)",
        "Events:          <none>",
    ]:
        assert expected in got, expected


def test_describe_service_node_namespace() -> None:
    svc = obj(
        "Service",
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.5",
                "clusterIPs": ["10.96.0.5"],
                "selector": {"app": "web"},
                "ports": [
                    {
                        "name": "http",
                        "port": 80,
                        "targetPort": 8080,
                        "nodePort": 30080,
                        "protocol": "TCP",
                    }
                ],
            },
        },
    )
    ep = obj(
        "Endpoints",
        {
            "metadata": {"name": "web"},
            "subsets": [
                {"addresses": [{"ip": "10.1.0.7"}], "ports": [{"name": "http", "port": 8080}]}
            ],
        },
    )
    got = lines(describe.describe_object(svc, kinds.by_kind("Service"), {"endpoints": ep}, now=NOW))
    assert "Port:              http  80/TCP" in got
    assert "TargetPort:        8080/TCP" in got
    assert "NodePort:          http  30080/TCP" in got
    assert "Endpoints:         10.1.0.7:8080" in got

    node = obj(
        "Node",
        {
            "metadata": {"name": "n1", "creationTimestamp": CREATED},
            "spec": {
                "unschedulable": True,
                "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}],
            },
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi"},
                "allocatable": {"cpu": "4", "memory": "8Gi"},
                "addresses": [{"type": "InternalIP", "address": "192.168.0.10"}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {"kubeletVersion": "v1.30.0"},
            },
        },
    )
    text = describe.describe_object(node, kinds.by_kind("Node"), {"pods": [POD]}, now=NOW)
    got = lines(text)
    assert "Taints:             k=v:NoSchedule" in got
    assert "Unschedulable:      true" in got
    assert "  InternalIP:  192.168.0.10" in got
    assert "Non-terminated Pods:          (1 in total)" in got
    assert any(line.split()[:4] == ["default", "web", "100m", "(2%)"] for line in got)
    assert any(line.split()[:3] == ["cpu", "100m", "(2%)"] for line in got)

    ns = obj("Namespace", {"metadata": {"name": "team"}, "status": {"phase": "Active"}})
    got = lines(
        describe.describe_object(
            ns, kinds.by_kind("Namespace"), {"resourcequotas": [], "limitranges": []}, now=NOW
        )
    )
    assert got[:4] == [
        "Name:         team",
        "Labels:       <none>",
        "Annotations:  <none>",
        "Status:       Active",
    ]
    assert "No resource quota." in got
    assert "No LimitRange resource." in got


def test_describe_generic_and_secret() -> None:
    lease = obj(
        "Lease",
        {
            "metadata": {"name": "l", "namespace": "kube-system", "uid": "u1"},
            "spec": {"holderIdentity": "ctrl-1", "leaseDurationSeconds": 15},
        },
    )
    got = lines(describe.describe_object(lease, kinds.by_kind("Lease"), {}, now=NOW))
    assert got[:4] == [
        "Name:         l",
        "Namespace:    kube-system",
        "Labels:       <none>",
        "Annotations:  <none>",
    ]
    for expected in [
        "API Version:  coordination.k8s.io/v1",
        "Kind:         Lease",
        "Metadata:",
        "  UID:  u1",
        "Spec:",
        "  Holder Identity:         ctrl-1",
        "  Lease Duration Seconds:  15",
    ]:
        assert expected in got, expected
    secret = obj(
        "Secret", {"metadata": {"name": "s"}, "type": "Opaque", "data": {"pw": "aHVudGVyMg=="}}
    )
    text = describe.describe_object(secret, kinds.by_kind("Secret"), {}, now=NOW)
    assert "pw:  7 bytes" in lines(text)
    assert "aHVudGVyMg" not in text


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("creationTimestamp", "Creation Timestamp"),
        ("apiVersion", "API Version"),
        ("podIP", "Pod IP"),
        ("clusterIPs", "Cluster IPs"),
        ("uid", "UID"),
        ("node-role", "Node-Role"),
        ("a.b", "a.b"),
    ],
)
def test_smart_label(field: str, label: str) -> None:
    assert describe.smart_label(field) == label


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:\t1\nlonger:\t2\n", "a:       1\nlonger:  2\n"),
        # a line without a tab ends the column block
        ("a:\t1\nbreak\nlonger:\t2\n", "a:  1\nbreak\nlonger:  2\n"),
        ("x\ty\tz\nxx\tyyyy\tz\n", "x   y     z\nxx  yyyy  z\n"),
    ],
)
def test_tabwrite(text: str, expected: str) -> None:
    assert tabwrite(text) == expected


def test_format_time() -> None:
    assert describe.format_time("2024-03-05T06:07:08Z") == "Tue, 05 Mar 2024 06:07:08 +0000"
    assert describe.format_time(None) == "<unset>"


class FakeClient:
    """Answers the reads ``describe`` makes; records them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def list(self, resource: str, namespace: str = "", **kw: Any) -> Any:
        self.calls.append((resource, namespace, kw))

        class Result:
            items = [event("Pulled", "ok")] if resource == "events" else []

        return Result()

    async def get(self, resource: str, name: str, namespace: str = "") -> Any:
        from control.api.errors import NotFound

        raise NotFound(f"{resource} {name} not found")


async def test_describe_fetches_events_through_the_client() -> None:
    client = FakeClient()
    text = await describe.describe(client, kinds.by_kind("Pod"), POD, now=NOW)
    assert client.calls == [
        (
            "events",
            "default",
            {"field_selector": "involvedObject.name=web,involvedObject.kind=Pod"},
        ),
    ]
    assert "  Normal  Pulled  5m    kubelet  ok" in lines(text)
    svc = obj("Service", {"metadata": {"name": "web", "namespace": "default"}})
    text = await describe.describe(client, kinds.by_kind("Service"), svc, now=NOW)
    # the Endpoints read failed (NotFound): describe still prints the service
    assert "Session Affinity:  None" in lines(text)
