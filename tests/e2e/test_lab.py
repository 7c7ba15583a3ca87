"""The pod network across machines, in the lab (``scripts/lab``): two machines as network
namespaces, a real server and agents. Pods get distinct IPs from their nodes' ranges; TCP
and UDP between pods on one machine and across machines; a pod's containers share
localhost; a pod reaches itself; a hostPort answers on the node's address; an agent killed
and restarted keeps its pods' IPs and routes; a deleted node's range is handed out again;
pods resolve Services and a headless Service's pods through the cluster DNS; a pod talks
to the API as its ServiceAccount through the kubernetes Service; a pod reaches
a pod on the other machine through its Service's ClusterIP, NodePort and LoadBalancer
ingress addresses, and with sessionAffinity ClientIP always the same one (agents run
--proxy-mode nftables);
``scripts/lab down`` leaves nothing behind.

Traffic stays inside the namespaces the lab creates (the test talks to the API through the
lab's loopback relay, and to pods only through exec). The tests share one lab, in order;
the lab is removed at the end whatever happens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2
from control.client.client import ApiClient
from tests.agent.network.node_scenario import CLIENT
from tests.support import eventually
from tests.support.lab import REPO, lab, lab_client, python_in, sleeper, wait_running
from tests.support.lab import host_pod as pod

pytestmark = [
    pytest.mark.root(reason="network namespaces, links and nftables need root"),
    pytest.mark.skipif(not (shutil.which("nft") or os.path.exists("/usr/sbin/nft")),
                       reason="needs nft"),
]

NAME = f"t{os.getpid() % 100000}"
SERVER = r"""
import socket, threading
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 8081))
    while True:
        d, a = u.recvfrom(100); u.sendto(b"udp " + d, a)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64)
while True:
    c, a = s.accept(); c.sendall(("tcp from " + a[0]).encode()); c.close()
