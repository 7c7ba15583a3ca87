"""Watch benchmark: delivery latency to many watchers, Flotilla vs a bare gRPC fan-out.

Two scenarios, each run against Flotilla and against the bare ``grpc.aio`` baseline
(:mod:`bench._echo`: ``Publish`` queues the same pre-serialized bytes to every subscribed
stream, the least any fan-out server can do) in the same run:

- **fanout**: ``--watchers`` (default 1,000) watchers of ConfigMaps in one namespace; the
  writer creates ConfigMaps (~1 KB) at each rate of ``--rates`` (writes/s, default 5, 10, 15)
  for ``--duration`` seconds. Every write reaches every watcher: 15 writes/s is 15,000
  deliveries/s (PERFORMANCE.md: the machine's bare-gRPC limit is about that).
- **agents**: ``--watchers`` watchers of pods, each with the field selector
  ``spec.nodeName=node-i`` (an agent watching only its own pods); the writer creates pods
  bound to random nodes at ``--agent-rate`` (default 100) writes/s. Each write reaches one
  watcher. Baseline: ``Publish`` to the one stream of that node.

Latency: the writer stamps ``time.monotonic()`` into the object (ConfigMap data / pod
annotation) just before sending; each watcher computes ``monotonic() - stamp`` on receipt
(CLOCK_MONOTONIC is one clock for the whole machine). Writes are open-loop (sent on
schedule, not after the previous answer). By default the watchers read the stamp straight
from the received bytes (no protobuf decoding), so the client process costs what gRPC
costs and the server is what is measured; ``--decode`` makes them decode every event as an
informer does (``ApiClient.watch`` for Flotilla, WatchEvent + object for the baseline).

Processes: the two servers (Flotilla, baseline) in subprocesses, both up for the whole
scenario; the writer and all watchers (``--watchers-per-channel`` streams per connection,
default 100) in this process. For each rate the baseline phase runs immediately before the
Flotilla phase, so the two sides of a ratio see the same machine; the "others CPU" column
is what the rest of the machine used meanwhile (a noisy phase shows there).

Reported per phase: deliveries/s, share delivered, p50/p99/max latency, CPU (cores) of
server, client and others, server CPU per delivery, and ratios to the baseline. Targets
(PERFORMANCE.md): fan-out capacity >= 80% of bare gRPC over 1,000 watchers (measured as the
ratio of server CPU per delivery at the highest rate) with p99 <= 100 ms; agents at 100
writes/s: p99 <= 50 ms. A full run takes about 100 s.

Run from the repository root::

    .venv/bin/python -m bench.watch_bench                         # both scenarios
    .venv/bin/python -m bench.watch_bench --scenario fanout --rates 5,10,15,20 --uvloop
    .venv/bin/python -m bench.watch_bench --watchers 200 --duration 4   # quick look
    .venv/bin/python -m bench.watch_bench --scenario agents --no-bookmarks  # diagnostic
    .venv/bin/python -m bench.watch_bench --py-spy /tmp/prof     # profile the Flotilla server
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

import bench
from bench import _echo
from control.api import errors
from control.api.pb import api_pb2, core_pb2, meta_pb2
from control.client.channel import CHANNEL_OPTIONS
from control.client.client import ApiClient
from control.client.tls import channel_credentials

FANOUT_NS = "bench-watch"
AGENTS_NS = "bench-agents"
SUSTAINED_P99_MS = 100.0
DRAIN_TIMEOUT = 10.0
# grpc's C core cancels calls beyond ``grpc.server.max_pending_requests`` (default 1,000)
# that arrive before the asyncio server picks them up: open watches in batches, and retry.
START_BATCH = 100
START_PAUSE = 0.1
START_ATTEMPTS = 5
STAMP_KEY = "bench-t"
PHASE_KEY = "bench-p"
PAD = "x" * 880  # brings a ConfigMap / Pod to ~1 KB
WATCH_METHOD = "/flotilla.v1.Api/Watch"


def channel_options() -> list[tuple[str, Any]]:
    # Each channel its own TCP connection (channels otherwise share subchannels).
    return [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]


# -- what the writer sends --------------------------------------------------------------


def stamped_configmap(name: str, phase: str) -> core_pb2.ConfigMap:
    return core_pb2.ConfigMap(
        metadata=meta_pb2.ObjectMeta(namespace=FANOUT_NS, name=name),
        data={PHASE_KEY: phase, STAMP_KEY: repr(time.monotonic()), "pad": PAD})


def stamped_pod(name: str, node: str, phase: str) -> core_pb2.Pod:
    return core_pb2.Pod(
        metadata=meta_pb2.ObjectMeta(
            namespace=AGENTS_NS, name=name,
            annotations={PHASE_KEY: phase, STAMP_KEY: repr(time.monotonic()), "pad": PAD}),
        spec=core_pb2.PodSpec(node_name=node, containers=[
            core_pb2.Container(name="main", image="busybox:1.36")]))


def stamp_of(obj: Any) -> tuple[str, float] | None:
    """(phase, send time) stamped in a benchmark object, None for anything else."""
    m = obj.data if isinstance(obj, core_pb2.ConfigMap) else obj.metadata.annotations
    t = m.get(STAMP_KEY)
    return None if t is None else (m.get(PHASE_KEY, ""), float(t))


_STAMP = b"\x07" + STAMP_KEY.encode() + b"\x12"  # map entry: key "bench-t", then value
_PHASE = b"\x07" + PHASE_KEY.encode() + b"\x12"


def raw_stamp(raw: bytes) -> tuple[str, float] | None:
    """The stamp read straight from an encoded event: the watchers of the default mode do
    no protobuf decoding, so the client process costs as little as gRPC allows and the
    server is what is measured (``--decode`` decodes like an informer instead)."""
    i = raw.find(_STAMP)
    if i < 0:
        return None
    j = raw.find(_PHASE) + len(_PHASE)
    i += len(_STAMP)
    return raw[j + 1:j + 1 + raw[j]].decode(), float(raw[i + 1:i + 1 + raw[i]])


# -- measurement state ------------------------------------------------------------------


@dataclass
class Collector:
    """What the watchers received: latencies per phase, warm-up marks, lost streams."""

    watchers: int
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list))
    warm: set[int] = field(default_factory=set)
    ended: dict[int, str] = field(default_factory=dict)
    delivered_event: asyncio.Event = field(default_factory=asyncio.Event)
    waiting_for: tuple[str, int] = ("", 0)
    start_retries: int = 0
    last_receive: dict[str, float] = field(default_factory=dict)

    def receive(self, watcher: int, stamp: tuple[str, float] | None) -> None:
        now = time.monotonic()
        if stamp is None:
            return
        phase, t = stamp
        if phase == "warm":
            self.warm.add(watcher)
            return
        lat = self.latencies[phase]
        lat.append(now - t)
        self.last_receive[phase] = now
        if self.waiting_for[0] == phase and len(lat) >= self.waiting_for[1]:
            self.delivered_event.set()

    async def wait_delivered(self, phase: str, expected: int) -> None:
        """Until ``expected`` deliveries of ``phase`` arrived (bound it with a timeout)."""
        if len(self.latencies[phase]) >= expected:
            return
        self.waiting_for = (phase, expected)
        self.delivered_event.clear()
        try:
            await self.delivered_event.wait()
        finally:
            self.waiting_for = ("", 0)


# -- targets ----------------------------------------------------------------------------


class Target:
    """One server under test for one scenario: start watchers, warm up, write."""

    name = ""

    bookmarks = True  # Flotilla watchers ask for bookmarks, as informers do

    def __init__(self, address: str, watchers: int, per_channel: int, decode: bool) -> None:
        self.address = address
        self.decode = decode
        self.channels = [self._dial(address) for _ in range(math.ceil(watchers / per_channel))]
        self.write_channel = self._dial(address)

    @staticmethod
    def _dial(address: str) -> grpc.aio.Channel:
        creds = bench.credentials_for(address)
        if creds is None:  # the bare gRPC baseline
            return grpc.aio.insecure_channel(address, options=channel_options())
        tls, extra = channel_credentials(address, creds)
        return grpc.aio.secure_channel(address, tls, options=[*channel_options(), *extra])

    def channel(self, i: int) -> grpc.aio.Channel:
        return self.channels[i % len(self.channels)]

    async def setup(self) -> None:
        pass

    async def watch(self, i: int, c: Collector) -> None:
        raise NotImplementedError

    async def warm(self, missing: list[int], round_: int) -> None:
        raise NotImplementedError

    async def write(self, phase: str, seq: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        for ch in [*self.channels, self.write_channel]:
            await ch.close(None)


class FlotillaFanout(Target):
    name = "flotilla"
    resource, namespace = "configmaps", FANOUT_NS

    def __init__(self, address: str, watchers: int, per_channel: int, decode: bool) -> None:
        super().__init__(address, watchers, per_channel, decode)
        self.writer = ApiClient(self.write_channel, address)

    async def setup(self) -> None:
        with contextlib.suppress(errors.AlreadyExists):
            await self.writer.create(core_pb2.Namespace(
                metadata=meta_pb2.ObjectMeta(name=FANOUT_NS)))

    def field_selector(self, i: int) -> str:
        return ""

    async def watch(self, i: int, c: Collector) -> None:
        if self.decode:  # what an informer does: ApiClient decodes every event
            client = ApiClient(self.channel(i), self.address, timeout=None)
            async for ev in client.watch(self.resource, self.namespace,
                                         field_selector=self.field_selector(i),
                                         allow_bookmarks=self.bookmarks):
                if ev.object is not None:
                    c.receive(i, stamp_of(ev.object))
            return
        req = api_pb2.WatchRequest(resource=self.resource, namespace=self.namespace,
                                   field_selector=self.field_selector(i),
                                   allow_bookmarks=self.bookmarks)
        call = self.channel(i).unary_stream(
            WATCH_METHOD, api_pb2.WatchRequest.SerializeToString, None)(req)
        async for raw in call:
            c.receive(i, raw_stamp(raw))

    async def warm(self, missing: list[int], round_: int) -> None:
        await self.writer.create(stamped_configmap(f"warm-{round_}", "warm"))

    async def write(self, phase: str, seq: int) -> None:
        await self.writer.create(stamped_configmap(f"cm-{phase}-{seq:06d}", phase))


class EchoFanout(Target):
    name = "bare gRPC"
    message_class: Any = core_pb2.ConfigMap

    def __init__(self, address: str, watchers: int, per_channel: int, decode: bool) -> None:
        super().__init__(address, watchers, per_channel, decode)
        self.publish = self.write_channel.unary_unary(_echo.PUBLISH, None, None)

    async def watch(self, i: int, c: Collector) -> None:
        call = self.channel(i).unary_stream(_echo.SUBSCRIBE, None, None)(
            _echo.subscribe_request(i))
        async for raw in call:
            if self.decode:
                ev = api_pb2.WatchEvent.FromString(raw)
                c.receive(i, stamp_of(self.message_class.FromString(ev.object)))
            else:
                c.receive(i, raw_stamp(raw))

    @staticmethod
    def event(obj: Any) -> bytes:
        """What the watch cache would send: one WatchEvent, serialized once."""
        return api_pb2.WatchEvent(type="ADDED", object=obj.SerializeToString()).SerializeToString()

    async def warm(self, missing: list[int], round_: int) -> None:
        await self.publish(_echo.publish_request(
            self.event(stamped_configmap(f"warm-{round_}", "warm"))))

    async def write(self, phase: str, seq: int) -> None:
        await self.publish(_echo.publish_request(
            self.event(stamped_configmap(f"cm-{phase}-{seq:06d}", phase))))


class FlotillaAgents(FlotillaFanout):
    resource, namespace = "pods", ""  # an agent watches its pods in every namespace

    def __init__(self, address: str, watchers: int, per_channel: int, decode: bool,
                 seed: int) -> None:
        super().__init__(address, watchers, per_channel, decode)
        self.nodes = watchers
        self.rng = random.Random(seed)
        self.warmed = False

    async def setup(self) -> None:
        with contextlib.suppress(errors.AlreadyExists):
            await self.writer.create(core_pb2.Namespace(
                metadata=meta_pb2.ObjectMeta(name=AGENTS_NS)))

    def field_selector(self, i: int) -> str:
        return f"spec.nodeName=node-{i}"

    async def warm(self, missing: list[int], round_: int) -> None:
        # a created pod reaches its watcher live or in the watch's initial snapshot
        if self.warmed:
            return
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                with contextlib.suppress(errors.AlreadyExists):
                    await self.writer.create(stamped_pod(f"warm-{i}", f"node-{i}", "warm"))

        await asyncio.gather(*(one(i) for i in missing))
        self.warmed = True

    async def write(self, phase: str, seq: int) -> None:
        node = f"node-{self.rng.randrange(self.nodes)}"
        await self.writer.create(stamped_pod(f"p-{phase}-{seq:06d}", node, phase))


class EchoAgents(EchoFanout):
    message_class = core_pb2.Pod

    def __init__(self, address: str, watchers: int, per_channel: int, decode: bool,
                 seed: int) -> None:
        super().__init__(address, watchers, per_channel, decode)
        self.nodes = watchers
        self.rng = random.Random(seed)

    async def warm(self, missing: list[int], round_: int) -> None:
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await self.publish(_echo.publish_request(
                    self.event(stamped_pod(f"warm-{i}", f"node-{i}", "warm")), i))

        await asyncio.gather(*(one(i) for i in missing))

    async def write(self, phase: str, seq: int) -> None:
        i = self.rng.randrange(self.nodes)
        await self.publish(_echo.publish_request(
            self.event(stamped_pod(f"p-{phase}-{seq:06d}", f"node-{i}", phase)), i))


# -- running a scenario -----------------------------------------------------------------


@dataclass
class Phase:
    scenario: str
    target: str
    watchers: int
    rate: float  # writes/s
    writes: int
    expected: int  # deliveries
    delivered: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float  # cores used by the server during the phase
    client_cpu: float  # cores used by this process
    other_cpu: float  # cores used by the rest of the machine (noise)
    server_cpu_us_per_delivery: float
    write_errors: dict[str, int] = field(default_factory=dict)
    watchers_lost: int = 0
    start_retries: int = 0  # watch starts the server refused and the client retried

    @property
    def complete(self) -> bool:
        return self.delivered >= self.expected

    @property
    def deliveries_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else math.nan


async def write_phase(target: Target, phase: str, rate: float, duration: float,
                      errors_: collections.Counter[str]) -> int:
    """Open-loop writes at ``rate`` for ``duration``; returns the acknowledged count."""
    n = max(1, round(rate * duration))
    ok = 0

    async def one(seq: int) -> None:
        nonlocal ok
        try:
            await target.write(phase, seq)
            ok += 1
        except Exception as e:
            errors_[f"{type(e).__name__}: {str(e)[:80]}"] += 1

    tasks = []
    start = time.monotonic()
    for seq in range(n):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(seq)))
    await asyncio.gather(*tasks)
    return ok


class Session:
    """One target's watchers, connected and warm, ready to run phases."""

    def __init__(self, scenario: str, target: Target, server: bench.ServerProcess,
                 watchers: int) -> None:
        self.scenario = scenario
        self.target = target
        self.server = server
        self.watchers = watchers
        self.collector = Collector(watchers)
        self.tasks: list[asyncio.Task[None]] = []

    async def _watcher(self, i: int) -> None:
        c = self.collector
        reason = ""
        for attempt in range(START_ATTEMPTS):
            try:
                await self.target.watch(i, c)
                reason = "stream ended"
            except asyncio.CancelledError:
                raise
            except Exception as e:
                reason = f"{type(e).__name__}: {e}"[:200]
            if i in c.warm or attempt == START_ATTEMPTS - 1:
                break
            # refused while being opened (see START_BATCH): retry, as an informer would
            c.start_retries += 1
            await asyncio.sleep(0.2 * (attempt + 1))
        c.ended[i] = reason

    async def start(self) -> None:
        """Open every watch, then write until every watcher has received something."""
        await self.target.setup()
        c = self.collector
        for i in range(self.watchers):
            self.tasks.append(asyncio.create_task(self._watcher(i), name=f"watcher-{i}"))
            if (i + 1) % START_BATCH == 0:
                await asyncio.sleep(START_PAUSE)
        deadline = time.monotonic() + 60
        round_ = 0
        while len(c.warm) < self.watchers - len(c.ended):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.target.name}: only {len(c.warm)}/{self.watchers} "
                                   "watchers received the warm-up writes in 60 s")
            missing = [i for i in range(self.watchers) if i not in c.warm and i not in c.ended]
            await self.target.warm(missing, round_)
            round_ += 1
            await asyncio.sleep(0.5)

    async def phase(self, rate: float, duration: float) -> Phase:
        c = self.collector
        name = f"{self.scenario}-{rate:g}"
        errs: collections.Counter[str] = collections.Counter()
        lost0 = len(c.ended)
        meter = bench.CpuMeter(self.server.pid)
        t0 = time.monotonic()
        acked = await write_phase(self.target, name, rate, duration, errs)
        live = self.watchers - len(c.ended)
        expected = acked * live if self.scenario == "fanout" else acked
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await c.wait_delivered(name, expected)
        dt, s_cpu, c_cpu, o_cpu = meter.read()
        lat = c.latencies[name]
        # throughput over the time it took: first write to last delivery (at least the
        # time the writes were scheduled over)
        span = max(c.last_receive.get(name, t0) - t0, max(1, round(rate * duration)) / rate)
        st = bench.stats(lat, span)
        p = Phase(self.scenario, self.target.name, self.watchers, rate, acked, expected,
                  len(lat), span, st.p50_ms, st.p99_ms, st.max_ms, s_cpu / dt, c_cpu / dt,
                  o_cpu / dt, 1e6 * s_cpu / max(len(lat), 1), dict(errs),
                  len(c.ended) - lost0, c.start_retries)
        print(f"  {self.scenario:7} {self.target.name:9} {rate:6g} writes/s: "
              f"{len(lat):,}/{expected:,} delivered, p50 {st.p50_ms:.1f} ms, "
              f"p99 {st.p99_ms:.1f} ms, server {p.server_cpu:.0%} CPU, client "
              f"{p.client_cpu:.0%}, others {p.other_cpu:.0%}", file=sys.stderr, flush=True)
        return p

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.target.close()


