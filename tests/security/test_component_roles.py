"""The control plane's components hold only their default ClusterRoles: tables of what the
scheduler, the controller manager, the cluster DNS and kube-proxy may and may not do
under the bootstrap policy, through the whole chain (no link of their own)."""

from __future__ import annotations

import pytest

from control.api import kinds
from control.apiserver.authn import UserInfo
from control.apiserver.authz import Attributes, Chain, Decision, default_chain
from control.apiserver.rbac import RBACAuthorizer
from control.apiserver.rbac_bootstrap import default_policy
from tests.support.node_authz import no_nodes
from tests.support.rbac import Source

PLURALS = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}


def chain_with_defaults() -> Chain:
    s = Source()
    for obj in default_policy():
        s.add(PLURALS[obj.kind], obj)
    return default_chain(no_nodes(), [RBACAuthorizer(s)])


CHAIN = chain_with_defaults()
AUTH = "system:authenticated"
SCHEDULER = UserInfo("system:kube-scheduler", (AUTH,))
CM = UserInfo("system:kube-controller-manager", (AUTH,))
DNS = UserInfo("system:kube-dns", (AUTH,))
PROXY = UserInfo("system:kube-proxy", (AUTH,))


@pytest.mark.parametrize(("user", "verb", "resource", "sub", "ns", "allowed"), [
    (SCHEDULER, "create", "pods", "binding", "default", True),
    (SCHEDULER, "watch", "pods", "", "", True),
    (SCHEDULER, "watch", "priorityclasses", "", "", True),
    (SCHEDULER, "update", "pods", "status", "default", True),
    (SCHEDULER, "delete", "pods", "", "default", True),  # preemption
    (SCHEDULER, "get", "secrets", "", "default", False),
    (SCHEDULER, "list", "secrets", "", "", False),
    (SCHEDULER, "update", "pods", "", "default", False),
    (SCHEDULER, "create", "deployments", "", "default", False),
    (CM, "create", "replicasets", "", "default", True),
    (CM, "create", "pods", "", "default", True),
    (CM, "update", "deployments", "status", "default", True),
    (CM, "delete", "configmaps", "", "default", True),  # garbage collection
    (CM, "update", "nodes", "", "", True),  # taints
    (CM, "update", "certificatesigningrequests", "approval", "", True),
    (CM, "escalate", "clusterroles", "", "", True),  # aggregation
    (CM, "create", "secrets", "", "default", False),
    (CM, "create", "rolebindings", "", "default", False),
    (CM, "bind", "clusterroles", "", "", False),
    (CM, "impersonate", "users", "", "", False),
    (DNS, "watch", "endpointslices", "", "", True),
    (DNS, "update", "services", "", "kube-system", True),
    (DNS, "get", "secrets", "", "kube-system", False),
    (DNS, "delete", "pods", "", "default", False),
    (PROXY, "watch", "services", "", "", True),
    (PROXY, "watch", "endpointslices", "", "", True),
    (PROXY, "get", "secrets", "", "default", False),
    (PROXY, "update", "services", "", "default", False),
])
def test_component_roles(user: UserInfo, verb: str, resource: str, sub: str, ns: str,
                         allowed: bool) -> None:
    group = "" if resource in ("users",) else kinds.by_resource(resource).group
    a = Attributes(user, verb, resource, group, sub, ns, "x")
    assert (CHAIN.decide(a) is Decision.ALLOW) is allowed
