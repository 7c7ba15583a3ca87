"""Services end to end in the lab (``scripts/lab``, two machines, agents with the nftables
proxy), with pods running their images from a registry on this host's loopback (the lab's
registry relay; the images are built here from busybox-static):

- a two-tier app: a web Deployment whose CGI calls ``backend`` by its Service name
  (cluster DNS, search path) and a backend Deployment, spread over both machines, answers
  through the web Service's ClusterIP, its NodePort on every machine and its
  load-balancer addresses; every web and backend replica gets traffic; an unready backend
  and a scaled-away one get no new connections; the last backend reaches itself through
  its Service (hairpin); headless and SRV lookups from a pod;
- a UDP client sending on one flow moves to the Service's other pod when its pod is
  deleted (the proxy deletes the stale conntrack entry);
- a LoadBalancer Service with externalTrafficPolicy Local: its healthCheckNodePort says
  200 where its pod runs and 503 elsewhere; loadBalancerSourceRanges drop other sources;
- a killed and restarted agent keeps a ClientIP-affinity client on its endpoint (its
  proxy takes over the table), and writes the table again when it was removed meanwhile.

Traffic stays inside the lab's namespaces: the test reaches pods only through exec.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from control.api import convert
from control.api.pb import apps_pb2, core_pb2, discovery_pb2
from control.client.client import ApiClient
from tests.images import builder as b
from tests.images import registry as reg
from tests.support.lab import exec_out, host_pod, lab, lab_client, node_ips, sleeper, wait_running

pytestmark = [
    pytest.mark.root(reason="network namespaces, nftables and overlay mounts need root"),
    pytest.mark.skipif(not shutil.which("nft") and not Path("/usr/sbin/nft").exists(),
                       reason="needs nft"),
    pytest.mark.skipif(not reg.available(), reason="Debian's docker-registry is missing"),
]

NAME = f"s{os.getpid() % 100000}"
APP_IMAGE = "flotilla-test/twotier:1"  # docker.io/..., which the agents mirror to the relay

# the backend names itself and the address it saw; the web tier asks `backend` (its
# Service, by the pod's search path) and says who it is and what the backend said
WHO = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "backend $(hostname)"
"""
WEB = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
answer=$(printf 'GET /cgi-bin/who HTTP/1.0\\r\\nHost: backend\\r\\n\\r\\n' |
         busybox nc -w 5 backend 80 | busybox sed '1,/^\\r*$/d')
echo "web $(hostname) -> $answer"
"""


def app_image() -> b.BuiltImage:
    www = b.layer_tar([
        b.Entry("www", kind="dir", mode=0o755),
        b.Entry("www/cgi-bin", kind="dir", mode=0o755),
        b.Entry("www/cgi-bin/who", WHO, 0o755),
        b.Entry("www/cgi-bin/web", WEB, 0o755),
        b.Entry("www/index.html", b"ok\n"),
    ])
    return b.build_image([b.busybox_layer(), www], {
        "Entrypoint": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "Env": ["PATH=/bin"], "ExposedPorts": {"8080/tcp": {}}})


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[reg.Registry]:
    with reg.running_registry(tmp_path_factory.mktemp("registry")) as (r, _):
        pusher = b.Pusher(f"http://{r.host}")
        try:
            repo, _, tag = APP_IMAGE.partition(":")
            pusher.image(repo, tag, app_image())
        finally:
            pusher.close()
        yield r


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory, registry: reg.Registry) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("lab")
    try:
        r = lab(d, "up", "--nodes", "2", "--name", NAME, "--cluster-cidr", "10.244.0.0/22",
                "--registry", registry.host)
        assert r.returncode == 0, r.stderr[-4000:]
        yield d
    finally:
        r = lab(d, "down")
        assert r.returncode == 0, r.stderr


@pytest.fixture
async def client(lab_dir: Path) -> AsyncIterator[ApiClient]:
    async with lab_client(lab_dir) as c:
        yield c


def m(i: int) -> str:
    return f"{NAME}-m{i}"


def deployment(name: str, replicas: int, containers: list[dict[str, Any]]) -> apps_pb2.Deployment:
    d: apps_pb2.Deployment = convert.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     # one replica per machine
                     "topologySpreadConstraints": [{
                         "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                         "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": {"app": name}}}],
                     "containers": containers}}}}, apps_pb2.Deployment())
    return d


def service(name: str, spec: dict[str, Any]) -> core_pb2.Service:
    s: core_pb2.Service = convert.from_dict({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec}, core_pb2.Service())
    return s


async def app_pods(c: ApiClient, app: str, count: int) -> dict[str, core_pb2.Pod]:
    """The app's ``count`` ready pods (once there are exactly that many)."""
    async with asyncio.timeout(120):
        while True:
            pods = {p.metadata.name: p for p in (await c.list(
                core_pb2.Pod, "default", label_selector=f"app={app}")).items
                if not p.metadata.HasField("deletion_timestamp")}
            if len(pods) == count and all(
                    p.status.phase == "Running" and p.status.pod_ip and all(
                        cs.ready for cs in p.status.container_statuses)
                    for p in pods.values()):
                return pods
            await asyncio.sleep(0.3)


