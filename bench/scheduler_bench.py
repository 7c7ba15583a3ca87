"""Scheduler throughput: pods/s and latency on hollow nodes.

Setup (not measured): a Flotilla server in a subprocess with its own scheduler and
controllers disabled; ``--nodes`` hollow nodes (bench.hollow_nodes, 10 zones); ``--pods``
pending pods created through the API. Measured: a ``Scheduler`` in this process starts,
syncs its informers, and schedules every pod; the clock runs from the end of the sync to
the last successful bind. The server and the scheduler use one core each, as a standalone
``flotilla scheduler`` would.

Workloads (``--workload``):
- ``basic``: pods with cpu/memory requests only (kube's SchedulingBasic);
- ``anti-affinity``: required pod anti-affinity over hostname against pods of the same
  group (groups of 10 replicas; kube's SchedulingPodAntiAffinity);
- ``spread``: topology spread over zones, maxSkew 1, DoNotSchedule, per group of 100.

Reported: pods/s; per-pod scheduling cycle time (the algorithm: p50/p99); bind round trip
(p50/p99); queue-to-bound latency (p50/p99, includes waiting in the queue behind the
other pods, as all are pending at once); scheduler CPU. ``--fake-bind`` replaces the API
binding by a no-op, which measures the algorithm alone. ``--profile FILE`` runs the
measured phase under cProfile and prints the top functions.

    .venv/bin/python -m bench.scheduler_bench --nodes 1000 --pods 10000
    .venv/bin/python -m bench.scheduler_bench --nodes 5000 --pods 10000 --workload anti-affinity
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import bench
from bench.hollow_nodes import register
from control.api.pb import core_pb2, meta_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.scheduler import config as configmod
from control.scheduler.framework import CycleState, Framework, Status
from control.scheduler.queue import QueuedPodInfo
from control.scheduler.scheduler import DEFAULT_BIND_CONCURRENCY, Scheduler
from control.scheduler.types import PodInfo

try:
    import uvloop  # noqa: F401 - only whether it is there

    _HAVE_UVLOOP = True
except ImportError:  # pragma: no cover - optional dependency
    _HAVE_UVLOOP = False


def _server_main() -> None:
    """Subprocess entry: a control plane without scheduler and controllers."""
    data_dir, addr_file = sys.argv[1], sys.argv[2]

    async def main() -> None:
        from control import logs
        from control.server import ControlPlane, ServerOptions

        logs.configure("warning", "json")
        cp = ControlPlane(ServerOptions(data_dir=Path(data_dir), listen="127.0.0.1:0",
                                        disable={"scheduler", "controllers"}))
        address = await cp.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        bench.write_address(addr_file, address)
        try:
            await stop.wait()
        finally:
            await cp.stop()

    bench.run(main, "--uvloop" in sys.argv)


def make_pod(i: int, workload: str) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = f"pod-{i:06d}"
    p.metadata.namespace = "default"
    c = p.spec.containers.add(name="c", image="registry.k8s.io/pause:3.9")
    c.resources.requests["cpu"].string = "100m"
    c.resources.requests["memory"].string = "500Mi"
    p.spec.scheduler_name = "default-scheduler"
    if workload == "anti-affinity":
        group = f"g{i // 10}"
        p.metadata.labels["group"] = group
        term = p.spec.affinity.pod_anti_affinity.\
            required_during_scheduling_ignored_during_execution.add()
        term.label_selector.CopyFrom(meta_pb2.LabelSelector(match_labels={"group": group}))
        term.topology_key = "kubernetes.io/hostname"
    elif workload == "spread":
        group = f"s{i // 100}"
        p.metadata.labels["group"] = group
        p.spec.topology_spread_constraints.add(
            max_skew=1, topology_key="topology.kubernetes.io/zone",
            when_unsatisfiable="DoNotSchedule",
            label_selector=meta_pb2.LabelSelector(match_labels={"group": group}))
    return p


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


class BenchScheduler(Scheduler):
    """The real scheduler, plus exact per-pod samples (the metrics keep only buckets)."""

    def __init__(self, *a: Any, fake_bind: bool = False, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.cycle: list[float] = []
        self.bind_rtt: list[float] = []
        self.e2e: list[float] = []
        self.done = asyncio.Event()
        self.target = 0
        self.fake_bind = fake_bind
        for fw in self.frameworks.values():
            self._wrap_bind(fw)

    def _wrap_bind(self, fw: Framework) -> None:
        real = fw.run_bind
        sched = self

        async def run_bind(state: CycleState, pod: PodInfo, node: str) -> Status | None:
            t = time.perf_counter()
            st = None if sched.fake_bind else await real(state, pod, node)
            sched.bind_rtt.append(time.perf_counter() - t)
            return st

        fw.run_bind = run_bind  # type: ignore[method-assign, assignment]

    def _observe(self, start: float, result: str, fw: Framework) -> None:
        self.cycle.append(self._clock.monotonic() - start)
        super()._observe(start, result, fw)

    async def _bind(self, fw: Framework, state: CycleState, q: QueuedPodInfo, node: str) -> None:
        await super()._bind(fw, state, q, node)
        self.e2e.append(self._clock.monotonic() - q.timestamp)
        if self.scheduled >= self.target:
            self.done.set()


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    with bench.temp_workdir("flotilla-sched-bench-") as work:
        code = "from bench.scheduler_bench import _server_main; _server_main()"
        argv = [bench.PYTHON, "-c", code, str(work / "data"), str(work / "server.addr")]
        if args.uvloop:
            argv.append("--uvloop")
        server = bench.ServerProcess("server", argv, work)
        try:
            address = server.wait_ready()
            channel = open_channel(address, bench.admin_credentials(work / "data"))
            client = ApiClient(channel, address, timeout=60)
            t0 = time.perf_counter()
            await register(client, args.nodes, concurrency=64)
            t_nodes = time.perf_counter() - t0
            t0 = time.perf_counter()
            sem = asyncio.Semaphore(64)

            async def create(i: int) -> None:
                async with sem:
                    await client.create(make_pod(i, args.workload))

            await asyncio.gather(*(create(i) for i in range(args.pods)))
            t_pods = time.perf_counter() - t0
            print(f"setup: {args.nodes} nodes in {t_nodes:.1f} s, {args.pods} pods in "
                  f"{t_pods:.1f} s", flush=True)

            cfg = configmod.default_config()
            cfg.percentage_of_nodes_to_score = args.percentage
            sched = BenchScheduler(client, cfg, fake_bind=args.fake_bind, sync_timeout=120,
                                   bind_concurrency=args.bind_concurrency)
            sched.target = args.pods
            sched.events.max_pending = 0 if args.no_events else sched.events.max_pending
            if args.event_writers:
                sched.events.writers = args.event_writers
            await sched.start()
            server_cpu0 = bench.process_cpu_seconds(server.pid)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            prof = cProfile.Profile() if args.profile else None
            if prof is not None:
                prof.enable()
            try:
                await asyncio.wait_for(sched.done.wait(), args.timeout)
            except TimeoutError:
                print(f"timeout: {sched.scheduled}/{args.pods} bound", flush=True)
            elapsed = time.perf_counter() - t0
            if prof is not None:
                prof.disable()
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            server_cpu = bench.process_cpu_seconds(server.pid) - server_cpu0
            events_at_end = sched.events.written
            # The Events still queued when the last pod is bound: time until written.
            await sched.events.flush(60.0)
            events_elapsed = time.perf_counter() - t0
            await sched.stop()
            await channel.close(None)
        finally:
            server.stop()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result = {
        "workload": args.workload, "nodes": args.nodes, "pods": args.pods,
        "bound": sched.scheduled, "seconds": elapsed,
        "pods_per_s": sched.scheduled / elapsed if elapsed else 0.0,
        "cycle_p50_ms": pct(sched.cycle, 0.5) * 1e3, "cycle_p99_ms": pct(sched.cycle, 0.99) * 1e3,
        "bind_p50_ms": pct(sched.bind_rtt, 0.5) * 1e3, "bind_p99_ms": pct(sched.bind_rtt, 0.99) * 1e3,
        "e2e_p50_s": pct(sched.e2e, 0.5), "e2e_p99_s": pct(sched.e2e, 0.99),
        "scheduler_cpu_s": cpu, "server_cpu_s": server_cpu,
        "fake_bind": args.fake_bind, "uvloop": args.uvloop,
        "bind_concurrency": args.bind_concurrency,
        "events_written_by_last_bind": events_at_end, "events_written": sched.events.written,
        "events_dropped": sched.events.dropped,
        "pods_per_s_events_included": sched.scheduled / events_elapsed if events_elapsed else 0.0,
        "unschedulable": sched.metrics.registry.value(
            "scheduler_schedule_attempts_total",
            {"result": "unschedulable", "profile": "default-scheduler"}),
    }
    if prof is not None:
        prof.dump_stats(args.profile)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        result["profile_top"] = out.getvalue()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description="Scheduler throughput on hollow nodes.")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=10000)
    p.add_argument("--workload", choices=("basic", "anti-affinity", "spread"), default="basic")
    p.add_argument("--percentage", type=int, default=0,
                   help="percentageOfNodesToScore (0: Kubernetes' adaptive default)")
    p.add_argument("--bind-concurrency", type=int, default=DEFAULT_BIND_CONCURRENCY)
    p.add_argument("--fake-bind", action="store_true", help="measure the algorithm alone")
    p.add_argument("--no-events", action="store_true", help="do not write Scheduled events")
    p.add_argument("--event-writers", type=int, default=0,
                   help="Event writes in flight (0: the recorder's default)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=_HAVE_UVLOOP,
                   help="run both processes on uvloop, as the CLI does when it is installed "
                        "(default: when importable)")
    p.add_argument("--profile", metavar="FILE", help="cProfile the measured phase")
    args = p.parse_args()
    r = bench.run(lambda: run_bench(args), args.uvloop)
    top = r.pop("profile_top", None)
    print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    if top:
        print(top)


if __name__ == "__main__":
    main()
