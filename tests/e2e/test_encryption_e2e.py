"""Secrets at rest, end to end on a real `flotilla server` process: the Secret's bytes are
in no file of the data directory (the SQLite database, its WAL, anything else) while every
read path returns them; a key rotation (new key first, `flotilla secrets reencrypt`, old
key removed, restart) keeps them readable; identity first still reads encrypted data; a
bad configuration or a missing key refuses to start, saying why."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.api import errors
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from tests.conftest import admin_config
from tests.e2e.servers import address, start_server, stop

FAST = ("--disable", "scheduler,controllers,dns")
TIMEOUT = 30.0


def key(length: int = 32) -> str:
    return base64.b64encode(os.urandom(length)).decode()


def write_config(path: Path, *providers: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": list(providers)}]}))
    return path


def aes(kind: str, name: str, secret: str) -> dict[str, Any]:
    return {kind: {"keys": [{"name": name, "secret": secret}]}}


def files_holding(directory: Path, *needles: bytes) -> list[str]:
    """Every file under ``directory`` that holds any of ``needles``."""
    found = []
    for f in sorted(directory.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            found += [f"{f.name}: {n!r}" for n in needles if n in data]
    return found


@asynccontextmanager
async def server(data: Path, config: Path) -> AsyncIterator[ApiClient]:
    """The server logs at debug level to ``server.log`` beside the data dir."""
    proc = await asyncio.to_thread(start_server, data, *FAST, "--encryption-provider-config",
                                   str(config), log=data.parent / "server.log")
    channel = None
    try:
        channel = open_channel(address(data), admin_config(data).credentials)
        yield ApiClient(channel, timeout=10)
    finally:
        if channel is not None:
            await channel.close()
        await asyncio.to_thread(stop, proc)


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control.cli.main", "--config", str(data / "admin.conf"),
         *args], capture_output=True, text=True, timeout=TIMEOUT)


def refused_start(data: Path, config: Path | None) -> subprocess.CompletedProcess[str]:
    flag = ["--encryption-provider-config", str(config)] if config is not None else []
    return subprocess.run(
        [sys.executable, "-m", "control.cli.main", "server", "--data-dir", str(data),
         "--listen", "127.0.0.1:0", "--supervisor-port", "0", *FAST, *flag],
        capture_output=True, text=True, timeout=TIMEOUT)


async def replay(client: ApiClient, resource_version: str, n: int) -> list[bytes]:
    """The passwords of the first ``n`` Secret events after ``resource_version``."""
    out: list[bytes] = []
    async with asyncio.timeout(TIMEOUT):
        async for ev in client.watch(core_pb2.Secret, "default",
                                     resource_version=resource_version):
            if ev.type != "BOOKMARK":
                out.append(bytes(ev.object.data["password"]))
            if len(out) == n:
                break
    return out


def secret(name: str, value: bytes) -> core_pb2.Secret:
    s = core_pb2.Secret()
    s.metadata.name, s.metadata.namespace = name, "default"
    s.data["password"] = value
    return s


async def test_secret_bytes_never_reach_the_data_dir_and_survive_rotation(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    marker = b"FLOTILLA-SECRET-" + os.urandom(8).hex().encode()
    needles = (marker, base64.b64encode(marker), marker[:24])
    key1, key2 = key(32), key(16)
    first = write_config(tmp_path / "enc1.yaml", aes("aesgcm", "key1", key1))

    async with server(data, first) as client:
        created = await client.create(secret("db", marker))
        updated = secret("db", marker + b"-v2")
        updated.metadata.resource_version = created.metadata.resource_version
        await client.update(updated)
        await client.create(secret("zz", marker + b"-other"))
        got = await client.get(core_pb2.Secret, "db", "default")
        assert got.data["password"] == marker + b"-v2"
        # paging: the second page is read from the store at the first page's revision
        page = await client.list(core_pb2.Secret, "default", limit=1)
        assert page.continue_
        rest = await client.list(core_pb2.Secret, "default", limit=1,
                                 continue_=page.continue_)
        assert [s.data["password"] for s in [*page.items, *rest.items]] == [
            marker + b"-v2", marker + b"-other"]
        # history of the object, and a watch replaying from before the writes
        history = await client.history(core_pb2.Secret, "db", "default")
        assert [o.data["password"] for _, _, o in history] == [marker, marker + b"-v2"]
        before = str(int(created.metadata.resource_version) - 1)
        assert await replay(client, before, 3) == [marker, marker + b"-v2", marker + b"-other"]
        # while the server runs (the WAL holds the latest writes) ...
        assert not await asyncio.to_thread(files_holding, data, *needles)
        # ... and the values are there, encrypted as Kubernetes stores them
        assert await asyncio.to_thread(files_holding, data, b"k8s:enc:aesgcm:v1:key1:")
    assert not await asyncio.to_thread(files_holding, data, *needles)

    # rotation: a new key first, the old one still reads
    rotated = write_config(tmp_path / "enc2.yaml", aes("aescbc", "key2", key2),
                           aes("aesgcm", "key1", key1))
    async with server(data, rotated) as client:
        got = await client.get(core_pb2.Secret, "db", "default")
        assert got.data["password"] == marker + b"-v2"
        # the watch cache's window was refilled from the store's log at start (decrypted)
        assert await replay(client, before, 3) == [marker, marker + b"-v2", marker + b"-other"]
        done = await asyncio.to_thread(cli, data, "secrets", "reencrypt")
        assert done.returncode == 0, done.stderr
        assert "secret/db -n default rewritten" in done.stdout
        assert "rewritten, 0 already current" in done.stdout.splitlines()[-1]
        again = await asyncio.to_thread(cli, data, "secrets", "reencrypt")
        assert again.returncode == 0 and " 0 rewritten" in again.stdout, again.stdout
        assert marker.decode() not in done.stdout + done.stderr  # never printed
        # other resources too (nothing to move for ConfigMaps here: identity, unchanged)
        cms = await asyncio.to_thread(cli, data, "secrets", "reencrypt", "-q",
                                      "--resource", "configmaps")
        assert cms.returncode == 0, cms.stderr
        assert "ConfigMap objects: 0 rewritten" in cms.stdout, cms.stdout
        bad = await asyncio.to_thread(cli, data, "secrets", "reencrypt", "--resource", "nope")
        assert bad.returncode != 0 and "--resource 'nope': no such resource" in bad.stderr
        after = await client.get(core_pb2.Secret, "db", "default")
        assert after.data["password"] == marker + b"-v2"
        assert int(after.metadata.resource_version) > int(got.metadata.resource_version)
    assert not await asyncio.to_thread(files_holding, data, *needles)

    # the old key removed: everything live was rewritten, so the server starts and reads
    only_new = write_config(tmp_path / "enc3.yaml", aes("aescbc", "key2", key2))
    async with server(data, only_new) as client:
        got = await client.get(core_pb2.Secret, "db", "default")
        assert got.data["password"] == marker + b"-v2"
        # the log's older revisions were written with key1: no window is loaded from it, so
        # a watch from before the restart is told to relist, as from a compacted revision
        with pytest.raises(errors.Gone):
            await replay(client, before, 1)

    # identity first (turning encryption off) still reads what was encrypted
    identity_first = write_config(tmp_path / "enc4.yaml", {"identity": {}},
                                  aes("aescbc", "key2", key2))
    async with server(data, identity_first) as client:
        got = await client.get(core_pb2.Secret, "db", "default")
        assert got.data["password"] == marker + b"-v2"

    # nothing the server logged (debug level, every write) holds the value
    log = await asyncio.to_thread((tmp_path / "server.log").read_bytes)
    assert b'"event": "write"' in log and b"secrets" in log
    assert not any(n in log for n in needles)

    # a key that encrypted live objects is missing: refused, naming the object and the key
    wrong = write_config(tmp_path / "enc5.yaml", aes("aescbc", "key3", key(32)))
    refused = await asyncio.to_thread(refused_start, data, wrong)
    assert refused.returncode != 0
    assert "refusing to start" in refused.stderr
    assert "/registry/secrets/default/db" in refused.stderr
    assert 'aescbc key "key2"' in refused.stderr
    assert "Traceback" not in refused.stderr

    # no configuration at all: refused the same way, not decoded as garbage
    refused = await asyncio.to_thread(refused_start, data, None)
    assert refused.returncode != 0
    assert ("cannot be read without --encryption-provider-config: /registry/secrets/default/"
            in refused.stderr), refused.stderr
    assert 'stored encrypted with aescbc key "key2", but no encryption configuration ' \
        "covers this resource" in refused.stderr


async def test_bad_config_refuses_to_start_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {"aescbc": {"keys": [{"name": "key1", "secret": base64.b64encode(
                b"short").decode()}]}}]}]}))
    refused = await asyncio.to_thread(refused_start, data, bad)
    assert refused.returncode != 0
    assert (f"--encryption-provider-config: {bad}: resources[0].providers[0].aescbc.keys[0]"
            ".secret: the key is 5 bytes") in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not data.exists()  # nothing started, nothing written


async def test_automatic_reload_needs_a_config(tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "control.cli.main", "server", "--data-dir",
         str(tmp_path / "data"), "--encryption-provider-config-automatic-reload"],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode != 0
    assert ("--encryption-provider-config-automatic-reload needs "
            "--encryption-provider-config") in done.stderr
    assert not (tmp_path / "data").exists()
