"""`flotilla server` as a real subprocess for end-to-end tests: start it on a data dir,
find its address, kill it. Every start is bounded in time; ``stop`` always reaps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml


def start_server(data_dir: Path, *flags: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """``log``: append the server's log (stderr) to this file, at debug level."""
    conf = data_dir / "admin.conf"
    conf.unlink(missing_ok=True)
    level = ["--log-level", "debug"] if log is not None else []
    with open(log, "ab") if log is not None else open(os.devnull, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control.cli.main", *level, "server", "--data-dir",
             str(data_dir), "--listen", "127.0.0.1:0", "--log-format", "json", *flags],
            stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 20
    while not conf.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("flotilla server did not start")
        time.sleep(0.05)
    return proc


def address(data_dir: Path) -> str:
    return str(yaml.safe_load((data_dir / "admin.conf").read_text())["server"])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
