"""`flotilla controller-manager` as its own process against `flotilla server --disable
controllers`: the controllers run only in the elected controller manager.

Addresses come from DIR/admin.conf (``--listen 127.0.0.1:0``); every wait is bounded and
both processes are killed in ``finally``. The flag parsing is tested in-process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import pytest
import yaml

from control.api import errors
from control.api.pb import core_pb2
from control.cli.errors import UsageError
from control.cli.main import build_parser
from control.cli.verbs_controller_manager import disabled_controllers, node_lifecycle_options
from control.client.channel import open_channel
from control.client.client import ApiClient
from tests.conftest import admin_config
from tests.support import eventually

CLI = [sys.executable, "-m", "control.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
WAIT_TIMEOUT = 30.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FLOTILLA_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _spawn(args: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], stdout=log, stderr=subprocess.STDOUT,
                            env=_env(), cwd=ROOT)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.kill()
    proc.wait(timeout=10)


async def _while_alive(what: str, check: Callable[[], Awaitable[bool]],
                       procs: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    """:func:`eventually` ``check``, failing at once with its log if a process exits."""

    async def alive_and_done() -> bool:
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode} while waiting for "
                            f"{what}:\n{log.read_text()[-4000:]}")
        return await check()

    try:
        await eventually(alive_and_done, what, timeout=WAIT_TIMEOUT, interval=0.1)
    except AssertionError as e:
        logs = "\n".join(f"--- {n}:\n{log.read_text()[-3000:]}"
                         for n, (_, log) in procs.items())
        pytest.fail(f"{e}\n{logs}")


@pytest.mark.e2e
async def test_separate_controller_manager_leads_and_runs_the_controllers(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    server_log, cm_log = tmp_path / "server.log", tmp_path / "cm.log"
    server: subprocess.Popen[bytes] | None = None
    cm: subprocess.Popen[bytes] | None = None
    channel = None
    with server_log.open("wb") as slog, cm_log.open("wb") as clog:
        try:
            server = _spawn(["server", "--data-dir", str(data_dir), "--listen",
                             "127.0.0.1:0", "--disable", "controllers", "--log-format",
                             "json"], slog)
            procs = {"flotilla server": (server, server_log)}
            conf = data_dir / "admin.conf"

            async def conf_written() -> bool:
                return conf.exists()

            await _while_alive("admin.conf", conf_written, procs)
            address = yaml.safe_load(conf.read_text())["server"]
            channel = open_channel(address, admin_config(data_dir).credentials)
            client = ApiClient(channel, address, timeout=10)

            ns = core_pb2.Namespace()
            ns.metadata.name = "doomed"
            await client.create(ns)
            cm_obj = core_pb2.ConfigMap()
            cm_obj.metadata.name, cm_obj.metadata.namespace = "settings", "doomed"
            await client.create(cm_obj)
            _, pending = await client.delete("namespaces", "doomed")
            assert pending
            # No controller in the server: the namespace waits, Terminating.
            held = await client.get("namespaces", "doomed")
            assert held.status.phase == "Terminating"

            cm = _spawn(["controller-manager", "--server", address, "--config", str(conf),
                         "--leader-elect",
                         "--leader-elect-retry-period", "1s", "--log-format", "json"], clog)
            procs["flotilla controller-manager"] = (cm, cm_log)

            async def namespace_gone() -> bool:
                try:
                    await client.get("namespaces", "doomed")
                except errors.NotFound:
                    return True
                return False

            await _while_alive("the namespace deletion", namespace_gone, procs)
            lease = await client.get("leases", "flotilla-controller-manager", "kube-system")
            holder = lease.spec.holder_identity
            assert holder.startswith(f"{socket.gethostname()}_"), holder
            assert lease.spec.lease_duration_seconds == 15

            # A clean stop releases the lease so that a standby need not wait for expiry.
            cm.send_signal(signal.SIGTERM)
            assert cm.wait(timeout=20) == 0, cm_log.read_text()[-4000:]
            released = await client.get("leases", "flotilla-controller-manager",
                                        "kube-system")
            assert released.spec.holder_identity == ""
            assert "Traceback" not in cm_log.read_text()
        finally:
            if channel is not None:
                await channel.close(None)
            _stop(cm)
            if server is not None and server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    _stop(server)


def test_flags() -> None:
    args = build_parser().parse_args([
        "controller-manager", "--leader-elect=false", "--leader-elect-lease-duration", "4s",
        "--controllers", "*,-podgc", "--node-monitor-grace-period", "20s",
        "--node-eviction-rate", "0.5"])
    assert args.leader_elect is False
    assert args.leader_elect_lease_duration == 4.0
    node, ignored = node_lifecycle_options(args)
    assert (node.node_monitor_grace_period, node.node_eviction_rate) == (20.0, 0.5)
    assert node.secondary_node_eviction_rate == 0.01 and ignored == []  # Kubernetes' default
    assert build_parser().parse_args(["controller-manager"]).leader_elect is True
    assert build_parser().parse_args(["controller-manager", "--leader-elect"]).leader_elect
    with pytest.raises(UsageError):
        build_parser().parse_args(["controller-manager", "--leader-elect=maybe"])


def test_controllers_selection() -> None:
    known = ("namespace", "gc", "podgc")
    assert disabled_controllers("*", known) == set()
    assert disabled_controllers("*,-podgc", known) == {"podgc"}
    assert disabled_controllers("namespace", known) == {"gc", "podgc"}
    assert disabled_controllers("namespace,-namespace", known) == set(known)
    with pytest.raises(UsageError, match="unknown controller 'nope'"):
        disabled_controllers("*,-nope", known)
