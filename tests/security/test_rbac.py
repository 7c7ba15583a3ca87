"""RBAC semantics as tables, from the examples of Kubernetes' RBAC documentation (pod-reader
bound to jane, secret-reader bound to dave in development and to the manager group
everywhere, pods/log, a configmap by name, /healthz), plus subresource wildcards,
ServiceAccount subjects and the index following changes."""

from __future__ import annotations

import pytest

from control.api import errors
from control.apiserver.authn import UserInfo
from control.apiserver.authz import Attributes, Decision, default_chain
from control.apiserver.rbac import (
    EscalationGuard,
    RBACAuthorizer,
    Rule,
    compile_rule,
    rule_allows,
    uncovered,
)
from tests.support.node_authz import no_nodes
from tests.support.rbac import Source, binding, cluster_role, role, rule, subject


def documented() -> Source:
    s = Source()
    s.add("roles", role("default", "pod-reader", rule(["get", "watch", "list"], [""],
                                                        ["pods"])))
    s.add("clusterroles", cluster_role("secret-reader",
                                       rule(["get", "watch", "list"], [""], ["secrets"])))
    s.add("roles", role("default", "pod-and-pod-logs-reader",
                        rule(["get", "list"], [""], ["pods", "pods/log"])))
    s.add("roles", role("default", "configmap-updater",
                        rule(["update", "get"], [""], ["configmaps"], ["my-configmap"])))
    s.add("clusterroles", cluster_role("health", rule(["get", "post"], urls=["/healthz",
                                                                             "/healthz/*"])))
    s.add("clusterroles", cluster_role("scaler", rule(["update"], ["apps"], ["*/scale"])))
    s.add("clusterroles", cluster_role("deployer", rule(["*"], ["apps"], ["deployments"])))
    s.add("rolebindings", binding("default", "read-pods", "Role", "pod-reader",
                                  subject("User", "jane")))
    s.add("rolebindings", binding("development", "read-secrets", "ClusterRole",
                                  "secret-reader", subject("User", "dave")))
    s.add("clusterrolebindings", binding("", "read-secrets-global", "ClusterRole",
                                         "secret-reader", subject("Group", "manager")))
    s.add("rolebindings", binding("default", "logs", "Role", "pod-and-pod-logs-reader",
                                  subject("ServiceAccount", "logger"),
                                  subject("ServiceAccount", "other", "kube-system")))
    s.add("rolebindings", binding("default", "cm", "Role", "configmap-updater",
                                  subject("Group", "system:serviceaccounts:default")))
    s.add("clusterrolebindings", binding("", "health", "ClusterRole", "health",
                                         subject("Group", "system:authenticated")))
    s.add("clusterrolebindings", binding("", "scale", "ClusterRole", "scaler",
                                         subject("User", "ops")))
    s.add("rolebindings", binding("team", "deploy", "ClusterRole", "deployer",
                                  subject("User", "ops")))
    # a binding to a role that does not exist grants nothing
    s.add("rolebindings", binding("default", "ghost", "Role", "missing",
                                  subject("User", "jane")))
    return s


AUTH = ("system:authenticated",)
JANE = UserInfo("jane", AUTH)
DAVE = UserInfo("dave", AUTH)
MANAGER = UserInfo("maria", ("manager", *AUTH))
OPS = UserInfo("ops", AUTH)
LOGGER = UserInfo("system:serviceaccount:default:logger",
                  ("system:serviceaccounts", "system:serviceaccounts:default", *AUTH))
OTHER = UserInfo("system:serviceaccount:kube-system:other",
                 ("system:serviceaccounts", "system:serviceaccounts:kube-system", *AUTH))
