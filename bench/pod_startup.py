"""Pod startup latency on one agent with the process runtime (issue 3's benchmark).

``flotilla server`` and ``flotilla agent`` run as subprocesses, exactly as a user starts
them (default timings, info logging); the benchmark process is only a client. It watches
the node's pods and creates N pods bound to the node (``spec.nodeName``: the scheduler is
not measured here), each ``sleep``. A pod's startup latency is from just before its create
call to the watch event that first shows it ``Running`` with its container running
(Kubernetes' pod startup SLI, which allows 5 s at p99; the target here is 1 s).

Pods are created at ``--rate`` pods/s (0: all at once, a burst). Afterwards every pod is
deleted through the agent and everything is stopped; any process left carrying the run's
directory is killed by pid.

    .venv/bin/python -m bench.pod_startup                 # 100 pods at 10/s
    .venv/bin/python -m bench.pod_startup --rate 0        # 100 pods at once
    .venv/bin/python -m bench.pod_startup --profile /tmp/agent.prof   # cProfile the agent
    .venv/bin/python -m bench.pod_startup --py-spy /tmp/spy           # py-spy the agent

Also the helpers :mod:`bench.agent_resources` uses (:class:`AgentCluster`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import (
    PYTHON,
    REPO,
    command_line,
    machine,
    percentile,
    process_cpu_seconds,
    run,
    summarize_collapsed,
    table,
)
from control.api import convert, errors
from control.api.pb import core_pb2, node_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient

NODE = "bench-node"
NAMESPACE = "default"


def _pgrep(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True,
                         check=False).stdout
    return [int(x) for x in out.split()]


@dataclass
class Proc:
    """A flotilla subprocess with its output in a file."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _files: list[Any] = field(default_factory=list)

    def start(self) -> None:
        log = open(self.log_path, "ab")  # closed in stop()
        self._files.append(log)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in self._files:
            f.close()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def cli(*args: str) -> list[str]:
    return [PYTHON, "-m", "control.cli.main", *args]


class AgentCluster:
    """``flotilla server`` + ``flotilla agent`` subprocesses in a temporary directory."""

    def __init__(self, workdir: Path, *, agent_prefix: list[str] | None = None,
                 agent_args: list[str] | None = None) -> None:
        self.workdir = workdir
        self.server = Proc("server", cli("server", "--data-dir", str(workdir / "server"),
                                         "--listen", "127.0.0.1:0", "--log-format", "json"),
                           workdir / "server.log")
        self._agent_prefix = agent_prefix or [PYTHON]
        self._agent_args = agent_args or []
        self.agent: Proc | None = None
        self.address = ""
        self.client: ApiClient | None = None

    async def start(self) -> ApiClient:
        self.server.start()
        conf = self.workdir / "server" / "admin.conf"
        deadline = time.monotonic() + 60
        while not conf.exists():
            if not self.server.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{self.server.tail()}")
            await asyncio.sleep(0.05)
        from control.client import config as client_config

        cfg = client_config.load(None, str(conf))
        self.address = cfg.server
        self.client = ApiClient(open_channel(self.address, cfg.credentials), self.address,
                                timeout=30)
        # the pods run this machine's sleep: the process runtime is measured, not pulls
        with contextlib.suppress(errors.AlreadyExists):
            await self.client.create(convert.from_dict(
                {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                 "metadata": {"name": HOST_RUNTIME_CLASS}, "handler": "host"},
                node_pb2.RuntimeClass()))
        self.agent = Proc("agent", [*self._agent_prefix, "-m", "control.cli.main",
                                    "--config", str(conf), "agent", "--node-name", NODE,
                                    "--data-dir", str(self.workdir / "agent"),
                                    "--log-format", "json", "--pod-network", "host",
                                    *self._agent_args],
                          self.workdir / "agent.log")
        self.agent.start()
        async with asyncio.timeout(60):
            while not await self._node_ready():
                if not self.agent.alive():
                    raise RuntimeError(f"agent exited:\n{self.agent.tail()}")
                await asyncio.sleep(0.1)
        return self.client

    async def _node_ready(self) -> bool:
        assert self.client is not None
        try:
            node = await self.client.get(core_pb2.Node, NODE)
        except errors.ApiError:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)

    def monitor_pids(self) -> list[int]:
        """The containers' monitor processes (their command line names the agent's dir)."""
        return [p for p in _pgrep(str(self.workdir / "agent" / "runtime"))
                if self.agent is None or p != self.agent.pid]

    async def delete_all_pods(self, limit: float = 180.0) -> None:
        assert self.client is not None
        c = self.client
        with contextlib.suppress(TimeoutError, errors.ApiError):
            async with asyncio.timeout(limit):
                pods = (await c.list(core_pb2.Pod, NAMESPACE)).items
                sem = asyncio.Semaphore(16)

                async def delete(name: str) -> None:
                    async with sem:
                        with contextlib.suppress(errors.NotFound):
                            await c.delete(core_pb2.Pod, name, NAMESPACE,
                                           grace_period_seconds=1)

                await asyncio.gather(*(delete(p.metadata.name) for p in pods))
                while (await c.list(core_pb2.Pod, NAMESPACE)).items:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)

    async def stop(self) -> None:
        try:
            if self.client is not None and self.agent is not None and self.agent.alive():
                await self.delete_all_pods()
        finally:
            if self.client is not None:
                await self.client.channel.close(None)
            if self.agent is not None:
                self.agent.stop()
            self.server.stop()
            # anything still carrying the run's directory (containers' monitors): kill it
            for pid in _pgrep(str(self.workdir)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


HOST_RUNTIME_CLASS = "host"


def bench_pod(name: str, seconds: int = 3600) -> core_pb2.Pod:
    return convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"bench": "startup"}},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                 "runtimeClassName": HOST_RUNTIME_CLASS,
                 "containers": [{"name": "main", "image": "busybox",
                                 "command": ["sleep", str(seconds)]}]},
    }, core_pb2.Pod())


