"""Shared fixtures: a real control plane on a temporary SQLite file, and a client for it.

Also the two markers, applied the same way everywhere:

- ``e2e``: Flotilla runs in more than one process (a server, agent or CLI of its own, or
  agents with the containers they run). Every test under ``tests/e2e/`` carries it;
  elsewhere a module or a test says so with ``pytest.mark.e2e``. ``-m "not e2e"`` is the
  quick run.
- ``root``: the test needs root (mounts, cgroups, namespaces, mknod). Mark it
  ``pytest.mark.root(reason="what needs root")``; it is skipped, with that reason, when the
  suite does not run as root, so no test checks ``geteuid()`` itself.
"""

from __future__ import annotations

import os
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

_E2E_DIR = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(_E2E_DIR):
            item.add_marker(pytest.mark.e2e)
        root = item.get_closest_marker("root")
        if root is not None and not is_root:
            item.add_marker(pytest.mark.skip(reason=f"needs root: {root.kwargs.get('reason', '')}"))


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
