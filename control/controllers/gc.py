"""The garbage collector: deletes objects whose owners are gone, and carries out the
Foreground and Orphan propagation policies (Kubernetes' garbagecollector).

The ownerReferences graph is not kept as a separate structure: every monitored kind's
shared informer gets two indexes, "by uid" and "by owner uid", which together *are* the
graph (owner -> dependents and dependent -> owners are both one index lookup), always
exactly as fresh as the caches, with nothing to rebuild after a relist.

Monitored: every kind the API serves except Events (which are neither owners nor, in
practice, dependents, and are numerous). Each reconcile key is ``resource|namespace|name``.
Only metadata is ever read from the caches (fresh objects are read for writes), so the
kinds no other controller watches come from metadata-only informers (objects reduced to
apiVersion, kind and metadata by the server, as Kubernetes' PartialObjectMetadata); the
kinds others watch share their full informers (the controller manager builds the
collector last so that it knows which).

``reconcile`` looks at one object:

- **Being deleted with the ``orphan`` finalizer** (propagationPolicy=Orphan): remove the
  object's uid from the ownerReferences of all its dependents, then remove the finalizer
  (the apiserver then deletes the object).
- **Being deleted with the ``foregroundDeletion`` finalizer**: every dependent is looked at
  (queued) so it gets deleted; the finalizer is removed once no dependent with
  ``blockOwnerDeletion: true`` is left.
- **Otherwise, if it has ownerReferences**: classify its owners as *solid* (exists, not in
  foreground deletion), *dangling* (absent, or its uid differs: a namesake) or *waiting*
  (in foreground deletion). Any solid owner -> the object survives; references to
  dangling and waiting owners are removed from it (so a waiting owner is not blocked by a
  dependent another owner keeps). No solid owner -> delete it: with Foreground if a
  waiting owner must wait for the object's own dependents (after clearing its
  blockOwnerDeletion flags when one of its dependents is itself waiting, which breaks
  ownership cycles), else with the policy its own finalizers ask for (Background by
  default).

Destructive decisions are checked live: an owner absent from the cache is read from the
API (NotFound or a different uid = absent; an absent uid is remembered, uids never come
back) and deletes carry a uid precondition. An owner kind the API does not know is
treated as present: the collector never deletes on a guess.

Event handlers only enqueue: an object with ownerReferences or GC finalizers itself; on
delete, its dependents (their owner may now be gone) and its owners (a foreground owner
may now be unblocked); on update, the owners of the old and new versions.

Concurrency contract: runs under ``control.runtime.Controller`` (one key never in two
workers at once; different objects in parallel). Writes are compare-and-swap updates of a
fresh read (retried on Conflict) or uid-preconditioned deletes, so racing with users or
other controllers never loses their changes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from control.api import errors, kinds
from control.api.pb import meta_pb2
from control.api.podutil import Object
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime.controller import Controller, Result
from control.runtime.informer import EventHandler, SharedInformer

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

Refs = list[meta_pb2.OwnerReference]

log = structlog.get_logger(__name__, component="controller", controller="garbagecollector")

NAME = "garbagecollector"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
UID_INDEX = "flotilla.io/uid"
OWNER_UID_INDEX = "flotilla.io/owner-uid"
# Kinds never watched: high volume, and never owners.
UNMONITORED = frozenset({"events"})
_ABSENT_CACHE_SIZE = 4096
_UPDATE_RETRIES = 5

SOLID = "solid"
DANGLING = "dangling"
WAITING = "waiting"


def uid_index(obj: Object) -> list[str]:
    return [obj.metadata.uid] if obj.metadata.uid else []


def owner_uid_index(obj: Object) -> list[str]:
    return [ref.uid for ref in obj.metadata.owner_references if ref.uid]


def is_deleting_dependents(obj: Object) -> bool:
    """In foreground deletion: deleted, and waiting for its blocking dependents."""
    m = obj.metadata
    return m.HasField("deletion_timestamp") and FOREGROUND in m.finalizers


def blocks(dependent: Object, owner_uid: str) -> bool:
    """Whether ``dependent`` holds up the foreground deletion of owner ``owner_uid``."""
    return any(r.uid == owner_uid and r.HasField("block_owner_deletion")
               and r.block_owner_deletion for r in dependent.metadata.owner_references)


def deletion_policy(obj: Object, waiting: bool, has_dependents: bool) -> str:
    """The propagation policy to delete an ownerless dependent with (attemptToDeleteItem).

    A dependent of a waiting owner that has dependents of its own is deleted in the
    foreground, so the owner's wait covers the whole tree."""
    if waiting and has_dependents:
        return "Foreground"
    if ORPHAN in obj.metadata.finalizers:
        return "Orphan"
    if FOREGROUND in obj.metadata.finalizers:
        return "Foreground"
    return "Background"


