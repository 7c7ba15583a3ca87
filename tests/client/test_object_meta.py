"""object_meta: the typed way to an API object's metadata, refusing messages that are not kinds."""

from __future__ import annotations

import pytest

from control.api.pb import apps_pb2, core_pb2
from control.client.client import object_meta


@pytest.mark.parametrize("obj", [core_pb2.Pod(), apps_pb2.Deployment(), core_pb2.Namespace()])
def test_kinds_have_their_metadata(obj: core_pb2.Pod) -> None:
    obj.metadata.name = "x"
    assert object_meta(obj).name == "x"
    object_meta(obj).namespace = "ns"
    assert obj.metadata.namespace == "ns"  # the object's own metadata, not a copy


@pytest.mark.parametrize("obj", [core_pb2.PodSpec(), core_pb2.Container()])
def test_parts_of_kinds_are_refused(obj: core_pb2.PodSpec) -> None:
    with pytest.raises(TypeError, match=f"{type(obj).__name__} is not an API object"):
        object_meta(obj)
