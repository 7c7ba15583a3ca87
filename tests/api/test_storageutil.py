"""Pure helpers of node-local storage: pinned node, path containment, default class."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert, storageutil
from control.api.pb import core_pb2, storage_pb2


def _pv(affinity: Any) -> core_pb2.PersistentVolume:
    spec: dict[str, Any] = {"hostPath": {"path": "/v/x"}}
    if affinity is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": affinity}}
    out: core_pb2.PersistentVolume = convert.from_dict(
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "v"},
         "spec": spec}, core_pb2.PersistentVolume())
    return out


def _host(*values: str, key: str = "kubernetes.io/hostname", op: str = "In") -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


@pytest.mark.parametrize("affinity,node", [
    (None, None),
    ([_host("n1")], "n1"),
    ([_host("n1"), _host("n1")], "n1"),
    ([_host("n1"), _host("n2")], None),
    ([_host("n1", "n2")], None),
    ([_host("n1", op="NotIn")], None),
    ([_host("n1", key="topology.kubernetes.io/zone")], None),
    ([], None),
])
def test_pinned_node(affinity: Any, node: str | None) -> None:
    assert storageutil.pinned_node(_pv(affinity)) == node


@pytest.mark.parametrize("path,directory,inside", [
    ("/v/a", "/v", True),
    ("/v/a/b", "/v", True),
    ("/v", "/v", False),
    ("/v/", "/v", False),
    ("/v/../etc", "/v", False),
    ("/vx/a", "/v", False),
    ("v/a", "/v", False),
    ("", "/v", False),
    ("/v/a", "", False),
])
def test_within(path: str, directory: str, inside: bool) -> None:
    assert storageutil.within(path, directory) is inside


def _class(name: str, seconds: int, default: str | None,
           beta: bool = False) -> storage_pb2.StorageClass:
    c = storage_pb2.StorageClass()
    c.metadata.name = name
    c.metadata.creation_timestamp.seconds = seconds
    if default is not None:
        key = storageutil.DEFAULT_CLASS_ANNOTATIONS[1 if beta else 0]
        c.metadata.annotations[key] = default
    return c


def test_default_class_is_the_newest_marked_one() -> None:
    assert storageutil.default_class([]) is None
    assert storageutil.default_class([_class("a", 1, None), _class("b", 2, "false")]) is None
    got = storageutil.default_class([_class("old", 1, "true"), _class("new", 5, "true", True),
                                     _class("plain", 9, None)])
    assert got is not None and got.metadata.name == "new"


def test_ephemeral_claim_name() -> None:
    assert storageutil.ephemeral_claim_name("web-0", "scratch") == "web-0-scratch"
