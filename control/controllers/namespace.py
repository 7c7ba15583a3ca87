"""The namespace controller: empties a namespace being deleted, then finalizes it.

Deleting a namespace only marks it (``deletionTimestamp``, ``status.phase=Terminating``);
the apiserver keeps it while ``spec.finalizers`` holds ``"kubernetes"`` and refuses new
content in it. This controller does what Kubernetes' namespace controller does for that
finalizer: delete every object of every namespaced kind in the namespace (Background
propagation; pods with their normal grace, so a pod bound to a node waits for its agent),
report progress in the ``NamespaceDeletionContentFailure`` / ``NamespaceContentRemaining``
/ ``NamespaceFinalizersRemaining`` status conditions, and once nothing is left remove
``"kubernetes"`` from ``spec.finalizers`` through UpdateStatus (the apiserver then removes
the namespace, unless ``metadata.finalizers`` still hold it).

Level-triggered: the namespace informer only says "look at this namespace"; each reconcile
reads the namespace fresh from the API (the cache may lag behind our own writes) and lists
the content through the API, not through one informer per kind (most kinds are not watched
by anything else, and a terminating namespace is rare). Content that is still there —
objects waiting for finalizers or graceful termination — is checked again after
``requeue_after`` seconds. NotFound anywhere means "already gone".

Concurrency contract: runs under ``control.runtime.Controller``, which never reconciles one
namespace in two workers at once; different namespaces are emptied in parallel. Within one
namespace deletes are sequential, which bounds the load a big namespace puts on the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import errors, kinds
from control.api.pb import core_pb2
from control.api.podutil import Object
from control.client.client import ApiClient
from control.runtime.controller import Controller, Result

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="namespace")

FINALIZER = "kubernetes"
NAME = "namespace"
# How long to wait before looking again at content that is still terminating.
DEFAULT_REQUEUE_AFTER = 2.0

CONTENT_FAILURE = "NamespaceDeletionContentFailure"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"


@dataclass
class DeletionReport:
    """What one pass over a namespace's content found."""

    # group_resource -> objects still present after the pass (e.g. terminating pods)
    remaining: dict[str, int] = field(default_factory=dict)
    # finalizer -> objects it still holds
    finalizers: dict[str, int] = field(default_factory=dict)
    # one message per kind that could not be listed or deleted
    failures: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.remaining and not self.failures


def namespaced_kinds() -> list[kinds.KindInfo]:
    """Every kind whose objects live in a namespace (Events included: they go too)."""
    return [info for info in kinds.KINDS if info.namespaced]


def deletion_conditions(report: DeletionReport) -> list[tuple[str, str, str, str]]:
    """The (type, status, reason, message) conditions Kubernetes reports for ``report``."""
    conds: list[tuple[str, str, str, str]] = []
    if report.failures:
        conds.append((CONTENT_FAILURE, "True", "ContentDeletionFailed",
                      f"Failed to delete all resource types, {len(report.failures)} "
                      f"remaining: {'; '.join(report.failures)}"))
    else:
        conds.append((CONTENT_FAILURE, "False", "ContentDeleted",
                      "All content successfully deleted, may be waiting on finalization"))
    if report.remaining:
        detail = ", ".join(f"{gr} has {n} resource instances"
                           for gr, n in sorted(report.remaining.items()))
        conds.append((CONTENT_REMAINING, "True", "SomeResourcesRemain",
                      f"Some resources are remaining: {detail}"))
    else:
        conds.append((CONTENT_REMAINING, "False", "ContentRemoved",
                      "All content successfully removed"))
    if report.finalizers:
        detail = ", ".join(f"{f} in {n} resource instances"
                           for f, n in sorted(report.finalizers.items()))
        conds.append((FINALIZERS_REMAINING, "True", "SomeFinalizersRemain",
                      f"Some content in the namespace has finalizers remaining: {detail}"))
    else:
        conds.append((FINALIZERS_REMAINING, "False", "ContentHasNoFinalizers",
                      "All content-preserving finalizers finished"))
    return conds


