"""Helpers of the tests that run a cluster in the lab (``scripts/lab``): the lab command, a
client through the lab's loopback relay, pods pinned to a machine, waiting for them, and
running a program in a pod.

Traffic stays inside the lab's namespaces: the client talks to the API through the relay,
and to pods only through exec. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from control.api import convert
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.config import read_config_file
from tests.support.runtimeclasses import HOST, ensure_host_runtime_class

REPO = Path(__file__).resolve().parents[2]
LAB = [sys.executable, str(REPO / "scripts" / "lab.py")]


def lab(d: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``scripts/lab --dir d ARGS...``, output captured."""
    return subprocess.run([*LAB, "--dir", str(d), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


@asynccontextmanager
async def lab_client(d: Path) -> AsyncIterator[ApiClient]:
    """An admin client of the lab in ``d``; the ``host`` RuntimeClass exists (pods that
    run this machine's programs name it)."""
    cfg = read_config_file(d / "lab.conf")
    channel = open_channel(cfg.server, cfg.credentials)
    c = ApiClient(channel, cfg.server, timeout=10)
    try:
        await ensure_host_runtime_class(c)
        yield c
    finally:
        await channel.close(None)


def host_pod(name: str, node: str, *containers: dict[str, Any],
             labels: dict[str, str] | None = None) -> core_pb2.Pod:
    """A pod on ``node`` whose containers run this machine's programs."""
    p: core_pb2.Pod = convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "runtimeClassName": HOST, "containers": list(containers)}}, core_pb2.Pod())
    return p


def sleeper(name: str = "c") -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sleep", "3600"]}


def ready(p: core_pb2.Pod) -> bool:
    return bool(p.status.phase == "Running" and p.status.pod_ip and all(
        cs.ready for cs in p.status.container_statuses))


async def wait_running(c: ApiClient, names: list[str], limit: float = 60,
                       namespace: str = "default") -> dict[str, core_pb2.Pod]:
    """The named pods once each runs, has an IP and all its containers are ready."""
    async with asyncio.timeout(limit):
        while True:
            pods = {p.metadata.name: p for p in (await c.list(core_pb2.Pod, namespace)).items}
            if all(n in pods and ready(pods[n]) for n in names):
                return pods
            await asyncio.sleep(0.2)


async def node_ips(c: ApiClient) -> dict[str, str]:
    """Node name -> InternalIP."""
    return {n.metadata.name: next(a.address for a in n.status.addresses
                                  if a.type == "InternalIP")
            for n in (await c.list(core_pb2.Node)).items}


async def exec_out(c: ApiClient, pod_name: str, argv: list[str], *, container: str = "",
                   limit: float = 30) -> tuple[int, str, str]:
    """Run ``argv`` in a pod: (exit code, stdout, stderr)."""
    async with asyncio.timeout(limit):
        code, out, err = await c.exec("default", pod_name, argv, container=container).wait()
    return code, out.decode(), err.decode()


async def python_in(c: ApiClient, pod_name: str, script: str, *args: str,
                    container: str = "") -> str:
    """Run a Python ``script`` in a host-runtime pod; its stdout, stripped (a failure
    fails the test with the script's output)."""
    code, out, err = await exec_out(c, pod_name, [sys.executable, "-c", script, *args],
                                    container=container)
    assert code == 0, out + err
    return out.strip()


__all__ = ["LAB", "REPO", "exec_out", "host_pod", "lab", "lab_client", "node_ips",
           "python_in", "ready", "sleeper", "wait_running"]
