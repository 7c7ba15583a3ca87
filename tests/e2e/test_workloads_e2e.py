"""Workload controllers end to end with REAL agents: an in-process control plane (apiserver,
scheduler, controller manager) and two in-process agents with the process runtime, on
distinct node names and data dirs, running real container processes. No pod names a node:
the scheduler places every one.

Every container runs ``sh -c 'exec sleep <N>'`` with an ``N`` unique to the test, so
``pgrep -fx 'sleep <N>'`` counts the test's container processes on the host (``sleep`` is
PID 1 of its PID namespace and ignores SIGTERM: pods use terminationGracePeriodSeconds 1).

Every wait is bounded. Cleanup in ``finally``: workloads deleted, every pod deleted through
the live agents and waited for, the agents stopped, then the runtime state swept; any
container process left, monitor left or cgroup left under ``flotilla/<node>`` is killed /
removed and reported as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import io
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentOptions
from agent.kubelet.kubelet import KubeletOptions
from agent.main import Agent
from control.api import convert, errors
from control.api.pb import apps_pb2, batch_pb2, core_pb2
from control.api.podutil import controller_of
from control.client.client import ApiClient
from control.controllers import deployment_util as du
from tests.conftest import Cluster, running_cluster
from tests.e2e.test_pods_e2e import remove_leftovers

REPO = Path(__file__).resolve().parents[2]
NS = "default"
WAIT = 25.0

# -- processes and cgroups -------------------------------------------------------------------


def pgrep(pattern: str, *, exact: bool = False) -> list[int]:
    argv = ["pgrep", "-fx" if exact else "-f", pattern]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    return sorted(int(x) for x in out.split())


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def node_of_pid(pid: int) -> str:
    """The flotilla node whose cgroup holds ``pid`` ("" when none)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "flotilla":
            return parts[1]
    return ""


def cgroups_of(node: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/flotilla/{node}") + \
        glob.glob(f"/sys/fs/cgroup/flotilla/{node}")


def remove_cgroups(node: str) -> None:
    """Deepest first: a cgroup directory goes with rmdir once its children are gone."""
    for top in cgroups_of(node):
        for root, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(root)


# -- objects ---------------------------------------------------------------------------------


def unique_sleep() -> str:
    """A command line no other test on this host runs."""
    return f"sleep {random.randrange(3_600_000, 9_999_999)}"


def template(app: str, sleep: str, version: str = "1", **container: Any) -> dict[str, Any]:
    spec = dict(container.pop("pod_spec", {}))
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"terminationGracePeriodSeconds": 1, **spec,
                 "containers": [{"name": "main", "image": "busybox",
                                 "command": ["sh", "-c", f"exec {sleep}"],
                                 "env": [{"name": "VERSION", "value": version}],
                                 **container}]},
    }


def deployment(name: str, sleep: str, replicas: int = 3, *, version: str = "1",
               strategy: str = "RollingUpdate", surge: Any = 1, unavailable: Any = 1,
               namespace: str = NS, **container: Any) -> apps_pb2.Deployment:
    strat: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return convert.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "strategy": strat, "template": template(name, sleep, version, **container)},
    }, apps_pb2.Deployment())


def replica_set(name: str, sleep: str, replicas: int) -> apps_pb2.ReplicaSet:
    return convert.from_dict({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": template(name, sleep)},
    }, apps_pb2.ReplicaSet())


def bare_pod(name: str, app: str, sleep: str, namespace: str = NS) -> core_pb2.Pod:
    t = template(app, sleep)
    return convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **t["metadata"]},
        "spec": t["spec"],
    }, core_pb2.Pod())


def version_of(pod: Any) -> str:
    return next((e.value for e in pod.spec.containers[0].env if e.name == "VERSION"), "")


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def terminating(obj: Any) -> bool:
    return obj.metadata.HasField("deletion_timestamp")


def running(pod: Any) -> bool:
    return pod.status.phase == "Running" and bool(pod.status.container_statuses) and \
        pod.status.container_statuses[0].state.HasField("running")


