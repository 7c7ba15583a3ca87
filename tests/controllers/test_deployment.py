"""The Deployment controller end to end against a real control plane (the server runs the
controller manager: the Deployment controller makes ReplicaSets, the ReplicaSet controller
makes pods). No agent runs pods: ``PodSimulator`` plays the kubelet, marking pods Running
and Ready (only those its ``ready`` predicate allows) and finishing the deletion of pods
being deleted. Every wait has a timeout; every helper task is cancelled in a finally."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from control.api import deployutil
from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import controller_of, is_pod_ready
from control.client.client import ApiClient
from control.controllers import deployment_util as du
from control.controllers.manager import ControllerManager
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.deployments import (
    NS,
    condition,
    deployment,
    get_deploy,
    image_of,
    mutate,
    pods,
    replica_sets,
    rolled_out,
    set_image,
    simulated_pods,
)

WAIT = 20.0


class ReadyWatcher:
    """Follows the pods of one app through a watch and records, after every event, how
    many are Ready and how many exist: the minimum and maximum over the whole run."""

    def __init__(self, client: ApiClient, app: str) -> None:
        self.client = client
        self.app = app
        self.pods: dict[str, Any] = {}
        self.min_ready: int | None = None
        self.max_pods = 0
        self.log: list[tuple[str, str, str]] = []  # (event, pod, image)
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    def _record(self) -> None:
        ready = sum(1 for p in self.pods.values() if is_pod_ready(p))
        self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)
        self.max_pods = max(self.max_pods, len(self.pods))

    async def _run(self) -> None:
        listing = await self.client.list(core_pb2.Pod, NS, label_selector=f"app={self.app}")
        self.pods = {p.metadata.name: p for p in listing.items
                     if not p.metadata.HasField("deletion_timestamp")}
        self._record()
        self._started.set()
        async for ev in self.client.watch(core_pb2.Pod, NS, label_selector=f"app={self.app}",
                                          resource_version=listing.resource_version):
            if ev.object is None:
                continue
            name = ev.object.metadata.name
            self.log.append((ev.type, name, image_of(ev.object)))
            if ev.type == "DELETED" or ev.object.metadata.HasField("deletion_timestamp"):
                self.pods.pop(name, None)
            else:
                self.pods[name] = ev.object
            self._record()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ready-watcher/{self.app}")
        async with asyncio.timeout(WAIT):
            await self._started.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- tests ----------------------------------------------------------------------------------


async def test_manager_runs_the_deployment_controller(cluster: Cluster) -> None:
    manager = cluster.plane.controllers
    assert manager is not None
    assert "controller/deployment" in manager.supervisor.running()


async def test_a_deployment_of_three_becomes_available(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c):
        await c.create(deployment("web", 3))
        await eventually(lambda: rolled_out(c, "web"))
    d = await get_deploy(c, "web")
    s = d.status
    assert (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas,
            s.unavailable_replicas, s.observed_generation) == (3, 3, 3, 3, 0, 1)
    assert condition(d, du.AVAILABLE) == ("True", du.MIN_REPLICAS_AVAILABLE)
    assert condition(d, deployutil.PROGRESSING) == ("True", du.NEW_RS_AVAILABLE)
    assert d.metadata.annotations[deployutil.REVISION_ANNOTATION] == "1"
    [rs] = await replica_sets(c, "web")
    pod_hash = rs.spec.template.metadata.labels[deployutil.HASH_LABEL]
    assert rs.metadata.name == f"web-{pod_hash}"
    assert rs.spec.selector.match_labels[deployutil.HASH_LABEL] == pod_hash
    assert rs.metadata.annotations[deployutil.REVISION_ANNOTATION] == "1"
    assert rs.metadata.annotations[deployutil.DESIRED_REPLICAS_ANNOTATION] == "3"
    assert rs.metadata.annotations[deployutil.MAX_REPLICAS_ANNOTATION] == "4"
    ref = controller_of(rs)
    assert ref is not None and ref.uid == d.metadata.uid and ref.kind == "Deployment"
    assert all(p.metadata.labels[deployutil.HASH_LABEL] == pod_hash for p in await pods(c, "web"))


async def test_rolling_update_never_drops_below_min_available(cluster: Cluster) -> None:
    c = cluster.client
    replicas, max_unavailable, max_surge = 4, 1, 1
    async with simulated_pods(c):
        await c.create(deployment("roll", replicas, surge=max_surge,
                                  unavailable=max_unavailable))
        await eventually(lambda: rolled_out(c, "roll"))
        watcher = ReadyWatcher(c, "roll")
        await watcher.start()
        try:
            await set_image(c, "roll", "v2")
            await eventually(lambda: rolled_out(c, "roll", "v2"))
        finally:
            await watcher.stop()
    assert watcher.min_ready is not None
    assert watcher.min_ready >= replicas - max_unavailable, watcher.log
    # the rollout went through the surge, and the old pods went away
    assert any(img == "v2" for _, _, img in watcher.log)
    rss = await replica_sets(c, "roll")
    assert sorted((rs.spec.replicas, rs.metadata.annotations[deployutil.REVISION_ANNOTATION])
                  for rs in rss) == [(0, "1"), (replicas, "2")]
    d = await get_deploy(c, "roll")
    assert d.metadata.annotations[deployutil.REVISION_ANNOTATION] == "2"


async def test_recreate_removes_old_pods_before_creating_new_ones(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c):
        await c.create(deployment("rec", 3, strategy="Recreate"))
        await eventually(lambda: rolled_out(c, "rec"))
        watcher = ReadyWatcher(c, "rec")
        await watcher.start()
        try:
            await set_image(c, "rec", "v2")
            await eventually(lambda: rolled_out(c, "rec", "v2"))
        finally:
            await watcher.stop()
    old_alive: set[str] = set()
    first_new = None
    for i, (etype, name, img) in enumerate(watcher.log):
        if img == "v2" and etype == "ADDED" and first_new is None:
            first_new = i
            assert not old_alive, f"new pod {name} created while {old_alive} still exist"
    assert first_new is not None
    # every old pod was deleted before the first new one appeared
    deleted_before = {n for et, n, img in watcher.log[:first_new] if et == "DELETED"}
    assert len(deleted_before) == 3


async def test_scaling_mid_rollout_is_proportional(cluster: Cluster) -> None:
    c = cluster.client
    # new pods stay unready, so the rollout stops part way: old 4, new 2 (maxSurge 2)
    async with simulated_pods(c, ready=lambda p: image_of(p) == "v1") as sim:
        await c.create(deployment("prop", 4, surge=2, unavailable=0))
        await eventually(lambda: rolled_out(c, "prop"))
        await set_image(c, "prop", "v2")

        async def stuck_half_way() -> bool:
            sizes = {rs.spec.template.spec.containers[0].image: rs.spec.replicas
                     for rs in await replica_sets(c, "prop")}
            return sizes == {"v1": 4, "v2": 2}

        await eventually(stuck_half_way)
        await c.update_scale(apps_pb2.Deployment, "prop", 8, NS)

        async def scaled() -> bool:
            sizes = {rs.spec.template.spec.containers[0].image: rs.spec.replicas
                     for rs in await replica_sets(c, "prop")}
            return sum(sizes.values()) == 10 and sizes.get("v1", 0) > 4 and sizes["v2"] > 2

        await eventually(scaled)
        sizes = {rs.spec.template.spec.containers[0].image: rs.spec.replicas
                 for rs in await replica_sets(c, "prop")}
        # 4:2 of 6 becomes 10 in proportion: 4*10/6 = 6.7 -> 7, 2*10/6 = 3.3 -> 3
        assert sizes == {"v1": 7, "v2": 3}
        for rs in await replica_sets(c, "prop"):
            assert rs.metadata.annotations[deployutil.DESIRED_REPLICAS_ANNOTATION] == "8"
        sim.ready = lambda _p: True
        await sim.recheck()
        await eventually(lambda: rolled_out(c, "prop", "v2"))
    assert len(await pods(c, "prop")) == 8


async def test_pause_holds_the_rollout_and_resume_finishes_it(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c):
        await c.create(deployment("pz", 2, deadline=600))
        await eventually(lambda: rolled_out(c, "pz"))

        def pause(d: apps_pb2.Deployment) -> None:
            d.spec.paused = True

        await mutate(c, "pz", pause)

        async def paused() -> bool:
            return condition(await get_deploy(c, "pz"), deployutil.PROGRESSING) == (
                "Unknown", du.PAUSED)

        await eventually(paused)
        await set_image(c, "pz", "v2")
        await c.update_scale(apps_pb2.Deployment, "pz", 3, NS)

        async def scaled_not_rolled() -> bool:
            rss = await replica_sets(c, "pz")
            return [rs.spec.replicas for rs in rss] == [3] and len(await pods(c, "pz")) == 3

        await eventually(scaled_not_rolled)  # paused: scaling yes, no new ReplicaSet
        await asyncio.sleep(0.3)
        assert len(await replica_sets(c, "pz")) == 1
        d = await get_deploy(c, "pz")
        assert d.status.observed_generation == d.metadata.generation

        def resume(d: apps_pb2.Deployment) -> None:
            d.spec.paused = False

        await mutate(c, "pz", resume)
        await eventually(lambda: rolled_out(c, "pz", "v2"))
    assert condition(await get_deploy(c, "pz"), deployutil.PROGRESSING) == ("True",
                     du.NEW_RS_AVAILABLE)


async def test_a_stalled_rollout_exceeds_its_progress_deadline(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c, ready=lambda p: image_of(p) == "v1"):
        await c.create(deployment("stall", 2, deadline=2))
        await eventually(lambda: rolled_out(c, "stall"))
        await set_image(c, "stall", "broken")

        async def timed_out() -> bool:
            return condition(await get_deploy(c, "stall"), deployutil.PROGRESSING) == (
                "False", deployutil.TIMED_OUT)

        await eventually(timed_out)
    d = await get_deploy(c, "stall")
    # still serving: the old pods were kept (maxUnavailable 0)
    assert d.status.available_replicas == 2
    assert condition(d, du.AVAILABLE) == ("True", du.MIN_REPLICAS_AVAILABLE)

    async def warned() -> bool:
        # the recorder writes Events from its own task, after the status write
        return any(e.reason == deployutil.TIMED_OUT and e.involved_object.name == "stall"
                   for e in (await c.list(core_pb2.Event, NS)).items)

    await eventually(warned, "a ProgressDeadlineExceeded event")


async def test_rollover_and_revision_history_limit(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c, ready=lambda p: image_of(p) in ("v1", "v4")) as sim:
        await c.create(deployment("hist", 2, history=1))
        await eventually(lambda: rolled_out(c, "hist"))
        # v2 never becomes ready; v3 replaces it mid-rollout (rollover), then v4
        await set_image(c, "hist", "v2")

        async def v2_started() -> bool:
            return any(rs.spec.template.spec.containers[0].image == "v2" and rs.spec.replicas
                       for rs in await replica_sets(c, "hist"))

        await eventually(v2_started)
        await set_image(c, "hist", "v3")
        await eventually(lambda: rolled_out_partially(c, "hist", "v3"))
        await set_image(c, "hist", "v4")
        await sim.recheck()
        await eventually(lambda: rolled_out(c, "hist", "v4"))

        async def history_trimmed() -> bool:
            return len(await replica_sets(c, "hist")) == 2  # the new one + 1 old

        await eventually(history_trimmed)
    revisions = sorted(int(rs.metadata.annotations[deployutil.REVISION_ANNOTATION])
                       for rs in await replica_sets(c, "hist"))
    assert revisions == [3, 4]


async def rolled_out_partially(c: ApiClient, name: str, image: str) -> bool:
    """A ReplicaSet for ``image`` exists and has replicas."""
    return any(rs.spec.template.spec.containers[0].image == image and rs.spec.replicas > 0
               for rs in await replica_sets(c, name))


async def test_orphan_replica_sets_are_adopted_and_relabelled_ones_released(
        cluster: Cluster) -> None:
    c = cluster.client
    d = deployment("adopt", 0)
    orphan = du.new_replica_set(d, None)
    del orphan.metadata.owner_references[:]
    await c.create(orphan)
    created = await c.create(d)

    async def adopted() -> bool:
        rs = await c.get(apps_pb2.ReplicaSet, orphan.metadata.name, NS)
        ref = controller_of(rs)
        return ref is not None and ref.uid == created.metadata.uid

    await eventually(adopted)
    # the adopted ReplicaSet is the current revision: no second one is made
    assert len(await replica_sets(c, "adopt")) == 1
    rs = await c.get(apps_pb2.ReplicaSet, orphan.metadata.name, NS)
    rs.metadata.labels["app"] = "elsewhere"
    await c.update(rs)

    async def released() -> bool:
        got = await c.get(apps_pb2.ReplicaSet, orphan.metadata.name, NS)
        return controller_of(got) is None

    await eventually(released)
    # and the Deployment makes itself a new one for its template
    await eventually(lambda: _count_owned(c, created.metadata.uid, 1))


async def _count_owned(c: ApiClient, uid: str, n: int) -> bool:
    owned = [rs for rs in (await c.list(apps_pb2.ReplicaSet, NS)).items
             if (ref := controller_of(rs)) is not None and ref.uid == uid]
    return len(owned) == n


async def test_controller_manager_restart_mid_rollout_finishes_it(cluster: Cluster) -> None:
    c = cluster.client
    old_manager = cluster.plane.controllers
    assert old_manager is not None
    async with simulated_pods(c, ready=lambda p: image_of(p) == "v1") as sim:
        await c.create(deployment("again", 3, surge=1, unavailable=0))
        await eventually(lambda: rolled_out(c, "again"))
        await set_image(c, "again", "v2")
        await eventually(lambda: rolled_out_partially(c, "again", "v2"))
        await old_manager.stop()
        manager = ControllerManager.connect(cluster.address, cluster.credentials)
        try:
            await manager.start()
            sim.ready = lambda _p: True
            await sim.recheck()
            await eventually(lambda: rolled_out(c, "again", "v2"))
        finally:
            await manager.stop()
    rss = await replica_sets(c, "again")
    assert sorted(rs.spec.replicas for rs in rss) == [0, 3]  # no second new ReplicaSet
    assert len(await pods(c, "again")) == 3
