"""The max-in-flight filter (priority and fairness off): table tests of the limiter and a
flood against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from control.api import errors
from control.api.pb import api_pb2, core_pb2
from control.apiserver import authn
from control.apiserver.inflight import InflightLimiter
from control.apiserver.metrics import ApiServerMetrics
from control.client.channel import open_channel
from control.client.client import ApiClient
from tests.conftest import running_cluster
from tests.support.objects import cm

USER = authn.UserInfo("alice", ("system:authenticated",))
ADMIN = authn.UserInfo("admin", (authn.MASTERS,))


def test_limits_read_only_and_mutating_separately() -> None:
    lim = InflightLimiter(2, 1)
    reads = [lim.admit("Get", USER), lim.admit("List", USER)]
    with pytest.raises(errors.TooManyRequests) as ei:
        lim.admit("Get", USER)
    assert ei.value.retry_after == 1
    write = lim.admit("Create", USER)  # a separate budget
    with pytest.raises(errors.TooManyRequests):
        lim.admit("Patch", USER)
    lim.admit("Get", ADMIN)  # system:masters is exempt
    reads[0]()
    reads[0]()  # releasing twice releases once
    assert lim.inflight[False] == 1
    lim.admit("Get", USER)
    write()
    lim.admit("Delete", USER)
    assert lim.rejected == {False: 1, True: 1}


def test_metrics_per_request_kind() -> None:
    metrics = ApiServerMetrics()
    lim = InflightLimiter(1, 1, metrics)
    release = lim.admit("Get", USER)
    with pytest.raises(errors.TooManyRequests):
        lim.admit("List", USER)
    text = metrics.registry.render()
    assert 'apiserver_current_inflight_requests{request_kind="readOnly"} 1.0' in text
    assert 'apiserver_dropped_requests_total{request_kind="readOnly"} 1.0' in text
    release()
    assert ('apiserver_current_inflight_requests{request_kind="readOnly"} 0.0'
            in metrics.registry.render())


def test_anonymous_counts_and_zero_is_unlimited() -> None:
    lim = InflightLimiter(1, 0)
    lim.admit("Get", None)
    with pytest.raises(errors.TooManyRequests):
        lim.admit("Discovery", None)
    for _ in range(100):
        lim.admit("Create", None)


async def test_flood_is_refused_admins_pass_and_clients_retry(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers", "dns"},
                               max_requests_inflight=2,
                               enable_priority_and_fairness=False) as c:
        made = await c.client.create(cm("x"))
        future = str(int(made.metadata.resource_version) + 1000)
        creds = c.plane.credentials("alice", ["system:authenticated"])
        channel = open_channel(c.address, creds)
        try:
            alice = ApiClient(channel, c.address, timeout=20)
            # each of these holds a read slot for the 3 s "too large" wait
            slow = api_pb2.GetRequest(resource="configmaps", namespace="kube-public",
                                      name="cluster-info", resource_version=future)
            holders = [asyncio.ensure_future(alice._stub.Get(slow, timeout=10))
                       for _ in range(2)]
            await asyncio.sleep(0.5)
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await alice._stub.Get(api_pb2.GetRequest(
                    resource="configmaps", namespace="kube-public", name="cluster-info"),
                    timeout=5)
            assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert errors.retry_after_from(ei.value.trailing_metadata()) == 1
            # admins are not held back by the flood
            assert (await c.client.get(core_pb2.ConfigMap, "x", "default")).metadata.uid
            # the client honours retry-after and gets through once the slots free
            got = await alice.get(core_pb2.ConfigMap, "cluster-info", "kube-public")
            assert got.metadata.name == "cluster-info"
            for h in holders:
                with pytest.raises(grpc.aio.AioRpcError):
                    await h
        finally:
            await channel.close(None)
