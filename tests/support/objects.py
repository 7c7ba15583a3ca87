"""Small API objects tests build: a ConfigMap, a Pod, a Deployment, as Kubernetes JSON
converted to messages.
"""

from __future__ import annotations

from typing import Any

from control.api import convert
from control.api.pb import apps_pb2, core_pb2


def cm(
    name: str, ns: str = "default", labels: dict[str, str] | None = None, **data: str
) -> core_pb2.ConfigMap:
    return convert.from_dict(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "data": data,
        },
        core_pb2.ConfigMap(),
    )


def pod(name: str, node: str = "", ns: str = "default", **labels: str) -> core_pb2.Pod:
    spec: dict[str, Any] = {
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]
    }
    if node:
        spec["nodeName"] = node
    return convert.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": spec,
        },
        core_pb2.Pod(),
    )


def deployment(name: str, replicas: int = 2) -> apps_pb2.Deployment:
    return convert.from_dict(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        },
        apps_pb2.Deployment(),
    )