def owned_by_deployment(pod: Any, name: str) -> bool:
    """Controlled by one of Deployment ``name``'s ReplicaSets (named ``<name>-<hash>``)."""
    ref = controller_of(pod)
    return ref is not None and ref.kind == "ReplicaSet" and \
        ref.name.rpartition("-")[0] == name


# -- waiting ---------------------------------------------------------------------------------


async def until(what: str, check: Callable[[], Any], limit: float = WAIT,
                every: float = 0.1) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; bounded."""
    last: Any = None
    try:
        async with asyncio.timeout(limit):
            while True:
                try:
                    last = check()
                    if asyncio.iscoroutine(last):
                        last = await last
                except errors.ApiError as e:
                    last = e
                else:
                    if last:
                        return last
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {limit} s (last: {last!r})") from None


async def pods(c: ApiClient, namespace: str = NS, app: str = "") -> list[Any]:
    selector = f"app={app}" if app else ""
    return list((await c.list(core_pb2.Pod, namespace, label_selector=selector)).items)


async def live_pods(c: ApiClient, app: str, namespace: str = NS) -> list[Any]:
    return [p for p in await pods(c, namespace, app) if not terminating(p)]


async def gone(c: ApiClient, resource: Any, name: str, namespace: str = NS) -> bool:
    try:
        await c.get(resource, name, namespace)
    except errors.NotFound:
        return True
    return False


async def rolled_out(c: ApiClient, name: str, replicas: int, version: str,
                     namespace: str = NS) -> list[Any] | None:
    """The Deployment's pods when it is complete: status says so and exactly ``replicas``
    pods exist (none terminating), every one Running, Ready and on ``version``."""
    d = await c.get(apps_pb2.Deployment, name, namespace)
    s = d.status
    if (s.observed_generation < d.metadata.generation or s.replicas != replicas
            or s.updated_replicas != replicas or s.available_replicas != replicas):
        return None
    ps = await pods(c, namespace, name)
    if len(ps) != replicas or not all(running(p) and is_ready(p) and not terminating(p)
                                      and version_of(p) == version for p in ps):
        return None
    return ps


# -- watching --------------------------------------------------------------------------------


@dataclass
class PodWatch:
    """Every pod of a namespace as the watch shows it, and ``check`` run after EVERY event
    (not only at the end): ``check(pods, event_type, pod)`` returns a violation or ""."""

    client: ApiClient
    namespace: str
    check: Callable[[dict[str, Any], str, Any], str]
    pods: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    events: int = 0
    _task: asyncio.Task[None] | None = None
    _synced: asyncio.Event = field(default_factory=asyncio.Event)

    def _apply(self, kind: str, pod: Any) -> None:
        if kind == "DELETED":
            self.pods.pop(pod.metadata.name, None)
        else:
            self.pods[pod.metadata.name] = pod
        self.events += 1
        if problem := self.check(self.pods, kind, pod):
            self.violations.append(problem)

    async def _run(self) -> None:
        while True:
            listing = await self.client.list(core_pb2.Pod, self.namespace)
            self.pods = {p.metadata.name: p for p in listing.items}
            if problem := self.check(self.pods, "LIST", None):
                self.violations.append(problem)
            self._synced.set()
            with contextlib.suppress(errors.Gone):
                async for ev in self.client.watch(core_pb2.Pod, self.namespace,
                                                  resource_version=listing.resource_version):
                    if ev.type in ("ADDED", "MODIFIED", "DELETED") and ev.object is not None:
                        self._apply(ev.type, ev.object)
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> PodWatch:
        self._task = asyncio.create_task(self._run(), name="pod-watch")
        async with asyncio.timeout(10):
            await self._synced.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# -- the environment -------------------------------------------------------------------------


@dataclass
class Env:
    cluster: Cluster
    agents: list[Agent]
    nodes: list[str]
    sleep: str
    tmp: Path
    procs: list[AgentProc] = field(default_factory=list)

    @property
    def client(self) -> ApiClient:
        return self.cluster.client

    def container_pids(self) -> list[int]:
        return pgrep(self.sleep, exact=True)


def start_agent(address: str, node: str, data: Path) -> Agent:
    return Agent(AgentOptions(server=address, node_name=node, data_dir=data,
                              node_status_update_frequency=0.5, lease_renew_interval=0.5),
                 kubelet_options=KubeletOptions(data_dir=data, sync_period=2.0,
                                                relist_period=0.2, backoff_initial=0.2,
                                                backoff_max=1.0, retry_period=0.5,
                                                volume_refresh_period=0.5,
                                                minimum_grace=0.5))


async def node_ready(c: ApiClient, node: str) -> bool:
    n = await c.get(core_pb2.Node, node)
    return any(x.type == "Ready" and x.status == "True" for x in n.status.conditions)


async def delete_everything(c: ApiClient, limit: float = 30.0) -> None:
    """Workloads first (so nothing recreates pods), then every pod through its agent."""
    async with asyncio.timeout(limit):
        for resource in (batch_pb2.CronJob, batch_pb2.Job, apps_pb2.DaemonSet,
                         apps_pb2.Deployment, apps_pb2.ReplicaSet,
                         core_pb2.ReplicationController):
            for obj in (await c.list(resource)).items:
                with contextlib.suppress(errors.NotFound):
                    await c.delete(resource, obj.metadata.name, obj.metadata.namespace,
                                   propagation_policy="Background")
        while True:
            remaining = (await c.list(core_pb2.Pod)).items
            if not remaining:
                return
            for p in remaining:
                if not terminating(p):
                    with contextlib.suppress(errors.NotFound):
                        await c.delete(core_pb2.Pod, p.metadata.name, p.metadata.namespace,
                                       grace_period_seconds=1)
            await asyncio.sleep(0.2)


async def sweep(data_dirs: dict[str, Path], sleep: str, tmp: Path) -> list[str]:
    """After the agents stopped: what leaked (containers, processes, cgroups), removed."""
    problems: list[str] = []
    for node, data in data_dirs.items():
        if data.exists():
            if leaked := await remove_leftovers(data, node):
                problems.append(f"{node}: containers still running: {leaked}")
    if pids := pgrep(sleep, exact=True):
        problems.append(f"container processes left: {pids}")
        kill_pids(pids)
    if pids := [p for p in pgrep("agent.runtime.monitor") if str(tmp) in _cmdline(p)]:
        problems.append(f"monitor processes left: {pids}")
        kill_pids(pids)
    for node in data_dirs:
        if left := cgroups_of(node):
            await asyncio.sleep(0.5)  # a killed process leaves its cgroup a moment later
            remove_cgroups(node)
            if left := cgroups_of(node):
                problems.append(f"cgroups left: {left}")
    return problems


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class AgentProc:
    """`flotilla agent` as a subprocess (for kill -9), its output in a log file."""

    node: str
    data_dir: Path
    server: str
    log_path: Path
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "control.cli.main", "--server", self.server, "agent",
                 "--node-name", self.node, "--data-dir", str(self.data_dir),
                 "--log-format", "json", "--pod-network", "host", *self.extra],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash (its containers and their monitors live on)."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@asynccontextmanager
async def real_cluster(tmp: Path, nodes: list[str], **options: Any) -> AsyncIterator[Env]:
    """A control plane with ``options`` and one in-process agent per name in ``nodes``.
    Subprocess agents a test adds to ``env.procs`` are cleaned up too (started again if
    the test killed one, so that it stops its containers)."""
    data_dirs = {n: tmp / n for n in nodes}
    sleep = unique_sleep()
    problems: list[str] = []
    async with running_cluster(tmp / "data", **options) as cluster:
        agents: list[Agent] = []
        env = Env(cluster, agents, list(nodes), sleep, tmp)
        try:
            for node in nodes:
                a = start_agent(cluster.address, node, data_dirs[node])
                agents.append(a)
                await a.start()
            for node in nodes:
                await until(f"node {node} Ready", partial(node_ready, cluster.client, node))
            yield env
        finally:
            try:
                for p in env.procs:
                    if not p.alive():
                        p.start()
                        with contextlib.suppress(AssertionError):
                            await until(f"{p.node} back",
                                        partial(node_ready, cluster.client, p.node), limit=15)
                await delete_everything(cluster.client)
            except (TimeoutError, errors.ApiError) as e:
                problems.append(f"pods not deleted through the agents: {e!r}")
            finally:
                for a in agents:
                    await a.stop()
                    data_dirs[a.options.node_name] = a.options.data_dir
                for p in env.procs:
                    p.stop()
                    data_dirs[p.node] = p.data_dir
                problems += await sweep(data_dirs, sleep, tmp)
    assert not problems, problems


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"wl-{tag}-a", f"wl-{tag}-b"]) as e:
        yield e


async def flotilla(cluster: Cluster, *args: str, namespace: str = NS) -> tuple[int, str]:
    """The command-line client, in-process on a thread (it runs its own event loop)."""
    from control.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    argv = ["--server", cluster.address, "-n", namespace, *args]
    async with asyncio.timeout(30):
        code = await asyncio.to_thread(main, argv, stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


async def set_version(c: ApiClient, name: str, version: str, namespace: str = NS) -> None:
    for _ in range(5):
        d = await c.get(apps_pb2.Deployment, name, namespace)
        env_var = next(e for e in d.spec.template.spec.containers[0].env
                       if e.name == "VERSION")
        env_var.value = version
        try:
            await c.update(d)
            return
        except errors.Conflict:
            continue
    raise AssertionError("could not update the deployment")


def min_ready_check(app: str, floor: int, seen: list[int]) -> Callable[..., str]:
    """After every pod event: at least ``floor`` Ready, not terminating pods of the
    Deployment's ReplicaSets."""

    def check(state: dict[str, Any], kind: str, _pod: Any) -> str:
        ready = sum(1 for p in state.values() if owned_by_deployment(p, app)
                    and is_ready(p) and not terminating(p))
        seen.append(ready)
        if ready < floor:
            return f"after {kind} of {_pod.metadata.name if _pod else '-'}: only {ready} " \
                   f"ready pods (< {floor}): " + ", ".join(
                       f"{p.metadata.name}(ready={is_ready(p)}, term={terminating(p)})"
                       for p in state.values())
        return ""

    return check


