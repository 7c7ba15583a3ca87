"""Benchmark: SqliteStore write throughput against the raw SQLite commit limit, one run.

Measures, on the same disk and in the same process:
  1. raw aiosqlite, WAL, synchronous=FULL, one 1 KB row per transaction (the fsync limit
     the store must beat with group commit);
  2. SqliteStore.create at concurrency 1 (no batching possible: the per-write overhead);
  3. SqliteStore.create at concurrency 64 (group commit: many writes per fsync);
  2'/3'. the same without the high-water mark file (its pwrite + fdatasync per batch, which
     lets a damaged log be detected at open), to show what the mark costs.
Prints writes/s, the ratio to (1), transactions and writes per transaction, and p50/p99
latency. Usage: ``python bench/store_commit.py [seconds-per-case]`` (default 4; < 30 s).

Concurrency: a single asyncio program; each case runs alone in its own temp directory.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from control.store.sqlite import SqliteStore  # noqa: E402

VALUE = b"v" * 1024


@dataclass
class Result:
    name: str
    writes: int
    seconds: float
    commits: int
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.writes / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000


async def raw_sqlite(path: str, duration: float) -> Result:
    db = await aiosqlite.connect(path)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
        await db.commit()
        lat: list[float] = []
        n = 0
        start = time.perf_counter()
        end = start + duration
        while (t0 := time.perf_counter()) < end:
            await db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"/k/{n}", VALUE))
            await db.commit()
            lat.append(time.perf_counter() - t0)
            n += 1
        return Result("raw aiosqlite, 1 row/tx", n, time.perf_counter() - start, n, lat)
    finally:
        await db.close()


async def store_creates(path: str, duration: float, concurrency: int,
                        mark: bool = True) -> Result:
    store = await SqliteStore.open(path)
    if not mark:
        backend: Any = store._backend  # a benchmark-only switch, to price the mark
        backend.mark.close()
        backend.mark = None
    try:
        lat: list[float] = []
        end = time.perf_counter() + duration
        commits0 = store.commits

        async def worker(w: int) -> int:
            i = 0
            while (t0 := time.perf_counter()) < end:
                await store.create(f"/k/{w}/{i}", VALUE)
                lat.append(time.perf_counter() - t0)
                i += 1
            return i

        start = time.perf_counter()
        counts = await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
        name = f"SqliteStore.create, c={concurrency}" + ("" if mark else ", no mark")
        return Result(name, sum(counts), elapsed,
                      store.commits - commits0, lat)
    finally:
        await store.close()


async def main(duration: float) -> None:
    # TMPDIR picks the disk; it must not be a tmpfs, where fsync is free and the
    # figures would mean nothing.
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp:
        base = await raw_sqlite(f"{tmp}/raw.db", duration)
        results = [base]
        for c in (1, 64):
            for mark in (True, False):
                results.append(await store_creates(f"{tmp}/store{c}{mark}.db", duration, c,
                                                   mark))
    print(f"{'case':<37} {'writes/s':>10} {'x raw':>7} {'tx':>7} {'writes/tx':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7}")
    for r in results:
        print(f"{r.name:<37} {r.rate:>10,.0f} {r.rate / base.rate:>7.2f} {r.commits:>7} "
              f"{r.writes / max(r.commits, 1):>9.1f} {r.pct(0.5):>7.2f} {r.pct(0.99):>7.2f}")
    if base.latencies:
        print(f"(raw commit mean {statistics.mean(base.latencies) * 1000:.2f} ms; "
              f"{duration:.0f} s per case)")


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0))
