"""What API Priority and Fairness knows of a request, and the built-in configuration: the
priority levels with their shares and queues, and the flow schemas that classify requests.

Modelled on Kubernetes' suggested and mandatory configuration (flowcontrol.apiserver.k8s.io):

    level            shares  queues hand queue-length  who (the flow schemas, in order)
    exempt                -       -    -            -  system:masters (admins, control plane)
    leader-election      10      16    4           50  scheduler/controller-manager Leases in
                                                       kube-system, kube-system SAs' Leases
    node-high            40      64    6           50  nodes: their Lease, Node and Node status
    system               30      64    6           50  nodes: everything else (pods' status...)
    workload-high        40     128    6           50  controller-manager, scheduler, kube-dns,
                                                       kube-system service accounts
    workload-low        100     128    6           50  every other service account
    global-default       20     128    6           50  every other user, anonymous included
    catch-all             5       -    -      (reject)  anything left

A request belongs to the first schema (lowest precedence number) that matches; its flow is
the schema plus its distinguisher (the user's name for ByUser, the request's namespace for
ByNamespace), and fair queuing is per flow within a level. Kubernetes lets admins edit these
objects through the API; Flotilla's are built in (the shares above), which is all the
defaults of a fresh Kubernetes cluster do.

:func:`request_info` turns a gRPC method and request message into the verb, resource and
namespace Kubernetes would see; :func:`classify` is pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from control.apiserver import authn

EXEMPT = "exempt"
CATCH_ALL = "catch-all"
SERVICE_ACCOUNTS = "system:serviceaccounts"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = authn.UserInfo("system:anonymous", (UNAUTHENTICATED,))
NODE_LEASE_NAMESPACE = "kube-node-lease"


@dataclass(frozen=True)
class RequestInfo:
    """A request as flow control sees it (Kubernetes' verbs: get, list, watch, create,
    update, patch, delete)."""

    user: authn.UserInfo
    verb: str
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    method: str = ""  # the gRPC method, for the max-in-flight filter's mutating split
    limit: int = 0  # a list's page size (0: all)

    @property
    def long_running(self) -> bool:
        return self.verb == "watch"


class Admission(Protocol):
    """What the service asks before it serves a request: APF, or the plain max-in-flight
    filter when APF is off."""

    async def enter(self, req: RequestInfo,
                    time_remaining: float | None = None) -> Callable[[], None]:
        """Admit ``req`` (TooManyRequests when refused); returns its release."""
        ...


@dataclass(frozen=True)
class PriorityLevel:
    """A PriorityLevelConfiguration: ``shares`` is nominalConcurrencyShares; a level with
    ``queue_length_limit`` 0 rejects at once when its seats are taken (type Reject)."""

    name: str
    shares: int = 0
    exempt: bool = False
    queues: int = 64
    hand_size: int = 6
    queue_length_limit: int = 50


@dataclass(frozen=True)
class FlowSchema:
    name: str
    precedence: int
    level: str
    distinguisher: str  # "ByUser", "ByNamespace" or "" (one flow for the whole schema)
    matches: Callable[[RequestInfo], bool]

    def flow(self, req: RequestInfo) -> str:
        if self.distinguisher == "ByUser":
            return f"{self.name}/{req.user.name}"
        if self.distinguisher == "ByNamespace":
            return f"{self.name}/{req.namespace}"
        return self.name


DEFAULT_LEVELS: tuple[PriorityLevel, ...] = (
    PriorityLevel(EXEMPT, exempt=True),
    PriorityLevel("leader-election", 10, queues=16, hand_size=4),
    PriorityLevel("node-high", 40),
    PriorityLevel("system", 30),
    PriorityLevel("workload-high", 40, queues=128),
    PriorityLevel("workload-low", 100, queues=128),
    PriorityLevel("global-default", 20, queues=128),
    PriorityLevel(CATCH_ALL, 5, queues=0, hand_size=0, queue_length_limit=0),
)

_LEASE_VERBS = frozenset({"get", "create", "update"})


def _in_group(group: str) -> Callable[[RequestInfo], bool]:
    return lambda r: group in r.user.groups


def _is_user(*names: str) -> Callable[[RequestInfo], bool]:
    return lambda r: r.user.name in names


def _kube_system_sa(r: RequestInfo) -> bool:
    return r.user.name.startswith(authn.SA_PREFIX + "kube-system:")


def _system_leader_election(r: RequestInfo) -> bool:
    return (r.user.name in (authn.CONTROLLER_MANAGER, authn.SCHEDULER)
            and r.resource == "leases" and r.namespace == "kube-system"
            and r.verb in _LEASE_VERBS)


def _workload_leader_election(r: RequestInfo) -> bool:
    return _kube_system_sa(r) and r.resource == "leases" and r.verb in _LEASE_VERBS


def _node_high(r: RequestInfo) -> bool:
    # a node's heartbeat: its Lease in kube-node-lease, its Node and the Node's status
    return authn.NODES in r.user.groups and (
        r.resource == "nodes"
        or (r.resource == "leases" and r.namespace == NODE_LEASE_NAMESPACE))


def _everyone(r: RequestInfo) -> bool:
    return True


DEFAULT_SCHEMAS: tuple[FlowSchema, ...] = (
    FlowSchema("exempt", 1, EXEMPT, "", _in_group(authn.MASTERS)),
    FlowSchema("system-leader-election", 100, "leader-election", "ByUser",
               _system_leader_election),
    FlowSchema("workload-leader-election", 200, "leader-election", "ByUser",
               _workload_leader_election),
    FlowSchema("system-node-high", 400, "node-high", "ByUser", _node_high),
    FlowSchema("system-nodes", 500, "system", "ByUser", _in_group(authn.NODES)),
    FlowSchema("kube-controller-manager", 800, "workload-high", "ByNamespace",
               _is_user(authn.CONTROLLER_MANAGER)),
    FlowSchema("kube-scheduler", 800, "workload-high", "ByNamespace",
               _is_user(authn.SCHEDULER)),
    # Kubernetes' cluster DNS runs as a kube-system service account; Flotilla's has a user
    FlowSchema("kube-system-service-accounts", 900, "workload-high", "ByNamespace",
               lambda r: _kube_system_sa(r) or r.user.name == authn.CLUSTER_DNS),
    FlowSchema("service-accounts", 9000, "workload-low", "ByUser",
               lambda r: SERVICE_ACCOUNTS in r.user.groups
               or r.user.name.startswith(authn.SA_PREFIX)),
    FlowSchema("global-default", 9900, "global-default", "ByUser",
               lambda r: authn.AUTHENTICATED in r.user.groups
               or UNAUTHENTICATED in r.user.groups),
    FlowSchema("catch-all", 10000, CATCH_ALL, "ByUser", _everyone),
)


def classify(req: RequestInfo,
             schemas: Sequence[FlowSchema] = DEFAULT_SCHEMAS) -> FlowSchema:
    """The first schema, by precedence, that matches ``req`` (catch-all matches all)."""
    for schema in sorted(schemas, key=lambda s: s.precedence):
        if schema.matches(req):
            return schema
    raise LookupError(f"no flow schema matches {req.verb} {req.resource} by {req.user.name}")


def nominal_limits(server_limit: int,
                   levels: Sequence[PriorityLevel] = DEFAULT_LEVELS) -> dict[str, int]:
    """Each limited level's seats: ceil(server_limit * shares / sum of shares), as
    Kubernetes' NominalCL (at least 1, so no level is ever shut out entirely)."""
    total = sum(lv.shares for lv in levels if not lv.exempt)
    return {lv.name: max(1, math.ceil(server_limit * lv.shares / total))
            for lv in levels if not lv.exempt}


