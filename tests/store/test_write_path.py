"""The store's write-path shortcuts: one connection-thread call per transaction
(``run_in_connection_thread``, built on aiosqlite's internal ``_execute``) and group commit
gathering. (``follow``, part of the Store protocol, is in the contract suite.)"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import aiosqlite
import pytest

from control.store.backend import LogRow
from control.store.sqlite import SqliteStore, run_in_connection_thread


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
