"""What a client presents and trusts on a connection, and how a failed handshake is explained.

Owns :class:`Credentials` (the CA bundle to trust, a client certificate and key, or a
bearer token, or ``insecure_skip_verify``) and their gRPC form (:func:`channel_credentials`),
plus two small TLS probes made with Python's ``ssl`` module, off the gRPC stack:

- :func:`fetch_server_ca`: the CA certificate the server sends at the end of its chain,
  *unverified*: the join checks its hash against the token before trusting it (no trust on
  first use), and ``--insecure-skip-tls-verify`` trusts it without checking;
- :func:`diagnose`: when a channel cannot connect, one handshake that says why in words
  (unknown certificate authority, expired, name mismatch, client certificate refused, not
  TLS), so a certificate error is one line naming the address and the cause.

gRPC's channel credentials cannot disable verification, so skipping it means trusting
whatever CA the server presents (and its first name). The probes block (bounded by their
timeout): call them from a worker thread in async code.
"""

from __future__ import annotations

import _ssl
import datetime
import socket
import ssl
from dataclasses import replace

import grpc

from control.client.credentials import Credentials

PROBE_TIMEOUT = 3.0


class TlsError(Exception):
    """A TLS-level failure, in words, naming the address."""


def split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise TlsError(f"{target}: expected HOST:PORT") from None


def fetch_server_chain(target: str, timeout: float = PROBE_TIMEOUT) -> list[bytes]:
    """The PEM certificates the server at ``target`` presents, unverified (leaf first)."""
    host, port = split_target(target)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            obj = tls._sslobj  # type: ignore[attr-defined]
            chain = obj.get_unverified_chain() or []
            out: list[bytes] = []
            for c in chain:
                data = c.public_bytes(_ssl.ENCODING_PEM)
                out.append(data.encode() if isinstance(data, str) else data)
            return out
    except ssl.SSLError as e:
        raise TlsError(f"{target}: TLS handshake failed: {e.reason or e}") from None
    except OSError as e:
        raise TlsError(f"cannot connect to {target}: {e.strerror or e}") from None


def fetch_server_ca(target: str, timeout: float = PROBE_TIMEOUT) -> bytes:
    """The CA certificate (PEM) ending the server's chain, *not verified* by anything."""
    from control.client import pki

    for pem in reversed(fetch_server_chain(target, timeout)):
        cert = pki.load_cert(pem)
        try:
            is_ca = cert.extensions.get_extension_for_class(
                pki.x509.BasicConstraints).value.ca
        except pki.x509.ExtensionNotFound:
            is_ca = False
        if is_ca and cert.subject == cert.issuer:
            return pki.cert_pem(cert)
    raise TlsError(f"{target}: the server did not present its certificate authority")


def _first_name(leaf_pem: bytes) -> str | None:
    from control.client import pki

    dns, ips = pki.sans_of(pki.load_cert(leaf_pem))
    names = dns or ips
    return names[0] if names else None


def trust_whatever_is_presented(target: str, creds: Credentials) -> Credentials:
    """``insecure_skip_verify``: credentials that trust the CA the server presents now and
    the first name of its certificate (blocking: one TLS probe)."""
    if not creds.insecure_skip_verify:
        return creds
    chain = fetch_server_chain(target)
    if not chain:
        raise TlsError(f"{target}: the server presented no certificate")
    return replace(creds, ca_pem=fetch_server_ca(target), insecure_skip_verify=False,
                   server_name=creds.server_name or _first_name(chain[0]))


def channel_credentials(target: str, creds: Credentials) -> tuple[grpc.ChannelCredentials,
                                                                  list[tuple[str, str]]]:
    """gRPC credentials for ``creds`` and the channel options they need (name override).
    Blocks for a TLS probe when ``insecure_skip_verify`` is set (see
    :func:`trust_whatever_is_presented`, which async callers run in a thread first)."""
    creds = trust_whatever_is_presented(target, creds)
    ca = creds.ca_pem
    options: list[tuple[str, str]] = []
    server_name = creds.server_name
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    ssl_creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=creds.key_pem, certificate_chain=creds.cert_pem)
    calls: list[grpc.CallCredentials] = []
    if creds.token:
        calls.append(grpc.access_token_call_credentials(creds.token))
    if creds.impersonate_user or creds.impersonate_groups:
        calls.append(grpc.metadata_call_credentials(_Impersonation(
            creds.impersonate_user, creds.impersonate_groups), name="impersonation"))
    if calls:
        return grpc.composite_channel_credentials(ssl_creds, *calls), options
    return ssl_creds, options


