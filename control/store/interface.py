"""The Store contract: an etcd-shaped, revisioned key-value store of opaque bytes.

Everything Kubernetes-specific (kinds, selectors, validation) lives in the apiserver; the
store only knows keys (``str``, e.g. ``/registry/pods/default/web-1``), values (``bytes``)
and revisions. One global revision counter increases by one per successful write (create,
update or delete); it is what the API calls ``resourceVersion``.

Semantics every implementation keeps (and ``tests/store`` checks for each):

- ``create`` fails with :class:`KeyExists` if the key is live; ``update``/``delete`` compare
  the key's ``mod_revision`` with ``expected_mod_revision`` (0 = unconditional for delete)
  and fail with :class:`RevisionMismatch` (carrying the current value) or
  :class:`KeyNotFound`.
- A write returns only after it is durable; concurrent writes may share one transaction
  (group commit) but each is checked and ordered as if alone.
- ``range``/``get`` at ``revision`` (0 = now) see exactly the state after that revision;
  a revision below ``compacted_revision`` raises :class:`Compacted`.
- ``watch(prefix, start_revision)`` yields batches of :class:`Event` for every revision
  ``>= start_revision`` in revision order, with no gaps; all watchers see the same order.
  ``start_revision`` below the compacted revision raises :class:`Compacted` (at the call or
  on first iteration). The iterator ends only when cancelled or when the store closes.
- ``follow(prefix, start_revision, apply)`` is ``watch`` for an in-process consumer that
  must never lag (the apiserver's watch cache): ``apply`` gets the same batches a watcher
  would, replayed history first, then every committed batch before the writes in it are
  acknowledged to their callers. ``apply`` must be quick and must not block; if it raises,
  ``follow`` raises that exception. ``follow`` returns when the store closes.
- Leases: keys written with ``lease`` are deleted (as ordinary DELETE events) when the lease
  expires or is revoked. Writing with an unknown lease raises :class:`LeaseNotFound`.
- Clarifications: ``update`` has no unconditional form (``expected_mod_revision`` must equal
  the key's ``mod_revision``). Reading at a revision above ``revision`` raises
  :class:`FutureRevision`. ``watch(prefix, 0)`` starts after the current revision. A
  watcher that falls too far behind ends with :class:`WatcherTooSlow` (resume from its
  ``resume_revision``). ``compact`` at or below ``compacted_revision`` is a no-op.

Concurrency: all methods are coroutine-safe on one event loop.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """Base of every store failure."""


class KeyExists(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key exists: {key}")
        self.key = key


class KeyNotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class RevisionMismatch(StoreError):
    """Compare-and-swap failed; ``current`` is the live value (None if deleted)."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"revision mismatch on {key}")
        self.key = key
        self.current = current


class Compacted(StoreError):
    """The requested revision is older than the compacted history."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted (oldest kept: {compacted + 1})"
        )
        self.requested = requested
        self.compacted = compacted


class StoreClosed(StoreError):
    pass


class FutureRevision(StoreError):
    """A read asked for a revision newer than the store's newest revision."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is in the future (current: {current})")
        self.requested = requested
        self.current = current


class LeaseNotFound(StoreError):
    """The lease does not exist (never granted, expired or revoked)."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease not found: {lease_id}")
        self.lease_id = lease_id


class WatcherTooSlow(StoreError):
    """The watcher fell too far behind the writers and was dropped so it would not hold
    unbounded memory; resume with ``watch(prefix, resume_revision)`` (no event is lost)."""

    def __init__(self, resume_revision: int) -> None:
        super().__init__(f"watcher too slow; resume from revision {resume_revision}")
        self.resume_revision = resume_revision


class StoreFull(StoreError):
    """The disk under the store is full: the write was not made (nothing of it is visible);
    writes succeed again once space returns."""

    def __init__(self, path: str, free_bytes: int) -> None:
        super().__init__(f"no space left for the store at {path} ({free_bytes} bytes free)")
        self.path = path
        self.free_bytes = free_bytes


class LogDamaged(StoreError):
    """The log on disk lost part of its acknowledged history (or cannot be read at all);
    the store refuses to open it, since serving it would lose acknowledged writes and
    reissue revision numbers. ``recoverable``: opening with the loss accepted can work."""

    def __init__(self, path: str, acknowledged: int | None, last_good: int, detail: str,
                 recoverable: bool = True) -> None:
        self.path = path
        self.acknowledged = acknowledged
        self.last_good = last_good
        self.detail = detail
        self.recoverable = recoverable
        super().__init__(self.describe("open it with recover_to_last_good"))

    def describe(self, recover_how: str) -> str:
        """One paragraph for the operator; ``recover_how`` names how to accept the loss."""
        head = (f"refusing to start: the store's log {self.path} is damaged: {self.detail}. ")
        restore = ("restore the data directory (the database and its -wal file) from a "
                   "backup and start again")
        if not self.recoverable:
            return head + f"It cannot be opened as it is. To go on: {restore}."
        lost = (f"revisions {self.last_good + 1} to {self.acknowledged}"
                if self.acknowledged is not None and self.acknowledged > self.last_good
                else f"the history after revision {self.last_good}")
        return (
            head + f"The last good revision is {self.last_good}. Serving it would lose "
            "acknowledged writes and hand out resourceVersions that clients have already "
            f"seen. Choices: {restore}; or {recover_how} to accept the loss of {lost} (a "
            "copy of the damaged log is kept beside it, new revisions continue above every "
            "acknowledged one, and clients relist).")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int  # writes to this key since its creation (1 on create)
    lease: int = 0


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One revision. For DELETE, ``kv.value`` is the last live value and ``kv.mod_revision``
    is the revision of the delete itself. ``prev`` is the value before this revision (None
    for a create)."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store revision the range was read at
    more: bool  # True when ``limit`` cut the result short


class Store(Protocol):
    @property
    def revision(self) -> int:
        """The newest durable revision (in memory; no I/O)."""
        ...

    @property
    def compacted_revision(self) -> int:
        """Revisions <= this value are gone from history."""
        ...

    async def get(self, key: str, revision: int = 0) -> KeyValue | None: ...

    async def range(
        self,
        prefix: str,
        revision: int = 0,
        limit: int = 0,
        start_key: str | None = None,
    ) -> RangeResult:
        """Live keys starting with ``prefix`` (and ``>= start_key``), sorted by key."""
        ...

    async def create(self, key: str, value: bytes, lease: int = 0) -> KeyValue: ...

    async def update(
        self, key: str, value: bytes, expected_mod_revision: int, lease: int = 0
    ) -> KeyValue: ...

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        """Delete; returns the deleted value with ``mod_revision`` = the delete's revision."""
        ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]: ...

    async def follow(
        self, prefix: str, start_revision: int, apply: Callable[[list[Event]], None]
    ) -> None:
        """Call ``apply`` with every batch under ``prefix`` from ``start_revision`` (0:
        the next write), in order, without gap or duplicate; each live batch before its
        writers are answered. Returns when the store closes."""
        ...

    async def history(self, key: str) -> list[Event]:
        """Every revision of ``key`` still in the log (creates, updates, deletes), oldest
        first."""
        ...

    async def compact(self, revision: int) -> None: ...

    async def grant_lease(self, ttl_seconds: int) -> int: ...

    async def revoke_lease(self, lease_id: int) -> None: ...

    async def keepalive_lease(self, lease_id: int) -> None: ...

    async def close(self) -> None: ...
