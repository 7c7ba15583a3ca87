"""Stale UDP conntrack entries: which flows a rules change makes stale (table tests), and,
as root, ``conntrack -D`` deleting exactly those among entries inserted in a network
namespace this test creates (no packet is sent)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from agent.proxy.conntrack import ConntrackCli, FakeConntrack, Flow, stale_flows
from agent.proxy.nft_rules import Endpoint, Ruleset, ServicePort

A, B, C = Endpoint("10.244.0.2", 5353), Endpoint("10.244.1.2", 5353), Endpoint("10.244.1.3", 53)


def udp(*eps: Endpoint, name: str = "dns", node_port: int = 0,
        lb: tuple[str, ...] = ()) -> ServicePort:
    return ServicePort("default", name, "", "UDP", "10.96.0.10", 53, node_port, eps,
                       load_balancer_ips=lb)


def rules(*ports: ServicePort) -> Ruleset:
    return Ruleset("10.96.0.0/12", ports)


CASES = [
    ("first sync: nothing to be stale against", None, rules(udp(A)), []),
    ("unchanged", rules(udp(A, B)), rules(udp(A, B)), []),
    ("an endpoint added", rules(udp(A)), rules(udp(A, B)), []),
    ("an endpoint gone", rules(udp(A, B)), rules(udp(A)), [Flow("10.96.0.10", 53, B.ip)]),
    ("gone, with node port and load-balancer address",
     rules(udp(A, B, node_port=30053, lb=("172.30.255.11",))),
     rules(udp(A, node_port=30053, lb=("172.30.255.11",))),
     [Flow("10.96.0.10", 53, B.ip), Flow("172.30.255.11", 30053, B.ip),
      Flow("172.30.255.11", 53, B.ip)]),
    ("the endpoint's port changed only: same address, nothing stale",
     rules(udp(A)), rules(udp(Endpoint(A.ip, 53))), []),
    ("the Service gone", rules(udp(A)), rules(), [Flow("10.96.0.10", 53, A.ip)]),
    ("the first endpoint: flows set up while it had none",
     rules(udp(node_port=30053)), rules(udp(C, node_port=30053)),
     [Flow("10.96.0.10", 53), Flow("172.30.255.11", 30053)]),
    ("a new Service with endpoints", rules(), rules(udp(C)), [Flow("10.96.0.10", 53)]),
    ("every endpoint replaced", rules(udp(A)), rules(udp(C)), [Flow("10.96.0.10", 53, A.ip)]),
    ("TCP is not tracked here",
     rules(ServicePort("default", "web", "", "TCP", "10.96.0.5", 80, 0, (A,))),
     rules(ServicePort("default", "web", "", "TCP", "10.96.0.5", 80, 0, ())), []),
]


@pytest.mark.parametrize(("old", "new", "want"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_stale_flows(old: Ruleset | None, new: Ruleset, want: list[Flow]) -> None:
    assert stale_flows(old, new, ["172.30.255.11"]) == sorted(want)


def test_node_port_flows_need_the_node_addresses() -> None:
    # the port alone would match other programs' flows to other machines
    old, new = rules(udp(A, B, node_port=30053)), rules(udp(A, node_port=30053))
    assert stale_flows(old, new) == [Flow("10.96.0.10", 53, B.ip)]


def test_flow_argv() -> None:
    assert Flow("10.96.0.10", 53, "10.244.0.2").argv() == [
        "-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53",
        "--reply-src", "10.244.0.2"]
    assert Flow("", 30053).argv() == ["-D", "-p", "udp", "--orig-port-dst", "30053"]


async def test_fake_records() -> None:
    fake = FakeConntrack()
    await fake.delete([Flow("10.96.0.10", 53)])
    assert fake.deleted == [Flow("10.96.0.10", 53)]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"flt-ct-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10,
                       check=False)


def _entry(ns: str, client: str, dst: str, dport: int, endpoint: str) -> None:
    # a DNATed UDP flow as the proxy's rules leave it: client -> dst:dport, replies from
    # the endpoint
    subprocess.run(["ip", "netns", "exec", ns, "conntrack", "-I", "-p", "udp", "-s", client,
                    "-d", dst, "--sport", "4000", "--dport", str(dport), "-r", endpoint,
                    "-q", client, "--reply-port-src", "5353", "--reply-port-dst", "4000",
                    "-t", "300"], check=True, capture_output=True, timeout=10)


def _listed(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "conntrack", "-L", "-p", "udp"],
                         capture_output=True, text=True, timeout=10, check=False).stdout
    return sorted(" ".join(w for w in line.split() if w.startswith(("src=", "dst=", "dport=")))
                  for line in out.splitlines())


@pytest.mark.root(reason="network namespaces and conntrack")
@pytest.mark.skipif(not os.path.exists("/usr/sbin/conntrack"), reason="needs conntrack")
async def test_cli_deletes_only_the_stale_flows(netns: str) -> None:
    _entry(netns, "10.244.0.5", "10.96.0.10", 53, A.ip)  # to the endpoint that goes
    _entry(netns, "10.244.0.6", "10.96.0.10", 53, B.ip)  # to the one that stays
    _entry(netns, "10.244.0.7", "10.96.0.11", 53, A.ip)  # another Service, same pod
    cli = ConntrackCli(prefix=["ip", "netns", "exec", netns])
    await cli.delete(stale_flows(rules(udp(A, B)), rules(udp(B))))
    assert _listed(netns) == sorted([
        "src=10.244.0.6 dst=10.96.0.10 dport=53 src=10.244.1.2 dst=10.244.0.6 dport=4000",
        "src=10.244.0.7 dst=10.96.0.11 dport=53 src=10.244.0.2 dst=10.244.0.7 dport=4000"])
    # nothing matching is not an error
    await cli.delete([Flow("10.96.0.99", 53)])
