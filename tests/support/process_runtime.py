"""Driving a ProcessRuntime in tests: make one under a test cgroup prefix, start sandboxes
and containers, wait for exits and log lines, read CRI log files, clean everything up.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path

from agent.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    SandboxConfig,
)
from agent.runtime.process import ProcessRuntime
from tests.support import eventually

CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] ")


async def cleanup(rt: ProcessRuntime) -> None:
    """Remove every sandbox and container of ``rt`` and its cgroup prefix."""
    try:
        async with asyncio.timeout(30):
            for c in await rt.list_containers():
                await rt.remove_container(c.id)
            for s in await rt.list_pod_sandboxes():
                await rt.remove_pod_sandbox(s.id)
    finally:
        if rt.cgroups is not None:
            rt.cgroups.remove_all()


def make_runtime(root: Path, isolate: bool, **kwargs: object) -> ProcessRuntime:
    return ProcessRuntime(root, f"flotilla/test-{uuid.uuid4().hex[:8]}", isolate=isolate, **kwargs)  # type: ignore[arg-type]


async def sandbox(
    rt: ProcessRuntime,
    tmp_path: Path,
    uid: str = "uid-1",
    hostname: str = "web-0",
    **kwargs: object,
) -> str:
    return await rt.run_pod_sandbox(
        SandboxConfig(
            pod_uid=uid,
            namespace="default",
            name=hostname,
            hostname=hostname,
            pod_dir=str(tmp_path / "pods" / uid),
            **kwargs,
        )
    )  # type: ignore[arg-type]


async def run(
    rt: ProcessRuntime, sid: str, argv: list[str], tmp_path: Path, name: str = "c", **kwargs: object
) -> str:
    cid = await rt.create_container(
        sid,
        ContainerConfig(
            name=name, argv=argv, log_path=str(tmp_path / "logs" / name / "0.log"), **kwargs
        ),
    )  # type: ignore[arg-type]
    await rt.start_container(cid)
    return cid


async def wait_exited(
    rt: ProcessRuntime,
    cid: str,
    timeout: float = 10,  # noqa: ASYNC109
) -> ContainerStatus:
    async def exited() -> ContainerStatus | None:
        st = await rt.container_status(cid)
        return st if st.state == ContainerState.EXITED else None

    st: ContainerStatus = await eventually(
        exited, f"container {cid} to exit", timeout=timeout, interval=0.02
    )
    return st


def read_text(path: Path | str) -> str:
    """The file's text, "" if missing (sync: small files, in tests)."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return ""


def exists(path: Path | str) -> bool:
    return os.path.lexists(path)


def is_mount(path: Path | str) -> bool:
    return os.path.ismount(path)


def mounts_under(root: Path) -> list[str]:
    """Mount points of this process's mount namespace at or below ``root``."""
    prefix = str(root.resolve())
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


async def wait_for_log(
    path: Path,
    text: str,
    timeout: float = 10,  # noqa: ASYNC109
) -> str:
    """The file's content once it holds ``text``."""

    def holds_text() -> str:
        content = read_text(path)
        return content if text in content else ""

    content: str = await eventually(
        holds_text,
        f"{text!r} in {path}",
        timeout=timeout,
        interval=0.02,
    )
    return content


def log_entries(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        assert CRI_LINE.match(line), line
        _, stream, _, text = line.split(" ", 3)
        out.append((stream, text))
    return out
