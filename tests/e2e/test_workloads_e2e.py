"""Workload controllers end to end with REAL agents: an in-process control plane (apiserver,
scheduler, controller manager) and two in-process agents with the process runtime, on
distinct node names and data dirs, running real container processes. No pod names a node:
the scheduler places every one.

Every container runs ``sh -c 'exec sleep <N>'`` with an ``N`` unique to the test, so
``pgrep -fx 'sleep <N>'`` counts the test's container processes on the host (``sleep`` is
PID 1 of its PID namespace and ignores SIGTERM: pods use terminationGracePeriodSeconds 1).

Every wait is bounded. Cleanup in ``finally``: workloads deleted, every pod deleted through
the live agents and waited for, the agents stopped, then the runtime state swept; any
container process left, monitor left or cgroup left under ``flotilla/<node>`` is killed /
removed and reported as a failure.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, deployutil, errors
from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import controller_of
from control.client.client import ApiClient
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.cluster import (
    NOT_YET,
    NS,
    WAIT,
    Env,
    PodWatch,
    bare_pod,
    deployment,
    gone,
    is_ready,
    live_pods,
    node_of_pid,
    owned_by_deployment,
    pods,
    real_cluster,
    replica_set,
    rolled_out,
    running,
    terminating,
    version_of,
)

# -- processes and cgroups -------------------------------------------------------------------


# -- objects ---------------------------------------------------------------------------------


# -- waiting ---------------------------------------------------------------------------------


# -- watching --------------------------------------------------------------------------------


# -- the environment -------------------------------------------------------------------------


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"wl-{tag}-a", f"wl-{tag}-b"]) as e:
        yield e


async def flotilla(cluster: Cluster, *args: str, namespace: str = NS) -> tuple[int, str]:
    """The command-line client, in-process on a thread (it runs its own event loop)."""
    from control.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    argv = ["--server", cluster.address, "--config", str(cluster.data_dir / "admin.conf"), "-n", namespace, *args]
    async with asyncio.timeout(30):
        code = await asyncio.to_thread(main, argv, stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


async def set_version(c: ApiClient, name: str, version: str, namespace: str = NS) -> None:
    for _ in range(5):
        d = await c.get(apps_pb2.Deployment, name, namespace)
        env_var = next(e for e in d.spec.template.spec.containers[0].env
                       if e.name == "VERSION")
        env_var.value = version
        try:
            await c.update(d)
            return
        except errors.Conflict:
            continue
    raise AssertionError("could not update the deployment")


def min_ready_check(app: str, floor: int, seen: list[int]) -> Callable[..., str]:
    """After every pod event: at least ``floor`` Ready, not terminating pods of the
    Deployment's ReplicaSets."""

    def check(state: dict[str, Any], kind: str, _pod: Any) -> str:
        ready = sum(1 for p in state.values() if owned_by_deployment(p, app)
                    and is_ready(p) and not terminating(p))
        seen.append(ready)
        if ready < floor:
            return f"after {kind} of {_pod.metadata.name if _pod else '-'}: only {ready} " \
                   f"ready pods (< {floor}): " + ", ".join(
                       f"{p.metadata.name}(ready={is_ready(p)}, term={terminating(p)})"
                       for p in state.values())
        return ""

    return check


# -- the tests -------------------------------------------------------------------------------


async def test_deployment_spreads_rolls_out_and_rolls_back(env: Env) -> None:
    """3 replicas Running on both agents; a rolling update (maxUnavailable 1) never below
    2 Ready pods after any pod event; `rollout undo` back to the first template."""
    c = env.client
    await c.create(deployment("web", env.sleep, 3, surge=1, unavailable=1))
    first = await eventually(lambda: rolled_out(c, "web", 3, "1"), "3 available", timeout=WAIT, retry_on=NOT_YET)
    assert {p.spec.node_name for p in first} == set(env.nodes), "not spread across nodes"
    pids = await eventually(lambda: len(env.container_pids()) == 3
                       and env.container_pids(), "3 container processes", timeout=WAIT, retry_on=NOT_YET)
    assert {node_of_pid(p) for p in pids} == set(env.nodes)
    [rs1] = [rs for rs in (await c.list(apps_pb2.ReplicaSet, NS)).items]
    first_hash = rs1.metadata.labels[deployutil.HASH_LABEL]

    seen: list[int] = []
    async with PodWatch(c, NS, min_ready_check("web", 3 - 1, seen)) as watch:
        await set_version(c, "web", "2")
        second = await eventually(lambda: rolled_out(c, "web", 3, "2"), "rolled out to v2", timeout=WAIT, retry_on=NOT_YET)
        assert not ({p.metadata.name for p in second} & {p.metadata.name for p in first})
        code, out = await flotilla(env.cluster, "rollout", "undo", "deployment/web")
        assert code == 0, out
        assert "rolled back" in out
        back = await eventually(lambda: rolled_out(c, "web", 3, "1"), "rolled back to v1", timeout=WAIT, retry_on=NOT_YET)
    assert not watch.violations, watch.violations[:3]
    assert watch.events >= 12 and min(seen) >= 2, (watch.events, seen)
    # rollback reuses the first ReplicaSet (same template hash), now the newest revision
    assert {p.metadata.labels[deployutil.HASH_LABEL] for p in back} == {first_hash}
    rs1 = await c.get(apps_pb2.ReplicaSet, rs1.metadata.name, NS)
    assert deployutil.revision_of(rs1) == 3
    # exactly the 3 pods' containers run; the replaced ones were really stopped
    await eventually(lambda: len(env.container_pids()) == 3, "old containers stopped", timeout=WAIT, retry_on=NOT_YET)


