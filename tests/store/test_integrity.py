"""A damaged log is never served as if whole: the WAL frame scan, the high-water mark, the
refusal to open, and the explicit recovery that never reissues a revision."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from control.store import walscan, watermark
from control.store.interface import Compacted, LogDamaged
from control.store.sqlite import SqliteStore
from tests.store.damage import (
    WRITES,
    crash_image,
    junk_in_the_middle,
    overwrite,
    truncate_to_half,
)


async def test_intact_crash_image_opens(tmp_path: Path) -> None:
    db, acknowledged = await crash_image(tmp_path)
    assert walscan.scan_file(f"{db}-wal").bad_offset is None
    assert watermark.read(f"{db}.hwm") == acknowledged
    store = await SqliteStore.open(db)
    try:
        assert store.revision == acknowledged
        assert len((await store.range("/registry/")).kvs) == WRITES
    finally:
        await store.close()


@pytest.mark.parametrize("damage", [junk_in_the_middle, truncate_to_half])
async def test_damaged_wal_is_refused_then_recovered(tmp_path: Path, damage: object) -> None:
    db, acknowledged = await crash_image(tmp_path)
    damage(Path(f"{db}-wal"))  # type: ignore[operator]
    with pytest.raises(LogDamaged) as ei:
        await SqliteStore.open(db)
    err = ei.value
    assert err.acknowledged == acknowledged and err.last_good < acknowledged
    msg = err.describe("start with --recover-to-last-good")
    assert str(db) in msg and f"last good revision is {err.last_good}" in msg
    assert "--recover-to-last-good" in msg and "backup" in msg
    if damage is junk_in_the_middle:
        # committed frames after the junk: the scan sees them, not only the mark
        assert walscan.scan_file(f"{db}-wal").lost_commits
    # still refused: the refusal changed nothing on disk
    with pytest.raises(LogDamaged):
        await SqliteStore.open(db)

    store = await SqliteStore.open(db, recover_to_last_good=True)
    try:
        assert store.revision == acknowledged
        assert store.compacted_revision == acknowledged  # the damaged history is not served
        kv = await store.create("/registry/configmaps/default/after", b"x")
        assert kv.mod_revision == acknowledged + 1  # never a revision number twice
        with pytest.raises(Compacted):
            store.watch("/registry/", err.last_good)
    finally:
        await store.close()
    assert list(db.parent.glob("state.db-wal.damaged-*")), "the damaged WAL was not kept"
    store = await SqliteStore.open(db)  # whole again: no flag needed
    try:
        assert store.revision == acknowledged + 1
        assert (await store.create("/x", b"")).mod_revision == acknowledged + 2
    finally:
        await store.close()


async def test_lost_wal_file_is_refused(tmp_path: Path) -> None:
    db, acknowledged = await crash_image(tmp_path)
    os.unlink(f"{db}-wal")
    with pytest.raises(LogDamaged, match=f"revisions up to {acknowledged} were acknowledged"):
        await SqliteStore.open(db)


async def test_unreadable_watermark_is_refused(tmp_path: Path) -> None:
    db, _ = await crash_image(tmp_path)
    overwrite(Path(f"{db}.hwm"), b"garbage")
    with pytest.raises(LogDamaged, match="unreadable"):
        await SqliteStore.open(db)


async def test_unreadable_database_is_refused_even_with_recovery(tmp_path: Path) -> None:
    db, _ = await crash_image(tmp_path)
    overwrite(db, b"this is not a database" * 300)
    os.unlink(f"{db}-wal")  # (with its WAL, SQLite reads the newest pages from there)
    for recover in (False, True):
        with pytest.raises(LogDamaged) as ei:
            await SqliteStore.open(db, recover_to_last_good=recover)
        assert not ei.value.recoverable
        msg = ei.value.describe("start with --recover-to-last-good")
        assert "SQLite cannot read it" in msg and "backup" in msg
        assert "--recover-to-last-good" not in msg  # it would not help


async def test_missing_watermark_is_created(tmp_path: Path) -> None:
    """A data dir from before the mark existed opens and gets one."""
    db, acknowledged = await crash_image(tmp_path)
    os.unlink(f"{db}.hwm")
    store = await SqliteStore.open(db)
    await store.close()
    assert watermark.read(f"{db}.hwm") == acknowledged


async def test_watermark_follows_every_commit(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        for i in range(5):
            kv = await store.create(f"/k{i}", b"")
            assert watermark.read(f"{tmp_path}/s.db.hwm") == kv.mod_revision
        lease = await store.grant_lease(30)  # no revision: the mark stays
        assert lease and watermark.read(f"{tmp_path}/s.db.hwm") == 5
    finally:
        await store.close()


def test_watermark_record() -> None:
    assert watermark.decode(watermark.encode(2**40 + 7)) == 2**40 + 7
    bad = bytearray(watermark.encode(44))
    bad[11] ^= 1
    with pytest.raises(watermark.WatermarkUnreadable):
        watermark.decode(bytes(bad))
    with pytest.raises(watermark.WatermarkUnreadable):
        watermark.decode(b"")


# -- the WAL scan on real SQLite WAL files ------------------------------------------------


def sqlite_wal(tmp_path: Path, transactions: int, then_restart: int = 0) -> bytes:
    """The WAL of a database after ``transactions`` commits (a crash image); with
    ``then_restart`` a checkpoint restarts the WAL and that many commits overwrite its
    beginning, leaving the old generation's frames behind them."""
    db = tmp_path / "w.db"
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE t (v BLOB)")
        conn.commit()
        for i in range(transactions):
            conn.execute("INSERT INTO t VALUES (?)", (bytes([i % 256]) * 3000,))
            conn.commit()
        if then_restart:
            conn.execute("PRAGMA wal_checkpoint(RESTART)")
            for _ in range(then_restart):
                conn.execute("INSERT INTO t VALUES (?)", (b"n" * 3000,))
                conn.commit()
        return (tmp_path / "w.db-wal").read_bytes()
    finally:
        conn.close()


