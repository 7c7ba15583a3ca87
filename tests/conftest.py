"""Shared fixtures: a real control plane on a temporary SQLite file, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

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


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    plane = ControlPlane(ServerOptions(data_dir=tmp_path / "data", listen="127.0.0.1:0",
                                       bookmark_interval=0.2, shutdown_grace=0.5))
    address = await plane.start()
    channel = open_channel(address)
    try:
        yield Cluster(plane, ApiClient(channel, address, timeout=10), address,
                      tmp_path / "data")
    finally:
        await channel.close(None)
        await plane.stop()