# -- the tests -------------------------------------------------------------------------------


async def test_deployment_spreads_rolls_out_and_rolls_back(env: Env) -> None:
    """3 replicas Running on both agents; a rolling update (maxUnavailable 1) never below
    2 Ready pods after any pod event; `rollout undo` back to the first template."""
    c = env.client
    await c.create(deployment("web", env.sleep, 3, surge=1, unavailable=1))
    first = await until("3 available", lambda: rolled_out(c, "web", 3, "1"))
    assert {p.spec.node_name for p in first} == set(env.nodes), "not spread across nodes"
    pids = await until("3 container processes", lambda: len(env.container_pids()) == 3
                       and env.container_pids())
    assert {node_of_pid(p) for p in pids} == set(env.nodes)
    [rs1] = [rs for rs in (await c.list(apps_pb2.ReplicaSet, NS)).items]
    first_hash = rs1.metadata.labels[du.HASH_LABEL]

    seen: list[int] = []
    async with PodWatch(c, NS, min_ready_check("web", 3 - 1, seen)) as watch:
        await set_version(c, "web", "2")
        second = await until("rolled out to v2", lambda: rolled_out(c, "web", 3, "2"))
        assert not ({p.metadata.name for p in second} & {p.metadata.name for p in first})
        code, out = await flotilla(env.cluster, "rollout", "undo", "deployment/web")
        assert code == 0, out
        assert "rolled back" in out
        back = await until("rolled back to v1", lambda: rolled_out(c, "web", 3, "1"))
    assert not watch.violations, watch.violations[:3]
    assert watch.events >= 12 and min(seen) >= 2, (watch.events, seen)
    # rollback reuses the first ReplicaSet (same template hash), now the newest revision
    assert {p.metadata.labels[du.HASH_LABEL] for p in back} == {first_hash}
    rs1 = await c.get(apps_pb2.ReplicaSet, rs1.metadata.name, NS)
    assert du.revision_of(rs1) == 3
    # exactly the 3 pods' containers run; the replaced ones were really stopped
    await until("old containers stopped", lambda: len(env.container_pids()) == 3)


