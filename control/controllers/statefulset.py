"""The StatefulSet controller: replicas with stable names and storage (Kubernetes'
StatefulSetController).

``reconcile(namespace/name)``:

1. Claim pods as the DaemonSet controller does (adopt matching orphans after a fresh
   read, release ours that stop matching); only pods named ``<set>-<ordinal>`` are
   replicas, filed by ordinal.
2. History (``control.controllers.history``): the revision holding the current template is
   the update revision; ``status.currentRevision`` names the revision the older replicas
   run (the update revision when it is unknown). Pods carry their revision's name in
   ``controller-revision-hash``.
3. ``statefulset_util.plan`` decides what to create and delete this pass (OrderedReady or
   Parallel, failed pods recreated under the same name, condemned ordinals deleted highest
   first, RollingUpdate with partition and maxUnavailable, OnDelete).
4. Storage: before a replica is created, each volumeClaimTemplate's claim
   ``<template>-<set>-<ordinal>`` is created if missing; claims outlive their pods. The
   persistentVolumeClaimRetentionPolicy is kept on the claims as ownerReferences for the
   garbage collector: whenScaled=Delete -> a condemned replica's claim owned by its pod
   alone (set before the pod is deleted), else whenDeleted=Delete -> owned by the
   StatefulSet.
5. Status: replicas, ready, available, current and updated counts, the two revisions (the
   update revision becomes current once every replica runs it, Ready), observedGeneration;
   when pods are ready but not yet available, look again after minReadySeconds.

No expectations are needed: replica names are fixed, so a create repeated from a stale
cache is AlreadyExists and a delete carries the pod's uid as precondition.

Concurrency contract: runs under ``control.runtime.Controller`` (one StatefulSet never
reconciled by two workers at once). Event handlers are synchronous and only enqueue keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from control.api import errors, kinds, revisions
from control.api.pb import apps_pb2, core_pb2, meta_pb2
from control.api.podutil import controller_of, is_pod_ready
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.controllers import statefulset_util as ssu
from control.controllers.history import RevisionHistory, selector_of
from control.controllers.podcontrol import (
    CONTROLLER_UID_INDEX,
    PodControl,
    controller_uid_index,
    owner_reference,
)
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, WARNING
from control.runtime.indexer import NAMESPACE_INDEX, meta_namespace_key, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller")

NAME = "statefulset"
StatefulSet = apps_pb2.StatefulSet
Pod = core_pb2.Pod
Claim = core_pb2.PersistentVolumeClaim
STATEFULSET = kinds.by_message(apps_pb2.StatefulSet)


class StatefulSetController:
    """Reconciles StatefulSets; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self.recorder = ctx.events.new_recorder("statefulset-controller")
        self.pod_control = PodControl(ctx.client, self.recorder)
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        index = {NAMESPACE_INDEX: namespace_index, CONTROLLER_UID_INDEX: controller_uid_index}
        self._sets = ctx.informers.informer(apps_pb2.StatefulSet,
                                            indexers={NAMESPACE_INDEX: namespace_index})
        self._pods = ctx.informers.informer(core_pb2.Pod, indexers=index)
        self._claims = ctx.informers.informer(core_pb2.PersistentVolumeClaim)
        self._revisions = ctx.informers.informer(apps_pb2.ControllerRevision, indexers=index)
        self.history = RevisionHistory(ctx.client, self._revisions, apps_pb2.StatefulSet)
        self._sets.add_event_handler(on_add=self._enqueue,
                                     on_update=lambda _o, n: self._enqueue(n))
        self._pods.add_event_handler(on_add=self._pod_changed,
                                     on_update=self._pod_updated,
                                     on_delete=self._pod_changed)
        self._claims.add_event_handler(on_delete=self._claim_deleted)

    # -- event handlers --------------------------------------------------------------------

    def _enqueue(self, ss: StatefulSet) -> None:
        self.controller.enqueue(meta_namespace_key(ss))

    def _resolve(self, pod: Pod) -> str | None:
        ref = controller_of(pod)
        if ref is None or ref.kind != STATEFULSET.kind:
            return None
        key = f"{pod.metadata.namespace}/{ref.name}"
        ss = self._sets.indexer.get(key)
        if ss is None or ss.metadata.uid != ref.uid:
            return None
        return key

    def _selecting(self, pod: Pod) -> list[str]:
        return [meta_namespace_key(s)
                for s in self._sets.indexer.by_index(NAMESPACE_INDEX, pod.metadata.namespace)
                if selector_of(s).matches(pod.metadata.labels)]

    def _pod_changed(self, pod: Pod) -> None:
        key = self._resolve(pod)
        if key is not None:
            self.controller.enqueue(key)
        elif controller_of(pod) is None:
            for k in self._selecting(pod):
                self.controller.enqueue(k)

    def _pod_updated(self, old: Pod, new: Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        self._pod_changed(new)
        old_key = self._resolve(old)
        if old_key is not None and old_key != self._resolve(new):
            self.controller.enqueue(old_key)
        key = self._resolve(new)
        ss = self._sets.indexer.get(key) if key else None
        if (key and ss is not None and ss.spec.min_ready_seconds > 0 and not is_pod_ready(old)
                and is_pod_ready(new)):
            self.controller.enqueue_after(key, float(ss.spec.min_ready_seconds))

    def _claim_deleted(self, claim: Claim) -> None:
        # a replica waiting for its terminating claim to go can now get a fresh one
        for ss in self._sets.indexer.by_index(NAMESPACE_INDEX, claim.metadata.namespace):
            if any(claim.metadata.name.startswith(f"{t.metadata.name}-{ss.metadata.name}-")
                   for t in ss.spec.volume_claim_templates):
                self._enqueue(ss)

    # -- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        ss = self._sets.indexer.get(key)
        if ss is None or ss.metadata.HasField("deletion_timestamp"):
            return None
        owned = await self._claim(ss)
        update, revs = await self.history.sync(ss)
        current = next((r for r in revs if r.metadata.name == ss.status.current_revision),
                       update)
        pods: dict[int, Pod] = {}
        for pod in owned:
            ordinal = ssu.ordinal_of(ss.metadata.name, pod.metadata.name)
            if ordinal is not None:
                pods[ordinal] = pod
        policy = ssu.policy_of(ss)
        now = self._clock.now()
        step = ssu.plan(pods, policy, update.metadata.name, current.metadata.name, now)
        await self._retention(ss, pods, policy)
        for ordinal in step.create:
            rev = current if ordinal in step.create_current else update
            await self._create(ss, ordinal, rev)
        for pod in step.delete:
            await self.pod_control.delete_pod(pod, ss)
        live = {p.metadata.labels.get(ssu.REVISION_HASH_LABEL) for p in owned}
        await self.history.clean(ss, revs, lambda r: r.metadata.name in live, [current, update])
        counts = ssu.count_status(pods, policy.min_ready_seconds, now, current.metadata.name,
                                  update.metadata.name)
        await self._write_status(ss, counts, current.metadata.name, update.metadata.name)
        if policy.min_ready_seconds > 0 and counts.ready != counts.available:
            return Result(requeue_after=float(policy.min_ready_seconds))
        return None

    async def _claim(self, ss: StatefulSet) -> list[Pod]:
        selector = selector_of(ss)
        claimed: list[Pod] = []
        can_adopt: bool | None = None
        for pod in self._pods.indexer.by_index(NAMESPACE_INDEX, ss.metadata.namespace):
            ref = controller_of(pod)
            matches = selector.matches(pod.metadata.labels)
            if ref is not None:
                if ref.uid != ss.metadata.uid:
                    continue
                if matches:
                    claimed.append(pod)
                else:
                    await self.pod_control.release(pod, ss)
                continue
            if not matches or pod.metadata.HasField("deletion_timestamp"):
                continue
            if can_adopt is None:
                can_adopt = await self._still_current(ss)
            if can_adopt and await self.pod_control.adopt(
                    pod, ss, lambda p: selector.matches(p.metadata.labels)):
                claimed.append(pod)
        return claimed

    async def _still_current(self, ss: StatefulSet) -> bool:
        try:
            fresh = await self._client.get(STATEFULSET, ss.metadata.name, ss.metadata.namespace)
        except errors.NotFound:
            return False
        return bool(fresh.metadata.uid == ss.metadata.uid
                    and not fresh.metadata.HasField("deletion_timestamp"))

    # -- pods and claims -------------------------------------------------------------------

    async def _create(self, ss: StatefulSet, ordinal: int,
                      rev: apps_pb2.ControllerRevision) -> None:
        name = ssu.pod_name(ss.metadata.name, ordinal)
        if not await self._ensure_claims(ss, ordinal, name):
            return
        template = ssu.pod_template(ss, revisions.template_of(rev.data), ordinal,
                                    rev.metadata.name)
        try:
            await self.pod_control.create_pod(template, ss, name=name)
        except errors.AlreadyExists:
            return  # our cache is behind: the next event brings the pod

    async def _ensure_claims(self, ss: StatefulSet, ordinal: int, pod: str) -> bool:
        """Create the replica's missing claims; False while one of them is terminating."""
        ok = True
        for template in ss.spec.volume_claim_templates:
            claim = ssu.new_claim(ss, template, ordinal)
            existing = self._claims.indexer.get(
                f"{ss.metadata.namespace}/{claim.metadata.name}")
            if existing is not None:
                if existing.metadata.HasField("deletion_timestamp"):
                    self.recorder.event(
                        ss, WARNING, "FailedCreate",
                        f"create Pod {pod} in StatefulSet {ss.metadata.name} waits: "
                        f"PersistentVolumeClaim {claim.metadata.name} is being deleted")
                    ok = False
                continue
            for ref in self._claim_owners(ss, ordinal, None):
                claim.metadata.owner_references.append(ref)
            try:
                await self._client.create(claim)
            except errors.AlreadyExists:
                continue
            except errors.ApiError as exc:
                self.recorder.event(ss, WARNING, "FailedCreate",
                                    f"create Claim {claim.metadata.name} for Pod {pod} in "
                                    f"StatefulSet {ss.metadata.name} failed error: {exc}")
                raise
            self.recorder.event(ss, NORMAL, "SuccessfulCreate",
                                f"create Claim {claim.metadata.name} Pod {pod} in "
                                f"StatefulSet {ss.metadata.name} success")
        return ok

    def _claim_owners(self, ss: StatefulSet, ordinal: int,
                      pod: Pod | None) -> list[meta_pb2.OwnerReference]:
        """The ownerReferences the retention policy wants on a replica's claim: a
        condemned replica's claim is its pod's alone under whenScaled=Delete (a second
        owner would keep it alive), else the set's under whenDeleted=Delete."""
        policy = ss.spec.persistent_volume_claim_retention_policy
        start = ssu.start_ordinal(ss)
        condemned = not start <= ordinal < start + ssu.replicas_of(ss)
        if policy.when_scaled == ssu.DELETE and condemned and pod is not None:
            return [owner_reference(pod, controller=False, block_owner_deletion=False)]
        if policy.when_deleted == ssu.DELETE:
            return [owner_reference(ss, controller=False, block_owner_deletion=False)]
        return []

    async def _retention(self, ss: StatefulSet, pods: dict[int, Pod],
                         policy: ssu.Policy) -> None:
        """Keep each existing replica's claims' ownerReferences as the policy says."""
        for ordinal, pod in pods.items():
            want = self._claim_owners(ss, ordinal, pod)
            ours = {ss.metadata.uid, pod.metadata.uid}
            for template in ss.spec.volume_claim_templates:
                name = ssu.claim_name(template.metadata.name, ss.metadata.name, ordinal)
                claim = self._claims.indexer.get(f"{ss.metadata.namespace}/{name}")
                if claim is None or claim.metadata.HasField("deletion_timestamp"):
                    continue
                have = [r for r in claim.metadata.owner_references if r.uid in ours]
                if sorted(r.uid for r in have) == sorted(r.uid for r in want):
                    continue

                def fix(c: Claim, want: list[meta_pb2.OwnerReference] = want,
                        ours: set[str] = ours) -> bool:
                    keep = [r for r in c.metadata.owner_references if r.uid not in ours]
                    del c.metadata.owner_references[:]
                    c.metadata.owner_references.extend([*keep, *want])
                    return True

                try:
                    await guaranteed_update(self._client, Claim, claim.metadata.namespace,
                                            name, fix, current=claim)
                except errors.NotFound:
                    continue

    # -- status ----------------------------------------------------------------------------

    async def _write_status(self, ss: StatefulSet, c: ssu.Counts, current: str,
                            update: str) -> None:
        status = apps_pb2.StatefulSetStatus()
        status.CopyFrom(ss.status)
        status.observed_generation = ss.metadata.generation
        status.replicas = c.replicas
        status.ready_replicas = c.ready
        status.available_replicas = c.available
        status.current_replicas = c.current
        status.updated_replicas = c.updated
        status.current_revision = current
        status.update_revision = update
        want = ssu.replicas_of(ss)
        if (ss.spec.update_strategy.type in ("", "RollingUpdate") and c.replicas == want
                and c.updated == want and c.ready == want):
            status.current_revision = update
            status.current_replicas = c.updated
        if status == ss.status:
            return
        new = apps_pb2.StatefulSet()
        new.CopyFrom(ss)
        new.status.CopyFrom(status)
        try:
            await self._client.update_status(new)
        except errors.NotFound:
            return
