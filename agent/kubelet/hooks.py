"""Container lifecycle hooks: postStart and preStop, each exec, httpGet or sleep.

:func:`run_hook` runs one ``LifecycleHandler`` for a running container and returns ``None``
on success or the error message Kubernetes would show (the caller records it: a failed
postStart kills the container, reason ``FailedPostStartHook``; a failed preStop is only
logged, the container is stopped anyway). Handlers:

- ``exec``: ``runtime.exec_sync`` in the container; a non-zero exit is a failure;
- ``httpGet``: a small asyncio HTTP/1.1 GET (:func:`http_get`) to host (default: the pod
  IP, then the node IP), port (number or the name of a container port), path, scheme and
  headers; a status outside 200-399 is a failure (HTTPS skips certificate checks, as the
  kubelet does);
- ``sleep``: ``clock.sleep(seconds)``;
- ``tcpSocket`` is deprecated for hooks and refused by name.

Every hook is bounded by ``timeout`` seconds (the caller passes the grace period for preStop).

Concurrency contract: coroutines on the agent's loop; no shared state.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

from agent.runtime.interface import Runtime, RuntimeError_
from control.api.pb import core_pb2, meta_pb2
from control.runtime.clock import Clock, wait_for

USER_AGENT = "flotilla-lifecycle/0.1"


def _port(port: meta_pb2.IntOrString, container: core_pb2.Container) -> int:
    if port.HasField("int_val"):
        return port.int_val
    name = port.str_val
    for p in container.ports:
        if p.name == name:
            return p.container_port
    if name.isdigit():
        return int(name)
    raise ValueError(f"port {name!r} is not a port of container {container.name!r}")


async def http_get(host: str, port: int, path: str = "/", *, scheme: str = "HTTP",
                   headers: Sequence[tuple[str, str]] = ()) -> int:
    """GET and return the status code; raises OSError / ValueError on a broken exchange."""
    ctx: ssl.SSLContext | None = None
    if scheme.upper() == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        names = {k.lower() for k, _ in headers}
        lines = [f"GET {path or '/'} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {host}:{port}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
        lines += [f"{k}: {v}" for k, v in headers]
        lines += ["Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.decode("latin-1").split()
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"malformed HTTP response {status_line[:80]!r}")
        return int(parts[1])
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def run_hook(runtime: Runtime, clock: Clock, container_id: str,
                   container: core_pb2.Container, handler: core_pb2.LifecycleHandler, *,
                   pod_ip: str, host_ip: str, timeout: float) -> str | None:  # noqa: ASYNC109
    """Run one hook; None on success, else the failure message."""
    try:
        return await wait_for(clock, _run(runtime, clock, container_id, container, handler,
                                          pod_ip=pod_ip, host_ip=host_ip, timeout=timeout),
                              max(timeout, 0.0))
    except TimeoutError:
        return f"hook timed out after {timeout:g}s"


async def _run(runtime: Runtime, clock: Clock, container_id: str,
               container: core_pb2.Container, handler: core_pb2.LifecycleHandler, *,
               pod_ip: str, host_ip: str, timeout: float) -> str | None:  # noqa: ASYNC109
    if handler.HasField("exec"):
        argv = list(handler.exec.command)
        try:
            res = await runtime.exec_sync(container_id, argv, timeout)
        except RuntimeError_ as e:
            return f"command {argv!r} failed: {e}"
        if res.exit_code != 0:
            out = (res.stdout + res.stderr).decode("utf-8", "replace").strip()
            return f"command {' '.join(argv)!r} exited with {res.exit_code}: {out}"
        return None
    if handler.HasField("http_get"):
        h = handler.http_get
        try:
            port = _port(h.port, container)
            host = h.host or pod_ip or host_ip or "127.0.0.1"
            code = await http_get(host, port, h.path, scheme=h.scheme or "HTTP",
                                  headers=[(x.name, x.value) for x in h.http_headers])
        except (OSError, ValueError, ssl.SSLError) as e:
            return f"HTTP lifecycle hook ({h.path}) failed: {e}"
        if not 200 <= code < 400:
            return f"HTTP lifecycle hook ({h.path}) returned status {code}"
        return None
    if handler.HasField("sleep"):
        await clock.sleep(float(handler.sleep.seconds))
        return None
    if handler.HasField("tcp_socket"):
        return "tcpSocket lifecycle hooks are not supported (deprecated in Kubernetes)"
    return "lifecycle hook has no handler"


def has_handler(handler: core_pb2.LifecycleHandler) -> bool:
    return any(handler.HasField(f) for f in ("exec", "http_get", "sleep", "tcp_socket"))
