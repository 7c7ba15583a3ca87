"""Services and EndpointSlices to the proxy's ruleset (table tests)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.proxy.nft_rules import Endpoint
from agent.proxy.state import ruleset_from
from control.api import convert
from control.api.pb import core_pb2, discovery_pb2


def svc(name: str = "web", **spec: Any) -> core_pb2.Service:
    spec.setdefault("clusterIP", "10.96.0.5")
    spec.setdefault("ports", [{"name": "http", "port": 80, "protocol": "TCP"}])
    return convert.from_dict({"metadata": {"name": name, "namespace": "default"},
                              "spec": spec}, core_pb2.Service())


def es(name: str = "web", endpoints: list[dict[str, Any]] | None = None,
       ports: list[dict[str, Any]] | None = None, address_type: str = "IPv4"
       ) -> discovery_pb2.EndpointSlice:
    return convert.from_dict({
        "metadata": {"name": f"{name}-x", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": address_type,
        "endpoints": endpoints or [],
        "ports": ports or [{"name": "http", "port": 8080, "protocol": "TCP"}]},
        discovery_pb2.EndpointSlice())


def ep(ip: str, ready: bool | None = True, node: str = "n1") -> dict[str, Any]:
    d: dict[str, Any] = {"addresses": [ip], "nodeName": node}
    if ready is not None:
        d["conditions"] = {"ready": ready}
    return d


@pytest.mark.parametrize(("services", "slices", "want"), [
    pytest.param([svc()], [es(endpoints=[ep("10.244.0.2"), ep("10.244.1.2", ready=False),
                                         ep("10.244.2.2", ready=None)])],
                 [[Endpoint("10.244.0.2", 8080), Endpoint("10.244.2.2", 8080)]],
                 id="ready-and-unset-ready"),
    pytest.param([svc(internalTrafficPolicy="Local")],
                 [es(endpoints=[ep("10.244.0.2", node="n1"), ep("10.244.1.2", node="n2")])],
                 [[Endpoint("10.244.0.2", 8080)]], id="internal-traffic-local"),
    pytest.param([svc(clusterIP="None")], [es(endpoints=[ep("10.244.0.2")])], [],
                 id="headless-skipped"),
    pytest.param([svc()], [es(endpoints=[ep("10.244.0.2")],
                              ports=[{"name": "other", "port": 1, "protocol": "TCP"}])],
                 [[]], id="port-name-must-match"),
    pytest.param([svc()], [es(endpoints=[ep("10.244.0.2")]), es(endpoints=[ep("10.244.0.2")])],
                 [[Endpoint("10.244.0.2", 8080)]], id="deduplicated"),
    pytest.param([svc()], [es(endpoints=[ep("fd00::2")], address_type="IPv6")], [[]],
                 id="ipv6-slices-ignored"),
])
def test_ruleset_from(services: list[core_pb2.Service],
                      slices: list[discovery_pb2.EndpointSlice], want: list[Any]) -> None:
    got = ruleset_from(services, slices, "10.96.0.0/12", "n1")
    assert [list(p.endpoints) for p in got.ports] == want


def test_node_ports_carried() -> None:
    got = ruleset_from([svc(type="NodePort", ports=[
        {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}])], [], "x", "n1")
    assert got.ports[0].node_port == 30080 and got.ports[0].cluster_ip == "10.96.0.5"


@pytest.mark.parametrize(("spec", "want"), [
    pytest.param({}, 0, id="none"),
    pytest.param({"sessionAffinity": "None"}, 0, id="explicit-none"),
    pytest.param({"sessionAffinity": "ClientIP"}, 10800, id="client-ip-default"),
    pytest.param({"sessionAffinity": "ClientIP",
                  "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}, 60,
                 id="client-ip-timeout"),
])
def test_session_affinity_carried(spec: dict[str, Any], want: int) -> None:
    got = ruleset_from([svc(**spec)], [], "x", "n1")
    assert got.ports[0].affinity_timeout == want


def test_load_balancer_ingress_carried() -> None:
    lb = svc(type="LoadBalancer", ports=[
        {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}])
    lb.status.load_balancer.ingress.add(ip="192.0.2.1")
    lb.status.load_balancer.ingress.add(hostname="lb.example")
    lb.status.load_balancer.ingress.add(ip="fd00::1")
    assert ruleset_from([lb], [], "x", "n1").ports[0].load_balancer_ips == ("192.0.2.1",)
    # a status left on a Service that is no longer a LoadBalancer is not followed
    lb.spec.type = "NodePort"
    assert ruleset_from([lb], [], "x", "n1").ports[0].load_balancer_ips == ()


@pytest.mark.parametrize(("spec", "want"), [
    pytest.param({"type": "NodePort"}, None, id="cluster-policy"),
    pytest.param({"type": "NodePort", "externalTrafficPolicy": "Local"},
                 [Endpoint("10.244.0.2", 8080)], id="nodeport-local"),
    pytest.param({"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
                 [Endpoint("10.244.0.2", 8080)], id="lb-local"),
    pytest.param({"externalTrafficPolicy": "Local"}, None, id="cluster-ip-ignores-it"),
])
def test_external_traffic_policy(spec: dict[str, Any], want: list[Endpoint] | None) -> None:
    slices = [es(endpoints=[ep("10.244.0.2", node="n1"), ep("10.244.1.2", node="n2"),
                            ep("10.244.0.9", ready=False, node="n1")])]
    got = ruleset_from([svc(**spec)], slices, "x", "n1").ports[0]
    assert len(got.endpoints) == 2  # the ClusterIP still reaches every ready endpoint
    assert (None if got.local_endpoints is None else list(got.local_endpoints)) == want


def test_source_ranges_and_health_check() -> None:
    lb = svc(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=31000,
             loadBalancerSourceRanges=["10.0.0.0/8", " 192.0.2.7/32", "fd00::/64"])
    slices = [es(endpoints=[ep("10.244.0.2", node="n1"), ep("10.244.0.3", node="n1"),
                            ep("10.244.0.9", ready=False, node="n1"),
                            ep("10.244.1.2", node="n2")])]
    got = ruleset_from([lb], slices, "x", "n1")
    assert got.ports[0].source_ranges == ("10.0.0.0/8", "192.0.2.7/32")  # IPv4 ones
    [check] = got.health_checks
    assert (check.namespace, check.name, check.node_port, check.local_endpoints) == (
        "default", "web", 31000, 2)
    assert ruleset_from([lb], slices, "x", "n2").health_checks[0].local_endpoints == 1
    assert ruleset_from([lb], slices, "x", "n3").health_checks[0].local_endpoints == 0
    # Cluster policy: no health check; not a LoadBalancer: no ranges
    lb.spec.external_traffic_policy = "Cluster"
    assert ruleset_from([lb], slices, "x", "n1").health_checks == ()
    lb.spec.type = "NodePort"
    assert ruleset_from([lb], slices, "x", "n1").ports[0].source_ranges == ()
