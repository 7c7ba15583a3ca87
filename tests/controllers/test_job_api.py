"""The Job controller against a real apiserver (no scheduler, no agents: pods finish when
the test writes their status, as a kubelet would). A short pod backoff keeps retries fast."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import batch_pb2, core_pb2
from control.api.podutil import controller_of
from control.api.timeutil import now_timestamp
from control.controllers import job_util as ju
from control.controllers.gc import GarbageCollector
from control.controllers.job import JobController
from control.controllers.manager import ControllerContext, ControllerManager
from tests.conftest import Cluster, running_cluster
from tests.support import eventually

TIMEOUT = 15.0


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[Cluster]:
    """An apiserver with only the Job controller (and the garbage collector), pod backoff
    of 0.2 s."""
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        def job_factory(ctx: ControllerContext) -> JobController:
            return JobController(ctx, pod_backoff=0.2, max_pod_backoff=1.0)

        manager = ControllerManager(c.client, workers=2, controllers={
            "job": job_factory, "garbagecollector": GarbageCollector})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


def job(name: str, **spec: Any) -> batch_pb2.Job:
    body: dict[str, Any] = {
        "template": {"spec": {"restartPolicy": "Never",
                              "containers": [{"name": "main", "image": "busybox",
                                              "command": ["true"]}]}}}
    body.update(spec)
    out: batch_pb2.Job = convert.from_dict(
        {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": name, "namespace": "default"}, "spec": body}, batch_pb2.Job())
    return out


async def pods_of(c: Any, name: str) -> list[Any]:
    items = (await c.list_all("pods", "default",
                              label_selector=f"batch.kubernetes.io/job-name={name}")).items
    return sorted(items, key=lambda p: p.metadata.name)


async def active_pods(c: Any, name: str) -> list[Any]:
    return [p for p in await pods_of(c, name)
            if not ju.is_terminal(p) and not p.metadata.HasField("deletion_timestamp")]


async def finish(c: Any, pod: Any, phase: str, exit_code: int = 0) -> None:
    fresh = await c.get(core_pb2.Pod, pod.metadata.name, "default")
    fresh.status.phase = phase
    cs = fresh.status.container_statuses.add(name="main", image="busybox")
    cs.state.terminated.exit_code = exit_code
    cs.state.terminated.finished_at.CopyFrom(now_timestamp())
    await c.update_status(fresh)


async def get_job(c: Any, name: str) -> batch_pb2.Job:
    got: batch_pb2.Job = await c.get(batch_pb2.Job, name, "default")
    return got


def condition(j: Any, ctype: str) -> Any | None:
    return ju.find_condition(j.status, ctype)


async def has_condition(c: Any, name: str, ctype: str) -> bool:
    cond = condition(await get_job(c, name), ctype)
    return cond is not None and cond.status == "True"


async def count_active(c: Any, name: str, n: int) -> bool:
    return len(await active_pods(c, name)) == n


async def test_completions_with_parallelism(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("five", completions=5, parallelism=2))
    done = 0
    while done < 5:
        want = min(2, 5 - done)
        await eventually(lambda: count_active(c, "five", want))  # noqa: B023
        await asyncio.sleep(0.2)  # a stale cache must not make it start more
        running = await active_pods(c, "five")
        assert len(running) == want
        for p in running:
            assert ju.JOB_TRACKING_FINALIZER in p.metadata.finalizers
            ref = controller_of(p)
            assert ref is not None and ref.kind == "Job"
        await finish(c, running[0], "Succeeded")
        done += 1
    await eventually(lambda: has_condition(c, "five", ju.COMPLETE))
    j = await get_job(c, "five")
    assert (j.status.succeeded, j.status.failed, j.status.active) == (5, 0, 0)
    assert j.status.HasField("completion_time") and j.status.HasField("start_time")
    crit = condition(j, ju.SUCCESS_CRITERIA_MET)
    assert crit is not None and crit.reason == "CompletionsReached"
    assert not j.status.uncounted_terminated_pods.succeeded

    async def finalizers_gone() -> bool:
        return all(ju.JOB_TRACKING_FINALIZER not in p.metadata.finalizers
                   for p in await pods_of(c, "five"))

    await eventually(finalizers_gone)
    assert len(await pods_of(c, "five")) == 5


async def test_backoff_limit_fails_the_job(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("flaky", backoffLimit=2))
    for _ in range(3):
        await eventually(lambda: count_active(c, "flaky", 1))
        (p,) = await active_pods(c, "flaky")
        await finish(c, p, "Failed", exit_code=1)
    await eventually(lambda: has_condition(c, "flaky", ju.FAILED))
    j = await get_job(c, "flaky")
    cond = condition(j, ju.FAILED)
    assert cond is not None
    assert (cond.reason, cond.message) == ju.BACKOFF_LIMIT_EXCEEDED
    assert j.status.failed == 3 and j.status.active == 0
    assert len(await pods_of(c, "flaky")) == 3


async def test_pod_deleted_before_counting_is_still_counted(jobs: Cluster) -> None:
    """The tracking finalizer keeps a finished pod until it is counted, so deleting it
    (as pod GC does) does not lose the success."""
    c = jobs.client
    await c.create(job("gc", completions=2, parallelism=2))
    await eventually(lambda: count_active(c, "gc", 2))
    for p in await active_pods(c, "gc"):
        await finish(c, p, "Succeeded")
        await c.delete(core_pb2.Pod, p.metadata.name, "default")
    await eventually(lambda: has_condition(c, "gc", ju.COMPLETE))
    assert (await get_job(c, "gc")).status.succeeded == 2
    await eventually(lambda: _no_pods(c, "gc"))


async def _no_pods(c: Any, name: str) -> bool:
    return not await pods_of(c, name)


async def test_indexed_job_pods_carry_their_index(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("ix", completions=3, parallelism=3, completionMode="Indexed"))
    await eventually(lambda: count_active(c, "ix", 3))
    pods = await active_pods(c, "ix")
    by_index = {int(p.metadata.annotations[ju.COMPLETION_INDEX_KEY]): p for p in pods}
    assert sorted(by_index) == [0, 1, 2]
    for ix, p in by_index.items():
        assert p.metadata.labels[ju.COMPLETION_INDEX_KEY] == str(ix)
        assert p.spec.hostname == f"ix-{ix}"
        assert p.metadata.name.startswith(f"ix-{ix}-")
        env = {e.name: e for e in p.spec.containers[0].env}
        assert env["JOB_COMPLETION_INDEX"].value_from.field_ref.field_path == (
            f"metadata.annotations['{ju.COMPLETION_INDEX_KEY}']")
    await finish(c, by_index[1], "Succeeded")
    await finish(c, by_index[0], "Failed", 1)

    async def completed_1() -> bool:
        return (await get_job(c, "ix")).status.completed_indexes == "1"

    await eventually(completed_1)
    # index 0 is retried (after the backoff)
    await eventually(lambda: count_active(c, "ix", 2))
    for p in await active_pods(c, "ix"):
        await finish(c, p, "Succeeded")
    await eventually(lambda: has_condition(c, "ix", ju.COMPLETE))
    j = await get_job(c, "ix")
    assert j.status.completed_indexes == "0-2" and j.status.succeeded == 3
    assert j.status.failed == 1


async def test_pod_failure_policy_fail_job_on_exit_code(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("pfp", completions=2, parallelism=2, backoffLimit=6, podFailurePolicy={
        "rules": [{"action": "FailJob",
                   "onExitCodes": {"containerName": "main", "operator": "In",
                                   "values": [42]}}]}))
    await eventually(lambda: count_active(c, "pfp", 2))
    first, _ = await active_pods(c, "pfp")
    await finish(c, first, "Failed", exit_code=42)
    await eventually(lambda: has_condition(c, "pfp", ju.FAILURE_TARGET))
    # the other pod is deleted (at once: it is on no node)
    await eventually(lambda: count_active(c, "pfp", 0))
    await eventually(lambda: has_condition(c, "pfp", ju.FAILED))
    cond = condition(await get_job(c, "pfp"), ju.FAILED)
    assert cond is not None and cond.reason == "PodFailurePolicy"
    assert "failed with exit code 42 matching FailJob rule at index 0" in cond.message


async def test_pod_failure_policy_ignore_does_not_count(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("ign", backoffLimit=0, podFailurePolicy={
        "rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}}]}))
    await eventually(lambda: count_active(c, "ign", 1))
    (p,) = await active_pods(c, "ign")
    await finish(c, p, "Failed", exit_code=3)
    await eventually(lambda: count_active(c, "ign", 1))  # replaced, not failed
    j = await get_job(c, "ign")
    assert j.status.failed == 0 and condition(j, ju.FAILED) is None
    (p,) = await active_pods(c, "ign")
    await finish(c, p, "Succeeded")
    await eventually(lambda: has_condition(c, "ign", ju.COMPLETE))


async def test_suspend_and_resume(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("sus", suspend=True, completions=2, parallelism=2))

    async def suspended() -> bool:
        return await has_condition(c, "sus", ju.SUSPENDED)

    await eventually(suspended)
    await asyncio.sleep(0.3)
    assert await pods_of(c, "sus") == []
    await c.patch(batch_pb2.Job, "sus", {"spec": {"suspend": False}}, "default")
    await eventually(lambda: count_active(c, "sus", 2))

    async def resumed() -> bool:
        # the controller creates the pods before its status write flips the condition
        cond = condition(await get_job(c, "sus"), ju.SUSPENDED)
        return cond is not None and (cond.status, cond.reason) == ("False", "JobResumed")

    await eventually(resumed)
    assert (await get_job(c, "sus")).status.HasField("start_time")
    # suspending again deletes the running pods, which are not failures
    await c.patch(batch_pb2.Job, "sus", {"spec": {"suspend": True}}, "default")
    await eventually(lambda: count_active(c, "sus", 0))
    await eventually(suspended)
    await asyncio.sleep(0.3)
    assert (await get_job(c, "sus")).status.failed == 0


async def test_active_deadline(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("late", activeDeadlineSeconds=1))
    # (a loaded machine may not even see the pod before the deadline removes it)
    await eventually(lambda: has_condition(c, "late", ju.FAILURE_TARGET), timeout=5)
    await eventually(lambda: count_active(c, "late", 0))
    await eventually(lambda: has_condition(c, "late", ju.FAILED))
    cond = condition(await get_job(c, "late"), ju.FAILED)
    assert cond is not None and cond.reason == "DeadlineExceeded"


async def test_ttl_after_finished_deletes_the_job(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("ttl", ttlSecondsAfterFinished=1))
    await eventually(lambda: count_active(c, "ttl", 1))
    (p,) = await active_pods(c, "ttl")
    await finish(c, p, "Succeeded")
    await eventually(lambda: has_condition(c, "ttl", ju.COMPLETE))

    async def gone() -> bool:
        try:
            await get_job(c, "ttl")
        except errors.NotFound:
            return True
        return False

    await eventually(gone, timeout=10)


async def test_backoff_limit_per_index(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("bpi", completions=2, parallelism=2, completionMode="Indexed",
                       backoffLimitPerIndex=1))
    await eventually(lambda: count_active(c, "bpi", 2))
    for _ in range(2):  # index 0 fails twice: past its limit of 1
        await eventually(lambda: count_active(c, "bpi", 2))
        p0 = next(p for p in await active_pods(c, "bpi") if ju.completion_index(p) == 0)
        await finish(c, p0, "Failed", 1)

    async def index_failed() -> bool:
        return (await get_job(c, "bpi")).status.failed_indexes == "0"

    await eventually(index_failed)
    p1 = next(p for p in await active_pods(c, "bpi") if ju.completion_index(p) == 1)
    retried = [p for p in await pods_of(c, "bpi") if ju.completion_index(p) == 0]
    assert sorted(p.metadata.annotations[ju.INDEX_FAILURE_COUNT_KEY] for p in retried) == [
        "0", "1"]
    await finish(c, p1, "Succeeded")
    await eventually(lambda: has_condition(c, "bpi", ju.FAILED))
    cond = condition(await get_job(c, "bpi"), ju.FAILED)
    assert cond is not None and cond.reason == "FailedIndexes"


async def test_success_policy(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("sp", completions=3, parallelism=3, completionMode="Indexed",
                       successPolicy={"rules": [{"succeededIndexes": "0"}]}))
    await eventually(lambda: count_active(c, "sp", 3))
    p0 = next(p for p in await active_pods(c, "sp") if ju.completion_index(p) == 0)
    await finish(c, p0, "Succeeded")
    await eventually(lambda: has_condition(c, "sp", ju.SUCCESS_CRITERIA_MET))
    await eventually(lambda: count_active(c, "sp", 0))
    await eventually(lambda: has_condition(c, "sp", ju.COMPLETE))
    cond = condition(await get_job(c, "sp"), ju.COMPLETE)
    assert cond is not None and (cond.reason, cond.message) == (
        "SuccessPolicy", "Matched rules at index 0")


async def test_manual_selector_adopts_orphans(jobs: Cluster) -> None:
    c = jobs.client
    orphan: core_pb2.Pod = convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "batch"}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "busybox"}]}}, core_pb2.Pod())
    await c.create(orphan)
    j = job("manual", manualSelector=True, completions=2, parallelism=2,
            selector={"matchLabels": {"app": "batch"}})
    j.spec.template.metadata.labels["app"] = "batch"
    created = await c.create(j)

    async def adopted() -> bool:
        pod = await c.get(core_pb2.Pod, "stray", "default")
        ref = controller_of(pod)
        return ref is not None and ref.uid == created.metadata.uid

    await eventually(adopted)
    pod = await c.get(core_pb2.Pod, "stray", "default")
    assert ju.JOB_TRACKING_FINALIZER in pod.metadata.finalizers
    async def batch_pods() -> int:
        return len((await c.list_all("pods", "default", label_selector="app=batch")).items)

    # the adopted pod counts toward parallelism: one more, and no third
    async def two() -> bool:
        return await batch_pods() == 2

    await eventually(two)
    await asyncio.sleep(0.5)
    assert await batch_pods() == 2


async def test_deleting_the_job_releases_finalizers(jobs: Cluster) -> None:
    c = jobs.client
    await c.create(job("del", completions=2, parallelism=2))
    await eventually(lambda: count_active(c, "del", 2))
    pods = await active_pods(c, "del")
    await c.delete(batch_pb2.Job, "del", "default", propagation_policy="Orphan")

    async def released() -> bool:
        return all(ju.JOB_TRACKING_FINALIZER not in p.metadata.finalizers
                   for p in await pods_of(c, "del"))

    await eventually(released)
    assert len(pods) == 2


async def test_pod_replacement_policy_failed_waits_for_the_terminating_pod(
        jobs: Cluster) -> None:
    c = jobs.client
    node = core_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = "n1"
    await c.create(node)
    await c.create(job("wait", podReplacementPolicy="Failed"))
    await eventually(lambda: count_active(c, "wait", 1))
    (p,) = await active_pods(c, "wait")
    # bound to a node: its deletion is graceful, so it stays terminating for a while
    await c.bind("default", p.metadata.name, "n1", p.metadata.uid)
    await c.delete(core_pb2.Pod, p.metadata.name, "default")

    async def terminating_counted() -> bool:
        return (await get_job(c, "wait")).status.terminating == 1

    await eventually(terminating_counted)
    await asyncio.sleep(0.5)
    assert await active_pods(c, "wait") == []  # no replacement yet
    await finish(c, p, "Failed", 137)  # the kubelet reports it finished
    await eventually(lambda: count_active(c, "wait", 1))
    j = await get_job(c, "wait")
    assert j.status.failed == 1 and j.status.terminating == 0
