"""Fuzzing every RPC of the API service with random and mutated requests.

Each example is sent on a blocking gRPC channel to one real apiserver (apiserver alone, on a
temporary SQLite file) running on its own event loop in a background thread, so hypothesis
drives plain synchronous tests. Requests come in three flavours: random bytes; well-formed
messages whose fields hypothesis chooses (from a pool of meaningful values and random
ones, built from each request's protobuf descriptor, so every field of every RPC is
covered); and such messages serialized and then mutated byte by byte. Asserted for every
example: the status is never UNKNOWN or INTERNAL, a unary call answers within its
deadline (only the server's own "Timeout: ..." is a DEADLINE_EXCEEDED), the server logs no
traceback, and it still serves afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.api import convert
from control.api.pb import api_pb2, core_pb2
from control.client.channel import CHANNEL_OPTIONS
from control.client.tls import channel_credentials
from tests.conftest import running_cluster
from tests.support.objects import cm, pod

SERVICE = "/flotilla.v1.Api/"
UNARY = {
    "Create": api_pb2.CreateRequest, "Get": api_pb2.GetRequest, "List": api_pb2.ListRequest,
    "Update": api_pb2.UpdateRequest, "UpdateStatus": api_pb2.UpdateRequest,
    "Patch": api_pb2.PatchRequest, "Delete": api_pb2.DeleteRequest,
    "Bind": api_pb2.BindRequest, "GetScale": api_pb2.ScaleRequest,
    "UpdateScale": api_pb2.ScaleRequest, "Evict": api_pb2.EvictRequest,
    "History": api_pb2.HistoryRequest, "Discovery": api_pb2.DiscoveryRequest,
}
CALL_TIMEOUT = 6.0  # over the server's 3 s "too large resource version" wait
BAD = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
FUZZ = settings(max_examples=50, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Server:
    channel: grpc.Channel
    tracebacks: list[logging.LogRecord]


class _Tracebacks(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "request failed" in record.getMessage():
            self.into.append(record)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-apiserver", daemon=True)
    thread.start()
    data = Path(tmp_path_factory.mktemp("fuzz")) / "data"
    ctx = running_cluster(data, disable={"scheduler", "controllers", "dns"})
    tracebacks: list[logging.LogRecord] = []
    handler = _Tracebacks(tracebacks)
    logging.getLogger().addHandler(handler)
    try:
        cluster = asyncio.run_coroutine_threadsafe(ctx.__aenter__(), loop).result(60)
        try:
            asyncio.run_coroutine_threadsafe(_seed(cluster.client), loop).result(30)
            creds, extra = channel_credentials(cluster.address, cluster.credentials)
            channel = grpc.secure_channel(cluster.address, creds,
                                          options=[*CHANNEL_OPTIONS, *extra])
            try:
                yield Server(channel, tracebacks)
            finally:
                channel.close()
        finally:
            asyncio.run_coroutine_threadsafe(ctx.__aexit__(None, None, None), loop).result(60)
    finally:
        logging.getLogger().removeHandler(handler)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _seed(client: Any) -> None:
    await client.create(cm("seed", a="1"))
    await client.create(pod("seedpod"))


# -- strategies --------------------------------------------------------------------------

_OBJECTS = [cm("seed", a="1").SerializeToString(), pod("p").SerializeToString(),
            convert.from_dict({"metadata": {"name": "n1"}}, core_pb2.Node()).SerializeToString()]
_PATCHES = [b'{"data": {"a": "2"}}', b'{"metadata": {"name": "other"}}',
            b'{"spec": {"containers": [{"name": "c", "$patch": "bogus"}]}}',
            b"[" * 2000, b'{"a": ' * 300 + b"1" + b"}" * 300, b"null", b'"x"']
_STRINGS = ["", "configmaps", "pods", "nodes", "deployments", "namespaces", "default",
            "kube-system", "seed", "seedpod", "n1", "0", "1", "-1", "18446744073709551616",
            "merge", "strategic", "Foreground", "a=b", "a in (x,y)", "!a", "metadata.name=x",
            "spec.nodeName=n1", "x" * 300, "\u0000", "é"]


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(_STRINGS), st.text(max_size=40))


def _bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from(_OBJECTS + _PATCHES), st.binary(max_size=200))


_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return _strings()
    if t == FieldDescriptor.TYPE_BYTES:
        return _bytes()
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in _INT_BOUNDS:
        lo, hi = _INT_BOUNDS[t]
        return st.one_of(st.sampled_from([0, 1, -1 if lo < 0 else 2, lo, hi]),
                         st.integers(lo, hi))
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    assert t == FieldDescriptor.TYPE_MESSAGE, field.full_name
    return _message_dict(field.message_type, depth + 1)


def _message_dict(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field name -> value for a message; each field present or not."""
    if depth > 3:
        return st.just({})
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        v = _value(f, depth)
        if f.is_repeated:
            v = st.lists(v, max_size=3)
        parts[f.name] = v
    return st.fixed_dictionaries({}, optional=parts)


