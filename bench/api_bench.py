"""API write benchmark: create and update throughput and latency, Flotilla vs bare gRPC.

What it measures, in one run and on one machine:

- **echo** (the limit): a bare ``grpc.aio`` unary echo server (:mod:`bench._echo`) answering
  requests of the same size as Flotilla's create requests (~1.1 KB);
- **create**: ``ApiClient.create`` of ConfigMaps with ~1 KB of data (8 keys x 120 chars;
  ``--resource secrets``: Secrets with the same data);
- **update**: ``ApiClient.update`` of each of those ConfigMaps with the resourceVersion its
  previous write returned (compare-and-swap, so each worker owns its objects);

at every concurrency of ``--concurrency`` (closed loop: that many tasks, one channel, each
sending its next request as soon as the previous one answers). Reported: requests/s, p50 and
p99 latency, server and client CPU per request (from /proc), and Flotilla / echo ratios.
Targets (docs/benchmarks.md, /work/shared/PERFORMANCE.md): at concurrency 64 >= 80% of the
echo's throughput, p99 <= 50 ms, every acknowledged write durable.

Durability: after the runs the Flotilla server is killed with SIGKILL, restarted on the same
data directory, and every object must come back at the resourceVersion of its last
acknowledged write. (A process crash, not a power cut: the store's fsync policy, WAL with
``synchronous=FULL``, is what covers the latter.)

Servers run in subprocesses (server and client use both cores); the client is this process.
Both servers are up for the whole run, and for each concurrency the echo phase runs right
before Flotilla's create and update phases, so the figures of a ratio see the same machine;
the "others CPU" column is what the rest of the machine used during the phase (noise).
A warm-up of 300 requests per server is not measured. Run from the repository root::

    .venv/bin/python -m bench.api_bench                      # 5 s per phase, concurrency 1 and 64
    .venv/bin/python -m bench.api_bench --duration 3 --repeat 3   # medians of 3 (noisy machine)
    .venv/bin/python -m bench.api_bench --count 3000 --concurrency 1,16,64 --uvloop
    .venv/bin/python -m bench.api_bench --server-disable controllers,scheduler  # apiserver alone
    .venv/bin/python -m bench.api_bench --py-spy /tmp/prof   # profile the server at max concurrency
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

import bench
from bench import _echo
from control.api.pb import api_pb2, core_pb2, meta_pb2
from control.client.channel import CHANNEL_OPTIONS, open_channel
from control.client.client import ApiClient
from control.client.tls import Credentials

Job = Callable[[], Awaitable[Any]]

WARMUP_REQUESTS = 300


@dataclass
class Phase:
    target: str  # echo | flotilla
    op: str  # echo | create | update
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_us: float  # server CPU per request
    client_cpu_us: float  # client (this process) CPU per request
    other_cpu: float  # cores used by the rest of the machine during the phase (noise)
    errors: dict[str, int] = field(default_factory=dict)
    repeats: int = 1  # phases this row is the median of

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")


async def measure(target: str, op: str, concurrency: int,
                  jobs: Callable[[int], Iterator[Job]], duration: float | None,
                  server: bench.ServerProcess) -> Phase:
    """Run ``concurrency`` closed-loop workers over their jobs (until ``duration`` if set)."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    clock = time.perf_counter
    deadline = float("inf")

    async def worker(w: int) -> None:
        for job in jobs(w):
            t0 = clock()
            if t0 >= deadline:
                return
            try:
                await job()
            except Exception as e:
                errors[f"{type(e).__name__}: {str(e)[:80]}"] += 1
                continue
            latencies.append(clock() - t0)

    meter = bench.CpuMeter(server.pid)
    start = clock()
    if duration is not None:
        deadline = start + duration
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = clock() - start
    dt, server_cpu, client_cpu, other_cpu = meter.read()
    st = bench.stats(latencies, elapsed)
    n = max(st.count, 1)
    return Phase(target, op, concurrency, st.count, elapsed, st.p50_ms, st.p99_ms, st.max_ms,
                 1e6 * server_cpu / n, 1e6 * client_cpu / n, other_cpu / dt, dict(errors))


def _counter_jobs(counter: Iterator[int], count: int | None,
                  make: Callable[[int], Job]) -> Iterator[Job]:
    for i in counter:
        if count is not None and i >= count:
            return
        yield make(i)


# --resource: what is created and updated (ConfigMaps, which the controller manager's
# root-CA publisher also watches, or Secrets, which only the garbage collector watches)
RESOURCE = "configmaps"


def configmap(namespace: str, name: str, seed: int) -> Any:
    meta = meta_pb2.ObjectMeta(namespace=namespace, name=name)
    if RESOURCE == "secrets":
        return core_pb2.Secret(metadata=meta, data={
            k: v.encode() for k, v in bench.payload_data(seed).items()})
    return core_pb2.ConfigMap(metadata=meta, data=bench.payload_data(seed))


