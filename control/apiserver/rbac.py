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
  speaks;
- escalation prevention (:class:`EscalationGuard`, run by admission): nobody grants, by
  writing a role or a binding, what they do not hold, unless allowed ``escalate``/``bind``.

The authorizer runs on every request, so it never scans bindings per call: an
:class:`Index` maps each user and group name to the rules granted to it (with the
namespace they hold in), rebuilt only when a Role, ClusterRole or binding changed (the
:class:`PolicySource` says so with a cheap version number).

Concurrency: event-loop only; the index is rebuilt synchronously inside ``authorize``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from control.api import errors
from control.apiserver.authn import UserInfo
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
        self.cluster_roles = cluster_roles = {
            r.metadata.name: tuple(compile_rule(x) for x in r.rules)
            for r in source.cluster_roles()}
        self.roles = roles = {(r.metadata.namespace, r.metadata.name):
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


# -- escalation prevention ------------------------------------------------------------------

def rule_covers(owner: Rule, verb: str, group: str, resource: str, name: str) -> bool:
    """Whether ``owner`` grants the one permission (verb, group, resource, name); a
    wildcard asked for is covered only by the same wildcard."""
    if ALL not in owner.verbs and verb not in owner.verbs:
        return False
    if ALL not in owner.groups and group not in owner.groups:
        return False
    if ALL not in owner.resources and resource not in owner.resources:
        base, slash, sub = resource.partition("/")
        if not (slash and base != ALL and f"*/{sub}" in owner.resources):
            return False
    return not owner.names or (bool(name) and name in owner.names)


def url_covered(owner: Rule, verb: str, url: str) -> bool:
    if ALL not in owner.verbs and verb not in owner.verbs:
        return False
    return any(u == ALL or u == url or (u.endswith("*") and url.startswith(u[:-1]))
               for u in owner.urls)


def uncovered(owned: Sequence[Rule], wanted: Iterable[Rule]) -> list[Rule]:
    """The rules of ``wanted`` (each broken into single permissions) that ``owned`` does not
    grant in full: Kubernetes' ConfirmNoEscalation."""
    missing = []
    for w in wanted:
        if w.urls:
            ok = all(any(url_covered(o, v, u) for o in owned) for v in w.verbs for u in w.urls)
        else:
            names = w.names or frozenset({""})
            ok = all(any(rule_covers(o, v, g, r, n) for o in owned)
                     for v in w.verbs for g in w.groups for r in w.resources for n in names)
        if not ok:
            missing.append(w)
    return missing


def describe_rule(r: Rule) -> str:
    """A rule as Kubernetes prints it in an escalation refusal."""
    def q(xs: Iterable[str]) -> str:
        return "[" + " ".join(f'"{x}"' for x in sorted(xs)) + "]"
    parts = []
    if r.urls:
        parts.append(f"NonResourceURLs:{q(r.urls)}")
    else:
        parts.append(f"APIGroups:{q(r.groups)}")
        parts.append(f"Resources:{q(r.resources)}")
        if r.names:
            parts.append(f"ResourceNames:{q(r.names)}")
    parts.append(f"Verbs:{q(r.verbs)}")
    return "{" + ", ".join(parts) + "}"


FULL_AUTHORITY = Rule(frozenset({ALL}), frozenset({ALL}), frozenset({ALL}), frozenset(), ())
RBAC_GROUP = "rbac.authorization.k8s.io"


class EscalationGuard:
    """Admission of Roles, ClusterRoles and their bindings (Kubernetes' policy-based
    storage): a user writes a role only with rules they hold themselves (where the role
    applies) unless allowed the ``escalate`` verb on it, and binds a role only if they hold
    its rules or are allowed ``bind`` on it. ``system:masters`` and writes without a user
    (the server's own bootstrap) pass. ``allowed`` is the whole authorizer chain."""

    def __init__(self, allowed: Callable[[Attributes], bool], rbac: RBACAuthorizer,
                 masters: str) -> None:
        self.allowed = allowed
        self.rbac = rbac
        self.masters = masters

    def check(self, resource: str, obj: Any, user: UserInfo | None,
              old: Any | None = None) -> None:
        if user is None or self.masters in user.groups:
            return
        if old is not None and only_gc_fields_changed(obj, old):
            return  # the garbage collector's ownerReferences/finalizers, as Kubernetes
        ns, name = obj.metadata.namespace, obj.metadata.name
        if resource in ("roles", "clusterroles"):
            if self.allowed(Attributes(user, "escalate", resource, RBAC_GROUP, "", ns, name)):
                return
            wanted = [compile_rule(r) for r in obj.rules]
            if resource == "clusterroles" and obj.aggregation_rule.cluster_role_selectors:
                wanted.append(FULL_AUTHORITY)  # aggregation can pull in any rule
            self._confirm(user, resource, name, ns, wanted)
        elif resource in ("rolebindings", "clusterrolebindings"):
            ref = obj.role_ref
            ref_resource = "clusterroles" if ref.kind == "ClusterRole" else "roles"
            if self.allowed(Attributes(user, "bind", ref_resource, RBAC_GROUP, "", ns,
                                       ref.name)):
                return
            index = self.rbac.index()
            rules = (index.cluster_roles.get(ref.name) if ref.kind == "ClusterRole"
                     else index.roles.get((ns, ref.name)))
            if rules is None:
                raise errors.Forbidden(
                    f'{resource}.{RBAC_GROUP} "{name}" is forbidden: {ref.kind.lower()}s.'
                    f'{RBAC_GROUP} "{ref.name}" not found, and user "{user.name}" may not '
                    f"bind it")
            self._confirm(user, resource, name, ns, list(rules))

    def _confirm(self, user: UserInfo, resource: str, name: str, ns: str,
                 wanted: list[Rule]) -> None:
        owned = list(self.rbac.index().rules_for(user.name, user.groups, ns))
        missing = uncovered(owned, wanted)
        if missing:
            groups = "[" + " ".join(f'"{g}"' for g in user.groups) + "]"
            raise errors.Forbidden(
                f'{resource}.{RBAC_GROUP} "{name}" is forbidden: user "{user.name}" '
                f"(groups={groups}) is attempting to grant RBAC permissions not currently "
                f"held:\n" + "\n".join(describe_rule(r) for r in missing))


def only_gc_fields_changed(new: Any, old: Any) -> bool:
    """Whether an update changes nothing but what the garbage collector writes
    (ownerReferences, finalizers): such an update grants nothing, so Kubernetes lets it
    through without the escalation check."""
    a, b = type(new)(), type(old)()
    a.CopyFrom(new)
    b.CopyFrom(old)
    for m in (a.metadata, b.metadata):
        m.ClearField("owner_references")
        m.ClearField("finalizers")
        m.ClearField("resource_version")
        m.ClearField("generation")
    return bool(a == b)


def serviceaccount_groups(namespace: str) -> tuple[str, ...]:
    """The groups every ServiceAccount of ``namespace`` is in."""
    return (SA_GROUP, f"{SA_GROUP}:{namespace}")


__all__ = ["ALL", "FULL_AUTHORITY", "RBAC_GROUP", "SA_GROUP", "SA_PREFIX", "EscalationGuard",
           "Index", "PolicySource", "RBACAuthorizer", "Rule", "compile_rule", "describe_rule", "only_gc_fields_changed",
           "resource_matches", "rule_allows", "rule_covers", "serviceaccount_groups",
           "serviceaccount_user", "subject_key", "uncovered", "url_covered", "url_matches"]