def _fill(msg: Any, values: dict[str, Any]) -> Any:
    for name, v in values.items():
        field = msg.DESCRIPTOR.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                for item in v:
                    _fill(getattr(msg, name).add(), item)
            else:
                _fill(getattr(msg, name), v)
        elif field.is_repeated:
            getattr(msg, name).extend(v)
        else:
            setattr(msg, name, v)
    return msg


def messages(cls: Any) -> st.SearchStrategy[bytes]:
    """Serialized ``cls`` messages with hypothesis-chosen fields."""
    return _message_dict(cls.DESCRIPTOR).map(lambda d: _fill(cls(), d).SerializeToString())


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "varint"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
        else:  # a length or tag turned into a huge varint
            data[at:at] = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
    return bytes(data)


def requests(cls: Any) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), messages(cls), mutated(messages(cls)))


# -- checks ------------------------------------------------------------------------------

def _check(e: grpc.RpcError, method: str, data: bytes, stream: bool = False) -> None:
    code, details = e.code(), e.details() or ""
    assert code not in BAD, (method, data[:200], code, details[:500])
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not stream:
        assert details.startswith("Timeout: "), (method, data[:200], "hung", details[:200])
    assert len(details) < 20_000, (method, "the error echoes its input", len(details))


def _alive(server: Server) -> None:
    call = server.channel.unary_unary(SERVICE + "Discovery")
    assert call(api_pb2.DiscoveryRequest().SerializeToString(), timeout=10)
    assert not server.tracebacks, [r.getMessage() for r in server.tracebacks[:3]]


@pytest.mark.parametrize("method", sorted(UNARY))
def test_fuzz_unary(server: Server, method: str) -> None:
    call = server.channel.unary_unary(SERVICE + method)

    @FUZZ
    @given(requests(UNARY[method]))
    def one(data: bytes) -> None:
        try:
            call(data, timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            _check(e, method, data)

    one()
    _alive(server)


@pytest.mark.parametrize(("method", "cls"), [("Watch", api_pb2.WatchRequest),
                                             ("Logs", api_pb2.LogsRequest)])
def test_fuzz_server_streams(server: Server, method: str, cls: Any) -> None:
    call = server.channel.unary_stream(SERVICE + method)

    @FUZZ
    @given(requests(cls))
    def one(data: bytes) -> None:
        # a well-formed watch streams until its deadline: read a few events at most
        stream = call(data, timeout=1.0 if method == "Watch" else CALL_TIMEOUT)
        try:
            for n, _ in enumerate(stream):
                if n >= 5:
                    stream.cancel()
                    break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                _check(e, method, data, stream=method == "Watch")

    one()
    _alive(server)


def test_fuzz_exec(server: Server) -> None:
    call = server.channel.stream_stream(SERVICE + "Exec")

    @FUZZ
    @given(st.lists(requests(api_pb2.ExecRequest), min_size=0, max_size=3))
    def one(items: list[bytes]) -> None:
        try:
            for _ in call(iter(items), timeout=CALL_TIMEOUT):
                pass
        except grpc.RpcError as e:
            _check(e, "Exec", b"".join(items))

    one()
    _alive(server)
