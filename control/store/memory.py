"""An in-memory Store with exactly the semantics of the SQLite store (a test double).

Owns: an in-memory revision log (:class:`_MemoryBackend`) plugged into the same engine as
``SqliteStore`` (:class:`control.store.log.LogStore`), so group commit, CAS checks,
watch replay/switchover, leases and compaction behave identically; only durability is
missing (nothing survives the process). Unit tests of other components use it through the
``Store`` protocol. ``fail_next_commits`` injects commit failures for error-path tests.

Concurrency contract: the same as ``LogStore`` — one event loop; the backend is touched
only from that loop and each method runs to completion without awaiting in the middle,
except for one ``sleep(0)`` in ``commit`` that lets concurrent writers queue up (so group
commit batches as it does with a real fsync).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Sequence

from control.store.backend import LeaseRecord, Loaded, LogRow, event_from
from control.store.interface import Event, KeyValue
from control.store.log import COMPACT_CHUNK, MAX_BATCH, WATCH_QUEUE_LIMIT, LogStore


class _MemoryBackend:
    def __init__(self) -> None:
        self._rows: dict[int, LogRow] = {}
        self._revs: list[int] = []  # sorted: commits append increasing revisions
        self._by_key: dict[str, list[int]] = {}
        self._leases: dict[int, LeaseRecord] = {}
        self.fail_next_commits = 0

    async def load(self) -> Loaded:
        return Loaded([], 0, 0, [])

    async def commit(
        self, rows: Sequence[LogRow], lease_puts: Sequence[LeaseRecord], lease_deletes: Sequence[int]
    ) -> None:
        await asyncio.sleep(0)  # stands in for the fsync: writers arriving now batch next
        if self.fail_next_commits:
            self.fail_next_commits -= 1
            raise OSError(28, "injected commit failure (No space left on device)")
        for r in rows:
            self._rows[r.rev] = r
            self._revs.append(r.rev)
            self._by_key.setdefault(r.key, []).append(r.rev)
        for rec in lease_puts:
            self._leases[rec.id] = rec
        for lease_id in lease_deletes:
            self._leases.pop(lease_id, None)

    def _row_at(self, key: str, revision: int) -> LogRow | None:
        revs = self._by_key.get(key, [])
        i = bisect.bisect_right(revs, revision)
        return self._rows[revs[i - 1]] if i else None

    @staticmethod
    def _kv(r: LogRow) -> KeyValue:
        return KeyValue(r.key, r.value or b"", r.create_rev, r.rev, r.version, r.lease)

    async def get_at(self, key: str, revision: int) -> KeyValue | None:
        r = self._row_at(key, revision)
        return None if r is None or r.deleted else self._kv(r)

    async def range_at(
        self, lo: str, hi: str | None, revision: int, limit: int
    ) -> list[KeyValue]:
        out: list[KeyValue] = []
        for key in sorted(self._by_key):
            if key < lo or (hi is not None and key >= hi):
                continue
            r = self._row_at(key, revision)
            if r is not None and not r.deleted:
                out.append(self._kv(r))
                if limit and len(out) == limit:
                    break
        return out

    def _event(self, r: LogRow) -> Event:
        p = self._rows.get(r.prev_rev) if r.prev_rev else None
        prev = None if p is None else self._kv(p)
        return event_from(r.rev, r.key, r.create_rev, r.version, r.deleted, r.value, r.lease,
                          prev)

    async def events(
        self, lo: str, hi: str | None, first: int, last: int, limit: int
    ) -> list[Event]:
        out: list[Event] = []
        for i in range(bisect.bisect_left(self._revs, first), len(self._revs)):
            r = self._rows[self._revs[i]]
            if r.rev > last:
                break
            if r.key >= lo and (hi is None or r.key < hi):
                out.append(self._event(r))
                if len(out) == limit:
                    break
        return out

    async def history(self, key: str) -> list[Event]:
        return [self._event(self._rows[rev]) for rev in self._by_key.get(key, [])]

    async def compact(self, after: int, upto: int) -> None:
        lo = bisect.bisect_right(self._revs, after)
        hi = bisect.bisect_right(self._revs, upto)
        victims: set[int] = set()
        for rev in self._revs[lo:hi]:
            r = self._rows[rev]
            if r.prev_rev:
                victims.add(r.prev_rev)
            if r.deleted:
                victims.add(rev)
        for rev in victims:
            if rev not in self._rows:
                continue
            r = self._rows.pop(rev)
            revs = self._by_key[r.key]
            revs.remove(rev)
            if not revs:
                del self._by_key[r.key]
        self._revs = [rev for rev in self._revs if rev not in victims]

    async def checkpoint(self) -> None:
        return None

    async def last_revision(self) -> int:
        return self._revs[-1] if self._revs else 0

    async def close(self) -> None:
        return None

    def row_count(self) -> int:
        return len(self._rows)


class MemoryStore(LogStore):
    """A Store that keeps its log in memory (same semantics as SqliteStore, not durable)."""

    _backend: _MemoryBackend

    @classmethod
    async def open(
        cls,
        *,
        clock: Callable[[], float] = time.time,
        watch_queue_limit: int = WATCH_QUEUE_LIMIT,
        max_batch: int = MAX_BATCH,
        compact_chunk: int = COMPACT_CHUNK,
    ) -> MemoryStore:
        backend = _MemoryBackend()
        return cls(backend, await backend.load(), clock=clock,
                   watch_queue_limit=watch_queue_limit, max_batch=max_batch,
                   compact_chunk=compact_chunk)

    def fail_next_commits(self, n: int = 1) -> None:
        """Make the next ``n`` commits fail as a full disk would (for error-path tests)."""
        self._backend.fail_next_commits = n

    def log_rows(self) -> int:
        return self._backend.row_count()
