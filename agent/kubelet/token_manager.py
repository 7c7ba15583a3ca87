"""The kubelet's ServiceAccount tokens: asked of the API, cached, renewed before they die.

A projected ``serviceAccountToken`` source needs a token of the pod's ServiceAccount, for
its ``audience`` and ``expirationSeconds``, bound to the pod (the API checks the pod runs
on this node and as that account). :class:`TokenManager` asks the ``serviceaccounts/token``
subresource once per (namespace, account, audience, lifetime, pod uid) and hands out the
cached answer until it :func:`needs_refresh`: when 80% of its lifetime has passed, or it
is older than 24 hours (kubelet's rule, less a jitter of up to 10 s so that many pods do
not renew in the same second). A renewal that fails keeps handing out the cached token
while it is still valid (the API may be briefly away), then the error surfaces.
:meth:`TokenManager.forget_pod` drops a pod's entries when its volumes are torn down.

The volume manager asks on every setup and refresh (every minute), so a token is renewed
within a minute of reaching 80% of its life and the file changes atomically.

Concurrency: event-loop only; two asks for the same key at once may both reach the API
(harmless: both tokens are valid, the later is kept).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from control.api import errors
from control.api.pb import authentication_pb2
from control.runtime.clock import Clock, RealClock

log = structlog.get_logger(__name__)

MAX_TTL_SECONDS = 24 * 3600
MAX_JITTER_SECONDS = 10.0
REFRESH_FRACTION = 0.8
# the projected source's default (Kubernetes: an hour)
DEFAULT_EXPIRATION_SECONDS = 3600

# request(namespace, service account, TokenRequest) -> the answered TokenRequest
RequestToken = Callable[[str, str, authentication_pb2.TokenRequest],
                        Awaitable[authentication_pb2.TokenRequest]]


@dataclass(frozen=True)
class TokenKey:
    namespace: str
    service_account: str
    audience: str
    expiration_seconds: int
    pod_name: str
    pod_uid: str


def needs_refresh(tr: authentication_pb2.TokenRequest, now: float, jitter: float = 0.0) -> bool:
    """Kubelet's ``requiresRefresh``: past 80% of the token's life (less ``jitter``), or
    older than 24 hours."""
    ttl = tr.spec.expiration_seconds
    exp = tr.status.expiration_timestamp.seconds
    if ttl <= 0:
        return False
    issued = exp - ttl
    if now > issued + MAX_TTL_SECONDS - jitter:
        return True
    return now > exp - ttl * (1 - REFRESH_FRACTION) - jitter


class TokenManager:
    def __init__(self, request: RequestToken, clock: Clock | None = None,
                 jitter: Callable[[], float] | None = None) -> None:
        self._request = request
        self.clock = clock or RealClock()
        self._jitter = jitter or (lambda: random.random() * MAX_JITTER_SECONDS)
        self._cache: dict[TokenKey, authentication_pb2.TokenRequest] = {}

    async def token(self, key: TokenKey) -> bytes:
        """The token for ``key``, from the cache while it is fresh enough."""
        cached = self._cache.get(key)
        now = self.clock.now()
        if cached is not None and not needs_refresh(cached, now, self._jitter()):
            return cached.status.token.encode()
        tr = authentication_pb2.TokenRequest()
        if key.audience:
            tr.spec.audiences.append(key.audience)
        tr.spec.expiration_seconds = key.expiration_seconds
        ref = tr.spec.bound_object_ref
        ref.kind, ref.api_version, ref.name, ref.uid = "Pod", "v1", key.pod_name, key.pod_uid
        try:
            answer = await self._request(key.namespace, key.service_account, tr)
        except errors.ApiError as e:
            if cached is not None and now < cached.status.expiration_timestamp.seconds:
                log.warning("cannot renew a service account token; the cached one is still "
                            "valid", namespace=key.namespace, pod=key.pod_name,
                            service_account=key.service_account, error=str(e))
                return cached.status.token.encode()
            raise
        if not answer.status.token:
            raise errors.ApiError(f"the API answered the token request for serviceaccount "
                                  f"{key.namespace}/{key.service_account} without a token")
        self._cache[key] = answer
        return answer.status.token.encode()

    def forget_pod(self, pod_uid: str) -> None:
        for key in [k for k in self._cache if k.pod_uid == pod_uid]:
            del self._cache[key]

    def cached(self) -> int:
        return len(self._cache)


__all__ = ["DEFAULT_EXPIRATION_SECONDS", "TokenKey", "TokenManager", "needs_refresh"]
