"""The proxy's sync loop against a real apiserver with the fake backend: the rules follow
Services and EndpointSlices, bursts coalesce, and the loop stops cleanly."""

from __future__ import annotations

import asyncio

from agent.proxy.proxier import FakeBackend, Proxier
from control.api import convert
from control.api.pb import core_pb2, discovery_pb2
from tests.conftest import Cluster
from tests.support import eventually


async def test_rules_follow_services_and_slices(api_cluster: Cluster) -> None:
    c = api_cluster.client
    backend = FakeBackend()
    proxier = Proxier(c, "n1", backend, "10.96.0.0/12", min_sync_interval=0.05,
                      cluster_cidr="10.244.0.0/16")
    task = asyncio.create_task(proxier.run(), name="proxier")
    try:
        svc = await c.create(convert.from_dict({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80}]}}, core_pb2.Service()))

        def ports() -> dict[str, list[str]]:
            assert backend.last is not None
            return {p.name: [f"{e.ip}:{e.port}" for e in p.endpoints]
                    for p in backend.last.ports}

        await eventually(lambda: backend.last is not None and ports().get("web") == [],
                         "service without endpoints")
        for i in range(5):  # a burst: coalesced into few syncs
            await c.create(convert.from_dict({
                "metadata": {"name": f"web-{i}", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [f"10.244.0.{i + 2}"],
                               "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
                discovery_pb2.EndpointSlice()))
        before = backend.syncs
        await eventually(lambda: len(ports()["web"]) == 5, "five endpoints")
        assert backend.syncs - before <= 5
        assert backend.last is not None
        [web] = [p for p in backend.last.ports if p.name == "web"]
        assert web.cluster_ip == svc.spec.cluster_ip and web.port == 80
        assert backend.last.cluster_cidr == "10.244.0.0/16"
        await c.delete(core_pb2.Service, "web", "default")
        await eventually(lambda: "web" not in ports(), "service gone")
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
