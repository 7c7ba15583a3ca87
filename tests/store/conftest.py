"""Fixtures for the store contract suite: every contract test runs against SqliteStore and
MemoryStore (parametrised), so both keep the same semantics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from control.store.log import LogStore
from control.store.memory import MemoryStore
from control.store.sqlite import SqliteStore


class FakeClock:
    """A wall clock the test moves by hand (lease expiry)."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


OpenStore = Callable[..., Awaitable[LogStore]]


@pytest.fixture(params=["sqlite", "memory"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """A factory: ``await open_store(**options)``; every store it opened is closed after."""
    opened: list[LogStore] = []

    async def factory(**kw: object) -> LogStore:
        s: LogStore
        if request.param == "sqlite":
            s = await SqliteStore.open(str(tmp_path / "store.db"), **kw)  # type: ignore[arg-type]
        else:
            s = await MemoryStore.open(**kw)  # type: ignore[arg-type]
        opened.append(s)
        return s

    yield factory
    for s in opened:
        await s.close()


@pytest.fixture
async def store(open_store: OpenStore) -> LogStore:
    return await open_store()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(str(tmp_path / "store.db"))
    try:
        yield s
    finally:
        await s.close()
