"""The agent's CPU and memory at idle and with 100 pods (issue 3's benchmark).

``flotilla server`` and ``flotilla agent`` run as subprocesses with production defaults
(node status every 10 s, lease every 10 s, PLEG relist every 1 s, full resync every 60 s,
info logging). Two phases of ``--duration`` seconds each (default 30), sampled every second
from ``/proc/<pid>/stat`` (utime + stime) and ``/proc/<pid>/status`` (VmRSS):

1. idle: the node registered, no pods;
2. loaded: ``--pods`` pods (``sleep``) Running, measured after all of them are Running.

Also reported: the containers' monitor processes (one per container, ``agent/runtime/
monitor.py``, forked by one fork server per agent), whose memory is part of what a node
pays per pod: their PSS and the server's, divided by the Running containers. Target
(/work/shared/PERFORMANCE.md): agent RSS <= 60 MB.

    .venv/bin/python -m bench.agent_resources
    .venv/bin/python -m bench.agent_resources --pods 100 --duration 30 --py-spy /tmp/spy
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from bench import command_line, machine, process_cpu_seconds, run, summarize_collapsed, table
from bench.pod_startup import AgentCluster, create_and_wait, py_spy, workdir


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size (shared pages split between sharers); 0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Sample:
    cpu_percent: float  # of one core, averaged over the phase
    rss_avg_mb: float
    rss_max_mb: float


async def measure(pid: int, seconds: float) -> Sample:
    rss: list[int] = []
    cpu0, t0 = process_cpu_seconds(pid), time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        rss.append(rss_kib(pid))
        await asyncio.sleep(1.0)
    cpu = process_cpu_seconds(pid) - cpu0
    wall = time.monotonic() - t0
    return Sample(100 * cpu / wall, sum(rss) / len(rss) / 1024, max(rss) / 1024)


async def main_async(args: argparse.Namespace) -> None:
    with workdir(args.keep) as wd:
        cluster = AgentCluster(wd)
        try:
            await cluster.start()
            assert cluster.agent is not None and cluster.client is not None
            pid = cluster.agent.pid
            await asyncio.sleep(3)  # let start-up work (registration, first lists) settle
            idle = await measure(pid, args.duration)
            lat = await create_and_wait(cluster.client, args.pods, args.rate)
            await asyncio.sleep(3)
            async with py_spy(pid, args.py_spy) as spy_out:
                loaded = await measure(pid, args.duration)
            monitors = cluster.monitor_pids()
            mon_rss = [rss_kib(p) for p in monitors]
            mon_pss = [pss_kib(p) for p in monitors]
            print(f"# {command_line('bench.agent_resources')}")
            print(f"# {machine()}")
            print(table(
                ["phase", "pods", "agent CPU % of a core", "agent RSS avg MB",
                 "agent RSS max MB"],
                [["idle", 0, f"{idle.cpu_percent:.2f}", f"{idle.rss_avg_mb:.1f}",
                  f"{idle.rss_max_mb:.1f}"],
                 [f"{args.pods} pods Running", len(lat), f"{loaded.cpu_percent:.2f}",
                  f"{loaded.rss_avg_mb:.1f}", f"{loaded.rss_max_mb:.1f}"]]))
            if monitors:
                per = max(1, len(lat))
                print(f"\ncontainer monitors (and their fork server): {len(monitors)} "
                      f"processes, RSS {sum(mon_rss) / 1024:.0f} MB in total, PSS "
                      f"{sum(mon_pss) / 1024:.1f} MB in total: "
                      f"{sum(mon_pss) / per / 1024:.2f} MB PSS per Running container "
                      f"(amortised over {per})")
            if spy_out is not None and spy_out.exists():
                print(summarize_collapsed(spy_out))
        finally:
            await cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20.0, help="pods created per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    ap.add_argument("--py-spy", type=Path, default=None,
                    help="py-spy the agent during the loaded phase into DIR")
    ap.add_argument("--keep", action="store_true", help="keep the logs directory")
    run(lambda: main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
