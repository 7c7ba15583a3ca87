"""Service benchmark (root): what the nftables proxy costs and how fast it follows changes.

1. ``sync``: proxy sync time for ``--services`` Services x ``--endpoints`` endpoints
   (default 1,000 x 10), in a network namespace of its own: building the ruleset from the
   Service and EndpointSlice objects (``ruleset_from``), rendering the ``nft`` script, and
   ``nft -f`` applying it, for the first sync (the table written whole) and for a later one
   after one endpoint changed (the table updated in place, as every sync after the first).
2. ``lab`` (a 2-machine lab, built and removed here):
   - TCP throughput, connection rate and request latency (connect, one-byte answer,
     close: p50/p99 of 300) from a pod on one machine to a pod on the other,
     directly to the pod's IP and through its Service's ClusterIP (the proxy's DNAT on the
     sender's machine), interleaved for ``--rounds`` rounds, medians and the ratio;
   - time from a pod turning Ready (seen by a watch) to the first connection through its
     Service's ClusterIP reaching it (a client in another pod polling every 5 ms; the
     Service has that one pod as endpoint), ``--ready-rounds`` times, p50/p99.

Every byte stays inside namespaces this benchmark creates; they are removed on exit.

    .venv/bin/python -m bench.service_bench [--part sync,lab] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.proxy.nft_rules import render, render_update  # noqa: E402
from agent.proxy.state import ruleset_from  # noqa: E402
from bench.podnet_bench import RECEIVER, SENDER, lab  # noqa: E402
from control.api import convert, errors  # noqa: E402
from control.api.pb import core_pb2, discovery_pb2, node_pb2  # noqa: E402
from control.client.channel import open_channel  # noqa: E402
from control.client.client import ApiClient  # noqa: E402
from control.client.config import read_config_file  # noqa: E402

SERVICE_CIDR = "10.96.0.0/12"


# -- sync ---------------------------------------------------------------------------------


def objects(services: int, endpoints: int, moved: int = -1
            ) -> tuple[list[core_pb2.Service], list[discovery_pb2.EndpointSlice]]:
    """``services`` Services with one TCP port and a slice of ``endpoints`` ready pods each
    (``moved``: that Service's first endpoint has another address)."""
    svcs, slices = [], []
    for i in range(services):
        svcs.append(convert.from_dict({
            "metadata": {"name": f"s{i}", "namespace": "default"},
            "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
            core_pb2.Service()))
        eps = [{"addresses": [f"10.244.{(i * endpoints + j) // 250 % 250}."
                              f"{(i * endpoints + j) % 250 + 2}"],
                "conditions": {"ready": True}, "nodeName": "n1"} for j in range(endpoints)]
        if i == moved:
            eps[0]["addresses"] = ["10.245.0.2"]
        slices.append(convert.from_dict({
            "metadata": {"name": f"s{i}-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": f"s{i}"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
            discovery_pb2.EndpointSlice()))
    return svcs, slices


def _nft(ns: str, script: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True,
                       capture_output=True, timeout=300, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"nft: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def sync_times(services: int, endpoints: int, rounds: int) -> dict[str, float]:
    ns = f"flt-bench-svc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30)
    out: dict[str, list[float]] = {k: [] for k in (
        "compute", "render", "apply_full", "render_update", "apply_update")}
    try:
        for r in range(rounds):
            svcs, slices = objects(services, endpoints)
            t0 = time.perf_counter()
            rules = ruleset_from(svcs, slices, SERVICE_CIDR, "n1")
            out["compute"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            full = render(rules)
            out["render"].append(time.perf_counter() - t0)
            out["apply_full"].append(_nft(ns, full))
            svcs, slices = objects(services, endpoints, moved=r % services)
            moved = ruleset_from(svcs, slices, SERVICE_CIDR, "n1")
            t0 = time.perf_counter()
            update = render_update(moved, full)
            out["render_update"].append(time.perf_counter() - t0)
            out["apply_update"].append(_nft(ns, update))
        return {k: statistics.median(v) for k, v in out.items()} | {
            "script_bytes": float(len(full))}
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30,
                       check=False)


# -- lab ----------------------------------------------------------------------------------


def pod(name: str, node: str, argv: list[str], labels: dict[str, str] | None = None,
        ready_port: int = 0) -> core_pb2.Pod:
    c: dict[str, Any] = {"name": "c", "image": "busybox", "command": argv}
    if ready_port:
        c["readinessProbe"] = {"tcpSocket": {"port": ready_port}, "periodSeconds": 1}
    p: core_pb2.Pod = convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                 "runtimeClassName": "host", "containers": [c]}}, core_pb2.Pod())
    return p


def service(name: str, selector: dict[str, str], ports: list[tuple[int, int]]
            ) -> core_pb2.Service:
    s: core_pb2.Service = convert.from_dict({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, "ports": [
            {"name": f"p{p}", "port": p, "targetPort": t} for p, t in ports]}},
        core_pb2.Service())
    return s


def _ready(p: core_pb2.Pod) -> bool:
    return p.status.phase == "Running" and bool(p.status.pod_ip) and all(
        cs.ready for cs in p.status.container_statuses) and bool(p.status.container_statuses)


async def wait_ready(c: ApiClient, name: str, limit: float = 120) -> core_pb2.Pod:
    async with asyncio.timeout(limit):
        while True:
            p = await c.get(core_pb2.Pod, name, "default")
            if _ready(p):
                return p
            await asyncio.sleep(0.05)


# request latency: 300 connect + one-byte answer + close in a row, p50/p99
LATENCY = r"""
import json, socket, sys, time
host, times = sys.argv[1], []
for _ in range(300):
    t0 = time.perf_counter()
    c = socket.create_connection((host, 5002), timeout=10); c.recv(1); c.close()
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"p50": times[len(times) // 2], "p99": times[int(len(times) * 0.99)]}))
"""


async def _run_json(c: ApiClient, script: str, *args: str) -> dict[str, float]:
    code, out, err = await c.exec("default", "bench-send", [
        sys.executable, "-c", script, *args]).wait()
    if code != 0:
        raise RuntimeError(f"sender failed: {err.decode()[-2000:]}")
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def _send(c: ApiClient, host: str, seconds: float) -> dict[str, float]:
    return {**await _run_json(c, SENDER, host, str(seconds)),
            **await _run_json(c, LATENCY, host)}


async def throughput(c: ApiClient, nodes: list[str], seconds: float, rounds: int
                     ) -> dict[str, dict[str, float]]:
    await c.create(pod("bench-recv", nodes[0], [sys.executable, "-c", RECEIVER],
                       {"app": "bench-recv"}))
    await c.create(pod("bench-send", nodes[1], ["sleep", "3600"]))
    svc = await c.create(service("bench-recv", {"app": "bench-recv"},
                                 [(5001, 5001), (5002, 5002)]))
    ip = (await wait_ready(c, "bench-recv")).status.pod_ip
    await wait_ready(c, "bench-send")
    vip = svc.spec.cluster_ip
    async with asyncio.timeout(60):  # until the sender's machine's proxy has the Service
        while True:
            code, _, _ = await c.exec("default", "bench-send", [
                sys.executable, "-c", "import socket, sys; socket.create_connection("
                "(sys.argv[1], 5002), timeout=2).recv(1)", vip]).wait()
            if code == 0:
                break
            await asyncio.sleep(0.3)
    runs: dict[str, list[dict[str, float]]] = {"direct": [], "clusterip": []}
    for _ in range(rounds):
        runs["direct"].append(await _send(c, ip, seconds))
        runs["clusterip"].append(await _send(c, vip, seconds))
    metrics = ("bytes_per_s", "conn_per_s", "p50", "p99")
    out = {k: {m: statistics.median(r[m] for r in v) for m in metrics}
           for k, v in runs.items()}
    # each round's ClusterIP run against the direct run just before it: on a shared
    # machine the load moves between rounds more than between the two runs of one round
    out["pair_ratios"] = {m: statistics.median(c[m] / d[m] for d, c in zip(
        runs["direct"], runs["clusterip"], strict=True)) for m in ("bytes_per_s", "conn_per_s")}
    return out


SERVE_NAME = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8090)); s.listen(64)
while True:
    c, a = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
