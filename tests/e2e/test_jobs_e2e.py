"""Jobs end to end with REAL agents: the in-process control plane (apiserver, scheduler,
controller manager) and two in-process agents running real container processes (see
test_workloads_e2e for the environment and its cleanup). Containers run short ``sh -c``
commands that succeed, fail with a chosen exit code, or print their completion index."""

from __future__ import annotations

import asyncio
import io
import math
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import batch_pb2, core_pb2
from control.cli.main import main as cli_main
from control.client.client import ApiClient
from control.controllers import job_util as ju
from control.controllers.cronjob import CronJobController
from control.controllers.manager import ControllerManager
from control.runtime.clock import FakeClock
from tests.images import builder as b
from tests.images import registry as reg
from tests.support import eventually
from tests.support.cluster import NOT_YET, NS, Env, PodWatch, gone, real_cluster
from tests.support.runtimeclasses import HOST

WAIT = 40.0


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"job-{tag}-a", f"job-{tag}-b"]) as e:
        yield e


def job(name: str, script: str, **spec: Any) -> batch_pb2.Job:
    body: dict[str, Any] = {"template": {"spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "runtimeClassName": HOST,
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}}}
    body.update(spec)
    out: batch_pb2.Job = convert.from_dict(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
         "spec": body}, batch_pb2.Job())
    return out


async def condition(c: ApiClient, name: str, ctype: str) -> Any:
    j = await c.get(batch_pb2.Job, name, NS)
    cond = ju.find_condition(j.status, ctype)
    return cond if cond is not None and cond.status == "True" else None


async def job_pods(c: ApiClient, name: str) -> list[Any]:
    items = (await c.list(core_pb2.Pod, NS,
                          label_selector=f"batch.kubernetes.io/job-name={name}")).items
    return list(items)


async def logs(c: ApiClient, pod: Any) -> str:
    out = b""
    async for chunk in c.logs(NS, pod.metadata.name):
        out += chunk
    return out.decode()


def at_most_active(name: str, limit: int) -> Any:
    def check(pods: dict[str, Any], _kind: str, _pod: Any) -> str:
        active = [p for p in pods.values()
                  if p.metadata.labels.get("batch.kubernetes.io/job-name") == name
                  and ju.is_active(p)]
        return f"{len(active)} active pods of {name}" if len(active) > limit else ""
    return check


async def test_completions_parallelism_and_failures(env: Env) -> None:
    c = env.client
    async with PodWatch(c, NS, at_most_active("five", 2)) as watch:
        await c.create(job("five", "sleep 0.3; exit 0", completions=5, parallelism=2))
        # one retry, after the controller's 10 s pod backoff, then past the limit
        await c.create(job("fails", "exit 1", backoffLimit=1))
        await c.create(job("policy", "sleep 0.2; exit 42", completions=3, parallelism=1,
                           podFailurePolicy={"rules": [{"action": "FailJob", "onExitCodes": {
                               "containerName": "main", "operator": "In", "values": [42]}}]}))
        done = await eventually(partial(condition, c, "five", ju.COMPLETE), "five complete", timeout=WAIT, retry_on=NOT_YET)
        assert done.reason == "CompletionsReached"
        j = await c.get(batch_pb2.Job, "five", NS)
        assert (j.status.succeeded, j.status.failed, j.status.active) == (5, 0, 0)
        pods = await job_pods(c, "five")
        assert len(pods) == 5 and all(p.status.phase == "Succeeded" for p in pods)
        assert len({p.spec.node_name for p in pods}) >= 1
        assert not watch.violations, watch.violations[:3]

        failed = await eventually(partial(condition, c, "fails", ju.FAILED), "fails failed", timeout=WAIT, retry_on=NOT_YET)
        assert (failed.reason, failed.message) == ju.BACKOFF_LIMIT_EXCEEDED
        assert (await c.get(batch_pb2.Job, "fails", NS)).status.failed == 2
        finished = sorted(ju.finish_time(p, 0.0) for p in await job_pods(c, "fails"))
        assert len(finished) == 2 and finished[1] - finished[0] >= 9.0  # the backoff

        failed = await eventually(partial(condition, c, "policy", ju.FAILED), "policy failed", timeout=WAIT, retry_on=NOT_YET)
        assert failed.reason == "PodFailurePolicy"
        assert "exit code 42 matching FailJob rule at index 0" in failed.message
        # at once: no retry was made
        assert len(await job_pods(c, "policy")) == 1


