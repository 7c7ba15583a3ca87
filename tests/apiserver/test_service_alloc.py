"""Cluster IPs and node ports through a real apiserver: allocated on create, honoured or
refused by field when asked for, freed on delete and type change, repaired at start, never
handed out twice by concurrent writers; and the ``kubernetes`` Service the server keeps."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2
from control.apiserver import allocation_bitmap as ab
from control.apiserver.service_alloc import IP_KEY, PORT_KEY, ServiceAllocator
from control.server import ControlPlane, ServerOptions, StartRefused
from control.store.memory import MemoryStore
from tests.conftest import Cluster, running_cluster

ADVERTISE = "192.0.2.10"


def svc(name: str, **spec: Any) -> core_pb2.Service:
    spec.setdefault("ports", [{"port": 80, "targetPort": 8080}])
    return convert.from_dict(
        {"metadata": {"name": name, "namespace": "default"}, "spec": spec},
        core_pb2.Service())


@pytest.fixture
async def cluster(tmp_path: Path) -> Any:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"},
                               advertise_address=ADVERTISE) as c:
        yield c


async def test_cluster_ip_allocated_in_range_with_families(cluster: Cluster) -> None:
    made = await cluster.client.create(svc("web"))
    ip = ipaddress.ip_address(made.spec.cluster_ip)
    assert ip in ipaddress.ip_network("10.96.0.0/12")
    assert list(made.spec.cluster_ips) == [made.spec.cluster_ip]
    assert list(made.spec.ip_families) == ["IPv4"]
    assert made.spec.ip_family_policy == "SingleStack"
    # dynamic choices stay out of the static band (the first 256 addresses)
    assert int(ip) - int(ipaddress.ip_address("10.96.0.0")) > 256
    assert not any(p.node_port for p in made.spec.ports)


async def test_requested_ip_honoured_then_refused_by_name(cluster: Cluster) -> None:
    c = cluster.client
    made = await c.create(svc("a", clusterIP="10.96.0.50"))
    assert made.spec.cluster_ip == "10.96.0.50"
    with pytest.raises(errors.Invalid) as ei:
        await c.create(svc("b", clusterIP="10.96.0.50"))
    assert ('spec.clusterIPs: Invalid value: ["10.96.0.50"]: failed to allocate IP 10.96.0.50: '
            "provided IP is already allocated") in str(ei.value)
    with pytest.raises(errors.Invalid, match=r"not in the valid range\. The range of valid "
                                             r"IPs is 10\.96\.0\.0/12"):
        await c.create(svc("c", clusterIP="10.0.0.5"))
    with pytest.raises(errors.NotFound):
        await c.get(core_pb2.Service, "b", "default")


async def test_delete_frees_the_ip_and_ports(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(svc("a", type="NodePort", clusterIP="10.96.0.60",
                       ports=[{"port": 80, "nodePort": 30080}]))
    with pytest.raises(errors.Invalid, match=r"spec.ports\[0\].nodePort: Invalid value: 30080: "
                                             "provided port is already allocated"):
        await c.create(svc("b", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    await c.delete(core_pb2.Service, "a", "default")
    again = await c.create(svc("b", type="NodePort", clusterIP="10.96.0.60",
                               ports=[{"port": 80, "nodePort": 30080}]))
    assert again.spec.ports[0].node_port == 30080


async def test_node_ports_per_port_and_protocol_sharing(cluster: Cluster) -> None:
    made = await cluster.client.create(svc("dns", type="NodePort", ports=[
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053},
        {"name": "metrics", "port": 9153}]))
    ports = [p.node_port for p in made.spec.ports]
    assert ports[:2] == [30053, 30053] and 30000 <= ports[2] <= 32767 and ports[2] != 30053
    assert made.spec.external_traffic_policy == "Cluster"


async def test_type_change_frees_and_allocates(cluster: Cluster) -> None:
    c = cluster.client
    np = await c.create(svc("t", type="NodePort", ports=[{"port": 80, "nodePort": 30100}]))
    ip = np.spec.cluster_ip
    np.spec.type = "ClusterIP"
    cip = await c.update(np)
    assert cip.spec.cluster_ip == ip and cip.spec.ports[0].node_port == 0
    # the node port is free again
    await c.create(svc("other", type="NodePort", ports=[{"port": 80, "nodePort": 30100}]))
    # to ExternalName: the cluster IP goes, and is free again
    cip.spec.type = "ExternalName"
    cip.spec.external_name = "example.com"
    ext = await c.update(cip)
    assert ext.spec.cluster_ip == "" and not ext.spec.cluster_ips
    await c.create(svc("reuse", clusterIP=ip))
    # back from ExternalName: a new cluster IP
    ext.spec.type = "ClusterIP"
    ext.spec.external_name = ""
    back = await c.update(ext)
    assert back.spec.cluster_ip and back.spec.cluster_ip != ip
    # ClusterIP -> LoadBalancer with externalTrafficPolicy Local: node port + health port
    back.spec.type = "LoadBalancer"
    back.spec.external_traffic_policy = "Local"
    lb = await c.update(back)
    assert lb.spec.ports[0].node_port and lb.spec.health_check_node_port
    assert lb.spec.health_check_node_port != lb.spec.ports[0].node_port


async def test_headless_external_name_and_refusals(cluster: Cluster) -> None:
    c = cluster.client
    headless = await c.create(svc("h", clusterIP="None", selector={"app": "h"}))
    assert headless.spec.cluster_ip == "None" and list(headless.spec.ip_families) == ["IPv4"]
    ext = await c.create(svc("e", type="ExternalName", externalName="db.example.com",
                             ports=[]))
    assert ext.spec.cluster_ip == "" and not ext.spec.ip_families
    with pytest.raises(errors.Invalid, match='Unsupported value: "SCTP"'):
        await c.create(svc("s", ports=[{"port": 80, "protocol": "SCTP"}]))
    with pytest.raises(errors.Invalid, match=r'spec.ipFamilies\[0\]: Invalid value: "IPv6": '
                                             "not configured on this cluster"):
        await c.create(svc("v6", ipFamilies=["IPv6"]))
    with pytest.raises(errors.Invalid, match="not configured for dual-stack"):
        await c.create(svc("ds", ipFamilyPolicy="RequireDualStack"))
    with pytest.raises(errors.Invalid, match=r"spec.ports\[1\].name: Required value"):
        await c.create(svc("many", ports=[{"port": 80}, {"port": 81}]))
    made = await c.create(svc("named", ports=[{"name": "http", "port": 80},
                                              {"name": "https", "port": 443, "targetPort": 8443},
                                              {"name": "dns", "port": 53, "protocol": "UDP"}]))
    assert [p.protocol for p in made.spec.ports] == ["TCP", "TCP", "UDP"]


async def test_dry_run_takes_nothing(cluster: Cluster) -> None:
    c = cluster.client
    dry = await c.create(svc("d", clusterIP="10.96.0.70"), dry_run=True)
    assert dry.spec.cluster_ip == "10.96.0.70"
    await c.create(svc("d", clusterIP="10.96.0.70"))


async def test_concurrent_creates_never_share(cluster: Cluster) -> None:
    c = cluster.client
    made = await asyncio.gather(*(c.create(svc(f"s{i}", type="NodePort")) for i in range(30)))
    ips = {m.spec.cluster_ip for m in made}
    ports = {m.spec.ports[0].node_port for m in made}
    assert len(ips) == 30 and len(ports) == 30


async def test_two_allocators_on_one_store_never_share() -> None:
    store = await MemoryStore.open()
    try:
        small = "10.0.0.0/26"  # 62 addresses: collisions are likely if CAS did not hold
        a = ServiceAllocator(store, small, "30000-30099", rng=random.Random(1))
        b = ServiceAllocator(store, small, "30000-30099", rng=random.Random(1))

        async def one(alloc: ServiceAllocator, i: int) -> str:
            s = svc(f"x{i}", type="NodePort")
            s.spec.type = "NodePort"
            await alloc.begin_create(s)
            return s.spec.cluster_ip

        got = await asyncio.gather(*(one(a if i % 2 else b, i) for i in range(60)))
        assert len(set(got)) == 60
        kv = await store.get(IP_KEY)
        assert kv is not None and ab.decode(kv.value).count() == 60
        kvp = await store.get(PORT_KEY)
        assert kvp is not None and ab.decode(kvp.value).count() == 60
    finally:
        await store.close()


async def test_repair_restores_and_frees_leaks() -> None:
    store = await MemoryStore.open()
    try:
        alloc = ServiceAllocator(store)
        held = svc("held", clusterIP="10.96.0.80")
        await alloc.begin_create(held)
        leaked = svc("leaked", clusterIP="10.96.0.81")
        await alloc.begin_create(leaked)  # as if the object write never happened
        kv = await store.get(IP_KEY)
        assert kv is not None
        await store.delete(IP_KEY, kv.mod_revision)  # the state lost
        await alloc.repair([held])
        bm = await alloc.bitmap(IP_KEY)
        assert bm.has(alloc.ips.offset("10.96.0.80"))
        await alloc.begin_create(svc("leak2", clusterIP="10.96.0.81"))  # leaked again
        await alloc.repair([held])  # seen once: kept (a create may be in flight)
        assert (await alloc.bitmap(IP_KEY)).has(alloc.ips.offset("10.96.0.81"))
        await alloc.repair([held])  # seen twice: freed
        assert not (await alloc.bitmap(IP_KEY)).has(alloc.ips.offset("10.96.0.81"))
        assert (await alloc.bitmap(IP_KEY)).has(alloc.ips.offset("10.96.0.80"))
    finally:
        await store.close()


async def test_restart_repairs_from_existing_services(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_cluster(data, disable={"scheduler", "controllers"},
                               advertise_address=ADVERTISE) as c:
        await c.client.create(svc("keep", clusterIP="10.96.0.90"))
        store = c.plane.store
        assert store is not None
        kv = await store.get(IP_KEY)
        assert kv is not None
        await store.delete(IP_KEY, kv.mod_revision)
    async with running_cluster(data, disable={"scheduler", "controllers"},
                               advertise_address=ADVERTISE) as c:
        with pytest.raises(errors.Invalid, match="already allocated"):
            await c.client.create(svc("dup", clusterIP="10.96.0.90"))


async def test_kubernetes_service_and_endpoints(cluster: Cluster) -> None:
    c = cluster.client
    k = await c.get(core_pb2.Service, "kubernetes", "default")
    assert k.spec.cluster_ip == "10.96.0.1"
    # the port that takes pods' bearer tokens
    port = int(cluster.plane.supervisor_address.rpartition(":")[2])
    assert [(p.name, p.port, p.target_port.int_val) for p in k.spec.ports] == [
        ("https", 443, port)]
    ep = await c.get(core_pb2.Endpoints, "kubernetes", "default")
    assert [a.ip for a in ep.subsets[0].addresses] == [ADVERTISE]
    assert [(p.name, p.port) for p in ep.subsets[0].ports] == [("https", port)]
    # a user's change of its ports is put back by the server
    k.spec.ports[0].port = 8443
    await c.update(k)
    keeper = cluster.plane.kubernetes_service
    assert keeper is not None
    await keeper.sync()
    k = await c.get(core_pb2.Service, "kubernetes", "default")
    assert k.spec.ports[0].port == 443


@pytest.mark.parametrize(("options", "message"), [
    ({"advertise_address": "127.0.0.1"}, "loopback"),
    ({"advertise_address": "::1"}, "loopback"),
    ({"service_cluster_ip_range": "10.0.0.0/8"}, "too large"),
    ({"service_node_port_range": "40000-30000"}, "port range"),
])
async def test_bad_service_options_refuse_start(tmp_path: Path, options: dict[str, Any],
                                                message: str) -> None:
    plane = ControlPlane(ServerOptions(data_dir=tmp_path / "d", listen="127.0.0.1:0",
                                       disable={"scheduler", "controllers"}, **options))
    with pytest.raises(StartRefused, match=message):
        await plane.start()
    await plane.stop()


async def test_custom_ranges(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"},
                               advertise_address=ADVERTISE,
                               service_cluster_ip_range="10.50.0.0/24",
                               service_node_port_range="31000-31010") as c:
        made = await c.client.create(svc("w", type="NodePort"))
        assert ipaddress.ip_address(made.spec.cluster_ip) in ipaddress.ip_network("10.50.0.0/24")
        assert 31000 <= made.spec.ports[0].node_port <= 31010
        k = await c.client.get(core_pb2.Service, "kubernetes", "default")
        assert k.spec.cluster_ip == "10.50.0.1"
        with pytest.raises(errors.Invalid, match="range of valid ports is 31000-31010"):
            await c.client.create(svc("x", type="NodePort", ports=[{"port": 80,
                                                                     "nodePort": 30000}]))
