"""The built-in service load balancer: the pure rules (table tests) and the controller
against a real control plane (ingress follows the Ready nodes; a held port leaves the
later Service pending; ``--disable servicelb`` leaves every LoadBalancer pending)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2, discovery_pb2
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.controllers.servicelb import admitted, desired_ingress, node_addresses
from tests.conftest import Cluster, running_cluster
from tests.support import eventually


def node(name: str, ip: str, ready: str = "True", deleting: bool = False) -> core_pb2.Node:
    n = convert.from_dict({"metadata": {"name": name}, "status": {
        "addresses": [{"type": "InternalIP", "address": ip},
                      {"type": "Hostname", "address": name}],
        "conditions": [{"type": "Ready", "status": ready}]}}, core_pb2.Node())
    if deleting:
        n.metadata.deletion_timestamp.seconds = 1
    return n


def lb(name: str, port: int = 80, created: int = 0, **spec: Any) -> core_pb2.Service:
    spec.setdefault("type", "LoadBalancer")
    spec.setdefault("ports", [{"name": "http", "port": port, "protocol": "TCP"}])
    s = convert.from_dict({"metadata": {"name": name, "namespace": "default"}, "spec": spec},
                          core_pb2.Service())
    s.metadata.creation_timestamp.seconds = created
    return s


def _holding(svc: core_pb2.Service) -> core_pb2.Service:
    svc.status.load_balancer.ingress.add(ip="10.0.0.2")
    return svc


NODES = [node("b", "10.0.0.12"), node("a", "10.0.0.2"), node("c", "10.0.0.3", ready="False"),
         node("d", "10.0.0.4", deleting=True), node("e", "fd00::5"), node("f", "10.0.0.2")]


def test_node_addresses_are_the_ready_internal_ipv4s_in_order() -> None:
    assert node_addresses(NODES) == ["10.0.0.2", "10.0.0.12"]


@pytest.mark.parametrize(("services", "want"), [
    pytest.param([lb("a", created=2), lb("b", created=1)], {"b"}, id="oldest-holds-port"),
    pytest.param([lb("a"), lb("b", port=81)], {"a", "b"}, id="distinct-ports"),
    pytest.param([lb("a"), lb("b", ports=[{"port": 80, "protocol": "UDP"}])], {"a", "b"},
                 id="protocols-distinct"),
    pytest.param([lb("a"), lb("b")], {"a"}, id="tie-broken-by-name"),
    pytest.param([lb("a", created=1), _holding(lb("b", created=2))], {"b"},
                 id="holder-keeps-port"),
    pytest.param([lb("a", loadBalancerClass="other"), lb("b")], {"b"}, id="class-not-ours"),
    pytest.param([lb("a", type="NodePort"), lb("b")], {"b"}, id="not-lb-holds-nothing"),
])
def test_admitted(services: list[core_pb2.Service], want: set[str]) -> None:
    assert admitted(services) == {f"default/{n}" for n in want}


def test_desired_ingress() -> None:
    first, second = lb("a", created=1), lb("b", created=2)
    both = [first, second]
    assert desired_ingress(first, both, NODES) == ["10.0.0.2", "10.0.0.12"]
    assert desired_ingress(second, both, NODES) == []  # pending while its port is held
    assert desired_ingress(lb("c", loadBalancerClass="x"), both, NODES) is None
    assert desired_ingress(lb("d", type="ClusterIP"), both, NODES) == []
    assert desired_ingress(first, both, []) == []


def test_local_policy_advertises_nodes_with_ready_endpoints() -> None:
    svc = lb("a", externalTrafficPolicy="Local")
    slices = [convert.from_dict({
        "metadata": {"name": f"a-{i}", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4", "endpoints": eps}, discovery_pb2.EndpointSlice())
        for i, (ns, name, eps) in enumerate([
            ("default", "a", [{"addresses": ["10.244.0.5"], "nodeName": "b"},
                              {"addresses": ["10.244.0.6"], "nodeName": "a",
                               "conditions": {"ready": False}}]),
            ("other", "a", [{"addresses": ["10.244.0.7"], "nodeName": "a"}]),
            ("default", "x", [{"addresses": ["10.244.0.8"], "nodeName": "a"}])])]
    assert desired_ingress(svc, [svc], NODES, slices) == ["10.0.0.12"]
    assert desired_ingress(svc, [svc], NODES, []) == []
    svc.spec.external_traffic_policy = "Cluster"
    assert desired_ingress(svc, [svc], NODES, []) == ["10.0.0.2", "10.0.0.12"]


# -- the controller, live --------------------------------------------------------------------


async def _add_node(c: ApiClient, name: str, ip: str, ready: str = "True") -> None:
    await c.create(convert.from_dict({"metadata": {"name": name}}, core_pb2.Node()))
    await _set_status(c, name, node(name, ip, ready).status)


async def _set_status(c: ApiClient, name: str, status: core_pb2.NodeStatus) -> None:
    def mutate(n: core_pb2.Node) -> bool:
        n.status.CopyFrom(status)
        return True

    # node IPAM writes the node too (its pod range): compare-and-swap
    await guaranteed_update(c, core_pb2.Node, "", name, mutate, status=True)


async def _ingress(c: ApiClient, name: str) -> list[str]:
    svc = await c.get(core_pb2.Service, name, "default")
    return [i.ip for i in svc.status.load_balancer.ingress]


async def test_controller_sets_ingress_to_ready_nodes(cluster: Cluster) -> None:
    c = cluster.client
    await _add_node(c, "n1", "192.0.2.11")
    await _add_node(c, "n2", "192.0.2.12", ready="False")
    await c.create(lb("web"))
    await eventually(lambda: _ingress_is(c, "web", ["192.0.2.11"]), "ingress of n1")
    # a node becoming Ready joins; a later Service on the same port stays pending
    await _set_status(c, "n2", node("n2", "192.0.2.12").status)
    await eventually(lambda: _ingress_is(c, "web", ["192.0.2.11", "192.0.2.12"]), "both")
    await c.create(lb("late"))
    await c.create(lb("other", port=8080))
    await eventually(lambda: _ingress_is(c, "other", ["192.0.2.11", "192.0.2.12"]), "other")
    assert await _ingress(c, "late") == []
    # the holder gone, the late one takes the port
    await c.delete(core_pb2.Service, "web", "default")
    await eventually(lambda: _ingress_is(c, "late", ["192.0.2.11", "192.0.2.12"]), "late")
    # externalTrafficPolicy Local: only the nodes running a ready endpoint
    await c.create(lb("loc", port=7070, externalTrafficPolicy="Local"))
    await c.create(convert.from_dict({
        "metadata": {"name": "loc-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "loc"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "n2"}]},
        discovery_pb2.EndpointSlice()))
    await eventually(lambda: _ingress_is(c, "loc", ["192.0.2.12"]), "loc on n2 only")
    # a class of another implementation is not ours
    await c.create(lb("classy", port=9090, loadBalancerClass="example.com/lb"))
    await asyncio.sleep(0.5)
    assert await _ingress(c, "classy") == []


async def _ingress_is(c: ApiClient, name: str, want: list[str]) -> bool:
    return await _ingress(c, name) == want


async def test_disabled_leaves_load_balancers_pending(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable={"servicelb"}) as cl:
        c = cl.client
        await _add_node(c, "n1", "192.0.2.11")
        await c.create(lb("web"))
        # the controller manager runs (the default ServiceAccount appears) ...
        await eventually(lambda: _account_exists(c), "serviceaccount controller ran")
        await asyncio.sleep(0.5)
        # ... but nobody gives the LoadBalancer an address
        assert await _ingress(c, "web") == []


async def _account_exists(c: ApiClient) -> bool:
    try:
        await c.get(core_pb2.ServiceAccount, "default", "default")
    except errors.NotFound:
        return False
    return True
