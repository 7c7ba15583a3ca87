"""What writing Events costs the API server: one create per Event vs ``CreateMany``.

A Flotilla server (controllers and scheduler disabled, uvloop) in a subprocess; this process
records one Scheduled-style Event for each of ``--events`` distinct objects through an
``EventBroadcaster`` (4 writers, as every component), twice: with the client's
``create_many`` hidden (one ``Create`` per Event, the old path) and as is (up to 100 Events
per ``CreateMany`` call). The yardstick is ``Bind`` itself: ``--events`` pods created, then
bound at concurrency 64, as the scheduler does. Reported per phase: wall time, Events (or
binds) per second and the server's CPU per item, from /proc; the ratios of one run.

    .venv/bin/python -m bench.events_bench
    .venv/bin/python -m bench.events_bench --events 5000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import bench
from bench.hollow_nodes import register
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.runtime.events import NORMAL, EventBroadcaster


class _OneByOne:
    """The client without ``create_many``: the broadcaster then writes one Event a call."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client

    async def create(self, obj: Any) -> Any:
        return await self._client.create(obj)

    async def patch(self, resource: Any, name: str, patch: Any, namespace: str = "") -> Any:
        return await self._client.patch(resource, name, patch, namespace)


def _pod(name: str) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.spec.containers.add(name="c", image="registry.k8s.io/pause:3.9")
    return p


async def _events(sink: Any, prefix: str, n: int, pid: int) -> tuple[float, float]:
    b = EventBroadcaster(sink)
    rec = b.new_recorder("default-scheduler", "bench")
    task = asyncio.create_task(b.run(), name="event-writers")
    try:
        cpu0, t0 = bench.process_cpu_seconds(pid), time.perf_counter()
        for i in range(n):
            pod = _pod(f"{prefix}-{i:06d}")
            rec.event(pod, NORMAL, "Scheduled", f"Successfully assigned default/"
                      f"{pod.metadata.name} to hollow-node-{i % 100:05d}", action="Binding")
        await b.flush(600.0)
        wall, cpu = time.perf_counter() - t0, bench.process_cpu_seconds(pid) - cpu0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if b.written != n or b.dropped:
        raise SystemExit(f"{prefix}: {b.written} of {n} Events written, {b.dropped} dropped")
    return wall, cpu


async def _binds(client: ApiClient, n: int, pid: int) -> tuple[float, float]:
    sem = asyncio.Semaphore(64)

    async def create(i: int) -> None:
        async with sem:
            await client.create(_pod(f"bind-{i:06d}"))

    async def bind(i: int) -> None:
        async with sem:
            await client.bind("default", f"bind-{i:06d}", f"hollow-node-{i % 100:05d}")

    await asyncio.gather(*(create(i) for i in range(n)))
    cpu0, t0 = bench.process_cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(bind(i) for i in range(n)))
    return time.perf_counter() - t0, bench.process_cpu_seconds(pid) - cpu0


async def main_async(args: argparse.Namespace) -> None:
    with bench.temp_workdir("flotilla-events-bench-") as work:
        server = bench.start_flotilla(work / "data", work, use_uvloop=True,
                                      disable="controllers,scheduler")
        try:
            channel = open_channel(server.address, bench.admin_credentials(work / "data"))
            client = ApiClient(channel, server.address, timeout=120)
            await register(client, 100, concurrency=32)
            rows = []
            one = await _events(_OneByOne(client), "single", args.events, server.pid)
            many = await _events(client, "batched", args.events, server.pid)
            binds = await _binds(client, args.events, server.pid)
            for name, (wall, cpu) in (("Event, one Create each", one),
                                      ("Event, CreateMany (<= 100)", many),
                                      ("Bind (the yardstick)", binds)):
                rows.append([name, args.events, f"{wall:.1f}", f"{args.events / wall:,.0f}",
                             f"{cpu / args.events * 1e6:,.0f}",
                             f"{cpu / args.events / (binds[1] / args.events):.2f}"])
            await channel.close(None)
        finally:
            server.stop()
    print(f"# {bench.command_line('bench.events_bench')}")
    print(f"# {bench.machine()}")
    print(bench.table(["write", "n", "wall s", "per s", "server CPU us each",
                       "server CPU vs a bind"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=3000)
    args = ap.parse_args()
    bench.run(lambda: main_async(args), use_uvloop=True)


if __name__ == "__main__":
    main()
