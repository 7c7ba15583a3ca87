"""TransformedStore: every path a value leaves the store by is transformed back, every path
it enters by is transformed, keys without a transformer pass as they are, and the set of
stale live keys follows the reads and writes. Run over both stores (the ``open_store``
fixture), with a toy reversible transformer so that a test sees what reached the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from control.store.interface import Compacted, Event, EventType, RevisionMismatch
from control.store.sqlite import SqliteStore
from control.store.transformed import (
    TransformedStore,
    TransformError,
    ValueTransformer,
    no_transformer,
)
from tests.store.conftest import OpenStore

T = 5.0


class Reverser:
    """Stores ``new:`` + reversed bytes; reads ``old:`` values too, as stale."""

    def to_storage(self, key: str, data: bytes) -> bytes:
        return b"new:" + data[::-1]

    def from_storage(self, key: str, data: bytes) -> tuple[bytes, bool]:
        if data.startswith(b"new:"):
            return data[4:][::-1], False
        if data.startswith(b"old:"):
            return data[4:][::-1], True
        raise TransformError(key, "no matching prefix")


REVERSER = Reverser()


def only_secrets(key: str) -> ValueTransformer | None:
    return REVERSER if key.startswith("/registry/secrets/") else None


S = "/registry/secrets/ns/"
P = "/registry/pods/ns/"


async def wrapped(open_store: OpenStore) -> tuple[TransformedStore, object]:
    inner = await open_store()
    return TransformedStore(inner, only_secrets), inner


async def test_writes_store_transformed_and_answer_plain(open_store: OpenStore) -> None:
    inner = await open_store()
    store = TransformedStore(inner, only_secrets)
    kv = await store.create(S + "a", b"plain-1")
    assert kv.value == b"plain-1"
    raw = await inner.get(S + "a")
    assert raw is not None and raw.value == b"new:1-nialp"
    kv = await store.update(S + "a", b"plain-2", kv.mod_revision)
    assert kv.value == b"plain-2"
    assert (await inner.get(S + "a")).value == b"new:2-nialp"  # type: ignore[union-attr]
    # another resource passes untouched, both ways
    pod = await store.create(P + "p", b"pod")
    assert (await inner.get(P + "p")).value == b"pod"  # type: ignore[union-attr]
    assert pod.value == b"pod"


async def test_reads_are_plain_live_and_at_a_revision(open_store: OpenStore) -> None:
    inner = await open_store()
    store = TransformedStore(inner, only_secrets)
    first = await store.create(S + "a", b"v1")
    await store.update(S + "a", b"v2", first.mod_revision)
    await store.create(S + "b", b"vb")
    await store.create(P + "p", b"pod")
    assert (await store.get(S + "a")).value == b"v2"  # type: ignore[union-attr]
    assert (await store.get(S + "a", first.mod_revision)).value == b"v1"  # type: ignore[union-attr]
    full = await store.range("/registry/")
    assert [(kv.key, kv.value) for kv in full.kvs] == [
        (P + "p", b"pod"), (S + "a", b"v2"), (S + "b", b"vb")]
    # paging at an old revision (a list's continue token)
    page1 = await store.range(S, revision=first.mod_revision + 2, limit=1)
    assert page1.more and [kv.value for kv in page1.kvs] == [b"v2"]
    page2 = await store.range(S, revision=first.mod_revision + 2, limit=1,
                              start_key=S + "a\x00")
    assert [kv.value for kv in page2.kvs] == [b"vb"]


async def test_delete_and_conflicts_answer_plain(open_store: OpenStore) -> None:
    store, _ = await wrapped(open_store)
    kv = await store.create(S + "a", b"v1")
    with pytest.raises(RevisionMismatch) as e:
        await store.update(S + "a", b"x", kv.mod_revision + 7)
    assert e.value.current is not None and e.value.current.value == b"v1"
    with pytest.raises(RevisionMismatch) as e:
        await store.delete(S + "a", kv.mod_revision + 7)
    assert e.value.current is not None and e.value.current.value == b"v1"
    gone = await store.delete(S + "a", kv.mod_revision)
    assert gone.value == b"v1"


async def test_history_watch_and_follow_are_plain(open_store: OpenStore) -> None:
    store, _ = await wrapped(open_store)
    followed: list[Event] = []
    follower = asyncio.create_task(store.follow("/registry/", 0, followed.extend))
    await asyncio.sleep(0.05)
    a = await store.create(S + "a", b"v1")
    a = await store.update(S + "a", b"v2", a.mod_revision)
    await store.create(P + "p", b"pod")
    await store.delete(S + "a", a.mod_revision)

    def plain(events: list[Event]) -> list[tuple[str, str, bytes, bytes | None]]:
        return [(e.type.value, e.kv.key, e.kv.value, e.prev.value if e.prev else None)
                for e in events]

    expected = [("PUT", S + "a", b"v1", None), ("PUT", S + "a", b"v2", b"v1"),
                ("PUT", P + "p", b"pod", None), ("DELETE", S + "a", b"v2", b"v2")]
    assert plain(followed) == expected
    history = await store.history(S + "a")
    assert plain(history) == [e for e in expected if e[1] == S + "a"]
    watched: list[Event] = []
    stream = store.watch("/registry/", 1)
    try:
        async with asyncio.timeout(T):
            async for batch in stream:
                watched.extend(batch)
                if len(watched) >= 4:
                    break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert plain(watched) == expected
    await store.close()
    await asyncio.wait_for(follower, T)


async def test_batches_without_a_transformed_key_pass_as_the_same_list(
        open_store: OpenStore) -> None:
    store, inner = await wrapped(open_store)
    seen: list[list[Event]] = []
    follower = asyncio.create_task(inner.follow("", 0, seen.append))  # type: ignore[attr-defined]
    relayed: list[list[Event]] = []
    follower2 = asyncio.create_task(store.follow("", 0, relayed.append))
    await asyncio.sleep(0.05)
    await store.create(P + "p", b"pod")
    assert relayed and relayed[-1] is seen[-1]
    await store.close()
    await asyncio.wait_for(asyncio.gather(follower, follower2), T)


async def test_compaction_keeps_reads_plain(open_store: OpenStore) -> None:
    store, _ = await wrapped(open_store)
    kv = await store.create(S + "a", b"v1")
    for i in range(3):
        kv = await store.update(S + "a", f"v{i + 2}".encode(), kv.mod_revision)
    await store.compact(kv.mod_revision - 1)
    with pytest.raises(Compacted):
        await store.get(S + "a", 1)
    assert (await store.get(S + "a")).value == b"v4"  # type: ignore[union-attr]
    assert [e.kv.value for e in await store.history(S + "a")] == [b"v3", b"v4"]


async def test_stale_keys_follow_reads_and_writes(open_store: OpenStore) -> None:
    inner = await open_store()
    old = await inner.create(S + "old", b"old:dlo")  # written with a key no longer first
    await inner.create(S + "new", b"new:wen")
    await inner.create(S + "gone", b"old:x")
    store = TransformedStore(inner, only_secrets)
    loaded = await store.range("/registry/")
    assert [kv.value for kv in loaded.kvs] == [b"x", b"new", b"old"]
    assert store.stale(S + "old") and store.stale(S + "gone") and not store.stale(S + "new")
    assert store.stale_count() == 2
    # reading history or an old revision does not change what is live
    await store.history(S + "new")
    await store.range("/registry/", revision=old.mod_revision)
    assert not store.stale(S + "new")
    await store.update(S + "old", b"old", old.mod_revision)
    assert not store.stale(S + "old")
    assert (await inner.get(S + "old")).value == b"new:dlo"  # type: ignore[union-attr]
    gone = await store.get(S + "gone")
    assert gone is not None
    await store.delete(S + "gone", gone.mod_revision)
    assert store.stale_count() == 0


async def test_untransformable_value_names_the_key(open_store: OpenStore) -> None:
    inner = await open_store()
    await inner.create(S + "bad", b"garbage")
    store = TransformedStore(inner, only_secrets)
    with pytest.raises(TransformError, match=f'unable to transform key "{S}bad": no matching'):
        await store.range("/registry/")
    with pytest.raises(TransformError):
        await store.history(S + "bad")


def files_holding(directory: Path, data: bytes) -> list[Path]:
    return [f for f in directory.rglob("*") if f.is_file() and data in f.read_bytes()]


async def test_values_on_disk_are_transformed_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    inner = await SqliteStore.open(path)
    store = TransformedStore(inner, only_secrets)
    marker = b"DISTINCTIVE-SECRET-BYTES"
    await store.create(S + "a", marker)
    await store.close()
    assert not await asyncio.to_thread(files_holding, tmp_path, marker)
    inner = await SqliteStore.open(path)
    store = TransformedStore(inner, only_secrets)
    try:
        assert (await store.get(S + "a")).value == marker  # type: ignore[union-attr]
        assert [e.type for e in await store.history(S + "a")] == [EventType.PUT]
    finally:
        await store.close()


class Forward:
    """Writes ``old:`` (so the Reverser reads what it wrote as stale); cannot read ``new:``."""

    def to_storage(self, key: str, data: bytes) -> bytes:
        return b"old:" + data[::-1]

    def from_storage(self, key: str, data: bytes) -> tuple[bytes, bool]:
        if data.startswith(b"old:"):
            return data[4:][::-1], False
        raise TransformError(key, "no matching prefix")


async def test_reconfigure_swaps_only_when_every_live_value_reads(
        open_store: OpenStore) -> None:
    inner = await open_store()
    store = TransformedStore(inner, only_secrets)
    for i in range(5):
        await store.create(f"{S}{i}", b"v")
    await store.create(P + "p", b"pod")
    forward: ValueTransformer = Forward()

    def forward_for(key: str) -> ValueTransformer | None:
        return forward if key.startswith("/registry/secrets/") else None

    # Forward cannot read what Reverser wrote: refused, nothing changes
    with pytest.raises(TransformError, match="no matching prefix"):
        await store.reconfigure(forward_for)
    await store.create(S + "x", b"still-reverser")
    assert (await inner.get(S + "x")).value.startswith(b"new:")  # type: ignore[union-attr]

    # a config that reads both: swapped, and every old value is now stale
    class Both(Reverser):
        def from_storage(self, key: str, data: bytes) -> tuple[bytes, bool]:
            plain, _ = super().from_storage(key, data)
            return plain, data.startswith(b"new:")  # "old:" now writes

        def to_storage(self, key: str, data: bytes) -> bytes:
            return b"old:" + data[::-1]

    both = Both()
    assert await store.reconfigure(lambda k: both if k.startswith(S) else None) == 6
    assert store.stale(S + "0") and not store.stale(P + "p")
    kv = await store.get(S + "0")
    assert kv is not None and kv.value == b"v"
    await store.update(S + "0", b"v", kv.mod_revision)
    assert (await inner.get(S + "0")).value == b"old:v"  # type: ignore[union-attr]
    assert not store.stale(S + "0") and store.stale_count() == 5


async def test_reconfigure_reads_in_pages(open_store: OpenStore,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import control.store.transformed as transformed

    monkeypatch.setattr(transformed, "SCAN_PAGE", 2)
    inner = await open_store()
    for i in range(5):
        await inner.create(f"{S}{i}", b"old:v")
    store = TransformedStore(inner, only_secrets)
    assert await store.reconfigure(only_secrets) == 5


def refuse_marked(key: str, value: bytes) -> None:
    if value.startswith(b"new:"):
        raise TransformError(key, "transformed but not configured")


async def test_untransformed_values_are_checked_on_reads_not_on_follow(
        open_store: OpenStore) -> None:
    inner = await open_store()
    await inner.create(P + "ok", b"pod")
    marked = await inner.create(P + "bad", b"new:x")
    store = TransformedStore(inner, no_transformer, refuse_marked)
    for read in (lambda: store.range("/registry/"), lambda: store.get(P + "bad"),
                 lambda: store.history(P + "bad"),
                 lambda: store.get(P + "bad", marked.mod_revision)):
        with pytest.raises(TransformError, match=f'"{P}bad": transformed but not'):
            await read()
    assert (await store.get(P + "ok")).value == b"pod"  # type: ignore[union-attr]
    stream = store.watch("/registry/", 1)
    with pytest.raises(TransformError):
        async with asyncio.timeout(T):
            async for _ in stream:
                pass
    await stream.aclose()  # type: ignore[attr-defined]
    # what this server writes and follows is not checked (it wrote it)
    followed: list[Event] = []
    follower = asyncio.create_task(store.follow("/registry/", 0, followed.extend))
    await asyncio.sleep(0.05)
    batch_seen: list[list[Event]] = []
    follower2 = asyncio.create_task(inner.follow("/registry/", 0, batch_seen.append))
    await asyncio.sleep(0.05)
    await store.create(P + "new", b"new:written-here")
    assert [e.kv.value for e in followed] == [b"new:written-here"]
    await store.create(P + "new2", b"x")
    assert len(followed) == 2 and followed[-1] is batch_seen[-1][-1]  # passed as it is
    await store.close()
    await asyncio.wait_for(asyncio.gather(follower, follower2), T)
