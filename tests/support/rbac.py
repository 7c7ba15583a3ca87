"""RBAC objects from short calls, and an in-memory source of them for the authorizer."""

from __future__ import annotations

from typing import Any

from control.api.pb import rbac_pb2


def rule(verbs: list[str], groups: list[str] | None = None,
         resources: list[str] | None = None, names: list[str] | None = None,
         urls: list[str] | None = None) -> rbac_pb2.PolicyRule:
    return rbac_pb2.PolicyRule(verbs=verbs, api_groups=groups or [],
                               resources=resources or [], resource_names=names or [],
                               non_resource_urls=urls or [])


def role(ns: str, name: str, *rules: rbac_pb2.PolicyRule) -> rbac_pb2.Role:
    r = rbac_pb2.Role(rules=rules)
    r.metadata.namespace, r.metadata.name = ns, name
    return r


def cluster_role(name: str, *rules: rbac_pb2.PolicyRule) -> rbac_pb2.ClusterRole:
    r = rbac_pb2.ClusterRole(rules=rules)
    r.metadata.name = name
    return r


def subject(kind: str, name: str, ns: str = "") -> rbac_pb2.Subject:
    return rbac_pb2.Subject(kind=kind, name=name, namespace=ns)


def binding(ns: str, name: str, kind: str, ref: str,
            *subjects: rbac_pb2.Subject) -> Any:
    b: Any = (rbac_pb2.RoleBinding() if ns else rbac_pb2.ClusterRoleBinding())
    b.metadata.namespace, b.metadata.name = ns, name
    b.subjects.extend(subjects)
    b.role_ref.kind, b.role_ref.name = kind, ref
    b.role_ref.api_group = "rbac.authorization.k8s.io"
    return b


class Source:
    def __init__(self) -> None:
        self.objs: dict[str, list[Any]] = {"roles": [], "clusterroles": [],
                                           "rolebindings": [], "clusterrolebindings": []}
        self.gen = 0
        self.reads = 0

    def add(self, resource: str, obj: Any) -> None:
        self.objs[resource].append(obj)
        self.gen += 1

    def version(self) -> object:
        return self.gen

    def roles(self) -> list[Any]:
        self.reads += 1
        return self.objs["roles"]

    def cluster_roles(self) -> list[Any]:
        return self.objs["clusterroles"]

    def role_bindings(self) -> list[Any]:
        return self.objs["rolebindings"]

    def cluster_role_bindings(self) -> list[Any]:
        return self.objs["clusterrolebindings"]

