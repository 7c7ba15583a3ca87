"""Reading a container's CRI log files the way ``kubectl logs`` expects (kubelet's
``kuberuntime/logs``).

Owns the log *reader*; the runtime's monitor process owns writing and rotation
(agent/runtime/interface.py). The format is one physical line per chunk written::

    <RFC3339Nano time> <stdout|stderr> <F|P> <text>\\n

where ``P`` marks a partial line (the writer split a long line, or the process had not
written its newline yet) whose text continues in the next ``P``/``F`` line of the same
stream. A log ``X.log`` rotates to ``X.log.1`` ... ``X.log.N`` (``.1`` newest), so the
reader takes ``X.log.N ... X.log.1, X.log`` in that order.

Semantics (kubectl's flags, :class:`LogOptions`):
- partial lines are joined into one logical line, stamped with its first chunk's time;
- ``tail_lines``: the last N logical lines (read from the newest files only, as many as
  needed); ``since_time``: only lines at or after that time (applied after the tail, as the
  kubelet does); ``timestamps``: each line prefixed with its time in RFC3339Nano (UTC, Go's
  trailing-zero trimming); ``limit_bytes``: stop after exactly N bytes of output, prefixes
  included;
- ``follow``: after the backlog, keep reading appended data and follow a rotation (drain
  the renamed file, then open the new one) until ``alive()`` says the container has exited
  (its last lines are drained first) or the caller stops iterating.

Output comes as ``bytes`` chunks, one per file read (many lines each), so a big backlog is
a few large messages and a followed log is sent as soon as a line completes.

Concurrency contract: :func:`read_logs` is an async generator for one reader on the
agent's event loop; file reads run in worker threads (``asyncio.to_thread``) in bounded
chunks, so a 50 MiB backlog never blocks the loop. Readers share nothing: any number may
read the same container at once. Cancelling the generator (``aclose``) closes its file.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from control.api import timeutil

__all__ = [
    "LogEntry",
    "LogOptions",
    "format_rfc3339_nano",
    "log_files",
    "parse_line",
    "read_logs",
]

READ_CHUNK = 256 * 1024
DEFAULT_POLL_INTERVAL = 0.1
# how many rotated files the reader looks for (the monitor keeps 4; be generous)
MAX_ROTATED = 16

Alive = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class LogOptions:
    tail_lines: int | None = None  # None or negative: everything
    since_time: float | None = None  # seconds since the epoch
    timestamps: bool = False
    limit_bytes: int | None = None  # None or <= 0: no limit
    follow: bool = False


@dataclass(frozen=True)
class LogEntry:
    seconds: int
    nanos: int
    stream: bytes  # b"stdout" | b"stderr"
    partial: bool
    content: bytes  # without the newline

    @property
    def time(self) -> float:
        return self.seconds + self.nanos / 1e9


def parse_line(raw: bytes) -> LogEntry | None:
    """One physical CRI log line (with or without its newline); None if malformed."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        seconds, nanos = timeutil.parse_rfc3339_parts(parts[0].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    stream = parts[1]
    if stream not in (b"stdout", b"stderr"):
        return None
    tag = parts[2]
    if tag in (b"F", b"P"):
        content = parts[3] if len(parts) == 4 else b""
        return LogEntry(seconds, nanos, stream, tag == b"P", content)
    # the tag-less format of early CRI runtimes: everything after the stream is text
    return LogEntry(seconds, nanos, stream, False, raw.split(b" ", 2)[2])


