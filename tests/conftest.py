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
from control.client.config import (
    ClientConfig,
    config_document,
    read_config_file,
    write_config,
)
from control.client.pki import ClusterCA
from control.client.tls import Credentials
from control.server import ControlPlane, ServerOptions
from tests.support.host_state import HostState, leaks

_E2E_DIR = Path(__file__).resolve().parent / "e2e"
_HOST_BEFORE: list[HostState] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:
        _HOST_BEFORE.append(HostState.capture())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the suite left anything on the machine (CI, or asked for).

    Other people's processes on a shared development machine change the host too, so
    outside CI the differences are only reported."""
    if not _HOST_BEFORE or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    found = leaks(_HOST_BEFORE[0], HostState.capture())
    if not found:
        return
    strict = os.environ.get("CI") == "true" or os.environ.get("FLOTILLA_CHECK_HOST") == "1"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    header = "the suite changed the machine and did not undo it:"
    if reporter is not None:
        reporter.write_line(header + "".join(f"\n  {line}" for line in found[:40]), red=strict)
    if strict and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(_E2E_DIR):
            item.add_marker(pytest.mark.e2e)
        root = item.get_closest_marker("root")
        if root is not None and not is_root:
            item.add_marker(pytest.mark.skip(reason=f"needs root: {root.kwargs.get('reason', '')}"))


def _test_logging() -> None:
    """structlog's defaults, with plain tracebacks: the default rich traceback (locals
    included) takes a second or more to render under load, and it renders on the event loop
    of the in-process cluster, stalling every component at each logged exception."""
    structlog.reset_defaults()
    processors = list(structlog.get_config()["processors"])
    processors[-1] = structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(processors=processors)


_test_logging()


@pytest.fixture(autouse=True)
def _reset_logging() -> object:
    """CLI tests configure structlog in-process; give every test the test defaults back."""
    yield
    _test_logging()


@dataclass
class Cluster:
    plane: ControlPlane
    client: ApiClient
    address: str
    data_dir: Path

    @property
    def credentials(self) -> Credentials:
        """admin (system:masters)."""
        return self.plane.admin_credentials

    def agent_identity(self, node_name: str, node_ip: str = "127.0.0.1") -> dict[str, Any]:
        """AgentOptions keywords for a node identity issued by the cluster (no token)."""
        creds, serving = self.plane.node_identity(node_name, [node_ip])
        return {"credentials": creds, "serving": serving, "node_ip": node_ip}


def admin_config(data_dir: Path) -> ClientConfig:
    """The server's admin.conf (address and system:masters credentials)."""
    return read_config_file(data_dir / "admin.conf")


def node_config(server_data_dir: Path, node: str, path: Path, server: str | None = None) -> Path:
    """A config file with a node identity (``system:node:<node>``) issued by the cluster
    CA of ``server_data_dir`` (created there if the server has not started yet)."""
    ca = ClusterCA.load_or_create(server_data_dir / "pki")
    issued = ca.issue(f"system:node:{node}", ["system:nodes"], client=True)
    address = server or admin_config(server_data_dir).server
    return write_config(path, config_document(address, Credentials(
        ca_pem=ca.pem, cert_pem=issued.cert_pem, key_pem=issued.key_pem)))


def admin_credentials(server_data_dir: Path) -> Credentials:
    """system:masters credentials from the cluster CA of ``server_data_dir`` (created there
    if the server has not started yet)."""
    ca = ClusterCA.load_or_create(server_data_dir / "pki")
    issued = ca.issue("admin", ["system:masters"], client=True)
    return Credentials(ca_pem=ca.pem, cert_pem=issued.cert_pem, key_pem=issued.key_pem)


@asynccontextmanager
async def running_cluster(data_dir: Path, **options: Any) -> AsyncIterator[Cluster]:
    """A control plane on ``data_dir`` with a client; stopped on exit."""
    options.setdefault("bookmark_interval", 0.2)
    options.setdefault("shutdown_grace", 0.5)
    # the cluster DNS on a free loopback port: test servers never contend for port 53
    options.setdefault("dns_listen", "127.0.0.1:0")
    plane = ControlPlane(ServerOptions(data_dir=data_dir, listen="127.0.0.1:0", **options))
    address = await plane.start()
    channel = open_channel(address, plane.admin_credentials)
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
    async with running_cluster(tmp_path / "data",
                               disable={"scheduler", "controllers", "dns"}) as c:
        yield c
