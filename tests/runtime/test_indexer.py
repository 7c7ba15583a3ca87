"""Indexer: keys, named indexes kept in step with add/update/delete/replace."""

from __future__ import annotations

from typing import Any

import pytest

from control.runtime.indexer import (
    NAMESPACE_INDEX,
    Indexer,
    meta_namespace_key,
    namespace_index,
    split_meta_namespace_key,
)
from tests.runtime.fakes import Obj, obj


def by_value(o: Any) -> list[str]:
    return [o.value] if o.value else []


def make() -> Indexer[Obj]:
    return Indexer[Obj]({NAMESPACE_INDEX: namespace_index, "value": by_value})


@pytest.mark.parametrize(
    ("namespace", "name", "key"),
    [
        ("default", "web", "default/web"),
        ("", "node-1", "node-1"),
        ("kube-system", "a", "kube-system/a"),
    ],
)
def test_keys_round_trip(namespace: str, name: str, key: str) -> None:
    assert meta_namespace_key(obj(name, namespace=namespace)) == key
    assert split_meta_namespace_key(key) == (namespace, name)


def test_split_rejects_bad_keys() -> None:
    with pytest.raises(ValueError):
        split_meta_namespace_key("a/b/c")


def test_add_get_list_delete() -> None:
    idx = make()
    a = obj("a", value="x")
    idx.add(a)
    idx.add(obj("b", namespace="other"))
    assert idx.get("default/a") is a
    assert idx.get_by_object(obj("a")) is a
    assert sorted(idx.list_keys()) == ["default/a", "other/b"]
    assert len(idx) == 2 and "default/a" in idx
    idx.delete(obj("a"))
    idx.delete(obj("missing"))  # absent is fine
    assert idx.get("default/a") is None
    assert [o.metadata.name for o in idx.list()] == ["b"]


def test_indexes_follow_updates() -> None:
    idx = make()
    idx.add(obj("a", value="x"))
    idx.add(obj("b", value="x"))
    idx.add(obj("c", namespace="other", value="y"))
    assert idx.index_keys("value", "x") == ["default/a", "default/b"]
    assert [o.metadata.name for o in idx.by_index(NAMESPACE_INDEX, "default")] == ["a", "b"]
    idx.update(obj("a", rv=2, value="y"))  # moves from x to y
    assert idx.index_keys("value", "x") == ["default/b"]
    assert idx.index_keys("value", "y") == ["default/a", "other/c"]
    idx.delete_key("default/b")
    assert idx.index_keys("value", "x") == []
    assert idx.index_values("value") == ["y"]  # empty buckets are dropped
    with pytest.raises(KeyError):
        idx.by_index("nope", "x")


def test_replace_rebuilds_everything() -> None:
    idx = make()
    idx.add(obj("old", value="x"))
    idx.replace([obj("a", value="y"), obj("b", namespace="ns2")], "42")
    assert idx.resource_version == "42"
    assert sorted(idx.list_keys()) == ["default/a", "ns2/b"]
    assert idx.index_keys("value", "x") == []
    assert idx.index_keys("value", "y") == ["default/a"]
    assert idx.index_values(NAMESPACE_INDEX) == ["default", "ns2"]


def test_add_indexers_indexes_existing_items() -> None:
    idx = Indexer[Obj]()
    idx.add(obj("a", value="x"))
    idx.add_indexers({"value": by_value})
    assert idx.index_keys("value", "x") == ["default/a"]
    with pytest.raises(ValueError):
        idx.add_indexers({"value": by_value})


def test_custom_key_func() -> None:
    idx = Indexer[Obj](key_func=lambda o: o.metadata.uid or o.metadata.name)
    o = obj("a")
    o.metadata.uid = "uid-1"
    idx.add(o)
    assert idx.get("uid-1") is o