async def run_scenario(scenario: str, args: argparse.Namespace, work: Path,
                       make_echo: Callable[[str], Target], make_flotilla: Callable[[str], Target],
                       rates: list[float], duration: float) -> list[Phase]:
    """Both servers up and both sets of watchers connected; then, for each rate, a phase
    against the baseline immediately followed by the same phase against Flotilla, so that
    the two figures of a ratio see the same machine."""
    echo = flotilla = None
    sessions: list[Session] = []
    spy = None
    out: list[Phase] = []
    try:
        echo = bench.start_echo(work, args.uvloop, name=f"echo-{scenario}")
        flotilla = bench.start_flotilla(work / f"data-{scenario}", work, args.uvloop,
                                        name=f"flotilla-{scenario}",
                                        disable=args.server_disable)
        sessions = [Session(scenario, make_echo(echo.address), echo, args.watchers),
                    Session(scenario, make_flotilla(flotilla.address), flotilla,
                            args.watchers)]
        for s in sessions:
            await s.start()
        await asyncio.sleep(1.0)  # let the warm-up traffic settle
        if args.py_spy:
            spy = bench.PySpy(flotilla.pid, Path(args.py_spy) / f"server-watch-{scenario}.txt")
        for rate in rates:
            for s in sessions:
                out.append(await s.phase(rate, duration))
                await asyncio.sleep(1.0)
        return out
    finally:
        if spy is not None:
            spy.stop()
        for s in sessions:
            await s.close()
        for sp in (echo, flotilla):
            if sp is not None:
                sp.stop()


