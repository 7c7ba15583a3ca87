"""The fast checks validation runs on every write agree with the full checks they skip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.api import names
from control.api.pb import core_pb2, meta_pb2
from control.apiserver.validation_core import MAX_DATA_SIZE, validate_config_map
from control.apiserver.validation_util import config_map_key_errors, is_config_map_key


@pytest.mark.parametrize("key", [
    "", ".", "..", "...", "..a", ".a", "a.", "a..b", "a", "key-1", "KEY_name.x", "a/b",
    "a b", "ä", "a\n", "\na", "-", "_", "x" * 253, "x" * 254, "." + "x" * 252,
])
def test_is_config_map_key_agrees_with_the_messages(key: str) -> None:
    assert is_config_map_key(key) == (config_map_key_errors(key) == [])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from("-._aZ9/ \n\u00e4"), max_size=12)
       | st.text(alphabet="x.", min_size=250, max_size=256))
def test_is_config_map_key_agrees_on_any_text(key: str) -> None:
    assert is_config_map_key(key) == (config_map_key_errors(key) == [])


def _meta(**kw: object) -> meta_pb2.ObjectMeta:
    m = meta_pb2.ObjectMeta(**kw)  # type: ignore[arg-type]
    return m


@pytest.mark.parametrize("meta, namespaced, expected", [
    (_meta(name="ok", namespace="default"), True, []),
    (_meta(name="Bad_Name", namespace="default"), True, ["metadata.name"]),
    (_meta(generate_name="web-", namespace="default"), True, []),
    (_meta(generate_name="Web_", namespace="default"), True, ["metadata.generateName"]),
    (_meta(namespace="default"), True, ["metadata.name"]),
    (_meta(name="ok"), True, ["metadata.namespace"]),
    (_meta(name="ok", namespace="Not_A_Label"), True, ["metadata.namespace"]),
    (_meta(name="ok", namespace="default"), False, ["metadata.namespace"]),
    (_meta(name="ok", labels={"app": "web", "bad key!": "x", "k": "bad value!"}), False,
     ["metadata.labels", "metadata.labels"]),
    (_meta(name="ok", annotations={"a/b/c": "x"}), False, ["metadata.annotations"]),
    (_meta(name="ok", owner_references=[meta_pb2.OwnerReference(name="o")]), False,
     ["metadata.ownerReferences"] * 3),
])
def test_object_meta_reports_each_failing_field(meta: meta_pb2.ObjectMeta, namespaced: bool,
                                                expected: list[str]) -> None:
    assert [e.path for e in names.validate_object_meta(meta, namespaced)] == expected


def test_config_map_size_counts_keys_and_encoded_values() -> None:
    cm = core_pb2.ConfigMap()
    cm.data["k"] = "\u00e4" * ((MAX_DATA_SIZE - 1) // 2)  # 2 bytes each in UTF-8
    assert validate_config_map(cm, None) == []
    cm.data["k"] += "\u00e4"
    assert [e.path for e in validate_config_map(cm, None)] == [""]
    cm2 = core_pb2.ConfigMap(data={"a": "x", "..": "y"}, binary_data={"a": b"z"})
    assert sorted(e.path for e in validate_config_map(cm2, None)) == ["data", "data"]
