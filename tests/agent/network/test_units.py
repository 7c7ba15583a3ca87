"""The pod network's pure parts: address choice, the nftables script, host-gw routes, the
pod's /etc/hosts and hostPorts; the lease store on disk; the in-memory double."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from agent.kubelet.sync import pod_hosts_file, port_mappings
from agent.network.fake import FakeNetwork
from agent.network.interface import AttachRequest, NetworkError, NetworkNotReady, PortMapping
from agent.network.ipam import IpamError, LeaseStore, next_address
from agent.network.nft import HostPort, Rules, render
from agent.network.routes import desired_routes
from control.api import convert
from control.api.pb import core_pb2

N = ipaddress.ip_network


@pytest.mark.parametrize(("cidr", "used", "last", "expected"), [
    ("10.244.1.0/24", [], None, "10.244.1.2"),  # .0 network, .1 gateway
    ("10.244.1.0/24", ["10.244.1.2"], None, "10.244.1.3"),
    ("10.244.1.0/24", [], "10.244.1.7", "10.244.1.8"),  # round robin
    ("10.244.1.0/24", [], "10.244.1.254", "10.244.1.2"),  # wraps; .255 is broadcast
    ("10.244.1.0/24", ["10.244.1.2"], "10.244.1.254", "10.244.1.3"),
    ("10.244.1.0/24", [], "10.9.9.9", "10.244.1.2"),  # last from another range
    ("10.244.1.0/29", ["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5",
                       "10.244.1.6"], None, None),  # full
    ("10.244.1.0/30", [], None, None),
])
def test_next_address(cidr: str, used: list[str], last: str | None,
                      expected: str | None) -> None:
    got = next_address(N(cidr), used, last)
    assert (None if got is None else str(got)) == expected


def test_lease_store(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "ipam")
    net = N("10.244.3.0/29")
    a = store.allocate(net, "sb-a", ports=[{"host_port": 80, "container_port": 8080,
                                            "protocol": "TCP", "host_ip": ""}])
    assert store.allocate(net, "sb-a").address == a.address  # idempotent per id
    b = store.allocate(net, "sb-b")
    assert (a.address, b.address) == ("10.244.3.2", "10.244.3.3")
    # a fresh store on the same directory (agent restart) sees the same leases
    again = LeaseStore(tmp_path / "ipam")
    assert {(x.address, x.container_id) for x in again.leases()} == {
        ("10.244.3.2", "sb-a"), ("10.244.3.3", "sb-b")}
    assert again.find("sb-a").ports[0]["host_port"] == 80  # type: ignore[union-attr]
    assert again.release_unknown({"sb-b"}) == ["sb-a"]
    c = again.allocate(net, "sb-c")
    assert c.address == "10.244.3.4"  # after the last handed out, not the freed .2
    assert [again.allocate(net, f"fill-{i}").address for i in range(3)] == [
        "10.244.3.5", "10.244.3.6", "10.244.3.2"]  # round the range to the freed one
    with pytest.raises(IpamError, match=r"no free address left in 10\.244\.3\.0/29"):
        again.allocate(net, "one-too-many")
    (tmp_path / "ipam" / "junk").write_text("not ours")
    assert len(again.leases()) == 5


def test_render_table() -> None:
    script = render(Rules(
        pod_cidr="10.244.1.0/24", cluster_cidrs=("10.244.0.0/16", "10.96.0.0/12"),
        bridge="flotilla0",
        host_ports=[HostPort("10.244.1.5", PortMapping(8080, 80)),
                    HostPort("10.244.1.6", PortMapping(53, 5353, "UDP", "192.0.2.1"))],
        restrict_forwarding=True))
    lines = [line.strip() for line in script.splitlines()]
    # replaced whole, in one transaction
    assert lines[:3] == ["table ip flotilla-net", "delete table ip flotilla-net",
                         "table ip flotilla-net {"]
    assert "tcp dport 8080 dnat to 10.244.1.5:80" in lines
    assert "ip daddr 192.0.2.1 udp dport 53 dnat to 10.244.1.6:5353" in lines
    assert ("ip saddr 10.244.1.0/24 ip daddr != { 10.244.0.0/16, 10.96.0.0/12 } masquerade"
            in lines)
    assert lines[lines.index("type filter hook forward priority 0; policy accept;") + 3] \
        == "drop"
    free = render(Rules("10.244.1.0/24", ("10.244.0.0/16",), "flotilla0"))
    assert "drop" not in free and "dnat to" not in free


def _node(name: str, cidr: str = "", ip: str = "") -> core_pb2.Node:
    n: core_pb2.Node = convert.from_dict({"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": name}}, core_pb2.Node())
    if cidr:
        n.spec.pod_cidr = cidr
        n.spec.pod_cidrs.append(cidr)
    if ip:
        n.status.addresses.add(type="Hostname", address=name)
        n.status.addresses.add(type="InternalIP", address=ip)
    return n


def test_desired_routes() -> None:
    nodes = [_node("me", "10.244.0.0/24", "192.0.2.1"),
             _node("b", "10.244.1.0/24", "192.0.2.2"),
             _node("no-cidr", "", "192.0.2.3"),
             _node("no-ip", "10.244.3.0/24"),
             _node("v6", "fd00::/64", "fd00::1")]
    assert desired_routes(nodes, "me") == {"10.244.1.0/24": "192.0.2.2"}


def _pod(doc: dict[str, object]) -> core_pb2.Pod:
    base = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}
    base["spec"].update(doc)  # type: ignore[attr-defined]
    p: core_pb2.Pod = convert.from_dict(base, core_pb2.Pod())
    return p


def test_pod_hosts_file() -> None:
    plain = pod_hosts_file(_pod({}), "10.244.1.5", "cluster.local")
    assert plain.splitlines()[0] == "# Kubernetes-managed hosts file."
    assert "127.0.0.1\tlocalhost" in plain.splitlines()
    assert plain.splitlines()[-1] == "10.244.1.5\tweb-0"
    sub = pod_hosts_file(_pod({"hostname": "db", "subdomain": "backend", "hostAliases": [
        {"ip": "192.0.2.9", "hostnames": ["foo", "bar"]}]}), "10.244.1.5", "cluster.local")
    lines = sub.splitlines()
    assert "10.244.1.5\tdb.backend.shop.svc.cluster.local\tdb" in lines
    assert lines[-2:] == ["# Entries added by HostAliases.", "192.0.2.9\tfoo\tbar"]


def test_port_mappings() -> None:
    pod = _pod({"containers": [{"name": "c", "image": "x", "ports": [
        {"containerPort": 80, "hostPort": 8080}, {"containerPort": 81},
        {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "192.0.2.1"}]}]})
    assert port_mappings(pod) == [PortMapping(8080, 80, "TCP", ""),
                                  PortMapping(53, 53, "UDP", "192.0.2.1")]


async def test_fake_network() -> None:
    net = FakeNetwork("10.244.0.0/29")
    req = AttachRequest("sb1", "/x")
    a = await net.add(req)
    assert a.ips == ("10.244.0.2",) and a.gateway == "10.244.0.1"
    assert await net.add(req) == a
    await net.check(req)
    assert await net.gc({"other"}) == ["sb1"]
    with pytest.raises(NetworkError):
        await net.check(req)
    with pytest.raises(NetworkNotReady):
        await FakeNetwork(None).add(req)


def test_veth_names_are_short_and_distinct() -> None:
    from agent.network.bridge import veth_name

    ids = [f"{i:032x}" for i in range(100)]  # one long shared prefix
    names = {veth_name(i) for i in ids}
    assert len(names) == 100
    assert all(len(n) <= 15 and n.startswith("flo") for n in names)
    assert veth_name(ids[0]) == veth_name(ids[0])