"""


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("lab")
    try:
        r = lab(d, "up", "--nodes", "2", "--name", NAME, "--cluster-cidr", "10.244.0.0/22")
        assert r.returncode == 0, r.stderr[-4000:]
        assert f"export FLOTILLA_CONFIG={d / 'lab.conf'}" in r.stdout
        yield d
    finally:
        lab(d, "down")


@pytest.fixture
async def client(lab_dir: Path) -> AsyncIterator[ApiClient]:
    async with lab_client(lab_dir) as c:
        yield c


def m(i: int) -> str:
    return f"{NAME}-m{i}"


async def run(c: ApiClient, pod_name: str, *args: str, container: str = "") -> str:
    async with asyncio.timeout(30):
        code, out, err = await c.exec("default", pod_name, [sys.executable, "-c", CLIENT, *args],
                                      container=container).wait()
    assert code == 0, (out + err).decode()
    return out.decode().strip()


async def test_pod_ips_and_traffic(client: ApiClient) -> None:
    c = client
    await c.create(pod("srv", m(1), {"name": "server", "image": "busybox",
                                      "command": [sys.executable, "-c", SERVER],
                                      "ports": [{"containerPort": 8080, "hostPort": 30080}]},
                       sleeper("side")))
    await c.create(pod("near", m(1), sleeper()))
    await c.create(pod("far", m(2), sleeper()))
    pods = await wait_running(c, ["srv", "near", "far"])
    nodes = {n.metadata.name: n for n in (await c.list(core_pb2.Node)).items}
    ips = {name: p.status.pod_ip for name, p in pods.items()}
    assert len(set(ips.values())) == 3
    for name, p in pods.items():
        assert ipaddress.ip_address(ips[name]) in ipaddress.ip_network(
            nodes[p.spec.node_name].spec.pod_cidr), (name, ips[name])
        assert [x.ip for x in p.status.pod_ips] == [ips[name]]
    assert nodes[m(1)].spec.pod_cidr != nodes[m(2)].spec.pod_cidr
    srv = ips["srv"]
    # one machine, and across machines; the server sees the client's own address
    assert await run(c, "near", "tcp", srv, "8080") == f"tcp from {ips['near']}"
    assert await run(c, "near", "udp", srv, "8081") == "udp ping"
    assert await run(c, "far", "tcp", srv, "8080") == f"tcp from {ips['far']}"
    assert await run(c, "far", "udp", srv, "8081") == "udp ping"
    # the pod's containers share localhost; the pod reaches itself by its own address
    assert await run(c, "srv", "tcp", "127.0.0.1", "8080", container="side") == \
        "tcp from 127.0.0.1"
    assert await run(c, "srv", "tcp", srv, "8080", container="side") == f"tcp from {srv}"
    # hostPort on the node's address, from a pod on the other machine
    node_ip = next(a.address for a in nodes[m(1)].status.addresses if a.type == "InternalIP")
    assert (await run(c, "far", "tcp", node_ip, "30080")).startswith("tcp from ")
    # /etc/hosts names the pod
    code, out, _ = await c.exec("default", "far", ["cat", "/etc/hosts"]).wait()
    assert code == 0 and f"{ips['far']}\tfar" in out.decode().splitlines()
    # a hostNetwork pod shares its machine's network: the node's address, its interfaces
    host = pod("hostnet", m(2), sleeper())
    host.spec.host_network = True
    await c.create(host)
    hp = (await wait_running(c, ["hostnet"]))["hostnet"]
    m2_ip = next(a.address for a in nodes[m(2)].status.addresses if a.type == "InternalIP")
    assert hp.status.pod_ip == m2_ip
    code, out, _ = await c.exec("default", "hostnet", ["cat", "/proc/net/dev"]).wait()
    assert code == 0 and "flotilla0" in out.decode()
    assert await run(c, "hostnet", "tcp", srv, "8080") == f"tcp from {m2_ip}"
    await c.delete(core_pb2.Pod, "hostnet", "default", grace_period_seconds=0)


async def test_cluster_ip_across_machines(client: ApiClient) -> None:
    """A pod on one machine reaches a pod on the other through its Service's ClusterIP
    (the proxy's DNAT on the client's machine, the source address kept)."""
    c = client
    srv = pod("echo-1", m(1), {"name": "server", "image": "busybox",
                               "command": [sys.executable, "-c", SERVER]})
    srv.metadata.labels["app"] = "echo"
    await c.create(srv)
    await c.create(pod("caller", m(2), sleeper()))
    await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "default"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"name": "tcp", "port": 80,
                                                         "targetPort": 8080}]}},
        core_pb2.Service()))
    pods = await wait_running(c, ["echo-1", "caller"])
    vip = (await c.get(core_pb2.Service, "echo", "default")).spec.cluster_ip
    want = f"tcp from {pods['caller'].status.pod_ip}"
    async with asyncio.timeout(30):
        while True:  # until the slice reached the caller's machine's proxy
            code, out, _ = await c.exec("default", "caller", [
                sys.executable, "-c", CLIENT, "tcp", vip, "80"]).wait()
            if code == 0 and out.decode().strip() == want:
                break
            await asyncio.sleep(0.3)
    # NodePort on each machine's address; a Service without endpoints refuses at once
    np = await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo-np", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app": "echo"},
                 "ports": [{"name": "tcp", "port": 80, "targetPort": 8080}]}},
        core_pb2.Service()))
    empty = await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "none", "namespace": "default"},
        "spec": {"selector": {"app": "nobody"}, "ports": [{"name": "tcp", "port": 80}]}},
        core_pb2.Service()))
    nodes = {n.metadata.name: n for n in (await c.list(core_pb2.Node)).items}
    for i in (1, 2):
        node_ip = next(a.address for a in nodes[m(i)].status.addresses
                       if a.type == "InternalIP")
        async with asyncio.timeout(30):
            while True:
                code, out, _ = await c.exec("default", "caller", [
                    sys.executable, "-c", CLIENT, "tcp", node_ip,
                    str(np.spec.ports[0].node_port)]).wait()
                if code == 0 and out.decode().startswith("tcp from "):
                    break
                await asyncio.sleep(0.3)
    # LoadBalancer: the built-in service load balancer advertises both machines'
    # addresses, and each machine's proxy answers the Service port there
    await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo-lb", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "echo"},
                 "ports": [{"name": "tcp", "port": 8088, "targetPort": 8080}]}},
        core_pb2.Service()))
    node_ips = sorted((next(a.address for a in n.status.addresses if a.type == "InternalIP")
                       for n in nodes.values()), key=ipaddress.IPv4Address)
    async with asyncio.timeout(30):
        while True:
            lb = await c.get(core_pb2.Service, "echo-lb", "default")
            if [i.ip for i in lb.status.load_balancer.ingress] == node_ips:
                break
            await asyncio.sleep(0.3)
    for ingress_ip in node_ips:
        async with asyncio.timeout(30):
            while True:
                code, out, _ = await c.exec("default", "caller", [
                    sys.executable, "-c", CLIENT, "tcp", ingress_ip, "8088"]).wait()
                if code == 0 and out.decode().startswith("tcp from "):
                    break
                await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    code, out, err = await c.exec("default", "caller", [
        sys.executable, "-c", CLIENT, "tcp", empty.spec.cluster_ip, "80"]).wait()
    assert code != 0 and b"ConnectionRefusedError" in err, (out, err)
    assert loop.time() - start < 4  # refused, not timed out (the client waits 5 s)


WHO = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8090)); s.listen(64)
while True:
    c, a = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
"""