async def test_recreate_removes_old_pods_before_new(env: Env) -> None:
    c = env.client
    await c.create(deployment("rec", env.sleep, 2, strategy="Recreate"))
    await eventually(lambda: rolled_out(c, "rec", 2, "1"), "2 available", timeout=WAIT, retry_on=NOT_YET)

    def check(state: dict[str, Any], kind: str, pod: Any) -> str:
        versions = {version_of(p) for p in state.values()}
        if {"1", "2"} <= versions:
            return f"after {kind} of {pod.metadata.name if pod else '-'}: old and new " \
                   f"pods exist together: {sorted(state)}"
        return ""

    async with PodWatch(c, NS, check) as watch:
        await set_version(c, "rec", "2")
        await eventually(lambda: rolled_out(c, "rec", 2, "2"), "recreated on v2", timeout=WAIT, retry_on=NOT_YET)
    assert not watch.violations, watch.violations[:3]
    await eventually(lambda: len(env.container_pids()) == 2, "old containers stopped", timeout=WAIT, retry_on=NOT_YET)


async def test_scaling_mid_rollout_is_proportional(env: Env) -> None:
    """The new template is held not-Ready by a readiness gate (a file on a hostPath), so
    the rollout stops part way; scaling then spreads the new replicas over both
    ReplicaSets; opening the gate finishes the rollout at the new size."""
    c = env.client
    gate = env.tmp / "gate"
    gate.mkdir()
    await c.create(deployment("mid", env.sleep, 4, surge=1, unavailable=0))
    await eventually(lambda: rolled_out(c, "mid", 4, "1"), "4 available", timeout=WAIT, retry_on=NOT_YET)
    d = await c.get(apps_pb2.Deployment, "mid", NS)
    container = d.spec.template.spec.containers[0]
    convert.from_dict({"exec": {"command": ["cat", "/gate/open"]}, "periodSeconds": 1},
                      container.readiness_probe)
    container.volume_mounts.add(name="gate", mount_path="/gate")
    vol = d.spec.template.spec.volumes.add(name="gate")
    vol.host_path.path = str(gate)
    next(e for e in container.env if e.name == "VERSION").value = "2"
    await c.update(d)

    async def stuck() -> bool:
        ps = await live_pods(c, "mid")
        new = [p for p in ps if version_of(p) == "2"]
        return len(ps) == 5 and len(new) == 1 and running(new[0]) and not is_ready(new[0])

    await eventually(stuck, "rollout stuck on the gate", timeout=WAIT, retry_on=NOT_YET)
    await c.update_scale(apps_pb2.Deployment, "mid", 8, NS)

    async def sizes() -> dict[str, int] | None:
        rss = (await c.list(apps_pb2.ReplicaSet, NS, label_selector="app=mid")).items
        out = {next(e.value for e in rs.spec.template.spec.containers[0].env
                    if e.name == "VERSION"): rs.spec.replicas for rs in rss}
        return out if sum(out.values()) == 8 + 1 else None

    by_version = await eventually(sizes, "proportional scale-up", timeout=WAIT, retry_on=NOT_YET)
    # 4 more replicas shared in proportion (4:1) -> the old ReplicaSet took most of them
    assert by_version["1"] > 4 and by_version["2"] > 1, by_version
    await eventually(lambda: _ready_count(c, "mid", "1", 7), "old pods scaled up and Ready", timeout=WAIT, retry_on=NOT_YET)
    (gate / "open").write_text("yes")
    await eventually(lambda: rolled_out(c, "mid", 8, "2"), "rolled out at 8", timeout=35, retry_on=NOT_YET)
    await eventually(lambda: len(env.container_pids()) == 8, "old containers stopped", timeout=WAIT, retry_on=NOT_YET)


