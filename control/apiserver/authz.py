"""May this user do this: the authorizer chain (Kubernetes' union authorizer).

Owns :class:`Attributes` (user, verb, resource, subresource, namespace, name: what
Kubernetes' authorizers see), the :class:`Decision` of one authorizer (allow, deny, no
opinion) and :class:`Chain`: the first authorizer with an opinion decides, none is a
denial. The full node authorizer slots in as one more. The links today:

- :class:`MastersAuthorizer`: ``system:masters`` may do everything;
- :class:`ComponentAuthorizer`: the control plane's own components (scheduler, controller
  manager) may do everything until RBAC gives them their roles;
- :class:`NodeAuthorizer`: ``system:node:<name>`` in ``system:nodes`` writes only its own
  Node and Lease, the status of pods bound to it (and deletes them), Events, its own
  CertificateSigningRequests, the PersistentVolumes whose node affinity pins them to it
  (the local-path cleanup finalizer); it reads nodes, pods, services, endpoints, configmaps,
  volumes and namespaces, and secrets only in namespaces where one of its pods runs; it
  asks for ServiceAccount tokens (``serviceaccounts/token``) only of accounts its pods run
  as (the TokenRequest itself checks the token is bound to a pod on the node);
- :class:`BootstrapAuthorizer`: ``system:bootstrappers`` create and read CSRs, nothing
  else;
- :class:`PublicAuthorizer`: anyone, even without credentials, reads the CA bundle
  (``kube-public/cluster-info``) and the API's discovery;
- the RBAC authorizer (:mod:`control.apiserver.rbac`), added by the service's wiring.

A denial reads as Kubernetes words it: ``pods "web" is forbidden: User "u" cannot update
resource "pods/status" in API group "" in the namespace "default"``.

Concurrency: event-loop only; ``lookup`` reads the watch cache synchronously.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from control.api import errors, storageutil
from control.apiserver.authn import (
    BOOTSTRAPPERS,
    CLUSTER_DNS,
    CONTROLLER_MANAGER,
    MASTERS,
    SCHEDULER,
    UserInfo,
)

READ_VERBS = frozenset({"get", "list", "watch"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})
CLUSTER_INFO = ("kube-public", "cluster-info")

# lookup(resource, namespace, name) -> the stored object or None
Lookup = Callable[[str, str, str], Any]
# pods_on_node(node) -> the pods bound to it
PodsOnNode = Callable[[str], Sequence[Any]]


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


class ComponentAuthorizer:
    """The in-process and standalone control-plane components (their own identities)."""

    USERS = frozenset({SCHEDULER, CONTROLLER_MANAGER, CLUSTER_DNS})

    def authorize(self, a: Attributes) -> Decision:
        return Decision.ALLOW if a.user and a.user.name in self.USERS else Decision.NO_OPINION


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


class NodeAuthorizer:
    """The restricted node rules of the module docstring."""

    READABLE = frozenset({"nodes", "pods", "services", "endpoints", "configmaps",
                          "persistentvolumeclaims", "persistentvolumes", "namespaces",
                          "csidrivers", "storageclasses", "runtimeclasses",
                          "certificatesigningrequests", "serviceaccounts",
                          "endpointslices"})

    def __init__(self, lookup: Lookup, pods_on_node: PodsOnNode) -> None:
        self.lookup = lookup
        self.pods_on_node = pods_on_node

    def authorize(self, a: Attributes) -> Decision:
        node = a.user.node_name() if a.user else None
        if node is None:
            return Decision.NO_OPINION
        r, sub, verb = a.resource, a.subresource, a.verb
        if verb in READ_VERBS and not sub and r in self.READABLE:
            return Decision.ALLOW
        if r == "secrets" and verb in READ_VERBS and not sub:
            namespaces = {p.metadata.namespace for p in self.pods_on_node(node)}
            return Decision.ALLOW if a.namespace in namespaces else Decision.NO_OPINION
        if r == "serviceaccounts" and sub == "token" and verb == "create":
            runs_as = any(p.metadata.namespace == a.namespace
                          and (p.spec.service_account_name or "default") == a.name
                          for p in self.pods_on_node(node))
            return Decision.ALLOW if runs_as else Decision.NO_OPINION
        if r == "nodes" and verb in WRITE_VERBS and a.name == node and sub in ("", "status"):
            return Decision.ALLOW
        if r == "leases" and a.namespace == "kube-node-lease" and a.name == node and (
                verb in WRITE_VERBS or verb in READ_VERBS) and not sub:
            return Decision.ALLOW
        if r == "events" and not sub and (verb in ("create", "update", "patch")
                                          or verb in READ_VERBS):
            return Decision.ALLOW
        if r == "certificatesigningrequests" and verb == "create" and not sub:
            return Decision.ALLOW  # the request is stamped with its author's identity
        if r == "persistentvolumes" and verb in ("update", "patch") and not sub:
            # the local-path cleanup finalizer of a volume on this node's disk
            pv = self.lookup("persistentvolumes", "", a.name)
            if pv is not None and storageutil.pinned_node(pv) == node:
                return Decision.ALLOW
            return Decision.NO_OPINION
        if r == "pods" and ((verb in ("update", "patch") and sub == "status")
                            or (verb == "delete" and not sub)):
            pod = self.lookup("pods", a.namespace, a.name)
            if pod is not None and pod.spec.node_name == node:
                return Decision.ALLOW
            return Decision.NO_OPINION
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
        raise errors.Forbidden(forbidden_message(a))


def forbidden_message(a: Attributes) -> str:
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
    return msg


def default_chain(lookup: Lookup, pods_on_node: PodsOnNode,
                  more: Sequence[Authorizer] = ()) -> Chain:
    """The built-in links, then ``more`` (RBAC: after the node authorizer, as Kubernetes'
    ``Node,RBAC`` order)."""
    return Chain([MastersAuthorizer(), ComponentAuthorizer(), PublicAuthorizer(),
                  NodeAuthorizer(lookup, pods_on_node), BootstrapAuthorizer(), *more])


__all__ = ["Attributes", "Authorizer", "BootstrapAuthorizer", "Chain", "ComponentAuthorizer",
           "Decision", "MastersAuthorizer", "NodeAuthorizer", "PublicAuthorizer",
           "default_chain", "forbidden_message"]