MANY = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5); print(s.recv(100).decode())
    s.close()
"""


async def test_session_affinity_across_machines(client: ApiClient) -> None:
    """Connections spread over a pod on each machine; with sessionAffinity ClientIP, one
    client's connections all reach one of them."""
    c = client
    for i in (1, 2):
        p = pod(f"who-{i}", m(i), {"name": "server", "image": "busybox",
                                   "command": [sys.executable, "-c", WHO, f"who-{i}"]})
        p.metadata.labels["app"] = "who"
        await c.create(p)
    await c.create(pod("affine", m(1), sleeper()))
    svc = await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "who", "namespace": "default"},
        "spec": {"selector": {"app": "who"}, "ports": [{"port": 80, "targetPort": 8090}]}},
        core_pb2.Service()))
    await wait_running(c, ["who-1", "who-2", "affine"])

    async def answers(n: int) -> list[str]:
        async with asyncio.timeout(30):
            code, out, err = await c.exec("default", "affine", [
                sys.executable, "-c", MANY, svc.spec.cluster_ip, "80", str(n)]).wait()
        return out.decode().split() if code == 0 else [f"failed {err.decode()[-200:]}"]

    async with asyncio.timeout(40):  # both endpoints in the client's machine's proxy
        while set(await answers(10)) != {"who-1", "who-2"}:
            await asyncio.sleep(0.3)
    current = await c.get(core_pb2.Service, "who", "default")
    current.spec.session_affinity = "ClientIP"
    await c.update(current)
    async with asyncio.timeout(40):  # until the proxy has the affinity rules
        while len(set(await answers(8))) != 1:
            await asyncio.sleep(0.3)
    sticky = await answers(16)
    assert len(set(sticky)) == 1 and sticky[0] in ("who-1", "who-2"), sticky


RESOLVE = r"""
import socket, sys
for name in sys.argv[1:]:
    print(name, " ".join(sorted({a[4][0] for a in socket.getaddrinfo(name, None,
                                                                      socket.AF_INET)})))
"""


