"""Pod network benchmark, in the lab (root): builds a 2-machine lab, measures, removes it.

1. TCP throughput and connection rate pod-to-pod across machines vs machine-to-machine on
   the same lab bridge (the same Python sender and receiver in both cases, so the ratio is
   what the pod network costs: veth + node bridge + routing on each side).
2. Pod creation to IP reachable: ``--pods`` pods (default 100) created at once through the
   API (scheduled over both machines); for each, the time from its create call until a TCP
   connect from the other machine to ``<podIP>:9`` gets an answer (accepted or refused:
   either means the packet reached the pod's namespace). p50/p99.

Every byte stays inside the lab's namespaces; the lab is removed on exit, even on failure.

    .venv/bin/python bench/podnet_bench.py [--pods 100] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.network import netns  # noqa: E402
from control.api import convert  # noqa: E402
from control.api.pb import core_pb2, node_pb2  # noqa: E402
from control.client.channel import open_channel  # noqa: E402
from control.client.client import ApiClient  # noqa: E402
from control.client.config import read_config_file  # noqa: E402

LAB = [sys.executable, str(REPO / "scripts" / "lab.py")]

RECEIVER = r"""
import socket, threading
def sink(c):
    while c.recv(1 << 16):
        pass
    c.sendall(b"k"); c.close()
def serve(port, handler):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(512)
    while True:
        c, _ = s.accept(); threading.Thread(target=handler, args=(c,), daemon=True).start()
def quick(c):
    c.sendall(b"k"); c.close()
threading.Thread(target=serve, args=(5002, quick), daemon=True).start()
serve(5001, sink)
"""

SENDER = r"""
import json, socket, sys, time
host, secs = sys.argv[1], float(sys.argv[2])
buf = b"x" * (1 << 16)
s = socket.create_connection((host, 5001), timeout=10)
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < secs:
    s.sendall(buf); n += len(buf)
s.shutdown(socket.SHUT_WR); s.recv(1)
tput = n / (time.monotonic() - t0)
count, t0 = 0, time.monotonic()
while time.monotonic() - t0 < secs:
    c = socket.create_connection((host, 5002), timeout=10); c.recv(1); c.close(); count += 1
