"""The SQLite backend of the revision log (the embedded default Store).

Owns the durable side only: an append-only ``log`` table in WAL mode with
``synchronous=FULL`` (:class:`_SqliteBackend`, a ``LogBackend``), and :class:`SqliteStore`,
the engine of ``control.store.log`` opened over it. Revisions, CAS, watch fan-out,
compaction scheduling and leases are the engine's; this module turns them into SQL.

It also owns the log's integrity at open: after each committed batch the newest revision
is recorded in the high-water mark file (``control.store.watermark``, ``DB.hwm``); at open
the WAL's frames are scanned for committed frames past a bad one (``walscan``) and the
loaded revision is compared with the mark. A log that lost acknowledged history is refused
(:class:`LogDamaged`) unless the owner accepts the loss (``recover_to_last_good``): then
the history up to the mark is treated as compacted and new revisions continue above it,
so no revision number is ever issued twice. A full disk is :class:`StoreFull`, logged as a
warning with the path and the free space.

Concurrency contract: two connections, each with its own thread (aiosqlite): the writer
(called only from the engine's writer task: commits, compaction, checkpoints) and a
read-only reader, which in WAL mode sees only committed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import structlog

from control.store import walscan, watermark
from control.store.backend import LeaseRecord, Loaded, LogRow, event_from
from control.store.interface import Event, KeyValue, LogDamaged, StoreFull
from control.store.log import COMPACT_CHUNK, MAX_BATCH, WATCH_QUEUE_LIMIT, LogStore

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,  -- the global revision (rowid: appends are cheap)
    key        TEXT    NOT NULL,
    create_rev INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,     -- 1: tombstone (value NULL; see prev_rev)
    value      BLOB,
    lease      INTEGER NOT NULL DEFAULT 0,
    prev_rev   INTEGER NOT NULL DEFAULT 0  -- the key's previous row, 0 for a create
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    id     INTEGER PRIMARY KEY,
    ttl    INTEGER NOT NULL,
    expiry REAL    NOT NULL  -- absolute wall-clock seconds
);
"""

_EVENT_COLUMNS = """
    c.rev, c.key, c.create_rev, c.version, c.deleted, c.value, c.lease,
    p.rev, p.create_rev, p.version, p.value, p.lease
FROM log c LEFT JOIN log p ON p.rev = c.prev_rev AND c.prev_rev > 0
"""


def _key_bounds(column: str, hi: str | None) -> str:
    return f"{column} >= ?" + ("" if hi is None else f" AND {column} < ?")


def _rows_to_events(rows: Sequence[Any]) -> list[Event]:
    out = []
    for rev, key, create_rev, version, deleted, value, lease, prev, pc, pv, pval, pl in rows:
        p = None if prev is None else KeyValue(key, pval, pc, prev, pv, pl)
        out.append(event_from(rev, key, create_rev, version, bool(deleted), value, lease, p))
    return out


