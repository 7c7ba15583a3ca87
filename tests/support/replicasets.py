"""ReplicaSets and their pods in tests against a real apiserver: build them, list and
count the live pods a selector matches.
"""

from __future__ import annotations

from typing import Any

from control.api import convert
from control.api.pb import apps_pb2, core_pb2
from control.client.client import ApiClient


def replica_set(
    name: str, replicas: int, *, app: str | None = None, min_ready: int = 0
) -> apps_pb2.ReplicaSet:
    app = app or name
    rs: apps_pb2.ReplicaSet = convert.from_dict(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "minReadySeconds": min_ready,
                "selector": {"matchLabels": {"app": app}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        },
        apps_pb2.ReplicaSet(),
    )
    return rs


def bare_pod(name: str, **labels: str) -> core_pb2.Pod:
    pod: core_pb2.Pod = convert.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
        core_pb2.Pod(),
    )
    return pod


async def live_pods(c: ApiClient, selector: str) -> list[Any]:
    items = (await c.list_all("pods", "default", label_selector=selector)).items
    return [p for p in items if not p.metadata.HasField("deletion_timestamp")]


async def count_is(c: ApiClient, selector: str, n: int) -> bool:
    return len(await live_pods(c, selector)) == n