print(json.dumps({"bytes_per_s": tput, "conn_per_s": count / (time.monotonic() - t0)}))
"""


def lab(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, "--dir", str(d), *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, check=False)


def in_namespace(ns: Path, argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*LAB, "_exec", str(ns), "bench", "--", *argv], cwd=REPO,
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pod(name: str, argv: list[str], node: str = "") -> core_pb2.Pod:
    spec: dict[str, Any] = {"terminationGracePeriodSeconds": 0, "runtimeClassName": "host",
                            "containers": [
        {"name": "c", "image": "busybox", "command": argv}]}
    if node:
        spec["nodeName"] = node
    p: core_pb2.Pod = convert.from_dict({"apiVersion": "v1", "kind": "Pod",
                                         "metadata": {"name": name, "namespace": "default"},
                                         "spec": spec}, core_pb2.Pod())
    return p


async def wait_ip(c: ApiClient, name: str, limit: float = 60) -> str:
    async with asyncio.timeout(limit):
        while True:
            p = await c.get(core_pb2.Pod, name, "default")
            if p.status.phase == "Running" and p.status.pod_ip:
                return str(p.status.pod_ip)
            await asyncio.sleep(0.1)


async def _send_from(ns: Path, host: str, seconds: float, port_base: int) -> dict[str, float]:
    sender = SENDER.replace("5001", str(port_base + 1)).replace("5002", str(port_base + 2))
    r = await asyncio.to_thread(
        subprocess.run, [*LAB, "_exec", str(ns), "bench", "--", sys.executable, "-c", sender,
                         host, str(seconds)],
        capture_output=True, text=True, timeout=seconds * 4 + 30, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"sender failed: {r.stderr[-2000:]}")
    result: dict[str, float] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def _receiver(port_base: int) -> list[str]:
    return [sys.executable, "-c", RECEIVER.replace("5001", str(port_base + 1))
            .replace("5002", str(port_base + 2))]


def _median(runs: list[dict[str, float]], key: str) -> float:
    values = sorted(r[key] for r in runs)
    return values[len(values) // 2]


async def throughput(d: Path, c: ApiClient, seconds: float, names: dict[int, str],
                     rounds: int) -> dict[str, Any]:
    """Interleaved rounds (machine, pod path, pod via exec), medians: a shared machine's
    load swings more than the difference being measured."""
    await c.create(pod("bench-recv", _receiver(5000), names[1]))
    await c.create(pod("bench-send", ["sleep", "3600"], names[2]))
    ip = await wait_ip(c, "bench-recv")
    await wait_ip(c, "bench-send")
    pins = [sorted((d / f"m{i}" / "agent" / "runtime" / "netns").iterdir()) for i in (1, 2)]
    if len(pins[0]) != 1 or len(pins[1]) != 1:
        raise RuntimeError("expected exactly one pod namespace per machine")
    # receivers for the machine path (in m1) and for the same processes in the pod's namespace
    receivers = [in_namespace(d / "netns" / "m1", _receiver(6000)),
                 in_namespace(pins[0][0], _receiver(7000))]
    runs: dict[str, list[dict[str, float]]] = {"machine": [], "pod_ns": [], "pod": []}
    try:
        await asyncio.sleep(1.5)
        for _ in range(rounds):
            runs["machine"].append(await _send_from(d / "netns" / "m2", "172.30.255.11",
                                                    seconds, 6000))
            runs["pod_ns"].append(await _send_from(pins[1][0], ip, seconds, 7000))
            code, stdout, stderr = await c.exec("default", "bench-send", [
                sys.executable, "-c", SENDER, ip, str(seconds)]).wait()
            if code != 0:
                raise RuntimeError(f"sender failed: {stderr.decode()}")
            runs["pod"].append(json.loads(stdout.decode().strip().splitlines()[-1]))
    finally:
        for r in receivers:
            r.kill()
            r.wait()
    for name in ("bench-recv", "bench-send"):
        await c.delete(core_pb2.Pod, name, "default", grace_period_seconds=0)
    return {k: {"bytes_per_s": _median(v, "bytes_per_s"), "conn_per_s": _median(v, "conn_per_s")}
            for k, v in runs.items()}


async def reachable(d: Path, ip: str) -> bool:
    """A TCP connect to ip:9 from inside machine 2 is answered (accepted or refused)."""
    sock = await asyncio.to_thread(netns.run_in, d / "netns" / "m2", lambda: socket.socket())
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (ip, 9)), 0.5)
        return True
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    except TimeoutError:
        return False
    finally:
        sock.close()


async def creation_to_reachable(d: Path, c: ApiClient, count: int) -> list[float]:
    created: dict[str, float] = {}
    latencies: dict[str, float] = {}

    async def one(i: int) -> None:
        name = f"reach-{i}"
        t0 = time.monotonic()
        await c.create(pod(name, ["sleep", "3600"]))
        created[name] = t0
        ip = await wait_ip(c, name, limit=300)
        async with asyncio.timeout(120):
            while True:  # polls the kernel: no event says "reachable"
                if await reachable(d, ip):
                    break
                await asyncio.sleep(0.02)
        latencies[name] = time.monotonic() - t0

    await asyncio.gather(*(one(i) for i in range(count)))
    for name in created:
        await c.delete(core_pb2.Pod, name, "default", grace_period_seconds=0)
    return sorted(latencies.values())


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def measure(d: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg = read_config_file(d / "lab.conf")
    address = cfg.server
    channel = open_channel(address, cfg.credentials)
    c = ApiClient(channel, address, timeout=30)
    try:
        # the benchmark's containers run this machine's python, whatever the default handler
        await c.create(convert.from_dict({"apiVersion": "node.k8s.io/v1",
                                          "kind": "RuntimeClass", "metadata": {"name": "host"},
                                          "handler": "host"}, node_pb2.RuntimeClass()))
        nodes = sorted(n.metadata.name for n in (await c.list(core_pb2.Node)).items)
        names = {1: nodes[0], 2: nodes[1]}
        tput = await throughput(d, c, args.seconds, names, args.rounds)
        lat = await creation_to_reachable(d, c, args.pods)
        return {"throughput": tput, "reachable_p50": pct(lat, 0.5),
                "reachable_p99": pct(lat, 0.99), "pods": len(lat)}
    finally:
        await channel.close(None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    d = Path(tempfile.mkdtemp(prefix="flotilla-bench-lab-"))
    try:
        r = lab(d, "up", "--nodes", "2", "--name", "bench")
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        res = asyncio.run(measure(d, args))
    finally:
        lab(d, "down")
    m, pd = res["throughput"]["machine"], res["throughput"]["pod"]
    print(f"TCP throughput   machine-to-machine {m['bytes_per_s'] / 1e6:8.1f} MB/s   "
          f"pod-to-pod {pd['bytes_per_s'] / 1e6:8.1f} MB/s   "
          f"ratio {pd['bytes_per_s'] / m['bytes_per_s']:.2f}")
    print(f"connections/s    machine-to-machine {m['conn_per_s']:8.0f}        "
          f"pod-to-pod {pd['conn_per_s']:8.0f}        "
          f"ratio {pd['conn_per_s'] / m['conn_per_s']:.2f}")
    pn = res["throughput"]["pod_ns"]
    if pn:
        print(f"same processes in the pods' namespaces: {pn['bytes_per_s'] / 1e6:8.1f} MB/s "
              f"(ratio {pn['bytes_per_s'] / m['bytes_per_s']:.2f}), {pn['conn_per_s']:.0f} "
              f"connections/s (ratio {pn['conn_per_s'] / m['conn_per_s']:.2f})")
    print(f"pod creation -> IP reachable ({res['pods']} pods at once): "
          f"p50 {res['reachable_p50']:.2f} s, p99 {res['reachable_p99']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
