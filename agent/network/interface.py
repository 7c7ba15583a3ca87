"""The pod network contract, shaped like CNI: ``add`` / ``delete`` / ``check`` a pod's
network namespace (given as a path), returning its IPs; ``gc`` against the sandboxes that
still exist.

The runtime owns the namespace (it creates and pins it, and removes it after ``delete``); a
:class:`PodNetwork` only plumbs it: an interface inside, an address, routes, port mappings.
``bridge.py`` is the real one (bridge + veth + host-local IPAM + portmap, as the CNI plugins
of those names do), ``fake.py`` an in-memory double. A later containerd runtime can call the
same object with its own namespace paths.

Calls are keyed by ``container_id`` (the sandbox's id, CNI's CNI_CONTAINERID): ``add`` twice
with one id returns the same attachment, ``delete`` of an unknown id succeeds, as CNI asks.

Concurrency: coroutines on the agent's loop; calls for different ids may overlap, the
kubelet never overlaps calls for one pod.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol


class NetworkError(Exception):
    """The pod's network could not be set up or checked; the message says what and why."""


class NetworkNotReady(NetworkError):
    """The node's network is not configured yet (no pod range from the control plane)."""


@dataclass(frozen=True)
class PortMapping:
    """A hostPort: traffic to ``host_ip`` (any of the node's addresses when empty) on
    ``host_port`` goes to the pod's ``container_port``."""

    host_port: int
    container_port: int
    protocol: str = "TCP"  # TCP, UDP or SCTP
    host_ip: str = ""


@dataclass(frozen=True)
class AttachRequest:
    container_id: str  # the sandbox's id
    netns: str  # path of the pod's network namespace
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    port_mappings: tuple[PortMapping, ...] = ()
    if_name: str = "eth0"


@dataclass(frozen=True)
class Attachment:
    ips: tuple[str, ...]  # the pod's addresses, without prefix length
    prefix_length: int
    gateway: str
    interface: str


class PodNetwork(Protocol):
    async def add(self, req: AttachRequest) -> Attachment: ...

    async def delete(self, req: AttachRequest) -> None:
        """Undo ``add``; succeeds for an unknown id or a namespace already gone."""
        ...

    async def check(self, req: AttachRequest) -> None:
        """Raise :class:`NetworkError` unless the attachment is as ``add`` left it."""
        ...

    async def gc(self, keep: Collection[str]) -> list[str]:
        """Release everything held for container ids not in ``keep``; returns those ids."""
        ...
