"""The persistence boundary of the revision log: what a backend stores and answers.

Owns the row types the engine hands a backend (:class:`LogRow`, :class:`LeaseRecord`), what
a backend hands back at open (:class:`Loaded`), the :class:`LogBackend` protocol that the
SQLite and in-memory backends implement, and two pure helpers both sides share
(``prefix_end``, ``event_from``). No I/O here. Concurrency: see :class:`LogBackend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from control.store.interface import Event, EventType, KeyValue


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no
    upper bound). UTF-8 byte order (SQLite's BINARY collation) equals code point order, so
    this bound is valid both in Python and in SQL."""
    chars = list(prefix)
    while chars:
        c = ord(chars[-1])
        if c < 0x10FFFF:
            n = c + 1
            if 0xD800 <= n <= 0xDFFF:  # surrogates cannot be encoded; skip the block
                n = 0xE000
            chars[-1] = chr(n)
            return "".join(chars)
        chars.pop()
    return None




@dataclass(frozen=True, slots=True)
class LogRow:
    """One revision as persisted. Tombstones (``deleted``) carry no value: the deleted
    value is the row at ``prev_rev``, which compaction keeps as long as the tombstone."""

    rev: int
    key: str
    create_rev: int
    version: int
    deleted: bool
    value: bytes | None
    lease: int
    prev_rev: int  # the key's previous row (0 for a create)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    id: int
    ttl: int
    expiry: float  # absolute wall-clock seconds, so that a lease survives a restart


@dataclass(slots=True)
class Loaded:
    """What a backend hands the engine at open."""

    live: list[KeyValue]
    revision: int
    compacted: int
    leases: list[LeaseRecord]


class LogBackend(Protocol):
    """Durable side of the log. Called only by :class:`LogStore`: ``commit``, ``compact``
    and ``checkpoint`` only from the writer task (never concurrently), reads from anywhere."""

    async def load(self) -> Loaded: ...

    async def commit(
        self, rows: Sequence[LogRow], lease_puts: Sequence[LeaseRecord], lease_deletes: Sequence[int]
    ) -> None:
        """Persist everything in one durable transaction, or raise and persist nothing."""
        ...

    async def get_at(self, key: str, revision: int) -> KeyValue | None: ...

    async def range_at(
        self, lo: str, hi: str | None, revision: int, limit: int
    ) -> list[KeyValue]:
        """Live keys in ``[lo, hi)`` at ``revision``, sorted, at most ``limit`` (0: all)."""
        ...

    async def events(
        self, lo: str, hi: str | None, first: int, last: int, limit: int
    ) -> list[Event]:
        """Events of keys in ``[lo, hi)`` with revision in ``[first, last]``, in order."""
        ...

    async def history(self, key: str) -> list[Event]: ...

    async def compact(self, after: int, upto: int) -> None:
        """Compact ``(after, upto]``: given history compacted at ``after``, leave it
        compacted at ``upto`` and record ``upto``."""
        ...

    async def checkpoint(self) -> None: ...

    async def last_revision(self) -> int:
        """The newest revision in the durable log (0 if empty); checks a failed commit."""
        ...

    async def close(self) -> None: ...


def event_from(
    rev: int,
    key: str,
    create_rev: int,
    version: int,
    deleted: bool,
    value: bytes | None,
    lease: int,
    prev: KeyValue | None,
) -> Event:
    """Build the Event of one log row given its predecessor (if still in the log)."""
    if deleted:
        last = prev.value if prev is not None else b""
        return Event(EventType.DELETE, KeyValue(key, last, create_rev, rev, version, lease), prev)
    kv = KeyValue(key, value if value is not None else b"", create_rev, rev, version, lease)
    return Event(EventType.PUT, kv, prev)
