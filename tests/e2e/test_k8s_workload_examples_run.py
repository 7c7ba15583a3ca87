"""Kubernetes' own Job, CronJob and DaemonSet examples run unchanged on real agents.

The corpus is ``/work/shared/k8s-examples`` (see its README.md and INDEX.tsv). Selected:
every Job, CronJob and DaemonSet document whose images are all ones whose commands this
machine has (busybox, alpine, bash, perl, python) and whose containers all have a command.
The documents are unchanged but for one field the harness adds: their pod templates name
the ``host`` RuntimeClass (which the harness creates), so that the commands run on this
machine's files rather than in images this machine cannot pull. Each runs in a namespace of its own,
all at once, on a control plane with two agents; each must reach the state its
documentation page describes (:data:`EXPECTED`) within one overall bound.

The CronJob controller runs beside the server under a FakeClock (the server's own is
disabled), so a "* * * * *" CronJob fires when the test moves the clock a minute on,
instead of after a real minute.
"""

from __future__ import annotations

import asyncio
import csv
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import apps_pb2, batch_pb2, core_pb2
from control.cli.manifest import parse_text
from control.client.client import ApiClient
from control.controllers import job_util as ju
from control.controllers.cronjob import CronJobController
from control.controllers.manager import ControllerManager
from control.runtime.clock import FakeClock
from tests.support.cluster import Env, real_cluster
from tests.support.runtimeclasses import on_host

CORPUS = Path("/work/shared/k8s-examples")
OVERALL_LIMIT = 90.0
IMAGE = re.compile(r"(^|/)(busybox|alpine|bash|perl|python)(:|@|$)")
KINDS = ("Job", "CronJob", "DaemonSet")

Check = Callable[[ApiClient, str, str], Awaitable[bool]]


async def _job(c: ApiClient, ns: str, name: str) -> Any:
    return await c.get(batch_pb2.Job, name, ns)


def job_ends(ctype: str, reason: str, **status: Any) -> Check:
    async def check(c: ApiClient, ns: str, name: str) -> bool:
        j = await _job(c, ns, name)
        cond = ju.find_condition(j.status, ctype)
        if cond is None or cond.status != "True":
            return False
        assert cond.reason == reason, (name, cond.reason, cond.message)
        for key, value in status.items():
            assert getattr(j.status, key) == value, (name, key, getattr(j.status, key))
        return True
    return check


async def cronjob_ran(c: ApiClient, ns: str, name: str) -> bool:
    """One Job of the CronJob completed and the CronJob saw it (lastSuccessfulTime)."""
    cj = await c.get(batch_pb2.CronJob, name, ns)
    return cj.status.HasField("last_successful_time") and not cj.status.active


async def main_done_sidecar_running(c: ApiClient, ns: str, name: str) -> bool:
    pods = (await c.list(core_pb2.Pod, ns,
                         label_selector=f"batch.kubernetes.io/job-name={name}")).items
    if len(pods) != 1:
        return False
    states = {cs.name: cs.state for cs in pods[0].status.container_statuses}
    main, sidecar = states.get("myjob"), states.get("logshipper")
    if main is None or sidecar is None:
        return False
    if not (main.HasField("terminated") and main.terminated.exit_code == 0
            and sidecar.HasField("running")):
        return False
    j = await _job(c, ns, name)
    assert j.status.active == 1 and not ju.is_finished(j), j.status
    return True