# gRPC method -> (Kubernetes verb, subresource)
VERBS: dict[str, tuple[str, str]] = {
    "Create": ("create", ""),
    "CreateMany": ("create", ""),
    "Get": ("get", ""),
    "List": ("list", ""),
    "Watch": ("watch", ""),
    "Update": ("update", ""),
    "UpdateStatus": ("update", "status"),
    "Patch": ("patch", ""),
    "Delete": ("delete", ""),
    "Bind": ("create", "binding"),
    "GetScale": ("get", "scale"),
    "UpdateScale": ("update", "scale"),
    "Evict": ("create", "eviction"),
    "History": ("get", ""),
    "Discovery": ("get", ""),
    "WhoAmI": ("create", ""),
    "AccessReview": ("create", ""),
    "RulesReview": ("create", ""),
    "CreateToken": ("create", "token"),
}

_REVIEWS = {"WhoAmI": "selfsubjectreviews", "AccessReview": "selfsubjectaccessreviews",
            "RulesReview": "selfsubjectrulesreviews", "Bind": "pods", "Evict": "pods",
            "CreateToken": "serviceaccounts"}


def request_info(method: str, request: object, user: authn.UserInfo | None) -> RequestInfo:
    """What Kubernetes' request-info resolver would say of this gRPC call."""
    verb, sub = VERBS.get(method, ("get", ""))
    resource = _REVIEWS.get(method) or str(getattr(request, "resource", "") or "")
    if method == "Patch" and getattr(request, "status", False):
        sub = "status"
    namespace = str(getattr(request, "namespace", "") or "")
    limit = getattr(request, "limit", 0) if method == "List" else 0
    return RequestInfo(user=user or ANONYMOUS, verb=verb, resource=resource,
                       subresource=sub, namespace=namespace, method=method,
                       limit=limit if isinstance(limit, int) else 0)


__all__ = [
    "CATCH_ALL",
    "DEFAULT_LEVELS",
    "DEFAULT_SCHEMAS",
    "EXEMPT",
    "Admission",
    "FlowSchema",
    "PriorityLevel",
    "RequestInfo",
    "classify",
    "nominal_limits",
    "request_info",
]
