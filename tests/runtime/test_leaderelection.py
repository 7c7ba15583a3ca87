"""LeaderElector against the real in-process apiserver, with time on a FakeClock.

API calls take real (short) time while every wait of the elector is on the fake clock, so
the tests move time only when nothing is in flight (``Driver.quiesce``), one sleeper
deadline at a time (``Driver.step_until``): the schedule is deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from control.api import errors
from control.api.pb import coordination_pb2
from control.client.client import ApiClient
from control.runtime.clock import FakeClock
from control.runtime.leaderelection import LeaderElector
from tests.conftest import Cluster
from tests.runtime.fakes import settle

NS, NAME = "kube-system", "test-lock"
LEASE, RENEW, RETRY = 15.0, 10.0, 2.0


class ProbeClient(ApiClient):
    """The real client, counting calls in flight and failing them on demand."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster.client.channel, cluster.address, timeout=10)
        self.in_flight = 0
        self.fail = False

    async def _call(self, method: Callable[..., Any], request: Any) -> Any:
        self.in_flight += 1
        try:
            if self.fail:
                raise errors.ServiceUnavailable("injected: the server is unreachable")
            return await super()._call(method, request)
        finally:
            self.in_flight -= 1


class Work:
    """on_started_leading / on_stopped_leading that record what happened to them."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0
        self.stopped = 0

    async def lead(self) -> None:
        self.started += 1
        try:
            await asyncio.Event().wait()  # leads until cancelled
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def stop(self) -> None:
        self.stopped += 1


class Driver:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.clock = FakeClock()
        self.clients: list[ProbeClient] = []
        self.tasks: list[asyncio.Task[None]] = []

    def elector(self, identity: str, **kw: Any) -> LeaderElector:
        client = ProbeClient(self.cluster)
        self.clients.append(client)
        return LeaderElector(client, NS, NAME, identity, LEASE, RENEW, RETRY, self.clock,
                             jitter=0.0, **kw)

    def run(self, elector: LeaderElector, work: Work) -> asyncio.Task[None]:
        task = asyncio.create_task(elector.run(work.lead, work.stop))
        self.tasks.append(task)
        return task

    async def quiesce(self) -> None:
        """Until no API call is in flight and every task has reached its next wait."""

        async def _wait() -> None:
            while True:
                await settle()
                if all(c.in_flight == 0 for c in self.clients):
                    await settle()
                    if all(c.in_flight == 0 for c in self.clients):
                        return
                await asyncio.sleep(0.002)

        await asyncio.wait_for(_wait(), 5)

    async def step_until(self, cond: Callable[[], bool], within: float = 60.0) -> None:
        """Move fake time one deadline at a time until ``cond()`` (bounded in fake time)."""
        start = self.clock.monotonic()
        while True:
            await self.quiesce()
            if cond():
                return
            assert self.clock.monotonic() - start <= within, "condition not reached in time"
            assert self.clock.step(), "nobody is waiting on the clock"

    async def lease(self) -> coordination_pb2.Lease:
        return await self.cluster.client.get("leases", NAME, NS)  # type: ignore[no-any-return]

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 5)


@pytest.fixture
async def driver(cluster: Cluster) -> Any:
    d = Driver(cluster)
    try:
        yield d
    finally:
        await d.close()


async def test_one_of_two_leads_and_keeps_renewing(driver: Driver) -> None:
    a, b = driver.elector("a"), driver.elector("b")
    wa, wb = Work(), Work()
    driver.run(a, wa)
    await driver.quiesce()
    driver.run(b, wb)
    await driver.quiesce()
    assert a.is_leader() and not b.is_leader() and b.leader() == "a"
    first = await driver.lease()
    assert first.spec.holder_identity == "a"
    assert first.spec.lease_duration_seconds == 15
    assert first.spec.lease_transitions == 0
    # Three lease durations later a still leads (it renews), b has never led.
    await driver.step_until(lambda: driver.clock.monotonic() >= 3 * LEASE)
    assert a.is_leader() and not b.is_leader()
    assert (wa.started, wa.cancelled, wb.started) == (1, 0, 0)
    now = await driver.lease()
    assert now.spec.holder_identity == "a" and now.spec.lease_transitions == 0
    assert now.spec.acquire_time == first.spec.acquire_time
    assert now.spec.renew_time.seconds >= first.spec.renew_time.seconds + 3 * LEASE - RETRY


async def test_release_on_stop_hands_over_at_once(driver: Driver) -> None:
    a, b = driver.elector("a"), driver.elector("b")
    wa, wb = Work(), Work()
    ta = driver.run(a, wa)
    await driver.quiesce()
    driver.run(b, wb)
    await driver.step_until(lambda: driver.clock.monotonic() >= 5)
    ta.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(ta, 5)
    assert (wa.started, wa.cancelled, wa.stopped) == (1, 1, 1) and not a.is_leader()
    released = await driver.lease()
    assert released.spec.holder_identity == "" and released.spec.lease_duration_seconds == 1
    stopped_at = driver.clock.monotonic()
    await driver.step_until(b.is_leader)
    # Taken at b's next attempt, not after the lease duration.
    assert driver.clock.monotonic() - stopped_at <= RETRY
    lease = await driver.lease()
    assert lease.spec.holder_identity == "b" and lease.spec.lease_transitions == 1
    assert wb.started == 1


async def test_crashed_leader_is_replaced_after_expiry(driver: Driver) -> None:
    a, b = driver.elector("a", release_on_cancel=False), driver.elector("b")
    wa, wb = Work(), Work()
    ta = driver.run(a, wa)
    await driver.quiesce()
    driver.run(b, wb)
    await driver.step_until(lambda: driver.clock.monotonic() >= 7)
    before = await driver.lease()
    ta.cancel()  # stops renewing without releasing, as a killed process would
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(ta, 5)
    assert (await driver.lease()).spec.holder_identity == "a"
    crashed_at = driver.clock.monotonic()
    await driver.step_until(b.is_leader)
    waited = driver.clock.monotonic() - crashed_at
    # b measured the lease from when it last saw the record change (a's last renewal).
    assert LEASE - RETRY <= waited <= LEASE + 2 * RETRY
    lease = await driver.lease()
    assert lease.spec.holder_identity == "b" and lease.spec.lease_transitions == 1
    assert lease.spec.acquire_time != before.spec.acquire_time


async def test_leadership_changes_are_counted(driver: Driver) -> None:
    work = {name: Work() for name in ("a", "b", "c")}
    electors = {name: driver.elector(name) for name in work}
    running = {name: driver.run(e, work[name]) for name, e in electors.items()}

    def leader() -> str | None:
        return next((n for n in running if electors[n].is_leader()), None)

    for expected in (1, 2):
        await driver.step_until(lambda: leader() is not None)
        name = leader()
        assert name is not None
        task = running.pop(name)
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        await driver.step_until(lambda: leader() is not None)
        lease = await driver.lease()
        assert lease.spec.holder_identity == leader()
        assert lease.spec.lease_transitions == expected
    assert sum(w.started for w in work.values()) == 3


async def test_leader_overwritten_by_another_holder_steps_down(driver: Driver) -> None:
    a = driver.elector("a")
    wa = Work()
    ta = driver.run(a, wa)
    await driver.quiesce()
    assert a.is_leader()
    lease = await driver.lease()
    lease.spec.holder_identity = "intruder"
    await driver.cluster.client.update(lease)
    taken_at = driver.clock.monotonic()
    await driver.step_until(lambda: not a.is_leader())
    assert driver.clock.monotonic() - taken_at <= RETRY  # at the first renewal
    await asyncio.wait_for(ta, 5)  # returns: leadership lost, not an error
    assert (wa.started, wa.cancelled, wa.stopped) == (1, 1, 1)
    assert (await driver.lease()).spec.holder_identity == "intruder"  # not released


async def test_leader_that_cannot_renew_stops_at_the_deadline(driver: Driver) -> None:
    a = driver.elector("a")
    wa = Work()
    ta = driver.run(a, wa)
    await driver.step_until(lambda: driver.clock.monotonic() >= 4)
    assert a.is_leader()
    last_renewal = driver.clock.monotonic()
    driver.clients[0].fail = True
    await driver.step_until(lambda: not a.is_leader())
    lost_after = driver.clock.monotonic() - last_renewal
    assert RENEW <= lost_after < LEASE  # stops before anyone else may take over
    await asyncio.wait_for(ta, 5)
    assert (wa.cancelled, wa.stopped) == (1, 1)


async def test_deleted_lease_is_recreated_by_its_leader(driver: Driver) -> None:
    # As client-go: nobody else holds it, so the leader simply creates it again.
    a = driver.elector("a")
    wa = Work()
    driver.run(a, wa)
    await driver.quiesce()
    await driver.cluster.client.delete("leases", NAME, NS)
    await driver.step_until(lambda: driver.clock.monotonic() >= 2 * RETRY)
    assert a.is_leader() and wa.cancelled == 0
    assert (await driver.lease()).spec.holder_identity == "a"


async def test_failing_work_gives_up_the_lease_and_is_reraised(driver: Driver) -> None:
    a = driver.elector("a")
    stopped: list[bool] = []

    async def fail() -> None:
        raise RuntimeError("controllers failed to start")

    task = asyncio.create_task(a.run(fail, lambda: stopped.append(True)))
    driver.tasks.append(task)
    await driver.quiesce()
    with pytest.raises(RuntimeError, match="controllers failed"):
        await asyncio.wait_for(task, 5)
    assert stopped == [True] and not a.is_leader()
    assert (await driver.lease()).spec.holder_identity == ""


def test_rejects_inconsistent_timings(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        LeaderElector(cluster.client, NS, NAME, "a", lease_duration=5, renew_deadline=10)
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(cluster.client, NS, NAME, "a", renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(cluster.client, NS, NAME, "")
