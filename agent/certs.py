"""The agent's certificates: joining with a token, keeping, reusing and renewing them.

Owns the node's identity on disk (``<data-dir>/pki``: ``ca.crt``, ``client.crt`` +
``client.key`` for ``system:node:<name>`` in ``system:nodes``, ``serving.crt`` +
``serving.key`` for its own port, ``kube-proxy.crt`` + ``kube-proxy.key`` for the
proxy's ``system:kube-proxy``, ``kubelet.conf`` naming the API address and those
files; keys 0600) and how it gets them, as the kubelet's TLS bootstrap does:

- :func:`parse_token`: k3s' secure format ``K10<sha256 of the CA PEM>::<id>.<secret>``;
- :func:`join`: the CA the server presents (unverified), its hash checked against the
  token *before* the token is sent; then, over TLS verified with that CA, the cluster's
  API address (``kube-public/cluster-info``) and a CertificateSigningRequest with the
  token as credential (signer ``kubernetes.io/kube-apiserver-client-kubelet``), approved
  and signed by the controller manager;
- :func:`request_certificate`: one CSR, waited for until issued, denied or timed out;
- :func:`proxy_identity`: the proxy's certificate (signer
  ``kubernetes.io/kube-apiserver-client``, ``CN=system:kube-proxy``), asked for with the
  node's identity, as k3s hands every agent a kube-proxy certificate;
- :class:`Rotator`: renews a certificate at a jittered 70-90% of its life (as the
  kubelet's certificate manager) with a CSR made with the current identity, writes it,
  and hands the new one to a callback (the agent reopens its channel, the agent server
  serves the new certificate) - no restart.

Failures a user must act on are :class:`JoinError`, one line each. Blocking TLS probes
run in a worker thread; the rest is asyncio on the agent's loop.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from control.api import errors
from control.api.pb import certificates_pb2
from control.client import pki
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.config import config_document, read_config_file, write_config
from control.client.tls import Credentials, TlsError, diagnose, fetch_server_ca
from control.runtime.clock import Clock

log = structlog.get_logger(__name__, component="agent-certs")

TOKEN_RE = re.compile(r"^K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})$")
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
# the proxy's own identity (kube-proxy's user, bound to system:node-proxier)
PROXY_SIGNER = "kubernetes.io/kube-apiserver-client"
PROXY_USER = "system:kube-proxy"
CLIENT_USAGES = ("digital signature", "client auth")
NODES = "system:nodes"
NODE_PREFIX = "system:node:"
DEFAULT_CSR_TIMEOUT = 60.0


class JoinError(Exception):
    """Joining or renewing failed in a way the user must fix; one line."""


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str
    token_id: str
    secret: str

    @property
    def bearer(self) -> str:
        return f"{self.token_id}.{self.secret}"


def parse_token(text: str) -> JoinToken:
    m = TOKEN_RE.match(text.strip())
    if m is None:
        raise JoinError("malformed join token: expected K10<sha256 of the CA>::<id>.<secret> "
                        "as printed by `flotilla token create` (id: 6, secret: 16 characters "
                        "of a-z0-9)")
    return JoinToken(*m.groups())


@dataclass(frozen=True)
class NodePki:
    """Where a node keeps its identity."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "serving.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "serving.key"

    @property
    def proxy_cert(self) -> Path:
        return self.directory / "kube-proxy.crt"

    @property
    def proxy_key(self) -> Path:
        return self.directory / "kube-proxy.key"

    @property
    def config(self) -> Path:
        return self.directory / "kubelet.conf"

    def write_client(self, server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        pki.write_private(self.ca, ca_pem, mode=0o644)
        self.write_pair(self.client_cert, self.client_key, cert_pem, key_pem)
        doc = config_document(server, Credentials())
        doc.update({"certificate-authority": self.ca.name,
                    "client-certificate": self.client_cert.name,
                    "client-key": self.client_key.name})
        write_config(self.config, doc)

    @staticmethod
    def write_pair(cert: Path, key: Path, cert_pem: bytes, key_pem: bytes) -> None:
        # key first: a crash between the two leaves an old certificate with a new key,
        # which fails to load and is requested again, never a mismatch that half-works
        cert.parent.mkdir(parents=True, exist_ok=True)
        pki.write_private(key, key_pem)
        pki.write_private(cert, cert_pem, mode=0o644)

    def load_client(self, now: datetime.datetime) -> tuple[str, Credentials] | None:
        """(API address, credentials) of a previous join, if still usable."""
        if not self.config.exists():
            return None
        try:
            cfg = read_config_file(self.config)
            cert = pki.load_cert(cfg.credentials.cert_pem or b"")
            pki.load_key(cfg.credentials.key_pem or b"")
        except Exception as e:  # unreadable: join again
            log.warning("stored node certificate unusable; joining again", error=str(e))
            return None
        if cert.not_valid_after_utc <= now:
            log.warning("stored node certificate expired; joining again",
                        expired=cert.not_valid_after_utc.isoformat())
            return None
        return cfg.server, cfg.credentials

    def load_proxy(self, now: datetime.datetime) -> pki.Issued | None:
        """The stored ``system:kube-proxy`` certificate if it still lives."""
        try:
            cert_pem = self.proxy_cert.read_bytes()
            key_pem = self.proxy_key.read_bytes()
            cert = pki.load_cert(cert_pem)
            pki.load_key(key_pem)
        except (OSError, pki.PkiError):
            return None
        cn, groups = pki.subject_of(cert.subject)
        if cn != PROXY_USER or groups or cert.not_valid_after_utc <= now:
            return None
        return pki.Issued(cert_pem, key_pem)

    def load_serving(self, names: Sequence[str], now: datetime.datetime) -> pki.Issued | None:
        """The stored serving certificate if it still names exactly ``names`` and lives."""
        try:
            cert_pem = self.serving_cert.read_bytes()
            key_pem = self.serving_key.read_bytes()
            cert = pki.load_cert(cert_pem)
            pki.load_key(key_pem)
        except (OSError, pki.PkiError):
            return None
        dns, ips = pki.sans_of(cert)
        want_dns, want_ips = pki.split_sans(names)
        if set(dns) != set(want_dns) or set(ips) != set(want_ips):
            return None
        if cert.not_valid_after_utc <= now:
            return None
        return pki.Issued(cert_pem, key_pem)


def new_csr(name: str, request: bytes, signer: str, usages: Sequence[str]) -> Any:
    csr = certificates_pb2.CertificateSigningRequest(
        api_version="certificates.k8s.io/v1", kind="CertificateSigningRequest")
    csr.metadata.generate_name = name
    csr.spec.request = request
    csr.spec.signer_name = signer
    csr.spec.usages.extend(usages)
    return csr


async def request_certificate(client: ApiClient, key: pki.PrivateKey, node_name: str,
                              signer: str, usages: Sequence[str], *,
                              dns: Sequence[str] = (), ips: Sequence[str] = (),
                              wait: float = DEFAULT_CSR_TIMEOUT,
                              poll: float = 0.25) -> bytes:
    """Create a CSR for ``system:node:<node_name>`` (or, with the proxy's signer, for
    ``system:kube-proxy``) and wait for its certificate."""
    if signer == PROXY_SIGNER:
        request = pki.make_csr(key, PROXY_USER, [])
        prefix = "kube-proxy-csr-"
    else:
        request = pki.make_csr(key, NODE_PREFIX + node_name, [NODES], dns=dns, ips=ips)
        prefix = "node-csr-" if signer == CLIENT_SIGNER else "node-serving-csr-"
    created: Any = await client.create(new_csr(prefix, request, signer, usages))
    name = created.metadata.name
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        csr: Any = await client.get("certificatesigningrequests", name)
        if csr.status.certificate:
            return bytes(csr.status.certificate)
        for c in csr.status.conditions:
            if c.type in ("Denied", "Failed") and c.status == "True":
                raise JoinError(f"certificate request {name} was {c.type.lower()}: "
                                f"{c.reason}: {c.message}")
        if loop.time() >= deadline:
            raise JoinError(f"certificate request {name} ({signer}) was not approved and "
                            f"signed within {wait:g}s: is the controller manager "
                            f"running, and do its names match the node?")
        await asyncio.sleep(poll)


async def join(server: str, token_text: str, node_name: str, node_pki: NodePki, *,
               wait: float = DEFAULT_CSR_TIMEOUT) -> tuple[str, Credentials]:
    """Join the cluster at ``server`` (its supervisor port) with a token; returns the API
    address and the node's credentials, also written to ``node_pki``."""
    token = parse_token(token_text)
    try:
        ca_pem = await asyncio.to_thread(fetch_server_ca, server)
    except TlsError as e:
        raise JoinError(str(e)) from None
    got = pki.ca_hash(ca_pem)
    if not hmac.compare_digest(got, token.ca_hash):
        raise JoinError(f"the certificate authority of {server} (sha256 {got[:16]}...) is not "
                        f"the one the token pins ({token.ca_hash[:16]}...): a token of "
                        f"another cluster, or someone in the middle")
    creds = Credentials(ca_pem=ca_pem, token=token.bearer)
    channel = open_channel(server, creds)
    client = ApiClient(channel, server, timeout=10)
    try:
        try:
            await asyncio.wait_for(channel.channel_ready(), 5)
        except TimeoutError:
            why = await asyncio.to_thread(diagnose, server, Credentials(ca_pem=ca_pem))
            if why and "client certificate" in why:
                why += "; join through the server's supervisor port (9345 by default)"
            raise JoinError(f"cannot join through {server}: {why or 'no answer'}") from None
        try:
            info: Any = await client.get("configmaps", "cluster-info", "kube-public")
            api = info.data.get("server") or server
            creds = await node_identity(client, api, ca_pem, node_name, node_pki, wait=wait)
        except errors.Unauthorized as e:
            raise JoinError(f"the server at {server} refused the join token: "
                            f"{e.message}") from None
        except errors.ApiError as e:
            raise JoinError(f"joining through {server} failed: {e.message or e.reason}") \
                from None
    finally:
        await channel.close(None)
    log.info("joined the cluster", server=api, node=node_name)
    return api, creds


async def node_identity(client: ApiClient, api: str, ca_pem: bytes, node_name: str,
                        node_pki: NodePki, *, wait: float = DEFAULT_CSR_TIMEOUT) -> Credentials:
    """A client certificate for ``system:node:<node_name>`` asked for with ``client``'s
    credentials (a bootstrap token, or an administrator's certificate), kept in
    ``node_pki``."""
    key = pki.new_key()
    cert_pem = await request_certificate(
        client, key, node_name, CLIENT_SIGNER, ["digital signature", "client auth"],
        wait=wait)
    key_pem = pki.key_pem(key)
    node_pki.write_client(api, ca_pem, cert_pem, key_pem)
    return Credentials(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)


async def proxy_identity(client: ApiClient, ca_pem: bytes, node_name: str, node_pki: NodePki,
                         now: datetime.datetime, *,
                         wait: float = DEFAULT_CSR_TIMEOUT) -> Credentials:
    """The proxy's ``system:kube-proxy`` client certificate: the stored one while it
    lives, else one asked for with the node's ``client`` (the approver grants it to any
    node, as k3s gives every agent the kube-proxy certificate), kept in ``node_pki``."""
    stored = node_pki.load_proxy(now)
    if stored is None:
        key = pki.new_key()
        cert_pem = await request_certificate(client, key, node_name, PROXY_SIGNER,
                                             CLIENT_USAGES, wait=wait)
        stored = pki.Issued(cert_pem, pki.key_pem(key))
        NodePki.write_pair(node_pki.proxy_cert, node_pki.proxy_key, stored.cert_pem,
                           stored.key_pem)
    return Credentials(ca_pem=ca_pem, cert_pem=stored.cert_pem, key_pem=stored.key_pem)


def is_node_identity(creds: Credentials, node_name: str) -> bool:
    if not creds.cert_pem:
        return False
    cn, groups = pki.subject_of(pki.load_cert(creds.cert_pem).subject)
    return cn == NODE_PREFIX + node_name and NODES in groups


Renew = Callable[[pki.PrivateKey], Awaitable[bytes]]


class Rotator:
    """Renews one certificate before it expires; see the module docstring.

    ``renew(key)`` returns the certificate for the new ``key``; ``on_rotate(cert, key)``
    installs it (after it is written to ``cert_path``/``key_path``).
    """

    def __init__(self, name: str, cert_pem: bytes, renew: Renew,
                 on_rotate: Callable[[bytes, bytes], Awaitable[None]], *,
                 cert_path: Path, key_path: Path, clock: Clock,
                 retry: float = 5.0) -> None:
        self.name = name
        self.cert_pem = cert_pem
        self.renew = renew
        self.on_rotate = on_rotate
        self.cert_path = cert_path
        self.key_path = key_path
        self.clock = clock
        self.retry = retry
        self.rotations = 0

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.now(), datetime.UTC)

    async def run(self) -> None:
        while True:
            await self.clock.sleep(pki.renewal_delay(self.cert_pem, self._now()))
            key = pki.new_key()
            try:
                cert_pem = await self.renew(key)
            except (JoinError, errors.ApiError) as e:
                log.warning("certificate renewal failed; retrying", certificate=self.name,
                            error=str(e))
                await self.clock.sleep(self.retry)
                continue
            key_pem = pki.key_pem(key)
            NodePki.write_pair(self.cert_path, self.key_path, cert_pem, key_pem)
            self.cert_pem = cert_pem
            self.rotations += 1
            await self.on_rotate(cert_pem, key_pem)
            log.info("certificate renewed", certificate=self.name,
                     expires=pki.load_cert(cert_pem).not_valid_after_utc.isoformat())


__all__ = ["CLIENT_SIGNER", "CLIENT_USAGES", "PROXY_SIGNER", "PROXY_USER", "SERVING_SIGNER",
           "JoinError", "JoinToken", "NodePki", "Rotator", "is_node_identity", "join",
           "node_identity", "parse_token", "proxy_identity",
           "request_certificate"]
