"""Fair shares under a flood: node Leases keep landing while one client floods the API.

The scenario (API Priority and Fairness' promise):

- ``--nodes`` hollow nodes (Ready Nodes made by the admin), each renewed by a simulated
  agent with the node's own identity (``system:node:NAME`` in ``system:nodes``, one TLS
  connection each, as real agents): a Lease update every ``--interval`` seconds, each with a
  deadline of one interval;
- one flooding user (``flood``, bound to cluster-admin through RBAC, so *not* exempt)
  keeps ``--creates`` ConfigMap creates in flight and holds ``--watches`` watches open
  (ConfigMaps of a namespace nothing writes to, so the cost measured is admission and the
  streams, not a fan-out of events), reopening any refused with the server's retry-after;
- the node lifecycle controller runs with ``--grace`` seconds of node monitor grace.

Agents and flooder run in two subprocesses of their own (they would be other machines),
the server in a third. Pass: every renewal lands within its interval, no node's Ready
condition leaves True, and the flooder was refused (its rejections counted on both
sides). ``--no-apf`` runs the same with ``--enable-priority-and-fairness=false`` (the
plain max-in-flight filter) for comparison. Run from the repository root::

    .venv/bin/python -m bench.apf_flood                   # 100 nodes, 2,000 creates, 5,000 watches
    .venv/bin/python -m bench.apf_flood --no-apf          # the same without priority levels
    .venv/bin/python -m bench.apf_flood --interval 2 --grace 8 --duration 30   # 5x stricter

The roles (``--role agents|flood``) are this module's own subprocess entry points; the
scenario (:func:`run_scenario`) is also what the test of the property drives, scaled down.

Concurrency contract: each process runs one event loop; every task is cancelled and awaited
before the process reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from control.api import errors
from control.api.pb import api_pb2, coordination_pb2, core_pb2, meta_pb2, rbac_pb2
from control.client import pki
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.tls import Credentials

REPO = Path(__file__).resolve().parent.parent
LEASE_NAMESPACE = "kube-node-lease"
FLOOD_USER = "flood"
FLOOD_NAMESPACE = "flood"
WATCH_NAMESPACE = "flood-watch"
NODES_GROUP = "system:nodes"


@dataclass
class Plan:
    nodes: int = 100
    interval: float = 10.0  # seconds between a node's renewals, and each renewal's deadline
    creates: int = 2000  # creates kept in flight by the flooder
    watches: int = 5000  # watches the flooder holds open
    duration: float = 60.0  # seconds of flood
    create_channels: int = 20
    watch_channels: int = 50
    prefix: str = "apf"


@dataclass
class AgentReport:
    renewals: int = 0
    late: int = 0  # renewals that did not land within the interval (or failed)
    failures: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    late_at: list[float] = field(default_factory=list)  # seconds into the run


@dataclass
class FloodReport:
    created: int = 0
    create_rejected: int = 0
    create_errors: dict[str, int] = field(default_factory=dict)
    watches_open_at_end: int = 0
    watch_rejected: int = 0
    watch_errors: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    plan: Plan
    agents: AgentReport
    flood: FloodReport
    not_ready: list[str]  # nodes whose Ready condition left True during the run
    seconds: float

    def p(self, q: float) -> float:
        xs = sorted(self.agents.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0

    def passed(self) -> bool:
        return (self.agents.late == 0 and not self.not_ready
                and self.agents.renewals > 0 and self.flood.create_rejected > 0)


def identity(pki_dir: Path, user: str, groups: list[str]) -> Credentials:
    """A client certificate of the cluster CA in ``pki_dir`` (blocking)."""
    ca = pki.ClusterCA.load_or_create(pki_dir)
    issued = ca.issue(user, groups, client=True)
    return Credentials(ca_pem=ca.pem, cert_pem=issued.cert_pem, key_pem=issued.key_pem)


def node_names(plan: Plan) -> list[str]:
    return [f"{plan.prefix}-node-{i:04d}" for i in range(plan.nodes)]


# -- the agents' role -------------------------------------------------------------------


async def _wait_file(path: Path, limit: float = 180.0) -> None:
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(path.exists):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {limit} s")
        await asyncio.sleep(0.05)


async def run_agents(address: str, pki_dir: Path, plan: Plan, gate: Path) -> AgentReport:
    """Renew every node's Lease once (untimed: certificates, connections), say so in
    ``gate/agents.ready``, wait for ``gate/start``, then renew every interval."""
    report = AgentReport()
    names = node_names(plan)
    creds = await asyncio.to_thread(
        lambda: [identity(pki_dir, f"system:node:{n}", [NODES_GROUP]) for n in names])
    channels = [open_channel(address, c) for c in creds]
    setup = [ApiClient(ch, address, timeout=60) for ch in channels]
    await asyncio.gather(*(_renew(c, n, None) for c, n in zip(setup, names, strict=True)))
    await asyncio.to_thread((gate / "agents.ready").write_text, "")
    await _wait_file(gate / "start")
    began = time.monotonic()
    end = began + plan.duration

    async def agent(i: int, name: str, channel: grpc.aio.Channel) -> None:
        client = ApiClient(channel, address, timeout=plan.interval)
        lease: coordination_pb2.Lease | None = None
        tick = time.monotonic() + plan.interval * i / len(names)
        while tick < end:
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            start = time.monotonic()
            try:
                lease = await _renew(client, name, lease)
                took = time.monotonic() - start
                report.latencies.append(took)
                report.renewals += 1
                if took > plan.interval:
                    report.late += 1
                    report.late_at.append(round(start - began, 1))
            except errors.ApiError as e:
                lease = None
                report.failures += 1
                report.late += 1
                report.late_at.append(round(start - began, 1))
                report.errors[type(e).__name__] = report.errors.get(type(e).__name__, 0) + 1
            tick += plan.interval

    try:
        await asyncio.gather(*(agent(i, n, ch) for i, (n, ch)
                               in enumerate(zip(names, channels, strict=True))))
    finally:
        for ch in channels:
            await ch.close(None)
    return report


async def _renew(client: ApiClient, name: str,
                 lease: coordination_pb2.Lease | None) -> coordination_pb2.Lease:
    if lease is None:
        try:
            lease = await client.get(coordination_pb2.Lease, name, LEASE_NAMESPACE)
        except errors.NotFound:
            fresh = coordination_pb2.Lease()
            fresh.metadata.name, fresh.metadata.namespace = name, LEASE_NAMESPACE
            fresh.spec.holder_identity = name
            fresh.spec.lease_duration_seconds = 40
            fresh.spec.renew_time.FromNanoseconds(time.time_ns())
            return await client.create(fresh)
    lease.spec.renew_time.FromNanoseconds(time.time_ns())
    return await client.update(lease)


# -- the flooder's role -----------------------------------------------------------------


def _retry_after(e: grpc.aio.AioRpcError) -> float:
    hint = errors.retry_after_from(e.trailing_metadata()) or 1
    return hint * (0.5 + random.random())


async def run_flood(address: str, pki_dir: Path, plan: Plan, gate: Path) -> FloodReport:
    """From ``gate/start`` on, for the plan's duration. No client-side retries: every
    refusal is counted, then retried after its hint."""
    report = FloodReport()
    creds = await asyncio.to_thread(identity, pki_dir, FLOOD_USER, ["system:authenticated"])
    create_channels = [open_channel(address, creds) for _ in range(plan.create_channels)]
    watch_channels = [open_channel(address, creds) for _ in range(plan.watch_channels)]
    await _wait_file(gate / "start")
    end = time.monotonic() + plan.duration
    open_now = 0

    def count(errs: dict[str, int], e: grpc.aio.AioRpcError) -> None:
        errs[e.code().name] = errs.get(e.code().name, 0) + 1

    async def creator(i: int) -> None:
        from control.api.pb import api_pb2_grpc

        stub = api_pb2_grpc.ApiStub(create_channels[i % len(create_channels)])
        n = 0
        while time.monotonic() < end:
            cm = core_pb2.ConfigMap()
            cm.metadata.name = f"f-{i}-{n}"
            cm.metadata.namespace = FLOOD_NAMESPACE
            cm.data["k"] = "v" * 100
            n += 1
            try:
                await stub.Create(api_pb2.CreateRequest(
                    resource="configmaps", namespace=FLOOD_NAMESPACE,
                    object=cm.SerializeToString()), timeout=30)
                report.created += 1
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    report.create_rejected += 1
                    await asyncio.sleep(_retry_after(e))
                else:
                    count(report.create_errors, e)
                    await asyncio.sleep(0.5)

    async def watcher(i: int) -> None:
        from control.api.pb import api_pb2_grpc

        nonlocal open_now
        stub = api_pb2_grpc.ApiStub(watch_channels[i % len(watch_channels)])
        while time.monotonic() < end:
            call = stub.Watch(api_pb2.WatchRequest(resource="configmaps",
                                                   namespace=WATCH_NAMESPACE))
            open_now += 1
            try:
                async with asyncio.timeout(max(0.0, end - time.monotonic())):
                    async for _ in call:
                        pass
            except TimeoutError:
                return  # held open to the end
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    report.watch_rejected += 1
                    await asyncio.sleep(_retry_after(e))
                else:
                    count(report.watch_errors, e)
                    await asyncio.sleep(0.5)
            finally:
                open_now -= 1
                call.cancel()

    tasks = [asyncio.ensure_future(creator(i)) for i in range(plan.creates)]
    tasks += [asyncio.ensure_future(watcher(i)) for i in range(plan.watches)]
    try:
        await asyncio.sleep(max(0.0, end - time.monotonic() - 0.5))
        report.watches_open_at_end = open_now
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in (*create_channels, *watch_channels):
            await ch.close(None)
    return report


# -- the scenario -----------------------------------------------------------------------


async def prepare(admin: ApiClient, plan: Plan) -> None:
    """Namespaces, the flooder's rights (cluster-admin by RBAC: not exempt), the Nodes."""
    for ns in (FLOOD_NAMESPACE, WATCH_NAMESPACE):
        obj = core_pb2.Namespace(metadata=meta_pb2.ObjectMeta(name=ns))
        with contextlib.suppress(errors.AlreadyExists):
            await admin.create(obj)
    binding = rbac_pb2.ClusterRoleBinding(
        metadata=meta_pb2.ObjectMeta(name="flood-is-admin"),
        role_ref=rbac_pb2.RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                  name="cluster-admin"),
        subjects=[rbac_pb2.Subject(kind="User", name=FLOOD_USER,
                                   api_group="rbac.authorization.k8s.io")])
    with contextlib.suppress(errors.AlreadyExists):
        await admin.create(binding)
    for name in node_names(plan):
        node = core_pb2.Node(metadata=meta_pb2.ObjectMeta(name=name))
        for k, v in (("cpu", "8"), ("memory", "32Gi"), ("pods", "110")):
            node.status.capacity[k].string = v
            node.status.allocatable[k].string = v
        node.status.conditions.add(type="Ready", status="True", reason="KubeletReady")
        with contextlib.suppress(errors.AlreadyExists):
            await admin.create(node)


