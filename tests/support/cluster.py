"""A real cluster for workload end-to-end tests: an in-process control plane and agents
(or agent subprocesses), unique container commands to find their processes, waits and
watches on pods, and a cleanup that reports anything left behind (containers, monitor
processes, cgroups) as a failure. The containers run this machine's sh and sleep, so the
pods name the ``host`` RuntimeClass, which ``real_cluster`` creates.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from agent.config import AgentOptions
from agent.kubelet.kubelet import KubeletOptions
from agent.main import Agent
from control.api import convert, errors
from control.api.pb import apps_pb2, batch_pb2, core_pb2
from control.api.podutil import controller_of
from control.client.client import ApiClient
from tests.conftest import Cluster, running_cluster
from tests.support import eventually
from tests.support.agents import LOOPBACK_MIRRORS, remove_leftovers
from tests.support.runtimeclasses import HOST, ensure_host_runtime_class

REPO = Path(__file__).resolve().parents[2]


NS = "default"


WAIT = 25.0
# What a read answers while a node or object is not there yet: poll again.
NOT_YET = (errors.ApiError,)


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
    return glob.glob(f"/sys/fs/cgroup/*/flotilla/{node}") + glob.glob(
        f"/sys/fs/cgroup/flotilla/{node}"
    )


def remove_cgroups(node: str) -> None:
    """Deepest first: a cgroup directory goes with rmdir once its children are gone."""
    for top in cgroups_of(node):
        for root, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(root)


def unique_sleep() -> str:
    """A command line no other test on this host runs."""
    return f"sleep {random.randrange(3_600_000, 9_999_999)}"


def template(app: str, sleep: str, version: str = "1", **container: Any) -> dict[str, Any]:
    spec = dict(container.pop("pod_spec", {}))
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "runtimeClassName": HOST,
            **spec,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sh", "-c", f"exec {sleep}"],
                    "env": [{"name": "VERSION", "value": version}],
                    **container,
                }
            ],
        },
    }


def deployment(
    name: str,
    sleep: str,
    replicas: int = 3,
    *,
    version: str = "1",
    strategy: str = "RollingUpdate",
    surge: Any = 1,
    unavailable: Any = 1,
    namespace: str = NS,
    **container: Any,
) -> apps_pb2.Deployment:
    strat: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return convert.from_dict(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "strategy": strat,
                "template": template(name, sleep, version, **container),
            },
        },
        apps_pb2.Deployment(),
    )


def replica_set(name: str, sleep: str, replicas: int) -> apps_pb2.ReplicaSet:
    return convert.from_dict(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": template(name, sleep),
            },
        },
        apps_pb2.ReplicaSet(),
    )


def bare_pod(name: str, app: str, sleep: str, namespace: str = NS) -> core_pb2.Pod:
    t = template(app, sleep)
    return convert.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, **t["metadata"]},
            "spec": t["spec"],
        },
        core_pb2.Pod(),
    )


def version_of(pod: Any) -> str:
    return next((e.value for e in pod.spec.containers[0].env if e.name == "VERSION"), "")


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def terminating(obj: Any) -> bool:
    return obj.metadata.HasField("deletion_timestamp")


def running(pod: Any) -> bool:
    return (
        pod.status.phase == "Running"
        and bool(pod.status.container_statuses)
        and pod.status.container_statuses[0].state.HasField("running")
    )


def owned_by_deployment(pod: Any, name: str) -> bool:
    """Controlled by one of Deployment ``name``'s ReplicaSets (named ``<name>-<hash>``)."""
    ref = controller_of(pod)
    return ref is not None and ref.kind == "ReplicaSet" and ref.name.rpartition("-")[0] == name


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


async def rolled_out(
    c: ApiClient, name: str, replicas: int, version: str, namespace: str = NS
) -> list[Any] | None:
    """The Deployment's pods when it is complete: status says so and exactly ``replicas``
    pods exist (none terminating), every one Running, Ready and on ``version``."""
    d = await c.get(apps_pb2.Deployment, name, namespace)
    s = d.status
    if (
        s.observed_generation < d.metadata.generation
        or s.replicas != replicas
        or s.updated_replicas != replicas
        or s.available_replicas != replicas
    ):
        return None
    ps = await pods(c, namespace, name)
    if len(ps) != replicas or not all(
        running(p) and is_ready(p) and not terminating(p) and version_of(p) == version for p in ps
    ):
        return None
    return ps


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
                async for ev in self.client.watch(
                    core_pb2.Pod, self.namespace, resource_version=listing.resource_version
                ):
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


