"""`flotilla rollout status|history|undo|restart statefulset/NAME` against a real control
plane (its StatefulSet controller; the test makes pods Running and Ready, as a kubelet
would)."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert
from control.api.pb import apps_pb2, core_pb2
from control.cli.errors import CliError
from control.cli.rollout_daemonset import status_message
from tests.conftest import Cluster
from tests.support.cli import flotilla
from tests.support.deployments import simulated_pods

NS = "default"
WAIT = 30.0


def sts_with(generation: int = 2, observed: int = 2, replicas: int = 3, ready: int = 3,
             updated: int = 3, current: int = 3, partition: int = 0, cur: str = "db-1",
             upd: str = "db-1", strategy: str = "RollingUpdate") -> apps_pb2.StatefulSet:
    ss = apps_pb2.StatefulSet()
    ss.metadata.name = "db"
    ss.metadata.generation = generation
    ss.spec.replicas = replicas
    ss.spec.update_strategy.type = strategy
    ss.spec.update_strategy.rolling_update.partition = partition
    s = ss.status
    s.observed_generation, s.ready_replicas = observed, ready
    s.updated_replicas, s.current_replicas = updated, current
    s.current_revision, s.update_revision = cur, upd
    return ss


@pytest.mark.parametrize(("ss", "message", "done"), [
    (sts_with(observed=1), "Waiting for statefulset spec update to be observed...", False),
    (sts_with(ready=1), "Waiting for 2 pods to be ready...", False),
    (sts_with(partition=2, updated=0), "Waiting for partitioned roll out to finish: 0 out of "
     "1 new pods have been updated...", False),
    (sts_with(partition=2, updated=1), "partitioned roll out complete: 1 new pods have been "
     "updated...", True),
    (sts_with(updated=1, upd="db-2"), "waiting for statefulset rolling update to complete 1 "
     "pods at revision db-2...", False),
    (sts_with(), "statefulset rolling update complete 3 pods at revision db-1...", True),
])
def test_status_message(ss: Any, message: str, done: bool) -> None:
    assert status_message(ss) == (message, done)


def test_status_message_refuses_on_delete() -> None:
    with pytest.raises(CliError, match="only available for RollingUpdate"):
        status_message(sts_with(strategy="OnDelete"))


def stateful_set(image: str) -> apps_pb2.StatefulSet:
    out: apps_pb2.StatefulSet = convert.from_dict({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db",
                                                                     "namespace": NS},
        "spec": {"replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}},
        apps_pb2.StatefulSet())
    return out


async def image_is(c: Any, image: str) -> bool:
    ss = await c.get(apps_pb2.StatefulSet, "db", NS)
    return bool(ss.spec.template.spec.containers[0].image == image)


async def test_statefulset_rollout_verbs(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c):
        await c.create(stateful_set("busybox:1"))
        code, out, err = await flotilla(cluster, "rollout", "status", "statefulset/db",
                                        "--timeout", f"{WAIT}s")
        assert code == 0, err
        assert "statefulset rolling update complete 2 pods at revision db-" in out

        ss = await c.get(apps_pb2.StatefulSet, "db", NS)
        ss.spec.template.spec.containers[0].image = "busybox:2"
        await c.update(ss)
        code, out, err = await flotilla(cluster, "rollout", "status", "sts/db",
                                        "--timeout", f"{WAIT}s")
        assert code == 0, err
        assert "statefulset rolling update complete 2 pods" in out
        pods = (await c.list_all(core_pb2.Pod, NS, label_selector="app=db")).items
        assert {p.spec.containers[0].image for p in pods} == {"busybox:2"}

        code, out, err = await flotilla(cluster, "rollout", "history", "statefulset/db")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == "statefulset.apps/db"
        assert [ln.split()[0] for ln in lines[2:4]] == ["1", "2"]

        code, out, err = await flotilla(cluster, "rollout", "undo", "statefulset/db")
        assert (code, out.strip()) == (0, "statefulset.apps/db rolled back"), err
        assert await image_is(c, "busybox:1")
        code, out, err = await flotilla(cluster, "rollout", "status", "statefulset/db",
                                        "--timeout", f"{WAIT}s")
        assert code == 0, err

        code, out, err = await flotilla(cluster, "rollout", "restart", "statefulset/db")
        assert (code, out.strip()) == (0, "statefulset.apps/db restarted"), err
        ss = await c.get(apps_pb2.StatefulSet, "db", NS)
        assert "kubectl.kubernetes.io/restartedAt" in ss.spec.template.metadata.annotations

        code, _, err = await flotilla(cluster, "rollout", "pause", "statefulset/db")
        assert code == 1 and 'statefulsets.apps "db" pausing is not supported' in err
