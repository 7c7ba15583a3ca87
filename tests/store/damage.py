"""Damaged logs for tests: a crash image of a store's files and the ways to damage its WAL."""

from __future__ import annotations

import shutil
from pathlib import Path

from control.store.sqlite import SqliteStore

WRITES = 40


async def crash_image(tmp_path: Path, writes: int = WRITES) -> tuple[Path, int]:
    """A data dir as a kill -9 leaves it after ``writes`` acknowledged writes: the files are
    copied while the store is still open (a clean close checkpoints and deletes the WAL)."""
    live = tmp_path / "live"
    live.mkdir()
    store = await SqliteStore.open(live / "state.db")
    try:
        for i in range(writes):
            kv = await store.create(f"/registry/configmaps/default/cm{i}", b"v" * 300)
        acknowledged = kv.mod_revision
        image = tmp_path / "image"
        image.mkdir()
        for suffix in ("", "-wal", ".hwm"):
            shutil.copyfile(f"{live}/state.db{suffix}", f"{image}/state.db{suffix}")
    finally:
        await store.close()
    return image / "state.db", acknowledged


def junk_in_the_middle(wal: Path, size: int = 700) -> None:
    data = bytearray(wal.read_bytes())
    mid = len(data) // 2
    data[mid:mid + size] = b"\xa5" * size
    wal.write_bytes(bytes(data))


def overwrite(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def truncate_to_half(wal: Path) -> None:
    data = wal.read_bytes()
    wal.write_bytes(data[: len(data) // 2])
