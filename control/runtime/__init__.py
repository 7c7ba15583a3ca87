"""Flotilla's controller runtime: client-go's tools/cache + util/workqueue and
controller-runtime's reconcile loop, on asyncio.

    ListWatcher -> Reflector -> SharedInformer (Indexer + handlers) -> WorkQueue
        -> Controller workers -> reconcile(key)

Every long-lived task runs under a ``Supervisor``; everything that waits takes a ``Clock``.
Each module's docstring states what it owns and its concurrency contract (one event loop,
no threads, synchronous calls are atomic).
"""

from control.client.listwatch import ListPage, ListWatcher, WatchEvent
from control.runtime.backoff import Backoff, BackoffState
from control.runtime.clock import Clock, FakeClock, RealClock, wait_for
from control.runtime.controller import Controller, Reconciler, Result, TerminalError
from control.runtime.expectations import EXPECTATIONS_TTL, ControllerExpectations, Expectation
from control.runtime.indexer import (
    NAMESPACE_INDEX,
    HasMetadata,
    Indexer,
    IndexFunc,
    KeyFunc,
    meta_namespace_key,
    namespace_index,
    split_meta_namespace_key,
)
from control.runtime.informer import (
    ADDED,
    BOOKMARK,
    DELETED,
    MODIFIED,
    WATCH_BACKOFF,
    EventHandler,
    InformerSet,
    Reflector,
    ReflectorStore,
    SharedInformer,
    WatchError,
)
from control.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from control.runtime.supervisor import Supervisor
from control.runtime.workqueue import ShutDown, WorkQueue

__all__ = [
    "ADDED",
    "BOOKMARK",
    "DELETED",
    "EXPECTATIONS_TTL",
    "MODIFIED",
    "NAMESPACE_INDEX",
    "WATCH_BACKOFF",
    "Backoff",
    "BackoffState",
    "BucketRateLimiter",
    "Clock",
    "Controller",
    "ControllerExpectations",
    "EventHandler",
    "Expectation",
    "FakeClock",
    "HasMetadata",
    "IndexFunc",
    "Indexer",
    "InformerSet",
    "ItemExponentialFailureRateLimiter",
    "KeyFunc",
    "ListPage",
    "ListWatcher",
    "MaxOfRateLimiter",
    "RateLimiter",
    "RealClock",
    "Reconciler",
    "Reflector",
    "ReflectorStore",
    "Result",
    "SharedInformer",
    "ShutDown",
    "Supervisor",
    "TerminalError",
    "WatchError",
    "WatchEvent",
    "WorkQueue",
    "default_controller_rate_limiter",
    "meta_namespace_key",
    "namespace_index",
    "split_meta_namespace_key",
    "wait_for",
]
