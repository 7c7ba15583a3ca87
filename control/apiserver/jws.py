"""Compact JSON Web Signatures (RFC 7515) and the JWTs built on them, RS256 and ES256.

What the service-account tokens need and nothing more: :func:`sign` makes
``base64url(header).base64url(claims).base64url(signature)`` with a key's algorithm (an RSA
key signs RS256, a P-256 key ES256) and ``kid`` (Kubernetes' key id: the unpadded base64url
SHA-256 of the public key's DER SubjectPublicKeyInfo); :func:`verify` checks the signature
against a set of public keys (the one the ``kid`` names, else each) and returns the claims.
A token that does not check out is :class:`JwsError` saying why, without the token.

Claims (issuer, audience, times) are the caller's to judge: this module only proves who
signed. ``alg: none`` and algorithms other than the two are refused, whatever the header
says (the algorithm comes from the key, never from the token). ES256 signatures are the
raw 64-byte ``r || s`` of RFC 7518, not DER.

Pure functions over ``cryptography`` keys; thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
VerifyingKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
# a token larger than this is refused before any parsing (a header is not a place for data)
MAX_TOKEN_BYTES = 16 * 1024
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)


class JwsError(Exception):
    """A token that is not a valid signed JWT from one of the keys; the message says why."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwsError("malformed token: a part is not base64url") from None


def algorithm(key: SigningKey | VerifyingKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise JwsError(f"RSA keys of {key.key_size} bits are too small (at least 2048)")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise JwsError(f"elliptic curve {key.curve.name} is not supported (P-256 is)")
        return "ES256"
    raise JwsError(f"unsupported key type {type(key).__name__} (RSA or P-256)")


def key_id(key: SigningKey | VerifyingKey) -> str:
    """Kubernetes' ``kid``: unpadded base64url of SHA-256 over the public key's DER."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                                            ) else key
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64url(hashlib.sha256(der).digest())


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def sign(claims: dict[str, Any], key: SigningKey) -> str:
    alg = algorithm(key)
    header = {"alg": alg, "kid": key_id(key)}
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode()}.{b64url(signature)}"


def _check(key: VerifyingKey, alg: str, signing_input: bytes, signature: bytes) -> bool:
    try:
        if algorithm(key) != alg:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, JwsError):
        return False
    return True


def looks_like_jwt(token: str) -> bool:
    """Cheap shape test: three dot-separated parts, the first a base64url JSON object
    ("eyJ" is the encoding of "{\"")."""
    return token.count(".") == 2 and token.startswith("eyJ")


def header_and_claims(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """The parsed header and claims, the signing input and the signature; no checks."""
    if len(token) > MAX_TOKEN_BYTES:
        raise JwsError(f"token too large ({len(token)} bytes)")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError("malformed token: not three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise JwsError("malformed token: a part is not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwsError("malformed token: header and claims must be JSON objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), b64url_decode(parts[2])


def keyring(keys: Sequence[VerifyingKey]) -> dict[str, VerifyingKey]:
    """``{kid: key}`` for :func:`verify` (computing a kid costs a DER encoding and a hash:
    once per key, not per token)."""
    return {key_id(k): k for k in keys}


def verify(token: str, keys: Mapping[str, VerifyingKey]) -> dict[str, Any]:
    """The claims of ``token`` if one of ``keys`` (a :func:`keyring`) signed it, else
    :class:`JwsError`."""
    header, claims, signing_input, signature = header_and_claims(token)
    alg = header.get("alg")
    if alg not in ("RS256", "ES256"):
        raise JwsError(f"unsupported signing algorithm {alg!r} (RS256 or ES256)")
    kid = header.get("kid")
    named = keys.get(kid) if isinstance(kid, str) else None
    # a kid that names one of our keys is checked against that one only; another kid
    # (another issuer's scheme) is tried against each
    for key in [named] if named is not None else keys.values():
        if _check(key, str(alg), signing_input, signature):
            return claims
    raise JwsError("invalid signature: not signed by a key this server trusts")


# -- keys on disk ------------------------------------------------------------------------


def new_signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def load_signing_key(path: Path) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JwsError(f"{path}: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise JwsError(f"{path}: not a PEM private key without a password: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise JwsError(f"{path}: unsupported key type {type(key).__name__} (RSA or P-256)")
    algorithm(key)
    return key


def load_verifying_keys(path: Path) -> list[VerifyingKey]:
    """Every public key in a PEM file: public keys, private keys (their public half) and
    certificates, as Kubernetes' ``--service-account-key-file`` reads them."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JwsError(f"{path}: {e.strerror or e}") from None
    out: list[VerifyingKey] = []
    for m in _PEM_BLOCK.finditer(data):
        kind, pem = m.group(1), m.group(0)
        key: Any
        try:
            if kind.endswith(b"PRIVATE KEY"):
                key = serialization.load_pem_private_key(pem, password=None).public_key()
            elif kind == b"CERTIFICATE":
                key = x509.load_pem_x509_certificate(pem).public_key()
            elif kind.endswith(b"PUBLIC KEY"):
                key = serialization.load_pem_public_key(pem)
            else:
                continue
        except (ValueError, TypeError) as e:
            raise JwsError(f"{path}: unreadable {kind.decode()}: {e}") from None
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            algorithm(key)
            out.append(key)
    if not out:
        raise JwsError(f"{path}: no public key, private key or certificate in PEM form")
    return out


def private_pem(key: SigningKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


__all__ = ["JwsError", "SigningKey", "VerifyingKey", "algorithm", "b64url", "b64url_decode",
           "header_and_claims", "key_id", "keyring", "load_signing_key", "load_verifying_keys",
           "looks_like_jwt", "new_signing_key", "private_pem", "sign", "verify"]
