"""Which updates make a new generation: anything besides apiVersion, kind, metadata and
status (``Registry._spec_changed``, run on every update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from control.api.pb import core_pb2
from control.apiserver.registry import Registry


def _cm() -> core_pb2.ConfigMap:
    cm = core_pb2.ConfigMap(data={f"k{i}": "v" * 20 for i in range(4)},
                            binary_data={"b": b"\x00\x01"})
    cm.metadata.name = "cm"
    return cm


def _pod() -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = "p"
    pod.spec.node_name = "n1"
    pod.status.phase = "Pending"
    return pod


def _set(field: str, key: str, value: Any) -> Callable[[Any], None]:
    def change(o: Any) -> None:
        getattr(o, field)[key] = value
    return change


def _delete(field: str, key: str) -> Callable[[Any], None]:
    def change(o: Any) -> None:
        del getattr(o, field)[key]
    return change


@pytest.mark.parametrize("make, change, changed", [
    (_cm, lambda o: None, False),
    (_cm, lambda o: o.metadata.labels.update({"a": "b"}), False),
    (_cm, lambda o: setattr(o, "kind", "ConfigMap"), False),
    (_cm, _set("data", "k0", "other"), True),
    (_cm, _set("data", "new", "v"), True),
    (_cm, _delete("data", "k3"), True),
    (_cm, lambda o: (o.data.pop("k3"), o.data.update({"k9": "v" * 20})), True),
    (_cm, _set("binary_data", "b", b"\x00"), True),
    (_cm, lambda o: o.binary_data.clear(), True),
    (_cm, lambda o: setattr(o, "immutable", True), True),
    (_pod, lambda o: setattr(o.status, "phase", "Running"), False),
    (_pod, lambda o: setattr(o.spec, "node_name", "n2"), True),
])
def test_spec_changed(make: Callable[[], Any], change: Callable[[Any], None],
                      changed: bool) -> None:
    current = make()
    new = type(current)()
    new.CopyFrom(current)
    change(new)
    before = current.SerializeToString(deterministic=True)
    assert Registry._spec_changed(new, current) is changed
    assert Registry._spec_changed(current, new) is changed
    # the current object is the watch cache's: comparing never adds a key to it
    assert current.SerializeToString(deterministic=True) == before
