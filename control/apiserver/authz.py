"""May this user do this: the authorizer chain (Kubernetes' union authorizer).

Owns :class:`Attributes` (user, verb, resource, subresource, namespace, name: what
Kubernetes' authorizers see), the :class:`Decision` of one authorizer (allow, deny, no
opinion) and :class:`Chain`: the first authorizer with an opinion decides, none is a
denial. The links, in order:

- :class:`MastersAuthorizer`: ``system:masters`` may do everything;
- the node authorizer (:mod:`control.apiserver.node_authz`): what ``system:node:<name>``
  may do, from its pods' references;
- :class:`BootstrapAuthorizer`: ``system:bootstrappers`` create and read CSRs, nothing
  else;
- :class:`PublicAuthorizer`: anyone, even without credentials, reads the CA bundle
  (``kube-public/cluster-info``) and the API's discovery;
- the RBAC authorizer (:mod:`control.apiserver.rbac`), added by the service's wiring. The
  control plane's components (scheduler, controller manager, cluster DNS, proxy) have no
  link of their own: their default ClusterRoles (:mod:`control.apiserver.rbac_bootstrap`)
  grant what they use.

A denial reads as Kubernetes words it: ``pods "web" is forbidden: User "u" cannot update
resource "pods/status" in API group "" in the namespace "default"``, followed by the
reason a link gave (an authorizer may have ``reason(a) -> str``), as
``: no relationship found between node 'n1' and this object``.

Concurrency: event-loop only.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from control.api import errors
from control.apiserver.authn import BOOTSTRAPPERS, MASTERS, UserInfo

READ_VERBS = frozenset({"get", "list", "watch"})
CLUSTER_INFO = ("kube-public", "cluster-info")


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


@dataclass(frozen=True)
class Attributes:
    user: UserInfo | None  # None: no credentials
    verb: str
    resource: str = ""
    group: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # a non-resource request's URL path (resource empty)

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


class Authorizer(Protocol):
    def authorize(self, a: Attributes) -> Decision: ...


class MastersAuthorizer:
    def authorize(self, a: Attributes) -> Decision:
        return Decision.ALLOW if a.user and MASTERS in a.user.groups else Decision.NO_OPINION


class PublicAuthorizer:
    def authorize(self, a: Attributes) -> Decision:
        if a.verb == "get" and a.resource == "configmaps" and not a.subresource and (
                a.namespace, a.name) == CLUSTER_INFO:
            return Decision.ALLOW
        if a.verb == "discovery":
            return Decision.ALLOW if a.user is not None else Decision.NO_OPINION
        return Decision.NO_OPINION


class BootstrapAuthorizer:
    def authorize(self, a: Attributes) -> Decision:
        if a.user is None or BOOTSTRAPPERS not in a.user.groups:
            return Decision.NO_OPINION
        if a.resource == "certificatesigningrequests" and not a.subresource and (
                a.verb in READ_VERBS or a.verb == "create"):
            return Decision.ALLOW
        return Decision.NO_OPINION


class Chain:
    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = list(authorizers)

    def decide(self, a: Attributes) -> Decision:
        for z in self.authorizers:
            d = z.authorize(a)
            if d is not Decision.NO_OPINION:
                return d
        return Decision.DENY

    def check(self, a: Attributes) -> None:
        """Forbidden (or Unauthorized without credentials) unless allowed."""
        if self.decide(a) is Decision.ALLOW:
            return
        if a.user is None:
            raise errors.Unauthorized("no credentials: a client certificate or a bearer "
                                      "token is required")
        raise errors.Forbidden(forbidden_message(a, self.reason(a)))

    def reason(self, a: Attributes) -> str:
        """The first reason a link gives for not allowing ``a`` (empty: none)."""
        for z in self.authorizers:
            explain = getattr(z, "reason", None)
            why = explain(a) if explain is not None else ""
            if why:
                return str(why)
        return ""


def forbidden_message(a: Attributes, reason: str = "") -> str:
    user = a.user.name if a.user else "system:anonymous"
    # the group-qualified resource (deployments.apps), as Kubernetes' Forbidden reason
    qualified = f"{a.resource}.{a.group}" if a.group else a.resource
    if not a.resource and a.path:
        return f'forbidden: User "{user}" cannot {a.verb} path "{a.path}"'
    if not a.resource:
        what = "forbidden"
    elif a.name:
        what = f'{qualified} "{a.name}" is forbidden'
    else:
        what = f"{qualified} is forbidden"
    msg = (f'{what}: User "{user}" cannot {a.verb} resource "{a.full_resource}" in API '
           f'group "{a.group}"')
    if a.namespace:
        msg += f' in the namespace "{a.namespace}"'
    elif a.resource:
        msg += " at the cluster scope"
    return f"{msg}: {reason}" if reason else msg


def default_chain(node: Authorizer, more: Sequence[Authorizer] = ()) -> Chain:
    """The built-in links with the ``node`` authorizer, then ``more`` (RBAC: after the node
    authorizer, as Kubernetes' ``Node,RBAC`` order)."""
    return Chain([MastersAuthorizer(), PublicAuthorizer(), node, BootstrapAuthorizer(),
                  *more])


__all__ = ["READ_VERBS", "Attributes", "Authorizer", "BootstrapAuthorizer", "Chain",
           "Decision", "MastersAuthorizer", "PublicAuthorizer", "default_chain",
           "forbidden_message"]
