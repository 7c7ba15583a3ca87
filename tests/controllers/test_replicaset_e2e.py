"""The ReplicaSet / ReplicationController controller against a real control plane (the
server runs the controller manager). No agent runs pods: readiness is simulated with
update_status, scheduling with the binding subresource."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from control.api import convert, errors
from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import controller_of
from control.api.timeutil import now_timestamp
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.controllers.manager import ControllerContext, ControllerManager
from control.controllers.replicaset import REPLICA_FAILURE, ReplicaSetController
from control.server import ControlPlane, ServerOptions
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.replicasets import bare_pod, count_is, live_pods, replica_set

TIMEOUT = 15.0


def replication_controller(name: str, replicas: int) -> core_pb2.ReplicationController:
    rc: core_pb2.ReplicationController = convert.from_dict({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"app": name},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }, core_pb2.ReplicationController())
    return rc


async def make_ready(c: ApiClient, pod: Any) -> None:
    fresh = await c.get(core_pb2.Pod, pod.metadata.name, "default")
    fresh.status.phase = "Running"
    cond = fresh.status.conditions.add(type="Ready", status="True")
    cond.last_transition_time.CopyFrom(now_timestamp())
    await c.update_status(fresh)


def owned_by(pod: Any, owner: Message) -> bool:
    ref = controller_of(pod)
    return ref is not None and ref.uid == owner.metadata.uid  # type: ignore[attr-defined]


async def test_replicaset_creates_scales_and_reports_status(cluster: Cluster) -> None:
    c = cluster.client
    rs = await c.create(replica_set("web", 3))
    await eventually(lambda: count_is(c, "app=web", 3))
    pods = await live_pods(c, "app=web")
    for p in pods:
        ref = controller_of(p)
        assert ref is not None
        assert (ref.kind, ref.name, ref.uid, ref.api_version) == (
            "ReplicaSet", "web", rs.metadata.uid, "apps/v1")
        assert ref.block_owner_deletion
        assert p.metadata.name.startswith("web-")

    async def status_is(replicas: int, ready: int) -> bool:
        got = await c.get(apps_pb2.ReplicaSet, "web", "default")
        s = got.status
        return (s.replicas == replicas and s.ready_replicas == ready
                and s.available_replicas == ready and s.fully_labeled_replicas == replicas
                and s.observed_generation == got.metadata.generation)

    await eventually(lambda: status_is(3, 0))

    # scale up through the scale subresource
    await c.update_scale("replicasets", "web", 5, "default")
    await eventually(lambda: count_is(c, "app=web", 5))
    await asyncio.sleep(0.3)  # a stale cache must not make it create more
    assert await count_is(c, "app=web", 5)

    # make two pods valuable: one bound and ready (the most valuable), one only bound
    pods = sorted(await live_pods(c, "app=web"), key=lambda p: p.metadata.name)
    keeper, bound = pods[0], pods[1]
    await c.bind("default", keeper.metadata.name, "node-1")
    await make_ready(c, keeper)
    await c.bind("default", bound.metadata.name, "node-2")
    await eventually(lambda: status_is(5, 1))

    await c.update_scale("replicasets", "web", 2, "default")
    await eventually(lambda: count_is(c, "app=web", 2))
    left = {p.metadata.name for p in await live_pods(c, "app=web")}
    assert left == {keeper.metadata.name, bound.metadata.name}
    await c.update_scale("replicasets", "web", 1, "default")
    await eventually(lambda: count_is(c, "app=web", 1))
    assert [p.metadata.name for p in await live_pods(c, "app=web")] == [keeper.metadata.name]
    await eventually(lambda: status_is(1, 1))

    reasons = {(e.reason, e.involved_object.name)
               for e in (await c.list_all("events", "default")).items}
    assert ("SuccessfulCreate", "web") in reasons
    assert ("SuccessfulDelete", "web") in reasons


async def test_replaces_deleted_and_terminal_pods(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(replica_set("heal", 2))
    await eventually(lambda: count_is(c, "app=heal", 2))
    first = (await live_pods(c, "app=heal"))[0]
    await c.delete(core_pb2.Pod, first.metadata.name, "default")
    await eventually(lambda: count_is(c, "app=heal", 2))
    assert first.metadata.name not in {p.metadata.name for p in await live_pods(c, "app=heal")}

    # a Succeeded pod no longer counts: a replacement comes
    done = (await live_pods(c, "app=heal"))[0]
    done.status.phase = "Succeeded"
    await c.update_status(done)

    async def two_active() -> bool:
        pods = await live_pods(c, "app=heal")
        return len([p for p in pods if p.status.phase != "Succeeded"]) == 2

    await eventually(two_active)


async def test_adopts_orphans_and_releases_relabelled_pods(cluster: Cluster) -> None:
    c = cluster.client
    orphan = await c.create(bare_pod("orphan", app="adopt"))
    rs = await c.create(replica_set("adopt", 2))
    await eventually(lambda: count_is(c, "app=adopt", 2))

    async def adopted() -> bool:
        return owned_by(await c.get(core_pb2.Pod, "orphan", "default"), rs)

    await eventually(adopted)
    pods = await live_pods(c, "app=adopt")
    assert orphan.metadata.name in {p.metadata.name for p in pods}
    assert all(owned_by(p, rs) for p in pods)

    # relabel the adopted pod out of the selector: released, and replaced
    fresh = await c.get(core_pb2.Pod, "orphan", "default")
    fresh.metadata.labels["app"] = "elsewhere"
    await c.update(fresh)

    async def released() -> bool:
        p = await c.get(core_pb2.Pod, "orphan", "default")
        return not p.metadata.owner_references

    await eventually(released)
    await eventually(lambda: count_is(c, "app=adopt", 2))
    assert all(p.metadata.name != "orphan" for p in await live_pods(c, "app=adopt"))

    # a pod controlled by someone else is never adopted (here a ConfigMap controls it)
    other = await c.create(convert.from_dict(
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "holder", "namespace": "default"}}, core_pb2.ConfigMap()))
    foreign = bare_pod("foreign", app="adopt")
    ref = foreign.metadata.owner_references.add(api_version="v1", kind="ConfigMap",
                                                name="holder", uid=other.metadata.uid)
    ref.controller = True
    await c.create(foreign)
    await asyncio.sleep(0.5)
    assert owned_by(await c.get(core_pb2.Pod, "foreign", "default"), other)
    assert await count_is(c, "app=adopt", 3)  # 2 of ours + the foreign one


async def test_replication_controller(cluster: Cluster) -> None:
    c = cluster.client
    rc = await c.create(replication_controller("legacy", 3))
    await eventually(lambda: count_is(c, "app=legacy", 3))
    for p in await live_pods(c, "app=legacy"):
        ref = controller_of(p)
        assert ref is not None
        assert (ref.kind, ref.api_version, ref.uid) == ("ReplicationController", "v1",
                                                        rc.metadata.uid)
    await c.update_scale("replicationcontrollers", "legacy", 1, "default")
    await eventually(lambda: count_is(c, "app=legacy", 1))

    async def status_ok() -> bool:
        got = await c.get(core_pb2.ReplicationController, "legacy", "default")
        return got.status.replicas == 1 and got.status.observed_generation == 2

    await eventually(status_ok)
    # an orphan matching the map selector is adopted; the surplus then goes
    await c.create(bare_pod("stray", app="legacy"))
    await eventually(lambda: count_is(c, "app=legacy", 1))


async def test_min_ready_seconds_gates_available(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(replica_set("slow", 1, min_ready=2))
    await eventually(lambda: count_is(c, "app=slow", 1))
    [p] = await live_pods(c, "app=slow")
    await make_ready(c, p)

    async def ready_not_available() -> bool:
        s = (await c.get(apps_pb2.ReplicaSet, "slow", "default")).status
        return s.ready_replicas == 1 and s.available_replicas == 0

    async def available() -> bool:
        s = (await c.get(apps_pb2.ReplicaSet, "slow", "default")).status
        return s.available_replicas == 1

    await eventually(ready_not_available)
    await eventually(available, timeout=8.0)


# -- a refused create: ReplicaFailure and aggregated FailedCreate Events --------------------


class RefusingClient(ApiClient):
    """Refuses pod creation as a quota would, until ``refuse`` is cleared."""

    refuse = True

    async def create(self, obj: Any, *, dry_run: bool = False) -> Any:
        if isinstance(obj, core_pb2.Pod) and self.refuse:
            raise errors.Forbidden('pods "x" is forbidden: exceeded quota: compute, '
                                   'requested: pods=1, used: pods=0, limited: pods=0')
        return await super().create(obj, dry_run=dry_run)


@pytest.fixture
async def refusing(tmp_path: Path) -> AsyncIterator[tuple[ApiClient, RefusingClient]]:
    plane = ControlPlane(ServerOptions(data_dir=tmp_path / "data", listen="127.0.0.1:0",
                                       bookmark_interval=0.2, shutdown_grace=0.5,
                                       disable={"controllers"}))
    address = await plane.start()
    channel = open_channel(address, plane.admin_credentials)
    refusing = RefusingClient(channel, address, timeout=10)

    def factory(ctx: ControllerContext) -> ReplicaSetController:
        return ReplicaSetController(ctx)

    manager = ControllerManager(refusing, controllers={"replicaset": factory})
    # retry fast so that the test sees repeats quickly
    await manager.start()
    try:
        yield ApiClient(channel, address, timeout=10), refusing
    finally:
        await manager.stop()
        await channel.close(None)
        await plane.stop()


async def test_refused_creates_set_replica_failure_and_aggregate_events(
        refusing: tuple[ApiClient, RefusingClient]) -> None:
    c, client = refusing
    await c.create(replica_set("quota", 3))

    async def failing() -> bool:
        rs = await c.get(apps_pb2.ReplicaSet, "quota", "default")
        return any(x.type == REPLICA_FAILURE and x.status == "True"
                   for x in rs.status.conditions)

    await eventually(failing)
    rs = await c.get(apps_pb2.ReplicaSet, "quota", "default")
    cond = next(x for x in rs.status.conditions if x.type == REPLICA_FAILURE)
    assert cond.reason == "FailedCreate"
    assert "exceeded quota" in cond.message

    async def repeated() -> bool:
        evs = [e for e in (await c.list_all("events", "default")).items
               if e.reason == "FailedCreate"]
        return len(evs) == 1 and evs[0].count >= 2

    await eventually(repeated)
    [ev] = [e for e in (await c.list_all("events", "default")).items
            if e.reason == "FailedCreate"]
    assert ev.type == "Warning"
    assert ev.involved_object.kind == "ReplicaSet" and ev.involved_object.name == "quota"
    assert ev.message.startswith("Error creating: ")
    assert ev.first_timestamp.seconds <= ev.last_timestamp.seconds
    # slow start: one refused call per pass, never the whole batch of 3
    assert ev.count < 10

    client.refuse = False
    await eventually(lambda: count_is(c, "app=quota", 3))

    async def recovered() -> bool:
        rs = await c.get(apps_pb2.ReplicaSet, "quota", "default")
        return not rs.status.conditions and rs.status.replicas == 3

    await eventually(recovered)