EXPECTED: dict[str, tuple[str, Check]] = {
    "application/job/indexed-job.yaml": (
        "five indexes, each from its own input", job_ends(ju.COMPLETE, "CompletionsReached",
                                                           completed_indexes="0-4")),
    "application/job/indexed-job-vol.yaml": (
        "five indexes, index from a downwardAPI volume",
        job_ends(ju.COMPLETE, "CompletionsReached", completed_indexes="0-4")),
    "application/job/job-sidecar.yaml": (
        "a native sidecar stops once the main container is done",
        job_ends(ju.COMPLETE, "CompletionsReached")),
    "application/job/job-sidecar-legacy.yaml": (
        "the page's point: a plain sidecar container never exits, so the Job never completes",
        main_done_sidecar_running),
    "controllers/job-backoff-limit-per-index-example.yaml": (
        "even indexes fail twice each: five failed indexes, not more than maxFailedIndexes",
        job_ends(ju.FAILED, "FailedIndexes", failed_indexes="0,2,4,6,8",
                 completed_indexes="1,3,5,7,9")),
    "controllers/job-backoff-limit-per-index-failindex.yaml": (
        "index 0 retried once, index 1 failed at once by FailIndex",
        job_ends(ju.FAILED, "FailedIndexes", failed_indexes="0,1", completed_indexes="2,3")),
    "controllers/job-pod-failure-policy-example.yaml": (
        "exit code 42 fails the Job through podFailurePolicy",
        job_ends(ju.FAILED, "PodFailurePolicy")),
    "controllers/job-pod-failure-policy-failjob.yaml": (
        "exit code 42 fails the Job through podFailurePolicy",
        job_ends(ju.FAILED, "PodFailurePolicy")),
    "controllers/job-success-policy.yaml": (
        "index 2 succeeding meets the success policy", job_ends(ju.COMPLETE, "SuccessPolicy")),
    "application/job/cronjob.yaml": ("a run every minute", cronjob_ran),
}
# Selected by the rule but not run, and why.
SKIPPED: dict[str, str] = {
    "application/job/job-tmpl.yaml": "a template: its name is process-item-$ITEM",
    "controllers/job-pod-failure-policy-ignore.yaml":
        "its pods sleep 90 s, twice in a row: longer than this test's bound",
    "controllers/job-success-policy-example.yaml": "has no metadata.name (a page fragment)",
    "controllers/job.yaml": "this machine's perl (5.36) dies in bpi(2000) inside "
                            "Math::BigInt::Calc ('Can't use an undefined value as an ARRAY "
                            "reference'): the command cannot run here",
}


def selected() -> list[tuple[str, str, str]]:
    """(path, kind, name) of every runnable Job/CronJob/DaemonSet document."""
    out = []
    with open(CORPUS / "INDEX.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["kind"] not in KINDS:
                continue
            images = [i for i in row["images"].split(",") if i]
            if not images or not all(IMAGE.search(i) for i in images):
                continue
            if row["all_containers_have_command"] != "yes":
                continue
            out.append((row["path"], row["kind"], row["name"]))
    return out


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"ex-{tag}-a", f"ex-{tag}-b"],
                            disable_controllers={"cronjob"}) as e:
        yield e


async def create(c: ApiClient, ns: str, path: str, kind: str, name: str) -> None:
    await c.create(convert.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}}, core_pb2.Namespace()))
    message = {"Job": batch_pb2.Job, "CronJob": batch_pb2.CronJob,
               "DaemonSet": apps_pb2.DaemonSet}[kind]
    for doc in parse_text((CORPUS / path).read_text(), path):
        if doc.data.get("kind") == kind and doc.data["metadata"].get("name") == name:
            doc.data["metadata"]["namespace"] = ns
            await c.create(convert.from_dict(on_host(doc.data), message()))
            return
    raise AssertionError(f"{path}: no {kind} {name}")


# the examples' own sleeps and retry backoffs add up: more than the default 120 s per test
@pytest.mark.timeout(240)
async def test_k8s_workload_examples_run(env: Env) -> None:
    examples = [e for e in selected() if e[0] not in SKIPPED]
    assert {p for p, _, _ in examples} == set(EXPECTED), "the corpus changed: update EXPECTED"
    c = env.client
    clock = FakeClock(start=time.time())
    manager = ControllerManager(c, clock=clock, controllers={"cronjob": CronJobController})
    await manager.start()
    failures: dict[str, str] = {}
    try:
        async def run_one(index: int, path: str, kind: str, name: str) -> None:
            ns = f"wl-{index:02d}"
            await create(c, ns, path, kind, name)
            check = EXPECTED[path][1]
            while True:
                try:
                    if await check(c, ns, name):
                        return
                except errors.NotFound:
                    pass
                await asyncio.sleep(0.5)

        tasks = {path: asyncio.create_task(run_one(i, path, kind, name), name=path)
                 for i, (path, kind, name) in enumerate(examples)}
        # the CronJob's minute comes when the clock says so
        await asyncio.sleep(1.0)
        clock.advance(math.floor(clock.now() / 60) * 60 + 61 - clock.now())
        _, pending = await asyncio.wait(tasks.values(), timeout=OVERALL_LIMIT)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for path, t in tasks.items():
            if t in pending:
                failures[path] = f"not in its expected state after {OVERALL_LIMIT} s"
            elif (e := t.exception()) is not None:
                failures[path] = repr(e)
    finally:
        await manager.stop()
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))
