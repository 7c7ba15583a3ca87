"""The object codec's byte-level helpers: the resourceVersion suffix and the reduction to
metadata (PartialObjectMetadata), checked against protobuf's own decoding."""

from __future__ import annotations

import pytest

from control.api import kinds
from control.api.pb import apps_pb2, core_pb2, meta_pb2
from control.apiserver import codec
from tests.support.objects import cm, deployment, pod


def _owned(obj: object) -> object:
    m = obj.metadata  # type: ignore[attr-defined]
    m.uid = "u-1"
    m.labels["app"] = "web"
    m.finalizers.append("foregroundDeletion")
    m.owner_references.append(meta_pb2.OwnerReference(
        api_version="apps/v1", kind="ReplicaSet", name="rs", uid="u-0",
        block_owner_deletion=True))
    return obj


@pytest.mark.parametrize("obj", [
    _owned(pod("web-0")), _owned(cm("conf", big="x" * 5000)), _owned(deployment("web")),
    core_pb2.Namespace(metadata=meta_pb2.ObjectMeta(name="empty")),
    core_pb2.Pod(),
])
def test_metadata_only_keeps_metadata_and_drops_the_rest(obj: object) -> None:
    info = kinds.by_message(obj)  # type: ignore[arg-type]
    raw = codec.with_revision(codec.encode_for_store(obj), 42)  # type: ignore[arg-type]
    reduced = codec.decode(info, codec.metadata_only(raw))
    full = codec.decode(info, raw)
    assert reduced.metadata == full.metadata
    assert reduced.metadata.resource_version == "42"
    assert (reduced.api_version, reduced.kind) == (full.api_version, full.kind)
    expected = info.message()
    expected.api_version, expected.kind = full.api_version, full.kind
    expected.metadata.CopyFrom(full.metadata)
    assert reduced == expected  # nothing of spec or status is left
    assert len(codec.metadata_only(raw)) <= len(raw)


def test_metadata_only_refuses_bytes_that_are_not_a_message() -> None:
    for bad in (b"\x1a\x10abc",  # field 3 claims 16 bytes, 3 follow
                b"\x1a\x80"):  # the length's varint never ends
        with pytest.raises(ValueError, match="not an object's protobuf encoding"):
            codec.metadata_only(bad)


def test_a_deployment_keeps_nothing_of_its_template() -> None:
    d = _owned(deployment("web"))
    raw = codec.metadata_only(codec.encode_for_store(d))  # type: ignore[arg-type]
    assert not apps_pb2.Deployment.FromString(raw).HasField("spec")
