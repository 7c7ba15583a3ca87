"""Role-based access control: Kubernetes' RBAC authorizer over the watch cache.

Owns the rule semantics (pure functions, table-tested) and :class:`RBACAuthorizer`, one
link of the authorizer chain:

- a :class:`Rule` (a compiled ``PolicyRule``) allows a request when its verbs, apiGroups,
  resources (``pods``, ``pods/log``, ``*/scale``, ``*``) and resourceNames (empty: any
  name; a list: only those names, so never a ``list`` or a ``create``) all match;
  a rule with nonResourceURLs (``/healthz``, ``/api/*``) matches only non-resource requests;
- subjects: a ``User`` by name, a ``Group`` by one of the user's groups, a
  ``ServiceAccount`` as the user ``system:serviceaccount:<ns>:<name>`` (its namespace
  defaulting to the binding's);
- a ClusterRoleBinding grants its ClusterRole everywhere; a RoleBinding grants its Role, or
  a ClusterRole, in the binding's namespace only;
- RBAC only allows: no match is no opinion, so the next link (or the chain's final denial)
  speaks.

The authorizer runs on every request, so it never scans bindings per call: an
:class:`Index` maps each user and group name to the rules granted to it (with the
namespace they hold in), rebuilt only when a Role, ClusterRole or binding changed (the
:class:`PolicySource` says so with a cheap version number).

Concurrency: event-loop only; the index is rebuilt synchronously inside ``authorize``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from control.apiserver.authz import Attributes, Decision

ALL = "*"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
CLUSTER = ""  # the namespace of a rule granted cluster-wide


@dataclass(frozen=True, slots=True)
class Rule:
    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]
    names: frozenset[str]
    urls: tuple[str, ...]


def compile_rule(r: Any) -> Rule:
    """A ``PolicyRule`` message as a :class:`Rule`."""
    return Rule(frozenset(r.verbs), frozenset(r.api_groups), frozenset(r.resources),
                frozenset(r.resource_names), tuple(r.non_resource_urls))


def resource_matches(rule: Rule, resource: str, sub: str) -> bool:
    if ALL in rule.resources:
        return True
    if sub:
        return f"{resource}/{sub}" in rule.resources or f"*/{sub}" in rule.resources
    return resource in rule.resources


def url_matches(rule: Rule, path: str) -> bool:
    for u in rule.urls:
        if u == ALL or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def rule_allows(rule: Rule, a: Attributes) -> bool:
    if a.verb not in rule.verbs and ALL not in rule.verbs:
        return False
    if not a.resource:
        return bool(a.path) and url_matches(rule, a.path)
    if a.group not in rule.groups and ALL not in rule.groups:
        return False
    if not resource_matches(rule, a.resource, a.subresource):
        return False
    # a create names no existing object: Kubernetes never lets resourceNames authorize it
    return not rule.names or (a.verb != "create" and a.name in rule.names)


def serviceaccount_user(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def subject_key(subject: Any, binding_namespace: str) -> tuple[str, str] | None:
    """("user"|"group", name) a subject stands for, None for one that names nobody."""
    if subject.kind == "User" and subject.name:
        return ("user", subject.name)
    if subject.kind == "Group" and subject.name:
        return ("group", subject.name)
    if subject.kind == "ServiceAccount" and subject.name:
        ns = subject.namespace or binding_namespace
        return ("user", serviceaccount_user(ns, subject.name)) if ns else None
    return None


class PolicySource(Protocol):
    """The stored RBAC objects (decoded messages)."""

    def version(self) -> object: ...
    def roles(self) -> Iterable[Any]: ...
    def cluster_roles(self) -> Iterable[Any]: ...
    def role_bindings(self) -> Iterable[Any]: ...
    def cluster_role_bindings(self) -> Iterable[Any]: ...


Grants = dict[tuple[str, str], list[tuple[str, tuple[Rule, ...]]]]


class Index:
    """(kind, name) of a user or group -> [(namespace or CLUSTER, rules)]."""

    def __init__(self, source: PolicySource) -> None:
        cluster_roles = {r.metadata.name: tuple(compile_rule(x) for x in r.rules)
                         for r in source.cluster_roles()}
        roles = {(r.metadata.namespace, r.metadata.name):
                 tuple(compile_rule(x) for x in r.rules) for r in source.roles()}
        self.grants: Grants = {}
        for b in source.cluster_role_bindings():
            if b.role_ref.kind == "ClusterRole":
                self._grant(b, CLUSTER, cluster_roles.get(b.role_ref.name, ()))
        for b in source.role_bindings():
            ns = b.metadata.namespace
            if b.role_ref.kind == "ClusterRole":
                rules = cluster_roles.get(b.role_ref.name, ())
            elif b.role_ref.kind == "Role":
                rules = roles.get((ns, b.role_ref.name), ())
            else:
                continue
            self._grant(b, ns, rules)

    def _grant(self, binding: Any, namespace: str, rules: tuple[Rule, ...]) -> None:
        if not rules:
            return
        for s in binding.subjects:
            key = subject_key(s, binding.metadata.namespace)
            if key is not None:
                self.grants.setdefault(key, []).append((namespace, rules))

    def rules_for(self, user: str, groups: Sequence[str],
                  namespace: str) -> Iterable[Rule]:
        """Every rule granted to this user in ``namespace`` (cluster-wide ones included)."""
        keys = [("user", user), *(("group", g) for g in groups)]
        for key in keys:
            for ns, rules in self.grants.get(key, ()):
                if ns == CLUSTER or ns == namespace:
                    yield from rules

    def allows(self, a: Attributes) -> bool:
        if a.user is None:
            return False
        return any(rule_allows(r, a)
                   for r in self.rules_for(a.user.name, a.user.groups, a.namespace))


class RBACAuthorizer:
    def __init__(self, source: PolicySource) -> None:
        self.source = source
        self._version: object = None
        self._index: Index | None = None

    def index(self) -> Index:
        v = self.source.version()
        if self._index is None or v != self._version:
            self._index = Index(self.source)
            self._version = v
        return self._index

    def authorize(self, a: Attributes) -> Decision:
        if a.user is None:
            return Decision.NO_OPINION
        return Decision.ALLOW if self.index().allows(a) else Decision.NO_OPINION


def serviceaccount_groups(namespace: str) -> tuple[str, ...]:
    """The groups every ServiceAccount of ``namespace`` is in."""
    return (SA_GROUP, f"{SA_GROUP}:{namespace}")


__all__ = ["ALL", "SA_GROUP", "SA_PREFIX", "Index", "PolicySource", "RBACAuthorizer", "Rule",
           "compile_rule", "resource_matches", "rule_allows", "serviceaccount_groups",
           "serviceaccount_user", "subject_key", "url_matches"]
