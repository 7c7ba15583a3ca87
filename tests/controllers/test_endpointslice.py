"""EndpointSlices: the pure rules (conditions, ports, mirroring, packing) and the
controllers against a real control plane (readiness within a second, the kubernetes
Service mirrored, slices put back and removed with their Service); EndpointSlice
validation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2, discovery_pb2
from control.controllers.endpointslice_util import (
    MANAGED_BY_LABEL,
    MAX_PER_SLICE,
    MIRROR_MANAGED_BY,
    SERVICE_NAME_LABEL,
    slices_from_endpoints,
    slices_from_pods,
)
from tests.conftest import Cluster, running_cluster
from tests.support import eventually
from tests.support.endpoints import make_pod, pod, service, set_ready


def conds(content: Any) -> dict[str, tuple[bool, bool, bool]]:
    return {e.addresses[0]: (e.conditions.ready, e.conditions.serving, e.conditions.terminating)
            for e in content.endpoints}


def test_conditions_ready_serving_terminating() -> None:
    [s] = slices_from_pods(service(), [
        pod("a", "10.244.0.2"), pod("b", "10.244.0.3", ready=False),
        pod("c", "10.244.0.4", deleting=True), pod("d", "10.244.0.5", phase="Failed")])
    assert s.address_type == "IPv4" and s.ports == (("http", 8080, "TCP", ""),)
    assert conds(s) == {"10.244.0.2": (True, True, False), "10.244.0.3": (False, False, False),
                        "10.244.0.4": (False, True, True)}


def test_publish_not_ready_and_named_ports_split_slices() -> None:
    svc = service(publishNotReadyAddresses=True,
                  ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    slices = slices_from_pods(svc, [
        pod("a", "10.244.0.2", ready=False, ports=[{"name": "http", "containerPort": 9090}]),
        pod("b", "10.244.0.3", ports=[{"name": "http", "containerPort": 9191}]),
        pod("c", "10.244.0.4")])  # no port named http: left out
    assert [(s.ports[0][1], list(conds(s))) for s in slices] == [
        (9090, ["10.244.0.2"]), (9191, ["10.244.0.3"])]
    assert conds(slices[0])["10.244.0.2"] == (True, True, False)


def test_no_pods_gives_one_empty_slice_and_packing() -> None:
    [empty] = slices_from_pods(service(), [])
    assert empty.endpoints == () and empty.ports == (("http", 8080, "TCP", ""),)
    many = [pod(f"p{i}", f"10.244.{i // 200}.{i % 200 + 2}") for i in range(MAX_PER_SLICE + 5)]
    slices = slices_from_pods(service(), many)
    assert [len(s.endpoints) for s in slices] == [MAX_PER_SLICE, 5]


def test_mirror_of_user_endpoints() -> None:
    ep = convert.from_dict({"subsets": [
        {"addresses": [{"ip": "192.0.2.7", "hostname": "db-0"}],
         "notReadyAddresses": [{"ip": "192.0.2.8"}], "ports": [{"name": "pg", "port": 5432}]},
        {"addresses": [{"ip": "2001:db8::1"}], "ports": [{"name": "pg", "port": 5432}]}]},
        core_pb2.Endpoints())
    slices = slices_from_endpoints(ep)
    assert [s.address_type for s in slices] == ["IPv4", "IPv6"]
    assert {a: c[0] for a, c in conds(slices[0]).items()} == {"192.0.2.7": True,
                                                             "192.0.2.8": False}
    assert slices[0].endpoints[0].hostname == "db-0"


@pytest.mark.parametrize(("doc", "message"), [
    ({"addressType": "IPv5", "endpoints": []}, "addressType: Unsupported value"),
    ({"addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]},
     "endpoints[0].addresses[0]"),
    ({"addressType": "IPv4", "endpoints": [{"addresses": []}]}, "endpoints[0].addresses"),
    ({"addressType": "IPv4", "ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]},
     "ports[1].name: Duplicate"),
])
async def test_validation(api_cluster: Cluster, doc: dict[str, Any], message: str) -> None:
    es = convert.from_dict({"metadata": {"name": "x", "namespace": "default"}, **doc},
                           discovery_pb2.EndpointSlice())
    with pytest.raises(errors.Invalid) as ei:
        await api_cluster.client.create(es)
    assert message in str(ei.value)


async def slices_of(c: Any, name: str) -> list[discovery_pb2.EndpointSlice]:
    got = await c.list(discovery_pb2.EndpointSlice, "default",
                       label_selector=f"{SERVICE_NAME_LABEL}={name}")
    return list(got.items)


async def test_controller_live(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(service())
    await make_pod(c, "a")
    await make_pod(c, "b")
    await set_ready(c, "a", True, "10.244.0.2")
    await set_ready(c, "b", False, "10.244.0.3")

    async def state() -> dict[str, tuple[bool, bool, bool]]:
        out: dict[str, tuple[bool, bool, bool]] = {}
        for es in await slices_of(c, "web"):
            out.update(conds(es))
        return out

    async def equals(want: dict[str, tuple[bool, bool, bool]]) -> bool:
        return await state() == want

    await eventually(lambda: equals({"10.244.0.2": (True, True, False),
                                     "10.244.0.3": (False, False, False)}), "slices")
    [es] = await slices_of(c, "web")
    assert es.metadata.owner_references[0].kind == "Service"
    start = time.monotonic()
    await set_ready(c, "b", True, "10.244.0.3")
    await eventually(lambda: equals({"10.244.0.2": (True, True, False),
                                     "10.244.0.3": (True, True, False)}), "b ready", timeout=5)
    assert time.monotonic() - start < 1.0
    await c.delete(discovery_pb2.EndpointSlice, es.metadata.name, "default")

    async def one_back() -> bool:
        got = await slices_of(c, "web")
        return len(got) == 1 and got[0].metadata.name != es.metadata.name

    await eventually(one_back, "slice put back")
    await c.delete(core_pb2.Service, "web", "default")

    async def none() -> bool:
        return not await slices_of(c, "web")

    await eventually(none, "slices removed with the service")


async def test_kubernetes_service_is_mirrored(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", advertise_address="192.0.2.10") as cl:
        async def mirrored() -> bool:
            got = await slices_of(cl.client, "kubernetes")
            return (len(got) == 1
                    and got[0].metadata.labels[MANAGED_BY_LABEL] == MIRROR_MANAGED_BY
                    and got[0].ports[0].name == "https"
                    and list(got[0].endpoints[0].addresses) == ["192.0.2.10"])

        await eventually(mirrored, "kubernetes EndpointSlice")