def _commit_sync(
    conn: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    lease_puts: list[tuple[Any, ...]],
    lease_deletes: list[tuple[int]],
    mark: watermark.Watermark | None,
) -> None:
    """One write transaction on the writer's ``sqlite3`` connection, in its thread. The
    connection is in the default (deferred) isolation mode, so the first statement opens
    the transaction; the COMMIT is durable (WAL, ``synchronous=FULL``) when it returns.
    Then the high-water mark records the batch's newest revision, before the engine
    acknowledges it (a failure there is an uncertain commit: the engine stops)."""
    try:
        if rows:
            conn.executemany(
                "INSERT INTO log (rev, key, create_rev, version, deleted, value, lease, "
                "prev_rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        if lease_puts:
            conn.executemany(
                "INSERT OR REPLACE INTO leases (id, ttl, expiry) VALUES (?, ?, ?)", lease_puts
            )
        if lease_deletes:
            conn.executemany("DELETE FROM leases WHERE id = ?", lease_deletes)
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    if mark is not None and rows:
        mark.advance(rows[-1][0])


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


async def run_in_connection_thread(
    conn: aiosqlite.Connection, fn: Callable[..., _T], *args: Any
) -> _T:
    """Run ``fn(sqlite3_connection, *args)`` in ``conn``'s own thread as one queued call.

    aiosqlite has no public API for this: each public method is one statement per
    hand-off. ``Connection._execute(fn)`` (aiosqlite 0.17-0.22) is the internal call its
    public methods are built on: it queues ``fn`` for the connection's thread and awaits
    the result, keeping sqlite3's one-thread-per-connection rule. ``_conn`` is read in that
    thread, so a closed connection raises there (ValueError), as aiosqlite's own methods
    do. Tested in tests/store/test_write_path.py."""

    def call() -> _T:
        return fn(conn._conn, *args)

    result: _T = await conn._execute(call)
    return result


class _SqliteBackend:
    """Two connections: the writer (every transaction, compaction, checkpoint) and a
    read-only reader, so reads never see a batch that is not committed yet and never wait
    behind the writer's fsync."""

    # at most one "disk full" warning per this many seconds (a full disk fails every batch)
    FULL_WARNING_INTERVAL = 10.0

    def __init__(self, path: str, writer: aiosqlite.Connection,
                 reader: aiosqlite.Connection) -> None:
        self.path = path
        self._w = writer
        self._r = reader
        self.mark: watermark.Watermark | None = None  # set once the log is checked
        self._full_warned = 0.0

    @classmethod
    async def connect(cls, path: str) -> _SqliteBackend:
        w = await aiosqlite.connect(path)
        try:
            # FULL: the WAL is fsynced at every commit, so an acknowledged write survives
            # power loss / kill -9, not just an application crash.
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=FULL",
                "PRAGMA busy_timeout=2000",
                # Passive checkpoints after commits keep the WAL near 4 MiB in steady
                # state; the size limit truncates it back after a big burst.
                "PRAGMA wal_autocheckpoint=1000",
                "PRAGMA journal_size_limit=67108864",
            ):
                await w.execute(pragma)
            await w.executescript(_SCHEMA)
            await w.commit()
            r = await aiosqlite.connect(path)
        except BaseException:
            await w.close()
            raise
        try:
            await r.execute("PRAGMA busy_timeout=2000")
            await r.execute("PRAGMA query_only=1")
        except BaseException:
            await r.close()
            await w.close()
            raise
        return cls(path, w, r)

    async def load(self) -> Loaded:
        rows = await self._r.execute_fetchall(
            "SELECT l.key, l.value, l.create_rev, l.rev, l.version, l.lease FROM log l "
            "JOIN (SELECT MAX(rev) AS rev FROM log GROUP BY key) m ON l.rev = m.rev "
            "WHERE l.deleted = 0"
        )
        live = [KeyValue(k, v, c, r, ver, le) for k, v, c, r, ver, le in rows]
        (max_rev,), = await self._r.execute_fetchall("SELECT COALESCE(MAX(rev), 0) FROM log")
        meta = list(await self._r.execute_fetchall(
            "SELECT value FROM meta WHERE name = 'compacted'"
        ))
        compacted = int(meta[0][0]) if meta else 0
        leases = await self._r.execute_fetchall("SELECT id, ttl, expiry FROM leases")
        # max(): a compaction may have removed the newest rows (tombstones) of the log.
        return Loaded(live, max(int(max_rev), compacted), compacted,
                      [LeaseRecord(i, t, e) for i, t, e in leases])

    async def commit(
        self, rows: Sequence[LogRow], lease_puts: Sequence[LeaseRecord], lease_deletes: Sequence[int]
    ) -> None:
        # The whole transaction (inserts, lease rows, COMMIT, or ROLLBACK on failure) is
        # ONE call in the writer connection's thread: one hand-off to the thread and one
        # wake-up of the event loop per batch, instead of one per statement (each costs
        # ~150 us of event-loop and GIL time; see docs/benchmarks.md, API).
        try:
            await run_in_connection_thread(
                self._w, _commit_sync, [
                    (r.rev, r.key, r.create_rev, r.version, int(r.deleted), r.value, r.lease,
                     r.prev_rev) for r in rows
                ],
                [(r.id, r.ttl, r.expiry) for r in lease_puts],
                [(i,) for i in lease_deletes],
                self.mark,
            )
        except Exception as exc:
            raise self._full(exc) from exc

    def _full(self, exc: Exception) -> Exception:
        """``exc`` as :class:`StoreFull` if the disk is full (warned, rate limited)."""
        if not _is_disk_full(exc):
            return exc
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            free = shutil.disk_usage(directory).free
        except OSError:
            free = -1
        now = time.monotonic()
        if now - self._full_warned >= self.FULL_WARNING_INTERVAL:
            self._full_warned = now
            log.warning("store disk full: writes fail until space returns",
                        path=self.path, free_bytes=free, error=str(exc))
        return StoreFull(self.path, free)

    async def get_at(self, key: str, revision: int) -> KeyValue | None:
        rows = list(await self._r.execute_fetchall(
            "SELECT value, create_rev, rev, version, lease, deleted FROM log "
            "WHERE key = ? AND rev <= ? ORDER BY rev DESC LIMIT 1",
            (key, revision),
        ))
        if not rows or rows[0][5]:
            return None
        value, create_rev, rev, version, lease, _ = rows[0]
        return KeyValue(key, value, create_rev, rev, version, lease)

    async def range_at(
        self, lo: str, hi: str | None, revision: int, limit: int
    ) -> list[KeyValue]:
        params: list[Any] = [lo] if hi is None else [lo, hi]
        params += [revision, limit or -1]
        rows = await self._r.execute_fetchall(
            "SELECT l.key, l.value, l.create_rev, l.rev, l.version, l.lease FROM log l "
            "JOIN (SELECT MAX(rev) AS rev FROM log WHERE " + _key_bounds("key", hi)
            + " AND rev <= ? GROUP BY key) m ON l.rev = m.rev "
            "WHERE l.deleted = 0 ORDER BY l.key LIMIT ?",
            params,
        )
        return [KeyValue(k, v, c, r, ver, le) for k, v, c, r, ver, le in rows]

    async def events(
        self, lo: str, hi: str | None, first: int, last: int, limit: int
    ) -> list[Event]:
        params: list[Any] = [first, last, lo] + ([] if hi is None else [hi]) + [limit]
        rows = await self._r.execute_fetchall(
            "SELECT" + _EVENT_COLUMNS + "WHERE c.rev >= ? AND c.rev <= ? AND "
            + _key_bounds("c.key", hi) + " ORDER BY c.rev LIMIT ?",
            params,
        )
        return _rows_to_events(list(rows))

    async def history(self, key: str) -> list[Event]:
        rows = await self._r.execute_fetchall(
            "SELECT" + _EVENT_COLUMNS + "WHERE c.key = ? ORDER BY c.rev", (key,)
        )
        return _rows_to_events(list(rows))

    async def compact(self, after: int, upto: int) -> None:
        # Every row in (after, upto] supersedes its prev_rev row, and every tombstone in
        # (after, upto] ends its key: both go. What remains at or below ``upto`` is exactly
        # the newest row of each key live at ``upto``. Cost is O(rows in the range).
        try:
            await self._w.execute(
                "DELETE FROM log WHERE rev IN (SELECT prev_rev FROM log "
                "WHERE rev > ? AND rev <= ? AND prev_rev > 0)",
                (after, upto),
            )
            await self._w.execute(
                "DELETE FROM log WHERE rev > ? AND rev <= ? AND deleted = 1", (after, upto)
            )
            await self._w.execute(
                "INSERT INTO meta (name, value) VALUES ('compacted', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (upto,),
            )
            await self._w.commit()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self._w.rollback()
            if isinstance(exc, Exception):
                raise self._full(exc) from exc
            raise

    async def last_revision(self) -> int:
        # On the writer connection: it is the one that just failed, and it needs no lock.
        (rev,), = await self._w.execute_fetchall("SELECT COALESCE(MAX(rev), 0) FROM log")
        return int(rev)

    async def checkpoint(self) -> None:
        rows = list(await self._w.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)"))
        if rows and rows[0][0]:
            # A reader held an old snapshot past busy_timeout: the WAL was not reset this
            # time; the next checkpoint (maintenance loop) retries.
            log.warning("store WAL checkpoint incomplete (busy)", result=tuple(rows[0]))

    async def close(self) -> None:
        try:
            await self._r.close()
        finally:
            await self._w.close()
            if self.mark is not None:
                self.mark.close()


