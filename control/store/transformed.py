"""A Store that transforms values at the storage boundary (encryption at rest).

``TransformedStore`` wraps another :class:`~control.store.interface.Store` and passes every
value through a :class:`ValueTransformer` chosen by key: ``to_storage`` on the way in
(create, update), ``from_storage`` on every way out (get, range, delete's answer, a
compare-and-swap's current value, watch, follow, history). Nothing above it sees a stored
byte, and nothing below it sees a plain one. Keys with no transformer cost one lookup per
value; a batch with none passes through as the same list.

``from_storage`` also says whether a value is *stale*: readable, but not written the way a
write would write it now (another key or provider than the first). The wrapper remembers
which live keys are stale, from the reads of the current state (``get``/``range`` at the
newest revision, ``follow``), so that the apiserver rewrites such an object even when an
update changes nothing in it, which is how a rotation reaches every object (Kubernetes'
storage does the same with its ``stale`` flag).

Failures are :class:`TransformError`, naming the key and why, never the value.

``reconfigure`` swaps the transformers while serving (a reloaded configuration): the new
ones must read every live value first (else nothing changes), then the stale set is
computed again under them.

Concurrency: as the wrapped store (one event loop); transformers are synchronous and quick
(``follow`` calls them in the store's publish step).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Protocol

from control.store.interface import (
    Event,
    EventType,
    KeyValue,
    RangeResult,
    RevisionMismatch,
    Store,
    StoreError,
)


class TransformError(StoreError):
    """A stored value could not be turned back into the object (or an object into its
    stored form): wrong or missing key, damaged bytes. ``reason`` never holds the value."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f'unable to transform key "{key}": {reason}')
        self.key = key
        self.reason = reason


class ValueTransformer(Protocol):
    def to_storage(self, key: str, data: bytes) -> bytes:
        """The stored form of ``data`` (``key`` may be authenticated with it)."""
        ...

    def from_storage(self, key: str, data: bytes) -> tuple[bytes, bool]:
        """The plain value and whether it is stale; :class:`TransformError` if unreadable."""
        ...


TransformerFor = Callable[[str], ValueTransformer | None]
SCAN_PAGE = 1000  # live values read at a time by ``reconfigure``


UntransformedCheck = Callable[[str, bytes], None]


def no_transformer(key: str) -> None:
    """``transformer_for`` of a store that transforms nothing (it may still check values):
    followed batches then pass without a look."""
    return None


