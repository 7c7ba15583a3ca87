"""CLI benchmark: the wall time of one ``flotilla`` call, against bare Python on the same machine.

A CLI call is a short process: what it imports and how it connects is most of what it
costs, and scripts call it hundreds of times. What it measures, in one run:

- **python -c pass**: the interpreter alone (the venv's, with its site set-up);
- **python -c 'import grpc'**: the least any gRPC client pays;
- **import grpc + Pod message** (reference): ``grpc`` plus the generated modules a client
  needs to decode pods (protobuf's runtime, ``core_pb2``, ``api_pb2_grpc``): the floor of
  any ``get pods`` written in Python with these libraries;
- **flotilla version --client**: no server, no gRPC, no protobuf;
- **flotilla get pods**: against a Flotilla server started in a temporary data dir (as the
  other benchmarks do, controllers and scheduler off so the server is idle), holding
  ``--pods`` pending pods in ``default``, found through the data dir's ``admin.conf``
  (``FLOTILLA_CONFIG``) as a user's shell would.

Every command runs once per round, in the same order, for ``--rounds`` rounds after
``--warmup`` unmeasured ones (the OS page cache and the bytecode caches are warm, as for
a user's second call; the caches live in the temporary directory, ``PYTHONPYCACHEPREFIX``,
and are written even where ``PYTHONDONTWRITEBYTECODE`` is set: without them every call
compiles every module it imports, which is not what a user runs). Reported: median and p90 wall time of each command, and the goals'
ratios: ``get pods`` / ``import grpc`` (goal <= 1.6) and ``version --client`` against
``1.3 x pass + 50 ms`` (goal <= 1.0). The "others CPU" column is the CPU the rest of the
machine used per round (noise: rerun when it is high). Run from the repository root::

    .venv/bin/python -m bench.cli_bench                  # 30 rounds, 20 pods
    .venv/bin/python -m bench.cli_bench --rounds 60 --pods 100 --json /tmp/cli.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import bench

GET_PODS_GOAL = 1.6  # x `python -c 'import grpc'`
VERSION_FACTOR, VERSION_SLACK = 1.3, 0.050  # x `python -c pass`, + seconds


@dataclass
class Row:
    name: str
    median_s: float
    p90_s: float
    others_cpu_s: float  # median CPU-seconds the rest of the machine used during one run


def flotilla_command() -> list[str]:
    """The ``flotilla`` console script next to this interpreter, as a user runs it."""
    script = Path(sys.executable).with_name("flotilla")
    if script.exists():
        return [str(script)]
    return [bench.PYTHON, "-c", "import sys; from control.cli.main import main; sys.exit(main())"]


async def create_pods(address: str, count: int) -> None:
    from control.api.pb import core_pb2, meta_pb2
    from control.client.channel import open_channel
    from control.client.client import ApiClient

    channel = open_channel(address, bench.credentials_for(address) or bench.Credentials())
    try:
        client = ApiClient(channel, address)
        for i in range(count):
            pod = core_pb2.Pod(
                metadata=meta_pb2.ObjectMeta(name=f"bench-{i:04d}", namespace="default"),
                spec=core_pb2.PodSpec(
                    containers=[core_pb2.Container(name="c", image="busybox:1.36")]
                ),
            )
            await client.create(pod)
    finally:
        await channel.close(None)


def time_once(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU-seconds used by the rest of the machine, stdout) of one run."""
    m0 = bench.machine_busy_seconds()
    c0 = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=bench.REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    c1 = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{proc.stderr}")
    child = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    others = max(0.0, bench.machine_busy_seconds() - m0 - child)
    return wall, others, proc.stdout


def run(args: argparse.Namespace) -> list[Row]:
    with bench.temp_workdir("flotilla-cli-bench-") as work:
        data = work / "data"
        server = bench.start_flotilla(data, work, disable="controllers,scheduler")
        try:
            asyncio.run(create_pods(server.address, args.pods))
            env = dict(os.environ, FLOTILLA_CONFIG=str(data / "admin.conf"))
            # Bytecode caches as an installed package has them (pip compiles at install),
            # kept in the work dir rather than the tree, filled by the warm-up rounds.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(bench.REPO), env.get("PYTHONPATH")])
            )
            flotilla = flotilla_command()
            commands = {
                "python -c pass": [bench.PYTHON, "-c", "pass"],
                "python -c 'import grpc'": [bench.PYTHON, "-c", "import grpc"],
                "import grpc + Pod message": [
                    bench.PYTHON,
                    "-c",
                    "import grpc; from control.api.pb import core_pb2, api_pb2_grpc",
                ],
                "flotilla version --client": [*flotilla, "version", "--client"],
                "flotilla get pods": [*flotilla, "get", "pods"],
            }
            _, _, out = time_once(commands["flotilla get pods"], env)
            if args.pods and len(out.splitlines()) != args.pods + 1:
                raise RuntimeError(f"get pods printed an unexpected table:\n{out}")
            times: dict[str, list[float]] = {name: [] for name in commands}
            noise: dict[str, list[float]] = {name: [] for name in commands}
            for round_ in range(args.warmup + args.rounds):
                for name, argv in commands.items():
                    wall, others, _ = time_once(argv, env)
                    if round_ >= args.warmup:
                        times[name].append(wall)
                        noise[name].append(others)
        finally:
            server.stop()
    rows = []
    for name, ts in times.items():
        ts.sort()
        p90 = ts[min(len(ts) - 1, int(len(ts) * 0.9))]
        rows.append(Row(name, statistics.median(ts), p90, statistics.median(noise[name])))
    return rows


def report(rows: list[Row], args: argparse.Namespace) -> dict[str, float]:
    by = {r.name: r for r in rows}
    print(f"{args.rounds} rounds ({args.warmup} warm-up), {args.pods} pods, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'command':<30} {'median ms':>10} {'p90 ms':>8} {'others CPU ms':>14}")
    for r in rows:
        print(f"{r.name:<30} {r.median_s * 1000:>10.1f} {r.p90_s * 1000:>8.1f} "
              f"{r.others_cpu_s * 1000:>14.1f}")
    get_ratio = by["flotilla get pods"].median_s / by["python -c 'import grpc'"].median_s
    limit = VERSION_FACTOR * by["python -c pass"].median_s + VERSION_SLACK
    version_ratio = by["flotilla version --client"].median_s / limit
    floor_ratio = by["import grpc + Pod message"].median_s / by["python -c 'import grpc'"].median_s
    print(f"get pods / import grpc:              {get_ratio:.2f}  (goal <= {GET_PODS_GOAL})")
    print(f"import grpc + Pod message / grpc:    {floor_ratio:.2f}  (reference)")
    print(f"version --client / (1.3 x pass + 50 ms = {limit * 1000:.0f} ms): "
          f"{version_ratio:.2f}  (goal <= 1.0)")
    return {"get_pods_over_grpc": get_ratio, "version_over_limit": version_ratio,
            "floor_over_grpc": floor_ratio}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=30, help="measured rounds (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first (default 3)")
    ap.add_argument("--pods", type=int, default=20, help="pods get lists (default 20)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.pods < 0:
        ap.error("--rounds must be >= 1, --warmup and --pods >= 0")
    rows = run(args)
    ratios = report(rows, args)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": [asdict(r) for r in rows], "ratios": ratios, "rounds": args.rounds,
             "pods": args.pods}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
