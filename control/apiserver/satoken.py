"""Bound ServiceAccount tokens: what they claim, how they are issued and how they are judged.

A token is a JWT (:mod:`control.apiserver.jws`) signed by the server's service-account key
with Kubernetes' claims::

    iss  the issuer (--service-account-issuer)        sub  system:serviceaccount:<ns>:<sa>
    aud  the audiences asked for (else the API's)      jti  a random id
    iat, nbf  when issued                              exp  when it dies
    kubernetes.io: {namespace, serviceaccount: {name, uid}, pod: {name, uid}}

:class:`TokenIssuer` signs them (the TokenRequest subresource's last step).
:class:`TokenAuthenticator` judges a bearer token as Kubernetes' service-account authenticator does: a signature by one
of the trusted keys, an issuer it accepts, an audience among the API's, not expired and
already valid (60 s of leeway for clocks, as go-jose's default), and the objects it names
still there with the same uids: the ServiceAccount, and the Pod it is bound to (a pod being
deleted keeps its tokens until 60 s after its deletion timestamp, as Kubernetes). So a token
dies with its pod. A token's signature is verified once (a bounded cache of verified
claims: about 1 ms the first time, 60 us on every later call here); the rest is judged on
every call. The identity: user ``system:serviceaccount:<ns>:<sa>`` (uid: the account's),
groups ``system:serviceaccounts``, ``system:serviceaccounts:<ns>``,
``system:authenticated``.

Pure logic plus a synchronous ``lookup(resource, namespace, name)`` (the watch cache);
event-loop only.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control.api import errors
from control.apiserver import jws
from control.apiserver.authn import SA_PREFIX, UserInfo, with_authenticated
from control.client import pki

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_KEY_NAME = "service-account.key"
# TokenRequest: expirationSeconds defaults to an hour, and may not be under 10 minutes
DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 2**32 - 1
LEEWAY_SECONDS = 60
# a deleted pod's tokens stop working this long after its deletion timestamp
DELETED_POD_GRACE_SECONDS = 60
SA_GROUP = "system:serviceaccounts"
K8S_CLAIM = "kubernetes.io"
VERIFIED_CACHE_MAX = 4096

# lookup(resource, namespace, name) -> the stored object or None
Lookup = Callable[[str, str, str], Any]


def sa_user_name(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def sa_groups(namespace: str) -> tuple[str, ...]:
    return (SA_GROUP, f"{SA_GROUP}:{namespace}")


@dataclass(frozen=True)
class BoundPod:
    name: str
    uid: str


@dataclass(frozen=True)
class Claims:
    """The parts of a service-account token's claims the server acts on."""

    namespace: str
    name: str
    uid: str
    pod: BoundPod | None
    audiences: tuple[str, ...]
    issued_at: int
    expires_at: int


def make_claims(*, issuer: str, audiences: Sequence[str], namespace: str, name: str, uid: str,
                pod: BoundPod | None, now: float, expiration_seconds: int) -> dict[str, Any]:
    issued = int(now)
    k8s: dict[str, Any] = {"namespace": namespace,
                           "serviceaccount": {"name": name, "uid": uid}}
    if pod is not None:
        k8s["pod"] = {"name": pod.name, "uid": pod.uid}
    return {"iss": issuer, "sub": sa_user_name(namespace, name), "aud": list(audiences),
            "iat": issued, "nbf": issued, "exp": issued + expiration_seconds,
            "jti": secrets.token_hex(16), K8S_CLAIM: k8s}


