"""The bare gRPC baseline: the limit Flotilla's API is measured against.

A ``grpc.aio`` server with a generic handler (no protobuf on the server side, bytes in and
out) and the same server options as Flotilla's (:data:`control.client.channel.SERVER_OPTIONS`):

- ``/bench.Echo/Echo`` (unary): replies with the request bytes. The limit for create/update.
- ``/bench.Echo/Subscribe`` (server stream): the request is a 4-byte big-endian stream id;
  the stream then carries every message published to that id or to everyone.
- ``/bench.Echo/Publish`` (unary): the request is a 4-byte target id (``0xFFFFFFFF`` =
  every stream) followed by a pre-serialized message; the same bytes object is queued to
  each matching stream (no per-stream encoding) and an empty reply returned at once. The
  limit for watch fan-out: it does what the watch cache does minus storing and filtering.

Run: ``python -m bench._echo [--listen 127.0.0.1:0] [--addr-file PATH] [--uvloop]
[--tls DIR]``. The benchmarks start it themselves; it prints (or writes to ``--addr-file``)
the bound address and stops on SIGTERM/SIGINT. ``--tls DIR``: serve over TLS with
client-certificate authentication, as Flotilla's API does, from ``DIR/ca.crt``,
``DIR/server.crt`` and ``DIR/server.key`` (:func:`write_tls` makes them; clients present
``DIR/client.crt``/``client.key``), so that a ratio against Flotilla compares the same
transport.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from control.client.channel import SERVER_OPTIONS

SERVICE = "bench.Echo"
ECHO = f"/{SERVICE}/Echo"
SUBSCRIBE = f"/{SERVICE}/Subscribe"
PUBLISH = f"/{SERVICE}/Publish"
EVERYONE = 0xFFFFFFFF
_ID = struct.Struct(">I")


def publish_request(message: bytes, target: int = EVERYONE) -> bytes:
    return _ID.pack(target) + message


def subscribe_request(stream_id: int) -> bytes:
    return _ID.pack(stream_id)


class EchoService:
    def __init__(self) -> None:
        self.all: set[asyncio.Queue[bytes]] = set()
        self.by_id: dict[int, set[asyncio.Queue[bytes]]] = collections.defaultdict(set)

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def publish(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        (target,) = _ID.unpack_from(request)
        message = request[_ID.size:]
        queues = self.all if target == EVERYONE else self.by_id.get(target, ())
        for q in queues:
            q.put_nowait(message)
        return b""

    async def subscribe(self, request: bytes,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        (stream_id,) = _ID.unpack_from(request)
        q: asyncio.Queue[bytes] = asyncio.Queue()
        self.all.add(q)
        self.by_id[stream_id].add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self.all.discard(q)
            self.by_id[stream_id].discard(q)
            if not self.by_id[stream_id]:
                del self.by_id[stream_id]

    def handler(self) -> grpc.GenericRpcHandler:
        # no (de)serializers: bytes pass through untouched
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
            "Publish": grpc.unary_unary_rpc_method_handler(self.publish),
            "Subscribe": grpc.unary_stream_rpc_method_handler(self.subscribe),
        })


def write_tls(directory: Path) -> None:
    """A throw-away CA, a serving certificate for 127.0.0.1 and a client certificate in
    ``directory`` (what ``--tls`` serves and :func:`channel_credentials` presents)."""
    from control.client import pki

    ca = pki.ClusterCA.create("bench-echo-ca")
    served = ca.issue("127.0.0.1", server=True, ips=["127.0.0.1"], dns=["localhost"])
    client = ca.issue("bench", ["system:masters"], client=True)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (("ca.crt", ca.pem), ("server.crt", served.cert_pem),
                       ("server.key", served.key_pem), ("client.crt", client.cert_pem),
                       ("client.key", client.key_pem)):
        pki.write_private(directory / name, data)


def channel_credentials(directory: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials((directory / "ca.crt").read_bytes(),
                                        (directory / "client.key").read_bytes(),
                                        (directory / "client.crt").read_bytes())


async def serve(listen: str, addr_file: str | None, tls: Path | None = None) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((EchoService().handler(),))
    if tls is None:
        port = server.add_insecure_port(listen)
    else:
        port = server.add_secure_port(listen, grpc.ssl_server_credentials(
            [((tls / "server.key").read_bytes(), (tls / "server.crt").read_bytes())],
            root_certificates=(tls / "ca.crt").read_bytes(), require_client_auth=True))
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    address = f"{listen.rpartition(':')[0]}:{port}"
    if addr_file:
        from bench import write_address

        write_address(addr_file, address)
    else:
        print(address, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--addr-file")
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--tls", type=Path, metavar="DIR",
                    help="serve over TLS with client-certificate authentication")
    args = ap.parse_args(argv)
    from bench import run

    run(lambda: serve(args.listen, args.addr_file, args.tls), args.uvloop)


if __name__ == "__main__":
    main()
