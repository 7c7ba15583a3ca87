"""Who is calling: the identity of every request (Kubernetes' authenticators, in order).

Owns :class:`UserInfo` (user, groups, uid), the request-scoped :data:`current_user` (a
context variable: grpc.aio runs each call as its own task, so the identity set by the
service follows the call into the registry and admission without changing their
signatures), and :class:`Authenticator`, which reads one call's credentials:

1. a client certificate (mutual TLS, verified against the cluster CA by the TLS layer):
   user = CN, groups = O;
2. a bearer token (``authorization: Bearer <token>`` metadata): a static token of
   ``--token-auth-file`` (Kubernetes' CSV: ``token,user,uid,"group1,group2"``), or a
   bootstrap token ``<id>.<secret>`` matched against the Secret
   ``kube-system/bootstrap-token-<id>`` (type ``bootstrap.kubernetes.io/token``, not
   expired, usable for authentication): user ``system:bootstrap:<id>``, group
   ``system:bootstrappers`` (plus the Secret's ``auth-extra-groups``); or a bound
   ServiceAccount token (a JWT: :mod:`control.apiserver.satoken` judges it) ->
   ``system:serviceaccount:<ns>:<name>`` in ``system:serviceaccounts[:<ns>]``.

Every authenticated user also gets ``system:authenticated``. ``impersonate-user`` /
``impersonate-group`` metadata then switch the identity, if the authorizer allows the
caller the ``impersonate`` verb on each (Kubernetes' Impersonate-* headers). No credential at all is
``None`` (the service lets only health and the CA-bundle read through); a credential that
does not check out is :class:`errors.Unauthorized`. A certificate from another CA never
gets here: the TLS handshake refuses it.

Concurrency: event-loop only; the certificate cache is a bounded dict.
"""

from __future__ import annotations

import csv
import hmac
import re
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from control.api import errors, timeutil
from control.apiserver import jws
from control.client import pki

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
BOOTSTRAPPERS = "system:bootstrappers"
NODES = "system:nodes"
NODE_PREFIX = "system:node:"
BOOTSTRAP_PREFIX = "system:bootstrap:"
SCHEDULER = "system:kube-scheduler"
CONTROLLER_MANAGER = "system:kube-controller-manager"
# the in-process cluster DNS (reads Services and Endpoints, keeps the kube-dns Service)
CLUSTER_DNS = "system:kube-dns"
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"

SA_PREFIX = "system:serviceaccount:"
IMPERSONATE_USER = "impersonate-user"
IMPERSONATE_GROUP = "impersonate-group"

BOOTSTRAP_SECRET_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_SECRET_PREFIX = "bootstrap-token-"
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_CERT_CACHE_MAX = 4096


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    def node_name(self) -> str | None:
        """The node a ``system:node:<name>`` in ``system:nodes`` is, else None."""
        if NODES in self.groups and self.name.startswith(NODE_PREFIX):
            return self.name[len(NODE_PREFIX):] or None
        return None


current_user: ContextVar[UserInfo | None] = ContextVar("flotilla_user", default=None)


def with_authenticated(user: UserInfo) -> UserInfo:
    if AUTHENTICATED in user.groups:
        return user
    return UserInfo(user.name, (*user.groups, AUTHENTICATED), user.uid)


def parse_token_file(path: Path) -> dict[str, UserInfo]:
    """Kubernetes' ``--token-auth-file``: ``token,user,uid[,"g1,g2"]`` per line."""
    out: dict[str, UserInfo] = {}
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"--token-auth-file {path}: {e.strerror or e}") from None
    for n, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ValueError(f"--token-auth-file {path}:{n}: expected token,user,uid"
                             f"[,\"group1,group2\"]")
        token, user, uid = (c.strip() for c in row[:3])
        if not token or not user:
            raise ValueError(f"--token-auth-file {path}:{n}: empty token or user name")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        if token in out:
            raise ValueError(f"--token-auth-file {path}:{n}: duplicate token")
        out[token] = UserInfo(user, groups, uid)
    return out


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise errors.Unauthorized("the authorization metadata is not a bearer token")
    return None


def check_bootstrap_secret(secret: Any, token_id: str, token_secret: str,
                           now: float) -> UserInfo:
    """The identity of a bootstrap token given its Secret, or Unauthorized (why, without
    saying which part of a guess was right)."""
    data = secret.data
    if secret.type != BOOTSTRAP_SECRET_TYPE or secret.metadata.deletion_timestamp.seconds:
        raise errors.Unauthorized("invalid bootstrap token")
    stored = bytes(data.get("token-secret", b""))
    if not hmac.compare_digest(stored, token_secret.encode()):
        raise errors.Unauthorized("invalid bootstrap token")
    if bytes(data.get("token-id", b"")).decode() != token_id:
        raise errors.Unauthorized("invalid bootstrap token")
    if bytes(data.get("usage-bootstrap-authentication", b"")).decode() != "true":
        raise errors.Unauthorized(f"bootstrap token {token_id} may not be used for "
                                  f"authentication")
    expiration = bytes(data.get("expiration", b"")).decode()
    if expiration:
        try:
            when = timeutil.timestamp_seconds(timeutil.parse_rfc3339(expiration))
        except ValueError:
            raise errors.Unauthorized(f"bootstrap token {token_id} has an unreadable "
                                      f"expiration") from None
        if when <= now:
            raise errors.Unauthorized(f"bootstrap token {token_id} expired at {expiration}")
    extra = bytes(data.get("auth-extra-groups", b"")).decode()
    groups = [BOOTSTRAPPERS] + [g.strip() for g in extra.split(",")
                                if g.strip().startswith("system:bootstrappers:")]
    return UserInfo(BOOTSTRAP_PREFIX + token_id, tuple(groups))


