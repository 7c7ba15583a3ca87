"""DefaultBinder: bind through the API's binding subresource (sets spec.nodeName and
PodScheduled=True in one write, refusing a pod already bound or being deleted).

Concurrency contract: runs in the binding task, concurrently with other binds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.api import errors
from control.scheduler.framework import BindPlugin, CycleState, Handle, Status
from control.scheduler.types import PodInfo


class DefaultBinder(BindPlugin):
    name = "DefaultBinder"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        self.client = handle.client if handle is not None else None

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        if self.client is None:
            return Status.error("DefaultBinder has no API client")
        try:
            await self.client.bind(pod.namespace, pod.name, node_name, pod.uid)
        except errors.ApiError as e:
            return Status.error(f"binding rejected: {e}")
        return None