async def test_recreate_removes_old_pods_before_new(env: Env) -> None:
    c = env.client
    await c.create(deployment("rec", env.sleep, 2, strategy="Recreate"))
    await until("2 available", lambda: rolled_out(c, "rec", 2, "1"))

    def check(state: dict[str, Any], kind: str, pod: Any) -> str:
        versions = {version_of(p) for p in state.values()}
        if {"1", "2"} <= versions:
            return f"after {kind} of {pod.metadata.name if pod else '-'}: old and new " \
                   f"pods exist together: {sorted(state)}"
        return ""

    async with PodWatch(c, NS, check) as watch:
        await set_version(c, "rec", "2")
        await until("recreated on v2", lambda: rolled_out(c, "rec", 2, "2"))
    assert not watch.violations, watch.violations[:3]
    await until("old containers stopped", lambda: len(env.container_pids()) == 2)


async def test_scaling_mid_rollout_is_proportional(env: Env) -> None:
    """The new template is held not-Ready by a readiness gate (a file on a hostPath), so
    the rollout stops part way; scaling then spreads the new replicas over both
    ReplicaSets; opening the gate finishes the rollout at the new size."""
    c = env.client
    gate = env.tmp / "gate"
    gate.mkdir()
    await c.create(deployment("mid", env.sleep, 4, surge=1, unavailable=0))
    await until("4 available", lambda: rolled_out(c, "mid", 4, "1"))
    d = await c.get(apps_pb2.Deployment, "mid", NS)
    container = d.spec.template.spec.containers[0]
    convert.from_dict({"exec": {"command": ["cat", "/gate/open"]}, "periodSeconds": 1},
                      container.readiness_probe)
    container.volume_mounts.add(name="gate", mount_path="/gate")
    vol = d.spec.template.spec.volumes.add(name="gate")
    vol.host_path.path = str(gate)
    next(e for e in container.env if e.name == "VERSION").value = "2"
    await c.update(d)

    async def stuck() -> bool:
        ps = await live_pods(c, "mid")
        new = [p for p in ps if version_of(p) == "2"]
        return len(ps) == 5 and len(new) == 1 and running(new[0]) and not is_ready(new[0])

    await until("rollout stuck on the gate", stuck)
    await c.update_scale(apps_pb2.Deployment, "mid", 8, NS)

    async def sizes() -> dict[str, int] | None:
        rss = (await c.list(apps_pb2.ReplicaSet, NS, label_selector="app=mid")).items
        out = {next(e.value for e in rs.spec.template.spec.containers[0].env
                    if e.name == "VERSION"): rs.spec.replicas for rs in rss}
        return out if sum(out.values()) == 8 + 1 else None

    by_version = await until("proportional scale-up", sizes)
    # 4 more replicas shared in proportion (4:1) -> the old ReplicaSet took most of them
    assert by_version["1"] > 4 and by_version["2"] > 1, by_version
    await until("old pods scaled up and Ready", lambda: _ready_count(c, "mid", "1", 7))
    (gate / "open").write_text("yes")
    await until("rolled out at 8", lambda: rolled_out(c, "mid", 8, "2"), limit=35)
    await until("old containers stopped", lambda: len(env.container_pids()) == 8)


