"""The watch cache's event window: bounded by events and bytes (per kind and in total), "too
old" past it, and filled from the store's log at load so watches resume across a restart.
Driven directly over a MemoryStore (no gRPC)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from control.api import errors
from control.api.pb import api_pb2, core_pb2
from control.apiserver.watchcache import WatchCache, Watcher
from control.store.memory import MemoryStore

T = 10.0


def configmap(name: str, size: int, version: int = 0, namespace: str = "default",
              labels: dict[str, str] | None = None) -> bytes:
    cm = core_pb2.ConfigMap()
    cm.metadata.name = name
    cm.metadata.namespace = namespace
    cm.metadata.labels.update(labels or {})
    cm.data["payload"] = chr(ord("a") + version % 26) * size
    return cm.SerializeToString()


def key(name: str, resource: str = "configmaps") -> str:
    return f"/registry/{resource}/default/{name}"


def secret(name: str, size: int) -> bytes:
    s = core_pb2.Secret()
    s.metadata.name = name
    s.metadata.namespace = "default"
    s.data["k"] = b"s" * size
    return s.SerializeToString()


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = await MemoryStore.open()
    yield s
    await s.close()


async def following(cache: WatchCache) -> asyncio.Task[None]:
    await cache.load()
    task = asyncio.create_task(cache.run())
    await asyncio.sleep(0)
    await cache.load_history()
    return task


async def stop(cache: WatchCache, store: MemoryStore, task: asyncio.Task[None]) -> None:
    await store.close()
    await asyncio.wait_for(task, T)


def watch(cache: WatchCache, rv: int | None, resource: str = "configmaps") -> Watcher:
    return cache.watch(resource, "", None, lambda co: True, rv, False)


async def drain(w: Watcher, n: int) -> list[api_pb2.WatchEvent]:
    out = []
    async with asyncio.timeout(T):
        for _ in range(n):
            raw = await w.next()
            assert raw is not None
            out.append(api_pb2.WatchEvent.FromString(raw))
    return out


async def test_many_patches_of_a_large_configmap_keep_the_window_bounded(
        store: MemoryStore) -> None:
    limit = 4 * 1024 * 1024
    cache = WatchCache(store, size_bytes=limit)
    task = await following(cache)
    kv = await store.create(key("big"), configmap("big", 200_000))
    first = kv.mod_revision
    for i in range(1, 120):  # 120 x 200 KB: about 24 MB of events through a 4 MiB window
        kv = await store.update(key("big"), configmap("big", 200_000, i), kv.mod_revision)
        assert cache.bytes <= limit
        assert cache.resources["configmaps"].bytes <= cache.kind_size_bytes
    rc = cache.resources["configmaps"]
    assert 0 < len(rc.events) < 30
    assert rc.window_start > first
    with pytest.raises(errors.Gone):  # fell behind the window: relist
        watch(cache, first)
    w = watch(cache, rc.window_start)  # inside the window: every later event, in order
    got = await drain(w, len(rc.events))
    assert [e.type for e in got] == ["MODIFIED"] * len(rc.events)
    assert cache.get("configmaps", key("big")) is not None  # the live object stays
    await stop(cache, store, task)


async def test_total_bound_evicts_the_oldest_across_kinds(store: MemoryStore) -> None:
    cache = WatchCache(store, size_bytes=1_000_000, kind_size_bytes=1_000_000)
    task = await following(cache)
    for i in range(10):
        await store.create(key(f"s{i}", "secrets"), secret(f"s{i}", 30_000))
    for i in range(10):
        await store.create(key(f"c{i}"), configmap(f"c{i}", 30_000))
    assert cache.bytes <= 1_000_000
    assert cache.bytes == sum(rc.bytes for rc in cache.resources.values())
    secrets, cms = cache.resources["secrets"], cache.resources["configmaps"]
    assert len(cms.events) == 10  # the newest kind kept all of its events
    assert len(secrets.events) < 10  # the oldest events, of the other kind, went first
    with pytest.raises(errors.Gone):
        watch(cache, 1, "secrets")
    await stop(cache, store, task)


async def test_count_bound_still_applies(store: MemoryStore) -> None:
    cache = WatchCache(store, history=5)
    task = await following(cache)
    for i in range(8):
        await store.create(key(f"c{i}"), configmap(f"c{i}", 10))
    rc = cache.resources["configmaps"]
    assert [e.revision for e in rc.events] == [4, 5, 6, 7, 8] and rc.window_start == 3
    await stop(cache, store, task)


async def test_slow_watcher_bounded_by_bytes(store: MemoryStore) -> None:
    cache = WatchCache(store, size_bytes=4_000_000, kind_size_bytes=1_000_000)
    task = await following(cache)
    w = watch(cache, None)
    for i in range(10):  # nobody reads: 10 x 200 KB exceed the watcher's 1 MB
        await store.create(key(f"c{i}"), configmap(f"c{i}", 200_000))
    assert w.too_slow and w.closed
    await stop(cache, store, task)


async def test_load_fills_the_window_from_the_log(store: MemoryStore) -> None:
    """After a restart the cache is rebuilt from the store: watches from a resourceVersion
    seen before it are served from the log's history, with the right event types."""
    a = await store.create(key("a"), configmap("a", 10))  # 1
    await store.create(key("s", "secrets"), secret("s", 10))  # 2
    a = await store.update(key("a"), configmap("a", 10, 1), a.mod_revision)  # 3
    await store.create(key("b"), configmap("b", 10))  # 4
    await store.delete(key("b"))  # 5
    await store.create("/other/not-an-object", b"")  # 6: outside /registry/
    cache = WatchCache(store)
    task = await following(cache)
    assert cache.revision == 6
    w = watch(cache, 1)
    got = await drain(w, 3)
    assert [(e.type, core_pb2.ConfigMap.FromString(e.object).metadata.resource_version)
            for e in got] == [("MODIFIED", "3"), ("ADDED", "4"), ("DELETED", "5")]
    w2 = watch(cache, 0, "secrets")
    assert [e.type for e in await drain(w2, 1)] == ["ADDED"]
    c = await store.create(key("c"), configmap("c", 10))  # live events follow the replay
    assert [core_pb2.ConfigMap.FromString(e.object).metadata.name
            for e in await drain(w, 1)] == ["c"]
    assert c.mod_revision == 7
    await stop(cache, store, task)


