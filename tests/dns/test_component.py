"""The cluster DNS inside a real control plane: answers from the API's Services and
Endpoints as they change, and the kube-dns Service it keeps."""

from __future__ import annotations

import asyncio

import pytest
from dnslib import RCODE, DNSRecord

from control.api import convert, errors
from control.api.pb import core_pb2
from control.dns.kubedns import endpoint_addresses
from tests.conftest import Cluster
from tests.support import eventually


async def ask(port: int, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    raw = await asyncio.to_thread(q.send, "127.0.0.1", port, tcp=tcp, timeout=5)
    return DNSRecord.parse(raw)


async def test_answers_follow_the_api(cluster: Cluster) -> None:
    dns = cluster.plane.dns
    assert dns is not None and dns.server is not None
    port = dns.server.port
    svc = convert.from_dict({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
        core_pb2.Service())
    await cluster.client.create(svc)
    eps = convert.from_dict({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "db", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.244.0.7", "hostname": "db-0"}],
                     "ports": [{"name": "pg", "port": 5432}]}]}, core_pb2.Endpoints())
    await cluster.client.create(eps)

    async def resolved() -> bool:
        r = await ask(port, "db-0.db.default.svc.cluster.local")
        return [str(rr.rdata) for rr in r.rr] == ["10.244.0.7"]

    await eventually(resolved, "the headless endpoint's name", timeout=10)
    r = await ask(port, "_pg._tcp.db.default.svc.cluster.local", "SRV", tcp=True)
    assert [str(rr.rdata) for rr in r.rr] == ["0 100 5432 db-0.db.default.svc.cluster.local."]

    await cluster.client.delete(core_pb2.Service, "db", "default")

    async def gone() -> bool:
        r = await ask(port, "db.default.svc.cluster.local")
        return bool(r.header.rcode == RCODE.NXDOMAIN)

    await eventually(gone, "NXDOMAIN after the delete", timeout=10)


async def test_kube_dns_service_is_created_and_kept(cluster: Cluster) -> None:
    async def kube_dns() -> core_pb2.Service | None:
        try:
            return await cluster.client.get(core_pb2.Service, "kube-dns", "kube-system")
        except errors.NotFound:
            return None

    svc = await eventually(kube_dns, "the kube-dns Service", timeout=10)
    assert svc.spec.cluster_ip == "10.96.0.10"
    assert [(p.name, p.protocol, p.port) for p in svc.spec.ports] == [
        ("dns", "UDP", 53), ("dns-tcp", "TCP", 53)]
    # its ClusterIP answers by name through the DNS itself
    port = cluster.plane.dns.server.port
    r = await ask(port, "kube-dns.kube-system.svc.cluster.local")
    assert [str(rr.rdata) for rr in r.rr] == ["10.96.0.10"]
    r = await ask(port, "10.0.96.10.in-addr.arpa", "PTR")
    assert [str(rr.rdata) for rr in r.rr] == ["kube-dns.kube-system.svc.cluster.local."]
    # the DNS listens on loopback here: no address a pod could use (the Endpoints follow
    # the Service in the keeper's pass)
    async def endpoints() -> core_pb2.Endpoints | None:
        try:
            return await cluster.client.get(core_pb2.Endpoints, "kube-dns", "kube-system")
        except errors.NotFound:
            return None

    ep = await eventually(endpoints, "the kube-dns Endpoints", timeout=10)
    assert list(ep.subsets) == []
    # a user's change of its ports is put back
    svc.spec.ports[0].port = 5353
    await cluster.client.update(svc)
    cluster.plane.dns.keeper.poke()

    async def ports_back() -> bool:
        s = await kube_dns()
        return s is not None and [p.port for p in s.spec.ports] == [53, 53]

    await eventually(ports_back, "the kube-dns ports put back", timeout=10)


@pytest.mark.parametrize(("apiserver", "own", "want"), [
    (["192.0.2.2"], "0.0.0.0", ["192.0.2.2"]),
    (["192.0.2.2", "192.0.2.3"], "192.0.2.2", ["192.0.2.2", "192.0.2.3"]),
    ([], "192.0.2.9", ["192.0.2.9"]),
    (["192.0.2.2"], "127.0.0.1", []),
    (["192.0.2.2"], "::", ["192.0.2.2"]),
])
def test_kube_dns_endpoint_addresses(apiserver: list[str], own: str, want: list[str]) -> None:
    assert endpoint_addresses(apiserver, own) == want