CASES = [
    # Role pod-reader bound to jane in default
    (JANE, "get", "", "pods", "", "default", "web", True),
    (JANE, "list", "", "pods", "", "default", "", True),
    (JANE, "watch", "", "pods", "", "default", "", True),
    (JANE, "delete", "", "pods", "", "default", "web", False),
    (JANE, "get", "", "pods", "", "other", "web", False),       # another namespace
    (JANE, "list", "", "pods", "", "", "", False),              # all namespaces
    (JANE, "get", "", "pods", "log", "default", "web", False),  # a subresource is apart
    (JANE, "get", "apps", "pods", "", "default", "web", False),  # another API group
    # ClusterRole secret-reader bound by a RoleBinding: only in its namespace
    (DAVE, "get", "", "secrets", "", "development", "s", True),
    (DAVE, "get", "", "secrets", "", "default", "s", False),
    (DAVE, "list", "", "secrets", "", "", "", False),
    # bound by a ClusterRoleBinding to a group: everywhere, all namespaces at once too
    (MANAGER, "get", "", "secrets", "", "prod", "s", True),
    (MANAGER, "list", "", "secrets", "", "", "", True),
    (MANAGER, "create", "", "secrets", "", "prod", "", False),
    # pods/log named explicitly; ServiceAccount subject defaulting to the binding's ns
    (LOGGER, "get", "", "pods", "log", "default", "web", True),
    (LOGGER, "get", "", "pods", "exec", "default", "web", False),
    (LOGGER, "get", "", "pods", "", "default", "web", True),
    (OTHER, "get", "", "pods", "log", "default", "web", True),
    (OTHER, "get", "", "pods", "log", "kube-system", "web", False),
    # resourceNames: only that name; never create or list (no name)
    (LOGGER, "update", "", "configmaps", "", "default", "my-configmap", True),
    (LOGGER, "update", "", "configmaps", "", "default", "another", False),
    (LOGGER, "list", "", "configmaps", "", "default", "", False),
    (LOGGER, "create", "", "configmaps", "", "default", "", False),
    (LOGGER, "create", "", "configmaps", "", "default", "my-configmap", False),
    # */scale: the scale subresource of any resource of the group
    (OPS, "update", "apps", "deployments", "scale", "x", "d", True),
    (OPS, "update", "apps", "statefulsets", "scale", "x", "d", True),
    (OPS, "update", "apps", "deployments", "", "x", "d", False),
    (OPS, "update", "", "replicationcontrollers", "scale", "x", "d", False),
    # verbs "*": every verb on the resource but not its subresources
    (OPS, "delete", "apps", "deployments", "", "team", "d", True),
    (OPS, "deletecollection", "apps", "deployments", "", "team", "", True),
    (OPS, "get", "apps", "deployments", "status", "team", "d", False),
]


@pytest.mark.parametrize(("user", "verb", "group", "resource", "sub", "ns", "name",
                          "allowed"), CASES)
def test_documented_rules(user: UserInfo, verb: str, group: str, resource: str, sub: str,
                          ns: str, name: str, allowed: bool) -> None:
    z = RBACAuthorizer(documented())
    a = Attributes(user, verb, resource, group, sub, ns, name)
    assert (z.authorize(a) is Decision.ALLOW) is allowed


@pytest.mark.parametrize(("user", "verb", "path", "allowed"), [
    (JANE, "get", "/healthz", True),
    (JANE, "get", "/healthz/etcd", True),
    (JANE, "get", "/healthzx", False),
    (JANE, "delete", "/healthz", False),
    (JANE, "get", "/metrics", False),
])
def test_non_resource_urls(user: UserInfo, verb: str, path: str, allowed: bool) -> None:
    z = RBACAuthorizer(documented())
    assert (z.authorize(Attributes(user, verb, path=path)) is Decision.ALLOW) is allowed


@pytest.mark.parametrize(("resources", "resource", "sub", "allowed"), [
    (["*"], "pods", "", True),
    (["*"], "pods", "exec", True),
    (["pods/*"], "pods", "exec", False),  # Kubernetes has no resource/* form
    (["*/exec"], "pods", "exec", True),
    (["nodes/proxy"], "nodes", "proxy", True),
    (["nodes"], "nodes", "proxy", False),
    (["pods/eviction"], "pods", "eviction", True),
])
def test_resource_forms(resources: list[str], resource: str, sub: str,
                        allowed: bool) -> None:
    r = compile_rule(rule(["create"], ["*"], resources))
    assert rule_allows(r, Attributes(JANE, "create", resource, "", sub, "ns", "x")) is allowed


def test_resource_rules_never_match_urls_nor_url_rules_resources() -> None:
    r = compile_rule(rule(["get"], ["*"], ["*"]))
    assert not rule_allows(r, Attributes(JANE, "get", path="/healthz"))
    u = compile_rule(rule(["get"], urls=["*"]))
    assert not rule_allows(u, Attributes(JANE, "get", "pods", "", "", "default", "x"))


def test_no_credentials_no_opinion() -> None:
    z = RBACAuthorizer(documented())
    assert z.authorize(Attributes(None, "get", "pods", "", "", "default", "x")) \
        is Decision.NO_OPINION


def test_index_rebuilt_only_on_change() -> None:
    s = documented()
    z = RBACAuthorizer(s)
    carl = UserInfo("carl", AUTH)
    a = Attributes(carl, "get", "pods", "", "", "default", "x")
    assert z.authorize(a) is Decision.NO_OPINION
    reads = s.reads
    for _ in range(10):
        z.authorize(a)
    assert s.reads == reads
    s.add("rolebindings", binding("default", "carl", "Role", "pod-reader",
                                  subject("User", "carl")))
    assert z.authorize(a) is Decision.ALLOW
    assert s.reads == reads + 1


def test_in_the_chain_denial_wording() -> None:
    chain = default_chain(no_nodes(), [RBACAuthorizer(documented())])
    chain.check(Attributes(JANE, "get", "pods", "", "", "default", "web"))
    with pytest.raises(errors.Forbidden, match=(
            'pods "web" is forbidden: User "jane" cannot delete resource "pods" in API '
            'group "" in the namespace "default"')):
        chain.check(Attributes(JANE, "delete", "pods", "", "", "default", "web"))