def decide(owner_states: dict[str, str]) -> str:
    """What to do with a dependent given uid -> SOLID/DANGLING/WAITING of its owners:
    "keep" (nothing to do), "unlink" (survives; drop refs to non-solid owners) or
    "delete"."""
    if not owner_states:
        return "keep"
    states = set(owner_states.values())
    if SOLID in states:
        return "unlink" if states - {SOLID} else "keep"
    return "delete"


def _key(info: kinds.KindInfo, obj: Object) -> str:
    return f"{info.plural}|{obj.metadata.namespace}|{obj.metadata.name}"


def _cache_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


class GarbageCollector:
    """Deletes orphaned dependents and runs propagation policies; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *,
                 resources: tuple[str, ...] | None = None) -> None:
        self._client: ApiClient = ctx.client
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        if resources is None:
            resources = tuple(i.plural for i in kinds.KINDS if i.plural not in UNMONITORED)
        self._infos = {r: kinds.by_resource(r) for r in resources}
        self._informers: dict[str, SharedInformer[Any]] = {}
        # uids confirmed absent through the API; a uid is never reused.
        self._absent: OrderedDict[str, None] = OrderedDict()
        indexers = {UID_INDEX: uid_index, OWNER_UID_INDEX: owner_uid_index}
        for plural, info in self._infos.items():
            # A kind another controller already watches: its informer, decoded anyway.
            # Any other: metadata only (owners, finalizers, deletion), a fraction of the
            # bytes and decoding per write, as Kubernetes' metadata informers.
            informers = ctx.informers
            if ctx.metadata_informers is not None and plural not in ctx.informers:
                informers = ctx.metadata_informers
            inf = informers.informer(plural, indexers=indexers)
            self._informers[plural] = inf
            inf.add_event_handler(self._handler(info))

    def _handler(self, info: kinds.KindInfo) -> EventHandler[Any]:
        def on_add(obj: Object) -> None:
            self._changed(info, None, obj)

        def on_update(old: Any, new: Object) -> None:
            self._changed(info, old, new)

        def on_delete(obj: Object) -> None:
            self._deleted(info, obj)

        return EventHandler(on_add, on_update, on_delete)

    # -- graph lookups -------------------------------------------------------------------

    def find(self, info: kinds.KindInfo, uid: str) -> Object | None:
        """The cached object of kind ``info`` with ``uid``; None if absent or unmonitored."""
        inf = self._informers.get(info.plural)
        if inf is None:
            return None
        found = inf.indexer.by_index(UID_INDEX, uid)
        return found[0] if found else None

    def dependents(self, owner: Object, owner_info: kinds.KindInfo) -> list[tuple[kinds.KindInfo,
                   Object]]:
        """Cached objects with an ownerReference to ``owner`` (same namespace if it is
        namespaced: a cross-namespace reference is invalid and ignored)."""
        out = []
        uid = owner.metadata.uid
        for plural, inf in self._informers.items():
            for dep in inf.indexer.by_index(OWNER_UID_INDEX, uid):
                if owner_info.namespaced and dep.metadata.namespace != owner.metadata.namespace:
                    continue
                out.append((self._infos[plural], dep))
        return out

    def _owner_infos(self, obj: Object) -> list[tuple[meta_pb2.OwnerReference,
                     kinds.KindInfo | None]]:
        out: list[tuple[meta_pb2.OwnerReference, kinds.KindInfo | None]] = []
        for ref in obj.metadata.owner_references:
            try:
                out.append((ref, kinds.by_kind(ref.kind, ref.api_version or None)))
            except KeyError:
                out.append((ref, None))
        return out

    # -- event handlers ------------------------------------------------------------------

    def _enqueue(self, info: kinds.KindInfo, obj: Object) -> None:
        self.controller.enqueue(_key(info, obj))

    def _interesting(self, obj: Object) -> bool:
        m = obj.metadata
        if m.owner_references:
            return True
        return m.HasField("deletion_timestamp") and (ORPHAN in m.finalizers
                                                     or FOREGROUND in m.finalizers)

    def _enqueue_deleting_owners(self, obj: Object) -> None:
        for ref, info in self._owner_infos(obj):
            if info is None:
                continue
            owner = self.find(info, ref.uid)
            if owner is not None and owner.metadata.HasField("deletion_timestamp"):
                self._enqueue(info, owner)

    def _changed(self, info: kinds.KindInfo, old: Object | None, new: Object) -> None:
        if self._interesting(new):
            self._enqueue(info, new)
        if old is not None and old.metadata.resource_version != new.metadata.resource_version:
            # A dependent that dropped a reference or stopped blocking may free an owner.
            self._enqueue_deleting_owners(old)
            self._enqueue_deleting_owners(new)

    def _deleted(self, info: kinds.KindInfo, obj: Object) -> None:
        for dinfo, dep in self.dependents(obj, info):
            self._enqueue(dinfo, dep)
        self._enqueue_deleting_owners(obj)

    # -- reconcile -----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        plural, namespace, name = key.split("|", 2)
        info = self._infos[plural]
        obj = self._informers[plural].indexer.get(_cache_key(namespace, name))
        if obj is None:
            return None  # gone: its dependents were queued by the delete handler
        m = obj.metadata
        if m.HasField("deletion_timestamp"):
            if ORPHAN in m.finalizers:
                await self._orphan_dependents(info, obj)
            elif FOREGROUND in m.finalizers:
                await self._process_deleting_dependents(info, obj)
            return None
        if m.owner_references:
            await self._attempt_to_delete(info, obj)
        return None

    async def _orphan_dependents(self, info: kinds.KindInfo, owner: Object) -> None:
        uid = owner.metadata.uid
        for dinfo, dep in self.dependents(owner, info):
            await self._rewrite_refs(dinfo, dep, lambda refs: [r for r in refs if r.uid != uid])
        await self._remove_finalizer(info, owner, ORPHAN)
        log.info("orphaned dependents", key=_key(info, owner))

    async def _process_deleting_dependents(self, info: kinds.KindInfo, owner: Object) -> None:
        uid = owner.metadata.uid
        blocking = 0
        for dinfo, dep in self.dependents(owner, info):
            if blocks(dep, uid):
                blocking += 1
            if not is_deleting_dependents(dep):
                self._enqueue(dinfo, dep)
        if blocking == 0:
            await self._remove_finalizer(info, owner, FOREGROUND)
            log.info("foreground deletion complete", key=_key(info, owner))

    async def owner_state(self, dep: Object, ref: meta_pb2.OwnerReference,
                          info: kinds.KindInfo | None) -> str:
        """SOLID, DANGLING or WAITING for the owner ``ref`` of ``dep``; see the docstring."""
        if info is None:
            return SOLID  # unknown kind: never delete on a guess
        if info.namespaced and not dep.metadata.namespace:
            return DANGLING  # a cluster-scoped object cannot have a namespaced owner
        if ref.uid in self._absent:
            return DANGLING
        cached = self.find(info, ref.uid)
        if cached is not None:
            return WAITING if is_deleting_dependents(cached) else SOLID
        namespace = dep.metadata.namespace if info.namespaced else ""
        try:
            live = await self._client.get(info, ref.name, namespace)
        except errors.NotFound:
            self._remember_absent(ref.uid)
            return DANGLING
        if live.metadata.uid != ref.uid:
            self._remember_absent(ref.uid)
            return DANGLING
        return WAITING if is_deleting_dependents(live) else SOLID

    def _remember_absent(self, uid: str) -> None:
        self._absent[uid] = None
        while len(self._absent) > _ABSENT_CACHE_SIZE:
            self._absent.popitem(last=False)

    async def _attempt_to_delete(self, info: kinds.KindInfo, obj: Object) -> None:
        states: dict[str, str] = {}
        for ref, oinfo in self._owner_infos(obj):
            states[ref.uid] = await self.owner_state(obj, ref, oinfo)
        action = decide(states)
        klog = log.bind(key=_key(info, obj))
        if action == "keep":
            return
        if action == "unlink":
            gone = {uid for uid, s in states.items() if s != SOLID}
            klog.info("removing references to owners that are gone or going", owners=sorted(gone))
            await self._rewrite_refs(info, obj, lambda refs: [r for r in refs
                                                              if r.uid not in gone])
            return
        waiting = WAITING in states.values()
        deps = self.dependents(obj, info)
        if waiting and deps and any(is_deleting_dependents(d) for _, d in deps):
            # A cycle (or what looks like one): our dependent waits for us while our owner
            # waits for us. Stop blocking our owners so that the waits can end.
            await self._rewrite_refs(info, obj, _unblock)
        policy = deletion_policy(obj, waiting, bool(deps))
        klog.info("deleting object whose owners are gone", policy=policy)
        try:
            await self._client.delete(info, obj.metadata.name, obj.metadata.namespace,
                                      propagation_policy=policy, uid=obj.metadata.uid)
        except errors.NotFound:
            pass
        except errors.Conflict:
            pass  # replaced by a namesake: that one is looked at on its own

    async def _rewrite_refs(self, info: kinds.KindInfo, obj: Object,
                            rewrite: Callable[[Refs], Refs]) -> None:
        """Set ``obj``'s ownerReferences to ``rewrite(refs)`` on a fresh read (CAS, retried)."""

        def apply(fresh: Any) -> bool:
            refs = fresh.metadata.owner_references
            new_refs = rewrite(list(refs))
            if new_refs == list(refs):
                return False
            del refs[:]
            refs.extend(new_refs)
            return True

        await self._update(info, obj, apply)

    async def _remove_finalizer(self, info: kinds.KindInfo, obj: Object, finalizer: str) -> None:
        def apply(fresh: Any) -> bool:
            finalizers = fresh.metadata.finalizers
            if finalizer not in finalizers:
                return False
            keep = [f for f in finalizers if f != finalizer]
            del finalizers[:]
            finalizers.extend(keep)
            return True

        await self._update(info, obj, apply)

    async def _update(self, info: kinds.KindInfo, obj: Object,
                      mutate: Callable[[Any], bool]) -> None:
        """Read-modify-write ``obj`` (this very object: a namesake is left alone); gone is
        fine."""
        try:
            await guaranteed_update(self._client, info.message, obj.metadata.namespace,
                                    obj.metadata.name, mutate, uid=obj.metadata.uid,
                                    attempts=_UPDATE_RETRIES)
        except errors.NotFound:
            pass


def _unblock(refs: Refs) -> Refs:
    out = []
    for r in refs:
        r2 = type(r)()
        r2.CopyFrom(r)
        if r2.HasField("block_owner_deletion") and r2.block_owner_deletion:
            r2.block_owner_deletion = False
        out.append(r2)
    return out
