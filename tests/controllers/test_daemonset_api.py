"""The DaemonSet controller against a real apiserver (no scheduler, no agents): Nodes are
API objects the test writes, pods become Ready when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import apps_pb2, core_pb2
from control.api.timeutil import now_timestamp
from control.controllers import daemonset_util as dsu
from control.controllers.daemonset import DaemonSetController
from control.controllers.gc import GarbageCollector
from control.controllers.manager import ControllerContext, ControllerManager
from control.runtime.backoff import Backoff
from tests.conftest import Cluster, running_cluster
from tests.support import eventually

TIMEOUT = 15.0


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        manager = ControllerManager(c.client, controllers={
            "daemonset": DaemonSetController, "garbagecollector": GarbageCollector})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


async def node(c: Any, name: str, **labels: str) -> None:
    n = core_pb2.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    n.metadata.labels.update(labels)
    await c.create(n)


async def patch_node(c: Any, name: str, body: dict[str, Any]) -> None:
    await c.patch(core_pb2.Node, name, body)


def daemon_set(name: str, *, version: str = "1", node_selector: dict[str, str] | None = None,
               **update: Any) -> apps_pb2.DaemonSet:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"nodeSelector": node_selector or {},
                              "containers": [{"name": "c", "image": "busybox",
                                              "env": [{"name": "V", "value": version}]}]}}}
    if update:
        spec["updateStrategy"] = update
    out: apps_pb2.DaemonSet = convert.from_dict(
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": name, "namespace": "default"}, "spec": spec}, apps_pb2.DaemonSet())
    return out


async def set_version(c: Any, name: str, version: str) -> None:
    """Change the template (retrying while the controller's status writes get between)."""
    for _ in range(10):
        ds = await c.get(apps_pb2.DaemonSet, name, "default")
        ds.spec.template.spec.containers[0].env[0].value = version
        try:
            await c.update(ds)
            return
        except errors.Conflict:
            continue
    raise AssertionError("the DaemonSet kept changing")


async def live(c: Any, app: str) -> list[Any]:
    items = (await c.list_all("pods", "default", label_selector=f"app={app}")).items
    return [p for p in items if not p.metadata.HasField("deletion_timestamp")]


async def on_nodes(c: Any, app: str) -> list[str]:
    return sorted(dsu.target_node(p) for p in await live(c, app))


def nodes_are(c: Any, app: str, expected: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await on_nodes(c, app) == sorted(expected)
    return check


async def ready(c: Any, pod: Any) -> None:
    fresh = await c.get(core_pb2.Pod, pod.metadata.name, "default")
    fresh.status.phase = "Running"
    cond = fresh.status.conditions.add(type="Ready", status="True")
    cond.last_transition_time.CopyFrom(now_timestamp())
    await c.update_status(fresh)


async def test_follows_nodes_labels_and_taints(api: Cluster) -> None:
    c = api.client
    for n in ("n1", "n2", "n3"):
        await node(c, n, disk="ssd" if n != "n3" else "hdd")
    await c.create(daemon_set("agent", node_selector={"disk": "ssd"}))
    await eventually(nodes_are(c, "agent", ["n1", "n2"]))
    pod = (await live(c, "agent"))[0]
    # pinned through node affinity, left to the scheduler; the daemon tolerations added
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    (term,) = terms.node_selector_terms
    assert [(f.key, f.operator, list(f.values)) for f in term.match_fields] == [
        ("metadata.name", "In", [dsu.target_node(pod)])]
    assert not pod.spec.node_name
    tols = {(t.key, t.effect) for t in pod.spec.tolerations}
    assert set(dsu.DAEMON_TOLERATIONS) <= tols
    assert pod.metadata.labels[dsu.REVISION_HASH_LABEL]

    async def status(desired: int, current: int, mis: int = 0) -> bool:
        s = (await c.get(apps_pb2.DaemonSet, "agent", "default")).status
        return (s.desired_number_scheduled, s.current_number_scheduled,
                s.number_misscheduled) == (desired, current, mis)

    await eventually(lambda: status(2, 2))
    await patch_node(c, "n3", {"metadata": {"labels": {"disk": "ssd"}}})  # starts matching
    await eventually(nodes_are(c, "agent", ["n1", "n2", "n3"]))
    await patch_node(c, "n1", {"metadata": {"labels": {"disk": "hdd"}}})  # stops matching
    await eventually(nodes_are(c, "agent", ["n2", "n3"]))
    await node(c, "n4", disk="ssd")  # joins
    await eventually(nodes_are(c, "agent", ["n2", "n3", "n4"]))
    # NoSchedule: the pod there stays; NoExecute: it goes
    await patch_node(c, "n2", {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})
    await asyncio.sleep(0.3)
    assert await on_nodes(c, "agent") == ["n2", "n3", "n4"]
    await eventually(lambda: status(2, 2, 1))
    await patch_node(c, "n3", {"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}})
    await eventually(nodes_are(c, "agent", ["n2", "n4"]))
    # the taints Kubernetes tolerates for daemons do not keep them away
    await patch_node(c, "n1", {"metadata": {"labels": {"disk": "ssd"}}, "spec": {
        "unschedulable": True,
        "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}})
    await eventually(nodes_are(c, "agent", ["n1", "n2", "n4"]))
    await c.delete(core_pb2.Node, "n4")  # leaves: its unscheduled pod goes
    await eventually(nodes_are(c, "agent", ["n1", "n2"]))


async def revisions(c: Any, name: str) -> list[tuple[int, str]]:
    items = (await c.list_all("controllerrevisions", "default")).items
    return sorted((r.revision, r.metadata.labels[dsu.REVISION_HASH_LABEL]) for r in items
                  if r.metadata.name.startswith(f"{name}-"))


async def test_rolling_update_one_node_at_a_time_and_history(api: Cluster) -> None:
    c = api.client
    for n in ("n1", "n2", "n3"):
        await node(c, n)
    await c.create(daemon_set("roll"))
    await eventually(nodes_are(c, "roll", ["n1", "n2", "n3"]))
    for p in await live(c, "roll"):
        await ready(c, p)
    first_hash = (await live(c, "roll"))[0].metadata.labels[dsu.REVISION_HASH_LABEL]
    assert [r for r, _ in await revisions(c, "roll")] == [1]

    await set_version(c, "roll", "2")
    seen_down: list[int] = []
    for _ in range(3):
        async def one_replaced() -> bool:
            ps = await live(c, "roll")
            down = sum(1 for p in ps if not any(
                x.type == "Ready" and x.status == "True" for x in p.status.conditions))
            seen_down.append(down + (3 - len(ps)))
            return any(p.metadata.labels[dsu.REVISION_HASH_LABEL] != first_hash
                       and not p.status.conditions for p in ps) and len(ps) == 3
        await eventually(one_replaced)
        for p in await live(c, "roll"):
            if not p.status.conditions:
                await ready(c, p)
    assert max(seen_down) <= 1  # maxUnavailable 1: never two nodes down at once

    async def all_new() -> bool:
        ps = await live(c, "roll")
        return len(ps) == 3 and all(
            p.metadata.labels[dsu.REVISION_HASH_LABEL] != first_hash for p in ps)

    await eventually(all_new)
    revs = await revisions(c, "roll")
    assert [r for r, _ in revs] == [1, 2]
    s = (await c.get(apps_pb2.DaemonSet, "roll", "default")).status
    await eventually(lambda: _updated(c, "roll", 3))
    assert s.desired_number_scheduled == 3
    # back to the first template: its revision becomes number 3
    await set_version(c, "roll", "1")

    async def rolled_back() -> bool:
        return await revisions(c, "roll") == sorted([(2, revs[1][1]), (3, first_hash)])

    await eventually(rolled_back)


async def _updated(c: Any, name: str, n: int) -> bool:
    s = (await c.get(apps_pb2.DaemonSet, name, "default")).status
    return bool(s.updated_number_scheduled == n and s.number_available == n)


async def test_surge_starts_the_new_pod_first(api: Cluster) -> None:
    c = api.client
    await node(c, "n1")
    await c.create(daemon_set("surge", type="RollingUpdate",
                              rollingUpdate={"maxSurge": 1, "maxUnavailable": 0}))
    await eventually(nodes_are(c, "surge", ["n1"]))
    (old,) = await live(c, "surge")
    await ready(c, old)
    await set_version(c, "surge", "2")
    await eventually(nodes_are(c, "surge", ["n1", "n1"]))  # both, side by side
    new = next(p for p in await live(c, "surge") if p.metadata.uid != old.metadata.uid)
    await asyncio.sleep(0.3)
    assert len(await live(c, "surge")) == 2  # the old one waits for the new one
    await ready(c, new)

    async def only_new() -> bool:
        return [p.metadata.uid for p in await live(c, "surge")] == [new.metadata.uid]

    await eventually(only_new)


async def test_on_delete_replaces_only_deleted_pods(api: Cluster) -> None:
    c = api.client
    for n in ("n1", "n2"):
        await node(c, n)
    await c.create(daemon_set("od", type="OnDelete"))
    await eventually(nodes_are(c, "od", ["n1", "n2"]))
    before = {p.metadata.uid for p in await live(c, "od")}
    await set_version(c, "od", "2")
    await asyncio.sleep(0.5)
    assert {p.metadata.uid for p in await live(c, "od")} == before
    victim = (await live(c, "od"))[0]
    await c.delete(core_pb2.Pod, victim.metadata.name, "default")

    async def replaced() -> bool:
        ps = await live(c, "od")
        return len(ps) == 2 and victim.metadata.uid not in {p.metadata.uid for p in ps}

    await eventually(replaced)
    values = sorted(p.spec.containers[0].env[0].value for p in await live(c, "od"))
    assert values == ["1", "2"]


async def test_recreated_daemonset_adopts_its_pods_and_revisions(api: Cluster) -> None:
    c = api.client
    for n in ("n1", "n2"):
        await node(c, n)
    await c.create(daemon_set("again"))
    await eventually(nodes_are(c, "again", ["n1", "n2"]))
    before = {p.metadata.uid for p in await live(c, "again")}
    revs = await revisions(c, "again")
    await c.delete(apps_pb2.DaemonSet, "again", "default", propagation_policy="Orphan")

    async def gone() -> bool:
        # the orphan finalizer holds the old DaemonSet until its dependents are released
        try:
            await c.get(apps_pb2.DaemonSet, "again", "default")
        except errors.NotFound:
            return True
        return False

    await eventually(gone, "the old DaemonSet released by the garbage collector")
    assert all(not p.metadata.owner_references for p in await live(c, "again"))
    created = await c.create(daemon_set("again"))

    async def adopted() -> bool:
        items = (await c.list_all("controllerrevisions", "default")).items
        owned = [r for r in items if any(o.uid == created.metadata.uid
                                         for o in r.metadata.owner_references)]
        pods = await live(c, "again")
        return len(owned) == 1 and all(
            any(o.uid == created.metadata.uid for o in p.metadata.owner_references)
            for p in pods)

    await eventually(adopted)
    await asyncio.sleep(0.3)
    assert {p.metadata.uid for p in await live(c, "again")} == before  # nothing replaced
    assert await revisions(c, "again") == revs


async def fail(c: Any, pod: Any) -> None:
    fresh = await c.get(core_pb2.Pod, pod.metadata.name, "default")
    fresh.status.phase = "Failed"
    await c.update_status(fresh)


@pytest.fixture
async def slow_backoff(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Like ``api``, with a 4 s first failed-pod backoff (long enough to observe)."""
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        def factory(ctx: ControllerContext) -> DaemonSetController:
            return DaemonSetController(ctx, failed_pod_backoff=Backoff(initial=4.0,
                                                                       max_delay=8.0))

        manager = ControllerManager(c.client, controllers={"daemonset": factory})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


async def test_failed_daemon_pods_are_replaced_with_backoff(slow_backoff: Cluster) -> None:
    c = slow_backoff.client
    await node(c, "n1")
    await c.create(daemon_set("flaky"))
    await eventually(nodes_are(c, "flaky", ["n1"]))
    (first,) = await live(c, "flaky")
    await fail(c, first)

    async def replaced(old: Any) -> bool:
        ps = await live(c, "flaky")
        return len(ps) == 1 and ps[0].metadata.uid != old.metadata.uid and \
            ps[0].status.phase != "Failed"

    await eventually(lambda: replaced(first), 3)  # the first failure: at once
    (second,) = await live(c, "flaky")
    await fail(c, second)
    # the node is in backoff (4 s from the first failure): the failed pod stays a while
    await asyncio.sleep(1.0)
    assert [p.metadata.uid for p in await live(c, "flaky")] == [second.metadata.uid]
    await eventually(lambda: replaced(second), 10)
    events = [e for e in (await c.list_all("events", "default")).items
              if e.reason == "FailedDaemonPod"]
    assert events and "will try to kill it" in events[0].message
