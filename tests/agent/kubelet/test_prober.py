"""Single-probe executors against real local servers (HTTP, HTTPS, TCP, gRPC health) and a
stub exec runtime; pure helpers as tables."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent.kubelet.prober import (
    ProbeError,
    Result,
    build_request,
    build_url,
    exec_probe,
    grpc_probe,
    http_outcome,
    http_probe,
    parse_headers,
    parse_status_line,
    probe_host,
    resolve_port,
    run_probe,
    same_host,
    tcp_probe,
)
from agent.runtime.interface import ExecResult, NotFoundError
from control.api.pb import core_pb2, meta_pb2

# -- servers -----------------------------------------------------------------------------


@dataclass
class Request:
    target: str
    headers: dict[str, str]


@dataclass
class HttpServer:
    port: int
    requests: list[Request] = field(default_factory=list)
    # path -> (status, extra headers); a test may change it while the server runs
    routes: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    delay: float = 0.0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def _serve(srv: HttpServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    """A tiny HTTP/1.1 server: one request per connection, answer from ``srv.routes``."""
    try:
        line = await reader.readuntil(b"\r\n")
        block = await reader.readuntil(b"\r\n\r\n")
        target = line.decode().split(" ")[1]
        headers = parse_headers(block)
        srv.requests.append(Request(target, headers))
        if srv.delay:
            await asyncio.sleep(srv.delay)
        path = target.split("?")[0]
        status, extra = srv.routes.get(path, (404, {}))
        if path == "/needs-header":
            status = 200 if headers.get("x-probe") == "yes" else 400
        body = f"status {status}\n".encode()
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    srv = HttpServer(port=0)
    server = await asyncio.start_server(lambda r, w: _serve(srv, r, w), "127.0.0.1", 0)
    srv.port = server.sockets[0].getsockname()[1]
    srv.routes.update({
        "/ok": (200, {}),
        "/created": (204, {}),
        "/fail": (500, {}),
        "/notfound": (404, {}),
        "/redirect-same": (302, {"Location": "/ok"}),
        "/redirect-fail": (301, {"Location": "/fail"}),
        "/redirect-other": (302, {"Location": "http://example.invalid/ok"}),
        "/loop": (307, {"Location": "/loop"}),
        "/not-modified": (304, {}),
    })
    async with server:
        yield srv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- pure helpers ------------------------------------------------------------------------


def container(*ports: tuple[str, int]) -> core_pb2.Container:
    return core_pb2.Container(name="app", ports=[
        core_pb2.ContainerPort(name=n, container_port=p) for n, p in ports])


@pytest.mark.parametrize(("port", "expected"), [
    (meta_pb2.IntOrString(int_val=8080), 8080),
    (meta_pb2.IntOrString(str_val="http"), 80),
    (meta_pb2.IntOrString(str_val="metrics"), 9090),
    (meta_pb2.IntOrString(str_val="8081"), 8081),  # kubelet's last-ditch Atoi
    (meta_pb2.IntOrString(str_val="nope"), None),
    (meta_pb2.IntOrString(int_val=0), None),
    (meta_pb2.IntOrString(int_val=70000), None),
    (meta_pb2.IntOrString(), None),
])
def test_resolve_port(port: meta_pb2.IntOrString, expected: int | None) -> None:
    c = container(("http", 80), ("metrics", 9090))
    if expected is None:
        with pytest.raises(ProbeError):
            resolve_port(port, c)
    else:
        assert resolve_port(port, c) == expected


@pytest.mark.parametrize(("explicit", "pod_ip", "host_network", "expected"), [
    ("", "10.244.0.5", False, "10.244.0.5"),
    ("", "", False, "127.0.0.1"),
    ("", "192.168.1.10", True, "127.0.0.1"),  # pod IP is the node's
    ("example.com", "10.244.0.5", False, "example.com"),
])
def test_probe_host(explicit: str, pod_ip: str, host_network: bool, expected: str) -> None:
    assert probe_host(explicit, pod_ip, host_network) == expected


@pytest.mark.parametrize(("args", "url"), [
    (("HTTP", "10.0.0.1", 80, "/healthz"), "http://10.0.0.1:80/healthz"),
    (("HTTPS", "10.0.0.1", 443, "healthz?x=1"), "https://10.0.0.1:443/healthz?x=1"),
    (("", "::1", 8080, "/"), "http://[::1]:8080/"),
])
def test_build_url(args: tuple[str, str, int, str], url: str) -> None:
    assert build_url(*args) == url


def test_build_request_defaults_and_overrides() -> None:
    raw = build_request("/p", "h:1", [("Host", "custom"), ("X-A", "1"), ("X-A", "2"),
                                       ("Connection", "keep-alive")]).decode()
    lines = raw.split("\r\n")
    assert lines[0] == "GET /p HTTP/1.1"
    assert "Host: custom" in lines and "Host: h:1" not in lines
    assert "X-A: 1" in lines and "X-A: 2" in lines
    assert any(x.startswith("User-Agent: kube-probe/") for x in lines)
    assert "Connection: close" in lines and "Connection: keep-alive" not in lines
    assert raw.endswith("\r\n\r\n")


@pytest.mark.parametrize(("line", "status"), [
    (b"HTTP/1.1 200 OK\r\n", 200),
    (b"HTTP/1.0 503 Service Unavailable\r\n", 503),
    (b"HTTP/1.1 204\r\n", 204),
    (b"garbage\r\n", None),
    (b"HTTP/1.1 20 OK\r\n", None),
])
def test_parse_status_line(line: bytes, status: int | None) -> None:
    if status is None:
        with pytest.raises(ValueError):
            parse_status_line(line)
    else:
        assert parse_status_line(line) == status


@pytest.mark.parametrize(("status", "result", "message"), [
    (200, Result.SUCCESS, ""),
    (299, Result.SUCCESS, ""),
    (302, Result.SUCCESS, "Probe terminated redirects"),
    (399, Result.SUCCESS, "Probe terminated redirects"),
    (400, Result.FAILURE, "HTTP probe failed with statuscode: 400"),
    (500, Result.FAILURE, "HTTP probe failed with statuscode: 500"),
    (199, Result.FAILURE, "HTTP probe failed with statuscode: 199"),
])
def test_http_outcome(status: int, result: Result, message: str) -> None:
    out = http_outcome(status)
    assert (out.result, out.message) == (result, message)


@pytest.mark.parametrize(("a", "b", "same"), [
    ("http://1.2.3.4:80/a", "http://1.2.3.4:81/b", True),  # Go compares Hostname() only
    ("http://1.2.3.4/a", "https://1.2.3.4/b", True),
    ("http://1.2.3.4/a", "http://5.6.7.8/a", False),
])
def test_same_host(a: str, b: str, same: bool) -> None:
    assert same_host(a, b) is same


# -- HTTP --------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "result", "message"), [
    ("/ok", Result.SUCCESS, ""),
    ("/created", Result.SUCCESS, ""),
    ("/fail", Result.FAILURE, "HTTP probe failed with statuscode: 500"),
    ("/notfound", Result.FAILURE, "HTTP probe failed with statuscode: 404"),
    ("/redirect-same", Result.SUCCESS, ""),
    ("/redirect-fail", Result.FAILURE, "HTTP probe failed with statuscode: 500"),
    ("/redirect-other", Result.SUCCESS, "Probe terminated redirects"),
    ("/not-modified", Result.SUCCESS, "Probe terminated redirects"),
])
async def test_http_probe_statuses(http_server: HttpServer, path: str, result: Result,
                                   message: str) -> None:
    out = await http_probe(http_server.url(path), [], 2)
    assert (out.result, out.message) == (result, message)


async def test_http_redirect_followed_on_same_host_only(http_server: HttpServer) -> None:
    await http_probe(http_server.url("/redirect-same"), [], 2)
    assert [r.target for r in http_server.requests] == ["/redirect-same", "/ok"]
    http_server.requests.clear()
    await http_probe(http_server.url("/redirect-other"), [], 2)
    assert [r.target for r in http_server.requests] == ["/redirect-other"]


async def test_http_redirect_loop_stops(http_server: HttpServer) -> None:
    out = await http_probe(http_server.url("/loop"), [], 5)
    assert out.result is Result.FAILURE
    assert "stopped after 10 redirects" in out.message
    assert len(http_server.requests) == 11


async def test_http_headers_sent(http_server: HttpServer) -> None:
    out = await http_probe(http_server.url("/needs-header?q=1"), [("X-Probe", "yes")], 2)
    assert out.result is Result.SUCCESS
    req = http_server.requests[0]
    assert req.target == "/needs-header?q=1"
    assert req.headers["host"] == f"127.0.0.1:{http_server.port}"
    assert req.headers["user-agent"].startswith("kube-probe/")
    assert (await http_probe(http_server.url("/needs-header"), [], 2)).result \
        is Result.FAILURE


async def test_http_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/ok"
    out = await http_probe(url, [], 2)
    assert out.result is Result.FAILURE
    assert out.message == f'Get "{url}": connect: connection refused'


async def test_http_timeout(http_server: HttpServer) -> None:
    http_server.delay = 5
    out = await http_probe(http_server.url("/ok"), [], 0.2)
    assert out.result is Result.FAILURE
    assert "context deadline exceeded" in out.message


@pytest.fixture
async def https_server(tmp_path: Path) -> AsyncIterator[HttpServer]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    await asyncio.to_thread(
        subprocess.run,
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=probe.test"],
        check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = HttpServer(port=0, routes={"/ok": (200, {}), "/fail": (503, {})})
    server = await asyncio.start_server(lambda r, w: _serve(srv, r, w), "127.0.0.1", 0,
                                        ssl=ctx)
    srv.port = server.sockets[0].getsockname()[1]
    async with server:
        yield srv


async def test_https_without_certificate_verification(https_server: HttpServer) -> None:
    base = f"https://127.0.0.1:{https_server.port}"
    assert (await http_probe(base + "/ok", [], 5)).result is Result.SUCCESS
    out = await http_probe(base + "/fail", [], 5)
    assert out.message == "HTTP probe failed with statuscode: 503"


async def test_run_probe_http_named_port(http_server: HttpServer) -> None:
    probe = core_pb2.Probe(http_get=core_pb2.HTTPGetAction(
        path="/ok", port=meta_pb2.IntOrString(str_val="web"), scheme="HTTP"),
        timeout_seconds=2)
    c = container(("web", http_server.port))
    out = await run_probe(probe, container=c, container_id="c1", runtime=StubRuntime(),
                          pod_ip="")
    assert out.result is Result.SUCCESS
    probe.http_get.port.str_val = "missing"
    out = await run_probe(probe, container=c, container_id="c1", runtime=StubRuntime())
    assert out.result is Result.UNKNOWN
    assert "couldn't find port: missing" in out.message


# -- TCP ---------------------------------------------------------------------------------


async def test_tcp_probe() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert (await tcp_probe("127.0.0.1", port, 2)).result is Result.SUCCESS
        probe = core_pb2.Probe(tcp_socket=core_pb2.TCPSocketAction(
            port=meta_pb2.IntOrString(int_val=port)), timeout_seconds=1)
        out = await run_probe(probe, container=container(), container_id="c",
                              runtime=StubRuntime(), pod_ip="127.0.0.1")
        assert out.result is Result.SUCCESS
    closed = free_port()
    out = await tcp_probe("127.0.0.1", closed, 2)
    assert out.result is Result.FAILURE
    assert out.message == f"dial tcp 127.0.0.1:{closed}: connect: connection refused"


# -- gRPC --------------------------------------------------------------------------------


@pytest.fixture
async def grpc_health_server() -> AsyncIterator[tuple[int, Any]]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        yield port, servicer
    finally:
        await server.stop(None)


async def test_grpc_probe(grpc_health_server: tuple[int, Any]) -> None:
    port, servicer = grpc_health_server
    assert (await grpc_probe("127.0.0.1", port, "", 2)).result is Result.SUCCESS
    out = await grpc_probe("127.0.0.1", port, "db", 2)
    assert out.result is Result.FAILURE
    assert out.message == 'service unhealthy (responded with "NOT_SERVING")'
    await servicer.set("db", health_pb2.HealthCheckResponse.SERVING)
    probe = core_pb2.Probe(grpc=core_pb2.GRPCAction(port=port, service="db"),
                           timeout_seconds=2)
    out = await run_probe(probe, container=container(), container_id="c",
                          runtime=StubRuntime())
    assert out.result is Result.SUCCESS
    # An unknown service is NOT_FOUND: a failure.
    assert (await grpc_probe("127.0.0.1", port, "nope", 2)).result is Result.FAILURE


async def test_grpc_probe_without_health_service() -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        out = await grpc_probe("127.0.0.1", port, "", 2)
    finally:
        await server.stop(None)
    assert out.result is Result.FAILURE
    assert "does not implement the grpc health protocol" in out.message


async def test_grpc_probe_nothing_listening() -> None:
    out = await grpc_probe("127.0.0.1", free_port(), "", 1)
    assert out.result is Result.FAILURE
    assert out.message.startswith("timeout: failed to connect service")


# -- exec --------------------------------------------------------------------------------


@dataclass
class StubRuntime:
    """exec_sync only: returns the scripted result for each container id."""

    results: dict[str, ExecResult] = field(default_factory=dict)
    calls: list[tuple[str, list[str], float]] = field(default_factory=list)

    async def exec_sync(self, container_id: str, argv: Sequence[str],
                        timeout: float) -> ExecResult:  # noqa: ASYNC109
        self.calls.append((container_id, list(argv), timeout))
        if container_id not in self.results:
            raise NotFoundError(container_id)
        return self.results[container_id]


@pytest.mark.parametrize(("res", "result", "message"), [
    (ExecResult(0, b"", b""), Result.SUCCESS, ""),
    (ExecResult(1, b"cat: /tmp/healthy: No such file or directory\n", b""),
     Result.FAILURE, "cat: /tmp/healthy: No such file or directory"),
    (ExecResult(2, b"", b""), Result.FAILURE, "command ['check'] exited with 2"),
    (ExecResult(-1, b"", b"", timed_out=True), Result.FAILURE,
     "command ['check'] timed out"),
])
async def test_exec_probe(res: ExecResult, result: Result, message: str) -> None:
    rt = StubRuntime({"c1": res})
    out = await exec_probe(rt, "c1", ["check"], 3)
    assert (out.result, out.message) == (result, message)
    assert rt.calls == [("c1", ["check"], 3)]


async def test_exec_probe_runtime_error_is_unknown() -> None:
    out = await exec_probe(StubRuntime(), "gone", ["check"], 1)
    assert out.result is Result.UNKNOWN


async def test_run_probe_exec_uses_timeout_seconds() -> None:
    rt = StubRuntime({"c1": ExecResult(0, b"", b"")})
    probe = core_pb2.Probe(exec=core_pb2.ExecAction(command=["true"]), timeout_seconds=7)
    out = await run_probe(probe, container=container(), container_id="c1", runtime=rt)
    assert out.result is Result.SUCCESS
    assert rt.calls == [("c1", ["true"], 7.0)]


async def test_run_probe_without_handler_is_unknown() -> None:
    out = await run_probe(core_pb2.Probe(), container=container(), container_id="c",
                          runtime=StubRuntime())
    assert out.result is Result.UNKNOWN
