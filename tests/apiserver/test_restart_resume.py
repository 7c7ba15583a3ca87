"""An informer survives server restarts without relisting: the restarted watch cache is
filled from the store's log, so a watch resuming from the informer's last resourceVersion
is served instead of answered "too old"."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.listwatch import ApiListWatcher
from control.runtime.backoff import Backoff
from control.runtime.informer import SharedInformer
from control.server import ControlPlane, ServerOptions
from tests.support import eventually

T = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def obj(kind: type, name: str) -> object:
    o = kind()
    o.metadata.name = name
    o.metadata.namespace = "default"
    return o


async def start_plane(data: Path, port: int) -> ControlPlane:
    plane = ControlPlane(ServerOptions(
        data_dir=data, listen=f"127.0.0.1:{port}", disable={"scheduler", "controllers"},
        shutdown_grace=0.2, supervisor_port=0))
    try:
        await plane.start()
    except BaseException:
        await plane.stop()
        raise
    return plane


async def test_informer_survives_server_restarts_without_relist(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    plane = await start_plane(data, port)
    channel = open_channel(f"127.0.0.1:{port}", plane.admin_credentials)
    client = ApiClient(channel, timeout=5)
    informer: SharedInformer[object] = SharedInformer(
        "configmaps", ApiListWatcher(client, "configmaps", "default"),
        backoff=Backoff(initial=0.05, max_delay=0.2, jitter=0.0))
    task = asyncio.create_task(informer.run())
    try:
        await client.create(obj(core_pb2.ConfigMap, "first"))
        assert await informer.wait_for_sync(T)
        await eventually(lambda: informer.indexer.get("default/first") is not None)
        for round_ in range(3):
            # Writes to another kind move the store past the informer's last
            # resourceVersion: only a window loaded from the log can resume it.
            for i in range(5):
                await client.create(obj(core_pb2.Secret, f"s{round_}-{i}"))
            await plane.stop()
            plane = await start_plane(data, port)
            # The channel saw the server go and backs off before reconnecting: a call
            # made before it is connected again fails at once instead of waiting.
            await asyncio.wait_for(channel.channel_ready(), T)
            await client.create(obj(core_pb2.ConfigMap, f"after{round_}"))
            await eventually(
                lambda r=round_: informer.indexer.get(f"default/after{r}") is not None)
        assert informer.reflector.lists == 1, "the informer relisted after a restart"
        assert informer.reflector.watches >= 4  # it did reconnect each time
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await channel.close(None)
        await plane.stop()