GET = r"""
import sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    try:
        print(urllib.request.urlopen(url, timeout=8).read().decode().strip())
    except Exception as e:
        print("error", type(e).__name__, e)
"""


async def get(c: ApiClient, url: str, n: int) -> list[str]:
    """``n`` requests (a new connection each) from the client pod: the answers."""
    code, out, err = await exec_out(c, "client", [sys.executable, "-c", GET, url, str(n)],
                                    limit=120)
    assert code == 0, out + err
    return out.splitlines()


def seen(answers: list[str]) -> tuple[set[str], set[str]]:
    """(web pods, backend pods) named in answers ``web <pod> -> backend <pod>``."""
    webs, backends = set(), set()
    for a in answers:
        words = a.split()
        if len(words) == 5 and words[0] == "web" and words[3] == "backend":
            webs.add(words[1])
            backends.add(words[4])
    return webs, backends


async def until_seen(c: ApiClient, url: str, webs: set[str], backends: set[str],
                     limit: float = 60) -> None:
    """Requests until exactly these web and backend pods answer, all of them."""
    last: list[str] = []
    try:
        async with asyncio.timeout(limit):
            while True:
                last = await get(c, url, 12)
                if seen(last) == (webs, backends) and all(" -> backend " in a for a in last):
                    return
                await asyncio.sleep(0.3)
    except TimeoutError:
        raise AssertionError(f"{url}: wanted web {webs} and backend {backends}; "
                             f"last answers {last}") from None


