"""The CronJob controller against a real apiserver under a FakeClock: runs start on
schedule with each concurrency policy, history limits, suspend, and what happens after
the controller was down (one catch-up run, TooManyMissedTimes, startingDeadlineSeconds).
No Job controller runs: the test finishes Jobs by writing their status."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from control.api import convert
from control.api.pb import batch_pb2
from control.api.timeutil import now_timestamp
from control.controllers import job_util as ju
from control.controllers.cronjob import CronJobController
from control.controllers.manager import ControllerManager
from control.runtime.clock import FakeClock
from tests.conftest import Cluster, running_cluster
from tests.support import eventually

TIMEOUT = 10.0


CLOCK: list[FakeClock] = []


def ticking(check: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    """``check``, moving the fake clocks 10 ms before each poll, so that retries backing
    off on them (a status write that met a conflict) happen (at most 2 s drift per wait)."""

    async def tick_then_check() -> bool:
        for clock in CLOCK:
            clock.advance(0.01)
        return await check()

    return tick_then_check


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        yield c


@asynccontextmanager
async def controller(c: Cluster, clock: FakeClock) -> AsyncIterator[ControllerManager]:
    manager = ControllerManager(c.client, clock=clock, controllers={"cronjob": CronJobController})
    await manager.start()
    CLOCK.append(clock)
    try:
        yield manager
    finally:
        CLOCK.remove(clock)
        await manager.stop()


def cronjob(name: str, schedule: str = "* * * * *", **spec: Any) -> batch_pb2.CronJob:
    out: batch_pb2.CronJob = convert.from_dict({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}},
            **spec}}, batch_pb2.CronJob())
    return out


async def jobs_of(c: Any, name: str) -> list[Any]:
    items = (await c.list_all("jobs", "default")).items
    return sorted((j for j in items if any(r.name == name for r in j.metadata.owner_references)
                   and not j.metadata.HasField("deletion_timestamp")),
                  key=lambda j: j.metadata.name)


async def has_jobs(c: Any, name: str, n: int) -> bool:
    return len(await jobs_of(c, name)) == n


async def events(c: Any, reason: str) -> list[Any]:
    return [e for e in (await c.list_all("events", "default")).items if e.reason == reason]


async def complete(c: Any, job: Any, ctype: str = ju.COMPLETE) -> None:
    fresh = await c.get(batch_pb2.Job, job.metadata.name, "default")
    ju.set_condition(fresh.status, ctype, "True", "Test", "", time.time())
    if ctype == ju.COMPLETE:
        fresh.status.completion_time.CopyFrom(now_timestamp())
    await c.update_status(fresh)


def next_minute(clock: FakeClock) -> None:
    """Move the clock just past the next whole minute."""
    now = clock.now()
    clock.advance(math.floor(now / 60) * 60 + 60 + 1 - now)


async def tick(c: Any, clock: FakeClock, name: str, expect: int) -> None:
    next_minute(clock)
    await eventually(ticking(lambda: has_jobs(c, name, expect)))


async def test_allow_forbid_replace(api: Cluster) -> None:
    c = api.client
    clock = FakeClock(start=time.time())
    async with controller(api, clock):
        for name, policy in (("allow", "Allow"), ("forbid", "Forbid"), ("replace", "Replace")):
            await c.create(cronjob(name, concurrencyPolicy=policy))
        await asyncio.sleep(0.3)
        for name in ("allow", "forbid", "replace"):
            assert await jobs_of(c, name) == []  # nothing before the first activation
        next_minute(clock)
        for name in ("allow", "forbid", "replace"):
            await eventually(ticking(lambda name=name: has_jobs(c, name, 1)))  # type: ignore[misc]
        first = {n: (await jobs_of(c, n))[0] for n in ("allow", "forbid", "replace")}
        scheduled = int(first["allow"].metadata.name.rpartition("-")[2]) * 60

        async def recorded() -> bool:
            # the Job exists before the CronJob's status write records it
            cj = await c.get(batch_pb2.CronJob, "allow", "default")
            return bool(cj.status.last_schedule_time.seconds == scheduled
                        and [r.name for r in cj.status.active] == [first["allow"].metadata.name])

        await eventually(ticking(recorded))
        assert first["allow"].metadata.annotations[
            "batch.kubernetes.io/cronjob-scheduled-timestamp"].endswith("+00:00")

        next_minute(clock)
        await eventually(ticking(lambda: has_jobs(c, "allow", 2)))

        async def replaced() -> bool:
            js = await jobs_of(c, "replace")
            return len(js) == 1 and js[0].metadata.uid != first["replace"].metadata.uid

        await eventually(ticking(replaced))
        await eventually(ticking(lambda: _has_event(c, "JobAlreadyActive")))
        assert len(await jobs_of(c, "forbid")) == 1
        # when the running one finishes, the skipped run starts (once)
        await complete(c, first["forbid"])
        await eventually(ticking(lambda: has_jobs(c, "forbid", 2)))
        await asyncio.sleep(0.3)
        assert len(await jobs_of(c, "forbid")) == 2
        cj = await c.get(batch_pb2.CronJob, "forbid", "default")
        assert cj.status.last_successful_time.seconds > 0
        assert len(cj.status.active) == 1


async def _has_event(c: Any, reason: str) -> bool:
    return bool(await events(c, reason))


async def test_history_limits_and_suspend(api: Cluster) -> None:
    c = api.client
    clock = FakeClock(start=time.time())
    async with controller(api, clock):
        await c.create(cronjob("hist", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0))
        await c.create(cronjob("off", suspend=True))
        await tick(c, clock, "hist", 1)
        (j1,) = await jobs_of(c, "hist")
        await complete(c, j1)
        await tick(c, clock, "hist", 2)
        j2 = next(j for j in await jobs_of(c, "hist") if j.metadata.uid != j1.metadata.uid)
        await complete(c, j2)
        # only the newest success is kept

        async def only(uid: str) -> bool:
            js = await jobs_of(c, "hist")
            return [j.metadata.uid for j in js] == [uid]

        await eventually(ticking(lambda: only(j2.metadata.uid)))
        await tick(c, clock, "hist", 2)
        j3 = next(j for j in await jobs_of(c, "hist") if j.metadata.uid != j2.metadata.uid)
        await complete(c, j3, ju.FAILED)  # failed history 0: deleted at once
        await eventually(ticking(lambda: only(j2.metadata.uid)))
        assert await jobs_of(c, "off") == []


async def test_missed_runs_after_a_restart(api: Cluster) -> None:
    c = api.client
    clock = FakeClock(start=time.time())
    async with controller(api, clock):
        await c.create(cronjob("busy"))
        await c.create(cronjob("late", "*/5 * * * *", startingDeadlineSeconds=30))
        await c.create(cronjob("few", "0 * * * *"))
        await tick(c, clock, "busy", 1)
    # the controller is down for three hours
    clock.advance(3 * 3600)
    async with controller(api, clock):
        # one catch-up run for the busy one, with a warning about the 180 missed
        await eventually(ticking(lambda: has_jobs(c, "busy", 2)))
        await eventually(ticking(lambda: _has_event(c, "TooManyMissedTimes")))
        await eventually(ticking(lambda: has_jobs(c, "few", 1)))
        await asyncio.sleep(0.3)
        assert len(await jobs_of(c, "busy")) == 2
        assert len(await jobs_of(c, "few")) == 1  # three hourly runs missed: one made
        # "late": runs older than its 30 s deadline are not made up for (unless the
        # clock happens to be just past a five-minute mark)
        if clock.now() % 300 > 31:
            assert await jobs_of(c, "late") == []
