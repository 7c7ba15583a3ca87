"""Bounds on requests in flight, as kube-apiserver's max-in-flight filter.

Owns :class:`InflightLimiter`: at most ``max_requests_inflight`` read-only and
``max_mutating_requests_inflight`` mutating unary requests run at once; one more is refused
at once with ``TooManyRequests`` and a retry-after of 1 s (Kubernetes' 429), never queued, so
a flood cannot grow the server's memory. ``system:masters`` (the admins and the control
plane's own clients that hold admin rights) are exempt, as in Kubernetes, which keeps room
for them under a flood. A limit of 0 means unlimited. Long-running calls (watch, logs,
exec) are not counted here. This is the filter when ``--enable-priority-and-fairness`` is
off; :mod:`control.apiserver.apf` replaces it otherwise.

Concurrency: event-loop only; ``admit`` and the release it returns run on the loop.
"""

from __future__ import annotations

from collections.abc import Callable

from control.api import errors
from control.apiserver import authn
from control.apiserver.flowcontrol import RequestInfo
from control.apiserver.metrics import ApiServerMetrics

DEFAULT_MAX_REQUESTS_INFLIGHT = 400
DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT = 200
RETRY_AFTER_SECONDS = 1

MUTATING = frozenset({"Create", "CreateMany", "Update", "UpdateStatus", "Patch", "Delete",
                      "Bind", "UpdateScale", "Evict", "CreateToken"})


class InflightLimiter:
    def __init__(self, max_requests_inflight: int = DEFAULT_MAX_REQUESTS_INFLIGHT,
                 max_mutating_requests_inflight: int = DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
                 metrics: ApiServerMetrics | None = None) -> None:
        self.metrics = metrics
        self.limits = {False: max_requests_inflight, True: max_mutating_requests_inflight}
        self.inflight = {False: 0, True: 0}
        self.rejected = {False: 0, True: 0}

    async def enter(self, req: RequestInfo,
                    time_remaining: float | None = None) -> Callable[[], None]:
        """:class:`control.apiserver.flowcontrol.Admission`: watches pass uncounted."""
        if req.long_running:
            return _nothing
        return self.admit(req.method, req.user)

    def admit(self, method: str, user: authn.UserInfo | None) -> Callable[[], None]:
        """Count the request in, or raise TooManyRequests; returns the release to call
        when the request is done."""
        if user is not None and authn.MASTERS in user.groups:
            return _nothing
        mutating = method in MUTATING
        limit = self.limits[mutating]
        if limit > 0 and self.inflight[mutating] >= limit:
            self.rejected[mutating] += 1
            if self.metrics is not None:
                self.metrics.dropped.labels(_KIND[mutating]).inc()
            raise errors.TooManyRequests("too many requests, please try again later",
                                         retry_after=RETRY_AFTER_SECONDS)
        self.inflight[mutating] += 1
        self._report(mutating)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.inflight[mutating] -= 1
                self._report(mutating)

        return release

    def _report(self, mutating: bool) -> None:
        if self.metrics is not None:
            self.metrics.inflight.labels(_KIND[mutating]).set(self.inflight[mutating])


_KIND = {False: "readOnly", True: "mutating"}


def _nothing() -> None:
    pass
