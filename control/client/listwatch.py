"""ListWatcher over the API client: what an informer needs to follow one resource.

``ApiListWatcher(client, "pods", namespace="", field_selector="spec.nodeName=n1")`` lists
in pages and watches with bookmarks; ``Gone`` (too old) comes through as the client raises
it, so the reflector knows to relist. Shaped to ``control.runtime.informer.ListWatcher``
without importing the runtime (the runtime layers above the client).

Concurrency: as the ApiClient it wraps (one event loop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from control.client.client import ApiClient, ListResult, WatchEvent


@dataclass(frozen=True)
class Page:
    items: list[Any]
    resource_version: str
    continue_: str


class ApiListWatcher:
    def __init__(self, client: ApiClient, resource: str, namespace: str = "", *,
                 label_selector: str = "", field_selector: str = "",
                 watch_timeout_seconds: int = 0) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout_seconds = watch_timeout_seconds

    async def list(self, *, limit: int, continue_: str, resource_version: str) -> Page:
        res: ListResult = await self.client.list(
            self.resource, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, limit=limit, continue_=continue_,
            resource_version="" if continue_ else resource_version)
        return Page(res.items, res.resource_version, res.continue_)

    def watch(self, *, resource_version: str,
              allow_bookmarks: bool) -> AsyncIterator[WatchEvent]:
        return self.client.watch(
            self.resource, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, resource_version=resource_version,
            allow_bookmarks=allow_bookmarks, timeout_seconds=self.watch_timeout_seconds)