class TransformedStore:
    """``inner`` with values transformed per key by ``transformer_for(key)`` (None: as is).

    ``check_untransformed(key, value)`` (optional) sees the values read back (not those
    followed: this server wrote them) of keys with no transformer, and raises
    :class:`TransformError` for one that is transformed all the same (written under a
    configuration that is gone): an error naming the key instead of bytes that decode as
    garbage."""

    def __init__(self, inner: Store, transformer_for: TransformerFor,
                 check_untransformed: UntransformedCheck | None = None) -> None:
        self.inner = inner
        self._for = transformer_for
        self._check = check_untransformed
        self._stale: set[str] = set()

    # -- what the apiserver asks besides the Store contract ---------------------------------

    def stale(self, key: str) -> bool:
        """Whether the live value of ``key`` should be rewritten (read with an old key or a
        provider that is no longer the first)."""
        return key in self._stale

    def stale_count(self) -> int:
        return len(self._stale)

    async def reconfigure(self, transformer_for: TransformerFor) -> int:
        """Use ``transformer_for`` from now on, once it reads every live value (else
        :class:`TransformError` and the current transformers stay). Returns how many live
        keys are stale under it. Memory: one page of values at a time."""
        await self._scan(transformer_for)  # check before anything changes
        self._for = transformer_for
        # again under the new transformers: writes made during the check used the old
        # ones, and the stale set must know them
        self._stale = await self._scan(transformer_for)
        return len(self._stale)

    async def _scan(self, transformer_for: TransformerFor) -> set[str]:
        stale: set[str] = set()
        revision, start = 0, ""
        while True:
            page = await self.inner.range("", revision, SCAN_PAGE, start)
            revision = page.revision  # every page from one snapshot
            for kv in page.kvs:
                t = transformer_for(kv.key)
                if t is not None and kv.value and t.from_storage(kv.key, kv.value)[1]:
                    stale.add(kv.key)
            if not page.more or not page.kvs:
                return stale
            start = page.kvs[-1].key + "\x00"

    # -- value plumbing ----------------------------------------------------------------------

    def _plain(self, kv: KeyValue, live: bool) -> KeyValue:
        t = self._for(kv.key)
        if t is None:
            if self._check is not None:
                self._check(kv.key, kv.value)
            return kv
        if not kv.value:
            return kv  # a delete's event without its prior value (compacted)
        plain, stale = t.from_storage(kv.key, kv.value)
        if live:
            if stale:
                self._stale.add(kv.key)
            else:
                self._stale.discard(kv.key)
        return replace(kv, value=plain)

    def _maybe(self, kv: KeyValue | None, live: bool = False) -> KeyValue | None:
        return None if kv is None else self._plain(kv, live)

    def _event(self, ev: Event, live: bool) -> Event:
        prev = self._maybe(ev.prev)
        if ev.type is EventType.DELETE:
            if live:
                self._stale.discard(ev.kv.key)
            # a delete carries the last live value, which is ``prev``'s: decrypt it once
            if prev is not None and ev.prev is not None and ev.kv.value == ev.prev.value:
                return Event(ev.type, replace(ev.kv, value=prev.value), prev)
            return Event(ev.type, self._plain(ev.kv, False), prev)
        return Event(ev.type, self._plain(ev.kv, live), prev)

    def _events(self, batch: list[Event], live: bool = False) -> list[Event]:
        if live and self._for is no_transformer:
            return batch
        out: list[Event] | None = None
        for i, ev in enumerate(batch):
            if self._for(ev.kv.key) is not None:
                if out is None:
                    out = list(batch)
                out[i] = self._event(ev, live)
            elif not live and self._check is not None:
                self._check(ev.kv.key, ev.kv.value)
                if ev.prev is not None:
                    self._check(ev.prev.key, ev.prev.value)
        return batch if out is None else out

    def _mismatch(self, e: RevisionMismatch) -> RevisionMismatch:
        return RevisionMismatch(e.key, self._maybe(e.current))

    # -- the Store contract ----------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self.inner.revision

    @property
    def compacted_revision(self) -> int:
        return self.inner.compacted_revision

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        return self._maybe(await self.inner.get(key, revision), live=revision == 0)

    async def range(self, prefix: str, revision: int = 0, limit: int = 0,
                    start_key: str | None = None) -> RangeResult:
        result = await self.inner.range(prefix, revision, limit, start_key)
        live = revision == 0
        return RangeResult([self._plain(kv, live) for kv in result.kvs], result.revision,
                           result.more)

    async def create(self, key: str, value: bytes, lease: int = 0) -> KeyValue:
        t = self._for(key)
        if t is None:
            return await self.inner.create(key, value, lease)
        stored = t.to_storage(key, value)
        kv = await self.inner.create(key, stored, lease)
        self._stale.discard(key)
        return kv if stored is value else replace(kv, value=value)

    async def update(self, key: str, value: bytes, expected_mod_revision: int,
                     lease: int = 0) -> KeyValue:
        t = self._for(key)
        if t is None:
            return await self.inner.update(key, value, expected_mod_revision, lease)
        stored = t.to_storage(key, value)
        try:
            kv = await self.inner.update(key, stored, expected_mod_revision, lease)
        except RevisionMismatch as e:
            raise self._mismatch(e) from None
        self._stale.discard(key)
        return kv if stored is value else replace(kv, value=value)

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        if self._for(key) is None:
            return await self.inner.delete(key, expected_mod_revision)
        try:
            kv = await self.inner.delete(key, expected_mod_revision)
        except RevisionMismatch as e:
            raise self._mismatch(e) from None
        self._stale.discard(key)
        return self._plain(kv, False)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        stream = self.inner.watch(prefix, start_revision)
        try:
            async for batch in stream:
                yield self._events(batch)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def follow(self, prefix: str, start_revision: int,
                     apply: Callable[[list[Event]], None]) -> None:
        await self.inner.follow(prefix, start_revision,
                                lambda batch: apply(self._events(batch, live=True)))

    async def history(self, key: str) -> list[Event]:
        events = await self.inner.history(key)
        if self._for(key) is None and self._check is None:
            return events
        return self._events(events)

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def grant_lease(self, ttl_seconds: int) -> int:
        return await self.inner.grant_lease(ttl_seconds)

    async def revoke_lease(self, lease_id: int) -> None:
        await self.inner.revoke_lease(lease_id)

    async def keepalive_lease(self, lease_id: int) -> None:
        await self.inner.keepalive_lease(lease_id)

    async def close(self) -> None:
        await self.inner.close()


__all__ = ["TransformError", "TransformedStore", "TransformerFor", "UntransformedCheck",
           "ValueTransformer", "no_transformer"]
