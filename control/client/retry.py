"""Read-modify-write with optimistic concurrency: ``guaranteed_update`` (client-go's
``retry.RetryOnConflict`` around a get and an update, as its ``GuaranteedUpdate``).

    obj = await guaranteed_update(client, core_pb2.Pod, ns, name, mutate,
                                  current=cached_pod, status=False, attempts=3)

One attempt: take the object (``current``, typically the informer's copy, on the first
attempt; a fresh ``get`` on every later one), give ``mutate`` a private copy to change in
place, and write it back with the resourceVersion it was read at (``update``, or
``update_status`` with ``status=True``); a write that lost a race is a ``Conflict``, and the
next attempt starts from a fresh read. ``mutate`` returns whether it changed anything: False
writes nothing and returns the object as read ("no change" is success, not an error).

Outcomes: the object the server returned after the write (or the object as read, for no
change); ``NotFound`` when the object is gone, or was replaced by a namesake (its uid is not
``uid``: ``current``'s uid when ``current`` is given); ``Conflict`` after ``attempts``
conflicts in a row; any other API error at once.

Concurrency: as the client (one event loop). Nothing is shared between calls; ``mutate`` may
run several times and must depend only on the object it is given (and must not await).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from control.api import errors
from control.client.client import object_meta

M = TypeVar("M", bound=Message)

# Attempts before giving up: enough to ride out a burst of writers on one object, few enough
# that a caller's own retry (a controller's requeue with backoff) takes over soon.
DEFAULT_ATTEMPTS = 5


class Updater(Protocol):
    """The part of ``ApiClient`` a read-modify-write needs (an in-memory double in tests)."""

    async def get(self, resource: type[M], name: str, namespace: str = "", *,
                  resource_version: str = "") -> M: ...

    async def update(self, obj: M, *, dry_run: bool = False) -> M: ...

    async def update_status(self, obj: M) -> M: ...


async def guaranteed_update(
    client: Updater,
    cls: type[M],
    namespace: str,
    name: str,
    mutate: Callable[[M], bool],
    *,
    current: M | None = None,
    uid: str = "",
    status: bool = False,
    attempts: int = DEFAULT_ATTEMPTS,
) -> M:
    """Apply ``mutate`` to ``namespace/name`` until a write sticks; see the module docstring."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    if current is not None and not uid:
        uid = object_meta(current).uid
    obj = current
    for _ in range(attempts):
        if obj is None:
            obj = await client.get(cls, name, namespace)
        if uid and object_meta(obj).uid != uid:
            raise errors.NotFound(
                f'{_kind(cls)} "{name}" in namespace "{namespace}" was replaced (uid '
                f"{object_meta(obj).uid}, expected {uid})")
        new = cls()
        new.CopyFrom(obj)
        if not mutate(new):
            return obj
        try:
            return await (client.update_status(new) if status else client.update(new))
        except errors.Conflict:
            obj = None  # read again and redo the change on what is there now
    where = f'{_kind(cls)} "{name}"' + (f' in namespace "{namespace}"' if namespace else "")
    raise errors.Conflict(f"could not update {where}: it changed under us {attempts} times "
                          "in a row")


def _kind(cls: type[Message]) -> str:
    return cls.DESCRIPTOR.name


__all__ = ["DEFAULT_ATTEMPTS", "Updater", "guaranteed_update"]
