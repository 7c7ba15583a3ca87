"""The encryption providers and the per-resource transformer: stored format, round trips,
key rotation (first writes, all read, stale), and failures that name the key, never the
value."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import pytest

from control.apiserver.encryption import (
    AesCbc,
    AesGcm,
    TransformMetrics,
    refuse_encrypted,
    transformer,
    transformer_resolver,
)
from control.apiserver.encryption_config import Key, Provider, parse
from control.runtime.metrics import Registry
from control.store.transformed import TransformError

KEY = "/registry/secrets/default/db"
PLAIN = b"\x0a\x04name-and-some-secret-bytes\x00\xff" * 3


def counter_random() -> Any:
    """A deterministic random source (distinct bytes per call)."""
    n = itertools.count(1)
    return lambda size: bytes([next(n) % 256]) * size


def provider(kind: str, *names: str, length: int = 32) -> Provider:
    return Provider(kind, tuple(Key(n, bytes([i + 1]) * length) for i, n in enumerate(names)))


IDENTITY = Provider("identity")
CIPHERS = [("aescbc", AesCbc), ("aesgcm", AesGcm)]


@pytest.mark.parametrize(("kind", "cls"), CIPHERS)
@pytest.mark.parametrize("length", [16, 24, 32])
def test_round_trip_and_stored_format(kind: str, cls: Any, length: int) -> None:
    t = transformer((provider(kind, "key1", length=length),))
    stored = t.to_storage(KEY, PLAIN)
    prefix = f"k8s:enc:{kind}:v1:key1:".encode()
    assert stored.startswith(prefix)
    assert PLAIN not in stored and b"secret-bytes" not in stored
    assert t.from_storage(KEY, stored) == (PLAIN, False)
    # a fresh nonce / IV every time: the same value never stores the same twice
    assert t.to_storage(KEY, PLAIN) != stored
    # the bytes after the prefix are exactly the cipher's (Kubernetes' layout)
    assert cls(bytes([1]) * length).decrypt(KEY, stored[len(prefix):]) == PLAIN


@pytest.mark.parametrize(("kind", "cls"), CIPHERS)
def test_empty_value_round_trips(kind: str, cls: Any) -> None:
    t = transformer((provider(kind, "k"),))
    assert t.from_storage(KEY, t.to_storage(KEY, b"")) == (b"", False)


# Fixed IVs make the aescbc cases deterministic: CBC has no authentication, so a wrong key
# or a flipped bit is only caught by the padding check (as in Kubernetes).
@pytest.mark.parametrize(("kind", "expected"), [
    ("aesgcm", "aesgcm: authentication failed"),
    ("aescbc", "aescbc: invalid padding after decryption"),
])
def test_wrong_secret_under_the_same_key_name_fails_naming_the_key(
        kind: str, expected: str) -> None:
    writer = transformer((Provider(kind, (Key("key1", b"A" * 32),)),), counter_random())
    reader = transformer((Provider(kind, (Key("key1", b"B" * 32),)),))
    stored = writer.to_storage(KEY, PLAIN)
    with pytest.raises(TransformError) as e:
        reader.from_storage(KEY, stored)
    assert str(e.value).startswith(f'unable to transform key "{KEY}": {expected}')
    assert e.value.key == KEY


PREFIX_LEN = len("k8s:enc:aesgcm:v1:key1:")


@pytest.mark.parametrize(("kind", "where", "expected"), [
    ("aesgcm", -1, "aesgcm: authentication failed"),  # the tag
    ("aesgcm", PREFIX_LEN + 20, "aesgcm: authentication failed"),  # the ciphertext
    ("aesgcm", PREFIX_LEN + 3, "aesgcm: authentication failed"),  # the nonce
    ("aesgcm", PREFIX_LEN - 3, 'stored with aesgcm key "kex1", which the encryption'),
    ("aescbc", -1, "aescbc: invalid padding"),  # the last block
    # the next-to-last block's last byte flips the padding byte itself: always refused
    ("aescbc", -17, "aescbc: invalid padding"),
])
def test_tampered_ciphertext_fails_naming_the_key(kind: str, where: int, expected: str) -> None:
    t = transformer((provider(kind, "key1"),), counter_random())
    stored = bytearray(t.to_storage(KEY, PLAIN))
    stored[where] ^= 0x01
    with pytest.raises(TransformError) as e:
        t.from_storage(KEY, bytes(stored))
    assert KEY in str(e.value) and expected in str(e.value)
    assert b"secret-bytes".decode() not in str(e.value)


@pytest.mark.parametrize(("kind", "cut", "expected"), [
    ("aesgcm", 10, "aesgcm: the stored data is shorter than a nonce and a tag"),
    ("aescbc", 5, "aescbc: the stored data is not an IV and whole blocks"),
])
def test_truncated_value_fails_clearly(kind: str, cut: int, expected: str) -> None:
    t = transformer((provider(kind, "key1"),))
    stored = t.to_storage(KEY, PLAIN)
    prefix_len = len(f"k8s:enc:{kind}:v1:key1:")
    with pytest.raises(TransformError, match=expected):
        t.from_storage(KEY, stored[:prefix_len + cut])


def test_aesgcm_value_moved_to_another_key_does_not_decrypt() -> None:
    t = transformer((provider("aesgcm", "key1"),))
    stored = t.to_storage(KEY, PLAIN)
    with pytest.raises(TransformError, match="authentication failed"):
        t.from_storage("/registry/secrets/default/other", stored)


def test_first_key_writes_all_keys_read_and_old_ones_are_stale() -> None:
    old = transformer((provider("aescbc", "key1"),))
    stored_old = old.to_storage(KEY, PLAIN)
    rotated = transformer((Provider("aescbc", (Key("key2", b"\x09" * 32),
                                               Key("key1", b"\x01" * 32))),))
    assert rotated.from_storage(KEY, stored_old) == (PLAIN, True)
    stored_new = rotated.to_storage(KEY, PLAIN)
    assert stored_new.startswith(b"k8s:enc:aescbc:v1:key2:")
    assert rotated.from_storage(KEY, stored_new) == (PLAIN, False)
    # the old key removed: what it wrote is refused, naming provider and key name
    only_new = transformer((Provider("aescbc", (Key("key2", b"\x09" * 32),)),))
    with pytest.raises(TransformError, match='stored with aescbc key "key1", which the '
                                             "encryption configuration does not have"):
        only_new.from_storage(KEY, stored_old)


def test_provider_change_reads_the_old_provider() -> None:
    cbc = transformer((provider("aescbc", "key1"),)).to_storage(KEY, PLAIN)
    gcm_first = transformer((provider("aesgcm", "key1"), provider("aescbc", "key1")))
    assert gcm_first.from_storage(KEY, cbc) == (PLAIN, True)
    assert gcm_first.to_storage(KEY, PLAIN).startswith(b"k8s:enc:aesgcm:v1:key1:")


def test_identity_first_writes_plain_and_still_reads_encrypted() -> None:
    encrypted = transformer((provider("aesgcm", "key1"),)).to_storage(KEY, PLAIN)
    t = transformer((IDENTITY, provider("aesgcm", "key1")))
    assert t.to_storage(KEY, PLAIN) is PLAIN
    assert t.from_storage(KEY, PLAIN) == (PLAIN, False)
    assert t.from_storage(KEY, encrypted) == (PLAIN, True)  # rewritten as plain on reencrypt


def test_identity_last_reads_plaintext_as_stale() -> None:
    t = transformer((provider("aescbc", "key1"), IDENTITY))
    assert t.from_storage(KEY, PLAIN) == (PLAIN, True)


def test_plaintext_without_identity_is_refused_saying_what_to_do() -> None:
    t = transformer((provider("aesgcm", "key1"),))
    with pytest.raises(TransformError, match=r"stored in plaintext .* no identity provider: "
                                             r"add '- identity: \{\}'"):
        t.from_storage(KEY, PLAIN)


def test_identity_alone_refuses_encrypted_data() -> None:
    encrypted = transformer((provider("aesgcm", "key1"),)).to_storage(KEY, PLAIN)
    t = transformer((IDENTITY,))
    assert t.from_storage(KEY, PLAIN) == (PLAIN, False)
    with pytest.raises(TransformError, match='stored with aesgcm key "key1"'):
        t.from_storage(KEY, encrypted)


def _config(*entries: tuple[list[str], str]) -> Any:
    secret = base64.b64encode(b"k" * 32).decode()
    return parse({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": res, "providers": [
            {"identity": {}} if kind == "identity" else
            {kind: {"keys": [{"name": "k", "secret": secret}]}}]}
            for res, kind in entries]})


@pytest.mark.parametrize(("entries", "expected"), [
    ([(["secrets"], "aescbc")], {"secrets": "aescbc"}),
    ([(["configmaps", "secrets"], "aesgcm")], {"secrets": "aesgcm", "configmaps": "aesgcm"}),
    ([(["*."], "aescbc")], {"secrets": "aescbc", "pods": "aescbc", "ranges": "aescbc"}),
    ([(["*.apps"], "aescbc")], {"deployments": "aescbc", "secrets": None}),
    ([(["deployments.apps"], "aesgcm")], {"deployments": "aesgcm", "replicasets": None}),
    # "deployments" names a core resource that does not exist: the apps one is not matched
    ([(["deployments"], "aesgcm")], {"deployments": None}),
    ([(["*.*"], "aesgcm")], {"deployments": "aesgcm", "secrets": "aesgcm",
                             "leases": "aesgcm"}),
    # the first rule naming a resource wins
    ([(["secrets"], "identity"), (["*.*"], "aescbc")], {"secrets": "identity",
                                                      "configmaps": "aescbc"}),
])
def test_resolver_picks_the_first_matching_rule(entries: list[tuple[list[str], str]],
                                                expected: dict[str, str | None]) -> None:
    resolve = transformer_resolver(_config(*entries))
    for resource, kind in expected.items():
        t = resolve(f"/registry/{resource}/ns/name")
        if kind is None:
            assert t is None, resource
            continue
        assert t is not None, resource
        stored = t.to_storage("/k", b"v")
        assert (stored == b"v") if kind == "identity" else stored.startswith(
            f"k8s:enc:{kind}:".encode()), resource


def test_resolver_decides_once_per_resource() -> None:
    resolve = transformer_resolver(_config((["secrets"], "aescbc")))
    a = resolve("/registry/secrets/a/b")
    assert a is resolve("/registry/secrets/c/d") and a is not None
    assert resolve("/registry/pods/a/b") is None
    assert resolve("/other") is None


def test_operations_are_counted_by_provider_prefix_never_key_name() -> None:
    registry = Registry()
    metrics = TransformMetrics(registry)
    old = transformer((provider("aesgcm", "key1"),)).to_storage(KEY, PLAIN)
    t = transformer((provider("aescbc", "secret-key-name"), provider("aesgcm", "key1"),
                     IDENTITY), metrics=metrics)
    t.from_storage(KEY, t.to_storage(KEY, PLAIN))
    t.from_storage(KEY, old)
    t.from_storage(KEY, PLAIN)
    with pytest.raises(TransformError):
        t.from_storage(KEY, b"k8s:enc:aescbc:v1:gone:" + bytes(32))
    text = registry.render()
    name = "apiserver_storage_transformation_operations_total"
    for labels in (
            'status="OK",transformation_type="to_storage",transformer_prefix="k8s:enc:aescbc:v1:"',
            'status="OK",transformation_type="from_storage",transformer_prefix="k8s:enc:aescbc:v1:"',
            'status="OK",transformation_type="from_storage",transformer_prefix="k8s:enc:aesgcm:v1:"',
            'status="OK",transformation_type="from_storage",transformer_prefix="identity"',
            'status="Unknown",transformation_type="from_storage",'
            'transformer_prefix="k8s:enc:aescbc:v1:"'):
        assert f"{name}{{{labels}}} 1.0" in text, text
    assert "secret-key-name" not in text and "gone" not in text


def test_unconfigured_resources_refuse_encrypted_values() -> None:
    refuse_encrypted(KEY, PLAIN)  # plain: fine
    encrypted = transformer((provider("aesgcm", "key1"),)).to_storage(KEY, PLAIN)
    with pytest.raises(TransformError, match=f'unable to transform key "{KEY}": stored '
                                             'encrypted with aesgcm key "key1", but no '
                                             "encryption configuration covers"):
        refuse_encrypted(KEY, encrypted)