class _Impersonation(grpc.AuthMetadataPlugin):
    """Adds Kubernetes' Impersonate-User/-Group (as ``impersonate-user`` and one
    ``impersonate-group`` per group) to every call; gRPC runs it on its own thread."""

    def __init__(self, user: str, groups: tuple[str, ...]) -> None:
        self.metadata = ((("impersonate-user", user),) if user else ()) + tuple(
            ("impersonate-group", g) for g in groups)

    def __call__(self, context: grpc.AuthMetadataContext,
                 callback: grpc.AuthMetadataPluginCallback) -> None:
        callback(self.metadata, None)


def _verify_message(e: ssl.SSLCertVerificationError) -> str:
    msg = (e.verify_message or str(e)).strip()
    low = msg.lower()
    if "expired" in low:
        return "the server's certificate has expired"
    if "not yet valid" in low:
        return "the server's certificate is not valid yet (clock skew?)"
    if "hostname mismatch" in low or "ip address mismatch" in low:
        return f"the server's certificate does not name this address ({msg})"
    if "issuer" in low or "self-signed" in low or "self signed" in low:
        return "the server's certificate is signed by an unknown certificate authority"
    return f"the server's certificate was refused: {msg}"


def diagnose(target: str, creds: Credentials, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why a TLS connection to ``target`` with ``creds`` fails, in words; None if it works
    or the failure is not TLS's (a refused or unreachable port: gRPC says those well)."""
    if creds.cert_pem:
        # imported here: cryptography is slow to import, and the common path (a channel
        # that connects) never needs it
        from control.client import pki

        try:
            cert = pki.load_cert(creds.cert_pem)
        except pki.PkiError as e:
            return f"{target}: the client certificate cannot be read: {e}"
        now = datetime.datetime.now(datetime.UTC)
        if cert.not_valid_after_utc <= now:
            return (f"{target}: the client certificate ({creds.identity()}) expired at "
                    f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    if creds.insecure_skip_verify:
        return None
    host, port = split_target(target)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["h2"])
    try:
        if creds.ca_pem:
            ctx.load_verify_locations(cadata=creds.ca_pem.decode())
        else:
            ctx.load_default_certs()
    except ssl.SSLError as e:
        return f"{target}: the certificate authority data cannot be read: {e}"
    if creds.cert_pem and creds.key_pem:
        import os
        import tempfile
        # ssl loads a client certificate only from files
        with tempfile.TemporaryDirectory(prefix="flotilla-tls-") as tmp:
            path = os.path.join(tmp, "client.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(creds.cert_pem + b"\n" + creds.key_pem)
            ctx.load_cert_chain(path)
    server_name = creds.server_name or host
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            # TLS 1.3 refuses a client certificate after the handshake: a gRPC server
            # speaks first (HTTP/2 SETTINGS), so a close without a byte is that refusal
            tls.settimeout(1.0)
            try:
                first = tls.recv(1)
            except TimeoutError:
                return None
            except ssl.SSLError as e:
                return _client_refused(target, creds, str(e.reason or e))
            except OSError:
                return None
            if not first:
                return _client_refused(target, creds, "closed")
    except ssl.SSLCertVerificationError as e:
        return f"{target}: {_verify_message(e)}"
    except ssl.SSLError as e:
        if "WRONG_VERSION_NUMBER" in str(e) or "wrong version number" in str(e):
            return f"{target}: the server does not speak TLS"
        return _client_refused(target, creds, str(e.reason or e))
    except OSError:
        return None
    return None


def _client_refused(target: str, creds: Credentials, reason: str) -> str:
    reason = reason.lower()
    if not creds.cert_pem or "certificate required" in reason or \
            "certificate_required" in reason:
        return (f"{target}: the server requires a client certificate and these credentials "
                f"have none (use admin.conf, or join with a token)")
    if "unknown ca" in reason or "bad certificate" in reason or "unknown_ca" in reason:
        return (f"{target}: the server refused the client certificate "
                f"({creds.identity()}): not issued by this cluster's certificate authority")
    if "expired" in reason:
        return f"{target}: the server refused the client certificate: it has expired"
    if reason == "closed":
        return (f"{target}: the server refused the client certificate ({creds.identity()}): "
                f"not issued by this cluster's certificate authority")
    return f"{target}: TLS handshake failed: {reason}"


__all__ = ["Credentials", "TlsError", "channel_credentials", "diagnose", "fetch_server_ca",
           "fetch_server_chain", "split_target"]