class Authenticator:
    """See the module docstring. ``bootstrap_secret(id)`` returns the Secret of a bootstrap
    token id, or None."""

    def __init__(self, *, static_tokens: dict[str, UserInfo] | None = None,
                 bootstrap_secret: Callable[[str], Any | None] | None = None,
                 service_account_tokens: Callable[[str], UserInfo] | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self.static_tokens = dict(static_tokens or {})
        self.bootstrap_secret = bootstrap_secret
        # a JWT's identity or Unauthorized (satoken.TokenAuthenticator.authenticate)
        self.service_account_tokens = service_account_tokens
        self.now = now
        self._certs: dict[bytes, UserInfo] = {}
        # may_impersonate(caller, resource, namespace, name) raises Forbidden unless the
        # caller may impersonate it (set by the service from its authorizer)
        self.may_impersonate: Callable[[UserInfo, str, str, str], None] | None = None

    def from_certificate(self, pem: bytes) -> UserInfo:
        user = self._certs.get(pem)
        if user is None:
            cn, groups = pki.subject_of(pki.load_cert(pem).subject)
            if not cn:
                raise errors.Unauthorized("the client certificate has no common name")
            user = with_authenticated(UserInfo(cn, tuple(groups)))
            if len(self._certs) >= _CERT_CACHE_MAX:
                self._certs.clear()
            self._certs[pem] = user
        return user

    def from_token(self, token: str) -> UserInfo:
        static = self.static_tokens.get(token)
        if static is not None:
            return with_authenticated(static)
        if self.service_account_tokens is not None and jws.looks_like_jwt(token):
            return self.service_account_tokens(token)
        m = TOKEN_RE.match(token)
        if m is None or self.bootstrap_secret is None:
            raise errors.Unauthorized("invalid bearer token")
        token_id, token_secret = m.groups()
        secret = self.bootstrap_secret(token_id)
        if secret is None:
            raise errors.Unauthorized(f"bootstrap token {token_id} does not exist (deleted "
                                      f"or never created)")
        return with_authenticated(check_bootstrap_secret(secret, token_id, token_secret,
                                                         self.now()))

    def authenticate(self, context: grpc.aio.ServicerContext) -> UserInfo | None:
        auth = context.auth_context()
        metadata = list(context.invocation_metadata() or ())
        certs = list(auth.get("x509_pem_cert") or ())
        if certs:
            user: UserInfo | None = self.from_certificate(certs[0])
        else:
            token = bearer_token(metadata)
            user = self.from_token(token) if token is not None else None
        return self.impersonated(user, metadata)

    def impersonated(self, user: UserInfo | None,
                     metadata: Sequence[tuple[str, Any]]) -> UserInfo | None:
        """Kubernetes' impersonation: ``impersonate-user`` (and any ``impersonate-group``)
        metadata make the call run as that user, if the caller may ``impersonate`` each
        (users, groups, or the ServiceAccount a ``system:serviceaccount:<ns>:<name>``
        names); a denial names what was refused."""
        def values(key: str) -> list[str]:
            return [v.decode() if isinstance(v, bytes) else str(v)
                    for k, v in metadata if k == key]

        names, groups = values(IMPERSONATE_USER), values(IMPERSONATE_GROUP)
        if not names and not groups:
            return user
        if user is None:
            raise errors.Unauthorized("impersonation needs credentials")
        if not names or len(names) > 1:
            raise errors.Forbidden("impersonation needs exactly one impersonate-user")
        name = names[0]
        if self.may_impersonate is None:
            raise errors.Forbidden("impersonation is not enabled on this server")
        if name.startswith(SA_PREFIX) and name.count(":") == 3:
            ns, sa = name[len(SA_PREFIX):].split(":")
            self.may_impersonate(user, "serviceaccounts", ns, sa)
            if not groups:
                groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
        else:
            self.may_impersonate(user, "users", "", name)
        for g in groups:
            self.may_impersonate(user, "groups", "", g)
        return with_authenticated(UserInfo(name, tuple(groups)))


__all__ = ["APISERVER_KUBELET_CLIENT", "AUTHENTICATED", "BOOTSTRAPPERS", "BOOTSTRAP_PREFIX",
           "BOOTSTRAP_SECRET_PREFIX", "BOOTSTRAP_SECRET_TYPE", "CONTROLLER_MANAGER", "MASTERS",
           "NODES", "NODE_PREFIX", "SCHEDULER", "TOKEN_RE", "Authenticator", "UserInfo",
           "bearer_token", "check_bootstrap_secret", "current_user", "parse_token_file",
           "with_authenticated"]