def start_agent(cluster: Cluster, node: str, data: Path, *,
                kubelet: Mapping[str, Any] | None = None, **agent_options: Any) -> Agent:
    """An in-process agent for ``node`` on ``cluster`` with test timings (not started);
    ``agent_options`` and ``kubelet`` override AgentOptions and KubeletOptions fields.
    Pods that name no RuntimeClass pull docker.io images from a closed loopback port."""
    return Agent(
        AgentOptions(
            node_name=node,
            data_dir=data,
            **{"server": cluster.address, "node_status_update_frequency": 0.5, "lease_renew_interval": 0.5,
               "registry_mirrors": LOOPBACK_MIRRORS, **cluster.agent_identity(node),
               **agent_options},
        ),
        kubelet_options=KubeletOptions(
            data_dir=data,
            **{"sync_period": 2.0, "relist_period": 0.2, "backoff_initial": 0.2,
               "backoff_max": 1.0, "retry_period": 0.5, "volume_refresh_period": 0.5,
               "minimum_grace": 0.5, **(kubelet or {})},
        ),
    )


async def node_ready(c: ApiClient, node: str) -> bool:
    n = await c.get(core_pb2.Node, node)
    return any(x.type == "Ready" and x.status == "True" for x in n.status.conditions)


async def delete_everything(c: ApiClient, limit: float = 30.0) -> None:
    """Workloads first (so nothing recreates pods), then every pod through its agent."""
    async with asyncio.timeout(limit):
        for resource in (
            batch_pb2.CronJob,
            batch_pb2.Job,
            apps_pb2.DaemonSet,
            apps_pb2.Deployment,
            apps_pb2.ReplicaSet,
            core_pb2.ReplicationController,
        ):
            for obj in (await c.list(resource)).items:
                with contextlib.suppress(errors.NotFound):
                    await c.delete(
                        resource,
                        obj.metadata.name,
                        obj.metadata.namespace,
                        propagation_policy="Background",
                    )
        while True:
            remaining = (await c.list(core_pb2.Pod)).items
            if not remaining:
                return
            for p in remaining:
                if not terminating(p):
                    with contextlib.suppress(errors.NotFound):
                        await c.delete(
                            core_pb2.Pod,
                            p.metadata.name,
                            p.metadata.namespace,
                            grace_period_seconds=1,
                        )
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
    # a config with the node's identity (tests.conftest.node_config)
    config: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "control.cli.main",
                    "--server",
                    self.server,
                    *(("--config", str(self.config)) if self.config else ()),
                    "agent",
                    "--node-name",
                    self.node,
                    "--data-dir",
                    str(self.data_dir),
                    "--log-format",
                    "json",
                    "--pod-network",
                    "host",
                    *self.extra,
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

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
async def real_cluster(tmp: Path, nodes: list[str], agent_options: dict[str, Any] | None = None,
                       **options: Any) -> AsyncIterator[Env]:
    """A control plane with ``options`` and one in-process agent per name in ``nodes``
    (with ``agent_options``, e.g. the registries they reach).
    Subprocess agents a test adds to ``env.procs`` are cleaned up too (started again if
    the test killed one, so that it stops its containers). The cluster has the ``host``
    RuntimeClass, for pods that run this machine's binaries."""
    data_dirs = {n: tmp / n for n in nodes}
    sleep = unique_sleep()
    problems: list[str] = []
    async with running_cluster(tmp / "data", **options) as cluster:
        agents: list[Agent] = []
        env = Env(cluster, agents, list(nodes), sleep, tmp)
        try:
            await ensure_host_runtime_class(cluster.client)
            for node in nodes:
                a = start_agent(cluster, node, data_dirs[node], **(agent_options or {}))
                agents.append(a)
                await a.start()
            for node in nodes:
                await eventually(
                    partial(node_ready, cluster.client, node),
                    f"node {node} Ready",
                    timeout=WAIT,
                    retry_on=NOT_YET,
                )
            yield env
        finally:
            try:
                for p in env.procs:
                    if not p.alive():
                        p.start()
                        with contextlib.suppress(AssertionError):
                            await eventually(
                                partial(node_ready, cluster.client, p.node),
                                f"{p.node} back",
                                timeout=15,
                                retry_on=NOT_YET,
                            )
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
