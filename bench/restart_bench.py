"""Restart benchmark: how informers come back after `flotilla server` restarts.

``--informers`` informers (default 20, the reflector and backoff the agents use) follow the
ConfigMaps of one namespace through one connection, as a fleet of agents would. Each round:
``--writes`` Secrets are written (the store moves on while the informers' last
resourceVersion stays where it was, as for an agent whose pods did not change), the server
is stopped (SIGTERM; ``--kill``: SIGKILL) and started again on the same data directory and
port, and a marker ConfigMap is written as soon as it serves. Measured per restart:

- downtime: stop requested -> the new server serves (its admin.conf is written);
- resume: the new server serves -> each informer holds the marker (its watch is back);
- relists: full lists the informers made (each one is a "resourceVersion too old").

The server runs alone (``--disable scheduler,controllers``) in a subprocess; the informers
and the writer run in this process. Run from the repository root::

    .venv/bin/python -m bench.restart_bench                  # 20 restarts, 20 informers
    .venv/bin/python -m bench.restart_bench --restarts 5 --kill
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench
from control.api import errors
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.listwatch import ApiListWatcher
from control.runtime.informer import SharedInformer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def named(kind: type, name: str) -> Any:
    o = kind()
    o.metadata.name = name
    o.metadata.namespace = "default"
    return o


async def create_when_reachable(client: ApiClient, obj: Any, within: float = 30.0) -> None:
    """Create ``obj``, retrying while the connection to the restarted server comes back."""
    deadline = time.monotonic() + within
    while True:
        try:
            await client.create(obj)
            return
        except errors.ServiceUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="flotilla-restart-") as tmp:
        work = Path(tmp)
        data = work / "data"
        port = free_port()
        sp, _ = await asyncio.to_thread(
            bench.start_cli_server, data, work, "server0", f"127.0.0.1:{port}")
        channel = open_channel(f"127.0.0.1:{port}", bench.admin_credentials(data))
        client = ApiClient(channel, timeout=10)
        informers: list[SharedInformer[Any]] = [
            SharedInformer(f"cm{i}", ApiListWatcher(client, "configmaps", "default"))
            for i in range(args.informers)]
        tasks = [asyncio.create_task(inf.run(), name=f"informer-{i}")
                 for i, inf in enumerate(informers)]
        rows: list[tuple[int, float, list[float], int]] = []
        try:
            await client.create(named(core_pb2.ConfigMap, "start"))
            for inf in informers:
                assert await inf.wait_for_sync(30)
            for r in range(1, args.restarts + 1):
                for i in range(args.writes):
                    await client.create(named(core_pb2.Secret, f"s{r}-{i}"))
                lists_before = sum(inf.reflector.lists for inf in informers)
                t_stop = time.monotonic()
                await asyncio.to_thread(sp.kill if args.kill else sp.stop)
                sp, t_ready = await asyncio.to_thread(
                    bench.start_cli_server, data, work, f"server{r}", f"127.0.0.1:{port}")
                marker = f"marker{r}"
                await create_when_reachable(client, named(core_pb2.ConfigMap, marker))
                resumed: dict[int, float] = {}
                async with asyncio.timeout(120):
                    while len(resumed) < len(informers):
                        for i, inf in enumerate(informers):
                            if i not in resumed and inf.indexer.get(f"default/{marker}"):
                                resumed[i] = time.monotonic() - t_ready
                        await asyncio.sleep(0.005)
                relists = sum(inf.reflector.lists for inf in informers) - lists_before
                rows.append((r, t_ready - t_stop, list(resumed.values()), relists))
                print(f"restart {r:>3}: downtime {t_ready - t_stop:5.2f} s, resume p50 "
                      f"{pct(list(resumed.values()), 0.5):5.2f} s max "
                      f"{max(resumed.values()):5.2f} s, relists {relists}", flush=True)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await channel.close(None)
            await asyncio.to_thread(sp.stop)
    resumes = [v for _, _, vals, _ in rows for v in vals]
    downtimes = [d for _, d, _, _ in rows]
    restarts_with_relist = sum(1 for *_, n in rows if n)
    print(f"\n{len(rows)} restarts ({'SIGKILL' if args.kill else 'SIGTERM'}), "
          f"{args.informers} informers, {args.writes} writes to another kind per round")
    print(f"downtime (stop -> serving): p50 {statistics.median(downtimes):.2f} s, "
          f"max {max(downtimes):.2f} s")
    print(f"resume (serving -> informer back): p50 {pct(resumes, 0.5):.2f} s, "
          f"p99 {pct(resumes, 0.99):.2f} s, max {max(resumes):.2f} s")
    print(f"relists: {sum(n for *_, n in rows)} in total; restarts with a relist: "
          f"{restarts_with_relist} of {len(rows)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--restarts", type=int, default=20)
    p.add_argument("--informers", type=int, default=20)
    p.add_argument("--writes", type=int, default=50,
                   help="writes to another kind before each restart (default 50)")
    p.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
