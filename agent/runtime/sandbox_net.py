"""A sandbox's network: the pod's own network namespace, pinned under the runtime's state
dir (``<root>/netns/<sandbox id>``), plumbed by a :class:`~agent.network.interface.
PodNetwork`; or nothing at all for a host-network pod (and whenever the runtime has no pod
network: without root every pod shares the machine's network).

The pin keeps the namespace alive with no process in it, so a container that restarts, a
monitor, an exec and a restarted agent all join the same namespace by path; it goes when
the sandbox is removed, after the network has released the pod's address.

Concurrency contract: coroutines; the runtime serialises calls per sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from agent.network import netns
from agent.network.interface import AttachRequest, NetworkError, PodNetwork
from agent.runtime.interface import RuntimeError_, SandboxConfig


class SandboxNetworkError(RuntimeError_):
    """The pod's network could not be set up (Kubernetes' FailedCreatePodSandBox)."""

    reason = "FailedCreatePodSandBox"


def request(sandbox_id: str, netns_path: str, config: SandboxConfig | None = None,
            pod: dict[str, object] | None = None) -> AttachRequest:
    if config is not None:
        return AttachRequest(container_id=sandbox_id, netns=netns_path,
                             pod_namespace=config.namespace, pod_name=config.name,
                             pod_uid=config.pod_uid,
                             port_mappings=tuple(config.port_mappings))
    pod = pod or {}
    return AttachRequest(container_id=sandbox_id, netns=netns_path,
                         pod_namespace=str(pod.get("namespace", "")),
                         pod_name=str(pod.get("name", "")), pod_uid=str(pod.get("pod_uid", "")))


async def attach(network: PodNetwork, netns_dir: Path, sandbox_id: str,
                 config: SandboxConfig) -> tuple[str, str]:
    """Create and pin the pod's namespace, attach it; returns (namespace path, pod IP).
    Nothing is left behind on failure."""
    await asyncio.to_thread(netns_dir.mkdir, parents=True, exist_ok=True)
    path = str(netns_dir / sandbox_id)
    try:
        await asyncio.to_thread(netns.create, path)
    except OSError as e:
        raise SandboxNetworkError(f"creating the pod's network namespace: {e}") from e
    try:
        att = await network.add(request(sandbox_id, path, config))
    except NetworkError as e:
        await detach(network, netns_dir, sandbox_id)
        raise SandboxNetworkError(f"setting up the pod's network: {e}") from e
    except BaseException:
        await detach(network, netns_dir, sandbox_id)
        raise
    return path, att.ips[0]


async def detach(network: PodNetwork | None, netns_dir: Path, sandbox_id: str,
                 pod: dict[str, object] | None = None) -> None:
    """Release the pod's address and links, then unpin its namespace. Idempotent."""
    path = str(netns_dir / sandbox_id)
    if network is not None:
        await network.delete(request(sandbox_id, path, pod=pod))
    await asyncio.to_thread(netns.remove, path)


async def remove_orphans(netns_dir: Path, live: set[str]) -> list[str]:
    """Unpin namespaces whose sandbox no longer exists; returns their ids."""
    gone = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(netns_dir):
            if entry not in live:
                await asyncio.to_thread(netns.remove, str(netns_dir / entry))
                gone.append(entry)
    return gone
