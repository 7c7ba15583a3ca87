"""The control plane's certificates: CA, serving certificate, and the identities it issues.

Owns :class:`ServerPki`, made once at ``flotilla server`` start from ``DATA_DIR/pki``:

- the cluster CA (``ca.crt``/``ca.key``, created on first start, 10 years);
- the serving certificate (``apiserver.crt``/``apiserver.key``): SANs are every address
  the API listens on (all of the machine's addresses for a wildcard listen), 127.0.0.1,
  ``localhost``, the hostname, the ``kubernetes`` Service's names and IP and ``--tls-san``;
  re-issued at start when a name is missing or less than a third of its life is left;
- client identities issued on demand (admin, the in-process scheduler, controller
  manager and agent, and the apiserver's client certificate towards agents, CN
  ``kube-apiserver-kubelet-client``).

Also :func:`host_addresses` and :func:`advertised_host`: what address a wildcard listen
writes into admin.conf (a real address of the machine, never 0.0.0.0).

Keys are written 0600. Called from the event loop at start (a few ms of key generation).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from control.client import pki
from control.client.tls import Credentials

KUBERNETES_SERVICE_IP = "10.96.0.1"
KUBERNETES_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local")
WILDCARDS = ("0.0.0.0", "::", "")


def host_addresses() -> list[str]:
    """The machine's own IP addresses (global scope first), loopback last. Blocking, and
    pyroute2's synchronous socket runs its own event loop: call it from a worker thread."""
    try:
        from pyroute2 import IPRoute
    except ImportError:  # pragma: no cover - pyroute2 is a locked dependency
        return ["127.0.0.1"]
    found: list[str] = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            addr = msg.get_attr("IFA_ADDRESS")
            if not addr:
                continue
            ip = ipaddress.ip_address(addr)
            if ip.is_link_local:
                continue
            found.append(str(ip))
    found.sort(key=lambda a: (ipaddress.ip_address(a).is_loopback,
                              ipaddress.ip_address(a).version))
    return found or ["127.0.0.1"]


def advertised_host(listen_host: str, addresses: Sequence[str] | None = None) -> str:
    """The host clients should dial: the listen host, or for a wildcard the machine's
    first non-loopback address (loopback when it has none)."""
    if listen_host.strip("[]") not in WILDCARDS:
        return listen_host.strip("[]")
    v6 = listen_host.strip("[]") == "::"
    for a in host_addresses() if addresses is None else addresses:
        ip = ipaddress.ip_address(a)
        if not ip.is_loopback and (ip.version == 4 or v6):
            return a
    return "127.0.0.1"


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serving_names(listen_hosts: Sequence[str], extra: Sequence[str] = (),
                  addresses: Sequence[str] | None = None) -> list[str]:
    names: list[str] = []
    for host in listen_hosts:
        h = host.strip("[]")
        if h in WILDCARDS:
            names.extend(host_addresses() if addresses is None else addresses)
        else:
            names.append(h)
    names += ["127.0.0.1", "localhost", socket.gethostname().lower(), KUBERNETES_SERVICE_IP,
              *KUBERNETES_NAMES, *extra]
    dns, ips = pki.split_sans(names)
    return [*dns, *ips]


@dataclass
class ServerPki:
    directory: Path
    ca: pki.ClusterCA
    serving: pki.Issued
    # the names and addresses the serving certificate carries
    names: list[str] = field(default_factory=list)
    # lifetime of the leaf certificates this server issues (and of its serving one)
    leaf_lifetime: datetime.timedelta = field(
        default_factory=lambda: datetime.timedelta(days=pki.LEAF_DAYS))

    @classmethod
    def load(cls, directory: Path, listen_hosts: Sequence[str],
             extra_sans: Sequence[str] = (), addresses: Sequence[str] | None = None,
             leaf_lifetime: datetime.timedelta | None = None) -> ServerPki:
        """Blocking (files, key generation, netlink): call it from a worker thread."""
        ca = pki.ClusterCA.load_or_create(directory)
        names = serving_names(listen_hosts, extra_sans, addresses)
        crt, key = directory / "apiserver.crt", directory / "apiserver.key"
        serving = None
        if crt.exists() and key.exists():
            serving = pki.Issued(crt.read_bytes(), key.read_bytes())
            if not _still_good(serving.cert_pem, ca, names):
                serving = None
        out = cls(directory, ca, serving or pki.Issued(b"", b""), names)
        if leaf_lifetime is not None:
            out.leaf_lifetime = leaf_lifetime
        if serving is None:
            out.renew_serving()
        return out

    def renew_serving(self) -> pki.Issued:
        """A new serving certificate for the same names, written to the PKI directory
        (blocking: a worker thread in async code)."""
        dns, ips = pki.split_sans(self.names)
        serving = self.ca.issue("kube-apiserver", server=True, dns=dns, ips=ips,
                                lifetime=self.leaf_lifetime)
        pki.write_private(self.directory / "apiserver.key", serving.key_pem)
        pki.write_private(self.directory / "apiserver.crt", serving.cert_pem, mode=0o644)
        self.serving = serving
        return serving

    def serving_renewal_delay(self, now: datetime.datetime) -> float:
        """Seconds until a third of the serving certificate's life is left."""
        cert = pki.load_cert(self.serving.cert_pem)
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        return max(0.0, (cert.not_valid_after_utc - life / 3 - now).total_seconds())

    @property
    def ca_pem(self) -> bytes:
        return self.ca.pem

    def serving_chain(self) -> bytes:
        """The serving certificate followed by the CA: clients that join fetch the CA from
        the end of this chain (and check it against their token's hash)."""
        return self.serving.cert_pem + self.ca.pem

    def client(self, user: str, groups: Sequence[str] = ()) -> Credentials:
        """A fresh client certificate for ``user`` in ``groups``, with the CA to trust."""
        issued = self.ca.issue(user, groups, client=True, lifetime=self.leaf_lifetime)
        return Credentials(ca_pem=self.ca.pem, cert_pem=issued.cert_pem,
                           key_pem=issued.key_pem)


def _still_good(cert_pem: bytes, ca: pki.ClusterCA, names: Sequence[str]) -> bool:
    try:
        cert = pki.load_cert(cert_pem)
    except pki.PkiError:
        return False
    if cert.issuer != ca.cert.subject:
        return False
    dns, ips = pki.sans_of(cert)
    have = set(dns) | set(ips)
    if not set(pki.split_sans(names)[0]) | set(pki.split_sans(names)[1]) <= have:
        return False
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - pki.now() > life / 3


__all__ = ["KUBERNETES_NAMES", "KUBERNETES_SERVICE_IP", "ServerPki", "advertised_host",
           "host_addresses", "join_host_port", "serving_names"]
