"""Connection bounds of the API server: silent connections closed after the handshake
timeout, idle ones sent away, at most max_connections at once; with a per-source bound,
the connection front (per address, and room kept for the control plane)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import pytest

from control.api.pb import api_pb2, core_pb2
from control.apiserver.connfront import ConnectionGate, ConnectionLimits, NodeAddresses
from control.client.channel import open_channel
from control.client.client import ApiClient
from tests.conftest import running_cluster
from tests.support.objects import cm

API_ONLY = {"scheduler", "controllers", "dns"}


async def _closed_within(reader: asyncio.StreamReader, limit: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), limit)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    while data:  # a TLS alert may come first; then EOF
        try:
            data = await asyncio.wait_for(reader.read(65536), limit)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return True


async def test_silent_connection_closed_after_handshake_timeout(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable=API_ONLY,
                               handshake_timeout=1.0) as c:
        host, port = c.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await _closed_within(reader, 8.0)
            assert loop.time() - start < 6.0
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        # real clients are unaffected
        assert (await c.client.create(cm("after"))).metadata.uid


async def test_connections_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable=API_ONLY,
                               max_connections=3, handshake_timeout=30.0) as c:
        assert (await c.client.create(cm("first"))).metadata.uid  # the client's connection
        host, port = c.address.rsplit(":", 1)
        conns = [await asyncio.open_connection(host, int(port)) for _ in range(4)]
        try:
            closed = [await _closed_within(r, 2.0) for r, _ in conns]
            assert any(closed) and not all(closed), closed
        finally:
            for _, w in conns:
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()
        assert (await c.client.create(cm("second"))).metadata.uid


# -- the connection front: per-source bounds and room kept for the control plane ---------


def test_gate_bounds_per_source_and_keeps_room_for_the_control_plane() -> None:
    gate = ConnectionGate(ConnectionLimits(max_connections=6, per_source=2, reserved=2),
                          privileged=lambda s: s in ("127.0.0.1", "10.0.0.7"))
    assert gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.1") is None
    assert "2 connections from 192.0.2.1" in (gate.admit("192.0.2.1") or "")
    assert gate.admit("192.0.2.2") is None
    assert gate.admit("192.0.2.3") is None
    # 4 unprivileged of 6: the other 2 are kept for the control plane
    assert "kept for the control plane" in (gate.admit("192.0.2.4") or "")
    assert gate.admit("10.0.0.7") is None  # a node's address
    assert gate.admit("127.0.0.1") is None  # privileged sources have no per-source bound
    assert "limit is reached" in (gate.admit("127.0.0.1") or "")
    gate.release("192.0.2.1")
    assert gate.by_source["192.0.2.1"] == 1 and gate.total == 5
    assert gate.admit("192.0.2.4") is None
    for source in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "10.0.0.7",
                   "127.0.0.1"):
        gate.release(source)
    assert (gate.total, gate.unprivileged, gate.by_source, gate.refused) == (0, 0, {}, 3)
    with pytest.raises(ValueError):
        ConnectionLimits(max_connections=2, per_source=1, reserved=2)


def test_node_addresses_are_privileged() -> None:
    node = core_pb2.Node()
    node.status.addresses.add(type="InternalIP", address="10.1.2.3")
    node.status.addresses.add(type="Hostname", address="n1")
    nodes = [node]
    version = [1]
    privileged = NodeAddresses(lambda: nodes, lambda: version[0])
    assert privileged("10.1.2.3") and privileged("127.0.0.9") and privileged("::1")
    assert not privileged("10.1.2.4") and not privileged("n1")
    nodes.clear()
    assert privileged("10.1.2.3")  # the same version: not recomputed
    version[0] = 2
    assert not privileged("10.1.2.3")


async def _connect_from(source: str, host: str, port: int) -> tuple[asyncio.StreamReader,
                                                                     asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, local_addr=(source, 0))


async def test_front_refuses_a_flood_from_one_address_and_admits_the_control_plane(
        tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable=API_ONLY, handshake_timeout=30.0,
                               max_connections=6, max_connections_per_source=2,
                               reserved_connections=2) as c:
        assert (await c.client.create(cm("first"))).metadata.uid  # TLS through the front
        front = c.plane.front
        assert front is not None
        # loopback is the control plane's; here only 127.0.0.1 is, so other loopback
        # addresses stand in for machines elsewhere
        front.gate.privileged = lambda s: s == "127.0.0.1"
        host, port = c.address.rsplit(":", 1)
        conns = []
        try:
            for source in ("127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3",
                           "127.0.0.4"):
                conns.append(await _connect_from(source, host, int(port)))
            closed = [await _closed_within(r, 1.0) for r, _ in conns]
            # the third from .2 (per source) and the one from .4 (the reserved room) are
            # refused at once; the others stay open, waiting for their TLS handshake
            assert closed == [False, False, True, False, False, True], closed
            assert front.gate.refused == 2
            # the control plane still gets in (a new connection, in the reserved room)
            channel = open_channel(c.address, c.plane.admin_credentials)
            try:
                admin = ApiClient(channel, c.address, timeout=10)
                assert (await admin.create(cm("second"))).metadata.uid
            finally:
                await channel.close(None)
        finally:
            for _, w in conns:
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()
        # connections closed by their clients are counted out
        for _ in range(100):
            if front.gate.unprivileged == 0:
                break
            await asyncio.sleep(0.05)
        assert front.gate.unprivileged == 0 and "127.0.0.2" not in front.gate.by_source


async def test_calls_beyond_the_stream_limit_wait_on_the_client(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable=API_ONLY,
                               http2_max_streams_per_connection=2) as c:
        made = await c.client.create(cm("x"))
        future = str(int(made.metadata.resource_version) + 1000)
        # each of these holds a stream for the 3 s "too large resource version" wait
        slow = api_pb2.GetRequest(resource="configmaps", namespace="default", name="x",
                                  resource_version=future)
        channel = open_channel(c.address, c.plane.admin_credentials)
        try:
            stub = ApiClient(channel, c.address)._stub
            holders = [asyncio.ensure_future(stub.Get(slow, timeout=10)) for _ in range(2)]
            await asyncio.sleep(0.5)
            loop = asyncio.get_running_loop()
            start = loop.time()
            quick = api_pb2.GetRequest(resource="configmaps", namespace="default", name="x")
            await stub.Get(quick, timeout=10)
            # the third call waited for a stream of its connection, not for the server
            assert loop.time() - start > 1.5
            start = loop.time()
            await c.client._stub.Get(quick, timeout=10)  # another connection: at once
            assert loop.time() - start < 1.0
            for h in holders:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await h
        finally:
            await channel.close(None)
