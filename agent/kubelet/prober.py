"""Single-probe executors: run one exec, httpGet, tcpSocket or grpc check and say what it saw.

Owns the *mechanics* of one probe attempt, as kubelet's ``pkg/probe/{exec,http,tcp,grpc}``
do; the scheduling of attempts, thresholds and the results the kubelet reads live in
``probes.py``. Semantics follow Kubernetes:

- exec: ``runtime.exec_sync(container_id, command, timeoutSeconds)``; exit 0 is success, a
  non-zero exit or a timeout is failure, a runtime error is *unknown* (the attempt is thrown
  away rather than counted, as kubelet does with prober errors).
- httpGet: ``GET scheme://host:port/path`` with ``httpHeaders`` (a ``Host`` header replaces
  the request's host); ``200 <= status < 400`` is success. Redirects are followed only to the
  same host name (at most 10); a redirect elsewhere ends the probe on the 3xx response, which
  counts as success ("Probe terminated redirects"), as kubelet does. HTTPS does not verify
  the certificate (kubelet's ``InsecureSkipVerify``). No proxy is ever used.
- tcpSocket: success when a connection opens within the timeout.
- grpc: ``grpc.health.v1.Health/Check`` with ``service``; ``SERVING`` is success.

Host default: the probe's ``host`` if set, else the pod IP, else ``127.0.0.1`` (a pod on
the node's network, or one whose IP is not known yet, listens on the node's loopback).
Named ports resolve against the container's ``ports``.

The HTTP client is a small HTTP/1.1 client on asyncio streams: a probe needs one GET with
``Connection: close`` and a status line, which does not justify a new dependency.

Timeouts here bound *real* I/O against real sockets, so they are measured with the event
loop's clock (``asyncio.timeout``), not the kubelet's ``Clock`` seam: a fake clock cannot
make a socket slower, and a hung server must not hang a test that never advances time. The
probe *schedule* (periods, initial delays) is on the ``Clock`` in ``probes.py``.

Concurrency contract: every function is a coroutine with no shared state; any number may run
at once. Each closes every socket/channel it opened before returning, even when cancelled.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.runtime.interface import ExecResult, RuntimeError_
from control.api.pb import core_pb2, meta_pb2

log = structlog.get_logger(__name__)

# kubelet reads at most 10 KiB of a probe's response body (maxRespBodyLength).
MAX_BODY = 10 * 1024
# Go's http.Client default, which kubelet keeps for same-host redirects.
MAX_REDIRECTS = 10
# Starts with "kube-probe/" because applications match that prefix to recognise probes.
USER_AGENT = "kube-probe/flotilla-0.1"
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


class Result(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    # The probe could not be run (bad port name, runtime error): not counted either way.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ProbeOutcome:
    result: Result
    message: str = ""


class ProbeError(Exception):
    """A probe that cannot be run as configured (its outcome is UNKNOWN)."""


class ExecRunner(Protocol):
    """The part of the runtime an exec probe needs (``Runtime`` satisfies it)."""

    async def exec_sync(self, container_id: str, argv: Sequence[str],
                        timeout: float) -> ExecResult: ...  # noqa: ASYNC109 - the runtime's


# -- pure helpers ------------------------------------------------------------------------


def resolve_port(port: meta_pb2.IntOrString, container: core_pb2.Container) -> int:
    """A probe's port as a number: an int, a named container port, or a number in a string
    (kubelet's last-ditch ``strconv.Atoi``)."""
    kind = port.WhichOneof("value")
    if kind == "int_val":
        number = port.int_val
    elif kind == "str_val":
        named = [p.container_port for p in container.ports if p.name == port.str_val]
        if named:
            number = named[0]
        else:
            try:
                number = int(port.str_val)
            except ValueError:
                raise ProbeError(
                    f"couldn't find port: {port.str_val} in container {container.name}"
                ) from None
    else:
        raise ProbeError("probe has no port")
    if not 0 < number < 65536:
        raise ProbeError(f"invalid port number: {number}")
    return number


def probe_host(explicit: str, pod_ip: str, host_network: bool = False) -> str:
    """Where a network probe connects: its ``host``, else the pod IP, else loopback."""
    if explicit:
        return explicit
    if pod_ip and not host_network:
        return pod_ip
    return "127.0.0.1"


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def build_url(scheme: str, host: str, port: int, path: str) -> str:
    scheme = (scheme or "HTTP").lower()
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{join_host_port(host, port)}{path}"


def build_request(target: str, host_header: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """The bytes of a probe's GET. User headers replace the defaults of the same name
    (case-insensitively); several user headers of one name are all sent."""
    defaults = {"host": ("Host", host_header), "user-agent": ("User-Agent", USER_AGENT),
                "accept": ("Accept", "*/*")}
    user_names = {name.lower() for name, _ in headers}
    lines = [f"GET {target} HTTP/1.1"]
    lines += [f"{n}: {v}" for key, (n, v) in defaults.items() if key not in user_names]
    lines += [f"{n}: {v}" for n, v in headers if n.lower() != "connection"]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_status_line(line: bytes) -> int:
    """The status code of ``HTTP/1.x NNN reason``; ValueError if it is not one."""
    parts = line.decode("latin-1").strip().split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or len(parts[1]) != 3:
        raise ValueError(f"malformed HTTP status line {line[:80]!r}")
    return int(parts[1])


def parse_headers(block: bytes) -> dict[str, str]:
    """Header lines (after the status line) to a lower-cased dict; the last one wins."""
    out: dict[str, str] = {}
    for raw in block.decode("latin-1").split("\r\n"):
        name, sep, value = raw.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def http_outcome(status: int) -> ProbeOutcome:
    """kubelet's verdict on a final response (after any redirects it followed)."""
    if 200 <= status < 300:
        return ProbeOutcome(Result.SUCCESS)
    if 300 <= status < 400:
        # kubelet's probe.Warning, which counts as success.
        return ProbeOutcome(Result.SUCCESS, "Probe terminated redirects")
    return ProbeOutcome(Result.FAILURE, f"HTTP probe failed with statuscode: {status}")


def same_host(a: str, b: str) -> bool:
    """Go compares ``URL.Hostname()``: the host without the port, scheme ignored."""
    return (urlsplit(a).hostname or "") == (urlsplit(b).hostname or "")


# -- executors ---------------------------------------------------------------------------


async def exec_probe(runtime: ExecRunner, container_id: str, command: Sequence[str],
                     limit: float) -> ProbeOutcome:
    try:
        res = await runtime.exec_sync(container_id, list(command), limit)
    except RuntimeError_ as e:
        return ProbeOutcome(Result.UNKNOWN, f"exec failed: {e}")
    if res.timed_out:
        return ProbeOutcome(Result.FAILURE, f"command {list(command)!r} timed out")
    if res.exit_code == 0:
        return ProbeOutcome(Result.SUCCESS)
    # kubelet shows the command's combined output as the failure message.
    out = (res.stdout + res.stderr).decode("utf-8", "replace").strip()
    return ProbeOutcome(Result.FAILURE, out or f"command {list(command)!r} exited with "
                                              f"{res.exit_code}")


def _insecure_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> None:
    """Drain a little of the body so the server sees an orderly close; content is unused."""
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        await reader.readexactly(min(int(length), MAX_BODY))


async def _get_once(url: str, headers: Sequence[tuple[str, str]]) -> tuple[int, dict[str, str]]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    reader, writer = await asyncio.open_connection(
        host, port, ssl=_insecure_tls() if tls else None)
    try:
        writer.write(build_request(target, parts.netloc, headers))
        await writer.drain()
        status = parse_status_line(await reader.readuntil(b"\r\n"))
        block = await reader.readuntil(b"\r\n\r\n")
        parsed = parse_headers(block)
        try:
            await _read_body(reader, parsed)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the status decided the probe; a short body does not change it
        return status, parsed
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def http_get(url: str, headers: Sequence[tuple[str, str]] = ()) -> ProbeOutcome:
    """GET ``url`` following same-host redirects; no timeout of its own."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            status, resp_headers = await _get_once(current, headers)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as e:
            return ProbeOutcome(Result.FAILURE, f'Get "{current}": {_describe(e)}')
        location = resp_headers.get("location")
        if status not in _REDIRECT_CODES or not location:
            return http_outcome(status)
        nxt = urljoin(current, location)
        if not same_host(url, nxt):
            return http_outcome(status)
        current = nxt
    return ProbeOutcome(Result.FAILURE, f'Get "{current}": stopped after {MAX_REDIRECTS} '
                                        "redirects")


def _describe(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, asyncio.IncompleteReadError):
        return "EOF"
    return str(e) or type(e).__name__


async def http_probe(url: str, headers: Sequence[tuple[str, str]],
                     limit: float) -> ProbeOutcome:
    try:
        async with asyncio.timeout(limit):
            return await http_get(url, headers)
    except TimeoutError:
        return ProbeOutcome(Result.FAILURE, f'Get "{url}": context deadline exceeded '
                                            "(Client.Timeout exceeded while awaiting headers)")


async def tcp_probe(host: str, port: int, limit: float) -> ProbeOutcome:
    addr = join_host_port(host, port)
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return ProbeOutcome(Result.FAILURE, f"dial tcp {addr}: i/o timeout")
    except OSError as e:
        return ProbeOutcome(Result.FAILURE, f"dial tcp {addr}: {_describe(e)}")
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return ProbeOutcome(Result.SUCCESS)


async def grpc_probe(host: str, port: int, service: str, limit: float) -> ProbeOutcome:
    addr = join_host_port(host, port)
    # No proxy: kubelet probes go straight to the pod.
    channel = grpc.aio.insecure_channel(addr, options=[("grpc.enable_http_proxy", 0)])
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                timeout=limit)
    except grpc.aio.AioRpcError as e:
        code = e.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            msg = ("this server does not implement the grpc health protocol "
                   f"(grpc.health.v1.Health): {e.details()}")
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            msg = f"timeout: health rpc did not complete within {limit:g}s"
        elif code == grpc.StatusCode.UNAVAILABLE:
            msg = f'timeout: failed to connect service "{addr}" within {limit:g}s: ' \
                  f"{e.details()}"
        else:
            msg = f"error: health rpc probe failed: {code.name}: {e.details()}"
        return ProbeOutcome(Result.FAILURE, msg)
    finally:
        await channel.close(None)
    if resp.status == health_pb2.HealthCheckResponse.SERVING:
        return ProbeOutcome(Result.SUCCESS)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return ProbeOutcome(Result.FAILURE, f'service unhealthy (responded with "{status}")')


async def run_probe(probe: core_pb2.Probe, *, container: core_pb2.Container,
                    container_id: str, runtime: ExecRunner, pod_ip: str = "",
                    host_network: bool = False) -> ProbeOutcome:
    """One attempt of ``probe`` against a running container."""
    # 0 means unset on our plain-int fields; kubelet's default is 1 s.
    timeout = float(probe.timeout_seconds or 1)
    try:
        if probe.HasField("exec"):
            return await exec_probe(runtime, container_id, probe.exec.command, timeout)
        if probe.HasField("http_get"):
            act = probe.http_get
            host = probe_host(act.host, pod_ip, host_network)
            port = resolve_port(act.port, container)
            url = build_url(act.scheme, host, port, act.path or "/")
            headers = [(h.name, h.value) for h in act.http_headers if h.name]
            return await http_probe(url, headers, timeout)
        if probe.HasField("tcp_socket"):
            act_t = probe.tcp_socket
            host = probe_host(act_t.host, pod_ip, host_network)
            return await tcp_probe(host, resolve_port(act_t.port, container), timeout)
        if probe.HasField("grpc"):
            host = probe_host("", pod_ip, host_network)
            port = probe.grpc.port
            if not 0 < port < 65536:
                raise ProbeError(f"invalid port number: {port}")
            return await grpc_probe(host, port, probe.grpc.service, timeout)
    except ProbeError as e:
        return ProbeOutcome(Result.UNKNOWN, str(e))
    return ProbeOutcome(Result.UNKNOWN, "probe has no handler")
