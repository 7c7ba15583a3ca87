"""Memory benchmark: the server's RSS under parallel oversized requests.

``--parallel`` (default 8) clients each send ``--rounds`` (default 3) creates of a ConfigMap
of ``--size`` (default 100 MB) at once. The server caps requests at ``--max-request-bytes``
(default 3Mi) in gRPC's transport, before decoding, so every one is refused and the
server's resident memory should barely move. Reported: the server's RSS (``VmRSS``) before,
its peak (sampled every 50 ms) and after, and the refusals' status codes. Pass
``--max-request-bytes 256Mi`` to see the uncapped behaviour for comparison.

The server runs alone (``--disable scheduler,controllers``) in a subprocess. Run from the
repository root::

    .venv/bin/python -m bench.large_request_rss
    .venv/bin/python -m bench.large_request_rss --max-request-bytes 256Mi
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sys
import tempfile
from pathlib import Path

import grpc

import bench
from bench.watchcache_rss import rss_mib
from control.api.pb import api_pb2, api_pb2_grpc, core_pb2
from control.client.channel import open_channel


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="flotilla-bigreq-") as tmp:
        work = Path(tmp)
        data = work / "data"
        sp, _ = await asyncio.to_thread(
            bench.start_cli_server, data, work, "server", "127.0.0.1:0",
            "--max-request-bytes", args.max_request_bytes)
        try:
            from control.client.config import read_config_file

            cfg = read_config_file(data / "admin.conf")
            channels = [open_channel(cfg.server, cfg.credentials) for _ in range(args.parallel)]
            cm = core_pb2.ConfigMap()
            cm.metadata.namespace = "default"
            cm.data["payload"] = "a" * args.size
            codes: collections.Counter[str] = collections.Counter()
            before = rss_mib(sp.pid)
            peak = before
            done = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_mib(sp.pid))
                    await asyncio.sleep(0.05)

            async def flood(i: int, channel: grpc.aio.Channel) -> None:
                stub = api_pb2_grpc.ApiStub(channel)
                for r in range(args.rounds):
                    cm.metadata.name = f"big-{i}-{r}"
                    req = api_pb2.CreateRequest(resource="configmaps", namespace="default",
                                                object=cm.SerializeToString())
                    try:
                        await stub.Create(req, timeout=120)
                        codes["OK"] += 1
                    except grpc.aio.AioRpcError as e:
                        codes[e.code().name] += 1

            sampler = asyncio.ensure_future(sample())
            await asyncio.gather(*(flood(i, ch) for i, ch in enumerate(channels)))
            done.set()
            await sampler
            await asyncio.sleep(1)
            after = rss_mib(sp.pid)
            for ch in channels:
                await ch.close(None)
            print(f"cap {args.max_request_bytes}: {args.parallel} x {args.rounds} creates of "
                  f"{args.size / 1e6:.0f} MB -> {dict(codes)}; server RSS before {before:.0f} "
                  f"MiB, peak {peak:.0f} MiB, after {after:.0f} MiB")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(sp.stop)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=100_000_000)
    p.add_argument("--max-request-bytes", default="3Mi")
    asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