def is_running(p: Any) -> bool:
    return p.status.phase == "Running" and bool(p.status.container_statuses) and all(
        cs.state.HasField("running") for cs in p.status.container_statuses)


async def _watch_running(client: ApiClient, seen: dict[str, float],
                         ready: asyncio.Event) -> None:
    rv = (await client.list(core_pb2.Pod, NAMESPACE)).resource_version
    ready.set()
    while True:
        try:
            async for ev in client.watch(core_pb2.Pod, NAMESPACE,
                                         field_selector=f"spec.nodeName={NODE}",
                                         resource_version=rv):
                rv = ev.resource_version or rv
                p = ev.object
                if p is not None and p.metadata.name not in seen and is_running(p):
                    seen[p.metadata.name] = time.monotonic()
        except errors.ApiError:
            await asyncio.sleep(0.1)


async def create_and_wait(client: ApiClient, count: int, rate: float,
                          limit: float = 300.0, prefix: str = "p") -> dict[str, float]:
    """Create ``count`` pods at ``rate``/s (0: at once); per pod, seconds from just before
    its create call to the watch event showing it Running."""
    created: dict[str, float] = {}
    seen: dict[str, float] = {}
    ready = asyncio.Event()
    watcher = asyncio.create_task(_watch_running(client, seen, ready), name="watch")
    try:
        await ready.wait()
        sem = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            name = f"{prefix}-{i:04d}"
            async with sem:
                created[name] = time.monotonic()
                await client.create(bench_pod(name))

        start = time.monotonic()
        tasks = []
        for i in range(count):
            if rate > 0:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(create(i)))
        await asyncio.gather(*tasks)
        async with asyncio.timeout(limit):
            while len(seen) < count:  # noqa: ASYNC110 - filled by the watch task
                await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return {name: seen[name] - created[name] for name in created if name in seen}


@contextlib.contextmanager
def workdir(keep: bool) -> Any:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="flotilla-agent-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"(logs kept in {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def py_spy(pid: int, out_dir: Path | None) -> AsyncIterator[Path | None]:
    """Record ``pid`` with py-spy (collapsed stacks) while the block runs."""
    if out_dir is None:
        yield None
        return
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, not measured
    out = out_dir / "agent.collapsed"
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
            "--output", str(out), "--nonblocking"]
    # py-spy runs beside the measured block and is stopped when it ends
    proc = subprocess.Popen(argv,  # noqa: ASYNC220
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def main_async(args: argparse.Namespace) -> None:
    prefix = [PYTHON, "-m", "cProfile", "-o", args.profile] if args.profile else None
    with workdir(args.keep) as wd:
        cluster = AgentCluster(wd, agent_prefix=prefix)
        try:
            client = await cluster.start()
            assert cluster.agent is not None
            cpu0 = process_cpu_seconds(cluster.agent.pid)
            t0 = time.monotonic()
            async with py_spy(cluster.agent.pid, args.py_spy) as spy_out:
                lat = await create_and_wait(client, args.pods, args.rate)
            wall = time.monotonic() - t0
            cpu = process_cpu_seconds(cluster.agent.pid) - cpu0
            restarted = {p.metadata.name for p in
                         (await client.list(core_pb2.Pod, NAMESPACE)).items
                         if any(cs.restart_count for cs in p.status.container_statuses)}
            rate = f"{args.rate:g}/s" if args.rate else "burst"

            def row(label: str, values: list[float]) -> list[str]:
                values = sorted(values)
                return [label, str(len(values)), rate,
                        *(f"{percentile(values, q) * 1e3:.0f}" for q in (50, 90, 99)),
                        f"{values[-1] * 1e3:.0f}" if values else "-"]

            print(f"# {command_line('bench.pod_startup')}")
            print(f"# {machine()}")
            rows = [row("all", list(lat.values()))]
            if restarted:
                rows.append(row("first start succeeded", [v for k, v in lat.items()
                                                          if k not in restarted]))
            print(table(["pods", "n", "rate", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows))
            print(f"all Running {wall:.1f} s after the first create; agent CPU {cpu:.1f} s")
            await asyncio.sleep(1.0)
            print(f"container monitor processes: {len(cluster.monitor_pids())} "
                  f"for {len(lat)} Running pods")
            if restarted:
                print(f"{len(restarted)} pods needed a second start of their container "
                      f"(the first failed: see the agent log): {sorted(restarted)}")
            if spy_out is not None and spy_out.exists():
                print(summarize_collapsed(spy_out))
        finally:
            await cluster.stop()
            if args.profile and os.path.exists(args.profile):  # noqa: ASYNC240
                import pstats

                pstats.Stats(args.profile).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0,
                    help="pods created per second (0: all at once)")
    ap.add_argument("--profile", default="", help="run the agent under cProfile, stats here")
    ap.add_argument("--py-spy", type=Path, default=None, help="py-spy the agent into DIR")
    ap.add_argument("--keep", action="store_true", help="keep the logs directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("note: not root, containers run without isolation", file=sys.stderr)
    run(lambda: main_async(args))


if __name__ == "__main__":
    main()