async def _ready_count(c: ApiClient, app: str, version: str, want: int) -> bool:
    ps = await live_pods(c, app)
    return sum(1 for p in ps if version_of(p) == version and is_ready(p)) >= want


async def test_adoption_and_release(env: Env) -> None:
    c = env.client
    orphan = await c.create(bare_pod("stray", "adopt", env.sleep))
    await eventually(lambda: _running(c, "stray"), "stray Running", timeout=WAIT, retry_on=NOT_YET)
    [stray_pid] = await eventually(env.container_pids, "stray's process", timeout=WAIT, retry_on=NOT_YET)
    rs = await c.create(replica_set("adopt", env.sleep, 2))

    async def adopted() -> Any:
        p = await c.get(core_pb2.Pod, "stray", NS)
        ref = controller_of(p)
        return p if ref is not None and ref.uid == rs.metadata.uid else None

    p = await eventually(adopted, "stray adopted", timeout=WAIT, retry_on=NOT_YET)
    ref = controller_of(p)
    assert ref.kind == "ReplicaSet" and ref.block_owner_deletion and ref.name == "adopt"
    assert p.metadata.uid == orphan.metadata.uid  # the same pod, not a replacement

    async def two_running() -> list[Any] | None:
        ps = await live_pods(c, "adopt")
        return ps if len(ps) == 2 and all(running(x) for x in ps) else None

    ps = await eventually(two_running, "2 pods, one of them the adopted stray", timeout=WAIT,
                          retry_on=NOT_YET)
    assert "stray" in {x.metadata.name for x in ps}
    await asyncio.sleep(1.0)  # no extra pod is made meanwhile
    assert len(await pods(c, NS, "adopt")) == 2
    assert stray_pid in env.container_pids()

    # relabelled out of the selector: released (no ownerReference), and replaced
    for _ in range(5):
        p = await c.get(core_pb2.Pod, "stray", NS)
        p.metadata.labels["app"] = "elsewhere"
        try:
            await c.update(p)
            break
        except errors.Conflict:
            continue

    async def released() -> Any:
        p = await c.get(core_pb2.Pod, "stray", NS)
        return p if not p.metadata.owner_references else None

    p = await eventually(released, "stray released", timeout=WAIT, retry_on=NOT_YET)
    assert running(p)
    ps = await eventually(two_running, "a replacement Running", timeout=WAIT, retry_on=NOT_YET)
    assert "stray" not in {x.metadata.name for x in ps}
    assert all(controller_of(x).uid == rs.metadata.uid for x in ps)
    assert stray_pid in env.container_pids()  # released, not stopped
    await eventually(lambda: len(env.container_pids()) == 3, "3 containers", timeout=WAIT, retry_on=NOT_YET)
    await eventually(lambda: _rs_ready(c, "adopt", 2), "RS status: 2 replicas, ready, available",
                     timeout=WAIT, retry_on=NOT_YET)


async def _running(c: ApiClient, name: str, namespace: str = NS) -> Any:
    p = await c.get(core_pb2.Pod, name, namespace)
    return p if running(p) else None


async def _rs_ready(c: ApiClient, name: str, want: int) -> bool:
    s = (await c.get(apps_pb2.ReplicaSet, name, NS)).status
    return bool(s.replicas == s.ready_replicas == s.available_replicas == want)


