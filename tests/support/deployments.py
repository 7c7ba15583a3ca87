"""Deployments in tests against a real apiserver: build one, simulate its pods becoming
ready (no agent), read its ReplicaSets, pods and conditions, change it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from control.api import convert, deployutil, errors
from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import is_pod_ready
from control.api.timeutil import time_at
from control.client.client import ApiClient
from control.controllers import deployment_util as du

NS = "default"


def deployment(
    name: str,
    replicas: int = 3,
    *,
    image: str = "v1",
    surge: Any = 1,
    unavailable: Any = 0,
    strategy: str = "RollingUpdate",
    deadline: int | None = None,
    history: int | None = None,
) -> apps_pb2.Deployment:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        },
    }
    if strategy == "Recreate":
        spec["strategy"] = {"type": "Recreate"}
    else:
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
        }
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    if history is not None:
        spec["revisionHistoryLimit"] = history
    return convert.from_dict(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        },
        apps_pb2.Deployment(),
    )


def image_of(pod: Any) -> str:
    return str(pod.spec.containers[0].image)


class PodSimulator:
    """The kubelet's part, for pods in one namespace: Running + Ready when ``ready(pod)``
    allows it; a pod being deleted is deleted for good (what an agent does once the
    containers stopped)."""

    def __init__(self, client: ApiClient, ready: Callable[[Any], bool] = lambda _p: True):
        self.client = client
        self.ready = ready
        self._task: asyncio.Task[None] | None = None

    async def _handle(self, pod: Any) -> None:
        meta = pod.metadata
        try:
            if meta.HasField("deletion_timestamp"):
                await self.client.delete(core_pb2.Pod, meta.name, NS, grace_period_seconds=0)
                return
            if is_pod_ready(pod) or not self.ready(pod):
                return
            new = core_pb2.Pod()
            new.CopyFrom(pod)
            new.status.phase = "Running"
            del new.status.conditions[:]
            now = time_at(time.time())
            for ctype in ("Initialized", "ContainersReady", "Ready", "PodScheduled"):
                new.status.conditions.add(type=ctype, status="True", last_transition_time=now)
            await self.client.update_status(new)
        except (errors.NotFound, errors.Conflict):
            pass  # gone, or changed: the next event brings it back

    async def _run(self) -> None:
        while True:
            listing = await self.client.list(core_pb2.Pod, NS)
            for pod in listing.items:
                await self._handle(pod)
            with contextlib.suppress(errors.Gone):
                async for ev in self.client.watch(
                    core_pb2.Pod, NS, resource_version=listing.resource_version
                ):
                    if ev.type in ("ADDED", "MODIFIED") and ev.object is not None:
                        await self._handle(ev.object)

    async def recheck(self) -> None:
        """Look at every pod again (after ``ready`` changed its mind)."""
        for pod in (await self.client.list(core_pb2.Pod, NS)).items:
            await self._handle(pod)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pod-simulator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@contextlib.asynccontextmanager
async def simulated_pods(
    client: ApiClient, ready: Callable[[Any], bool] = lambda _p: True
) -> AsyncIterator[PodSimulator]:
    sim = PodSimulator(client, ready)
    sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def get_deploy(c: ApiClient, name: str) -> apps_pb2.Deployment:
    d: apps_pb2.Deployment = await c.get(apps_pb2.Deployment, name, NS)
    return d


async def replica_sets(c: ApiClient, name: str) -> list[Any]:
    return [
        rs
        for rs in (await c.list(apps_pb2.ReplicaSet, NS)).items
        if rs.metadata.labels.get("app") == name
    ]


async def pods(c: ApiClient, name: str) -> list[Any]:
    return [
        p
        for p in (await c.list(core_pb2.Pod, NS, label_selector=f"app={name}")).items
        if not p.metadata.HasField("deletion_timestamp")
    ]


def condition(d: apps_pb2.Deployment, ctype: str) -> tuple[str, str] | None:
    cond = du.get_condition(d.status, ctype)
    return (cond.status, cond.reason) if cond is not None else None


async def rolled_out(c: ApiClient, name: str, image: str | None = None) -> bool:
    """The rollout is complete: every replica updated and available, nothing old left."""
    d = await get_deploy(c, name)
    try:
        _, done = deployutil.rollout_status_message(d)
    except deployutil.RolloutStalled:
        return False
    if not done:
        return False
    if image is not None and d.spec.template.spec.containers[0].image != image:
        return False
    live = await pods(c, name)
    return len(live) == d.spec.replicas and all(image is None or image_of(p) == image for p in live)


async def set_image(c: ApiClient, name: str, image: str) -> None:
    for _ in range(5):
        d = await get_deploy(c, name)
        d.spec.template.spec.containers[0].image = image
        try:
            await c.update(d)
            return
        except errors.Conflict:
            continue
    raise AssertionError("could not update the deployment")


async def mutate(c: ApiClient, name: str, change: Callable[[apps_pb2.Deployment], None]) -> None:
    for _ in range(5):
        d = await get_deploy(c, name)
        change(d)
        try:
            await c.update(d)
            return
        except errors.Conflict:
            continue
    raise AssertionError("could not update the deployment")