async def test_indexed_suspend_and_ttl(env: Env) -> None:
    c = env.client
    await c.create(job("idx", "echo index=$JOB_COMPLETION_INDEX", completions=3, parallelism=3,
                       completionMode="Indexed"))
    await c.create(job("later", "exit 0", suspend=True))
    await c.create(job("brief", "exit 0", ttlSecondsAfterFinished=1))

    await eventually(partial(condition, c, "idx", ju.COMPLETE), "idx complete", timeout=WAIT, retry_on=NOT_YET)
    j = await c.get(batch_pb2.Job, "idx", NS)
    assert j.status.completed_indexes == "0-2"
    seen = {}
    for p in await job_pods(c, "idx"):
        seen[p.metadata.annotations[ju.COMPLETION_INDEX_KEY]] = (await logs(c, p)).strip()
    assert seen == {"0": "index=0", "1": "index=1", "2": "index=2"}

    await eventually(partial(gone, c, batch_pb2.Job, "brief"), "brief deleted after its TTL", timeout=WAIT, retry_on=NOT_YET)

    assert await condition(c, "later", ju.SUSPENDED)
    assert await job_pods(c, "later") == []
    await c.patch(batch_pb2.Job, "later", {"spec": {"suspend": False}}, NS)
    await eventually(partial(condition, c, "later", ju.COMPLETE), "later complete", timeout=WAIT, retry_on=NOT_YET)


async def test_active_deadline_stops_running_pods(env: Env) -> None:
    c = env.client
    await c.create(job("slow", f"exec {env.sleep}", activeDeadlineSeconds=2,
                       completions=2, parallelism=2))

    async def running() -> bool:
        return sum(1 for p in await job_pods(c, "slow") if p.status.phase == "Running") == 2

    await eventually(running, "slow running", timeout=WAIT, retry_on=NOT_YET)
    failed = await eventually(partial(condition, c, "slow", ju.FAILED), "slow failed", timeout=WAIT, retry_on=NOT_YET)
    assert failed.reason == "DeadlineExceeded"
    await eventually(lambda: _none_active(c, "slow"), "its pods gone", timeout=WAIT, retry_on=NOT_YET)
    with_finalizer = [p for p in await job_pods(c, "slow")
                      if ju.JOB_TRACKING_FINALIZER in p.metadata.finalizers]
    assert with_finalizer == []


async def _none_active(c: ApiClient, name: str) -> bool:
    try:
        return not any(ju.is_active(p) or ju.is_terminating(p) for p in await job_pods(c, name))
    except errors.ApiError:
        return False




async def run_cli(env: Env, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(cli_main, ["--server", env.cluster.address, "--config",
                                              str(env.cluster.data_dir / "admin.conf"), *argv],
                                   stdout=out, stderr=err, stdin=io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


async def test_cli_create_job_from_cronjob_wait_and_logs(env: Env) -> None:
    c = env.client
    cj: batch_pb2.CronJob = convert.from_dict({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "hello", "namespace": NS},
        "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {
            "metadata": {"labels": {"team": "a"}},
            "spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "runtimeClassName": HOST, "containers": [
                {"name": "hello", "image": "busybox",
                 "command": ["sh", "-c", "echo hello from the cronjob"]}]}}}}},
    }, batch_pb2.CronJob())
    created = await c.create(cj)
    code, out, err = await run_cli(env, "create", "job", "manual", "--from=cronjob/hello")
    assert code == 0, err
    assert "job.batch/manual created" in out
    j = await c.get(batch_pb2.Job, "manual", NS)
    assert j.metadata.annotations["cronjob.kubernetes.io/instantiate"] == "manual"
    assert j.metadata.labels["team"] == "a"
    assert [(r.kind, r.uid) for r in j.metadata.owner_references] == [
        ("CronJob", created.metadata.uid)]
    code, out, err = await run_cli(env, "wait", "--for=condition=complete", "job/manual",
                                   "--timeout=40s")
    assert code == 0, err
    assert "condition met" in out
    code, out, err = await run_cli(env, "logs", "job/manual")
    assert (code, out) == (0, "hello from the cronjob\n"), err

    code, _, err = await run_cli(env, "create", "job", "bad", "--from=deploy/x")
    assert code != 0 and "only cronjob/NAME" in err
    code, _, err = await run_cli(env, "create", "job", "bad", "--from=cronjob/missing")
    assert code != 0 and "missing" in err
    code, _, err = await run_cli(env, "create", "job", "bad")
    assert code != 0 and "exactly one of" in err


