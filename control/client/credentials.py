"""What a client presents and trusts: :class:`Credentials` (a plain value, cheap to import).

The CA bundle to trust, a client certificate and key, or a bearer token, or
``insecure_skip_verify``, and whom to impersonate; :mod:`control.client.tls` turns them into gRPC's credentials.
Immutable; safe to share between tasks and threads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Credentials:
    """A client's credentials; every field is optional, an empty one trusts the system CAs."""

    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    insecure_skip_verify: bool = False
    # the name the server's certificate must carry, when it differs from the dialled host
    server_name: str | None = None
    # act as this user (and these groups): Kubernetes' impersonation, sent as call metadata
    # on every call; the server allows it only with the ``impersonate`` verb
    impersonate_user: str = ""
    impersonate_groups: tuple[str, ...] = ()

    def with_token(self, token: str | None) -> Credentials:
        return replace(self, token=token)

    def impersonating(self, user: str, groups: tuple[str, ...] = ()) -> Credentials:
        return replace(self, impersonate_user=user, impersonate_groups=groups)

    def identity(self) -> str:
        """Who these credentials say we are, for messages."""
        if self.cert_pem:
            from control.client import pki

            cn, groups = pki.subject_of(pki.load_cert(self.cert_pem).subject)
            return f"{cn} ({', '.join(groups)})" if groups else cn
        if self.token:
            return "a bearer token"
        return "no credentials"
