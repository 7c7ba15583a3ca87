"""`flotilla server` refuses a damaged log and recovers from it only when told to (real
subprocesses, real files)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from tests.conftest import admin_config
from tests.e2e.servers import address, start_server, stop
from tests.store.damage import junk_in_the_middle, truncate_to_half

pytestmark = pytest.mark.e2e

SERVER = [sys.executable, "-m", "control.cli.main", "server", "--listen", "127.0.0.1:0",
          "--disable", "controllers,scheduler"]


async def write_configmaps(data: Path, n: int, prefix: str) -> int:
    """Create ``n`` ConfigMaps; returns the newest acknowledged resourceVersion."""
    channel = open_channel(address(data), admin_config(data).credentials)
    try:
        client = ApiClient(channel, timeout=10)
        newest = 0
        for i in range(n):
            cm = core_pb2.ConfigMap()
            cm.metadata.name = f"{prefix}{i}"
            cm.metadata.namespace = "default"
            cm.data["payload"] = "x" * 300
            created = await client.create(cm)
            newest = max(newest, int(created.metadata.resource_version))
        return newest
    finally:
        await channel.close()


async def refused_start(data: Path) -> str:
    """Start a server on ``data``, expecting it to refuse and exit: its error output."""
    refused = await asyncio.create_subprocess_exec(
        *SERVER, "--data-dir", str(data), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        _, raw = await asyncio.wait_for(refused.communicate(), 60)
    finally:
        if refused.returncode is None:
            refused.kill()
            await refused.wait()
    err = raw.decode()
    assert refused.returncode != 0, err
    return err


@pytest.mark.parametrize("damage", [junk_in_the_middle, truncate_to_half])
async def test_damaged_log_refused_then_recovered(
        tmp_path: Path, damage: Callable[[Path], None]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    proc = start_server(data, "--disable", "controllers,scheduler")
    try:
        acknowledged = await write_configmaps(data, 40, "cm")
    finally:
        # kill -9: a clean stop checkpoints the WAL into the database and deletes it
        proc.send_signal(signal.SIGKILL)
        stop(proc)
    wal = data / "state.db-wal"
    damage(wal)

    err = await refused_start(data)
    assert "refusing to start" in err and str(data / "state.db") in err, err
    assert "last good revision is" in err and "--recover-to-last-good" in err, err
    assert "backup" in err, err
    assert not (data / "admin.conf").exists() or "serving" not in err

    proc = start_server(data, "--disable", "controllers,scheduler", "--recover-to-last-good")
    try:
        newest = await write_configmaps(data, 3, "after")
        assert newest > acknowledged  # no resourceVersion is handed out twice
        assert newest - 3 >= acknowledged
    finally:
        stop(proc)
    assert list(data.glob("state.db-wal.damaged-*")), "the damaged WAL was not kept"


async def test_an_undecodable_object_is_refused_and_the_process_exits(tmp_path: Path) -> None:
    """A stored value the server cannot decode (bytes damaged inside a valid log): start
    is refused naming the object, and the process exits instead of hanging on its open
    store."""
    data = tmp_path / "data"
    data.mkdir()
    proc = start_server(data, "--disable", "controllers,scheduler")
    try:
        await write_configmaps(data, 3, "cm")
    finally:
        stop_cleanly(proc)
    with sqlite3.connect(data / "state.db") as db:
        (rev,) = db.execute("SELECT max(rev) FROM log WHERE key LIKE '%configmaps%cm1'"
                            ).fetchone()
        db.execute("UPDATE log SET value = ? WHERE rev = ?", (b"\xff\x00junk" * 5, rev))

    err = await refused_start(data)
    assert "refusing to start: a stored object is damaged" in err, err
    assert "cm1" in err and "is not a ConfigMap" in err and "Traceback" not in err, err


def stop_cleanly(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    finally:
        stop(proc)