def _str(obj: Any, key: str, where: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        raise errors.Unauthorized(f"service account token: {where}{key} missing or not a "
                                  f"string")
    return value


def _int(claims: dict[str, Any], key: str) -> int:
    value = claims.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.Unauthorized(f"service account token: {key} missing or not a number")
    return int(value)


def check_claims(claims: dict[str, Any], *, issuers: Sequence[str], audiences: Sequence[str],
                 now: float, leeway: float = LEEWAY_SECONDS) -> Claims:
    """The token's service account and binding, if the claims are acceptable now;
    :class:`errors.Unauthorized` saying why otherwise."""
    iss = claims.get("iss")
    if iss not in issuers:
        raise errors.Unauthorized(f"service account token: issuer {iss!r} is not trusted")
    aud = claims.get("aud")
    token_aud = (aud,) if isinstance(aud, str) else tuple(a for a in aud or ()
                                                          if isinstance(a, str))
    if not set(token_aud) & set(audiences):
        raise errors.Unauthorized(f"service account token: audience {list(token_aud)} is "
                                  f"not one of this API's ({', '.join(audiences)})")
    exp, nbf = _int(claims, "exp"), claims.get("nbf", claims.get("iat"))
    if now > exp + leeway:
        raise errors.Unauthorized("service account token has expired")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and now < nbf - leeway:
        raise errors.Unauthorized("service account token is not valid yet")
    k8s = claims.get(K8S_CLAIM)
    if not isinstance(k8s, dict):
        raise errors.Unauthorized(f"service account token: no {K8S_CLAIM} claim")
    namespace = _str(k8s, "namespace", f"{K8S_CLAIM}.")
    sa = k8s.get("serviceaccount")
    name = _str(sa, "name", f"{K8S_CLAIM}.serviceaccount.")
    uid = _str(sa, "uid", f"{K8S_CLAIM}.serviceaccount.")
    if claims.get("sub") != sa_user_name(namespace, name):
        raise errors.Unauthorized("service account token: sub does not match its "
                                  "service account")
    pod = None
    if k8s.get("pod") is not None:
        p = k8s["pod"]
        pod = BoundPod(_str(p, "name", f"{K8S_CLAIM}.pod."), _str(p, "uid", f"{K8S_CLAIM}.pod."))
    return Claims(namespace, name, uid, pod, token_aud, _int(claims, "iat")
                  if "iat" in claims else 0, exp)


def check_bound_objects(c: Claims, lookup: Lookup, now: float) -> None:
    """The service account and the bound pod still exist with the token's uids."""
    sa = lookup("serviceaccounts", c.namespace, c.name)
    if sa is None:
        raise errors.Unauthorized(f'service account token: serviceaccounts "{c.name}" not '
                                  f'found in namespace "{c.namespace}"')
    if sa.metadata.uid != c.uid:
        raise errors.Unauthorized(f"service account token: serviceaccount {c.namespace}/"
                                  f"{c.name} was recreated (uid {sa.metadata.uid}, the token "
                                  f"names {c.uid})")
    if _deleted_long_ago(sa, now):
        raise errors.Unauthorized(f"service account token: serviceaccount {c.namespace}/"
                                  f"{c.name} is being deleted")
    if c.pod is None:
        return
    pod = lookup("pods", c.namespace, c.pod.name)
    if pod is None:
        raise errors.Unauthorized(f'service account token: the pod it is bound to, '
                                  f'{c.namespace}/{c.pod.name}, no longer exists')
    if pod.metadata.uid != c.pod.uid:
        raise errors.Unauthorized(f"service account token: pod {c.namespace}/{c.pod.name} "
                                  f"has uid {pod.metadata.uid}, the token is bound to "
                                  f"{c.pod.uid}")
    if _deleted_long_ago(pod, now):
        raise errors.Unauthorized(f"service account token: pod {c.namespace}/{c.pod.name} "
                                  "is deleted and awaiting removal")


def _deleted_long_ago(obj: Any, now: float) -> bool:
    ts = obj.metadata.deletion_timestamp
    return obj.metadata.HasField("deletion_timestamp") and (
        ts.seconds + DELETED_POD_GRACE_SECONDS < now)


def load_or_create_keys(pki_dir: Path, signing_key_file: Path | None,
                        key_files: Sequence[Path]) -> tuple[jws.SigningKey,
                                                            list[jws.VerifyingKey]]:
    """The signing key (``signing_key_file``, else ``pki_dir/service-account.key``, made
    0600 at first start) and the keys whose tokens are accepted: the signing key's and
    those of ``key_files``. :class:`jws.JwsError` names a file that cannot be used."""
    if signing_key_file is not None:
        key = jws.load_signing_key(signing_key_file)
    else:
        path = pki_dir / DEFAULT_KEY_NAME
        if path.exists():
            key = jws.load_signing_key(path)
        else:
            key = jws.new_signing_key()
            pki_dir.mkdir(parents=True, exist_ok=True)
            pki.write_private(path, jws.private_pem(key))
    trusted: list[jws.VerifyingKey] = [key.public_key()]
    for f in key_files:
        trusted.extend(jws.load_verifying_keys(f))
    return key, trusted


class TokenIssuer:
    """Signs service-account tokens with one key for one issuer."""

    def __init__(self, key: jws.SigningKey, issuer: str = DEFAULT_ISSUER,
                 audiences: Sequence[str] = (), now: Callable[[], float] = time.time, *,
                 max_expiration_seconds: int | None = None) -> None:
        self.key = key
        # --service-account-max-token-expiration: longer requests are cut to it
        self.max_expiration_seconds = max_expiration_seconds
        self.issuer = issuer
        # the API's audiences: what a token asking for none is for (Kubernetes'
        # --api-audiences, defaulting to the issuer)
        self.audiences = tuple(audiences) or (issuer,)
        self.now = now

    def issue(self, namespace: str, name: str, uid: str, *, audiences: Sequence[str] = (),
              pod: BoundPod | None = None,
              expiration_seconds: int = DEFAULT_EXPIRATION_SECONDS) -> tuple[str, int]:
        """The token and its expiry (seconds since the epoch)."""
        claims = make_claims(issuer=self.issuer, audiences=tuple(audiences) or self.audiences,
                             namespace=namespace, name=name, uid=uid, pod=pod, now=self.now(),
                             expiration_seconds=expiration_seconds)
        return jws.sign(claims, self.key), int(claims["exp"])


class TokenAuthenticator:
    """Judges bearer tokens that look like JWTs (see the module docstring)."""

    def __init__(self, keys: Sequence[jws.VerifyingKey], issuers: Sequence[str],
                 audiences: Sequence[str], lookup: Lookup,
                 now: Callable[[], float] = time.time) -> None:
        if not keys or not issuers:
            raise ValueError("service account tokens need at least one key and one issuer")
        self.keys = jws.keyring(keys)
        self.issuers = tuple(issuers)
        self.audiences = tuple(audiences) or (self.issuers[0],)
        self.lookup = lookup
        self.now = now
        # token -> its verified claims: a signature is checked once (the expensive part);
        # times, audience and the bound objects are judged on every call
        self._verified: dict[str, dict[str, Any]] = {}

    def authenticate(self, token: str) -> UserInfo:
        raw = self._verified.get(token)
        if raw is None:
            try:
                raw = jws.verify(token, self.keys)
            except jws.JwsError as e:
                raise errors.Unauthorized(f"service account token: {e}") from None
            if len(self._verified) >= VERIFIED_CACHE_MAX:
                self._verified.clear()
            self._verified[token] = raw
        now = self.now()
        c = check_claims(raw, issuers=self.issuers, audiences=self.audiences, now=now)
        check_bound_objects(c, self.lookup, now)
        return with_authenticated(UserInfo(sa_user_name(c.namespace, c.name),
                                           sa_groups(c.namespace), c.uid))


__all__ = ["DEFAULT_EXPIRATION_SECONDS", "DEFAULT_ISSUER", "MAX_EXPIRATION_SECONDS",
           "MIN_EXPIRATION_SECONDS", "SA_GROUP", "BoundPod", "Claims", "TokenAuthenticator",
           "TokenIssuer", "check_bound_objects", "check_claims", "load_or_create_keys",
           "make_claims", "sa_groups",
           "sa_user_name"]
