"""The namespace controller against a real control plane (the server runs the manager):
deleting a namespace deletes its content, waits for what terminates gracefully or is held by
finalizers, then finalizes the namespace, which the apiserver removes."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import convert, errors
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.controllers.namespace import (
    CONTENT_REMAINING,
    FINALIZERS_REMAINING,
    DeletionReport,
    apply_conditions,
    deletion_conditions,
)
from control.server import ControlPlane, ServerOptions
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.objects import cm, deployment, pod


def namespace(name: str) -> core_pb2.Namespace:
    return convert.from_dict({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": name}}, core_pb2.Namespace())


def service(name: str, ns: str) -> core_pb2.Service:
    return convert.from_dict({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": name, "namespace": ns},
                              "spec": {"selector": {"app": name},
                                       "ports": [{"port": 80}]}}, core_pb2.Service())


async def gone(c: ApiClient, resource: str, name: str, ns: str = "") -> bool:
    try:
        await c.get(resource, name, ns)
    except errors.NotFound:
        return True
    return False


def condition(ns: core_pb2.Namespace, ctype: str) -> Any:
    return next((x for x in ns.status.conditions if x.type == ctype), None)


async def fill(c: ApiClient, ns: str) -> None:
    await c.create(namespace(ns))
    for i in range(3):
        await c.create(cm(f"cm-{i}", ns=ns))
    await c.create(service("web", ns))
    d = deployment("web")
    d.metadata.namespace = ns
    await c.create(d)
    await c.create(pod("unbound", ns=ns))  # no node: deleted at once


async def test_manager_runs_the_namespace_controller(cluster: Cluster) -> None:
    manager = cluster.plane.controllers
    assert manager is not None
    assert "controller/namespace" in manager.supervisor.running()
    assert "informer/namespaces" in manager.supervisor.running()


async def test_deleting_a_namespace_deletes_its_content_then_the_namespace(
        cluster: Cluster) -> None:
    c = cluster.client
    await fill(c, "team")
    # a pod bound to a node terminates gracefully: it stays until its agent deletes it
    await c.create(pod("bound", node="node-1", ns="team"))
    _, pending = await c.delete(core_pb2.Namespace, "team")
    assert pending

    async def only_the_bound_pod_left() -> bool:
        ns = await c.get(core_pb2.Namespace, "team")
        cond = condition(ns, CONTENT_REMAINING)
        return (cond is not None and cond.status == "True"
                and (await c.list_all("configmaps", "team")).items == []
                and (await c.list_all("services", "team")).items == []
                and (await c.list_all("deployments", "team")).items == [])

    await eventually(only_the_bound_pod_left)
    ns = await c.get(core_pb2.Namespace, "team")
    assert ns.status.phase == "Terminating"
    assert list(ns.spec.finalizers) == ["kubernetes"]
    assert "pods has 1 resource instances" in condition(ns, CONTENT_REMAINING).message
    left = (await c.list_all("pods", "team")).items
    assert [p.metadata.name for p in left] == ["bound"]
    assert left[0].metadata.HasField("deletion_timestamp")
    with pytest.raises(errors.Forbidden):
        await c.create(cm("late", ns="team"))

    # what the node's agent does once the containers have stopped
    await c.delete(core_pb2.Pod, "bound", "team", grace_period_seconds=0)
    await eventually(lambda: gone(c, "namespaces", "team"))
    assert (await c.list_all("pods", "team")).items == []


async def test_content_held_by_a_finalizer_holds_the_namespace(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(namespace("held"))
    kept = cm("kept", ns="held")
    kept.metadata.finalizers.append("example.com/keep")
    await c.create(kept)
    await c.delete(core_pb2.Namespace, "held")

    async def reported() -> bool:
        cond = condition(await c.get(core_pb2.Namespace, "held"), FINALIZERS_REMAINING)
        return cond is not None and cond.status == "True"

    await eventually(reported)
    cond = condition(await c.get(core_pb2.Namespace, "held"), FINALIZERS_REMAINING)
    assert "example.com/keep in 1 resource instances" in cond.message

    current = await c.get(core_pb2.ConfigMap, "kept", "held")
    del current.metadata.finalizers[:]
    await c.update(current)
    await eventually(lambda: gone(c, "namespaces", "held"))


async def test_deleting_again_and_empty_namespaces_converge(cluster: Cluster) -> None:
    c = cluster.client
    await fill(c, "a")
    await c.create(namespace("b"))
    await c.delete(core_pb2.Namespace, "a")
    await c.delete(core_pb2.Namespace, "b")
    for name in ("a", "b"):
        # a second delete repeats the first, or finds the controller already done
        with contextlib.suppress(errors.NotFound):
            await c.delete(core_pb2.Namespace, name)
    await eventually(lambda: gone(c, "namespaces", "a"))
    await eventually(lambda: gone(c, "namespaces", "b"))
    # the default namespace is untouched
    assert (await c.get(core_pb2.Namespace, "default")).status.phase == "Active"


async def test_disabled_controllers_leave_the_namespace_terminating(tmp_path: Path) -> None:
    plane = ControlPlane(ServerOptions(data_dir=tmp_path / "data", listen="127.0.0.1:0",
                                       shutdown_grace=0.5, disable={"controllers"}))
    address = await plane.start()
    channel = open_channel(address, plane.admin_credentials)
    try:
        assert plane.controllers is None
        c = ApiClient(channel, address, timeout=10)
        await fill(c, "stuck")
        await c.delete(core_pb2.Namespace, "stuck")
        await asyncio.sleep(1.0)  # far longer than the controller needs when it runs
        ns = await c.get(core_pb2.Namespace, "stuck")
        assert ns.status.phase == "Terminating"
        assert list(ns.spec.finalizers) == ["kubernetes"]
        assert len((await c.list_all("configmaps", "stuck")).items) == 3
    finally:
        await channel.close(None)
        await plane.stop()


def test_conditions_follow_the_report() -> None:
    status = core_pb2.NamespaceStatus(phase="Terminating")
    t1, t2 = Timestamp(seconds=100), Timestamp(seconds=200)
    busy = DeletionReport(remaining={"pods": 2}, finalizers={"example.com/x": 1})
    assert apply_conditions(status, deletion_conditions(busy), t1)
    assert not apply_conditions(status, deletion_conditions(busy), t2)  # nothing new
    by_type = {x.type: x for x in status.conditions}
    assert by_type[CONTENT_REMAINING].status == "True"
    assert by_type[CONTENT_REMAINING].reason == "SomeResourcesRemain"
    assert by_type["NamespaceDeletionContentFailure"].status == "False"
    assert apply_conditions(status, deletion_conditions(DeletionReport()), t2)
    by_type = {x.type: x for x in status.conditions}
    assert by_type[CONTENT_REMAINING].status == "False"
    assert by_type[CONTENT_REMAINING].last_transition_time.seconds == 200
    assert by_type[FINALIZERS_REMAINING].reason == "ContentHasNoFinalizers"
    failed = DeletionReport(failures=["listing pods: boom"])
    assert not failed.done
    apply_conditions(status, deletion_conditions(failed), t2)
    assert "1 remaining: listing pods: boom" in status.conditions[0].message
