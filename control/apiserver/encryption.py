"""Encryption at rest: the value transformers an EncryptionConfiguration describes.

Stored values look as in Kubernetes: ``k8s:enc:<provider>:v1:<key name>:`` then the
ciphertext; ``identity`` stores the plain bytes with no prefix.

- ``aesgcm``: a random 12-byte nonce, then AES-GCM of the value with the store key
  (``/registry/secrets/ns/name``) as authenticated data, so that a value copied under
  another key, or changed by one bit, does not decrypt.
- ``aescbc``: a random 16-byte IV, then AES-CBC of the PKCS#7-padded value (no
  authentication, as Kubernetes': a damaged value shows as bad padding or as an object
  that does not decode).

For one resource the providers and keys form one :class:`PrefixTransformer`: the first key
of the first provider writes; a read picks the provider and key by prefix, in order, and
calls the value *stale* unless that was the writing one (so it is rewritten, see
``control.store.transformed``). Identity reads anything without the ``k8s:enc:`` prefix.
:func:`transformer_resolver` maps a store key to its resource's transformer (None for
resources left as they are, at no cost). :class:`TransformMetrics` counts operations as
kube-apiserver's ``apiserver_storage_transformation_operations_total{transformation_type,
transformer_prefix, status}`` (the provider's prefix, never a key name).

Pure functions and small immutable objects; the random source is a parameter for tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control.api import kinds
from control.apiserver.encryption_config import EncryptionConfig, Provider
from control.runtime.metrics import Registry
from control.store.transformed import TransformerFor, TransformError, ValueTransformer

ENCRYPTED_PREFIX = b"k8s:enc:"
Random = Callable[[int], bytes]


class Cipherer(Protocol):
    """One key of one provider."""

    def encrypt(self, key: str, data: bytes) -> bytes: ...

    def decrypt(self, key: str, data: bytes) -> bytes: ...


class AesGcm:
    NONCE = 12

    def __init__(self, secret: bytes, random: Random = os.urandom) -> None:
        self._aead = AESGCM(secret)
        self._random = random

    def encrypt(self, key: str, data: bytes) -> bytes:
        nonce = self._random(self.NONCE)
        return nonce + self._aead.encrypt(nonce, data, key.encode())

    def decrypt(self, key: str, data: bytes) -> bytes:
        if len(data) < self.NONCE + 16:
            raise TransformError(key, "aesgcm: the stored data is shorter than a nonce and "
                                      "a tag (truncated)")
        try:
            return self._aead.decrypt(data[:self.NONCE], data[self.NONCE:], key.encode())
        except InvalidTag:
            raise TransformError(key, "aesgcm: authentication failed: the stored data was "
                                      "changed, moved from another key, or encrypted with "
                                      "another secret under this key name") from None


class AesCbc:
    BLOCK = 16

    def __init__(self, secret: bytes, random: Random = os.urandom) -> None:
        self._algorithm = algorithms.AES(secret)
        self._random = random

    def encrypt(self, key: str, data: bytes) -> bytes:
        iv = self._random(self.BLOCK)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        enc = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return iv + enc.update(padded) + enc.finalize()

    def decrypt(self, key: str, data: bytes) -> bytes:
        if len(data) < 2 * self.BLOCK or len(data) % self.BLOCK:
            raise TransformError(key, "aescbc: the stored data is not an IV and whole "
                                      "blocks (truncated or damaged)")
        dec = Cipher(self._algorithm, modes.CBC(data[:self.BLOCK])).decryptor()
        padded = dec.update(data[self.BLOCK:]) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise TransformError(key, "aescbc: invalid padding after decryption: the stored "
                                      "data was changed or encrypted with another secret "
                                      "under this key name") from None


class TransformMetrics:
    """kube-apiserver's storage transformation counter, in the apiserver's registry."""

    def __init__(self, registry: Registry) -> None:
        self._ops = registry.counters(
            "apiserver_storage_transformation_operations_total",
            "Total number of transformations (encryption at rest) by type, provider prefix "
            "and status.", ["transformation_type", "transformer_prefix", "status"])

    def count(self, kind: str, prefix: str, status: str = "OK") -> None:
        self._ops.labels(kind, prefix, status).inc()


@dataclass(frozen=True)
class _Prefixed:
    prefix: bytes  # b"" for identity
    cipher: Cipherer | None  # None: identity
    label: str  # the provider's prefix without the key name ("identity" for identity)


class PrefixTransformer:
    """First entry writes, every entry reads (by prefix, in order)."""

    def __init__(self, entries: list[_Prefixed], metrics: TransformMetrics | None = None
                 ) -> None:
        self._entries = entries
        self._writer = entries[0]
        self._metrics = metrics

    def to_storage(self, key: str, data: bytes) -> bytes:
        w = self._writer
        out = data if w.cipher is None else w.prefix + w.cipher.encrypt(key, data)
        if self._metrics is not None:
            self._metrics.count("to_storage", w.label)
        return out

    def from_storage(self, key: str, data: bytes) -> tuple[bytes, bool]:
        try:
            e, plain = self._read(key, data)
        except TransformError:
            if self._metrics is not None:
                self._metrics.count("from_storage", _provider_prefix(data), "Unknown")
            raise
        if self._metrics is not None:
            self._metrics.count("from_storage", e.label)
        return plain, e is not self._writer

    def _read(self, key: str, data: bytes) -> tuple[_Prefixed, bytes]:
        encrypted = data.startswith(ENCRYPTED_PREFIX)
        for e in self._entries:
            if e.cipher is None:
                if not encrypted:
                    return e, data
                continue  # identity cannot read encrypted data: the next provider may
            if data.startswith(e.prefix):
                return e, e.cipher.decrypt(key, data[len(e.prefix):])
        if not encrypted:
            raise TransformError(key, "the value is stored in plaintext and the encryption "
                                      "configuration for this resource has no identity "
                                      "provider: add '- identity: {}' as its last provider "
                                      "until `flotilla secrets reencrypt` has rewritten every "
                                      "object")
        raise TransformError(key, f"stored with {_describe(data)}, which the encryption "
                                  "configuration does not have for this resource (a key "
                                  "removed before every object was rewritten?)")


def refuse_encrypted(key: str, data: bytes) -> None:
    """For resources no rule covers (or every resource, without a configuration): an
    encrypted value is refused, naming how it was stored, as Kubernetes' identity does."""
    if data.startswith(ENCRYPTED_PREFIX):
        raise TransformError(key, f"stored encrypted with {_describe(data)}, but no "
                                  "encryption configuration covers this resource: start "
                                  "with the configuration that wrote it (identity first, "
                                  "to decrypt it with `flotilla secrets reencrypt`)")


