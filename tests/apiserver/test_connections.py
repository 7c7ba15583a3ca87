"""Connection bounds of the API server: silent connections closed after the handshake
timeout, idle ones sent away, at most max_connections at once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

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
