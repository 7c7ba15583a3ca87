"""Keys, certificates and certificate requests of a Flotilla cluster (with ``cryptography``).

Owns the cluster's PKI vocabulary, used by the server (its CA, serving certificate, the
certificates it issues) and by clients (a node's key and CertificateSigningRequest):

- :func:`new_key` (ECDSA P-256: fast to make, small on the wire), PEM in and out;
- :class:`ClusterCA`: the cluster CA (10 years), loaded from or created in a directory,
  and :meth:`ClusterCA.issue` for leaf certificates (one year by default): subject
  ``CN=<user>, O=<group>...`` as Kubernetes reads identities, client and/or server usage,
  DNS and IP SANs;
- :func:`make_csr` / :func:`read_csr`: PKCS#10 requests as a CertificateSigningRequest
  carries them;
- :func:`ca_hash`: the hex SHA-256 of the CA PEM that join tokens pin (k3s' format);
- :func:`write_private`: files holding keys are written atomically with mode 0600.

Pure functions apart from the file helpers; no network. Thread- and task-safe (no state).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey

CA_DAYS = 3650
LEAF_DAYS = 365
# clock skew between machines: certificates are valid from a little before their issue
BACKDATE = datetime.timedelta(minutes=5)


class PkiError(Exception):
    """A key, certificate or request that cannot be read or does not fit."""


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise PkiError(f"not a PEM private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"unsupported private key type {type(key).__name__}")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise PkiError(f"not a PEM certificate: {e}") from None


def ca_hash(ca_pem: bytes) -> str:
    """Hex SHA-256 of the CA bundle exactly as served: what a join token pins."""
    return hashlib.sha256(ca_pem).hexdigest()


def name(cn: str, groups: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def subject_of(subject: x509.Name) -> tuple[str, list[str]]:
    """(CN, [O...]): the user and groups a certificate names, as Kubernetes reads them."""
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    cn = str(cns[0].value) if cns else ""
    return cn, [str(o.value) for o in orgs]


def split_sans(sans: Iterable[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of a list of names; duplicates dropped, order kept."""
    dns: list[str] = []
    ips: list[str] = []
    for s in sans:
        s = s.strip().strip("[]")
        if not s:
            continue
        try:
            ip = str(ipaddress.ip_address(s))
        except ValueError:
            if s not in dns:
                dns.append(s)
            continue
        if ip not in ips:
            ips.append(ip)
    return dns, ips


def sans_of(cert: x509.Certificate | x509.CertificateSigningRequest) -> tuple[list[str], list[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return ([str(d) for d in ext.get_values_for_type(x509.DNSName)],
            [str(i) for i in ext.get_values_for_type(x509.IPAddress)])


def _san_extension(dns: Sequence[str], ips: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    return x509.SubjectAlternativeName(names)


def make_csr(key: PrivateKey, cn: str, groups: Sequence[str] = (), dns: Sequence[str] = (),
             ips: Sequence[str] = ()) -> bytes:
    """A PEM PKCS#10 request for ``CN=cn, O=groups`` (and SANs when given)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(name(cn, groups))
    if dns or ips:
        builder = builder.add_extension(_san_extension(dns, ips), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def read_csr(pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise PkiError(f"spec.request is not a PEM certificate request: {e}") from None
    if not csr.is_signature_valid:
        raise PkiError("spec.request: the request's signature does not match its key")
    return csr


def expires_at(cert: x509.Certificate) -> datetime.datetime:
    return cert.not_valid_after_utc


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


class ClusterCA:
    """The cluster CA: a self-signed certificate and its key."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey) -> None:
        self.cert = cert
        self.key = key
        self.pem = cert_pem(cert)

    @classmethod
    def create(cls, common_name: str = "flotilla-ca", days: int = CA_DAYS) -> ClusterCA:
        key = new_key()
        subject = name(common_name)
        start = now() - BACKDATE
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @classmethod
    def load_or_create(cls, directory: Path) -> ClusterCA:
        """``DIR/ca.crt`` + ``DIR/ca.key``, created (key 0600) when neither exists."""
        crt, key = directory / "ca.crt", directory / "ca.key"
        if crt.exists() and key.exists():
            return cls(load_cert(crt.read_bytes()), load_key(key.read_bytes()))
        if crt.exists() or key.exists():
            raise PkiError(f"{directory}: one of ca.crt and ca.key is missing; restore it "
                           f"or remove both to make a new cluster CA")
        ca = cls.create()
        directory.mkdir(parents=True, exist_ok=True)
        write_private(key, key_pem(ca.key))
        write_private(crt, ca.pem, mode=0o644)
        return ca

    def sign(self, public_key: ec.EllipticCurvePublicKey | object, cn: str,
             groups: Sequence[str] = (), *, client: bool = False, server: bool = False,
             dns: Sequence[str] = (), ips: Sequence[str] = (),
             lifetime: datetime.timedelta = datetime.timedelta(days=LEAF_DAYS),
             start: datetime.datetime | None = None) -> x509.Certificate:
        """A leaf certificate for ``public_key``; never longer-lived than the CA. Valid from
        a little before now (clock skew: 5 minutes, or a tenth of a short lifetime)."""
        issued = start or now()
        start = issued - min(BACKDATE, lifetime / 10)
        end = min(issued + lifetime, self.cert.not_valid_after_utc)
        usages = []
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if not usages:
            raise PkiError("a certificate needs client or server usage")
        builder = (x509.CertificateBuilder()
                   .subject_name(name(cn, groups)).issuer_name(self.cert.subject)
                   .public_key(public_key)  # type: ignore[arg-type]
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=False, crl_sign=False, encipher_only=False,
                       decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), critical=False))
        if dns or ips:
            builder = builder.add_extension(_san_extension(dns, ips), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue(self, cn: str, groups: Sequence[str] = (), **kw: object) -> Issued:
        """A new key and its certificate (see :meth:`sign` for the keywords)."""
        key = new_key()
        cert = self.sign(key.public_key(), cn, groups, **kw)  # type: ignore[arg-type]
        return Issued(cert_pem(cert), key_pem(key))


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` atomically (temp file + rename) with ``mode`` from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    tmp.replace(path)


__all__ = ["BACKDATE", "CA_DAYS", "LEAF_DAYS", "ClusterCA", "Issued", "PkiError", "ca_hash",
           "cert_pem", "expires_at", "key_pem", "load_cert", "load_key", "make_csr", "name",
           "new_key", "read_csr", "sans_of", "split_sans", "subject_of", "write_private"]


def renewal_delay(cert_pem: bytes, now: datetime.datetime,
                  rng: random.Random | None = None) -> float:
    """Seconds until a jittered 70-90% of the certificate's life (0 when past it): when
    its holder renews it, as the kubelet's certificate manager does."""
    cert = load_cert(cert_pem)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    fraction = (rng or random).uniform(0.7, 0.9)
    deadline = start + (end - start) * fraction
    return max(0.0, (deadline - now).total_seconds())