async def _ready_count(c: ApiClient, app: str, version: str, want: int) -> bool:
    ps = await live_pods(c, app)
    return sum(1 for p in ps if version_of(p) == version and is_ready(p)) >= want


async def test_adoption_and_release(env: Env) -> None:
    c = env.client
    orphan = await c.create(bare_pod("stray", "adopt", env.sleep))
    await until("stray Running", lambda: _running(c, "stray"))
    [stray_pid] = await until("stray's process", env.container_pids)
    rs = await c.create(replica_set("adopt", env.sleep, 2))

    async def adopted() -> Any:
        p = await c.get(core_pb2.Pod, "stray", NS)
        ref = controller_of(p)
        return p if ref is not None and ref.uid == rs.metadata.uid else None

    p = await until("stray adopted", adopted)
    ref = controller_of(p)
    assert ref.kind == "ReplicaSet" and ref.block_owner_deletion and ref.name == "adopt"
    assert p.metadata.uid == orphan.metadata.uid  # the same pod, not a replacement

    async def two_running() -> list[Any] | None:
        ps = await live_pods(c, "adopt")
        return ps if len(ps) == 2 and all(running(x) for x in ps) else None

    ps = await until("2 pods, one of them the adopted stray", two_running)
    assert "stray" in {x.metadata.name for x in ps}
    await asyncio.sleep(1.0)  # no extra pod is made meanwhile
    assert len(await pods(c, NS, "adopt")) == 2
    assert stray_pid in env.container_pids()

    # relabelled out of the selector: released (no ownerReference), and replaced
    for _ in range(5):
        p = await c.get(core_pb2.Pod, "stray", NS)
        p.metadata.labels["app"] = "elsewhere"
        try:
            await c.update(p)
            break
        except errors.Conflict:
            continue

    async def released() -> Any:
        p = await c.get(core_pb2.Pod, "stray", NS)
        return p if not p.metadata.owner_references else None

    p = await until("stray released", released)
    assert running(p)
    ps = await until("a replacement Running", two_running)
    assert "stray" not in {x.metadata.name for x in ps}
    assert all(controller_of(x).uid == rs.metadata.uid for x in ps)
    assert stray_pid in env.container_pids()  # released, not stopped
    await until("3 containers", lambda: len(env.container_pids()) == 3)
    await until("RS status: 2 replicas, ready, available", lambda: _rs_ready(c, "adopt", 2))


