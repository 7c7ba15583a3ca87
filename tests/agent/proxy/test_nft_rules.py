"""The proxy's nftables ruleset: rendering (table tests) and, as root, the rules doing
their job inside a network namespace this test creates (no packet leaves it): a ClusterIP
spreads connections over its endpoints, a ClientIP-affinity Service keeps one client on
one endpoint, a Service without endpoints and an unallocated ClusterIP refuse at once,
NodePort and a load-balancer ingress address on a local address work, and cleanup removes
it; across client, node and pod namespaces, externalTrafficPolicy Cluster masquerades while
Local keeps the client's address, uses the node's own endpoint, and drops without one;
loadBalancerSourceRanges drop other sources; a pod DNATed back to itself is masqueraded;
a restarted proxy's first sync keeps the affinity sets."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from agent.proxy.nft_rules import (
    MASQ_MARK,
    TABLE,
    Endpoint,
    Ruleset,
    ServicePort,
    cleanup_script,
    render,
    render_adopt,
    render_update,
)

EPS = [Endpoint("10.244.0.2", 8080), Endpoint("10.244.0.3", 8080)]
RULES = Ruleset("10.96.0.0/12", [
    ServicePort("default", "web", "http", "TCP", "10.96.0.5", 80, 30080, EPS,
                load_balancer_ips=("10.123.0.1",)),
    ServicePort("default", "dns", "", "UDP", "10.96.0.6", 53, 0, EPS[:1]),
    ServicePort("default", "empty", "", "TCP", "10.96.0.7", 80, 30081, ()),
    ServicePort("default", "sticky", "", "TCP", "10.96.0.8", 80, 0, EPS, affinity_timeout=60),
    ServicePort("default", "local", "", "TCP", "10.96.0.9", 80, 30082, EPS,
                local_endpoints=EPS[:1]),
    ServicePort("default", "remote", "", "TCP", "10.96.0.10", 80, 30083, EPS,
                local_endpoints=(), load_balancer_ips=("10.123.0.5",)),
    ServicePort("default", "stickylocal", "", "TCP", "10.96.0.11", 80, 30084, EPS,
                affinity_timeout=60, local_endpoints=EPS[1:]),
])


def _chain(text: str, name: str) -> list[str]:
    return text.split(f"  chain {name} {{\n")[1].split("\n  }")[0].splitlines()


def test_render_maps_each_port_with_endpoints() -> None:
    text = render(RULES)
    web, dns, empty, *_ = RULES.ports
    assert f"10.96.0.5 . tcp . 80 : goto {web.chain}" in text
    assert f"tcp . 30080 : goto {web.chain}-ext" in text
    assert f"10.123.0.1 . tcp . 80 : goto {web.chain}-ext" in text
    assert text.count(f"  chain {web.chain}-ext {{") == 1
    assert "10.96.0.6 . udp . 53 : goto" in text and f"{dns.chain}-ext" not in text
    assert "numgen random mod 2 map { 0 : 10.244.0.2 . 8080, 1 : 10.244.0.3 . 8080 }" in text
    assert f"10.96.0.6 . udp . 53 : goto {dns.chain}" in text
    assert "meta l4proto udp dnat to 10.244.0.2:8080" in text
    assert "10.96.0.7" not in text and empty.chain not in text  # rejected, not mapped
    assert "ip daddr 10.96.0.0/12 meta l4proto tcp reject with tcp reset" in text
    assert text.startswith(f"table ip {TABLE}\ndelete table ip {TABLE}\n")


def test_render_client_ip_affinity() -> None:
    text = render(RULES)
    sticky = RULES.ports[3]
    assert f"10.96.0.8 . tcp . 80 : goto {sticky.chain}" in text
    chain = text.split(f"  chain {sticky.chain} {{\n")[1].split("  }")[0].splitlines()
    ep_chains = sorted(line.split("goto ")[1] for line in chain if "@" in line)
    assert len(ep_chains) == 2 and all(c.startswith(f"{sticky.chain}-ep-") for c in ep_chains)
    for name in ep_chains:  # remembered clients go back to their endpoint, first
        assert f"    ip saddr @{name}-60s goto {name}" in chain
        assert (f"  set {name}-60s {{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }}"
                in text)
        body = text.split(f"  chain {name} {{\n")[1].split("  }")[0]
        assert f"update @{name}-60s {{ ip saddr }}" in body
    assert chain[-1].startswith("    numgen random mod 2 vmap { 0 : goto ")
    bodies = {text.split(f"  chain {n} {{\n")[1].split("  }")[0].split("dnat to ")[1].strip()
              for n in ep_chains}
    assert bodies == {"10.244.0.2:8080", "10.244.0.3:8080"}
    # without affinity: no affinity sets, no per-endpoint chains
    plain = render(Ruleset("10.96.0.0/12", [*RULES.ports[:3], *RULES.ports[4:6]]))
    assert "  set svc-" not in plain and "-ep-" not in plain


def test_render_hairpin() -> None:
    # one set of (endpoint, endpoint) pairs: a connection DNATed back to its own source
    # is masqueraded, whichever Service took it there
    text = render(RULES)
    assert "  set hairpin {\n    type ipv4_addr . ipv4_addr\n    elements = { " \
           "10.244.0.2 . 10.244.0.2, 10.244.0.3 . 10.244.0.3 }" in text
    assert "    ct status dnat ip saddr . ip daddr @hairpin masquerade" in _chain(
        text, "nat-postrouting")
    assert "ip saddr 10.244.0.2 meta mark" not in text
    update = render_update(RULES, text)
    assert update.index("flush set ip flotilla-proxy hairpin") < update.index(
        "table ip flotilla-proxy {")


def test_render_external_traffic_policy() -> None:
    text = render(RULES)
    web, local, remote, sticky = (RULES.ports[i] for i in (0, 4, 5, 6))
    # Cluster: masquerade, then any endpoint
    assert _chain(text, f"{web.chain}-ext") == [f"    meta mark set meta mark | {MASQ_MARK}",
                                                 f"    goto {web.chain}"]
    own = "    fib saddr type local meta mark set meta mark | {m} goto {c}"
    # Local: this node's own traffic as Cluster; others keep their address, local only
    assert _chain(text, f"{local.chain}-ext") == [
        own.format(m=MASQ_MARK, c=local.chain),
        "    meta l4proto tcp dnat to 10.244.0.2:8080"]
    assert _chain(text, f"{remote.chain}-ext") == [own.format(m=MASQ_MARK, c=remote.chain),
                                                    "    drop"]
    assert f"10.123.0.5 . tcp . 80 : goto {remote.chain}-ext" in text
    # with the pods' range known, their traffic may use any endpoint
    with_pods = render(Ruleset("10.96.0.0/12", RULES.ports, cluster_cidr="10.244.0.0/16"))
    assert _chain(with_pods, f"{remote.chain}-ext") == [
        own.format(m=MASQ_MARK, c=remote.chain),
        f"    ip saddr 10.244.0.0/16 goto {remote.chain}", "    drop"]
    assert "ip saddr 10.244.0.0/16" not in "".join(_chain(with_pods, f"{web.chain}-ext"))
    # the ClusterIP keeps every endpoint
    assert "10.244.0.3" in " ".join(_chain(text, local.chain))
    # with affinity, the local pick goes through the local endpoints' chains only
    ext = _chain(text, f"{sticky.chain}-ext")
    assert len([x for x in ext if "@" in x]) == 1 and "numgen random mod 1 vmap" in ext[-1]


def test_render_update_keeps_what_stays_and_deletes_what_went() -> None:
    before = render(RULES)
    sticky = RULES.ports[3]
    web = RULES.ports[0]
    changed = [p for p in RULES.ports if p.name not in ("web", "sticky")]
    changed.append(ServicePort("default", "sticky", "", "TCP", "10.96.0.8", 80, 0, EPS[:1],
                               affinity_timeout=60))
    text = render_update(Ruleset("10.96.0.0/12", changed), before)
    head = text.split(f"table ip {TABLE} {{")[0].splitlines()
    assert head[:2] == [f"add table ip {TABLE}", f"flush table ip {TABLE}"]
    assert f"delete table ip {TABLE}" not in text
    assert f"flush map ip {TABLE} service-ips" in head
    deleted = {line.split()[-1] for line in head if line.startswith("delete ")}
    ep_chains = [line.split()[1] for line in before.splitlines()
                 if line.startswith(f"  chain {sticky.chain}-ep-")]
    [gone] = [n for n in ep_chains if "dnat to 10.244.0.3:8080" in "".join(_chain(before, n))]
    [kept] = [n for n in ep_chains if n != gone]
    assert web.chain in deleted and f"{web.chain}-ext" in deleted
    assert {gone, f"{gone}-60s"} <= deleted  # the endpoint that went, and its clients
    assert not {kept, f"{kept}-60s"} & deleted
    assert sticky.chain not in deleted  # still there: declared again, refilled
    assert text.endswith(render(Ruleset("10.96.0.0/12", changed)).split("\n", 2)[2])
    # a changed timeout is a new set, the old one deleted
    longer = [*changed[:-1], ServicePort("default", "sticky", "", "TCP", "10.96.0.8", 80, 0,
                                         EPS[:1], affinity_timeout=90)]
    again = render_update(Ruleset("10.96.0.0/12", longer), text)
    assert any(x.endswith("-60s") for x in again.split("\n") if x.startswith("delete set"))
    assert "timeout 90s" in again


def test_load_balancer_address_claimed_twice_keeps_the_first() -> None:
    a = ServicePort("default", "a", "", "TCP", "10.96.0.10", 80, 0, EPS[:1],
                    load_balancer_ips=("192.0.2.1",))
    b = ServicePort("default", "b", "", "TCP", "10.96.0.11", 80, 0, EPS[:1],
                    load_balancer_ips=("192.0.2.1", "192.0.2.2"))
    text = render(Ruleset("10.96.0.0/12", [b, a]))
    assert text.count("192.0.2.1 . tcp . 80 :") == 1
    assert f"192.0.2.1 . tcp . 80 : goto {a.chain}-ext" in text
    assert f"192.0.2.2 . tcp . 80 : goto {b.chain}-ext" in text


def test_chain_names_are_stable_and_distinct() -> None:
    a = ServicePort("ns", "a", "http", "TCP", "10.96.0.1", 80)
    assert a.chain == ServicePort("ns", "a", "http", "TCP", "10.96.0.9", 81).chain
    assert a.chain != ServicePort("ns", "a", "http", "UDP", "10.96.0.1", 80).chain


SERVER = r"""
import socket, sys, threading
def serve(ip):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, 8080)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(ip.encode()); c.close()
for ip in sys.argv[1:]:
    threading.Thread(target=serve, args=(ip,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait(60)
"""

CLIENT = r"""
import socket, sys, time
def one(ip, port):
    s = socket.socket(); s.settimeout(2)
    t = time.monotonic()
    try:
        s.connect((ip, int(port))); return s.recv(64).decode()
    except ConnectionRefusedError:
        return "refused %.3f" % (time.monotonic() - t)
    except OSError as e:
        return "error %s" % e
    finally:
        s.close()
ip, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("\n".join(one(ip, port) for _ in range(n)))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"flt-proxy-{os.getpid()}"
    _ip("netns", "add", name)
    try:
        run = ("netns", "exec", name, "ip")
        _ip(*run, "link", "set", "lo", "up")
        _ip(*run, "addr", "add", "10.244.0.2/32", "dev", "lo")
        _ip(*run, "addr", "add", "10.244.0.3/32", "dev", "lo")
        # a link for the service range's route (a VIP needs one to be dialled at all)
        _ip(*run, "link", "add", "flt-v0", "type", "veth", "peer", "name", "flt-v1")
        _ip(*run, "addr", "add", "10.123.0.1/32", "dev", "flt-v0")
        _ip(*run, "link", "set", "flt-v0", "up")
        _ip(*run, "link", "set", "flt-v1", "up")
        _ip(*run, "route", "add", "10.96.0.0/12", "dev", "flt-v0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10,
                       check=False)


def _in(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


@contextmanager
def _serving(server_ns: str, script: str, rules_ns: str, rules: Ruleset) -> Iterator[None]:
    """The endpoints' server up in ``server_ns`` and ``rules`` applied in ``rules_ns``."""
    server = subprocess.Popen(_in(server_ns, sys.executable, "-c", script, "10.244.0.2",
                                  "10.244.0.3"), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        r = subprocess.run(_in(rules_ns, "nft", "-f", "-"), input=render(rules), text=True,
                           capture_output=True, timeout=10, check=False)
        assert r.returncode == 0, r.stderr
        yield
    finally:
        server.kill()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


@pytest.mark.root(reason="network namespaces and nftables")
def test_rules_in_a_namespace(netns: str) -> None:
    with _serving(netns, SERVER, netns, RULES):
        def client(ip: str, port: int, n: int) -> list[str]:
            out = subprocess.run(_in(netns, sys.executable, "-c", CLIENT, ip, str(port),
                                     str(n)), capture_output=True, text=True, timeout=30,
                                 check=True)
            return out.stdout.strip().split("\n")

        spread = client("10.96.0.5", 80, 40)
        assert set(spread) == {"10.244.0.2", "10.244.0.3"}, spread
        assert set(client("10.123.0.1", 30080, 10)) <= {"10.244.0.2", "10.244.0.3"}
        # the load-balancer ingress address (this "node's" address) on the Service port
        assert set(client("10.123.0.1", 80, 10)) <= {"10.244.0.2", "10.244.0.3"}
        # ClientIP affinity: one client keeps its endpoint across new connections
        sticky = client("10.96.0.8", 80, 20)
        assert len(set(sticky)) == 1 and sticky[0] in {"10.244.0.2", "10.244.0.3"}, sticky
        # a later sync that changes the table keeps the clients the endpoints remember
        listed = subprocess.run(_in(netns, "nft", "list", "table", "ip", TABLE),
                                capture_output=True, text=True, timeout=10, check=True)
        assert listed.stdout.count("elements = { 10.123.0.1 expires") == 1, listed.stdout
        fewer = Ruleset(RULES.service_cidr, [p for p in RULES.ports if p.name != "dns"])
        r = subprocess.run(_in(netns, "nft", "-f", "-"), input=render_update(fewer, render(
            RULES)), text=True, capture_output=True, timeout=10, check=False)
        assert r.returncode == 0, r.stderr
        listed = subprocess.run(_in(netns, "nft", "list", "table", "ip", TABLE),
                                capture_output=True, text=True, timeout=10, check=True)
        assert listed.stdout.count("elements = { 10.123.0.1 expires") == 1, listed.stdout
        assert RULES.ports[1].chain not in listed.stdout  # the dns port's chain is gone
        assert set(client("10.96.0.8", 80, 10)) == {sticky[0]}
        for ip, port in (("10.96.0.7", 80), ("10.96.0.99", 80)):
            [answer] = client(ip, port, 1)
            assert answer.startswith("refused"), answer
            assert float(answer.split()[1]) < 0.5
        # cleanup removes the table
        subprocess.run(_in(netns, "nft", "-f", "-"), input=cleanup_script(), text=True,
                       check=True, timeout=10, capture_output=True)
        listed = subprocess.run(_in(netns, "nft", "list", "tables"), capture_output=True,
                                text=True, timeout=10, check=True)
        assert TABLE not in listed.stdout


PEER_SERVER = SERVER.replace("c.sendall(ip.encode())", "c.sendall(f'{ip} {_[0]}'.encode())")


@pytest.fixture
def three_namespaces() -> Iterator[tuple[str, str, str]]:
    """client --(10.123.0.0/24)-- node --(10.124.0.0/24)-- pod (10.244.0.2 and .3): the
    node forwards, as it does for its pods."""
    names = tuple(f"flt-{role}-{os.getpid()}" for role in ("pc", "pn", "pp"))
    client, node, pod = names
    try:
        for name in names:
            _ip("netns", "add", name)
            _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        c, n, p = (("netns", "exec", x, "ip") for x in names)
        _ip(*n, "link", "add", "n0", "type", "veth", "peer", "name", "c0", "netns", client)
        _ip(*n, "link", "add", "n1", "type", "veth", "peer", "name", "p0", "netns", pod)
        for args in ((*n, "addr", "add", "10.123.0.1/24", "dev", "n0"),
                     (*n, "addr", "add", "10.124.0.1/24", "dev", "n1"),
                     (*c, "addr", "add", "10.123.0.2/24", "dev", "c0"),
                     (*p, "addr", "add", "10.124.0.2/24", "dev", "p0"),
                     (*p, "addr", "add", "10.244.0.2/32", "dev", "p0"),
                     (*p, "addr", "add", "10.244.0.3/32", "dev", "p0"),
                     (*n, "link", "set", "n0", "up"), (*n, "link", "set", "n1", "up"),
                     (*c, "link", "set", "c0", "up"), (*p, "link", "set", "p0", "up"),
                     (*p, "route", "add", "default", "via", "10.124.0.1"),
                     (*n, "route", "add", "10.244.0.0/24", "via", "10.124.0.2")):
            _ip(*args)
        subprocess.run(_in(node, "sysctl", "-qw", "net.ipv4.ip_forward=1"), check=True,
                       capture_output=True, timeout=10)
        yield client, node, pod
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10,
                           check=False)


@pytest.mark.root(reason="network namespaces and nftables")
def test_external_traffic_policy_in_namespaces(three_namespaces: tuple[str, str, str]
                                               ) -> None:
    client_ns, node_ns, pod_ns = three_namespaces
    rules = Ruleset("10.96.0.0/12", [
        ServicePort("default", "cluster", "", "TCP", "10.96.0.5", 80, 30080, EPS),
        ServicePort("default", "local", "", "TCP", "10.96.0.6", 80, 30082, EPS,
                    local_endpoints=EPS[:1]),
        ServicePort("default", "remote", "", "TCP", "10.96.0.7", 80, 30083, EPS,
                    local_endpoints=()),
    ], cluster_cidr="10.244.0.0/16")
    with _serving(pod_ns, PEER_SERVER, node_ns, rules):
        def client(port: int, n: int) -> list[str]:
            out = subprocess.run(_in(client_ns, sys.executable, "-c", CLIENT, "10.123.0.1",
                                     str(port), str(n)), capture_output=True, text=True,
                                 timeout=30, check=True)
            return out.stdout.strip().split("\n")

        # Cluster: any endpoint, the client's address masqueraded to the node's
        cluster = client(30080, 20)
        assert {a.split()[0] for a in cluster} == {"10.244.0.2", "10.244.0.3"}, cluster
        assert {a.split()[1] for a in cluster} == {"10.124.0.1"}, cluster
        # Local: only this node's endpoint, and the pod sees the client's own address
        assert set(client(30082, 20)) == {"10.244.0.2 10.123.0.2"}
        # Local without a local endpoint: dropped (the client times out)
        [answer] = client(30083, 1)
        assert answer.startswith("error") and "timed out" in answer, answer


def test_render_source_ranges() -> None:
    sp = ServicePort("default", "lb", "", "TCP", "10.96.0.5", 80, 30080, EPS,
                     load_balancer_ips=("192.0.2.1",), source_ranges=("10.0.0.0/8",
                                                                       "192.0.2.7/32"))
    text = render(Ruleset("10.96.0.0/12", [sp]))
    assert f"elements = {{ 192.0.2.1 . tcp . 80 : goto {sp.chain}-fw }}" in text
    assert f"  chain {sp.chain}-fw {{\n    ip saddr != {{ 10.0.0.0/8, 192.0.2.7/32 }} drop" \
        in text
    # without ranges: no firewall entry, no chain
    open_ = dataclasses.replace(sp, source_ranges=())
    assert f"{sp.chain}-fw" not in render(Ruleset("10.96.0.0/12", [open_]))
    # an update from a table without the map (an older version's) declares it first
    update = render_update(Ruleset("10.96.0.0/12", [sp]), render(Ruleset("10.96.0.0/12",
                                                                         [open_])))
    assert update.index("add map ip flotilla-proxy firewall-ips") < update.index(
        "flush map ip flotilla-proxy firewall-ips")


@pytest.mark.root(reason="network namespaces and nftables")
def test_source_ranges_in_namespaces(three_namespaces: tuple[str, str, str]) -> None:
    """A load-balancer address answers a client inside its Service's source ranges and
    drops one outside them; NodePort is not restricted (as in Kubernetes)."""
    client_ns, node_ns, pod_ns = three_namespaces
    rules = Ruleset("10.96.0.0/12", [
        ServicePort("default", "inside", "", "TCP", "10.96.0.5", 80, 30080, EPS,
                    load_balancer_ips=("10.123.0.1",), source_ranges=("10.123.0.0/30",)),
        ServicePort("default", "outside", "", "TCP", "10.96.0.6", 81, 30081, EPS,
                    load_balancer_ips=("10.123.0.1",), source_ranges=("192.0.2.0/24",)),
    ], cluster_cidr="10.244.0.0/16")
    with _serving(pod_ns, SERVER, node_ns, rules):
        def client(port: int) -> str:
            out = subprocess.run(_in(client_ns, sys.executable, "-c", CLIENT, "10.123.0.1",
                                     str(port), "1"), capture_output=True, text=True,
                                 timeout=30, check=True)
            return out.stdout.strip()

        assert client(80) in {"10.244.0.2", "10.244.0.3"}
        dropped = client(81)
        assert dropped.startswith("error") and "timed out" in dropped, dropped
        assert client(30081) in {"10.244.0.2", "10.244.0.3"}


def test_render_adopt_keeps_sets_and_recreates_base_chains() -> None:
    listing = ("table ip flotilla-proxy {\n\tset svc-old-ep-1-60s {\n\t\ttype ipv4_addr\n\t}\n"
               "\tchain svc-old {\n\t}\n\tchain nat-prerouting {\n\t\ttype nat hook "
               "prerouting priority dstnat; policy accept;\n\t}\n}\n")
    script = render_adopt(RULES, listing)
    assert script.startswith("add table ip flotilla-proxy\nflush table ip flotilla-proxy\n")
    # base chains dropped and declared again, the old Service's chain and set deleted
    assert "add chain ip flotilla-proxy nat-prerouting\ndelete chain ip flotilla-proxy " \
           "nat-prerouting\n" in script
    assert "delete chain ip flotilla-proxy svc-old\n" in script
    assert "delete set ip flotilla-proxy svc-old-ep-1-60s\n" in script
    # and the table as render() declares it
    assert script.endswith(render(RULES).split("\n", 2)[2])


@pytest.mark.root(reason="network namespaces and nftables")
def test_adopt_keeps_affinity_in_a_namespace(netns: str) -> None:
    """A restarted proxy's first sync keeps the clients its affinity sets remember."""
    with _serving(netns, SERVER, netns, RULES):
        def client(n: int) -> list[str]:
            out = subprocess.run(_in(netns, sys.executable, "-c", CLIENT, "10.96.0.8", "80",
                                     str(n)), capture_output=True, text=True, timeout=30,
                                 check=True)
            return out.stdout.strip().split("\n")

        def listed() -> str:
            return subprocess.run(_in(netns, "nft", "list", "table", "ip", TABLE),
                                  capture_output=True, text=True, timeout=10,
                                  check=True).stdout

        sticky = client(5)
        assert len(set(sticky)) == 1, sticky
        before = listed()
        fewer = Ruleset(RULES.service_cidr, [p for p in RULES.ports if p.name != "dns"])
        r = subprocess.run(_in(netns, "nft", "-f", "-"), input=render_adopt(fewer, before),
                           text=True, capture_output=True, timeout=10, check=False)
        assert r.returncode == 0, r.stderr
        after = listed()
        assert after.count("elements = { 10.123.0.1 expires") == 1, after
        assert RULES.ports[1].chain not in after
        assert set(client(10)) == {sticky[0]}


HAIRPIN_CLIENT = r"""
import socket, sys
s = socket.socket(); s.settimeout(3)
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3]))); print(s.recv(64).decode())
except OSError as e:
    print("error", e)
"""


@pytest.mark.root(reason="network namespaces and nftables")
def test_hairpin_in_namespaces(three_namespaces: tuple[str, str, str]) -> None:
    """A pod whose connection to its Service is DNATed back to itself is masqueraded by
    the proxy's own table (the reply then goes through the node and is un-DNATed)."""
    _client_ns, node_ns, pod_ns = three_namespaces
    rules = Ruleset("10.96.0.0/12", [
        ServicePort("default", "self", "", "TCP", "10.96.0.5", 80, 0, EPS[:1])])
    with _serving(pod_ns, PEER_SERVER, node_ns, rules):
        out = subprocess.run(_in(pod_ns, sys.executable, "-c", HAIRPIN_CLIENT, "10.244.0.2",
                                 "10.96.0.5", "80"), capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
        # the endpoint answered, seeing the node's address as the client
        assert out == "10.244.0.2 10.124.0.1", out