async def run_all(args: argparse.Namespace, work: Path) -> list[Phase]:
    Target.bookmarks = not args.no_bookmarks
    scenarios = args.scenario.split(",")
    rates = [float(r) for r in args.rates.split(",")]
    w, per, dec = args.watchers, args.watchers_per_channel, args.decode
    phases: list[Phase] = []
    if "fanout" in scenarios:
        phases += await run_scenario(
            "fanout", args, work, lambda a: EchoFanout(a, w, per, dec),
            lambda a: FlotillaFanout(a, w, per, dec), rates, args.duration)
    if "agents" in scenarios:
        phases += await run_scenario(
            "agents", args, work, lambda a: EchoAgents(a, w, per, dec, 1),
            lambda a: FlotillaAgents(a, w, per, dec, 1), [args.agent_rate],
            args.agent_duration)
    return phases


# -- report -----------------------------------------------------------------------------


def sustained(phases: list[Phase], scenario: str, target: str) -> float:
    ok = [p.rate for p in phases if p.scenario == scenario and p.target == target
          and p.complete and p.p99_ms <= SUSTAINED_P99_MS and not p.write_errors]
    return max(ok, default=0.0)


def report(phases: list[Phase]) -> str:
    base = {(p.scenario, p.rate): p for p in phases if p.target == "bare gRPC"}
    rows = []
    for p in phases:
        b = base.get((p.scenario, p.rate))
        vs = "" if b is None or p is b else f"{p.p99_ms / b.p99_ms:.1f}x"
        cpu_vs = ("" if b is None or p is b else
                  f"{p.server_cpu_us_per_delivery / b.server_cpu_us_per_delivery:.1f}x")
        rows.append([
            p.scenario, p.target, p.watchers, f"{p.rate:g}", bench.fmt(p.deliveries_per_s, 0),
            f"{100 * p.delivered / max(p.expected, 1):.1f}%", bench.fmt(p.p50_ms, 1),
            bench.fmt(p.p99_ms, 1), bench.fmt(p.max_ms, 0), f"{p.server_cpu:.0%}",
            f"{p.client_cpu:.0%}", f"{p.other_cpu:.0%}",
            bench.fmt(p.server_cpu_us_per_delivery, 1), vs, cpu_vs])
    return bench.table(
        ["scenario", "target", "watchers", "writes/s", "deliveries/s", "delivered",
         "p50 ms", "p99 ms", "max ms", "server CPU", "client CPU", "others CPU",
         "server CPU us/delivery", "p99 vs bare", "CPU/delivery vs bare"], rows)


