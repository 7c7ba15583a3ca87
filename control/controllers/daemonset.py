"""The DaemonSet controller: one pod per eligible node (Kubernetes' DaemonSetsController).

``reconcile(namespace/name)``:

1. Claim pods as the ReplicaSet controller does (adopt matching orphans after a fresh
   read, release ours that stop matching).
2. History (``control.controllers.history``): the ControllerRevision whose data is the
   current template is the current revision; its ``controller-revision-hash`` labels the
   pods. Revisions beyond ``revisionHistoryLimit`` that no pod uses are deleted.
3. Only once expectations are satisfied: per node (``daemonset_util.should_run``) create
   the missing pod — pinned to the node with node affinity ``metadata.name In [node]`` and
   placed by the scheduler, as Kubernetes does — delete pods from nodes that no longer
   fit (or whose NoExecute taint they do not tolerate), delete duplicates (keeping the
   oldest, or one old and one new pod while surging), delete Failed pods so that they are
   replaced — with a per-node backoff (1 s doubling to 15 min, as Kubernetes'
   failedPodsBackoff) during which the failed pod stays and none is created — and delete
   unscheduled pods pinned to nodes that are gone.
4. RollingUpdate (``daemonset_util.rolling_update``): old pods are deleted within
   maxUnavailable, or with maxSurge a new pod starts beside the old one, which goes once
   the new one has been available for minReadySeconds. OnDelete: only deleted pods are
   replaced with the current template.
5. Status: desired/current/misscheduled/ready/available/updated/unavailable counts and
   observedGeneration; when pods are ready but not yet available, look again after
   minReadySeconds.

Node changes (added, labels, taints, removed) enqueue every DaemonSet.

Concurrency contract: runs under ``control.runtime.Controller`` (one DaemonSet never
reconciled by two workers at once). Event handlers are synchronous and only update
expectations and enqueue keys.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import structlog

from control.api import errors, kinds, labels
from control.api.pb import apps_pb2, core_pb2
from control.api.podutil import controller_of, is_pod_ready
from control.client.client import ApiClient
from control.controllers import daemonset_util as dsu
from control.controllers import deployment_util as du
from control.controllers.history import RevisionHistory
from control.controllers.history import selector_of as history_selector
from control.controllers.podbatch import PodBatches
from control.controllers.podcontrol import (
    CONTROLLER_UID_INDEX,
    PodControl,
    controller_uid_index,
)
from control.runtime.backoff import Backoff, BackoffState
from control.runtime.controller import Controller, Result
from control.runtime.events import WARNING
from control.runtime.expectations import ControllerExpectations
from control.runtime.indexer import NAMESPACE_INDEX, meta_namespace_key, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller")

NAME = "daemonset"
DaemonSet = apps_pb2.DaemonSet
Revision = apps_pb2.ControllerRevision
DAEMONSET = kinds.by_message(apps_pb2.DaemonSet)
BURST = 250
# Kubernetes' failedPodsBackoff: 1 s doubling to 15 minutes per (DaemonSet, node)
FAILED_POD_BACKOFF = Backoff(initial=1.0, max_delay=900.0, factor=2.0, reset_after=1800.0)


def selector_of(ds: DaemonSet) -> labels.Selector:
    return history_selector(ds)


class DaemonSetController:
    """Reconciles DaemonSets; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *,
                 failed_pod_backoff: Backoff = FAILED_POD_BACKOFF) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self._log = log.bind(controller=NAME)
        self.expectations = ControllerExpectations(ctx.clock)
        self._failed_policy = failed_pod_backoff
        # (daemonset key, node) -> backoff and the monotonic time it ends: a node whose
        # daemon pods keep failing (a kubelet rejecting them) is not fought in a hot loop
        self._failed: dict[tuple[str, str], tuple[BackoffState, float]] = {}
        self.recorder = ctx.events.new_recorder("daemonset-controller")
        self.pod_control = PodControl(ctx.client, self.recorder)
        self.batches = PodBatches(self.pod_control, self.expectations)
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        index = {NAMESPACE_INDEX: namespace_index, CONTROLLER_UID_INDEX: controller_uid_index}
        self._sets = ctx.informers.informer(apps_pb2.DaemonSet,
                                            indexers={NAMESPACE_INDEX: namespace_index})
        self._pods = ctx.informers.informer(core_pb2.Pod, indexers=index)
        self._nodes = ctx.informers.informer(core_pb2.Node)
        self._revisions = ctx.informers.informer(apps_pb2.ControllerRevision, indexers=index)
        self.history = RevisionHistory(ctx.client, self._revisions, apps_pb2.DaemonSet)
        self._sets.add_event_handler(on_add=self._enqueue,
                                     on_update=lambda _o, n: self._enqueue(n),
                                     on_delete=self._set_deleted)
        self._pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                     on_delete=self._pod_deleted)
        self._nodes.add_event_handler(on_add=lambda _n: self._enqueue_all(),
                                      on_update=self._node_updated,
                                      on_delete=lambda _n: self._enqueue_all())

    # -- event handlers --------------------------------------------------------------------

    def _enqueue(self, ds: DaemonSet) -> None:
        self.controller.enqueue(meta_namespace_key(ds))

    def _enqueue_all(self) -> None:
        for ds in self._sets.indexer.list():
            self._enqueue(ds)

    def _set_deleted(self, ds: DaemonSet) -> None:
        key = meta_namespace_key(ds)
        self.batches.forget(key)
        for k in [k for k in self._failed if k[0] == key]:
            del self._failed[k]

    def _node_updated(self, old: core_pb2.Node, new: core_pb2.Node) -> None:
        if (dict(old.metadata.labels) != dict(new.metadata.labels)
                or list(old.spec.taints) != list(new.spec.taints)
                or old.spec.unschedulable != new.spec.unschedulable):
            self._enqueue_all()

    def _resolve(self, pod: core_pb2.Pod) -> str | None:
        ref = controller_of(pod)
        if ref is None or ref.kind != DAEMONSET.kind:
            return None
        key = f"{pod.metadata.namespace}/{ref.name}"
        ds = self._sets.indexer.get(key)
        if ds is None or ds.metadata.uid != ref.uid:
            return None
        return key

    def _selecting(self, pod: core_pb2.Pod) -> list[str]:
        return [meta_namespace_key(d)
                for d in self._sets.indexer.by_index(NAMESPACE_INDEX, pod.metadata.namespace)
                if selector_of(d).matches(pod.metadata.labels)]

    def _pod_added(self, pod: core_pb2.Pod) -> None:
        key = self._resolve(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.controller.enqueue(key)
        elif controller_of(pod) is None:
            for k in self._selecting(pod):
                self.controller.enqueue(k)

    def _pod_updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        key = self._resolve(new)
        if key is not None:
            if new.metadata.HasField("deletion_timestamp") and not old.metadata.HasField(
                    "deletion_timestamp"):
                self.batches.deletion_seen(key, new)
            self.controller.enqueue(key)
            ds = self._sets.indexer.get(key)
            if (ds is not None and ds.spec.min_ready_seconds > 0 and not is_pod_ready(old)
                    and is_pod_ready(new)):
                self.controller.enqueue_after(key, float(ds.spec.min_ready_seconds))
            return
        old_key = self._resolve(old)
        if old_key is not None:
            self.controller.enqueue(old_key)
        if controller_of(new) is None:
            for k in self._selecting(new):
                self.controller.enqueue(k)

    def _pod_deleted(self, pod: core_pb2.Pod) -> None:
        key = self._resolve(pod)
        if key is None:
            return
        self.batches.deletion_seen(key, pod)
        self.controller.enqueue(key)

    # -- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        ds = self._sets.indexer.get(key)
        if ds is None:
            self.batches.forget(key)
            return None
        if ds.metadata.HasField("deletion_timestamp"):
            return None
        pods = await self._claim(ds)
        current, history = await self.history.sync(ds)
        hash_ = current.metadata.labels.get(dsu.REVISION_HASH_LABEL, "")
        nodes = list(self._nodes.indexer.list())
        # one eligibility verdict per node per pass: (should run, may keep running)
        fit = dsu.node_fit(ds.spec.template)
        fits = {n.metadata.name: fit(n) for n in nodes}
        now = self._clock.now()
        wait: float | None = None
        if self.expectations.satisfied(key):
            wait = await self._manage(key, ds, nodes, fits, pods, hash_, now)
        await self._clean_history(ds, history, pods, current)
        counts = dsu.count_status(self._by_node(nodes, fits, pods, hash_), ds.spec.min_ready_seconds,
                                  now)
        await self._write_status(ds, counts)
        if ds.spec.min_ready_seconds > 0 and counts.ready != counts.available:
            wait = min(wait or math.inf, float(ds.spec.min_ready_seconds))
        return Result(requeue_after=wait) if wait is not None else None

    async def _claim(self, ds: DaemonSet) -> list[core_pb2.Pod]:
        selector = selector_of(ds)
        claimed: list[core_pb2.Pod] = []
        can_adopt: bool | None = None
        for pod in self._pods.indexer.by_index(NAMESPACE_INDEX, ds.metadata.namespace):
            ref = controller_of(pod)
            matches = selector.matches(pod.metadata.labels)
            if ref is not None:
                if ref.uid != ds.metadata.uid:
                    continue
                if matches:
                    claimed.append(pod)
                else:
                    await self.pod_control.release(pod, ds)
                continue
            if not matches or pod.metadata.HasField("deletion_timestamp"):
                continue
            if pod.status.phase in ("Succeeded", "Failed"):
                continue
            if can_adopt is None:
                can_adopt = await self._still_current(ds)
            if can_adopt and await self.pod_control.adopt(
                    pod, ds, lambda p: selector.matches(p.metadata.labels)):
                claimed.append(pod)
        return claimed

    async def _still_current(self, ds: DaemonSet) -> bool:
        try:
            fresh = await self._client.get(DAEMONSET, ds.metadata.name, ds.metadata.namespace)
        except errors.NotFound:
            return False
        return bool(fresh.metadata.uid == ds.metadata.uid
                    and not fresh.metadata.HasField("deletion_timestamp"))

    async def _clean_history(self, ds: DaemonSet, revs: list[Revision], pods: list[core_pb2.Pod],
                             current: Revision) -> None:
        live = {p.metadata.labels.get(dsu.REVISION_HASH_LABEL) for p in pods
                if not p.metadata.HasField("deletion_timestamp")}
        await self.history.clean(
            ds, revs, lambda r: r.metadata.labels.get(dsu.REVISION_HASH_LABEL) in live, [current])

    # -- pods ------------------------------------------------------------------------------

    def _by_node(self, nodes: list[core_pb2.Node], fits: dict[str, tuple[bool, bool]],
                 pods: list[core_pb2.Pod],
                 hash_: str) -> list[dsu.NodePods]:
        out: dict[str, dsu.NodePods] = {}
        for node in nodes:
            run, _ = fits[node.metadata.name]
            out[node.metadata.name] = dsu.NodePods(node.metadata.name, run)
        for pod in pods:
            if pod.metadata.HasField("deletion_timestamp") or pod.status.phase in (
                    "Succeeded", "Failed"):
                continue
            entry = out.get(dsu.target_node(pod))
            if entry is None:
                continue
            if pod.metadata.labels.get(dsu.REVISION_HASH_LABEL) == hash_:
                entry.new.append(pod)
            else:
                entry.old.append(pod)
        return list(out.values())

    async def _manage(self, key: str, ds: DaemonSet, nodes: list[core_pb2.Node],
                      fits: dict[str, tuple[bool, bool]], pods: list[core_pb2.Pod], hash_: str,
                      now: float) -> float | None:
        """Create, delete and roll; how long until a node's failed-pod backoff ends."""
        names = {n.metadata.name for n in nodes}
        surge, unavailable = self._fenceposts(ds, sum(1 for run, _ in fits.values() if run))
        create_on: list[str] = []
        victims: list[core_pb2.Pod] = []
        backing_off: set[str] = set()
        wait: float | None = None
        mono = self._clock.monotonic()
        for pod in pods:
            if pod.metadata.HasField("deletion_timestamp"):
                continue
            target = dsu.target_node(pod)
            if pod.status.phase == "Failed":
                state, until = self._failed.get((key, target), (None, 0.0))
                if state is not None and mono < until:
                    backing_off.add(target)  # its failed pod stays until the backoff ends
                    wait = min(wait or math.inf, until - mono)
                    continue
                state = state or BackoffState(self._failed_policy, self._clock)
                self._failed[(key, target)] = (state, mono + state.next_delay())
                self.recorder.event(ds, WARNING, "FailedDaemonPod",
                                    f"Found failed daemon pod {pod.metadata.namespace}/"
                                    f"{pod.metadata.name} on node {target}, will try to kill it")
                victims.append(pod)
            elif pod.status.phase == "Succeeded" or (not pod.spec.node_name
                                                     and target not in names):
                victims.append(pod)
        live: dict[str, list[core_pb2.Pod]] = {}
        for p in pods:
            if not p.metadata.HasField("deletion_timestamp") and p.status.phase not in (
                    "Succeeded", "Failed"):
                live.setdefault(dsu.target_node(p), []).append(p)
        for node in nodes:
            name = node.metadata.name
            run, keep = fits[name]
            here = sorted(live.get(name, []), key=du.creation_key)
            if run and not here:
                if name not in backing_off:
                    create_on.append(name)
            elif (run or keep) and len(here) > 1:
                new = [p for p in here if p.metadata.labels.get(dsu.REVISION_HASH_LABEL) == hash_]
                old = [p for p in here if p not in new]
                if surge > 0 and self._rolling(ds):
                    victims.extend(new[1:] + old[1:])
                else:
                    victims.extend(here[1:])
            elif not keep and here:
                victims.extend(here)
        if self._rolling(ds) and not victims and not create_on:
            plan = dsu.rolling_update(self._by_node(nodes, fits, pods, hash_), surge, unavailable,
                                      ds.spec.min_ready_seconds, now)
            victims.extend(plan.delete)
            create_on.extend(plan.surge_on)
        await self._create(key, ds, create_on[:BURST], hash_)
        await self._delete(key, ds, victims[:BURST])
        return wait

    @staticmethod
    def _rolling(ds: DaemonSet) -> bool:
        return bool(ds.spec.update_strategy.type in ("", "RollingUpdate"))

    @staticmethod
    def _fenceposts(ds: DaemonSet, desired: int) -> tuple[int, int]:
        ru = ds.spec.update_strategy.rolling_update
        surge = du.scaled_value(ru.max_surge if ru.HasField("max_surge") else None, desired,
                                round_up=True)
        unavailable = du.scaled_value(ru.max_unavailable if ru.HasField("max_unavailable")
                                      else None, desired, round_up=True)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    async def _create(self, key: str, ds: DaemonSet, node_names: list[str], hash_: str) -> None:
        base = dsu.daemon_template(ds.spec.template, hash_)
        await self.batches.create(key, ds, [(dsu.pin_to_node(base, n), None)
                                            for n in node_names])

    async def _delete(self, key: str, ds: DaemonSet, victims: list[core_pb2.Pod]) -> None:
        await self.batches.delete(key, ds, victims)

    async def _write_status(self, ds: DaemonSet, c: dsu.Counts) -> None:
        status = apps_pb2.DaemonSetStatus()
        status.CopyFrom(ds.status)
        status.desired_number_scheduled = c.desired
        status.current_number_scheduled = c.current
        status.number_misscheduled = c.misscheduled
        status.number_ready = c.ready
        status.number_available = c.available
        status.updated_number_scheduled = c.updated
        status.number_unavailable = max(0, c.desired - c.available)
        status.observed_generation = ds.metadata.generation
        if status == ds.status:
            return
        new = apps_pb2.DaemonSet()
        new.CopyFrom(ds)
        new.status.CopyFrom(status)
        try:
            await self._client.update_status(new)
        except errors.NotFound:
            return
