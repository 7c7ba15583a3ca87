"""The health-check node ports of LoadBalancer Services with externalTrafficPolicy Local,
served as kube-proxy serves them, so an external load balancer sends traffic only to the
nodes that have a ready endpoint of the Service.

Each :class:`~agent.proxy.nft_rules.HealthCheck` is an HTTP listener on every address of
the node at its ``healthCheckNodePort``; any request gets a JSON body::

    {"service": {"namespace": "ns", "name": "svc"}, "localEndpoints": 2,
     "serviceProxyHealthy": true}

with status 200 when the node has a local endpoint and the proxy's last sync succeeded, 503
otherwise, and the ``X-Load-Balancing-Endpoint-Weight`` header (the count), as kube-proxy.

:meth:`HealthServer.sync` opens the ports new checks name, closes those no check names any
more and updates the counts the open ones answer with; a port that cannot be bound (taken
by another program) is logged and tried again at the next sync.

Concurrency contract: ``sync`` and ``close`` are called from the proxier's one task; the
listeners' handlers run on the same loop and only read the current table.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Sequence

import structlog

from agent.proxy.nft_rules import HealthCheck

log = structlog.get_logger(component="proxy")

READ_TIMEOUT = 5.0
MAX_HEADER_BYTES = 8192


def response(check: HealthCheck, proxy_healthy: bool) -> bytes:
    """The whole HTTP/1.1 response for ``check`` (the connection is then closed)."""
    ok = check.local_endpoints > 0 and proxy_healthy
    body = json.dumps({"service": {"namespace": check.namespace, "name": check.name},
                       "localEndpoints": check.local_endpoints,
                       "serviceProxyHealthy": proxy_healthy}, indent=1).encode() + b"\n"
    head = [f"HTTP/1.1 {'200 OK' if ok else '503 Service Unavailable'}",
            "Content-Type: application/json", "X-Content-Type-Options: nosniff",
            f"X-Load-Balancing-Endpoint-Weight: {check.local_endpoints}",
            f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(head).encode() + body


class HealthServer:
    """Listeners on ``host`` (all addresses by default) at the checks' node ports."""

    def __init__(self, host: str = "0.0.0.0") -> None:
        self.host = host
        self.proxy_healthy = True
        self._checks: dict[int, HealthCheck] = {}
        self._servers: dict[int, asyncio.Server] = {}

    @property
    def ports(self) -> list[int]:
        """The ports listened on now."""
        return sorted(self._servers)

    async def sync(self, checks: Sequence[HealthCheck]) -> None:
        self._checks = {c.node_port: c for c in checks}
        for port in sorted(set(self._servers) - set(self._checks)):
            await self._stop(port)
        for port in sorted(set(self._checks) - set(self._servers)):
            try:
                self._servers[port] = await asyncio.start_server(
                    functools.partial(self._handle, port), self.host, port,
                    reuse_address=True)
            except OSError as e:
                log.warning("cannot serve a health-check node port; retried at the next "
                            "sync", port=port, service=f"{self._checks[port].namespace}/"
                            f"{self._checks[port].name}", error=str(e))

    async def close(self) -> None:
        for port in list(self._servers):
            await self._stop(port)
        self._checks = {}

    async def _stop(self, port: int) -> None:
        server = self._servers.pop(port)
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)

    async def _handle(self, port: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            # the request itself does not matter (kube-proxy answers any path); read its
            # head so the client is not reset while still sending
            with contextlib.suppress(asyncio.LimitOverrunError, asyncio.IncompleteReadError,
                                     TimeoutError, ValueError):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            check = self._checks.get(port)
            if check is not None:
                writer.write(response(check, self.proxy_healthy))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


__all__ = ["HealthServer", "response"]