async def test_cluster_dns_from_a_pod(client: ApiClient) -> None:
    """A pod resolves a Service and a headless Service's pods through the cluster DNS, with
    its own resolv.conf (dnsPolicy None, the DNS server's address: Service routing to the
    kube-dns ClusterIP is the proxy's), by the system resolver and its search path."""
    c = client
    nodes = {n.metadata.name: n for n in (await c.list(core_pb2.Node)).items}
    # the server runs on m1: its advertised address is that machine's
    dns_ip = next(a.address for a in nodes[m(1)].status.addresses if a.type == "InternalIP")
    kube_dns = await c.get(core_pb2.Endpoints, "kube-dns", "kube-system")
    assert [(a.ip, p.port) for s in kube_dns.subsets for a in s.addresses
            for p in s.ports if p.protocol == "UDP"] == [(dns_ip, 53)]
    await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}},
        core_pb2.Service()))
    await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"},
                 "ports": [{"name": "pg", "port": 5432}]}}, core_pb2.Service()))
    db = pod("db-0", m(2), sleeper())
    db.metadata.labels["app"] = "db"
    db.spec.hostname, db.spec.subdomain = "db-0", "db"
    await c.create(db)
    asker = pod("asker", m(2), sleeper())
    asker.spec.dns_policy = "None"
    asker.spec.dns_config.nameservers.append(dns_ip)
    asker.spec.dns_config.searches.append("default.svc.cluster.local")
    # every name below is tried under the search path first (and the lab's server forwards
    # nowhere: the machines have no upstream)
    asker.spec.dns_config.options.add(name="ndots", value="5")
    await c.create(asker)
    # a ClusterFirst pod's resolv.conf names the kube-dns ClusterIP
    pods = await wait_running(c, ["db-0", "asker", "far"])
    code, out, _ = await c.exec("default", "far", ["cat", "/etc/resolv.conf"]).wait()
    lines = out.decode().splitlines()
    assert code == 0 and lines[0].startswith(
        "search default.svc.cluster.local svc.cluster.local cluster.local"), lines
    assert lines[1:] == ["nameserver 10.96.0.10", "options ndots:5"], lines
    web_ip = (await c.get(core_pb2.Service, "web", "default")).spec.cluster_ip
    db_ip = pods["db-0"].status.pod_ip

    async def resolved() -> str:
        async with asyncio.timeout(30):
            _, out, err = await c.exec("default", "asker", [
                sys.executable, "-c", RESOLVE, "web", "db", "db-0.db",
                "web.default.svc.cluster.local."]).wait()
        return (out + err).decode().strip()

    want = f"web {web_ip}\ndb {db_ip}\ndb-0.db {db_ip}\nweb.default.svc.cluster.local. {web_ip}"
    async with asyncio.timeout(30):  # the Endpoints follow the pod's readiness
        while (got := await resolved()) != want:
            await asyncio.sleep(0.5)
    assert got == want
    for name in ("db-0", "asker"):
        await c.delete(core_pb2.Pod, name, "default", grace_period_seconds=0)
    for name in ("web", "db"):
        await c.delete(core_pb2.Service, name, "default")


IN_CLUSTER = r"""
import asyncio, os, sys
sys.path.insert(0, sys.argv[1])
from control.api import errors
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.tls import Credentials
d = "/var/run/secrets/kubernetes.io/serviceaccount"
async def main():
    target = os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"]
    creds = Credentials(ca_pem=open(d + "/ca.crt", "rb").read(), token=open(d + "/token").read())
    c = ApiClient(open_channel(target, creds), target, timeout=10)
    print((await c.whoami()).username)
    try:
        await c.list(core_pb2.Pod, open(d + "/namespace").read())
        print("listed")
    except errors.Forbidden:
        print("forbidden")
asyncio.run(main())
"""


async def test_a_pod_reaches_the_api_with_its_token(client: ApiClient) -> None:
    """As in Kubernetes: KUBERNETES_SERVICE_HOST/PORT, the projected token and ca.crt are
    all a pod needs to talk to the API as its ServiceAccount (here from the machine that
    does not run the server, through the kubernetes Service's ClusterIP)."""
    c = client
    await c.create(pod("in-cluster", m(2), sleeper()))
    await wait_running(c, ["in-cluster"])
    out = await python_in(c, "in-cluster", IN_CLUSTER, str(REPO))
    assert out.splitlines() == ["system:serviceaccount:default:default", "forbidden"]
    await c.delete(core_pb2.Pod, "in-cluster", "default", grace_period_seconds=0)


