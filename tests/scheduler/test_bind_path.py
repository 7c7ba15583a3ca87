"""The binding path's fast paths: the cheap confirmation of our own assumptions in the
cache, the score pass's constant-column shortcut, and the apiserver's binding
subresource (which validates only what a binding changes)."""

from __future__ import annotations

import pytest

from control.api import errors
from control.api.pb import core_pb2
from control.runtime.clock import FakeClock
from control.scheduler.cache import Cache
from control.scheduler.framework import normalize_max
from tests.conftest import Cluster
from tests.scheduler.builders import info, node, pod


def _bound(p: core_pb2.Pod, node_name: str, rv: str) -> core_pb2.Pod:
    b = core_pb2.Pod()
    b.CopyFrom(p)
    b.spec.node_name = node_name
    b.metadata.resource_version = rv
    return b


def test_confirm_keeps_the_assumption_and_the_node_generation() -> None:
    cache = Cache(FakeClock(), assume_ttl=1)
    cache.add_node(node("n1", cpu="2"))
    p = pod("p", cpu="1")
    p.metadata.resource_version = "5"
    pi = info(p)
    cache.assume(pi, "n1")
    cache.finish_binding(pi.key)
    ni = cache.node("n1")
    assert ni is not None
    gen = ni.generation
    bound = _bound(p, "n1", "6")
    assert cache.confirm(bound, "5")
    assert not cache.is_assumed(pi.key)
    assert cache.cleanup_expired() == []  # confirmed: never expires
    assert ni.generation == gen and ni.requested.milli_cpu == 1000
    got = cache.pod(pi.key)
    assert got is pi and got.pod is bound and got.node_name == "n1"


@pytest.mark.parametrize("case", ["other-node", "other-version", "other-uid", "not-assumed"])
def test_confirm_refuses_anything_but_our_own_binding(case: str) -> None:
    cache = Cache(FakeClock())
    cache.add_node(node("n1"))
    cache.add_node(node("n2"))
    p = pod("p", cpu="1")
    p.metadata.resource_version = "5"
    if case != "not-assumed":
        cache.assume(info(p), "n1")
    bound = _bound(p, "n2" if case == "other-node" else "n1", "6")
    if case == "other-uid":
        bound.metadata.uid = "someone-else"
    assert not cache.confirm(bound, "4" if case == "other-version" else "5")
    if case != "not-assumed":
        assert cache.is_assumed(f"default/{p.metadata.name}")


def test_constant_column_normalises_like_the_whole_column() -> None:
    for reverse in (False, True):
        for v in (0, 3):
            col, one = [v] * 5, [v]
            normalize_max(col, reverse)
            normalize_max(one, reverse)
            assert col == one * 5


async def test_binding_validates_what_it_changes(api_cluster: Cluster) -> None:
    c = api_cluster.client
    created = await c.create(pod("p", uid=""))
    with pytest.raises(errors.Invalid):
        await c.bind("default", "p", "Not_A_Node")
    with pytest.raises(errors.Conflict):
        await c.bind("default", "p", "n1", pod_uid="wrong-uid")
    bound = await c.bind("default", "p", "n1")
    assert bound.spec.node_name == "n1"
    assert bound.metadata.generation == created.metadata.generation + 1
    assert int(bound.metadata.resource_version) > int(created.metadata.resource_version)
    conds = [x for x in bound.status.conditions if x.type == "PodScheduled"]
    assert len(conds) == 1 and conds[0].status == "True"
    assert conds[0].HasField("last_transition_time")
    # the stored object is what the reply says, and the defaults survived
    got = await c.get("pods", "p", "default")
    assert got == bound
    with pytest.raises(errors.Conflict):
        await c.bind("default", "p", "n2")


async def test_binding_refuses_a_gated_pod(api_cluster: Cluster) -> None:
    c = api_cluster.client
    p = pod("gated", uid="")
    p.spec.scheduling_gates.add(name="example.com/wait")
    await c.create(p)
    with pytest.raises(errors.Invalid):
        await c.bind("default", "gated", "n1")
    got = await c.get("pods", "gated", "default")
    assert not got.spec.node_name