@pytest.mark.timeout(300)  # with the lab coming up and the images pulled
async def test_two_tier_app_across_machines(client: ApiClient) -> None:
    c = client
    await c.create(service("backend", {"selector": {"app": "backend"},
                                       "ports": [{"name": "http", "port": 80,
                                                  "targetPort": "http"}]}))
    await c.create(service("backend-pods", {"clusterIP": "None", "selector": {"app": "backend"},
                                            "ports": [{"name": "http", "port": 8080}]}))
    web_svc = await c.create(service("web", {
        "type": "LoadBalancer", "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 8000, "targetPort": 8080}]}))
    await c.create(deployment("backend", 2, [{
        "name": "httpd", "image": APP_IMAGE,
        "ports": [{"name": "http", "containerPort": 8080}],
        # `touch /tmp/unready` in a replica takes it out of the Service
        "readinessProbe": {"exec": {"command": ["sh", "-c", "test ! -e /tmp/unready"]},
                           "periodSeconds": 1, "failureThreshold": 1,
                           "timeoutSeconds": 5}}]))
    await c.create(deployment("web", 2, [{"name": "httpd", "image": APP_IMAGE,
                                          "readinessProbe": {"tcpSocket": {"port": 8080},
                                                             "periodSeconds": 1}}]))
    await c.create(host_pod("client", m(2), sleeper()))
    await wait_running(c, ["client"])
    backends = await app_pods(c, "backend", 2)
    webs = await app_pods(c, "web", 2)
    # spread: a replica of each tier on each machine
    for pods in (backends, webs):
        assert {p.spec.node_name for p in pods.values()} == {m(1), m(2)}
    all_webs, all_backends = set(webs), set(backends)

    # the client reaches the web tier by name, and through the ClusterIP
    await until_seen(c, "http://web.default.svc.cluster.local:8000/cgi-bin/web",
                     all_webs, all_backends)
    await until_seen(c, f"http://{web_svc.spec.cluster_ip}:8000/cgi-bin/web", all_webs,
                     all_backends)
    # the NodePort on every machine's address
    ips = await node_ips(c)
    node_port = (await c.get(core_pb2.Service, "web", "default")).spec.ports[0].node_port
    for node in (m(1), m(2)):
        await until_seen(c, f"http://{ips[node]}:{node_port}/cgi-bin/web", all_webs,
                         all_backends)
    # the load-balancer addresses (the built-in ServiceLB: both machines)
    async with asyncio.timeout(30):
        while True:
            lb = await c.get(core_pb2.Service, "web", "default")
            ingress = sorted(i.ip for i in lb.status.load_balancer.ingress)
            if ingress == sorted(ips.values()):
                break
            await asyncio.sleep(0.3)
    for ip in ingress:
        await until_seen(c, f"http://{ip}:8000/cgi-bin/web", all_webs, all_backends)

    url = f"http://{web_svc.spec.cluster_ip}:8000/cgi-bin/web"
    # an unready backend gets no new connections; ready again, it does
    unready, other = sorted(backends)
    code, out, err = await exec_out(c, unready, ["touch", "/tmp/unready"])
    assert code == 0, out + err
    await until_seen(c, url, all_webs, {other})
    assert seen(await get(c, url, 20)) == (all_webs, {other})
    code, out, err = await exec_out(c, unready, ["rm", "/tmp/unready"])
    assert code == 0, out + err
    await until_seen(c, url, all_webs, all_backends)

    # headless and SRV lookups from inside a pod (busybox nslookup in the web image)
    web_pod = sorted(webs)[0]
    code, out, err = await exec_out(c, web_pod, [
        "busybox", "nslookup", "backend-pods.default.svc.cluster.local"])
    assert code == 0, out + err
    for p in backends.values():
        assert f"Address: {p.status.pod_ip}" in out, out
    code, out, err = await exec_out(c, web_pod, [
        "busybox", "nslookup", "-type=SRV", "_http._tcp.backend.default.svc.cluster.local"])
    assert code == 0, out + err
    assert "80 backend.default.svc.cluster.local" in out, out

    # scaled down to one: the replica that went gets no new connections
    await c.update_scale(apps_pb2.Deployment, "backend", 1, "default")
    left = await app_pods(c, "backend", 1)
    await until_seen(c, url, all_webs, set(left))
    assert seen(await get(c, url, 20)) == (all_webs, set(left))
    # the one backend reaches itself through its Service (hairpin: masqueraded, so the
    # reply comes back through the node; the proxy's own rule for it is tested in
    # tests/agent/proxy, the bridge network's table masquerades it here too)
    [last] = left
    code, out, err = await exec_out(c, last, ["sh", "-c", (
        "printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 backend 80")])
    assert code == 0 and out.rstrip().endswith(f"backend {last}"), out + err


UDP_SERVER = r"""
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
while True:
    d, a = u.recvfrom(100); u.sendto(sys.argv[1].encode(), a)
"""

# one client flow (source port 4000): ping every 0.2 s until `want` answers; prints the
# answers seen, in order
UDP_CLIENT = r"""
import socket, sys, time
vip, port, want, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
u.bind(("0.0.0.0", 4000)); u.settimeout(0.2)
start, got = time.monotonic(), []
while time.monotonic() - start < limit:
    u.sendto(b"ping", (vip, port))
    try:
        d = u.recv(100).decode()
    except (TimeoutError, ConnectionRefusedError):
        time.sleep(0.05)
        continue
    if not got or got[-1] != d:
        got.append(d)
    if d == want:
        print(" ".join(got)); sys.exit(0)
print(" ".join(got), "timeout"); sys.exit(1)
"""


async def test_udp_flow_leaves_a_deleted_endpoint(client: ApiClient) -> None:
    """A UDP client that keeps sending on one flow reaches the Service's other pod once
    its pod is deleted: the proxy deletes the flow's conntrack entry, which would otherwise
    keep sending the datagrams to the dead pod's address."""
    c = client
    await c.create(service("udp", {"selector": {"app": "udp"},
                                   "ports": [{"protocol": "UDP", "port": 53,
                                              "targetPort": 5353}]}))
    server = {"name": "server", "image": "busybox"}
    await c.create(host_pod("udp-a", m(1), {**server, "command": [
        sys.executable, "-c", UDP_SERVER, "udp-a"]}, labels={"app": "udp"}))
    await c.create(host_pod("udp-b", m(1), {**server, "command": [
        sys.executable, "-c", UDP_SERVER, "udp-b"]}, labels={"app": "udp-later"}))
    await c.create(host_pod("udp-client", m(2), sleeper()))
    await wait_running(c, ["udp-a", "udp-b", "udp-client"])
    vip = (await c.get(core_pb2.Service, "udp", "default")).spec.cluster_ip

    async def flow(want: str, limit: float) -> tuple[int, str]:
        code, out, err = await exec_out(c, "udp-client", [
            sys.executable, "-c", UDP_CLIENT, vip, "53", want, str(limit)], limit=limit + 20)
        return code, out.strip() + err

    # the flow's conntrack entry on the client's machine translates to udp-a
    code, out = await flow("udp-a", 40)
    assert code == 0, out
    # udp-b joins, then udp-a goes: the flow's next datagrams must reach udp-b
    b = await c.get(core_pb2.Pod, "udp-b", "default")
    b.metadata.labels["app"] = "udp"
    await c.update(b)
    await c.delete(core_pb2.Pod, "udp-a", "default", grace_period_seconds=0)
    code, out = await flow("udp-b", 40)
    assert code == 0 and out.split()[-1] == "udp-b", out


WHO_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8090)); s.listen(64)
while True:
    c, a = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
"""

STATUS = r"""
import json, sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5); code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
print(code, json.loads(body)["localEndpoints"])
"""

ONE = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    print(s.recv(100).decode())
except OSError as e:
    print("error", type(e).__name__)
"""


