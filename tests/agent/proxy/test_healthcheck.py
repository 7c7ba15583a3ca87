"""The health-check node ports: the response (pure) and, on loopback, the server opening,
answering, updating and closing ports as checks come and go."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from agent.proxy.healthcheck import HealthServer, response
from agent.proxy.nft_rules import HealthCheck


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_response() -> None:
    ok = response(HealthCheck("ns", "web", 31000, 2), True).decode()
    head, body = ok.split("\r\n\r\n")
    assert head.splitlines()[0] == "HTTP/1.1 200 OK"
    assert "X-Load-Balancing-Endpoint-Weight: 2" in head
    assert "Content-Type: application/json" in head
    assert json.loads(body) == {"service": {"namespace": "ns", "name": "web"},
                                "localEndpoints": 2, "serviceProxyHealthy": True}
    assert f"Content-Length: {len(body)}" in head
    none = response(HealthCheck("ns", "web", 31000, 0), True).decode()
    assert none.startswith("HTTP/1.1 503 Service Unavailable\r\n")
    sick = response(HealthCheck("ns", "web", 31000, 3), False).decode()
    assert sick.startswith("HTTP/1.1 503 ")
    assert json.loads(sick.split("\r\n\r\n")[1])["serviceProxyHealthy"] is False


async def test_server_follows_checks() -> None:
    server = HealthServer("127.0.0.1")
    port = _free_port()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            await server.sync([HealthCheck("default", "web", port, 2)])
            assert server.ports == [port]
            r = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert r.status_code == 200 and r.json()["localEndpoints"] == 2
            assert r.headers["x-load-balancing-endpoint-weight"] == "2"
            # the count changes in place
            await server.sync([HealthCheck("default", "web", port, 0)])
            r = await http.get(f"http://127.0.0.1:{port}/")
            assert r.status_code == 503 and r.json()["localEndpoints"] == 0
            # a failing proxy is unhealthy whatever the endpoints
            await server.sync([HealthCheck("default", "web", port, 1)])
            server.proxy_healthy = False
            assert (await http.get(f"http://127.0.0.1:{port}/")).status_code == 503
            server.proxy_healthy = True
            # the check gone: the port is closed
            await server.sync([])
            assert server.ports == []
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")
    finally:
        await server.close()


async def test_taken_port_is_retried_at_the_next_sync() -> None:
    server = HealthServer("127.0.0.1")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        await server.sync([HealthCheck("default", "web", port, 1)])
        assert server.ports == []
        holder.close()
        await server.sync([HealthCheck("default", "web", port, 1)])
        assert server.ports == [port]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200 OK")
        writer.close()
    finally:
        holder.close()
        await server.close()
