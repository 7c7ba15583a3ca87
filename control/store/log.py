"""The revision-log engine: the Store semantics over any :class:`LogBackend`.

Owns everything a Store means apart from where the bytes live: revisions, compare-and-swap
checks, tombstones, group commit, watch replay and fan-out, in-process followers, history,
compaction scheduling and leases (:class:`LogStore`). ``control.store.sqlite`` plugs in the
durable SQLite backend, ``control.store.memory`` an in-memory one; a later backend (etcd
aside, which brings its own engine) only implements ``control.store.backend.LogBackend``.

Design, in one paragraph: every mutation (create, update, delete, lease grant / keepalive /
revoke / expiry) is an op appended to one queue. A single writer task drains the queue,
checks each op against the in-memory index of live keys (plus what earlier ops of the same
batch staged), assigns consecutive revisions, hands the whole batch to the backend as ONE
durable commit, and only then applies the staged changes to the index, publishes the events
to the followers and watchers (revision order) and resolves the callers' futures. A failed
check fails only its own op; a failed commit fails the whole batch and nothing staged
becomes visible. Reads at the current revision come from memory; reads at older revisions,
history and watch replay go to the backend, which answers only from committed data.

Concurrency contract: every public method is a coroutine (or async generator) to be used
from the one event loop the store was opened on. Only the writer task mutates the index,
the revision counter and the lease table, and it does so synchronously right after a
commit, so any code between two awaits sees one consistent revision. Long-lived helpers
(``run_lease_expiry``, ``run_maintenance``) are started and owned by the caller; they
return when the store closes.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from control.store.backend import LeaseRecord, Loaded, LogBackend, LogRow, prefix_end
from control.store.interface import (
    Compacted,
    Event,
    EventType,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    LeaseNotFound,
    RangeResult,
    RevisionMismatch,
    StoreClosed,
    StoreError,
    StoreFull,
    WatcherTooSlow,
)

log = structlog.get_logger(__name__)

# Ops per transaction: large enough that 64+ concurrent writers share one fsync, small
# enough that one commit (and the event batch it publishes) stays a few milliseconds.
MAX_BATCH = 1024
# Event-loop turns the writer yields at most before cutting a batch (LogStore._gather).
GATHER_TURNS = 32
# Revisions removed per compaction transaction, so that a large compaction never holds
# the writer (and with it every write) for long: writes interleave between chunks.
COMPACT_CHUNK = 10_000
# Events fetched per replay query while a watcher catches up from history.
REPLAY_PAGE = 1000
# Events a live watcher may have queued before it is dropped with WatcherTooSlow.
WATCH_QUEUE_LIMIT = 100_000


# ---- the engine ----------------------------------------------------------------------

_OpKind = Literal[
    "create", "update", "delete", "grant", "keepalive", "revoke", "expire", "compact",
    "checkpoint",
]
# Ops that run alone, outside any write batch: they touch the database as a whole.
_EXCLUSIVE: frozenset[str] = frozenset({"compact", "checkpoint"})


@dataclass(slots=True, eq=False)
class _Op:
    kind: _OpKind
    fut: asyncio.Future[Any]
    key: str = ""
    value: bytes = b""
    expected: int = 0
    lease: int = 0
    ttl: int = 0
    now: float = 0.0
    upto: int = 0


@dataclass(slots=True)
class _Batch:
    """Changes staged by one writer batch; applied to memory only after the commit."""

    rev: int
    kvs: dict[str, KeyValue | None] = field(default_factory=dict)
    leases: dict[int, LeaseRecord | None] = field(default_factory=dict)
    rows: list[LogRow] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    results: list[tuple[asyncio.Future[Any], Any]] = field(default_factory=list)


class _Watcher:
    """A live watcher's private, bounded queue: publishing never awaits, so a slow
    consumer costs only its own memory, up to ``limit`` events, then it is dropped."""

    __slots__ = ("closed", "count", "limit", "overflowed", "pending", "prefix", "wake")

    def __init__(self, prefix: str, limit: int) -> None:
        self.prefix = prefix
        self.limit = limit
        self.pending: list[list[Event]] = []
        self.count = 0
        self.overflowed = False
        self.closed = False
        self.wake = asyncio.Event()

    def push(self, events: list[Event]) -> bool:
        if self.count + len(events) > self.limit:
            self.overflowed = True
            self.pending.clear()  # free the memory now; the consumer resumes from the log
            self.count = 0
            self.wake.set()
            return False
        self.pending.append(events)
        self.count += len(events)
        self.wake.set()
        return True

    def close(self) -> None:
        self.closed = True
        self.wake.set()


@dataclass(slots=True, eq=False)
class _Follower:
    """An in-process follower (see :meth:`LogStore.follow`): called, not queued."""

    prefix: str
    apply: Callable[[list[Event]], None]
    next_rev: int
    done: asyncio.Future[None]


class LogStore:
    """The Store engine over any :class:`LogBackend` (see the module docstring)."""

    def __init__(
        self,
        backend: LogBackend,
        loaded: Loaded,
        *,
        clock: Callable[[], float] = time.time,
        watch_queue_limit: int = WATCH_QUEUE_LIMIT,
        max_batch: int = MAX_BATCH,
        compact_chunk: int = COMPACT_CHUNK,
    ) -> None:
        self._backend = backend
        # Wall clock (not monotonic): lease expiries are persisted as absolute times.
        self._clock = clock
        self._watch_queue_limit = watch_queue_limit
        self._max_batch = max_batch
        self._compact_chunk = compact_chunk
        self._revision = loaded.revision
        self._compacted = loaded.compacted
        self._index: dict[str, KeyValue] = {kv.key: kv for kv in loaded.live}
        self._sorted: list[str] = sorted(self._index)
        self._leases: dict[int, LeaseRecord] = {r.id: r for r in loaded.leases}
        self._lease_keys: dict[int, set[str]] = {}
        for kv in loaded.live:
            if kv.lease:
                self._lease_keys.setdefault(kv.lease, set()).add(kv.key)
        self._queue: collections.deque[_Op] = collections.deque()
        self._queue_wake = asyncio.Event()
        self._watchers: set[_Watcher] = set()
        self._followers: set[_Follower] = set()
        self._closing = False
        self._closed = asyncio.Event()
        self.commits = 0  # transactions committed (tests check group commit with it)
        self._writer = asyncio.get_running_loop().create_task(
            self._run_writer(), name=f"store-writer-{id(self):x}"
        )

    # -- properties -------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    # -- reads ------------------------------------------------------------------------

    def _check_read_revision(self, revision: int) -> int:
        if self._closing:
            raise StoreClosed("store is closed")
        if revision == 0:
            return self._revision
        if revision > self._revision:
            raise FutureRevision(revision, self._revision)
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)
        return revision

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        rev = self._check_read_revision(revision)
        if rev == self._revision:
            return self._index.get(key)
        kv = await self._backend.get_at(key, rev)
        # Compaction may have run while we read: the read is only trustworthy if the
        # revision is still retained now (compacted_revision advances before rows go).
        if rev < self._compacted:
            raise Compacted(rev, self._compacted)
        return kv

    async def range(
        self,
        prefix: str,
        revision: int = 0,
        limit: int = 0,
        start_key: str | None = None,
    ) -> RangeResult:
        rev = self._check_read_revision(revision)
        lo = prefix if start_key is None or start_key < prefix else start_key
        hi = prefix_end(prefix)
        if rev == self._revision:
            kvs: list[KeyValue] = []
            i = bisect.bisect_left(self._sorted, lo)
            keys = self._sorted
            while i < len(keys) and (hi is None or keys[i] < hi):
                if limit and len(kvs) == limit:
                    return RangeResult(kvs, rev, True)
                kvs.append(self._index[keys[i]])
                i += 1
            return RangeResult(kvs, rev, False)
        kvs = await self._backend.range_at(lo, hi, rev, limit + 1 if limit else 0)
        if rev < self._compacted:
            raise Compacted(rev, self._compacted)
        more = bool(limit) and len(kvs) > limit
        return RangeResult(kvs[:limit] if more else kvs, rev, more)

    async def history(self, key: str) -> list[Event]:
        """Every revision of ``key`` still in the log, oldest first. ``prev`` is None for a
        create, and for the oldest retained revision when its predecessor was compacted."""
        if self._closing:
            raise StoreClosed("store is closed")
        return await self._backend.history(key)

    # -- watch ------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        if self._closing:
            raise StoreClosed("store is closed")
        if start_revision and start_revision <= self._compacted:
            raise Compacted(start_revision, self._compacted)
        return self._watch(prefix, start_revision or self._revision + 1)

    async def _watch(self, prefix: str, next_rev: int) -> AsyncIterator[list[Event]]:
        # Replay from the log until caught up. Registration happens with no await between
        # the "caught up" check and joining self._watchers, and the writer bumps the
        # revision and publishes in one synchronous step, so the switch to live events has
        # neither a gap nor a duplicate.
        while True:
            page = await self._replay_page(prefix, next_rev)
            if page is None:
                return
            events, next_rev = page
            if events:
                yield events
            elif next_rev > self._revision:
                break
        w = _Watcher(prefix, self._watch_queue_limit)
        self._watchers.add(w)
        try:
            while True:
                if w.pending:
                    batch = w.pending[0] if len(w.pending) == 1 else [
                        e for b in w.pending for e in b
                    ]
                    w.pending = []
                    w.count = 0
                    if batch[0].kv.mod_revision < next_rev:  # started in the future
                        batch = [e for e in batch if e.kv.mod_revision >= next_rev]
                        if not batch:
                            continue
                    next_rev = batch[-1].kv.mod_revision + 1
                    yield batch
                    continue
                if w.overflowed:
                    raise WatcherTooSlow(next_rev)
                if w.closed:
                    return
                w.wake.clear()
                await w.wake.wait()
        finally:
            self._watchers.discard(w)

    async def _replay_page(self, prefix: str, next_rev: int) -> tuple[list[Event], int] | None:
        """One page of history from ``next_rev`` and the revision after it; an empty page
        means caught up (nothing up to the current revision is left to replay, and the
        caller may go live without awaiting). None: the store is closing."""
        if self._closing:
            return None
        if next_rev <= self._compacted:
            raise Compacted(next_rev, self._compacted)
        target = self._revision
        if next_rev > target:
            return [], next_rev
        events = await self._backend.events(prefix, prefix_end(prefix), next_rev, target,
                                            REPLAY_PAGE)
        if next_rev <= self._compacted:  # raced a compaction: the page may have holes
            raise Compacted(next_rev, self._compacted)
        return events, (events[-1].kv.mod_revision + 1 if len(events) == REPLAY_PAGE
                        else target + 1)

    async def follow(
        self, prefix: str, start_revision: int, apply: Callable[[list[Event]], None]
    ) -> None:
        """``watch()`` for an in-process consumer that must never lag (the apiserver's
        watch cache): ``apply`` gets every batch of events under ``prefix`` from
        ``start_revision`` on (0: from the next write), in revision order, without gap or
        duplicate: first the history replayed from the log, then each committed batch,
        called synchronously from the writer's publish step, before the writers' callers
        are answered. So when a write is acknowledged, ``apply`` has seen it, and no task
        wake-up, queue or async iteration is spent per batch. ``apply`` must be quick and
        must not block; if it raises, the follower is dropped and ``follow`` raises that
        exception (the owner resumes from the last revision it applied). Returns when the
        store closes."""
        if self._closing:
            raise StoreClosed("store is closed")
        if start_revision and start_revision <= self._compacted:
            raise Compacted(start_revision, self._compacted)
        next_rev = start_revision or self._revision + 1
        # Replay until caught up, then register with no await in between (as _watch).
        while True:
            page = await self._replay_page(prefix, next_rev)
            if page is None:
                return
            events, next_rev = page
            if events:
                apply(events)
            elif next_rev > self._revision:
                break
        f = _Follower(prefix, apply, next_rev, asyncio.get_running_loop().create_future())
        self._followers.add(f)
        try:
            await f.done
        finally:
            self._followers.discard(f)

    def _publish(self, events: list[Event]) -> None:
        for f in list(self._followers):
            selected = events
            if f.prefix:
                selected = [e for e in events if e.kv.key.startswith(f.prefix)]
            if selected and selected[0].kv.mod_revision < f.next_rev:  # started in the future
                selected = [e for e in selected if e.kv.mod_revision >= f.next_rev]
            if not selected:
                continue
            try:
                f.apply(selected)
            except Exception as exc:
                # The follower's own failure: it alone is dropped; the commit stands.
                self._followers.discard(f)
                if not f.done.done():
                    f.done.set_exception(exc)
                continue
            f.next_rev = selected[-1].kv.mod_revision + 1
        for w in list(self._watchers):
            if w.prefix:
                selected = [e for e in events if e.kv.key.startswith(w.prefix)]
                if not selected:
                    continue
            else:
                selected = events  # shared, never mutated: watchers only read batches
            if not w.push(selected):
                self._watchers.discard(w)
                log.warning("store watcher dropped: too slow", prefix=w.prefix)

    # -- writes -----------------------------------------------------------------------

    async def _submit(self, op_kind: _OpKind, **kw: Any) -> Any:
        if self._closing:
            raise StoreClosed("store is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(op_kind, fut, **kw))
        self._queue_wake.set()
        return await fut

    async def create(self, key: str, value: bytes, lease: int = 0) -> KeyValue:
        kv: KeyValue = await self._submit("create", key=key, value=value, lease=lease)
        return kv

    async def update(
        self, key: str, value: bytes, expected_mod_revision: int, lease: int = 0
    ) -> KeyValue:
        kv: KeyValue = await self._submit(
            "update", key=key, value=value, expected=expected_mod_revision, lease=lease
        )
        return kv

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        kv: KeyValue = await self._submit("delete", key=key, expected=expected_mod_revision)
        return kv

    # -- leases -----------------------------------------------------------------------

    async def grant_lease(self, ttl_seconds: int) -> int:
        if ttl_seconds <= 0:
            raise ValueError("lease ttl must be positive")
        lease_id: int = await self._submit("grant", ttl=ttl_seconds)
        return lease_id

    async def keepalive_lease(self, lease_id: int) -> None:
        await self._submit("keepalive", lease=lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        await self._submit("revoke", lease=lease_id)

    def lease_remaining(self, lease_id: int) -> float | None:
        """Seconds until the lease expires (None if it does not exist)."""
        rec = self._leases.get(lease_id)
        return None if rec is None else rec.expiry - self._clock()

    async def expire_leases(self) -> int:
        """Revoke every lease whose expiry has passed; returns how many expired. The
        writer re-checks the expiry, so a keepalive that wins the race keeps the lease."""
        now = self._clock()
        due = [r.id for r in self._leases.values() if r.expiry <= now]
        if not due:
            return 0
        done = await asyncio.gather(*(self._submit("expire", lease=i, now=now) for i in due))
        return sum(1 for d in done if d)

    async def run_lease_expiry(self, interval_s: float = 0.5) -> None:
        """Expire leases every ``interval_s`` until the store closes (owner-started)."""
        while not self._closing:
            try:
                await self.expire_leases()
            except StoreClosed:
                return
            except StoreFull:
                pass  # the backend warned (rate limited); the next pass retries
            except StoreError:
                log.exception("store lease expiry pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), interval_s)

    # -- compaction and maintenance ---------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Drop history at or before ``revision`` (keeping each live key's newest row),
        then checkpoint the WAL so the files shrink. Runs in chunks; writes interleave."""
        if revision > self._revision:
            raise FutureRevision(revision, self._revision)
        if revision <= self._compacted:
            return
        while self._compacted < revision:
            await self._submit("compact", upto=revision)
        await self.checkpoint()

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (``wal_checkpoint(TRUNCATE)``)."""
        await self._submit("checkpoint")

    async def run_maintenance(
        self, interval_s: float = 60.0, retain_revisions: int = 100_000
    ) -> None:
        """Every ``interval_s``: compact to ``revision - retain_revisions`` (if that moves)
        and checkpoint the WAL. Owner-started; returns when the store closes."""
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), interval_s)
            if self._closing:
                return
            try:
                target = self._revision - retain_revisions
                if target > self._compacted:
                    await self.compact(target)
                else:
                    await self.checkpoint()
            except StoreClosed:
                return
            except StoreFull:
                pass  # the backend warned (rate limited); the next interval retries
            except StoreError:
                log.exception("store maintenance failed; retrying next interval")

    # -- the writer -------------------------------------------------------------------

    async def _run_writer(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._queue_wake.clear()
                    await self._queue_wake.wait()
                    continue
                if self._queue[0].kind in _EXCLUSIVE:
                    await self._run_exclusive(self._queue.popleft())
                    continue
                await self._gather()
                ops: list[_Op] = []
                while (
                    self._queue
                    and len(ops) < self._max_batch
                    and self._queue[0].kind not in _EXCLUSIVE
                ):
                    ops.append(self._queue.popleft())
                await self._run_batch(ops)
        except asyncio.CancelledError:
            self._fail_queued(StoreClosed("store writer cancelled"))
            raise
        except BaseException as exc:
            log.exception("store writer failed")
            self._fail_queued(StoreClosed(f"store writer failed: {exc!r}"))
            raise

    async def _gather(self) -> None:
        """Group commit: before cutting a batch, let the writes that are already on their
        way reach the queue. The writer yields one event-loop turn at a time and stops
        after two turns in a row add nothing (a request needs a few turns from gRPC to
        the queue), or at ``GATHER_TURNS``: a lone writer pays two loop turns (tens of
        microseconds), a busy server gets bigger transactions, so each commit's fixed
        cost (~250-350 us of CPU: thread hand-off, fsync, wake-ups) is shared by more writes.
        No timer: an idle server is never kept waiting."""
        n = len(self._queue)
        idle = 0
        for _ in range(GATHER_TURNS):
            if n >= self._max_batch:
                return
            await asyncio.sleep(0)
            if len(self._queue) == n:
                idle += 1
                if idle == 2:
                    return
            else:
                idle = 0
                n = len(self._queue)

    def _fail_queued(self, err: StoreError) -> None:
        """Stop for good: nobody may wait forever on a write that will never run."""
        self._closing = True
        while self._queue:
            op = self._queue.popleft()
            if not op.fut.done():
                op.fut.set_exception(err)

    async def _run_exclusive(self, op: _Op) -> None:
        if op.fut.cancelled():
            return
        try:
            if op.kind == "compact":
                lo = self._compacted
                hi = min(op.upto, lo + self._compact_chunk)
                if hi > lo:
                    # Advance first: readers re-check after their read and see Compacted
                    # rather than a history with holes.
                    self._compacted = hi
                    try:
                        await self._backend.compact(lo, hi)
                    except BaseException:
                        self._compacted = lo  # nothing was deleted; keep the range to redo
                        raise
                    self.commits += 1
            else:
                await self._backend.checkpoint()
        except Exception as exc:
            if not op.fut.done():
                op.fut.set_exception(_as_store_error(exc))
            return
        if not op.fut.done():
            op.fut.set_result(None)

    async def _run_batch(self, ops: list[_Op]) -> None:
        b = _Batch(self._revision)
        for op in ops:
            if op.fut.cancelled():
                continue  # the caller gave up before we started: never write it
            try:
                b.results.append((op.fut, self._apply(b, op)))
            except StoreError as exc:
                b.results.append((op.fut, exc))
        lease_puts = [r for r in b.leases.values() if r is not None]
        lease_deletes = [i for i, r in b.leases.items() if r is None]
        if b.rows or b.leases:
            try:
                await self._backend.commit(b.rows, lease_puts, lease_deletes)
            except Exception as exc:
                # Nothing staged reached memory, so the index needs no rollback; every op
                # of the batch fails, including those whose check failed against staged
                # state that now never existed.
                err = _as_store_error(exc)
                if not isinstance(err, StoreFull):  # the backend warned, with the path
                    log.error("store commit failed", ops=len(b.results), error=repr(exc))
                for fut, _ in b.results:
                    if not fut.done():
                        fut.set_exception(err)
                await self._check_after_failed_commit(b)
                return
            self.commits += 1
            self._apply_committed(b)
            if b.events:
                self._publish(b.events)
        for fut, result in b.results:
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def _check_after_failed_commit(self, b: _Batch) -> None:
        """A commit can fail after its frames reached the disk (e.g. an fsync error).
        Then the log holds revisions the index does not, and reusing those numbers would
        corrupt history: stop the store instead (the owner reopens it, which reloads
        the truth from disk)."""
        try:
            landed = await self._backend.last_revision() > self._revision
        except Exception as exc:
            log.error("store cannot verify the log after a failed commit", error=repr(exc))
            landed = True
        if landed:
            log.error("store stopped: a failed commit may be on disk; reopen the store",
                      revision=self._revision, batch_last=b.rev)
            self._fail_queued(StoreClosed("store stopped after an uncertain commit"))

    def _live(self, b: _Batch, key: str) -> KeyValue | None:
        if key in b.kvs:
            return b.kvs[key]
        return self._index.get(key)

    def _lease(self, b: _Batch, lease_id: int) -> LeaseRecord | None:
        if lease_id in b.leases:
            return b.leases[lease_id]
        return self._leases.get(lease_id)

    def _apply(self, b: _Batch, op: _Op) -> Any:
        """Check one op against committed + staged state and stage its effects."""
        kind = op.kind
        if kind in ("create", "update"):
            if op.lease and self._lease(b, op.lease) is None:
                raise LeaseNotFound(op.lease)
            cur = self._live(b, op.key)
            if kind == "create":
                if cur is not None:
                    raise KeyExists(op.key)
            elif cur is None:
                raise KeyNotFound(op.key)
            elif cur.mod_revision != op.expected:
                raise RevisionMismatch(op.key, cur)
            return self._stage_put(b, op.key, op.value, op.lease, cur)
        if kind == "delete":
            cur = self._live(b, op.key)
            if cur is None:
                raise KeyNotFound(op.key)
            if op.expected and cur.mod_revision != op.expected:
                raise RevisionMismatch(op.key, cur)
            return self._stage_delete(b, cur)
        if kind == "grant":
            lease_id = secrets.randbits(62) + 1
            while self._lease(b, lease_id) is not None:
                lease_id = secrets.randbits(62) + 1
            b.leases[lease_id] = LeaseRecord(lease_id, op.ttl, self._clock() + op.ttl)
            return lease_id
        if kind == "keepalive":
            rec = self._lease(b, op.lease)
            if rec is None:
                raise LeaseNotFound(op.lease)
            b.leases[rec.id] = LeaseRecord(rec.id, rec.ttl, self._clock() + rec.ttl)
            return None
        if kind in ("revoke", "expire"):
            rec = self._lease(b, op.lease)
            if rec is None:
                if kind == "expire":
                    return False
                raise LeaseNotFound(op.lease)
            if kind == "expire" and rec.expiry > op.now:
                return False  # renewed since the expiry pass looked
            keys = {k for k in self._lease_keys.get(rec.id, ()) if k not in b.kvs}
            keys.update(k for k, kv in b.kvs.items() if kv is not None and kv.lease == rec.id)
            for k in sorted(keys):
                cur = self._live(b, k)
                if cur is not None and cur.lease == rec.id:
                    self._stage_delete(b, cur)
            b.leases[rec.id] = None
            return True
        raise AssertionError(f"unexpected op {kind}")

    def _stage_put(
        self, b: _Batch, key: str, value: bytes, lease: int, cur: KeyValue | None
    ) -> KeyValue:
        b.rev += 1
        if cur is None:
            kv = KeyValue(key, value, b.rev, b.rev, 1, lease)
            prev_rev = 0
        else:
            kv = KeyValue(key, value, cur.create_revision, b.rev, cur.version + 1, lease)
            prev_rev = cur.mod_revision
        b.kvs[key] = kv
        b.rows.append(LogRow(b.rev, key, kv.create_revision, kv.version, False, value,
                             lease, prev_rev))
        b.events.append(Event(EventType.PUT, kv, cur))
        return kv

    def _stage_delete(self, b: _Batch, cur: KeyValue) -> KeyValue:
        b.rev += 1
        kv = KeyValue(cur.key, cur.value, cur.create_revision, b.rev, cur.version, cur.lease)
        b.kvs[cur.key] = None
        b.rows.append(LogRow(b.rev, cur.key, cur.create_revision, cur.version, True, None,
                             cur.lease, cur.mod_revision))
        b.events.append(Event(EventType.DELETE, kv, cur))
        return kv

    def _apply_committed(self, b: _Batch) -> None:
        for key, kv in b.kvs.items():
            old = self._index.get(key)
            if old is not None and old.lease:
                owned = self._lease_keys.get(old.lease)
                if owned is not None:
                    owned.discard(key)
            if kv is None:
                if old is not None:
                    del self._index[key]
                    i = bisect.bisect_left(self._sorted, key)
                    del self._sorted[i]
                continue
            if old is None:
                bisect.insort(self._sorted, key)
            self._index[key] = kv
            if kv.lease:
                self._lease_keys.setdefault(kv.lease, set()).add(key)
        for lease_id, rec in b.leases.items():
            if rec is None:
                self._leases.pop(lease_id, None)
                self._lease_keys.pop(lease_id, None)
            else:
                self._leases[lease_id] = rec
        self._revision = b.rev

    # -- shutdown ---------------------------------------------------------------------

    async def close(self) -> None:
        """Finish every queued write, stop the writer, end all watches, close files."""
        if not self._closing:
            self._closing = True
            self._queue_wake.set()
        if not self._writer.done():
            with contextlib.suppress(BaseException):
                await self._writer
        if self._closed.is_set():
            return
        self._closed.set()
        for w in list(self._watchers):
            w.close()
        self._watchers.clear()
        for f in list(self._followers):
            if not f.done.done():
                f.done.set_result(None)
        self._followers.clear()
        await self._backend.close()


def _as_store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    err = StoreError(f"store write failed: {exc}")
    err.__cause__ = exc
    return err
