"""One in-process agent on a real control plane, for pod end-to-end tests: its node name,
pods pinned to it, waiting for a pod, and stopping it so that nothing it ran is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from agent.main import Agent
from control.api import convert, errors
from control.api.pb import core_pb2
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.runtimeclasses import HOST

NODE = "e2e-node"
# Test agents pull only from loopback: docker.io, the registry of an image named without a
# host, stands behind a closed loopback port, so a pod that runs in its image by default
# (naming no RuntimeClass) fails to pull instead of reaching the internet.
LOOPBACK_MIRRORS = {"docker.io": ["127.0.0.1:9"]}


async def stop_agent_and_pods(cluster: Cluster, a: Agent, node: str) -> None:
    """Delete every pod through the agent (bounded), stop the agent, then make sure: any
    container still in the agent's runtime is a leak, killed and reported as a failure."""
    try:
        with contextlib.suppress(TimeoutError, errors.ApiError):
            async with asyncio.timeout(30):
                for p in (await cluster.client.list(core_pb2.Pod)).items:
                    with contextlib.suppress(errors.NotFound):
                        await cluster.client.delete(
                            core_pb2.Pod,
                            p.metadata.name,
                            p.metadata.namespace,
                            grace_period_seconds=1,
                        )
                while (await cluster.client.list(core_pb2.Pod)).items:
                    await asyncio.sleep(0.2)
    finally:
        await a.stop()
        leaked = await remove_leftovers(a.options.data_dir, node)
    assert not leaked, f"containers left running after every pod was deleted: {leaked}"


async def remove_leftovers(data_dir: Path, node: str) -> list[str]:
    """Stop and remove every container and sandbox of the agent's runtime, unmount its pod
    volumes; the names of the containers that were still running."""
    from agent.kubelet.volumes import VolumeManager
    from agent.runtime.interface import ContainerState
    from agent.runtime.process import ProcessRuntime

    runtime = ProcessRuntime(data_dir / "runtime", cgroup_prefix=f"flotilla/{node}")
    leaked: list[str] = []
    try:
        for cs in await runtime.list_containers():
            if cs.state is ContainerState.RUNNING:
                leaked.append(cs.name)
            with contextlib.suppress(Exception):
                await runtime.stop_container(cs.id, 1.0)
            with contextlib.suppress(Exception):
                await runtime.remove_container(cs.id)
        for sb in await runtime.list_pod_sandboxes():
            with contextlib.suppress(Exception):
                await runtime.stop_pod_sandbox(sb.id)
            with contextlib.suppress(Exception):
                await runtime.remove_pod_sandbox(sb.id)
    finally:
        await runtime.close()
    pods_dir = data_dir / "pods"
    volumes = VolumeManager(None, pods_dir)
    for pod_dir in pods_dir.iterdir() if pods_dir.is_dir() else ():
        with contextlib.suppress(Exception):
            await volumes.teardown(pod_dir.name)
    return leaked


def pod(name: str, command: list[str], restart: str = "Always", **spec: Any) -> core_pb2.Pod:
    return convert.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": restart,
                "terminationGracePeriodSeconds": 2,
                # the command is this machine's: run it on the host's files
                "runtimeClassName": HOST,
                "containers": [{"name": "main", "image": "busybox", "command": command}],
                **spec,
            },
        },
        core_pb2.Pod(),
    )


async def wait_pod(cluster: Cluster, name: str, pred: Any, limit: float = 30.0) -> Any:
    """The pod ``name`` once ``pred(pod)`` holds."""

    async def matching() -> Any:
        p = await cluster.client.get(core_pb2.Pod, name, "default")
        return p if pred(p) else None

    return await eventually(matching, f"pod {name} to match", timeout=limit, interval=0.1)