async def test_health_check_node_port_and_source_ranges(client: ApiClient) -> None:
    """A LoadBalancer Service with externalTrafficPolicy Local: each machine's proxy answers
    its healthCheckNodePort with 200 and the local endpoint count where its pod runs, 503
    elsewhere. loadBalancerSourceRanges: a pod inside the ranges reaches the load-balancer
    address, another outside them is dropped."""
    c = client
    await c.create(host_pod("hc-1", m(1), {"name": "server", "image": "busybox", "command": [
        sys.executable, "-c", WHO_SERVER, "hc-1"]}, labels={"app": "hc"}))
    await c.create(host_pod("hc-in", m(2), sleeper()))
    await c.create(host_pod("hc-out", m(2), sleeper()))
    hc = await c.create(service("hc", {
        "type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "hc"},
        "ports": [{"port": 8095, "targetPort": 8090}]}))
    assert hc.spec.health_check_node_port
    pods = await wait_running(c, ["hc-1", "hc-in", "hc-out"])
    ips = await node_ips(c)

    async def status(node: str) -> str:
        code, out, err = await exec_out(c, "hc-in", [
            sys.executable, "-c", STATUS, f"http://{ips[node]}:{hc.spec.health_check_node_port}/"])
        return out.strip() if code == 0 else f"failed {err[-300:]}"

    want = {m(1): "200 1", m(2): "503 0"}
    async with asyncio.timeout(40):
        while (got := {n: await status(n) for n in want}) != want:
            await asyncio.sleep(0.5)
    assert got == want

    await c.create(service("fw", {
        "type": "LoadBalancer", "selector": {"app": "hc"},
        "loadBalancerSourceRanges": [f"{pods['hc-in'].status.pod_ip}/32"],
        "ports": [{"port": 8096, "targetPort": 8090}]}))

    async def one(pod_name: str) -> str:
        code, out, err = await exec_out(c, pod_name, [sys.executable, "-c", ONE, ips[m(1)],
                                                      "8096"])
        assert code == 0, out + err
        return out.strip()

    async with asyncio.timeout(40):  # the load-balancer address in m2's proxy
        while await one("hc-in") != "hc-1":
            await asyncio.sleep(0.5)
    assert await one("hc-out") == "error TimeoutError"
    assert await one("hc-in") == "hc-1"


