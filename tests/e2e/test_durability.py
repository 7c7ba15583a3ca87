"""Every acknowledged write survives kill -9 of `flotilla server` (a real subprocess)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from control.api import errors
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from tests.conftest import admin_config
from tests.e2e.servers import address, start_server, stop


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    proc = start_server(data)
    acknowledged: list[str] = []
    enough = asyncio.Event()
    try:
        channel = open_channel(address(data), admin_config(data).credentials)
        client = ApiClient(channel, timeout=5)

        async def writer(w: int) -> None:
            for i in range(10_000):
                cm = core_pb2.ConfigMap()
                cm.metadata.name = f"w{w}-{i}"
                cm.metadata.namespace = "default"
                cm.data["payload"] = "x" * 512
                try:
                    await client.create(cm)
                except errors.ApiError:
                    return  # the server is gone; unacknowledged writes may be lost
                acknowledged.append(cm.metadata.name)
                if len(acknowledged) >= 300:
                    enough.set()

        tasks = [asyncio.ensure_future(writer(w)) for w in range(16)]
        await asyncio.wait_for(enough.wait(), 20)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await channel.close()
        assert len(acknowledged) >= 300
    finally:
        stop(proc)

    proc = start_server(data)
    try:
        channel = open_channel(address(data), admin_config(data).credentials)
        client = ApiClient(channel, timeout=10)
        present = {o.metadata.name for o in
                   (await client.list_all(core_pb2.ConfigMap, "default")).items}
        missing = [n for n in acknowledged if n not in present]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        await channel.close()
    finally:
        stop(proc)
