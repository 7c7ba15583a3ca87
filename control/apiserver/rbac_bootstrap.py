"""The default RBAC policy (Kubernetes' bootstrap policy), created and reconciled at every
server start.

Owns :func:`default_policy` (the ClusterRoles and ClusterRoleBindings as data),
:func:`reconciled` (pure: what a stored default object becomes) and :func:`reconcile` (the
writes). The user-facing roles are Kubernetes': ``cluster-admin`` (everything, bound to
``system:masters``), ``admin``/``edit``/``view`` (aggregated from the
``system:aggregate-to-*`` roles through their ``rbac.authorization.k8s.io/aggregate-to-*``
labels, so a CRD author's role can extend them), ``system:basic-user``,
``system:discovery`` and ``system:public-info-viewer``; plus the roles of the control plane's
components (scheduler, controller manager, cluster DNS, kube-proxy) bound to their users:
the components hold only these, in process or as their own processes. As Kubernetes, a
stored default object whose
``rbac.authorization.kubernetes.io/autoupdate`` annotation is ``"false"`` is left alone;
otherwise missing rules, subjects, labels and annotations are added back (what an admin
added stays).

Concurrency: ``reconcile`` is awaited once by the server's start, before it serves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from control.api import errors, kinds
from control.api.pb import rbac_pb2

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAPPING = "kubernetes.io/bootstrapping"
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
RBAC = "rbac.authorization.k8s.io"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
Rule = tuple[list[str], list[str], list[str]]  # (verbs, apiGroups, resources)


def _rules(r: rbac_pb2.ClusterRole, rules: Iterable[Rule]) -> None:
    for verbs, groups, resources in rules:
        r.rules.add(verbs=verbs, api_groups=groups, resources=resources)


def _role(name: str, rules: Iterable[Rule] = (), *, labels: dict[str, str] | None = None,
          urls: list[str] | None = None, aggregate: str = "") -> rbac_pb2.ClusterRole:
    r = rbac_pb2.ClusterRole(api_version=f"{RBAC}/v1", kind="ClusterRole")
    r.metadata.name = name
    r.metadata.labels[BOOTSTRAPPING] = "rbac-defaults"
    r.metadata.labels.update(labels or {})
    r.metadata.annotations[AUTOUPDATE] = "true"
    _rules(r, rules)
    if urls:
        r.rules.add(verbs=["get"], non_resource_urls=urls)
    if aggregate:
        sel = r.aggregation_rule.cluster_role_selectors.add()
        sel.match_labels[AGGREGATE_TO + aggregate] = "true"
    return r


def _binding(name: str, role: str, *subjects: tuple[str, str]) -> rbac_pb2.ClusterRoleBinding:
    b = rbac_pb2.ClusterRoleBinding(api_version=f"{RBAC}/v1", kind="ClusterRoleBinding")
    b.metadata.name = name
    b.metadata.labels[BOOTSTRAPPING] = "rbac-defaults"
    b.metadata.annotations[AUTOUPDATE] = "true"
    b.role_ref.api_group, b.role_ref.kind, b.role_ref.name = RBAC, "ClusterRole", role
    for kind, who in subjects:
        b.subjects.add(kind=kind, name=who, api_group=RBAC)
    return b


_WORKLOADS = ["deployments", "deployments/scale", "replicasets", "replicasets/scale",
              "statefulsets", "statefulsets/scale", "daemonsets", "controllerrevisions"]
_VIEW: list[Rule] = [
    (READ, [""], ["pods", "pods/log", "pods/status", "configmaps", "endpoints",
                  "persistentvolumeclaims", "persistentvolumeclaims/status",
                  "replicationcontrollers", "replicationcontrollers/scale",
                  "replicationcontrollers/status", "services", "services/status",
                  "serviceaccounts", "events", "limitranges", "resourcequotas",
                  "resourcequotas/status", "namespaces", "namespaces/status"]),
    (READ, ["apps"], _WORKLOADS),
    (READ, ["batch"], ["jobs", "jobs/status", "cronjobs", "cronjobs/status"]),
    (READ, ["autoscaling"], ["horizontalpodautoscalers"]),
    (READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    (READ, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
    (READ, ["discovery.k8s.io"], ["endpointslices"]),
]
_EDIT: list[Rule] = [
    (WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy",
                   "pods/eviction", "configmaps", "endpoints", "persistentvolumeclaims",
                   "replicationcontrollers", "replicationcontrollers/scale", "secrets",
                   "serviceaccounts", "services", "services/proxy"]),
    (READ, [""], ["secrets", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
    (["create"], [""], ["serviceaccounts/token"]),
    (["impersonate"], [""], ["serviceaccounts"]),
    (WRITE, ["apps"], _WORKLOADS),
    (WRITE, ["batch"], ["jobs", "cronjobs"]),
    (WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    (WRITE, ["policy"], ["poddisruptionbudgets"]),
    (WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
    (WRITE, ["discovery.k8s.io"], ["endpointslices"]),
]
_ADMIN: list[Rule] = [
    (READ + WRITE, [RBAC], ["roles", "rolebindings"]),
    (["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
]
_SCHEDULER: list[Rule] = [
    (["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
    (["create", "get", "update"], ["coordination.k8s.io"], ["leases"]),
    (READ, [""], ["nodes", "pods", "namespaces", "persistentvolumeclaims",
                  "persistentvolumes", "services", "replicationcontrollers"]),
    (["delete"], [""], ["pods"]),
    (["create"], [""], ["pods/binding", "bindings"]),
    (["patch", "update"], [""], ["pods/status"]),
    (READ, ["apps"], ["replicasets", "statefulsets"]),
    (READ, ["policy"], ["poddisruptionbudgets"]),
    (READ, ["storage.k8s.io"], ["storageclasses", "csinodes", "csidrivers"]),
    (READ, ["node.k8s.io"], ["runtimeclasses"]),
    (READ, ["scheduling.k8s.io"], ["priorityclasses"]),  # the queue orders by priority
]
# Flotilla's controller manager runs every controller under its one identity (Kubernetes'
# kube-controller-manager without --use-service-account-credentials), so its role is the
# union of Kubernetes' per-controller roles for the controllers it has: the garbage
# collector and the namespace controller read, update and delete any kind (Kubernetes'
# generic-garbage-collector and namespace-controller roles); creates are only of the
# kinds a controller makes; escalate lets the aggregation controller write rules into
# the aggregated ClusterRoles. It cannot create Secrets, Roles or bindings, bind,
# impersonate, or reach non-resource URLs.
_CONTROLLER_MANAGER: list[Rule] = [
    ([*READ, "patch", "update", "delete", "deletecollection"], ["*"], ["*"]),
    (["create"], [""], ["pods", "endpoints", "configmaps", "serviceaccounts",
                        "serviceaccounts/token", "persistentvolumeclaims",
                        "persistentvolumes", "events"]),
    (["create"], ["apps"], ["replicasets", "controllerrevisions"]),
    (["create"], ["batch"], ["jobs"]),
    (["create"], ["discovery.k8s.io"], ["endpointslices"]),
    (["create"], ["events.k8s.io"], ["events"]),
    (["create"], ["coordination.k8s.io"], ["leases"]),  # leader election
    (["escalate"], [RBAC], ["clusterroles"]),
]
# Kubernetes' system:volume-scheduler, bound to the scheduler: VolumeBinding writes the
# claimRef of the volume it picked, or the selected node of a claim to provision.
_VOLUME_SCHEDULER: list[Rule] = [
    ([*READ, "patch", "update"], [""], ["persistentvolumes"]),
    (READ, ["storage.k8s.io"], ["storageclasses"]),
    ([*READ, "patch", "update"], [""], ["persistentvolumeclaims"]),
]
_PROXIER: list[Rule] = [
    (READ, [""], ["services", "endpoints", "nodes"]),
    (READ, ["discovery.k8s.io"], ["endpointslices"]),
    (["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
]
_DNS: list[Rule] = [
    (READ, [""], ["services", "endpoints", "pods", "namespaces"]),
    (READ, ["discovery.k8s.io"], ["endpointslices"]),
    (READ + WRITE, [""], ["services", "endpoints"]),  # it keeps the kube-dns Service
]
_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz",
                   "/openapi", "/openapi/*", "/version", "/version/"]
_PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def default_policy() -> list[Any]:
    """Every default ClusterRole, then every default ClusterRoleBinding."""
    everything = _role("cluster-admin", [(["*"], ["*"], ["*"])])
    everything.rules.add(verbs=["*"], non_resource_urls=["*"])
    roles = [
        everything,
        _role("admin", aggregate="admin"),
        _role("edit", aggregate="edit", labels={AGGREGATE_TO + "admin": "true"}),
        _role("view", aggregate="view", labels={AGGREGATE_TO + "edit": "true"}),
        _role("system:aggregate-to-admin", _ADMIN, labels={AGGREGATE_TO + "admin": "true"}),
        _role("system:aggregate-to-edit", _EDIT, labels={AGGREGATE_TO + "edit": "true"}),
        _role("system:aggregate-to-view", _VIEW, labels={AGGREGATE_TO + "view": "true"}),
        _role("system:basic-user", [(["create"], ["authorization.k8s.io"],
                                     ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                                    (["create"], ["authentication.k8s.io"],
                                     ["selfsubjectreviews"])]),
        _role("system:discovery", urls=_DISCOVERY_URLS),
        _role("system:public-info-viewer", urls=_PUBLIC_URLS),
        _role("system:kube-scheduler", _SCHEDULER),
        _role("system:volume-scheduler", _VOLUME_SCHEDULER),
        _role("system:kube-controller-manager", _CONTROLLER_MANAGER),
        _role("system:node-proxier", _PROXIER),
        _role("system:kube-dns", _DNS),
    ]
    group, user = "Group", "User"
    bindings = [
        _binding("cluster-admin", "cluster-admin", (group, "system:masters")),
        _binding("system:basic-user", "system:basic-user", (group, "system:authenticated")),
        _binding("system:discovery", "system:discovery", (group, "system:authenticated")),
        _binding("system:public-info-viewer", "system:public-info-viewer",
                 (group, "system:authenticated"), (group, "system:unauthenticated")),
        _binding("system:kube-scheduler", "system:kube-scheduler",
                 (user, "system:kube-scheduler")),
        _binding("system:volume-scheduler", "system:volume-scheduler",
                 (user, "system:kube-scheduler")),
        _binding("system:kube-controller-manager", "system:kube-controller-manager",
                 (user, "system:kube-controller-manager")),
        _binding("system:node-proxier", "system:node-proxier", (user, "system:kube-proxy")),
        _binding("system:kube-dns", "system:kube-dns", (user, "system:kube-dns")),
    ]
    return [*roles, *bindings]


def reconciled(current: Any, wanted: Any) -> Any | None:
    """What the stored ``current`` becomes to hold ``wanted``'s rules, subjects, labels
    and annotations (keeping what else it has); None when it needs no write or opted out
    of updates."""
    if current.metadata.annotations.get(AUTOUPDATE) == "false":
        return None
    out = type(current)()
    out.CopyFrom(current)
    changed = False
    for key, value in [*wanted.metadata.labels.items(), *wanted.metadata.annotations.items()]:
        target = (out.metadata.labels if key in wanted.metadata.labels
                  else out.metadata.annotations)
        if key not in target:
            target[key] = value
            changed = True
    if isinstance(wanted, rbac_pb2.ClusterRole):
        if wanted.aggregation_rule.cluster_role_selectors:
            # aggregated roles' rules belong to the aggregation controller
            if out.aggregation_rule != wanted.aggregation_rule:
                out.aggregation_rule.CopyFrom(wanted.aggregation_rule)
                changed = True
        else:
            for rule in wanted.rules:
                if rule not in out.rules:
                    out.rules.append(rule)
                    changed = True
    else:
        if out.role_ref != wanted.role_ref:
            return None  # a binding's roleRef cannot change; an admin's own binding stays
        for s in wanted.subjects:
            if s not in out.subjects:
                out.subjects.append(s)
                changed = True
    return out if changed else None


async def reconcile(registry: Any) -> int:
    """Create the missing default objects and bring the others up to date; returns how
    many writes it made."""
    writes = 0
    for wanted in default_policy():
        info = kinds.by_kind(wanted.kind)
        try:
            current = registry.lookup(info, "", wanted.metadata.name).obj
        except errors.NotFound:
            try:
                await registry.create(info, "", wanted)
                writes += 1
            except errors.AlreadyExists:
                pass
            continue
        new = reconciled(current, wanted)
        if new is not None:
            await registry.update(info, "", new)
            writes += 1
    return writes


__all__ = ["AUTOUPDATE", "default_policy", "reconcile", "reconciled"]