async def test_delete_propagation_policies(env: Env) -> None:
    c = env.client
    for name in ("bg", "fg", "orph"):
        await c.create(deployment(name, env.sleep, 2))
    for name in ("bg", "fg", "orph"):
        await eventually(partial(rolled_out, c, name, 2, "1"), f"{name} available", timeout=WAIT, retry_on=NOT_YET)
    await eventually(lambda: len(env.container_pids()) == 6, "6 containers", timeout=WAIT, retry_on=NOT_YET)
    orph_pods = {p.metadata.uid: p for p in await pods(c, NS, "orph")}

    # Background: the Deployment goes at once; its ReplicaSet and pods follow
    _, pending = await c.delete(apps_pb2.Deployment, "bg", NS, propagation_policy="Background")
    assert not pending and await gone(c, apps_pb2.Deployment, "bg")

    # Foreground: kept (finalizer) until its ReplicaSet and pods are gone
    d, pending = await c.delete(apps_pb2.Deployment, "fg", NS,
                                propagation_policy="Foreground")
    assert pending and "foregroundDeletion" in d.metadata.finalizers
    saw_kept_with_pods = False
    async with asyncio.timeout(WAIT):
        while True:
            try:
                d = await c.get(apps_pb2.Deployment, "fg", NS)
            except errors.NotFound:
                left = await pods(c, NS, "fg")
                rss = (await c.list(apps_pb2.ReplicaSet, NS, label_selector="app=fg")).items
                assert not left and not rss, "Foreground owner gone before its dependents"
                break
            assert terminating(d) and "foregroundDeletion" in d.metadata.finalizers
            if await pods(c, NS, "fg"):
                saw_kept_with_pods = True
            await asyncio.sleep(0.05)
    assert saw_kept_with_pods

    # Orphan: the Deployment goes, its ReplicaSet stays (without owner), and so do its pods;
    # the ReplicaSet deleted with Orphan leaves pods with no ownerReferences, still running
    await c.delete(apps_pb2.Deployment, "orph", NS, propagation_policy="Orphan")
    await eventually(lambda: gone(c, apps_pb2.Deployment, "orph"), "orph deployment gone", timeout=WAIT, retry_on=NOT_YET)
    [rs] = (await c.list(apps_pb2.ReplicaSet, NS, label_selector="app=orph")).items

    async def rs_orphaned() -> bool:
        r = await c.get(apps_pb2.ReplicaSet, rs.metadata.name, NS)
        return not r.metadata.owner_references and not terminating(r)

    await eventually(rs_orphaned, "orph ReplicaSet orphaned", timeout=WAIT, retry_on=NOT_YET)
    await c.delete(apps_pb2.ReplicaSet, rs.metadata.name, NS, propagation_policy="Orphan")
    await eventually(lambda: gone(c, apps_pb2.ReplicaSet, rs.metadata.name), "orph ReplicaSet gone", timeout=WAIT, retry_on=NOT_YET)

    async def pods_orphaned() -> bool:
        ps = await pods(c, NS, "orph")
        return len(ps) == 2 and all(not p.metadata.owner_references for p in ps)

    await eventually(pods_orphaned, "orph pods without owners", timeout=WAIT, retry_on=NOT_YET)
    await eventually(lambda: _none_left(c, ("bg", "fg")), "bg and fg pods gone", timeout=WAIT, retry_on=NOT_YET)
    await asyncio.sleep(1.0)  # nothing deletes the orphans late
    ps = await pods(c, NS, "orph")
    assert {p.metadata.uid for p in ps} == set(orph_pods)
    assert all(running(p) and not terminating(p) and not p.metadata.owner_references
               for p in ps)
    # the bg and fg containers were stopped; the orphans' still run
    await eventually(lambda: len(env.container_pids()) == 2, "only the orphans' containers left", timeout=WAIT, retry_on=NOT_YET)
    assert {node_of_pid(pid) for pid in env.container_pids()} == \
        {p.spec.node_name for p in ps}


async def _none_left(c: ApiClient, apps: tuple[str, ...]) -> bool:
    for app in apps:
        if await pods(c, NS, app):
            return False
    return True


async def test_namespace_deletion_stops_pods_and_removes_services(env: Env) -> None:
    c = env.client
    ns = "doomed"
    await c.create(convert.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}}, core_pb2.Namespace()))
    await c.create(deployment("app", env.sleep, 2, namespace=ns))
    await c.create(bare_pod("loner", "loner", env.sleep, namespace=ns))
    await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": ns},
        "spec": {"selector": {"app": "app"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }, core_pb2.Service()))
    await eventually(lambda: rolled_out(c, "app", 2, "1", ns), "deployment available", timeout=WAIT, retry_on=NOT_YET)
    await eventually(lambda: _running(c, "loner", ns), "loner Running", timeout=WAIT, retry_on=NOT_YET)
    await eventually(lambda: len(env.container_pids()) == 3, "3 containers", timeout=WAIT, retry_on=NOT_YET)

    await c.delete(core_pb2.Namespace, ns)
    ns_obj = await c.get(core_pb2.Namespace, ns)
    assert ns_obj.status.phase == "Terminating"
    with pytest.raises(errors.Forbidden, match="being terminated"):
        await c.create(bare_pod("late", "late", env.sleep, namespace=ns))

    await eventually(lambda: gone(c, core_pb2.Namespace, ns, ""), "namespace removed", timeout=30, retry_on=NOT_YET)
    for resource in (core_pb2.Pod, core_pb2.Service, apps_pb2.Deployment,
                     apps_pb2.ReplicaSet):
        assert not (await c.list(resource, ns)).items, resource
    # really stopped on the agents
    await eventually(lambda: not env.container_pids(), "no container process left", timeout=WAIT, retry_on=NOT_YET)

