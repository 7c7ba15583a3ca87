"""SqliteStore-only properties: durability across kill -9, persistence across reopen,
bounded row count and WAL size after compaction."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from control.store.interface import EventType, Store, StoreClosed, StoreError
from control.store.memory import MemoryStore
from control.store.sqlite import SqliteStore
from tests.store.conftest import FakeClock
from tests.support.store import clear_commit_failure, collect, inject_commit_failure

ROOT = Path(__file__).resolve().parents[2]
T = 10.0

WRITER_SCRIPT = """
import asyncio, sys
from control.store.sqlite import SqliteStore

async def main() -> None:
    store = await SqliteStore.open(sys.argv[1])

    async def writer(t: int) -> None:
        i = 0
        while True:
            kv = await store.create(f"/d/{t}/{i}", b"v" * 200)
            print(kv.key, kv.mod_revision, flush=True)
            i += 1

    await asyncio.gather(*(writer(t) for t in range(16)))

asyncio.run(main())
"""


@pytest.mark.e2e
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = str(tmp_path / "durable.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER_SCRIPT, db,
        cwd=str(ROOT), stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    acked: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while len(acked) < 500:
                raw = await proc.stdout.readline()
                assert raw, "writer exited early"
                key, rev = raw.decode().split()
                acked[key] = int(rev)
        proc.send_signal(signal.SIGKILL)
        # lines already printed before the kill were acknowledged too
        rest, _ = await asyncio.wait_for(proc.communicate(), T)
        for line in rest.decode().splitlines():
            parts = line.split()
            if len(parts) == 2:
                acked[parts[0]] = int(parts[1])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = await SqliteStore.open(db)
    try:
        assert store.revision >= max(acked.values())
        for key, acked_rev in acked.items():
            kv = await store.get(key)
            assert kv is not None, f"acknowledged {key}@{acked_rev} lost"
            assert kv.mod_revision == acked_rev
        # the reopened log is consistent: revisions are exactly 1..revision
        evs = await collect(store.watch("/d/", 1), store.revision)
        assert [e.kv.mod_revision for e in evs] == list(range(1, store.revision + 1))
    finally:
        await store.close()


async def test_state_survives_reopen(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    clock = FakeClock()
    s = await SqliteStore.open(db, clock=clock)
    lease = await s.grant_lease(30)
    await s.create("/a", b"1", lease=lease)
    b = await s.create("/b", b"1")
    await s.update("/b", b"2", b.mod_revision)
    await s.create("/c", b"")
    await s.delete("/c")  # rev 5: the newest row is a tombstone
    await s.compact(5)
    await s.close()

    s = await SqliteStore.open(db, clock=clock)
    try:
        # the tombstone at rev 5 was compacted away; the counter must not go back
        assert (s.revision, s.compacted_revision) == (5, 5)
        assert [(kv.key, kv.value) for kv in (await s.range("")).kvs] == [
            ("/a", b"1"), ("/b", b"2")]
        kv = await s.create("/d", b"")
        assert kv.mod_revision == 6
        it = s.watch("/a", 7)
        clock.t += 31  # the lease's absolute expiry was persisted
        assert await s.expire_leases() == 1
        evs = await collect(it, 7)
        assert [(e.type, e.kv.key) for e in evs] == [(EventType.DELETE, "/a")]
    finally:
        await s.close()


def wal_size(db: str) -> int:
    return os.path.getsize(db + "-wal")


def log_rows(db: str) -> int:
    with contextlib.closing(sqlite3.connect(db)) as c:
        n: int = c.execute("SELECT COUNT(*) FROM log").fetchone()[0]
        return n


async def test_compaction_bounds_rows_and_wal(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    s = await SqliteStore.open(db)
    try:
        kvs = [await s.create(f"/k/{i}", b"x") for i in range(10)]
        for round_ in range(200):
            kvs = list(await asyncio.gather(*(
                s.update(kv.key, bytes([round_ % 256]) * 2048, kv.mod_revision) for kv in kvs)))
        for i in range(50):
            await s.create(f"/tmp/{i}", b"y" * 1024)
        await asyncio.gather(*(s.delete(f"/tmp/{i}") for i in range(50)))
        assert wal_size(db) > 1_000_000  # the workload did grow the WAL
        assert log_rows(db) == s.revision
        await s.compact(s.revision)
        assert log_rows(db) == 10  # one row per live key
        assert wal_size(db) == 0  # wal_checkpoint(TRUNCATE) reset the file
        # still correct after compaction
        assert [kv.value[:1] for kv in (await s.range("/k/")).kvs] == [bytes([199])] * 10
        # writes keep working and the WAL grows again from zero
        await s.create("/after", b"")
        assert 0 < wal_size(db) < 1_000_000
    finally:
        await s.close()


async def test_failed_commit_leaves_nothing_on_disk(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    s = await SqliteStore.open(db)
    await s.create("/base", b"")
    await inject_commit_failure(s)
    results = await asyncio.gather(*(s.create(f"/f/{i}", b"x" * 8192) for i in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    await clear_commit_failure(s)
    await s.close()
    s = await SqliteStore.open(db)
    try:
        assert s.revision == 1
        assert (await s.range("/f/")).kvs == []
    finally:
        await s.close()


async def test_uncertain_commit_stops_the_store(tmp_path: Path) -> None:
    """A commit that reports failure after its data reached the disk (an fsync error) must
    not let the store hand out the same revisions again: it stops; a reopen sees the log."""
    db = str(tmp_path / "u.db")
    s = await SqliteStore.open(db)
    await s.create("/base", b"")
    backend = s._backend
    real_commit = backend.commit

    async def commit_then_fail(*args: Any) -> None:
        await real_commit(*args)
        raise OSError(5, "Input/output error")

    backend.commit = commit_then_fail  # type: ignore[method-assign, assignment]
    with pytest.raises(StoreError):
        await s.create("/x", b"")
    with pytest.raises(StoreClosed):
        await s.create("/y", b"")
    await s.close()
    s = await SqliteStore.open(db)
    try:
        assert s.revision == 2  # the uncertain write did land; the log is the truth
        assert (await s.create("/y", b"")).mod_revision == 3
    finally:
        await s.close()


def _protocol_check(a: SqliteStore, b: MemoryStore) -> list[Store]:
    """Never called: mypy proves that both stores satisfy the Store protocol."""
    return [a, b]
