"""Kubernetes' Node authorizer: what an agent (``system:node:<name>`` in ``system:nodes``)
may do, one link of the authorizer chain.

Objects whose access depends on the node's pods go through the graph
(:mod:`control.apiserver.node_graph`):

- Secrets and ConfigMaps: get/list/watch of one named object that a pod bound to the
  node uses (a list or watch names it with a ``metadata.name`` field selector), or, for a
  Secret, that a PersistentVolume of one of its claims names;
- PersistentVolumeClaims: get, and update/patch of ``status``, of its pods' claims;
  PersistentVolumes: get of the volume bound to one of those claims, or of a local
  volume whose node affinity pins it to the node; update/patch of the latter (the
  agent's local-path cleaner takes its finalizer off); list/watch of all (that cleaner
  watches them: metadata and specs, no secret content);
- ServiceAccounts: get, and create ``serviceaccounts/token`` (a bound token for a pod),
  of its pods' accounts.

Everything else is static, as Kubernetes' ``system:node`` rules: read Services,
Endpoints, EndpointSlices (the agent's proxy shares the node's identity), Nodes, Pods,
Namespaces, RuntimeClasses and CSIDrivers; create Nodes and update its own Node and its
status; its own Lease in ``kube-node-lease`` and its own CSINode; create and read
CertificateSigningRequests; create and patch Events; update the status of, evict and
delete the pods bound to it; create pods (only mirror pods get past NodeRestriction
admission). What needs the object's content (a new Node's labels, a pod's old node) is
NodeRestriction admission's (:mod:`control.apiserver.noderestriction`).

A denial says why, as Kubernetes does: ``no relationship found between node 'n1' and
this object``. Requests from anyone but a node get no opinion.

Concurrency: event-loop only; the graph and the lookups read the watch cache
synchronously.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from control.api import storageutil
from control.apiserver import node_graph
from control.apiserver.authz import READ_VERBS, Attributes, Decision
from control.apiserver.node_graph import CLAIMS, CONFIGMAPS, SECRETS, SERVICEACCOUNTS
from control.apiserver.rbac import Rule, rule_allows

NODE_LEASE_NAMESPACE = "kube-node-lease"
# lookup(resource, namespace, name) -> the stored object or None
Lookup = Callable[[str, str, str], Any]


def _rule(verbs: str, group: str, *resources: str) -> Rule:
    return Rule(frozenset(verbs.split()), frozenset({group}), frozenset(resources),
                frozenset(), ())


READ = "get list watch"
# Kubernetes' NodeRules for what is not subdivided by the graph or by name
STATIC_RULES = (
    _rule("create", "authentication.k8s.io", "tokenreviews"),
    _rule("create", "authorization.k8s.io", "subjectaccessreviews",
          "localsubjectaccessreviews"),
    _rule(READ, "", "services", "endpoints", "namespaces"),
    _rule(READ, "discovery.k8s.io", "endpointslices"),
    _rule("create update patch", "", "events"),
    _rule("create update patch", "events.k8s.io", "events"),
    _rule("create get list watch", "certificates.k8s.io", "certificatesigningrequests"),
    _rule(READ, "node.k8s.io", "runtimeclasses"),
    _rule(READ, "storage.k8s.io", "csidrivers"),
    _rule("get", "storage.k8s.io", "volumeattachments"),
)


def no_relationship(node: str) -> str:
    return f"no relationship found between node '{node}' and this object"


class NodeAuthorizer:
    """See the module docstring. ``lookup`` reads one stored object by key."""

    def __init__(self, graph: node_graph.NodeGraph, lookup: Lookup) -> None:
        self.graph = graph
        self.lookup = lookup

    def authorize(self, a: Attributes) -> Decision:
        return self.decide(a)[0]

    def reason(self, a: Attributes) -> str:
        """Why ``a`` is not allowed (empty when allowed or not a node's request)."""
        return self.decide(a)[1]

    def decide(self, a: Attributes) -> tuple[Decision, str]:
        node = a.user.node_name() if a.user else None
        if node is None or not a.resource:
            return Decision.NO_OPINION, ""
        core = a.group == ""
        if core and a.resource in (SECRETS, CONFIGMAPS):
            return self._read_related(node, a)
        if core and a.resource == CLAIMS:
            return self._claim(node, a)
        if core and a.resource == "persistentvolumes":
            return self._volume(node, a)
        if core and a.resource == SERVICEACCOUNTS:
            return self._service_account(node, a)
        if core and a.resource == "nodes":
            return self._node(node, a)
        if core and a.resource == "pods":
            return self._pod(node, a)
        if a.group == "coordination.k8s.io" and a.resource == "leases":
            return self._own_named(node, a, "get create update patch delete",
                                   NODE_LEASE_NAMESPACE, "node lease")
        if a.group == "storage.k8s.io" and a.resource == "csinodes":
            return self._own_named(node, a, "get create update patch delete", "", "CSINode")
        if any(rule_allows(r, a) for r in STATIC_RULES):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""

    # -- objects reached through the node's pods ------------------------------------------

    def _related(self, node: str, resource: str, a: Attributes) -> tuple[Decision, str]:
        if not a.name:
            return Decision.NO_OPINION, f"node '{node}' can only read individual {resource}"
        if self.graph.has(node, (resource, a.namespace, a.name)):
            return Decision.ALLOW, ""
        if resource == SECRETS and self._volume_secret(node, a.namespace, a.name):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, no_relationship(node)

    def _read_related(self, node: str, a: Attributes) -> tuple[Decision, str]:
        if a.verb not in READ_VERBS:
            return Decision.NO_OPINION, "can only read resources of this type"
        if a.subresource:
            return Decision.NO_OPINION, "cannot read subresource"
        if not a.namespace:
            return Decision.NO_OPINION, "can only read namespaced object of this type"
        return self._related(node, a.resource, a)

    def _claim(self, node: str, a: Attributes) -> tuple[Decision, str]:
        if a.subresource == "status":
            if a.verb not in ("update", "patch"):
                return Decision.NO_OPINION, "can only get/update/patch this type"
        elif a.subresource or a.verb != "get":
            return Decision.NO_OPINION, "can only get individual resources of this type"
        return self._related(node, CLAIMS, a)

    def _bound_volumes(self, node: str) -> list[tuple[str, Any]]:
        """(claim namespace, volume) of each volume bound to a claim of the node's pods."""
        out = []
        for ns, name in self.graph.claims(node):
            claim = self.lookup(CLAIMS, ns, name)
            if claim is None or not claim.spec.volume_name:
                continue
            pv = self.lookup("persistentvolumes", "", claim.spec.volume_name)
            if pv is not None:
                out.append((ns, pv))
        return out

    def _volume_secret(self, node: str, namespace: str, name: str) -> bool:
        return any((namespace, name) in node_graph.pv_secret_references(pv, ns)
                   for ns, pv in self._bound_volumes(node))

    def _volume(self, node: str, a: Attributes) -> tuple[Decision, str]:
        if a.subresource:
            return Decision.NO_OPINION, "cannot access subresource"
        if a.verb in ("list", "watch"):
            # the agent's local-path cleaner watches the volumes to find its own; a
            # volume's spec names Secrets but holds none
            return Decision.ALLOW, ""
        if a.verb in ("update", "patch"):
            # only the volumes on its own disk (their cleanup finalizer; NodeRestriction
            # lets it change nothing else)
            pv = self.lookup("persistentvolumes", "", a.name) if a.name else None
            if pv is not None and storageutil.pinned_node(pv) == node:
                return Decision.ALLOW, ""
            return Decision.NO_OPINION, (f"node '{node}' can only update the volumes its "
                                         f"node affinity pins to it")
        if a.verb != "get":
            return Decision.NO_OPINION, "can only get individual resources of this type"
        if not a.name:
            return Decision.NO_OPINION, "No Object name found"
        if any(pv.metadata.name == a.name for _, pv in self._bound_volumes(node)):
            return Decision.ALLOW, ""
        pv = self.lookup("persistentvolumes", "", a.name)
        if pv is not None and storageutil.pinned_node(pv) == node:
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, no_relationship(node)

    def _service_account(self, node: str, a: Attributes) -> tuple[Decision, str]:
        if (a.verb, a.subresource) not in (("create", "token"), ("get", "")):
            return Decision.NO_OPINION, ("can only get, or create tokens for, individual "
                                         "service accounts")
        return self._related(node, SERVICEACCOUNTS, a)

    # -- objects named after the node, and its pods -------------------------------------

    def _own_named(self, node: str, a: Attributes, verbs: str, namespace: str,
                   what: str) -> tuple[Decision, str]:
        if a.verb not in verbs.split() or a.subresource:
            return Decision.NO_OPINION, f"can only {', '.join(verbs.split())} a {what}"
        if a.namespace != namespace:
            return Decision.NO_OPINION, f"can only access {what}s in the {namespace!r} namespace"
        if a.name != node:
            return Decision.NO_OPINION, (f"can only access the {what} with the same name as "
                                         f"the requesting node")
        return Decision.ALLOW, ""

    def _node(self, node: str, a: Attributes) -> tuple[Decision, str]:
        sub, verb = a.subresource, a.verb
        if sub == "" and verb in READ_VERBS:
            return Decision.ALLOW, ""
        if (sub == "" and verb in ("create", "update", "patch")) or (
                sub == "status" and verb in ("update", "patch")):
            # a create's name is checked again by NodeRestriction, on the object itself
            if a.name == node:
                return Decision.ALLOW, ""
            return Decision.NO_OPINION, (f"node '{node}' is not allowed to modify node "
                                         f"'{a.name}'")
        return Decision.NO_OPINION, f"node '{node}' cannot {verb} nodes"

    def _pod(self, node: str, a: Attributes) -> tuple[Decision, str]:
        sub, verb = a.subresource, a.verb
        if sub == "" and verb in READ_VERBS:
            return Decision.ALLOW, ""
        if sub == "" and verb == "create":
            return Decision.ALLOW, ""  # mirror pods only: NodeRestriction admission
        if (sub, verb) in (("", "delete"), ("status", "update"), ("status", "patch"),
                           ("eviction", "create")):
            pod = self.lookup("pods", a.namespace, a.name) if a.name else None
            # a pod that is gone is the registry's NotFound (a kubelet drops its status on
            # that); NodeRestriction checks the pod the write actually meets
            if (pod is None and a.name) or (pod is not None and pod.spec.node_name == node):
                return Decision.ALLOW, ""
            what = f"the {sub} of pods" if sub else "pods"
            return Decision.NO_OPINION, (f"node '{node}' can only {verb} {what} with "
                                         f"spec.nodeName set to itself")
        return Decision.NO_OPINION, f"node '{node}' cannot {verb} {a.full_resource}"


__all__ = ["NODE_LEASE_NAMESPACE", "STATIC_RULES", "NodeAuthorizer", "no_relationship"]
