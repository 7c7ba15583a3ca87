"""The apiserver's metrics, under kube-apiserver's names: ``apiserver_request_total{verb,
resource,subresource,code}``, ``apiserver_request_duration_seconds{verb,resource,
subresource}`` (every unary request, timed from decode to reply; watches are long-running
and counted, not timed, as Kubernetes does), ``apiserver_registered_watchers{group,
version,kind}``, and the in-flight limit's ``apiserver_current_inflight_requests`` and
``apiserver_dropped_requests_total`` by ``request_kind`` (readOnly, mutating).

Verbs are Kubernetes' (GET, LIST, POST, PUT, PATCH, DELETE, WATCH) and codes the HTTP status
each outcome would have there (201 for a create, 404 for NotFound, 422 for Invalid...).

Concurrency contract: event loop only; ``observe`` is synchronous and costs a few
microseconds (label children are cached).
"""

from __future__ import annotations

from control.api import errors, kinds
from control.runtime.metrics import Registry

# gRPC method -> (verb, subresource) as kube-apiserver labels the same request
VERBS: dict[str, tuple[str, str]] = {
    "Create": ("POST", ""),
    "CreateMany": ("POST", ""),
    "Get": ("GET", ""),
    "List": ("LIST", ""),
    "Update": ("PUT", ""),
    "UpdateStatus": ("PUT", "status"),
    "Patch": ("PATCH", ""),
    "Delete": ("DELETE", ""),
    "Bind": ("POST", "binding"),
    "GetScale": ("GET", "scale"),
    "UpdateScale": ("PUT", "scale"),
    "Evict": ("POST", "eviction"),
    "CreateToken": ("POST", "token"),
    "History": ("GET", ""),
    "Discovery": ("GET", ""),
}
# the resource of the subresource methods whose requests do not name it
_RESOURCES = {"Bind": "pods", "Evict": "pods", "CreateToken": "serviceaccounts"}

_HTTP_CODES: dict[type[errors.ApiError], str] = {
    errors.NotFound: "404",
    errors.AlreadyExists: "409",
    errors.Conflict: "409",
    errors.Invalid: "422",
    errors.BadRequest: "400",
    errors.Forbidden: "403",
    errors.Unauthorized: "401",
    errors.Gone: "410",
    errors.TooManyRequests: "429",
    errors.MethodNotAllowed: "405",
    errors.Timeout: "504",
    errors.ServiceUnavailable: "503",
}


def http_code(method: str, error: BaseException | None) -> str:
    """The HTTP status kube-apiserver would answer ``method`` with, given its outcome."""
    if error is None:
        return "201" if method in ("Create", "CreateMany", "CreateToken") else "200"
    for cls in type(error).__mro__:
        code = _HTTP_CODES.get(cls)
        if code is not None:
            return code
    return "500"


class ApiServerMetrics:
    """Every metric the apiserver exports, in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = r = registry or Registry()
        self.requests = r.counters(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, resource, subresource "
            "and HTTP response code.", ("verb", "resource", "subresource", "code"))
        self.duration = r.histograms(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, resource and "
            "subresource.", ("verb", "resource", "subresource"))
        self.watchers = r.gauges(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resources",
            ("group", "version", "kind"))
        self.inflight = r.gauges(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per "
            "request kind in last second.", ("request_kind",))
        self.dropped = r.counters(
            "apiserver_dropped_requests_total",
            "Number of requests dropped with 'Try again later' response",
            ("request_kind",))

    def observe(self, method: str, request: object, seconds: float,
                error: BaseException | None) -> None:
        """One unary request to ``method`` took ``seconds`` and failed with ``error``."""
        verb, sub = VERBS.get(method, (method.upper(), ""))
        resource: str = getattr(request, "resource", "") or _RESOURCES.get(method, "")
        if method == "Patch" and getattr(request, "status", False):
            sub = "status"
        self.requests.labels(verb, resource, sub, http_code(method, error)).inc()
        self.duration.labels(verb, resource, sub).observe(seconds)

    def watch_started(self, info: kinds.KindInfo) -> None:
        self.requests.labels("WATCH", info.plural, "", "200").inc()
        self.watchers.labels(info.group, info.version, info.kind).inc()

    def watch_ended(self, info: kinds.KindInfo) -> None:
        self.watchers.labels(info.group, info.version, info.kind).dec()
