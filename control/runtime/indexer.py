"""An in-memory object store with named secondary indexes (client-go's cache.Indexer).

Objects are kept by key, ``namespace/name`` (or ``name`` for cluster-scoped objects) by
default; the key function is injectable. Named index functions map an object to the index
values it should be found under (e.g. ``"namespace" -> [obj.metadata.namespace]``, or
"by node", "by owner uid"), and ``by_index(name, value)`` returns the objects filed under a
value without a scan.

The store holds the objects it is given, not copies: callers (controllers reading their
cache) must treat them as read-only and copy before modifying, as with client-go listers.

Concurrency contract: no threads, no awaits: every method runs to completion on the event
loop, so each call is atomic with respect to other tasks and readers never see a half-applied
update.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

KeyFunc = Callable[[Any], str]
IndexFunc = Callable[[Any], list[str]]

NAMESPACE_INDEX = "namespace"


class HasMetadata(Protocol):
    """Anything with a Kubernetes-style ``.metadata`` (an ``ObjectMeta`` message)."""

    @property
    def metadata(self) -> Any: ...


def meta_namespace_key(obj: Any) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object (empty namespace)."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else str(meta.name)


def split_meta_namespace_key(key: str) -> tuple[str, str]:
    """The inverse of ``meta_namespace_key``: ``(namespace, name)``; namespace may be ""."""
    namespace, sep, name = key.partition("/")
    if not sep:
        return "", key
    if "/" in name:
        raise ValueError(f"unexpected key format: {key!r}")
    return namespace, name


def namespace_index(obj: Any) -> list[str]:
    """Index function filing an object under its namespace (cluster-scoped: "")."""
    return [str(obj.metadata.namespace)]


class Indexer(Generic[T]):
    """Objects by key, plus named indexes; see the module docstring."""

    def __init__(
        self,
        indexers: Mapping[str, IndexFunc] | None = None,
        *,
        key_func: KeyFunc = meta_namespace_key,
    ) -> None:
        self.key_func = key_func
        self._items: dict[str, T] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        # index name -> index value -> keys of the objects filed under it
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}
        self._resource_version = ""

    # -- writes --------------------------------------------------------------------------

    def add(self, obj: T) -> None:
        """Insert or overwrite the object under its key."""
        key = self.key_func(obj)
        old = self._items.get(key)
        self._items[key] = obj
        self._update_indices(key, old, obj)

    update = add

    def delete(self, obj: T) -> None:
        """Remove the object with the same key as ``obj`` (absent is fine)."""
        self.delete_key(self.key_func(obj))

    def delete_key(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._update_indices(key, old, None)

    def replace(self, objs: Iterable[T], resource_version: str) -> None:
        """Make the contents exactly ``objs`` (a fresh list) read at ``resource_version``."""
        self._items = {self.key_func(o): o for o in objs}
        self._rebuild_indices()
        self._resource_version = resource_version

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Add named indexes (built over the current contents at once)."""
        clash = set(indexers) & set(self._indexers)
        if clash:
            raise ValueError(f"indexers already exist: {sorted(clash)}")
        self._indexers.update(indexers)
        for name, fn in indexers.items():
            index: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
            self._indices[name] = index

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def get_by_object(self, obj: T) -> T | None:
        return self._items.get(self.key_func(obj))

    def list(self) -> builtins.list[T]:
        return builtins.list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        return list(self._items)

    def items(self) -> dict[str, T]:
        """A snapshot copy of key -> object."""
        return dict(self._items)

    def by_index(self, index_name: str, value: str) -> builtins.list[T]:
        """Objects filed under ``value`` in index ``index_name``."""
        return [self._items[k] for k in sorted(self._index(index_name).get(value, ()))]

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        """Keys of the objects filed under ``value`` in index ``index_name``."""
        return sorted(self._index(index_name).get(value, ()))

    def index_values(self, index_name: str) -> builtins.list[str]:
        """Every value that currently has objects in index ``index_name``."""
        return sorted(self._index(index_name))

    @property
    def indexers(self) -> dict[str, IndexFunc]:
        return dict(self._indexers)

    @property
    def resource_version(self) -> str:
        """The resourceVersion of the last ``replace`` (a full list)."""
        return self._resource_version

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    # -- internals -----------------------------------------------------------------------

    def _index(self, index_name: str) -> dict[str, set[str]]:
        try:
            return self._indices[index_name]
        except KeyError:
            raise KeyError(f"no index named {index_name!r}") from None

    def _update_indices(self, key: str, old: T | None, new: T | None) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            old_values = set(fn(old)) if old is not None else set()
            new_values = set(fn(new)) if new is not None else set()
            for value in old_values - new_values:
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        # Drop empty buckets so index_values() lists only live values.
                        del index[value]
            for value in new_values - old_values:
                index.setdefault(value, set()).add(key)

    def _rebuild_indices(self) -> None:
        self._indices = {name: {} for name in self._indexers}
        for key, obj in self._items.items():
            self._update_indices(key, None, obj)
