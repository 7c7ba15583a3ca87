"""Kubernetes JSON (dicts from JSON or YAML) <-> protobuf messages, generic over descriptors.

Owns the manifest mapping used by the apiserver, the agent and the CLI.  protobuf's own
``json_format`` is not used: its JSON is not Kubernetes' JSON (int64 as strings, numbers in
Value as floats, no Quantity/IntOrString forms, first error only).

Reading (``from_dict``):
- keys are json_names; an unknown key, a wrong type or a bad value is a ``FieldError`` with a
  Kubernetes-style path (``spec.containers[0].ports[0].bogus``, ``metadata.labels[app]``);
  every error of the document is collected and raised as one ``Invalid``;
- ``None`` for a field means unset (YAML ``key:``); ``None`` as a list item or map value is
  the zero value of the element type, as Go's decoder does;
- integers: ``int``, or a float with an integral value (JSON ``8080.0``); int64/uint64 also
  accept decimal strings; booleans are never integers; 32-bit ranges are checked;
- strings accept only ``str`` (Kubernetes refuses ``value: 1`` for an env value);
- bytes are standard base64 (missing padding tolerated);
- enums (we use plain strings, but stay generic) accept the value name or number;
- proto3 ``optional`` scalars get presence even when zero (``replicas: 0`` is HasField);
- special message types, by full name: ``flotilla.v1.Quantity`` (string, or a number kept
  as its text), ``flotilla.v1.IntOrString`` (int or string), ``google.protobuf.Timestamp``
  (RFC 3339), ``google.protobuf.Duration`` (Go duration ``"1m30s"``), ``Struct``/``Value``/
  ``ListValue`` (any JSON), and the wrapper types (their scalar).

Writing (``to_dict``): json_names in field declaration order; unset fields, zero proto3
scalars, empty lists and maps are omitted; ``optional`` scalars and message fields are
written when present (even zero / empty); int64 are JSON numbers; map keys sorted.

Speed: per message descriptor we build once a table json_name -> reader closure and
field descriptor -> (json_name, writer closure), cached by descriptor.  The hot paths do
one dict lookup per field and no descriptor reflection.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from control.api import quantity as _quantity
from control.api import timeutil as _timeutil
from control.api.errors import FieldError, Invalid

__all__ = ["from_dict", "from_json", "to_dict", "to_json"]

Errors = list[FieldError]
# Fills ``msg`` from a JSON value; appends to errors instead of raising.
Filler = Callable[[Any, Message, str, Errors], None]
# Reads a scalar; returns _BAD after appending an error.
ScalarReader = Callable[[Any, str, Errors], Any]
Writer = Callable[[Any], Any]

_BAD = object()

M = TypeVar("M", bound=Message)

_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _type_error(path: str, expected: str, value: Any) -> FieldError:
    return FieldError(path, f"expected {expected}, got {_json_type(value)}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---------------------------------------------------------------------------- scalar readers


def _int_reader(lo: int, hi: int, type_name: str, strings: bool) -> ScalarReader:
    def read(value: Any, path: str, errors: Errors) -> Any:
        if type(value) is int:  # the common case first; bool is an int subclass: excluded
            n = value
        elif isinstance(value, float) and not isinstance(value, bool):
            if not value.is_integer():
                errors.append(FieldError(path, f"expected {type_name}, got non-integer {value}"))
                return _BAD
            n = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            n = int(value)
        elif strings and isinstance(value, str):
            text = value.strip()
            body = text[1:] if text[:1] in "+-" else text
            if not body.isascii() or not body.isdigit():
                errors.append(FieldError(path, f"expected {type_name}, got string {value!r}"))
                return _BAD
            n = int(text)
        else:
            errors.append(_type_error(path, type_name, value))
            return _BAD
        if not lo <= n <= hi:
            errors.append(FieldError(path, f"value {n} out of range for {type_name}"))
            return _BAD
        return n

    return read


def _float_reader(value: Any, path: str, errors: Errors) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    errors.append(_type_error(path, "number", value))
    return _BAD


def _bool_reader(value: Any, path: str, errors: Errors) -> Any:
    if isinstance(value, bool):
        return value
    errors.append(_type_error(path, "boolean", value))
    return _BAD


def _str_reader(value: Any, path: str, errors: Errors) -> Any:
    if isinstance(value, str):
        return value
    errors.append(_type_error(path, "string", value))
    return _BAD


def _bytes_reader(value: Any, path: str, errors: Errors) -> Any:
    if not isinstance(value, str):
        errors.append(_type_error(path, "base64 string", value))
        return _BAD
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        errors.append(FieldError(path, "invalid base64 data"))
        return _BAD


def _enum_reader(fd: FieldDescriptor) -> ScalarReader:
    enum = fd.enum_type
    assert enum is not None
    by_name = {v.name: v.number for v in enum.values}
    numbers = set(by_name.values())

    def read(value: Any, path: str, errors: Errors) -> Any:
        if isinstance(value, str) and value in by_name:
            return by_name[value]
        if type(value) is int and value in numbers:
            return value
        allowed = ", ".join(f'"{n}"' for n in by_name)
        errors.append(FieldError(path, f"unsupported value {value!r}: supported values: {allowed}"))
        return _BAD

    return read


def _zero_of(fd: FieldDescriptor) -> Any:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return ""
    if t == FieldDescriptor.TYPE_BYTES:
        return b""
    if t == FieldDescriptor.TYPE_BOOL:
        return False
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 0.0
    return 0


def _scalar_reader(fd: FieldDescriptor) -> ScalarReader:
    t = fd.type
    T = FieldDescriptor
    if t in (T.TYPE_INT32, T.TYPE_SINT32, T.TYPE_SFIXED32):
        return _int_reader(*_INT32, "int32", strings=False)
    if t in (T.TYPE_UINT32, T.TYPE_FIXED32):
        return _int_reader(*_UINT32, "uint32", strings=False)
    if t in (T.TYPE_INT64, T.TYPE_SINT64, T.TYPE_SFIXED64):
        return _int_reader(*_INT64, "int64", strings=True)
    if t in (T.TYPE_UINT64, T.TYPE_FIXED64):
        return _int_reader(*_UINT64, "uint64", strings=True)
    if t in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        return _float_reader
    if t == T.TYPE_BOOL:
        return _bool_reader
    if t == T.TYPE_STRING:
        return _str_reader
    if t == T.TYPE_BYTES:
        return _bytes_reader
    if t == T.TYPE_ENUM:
        return _enum_reader(fd)
    raise TypeError(f"unsupported field type {t} for {fd.full_name}")  # pragma: no cover


def _scalar_writer(fd: FieldDescriptor) -> Writer | None:
    """None means identity (ints, strings, bools, floats are already JSON)."""
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode("ascii")
    if fd.type == FieldDescriptor.TYPE_ENUM:
        enum = fd.enum_type
        assert enum is not None
        by_number = {v.number: v.name for v in enum.values}
        return lambda v: by_number.get(v, v)
    return None


# ---------------------------------------------------------------------- special message types


def _fill_quantity(value: Any, msg: Message, path: str, errors: Errors) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors.append(_type_error(path, "quantity (string or number)", value))
        return
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = str(value)
    try:
        _quantity.parse_quantity(text)
    except _quantity.QuantityError as e:
        errors.append(FieldError(path, str(e)))
        return
    msg.string = text  # type: ignore[attr-defined]


def _write_quantity(msg: Any) -> Any:
    return msg.string


def _fill_int_or_string(value: Any, msg: Message, path: str, errors: Errors) -> None:
    m: Any = msg
    if isinstance(value, str):
        m.str_val = value
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            errors.append(FieldError(path, f"expected integer or string, got {value}"))
            return
        n = int(value)
        if not _INT32[0] <= n <= _INT32[1]:
            errors.append(FieldError(path, f"value {n} out of range for int32"))
            return
        m.int_val = n
        return
    errors.append(_type_error(path, "integer or string", value))


def _write_int_or_string(msg: Any) -> Any:
    which = msg.WhichOneof("value")
    if which == "int_val":
        return msg.int_val
    if which == "str_val":
        return msg.str_val
    return None


def _fill_timestamp(value: Any, msg: Message, path: str, errors: Errors) -> None:
    if not isinstance(value, str):
        errors.append(_type_error(path, "RFC 3339 time string", value))
        return
    try:
        seconds, nanos = _timeutil.parse_rfc3339_parts(value)
    except ValueError as e:
        errors.append(FieldError(path, str(e)))
        return
    m: Any = msg
    m.seconds = seconds
    m.nanos = nanos


def _write_timestamp(msg: Any) -> Any:
    return _timeutil.format_rfc3339(msg)


def _fill_duration(value: Any, msg: Message, path: str, errors: Errors) -> None:
    if not isinstance(value, str):
        errors.append(_type_error(path, 'duration string like "1m30s"', value))
        return
    try:
        total = _timeutil.parse_duration(value)
    except ValueError as e:
        errors.append(FieldError(path, str(e)))
        return
    ns = round(total * 1e9)
    m: Any = msg
    # Duration's seconds and nanos share a sign: truncate toward zero.
    seconds = abs(ns) // 1_000_000_000 * (1 if ns >= 0 else -1)
    m.seconds = seconds
    m.nanos = ns - seconds * 1_000_000_000


def _write_duration(msg: Any) -> Any:
    return _timeutil.format_duration(msg.seconds + msg.nanos / 1e9)


def _json_to_value(value: Any, msg: Any, path: str, errors: Errors) -> None:
    """Fill a google.protobuf.Value from any JSON value."""
    if value is None:
        msg.null_value = 0
    elif isinstance(value, bool):
        msg.bool_value = value
    elif isinstance(value, int | float):
        msg.number_value = value
    elif isinstance(value, str):
        msg.string_value = value
    elif isinstance(value, Mapping):
        _json_to_struct(value, msg.struct_value, path, errors)
    elif isinstance(value, list | tuple):
        _json_to_list(value, msg.list_value, path, errors)
    else:
        errors.append(_type_error(path, "JSON value", value))


def _json_to_struct(value: Any, msg: Any, path: str, errors: Errors) -> None:
    if not isinstance(value, Mapping):
        errors.append(_type_error(path, "object", value))
        return
    msg.SetInParent()
    fields = msg.fields
    for k, v in value.items():
        if not isinstance(k, str):
            errors.append(FieldError(f"{path}[{k}]", "expected string key"))
            continue
        _json_to_value(v, fields[k], f"{path}[{k}]", errors)


def _json_to_list(value: Any, msg: Any, path: str, errors: Errors) -> None:
    if not isinstance(value, list | tuple):
        errors.append(_type_error(path, "array", value))
        return
    msg.SetInParent()
    values = msg.values
    for i, v in enumerate(value):
        _json_to_value(v, values.add(), f"{path}[{i}]", errors)


def _value_to_json(msg: Any) -> Any:
    kind = msg.WhichOneof("kind")
    if kind == "struct_value":
        return _struct_to_json(msg.struct_value)
    if kind == "list_value":
        return _list_to_json(msg.list_value)
    if kind == "number_value":
        n = msg.number_value
        # JSON has one number type: give integers back as ints (8080, not 8080.0).
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    if kind == "string_value":
        return msg.string_value
    if kind == "bool_value":
        return msg.bool_value
    return None


def _struct_to_json(msg: Any) -> Any:
    return {k: _value_to_json(v) for k, v in sorted(msg.fields.items())}


def _list_to_json(msg: Any) -> Any:
    return [_value_to_json(v) for v in msg.values]


def _wrapper(reader: ScalarReader, writer: Writer | None) -> tuple[Filler, Writer]:
    def fill(value: Any, msg: Message, path: str, errors: Errors) -> None:
        v = reader(value, path, errors)
        if v is not _BAD:
            msg.value = v  # type: ignore[attr-defined]

    def write(msg: Any) -> Any:
        return writer(msg.value) if writer else msg.value

    return fill, write


def _special_types() -> dict[str, tuple[Filler, Writer]]:
    table: dict[str, tuple[Filler, Writer]] = {
        "flotilla.v1.Quantity": (_fill_quantity, _write_quantity),
        "flotilla.v1.IntOrString": (_fill_int_or_string, _write_int_or_string),
        "google.protobuf.Timestamp": (_fill_timestamp, _write_timestamp),
        "google.protobuf.Duration": (_fill_duration, _write_duration),
        "google.protobuf.Struct": (_json_to_struct, _struct_to_json),
        "google.protobuf.Value": (_json_to_value, _value_to_json),
        "google.protobuf.ListValue": (_json_to_list, _list_to_json),
    }
    b64: Writer = lambda v: base64.b64encode(v).decode("ascii")  # noqa: E731
    wrappers: dict[str, tuple[ScalarReader, Writer | None]] = {
        "DoubleValue": (_float_reader, None),
        "FloatValue": (_float_reader, None),
        "Int64Value": (_int_reader(*_INT64, "int64", strings=True), None),
        "UInt64Value": (_int_reader(*_UINT64, "uint64", strings=True), None),
        "Int32Value": (_int_reader(*_INT32, "int32", strings=False), None),
        "UInt32Value": (_int_reader(*_UINT32, "uint32", strings=False), None),
        "BoolValue": (_bool_reader, None),
        "StringValue": (_str_reader, None),
        "BytesValue": (_bytes_reader, b64),
    }
    for name, (reader, writer) in wrappers.items():
        table[f"google.protobuf.{name}"] = _wrapper(reader, writer)
    return table


_SPECIAL: dict[str, tuple[Filler, Writer]] = _special_types()


# ----------------------------------------------------------------------- per-descriptor tables


class _Table:
    """Everything the hot paths need about one message type, computed once."""

    __slots__ = ("by_field", "by_json", "fill", "in_order", "order", "write")

    def __init__(self) -> None:
        # json_name -> setter(msg, value, path, errors); path is the field's own path
        self.by_json: dict[str, Callable[[Message, Any, str, Errors], None]] = {}
        # field descriptor -> (json_name, writer of the field's whole value)
        self.by_field: dict[FieldDescriptor, tuple[str, Writer]] = {}
        # field descriptor -> declaration index, used only if numbers are out of order
        self.order: dict[FieldDescriptor, int] = {}
        self.in_order = True
        self.fill: Filler = _unbuilt
        self.write: Writer = _unbuilt


def _unbuilt(*_args: Any) -> Any:  # pragma: no cover - replaced by _build
    raise AssertionError("conversion table used before it was built")


_TABLES: dict[Any, _Table] = {}


def _table(desc: Any) -> _Table:
    t = _TABLES.get(desc)
    if t is None:
        t = _build(desc)
    return t


def _build(desc: Any) -> _Table:
    t = _Table()
    # Registered before the fields are built, so recursive types (Struct <-> Value) terminate.
    _TABLES[desc] = t
    special = _SPECIAL.get(desc.full_name)
    if special is not None:
        t.fill, t.write = special
        return t
    t.fill = _message_filler(t)
    t.write = _message_writer(t)
    numbers = [f.number for f in desc.fields]
    t.in_order = numbers == sorted(numbers)
    for i, fd in enumerate(desc.fields):
        t.order[fd] = i
        setter, writer = _field_codec(fd)
        t.by_json[fd.json_name] = setter
        t.by_field[fd] = (fd.json_name, writer)
    return t


def _message_codec(md: Descriptor) -> tuple[Filler, Writer]:
    """Fill/write functions for a message type, its table built on first use: a process
    that converts one Pod (a CLI call) builds the tables of the types it meets, not of the
    hundreds a PodSpec can hold. (The table may also be building: recursive types.)"""
    sub = _TABLES.get(md)

    def table() -> _Table:
        nonlocal sub
        if sub is None:
            sub = _table(md)
        return sub

    def fill(value: Any, msg: Message, path: str, errors: Errors) -> None:
        table().fill(value, msg, path, errors)

    def write(msg: Any) -> Any:
        return table().write(msg)

    return fill, write


def _element_codec(fd: FieldDescriptor) -> tuple[ScalarReader | None, Filler | None, Writer]:
    """(scalar reader, message filler, writer) for one element of a field."""
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        assert fd.message_type is not None
        fill, write = _message_codec(fd.message_type)
        return None, fill, write
    w = _scalar_writer(fd)
    return _scalar_reader(fd), None, (w if w is not None else _identity)


def _identity(v: Any) -> Any:
    return v


def _field_codec(fd: FieldDescriptor) -> tuple[Callable[[Message, Any, str, Errors], None], Writer]:
    name = fd.name
    mt = fd.message_type
    # has_options first: GetOptions() parses the options, which costs a CLI call ~10 ms.
    is_map = mt is not None and fd.is_repeated and mt.has_options and mt.GetOptions().map_entry
    if is_map:
        return _map_codec(fd)
    if fd.is_repeated:
        return _repeated_codec(fd)
    reader, filler, writer = _element_codec(fd)
    if filler is not None:
        fill = filler

        def set_message(msg: Message, value: Any, path: str, errors: Errors) -> None:
            sub = getattr(msg, name)
            sub.SetInParent()  # presence even for {} (resources: {}) and the zero Timestamp
            fill(value, sub, path, errors)

        return set_message, writer
    assert reader is not None
    read = reader

    def set_scalar(msg: Message, value: Any, path: str, errors: Errors) -> None:
        v = read(value, path, errors)
        if v is not _BAD:
            setattr(msg, name, v)

    return set_scalar, writer


def _repeated_codec(
    fd: FieldDescriptor,
) -> tuple[Callable[[Message, Any, str, Errors], None], Writer]:
    name = fd.name
    reader, filler, writer = _element_codec(fd)
    if filler is not None:
        fill = filler

        def set_messages(msg: Message, value: Any, path: str, errors: Errors) -> None:
            if not isinstance(value, list | tuple):
                errors.append(_type_error(path, "array", value))
                return
            rep = getattr(msg, name)
            for i, item in enumerate(value):
                sub = rep.add()
                if item is not None:  # null item: the zero message, as Go decodes it
                    fill(item, sub, f"{path}[{i}]", errors)

        def write_messages(v: Any) -> Any:
            return [writer(x) for x in v]

        return set_messages, write_messages
    assert reader is not None
    read = reader
    zero = _zero_of(fd)

    def set_scalars(msg: Message, value: Any, path: str, errors: Errors) -> None:
        if not isinstance(value, list | tuple):
            errors.append(_type_error(path, "array", value))
            return
        out = []
        for i, item in enumerate(value):
            v = zero if item is None else read(item, f"{path}[{i}]", errors)
            if v is not _BAD:
                out.append(v)
        getattr(msg, name).extend(out)

    if writer is _identity:
        return set_scalars, list
    return set_scalars, lambda v: [writer(x) for x in v]


def _map_codec(fd: FieldDescriptor) -> tuple[Callable[[Message, Any, str, Errors], None], Writer]:
    name = fd.name
    entry = fd.message_type
    assert entry is not None
    key_fd = entry.fields_by_name["key"]
    val_fd = entry.fields_by_name["value"]
    if key_fd.type == FieldDescriptor.TYPE_STRING:
        key_reader: ScalarReader | None = None
    else:
        # JSON object keys are strings: integer/bool keyed maps read them from their text.
        key_reader = _map_key_reader(key_fd)
    reader, filler, writer = _element_codec(val_fd)

    def read_key(k: Any, path: str, errors: Errors) -> Any:
        if key_reader is not None:
            return key_reader(k, path, errors)
        if isinstance(k, str):
            return k
        if type(k) is int:  # YAML `1: x`; Kubernetes' YAML->JSON step makes it "1"
            return str(k)
        errors.append(FieldError(f"{path}[{k}]", f"expected string key, got {_json_type(k)}"))
        return _BAD

    if filler is not None:
        fill = filler

        def set_map_messages(msg: Message, value: Any, path: str, errors: Errors) -> None:
            if not isinstance(value, Mapping):
                errors.append(_type_error(path, "object", value))
                return
            target = getattr(msg, name)
            for k, item in value.items():
                key = read_key(k, path, errors)
                if key is _BAD:
                    continue
                sub = target[key]
                if item is not None:
                    fill(item, sub, f"{path}[{k}]", errors)

        def write_map_messages(v: Any) -> Any:
            return {k: writer(v[k]) for k in sorted(v)}

        return set_map_messages, write_map_messages
    assert reader is not None
    read = reader
    zero = _zero_of(val_fd)

    def set_map(msg: Message, value: Any, path: str, errors: Errors) -> None:
        if not isinstance(value, Mapping):
            errors.append(_type_error(path, "object", value))
            return
        target = getattr(msg, name)
        for k, item in value.items():
            key = read_key(k, path, errors)
            if key is _BAD:
                continue
            v = zero if item is None else read(item, f"{path}[{k}]", errors)
            if v is not _BAD:
                target[key] = v

    if writer is _identity:
        return set_map, lambda v: {k: v[k] for k in sorted(v)}
    return set_map, lambda v: {k: writer(v[k]) for k in sorted(v)}


def _map_key_reader(fd: FieldDescriptor) -> ScalarReader:
    inner = _scalar_reader(fd)

    def read(k: Any, path: str, errors: Errors) -> Any:
        if isinstance(k, str) and fd.type != FieldDescriptor.TYPE_BOOL:
            text = k.strip()
            body = text[1:] if text[:1] in "+-" else text
            if body.isascii() and body.isdigit():
                k = int(text)
        elif isinstance(k, str):
            k = {"true": True, "false": False}.get(k, k)
        return inner(k, f"{path}[{k}]", errors)

    return read


# ------------------------------------------------------------------------- generic messages


def _message_filler(t: _Table) -> Filler:
    by_json = t.by_json

    def fill(value: Any, msg: Message, path: str, errors: Errors) -> None:
        if not isinstance(value, Mapping):
            errors.append(_type_error(path, "object", value))
            return
        for key, item in value.items():
            setter = by_json.get(key)
            if setter is None:
                p = f"{path}.{key}" if path else str(key)
                errors.append(FieldError(p, f'unknown field "{key}"'))
                continue
            if item is None:  # `key:` / `key: null` means unset, as in Kubernetes
                continue
            setter(msg, item, f"{path}.{key}" if path else key, errors)

    return fill


def _message_writer(t: _Table) -> Writer:
    by_field = t.by_field
    order = t.order

    def write(msg: Any) -> Any:
        items = msg.ListFields()
        if not t.in_order:
            items.sort(key=lambda fv: order[fv[0]])
        out: dict[str, Any] = {}
        for fd, v in items:
            codec = by_field.get(fd)
            if codec is None:  # an extension: not part of Kubernetes' JSON
                continue
            out[codec[0]] = codec[1](v)
        return out

    return write


# ------------------------------------------------------------------------------- public API


def from_dict(data: Mapping[str, Any], message: M, path: str = "") -> M:
    """Fill ``message`` from Kubernetes JSON ``data`` and return it.

    Raises ``Invalid`` listing every failing field (paths prefixed with ``path``).
    """
    errors: Errors = []
    _table(message.DESCRIPTOR).fill(data, message, path, errors)
    if errors:
        raise Invalid(f"invalid {message.DESCRIPTOR.name}", errors)
    return message


def to_dict(message: Message) -> Any:
    """Kubernetes JSON for ``message`` (a dict; a str/int/list for the special types)."""
    return _table(message.DESCRIPTOR).write(message)


def from_json(data: bytes | str, message: M) -> M:
    """``from_dict`` of a JSON document; malformed JSON is ``Invalid`` too."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise Invalid(f"invalid JSON: {e}") from None
    return from_dict(doc, message)


def to_json(message: Message, indent: int | None = None) -> str:
    """``to_dict`` as JSON text: compact by default, as the API serves it."""
    if indent is None:
        return json.dumps(to_dict(message), separators=(",", ":"), ensure_ascii=False)
    return json.dumps(to_dict(message), indent=indent, ensure_ascii=False)