@pytest.fixture
async def image_env(tmp_path: Path) -> AsyncIterator[tuple[Env, str]]:
    """``env`` whose agents reach a loopback registry holding busybox-static as
    ``HOST:PORT/busybox:1`` (the image reference, returned beside the env)."""
    if not reg.available():
        pytest.skip("Debian's docker-registry is missing")
    with reg.running_registry(tmp_path / "registry") as (registry, _):
        pusher = b.Pusher(registry.url)
        try:
            pusher.image("busybox", "1", b.build_image([b.busybox_layer()], {"Cmd": ["sh"]}))
        finally:
            pusher.close()
        tag = uuid.uuid4().hex[:6]
        async with real_cluster(tmp_path, [f"job-{tag}-i"],
                                agent_options={"insecure_registries": [registry.host]}) as e:
            yield e, f"{registry.host}/busybox:1"


@pytest.mark.root(reason="overlay mounts")
async def test_cli_create_job_from_an_image(image_env: tuple[Env, str]) -> None:
    # naming no RuntimeClass, the job's pod runs in its image, pulled from loopback
    env, image = image_env
    code, out, err = await run_cli(env, "create", "job", "img", f"--image={image}", "--",
                                   "sh", "-c", "test ! -e /work && echo in the image")
    assert code == 0, err
    code, out, err = await run_cli(env, "wait", "--for=condition=complete", "job/img",
                                   "--timeout=40s")
    assert code == 0, err
    code, out, err = await run_cli(env, "logs", "job/img")
    assert (code, out) == (0, "in the image\n"), err


@pytest.fixture
async def cron_env(tmp_path: Path) -> AsyncIterator[tuple[Env, FakeClock]]:
    """Agents and the server as ``env``, with the CronJob controller beside the server under
    a FakeClock (so a minute passes when the test says so)."""
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"cj-{tag}-a", f"cj-{tag}-b"],
                            disable_controllers={"cronjob"}) as e:
        clock = FakeClock(start=time.time())
        manager = ControllerManager(e.client, clock=clock,
                                    controllers={"cronjob": CronJobController})
        await manager.start()
        try:
            yield e, clock
        finally:
            await manager.stop()


def cronjob(name: str, script: str, policy: str) -> batch_pb2.CronJob:
    out: batch_pb2.CronJob = convert.from_dict({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": NS},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": policy, "jobTemplate": {
            "spec": {"template": {"spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                "runtimeClassName": HOST,
                "containers": [{"name": "main", "image": "busybox",
                                "command": ["sh", "-c", script]}]}}}}}}, batch_pb2.CronJob())
    return out


async def cron_jobs(c: ApiClient, name: str) -> list[Any]:
    return sorted((j for j in (await c.list(batch_pb2.Job, NS)).items
                   if any(r.name == name for r in j.metadata.owner_references)
                   and not j.metadata.HasField("deletion_timestamp")),
                  key=lambda j: j.metadata.name)


async def running_jobs(c: ApiClient, name: str, n: int) -> list[Any] | None:
    """The CronJob's Jobs when there are ``n``, each with its pod Running."""
    jobs = await cron_jobs(c, name)
    if len(jobs) != n:
        return None
    for j in jobs:
        pods = await job_pods(c, j.metadata.name)
        if not any(p.status.phase == "Running" and not ju.is_deleting(p) for p in pods):
            return None
    return jobs


def tick(clock: FakeClock) -> None:
    now = clock.now()
    clock.advance(math.floor(now / 60) * 60 + 61 - now)


async def test_cronjob_concurrency_policies_with_real_pods(
        cron_env: tuple[Env, FakeClock]) -> None:
    env, clock = cron_env
    c = env.client
    long_running = f"exec {env.sleep}"
    for name, policy in (("allow", "Allow"), ("forbid", "Forbid"), ("replace", "Replace")):
        await c.create(cronjob(name, long_running, policy))
    tick(clock)
    first = {}
    for name in ("allow", "forbid", "replace"):
        jobs = await eventually(partial(running_jobs, c, name, 1), f"{name}: first run", timeout=WAIT, retry_on=NOT_YET)
        first[name] = jobs[0]
    tick(clock)
    await eventually(partial(running_jobs, c, "allow", 2), "allow: two runs side by side", timeout=WAIT, retry_on=NOT_YET)

    async def replaced() -> bool:
        jobs = await running_jobs(c, "replace", 1)
        return bool(jobs) and jobs[0].metadata.uid != first["replace"].metadata.uid

    await eventually(replaced, "replace: the old run replaced", timeout=WAIT, retry_on=NOT_YET)
    await eventually(partial(gone, c, batch_pb2.Job, first["replace"].metadata.name),
                     "replace: the old run's Job gone", timeout=WAIT, retry_on=NOT_YET)
    jobs = await cron_jobs(c, "forbid")
    assert [j.metadata.uid for j in jobs] == [first["forbid"].metadata.uid]
    cj = await c.get(batch_pb2.CronJob, "forbid", NS)
    assert [r.uid for r in cj.status.active] == [first["forbid"].metadata.uid]
