"""The kubelet's test environment: a Kubelet on the fake runtime against a real in-process
API server (the ``env`` fixture), shared by the kubelet's test modules."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import HOST_HANDLER
from agent.kubelet.kubelet import Kubelet, KubeletOptions
from agent.kubelet.volumes import VolumeManager
from agent.runtime.fake import FakeRuntime
from control.api import convert, errors
from control.api.pb import core_pb2
from tests.conftest import Cluster

NODE = "n1"


def options(tmp: Path) -> KubeletOptions:
    return KubeletOptions(data_dir=tmp / "agent", node_ip="10.9.9.9", sync_period=2.0,
                          relist_period=0.05, backoff_initial=0.3, backoff_max=1.0,
                          minimum_grace=0.1, retry_period=0.5,
                          # the fake runtime has no image service: the pods take the host
                          # handler, named here since the default is the image one
                          default_handler=HOST_HANDLER)


class Env:
    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster = cluster
        self.client = cluster.client
        self.tmp = tmp
        self.rt = FakeRuntime()
        self.kubelet: Kubelet | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, volumes: Any = None) -> Kubelet:
        self.kubelet = Kubelet(self.client, self.rt, NODE, options(self.tmp), volumes=volumes)
        self.task = asyncio.create_task(self.kubelet.run())
        assert await self.kubelet.wait_synced(10)
        return self.kubelet

    async def stop(self) -> None:
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self.task is not None:
            await self.task
        self.kubelet = self.task = None

    async def create(self, name: str, policy: str = "Always",
                     containers: list[dict[str, Any]] | None = None,
                     **spec: Any) -> core_pb2.Pod:
        doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"nodeName": NODE, "restartPolicy": policy,
                        "terminationGracePeriodSeconds": 1,
                        "containers": containers or [{"name": "app", "command": ["serve"]}],
                        **spec}}
        for c in (*doc["spec"]["containers"], *doc["spec"].get("initContainers", [])):
            c.setdefault("image", "busybox")
        return await self.client.create(convert.from_dict(doc, core_pb2.Pod()))

    async def wait(self, name: str, pred: Callable[[core_pb2.Pod], bool],
                   timeout: float = 10.0) -> core_pb2.Pod:  # noqa: ASYNC109
        last: core_pb2.Pod | None = None
        async with asyncio.timeout(timeout):
            while True:
                try:
                    last = await self.client.get("pods", name, "default")
                except errors.NotFound:
                    last = None
                if last is not None and pred(last):
                    return last
                await asyncio.sleep(0.05)

    async def wait_gone(self, name: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.client.get("pods", name, "default")
                except errors.NotFound:
                    return
                await asyncio.sleep(0.05)


@pytest.fixture
async def env(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(cluster, tmp_path)
    try:
        yield e
    finally:
        await e.stop()


@pytest.fixture
async def pods_dir(tmp_path: Path) -> AsyncIterator[Path]:
    """The pods directory of a VolumeManager; every pod in it is torn down afterwards, so
    a failing test leaves no tmpfs mounted."""
    pods = tmp_path / "pods"
    yield pods
    if pods.exists():
        for uid in os.listdir(pods):
            await VolumeManager(None, pods).teardown(uid)