"""

# connect to the ClusterIP every 5 ms until the named pod answers; print the wall clock then
FIRST = r"""
import socket, sys, time
vip, want, limit = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
while time.monotonic() < limit:
    try:
        s = socket.create_connection((vip, 80), timeout=0.5)
        if s.recv(100).decode() == want:
            print(time.time()); sys.exit(0)
        s.close()
    except OSError:
        pass
    time.sleep(0.005)
sys.exit(1)
"""


async def ready_to_traffic(c: ApiClient, nodes: list[str], rounds: int) -> list[float]:
    """Seconds from a pod's Ready (as a watch-like poll sees it) to the first connection
    through its Service reaching it; one endpoint at a time, on alternating machines."""
    await c.create(service("bench-rt", {"app": "bench-rt"}, [(80, 8090)]))
    vip = (await c.get(core_pb2.Service, "bench-rt", "default")).spec.cluster_ip
    out: list[float] = []
    for i in range(rounds):
        name = f"bench-rt-{i}"
        client = asyncio.create_task(c.exec("default", "bench-send", [
            sys.executable, "-c", FIRST, vip, name, "120"]).wait())
        await c.create(pod(name, nodes[i % 2], [sys.executable, "-c", SERVE_NAME, name],
                           {"app": "bench-rt"}, ready_port=8090))
        async with asyncio.timeout(120):
            while True:  # the moment Ready is visible in the API
                if _ready(await c.get(core_pb2.Pod, name, "default")):
                    t_ready = time.time()
                    break
                await asyncio.sleep(0.01)
        try:
            _, stdout, _ = await client
            out.append(float(stdout.decode().strip()) - t_ready)
        except (ValueError, errors.ApiError) as e:  # the exec stream broke: round lost
            print(f"  round {i}: no answer read: {e}", file=sys.stderr)
        await c.delete(core_pb2.Pod, name, "default", grace_period_seconds=0)
        async with asyncio.timeout(60):  # gone from the Service before the next round
            while True:
                slices = await c.list(discovery_pb2.EndpointSlice, "default",
                                      label_selector="kubernetes.io/service-name=bench-rt")
                if not any(e.addresses for s in slices.items for e in s.endpoints):
                    break
                await asyncio.sleep(0.05)
    return sorted(out)


async def lab_part(d: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg = read_config_file(d / "lab.conf")
    channel = open_channel(cfg.server, cfg.credentials)
    c = ApiClient(channel, cfg.server, timeout=30)
    try:
        await c.create(convert.from_dict({"apiVersion": "node.k8s.io/v1",
                                          "kind": "RuntimeClass", "metadata": {"name": "host"},
                                          "handler": "host"}, node_pb2.RuntimeClass()))
        nodes = sorted(n.metadata.name for n in (await c.list(core_pb2.Node)).items)
        tput = await throughput(c, nodes, args.seconds, args.rounds)
        ready = await ready_to_traffic(c, nodes, args.ready_rounds)
        return {"throughput": tput, "ready": ready}
    finally:
        await channel.close(None)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", default="sync,lab")
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--sync-rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ready-rounds", type=int, default=20)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, nftables)", file=sys.stderr)
        return 1
    parts = set(args.part.split(","))
    print(f"load average {os.getloadavg()[0]:.1f} at start")
    if "sync" in parts:
        s = sync_times(args.services, args.endpoints, args.sync_rounds)
        print(f"proxy sync, {args.services} Services x {args.endpoints} endpoints "
              f"(medians of {args.sync_rounds}; script {s['script_bytes'] / 1e6:.1f} MB):")
        print(f"  first sync   compute {s['compute'] * 1e3:7.0f} ms  render "
              f"{s['render'] * 1e3:7.0f} ms  nft -f {s['apply_full'] * 1e3:7.0f} ms  total "
              f"{(s['compute'] + s['render'] + s['apply_full']) * 1e3:7.0f} ms")
        print(f"  later sync   compute {s['compute'] * 1e3:7.0f} ms  render "
              f"{s['render_update'] * 1e3:7.0f} ms  nft -f {s['apply_update'] * 1e3:7.0f} ms"
              f"  total {(s['compute'] + s['render_update'] + s['apply_update']) * 1e3:7.0f}"
              " ms")
    if "lab" in parts:
        d = Path(tempfile.mkdtemp(prefix="flotilla-bench-svc-"))
        try:
            r = lab(d, "up", "--nodes", "2", "--name", "bsvc")
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            res = asyncio.run(lab_part(d, args))
        finally:
            lab(d, "down")
        dt, ct = res["throughput"]["direct"], res["throughput"]["clusterip"]
        print(f"TCP throughput   pod-to-pod {dt['bytes_per_s'] / 1e6:8.1f} MB/s   via ClusterIP "
              f"{ct['bytes_per_s'] / 1e6:8.1f} MB/s   ratio "
              f"{ct['bytes_per_s'] / dt['bytes_per_s']:.2f}")
        print(f"connections/s    pod-to-pod {dt['conn_per_s']:8.0f}        via ClusterIP "
              f"{ct['conn_per_s']:8.0f}        ratio {ct['conn_per_s'] / dt['conn_per_s']:.2f}")
        print(f"request latency  pod-to-pod p50 {dt['p50'] * 1e3:.2f} ms p99 "
              f"{dt['p99'] * 1e3:.2f} ms   via ClusterIP p50 {ct['p50'] * 1e3:.2f} ms p99 "
              f"{ct['p99'] * 1e3:.2f} ms")
        pr = res["throughput"]["pair_ratios"]
        print(f"median of the rounds' own ratios: throughput {pr['bytes_per_s']:.2f}, "
              f"connections/s {pr['conn_per_s']:.2f}")
        ready = res["ready"] or [float("nan")]
        print(f"pod Ready -> first Service connection ({len(ready)} pods): p50 "
              f"{pct(ready, 0.5) * 1e3:.0f} ms, p99 {pct(ready, 0.99) * 1e3:.0f} ms, max "
              f"{ready[-1] * 1e3:.0f} ms")
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