class SqliteStore(LogStore):
    """The embedded default Store: the log in one SQLite file (plus ``-wal`` and ``.hwm``)."""

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        recover_to_last_good: bool = False,
        clock: Callable[[], float] = time.time,
        watch_queue_limit: int = WATCH_QUEUE_LIMIT,
        max_batch: int = MAX_BATCH,
        compact_chunk: int = COMPACT_CHUNK,
    ) -> SqliteStore:
        """Open (or create) the log at ``path``. Raises :class:`LogDamaged` if it lost
        acknowledged history, unless ``recover_to_last_good`` accepts the loss."""
        db = os.fspath(path)
        # The whole check runs before the log is opened for writing: closing a read-write
        # connection checkpoints and deletes the WAL, and the first write after SQLite's
        # own recovery would overwrite the frames past the damage. A refusal leaves every
        # file as it found it.
        damaged, kept = await asyncio.to_thread(_inspect, db, recover_to_last_good)
        if damaged is not None and not (recover_to_last_good and damaged.recoverable):
            raise damaged
        backend = await _SqliteBackend.connect(db)
        try:
            loaded = await backend.load()
            acknowledged = 0
            if damaged is not None:
                acknowledged = damaged.acknowledged or 0
                loaded = await _recover(backend, loaded, acknowledged, damaged, kept)
            else:
                acknowledged = await asyncio.to_thread(_read_mark, db + ".hwm")
            backend.mark = await asyncio.to_thread(
                watermark.Watermark, db + ".hwm", max(loaded.revision, acknowledged))
        except BaseException:
            await backend.close()
            raise
        return cls(backend, loaded, clock=clock, watch_queue_limit=watch_queue_limit,
                   max_batch=max_batch, compact_chunk=compact_chunk)


