"""What the connection front costs: creates/s and latency through it vs gRPC listening
directly, on two `flotilla server` processes started alike (controllers and scheduler off),
one with ``--max-connections-per-source`` (the front splices every byte once more in the
server's process) and one without, measured in interleaved rounds (a shared machine).

    .venv/bin/python -m bench.connfront_bench [--rounds 3] [--count 2000] [--concurrency 64]

Concurrency contract: one event loop in this process (the client); the servers are
subprocesses, stopped before the results are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench import admin_credentials, start_cli_server
from control.api.pb import core_pb2, meta_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient


async def _round(address: str, data: Path, count: int, concurrency: int,
                 tag: str) -> tuple[float, float, float]:
    channel = open_channel(address, admin_credentials(data))
    client = ApiClient(channel, address, timeout=60)
    latencies: list[float] = []
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            cm = core_pb2.ConfigMap(metadata=meta_pb2.ObjectMeta(
                name=f"{tag}-{i}", namespace="default"))
            cm.data["k"] = "v" * 1000
            t = time.perf_counter()
            await client.create(cm)
            latencies.append(time.perf_counter() - t)

    try:
        await client.discovery()  # connected before the clock starts
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        await channel.close(None)
    latencies.sort()
    return (count / elapsed, latencies[len(latencies) // 2] * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000)


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="connfront-"))
    servers = {}
    try:
        for name, flags in (("direct", ()), ("front", ("--max-connections-per-source",
                                                       "100"))):
            data = work / name
            sp, _ = await asyncio.to_thread(start_cli_server, data, work, name,
                                            "127.0.0.1:0", *flags)
            from control.client.config import read_config_file

            servers[name] = (sp, read_config_file(data / "admin.conf").server, data)
        results: dict[str, list[tuple[float, float, float]]] = {n: [] for n in servers}
        for r in range(args.rounds):
            for name, (_, address, data) in servers.items():
                results[name].append(await _round(address, data, args.count,
                                                  args.concurrency, f"r{r}"))
        print(f"{args.count} creates of a 1 KB ConfigMap at concurrency {args.concurrency}, "
              f"{args.rounds} interleaved rounds (medians)")
        for name, rows in results.items():
            rate = statistics.median(x[0] for x in rows)
            p50 = statistics.median(x[1] for x in rows)
            p99 = statistics.median(x[2] for x in rows)
            print(f"{name:7s} {rate:8.0f} creates/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
                  f"rounds {[round(x[0]) for x in rows]}")
    finally:
        for sp, _, _ in servers.values():
            await asyncio.to_thread(sp.stop)
        await asyncio.to_thread(shutil.rmtree, work, True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
