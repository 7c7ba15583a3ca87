"""A scan of a SQLite write-ahead log's frames: does committed history follow a bad frame?

SQLite replays its WAL at open up to the first frame whose salt or checksum is wrong and
silently ignores everything after it: right for a torn tail (a crash in the middle of an
unacknowledged commit), wrong for damage in the middle of the file, where the frames after
the bad one are committed transactions that the database then no longer shows. This module
tells the two apart without SQLite: it walks the frames as SQLite does (the format is in
SQLite's "Database File Format", section "The Write-Ahead Log"), and past the first bad
frame it checks each later frame against the checksum stored in the frame before it (the
checksums are cumulative), so a frame that was intact before the damage still verifies.
Valid commit frames after a bad one mean committed history was lost.

Pure function over the file's bytes (read in one pass, frame by frame); no SQLite
connection may be open on the file while it runs, so nothing rewrites the WAL under it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

WAL_HEADER = 32
FRAME_HEADER = 24
_MAGIC_LE = 0x377F0682  # checksums over little-endian words
_MAGIC_BE = 0x377F0683  # checksums over big-endian words


@dataclass(frozen=True, slots=True)
class WalScan:
    """What the scan found. ``valid_frames``: frames SQLite replays (up to the last valid
    commit frame). ``bad_offset``: byte offset of the first bad frame that has valid frames
    after it (None: no damage seen). ``frames_after`` / ``commits_after``: valid frames and
    commit frames found after that bad frame."""

    valid_frames: int = 0
    bad_offset: int | None = None
    frames_after: int = 0
    commits_after: int = 0

    @property
    def lost_commits(self) -> bool:
        return self.commits_after > 0


def _checksum(data: bytes, s0: int, s1: int, fmt: str) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes) continuing from (s0, s1)."""
    words = struct.unpack(f"{fmt}{len(data) // 4}I", data)
    mask = 0xFFFFFFFF
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & mask
        s1 = (s1 + words[i + 1] + s0) & mask
    return s0, s1


def scan_bytes(wal: bytes) -> WalScan:
    """Scan a whole WAL file's contents (see the module docstring)."""
    if len(wal) < WAL_HEADER:
        return WalScan()
    magic, _version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(
        ">8I", wal[:WAL_HEADER])
    if magic not in (_MAGIC_LE, _MAGIC_BE):
        return WalScan()
    fmt = "<" if magic == _MAGIC_LE else ">"
    if (page_size & (page_size - 1)) or not 512 <= page_size <= 65536:
        return WalScan()
    if _checksum(wal[:24], 0, 0, fmt) != (c0, c1):
        return WalScan()  # SQLite ignores a WAL whose header is bad: nothing was replayed
    frame_size = FRAME_HEADER + page_size
    s0, s1 = c0, c1
    frames = 0
    valid = 0
    offset = WAL_HEADER
    # Phase 1: the chain SQLite replays.
    while offset + frame_size <= len(wal):
        header = wal[offset:offset + FRAME_HEADER]
        _pgno, commit, f_salt1, f_salt2, f0, f1 = struct.unpack(">6I", header)
        if (f_salt1, f_salt2) != (salt1, salt2):
            break
        t0, t1 = _checksum(header[:8], s0, s1, fmt)
        t0, t1 = _checksum(wal[offset + FRAME_HEADER:offset + frame_size], t0, t1, fmt)
        if (t0, t1) != (f0, f1):
            break
        s0, s1 = f0, f1
        frames += 1
        if commit:
            valid = frames
        offset += frame_size
    bad = offset
    # Phase 2: past the break, frames of this WAL generation that verify against their
    # predecessor's stored checksum were intact before the damage.
    after = commits = 0
    prev: tuple[int, int] | None = None
    offset = bad + frame_size
    while offset + frame_size <= len(wal):
        pheader = wal[offset - frame_size:offset - frame_size + FRAME_HEADER]
        header = wal[offset:offset + FRAME_HEADER]
        _pgno, commit, f_salt1, f_salt2, f0, f1 = struct.unpack(">6I", header)
        if (f_salt1, f_salt2) == (salt1, salt2):
            prev = struct.unpack(">2I", pheader[16:24])
            t0, t1 = _checksum(header[:8], prev[0], prev[1], fmt)
            t0, t1 = _checksum(wal[offset + FRAME_HEADER:offset + frame_size], t0, t1, fmt)
            if (t0, t1) == (f0, f1):
                after += 1
                if commit:
                    commits += 1
        offset += frame_size
    if not after:
        return WalScan(valid)
    return WalScan(valid, bad, after, commits)


def scan_file(path: str | os.PathLike[str]) -> WalScan:
    """Scan the WAL at ``path`` (a missing file is an empty WAL)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return WalScan()
    return scan_bytes(data)
