"""`flotilla rollout status|history|undo|restart daemonset/NAME` against a real control
plane (its DaemonSet controller; Nodes are API objects and the test makes pods Ready, as a
kubelet would)."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert
from control.api.pb import apps_pb2, core_pb2
from control.cli.errors import CliError
from control.cli.rollout_daemonset import rollback_target, status_message
from tests.conftest import Cluster
from tests.support.cli import flotilla
from tests.support.deployments import simulated_pods

NS = "default"
WAIT = 20.0


def ds_with(generation: int = 2, observed: int = 2, desired: int = 3, updated: int = 3,
            available: int = 3, strategy: str = "RollingUpdate") -> apps_pb2.DaemonSet:
    ds = apps_pb2.DaemonSet()
    ds.metadata.name = "log"
    ds.metadata.generation = generation
    ds.spec.update_strategy.type = strategy
    s = ds.status
    s.observed_generation, s.desired_number_scheduled = observed, desired
    s.updated_number_scheduled, s.number_available = updated, available
    return ds


@pytest.mark.parametrize(("ds", "message", "done"), [
    (ds_with(observed=1), "Waiting for daemon set spec update to be observed...", False),
    (ds_with(updated=1), 'Waiting for daemon set "log" rollout to finish: 1 out of 3 new pods '
     "have been updated...", False),
    (ds_with(available=2), 'Waiting for daemon set "log" rollout to finish: 2 of 3 updated '
     "pods are available...", False),
    (ds_with(), 'daemon set "log" successfully rolled out', True),
])
def test_status_message(ds: Any, message: str, done: bool) -> None:
    assert status_message(ds) == (message, done)


def test_status_message_refuses_on_delete() -> None:
    with pytest.raises(CliError, match="only available for RollingUpdate"):
        status_message(ds_with(strategy="OnDelete"))


def test_rollback_target() -> None:
    revs = [apps_pb2.ControllerRevision(revision=n) for n in (3, 1, 2)]
    assert rollback_target(revs, 0).revision == 2  # type: ignore[union-attr]
    assert rollback_target(revs, 1).revision == 1  # type: ignore[union-attr]
    assert rollback_target(revs[:1], 0) is None
    with pytest.raises(CliError, match="unable to find specified revision 9"):
        rollback_target(revs, 9)


def daemon_set(image: str) -> apps_pb2.DaemonSet:
    out: apps_pb2.DaemonSet = convert.from_dict({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "log", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "log"}},
                 "template": {"metadata": {"labels": {"app": "log"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}},
        apps_pb2.DaemonSet())
    return out


async def image_is(c: Any, image: str) -> bool:
    ds = await c.get(apps_pb2.DaemonSet, "log", NS)
    return bool(ds.spec.template.spec.containers[0].image == image)


async def test_daemonset_rollout_verbs(cluster: Cluster) -> None:
    c = cluster.client
    for name in ("n1", "n2"):
        node = core_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = name
        await c.create(node)
    async with simulated_pods(c):
        await c.create(daemon_set("busybox:1"))
        code, out, err = await flotilla(cluster, "rollout", "status", "daemonset/log",
                                        "--timeout", f"{WAIT}s")
        assert code == 0, err
        assert out.rstrip().endswith('daemon set "log" successfully rolled out')

        ds = await c.get(apps_pb2.DaemonSet, "log", NS)
        ds.spec.template.spec.containers[0].image = "busybox:2"
        await c.update(ds)
        code, out, err = await flotilla(cluster, "rollout", "status", "ds/log",
                                        "--timeout", f"{WAIT}s")
        assert code == 0, err
        assert out.rstrip().endswith('daemon set "log" successfully rolled out')

        code, out, err = await flotilla(cluster, "rollout", "history", "daemonset/log")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == "daemonset.apps/log"
        assert [ln.split()[0] for ln in lines[2:4]] == ["1", "2"]
        code, out, _ = await flotilla(cluster, "rollout", "history", "daemonset/log",
                                      "--revision", "1")
        assert "with revision #1" in out and "busybox:1" in out

        code, out, err = await flotilla(cluster, "rollout", "undo", "daemonset/log")
        assert (code, out.strip()) == (0, "daemonset.apps/log rolled back"), err
        assert await image_is(c, "busybox:1")
        code, out, err = await flotilla(cluster, "rollout", "status", "daemonset/log",
                                        "--timeout", f"{WAIT}s")
        assert code == 0, err

        code, out, err = await flotilla(cluster, "rollout", "restart", "daemonset/log")
        assert (code, out.strip()) == (0, "daemonset.apps/log restarted"), err
        ds = await c.get(apps_pb2.DaemonSet, "log", NS)
        assert "kubectl.kubernetes.io/restartedAt" in ds.spec.template.metadata.annotations

        code, _, err = await flotilla(cluster, "rollout", "pause", "daemonset/log")
        assert code == 1 and "pausing is not supported" in err
        code, _, err = await flotilla(cluster, "rollout", "undo", "daemonset/log",
                                      "--to-revision", "42")
        assert code == 1 and "unable to find specified revision 42" in err
