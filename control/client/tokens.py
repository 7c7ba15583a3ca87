"""Join tokens: bootstrap-token Secrets (kubeadm's format) shown in k3s' secure format.

A token is ``<id>.<secret>`` (``[a-z0-9]{6}`` and ``[a-z0-9]{16}``), stored as the Secret
``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token`` with the
keys kubeadm writes (``token-id``, ``token-secret``, ``expiration``, ``description``,
``usage-bootstrap-authentication``, ``usage-bootstrap-signing``, ``auth-extra-groups``).
Users see it once, as ``K10<hex SHA-256 of the CA PEM>::<id>.<secret>``: the hash lets a
joining agent check the server before it sends the secret.

Pure functions; the callers create, list and delete the Secrets.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from typing import Any

from control.api import timeutil
from control.api.pb import core_pb2
from control.client import pki

SECRET_TYPE = "bootstrap.kubernetes.io/token"
NAMESPACE = "kube-system"
PREFIX = "bootstrap-token-"
EXTRA_GROUP = "system:bootstrappers:flotilla:default-node-token"
_ALPHABET = string.ascii_lowercase + string.digits
ID_RE = re.compile(r"^[a-z0-9]{6}$")


def generate() -> tuple[str, str]:
    """A fresh (id, secret)."""
    return (''.join(secrets.choice(_ALPHABET) for _ in range(6)),
            ''.join(secrets.choice(_ALPHABET) for _ in range(16)))


def secure_format(ca_pem: bytes, token_id: str, secret: str) -> str:
    return f"K10{pki.ca_hash(ca_pem)}::{token_id}.{secret}"


def token_secret(token_id: str, secret: str, *, ttl_seconds: float = 0,
                 description: str = "", now: float | None = None) -> core_pb2.Secret:
    """The Secret of a token; ``ttl_seconds`` 0 never expires."""
    s = core_pb2.Secret(api_version="v1", kind="Secret", type=SECRET_TYPE)
    s.metadata.name = PREFIX + token_id
    s.metadata.namespace = NAMESPACE
    data = {"token-id": token_id, "token-secret": secret,
            "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
            "auth-extra-groups": EXTRA_GROUP}
    if description:
        data["description"] = description
    if ttl_seconds > 0:
        at = (time.time() if now is None else now) + ttl_seconds
        data["expiration"] = timeutil.format_rfc3339(float(int(at)))
    for k, v in data.items():
        s.data[k] = v.encode()
    return s


def field(secret: Any, key: str) -> str:
    return bytes(secret.data.get(key, b"")).decode(errors="replace")


def is_token_secret(secret: Any) -> bool:
    return bool(secret.type == SECRET_TYPE and secret.metadata.name.startswith(PREFIX))


def expires_in(secret: Any, now: float | None = None) -> float | None:
    """Seconds until the token expires (negative: expired); None: never."""
    text = field(secret, "expiration")
    if not text:
        return None
    try:
        at = timeutil.timestamp_seconds(timeutil.parse_rfc3339(text))
    except ValueError:
        return -1.0
    return at - (time.time() if now is None else now)


__all__ = ["EXTRA_GROUP", "NAMESPACE", "PREFIX", "SECRET_TYPE", "expires_in", "field",
           "generate", "is_token_secret", "secure_format", "token_secret"]
