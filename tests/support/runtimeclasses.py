"""The ``host`` RuntimeClass: the explicit opt-in a pod needs to run on this machine's
files (its python, its sh) instead of in its image. Kubernetes creates no RuntimeClass by
default and neither does Flotilla, so the tests and tools that run host binaries create
this one themselves. Plain functions; ``ensure_host_runtime_class`` is idempotent, so
concurrent fixtures may both call it.
"""

from __future__ import annotations

from typing import Any

from control.api import convert, errors
from control.api.pb import node_pb2
from control.client.client import ApiClient

HOST = "host"
HOST_RUNTIME_CLASS = {
    "apiVersion": "node.k8s.io/v1",
    "kind": "RuntimeClass",
    "metadata": {"name": HOST},
    "handler": HOST,
}


def host_runtime_class() -> node_pb2.RuntimeClass:
    return convert.from_dict(HOST_RUNTIME_CLASS, node_pb2.RuntimeClass())


async def ensure_host_runtime_class(client: ApiClient) -> None:
    """Create the ``host`` RuntimeClass unless it is already there."""
    try:
        await client.create(host_runtime_class())
    except errors.AlreadyExists:
        pass


def pod_spec_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside a manifest of a Pod or a workload kind (a CronJob's is inside
    its jobTemplate)."""
    kind = doc.get("kind")
    if kind == "Pod":
        return doc.setdefault("spec", {})  # type: ignore[no-any-return]
    spec = doc.setdefault("spec", {})
    if kind == "CronJob":
        spec = spec.setdefault("jobTemplate", {}).setdefault("spec", {})
    return spec.setdefault("template", {}).setdefault("spec", {})  # type: ignore[no-any-return]


def on_host(doc: dict[str, Any]) -> dict[str, Any]:
    """Name the ``host`` RuntimeClass in a Pod or workload manifest (in place), for a
    document whose images' commands this machine has; returns ``doc``."""
    pod_spec_of(doc)["runtimeClassName"] = HOST
    return doc
