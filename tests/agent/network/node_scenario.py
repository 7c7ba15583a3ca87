"""Run inside a fresh network namespace (``unshare --net``) by test_bridge_real.py: one
node's pod network on the real kernel, with the process runtime. Prints one JSON line of
findings; removes everything it created, even on failure."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

from agent.network.bridge import BridgeNetwork
from agent.network.interface import PortMapping
from agent.runtime.interface import ContainerConfig, SandboxConfig
from agent.runtime.process import ProcessRuntime

SERVER = r"""
import socket, threading
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(16)
    while True:
        c, a = s.accept(); c.sendall(("hello from " + socket.gethostname() + " to " + a[0]).encode()); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 8081))
    while True:
        d, a = u.recvfrom(100); u.sendto(b"udp:" + d, a)
threading.Thread(target=udp, daemon=True).start()
tcp()
"""

CLIENT = r"""
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    s = socket.create_connection((host, port), timeout=5); print(s.recv(100).decode())
else:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
    u.sendto(b"ping", (host, port)); print(u.recv(100).decode())
"""


async def main(tmp: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    net = BridgeNetwork(tmp / "network")
    rt = ProcessRuntime(tmp / "runtime", cgroup_prefix=f"flotilla-test/{tmp.name}",
                        network=net)
    try:
        await net.configure("10.244.7.0/24")
        await net.set_routes({"10.244.8.0/24": "10.244.7.254"})  # next hop on the bridge
        sandboxes = {}
        for name, ports in (("a", (PortMapping(9090, 8080),)), ("b", ())):
            cfg = SandboxConfig(pod_uid=f"uid-{name}", namespace="default", name=name,
                                hostname=name, pod_dir=str(tmp / name), port_mappings=ports)
            sandboxes[name] = await rt.run_pod_sandbox(cfg)
        ips = {s.name: s.ip for s in await rt.list_pod_sandboxes()}
        out["ips"] = ips
        cid = await rt.create_container(sandboxes["a"], ContainerConfig(
            name="server", argv=[sys.executable, "-c", SERVER]))
        await rt.start_container(cid)
        side = await rt.create_container(sandboxes["a"], ContainerConfig(
            name="side", argv=["sleep", "60"]))
        await rt.start_container(side)
        client = await rt.create_container(sandboxes["b"], ContainerConfig(
            name="client", argv=["sleep", "60"]))
        await rt.start_container(client)
        await asyncio.sleep(1.0)

        async def run(cid: str, *argv: str) -> str:
            r = await rt.exec_sync(cid, [sys.executable, "-c", CLIENT, *argv], 10)
            return (r.stdout.decode() + r.stderr.decode()).strip()

        out["b_to_a_tcp"] = await run(client, "tcp", ips["a"], "8080")
        out["b_to_a_udp"] = await run(client, "udp", ips["a"], "8081")
        out["a_localhost"] = await run(side, "tcp", "127.0.0.1", "8080")
        out["a_to_self"] = await run(side, "tcp", ips["a"], "8080")
        out["b_to_a_hostport"] = await run(client, "tcp", "10.244.7.1", "9090")
        r = await rt.exec_sync(client, ["cat", "/proc/net/route"], 5)
        out["b_routes"] = r.stdout.decode()
        # the node itself, through the hostPort on its own address
        def node_client() -> str:
            with socket.create_connection(("10.244.7.1", 9090), timeout=5) as s:
                return s.recv(100).decode()
        out["node_to_hostport"] = await asyncio.to_thread(node_client)
        # a cluster address nobody routes is refused here
        def unrouted() -> str:
            try:
                socket.create_connection(("10.244.99.9", 80), timeout=3)
                return "connected"
            except OSError as e:
                return type(e).__name__ + ":" + str(e.errno)
        out["unrouted"] = await asyncio.to_thread(unrouted)
        await rt.remove_pod_sandbox(sandboxes["b"])
        out["leases_after_remove"] = sorted(lease.address for lease in net.leases.leases())
        out["netns_after_remove"] = sorted(p.name for p in (tmp / "runtime" / "netns").iterdir())
    finally:
        for s in await rt.list_pod_sandboxes():
            await rt.remove_pod_sandbox(s.id)
        await rt.close()
        await net.cleanup()
    out.update(await asyncio.to_thread(leftovers))
    return out


def leftovers() -> dict[str, object]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    return {"links_after_cleanup": run("ip", "-o", "link").count(": flo"),
            "table_after_cleanup": run("nft", "list", "tables"),
            "routes_after_cleanup": run("ip", "route", "show", "table", "all", "proto", "241")}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
