"""DaemonSets end to end with REAL agents: three in-process agents on one host (see
test_workloads_e2e for the environment and its cleanup), the scheduler placing every
daemon pod through its node affinity. The DaemonSet follows nodes being labelled, tainted
and leaving, and rolls an update one node at a time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from control.api import convert
from control.api.pb import apps_pb2, core_pb2
from control.client.client import ApiClient
from control.controllers import daemonset_util as dsu
from tests.support import eventually
from tests.support.cluster import (
    NOT_YET,
    NS,
    Env,
    PodWatch,
    is_ready,
    real_cluster,
    running,
    start_agent,
    template,
    terminating,
    version_of,
)

WAIT = 40.0


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"ds-{tag}-a", f"ds-{tag}-b", f"ds-{tag}-c"]) as e:
        yield e


def daemon_set(name: str, sleep: str, version: str = "1", **pod_spec: Any) -> apps_pb2.DaemonSet:
    out: apps_pb2.DaemonSet = convert.from_dict({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": template(name, sleep, version, pod_spec=pod_spec)},
    }, apps_pb2.DaemonSet())
    return out


async def placed(c: ApiClient, app: str) -> dict[str, Any]:
    """node -> its running, ready daemon pod (only when every live pod is such)."""
    pods = [p for p in (await c.list(core_pb2.Pod, NS, label_selector=f"app={app}")).items
            if not terminating(p)]
    if not all(running(p) and is_ready(p) for p in pods):
        return {}
    return {p.spec.node_name: p for p in pods}


async def on(c: ApiClient, app: str, nodes: list[str], version: str = "") -> bool:
    got = await placed(c, app)
    return sorted(got) == sorted(nodes) and all(
        not version or version_of(p) == version for p in got.values())


async def test_daemonset_follows_nodes_and_rolls_one_node_at_a_time(env: Env) -> None:
    c = env.client
    a, b, n3 = env.nodes
    await c.patch(core_pb2.Node, a, {"metadata": {"labels": {"role": "edge"}}})
    await c.create(daemon_set("edge", env.sleep, nodeSelector={"role": "edge"}))
    await eventually(partial(on, c, "edge", [a]), "one pod on the labelled node", timeout=WAIT, retry_on=NOT_YET)

    await c.patch(core_pb2.Node, b, {"metadata": {"labels": {"role": "edge"}}})
    await eventually(partial(on, c, "edge", [a, b]), "a pod on the newly labelled node", timeout=WAIT, retry_on=NOT_YET)
    await c.patch(core_pb2.Node, n3, {"metadata": {"labels": {"role": "edge"}}})
    await eventually(partial(on, c, "edge", [a, b, n3]), "all three", timeout=WAIT, retry_on=NOT_YET)

    await c.patch(core_pb2.Node, a, {"metadata": {"labels": {"role": None}}})
    await eventually(partial(on, c, "edge", [b, n3]), "gone from the unlabelled node", timeout=WAIT, retry_on=NOT_YET)
    await c.patch(core_pb2.Node, a, {"metadata": {"labels": {"role": "edge"}}})
    await eventually(partial(on, c, "edge", [a, b, n3]), "back", timeout=WAIT, retry_on=NOT_YET)

    await c.patch(core_pb2.Node, n3, {"spec": {"taints": [
        {"key": "dedicated", "value": "db", "effect": "NoExecute"}]}})
    await eventually(partial(on, c, "edge", [a, b]), "gone from the NoExecute-tainted node", timeout=WAIT, retry_on=NOT_YET)
    await c.patch(core_pb2.Node, n3, {"spec": {"taints": None}})
    await eventually(partial(on, c, "edge", [a, b, n3]), "back after the taint", timeout=WAIT, retry_on=NOT_YET)

    async def status_ok() -> bool:
        s = (await c.get(apps_pb2.DaemonSet, "edge", NS)).status
        return (s.desired_number_scheduled, s.current_number_scheduled, s.number_ready,
                s.number_available, s.updated_number_scheduled) == (3, 3, 3, 3, 3)

    await eventually(status_ok, "status counts", timeout=WAIT, retry_on=NOT_YET)

    def one_node_at_a_time(pods: dict[str, Any], _kind: str, _pod: Any) -> str:
        up = {p.spec.node_name for p in pods.values()
              if p.metadata.labels.get("app") == "edge" and not terminating(p)
              and running(p) and is_ready(p)}
        return f"only {sorted(up)} serving" if len(up) < 2 else ""

    async with PodWatch(c, NS, one_node_at_a_time) as watch:
        ds = await c.get(apps_pb2.DaemonSet, "edge", NS)
        ds.spec.template.spec.containers[0].env[0].value = "2"
        await c.update(ds)
        await eventually(partial(on, c, "edge", [a, b, n3], "2"), "rolled to version 2", timeout=60, retry_on=NOT_YET)
    assert not watch.violations, watch.violations[:3]
    revs = [r for r in (await c.list(apps_pb2.ControllerRevision, NS)).items
            if r.metadata.name.startswith("edge-")]
    assert sorted(r.revision for r in revs) == [1, 2]
    hashes = {p.metadata.labels[dsu.REVISION_HASH_LABEL]
              for p in (await placed(c, "edge")).values()}
    assert hashes == {max(revs, key=lambda r: r.revision).metadata.labels[
        dsu.REVISION_HASH_LABEL]}


async def test_daemonset_reaches_a_node_that_joins(env: Env) -> None:
    c = env.client
    await c.create(daemon_set("every", env.sleep))
    await eventually(partial(on, c, "every", env.nodes), "a pod on each node", timeout=WAIT,
                     retry_on=NOT_YET)
    joined = f"{env.nodes[0].rsplit('-', 1)[0]}-d"
    agent = start_agent(env.cluster, joined, env.tmp / joined)
    env.agents.append(agent)  # stopped and swept by the fixture
    await agent.start()
    await eventually(partial(on, c, "every", [*env.nodes, joined]),
                     "a pod on the node that joined", timeout=WAIT, retry_on=NOT_YET)
    s = (await c.get(apps_pb2.DaemonSet, "every", NS)).status
    assert s.desired_number_scheduled == 4