def format_rfc3339_nano(seconds: int, nanos: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: ``2006-01-02T15:04:05.999999999Z``, trailing
    zeros of the fraction trimmed (no fraction at all when it is zero)."""
    base = _dt.datetime.fromtimestamp(seconds, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{nanos:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def log_files(path: str) -> list[str]:
    """The existing files of one log, oldest first: ``X.log.N ... X.log.1, X.log``."""
    rotated = []
    for n in range(1, MAX_ROTATED + 1):
        candidate = f"{path}.{n}"
        if os.path.exists(candidate):
            rotated.append(candidate)
        elif n > 1:
            break
    files = list(reversed(rotated))
    if os.path.exists(path):
        files.append(path)
    return files


# -- the physical-line source --------------------------------------------------------------


class _CaughtUp:
    """Marker in the batch stream: everything written so far has been read."""


CAUGHT_UP = _CaughtUp()
Batch = list[bytes] | _CaughtUp


def _count_complete(path: str) -> int:
    """Logical line ends (``F`` or tag-less lines) in one file."""
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            entry = parse_line(raw)
            if entry is not None and not entry.partial:
                n += 1
    return n


async def _start_index(files: list[str], tail: int | None) -> int:
    """The first file worth reading for ``tail`` lines: the newest ones that hold enough."""
    if tail is None or len(files) <= 1:
        return 0
    have = 0
    for i in range(len(files) - 1, -1, -1):
        try:
            have += await asyncio.to_thread(_count_complete, files[i])
        except FileNotFoundError:
            continue  # rotated away meanwhile: older data only
        # one more file than strictly needed would be required only for a line split
        # across the rotation, whose start the caller then misses: accept that, as kubelet
        if have >= tail:
            return i
    return 0


class _FileSource:
    """Physical lines of a log, in batches, following appends and rotations on demand."""

    def __init__(self, path: str, follow: bool, alive: Alive | None, poll: float) -> None:
        self.path = path
        self.follow = follow
        self.alive = alive
        self.poll = poll
        self._f: BinaryIO | None = None
        self._rest = b""  # an incomplete physical line (the writer is mid-line)

    async def _open(self, name: str) -> bool:
        """Open ``name`` as the file being read; False when it does not exist (yet)."""
        try:
            self._f = await asyncio.to_thread(open, name, "rb")
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def _split(self, data: bytes, final: bool) -> list[bytes]:
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        if final and self._rest:
            lines.append(self._rest)
            self._rest = b""
        return lines

    async def _read(self) -> bytes:
        f = self._f
        assert f is not None
        return await asyncio.to_thread(f.read, READ_CHUNK)

    async def _drain(self, final: bool) -> AsyncIterator[list[bytes]]:
        """Read the open file to its current end."""
        while True:
            data = await self._read()
            if not data:
                if final and self._rest:
                    yield self._split(b"", True)
                return
            lines = self._split(data, False)
            if lines:
                yield lines

    async def batches(self, tail: int | None) -> AsyncGenerator[Batch, None]:
        try:
            files = log_files(self.path)
            start = await _start_index(files, tail)
            for name in files[start:]:
                if name == self.path:
                    break
                if not await self._open(name):
                    continue
                async for lines in self._drain(final=True):
                    yield lines
                self.close()
            current = self._current()
            try:
                async for item in current:
                    yield item
            finally:
                await current.aclose()
        finally:
            self.close()

    async def _current(self) -> AsyncGenerator[Batch, None]:
        caught_up = False
        while not await self._open(self.path):
            # not written yet (container just created) or between rename and reopen
            if not self.follow:
                yield CAUGHT_UP
                return
            if not caught_up:
                caught_up = True
                yield CAUGHT_UP
            if not await self._still_running():
                return
            await asyncio.sleep(self.poll)
        while True:
            async for lines in self._drain(final=not self.follow):
                yield lines
            if not caught_up:
                caught_up = True
                yield CAUGHT_UP
            if not self.follow:
                return
            if await self._rotated():
                async for lines in self._drain(final=True):
                    yield lines
                self.close()
                while not await self._open(self.path):
                    if not await self._still_running():
                        return
                    await asyncio.sleep(self.poll)
                continue
            if not await self._still_running():
                # the container exited: what it wrote before exiting is still to read
                async for lines in self._drain(final=True):
                    yield lines
                return
            await asyncio.sleep(self.poll)

    async def _still_running(self) -> bool:
        if self.alive is None:
            return True
        return await self.alive()

    async def _rotated(self) -> bool:
        """The path now names another file (renamed away) or our file was truncated."""
        f = self._f
        assert f is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True  # renamed, the new file not created yet: finish the old one
        mine = os.fstat(f.fileno())
        if (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
            return True
        if st.st_size < f.tell():  # truncated in place (copytruncate): start over
            f.seek(0)
            self._rest = b""
        return False


# -- logical lines and options ---------------------------------------------------------------


class _Joiner:
    """Joins partial entries per stream into logical lines: (first entry, full text)."""

    def __init__(self) -> None:
        self._pending: dict[bytes, tuple[LogEntry, list[bytes]]] = {}

    def feed(self, lines: list[bytes]) -> Iterator[tuple[LogEntry, bytes]]:
        for raw in lines:
            entry = parse_line(raw)
            if entry is None:
                continue
            pending = self._pending.get(entry.stream)
            if entry.partial:
                if pending is None:
                    self._pending[entry.stream] = (entry, [entry.content])
                else:
                    pending[1].append(entry.content)
                continue
            if pending is None:
                yield entry, entry.content
            else:
                del self._pending[entry.stream]
                yield pending[0], b"".join([*pending[1], entry.content])

    def flush(self) -> Iterator[tuple[LogEntry, bytes]]:
        """Partial lines never completed (the container exited mid-line)."""
        pending, self._pending = self._pending, {}
        for first, parts in sorted(pending.values(), key=lambda p: p[0].time):
            yield first, b"".join(parts)


async def read_logs(
    path: str,
    options: LogOptions,
    *,
    alive: Alive | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> AsyncGenerator[bytes, None]:
    """The log at ``path`` (with its rotated files) as output chunks; see the module doc.

    ``alive`` (follow only) answers whether the container still runs; None = follow until
    the caller stops iterating.
    """
    tail = options.tail_lines if options.tail_lines is not None and options.tail_lines >= 0 \
        else None
    limit = options.limit_bytes if options.limit_bytes and options.limit_bytes > 0 else None
    since = options.since_time
    sent = 0

    def render(lines: Iterable[tuple[LogEntry, bytes]]) -> list[bytes]:
        out = []
        for entry, text in lines:
            if since is not None and entry.time < since:
                continue
            if options.timestamps:
                stamp = format_rfc3339_nano(entry.seconds, entry.nanos).encode()
                out.append(stamp + b" " + text + b"\n")
            else:
                out.append(text + b"\n")
        return out

    def limited(out: list[bytes]) -> tuple[bytes, bool]:
        """Join and cut at the byte limit; (chunk, limit reached)."""
        nonlocal sent
        data = b"".join(out)
        if limit is not None and sent + len(data) >= limit:
            data = data[: limit - sent]
            sent = limit
            return data, True
        sent += len(data)
        return data, False

    source = _FileSource(path, options.follow, alive if options.follow else None,
                         poll_interval)
    joiner = _Joiner()
    # kubelet's order: the tail picks the last N lines, then --since filters those
    backlog: deque[tuple[LogEntry, bytes]] | None = (
        deque(maxlen=tail) if tail is not None else None)
    batches = source.batches(tail)
    try:
        async for batch in batches:
            if isinstance(batch, _CaughtUp):
                if not options.follow:
                    # the end: a line left partial counts as a line (the writer exited)
                    pending = list(joiner.flush())
                    if backlog is not None:
                        backlog.extend(pending)
                    else:
                        out = render(pending)
                        if out:
                            data, _ = limited(out)
                            if data:
                                yield data
                if backlog is not None:
                    out, backlog = render(backlog), None
                    if out:
                        data, done = limited(out)
                        if data:
                            yield data
                        if done:
                            return
                continue
            if backlog is not None:
                backlog.extend(joiner.feed(batch))
                continue
            out = render(joiner.feed(batch))
            if out:
                data, done = limited(out)
                if data:
                    yield data
                if done:
                    return
        # follow ended (the container exited): its unfinished line, if any
        out = render(joiner.flush())
        if out:
            data, _ = limited(out)
            if data:
                yield data
    finally:
        await batches.aclose()