async def _role(role: str, address: str, pki_dir: Path, plan: Plan, out: Path) -> Any:
    """Run one role in a subprocess of its own; its report as parsed JSON."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.apf_flood", "--role", role, "--server", address,
        "--pki-dir", str(pki_dir), "--plan", json.dumps(asdict(plan)), "--out", str(out),
        "--gate", str(out.parent),
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), plan.duration + 300)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the {role} process failed ({proc.returncode}):\n"
                           f"{stderr.decode(errors='replace')[-3000:]}")
    return json.loads(await asyncio.to_thread(out.read_text))


def _ready(node: core_pb2.Node) -> str:
    return next((c.status for c in node.status.conditions if c.type == "Ready"), "")


async def run_scenario(address: str, pki_dir: Path, admin: ApiClient, plan: Plan,
                       workdir: Path) -> Report:
    """Prepare, run agents and flooder at once while watching the Nodes' Ready condition
    (as the admin: exempt, so the observer is not slowed by what it observes)."""
    await prepare(admin, plan)
    names = set(node_names(plan))
    not_ready: set[str] = set()
    for marker in ("agents.ready", "start"):
        with contextlib.suppress(FileNotFoundError):
            (workdir / marker).unlink()
    roles = asyncio.ensure_future(asyncio.gather(
        _role("agents", address, pki_dir, plan, workdir / "agents.json"),
        _role("flood", address, pki_dir, plan, workdir / "flood.json")))
    observer: asyncio.Future[None] | None = None
    try:
        # the agents renewed every Lease once: the run starts when the controller has seen
        # every node Ready (a node made before its agent started is no finding)
        ready = asyncio.ensure_future(_wait_file(workdir / "agents.ready"))
        await asyncio.wait((ready, roles), return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            roles.result()  # a role failed before the start: its error
            raise RuntimeError("the roles ended before the agents were ready")
        ready.result()
        deadline = time.monotonic() + 60
        while True:
            listed = await admin.list(core_pb2.Node)
            if all(_ready(n) == "True" for n in listed.items if n.metadata.name in names):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the nodes did not become Ready before the flood")
            await asyncio.sleep(0.2)

        async def observe() -> None:
            async for ev in admin.watch(core_pb2.Node,
                                        resource_version=listed.resource_version):
                if ev.object is not None and ev.object.metadata.name in names and \
                        _ready(ev.object) != "True":
                    not_ready.add(ev.object.metadata.name)

        observer = asyncio.ensure_future(observe())
        await asyncio.to_thread((workdir / "start").write_text, "")
        t0 = time.monotonic()
        agents, flood = await roles
    finally:
        for task in (roles, observer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, errors.ApiError):
                    await task
    # a NotReady decided just before the end is seen in a last read
    for node in (await admin.list(core_pb2.Node)).items:
        if node.metadata.name in names and _ready(node) != "True":
            not_ready.add(node.metadata.name)
    return Report(plan, AgentReport(**agents), FloodReport(**flood), sorted(not_ready),
                  time.monotonic() - t0)


# -- command line -----------------------------------------------------------------------


def _role_main(args: argparse.Namespace) -> None:
    plan = Plan(**json.loads(args.plan))
    fn = run_agents if args.role == "agents" else run_flood
    report = asyncio.run(fn(args.server, Path(args.pki_dir), plan,  # type: ignore[operator]
                            Path(args.gate)))
    Path(args.out).write_text(json.dumps(asdict(report)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _bench(args: argparse.Namespace) -> Report:
    import httpx

    from bench import PYTHON, ServerProcess, admin_credentials

    plan = Plan(nodes=args.nodes, interval=args.interval, creates=args.creates,
                watches=args.watches, duration=args.duration)
    work = Path(tempfile.mkdtemp(prefix="apf-flood-"))
    data = work / "data"
    metrics_port = free_port()
    flags = ["--node-monitor-grace-period", f"{args.grace}s",
             "--metrics-listen", f"127.0.0.1:{metrics_port}",
             f"--enable-priority-and-fairness={'false' if args.no_apf else 'true'}",
             "--max-requests-inflight", str(args.max_requests_inflight),
             "--max-mutating-requests-inflight", str(args.max_mutating_requests_inflight)]
    sp = ServerProcess("flotilla", [
        PYTHON, "-m", "control.cli.main", "--log-level", args.log_level, "server",
        "--data-dir", str(data), "--listen", "127.0.0.1:0", "--supervisor-port", "0",
        "--disable", "scheduler,dns",
        "--log-format", "json", *flags], work)
    try:
        conf = data / "admin.conf"
        deadline = time.monotonic() + 60
        while not conf.exists():
            if sp.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{sp.log_tail()}")
            await asyncio.sleep(0.05)
        from control.client.config import read_config_file

        address = read_config_file(conf).server
        channel = open_channel(address, admin_credentials(data))
        admin = ApiClient(channel, address, timeout=60)
        try:
            report = await run_scenario(address, data / "pki", admin, plan, work)
        finally:
            await channel.close(None)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        report_metrics = {
            "server_rejected_global_default": _metric(
                text, "apiserver_flowcontrol_rejected_requests_total",
                priority_level="global-default"),
            "server_rejected_node_high": _metric(
                text, "apiserver_flowcontrol_rejected_requests_total",
                priority_level="node-high"),
            "server_dispatched_node_high": _metric(
                text, "apiserver_flowcontrol_dispatched_requests_total",
                priority_level="node-high"),
            "server_dropped_max_inflight": _metric(text, "apiserver_dropped_requests_total"),
        }
        print(json.dumps(report_metrics))
        for line in text.splitlines():
            if line.startswith(("apiserver_flowcontrol_rejected_requests_total{",
                                "apiserver_flowcontrol_dispatched_requests_total{")):
                print(line)
        return report
    finally:
        await asyncio.to_thread(sp.stop)
        if args.keep:
            print(f"kept {work} (the server's log is flotilla.log)")
        else:
            await asyncio.to_thread(shutil.rmtree, work, True)


def print_report(r: Report, no_apf: bool) -> None:
    a, f = r.agents, r.flood
    print(f"priority and fairness: {'off' if no_apf else 'on'}; {r.plan.nodes} agents "
          f"renewing every {r.plan.interval:g} s; flood: {r.plan.creates} creates in flight, "
          f"{r.plan.watches} watches, {r.plan.duration:g} s")
    print(f"lease renewals: {a.renewals} ok, {a.failures} failed, {a.late} late "
          f"(> {r.plan.interval:g} s); latency p50 {r.p(0.5) * 1000:.0f} ms, "
          f"p99 {r.p(0.99) * 1000:.0f} ms, max {max(a.latencies, default=0) * 1000:.0f} ms; "
          f"errors {a.errors}")
    if a.late_at:
        print(f"late renewals started between {min(a.late_at):.1f} s and "
              f"{max(a.late_at):.1f} s into the run")
    print(f"nodes not Ready at some point: {len(r.not_ready)}")
    print(f"flood: {f.created} created ({f.created / r.plan.duration:.0f}/s), "
          f"{f.create_rejected} creates refused; watches open at the end "
          f"{f.watches_open_at_end}/{r.plan.watches}, {f.watch_rejected} watch opens refused; "
          f"other errors: creates {f.create_errors}, watches {f.watch_errors}")
    print("PASS" if r.passed() else "FAIL")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=("agents", "flood"), default=None)
    ap.add_argument("--server", default="")
    ap.add_argument("--pki-dir", default="")
    ap.add_argument("--plan", default="{}")
    ap.add_argument("--out", default="")
    ap.add_argument("--gate", default="", help="(roles) where the start markers are")
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--interval", type=float, default=10.0,
                    help="seconds between a node's renewals (default 10, as kubelet)")
    ap.add_argument("--creates", type=int, default=2000)
    ap.add_argument("--watches", type=int, default=5000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--grace", type=float, default=40.0,
                    help="the node monitor grace period, seconds (default 40, as "
                         "kube-controller-manager)")
    ap.add_argument("--no-apf", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--log-level", default="warning", help="the server's (default warning)")
    ap.add_argument("--max-requests-inflight", type=int, default=400)
    ap.add_argument("--max-mutating-requests-inflight", type=int, default=200)
    args = ap.parse_args()
    if args.role:
        _role_main(args)
        return
    report = asyncio.run(_bench(args))
    print_report(report, args.no_apf)


if __name__ == "__main__":
    main()
