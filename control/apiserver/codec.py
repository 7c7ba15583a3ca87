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

from google.protobuf.message import Message

from control.api import kinds

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


# Top-level fields every kind's message shares: api_version (1), kind (2), metadata (3).
_METADATA_FIELDS = frozenset({1, 2, 3})


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def metadata_only(raw: bytes) -> bytes:
    """The wire bytes of an object reduced to apiVersion, kind and metadata (Kubernetes'
    PartialObjectMetadata), without decoding it: the top-level fields are walked by their
    tags and lengths and only fields 1-3 kept (the resourceVersion suffix is a field 3 too).
    Decodes as the kind's message with an empty spec and status."""
    try:
        return _metadata_only(raw)
    except IndexError:
        raise ValueError("truncated protobuf message") from None


def _metadata_only(raw: bytes) -> bytes:
    out = bytearray()
    pos, end = 0, len(raw)
    while pos < end:
        start = pos
        tag, pos = _read_varint(raw, pos)
        wire_type = tag & 7
        if wire_type == 2:
            length, pos = _read_varint(raw, pos)
            pos += length
        elif wire_type == 0:
            _, pos = _read_varint(raw, pos)
        elif wire_type == 5:
            pos += 4
        elif wire_type == 1:
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} at byte {start}")
        if tag >> 3 in _METADATA_FIELDS:
            out += raw[start:pos]
    if pos != end:
        raise ValueError("truncated protobuf message")
    return bytes(out)


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
