"""Fencing: which pods a node cut off from the API server stops, when, and when they may
run again (pure decisions and the Fence on a fake clock; the kubelet with the fake runtime;
an agent whose Lease renewals fail)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.kubelet.fencing import FENCED, UNFENCED, Fence, due, stop_after
from control.api import convert, errors
from control.api.fencing import STOP_AFTER_DISCONNECT, parse_stop_after
from control.api.pb import core_pb2
from control.runtime.clock import FakeClock
from control.runtime.events import FakeRecorder
from tests.agent.kubelet.conftest import Env


def pod(name: str, annotation: str | None = None, *, deleting: bool = False) -> core_pb2.Pod:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    if annotation is not None:
        meta["annotations"] = {STOP_AFTER_DISCONNECT: annotation}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return convert.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": meta},
                             core_pb2.Pod())


@pytest.mark.parametrize(("value", "seconds"), [
    ("90s", 90.0), ("2m", 120.0), ("1m30s", 90.0), ("0", 0.0), (" 5s ", 5.0), ("1.5s", 1.5)])
def test_parse_stop_after(value: str, seconds: float) -> None:
    assert parse_stop_after(value) == seconds


@pytest.mark.parametrize("value", ["", "90", "-5s", "soon", "5 s", "5d"])
def test_parse_stop_after_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_stop_after(value)


@pytest.mark.parametrize(("annotation", "node_default", "limit"), [
    (None, None, None),       # nobody asked
    (None, 60.0, 60.0),       # the node's default
    ("30s", None, 30.0),      # the pod's own
    ("30s", 60.0, 30.0),      # the pod wins, shorter
    ("5m", 60.0, 300.0),      # the pod wins, longer
    ("0", 60.0, None),        # the pod opts out
    ("bogus", 60.0, 60.0),    # unreadable (stored before validation): the node's default
])
def test_stop_after(annotation: str | None, node_default: float | None,
                    limit: float | None) -> None:
    assert stop_after(pod("p", annotation), node_default) == limit


def test_due_skips_pods_being_deleted_and_pods_within_their_limit() -> None:
    pods = [pod("a", "10s"), pod("b", "30s"), pod("c", "5s", deleting=True), pod("d")]
    assert [(p.metadata.name, limit) for p, limit in due(pods, 12.0, None)] == [("a", 10.0)]
    assert [p.metadata.name for p, _ in due(pods, 12.0, 12.0)] == ["a", "d"]
    assert due(pods, 9.9, None) == []


def test_fence_counts_from_the_last_contact_only_once_a_renewal_failed() -> None:
    clock = FakeClock()
    pods = [pod("a", "10s"), pod("b", "1m"), pod("c")]
    changed: list[str] = []
    rec = FakeRecorder()
    fence = Fence(clock, lambda: pods, changed.append, recorder=rec)
    fence.contact()
    clock.advance(100.0)  # connected all along (no failed renewal): nobody is away
    assert fence.disconnected_for() == 0.0 and fence.check() == []
    fence.lost()  # renewal failed: away since the last contact, 100 s ago
    assert fence.check() == ["uid-a", "uid-b"]
    assert fence.is_fenced("uid-a") and not fence.is_fenced("uid-c")
    assert fence.check() == []  # once
    assert [e.reason for e in rec.events] == [FENCED, FENCED]
    assert "has not reached the API server for 100s" in rec.events[0].message
    fence.contact()
    assert not fence.is_fenced("uid-a") and not fence.is_fenced("uid-b")
    assert changed == ["uid-a", "uid-b", "uid-a", "uid-b"]
    assert [e.reason for e in rec.events[2:]] == [UNFENCED, UNFENCED]
    assert rec.events[2].message == (
        "The node reached the API server again after 100s away; the pod's containers were "
        f"stopped for 0s ({STOP_AFTER_DISCONNECT} limit 10s) and may run again")


def test_fence_measures_from_the_start_until_the_first_contact() -> None:
    clock = FakeClock()
    fence = Fence(clock, lambda: [pod("a", "10s")], lambda _uid: None)
    clock.advance(9.0)
    assert fence.check() == []
    clock.advance(1.0)
    assert fence.check() == ["uid-a"]


async def test_fenced_pod_stops_and_runs_again_when_contact_returns(env: Env) -> None:
    kubelet = await env.start()
    kubelet.fence.contact()
    await env.create("other")
    once = await env.create("once")
    once.metadata.annotations[STOP_AFTER_DISCONNECT] = "1s"
    await env.client.update(once)
    for name in ("once", "other"):
        await env.wait(name, lambda p: p.status.phase == "Running")
    assert env.rt.find("once", "app", running=True) is not None

    kubelet.fence.lost()
    async with asyncio.timeout(10):
        while env.rt.find("once", "app", running=True) is not None:
            await asyncio.sleep(0.05)
    # the other pod runs on; the fenced one stays stopped (no restart while away)
    await asyncio.sleep(0.5)
    assert env.rt.find("other", "app", running=True) is not None
    assert env.rt.find("once", "app", running=True) is None
    assert env.rt.starts("once", "app") == 1

    kubelet.fence.contact()
    async with asyncio.timeout(10):
        while env.rt.find("once", "app", running=True) is None:
            await asyncio.sleep(0.05)
    assert env.rt.starts("once", "app") == 2
    assert env.rt.starts("other", "app") == 1


async def test_the_apiserver_refuses_an_unreadable_limit(env: Env) -> None:
    with pytest.raises(errors.Invalid) as e:
        await env.client.create(pod("bad", "soon"))
    assert f"metadata.annotations[{STOP_AFTER_DISCONNECT}]" in str(e.value)
    assert "a duration such as 90s" in str(e.value)
