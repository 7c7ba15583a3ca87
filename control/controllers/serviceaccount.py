"""ServiceAccounts controller (Kubernetes' ``serviceaccount`` controller): every namespace
that is not terminating has a ServiceAccount named ``default``, created when the namespace
appears and again whenever it is deleted.

Keys are namespace names; a namespace added or updated, or a ``default`` ServiceAccount
deleted, enqueues its namespace.

Concurrency contract: runs under ``control.runtime.Controller`` (one key never reconciled
by two workers at once); the create is idempotent (AlreadyExists is success). Event
handlers are synchronous and only enqueue keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control.api import errors
from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.runtime.controller import Controller, Result

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

NAME = "serviceaccount"
DEFAULT = "default"


class ServiceAccountsController:
    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._namespaces = ctx.informers.informer(core_pb2.Namespace)
        self._accounts = ctx.informers.informer(core_pb2.ServiceAccount)
        self._namespaces.add_event_handler(
            on_add=lambda ns: self.controller.enqueue(ns.metadata.name),
            on_update=lambda _o, ns: self.controller.enqueue(ns.metadata.name))
        self._accounts.add_event_handler(on_delete=self._deleted)

    def _deleted(self, sa: core_pb2.ServiceAccount) -> None:
        if sa.metadata.name == DEFAULT:
            self.controller.enqueue(sa.metadata.namespace)

    async def reconcile(self, key: str) -> Result | None:
        ns = self._namespaces.indexer.get(key)
        if ns is None or ns.metadata.HasField("deletion_timestamp") \
                or ns.status.phase == "Terminating":
            return None
        if self._accounts.indexer.get(f"{key}/{DEFAULT}") is not None:
            return None
        sa = core_pb2.ServiceAccount()
        sa.metadata.name, sa.metadata.namespace = DEFAULT, key
        try:
            await self._client.create(sa)
        except errors.AlreadyExists:
            pass
        except errors.Forbidden:
            pass  # the namespace began terminating meanwhile
        return None