async def test_agent_killed_and_restarted_keeps_ips_and_routes(
        client: ApiClient, lab_dir: Path) -> None:
    c = client
    before = {p.metadata.name: p.status.pod_ip
              for p in (await c.list(core_pb2.Pod, "default")).items}
    r = lab(lab_dir, "stop-agent", "1", "--kill")
    assert r.returncode == 0, r.stderr
    await asyncio.sleep(1.0)
    r = lab(lab_dir, "start-agent", "1")
    assert r.returncode == 0, r.stderr
    # traffic across machines again, through the restarted agent's routes and bridge
    async with asyncio.timeout(60):
        while True:
            try:
                if await run(c, "far", "tcp", before["srv"], "8080") == \
                        f"tcp from {before['far']}":
                    break
            except (AssertionError, errors.ApiError):
                pass
            await asyncio.sleep(0.5)
    after = await wait_running(c, ["srv", "near", "far"])
    assert {n: p.status.pod_ip for n, p in after.items()} == before
    # a pod created after the restart gets a new address, not a running pod's
    await c.create(pod("late", m(1), sleeper()))
    late = (await wait_running(c, ["late"]))["late"].status.pod_ip
    assert late not in before.values()
    assert await run(c, "late", "tcp", before["srv"], "8080") == f"tcp from {late}"


async def test_deleted_node_range_is_freed(client: ApiClient, lab_dir: Path) -> None:
    c = client
    for p in (await c.list(core_pb2.Pod, "default")).items:
        if p.spec.node_name == m(2):
            await c.delete(core_pb2.Pod, p.metadata.name, "default", grace_period_seconds=0)
    r = lab(lab_dir, "stop-agent", "2")
    assert r.returncode == 0, r.stderr
    freed = (await c.get(core_pb2.Node, m(2))).spec.pod_cidr
    await c.delete(core_pb2.Node, m(2))
    # the cluster range holds 4 node ranges: 3 new nodes take the 2 never used and the freed
    names = [f"{NAME}-extra{i}" for i in range(3)]
    for name in names:
        await c.create(convert.from_dict({"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": name}}, core_pb2.Node()))
    async with asyncio.timeout(30):
        while True:
            got = {n.metadata.name: n.spec.pod_cidr
                   for n in (await c.list(core_pb2.Node)).items}
            if all(got.get(n) for n in names):
                break
            await asyncio.sleep(0.2)
    assert freed in {got[n] for n in names}
    assert len(set(got.values())) == len(got)
    for name in names:
        await c.delete(core_pb2.Node, name)


async def test_each_proxy_runs_as_kube_proxy(client: ApiClient) -> None:
    """Every machine's proxy asked, as its node, for system:kube-proxy's certificate and
    got it (its channel then carries that identity)."""
    want = {f"system:node:{m(1)}", f"system:node:{m(2)}"}

    async def issued_to_each() -> bool:
        csrs = (await client.list("certificatesigningrequests")).items
        return want <= {c.spec.username for c in csrs
                        if c.spec.signer_name == "kubernetes.io/kube-apiserver-client"
                        and c.status.certificate}

    await eventually(issued_to_each, "a kube-proxy certificate for each machine", timeout=60)


def test_lab_down_leaves_nothing(lab_dir: Path) -> None:
    inodes = set()
    for pin in [*(lab_dir / "netns").glob("*"), *lab_dir.glob("m*/agent/runtime/netns/*")]:
        inodes.add(os.stat(pin).st_ino)
    assert len(inodes) >= 3  # lan, m1, m2 (+ pods)
    r = lab(lab_dir, "down")
    assert r.returncode == 0, r.stderr
    assert not lab_dir.exists()
    with open("/proc/self/mountinfo") as f:
        assert str(lab_dir) not in f.read()
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    left.append(entry)
            except OSError:
                pass
    assert left == []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for i in (1, 2):
            assert not (hierarchy / "flotilla" / m(i)).exists()
    assert subprocess.run(["pgrep", "-f", str(lab_dir)], capture_output=True,
                          check=False).stdout == b""