MANY = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    try:
        s = socket.create_connection((host, port), timeout=3); print(s.recv(100).decode())
        s.close()
    except OSError as e:
        print("error", type(e).__name__)
"""


def nft_in(lab_dir: Path, machine: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={lab_dir / 'netns' / f'm{machine}'}", "nft",
                           *args], capture_output=True, text=True, timeout=30, check=False)


async def test_agent_restart_keeps_affinity_and_restores_rules(
        client: ApiClient, lab_dir: Path) -> None:
    """A killed agent's proxy, restarted, takes over its table: a ClientIP-affinity client
    is still remembered by its endpoint (as with kube-proxy's nftables mode). And when the
    table is gone while the agent is down, the restarted agent writes it again."""
    c = client
    for i in (1, 2):
        await c.create(host_pod(f"st-{i}", m(i), {"name": "server", "image": "busybox",
                                                  "command": [sys.executable, "-c",
                                                              WHO_SERVER, f"st-{i}"]},
                                labels={"app": "st"}))
    await c.create(host_pod("st-client", m(2), sleeper()))
    svc = await c.create(service("st", {
        "selector": {"app": "st"}, "sessionAffinity": "ClientIP",
        "ports": [{"port": 80, "targetPort": 8090}]}))
    pods = await wait_running(c, ["st-1", "st-2", "st-client"])
    client_ip = pods["st-client"].status.pod_ip

    async def answers(n: int) -> list[str]:
        code, out, err = await exec_out(c, "st-client", [
            sys.executable, "-c", MANY, svc.spec.cluster_ip, "80", str(n)])
        assert code == 0, out + err
        return out.split("\n")[:-1] if out.endswith("\n") else out.split("\n")

    async with asyncio.timeout(40):  # both endpoints in m2's proxy, the client remembered
        while True:
            got = await answers(6)
            eps = await c.list(discovery_pb2.EndpointSlice, "default",
                               label_selector="kubernetes.io/service-name=st")
            ready = sum(len(s.endpoints) for s in eps.items)
            if ready == 2 and len(set(got)) == 1 and got[0] in ("st-1", "st-2"):
                break
            await asyncio.sleep(0.5)
    sticky = got[0]
    assert client_ip in nft_in(lab_dir, 2, "list", "table", "ip", "flotilla-proxy").stdout

    async def restart_and_wait_for_sync() -> None:
        r = lab(lab_dir, "stop-agent", "2", "--kill")
        assert r.returncode == 0, r.stderr
        r = lab(lab_dir, "start-agent", "2")
        assert r.returncode == 0, r.stderr
        # a Service created now answers once the restarted proxy has synced
        name = f"mark-{os.urandom(3).hex()}"
        mark = await c.create(service(name, {"selector": {"app": "st"},
                                             "ports": [{"port": 81, "targetPort": 8090}]}))
        async with asyncio.timeout(60):
            while True:
                try:
                    code, out, _ = await exec_out(c, "st-client", [
                        sys.executable, "-c", MANY, mark.spec.cluster_ip, "81", "1"])
                    if code == 0 and out.strip() in ("st-1", "st-2"):
                        break
                except Exception:  # the agent (exec's way in) is still starting
                    pass
                await asyncio.sleep(0.5)

    await restart_and_wait_for_sync()
    # the set still holds the client, before it connects again
    table = nft_in(lab_dir, 2, "list", "table", "ip", "flotilla-proxy").stdout
    assert f"elements = {{ {client_ip} expires" in table, table
    assert set(await answers(10)) == {sticky}

    # the table removed while the agent is down: the restarted agent writes it again
    r = lab(lab_dir, "stop-agent", "2", "--kill")
    assert r.returncode == 0, r.stderr
    r = nft_in(lab_dir, 2, "delete", "table", "ip", "flotilla-proxy")
    assert r.returncode == 0, r.stderr
    await restart_and_wait_for_sync()
    assert set(await answers(4)) <= {"st-1", "st-2"}
    assert "error" not in " ".join(await answers(4))
