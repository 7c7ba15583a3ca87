"""`flotilla drain`: the pod filters as a table, and the verb in-process against a real
control plane (the CLI's own event loop runs in a thread), respecting a
PodDisruptionBudget."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api.pb import apps_pb2, core_pb2, meta_pb2, policy_pb2
from control.cli import verbs_drain
from control.cli.main import main
from control.cli.verbs_drain import (
    DAEMONSET_FATAL,
    DAEMONSET_WARNING,
    LOCAL_STORAGE_FATAL,
    LOCAL_STORAGE_WARNING,
    UNMANAGED_FATAL,
    UNMANAGED_WARNING,
    plan_drain,
)
from tests.conftest import Cluster
from tests.support import eventually

WAIT = 20.0


def mkpod(name: str, owner: str | None = None, *, emptydir: bool = False, phase: str = "",
          mirror: bool = False) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    if owner:
        p.metadata.owner_references.add(kind=owner, name="o", uid="u", controller=True)
    if emptydir:
        p.spec.volumes.add(name="scratch").empty_dir.SetInParent()
    if mirror:
        p.metadata.annotations["kubernetes.io/config.mirror"] = "x"
    p.status.phase = phase or "Running"
    return p


@pytest.mark.parametrize(("pod", "flags", "evicted", "warning", "fatal"), [
    (mkpod("rs", "ReplicaSet"), {}, True, None, None),
    (mkpod("bare"), {}, False, None, UNMANAGED_FATAL),
    (mkpod("bare"), {"force": True}, True, UNMANAGED_WARNING, None),
    (mkpod("done", phase="Succeeded"), {}, True, None, None),  # finished: just deleted
    (mkpod("ds", "DaemonSet"), {}, False, None, DAEMONSET_FATAL),
    (mkpod("ds", "DaemonSet"), {"ignore_daemonsets": True}, False, DAEMONSET_WARNING, None),
    (mkpod("ds", "DaemonSet", phase="Failed"), {}, True, None, None),
    (mkpod("tmp", "ReplicaSet", emptydir=True), {}, False, None, LOCAL_STORAGE_FATAL),
    (mkpod("tmp", "ReplicaSet", emptydir=True), {"delete_emptydir_data": True}, True,
     LOCAL_STORAGE_WARNING, None),
    (mkpod("mirror", mirror=True), {}, False, None, None),
])
def test_plan_drain(pod: core_pb2.Pod, flags: dict[str, bool], evicted: bool,
                    warning: str | None, fatal: str | None) -> None:
    plan = plan_drain([pod], ignore_daemonsets=flags.get("ignore_daemonsets", False),
                      delete_emptydir_data=flags.get("delete_emptydir_data", False),
                      force=flags.get("force", False))
    assert bool(plan.evict) is evicted
    assert list(plan.warnings) == ([warning] if warning else [])
    assert list(plan.fatal) == ([fatal] if fatal else [])
    if fatal:
        assert plan.error_text() == f"cannot delete {fatal}: default/{pod.metadata.name}"


def test_plan_drain_daemonset_gone_with_force() -> None:
    plan = plan_drain([mkpod("ds", "DaemonSet")], ignore_daemonsets=False,
                      delete_emptydir_data=False, force=True,
                      daemonset_exists=lambda _p: False)
    assert [p.metadata.name for p in plan.evict] == ["ds"]


# -- end to end --------------------------------------------------------------------------


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


async def running_pod(c: Any, name: str, node: str, labels: dict[str, str] | None = None,
                      owner: meta_pb2.OwnerReference | None = None) -> Any:
    pod = core_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.metadata.labels.update(labels or {})
    if owner is not None:
        pod.metadata.owner_references.append(owner)
    pod.spec.node_name = node
    pod.spec.containers.add(name="c", image="busybox")
    pod = await c.create(pod)
    pod.status.phase = "Running"
    pod.status.conditions.add(type="Ready", status="True", last_transition_time=now_ts())
    return await c.update_status(pod)


async def add_node(c: Any, name: str) -> None:
    node = core_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    await c.create(node)


async def drain(cluster: Cluster, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.wait_for(asyncio.to_thread(
        main, ["--server", cluster.address, "--config", str(cluster.data_dir / "admin.conf"), "drain", *args], stdout=out, stderr=err), WAIT)
    return code, out.getvalue(), err.getvalue()


async def test_drain_refuses_unmanaged_and_daemonset_pods(cluster: Cluster) -> None:
    c = cluster.client
    await add_node(c, "n1")
    ds = apps_pb2.DaemonSet(api_version="apps/v1", kind="DaemonSet")
    ds.metadata.name, ds.metadata.namespace = "agent", "default"
    ds.spec.selector.match_labels["app"] = "agent"
    ds.spec.template.metadata.labels["app"] = "agent"
    ds.spec.template.spec.containers.add(name="c", image="busybox")
    ds = await c.create(ds)

    async def daemon_pod() -> Any:
        pods = (await c.list_all(core_pb2.Pod, "default", label_selector="app=agent")).items
        return pods[0] if len(pods) == 1 else None

    # the DaemonSet controller makes the pod; n1 has no agent (never Ready, so the
    # scheduler leaves it alone): the test binds it and reports it running
    daemon = await eventually(daemon_pod, "the daemon pod for n1")
    await c.bind("default", daemon.metadata.name, "n1", daemon.metadata.uid)
    daemon = await c.get(core_pb2.Pod, daemon.metadata.name, "default")
    daemon.status.phase = "Running"
    daemon.status.conditions.add(type="Ready", status="True", last_transition_time=now_ts())
    daemon = await c.update_status(daemon)
    agent_x = daemon.metadata.name
    await running_pod(c, "bare", "n1")

    code, out, err = await drain(cluster, "n1")
    assert code == 1
    assert "node/n1 cordoned" in out
    assert 'unable to drain node "n1"' in err
    assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): " \
           f"default/{agent_x}" in err
    assert "cannot delete Pods that declare no controller (use --force to override): " \
           "default/bare" in err
    assert (await c.get(core_pb2.Node, "n1")).spec.unschedulable
    assert (await c.get(core_pb2.Pod, "bare", "default")).metadata.name == "bare"

    code, out, err = await drain(cluster, "n1", "--ignore-daemonsets", "--force",
                                 "--grace-period", "0", "--timeout", "15s")
    assert code == 0, err
    assert "node/n1 already cordoned" in out
    assert f"Warning: ignoring DaemonSet-managed Pods: default/{agent_x}" in err
    assert "Warning: deleting Pods that declare no controller: default/bare" in err
    assert "pod/bare evicted" in out and out.rstrip().endswith("node/n1 drained")
    pods = (await c.list_all(core_pb2.Pod, "default")).items
    assert [p.metadata.name for p in pods] == [agent_x]


async def test_drain_waits_for_the_disruption_budget(cluster: Cluster,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verbs_drain, "EVICTION_RETRY_SECONDS", 0.2)
    c = cluster.client
    await add_node(c, "n1")
    await add_node(c, "n2")
    web = {"app": "web"}
    for name in ("web-a", "web-b"):
        await running_pod(c, name, "n1", web)
    budget = policy_pb2.PodDisruptionBudget(api_version="policy/v1",
                                            kind="PodDisruptionBudget")
    budget.metadata.name, budget.metadata.namespace = "web", "default"
    budget.spec.selector.match_labels.update(web)
    budget.spec.min_available.int_val = 1
    await c.create(budget)

    async def one_allowed() -> bool:
        b = await c.get(policy_pb2.PodDisruptionBudget, "web", "default")
        return b.status.disruptions_allowed == 1 and b.status.observed_generation == 1

    await eventually(one_allowed, "the budget allowing one disruption")
    task = asyncio.create_task(drain(cluster, "n1", "--force", "--grace-period", "0",
                                     "--timeout", "15s"))

    async def one_left() -> bool:
        pods = (await c.list_all(core_pb2.Pod, "default", label_selector="app=web")).items
        return len(pods) == 1

    await eventually(one_left, "the first eviction")
    await asyncio.sleep(1.0)  # the budget holds the second pod meanwhile
    assert not task.done()
    pods = (await c.list_all(core_pb2.Pod, "default", label_selector="app=web")).items
    assert len(pods) == 1
    # A replacement becomes ready on another node: the budget lets the last one go.
    await running_pod(c, "web-c", "n2", web)
    code, out, err = await task
    assert code == 0, err
    assert "Cannot evict pod as it would violate the pod's disruption budget." in err
    assert out.count("evicted") == 2 and "node/n1 drained" in out
    left = (await c.list_all(core_pb2.Pod, "default", label_selector="app=web")).items
    assert [p.metadata.name for p in left] == ["web-c"]


async def test_drain_times_out_on_a_budget(cluster: Cluster,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verbs_drain, "EVICTION_RETRY_SECONDS", 0.2)
    c = cluster.client
    await add_node(c, "n1")
    await running_pod(c, "solo", "n1", {"app": "solo"})
    budget = policy_pb2.PodDisruptionBudget(api_version="policy/v1",
                                            kind="PodDisruptionBudget")
    budget.metadata.name, budget.metadata.namespace = "solo", "default"
    budget.spec.selector.match_labels["app"] = "solo"
    budget.spec.min_available.int_val = 1
    await c.create(budget)

    async def observed() -> bool:
        b = await c.get(policy_pb2.PodDisruptionBudget, "solo", "default")
        return b.status.observed_generation == 1

    await eventually(observed, "the budget observed")
    code, _out, err = await drain(cluster, "n1", "--force", "--timeout", "1s")
    assert code == 1
    assert "global timeout reached: 1s" in err
    assert (await c.get(core_pb2.Pod, "solo", "default")).metadata.name == "solo"