def apply_conditions(status: core_pb2.NamespaceStatus,
                     conds: Sequence[tuple[str, str, str, str]], now: Timestamp) -> bool:
    """Merge ``conds`` into ``status.conditions``; True if anything changed. The transition
    time moves only when a condition's status flips, as in Kubernetes."""
    changed = False
    by_type = {c.type: c for c in status.conditions}
    for ctype, cstatus, reason, message in conds:
        cur = by_type.get(ctype)
        if cur is None:
            cur = status.conditions.add(type=ctype)
            by_type[ctype] = cur
            changed = True
        if cur.status != cstatus:
            cur.status = cstatus
            cur.last_transition_time.CopyFrom(now)
            changed = True
        if cur.reason != reason or cur.message != message:
            cur.reason, cur.message = reason, message
            changed = True
    return changed


class NamespaceController:
    """Finalizes deleted namespaces; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *,
                 requeue_after: float = DEFAULT_REQUEUE_AFTER) -> None:
        self._client: ApiClient = ctx.client
        self._requeue_after = requeue_after
        self._informer = ctx.informers.informer(core_pb2.Namespace)
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        # Only namespaces being deleted need work; the check is cheap, so every add,
        # update and resync of such a namespace enqueues it.
        self._informer.add_event_handler(on_add=self._enqueue,
                                         on_update=lambda _old, new: self._enqueue(new))

    def _enqueue(self, ns: core_pb2.Namespace) -> None:
        if ns.metadata.HasField("deletion_timestamp"):
            self.controller.enqueue(ns.metadata.name)

    async def reconcile(self, key: str) -> Result | None:
        cached = self._informer.indexer.get(key)
        if cached is None or not cached.metadata.HasField("deletion_timestamp"):
            return None
        try:
            ns: core_pb2.Namespace = await self._client.get(core_pb2.Namespace, key)
        except errors.NotFound:
            return None
        if not ns.metadata.HasField("deletion_timestamp") or FINALIZER not in ns.spec.finalizers:
            return None  # not deleted, or already finalized (metadata.finalizers may hold it)
        report = await self._delete_content(key)
        klog = log.bind(namespace=key)
        new = core_pb2.Namespace()
        new.CopyFrom(ns)
        now = Timestamp()
        now.GetCurrentTime()
        status_changed = apply_conditions(new.status, deletion_conditions(report), now)
        if report.done:
            # One write finalizes and records the final conditions; the apiserver removes
            # the namespace as soon as no finalizer is left.
            remaining = [f for f in new.spec.finalizers if f != FINALIZER]
            del new.spec.finalizers[:]
            new.spec.finalizers.extend(remaining)
            try:
                await self._client.update_status(new)
            except errors.NotFound:
                return None
            klog.info("namespace content deleted; finalized")
            return None
        if status_changed:
            try:
                await self._client.update_status(new)
            except (errors.NotFound, errors.Conflict):
                pass  # conditions are progress reports: the next pass writes them again
        if report.failures:
            raise RuntimeError(f"deleting the content of namespace {key}: "
                               + "; ".join(report.failures))
        klog.debug("namespace content remaining", remaining=report.remaining)
        return Result(requeue_after=self._requeue_after)

    async def _delete_content(self, namespace: str) -> DeletionReport:
        """Delete everything in ``namespace``; report what is still there afterwards."""
        report = DeletionReport()
        for info in namespaced_kinds():
            try:
                items = (await self._client.list_all(info, namespace)).items
            except errors.ApiError as exc:
                report.failures.append(f"listing {info.group_resource}: {exc}")
                continue
            left = 0
            for obj in items:
                try:
                    still_there = await self._delete_one(info, obj)
                except errors.ApiError as exc:
                    report.failures.append(
                        f"deleting {info.group_resource} {obj.metadata.name}: {exc}")
                    still_there = True
                if still_there:
                    left += 1
                    for fin in obj.metadata.finalizers:
                        report.finalizers[fin] = report.finalizers.get(fin, 0) + 1
            if left:
                report.remaining[info.group_resource] = left
        return report

    async def _delete_one(self, info: kinds.KindInfo, obj: Object) -> bool:
        """Delete ``obj``; True if it is still there (finalizers, graceful termination)."""
        meta = obj.metadata
        if meta.HasField("deletion_timestamp"):
            return True  # already deleting: another delete would only repeat it
        try:
            # The uid precondition keeps us from deleting a namesake created after our list
            # (impossible while the namespace refuses content, but cheap to be sure of).
            _, pending = await self._client.delete(
                info, meta.name, meta.namespace, propagation_policy="Background", uid=meta.uid)
        except errors.NotFound:
            return False
        except errors.Conflict:
            return True  # replaced under us: the next pass sees the new one
        return bool(pending)
