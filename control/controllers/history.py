"""ControllerRevision history of a workload (Kubernetes' controller/history): what the
DaemonSet and StatefulSet controllers share.

``RevisionHistory.sync(owner)`` returns (current revision, every revision of the owner):
the revision whose data is the owner's pod template is current (created as
``<owner>-<hash>`` with the next revision number when missing; an older one matching again —
a rollback — gets the next number; duplicates are deleted). Orphaned revisions the owner's
selector matches are adopted first, so an owner deleted with orphaning and created again
keeps its history. ``clean`` deletes revisions beyond ``revisionHistoryLimit`` that no live
pod uses, oldest first. A hash collision (a name taken by another template) bumps the
owner's ``status.collisionCount`` and raises Conflict so the reconcile runs again.

Concurrency contract: stateless apart from the client and informer it holds; called from
the owning controller's reconcile (one owner never reconciled by two workers at once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from control.api import convert, errors, kinds, labels, revisions
from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import controller_of
from control.client.client import ApiClient
from control.controllers import deployment_util as du
from control.controllers.podcontrol import CONTROLLER_UID_INDEX, owner_reference
from control.runtime.indexer import NAMESPACE_INDEX
from control.runtime.informer import SharedInformer

Revision = apps_pb2.ControllerRevision
REVISION = kinds.by_message(apps_pb2.ControllerRevision)
REVISION_HASH_LABEL = "controller-revision-hash"


def same_template(a: core_pb2.PodTemplateSpec, b: core_pb2.PodTemplateSpec) -> bool:
    return bool(convert.to_dict(a) == convert.to_dict(b))


def selector_of(owner: Any) -> labels.Selector:
    if not owner.spec.HasField("selector"):
        return labels.nothing()
    return labels.from_label_selector(owner.spec.selector)


class RevisionHistory:
    """One workload kind's revisions; see the module docstring."""

    def __init__(self, client: ApiClient, revisions_informer: SharedInformer[Revision],
                 owner_message: type[Any]) -> None:
        self._client = client
        self._revisions = revisions_informer
        self._owner_message = owner_message

    async def _still_current(self, owner: Any) -> bool:
        try:
            fresh = await self._client.get(self._owner_message, owner.metadata.name,
                                           owner.metadata.namespace)
        except errors.NotFound:
            return False
        return bool(fresh.metadata.uid == owner.metadata.uid
                    and not fresh.metadata.HasField("deletion_timestamp"))

    def owned(self, owner: Any) -> list[Revision]:
        return [r for r in self._revisions.indexer.by_index(CONTROLLER_UID_INDEX,
                                                            owner.metadata.uid)
                if r.metadata.namespace == owner.metadata.namespace]

    async def sync(self, owner: Any) -> tuple[Revision, list[Revision]]:
        """(current revision, every revision of ``owner``)."""
        template = owner.spec.template
        revs = self.owned(owner)
        revs.extend(await self._adopt(owner))
        top = max((r.revision for r in revs), default=0)
        matching = sorted((r for r in revs if same_template(revisions.template_of(r.data),
                                                            template)),
                          key=lambda r: r.revision)
        if matching:
            current = matching[-1]
            for dup in matching[:-1]:
                await self.delete(dup)
            if current.revision < top:
                current = await self._bump(current, top + 1)
            return current, revs
        status = owner.status
        collision = status.collision_count if status.HasField("collision_count") else None
        hash_ = du.compute_hash(template, collision)
        cr = apps_pb2.ControllerRevision(api_version="apps/v1", kind="ControllerRevision")
        cr.metadata.name = f"{owner.metadata.name}-{hash_}"
        cr.metadata.namespace = owner.metadata.namespace
        cr.metadata.labels.update(template.metadata.labels)
        cr.metadata.labels[REVISION_HASH_LABEL] = hash_
        cr.metadata.owner_references.append(owner_reference(owner))
        cr.data.CopyFrom(revisions.revision_data(template))
        cr.revision = top + 1
        try:
            created = await self._client.create(cr)
        except errors.AlreadyExists:
            existing = await self._client.get(REVISION, cr.metadata.name,
                                              owner.metadata.namespace)
            ref = controller_of(existing)
            if (ref is not None and ref.uid == owner.metadata.uid
                    and same_template(revisions.template_of(existing.data), template)):
                return existing, revs
            # a hash collision: count it so that the next hash differs, and try again
            fresh = await self._client.get(self._owner_message, owner.metadata.name,
                                           owner.metadata.namespace)
            fresh.status.collision_count = (collision or 0) + 1
            await self._client.update_status(fresh)
            raise errors.Conflict(f"revision name {cr.metadata.name} is taken") from None
        return created, [*revs, created]

    async def _adopt(self, owner: Any) -> list[Revision]:
        selector = selector_of(owner)
        orphans = [r for r in self._revisions.indexer.by_index(NAMESPACE_INDEX,
                                                                owner.metadata.namespace)
                   if controller_of(r) is None and selector.matches(r.metadata.labels)]
        if not orphans or not await self._still_current(owner):
            return []
        adopted = []
        for rev in orphans:
            new = apps_pb2.ControllerRevision()
            new.CopyFrom(rev)
            new.metadata.owner_references.append(owner_reference(owner))
            try:
                adopted.append(await self._client.update(new))
            except errors.NotFound:
                continue
        return adopted

    async def _bump(self, rev: Revision, number: int) -> Revision:
        new = apps_pb2.ControllerRevision()
        new.CopyFrom(rev)
        new.revision = number
        updated: Revision = await self._client.update(new)
        return updated

    async def delete(self, rev: Revision) -> None:
        try:
            await self._client.delete(REVISION, rev.metadata.name, rev.metadata.namespace,
                                      uid=rev.metadata.uid)
        except errors.NotFound:
            pass

    async def clean(self, owner: Any, revs: Iterable[Revision], in_use: Callable[[Revision], bool],
                    keep: Iterable[Revision]) -> None:
        """Delete the oldest revisions beyond the history limit that ``in_use`` rejects and
        that are not in ``keep`` (the current and update revisions)."""
        spec = owner.spec
        limit = spec.revision_history_limit if spec.HasField("revision_history_limit") else 10
        kept = {r.metadata.uid for r in keep}
        old = sorted((r for r in revs if r.metadata.uid not in kept and not in_use(r)),
                     key=lambda r: r.revision)
        for rev in old[:max(0, len(old) - limit)]:
            await self.delete(rev)
