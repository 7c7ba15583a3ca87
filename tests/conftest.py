"""Shared fixtures: a real control plane on a temporary SQLite file, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from control.client.channel import open_channel
from control.client.client import ApiClient
from control.server import ControlPlane, ServerOptions


@pytest.fixture(autouse=True)
def _reset_logging() -> object:
    """CLI tests configure structlog in-process; give every test the defaults back."""
    yield
    structlog.reset_defaults()


@dataclass
class Cluster:
    plane: ControlPlane
    client: ApiClient
    address: str
    data_dir: Path


@asynccontextmanager
async def running_cluster(data_dir: Path, **options: Any) -> AsyncIterator[Cluster]:
    """A control plane on ``data_dir`` with a client; stopped on exit."""
    options.setdefault("bookmark_interval", 0.2)
    options.setdefault("shutdown_grace", 0.5)
    plane = ControlPlane(ServerOptions(data_dir=data_dir, listen="127.0.0.1:0", **options))
    address = await plane.start()
    channel = open_channel(address)
    try:
        yield Cluster(plane, ApiClient(channel, address, timeout=10), address, data_dir)
    finally:
        await channel.close(None)
        await plane.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The whole control plane: apiserver, scheduler, controllers."""
    async with running_cluster(tmp_path / "data") as c:
        yield c


@pytest.fixture
async def api_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The apiserver alone (no scheduler, no controllers): for API semantics tests that
    must not race a controller."""
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        yield c
