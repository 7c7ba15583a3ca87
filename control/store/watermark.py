"""The high-water mark: the newest revision ever acknowledged, kept durable apart from the log.

A damaged or truncated write-ahead log makes SQLite open an older database without a word,
and the revision counter would then go back and hand out resourceVersions that clients
have already seen. This small file beside the database remembers how far acknowledged
history reached, so opening the log can tell "whole" from "lost its newest part".

Format: 16 bytes, rewritten in place: ``b"FHWM"``, the revision (unsigned 64-bit, big
endian), CRC-32 of the first 12 bytes: one ``pwrite`` into one block, never torn in
practice (a torn or otherwise bad record reads as :class:`WatermarkUnreadable`, never as a
smaller number).

Cost: every committed batch ``pwrite``s the mark (microseconds; it survives a crash or
kill -9 of the process, since the kernel keeps the page). The ``fdatasync`` that makes it
survive power loss costs one more device flush, which doubles the cost of a lone write
(measured in bench/store_commit.py), so it runs at most every ``sync_interval`` seconds
(and at close): after a power loss the mark may trail the last acknowledged revision by the
writes of at most that interval. The log itself is fsynced at every commit, so this only
narrows what a power loss *together with* damage to the newest frames could hide; damage
in the middle of the WAL is also seen by the frame scan.

Concurrency: ``advance`` is called from the store's writer thread only (after each
committed batch), ``close`` after the writer stopped; ``read`` before the store opens.
Not thread-safe beyond that.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable

_MAGIC = b"FHWM"
_SIZE = 16


class WatermarkUnreadable(Exception):
    """The high-water mark file exists but does not hold a valid record."""


def encode(revision: int) -> bytes:
    head = _MAGIC + struct.pack(">Q", revision)
    return head + struct.pack(">I", zlib.crc32(head))


def decode(data: bytes) -> int:
    if len(data) != _SIZE or data[:4] != _MAGIC:
        raise WatermarkUnreadable(f"expected a {_SIZE}-byte record, got {len(data)} bytes")
    (crc,) = struct.unpack(">I", data[12:])
    if zlib.crc32(data[:12]) != crc:
        raise WatermarkUnreadable("checksum mismatch")
    (revision,) = struct.unpack(">Q", data[4:12])
    return int(revision)


def read(path: str) -> int | None:
    """The recorded revision; None if the file does not exist (a new or older data dir)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_SIZE + 1)
    except FileNotFoundError:
        return None
    return decode(data)


SYNC_INTERVAL = 0.05


class Watermark:
    """The open high-water mark file; ``advance`` records a newer revision."""

    def __init__(self, path: str, revision: int, sync_interval: float = SYNC_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.revision = revision
        self.sync_interval = sync_interval
        self._clock = clock
        self._dirty = False
        self._synced_at = 0.0
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._write(revision)
            self.sync()
            _fsync_dir(os.path.dirname(os.path.abspath(path)))
        except BaseException:
            os.close(self._fd)
            raise

    def _write(self, revision: int) -> None:
        if os.pwrite(self._fd, encode(revision), 0) != _SIZE:
            raise OSError(f"short write to {self.path}")
        self._dirty = True

    def sync(self) -> None:
        """Make the recorded revision survive power loss."""
        if self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
            self._synced_at = self._clock()

    def advance(self, revision: int) -> None:
        """Record ``revision`` if it is newer; sync if the last sync is older than the
        interval (see the module docstring)."""
        if revision > self.revision:
            self._write(revision)
            self.revision = revision
            if self._clock() - self._synced_at >= self.sync_interval:
                self.sync()

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1


def _fsync_dir(path: str) -> None:
    """Make a newly created file's directory entry durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