def r(verbs: list[str], groups: list[str], resources: list[str],
      names: list[str] | None = None) -> Rule:
    return compile_rule(rule(verbs, groups, resources, names))


@pytest.mark.parametrize(("owned", "wanted", "covered"), [
    ([r(["get", "list"], [""], ["pods"])], r(["get"], [""], ["pods"]), True),
    ([r(["get"], [""], ["pods"])], r(["get", "delete"], [""], ["pods"]), False),
    ([r(["*"], ["*"], ["*"])], r(["*"], ["*"], ["*"]), True),
    ([r(["get"], [""], ["pods"])], r(["*"], [""], ["pods"]), False),  # * asked, get held
    ([r(["get"], [""], ["pods"])], r(["get"], ["*"], ["pods"]), False),
    ([r(["get"], [""], ["*"])], r(["get"], [""], ["pods/log"]), True),
    ([r(["get"], [""], ["*/log"])], r(["get"], [""], ["pods/log"]), True),
    ([r(["get"], [""], ["pods"])], r(["get"], [""], ["pods/log"]), False),
    ([r(["get"], [""], ["pods"], ["a"])], r(["get"], [""], ["pods"], ["a"]), True),
    ([r(["get"], [""], ["pods"], ["a"])], r(["get"], [""], ["pods"]), False),
    ([r(["get"], [""], ["pods"], ["a"])], r(["get"], [""], ["pods"], ["a", "b"]), False),
    # rules add up: two held rules cover one wanted across them
    ([r(["get"], [""], ["pods"]), r(["list"], [""], ["pods"])],
     r(["get", "list"], [""], ["pods"]), True),
    ([compile_rule(rule(["get"], urls=["/healthz*"]))],
     compile_rule(rule(["get"], urls=["/healthz/etcd"])), True),
    ([compile_rule(rule(["get"], urls=["/healthz"]))],
     compile_rule(rule(["get"], urls=["/metrics"])), False),
])
def test_escalation_coverage(owned: list[Rule], wanted: Rule, covered: bool) -> None:
    assert (uncovered(owned, [wanted]) == []) is covered


def guard_for(source: Source) -> EscalationGuard:
    z = RBACAuthorizer(source)
    chain = default_chain(no_nodes(), [z])
    return EscalationGuard(lambda a: chain.decide(a) is Decision.ALLOW, z, "system:masters")


def test_escalation_guard() -> None:
    s = documented()
    guard = guard_for(s)
    # jane holds pod-reader in default: she may write a role with those rules only
    guard.check("roles", role("default", "mine", rule(["get"], [""], ["pods"])), JANE)
    with pytest.raises(errors.Forbidden, match="attempting to grant RBAC permissions not "
                                               "currently held"):
        guard.check("roles", role("default", "mine", rule(["delete"], [""], ["pods"])), JANE)
    with pytest.raises(errors.Forbidden):  # not held in that namespace
        guard.check("roles", role("other", "mine", rule(["get"], [""], ["pods"])), JANE)
    with pytest.raises(errors.Forbidden):  # aggregation asks for full authority
        agg = cluster_role("agg")
        agg.aggregation_rule.cluster_role_selectors.add().match_labels["x"] = "y"
        guard.check("clusterroles", agg, MANAGER)
    # binding pod-reader in default: jane holds its rules, dave does not
    rb = binding("default", "b", "Role", "pod-reader", subject("User", "carl"))
    guard.check("rolebindings", rb, JANE)
    with pytest.raises(errors.Forbidden):
        guard.check("rolebindings", rb, DAVE)
    with pytest.raises(errors.Forbidden, match="not found"):
        guard.check("rolebindings", binding("default", "b", "Role", "nope",
                                            subject("User", "carl")), JANE)
    # the bind verb on that role, or escalate on roles, lift the check
    s.add("clusterroles", cluster_role("binder", rule(["bind"], ["rbac.authorization.k8s.io"],
                                                       ["roles"], ["pod-reader"]),
                                       rule(["escalate"], ["rbac.authorization.k8s.io"],
                                            ["roles"])))
    s.add("rolebindings", binding("default", "dave-binds", "ClusterRole", "binder",
                                  subject("User", "dave")))
    guard.check("rolebindings", rb, DAVE)
    guard.check("roles", role("default", "big", rule(["*"], ["*"], ["*"])), DAVE)
    with pytest.raises(errors.Forbidden):
        guard.check("rolebindings", binding("default", "c", "ClusterRole", "deployer",
                                            subject("User", "carl")), DAVE)
    # masters and the server itself (no user) pass
    guard.check("clusterroles", cluster_role("all", rule(["*"], ["*"], ["*"])),
                UserInfo("root", ("system:masters",)))
    guard.check("clusterroles", cluster_role("all", rule(["*"], ["*"], ["*"])), None)
