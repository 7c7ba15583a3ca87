"""Object encoding between the store and the wire.

The store keeps each object as the binary protobuf of its kind's message with
``metadata.resourceVersion`` empty: the revision belongs to the store (an etcd-like
``mod_revision``), not to the bytes. On the way out the revision is appended as a tiny
``metadata { resource_version: "N" }`` suffix: protobuf merges a repeated embedded message
field, so ``stored + suffix(N)`` decodes as the object at revision N without decoding and
re-encoding it. Every kind's message has ``metadata`` as field 3 (checked by tests/api).

Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message

from control.api import kinds
from control.api.pb import meta_pb2

_METADATA_TAG = b"\x1a"  # field 3, wire type 2 (length-delimited)
_RESOURCE_VERSION_TAG = b"\x2a"  # ObjectMeta field 5, wire type 2


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def rv_suffix(revision: int) -> bytes:
    rv = str(revision).encode()
    inner = _RESOURCE_VERSION_TAG + _varint(len(rv)) + rv
    return _METADATA_TAG + _varint(len(inner)) + inner


def with_revision(stored: bytes, revision: int) -> bytes:
    """The wire form of a stored object at ``revision``."""
    return stored + rv_suffix(revision)


def metadata_only(raw: bytes) -> bytes:
    """The wire bytes of an object reduced to apiVersion, kind and metadata (Kubernetes'
    PartialObjectMetadata), without decoding the rest: the bytes parse as
    ``PartialObjectMetadata`` (fields 1-3 of every kind; the resourceVersion suffix merges
    into the metadata), whose unknown fields (spec, status, data...) are dropped, all in
    protobuf's C code (~2 us for a 1 KB Secret, against ~20 us walking the fields in
    Python). Decodes as the kind's message with an empty spec and status."""
    try:
        partial = meta_pb2.PartialObjectMetadata.FromString(raw)
    except DecodeError as e:
        raise ValueError(f"not an object's protobuf encoding: {e}") from None
    partial.DiscardUnknownFields()
    return partial.SerializeToString(deterministic=True)


def encode_for_store(obj: Message) -> bytes:
    """Serialize ``obj`` without its resourceVersion (the caller's object is not changed)."""
    meta: Any = obj.metadata  # type: ignore[attr-defined]
    rv = meta.resource_version
    if not rv:
        return obj.SerializeToString(deterministic=True)
    meta.resource_version = ""
    try:
        return obj.SerializeToString(deterministic=True)
    finally:
        meta.resource_version = rv


def decode(info: kinds.KindInfo, data: bytes) -> Any:
    msg = info.message()
    msg.ParseFromString(data)
    return msg
