"""A Service update keeps what the cluster allocated and drops, on a type change, the fields
the new type has no use for (Kubernetes' service storage): table tests of the pure
functions, and the NodePort -> ClusterIP change through a real apiserver."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert
from control.api.pb import core_pb2
from control.apiserver.service_update import prepare_service_update
from tests.conftest import Cluster


def svc(spec: dict[str, Any], status: dict[str, Any] | None = None) -> core_pb2.Service:
    return convert.from_dict(
        {"metadata": {"name": "s", "namespace": "default"}, "spec": spec,
         "status": status or {}},
        core_pb2.Service(),
    )


PORT = {"port": 80, "protocol": "TCP", "targetPort": 8080}
NODE_PORT = {**PORT, "nodePort": 30080}
IPS = {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"],
       "ipFamilyPolicy": "SingleStack"}
LB_STATUS = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
LB = {
    **IPS, "type": "LoadBalancer", "ports": [NODE_PORT], "externalTrafficPolicy": "Local",
    "healthCheckNodePort": 31000, "allocateLoadBalancerNodePorts": True,
    "loadBalancerClass": "example.com/lb", "loadBalancerIP": "192.0.2.1",
    "loadBalancerSourceRanges": ["192.0.2.0/24"],
}


@pytest.mark.parametrize(
    ("old", "new", "want"),
    [
        pytest.param(  # the apply of a manifest changed to ClusterIP: live values sent back
            {**IPS, "type": "NodePort", "ports": [NODE_PORT], "externalTrafficPolicy": "Cluster"},
            {**IPS, "type": "ClusterIP", "ports": [NODE_PORT], "externalTrafficPolicy": "Cluster"},
            {**IPS, "type": "ClusterIP", "ports": [PORT]},
            id="nodeport-to-clusterip-drops-node-ports-and-etp",
        ),
        pytest.param(  # replace without the allocated node port: not carried over
            {**IPS, "type": "NodePort", "ports": [NODE_PORT], "externalTrafficPolicy": "Cluster"},
            {"type": "ClusterIP", "ports": [PORT]},
            {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "ClusterIP",
             "ports": [PORT]},
            id="nodeport-to-clusterip-replace",
        ),
        pytest.param(  # a node port the user asks for is theirs: validation judges it
            {**IPS, "type": "NodePort", "ports": [NODE_PORT]},
            {**IPS, "type": "ClusterIP", "ports": [{**PORT, "nodePort": 30999}]},
            {**IPS, "type": "ClusterIP", "ports": [{**PORT, "nodePort": 30999}]},
            id="nodeport-to-clusterip-user-node-port-kept",
        ),
        pytest.param(
            LB,
            {**LB, "type": "ClusterIP"},
            {**IPS, "type": "ClusterIP", "ports": [PORT]},
            id="loadbalancer-to-clusterip-drops-every-lb-field",
        ),
        pytest.param(  # still node ports and external: those stay; LB-only fields go
            LB,
            {**LB, "type": "NodePort"},
            {**IPS, "type": "NodePort", "ports": [NODE_PORT], "externalTrafficPolicy": "Local"},
            id="loadbalancer-to-nodeport",
        ),
        pytest.param(
            {**IPS, "type": "ClusterIP", "ports": [PORT]},
            {**IPS, "type": "ExternalName", "externalName": "db.example.com", "ports": [PORT]},
            {"type": "ExternalName", "externalName": "db.example.com", "ports": [PORT]},
            id="clusterip-to-externalname-drops-cluster-ips",
        ),
        pytest.param(
            {"type": "ExternalName", "externalName": "db.example.com"},
            {"type": "ClusterIP", "externalName": "db.example.com", "ports": [PORT]},
            {"type": "ClusterIP", "ports": [PORT]},
            id="externalname-to-clusterip-drops-external-name",
        ),
        pytest.param(  # same type: what the cluster allocated is carried over
            {**IPS, "type": "NodePort", "ports": [NODE_PORT], "externalTrafficPolicy": "Cluster"},
            {"type": "NodePort", "ports": [PORT], "externalTrafficPolicy": "Cluster"},
            {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "NodePort",
             "ports": [NODE_PORT], "externalTrafficPolicy": "Cluster"},
            id="same-type-keeps-allocated",
        ),
        pytest.param(
            LB,
            {**LB, "healthCheckNodePort": 0, "ports": [PORT]},
            LB,
            id="loadbalancer-keeps-health-check-node-port",
        ),
        pytest.param(  # nothing to drop when the type stays
            LB, LB, LB, id="loadbalancer-unchanged",
        ),
    ],
)
def test_prepare_service_update(
    old: dict[str, Any], new: dict[str, Any], want: dict[str, Any]
) -> None:
    old_svc = svc(old, LB_STATUS if old.get("type") == "LoadBalancer" else None)
    new_svc = svc(new, LB_STATUS if old.get("type") == "LoadBalancer" else None)
    prepare_service_update(new_svc, old_svc)
    assert convert.to_dict(new_svc.spec) == want
    lb_status = convert.to_dict(new_svc.status).get("loadBalancer")
    if new.get("type") == "LoadBalancer" and old.get("type") == "LoadBalancer":
        assert lb_status == LB_STATUS["loadBalancer"]
    else:
        assert not lb_status


async def test_apply_nodeport_service_as_clusterip(api_cluster: Cluster) -> None:
    c = api_cluster.client
    created = await c.create(svc({"type": "NodePort", "selector": {"app": "web"},
                                  "ports": [NODE_PORT]}))
    assert created.spec.ports[0].node_port == 30080
    assert created.spec.external_traffic_policy == "Cluster"
    changed = await c.patch(core_pb2.Service, "s", {"spec": {"type": "ClusterIP"}}, "default")
    assert changed.spec.type == "ClusterIP"
    assert changed.spec.ports[0].node_port == 0
    assert changed.spec.external_traffic_policy == ""
    assert changed.spec.cluster_ip == created.spec.cluster_ip
