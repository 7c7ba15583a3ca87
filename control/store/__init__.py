"""The store: an etcd-shaped revisioned key-value log (see ``interface``).

Owns the re-exports of the contract and of the implementations: the revision-log engine
``LogStore`` (``log.py``) over its backends, ``SqliteStore`` (embedded, durable) and
``MemoryStore`` (in-memory test double with the same semantics). Only
``control.apiserver`` and the server wiring import this package. Concurrency: see each
module; every store is used from one event loop.
"""

from control.store.interface import (
    Compacted,
    Event,
    EventType,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    LeaseNotFound,
    LogDamaged,
    RangeResult,
    RevisionMismatch,
    Store,
    StoreClosed,
    StoreError,
    StoreFull,
    WatcherTooSlow,
)
from control.store.log import LogStore
from control.store.memory import MemoryStore
from control.store.sqlite import SqliteStore

__all__ = [
    "Compacted",
    "Event",
    "EventType",
    "FutureRevision",
    "KeyExists",
    "KeyNotFound",
    "KeyValue",
    "LeaseNotFound",
    "LogDamaged",
    "LogStore",
    "MemoryStore",
    "RangeResult",
    "RevisionMismatch",
    "SqliteStore",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreFull",
    "WatcherTooSlow",
]
