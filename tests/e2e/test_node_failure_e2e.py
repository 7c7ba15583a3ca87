"""Failures end to end with REAL agents (see test_workloads_e2e for the harness):

- kill -9 of a `flotilla agent` subprocess: after the (short) node monitor grace period its
  Node goes Ready=Unknown with the unreachable taints and its pods Ready=False; after their
  (short, admission-defaulted) unreachable toleration they are evicted and the Deployment's
  replacements run on the other (in-process) agent. The agent started again on the same
  data dir untaints its Node and stops the containers it left running, whose pods were
  deleted meanwhile;
- the controller manager stopped and started again mid-rollout: the rollout finishes, and
  no pod beyond ``replicas + maxSurge`` ever exists, nor is any made only to be deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from control.api import convert
from control.api.pb import apps_pb2, core_pb2
from control.controllers.manager import ControllerManager
from tests.conftest import node_config
from tests.support import eventually
from tests.support.cluster import (
    NOT_YET,
    NS,
    WAIT,
    AgentProc,
    Env,
    PodWatch,
    deployment,
    is_ready,
    live_pods,
    node_of_pid,
    node_ready,
    owned_by_deployment,
    real_cluster,
    rolled_out,
    running,
    start_agent,
    terminating,
    version_of,
)

GRACE = 3.0  # node_monitor_grace_period
TOLERATION = 2  # default (un)reachable NoExecute toleration seconds
UNREACHABLE = "node.kubernetes.io/unreachable"


def condition(obj: Any, type_: str) -> str:
    return next((c.status for c in obj.status.conditions if c.type == type_), "")


def taints(node: Any) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in node.spec.taints}


async def test_killed_agent_pods_move_and_the_agent_cleans_up_on_return(
        tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    survivor, victim = f"nf-{tag}-b", f"nf-{tag}-a"
    async with real_cluster(
            tmp_path, [], node_monitor_grace_period=GRACE, node_eviction_rate=100.0,
            default_unreachable_toleration_seconds=TOLERATION,
            default_not_ready_toleration_seconds=TOLERATION) as env:
        c = env.client
        # the victim alone at first, so that the Deployment's pods all land on it
        agent = AgentProc(victim, tmp_path / victim, env.cluster.address,
                          tmp_path / "victim.log",
                          ("--node-status-update-frequency", "500ms",
                           "--node-lease-duration-seconds", "2"),
                          node_config(env.cluster.data_dir, victim, tmp_path / "victim.conf"))
        env.procs.append(agent)
        agent.start()
        await eventually(lambda: node_ready(c, victim), "victim Ready", timeout=20, retry_on=NOT_YET)
        await c.create(deployment("mover", env.sleep, 2))
        before = await eventually(lambda: rolled_out(c, "mover", 2, "1"), "2 pods on the victim", timeout=WAIT, retry_on=NOT_YET)
        assert {p.spec.node_name for p in before} == {victim}
        # toleration defaulted by admission, and used below
        tol = {(t.key, t.effect): t.toleration_seconds for t in before[0].spec.tolerations}
        assert tol[(UNREACHABLE, "NoExecute")] == TOLERATION
        old_pids = await eventually(lambda: len(env.container_pids()) == 2
                               and env.container_pids(), "2 containers", timeout=WAIT, retry_on=NOT_YET)
        assert {node_of_pid(p) for p in old_pids} == {victim}

        other = start_agent(env.cluster, survivor, tmp_path / survivor)
        env.agents.append(other)
        env.nodes.append(survivor)
        await other.start()
        await eventually(lambda: node_ready(c, survivor), "survivor Ready", timeout=WAIT, retry_on=NOT_YET)

        agent.kill()
        killed_at = asyncio.get_running_loop().time()

        async def unreachable() -> Any:
            n = await c.get(core_pb2.Node, victim)
            return n if condition(n, "Ready") == "Unknown" and \
                {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")} <= taints(n) \
                else None

        await eventually(unreachable, "victim Unknown and tainted unreachable", timeout=15, retry_on=NOT_YET)
        assert asyncio.get_running_loop().time() - killed_at >= GRACE - 0.5

        async def moved() -> list[Any] | None:
            ps = await live_pods(c, "mover")
            ok = len(ps) == 2 and all(p.spec.node_name == survivor and running(p)
                                      and is_ready(p) for p in ps)
            return ps if ok else None

        after = await eventually(moved, "replacements Running on the survivor", timeout=20, retry_on=NOT_YET)
        # not before the grace period and the toleration had both run out
        assert asyncio.get_running_loop().time() - killed_at >= GRACE + TOLERATION - 0.5
        assert not {p.metadata.uid for p in after} & {p.metadata.uid for p in before}
        # the evicted pods: being deleted, not Ready, still bound to the dead node; their
        # containers still run there (nobody is left to stop them)
        evicted = [p for p in (await c.list(core_pb2.Pod, NS)).items
                   if p.spec.node_name == victim]
        assert {p.metadata.uid for p in evicted} == {p.metadata.uid for p in before}
        assert all(terminating(p) and condition(p, "Ready") == "False" for p in evicted)
        pids = env.container_pids()
        assert set(old_pids) <= set(pids) and len(pids) == 4

        # the agent comes back on the same data dir
        agent.start()

        async def healthy() -> bool:
            n = await c.get(core_pb2.Node, victim)
            return condition(n, "Ready") == "True" and not {
                k for k, _ in taints(n) if k.startswith("node.kubernetes.io/")}

        await eventually(healthy, "victim Ready and untainted", timeout=20, retry_on=NOT_YET)

        async def old_pods_gone() -> bool:
            ps = (await c.list(core_pb2.Pod, NS)).items
            return not [p for p in ps if p.spec.node_name == victim]

        await eventually(old_pods_gone, "old pods' deletion confirmed by the returned agent", timeout=20, retry_on=NOT_YET)
        await eventually(lambda: not set(old_pids) & set(env.container_pids()), "old containers stopped", timeout=15, retry_on=NOT_YET)
        left = env.container_pids()
        assert len(left) == 2 and {node_of_pid(p) for p in left} == {survivor}
        assert {p.metadata.uid for p in await live_pods(c, "mover")} == \
            {p.metadata.uid for p in after}, "the Deployment's pods changed again"


async def test_controller_manager_restarted_mid_rollout(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"cm-{tag}-a", f"cm-{tag}-b"]) as env:
        await _restart_mid_rollout(env)


async def _restart_mid_rollout(env: Env) -> None:
    c, plane = env.client, env.cluster.plane
    replicas, surge = 4, 1
    gate = env.tmp / "gate"
    gate.mkdir()
    await c.create(deployment("roll", env.sleep, replicas, surge=surge, unavailable=0))
    await eventually(lambda: rolled_out(c, "roll", replicas, "1"), "4 available", timeout=WAIT, retry_on=NOT_YET)

    new_pods: set[str] = set()

    def check(state: dict[str, Any], kind: str, pod: Any) -> str:
        live = [p for p in state.values() if owned_by_deployment(p, "roll")
                and not terminating(p)]
        new_pods.update(p.metadata.name for p in live if version_of(p) == "2")
        if len(live) > replicas + surge:
            return f"after {kind}: {len(live)} live pods: {sorted(p.metadata.name for p in live)}"
        if len(new_pods) > replicas:
            return f"after {kind}: {len(new_pods)} new pods made: {sorted(new_pods)}"
        return ""

    async with PodWatch(c, NS, check) as watch:
        # v2 is held not-Ready by a readiness gate: the rollout stops after its first pod
        d = await c.get(apps_pb2.Deployment, "roll", NS)
        container = d.spec.template.spec.containers[0]
        convert.from_dict({"exec": {"command": ["cat", "/gate/open"]}, "periodSeconds": 1},
                          container.readiness_probe)
        container.volume_mounts.add(name="gate", mount_path="/gate")
        d.spec.template.spec.volumes.add(name="gate").host_path.path = str(gate)
        next(e for e in container.env if e.name == "VERSION").value = "2"
        await c.update(d)

        async def stuck() -> bool:
            ps = await live_pods(c, "roll")
            new = [p for p in ps if version_of(p) == "2"]
            return len(ps) == replicas + surge and len(new) == 1 and running(new[0])

        await eventually(stuck, "rollout held by the gate", timeout=WAIT, retry_on=NOT_YET)

        # 1. the controllers stop; the new pod becomes Ready meanwhile; nothing acts on it
        assert plane.controllers is not None
        await plane.controllers.stop()
        (gate / "open").write_text("yes")

        async def new_ready() -> bool:
            ps = await live_pods(c, "roll")
            return any(version_of(p) == "2" and is_ready(p) for p in ps)

        await eventually(new_ready, "the new pod Ready", timeout=WAIT, retry_on=NOT_YET)
        await asyncio.sleep(1.0)
        assert len(await live_pods(c, "roll")) == replicas + surge

        # 2. a fresh manager (no memory of the old one's expectations) carries on
        plane.controllers = ControllerManager.connect(
            plane.address, plane.admin_credentials,
            node_lifecycle=plane.options.node_lifecycle())
        await plane.controllers.start()

        async def progressed() -> bool:
            ps = await live_pods(c, "roll")
            return sum(1 for p in ps if version_of(p) == "2") >= 2

        # 3. and once more right while it creates and deletes pods
        await eventually(progressed, "rollout moving again", timeout=WAIT, retry_on=NOT_YET)
        await plane.controllers.stop()
        plane.controllers = ControllerManager.connect(
            plane.address, plane.admin_credentials,
            node_lifecycle=plane.options.node_lifecycle())
        await plane.controllers.start()

        final = await eventually(lambda: rolled_out(c, "roll", replicas, "2"), "rolled out to v2", timeout=30, retry_on=NOT_YET)
        await asyncio.sleep(1.0)  # a late duplicate would show up now
    assert not watch.violations, watch.violations[:3]
    assert new_pods == {p.metadata.name for p in final}, (new_pods, final)
    rss = (await c.list(apps_pb2.ReplicaSet, NS, label_selector="app=roll")).items
    assert sorted(rs.spec.replicas for rs in rss) == [0, replicas]
    await eventually(lambda: len(env.container_pids()) == replicas, "only the new containers run", timeout=WAIT, retry_on=NOT_YET)