def _provider_prefix(data: bytes) -> str:
    if not data.startswith(ENCRYPTED_PREFIX):
        return "identity"
    parts = data.split(b":", 4)
    return ":".join(p.decode(errors="replace")[:20] for p in parts[:4]) + ":"


def _describe(data: bytes) -> str:
    # k8s:enc:<provider>:v1:<name>:...  (the name is ours, never the secret)
    parts = data.split(b":", 5)
    if len(parts) >= 5:
        provider = parts[2].decode(errors="replace")[:20]
        name = parts[4].decode(errors="replace")[:60]
        return f'{provider} key "{name}"'
    return "an unknown provider"


def _entries(provider: Provider, random: Random) -> list[_Prefixed]:
    if provider.type == "identity":
        return [_Prefixed(b"", None, "identity")]
    make = AesGcm if provider.type == "aesgcm" else AesCbc
    label = f"k8s:enc:{provider.type}:v1:"
    return [_Prefixed(f"{label}{k.name}:".encode(), make(k.secret, random), label)
            for k in provider.keys]


def transformer(providers: tuple[Provider, ...], random: Random = os.urandom,
                metrics: TransformMetrics | None = None) -> PrefixTransformer:
    """The transformer of one rule's providers. Identity alone still checks what it reads
    (encrypted data is refused, not handed on as an object)."""
    return PrefixTransformer([e for p in providers for e in _entries(p, random)], metrics)


def _rule_for(config: EncryptionConfig, resource: str, group: str) -> int | None:
    """The index of the first rule naming ``resource`` of ``group`` (Kubernetes' order)."""
    exact = f"{resource}.{group}" if group else resource
    for i, rule in enumerate(config.rules):
        for name in rule.resources:
            if name in (exact, "*.*", f"*.{group}"):
                return i
    return None


def _group_of(resource: str) -> str:
    try:
        return kinds.by_resource(resource).group
    except KeyError:
        return ""  # the apiserver's own records (allocation ranges, leases): core


def transformer_resolver(config: EncryptionConfig, random: Random = os.urandom,
                         metrics: TransformMetrics | None = None) -> TransformerFor:
    """A store key -> its resource's transformer, or None (decided once per resource)."""
    built = [transformer(rule.providers, random, metrics) for rule in config.rules]
    by_resource: dict[str, ValueTransformer | None] = {}

    def resolve(key: str) -> ValueTransformer | None:
        # /registry/<resource>/...
        resource = key.split("/", 3)[2] if key.startswith("/registry/") else ""
        try:
            return by_resource[resource]
        except KeyError:
            pass
        i = _rule_for(config, resource, _group_of(resource)) if resource else None
        t = None if i is None else built[i]
        by_resource[resource] = t
        return t

    return resolve


def encrypted_resources(config: EncryptionConfig) -> list[str]:
    """The served resources whose values a write encrypts (for the start-up log line)."""
    out = []
    for info in kinds.KINDS:
        i = _rule_for(config, info.plural, info.group)
        if i is not None and config.rules[i].providers[0].type != "identity":
            out.append(f"{info.plural}.{info.group}" if info.group else info.plural)
    return out


__all__ = ["ENCRYPTED_PREFIX", "AesCbc", "AesGcm", "PrefixTransformer", "TransformMetrics",
           "encrypted_resources", "refuse_encrypted", "transformer", "transformer_resolver"]
