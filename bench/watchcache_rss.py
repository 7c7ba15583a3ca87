"""Memory benchmark: the server's RSS under a flood of patches to one large ConfigMap.

Each patch of a ``--size`` (default 1 MB) ConfigMap adds one event of that size to the
watch cache's window; the window is bounded in bytes (``--watch-cache-size-bytes``, default
256Mi, a quarter of it per kind), so the server's resident memory must level off instead of
growing with every patch. ``--patches`` (default 600) merge patches are sent one after the
other; the server's RSS (``VmRSS``) is sampled every ``--every`` patches. Reported: RSS
before the flood, at each sample, at the end, and the growth beyond the first window's
worth. For comparison the same flood can be run with a smaller or larger window
(``--watch-cache-size-bytes 64Mi``).

The server runs alone (``--disable scheduler,controllers``) in a subprocess. Run from the
repository root::

    .venv/bin/python -m bench.watchcache_rss
    .venv/bin/python -m bench.watchcache_rss --patches 1200 --watch-cache-size-bytes 64Mi
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import bench
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="flotilla-rss-") as tmp:
        work = Path(tmp)
        data = work / "data"
        sp, _ = await asyncio.to_thread(
            bench.start_cli_server, data, work, "server", "127.0.0.1:0",
            "--watch-cache-size-bytes", args.watch_cache_size_bytes)
        try:
            from control.client.config import read_config_file

            cfg = read_config_file(data / "admin.conf")
            address = cfg.server
            channel = open_channel(address, cfg.credentials)
            client = ApiClient(channel, timeout=60)
            cm = core_pb2.ConfigMap()
            cm.metadata.name = "big"
            cm.metadata.namespace = "default"
            cm.data["payload"] = "a" * args.size
            await client.create(cm)
            before = rss_mib(sp.pid)
            print(f"RSS before the flood: {before:.0f} MiB "
                  f"(window {args.watch_cache_size_bytes}, {args.size:,} B objects)")
            samples = []
            t0 = time.monotonic()
            for i in range(1, args.patches + 1):
                payload = chr(ord("a") + i % 26) * args.size
                await client.patch(core_pb2.ConfigMap, "big", {"data": {"payload": payload}},
                                   "default")
                if i % args.every == 0:
                    samples.append((i, rss_mib(sp.pid)))
                    print(f"after {i:>5} patches: RSS {samples[-1][1]:6.0f} MiB "
                          f"({i / (time.monotonic() - t0):.0f} patches/s)", flush=True)
            await channel.close(None)
            after = rss_mib(sp.pid)
            half = [r for n, r in samples if n >= args.patches // 2]
            print(f"RSS at the end: {after:.0f} MiB; growth over the second half of the "
                  f"flood: {max(half) - min(half):.0f} MiB; peak {max(r for _, r in samples):.0f} "
                  f"MiB; {args.patches * args.size / 2**20:.0f} MiB of events sent in total")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(sp.stop)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patches", type=int, default=600)
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--watch-cache-size-bytes", default="256Mi")
    asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
