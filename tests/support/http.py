"""A minimal HTTP/1.1 GET on loopback for tests of the /metrics endpoints."""

from __future__ import annotations

import asyncio


async def http_get(port: int, path: str) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(5):
        raw = (await reader.read()).decode()
    writer.close()
    head, _, body = raw.partition("\r\n\r\n")
    return head.split("\r\n", 1)[0], body