def echo_payload() -> bytes:
    """Bytes of the size of a Flotilla create request for one benchmark object."""
    cm = configmap("bench-c64", "cm-000000", 0)
    return api_pb2.CreateRequest(resource=RESOURCE, namespace="bench-c64",
                                 object=cm.SerializeToString()).SerializeToString()


# -- echo -------------------------------------------------------------------------------


class EchoTarget:
    def __init__(self, server: bench.ServerProcess, tls: Path | None = None) -> None:
        self.server = server
        self.payload = echo_payload()
        if tls is None:
            self.channel = grpc.aio.insecure_channel(server.address, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.secure_channel(
                server.address, _echo.channel_credentials(tls), options=CHANNEL_OPTIONS)
        self.call = self.channel.unary_unary(_echo.ECHO, None, None)

    def _jobs(self, n: int | None) -> Callable[[int], Iterator[Job]]:
        counter = itertools.count()
        call, payload = self.call, self.payload
        return lambda w: _counter_jobs(counter, n, lambda i: lambda: call(payload))

    async def warmup(self) -> None:
        await measure("echo", "warmup", 16, self._jobs(WARMUP_REQUESTS), None, self.server)

    async def run(self, c: int, count: int | None, duration: float | None) -> Phase:
        return await measure("echo", "echo", c, self._jobs(count), duration, self.server)

    async def close(self) -> None:
        await self.channel.close(None)


# -- flotilla ---------------------------------------------------------------------------


@dataclass
class Written:
    """The last acknowledged state of each benchmark object: (namespace, name) -> rv."""

    rv: dict[tuple[str, str], str] = field(default_factory=dict)
    acknowledged: int = 0

    def ack(self, obj: Any) -> None:
        self.rv[(obj.metadata.namespace, obj.metadata.name)] = obj.metadata.resource_version
        self.acknowledged += 1


async def ensure_namespace(client: ApiClient, name: str) -> None:
    from control.api import errors

    try:
        await client.create(core_pb2.Namespace(metadata=meta_pb2.ObjectMeta(name=name)))
    except errors.AlreadyExists:
        pass


class FlotillaTarget:
    def __init__(self, server: bench.ServerProcess, written: Written,
                 profile_dir: Path | None) -> None:
        self.server = server
        self.written = written
        self.profile_dir = profile_dir
        self.channel = open_channel(server.address, bench.credentials_for(server.address)
                                    or Credentials())
        self.client = ApiClient(self.channel, server.address)

    async def warmup(self) -> None:
        """Not measured: connection, caches, the store's first transactions."""
        await ensure_namespace(self.client, "bench-warmup")
        counter = itertools.count()
        client = self.client
        await measure("flotilla", "warmup", 16, lambda w: _counter_jobs(
            counter, WARMUP_REQUESTS, lambda i: lambda: client.create(
                configmap("bench-warmup", f"cm-{i:06d}", i))), None, self.server)

    async def run(self, c: int, count: int | None, duration: float | None,
                  profile: bool, round_: int = 0) -> list[Phase]:
        """Create (N or for ``duration``) ConfigMaps in namespace bench-c<c>, then update each
        with the resourceVersion of its last write."""
        client, written = self.client, self.written
        ns = f"bench-c{c}" + (f"-r{round_}" if round_ else "")
        await ensure_namespace(client, ns)
        objects: dict[int, Any] = {}

        def create_job(i: int) -> Job:
            async def job() -> None:
                obj = await client.create(configmap(ns, f"cm-{i:06d}", i))
                objects[i] = obj
                written.ack(obj)
            return job

        shared = itertools.count()

        def create_jobs(w: int) -> Iterator[Job]:
            return _counter_jobs(shared, count, create_job)

        spy = self._spy(f"create-c{c}", profile)
        try:
            created = await measure("flotilla", "create", c, create_jobs, duration, self.server)
        finally:
            if spy:
                spy.stop()

        ids = sorted(objects)

        def update_jobs(w: int) -> Iterator[Job]:
            mine = ids[w::c]  # each worker owns its objects: no self-inflicted conflicts
            for p in itertools.count(1):
                if not mine:
                    return
                for i in mine:
                    def job(i: int = i, p: int = p) -> Awaitable[None]:
                        return _update(client, objects, i, p, written)
                    yield job
                if count is not None:
                    return

        spy = self._spy(f"update-c{c}", profile)
        try:
            updated = await measure("flotilla", "update", c, update_jobs, duration, self.server)
        finally:
            if spy:
                spy.stop()
        return [created, updated]

    def _spy(self, name: str, wanted: bool) -> bench.PySpy | None:
        if self.profile_dir is None or not wanted:
            return None
        return bench.PySpy(self.server.pid, self.profile_dir / f"server-{name}.txt")

    async def close(self) -> None:
        await self.channel.close(None)


async def _update(client: ApiClient, objects: dict[int, Any], i: int, p: int,
                  written: Written) -> None:
    obj = objects[i]
    stamp = f"update {p:06d} "
    obj.data["key-0"] = (stamp.encode() if RESOURCE == "secrets" else stamp) + \
        obj.data["key-0"][14:]
    new = await client.update(obj)
    objects[i] = new
    written.ack(new)


async def verify_durable(address: str, credentials: Credentials,
                         written: Written) -> tuple[int, list[str]]:
    """Compare every object's stored resourceVersion with its last acknowledged one."""
    channel = open_channel(address, credentials)
    client = ApiClient(channel, address)
    problems: list[str] = []
    try:
        found: dict[tuple[str, str], str] = {}
        for ns in sorted({ns for ns, _ in written.rv}):
            page = await client.list_all(RESOURCE, ns)
            for o in page.items:
                found[(ns, o.metadata.name)] = o.metadata.resource_version
        ok = 0
        for key, rv in written.rv.items():
            got = found.get(key)
            if got == rv:
                ok += 1
            elif len(problems) < 10:
                problems.append(f"{key[0]}/{key[1]}: acknowledged rv {rv}, found {got}")
        return ok, problems
    finally:
        await channel.close(None)


# -- report -----------------------------------------------------------------------------


def report(phases: list[Phase]) -> str:
    echo = {p.concurrency: p for p in phases if p.op == "echo"}
    rows = []
    for p in phases:
        base = echo.get(p.concurrency)
        ratio = "" if p.op == "echo" or base is None else f"{p.rate / base.rate:.0%}"
        p99_ratio = "" if p.op == "echo" or base is None else f"{p.p99_ms / base.p99_ms:.1f}x"
        rows.append([p.target, p.op, p.concurrency, p.requests, bench.fmt(p.rate, 0),
                     bench.fmt(p.p50_ms, 2), bench.fmt(p.p99_ms, 2), bench.fmt(p.max_ms, 1),
                     bench.fmt(p.server_cpu_us, 0), bench.fmt(p.client_cpu_us, 0),
                     f"{p.other_cpu:.0%}", ratio, p99_ratio])
    return bench.table(["target", "op", "conc", "requests", "req/s", "p50 ms", "p99 ms",
                        "max ms", "server CPU us/req", "client CPU us/req", "others CPU",
                        "req/s vs echo", "p99 vs echo"], rows)


def verdict(phases: list[Phase], durable_ok: int, written: Written) -> list[str]:
    lines = []
    top = max(p.concurrency for p in phases)
    echo = next((p for p in phases if p.op == "echo" and p.concurrency == top), None)
    for p in phases:
        if p.target != "flotilla" or p.concurrency != top or echo is None:
            continue
        ratio = p.rate / echo.rate
        lines.append(f"{p.op} at concurrency {top}: {ratio:.0%} of echo (target >= 80%: "
                     f"{'PASS' if ratio >= 0.8 else 'FAIL'}), p99 {p.p99_ms:.1f} ms "
                     f"(target <= 50 ms: {'PASS' if p.p99_ms <= 50 else 'FAIL'})")
    n = len(written.rv)
    lines.append(f"durability: {durable_ok}/{n} objects at their last acknowledged "
                 f"resourceVersion after SIGKILL + restart ({written.acknowledged} acknowledged "
                 f"writes) ({'PASS' if durable_ok == n else 'FAIL'})")
    errs = collections.Counter[str]()
    for p in phases:
        errs.update(p.errors)
    if errs:
        lines.append("errors: " + "; ".join(f"{n} x {e}" for e, n in errs.most_common(5)))
    return lines


@dataclass
class Results:
    phases: list[Phase]
    written: Written
    durable_ok: int
    problems: list[str]


async def run_all(args: argparse.Namespace, work: Path) -> Results:
    """Both servers up; for each concurrency the echo phase, then Flotilla's create and
    update phases right after it (the figures of a ratio see the same machine state)."""
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    duration = None if args.count else args.duration
    profile_dir = Path(args.py_spy) if args.py_spy else None
    phases: list[Phase] = []
    written = Written()
    data_dir = work / "data"
    echo_server = server = None
    echo = flotilla = None
    try:
        tls = None if args.echo_plaintext else work / "echo-tls"
        if tls is not None:
            _echo.write_tls(tls)
        echo_server = bench.start_echo(work, args.uvloop, tls=tls)
        server = bench.start_flotilla(data_dir, work, args.uvloop, disable=args.server_disable)
        echo = EchoTarget(echo_server, tls)
        flotilla = FlotillaTarget(server, written, profile_dir)
        await echo.warmup()
        await flotilla.warmup()
        for r in range(args.repeat):
            for c in concurrencies:
                phases.append(await echo.run(c, args.count, duration))
                phases += await flotilla.run(c, args.count, duration,
                                             r == 0 and c == max(concurrencies), r)
        await flotilla.close()
        flotilla = None
        server.kill()  # a crash: only what was durable survives
        server = bench.start_flotilla(data_dir, work, args.uvloop, name="flotilla-restart",
                                      disable=args.server_disable)
        durable_ok, problems = await verify_durable(server.address, bench.admin_credentials(data_dir),
                                                  written)
    finally:
        for t in (echo, flotilla):
            if t is not None:
                await t.close()
        for sp in (echo_server, server):
            if sp is not None:
                sp.stop()
    return Results(median_phases(phases), written, durable_ok, problems)


def median_phases(phases: list[Phase]) -> list[Phase]:
    """One phase per (target, op, concurrency): the median of each figure over repeats."""
    groups: dict[tuple[str, str, int], list[Phase]] = {}
    for p in phases:
        groups.setdefault((p.target, p.op, p.concurrency), []).append(p)
    out = []
    for (target, op, c), ps in groups.items():
        if len(ps) == 1:
            out.append(ps[0])
            continue
        med = statistics.median
        errors: collections.Counter[str] = collections.Counter()
        for p in ps:
            errors.update(p.errors)
        rate = med(p.rate for p in ps)
        requests = round(med(p.requests for p in ps))
        out.append(Phase(target, op, c, requests, requests / rate, med(p.p50_ms for p in ps),
                         med(p.p99_ms for p in ps), max(p.max_ms for p in ps),
                         med(p.server_cpu_us for p in ps), med(p.client_cpu_us for p in ps),
                         med(p.other_cpu for p in ps), dict(errors), len(ps)))
    return out


def print_results(args: argparse.Namespace, r: Results) -> None:
    print(f"machine: {bench.machine()}")
    print(f"command: {bench.command_line('bench.api_bench')}")
    mode = f"--count {args.count} per phase" if args.count else f"{args.duration:g} s per phase"
    if args.repeat > 1:
        mode += f", median of {args.repeat} interleaved repeats (max ms: the largest)"
    print(f"mode: {mode}; uvloop: {'yes (both sides)' if args.uvloop else 'no'}; Flotilla "
          f"server: {'without ' + args.server_disable if args.server_disable else 'complete'}; "
          f"echo: {'plaintext' if args.echo_plaintext else 'TLS with client certificates'}")
    print()
    print(report(r.phases))
    print()
    for line in verdict(r.phases, r.durable_ok, r.written):
        print(line)
    for p in r.problems:
        print("  " + p)
    if args.py_spy:
        for f in sorted(Path(args.py_spy).glob("server-*.txt")):
            print(f"\nserver profile {f.name}:\n{bench.summarize_collapsed(f)}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": bench.machine(), "argv": sys.argv[1:],
            "phases": [asdict(p) | {"rate": p.rate} for p in r.phases],
            "durable": r.durable_ok, "objects": len(r.written.rv),
            "acknowledged": r.written.acknowledged}, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Create/update throughput and latency: Flotilla vs a bare gRPC echo.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--duration", type=float, default=5.0,
                      help="seconds per phase (default 5)")
    mode.add_argument("--count", type=int,
                      help="requests per phase instead of a duration (N creates, then one "
                           "update of each)")
    ap.add_argument("--concurrency", default="1,64",
                    help="comma-separated concurrency levels (default 1,64)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every phase this many times (interleaved) and report medians")
    ap.add_argument("--server-disable", default="", metavar="PARTS",
                    help="parts of the Flotilla server not to start (ServerOptions.disable), "
                         "e.g. controllers,scheduler to measure the apiserver alone")
    ap.add_argument("--uvloop", action="store_true", help="uvloop on both server and client")
    ap.add_argument("--echo-plaintext", action="store_true",
                    help="the echo without TLS (default: TLS with client certificates, as "
                         "Flotilla's API)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--py-spy", metavar="DIR",
                    help="record the Flotilla server with py-spy during the phases at the "
                         "highest concurrency; collapsed stacks and a summary go to DIR")
    ap.add_argument("--resource", choices=("configmaps", "secrets"), default="configmaps",
                    help="what to create and update (~1 KB of data each; default configmaps)")
    args = ap.parse_args(argv)
    global RESOURCE
    RESOURCE = args.resource
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    with bench.temp_workdir("flotilla-api-bench-") as work:
        r = bench.run(lambda: run_all(args, work), args.uvloop)
    print_results(args, r)
    ok = r.durable_ok == len(r.written.rv) and not any(p.errors for p in r.phases)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
