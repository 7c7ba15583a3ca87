"""How an informer reads one resource: the ``ListWatcher`` protocol, its page and event
shapes, and ``ApiListWatcher``, the protocol over the API client.

``ApiListWatcher(client, core_pb2.Pod, field_selector="spec.nodeName=n1")`` is a
``ListWatcher[Pod]``: it lists in pages and watches with bookmarks; ``Gone`` (too old) comes
through as the client raises it, so the reflector knows to relist. A resource named by string
(``"pods"``) gives a ``ListWatcher[Any]``, for callers that pick resources at run time.
``metadata_only=True`` lists and watches objects reduced to their metadata (Kubernetes'
metadata informers: the garbage collector needs owners and finalizers, not specs).

The protocol lives here, under the runtime that consumes it, so the client's list watcher
satisfies it by type and in-memory doubles in tests can implement it too.

Concurrency: as the ApiClient it wraps (one event loop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, overload

from google.protobuf.message import Message

from control.api import kinds
from control.client.client import ApiClient, WatchEvent, kind_of

M = TypeVar("M", bound=Message)
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class ListPage(Generic[T_co]):
    """One page of a list: ``continue_`` is "" on the last page."""

    items: Sequence[T_co]
    resource_version: str
    continue_: str = ""


class ListWatcher(Protocol[T_co]):
    """How an informer reads one resource from the API.

    ``list(limit=0)`` means "no paging". Both methods raise ``control.api.errors.Gone`` when
    the resourceVersion (or continue token) is older than the server keeps.
    """

    async def list(
        self, *, limit: int, continue_: str, resource_version: str
    ) -> ListPage[T_co]: ...

    def watch(
        self, *, resource_version: str, allow_bookmarks: bool
    ) -> AsyncIterator[WatchEvent[T_co]]: ...


class ApiListWatcher(Generic[T_co]):
    """A ``ListWatcher`` over ``ApiClient``: one resource, optionally one namespace and
    selectors."""

    @overload
    def __init__(self: ApiListWatcher[M], client: ApiClient, resource: type[M],
                 namespace: str = "", *, label_selector: str = "", field_selector: str = "",
                 watch_timeout_seconds: int = 0, metadata_only: bool = False) -> None: ...
    @overload
    def __init__(self: ApiListWatcher[Any], client: ApiClient, resource: kinds.KindInfo | str,
                 namespace: str = "", *, label_selector: str = "", field_selector: str = "",
                 watch_timeout_seconds: int = 0, metadata_only: bool = False) -> None: ...

    def __init__(self, client: ApiClient, resource: type[Message] | kinds.KindInfo | str,
                 namespace: str = "", *, label_selector: str = "", field_selector: str = "",
                 watch_timeout_seconds: int = 0, metadata_only: bool = False) -> None:
        self.client = client
        # objects with metadata only (PartialObjectMetadata), for the garbage collector
        self.metadata_only = metadata_only
        self.info = kind_of(resource)
        self.resource = self.info.plural
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout_seconds = watch_timeout_seconds

    async def list(self, *, limit: int, continue_: str, resource_version: str) -> ListPage[T_co]:
        res = await self.client.list(
            self.info, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, limit=limit, continue_=continue_,
            resource_version="" if continue_ else resource_version,
            metadata_only=self.metadata_only)
        return ListPage(res.items, res.resource_version, res.continue_)

    def watch(self, *, resource_version: str,
              allow_bookmarks: bool) -> AsyncIterator[WatchEvent[T_co]]:
        return self.client.watch(
            self.info, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, resource_version=resource_version,
            allow_bookmarks=allow_bookmarks, timeout_seconds=self.watch_timeout_seconds,
            wait_for_ready=True, metadata_only=self.metadata_only)


__all__ = ["ApiListWatcher", "ListPage", "ListWatcher", "WatchEvent"]
