"""Encryption at rest through the apiserver's registry and watch cache (no gRPC): an update
that changes nothing rewrites an object stored with an old key (and only then), the watch
cache loads and follows encrypted values, and a value the configuration cannot read is an
internal error naming the object's key (never a traceback, never the value)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from control.api import errors, kinds
from control.api.pb import core_pb2
from control.apiserver import encryption
from control.apiserver.encryption_config import parse
from control.apiserver.registry import Registry
from control.apiserver.watchcache import WatchCache
from control.store.memory import MemoryStore
from control.store.transformed import TransformedStore, TransformerFor, ValueTransformer

T = 10.0
SECRETS = kinds.by_resource("secrets")
KEY1 = base64.b64encode(b"1" * 32).decode()
KEY2 = base64.b64encode(b"2" * 32).decode()


def resolver(*providers: dict[str, Any]) -> TransformerFor:
    return encryption.transformer_resolver(parse({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": list(providers)}]}))


def aescbc(name: str, secret: str) -> dict[str, Any]:
    return {"aescbc": {"keys": [{"name": name, "secret": secret}]}}


class Server:
    """A store, its encryption wrapper (whose configuration a test may swap, as a restart
    with another file would), the watch cache and the registry over it."""

    def __init__(self, inner: MemoryStore, resolve: TransformerFor) -> None:
        self.inner = inner
        self.resolve = resolve
        self.store = TransformedStore(inner, self._for)
        self.cache = WatchCache(self.store)
        self.registry = Registry(self.store, self.cache, stale=self.store.stale)
        self.task: asyncio.Task[None] | None = None

    def _for(self, key: str) -> ValueTransformer | None:
        return self.resolve(key)

    async def start(self) -> Server:
        await self.cache.load()
        self.task = asyncio.create_task(self.cache.run())
        await asyncio.sleep(0)
        return self

    async def stop(self) -> None:
        self.cache.close_all()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def inner() -> AsyncIterator[MemoryStore]:
    s = await MemoryStore.open()
    yield s
    await s.close()


@pytest.fixture
async def servers(inner: MemoryStore) -> AsyncIterator[Callable[..., Any]]:
    started: list[Server] = []

    async def start(resolve: TransformerFor) -> Server:
        s = await Server(inner, resolve).start()
        started.append(s)
        return s

    yield start
    for s in started:
        await s.stop()


def secret(name: str, value: bytes) -> core_pb2.Secret:
    s = core_pb2.Secret()
    s.metadata.name, s.metadata.namespace = name, "default"
    s.data["v"] = value
    return s


async def stored(inner: MemoryStore, name: str) -> bytes:
    kv = await inner.get(f"/registry/secrets/default/{name}")
    assert kv is not None
    return kv.value


async def test_unchanged_update_rewrites_only_stale_objects(
        inner: MemoryStore, servers: Callable[..., Any]) -> None:
    await inner.create("/registry/namespaces/default", core_pb2.Namespace(
        metadata={"name": "default"}).SerializeToString())
    old = await servers(resolver(aescbc("key1", KEY1)))
    await old.registry.create(SECRETS, "default", secret("a", b"sekrit"))
    assert (await stored(inner, "a")).startswith(b"k8s:enc:aescbc:v1:key1:")
    await old.stop()

    new = await servers(resolver(aescbc("key2", KEY2), aescbc("key1", KEY1)))
    assert new.store.stale("/registry/secrets/default/a")
    current = new.registry.lookup(SECRETS, "default", "a").obj
    assert current.data["v"] == b"sekrit"
    dry = core_pb2.Secret.FromString(
        await new.registry.update(SECRETS, "default", current, dry_run=True))
    assert dry == current  # a dry run writes nothing and answers the object as it is
    assert new.store.stale("/registry/secrets/default/a")
    raw = await new.registry.update(SECRETS, "default", current)
    rewritten = core_pb2.Secret.FromString(raw)
    assert int(rewritten.metadata.resource_version) > int(current.metadata.resource_version)
    assert (await stored(inner, "a")).startswith(b"k8s:enc:aescbc:v1:key2:")
    assert not new.store.stale("/registry/secrets/default/a")
    # now current: the same unchanged update writes nothing
    again = core_pb2.Secret.FromString(await new.registry.update(SECRETS, "default", rewritten))
    assert again.metadata.resource_version == rewritten.metadata.resource_version


async def test_unreadable_values_are_internal_errors_naming_the_key(
        inner: MemoryStore, servers: Callable[..., Any]) -> None:
    await inner.create("/registry/namespaces/default", core_pb2.Namespace(
        metadata={"name": "default"}).SerializeToString())
    s = await servers(resolver(aescbc("key1", KEY1)))
    for name in ("a", "b"):
        await s.registry.create(SECRETS, "default", secret(name, b"sekrit-" + name.encode()))
    # the operator swaps the configuration for one without key1 (as a restart would, but
    # the cache keeps what it read): what is read from the store now is refused
    s.resolve = resolver(aescbc("key2", KEY2))
    with pytest.raises(errors.ApiError) as e:
        await s.registry.history(SECRETS, "default", "a")
    assert type(e.value) is errors.ApiError  # InternalError
    assert str(e.value) == (
        'Internal error occurred: unable to transform key "/registry/secrets/default/a": '
        'stored with aescbc key "key1", which the encryption configuration does not have for '
        "this resource (a key removed before every object was rewritten?)")
    page = await s.registry.list(SECRETS, "default", "", "", 1, "", "")
    with pytest.raises(errors.ApiError, match='unable to transform key "/registry/secrets/'
                                              'default/b"'):
        await s.registry.list(SECRETS, "default", "", "", 1, page.continue_, "")
    # a tampered value (one flipped bit): refused the same way. The bit is the last of the
    # next-to-last block, which flips the padding byte: CBC's padding check then fails
    # whatever the key and IV.
    s.resolve = resolver(aescbc("key1", KEY1))
    kv = await inner.get("/registry/secrets/default/a")
    assert kv is not None
    damaged = bytearray(kv.value)
    damaged[-17] ^= 0x01
    await inner.update(kv.key, bytes(damaged), kv.mod_revision)
    with pytest.raises(errors.ApiError, match="aescbc: invalid padding after decryption") as e:
        await s.registry.history(SECRETS, "default", "a")
    assert "sekrit" not in str(e.value)
