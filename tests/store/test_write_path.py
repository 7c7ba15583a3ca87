"""The store's write-path shortcuts: one connection-thread call per transaction
(``run_in_connection_thread``, built on aiosqlite's internal ``_execute``), group commit
gathering, and ``LogStore.follow`` (synchronous in-process follower)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import aiosqlite
import pytest

from control.store.interface import Event, EventType
from control.store.memory import MemoryStore
from control.store.sqlite import LogRow, LogStore, SqliteStore, run_in_connection_thread


async def test_run_in_connection_thread(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(str(tmp_path / "t.db"))
    seen: list[tuple[sqlite3.Connection, threading.Thread]] = []

    def work(c: sqlite3.Connection, a: int, b: int) -> int:
        seen.append((c, threading.current_thread()))
        c.execute("CREATE TABLE t (x INTEGER)")
        c.executemany("INSERT INTO t VALUES (?)", [(a,), (b,)])
        c.commit()
        return int(c.execute("SELECT SUM(x) FROM t").fetchone()[0])

    assert await run_in_connection_thread(conn, work, 2, 3) == 5
    (c, thread), = seen
    assert isinstance(c, sqlite3.Connection) and thread is not threading.current_thread()

    def fail(c: sqlite3.Connection) -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await run_in_connection_thread(conn, fail)
    await conn.close()
    with pytest.raises(ValueError):
        await run_in_connection_thread(conn, work, 1, 1)


async def test_failed_transaction_rolls_back_as_one(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        await store.create("/a", b"1")
        backend = store._backend
        dup = [LogRow(2, "/b", 2, 1, False, b"2", 0, 0), LogRow(1, "/c", 1, 1, False, b"3", 0, 0)]
        with pytest.raises(sqlite3.IntegrityError):
            await backend.commit(dup, [], [])  # row 2 inserted, then rev 1 collides
        assert await backend.last_revision() == 1  # row 2 was rolled back with it
        assert (await store.create("/b", b"2")).mod_revision == 2
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_follow_replays_then_applies_before_the_write_returns(
    kind: str, tmp_path: Path
) -> None:
    store: LogStore = (await SqliteStore.open(tmp_path / "s.db") if kind == "sqlite"
                       else await MemoryStore.open())
    try:
        await store.create("/r/a", b"1")
        await store.create("/other", b"x")
        got: list[Event] = []
        task = asyncio.create_task(store.follow("/r/", 1, got.extend))
        for _ in range(500):  # the replay reads the log through the reader's thread
            if got:
                break
            await asyncio.sleep(0.01)
        assert [e.kv.key for e in got] == ["/r/a"]  # replayed from the log
        kv = await store.update("/r/a", b"2", 1)
        # applied synchronously inside the commit step, before update() returned
        assert got[-1].kv.mod_revision == kv.mod_revision and got[-1].type is EventType.PUT
        await asyncio.gather(*(store.create(f"/r/{i}", b"v") for i in range(20)))
        revs = [e.kv.mod_revision for e in got]
        assert revs == sorted(revs) and len(set(revs)) == len(revs) == 22
        await store.close()
        await asyncio.wait_for(task, 5)  # returns when the store closes
    finally:
        await store.close()


async def test_follow_failure_drops_only_the_follower() -> None:
    store = await MemoryStore.open()
    try:
        def bad(events: list[Event]) -> None:
            raise RuntimeError("apply failed")

        task = asyncio.create_task(store.follow("", 0, bad))
        await asyncio.sleep(0)
        kv = await store.create("/a", b"1")  # the write itself succeeds
        assert kv.mod_revision == 1
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(task, 5)
        assert not store._followers
    finally:
        await store.close()


async def test_group_commit_gathers_concurrent_writers(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        async def writer(i: int) -> None:
            await asyncio.sleep(0)  # arrive a loop turn after the first write
            await store.create(f"/k{i}", b"v")

        first = asyncio.create_task(store.create("/k", b"v"))
        await asyncio.gather(first, *(writer(i) for i in range(30)))
        assert store.commits == 1  # the writer waited for the writers one turn behind
    finally:
        await store.close()
