"""API Priority and Fairness: classification (table tests), shuffle sharding, fair
queuing in one level (fake clock), the filter's refusals and metrics, and a real server
refusing a full level (unary and watch) with a retry-after while other levels pass."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import grpc
import pytest

from control.api import errors
from control.api.pb import api_pb2, coordination_pb2, core_pb2
from control.apiserver import authn
from control.apiserver.apf import (
    MAX_RETRY_AFTER_SECONDS,
    DecayingRate,
    PriorityAndFairness,
    list_seats,
    retry_after,
)
from control.apiserver.fairqueue import QueueSet, Rejected, deal, flow_hash
from control.apiserver.flowcontrol import (
    DEFAULT_LEVELS,
    RequestInfo,
    classify,
    nominal_limits,
    request_info,
)
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.runtime.clock import FakeClock
from control.runtime.metrics import Registry
from tests.conftest import running_cluster
from tests.support.objects import cm

NODE = authn.UserInfo("system:node:n1", (authn.NODES, authn.AUTHENTICATED))
ADMIN = authn.UserInfo("admin", (authn.MASTERS,))
ALICE = authn.UserInfo("alice", (authn.AUTHENTICATED,))
KCM = authn.UserInfo(authn.CONTROLLER_MANAGER, ())
SCHED = authn.UserInfo(authn.SCHEDULER, ())
SA = authn.UserInfo("system:serviceaccount:apps:builder",
                    ("system:serviceaccounts", "system:serviceaccounts:apps", authn.AUTHENTICATED))
SYS_SA = authn.UserInfo("system:serviceaccount:kube-system:coredns",
                        ("system:serviceaccounts", authn.AUTHENTICATED))
NOBODY = authn.UserInfo("weird", ())


@pytest.mark.parametrize("user,verb,resource,namespace,schema,level", [
    (ADMIN, "create", "pods", "default", "exempt", "exempt"),
    (NODE, "update", "leases", "kube-node-lease", "system-node-high", "node-high"),
    (NODE, "update", "nodes", "", "system-node-high", "node-high"),
    (NODE, "update", "pods", "default", "system-nodes", "system"),
    (NODE, "watch", "pods", "", "system-nodes", "system"),
    (KCM, "update", "leases", "kube-system", "system-leader-election", "leader-election"),
    (SCHED, "get", "leases", "kube-system", "system-leader-election", "leader-election"),
    (SCHED, "delete", "leases", "kube-system", "kube-scheduler", "workload-high"),
    (KCM, "create", "pods", "default", "kube-controller-manager", "workload-high"),
    (SCHED, "create", "pods", "default", "kube-scheduler", "workload-high"),
    (SYS_SA, "update", "leases", "kube-system", "workload-leader-election", "leader-election"),
    (SYS_SA, "list", "pods", "", "kube-system-service-accounts", "workload-high"),
    (SA, "update", "leases", "apps", "service-accounts", "workload-low"),
    (ALICE, "create", "configmaps", "default", "global-default", "global-default"),
    (ALICE, "update", "leases", "kube-node-lease", "global-default", "global-default"),
    (NOBODY, "get", "pods", "", "catch-all", "catch-all"),
])
def test_classification(user: authn.UserInfo, verb: str, resource: str, namespace: str,
                        schema: str, level: str) -> None:
    got = classify(RequestInfo(user, verb, resource, namespace=namespace))
    assert (got.name, got.level) == (schema, level)


def test_flows_by_user_or_namespace() -> None:
    a = RequestInfo(ALICE, "create", "pods", namespace="a")
    b = RequestInfo(ALICE, "create", "pods", namespace="b")
    assert classify(a).flow(a) == classify(b).flow(b) == "global-default/alice"
    a, b = (RequestInfo(KCM, "create", "pods", namespace=n) for n in "ab")
    assert classify(a).flow(a) != classify(b).flow(b)


def test_request_info_from_grpc() -> None:
    info = request_info("UpdateStatus", api_pb2.UpdateRequest(resource="nodes"), NODE)
    assert (info.verb, info.resource, info.subresource) == ("update", "nodes", "status")
    info = request_info("Patch", api_pb2.PatchRequest(resource="pods", namespace="x",
                                                      status=True), None)
    assert (info.verb, info.subresource, info.namespace) == ("patch", "status", "x")
    assert info.user.name == "system:anonymous"
    assert classify(info).level == "global-default"
    info = request_info("List", api_pb2.ListRequest(resource="pods", limit=50), ALICE)
    assert (info.verb, info.limit) == ("list", 50)
    assert request_info("Watch", api_pb2.WatchRequest(resource="pods"), ALICE).long_running
    info = request_info("CreateToken", api_pb2.TokenRequestCall(namespace="x", name="sa"), NODE)
    assert (info.verb, info.resource, info.subresource, info.namespace) == (
        "create", "serviceaccounts", "token", "x")


def test_nominal_limits_split_by_shares() -> None:
    limits = nominal_limits(600, DEFAULT_LEVELS)
    assert "exempt" not in limits
    # Kubernetes' default shares: 245 in all
    assert limits == {"leader-election": 25, "node-high": 98, "system": 74,
                      "workload-high": 98, "workload-low": 245, "global-default": 49,
                      "catch-all": 13}
    assert min(nominal_limits(1).values()) == 1


@pytest.mark.parametrize("objects,seats", [(0, 1), (1, 1), (100, 1), (101, 2), (5000, 10)])
def test_list_seats(objects: int, seats: int) -> None:
    assert list_seats(objects) == seats


def test_deal_gives_distinct_stable_hands() -> None:
    for v in (0, 1, 12345, 2**63 + 7, flow_hash("alice")):
        hand = deal(v, 64, 6)
        assert len(set(hand)) == 6 and all(0 <= c < 64 for c in hand)
        assert hand == deal(v, 64, 6)
    assert sorted(deal(5, 4, 9)) == [0, 1, 2, 3]  # a hand never exceeds the deck
    # different flows mostly get different hands
    hands = {tuple(sorted(deal(flow_hash(f"u{i}"), 64, 6))) for i in range(200)}
    assert len(hands) == 200


@pytest.mark.parametrize("refused,dispatched,hint", [
    (0, 0, 1), (5, 10, 1), (10, 10, 1), (25, 10, 3), (1000, 0, 30), (10_000, 100, 30),
])
def test_retry_after_grows_with_refusals_per_dispatch(refused: float, dispatched: float,
                                                      hint: int) -> None:
    assert retry_after(refused, dispatched) == hint


def test_decaying_rate() -> None:
    clock = FakeClock()
    rate = DecayingRate(clock, window=2.0)
    assert rate.per_second() == 0
    rate.add(10)
    assert rate.per_second() == pytest.approx(5.0)
    clock.advance(2.0)
    assert rate.per_second() == pytest.approx(5.0 / 2.718281828, rel=1e-6)
    clock.advance(60)
    assert rate.per_second() < 1e-9


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_full_level_queues_and_serves_flows_fairly() -> None:
    clock = FakeClock()
    qs = QueueSet(limit=1, queues=64, hand_size=6, queue_length_limit=50, clock=clock)
    hold = await qs.acquire("elephant", 1, 10)
    served: list[str] = []

    async def one(flow: str) -> None:
        release = await qs.acquire(flow, 1, 10)
        served.append(flow)
        release()

    # the elephant queues 10 requests before the mouse asks once
    tasks = [asyncio.ensure_future(one("elephant")) for _ in range(10)]
    await _settle()
    tasks.append(asyncio.ensure_future(one("mouse")))
    await _settle()
    assert qs.waiting == 11
    hold()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    # start-time fair queuing: the mouse goes second, not last
    assert served.index("mouse") <= 1, served
    assert qs.seats_in_use == 0 and qs.waiting == 0


async def test_queue_full_and_time_out_and_cancel() -> None:
    clock = FakeClock()
    qs = QueueSet(limit=1, queues=1, hand_size=1, queue_length_limit=2, clock=clock)
    hold = await qs.acquire("a", 1, 10)
    first = asyncio.ensure_future(qs.acquire("a", 1, 5))
    second = asyncio.ensure_future(qs.acquire("a", 1, 30))
    await _settle()
    with pytest.raises(Rejected) as ei:
        await qs.acquire("a", 1, 30)
    assert ei.value.reason == "queue-full"
    clock.advance(5)
    with pytest.raises(Rejected) as ei:
        await asyncio.wait_for(first, 5)
    assert ei.value.reason == "time-out"
    assert qs.waiting == 1
    second.cancel()
    await _settle()
    assert qs.waiting == 0
    with pytest.raises(Rejected):
        await qs.acquire("a", 1, 0)  # no wait allowed and no seat
    hold()
    hold()  # releasing twice releases once
    assert qs.seats_in_use == 0
    (await qs.acquire("a", 1, 0))()


async def test_reject_level_does_not_queue_and_wide_requests_take_all_seats() -> None:
    qs = QueueSet(limit=3, queues=0, hand_size=0, queue_length_limit=0)
    wide = await qs.acquire("x", 50, 10)  # wider than the level: takes all 3 seats
    assert qs.seats_in_use == 3
    with pytest.raises(Rejected) as ei:
        await qs.acquire("y", 1, 10)
    assert ei.value.reason == "concurrency-limit"
    wide()
    assert qs.seats_in_use == 0


async def test_wide_head_waits_and_is_not_overtaken() -> None:
    clock = FakeClock()
    qs = QueueSet(limit=4, queues=8, hand_size=2, queue_length_limit=10, clock=clock)
    narrow = [await qs.acquire("n", 1, 1) for _ in range(2)]
    wide = asyncio.ensure_future(qs.acquire("w", 4, 10))
    await _settle()
    later = asyncio.ensure_future(qs.acquire("m", 1, 10))
    await _settle()
    assert not wide.done() and not later.done()  # 2 seats free, but the wide one is first
    for r in narrow:
        r()
    release_wide = await asyncio.wait_for(wide, 5)
    assert not later.done()
    release_wide()
    (await asyncio.wait_for(later, 5))()


async def test_priority_levels_isolate_a_flood_from_node_leases() -> None:
    registry = Registry()
    apf = PriorityAndFairness(40, queue_wait_timeout=0.05, registry=registry)
    flood = RequestInfo(ALICE, "create", "configmaps", namespace="default")
    lease = RequestInfo(NODE, "update", "leases", namespace="kube-node-lease")
    held = []
    hints: list[int] = []
    outcomes: collections.Counter[str] = collections.Counter()

    async def try_flood() -> None:
        try:
            held.append(await apf.enter(flood))
            outcomes["ok"] += 1
        except errors.TooManyRequests as e:
            assert e.retry_after is not None and e.retry_after >= 1
            assert f"retry after {e.retry_after}s" in str(e)
            hints.append(e.retry_after)
            assert 'priority level "global-default"' in str(e)
            outcomes["refused"] += 1

    # one flow: its hand of 6 queues holds 300; the rest is refused at once
    await asyncio.gather(*(try_flood() for _ in range(400)))
    limit = apf.limits["global-default"]
    assert outcomes["ok"] == limit and outcomes["refused"] == 400 - limit
    # refusing ~100 times what it serves, the level asks callers to stay away longer
    assert hints[0] == 1 and max(hints) == MAX_RETRY_AFTER_SECONDS
    # the flood holds every seat of its level: a node's Lease renewal still runs at once
    release = await asyncio.wait_for(apf.enter(lease), 1)
    release()
    # the caller's deadline bounds the wait: a refusal, never a wait past it
    with pytest.raises(errors.TooManyRequests):
        await apf.enter(flood, time_remaining=0.05)
    # admins are exempt
    (await apf.enter(RequestInfo(ADMIN, "create", "configmaps")))()
    text = registry.render()
    assert ('apiserver_flowcontrol_dispatched_requests_total{flow_schema="system-node-high",'
            'priority_level="node-high"} 1.0') in text
    assert ('apiserver_flowcontrol_rejected_requests_total{flow_schema="global-default",'
            'priority_level="global-default",reason="queue-full"}') in text
    assert ('apiserver_flowcontrol_rejected_requests_total{flow_schema="global-default",'
            'priority_level="global-default",reason="time-out"}') in text
    assert ('apiserver_flowcontrol_current_executing_requests{flow_schema="global-default",'
            f'priority_level="global-default"}} {float(limit)}') in text
    assert 'apiserver_flowcontrol_nominal_limit_seats{priority_level="node-high"} 7.0' in text
    assert apf.rejected["global-default"] == outcomes["refused"] + 1
    for r in held:
        r()
        r()
    assert apf.sets["global-default"].seats_in_use == 0
    assert ('apiserver_flowcontrol_current_inqueue_requests{flow_schema="global-default",'
            'priority_level="global-default"} 0.0') in registry.render()


async def test_list_seats_follow_the_estimate() -> None:
    apf = PriorityAndFairness(600, estimate_objects=lambda r: 450)
    release = await apf.enter(RequestInfo(ALICE, "list", "pods"))
    assert apf.sets["global-default"].seats_in_use == 5
    release()
    release = await apf.enter(RequestInfo(ALICE, "get", "pods"))
    assert apf.sets["global-default"].seats_in_use == 1
    release()


async def test_a_real_server_refuses_a_full_level_with_a_retry_after(tmp_path: Path) -> None:
    # 2 seats in all: every limited level has 1; a queued request waits at most 0.3 s
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers", "dns"},
                               max_requests_inflight=1, max_mutating_requests_inflight=1,
                               apf_queue_wait_timeout=0.3) as c:
        made = await c.client.create(cm("x"))
        future = str(int(made.metadata.resource_version) + 1000)
        channel = open_channel(c.address, c.plane.credentials("alice", [authn.AUTHENTICATED]))
        try:
            stub = ApiClient(channel, c.address)._stub
            # holds global-default's only seat for the 3 s "too large" wait
            holder = asyncio.ensure_future(stub.Get(api_pb2.GetRequest(
                resource="configmaps", namespace="kube-public", name="cluster-info",
                resource_version=future), timeout=10))
            await asyncio.sleep(0.5)
            get = api_pb2.GetRequest(resource="configmaps", namespace="kube-public",
                                     name="cluster-info")
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await stub.Get(get, timeout=5)
            assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert errors.retry_after_from(ei.value.trailing_metadata()) is not None
            assert "timed out waiting in the queue" in (ei.value.details() or "")
            # a watch is admitted like any request while it starts
            watch = stub.Watch(api_pb2.WatchRequest(resource="configmaps",
                                                    namespace="kube-public"))
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                async for _ in watch:
                    pass
            assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert errors.retry_after_from(ei.value.trailing_metadata()) is not None
            # other levels are not held back: the admin (exempt), and a node
            assert (await c.client.get(core_pb2.ConfigMap, "x", "default")).metadata.uid
            node_creds, _ = c.plane.node_identity("n1", [])
            node_channel = open_channel(c.address, node_creds)
            try:
                node = ApiClient(node_channel, c.address, timeout=5)
                lease = coordination_pb2.Lease()
                lease.metadata.name, lease.metadata.namespace = "n1", "kube-node-lease"
                lease.spec.holder_identity = "n1"
                assert (await node.create(lease)).metadata.uid
            finally:
                await node_channel.close(None)
            with pytest.raises(grpc.aio.AioRpcError):
                await holder
            # the seat is free again: alice is served
            assert (await stub.Get(get, timeout=5)).object
            metrics = c.plane.apiserver_metrics.registry
            assert metrics.value("apiserver_flowcontrol_rejected_requests_total", {
                "priority_level": "global-default", "flow_schema": "global-default",
                "reason": "time-out"}) == 2
        finally:
            await channel.close(None)