def _read_mark(path: str) -> int:
    try:
        return watermark.read(path) or 0
    except watermark.WatermarkUnreadable:
        return 0


def _probe_revision(db: str) -> int:
    """The newest revision SQLite will show, read through a read-only connection (which
    can neither checkpoint nor delete the WAL)."""
    if not os.path.exists(db):
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "log" not in tables:
            return 0
        (rev,) = conn.execute("SELECT COALESCE(MAX(rev), 0) FROM log").fetchone()
        compacted = conn.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
        return max(int(rev), int(compacted[0]) if compacted else 0)
    finally:
        conn.close()


def _inspect(db: str, keep_copy: bool) -> tuple[LogDamaged | None, str]:
    """Is the log at ``db`` whole? Returns what is damaged (None: whole) and, when damaged
    and ``keep_copy``, the path of a copy of the WAL as it was found ("" if none)."""
    wal, mark_path = db + "-wal", db + ".hwm"
    scan = walscan.scan_file(wal)
    problems = []
    try:
        acknowledged = watermark.read(mark_path)
    except watermark.WatermarkUnreadable as e:
        acknowledged = None
        problems.append(f"the high-water mark {mark_path} is unreadable ({e})")
    try:
        last_good = _probe_revision(db)
    except sqlite3.DatabaseError as e:
        # not SQLite's recovery to make: the database file itself is unreadable
        return LogDamaged(db, acknowledged, 0, f"SQLite cannot read it ({e})",
                          recoverable=False), ""
    if acknowledged is not None and last_good < acknowledged:
        problems.append(f"revisions up to {acknowledged} were acknowledged (high-water mark "
                        f"{mark_path}) but the log ends at revision {last_good}")
    if scan.lost_commits:
        problems.append(f"{wal} has a bad frame at byte {scan.bad_offset} followed by "
                        f"{scan.frames_after} intact frames ({scan.commits_after} committed "
                        "transactions) that SQLite no longer reads")
    if not problems:
        return None, ""
    kept = ""
    if keep_copy and os.path.exists(wal):
        kept = f"{wal}.damaged-{int(time.time())}"
        shutil.copyfile(wal, kept)
    return LogDamaged(db, acknowledged, last_good, "; ".join(problems)), kept


async def _recover(backend: _SqliteBackend, loaded: Loaded, acknowledged: int,
                   damaged: LogDamaged, kept: str) -> Loaded:
    """Accept the loss: mark everything up to the newest acknowledged revision compacted
    (the history below the damage is not whole: watchers and readers at those revisions
    get Compacted and relist), reset the WAL. ``kept``: the copy of the damaged WAL."""
    floor = max(loaded.revision, acknowledged)
    await backend.compact(loaded.compacted, floor)
    await backend.checkpoint()
    log.warning("store recovered to its last good revision: history lost",
                path=backend.path, last_good=loaded.revision, acknowledged=acknowledged,
                next_revision=floor + 1, damaged_wal_copy=kept or "(no WAL file)",
                detail=damaged.detail)
    return Loaded(loaded.live, floor, floor, loaded.leases)
