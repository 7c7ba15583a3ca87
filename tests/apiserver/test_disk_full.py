"""A full disk under the store: writes answer RESOURCE_EXHAUSTED (never UNKNOWN), the store
warns with the path and the free space, and writes resume by themselves when space returns.
The disk is a small tmpfs the test mounts and unmounts (root only)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from structlog.testing import capture_logs

from control.api import errors
from control.api.pb import core_pb2
from tests.conftest import running_cluster

pytestmark = [
    pytest.mark.root(reason="mounting a tmpfs needs root"),
]


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 6 MiB tmpfs of our own, removed whatever happens."""
    mnt = Path(tempfile.mkdtemp(prefix="flotilla-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "flotilla-test-full", str(mnt)],
                   check=True, timeout=30)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)
        os.rmdir(mnt)


def fill(path: Path, leave: int) -> None:
    """Fill the file system holding ``path`` until about ``leave`` bytes are free."""
    free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def cm(name: str, size: int) -> core_pb2.ConfigMap:
    m = core_pb2.ConfigMap()
    m.metadata.name = name
    m.metadata.namespace = "default"
    m.data["payload"] = "x" * size
    return m


async def test_full_disk_is_resource_exhausted_and_recovers(small_disk: Path) -> None:
    data = small_disk / "data"
    async with running_cluster(data, disable={"scheduler", "controllers"}) as c:
        await c.client.create(cm("before", 100))
        filler = small_disk / "filler"
        fill(filler, leave=64 * 1024)
        with capture_logs() as logs:
            refused: errors.ApiError | None = None
            for i in range(200):  # at most 200 x 100 KB: far more than the room left
                try:
                    await c.client.create(cm(f"big{i}", 100_000))
                except errors.ApiError as e:
                    refused = e
                    break
        assert refused is not None, "the disk never filled"
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
        assert "storage is full" in str(refused)
        warnings = [e for e in logs if e["event"].startswith("store disk full")]
        assert warnings and warnings[0]["log_level"] == "warning"
        assert warnings[0]["path"] == str(data / "state.db")
        assert isinstance(warnings[0]["free_bytes"], int)
        filler.unlink()  # space returns: the next write succeeds without a restart
        created = await c.client.create(cm("after", 100_000))
        assert int(created.metadata.resource_version) > 0
        got = await c.client.get(core_pb2.ConfigMap, "after", "default")
        assert got.data["payload"] == "x" * 100_000
