"""Automatic reload of the encryption configuration: a changed file swaps the store's
transformers (new first key writes, old values stale); a bad file or one missing a key in
use changes nothing and is counted as a failure, once per content."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.api.pb import core_pb2
from control.apiserver import encryption, encryption_config
from control.apiserver.encryption_reload import EncryptionConfigReloader, file_digest
from control.runtime.clock import FakeClock
from control.runtime.metrics import Registry
from control.store.memory import MemoryStore
from control.store.transformed import TransformedStore
from tests.conftest import running_cluster

KEY = "/registry/secrets/default/a"
K1 = base64.b64encode(b"1" * 32).decode()
K2 = base64.b64encode(b"2" * 32).decode()


def write(path: Path, *providers: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": list(providers)}]}))


def aesgcm(name: str, secret: str) -> dict[str, Any]:
    return {"aesgcm": {"keys": [{"name": name, "secret": secret}]}}


class Setup:
    def __init__(self, path: Path, inner: MemoryStore) -> None:
        self.path = path
        self.inner = inner
        digest = file_digest(path)
        self.store = TransformedStore(inner, encryption.transformer_resolver(
            encryption_config.load(path)))
        self.registry = Registry()
        self.clock = FakeClock()
        self.reloader = EncryptionConfigReloader(path, self.store, self.registry, digest,
                                                 interval=10.0, clock=self.clock)

    def reloads(self, status: str) -> float:
        prefix = ("apiserver_encryption_config_controller_automatic_reloads_total"
                  f'{{status="{status}"}} ')
        for line in self.registry.render().splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix):])
        return 0.0

    async def stored(self) -> bytes:
        kv = await self.inner.get(KEY)
        assert kv is not None
        return kv.value


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    inner = await MemoryStore.open()
    path = tmp_path / "enc.yaml"
    write(path, aesgcm("key1", K1))
    yield Setup(path, inner)
    await inner.close()


async def test_changed_file_swaps_the_transformers(setup: Setup) -> None:
    kv = await setup.store.create(KEY, b"v1")
    assert not await setup.reloader.check()  # unchanged
    write(setup.path, aesgcm("key2", K2), aesgcm("key1", K1))
    assert await setup.reloader.check()
    assert setup.reloads("success") == 1
    assert setup.store.stale(KEY)  # written with key1, which no longer writes
    kv = await setup.store.update(KEY, b"v2", kv.mod_revision)
    assert (await setup.stored()).startswith(b"k8s:enc:aesgcm:v1:key2:")
    assert not setup.store.stale(KEY)
    assert not await setup.reloader.check()  # the same content again: nothing to do


@pytest.mark.parametrize(("content", "expected"), [
    ("resources: [\n", "not valid YAML"),
    (None, "the key is 3 bytes"),
    ("missing-key", 'stored with aesgcm key "key1"'),
])
async def test_bad_or_unusable_file_changes_nothing(
        setup: Setup, content: str | None, expected: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    await setup.store.create(KEY, b"v1")
    if content is None:
        write(setup.path, aesgcm("key2", base64.b64encode(b"abc").decode()))
    elif content == "missing-key":
        write(setup.path, aesgcm("key2", K2))
    else:
        setup.path.write_text(content)
    assert not await setup.reloader.check()
    assert setup.reloads("failure") == 1
    out = capsys.readouterr()
    assert expected in out.out + out.err
    assert K2 not in out.out + out.err
    # the previous configuration still writes and reads
    kv = await setup.store.get(KEY)
    assert kv is not None and kv.value == b"v1"
    await setup.store.update(KEY, b"v2", kv.mod_revision)
    assert (await setup.stored()).startswith(b"k8s:enc:aesgcm:v1:key1:")
    # the same content is not tried (nor logged) again
    assert not await setup.reloader.check()
    assert setup.reloads("failure") == 1


async def test_run_checks_every_interval(setup: Setup) -> None:
    task = asyncio.create_task(setup.reloader.run())
    try:
        await setup.clock.wait_for_sleepers()
        write(setup.path, aesgcm("key2", K2))
        setup.clock.advance(10.0)
        async with asyncio.timeout(5):
            while setup.reloads("success") < 1:
                await asyncio.sleep(0.01)
        await setup.store.create(KEY, b"v")
        assert (await setup.stored()).startswith(b"k8s:enc:aesgcm:v1:key2:")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_server_follows_the_file_and_rewrites_with_the_new_key(tmp_path: Path) -> None:
    config = tmp_path / "enc.yaml"
    write(config, aesgcm("key1", K1))
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers", "dns"},
                               encryption_provider_config=config,
                               encryption_provider_config_automatic_reload=True,
                               encryption_config_reload_interval=0.1) as c:
        assert c.plane.store is not None
        raw = c.plane.store
        s = core_pb2.Secret()
        s.metadata.name, s.metadata.namespace = "a", "default"
        s.data["v"] = b"sekrit"
        created = await c.client.create(s)

        async def stored() -> bytes:
            kv = await raw.get(KEY)
            assert kv is not None
            return kv.value

        assert (await stored()).startswith(b"k8s:enc:aesgcm:v1:key1:")
        write(config, aesgcm("key2", K2), aesgcm("key1", K1))
        # an unchanged update rewrites the Secret once the new key writes
        async with asyncio.timeout(10):
            while not (await stored()).startswith(b"k8s:enc:aesgcm:v1:key2:"):
                await asyncio.sleep(0.1)
                await c.client.update(created)
                created = await c.client.get(core_pb2.Secret, "a", "default")
        assert created.data["v"] == b"sekrit"
