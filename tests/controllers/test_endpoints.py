"""The endpoints controller: the pure rules (table tests) and the controller against a
real control plane (readiness changes reach the Endpoints within a second)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2
from control.controllers.endpoints_util import HEADLESS_LABEL, desired_endpoints
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.endpoints import make_pod, pod, service, set_ready


def summary(ep: core_pb2.Endpoints) -> list[tuple[list[str], list[str], list[tuple[str, int]]]]:
    return [([a.ip for a in s.addresses], [a.ip for a in s.not_ready_addresses],
             [(p.name, p.port) for p in s.ports]) for s in ep.subsets]


NAMED = [{"name": "http", "containerPort": 9090}]


@pytest.mark.parametrize(("svc", "pods", "want"), [
    pytest.param(service(), [pod("a", "10.244.0.2"), pod("b", "10.244.1.2", ready=False)],
                 [(["10.244.0.2"], ["10.244.1.2"], [("http", 8080)])], id="ready-and-not"),
    pytest.param(service(), [pod("a", "10.244.0.2", app="other"), pod("b", "")],
                 [], id="unmatched-or-no-ip"),
    pytest.param(service(), [pod("a", "10.244.0.2", phase="Succeeded"),
                             pod("b", "10.244.0.3", deleting=True)], [],
                 id="finished-and-terminating-left-out"),
    pytest.param(service(publishNotReadyAddresses=True),
                 [pod("a", "10.244.0.2", ready=False), pod("b", "10.244.0.3", deleting=True)],
                 [(["10.244.0.2", "10.244.0.3"], [], [("http", 8080)])],
                 id="publish-not-ready"),
    pytest.param(service(ports=[{"name": "http", "port": 80, "targetPort": "http"}]),
                 [pod("a", "10.244.0.2", ports=NAMED), pod("b", "10.244.0.3")],
                 [(["10.244.0.2"], [], [("http", 9090)])], id="named-target-port-per-pod"),
    pytest.param(service(ports=[{"name": "http", "port": 80, "targetPort": "http"},
                                {"name": "dns", "port": 53, "targetPort": 53,
                                 "protocol": "UDP"}]),
                 [pod("a", "10.244.0.2", ports=NAMED), pod("b", "10.244.0.3")],
                 [(["10.244.0.3"], [], [("dns", 53)]),
                  (["10.244.0.2"], [], [("dns", 53), ("http", 9090)])],
                 id="repacked-by-port-set"),
    pytest.param(service(clusterIP="None", ports=[]), [pod("a", "10.244.0.2")],
                 [(["10.244.0.2"], [], [])], id="headless-without-ports"),
])
def test_compute(svc: core_pb2.Service, pods: list[core_pb2.Pod], want: Any) -> None:
    assert summary(desired_endpoints(svc, pods)) == want


def test_hostname_subdomain_and_labels() -> None:
    svc = service(clusterIP="None")
    p = pod("web-0", "10.244.0.2", hostname="web-0", subdomain="web")
    q = pod("x", "10.244.0.3", hostname="x", subdomain="other")
    ep = desired_endpoints(svc, [p, q])
    addrs = {a.ip: a for a in ep.subsets[0].addresses}
    assert addrs["10.244.0.2"].hostname == "web-0" and addrs["10.244.0.3"].hostname == ""
    assert addrs["10.244.0.2"].target_ref.name == "web-0"
    assert addrs["10.244.0.2"].node_name == "n1"
    assert ep.metadata.labels["team"] == "a" and HEADLESS_LABEL in ep.metadata.labels


# -- the controller, live --------------------------------------------------------------------


async def test_controller_follows_readiness_and_service_lifecycle(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(service())
    await make_pod(c, "a")
    await make_pod(c, "b")
    await set_ready(c, "a", True, "10.244.0.2")
    await set_ready(c, "b", False, "10.244.0.3")

    async def ep() -> Any:
        return summary(await c.get(core_pb2.Endpoints, "web", "default"))

    want = [(["10.244.0.2"], ["10.244.0.3"], [("http", 8080)])]
    await eventually(lambda: _equals(ep, want), "endpoints", retry_on=(errors.NotFound,))
    start = time.monotonic()
    await set_ready(c, "b", True, "10.244.0.3")
    await eventually(lambda: _equals(ep, [(["10.244.0.2", "10.244.0.3"], [],
                                           [("http", 8080)])]), "b ready", timeout=5)
    assert time.monotonic() - start < 1.0
    # a user's edit of a selector Service's Endpoints is put back
    cur = await c.get(core_pb2.Endpoints, "web", "default")
    del cur.subsets[:]
    await c.update(cur)
    await eventually(lambda: _equals(ep, [(["10.244.0.2", "10.244.0.3"], [],
                                           [("http", 8080)])]), "repaired")
    await c.delete(core_pb2.Service, "web", "default")

    async def gone() -> bool:
        try:
            await c.get(core_pb2.Endpoints, "web", "default")
        except errors.NotFound:
            return True
        return False

    await eventually(gone, "endpoints deleted with the service")


async def test_selectorless_endpoints_are_left_alone(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(service(selector={}))
    ep = convert.from_dict({"metadata": {"name": "web", "namespace": "default"},
                            "subsets": [{"addresses": [{"ip": "192.0.2.7"}],
                                         "ports": [{"name": "http", "port": 8080}]}]},
                           core_pb2.Endpoints())
    await c.create(ep)
    await make_pod(c, "a")
    await set_ready(c, "a", True, "10.244.0.2")
    await asyncio.sleep(1.0)  # longer than a selector Service's update takes
    kept = await c.get(core_pb2.Endpoints, "web", "default")
    assert summary(kept) == [(["192.0.2.7"], [], [("http", 8080)])]


async def _equals(get: Any, want: Any) -> bool:
    return bool(await get() == want)
