"""A node authorizer over in-memory objects: the pods live in a real watch-cache
ResourceCache (so the graph follows real cache events), other kinds in a dict."""

from __future__ import annotations

from typing import Any

from control.api import kinds
from control.api.pb import core_pb2
from control.apiserver import codec
from control.apiserver.authz import Authorizer
from control.apiserver.node_authz import NodeAuthorizer
from control.apiserver.node_graph import NodeGraph
from control.apiserver.watchcache import CacheEvent, ResourceCache, cached_object

PODS = kinds.by_resource("pods")


class Objects:
    """Pods as watch-cache events; every other kind by (resource, namespace, name)."""

    def __init__(self, history: int = 1000) -> None:
        self.pods = ResourceCache(PODS, history, 0)
        self.revision = 0
        self.other: dict[tuple[str, str, str], Any] = {}
        self.graph = NodeGraph(lambda: self.pods)

    def put_pod(self, pod: core_pb2.Pod) -> None:
        self.revision += 1
        key = f"/registry/pods/{pod.metadata.namespace}/{pod.metadata.name}"
        co = cached_object(PODS, key, codec.encode_for_store(pod), self.revision)
        prev = self.pods.put(co)
        self.pods.record(CacheEvent(self.revision, False, co, prev))

    def delete_pod(self, namespace: str, name: str) -> None:
        self.revision += 1
        key = f"/registry/pods/{namespace}/{name}"
        prev = self.pods.remove(key)
        assert prev is not None
        last = cached_object(PODS, key, codec.encode_for_store(prev.obj), self.revision)
        self.pods.record(CacheEvent(self.revision, True, last, prev))

    def put(self, resource: str, obj: Any) -> None:
        self.other[(resource, obj.metadata.namespace, obj.metadata.name)] = obj

    def lookup(self, resource: str, namespace: str, name: str) -> Any:
        if resource == "pods":
            found = self.pods.objects.get(f"/registry/pods/{namespace}/{name}")
            return found.obj if found is not None else None
        return self.other.get((resource, namespace, name))

    def authorizer(self) -> Authorizer:
        return NodeAuthorizer(self.graph, self.lookup)


def no_nodes() -> Authorizer:
    """A node authorizer that knows no objects (chains whose tests are about other links)."""
    return Objects().authorizer()


def pod(namespace: str, name: str, node: str, **spec: Any) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.namespace, p.metadata.name = namespace, name
    p.metadata.uid = f"uid-{name}"
    p.spec.node_name = node
    for k, v in spec.items():
        setattr(p.spec, k, v)
    return p
