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

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
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
