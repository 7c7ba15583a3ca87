"""Self reviews over the authorizer chain, as tables: what each link says a user holds."""

from __future__ import annotations

import pytest

from control.api import errors
from control.apiserver.authn import UserInfo
from control.apiserver.authz import Attributes, Chain, default_chain
from control.apiserver.rbac import FULL_AUTHORITY, RBACAuthorizer, compile_rule
from control.apiserver.selfreview import (
    ACCESS,
    ALL_URLS,
    WHOAMI,
    access_review,
    caller,
    rules_review,
)
from tests.support.node_authz import no_nodes
from tests.support.rbac import Source, binding, cluster_role, rule, subject

JANE = UserInfo("jane", ("system:authenticated",))


def chain() -> Chain:
    s = Source()
    s.add("clusterroles", cluster_role("pod-reader", rule(["get", "list"], [""], ["pods"])))
    s.add("clusterroles", cluster_role("disco", rule(["get"], urls=["/api"])))
    s.add("rolebindings", binding("dev", "b", "ClusterRole", "pod-reader",
                                  subject("User", "jane")))
    s.add("clusterrolebindings", binding("", "d", "ClusterRole", "disco",
                                         subject("Group", "system:authenticated")))
    return default_chain(no_nodes(), [RBACAuthorizer(s)])


POD_READ = compile_rule(rule(["get", "list"], [""], ["pods"]))
DISCO = compile_rule(rule(["get"], urls=["/api"]))


@pytest.mark.parametrize(("user", "namespace", "want", "incomplete"), [
    (JANE, "dev", [POD_READ, DISCO], False),
    (JANE, "prod", [DISCO], False),
    (UserInfo("admin", ("system:masters",)), "dev", [FULL_AUTHORITY, ALL_URLS], False),
    # a component holds only what RBAC grants it (nothing in this chain)
    (UserInfo("system:kube-scheduler"), "", [], False),
    (UserInfo("system:node:n1", ("system:nodes",)), "dev", [], True),
])
def test_rules_review(user: UserInfo, namespace: str, want: list[object],
                      incomplete: bool) -> None:
    assert rules_review(chain(), user, namespace) == (want, incomplete)


@pytest.mark.parametrize(("verb", "resource", "ns", "path", "allowed"), [
    ("get", "pods", "dev", "", True),
    ("create", "pods", "dev", "", False),
    ("get", "pods", "prod", "", False),
    ("get", "", "", "/api", True),
    ("get", "", "", "/apis", False),
])
def test_access_review(verb: str, resource: str, ns: str, path: str, allowed: bool) -> None:
    a = Attributes(JANE, verb, resource, "", "", ns, "", path)
    assert access_review(chain(), a) is allowed


def test_asking_is_authorized() -> None:
    with pytest.raises(errors.Unauthorized):
        caller(chain(), None, WHOAMI)
    # the test chain has no system:basic-user binding: jane may not ask
    with pytest.raises(errors.Forbidden, match='User "jane" cannot create resource '
                                               '"selfsubjectaccessreviews"'):
        caller(chain(), JANE, ACCESS)
    admin = UserInfo("admin", ("system:masters",))
    assert caller(chain(), admin, WHOAMI) is admin
