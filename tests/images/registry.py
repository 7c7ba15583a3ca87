"""A real registry on loopback for tests: Debian's ``docker-registry`` on a free
127.0.0.1 port with its storage in a temporary directory, open, behind htpasswd basic auth,
or behind a bearer-token service run here (JWTs signed by a key made for the test).

Stopped (process ended and waited for) on exit, even on failure; the caller owns the
temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"


def available() -> bool:
    return Path(REGISTRY).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    users: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def self_signed_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flotilla-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    tmp.mkdir(parents=True, exist_ok=True)
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return paths


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Issues registry tokens: full access for a known user, pull-only for anonymous
    callers on repositories under ``public/``, nothing otherwise."""

    def __init__(self, users: dict[str, str], service: str, issuer: str) -> None:
        self.users, self.service, self.issuer = users, service, issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flotilla-test-token")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.requests: list[tuple[str | None, str]] = []  # (user, scope)
        self._server: ThreadingHTTPServer | None = None

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def token(self, user: str | None, scope: str) -> str:
        access = []
        if scope.startswith("repository:"):
            _, repo, actions = scope.split(":", 2)
            if user is not None:
                access.append({"type": "repository", "name": repo, "actions": actions.split(",")})
            elif repo.startswith("public/"):
                access.append({"type": "repository", "name": repo, "actions": ["pull"]})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64url(sig)}"

    def start(self) -> str:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if service.users.get(name) != password:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                scope = (query.get("scope") or [""])[0]
                service.requests.append((user, scope))
                body = json.dumps({"token": service.token(user, scope), "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextlib.contextmanager
def running_registry(
    tmp: Path,
    *,
    auth: str = "none",
    users: dict[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[tuple[Registry, TokenService | None]]:
    """``auth``: none | htpasswd | token; ``tls``: (certificate, key) to serve HTTPS."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    users = users or {}
    config = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {tmp / 'storage'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: flotilla-test-secret",
    ]
    if tls is not None:
        config += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    tokens: TokenService | None = None
    if auth == "htpasswd":
        path = tmp / "htpasswd"
        path.touch()
        for name, password in users.items():
            subprocess.run(
                [HTPASSWD, "-bB", str(path), name, password], check=True, capture_output=True
            )
        config += ["auth:", "  htpasswd:", "    realm: flotilla-test", f"    path: {path}"]
    elif auth == "token":
        tokens = TokenService(users, "flotilla-test-registry", "flotilla-test-issuer")
        (tmp / "token.pem").write_bytes(tokens.cert_pem())
        realm = tokens.start()
        config += [
            "auth:",
            "  token:",
            f"    realm: {realm}",
            f"    service: {tokens.service}",
            f"    issuer: {tokens.issuer}",
            f"    rootcertbundle: {tmp / 'token.pem'}",
        ]
    (tmp / "config.yml").write_text("\n".join(config) + "\n")
    log = open(tmp / "registry.log", "wb")
    proc = subprocess.Popen([REGISTRY, "serve", str(tmp / "config.yml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(
                    f"{'https' if tls else 'http'}://127.0.0.1:{port}/v2/", timeout=1, verify=False
                )
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "docker-registry did not start: " + (tmp / "registry.log").read_text()
                    ) from None
                time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", users), tokens
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if tokens is not None:
            tokens.stop()
