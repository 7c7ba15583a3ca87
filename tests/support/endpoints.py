"""A Service selecting app=web and pods for it, for the endpoints controllers' tests."""

from __future__ import annotations

from typing import Any

from control.api import convert
from control.api.pb import core_pb2


def service(**spec: Any) -> core_pb2.Service:
    spec.setdefault("selector", {"app": "web"})
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": 8080,
                               "protocol": "TCP"}])
    return convert.from_dict({"metadata": {"name": "web", "namespace": "default",
                                           "labels": {"team": "a"}}, "spec": spec},
                             core_pb2.Service())


def pod(name: str, ip: str, *, ready: bool = True, app: str = "web", phase: str = "Running",
        ports: list[dict[str, Any]] | None = None, deleting: bool = False,
        **spec: Any) -> core_pb2.Pod:
    d: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                     "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                                                   "ports": ports or []}], **spec},
        "status": {"phase": phase, "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    if deleting:
        d["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return convert.from_dict(d, core_pb2.Pod())


async def set_ready(client: Any, name: str, ready: bool, ip: str) -> None:
    p = await client.get(core_pb2.Pod, name, "default")
    p.status.phase = "Running"
    p.status.pod_ip = ip
    del p.status.conditions[:]
    p.status.conditions.add(type="Ready", status="True" if ready else "False")
    await client.update_status(p)


async def make_pod(client: Any, name: str) -> None:
    p = pod(name, "")
    p.metadata.uid = ""
    p.ClearField("status")
    await client.create(p)

