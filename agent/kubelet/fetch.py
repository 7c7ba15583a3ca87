"""Fetcher: how the kubelet reads one API object a pod refers to (a ConfigMap or Secret
for its environment, an image pull Secret, its RuntimeClass).

A missing object is ``None``, not an error: the caller turns it into the pod's own
condition (CreateContainerConfigError, a sandbox that cannot start). The kubelet's
implementation reads through the API client; tests pass a dict-backed double.

Concurrency contract: a coroutine per read; implementations hold no state between calls.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


class Fetcher(Protocol):
    """Reads the object of kind ``kind`` named ``name`` in ``namespace`` ("" for
    cluster-scoped kinds), or None when it does not exist."""

    async def __call__(self, kind: type[M], namespace: str, name: str) -> M | None: ...