async def test_history_loads_behind_live_events(store: MemoryStore) -> None:
    """The history is read while the cache already follows live writes: it lands in front
    of them, in revision order, with nothing lost or doubled."""
    for i in range(5):
        await store.create(key(f"old{i}"), configmap(f"old{i}", 10))
    cache = WatchCache(store)
    await cache.load()
    task = asyncio.create_task(cache.run())
    await asyncio.sleep(0)
    for i in range(3):
        await store.create(key(f"new{i}"), configmap(f"new{i}", 10))
    rc = cache.resources["configmaps"]
    assert [e.revision for e in rc.events] == [6, 7, 8] and rc.window_start == 5
    waiter = asyncio.create_task(cache.wait_history())
    await cache.load_history()
    await asyncio.wait_for(waiter, T)
    assert [e.revision for e in rc.events] == list(range(1, 9)) and rc.window_start == 0
    assert cache.bytes == sum(r.bytes for r in cache.resources.values())
    got = await drain(watch(cache, 2), 6)
    assert [core_pb2.ConfigMap.FromString(e.object).metadata.resource_version
            for e in got] == [str(r) for r in range(3, 9)]
    await stop(cache, store, task)


async def test_resumed_watch_sees_only_its_namespace_and_selector(store: MemoryStore) -> None:
    """Replayed history (decoded only when a watcher looks at it) is filtered as live
    events are: by the watch's namespace and its selector."""
    for ns in ("ns1", "ns2"):
        for app in ("web", "db"):
            await store.create(f"/registry/configmaps/{ns}/{app}",
                               configmap(app, 10, namespace=ns, labels={"app": app}))
    cache = WatchCache(store)
    task = await following(cache)
    rc = cache.resources["configmaps"]
    assert all(ev.new._obj is None for ev in rc.events)  # loaded, not decoded
    w = cache.watch("configmaps", "ns2", None, lambda co: co.labels.get("app") == "web",
                    0, False)
    await store.create("/registry/configmaps/ns1/web2",
                       configmap("web2", 10, namespace="ns1", labels={"app": "web"}))
    await store.create("/registry/configmaps/ns2/web2",
                       configmap("web2", 10, namespace="ns2", labels={"app": "web"}))
    got = [core_pb2.ConfigMap.FromString(e.object).metadata for e in await drain(w, 2)]
    assert [(m.namespace, m.name, m.resource_version) for m in got] == [
        ("ns2", "web", "3"), ("ns2", "web2", "6")]
    await stop(cache, store, task)


async def test_load_window_respects_compaction_and_load_history(store: MemoryStore) -> None:
    kv = await store.create(key("a"), configmap("a", 10))
    for i in range(20):
        kv = await store.update(key("a"), configmap("a", 10, i), kv.mod_revision)
    await store.compact(10)
    cache = WatchCache(store, history_on_load=5)
    task = await following(cache)
    rc = cache.resources["configmaps"]
    assert rc.window_start == 16 and [e.revision for e in rc.events] == [17, 18, 19, 20, 21]
    with pytest.raises(errors.Gone):
        watch(cache, 12)
    await stop(cache, store, task)
    store2 = await MemoryStore.open()
    cache2 = WatchCache(store2)
    task2 = await following(cache2)  # an empty store: nothing to replay
    assert cache2.resources["configmaps"].window_start == 0
    await stop(cache2, store2, task2)
