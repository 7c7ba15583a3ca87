"""The scheduling queue and the cache, with a FakeClock."""

from __future__ import annotations

import asyncio

import pytest

from control.runtime.clock import FakeClock
from control.scheduler.cache import Cache
from control.scheduler.queue import ACTIVE, BACKOFF, UNSCHEDULABLE, SchedulingQueue
from tests.scheduler.builders import anti_affinity, info, node, pod


def make_queue(clock: FakeClock) -> SchedulingQueue:
    return SchedulingQueue(clock=clock)


def test_active_order_priority_then_age() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add(info(pod("old-low", priority=0)))
    clock.advance(1)
    q.add(info(pod("new-high", priority=100)))
    clock.advance(1)
    q.add(info(pod("new-low", priority=0)))
    order = [q.pop_nowait().key for _ in range(3)]  # type: ignore[union-attr]
    assert order == ["default/new-high", "default/old-low", "default/new-low"]
    assert q.pop_nowait() is None


def test_backoff_doubles_to_ten_seconds() -> None:
    q = make_queue(FakeClock())
    assert [q.backoff_duration(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_error_goes_to_backoff_then_active() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add(info(pod("p")))
    qp = q.pop_nowait()
    assert qp is not None and q.where("default/p") == "in-flight"
    q.add_backoff(qp)
    assert q.where("default/p") == BACKOFF
    clock.advance(0.9)
    assert q.flush_backoff() == 0
    clock.advance(0.2)
    assert q.flush_backoff() == 1 and q.where("default/p") == ACTIVE
    qp = q.pop_nowait()
    assert qp is not None and qp.attempts == 2
    q.add_backoff(qp)
    clock.advance(1.5)
    assert q.flush_backoff() == 0  # second failure: 2 s
    clock.advance(0.6)
    assert q.flush_backoff() == 1


def test_unschedulable_moves_on_event_respecting_backoff() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add(info(pod("p")))
    qp = q.pop_nowait()
    assert qp is not None
    q.add_unschedulable(qp)
    assert q.where("default/p") == UNSCHEDULABLE
    # An event inside the backoff window moves it to backoff, not straight to active.
    assert q.move_all_to_active_or_backoff("NodeAdd") == 1
    assert q.where("default/p") == BACKOFF
    clock.advance(1.1)
    q.flush_backoff()
    assert q.where("default/p") == ACTIVE


def test_event_during_cycle_sends_failure_to_backoff() -> None:
    q = make_queue(FakeClock())
    q.add(info(pod("p")))
    qp = q.pop_nowait()
    assert qp is not None
    q.move_all_to_active_or_backoff("NodeAdd")  # while p is being scheduled
    q.add_unschedulable(qp)
    assert q.where("default/p") == BACKOFF


def test_unschedulable_flushed_after_sixty_seconds() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add(info(pod("p")))
    qp = q.pop_nowait()
    assert qp is not None
    q.add_unschedulable(qp)
    clock.advance(59)
    assert q.flush_unschedulable_leftover() == 0
    clock.advance(1)
    assert q.flush_unschedulable_leftover() == 1
    assert q.where("default/p") == ACTIVE


def test_delete_and_status_only_refresh() -> None:
    q = make_queue(FakeClock())
    q.add(info(pod("p")))
    q.delete("default/p")
    assert q.pop_nowait() is None and len(q) == 0
    q.add(info(pod("p")))
    qp = q.pop_nowait()
    assert qp is not None
    q.add_unschedulable(qp)
    q.refresh(info(pod("p")))
    assert q.where("default/p") == UNSCHEDULABLE  # a refresh does not requeue
    q.update(info(pod("p", labels={"x": "y"})))
    assert q.where("default/p") in (ACTIVE, BACKOFF)


async def test_pop_waits_and_flush_loop_uses_clock() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    runner = asyncio.create_task(q.run())
    popper = asyncio.create_task(q.pop())
    await asyncio.sleep(0)
    q.add(info(pod("p")))
    qp = await asyncio.wait_for(popper, 1)
    q.add_backoff(qp)
    popper = asyncio.create_task(q.pop())
    await clock.wait_for_sleepers(1)
    await asyncio.sleep(0)
    assert not popper.done()
    clock.advance(1.0)  # the flush loop wakes, backoff over
    got = await asyncio.wait_for(popper, 1)
    assert got.key == "default/p"
    runner.cancel()
    q.close()


# -- cache ---------------------------------------------------------------------------------

def test_assume_confirm_and_expire() -> None:
    clock = FakeClock()
    cache = Cache(clock, assume_ttl=30)
    cache.add_node(node("n1", cpu="2"))
    p = info(pod("p", cpu="1"))
    cache.assume(p, "n1")
    ni = cache.node("n1")
    assert ni is not None and ni.requested.milli_cpu == 1000 and cache.is_assumed(p.key)
    cache.finish_binding(p.key)
    clock.advance(29)
    assert cache.cleanup_expired() == []
    clock.advance(2)
    assert cache.cleanup_expired() == [p.key]
    assert ni.requested.milli_cpu == 0 and not cache.has_pod(p.key)


def test_assumed_pod_confirmed_by_informer_is_not_expired() -> None:
    clock = FakeClock()
    cache = Cache(clock, assume_ttl=1)
    cache.add_node(node("n1"))
    p = info(pod("p", cpu="1"))
    cache.assume(p, "n1")
    cache.finish_binding(p.key)
    cache.add_pod(info(pod("p", cpu="1", node_name="n1")))
    clock.advance(5)
    assert cache.cleanup_expired() == []
    assert not cache.is_assumed(p.key)
    ni = cache.node("n1")
    assert ni is not None and ni.requested.milli_cpu == 1000


def test_forget_releases_and_unfinished_binding_never_expires() -> None:
    clock = FakeClock()
    cache = Cache(clock, assume_ttl=1)
    cache.add_node(node("n1"))
    p = info(pod("p", cpu="1"))
    cache.assume(p, "n1")
    clock.advance(10)
    assert cache.cleanup_expired() == []  # bind still in flight
    cache.forget(p.key)
    ni = cache.node("n1")
    assert ni is not None and ni.requested.milli_cpu == 0 and not ni.pods


def test_pod_before_its_node_and_node_removed_with_pods() -> None:
    cache = Cache(FakeClock())
    cache.add_pod(info(pod("p", cpu="1", node_name="late")))
    assert cache.node("late") is None and cache.node_list() == []
    ni = cache.add_node(node("late", cpu="2"))
    assert ni.requested.milli_cpu == 1000 and [n.name for n in cache.node_list()] == ["late"]
    cache.remove_node("late")
    assert cache.node_list() == [] and cache.node_of("default/p") == "late"
    cache.remove_pod("default/p")
    assert cache.nodes_by_name() == {}


def test_indexes_follow_pods() -> None:
    cache = Cache(FakeClock())
    cache.add_node(node("n1"))
    a = info(anti_affinity(pod("a", labels={"app": "db"}, owner_uid="rs1", node_name="n1"),
                           {"app": "db"}))
    b = info(pod("b", labels={"app": "web"}, owner_uid="rs1", node_name="n1"))
    cache.add_pod(a)
    cache.add_pod(b)
    from control.api import labels
    assert [p.name for p in cache.pods_matching(labels.parse("app=db"), ["default"])] == ["a"]
    assert sorted(p.name for p in cache.pods_matching(labels.parse("app"), None)) == ["a", "b"]
    assert cache.owners == {"rs1": {"n1": 2}}
    assert len(cache.anti_affinity_groups) == 1
    cache.remove_pod(a.key)
    assert cache.anti_affinity_groups == {} and cache.owners == {"rs1": {"n1": 1}}


def test_node_list_interleaves_zones() -> None:
    cache = Cache(FakeClock())
    for name, zone in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")):
        cache.add_node(node(name, labels={"topology.kubernetes.io/zone": zone}))
    assert [n.name for n in cache.node_list()] == ["a1", "b1", "a2", "b2"]


@pytest.mark.parametrize("duplicate", [True])
def test_assume_twice_is_an_error(duplicate: bool) -> None:
    cache = Cache(FakeClock())
    cache.add_node(node("n1"))
    p = info(pod("p"))
    cache.assume(p, "n1")
    with pytest.raises(ValueError):
        cache.assume(p, "n1")
