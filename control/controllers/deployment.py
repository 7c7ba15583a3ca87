"""The Deployment controller: rolls a Deployment's pod template out through ReplicaSets.

A Deployment owns one ReplicaSet per template revision, named
``<deployment>-<pod-template-hash>``; the ReplicaSet controller makes the pods. Each
reconcile (Kubernetes' ``syncDeployment``):

1. claims the ReplicaSets of the namespace: adopts orphans its selector matches, releases
   owned ones it no longer matches (compare-and-swap updates of ``ownerReferences``);
2. a Deployment being deleted only gets its status written;
3. records pause / resume in the Progressing condition;
4. paused, or resized (a ReplicaSet's desired-replicas annotation differs from
   ``spec.replicas``): scales the active ReplicaSets proportionally
   (``deployment_util.proportional_scale``) and makes no rollout progress;
5. otherwise rolls out by its strategy:
   - RollingUpdate: grow the new ReplicaSet within ``maxSurge``; else shrink the old
     ones, unhealthy replicas first, keeping ``replicas - maxUnavailable`` available;
   - Recreate: scale every old ReplicaSet to 0, wait until their pods are gone (pod
     informer), then create / scale up the new one;
6. deletes empty old ReplicaSets beyond ``revisionHistoryLimit`` once a rollout is
   complete (or while paused), and writes status with the Progressing / Available
   conditions; a rollout that may hit ``progressDeadlineSeconds`` is looked at again
   when the deadline passes.

Rollback is not done here: ``flotilla rollout undo`` copies the chosen ReplicaSet's
template into the Deployment, as kubectl does, and this controller then finds that
ReplicaSet as the new one and gives it the next revision.

The arithmetic is in :mod:`control.controllers.deployment_util` (pure, table-tested).

Stale caches: every ReplicaSet write is a compare-and-swap on the cached resourceVersion
(status updates bump it too), so a decision made on a stale ReplicaSet fails with Conflict
and is retried with backoff rather than applied; the new ReplicaSet's name is
deterministic, so a create the cache has not seen yet comes back as AlreadyExists and is
picked up. No expectations are needed (Kubernetes' deployment controller has none either).

Concurrency contract: runs under ``control.runtime.Controller``: one Deployment is never
reconciled by two workers at once; different Deployments proceed in parallel. Event
handlers are synchronous and only enqueue keys. Objects from the informers are never
modified: every change is made on a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import structlog
from google.protobuf.message import Message

from control.api import deployutil, errors, labels
from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import Object, controller_of
from control.client.client import ApiClient
from control.controllers import deployment_util as du
from control.controllers.podcontrol import CONTROLLER_UID_INDEX, controller_uid_index
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, WARNING
from control.runtime.indexer import NAMESPACE_INDEX, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="deployment")

NAME = "deployment"
COMPONENT = "deployment-controller"

Deployment = apps_pb2.Deployment
M = TypeVar("M", bound=Message)
ReplicaSet = apps_pb2.ReplicaSet


def _copy(msg: M) -> M:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _key(obj: Object) -> str:
    return f"{obj.metadata.namespace}/{obj.metadata.name}"


class DeploymentController:
    """Reconciles Deployments into ReplicaSets; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self._recorder = ctx.events.new_recorder(COMPONENT)
        index = {NAMESPACE_INDEX: namespace_index, CONTROLLER_UID_INDEX: controller_uid_index}
        self._deployments = ctx.informers.informer(apps_pb2.Deployment,
                                                   indexers={NAMESPACE_INDEX: namespace_index})
        self._rss = ctx.informers.informer(apps_pb2.ReplicaSet, indexers=index)
        self._pods = ctx.informers.informer(core_pb2.Pod, indexers=index)
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        self._deployments.add_event_handler(
            on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n),
            on_delete=self._enqueue)
        self._rss.add_event_handler(on_add=self._rs_added, on_update=self._rs_updated,
                                    on_delete=self._rs_deleted)
        self._pods.add_event_handler(on_delete=self._pod_deleted)

    # -- event handlers: they only find the Deployment(s) to look at ---------------------

    def _enqueue(self, d: apps_pb2.Deployment) -> None:
        self.controller.enqueue(_key(d))

    def _owner(self, obj: ReplicaSet) -> Deployment | None:
        """The Deployment controlling ``obj`` (a ReplicaSet), from the cache."""
        ref = controller_of(obj)
        if ref is None or ref.kind != "Deployment":
            return None
        d = self._deployments.indexer.get(f"{obj.metadata.namespace}/{ref.name}")
        if d is None or d.metadata.uid != ref.uid:
            return None
        return d

    def _matching(self, rs: apps_pb2.ReplicaSet) -> list[Deployment]:
        """Deployments in the ReplicaSet's namespace whose selector matches its labels."""
        out = []
        for d in self._deployments.indexer.by_index(NAMESPACE_INDEX, rs.metadata.namespace):
            if du.selects_everything(d.spec.selector):
                continue
            if labels.from_label_selector(d.spec.selector).matches(rs.metadata.labels):
                out.append(d)
        return out

    def _rs_added(self, rs: apps_pb2.ReplicaSet) -> None:
        owner = self._owner(rs)
        if owner is not None:
            self._enqueue(owner)
        elif controller_of(rs) is None:
            for d in self._matching(rs):  # an orphan: whoever may adopt it
                self._enqueue(d)

    def _rs_updated(self, old: ReplicaSet, new: ReplicaSet) -> None:
        old_ref, new_ref = controller_of(old), controller_of(new)
        if old_ref is not None and (new_ref is None or old_ref.uid != new_ref.uid):
            owner = self._owner(old)
            if owner is not None:
                self._enqueue(owner)
        owner = self._owner(new)
        if owner is not None:
            self._enqueue(owner)
        elif new_ref is None and (old.metadata.labels != new.metadata.labels
                                  or old_ref is not None):
            for d in self._matching(new):
                self._enqueue(d)

    def _rs_deleted(self, rs: apps_pb2.ReplicaSet) -> None:
        owner = self._owner(rs)
        if owner is not None:
            self._enqueue(owner)

    def _pod_deleted(self, pod: core_pb2.Pod) -> None:
        # Recreate waits for the old pods to be gone: each deletion may be the last.
        ref = controller_of(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self._rss.indexer.get(f"{pod.metadata.namespace}/{ref.name}")
        if rs is None:
            return
        owner = self._owner(rs)
        if owner is not None and owner.spec.strategy.type == du.RECREATE:
            self._enqueue(owner)

    # -- reconcile -----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        cached = self._deployments.indexer.get(key)
        if cached is None:
            return None  # deleted: the garbage collector removes its ReplicaSets
        d: Deployment = _copy(cached)
        if du.selects_everything(d.spec.selector):
            self._recorder.event(d, WARNING, "SelectingAll",
                                 "This deployment is selecting all pods. A non-empty "
                                 "selector is required.")
            if d.status.observed_generation < d.metadata.generation:
                d.status.observed_generation = d.metadata.generation
                await self._write_status(d)
            return None
        rs_list = await self._claim_replica_sets(d)
        if d.metadata.HasField("deletion_timestamp"):
            new_rs = du.find_new_rs(d, rs_list)
            await self._sync_status(d, rs_list, new_rs)
            return None
        d = await self._check_paused_conditions(d)
        if d.spec.paused:
            return await self._sync(d, rs_list)
        new_rs = du.find_new_rs(d, rs_list)
        if du.is_scaling_event(d, new_rs, [rs for rs in rs_list if rs is not new_rs]):
            return await self._sync(d, rs_list)
        if d.spec.strategy.type == du.RECREATE:
            return await self._rollout_recreate(d, rs_list)
        return await self._rollout_rolling(d, rs_list)

    # -- claiming ReplicaSets ------------------------------------------------------------

    async def _claim_replica_sets(self, d: Deployment) -> list[ReplicaSet]:
        """The ReplicaSets this Deployment owns after adopting and releasing."""
        selector = labels.from_label_selector(d.spec.selector)
        deleting = d.metadata.HasField("deletion_timestamp")
        claimed: list[ReplicaSet] = []
        may_adopt: bool | None = None
        for rs in self._rss.indexer.by_index(NAMESPACE_INDEX, d.metadata.namespace):
            ref = controller_of(rs)
            matches = selector.matches(rs.metadata.labels)
            if ref is not None:
                if ref.uid != d.metadata.uid:
                    continue
                if matches:
                    claimed.append(rs)
                elif not deleting:
                    await self._release(d, rs)
                continue
            if deleting or not matches or rs.metadata.HasField("deletion_timestamp"):
                continue
            if may_adopt is None:
                may_adopt = await self._can_adopt(d)
            if not may_adopt:
                continue
            adopted = await self._adopt(d, rs)
            if adopted is not None:
                claimed.append(adopted)
        return claimed

    async def _can_adopt(self, d: Deployment) -> bool:
        # Kubernetes' RecheckDeletionTimestamp: a fresh read, so a Deployment deleted (or
        # replaced) since the cache saw it does not adopt anything.
        try:
            fresh = await self._client.get(Deployment, d.metadata.name, d.metadata.namespace)
        except errors.NotFound:
            return False
        return bool(fresh.metadata.uid == d.metadata.uid
                    and not fresh.metadata.HasField("deletion_timestamp"))

    async def _adopt(self, d: Deployment, rs: ReplicaSet) -> ReplicaSet | None:
        new = _copy(rs)
        new.metadata.owner_references.append(du.new_controller_ref(d))
        try:
            adopted: ReplicaSet = await self._client.update(new)
        except errors.NotFound:
            return None
        log.info("adopted replica set", deployment=_key(d), replicaset=rs.metadata.name)
        return adopted

    async def _release(self, d: Deployment, rs: ReplicaSet) -> None:
        new = _copy(rs)
        keep = [r for r in new.metadata.owner_references if r.uid != d.metadata.uid]
        del new.metadata.owner_references[:]
        new.metadata.owner_references.extend(keep)
        try:
            await self._client.update(new)
        except errors.NotFound:
            return
        log.info("released replica set", deployment=_key(d), replicaset=rs.metadata.name)

    # -- the new ReplicaSet and revisions ------------------------------------------------

    async def _new_and_old(self, d: Deployment, rs_list: Sequence[ReplicaSet],
                           create: bool) -> tuple[Deployment, ReplicaSet | None,
                                                  list[ReplicaSet]]:
        """(deployment, new ReplicaSet or None, old ReplicaSets), bringing the revision
        annotations up to date; with ``create``, the new ReplicaSet is made if missing."""
        existing = du.find_new_rs(d, rs_list)
        old_rss = [rs for rs in rs_list if rs is not existing]
        new_revision = du.max_revision(old_rss) + 1
        now = self._clock.now()
        if existing is not None:
            rs = _copy(existing)
            changed = du.set_new_rs_annotations(d, rs, new_revision, exists=True)
            if rs.spec.min_ready_seconds != d.spec.min_ready_seconds:
                rs.spec.min_ready_seconds = d.spec.min_ready_seconds
                changed = True
            if changed:
                rs = await self._client.update(rs)
            needs = du.set_deployment_revision(
                d, rs.metadata.annotations.get(deployutil.REVISION_ANNOTATION, ""))
            if du.has_progress_deadline(d) and du.get_condition(d.status,
                                        deployutil.PROGRESSING) is None:
                du.set_condition(d.status, du.new_condition(
                    deployutil.PROGRESSING, "True", du.FOUND_NEW_RS,
                    f'Found new replica set "{rs.metadata.name}"', now))
                needs = True
            if needs:
                d = await self._write_status(d)
            return d, rs, old_rss
        if not create:
            return d, None, old_rss
        collision = d.status.collision_count if d.status.HasField("collision_count") else None
        rs = du.new_replica_set(d, collision)
        rs.spec.replicas = du.new_rs_new_replicas(d, [*old_rss, rs], rs)
        du.set_new_rs_annotations(d, rs, new_revision, exists=False)
        already = False
        try:
            created: ReplicaSet = await self._client.create(rs)
        except errors.AlreadyExists:
            created = await self._client.get(ReplicaSet, rs.metadata.name, rs.metadata.namespace)
            ref = controller_of(created)
            if not (ref is not None and ref.uid == d.metadata.uid
                    and deployutil.equal_ignore_hash(d.spec.template, created.spec.template)):
                # A hash collision with someone else's ReplicaSet: the next name differs.
                d.status.collision_count = (collision or 0) + 1
                await self._write_status(d)
                raise
            already = True  # ours: the cache had not seen it yet
        except errors.ApiError as exc:
            if du.has_progress_deadline(d):
                du.set_condition(d.status, du.new_condition(
                    deployutil.PROGRESSING, "False", du.RS_CREATE_ERROR,
                    f'Failed to create new replica set "{rs.metadata.name}": {exc}', now))
                await self._write_status(d)
            self._recorder.event(d, WARNING, du.FAILED_RS_CREATE,
                                 f"Failed to create new replica set "
                                 f'"{rs.metadata.name}": {exc}')
            raise
        if not already and created.spec.replicas > 0:
            self._recorder.event(d, NORMAL, "ScalingReplicaSet",
                                 f"Scaled up replica set {created.metadata.name} "
                                 f"to {created.spec.replicas}")
        needs = du.set_deployment_revision(d, str(new_revision))
        if not already and du.has_progress_deadline(d):
            du.set_condition(d.status, du.new_condition(
                deployutil.PROGRESSING, "True", du.NEW_RS_CREATED,
                f'Created new replica set "{created.metadata.name}"', now))
            needs = True
        if needs:
            d = await self._write_status(d)
        return d, created, old_rss

    # -- scaling -------------------------------------------------------------------------

    async def _scale(self, d: Deployment, rs: ReplicaSet, size: int,
                     operation: str) -> tuple[bool, ReplicaSet]:
        """Set ``rs`` to ``size`` replicas (and the Deployment's replicas annotations);
        (scaled, the ReplicaSet as written)."""
        max_replicas = d.spec.replicas + du.max_surge(d)
        resize = rs.spec.replicas != size
        if not resize and not du.replicas_annotations_need_update(rs, d.spec.replicas,
                                                                  max_replicas):
            return False, rs
        new = _copy(rs)
        new.spec.replicas = size
        du.set_replicas_annotations(new, d.spec.replicas, max_replicas)
        written: ReplicaSet = await self._client.update(new)
        if resize:
            self._recorder.event(d, NORMAL, "ScalingReplicaSet",
                                 f"Scaled {operation} replica set {rs.metadata.name} "
                                 f"to {size} from {rs.spec.replicas}")
            log.info("scaled replica set", deployment=_key(d), replicaset=rs.metadata.name,
                     replicas=size, previous=rs.spec.replicas)
        return resize, written

    async def _apply_sizes(self, d: Deployment, rss: list[ReplicaSet],
                           sizes: dict[str, int]) -> bool:
        """Write ``sizes`` (name -> replicas) into ``rss`` in place; True if any scaled."""
        scaled = False
        for i, rs in enumerate(rss):
            size = sizes.get(rs.metadata.name)
            if size is None:
                continue
            op = "up" if size > rs.spec.replicas else "down"
            did, rss[i] = await self._scale(d, rs, size, op)
            scaled = scaled or did
        return scaled

    async def _sync(self, d: Deployment, rs_list: Sequence[ReplicaSet]) -> Result | None:
        """Paused or resized: proportional scaling only, no rollout progress."""
        d, new_rs, old_rss = await self._new_and_old(d, rs_list, create=False)
        all_rss = [*old_rss, *([new_rs] if new_rs is not None else [])]
        plan = du.proportional_scale(d, new_rs, old_rss)
        await self._apply_sizes(d, all_rss, {rs.metadata.name: size for rs, size in plan})
        if new_rs is not None:
            new_rs = all_rss[-1]  # as written
        if d.spec.paused:
            await self._cleanup(d, all_rss[:len(old_rss)])
        await self._sync_status(d, all_rss, new_rs)
        return None

    async def _rollout_rolling(self, d: Deployment,
                               rs_list: Sequence[ReplicaSet]) -> Result | None:
        d, new_rs, old_rss = await self._new_and_old(d, rs_list, create=True)
        assert new_rs is not None
        all_rss = [*old_rss, new_rs]
        target = du.new_rs_target(d, all_rss, new_rs)
        if target is not None:
            op = "up" if target > new_rs.spec.replicas else "down"
            scaled, new_rs = await self._scale(d, new_rs, target, op)
            all_rss[-1] = new_rs
            if scaled:
                return await self._sync_rollout_status(d, all_rss, new_rs)
        sizes = du.old_rs_scale_down(d, all_rss, du.active(old_rss), new_rs)
        if await self._apply_sizes(d, all_rss, sizes):
            return await self._sync_rollout_status(d, all_rss, all_rss[-1])
        if du.deployment_complete(d, d.status):
            await self._cleanup(d, all_rss[:-1])
        return await self._sync_rollout_status(d, all_rss, all_rss[-1])

    async def _rollout_recreate(self, d: Deployment,
                                rs_list: Sequence[ReplicaSet]) -> Result | None:
        d, new_rs, old_rss = await self._new_and_old(d, rs_list, create=False)
        all_rss = [*old_rss, *([new_rs] if new_rs is not None else [])]
        sizes = {rs.metadata.name: 0 for rs in du.active(old_rss)}
        if await self._apply_sizes(d, all_rss, sizes):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if self._old_pods_running(new_rs, old_rss):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if new_rs is None:
            d, new_rs, old_rss = await self._new_and_old(d, all_rss, create=True)
            assert new_rs is not None
            all_rss = [*old_rss, new_rs]
        _, new_rs = await self._scale(d, new_rs, d.spec.replicas, "up")
        all_rss = [*old_rss, new_rs]
        if du.deployment_complete(d, d.status):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, new_rs: ReplicaSet | None,
                          old_rss: Sequence[ReplicaSet]) -> bool:
        """Pods of old ReplicaSets still exist (and have not finished)."""
        if du.status_total(old_rss) > 0:
            return True
        for rs in old_rss:
            if new_rs is not None and rs.metadata.uid == new_rs.metadata.uid:
                continue
            for pod in self._pods.indexer.by_index(CONTROLLER_UID_INDEX, rs.metadata.uid):
                if pod.status.phase not in ("Failed", "Succeeded"):
                    return True
        return False

    # -- cleanup -------------------------------------------------------------------------

    async def _cleanup(self, d: Deployment, old_rss: Sequence[ReplicaSet]) -> None:
        """Delete old ReplicaSets beyond revisionHistoryLimit."""
        for rs in du.cleanup_candidates(d, old_rss):
            try:
                await self._client.delete(ReplicaSet, rs.metadata.name, rs.metadata.namespace,
                                          propagation_policy="Background",
                                          uid=rs.metadata.uid)
            except (errors.NotFound, errors.Conflict):
                continue
            log.info("deleted old replica set", deployment=_key(d),
                     replicaset=rs.metadata.name)

    # -- status --------------------------------------------------------------------------

    async def _check_paused_conditions(self, d: Deployment) -> Deployment:
        cond = du.paused_condition_change(d, self._clock.now())
        if cond is None:
            return d
        du.set_condition(d.status, cond)
        return await self._write_status(d)

    async def _write_status(self, d: Deployment) -> Deployment:
        written: Deployment = await self._client.update_status(d)
        return written

    async def _sync_status(self, d: Deployment, all_rss: Sequence[ReplicaSet | None],
                           new_rs: ReplicaSet | None) -> None:
        rss = [rs for rs in all_rss if rs is not None]
        status = du.calculate_status(rss, new_rs, d, self._clock.now())
        if status != d.status:
            new = _copy(d)
            new.status.CopyFrom(status)
            await self._write_status(new)

    async def _sync_rollout_status(self, d: Deployment, all_rss: Sequence[ReplicaSet | None],
                                   new_rs: ReplicaSet | None) -> Result | None:
        rss = [rs for rs in all_rss if rs is not None]
        now = self._clock.now()
        status = du.rollout_status(rss, new_rs, d, now)
        if status != d.status:
            before = du.get_condition(d.status, deployutil.PROGRESSING)
            after = du.get_condition(status, deployutil.PROGRESSING)
            new = _copy(d)
            new.status.CopyFrom(status)
            await self._write_status(new)
            if after is not None and after.reason == deployutil.TIMED_OUT and (
                    before is None or before.reason != deployutil.TIMED_OUT):
                self._recorder.event(d, WARNING, deployutil.TIMED_OUT, after.message)
        delay = du.requeue_after(d, status, now)
        return Result(requeue_after=delay) if delay is not None else None
