"""Store helpers shared by the store's tests: collect a watch's events up to a revision,
make the next commit fail (a full disk) and undo it, for either Store implementation.
"""

from __future__ import annotations

import asyncio

from control.store.interface import Event
from control.store.log import LogStore
from control.store.sqlite import SqliteStore

T = 10.0  # every wait in this file is bounded by this many seconds


async def collect(it: object, until_rev: int, within: float = T) -> list[Event]:
    """Events from a watch iterator until one with revision >= until_rev arrives."""
    out: list[Event] = []
    aiter_ = it.__aiter__()  # type: ignore[attr-defined]
    async with asyncio.timeout(within):
        while not out or out[-1].kv.mod_revision < until_rev:
            out.extend(await aiter_.__anext__())
    return out


async def inject_commit_failure(store: LogStore) -> None:
    from control.store.memory import MemoryStore

    if isinstance(store, MemoryStore):
        store.fail_next_commits(1)
        return
    # A real "disk full": SQLite refuses to grow the database past max_page_count.
    conn = store._backend._w  # type: ignore[attr-defined]
    await store.checkpoint()
    ((pages,),) = await conn.execute_fetchall("PRAGMA page_count")
    await conn.execute(f"PRAGMA max_page_count = {pages}")


async def clear_commit_failure(store: LogStore) -> None:
    if isinstance(store, SqliteStore):
        conn = store._backend._w  # type: ignore[attr-defined]
        await conn.execute("PRAGMA max_page_count = 1073741823")