def verdict(phases: list[Phase]) -> list[str]:
    lines = []
    fan = [p for p in phases if p.scenario == "fanout"]
    if fan:
        top = max(p.rate for p in fan)
        f = next((p for p in fan if p.target == "flotilla" and p.rate == top), None)
        b = next((p for p in fan if p.target == "bare gRPC" and p.rate == top), None)
        if f is not None and b is not None:
            capacity = b.server_cpu_us_per_delivery / f.server_cpu_us_per_delivery
            lines.append(
                f"fanout at {top:g} writes/s ({top * f.watchers:,.0f} deliveries/s): server CPU "
                f"per delivery Flotilla {f.server_cpu_us_per_delivery:.1f} us, bare gRPC "
                f"{b.server_cpu_us_per_delivery:.1f} us: Flotilla's fan-out capacity is "
                f"{capacity:.0%} of bare gRPC's (target >= 80%: "
                f"{'PASS' if capacity >= 0.8 else 'FAIL'})")
            lines.append(
                f"fanout at {top:g} writes/s: p99 Flotilla {f.p99_ms:.0f} ms, bare gRPC "
                f"{b.p99_ms:.0f} ms (target <= {SUSTAINED_P99_MS:g} ms: "
                f"{'PASS' if f.p99_ms <= SUSTAINED_P99_MS and f.complete else 'FAIL'})")
        sf, sb = sustained(phases, "fanout", "flotilla"), sustained(phases, "fanout", "bare gRPC")
        lines.append(
            f"fanout: highest tested rate with every event delivered and p99 <= "
            f"{SUSTAINED_P99_MS:g} ms: Flotilla {f'{sf:g} writes/s' if sf else 'none'}, "
            f"bare gRPC {f'{sb:g} writes/s' if sb else 'none'}")
    for p in phases:
        if p.scenario == "agents" and p.target == "flotilla":
            lines.append(
                f"agents: {p.watchers} node watchers at {p.rate:g} writes/s: p99 "
                f"{p.p99_ms:.1f} ms, {p.delivered}/{p.expected} delivered (target p99 <= 50 ms: "
                f"{'PASS' if p.p99_ms <= 50 and p.complete else 'FAIL'})")
    for p in phases:
        if p.write_errors:
            lines.append(f"{p.scenario} {p.target} {p.rate:g}/s write errors: {p.write_errors}")
        if p.start_retries and p.rate == max(q.rate for q in phases if q.scenario == p.scenario):
            lines.append(f"{p.scenario} {p.target}: {p.start_retries} watch starts were refused "
                         "(CANCELLED) and retried before the measurements")
        if p.watchers_lost:
            lines.append(f"{p.scenario} {p.target} {p.rate:g}/s: {p.watchers_lost} watch "
                         "streams ended during the phase")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Watch delivery latency to many watchers: Flotilla vs bare gRPC fan-out.")
    ap.add_argument("--scenario", default="fanout,agents",
                    help="comma-separated: fanout, agents (default both)")
    ap.add_argument("--watchers", type=int, default=1000, help="watch streams (default 1000)")
    ap.add_argument("--watchers-per-channel", type=int, default=100,
                    help="watch streams sharing one gRPC connection (default 100)")
    ap.add_argument("--rates", default="5,10,15",
                    help="fanout: comma-separated writes/s (default 5,10,15)")
    ap.add_argument("--duration", type=float, default=8.0,
                    help="fanout: seconds of writes per rate (default 8)")
    ap.add_argument("--agent-rate", type=float, default=100.0,
                    help="agents: writes/s (default 100)")
    ap.add_argument("--agent-duration", type=float, default=10.0,
                    help="agents: seconds of writes (default 10)")
    ap.add_argument("--decode", action="store_true",
                    help="watchers decode every event as an informer does (ApiClient.watch "
                         "for Flotilla, WatchEvent + object for the baseline) instead of "
                         "reading the stamp from the raw bytes")
    ap.add_argument("--no-bookmarks", action="store_true",
                    help="Flotilla watchers do not ask for BOOKMARK events (a diagnostic)")
    ap.add_argument("--server-disable", default="", metavar="PARTS",
                    help="parts of the Flotilla server not to start (ServerOptions.disable), "
                         "e.g. controllers,scheduler to measure the apiserver alone")
    ap.add_argument("--uvloop", action="store_true", help="uvloop on both server and client")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--py-spy", metavar="DIR",
                    help="record the Flotilla server with py-spy; collapsed stacks go to DIR")
    args = ap.parse_args(argv)
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with bench.temp_workdir("flotilla-watch-bench-") as work:
        phases = bench.run(lambda: run_all(args, work), args.uvloop)
    print(f"machine: {bench.machine()}")
    print(f"command: {bench.command_line('bench.watch_bench')}")
    print(f"server: {'without ' + args.server_disable if args.server_disable else 'complete'}; "
          f"uvloop: {'yes (both sides)' if args.uvloop else 'no'}; watchers "
          f"{'decode every event' if args.decode else 'read the stamp from the raw bytes'}"
          f"{'' if not args.no_bookmarks else ', no bookmarks'}; "
          f"{args.watchers_per_channel} watch streams per connection; "
          f"total time {time.monotonic() - started:.0f} s")
    print()
    print(report(phases))
    print()
    for line in verdict(phases):
        print(line)
    if args.py_spy:
        for f in sorted(Path(args.py_spy).glob("server-watch-*.txt")):
            print(f"\nserver profile {f.name}:\n{bench.summarize_collapsed(f)}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": bench.machine(), "argv": sys.argv[1:],
            "phases": [asdict(p) | {"deliveries_per_s": p.deliveries_per_s} for p in phases]},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
