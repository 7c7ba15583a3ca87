"""PrioritySort: the queue order: higher priority first, then older first.

Concurrency contract: stateless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.scheduler.framework import Handle, QueueSortPlugin


class PrioritySort(QueueSortPlugin):
    name = "PrioritySort"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def sort_key(self, priority: int, timestamp: float) -> tuple[Any, ...]:
        return (-priority, timestamp)