async def _running(c: ApiClient, name: str, namespace: str = NS) -> Any:
    p = await c.get(core_pb2.Pod, name, namespace)
    return p if running(p) else None


async def _rs_ready(c: ApiClient, name: str, want: int) -> bool:
    s = (await c.get(apps_pb2.ReplicaSet, name, NS)).status
    return bool(s.replicas == s.ready_replicas == s.available_replicas == want)


async def test_delete_propagation_policies(env: Env) -> None:
    c = env.client
    for name in ("bg", "fg", "orph"):
        await c.create(deployment(name, env.sleep, 2))
    for name in ("bg", "fg", "orph"):
        await until(f"{name} available", partial(rolled_out, c, name, 2, "1"))
    await until("6 containers", lambda: len(env.container_pids()) == 6)
    orph_pods = {p.metadata.uid: p for p in await pods(c, NS, "orph")}

    # Background: the Deployment goes at once; its ReplicaSet and pods follow
    _, pending = await c.delete(apps_pb2.Deployment, "bg", NS, propagation_policy="Background")
    assert not pending and await gone(c, apps_pb2.Deployment, "bg")

    # Foreground: kept (finalizer) until its ReplicaSet and pods are gone
    d, pending = await c.delete(apps_pb2.Deployment, "fg", NS,
                                propagation_policy="Foreground")
    assert pending and "foregroundDeletion" in d.metadata.finalizers
    saw_kept_with_pods = False
    async with asyncio.timeout(WAIT):
        while True:
            try:
                d = await c.get(apps_pb2.Deployment, "fg", NS)
            except errors.NotFound:
                left = await pods(c, NS, "fg")
                rss = (await c.list(apps_pb2.ReplicaSet, NS, label_selector="app=fg")).items
                assert not left and not rss, "Foreground owner gone before its dependents"
                break
            assert terminating(d) and "foregroundDeletion" in d.metadata.finalizers
            if await pods(c, NS, "fg"):
                saw_kept_with_pods = True
            await asyncio.sleep(0.05)
    assert saw_kept_with_pods

    # Orphan: the Deployment goes, its ReplicaSet stays (without owner), and so do its pods;
    # the ReplicaSet deleted with Orphan leaves pods with no ownerReferences, still running
    await c.delete(apps_pb2.Deployment, "orph", NS, propagation_policy="Orphan")
    await until("orph deployment gone", lambda: gone(c, apps_pb2.Deployment, "orph"))
    [rs] = (await c.list(apps_pb2.ReplicaSet, NS, label_selector="app=orph")).items

    async def rs_orphaned() -> bool:
        r = await c.get(apps_pb2.ReplicaSet, rs.metadata.name, NS)
        return not r.metadata.owner_references and not terminating(r)

    await until("orph ReplicaSet orphaned", rs_orphaned)
    await c.delete(apps_pb2.ReplicaSet, rs.metadata.name, NS, propagation_policy="Orphan")
    await until("orph ReplicaSet gone", lambda: gone(c, apps_pb2.ReplicaSet, rs.metadata.name))

    async def pods_orphaned() -> bool:
        ps = await pods(c, NS, "orph")
        return len(ps) == 2 and all(not p.metadata.owner_references for p in ps)

    await until("orph pods without owners", pods_orphaned)
    await until("bg and fg pods gone", lambda: _none_left(c, ("bg", "fg")))
    await asyncio.sleep(1.0)  # nothing deletes the orphans late
    ps = await pods(c, NS, "orph")
    assert {p.metadata.uid for p in ps} == set(orph_pods)
    assert all(running(p) and not terminating(p) and not p.metadata.owner_references
               for p in ps)
    # the bg and fg containers were stopped; the orphans' still run
    await until("only the orphans' containers left", lambda: len(env.container_pids()) == 2)
    assert {node_of_pid(pid) for pid in env.container_pids()} == \
        {p.spec.node_name for p in ps}


