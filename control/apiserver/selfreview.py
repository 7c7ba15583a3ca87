"""Self reviews: who am I, may I, what may I (Kubernetes' SelfSubjectReview,
SelfSubjectAccessReview and SelfSubjectRulesReview).

Owns the answers to the three questions a caller asks about itself, computed from the
identity the service authenticated (impersonation included) and the service's own
authorizer chain, so they agree with what a real request would meet:

- :func:`access_review`: the chain's decision for the attributes asked about (a known
  cluster-scoped kind's namespace is dropped, as the service drops it);
- :func:`rules_review`: the rules each link grants the caller in a namespace. RBAC lists
  its rules; ``system:masters`` holds everything; the
  bootstrap and public links list their fixed rules; a link that cannot list rules (the
  node authorizer, whose answers depend on the objects bound to the node) marks the
  answer incomplete, as Kubernetes' rule resolvers do.

Asking is itself authorized as Kubernetes does it: :func:`caller` checks ``create`` on
the review's resource (``selfsubjectreviews`` in authentication.k8s.io,
``selfsubjectaccessreviews``/``selfsubjectrulesreviews`` in authorization.k8s.io), which
the default ``system:basic-user`` role grants every authenticated user; a caller without
credentials is Unauthorized.

Concurrency: event-loop only; pure reads of the chain and the watch cache.
"""

from __future__ import annotations

from control.api import errors, kinds
from control.apiserver.authn import BOOTSTRAPPERS, MASTERS, UserInfo
from control.apiserver.authz import (
    CLUSTER_INFO,
    READ_VERBS,
    Attributes,
    BootstrapAuthorizer,
    Chain,
    Decision,
    MastersAuthorizer,
    PublicAuthorizer,
)
from control.apiserver.node_authz import NodeAuthorizer
from control.apiserver.rbac import ALL, FULL_AUTHORITY, RBACAuthorizer, Rule

ALL_URLS = Rule(frozenset({ALL}), frozenset(), frozenset(), frozenset(), (ALL,))
CSR_GROUP = "certificates.k8s.io"


WHOAMI = ("authentication.k8s.io", "selfsubjectreviews")
ACCESS = ("authorization.k8s.io", "selfsubjectaccessreviews")
RULES = ("authorization.k8s.io", "selfsubjectrulesreviews")


def caller(chain: Chain, user: UserInfo | None, review: tuple[str, str]) -> UserInfo:
    """The user asking, once the chain allows them to create ``review`` (group, resource)."""
    if user is None:
        raise errors.Unauthorized("no credentials: a client certificate or a bearer token "
                                  "is required to review yourself")
    group, resource = review
    chain.check(Attributes(user, "create", resource, group))
    return user


def access_review(chain: Chain, a: Attributes) -> bool:
    """Whether the chain allows ``a`` (a cluster-scoped kind is asked without namespace)."""
    try:
        info = kinds.by_resource(a.resource) if a.resource and a.resource != ALL else None
    except KeyError:
        info = None
    if info is not None and not info.namespaced and a.namespace:
        a = Attributes(a.user, a.verb, a.resource, a.group, a.subresource, "", a.name, a.path)
    return chain.decide(a) is Decision.ALLOW


def rules_review(chain: Chain, user: UserInfo, namespace: str) -> tuple[list[Rule], bool]:
    """(the rules that apply to ``user`` in ``namespace``, whether the list is incomplete)."""
    rules: list[Rule] = []
    incomplete = False
    for z in chain.authorizers:
        if isinstance(z, MastersAuthorizer):
            if MASTERS in user.groups:
                rules += [FULL_AUTHORITY, ALL_URLS]
        elif isinstance(z, PublicAuthorizer):
            if namespace == CLUSTER_INFO[0]:
                rules.append(Rule(frozenset({"get"}), frozenset({""}),
                                  frozenset({"configmaps"}), frozenset({CLUSTER_INFO[1]}),
                                  ()))
        elif isinstance(z, BootstrapAuthorizer):
            if BOOTSTRAPPERS in user.groups:
                rules.append(Rule(READ_VERBS | {"create"}, frozenset({CSR_GROUP}),
                                  frozenset({"certificatesigningrequests"}), frozenset(), ()))
        elif isinstance(z, NodeAuthorizer):
            if user.node_name() is not None:
                incomplete = True
        elif isinstance(z, RBACAuthorizer):
            rules += z.index().rules_for(user.name, user.groups, namespace)
        else:
            incomplete = True  # a link this module does not know how to ask
    return list(dict.fromkeys(rules)), incomplete


__all__ = ["ACCESS", "ALL_URLS", "RULES", "WHOAMI", "access_review", "caller", "rules_review"]