def frame_offset(wal: bytes, index: int) -> int:
    page_size = int.from_bytes(wal[8:12], "big")
    return walscan.WAL_HEADER + index * (walscan.FRAME_HEADER + page_size)


def test_scan_intact_wal(tmp_path: Path) -> None:
    wal = sqlite_wal(tmp_path, 30)
    scan = walscan.scan_bytes(wal)
    assert scan.valid_frames > 30 and scan.bad_offset is None and not scan.lost_commits


def test_scan_finds_commits_after_junk(tmp_path: Path) -> None:
    wal = bytearray(sqlite_wal(tmp_path, 30))
    at = frame_offset(bytes(wal), 10) + 100
    wal[at:at + 700] = b"\x00" * 700
    scan = walscan.scan_bytes(bytes(wal))
    assert scan.valid_frames <= 10 and scan.bad_offset == frame_offset(bytes(wal), 10)
    assert scan.lost_commits and scan.frames_after >= 15


def test_scan_torn_tail_is_not_damage(tmp_path: Path) -> None:
    wal = sqlite_wal(tmp_path, 30)
    half = frame_offset(wal, 20) + 1000
    assert not walscan.scan_bytes(wal[:half]).lost_commits  # cut inside a frame
    torn = bytearray(wal)
    last = frame_offset(wal, walscan.scan_bytes(wal).valid_frames - 1) + 50
    torn[last:last + 10] = b"\xff" * 10  # the last frame half written
    scan = walscan.scan_bytes(bytes(torn))
    assert not scan.lost_commits


def test_scan_ignores_frames_of_an_older_generation(tmp_path: Path) -> None:
    wal = sqlite_wal(tmp_path, 30, then_restart=3)
    scan = walscan.scan_bytes(wal)
    assert 0 < scan.valid_frames < 10 and not scan.lost_commits


def test_scan_of_nothing() -> None:
    assert walscan.scan_bytes(b"") == walscan.WalScan()
    assert walscan.scan_bytes(b"\x00" * 4096) == walscan.WalScan()