async def _none_left(c: ApiClient, apps: tuple[str, ...]) -> bool:
    for app in apps:
        if await pods(c, NS, app):
            return False
    return True


async def test_namespace_deletion_stops_pods_and_removes_services(env: Env) -> None:
    c = env.client
    ns = "doomed"
    await c.create(convert.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}}, core_pb2.Namespace()))
    await c.create(deployment("app", env.sleep, 2, namespace=ns))
    await c.create(bare_pod("loner", "loner", env.sleep, namespace=ns))
    await c.create(convert.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": ns},
        "spec": {"selector": {"app": "app"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }, core_pb2.Service()))
    await until("deployment available", lambda: rolled_out(c, "app", 2, "1", ns))
    await until("loner Running", lambda: _running(c, "loner", ns))
    await until("3 containers", lambda: len(env.container_pids()) == 3)

    await c.delete(core_pb2.Namespace, ns)
    ns_obj = await c.get(core_pb2.Namespace, ns)
    assert ns_obj.status.phase == "Terminating"
    with pytest.raises(errors.Forbidden, match="being terminated"):
        await c.create(bare_pod("late", "late", env.sleep, namespace=ns))

    await until("namespace removed", lambda: gone(c, core_pb2.Namespace, ns, ""), limit=30)
    for resource in (core_pb2.Pod, core_pb2.Service, apps_pb2.Deployment,
                     apps_pb2.ReplicaSet):
        assert not (await c.list(resource, ns)).items, resource
    # really stopped on the agents
    await until("no container process left", lambda: not env.container_pids())

