"""The CRI log reader (agent/kubelet/logs.py): kubectl's options over real files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.kubelet.logs import (
    LogOptions,
    format_rfc3339_nano,
    log_files,
    parse_line,
    read_logs,
)

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def stamp(i: int, nanos: int = 0) -> str:
    return format_rfc3339_nano(T0 + i, nanos)


def cri(i: int, text: str, stream: str = "stdout", tag: str = "F") -> str:
    return f"{stamp(i, 123_000_000)} {stream} {tag} {text}\n"


def write(path: Path, *lines: str, mode: str = "w") -> None:
    with open(path, mode) as f:
        f.write("".join(lines))


async def collect(path: Path, **opts: object) -> bytes:
    chunks = [c async for c in read_logs(str(path), LogOptions(**opts))]  # type: ignore[arg-type]
    return b"".join(chunks)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "0.log"
    write(path, *(cri(i, f"line {i}") for i in range(10)))
    return path


def test_parse_line_and_format() -> None:
    e = parse_line(b"2023-11-14T22:13:20.5Z stderr P hello world\n")
    assert e is not None
    assert (e.seconds, e.nanos, e.stream, e.partial, e.content) == (
        T0, 500_000_000, b"stderr", True, b"hello world")
    assert parse_line(b"garbage") is None
    assert parse_line(b"2023-11-14T22:13:20Z stdout F ") is not None
    assert format_rfc3339_nano(T0, 0) == "2023-11-14T22:13:20Z"
    assert format_rfc3339_nano(T0, 120_000_000) == "2023-11-14T22:13:20.12Z"
    assert format_rfc3339_nano(T0, 1) == "2023-11-14T22:13:20.000000001Z"


async def test_all_lines(log: Path) -> None:
    assert await collect(log) == b"".join(f"line {i}\n".encode() for i in range(10))


async def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert await collect(tmp_path / "nope.log") == b""


async def test_tail(log: Path) -> None:
    assert await collect(log, tail_lines=3) == b"line 7\nline 8\nline 9\n"
    assert await collect(log, tail_lines=0) == b""
    assert await collect(log, tail_lines=100) == await collect(log)
    assert await collect(log, tail_lines=-1) == await collect(log)


async def test_since(log: Path) -> None:
    # line i is stamped T0+i+0.123: since T0+7 keeps 7, 8 and 9
    assert await collect(log, since_time=T0 + 7) == b"line 7\nline 8\nline 9\n"
    # the tail is taken first, then --since filters it (kubelet's order)
    assert await collect(log, tail_lines=2, since_time=T0 + 5) == b"line 8\nline 9\n"
    assert await collect(log, tail_lines=5, since_time=T0 + 8) == b"line 8\nline 9\n"


async def test_timestamps(log: Path) -> None:
    out = await collect(log, tail_lines=1, timestamps=True)
    assert out == b"2023-11-14T22:13:29.123Z line 9\n"


async def test_limit_bytes(log: Path) -> None:
    assert await collect(log, limit_bytes=10) == b"line 0\nlin"
    assert await collect(log, limit_bytes=7) == b"line 0\n"
    assert await collect(log, limit_bytes=10_000) == await collect(log)
    # the prefixes count: 25 bytes of time and space, then "line 0\n"
    assert await collect(log, limit_bytes=33, timestamps=True) == (
        b"2023-11-14T22:13:20.123Z line 0\n2")


async def test_partial_lines_joined(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path,
          cri(0, "hel", tag="P"),
          cri(1, "oops", stream="stderr"),
          cri(2, "lo ", tag="P"),
          cri(3, "world"),
          cri(4, "next"))
    assert await collect(path) == b"oops\nhello world\nnext\n"
    # a joined line is one line for --tail and carries its first chunk's time
    assert await collect(path, tail_lines=2, timestamps=True) == (
        f"{stamp(0, 123_000_000)} hello world\n{stamp(4, 123_000_000)} next\n".encode())


async def test_unfinished_last_line(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path, cri(0, "done"), cri(1, "half", tag="P"))
    assert await collect(path) == b"done\nhalf\n"
    # a physical line the writer has not finished yet (no newline) is read as it is
    write(path, cri(0, "a"), f"{stamp(1)} stdout F b")
    assert await collect(path) == b"a\nb\n"


async def test_rotated_files_in_order(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(Path(f"{path}.3"), cri(0, "r3a"), cri(1, "r3b"))
    write(Path(f"{path}.2"), cri(2, "r2"))
    write(Path(f"{path}.1"), cri(3, "r1a"), cri(4, "split ", tag="P"))
    write(path, cri(5, "line"), cri(6, "current"))
    assert log_files(str(path)) == [f"{path}.3", f"{path}.2", f"{path}.1", str(path)]
    assert await collect(path) == b"r3a\nr3b\nr2\nr1a\nsplit line\ncurrent\n"
    assert await collect(path, tail_lines=4) == b"r2\nr1a\nsplit line\ncurrent\n"
    assert await collect(path, tail_lines=1) == b"current\n"


async def _next(it: AsyncIterator[bytes], within: float = 3.0) -> bytes:
    return await asyncio.wait_for(it.__anext__(), within)


async def test_follow_appends_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path, cri(0, "first"), cri(1, "second"))
    running = True

    async def alive() -> bool:
        return running

    it = read_logs(str(path), LogOptions(follow=True, tail_lines=1), alive=alive,
                   poll_interval=0.02)
    try:
        assert await _next(it) == b"second\n"
        write(path, cri(2, "third"), mode="a")
        assert await _next(it) == b"third\n"
        # a line written in two steps is sent once complete
        write(path, f"{stamp(3)} stdout F fou", mode="a")
        await asyncio.sleep(0.1)
        write(path, "rth\n", mode="a")
        assert await _next(it) == b"fourth\n"
        # rotation: the old file gets a last line after we read it, then is renamed
        write(path, cri(4, "before rotation"), mode="a")
        os.rename(path, f"{path}.1")
        write(path, cri(5, "after rotation"))
        got = b""
        while b"after rotation" not in got:
            got += await _next(it)
        assert got == b"before rotation\nafter rotation\n"
        # the container exits: its last lines are drained, then the stream ends
        write(path, cri(6, "last words"), mode="a")
        running = False
        rest = [c async for c in it]
        assert b"".join(rest) == b"last words\n"
    finally:
        await it.aclose()  # type: ignore[attr-defined]


async def test_follow_waits_for_the_file_and_stops_at_limit(tmp_path: Path) -> None:
    path = tmp_path / "0.log"

    async def alive() -> bool:
        return True

    it = read_logs(str(path), LogOptions(follow=True, limit_bytes=8), alive=alive,
                   poll_interval=0.02)
    try:
        task = asyncio.ensure_future(_next(it))
        await asyncio.sleep(0.1)
        assert not task.done()
        write(path, cri(0, "hello"), cri(1, "world"))
        assert await task == b"hello\nwo"
        with pytest.raises(StopAsyncIteration):
            await _next(it)
    finally:
        await it.aclose()  # type: ignore[attr-defined]


async def test_follow_without_alive_stops_on_cancel(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path, cri(0, "x"))
    it = read_logs(str(path), LogOptions(follow=True), poll_interval=0.02)
    assert await _next(it) == b"x\n"
    task = asyncio.ensure_future(_next(it))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await it.aclose()  # type: ignore[attr-defined]
