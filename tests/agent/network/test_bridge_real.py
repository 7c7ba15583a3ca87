"""The real pod network on the kernel, in a network namespace of the test's own (the
scenario runs under ``unshare --net``, so nothing touches the machine's network): pods get
addresses from the node's range, talk TCP and UDP to each other, over localhost within a
pod and to themselves; hostPort works from a pod and from the node; an unrouted cluster
address is refused locally; removal and cleanup leave nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.network import netns
from agent.runtime import sandbox_ipc

pytestmark = [
    pytest.mark.root(reason="network namespaces, links and nftables need root"),
    pytest.mark.skipif(not (shutil.which("nft") or os.path.exists("/usr/sbin/nft")),
                       reason="needs nft"),
]

ROOT = Path(__file__).resolve().parents[3]


def test_one_node_pod_network(tmp_path: Path) -> None:
    try:
        r = subprocess.run(["unshare", "--net", "--", sys.executable, "-m",
                            "tests.agent.network.node_scenario", str(tmp_path)],
                           capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    finally:
        # whatever the scenario left pinned goes with the test
        for pin in (tmp_path / "runtime" / "netns").glob("*"):
            netns.remove(pin)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    a, b = got["ips"]["a"], got["ips"]["b"]
    assert a != b and a.startswith("10.244.7.") and b.startswith("10.244.7.")
    assert got["b_to_a_tcp"] == f"hello from a to {b}"  # source address preserved
    assert got["b_to_a_udp"] == "udp:ping"
    assert got["a_localhost"] == "hello from a to 127.0.0.1"
    assert got["a_to_self"] == f"hello from a to {a}"  # hairpin
    assert got["b_to_a_hostport"].startswith("hello from a to ")
    assert got["node_to_hostport"].startswith("hello from a to ")
    assert got["unrouted"] == "OSError:113"  # EHOSTUNREACH: the unreachable route
    assert got["leases_after_remove"] == [a]
    assert len(got["netns_after_remove"]) == 1
    assert got["links_after_cleanup"] == 0
    assert "flotilla-net" not in got["table_after_cleanup"]
    assert got["routes_after_cleanup"] == ""


CLEANUP_SCENARIO = r"""
import asyncio, json, os, subprocess, sys
from pathlib import Path
from agent.network import netns
from agent.network.bridge import BridgeNetwork
from agent.network.interface import AttachRequest, PortMapping
from agent.runtime import sandbox_ipc

data = Path(sys.argv[1])

async def main():
    net = BridgeNetwork(data / "network")
    await net.configure("10.244.9.0/24")
    pins = data / "runtime" / "netns"
    pins.mkdir(parents=True)
    netns.create(pins / "sb1")
    await net.add(AttachRequest("sb1", str(pins / "sb1"), port_mappings=(PortMapping(8080, 80),)))
    (data / "runtime" / "sandboxes" / "sb1").mkdir(parents=True)
    sandbox_ipc.create(data / "runtime" / "ipcns", data / "runtime" / "sandboxes" / "sb1", "sb1")

asyncio.run(main())
before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
r = subprocess.run([sys.executable, "-m", "control.cli.main", "agent", "--cleanup",
                    "--node-name", "n1", "--data-dir", str(data)], capture_output=True,
                   text=True)
def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True).stdout
print(json.dumps({"rc": r.returncode, "err": r.stderr[-2000:],
                  "had_bridge": "flotilla0" in before,
                  "links": run("ip", "-o", "link").count("flo"),
                  "tables": run("nft", "list", "tables"),
                  "routes": run("ip", "route", "show", "table", "all", "proto", "241"),
                  "pins": [p.name for p in (data / "runtime" / "netns").iterdir()],
                  "ipc_pins": [p.name for p in (data / "runtime" / "ipcns").iterdir()],
                  "shm_mounted": os.path.ismount(data / "runtime" / "sandboxes" / "sb1" / "shm"),
                  "leases": (data / "network" / "ipam").exists()}))
"""


def test_agent_cleanup_removes_what_the_network_created(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    try:
        r = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", CLEANUP_SCENARIO,
                            str(data)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                           check=False)
    finally:
        for pin in (data / "runtime" / "netns").glob("*"):
            netns.remove(pin)
        sandbox_ipc.remove(data / "runtime" / "ipcns", data / "runtime" / "sandboxes" / "sb1",
                           "sb1")
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0, got["err"]
    assert got["had_bridge"]
    assert (got["links"], got["tables"], got["routes"], got["pins"], got["leases"]) == (
        0, "", "", [], False)
    assert (got["ipc_pins"], got["shm_mounted"]) == ([], False)
