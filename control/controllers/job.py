"""The Job controller: run pods until enough succeed, or fail the Job (Kubernetes' syncJob).

``reconcile(namespace/name)``:

1. Finished Jobs (Complete/Failed) only release their pods' tracking finalizers and, with
   ``ttlSecondsAfterFinished``, are deleted (Foreground) once the TTL has passed.
2. Claim pods (all phases): ours that still match the selector; release ours that no longer
   match; adopt matching orphans (adding the tracking finalizer) after a fresh read of the
   Job. ``manualSelector`` only changes who writes the selector; the claim is the same.
3. Track finished pods with the ``batch.kubernetes.io/job-tracking`` finalizer, as
   Kubernetes does, so a pod deleted by pod GC is still counted exactly once: finished pods
   are first recorded in ``status.uncountedTerminatedPods`` (Indexed successes go straight
   into ``completedIndexes``), that status is written, then their finalizers are removed,
   then they move into ``succeeded``/``failed``. A pod whose finalizer removal we issued is
   skipped until the informer shows it without the finalizer (or gone).
   Failed pods go through the podFailurePolicy (Ignore: not counted; FailJob: the Job
   fails; FailIndex: the index fails); with ``backoffLimitPerIndex`` an index fails once
   its failures exceed the limit (the count travels on the replacement pod's
   ``job-index-failure-count`` annotation).
4. Decide: a FailureTarget (podFailurePolicy FailJob, failed > backoffLimit or OnFailure
   restarts past it, activeDeadlineSeconds passed, more failed indexes than
   maxFailedIndexes, or every index done with some failed) or SuccessCriteriaMet
   (completions reached, or a successPolicy rule met) condition is set first and the
   remaining pods deleted; the terminal Failed/Complete condition (same reason) follows
   once no pod is active or terminating, as in Kubernetes since 1.31.
5. Otherwise run pods: suspended -> delete them all and set Suspended; else create the
   missing ones (NonIndexed: up to parallelism and the completions left; Indexed: the
   lowest indexes not done and not running), delete the surplus, each after the pod
   retry backoff (10 s doubling to 6 min after consecutive failures, per index with
   backoffLimitPerIndex). With podReplacementPolicy Failed a terminating pod still
   occupies its slot.
6. Write status: active, ready, terminating, succeeded, failed, indexes, startTime
   (set on first run and again on resume, which restarts activeDeadlineSeconds),
   completionTime, conditions; Events for every transition.

Pods this controller deletes itself (suspend, surplus, the Job finishing) are not counted
as failures. Pods that carry our finalizer but whose Job is gone are released
(finalizer removed) through ``pod:`` keys on the same queue.

Concurrency contract: runs under ``control.runtime.Controller`` (one key is never
reconciled by two workers at once). Event handlers run synchronously in the event loop and
only update expectations and enqueue keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog

from control.api import errors, kinds, labels
from control.api.pb import batch_pb2, core_pb2
from control.api.podutil import controller_of, is_pod_ready
from control.api.timeutil import time_at
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.controllers import job_util as ju
from control.controllers.podbatch import PodBatches
from control.controllers.podcontrol import (
    CONTROLLER_UID_INDEX,
    PodControl,
    controller_uid_index,
)
from control.controllers.replicaset import pods_to_delete
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, WARNING
from control.runtime.expectations import ControllerExpectations
from control.runtime.indexer import NAMESPACE_INDEX, meta_namespace_key, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller")

JOB = kinds.by_message(batch_pb2.Job)
NAME = "job"
_POD_KEY = "pod:"
# Kubernetes' MaxUncountedPods: at most this many uids wait in uncountedTerminatedPods.
MAX_UNCOUNTED = 500
# Kubernetes' MaxPodCreateDeletePerSync.
BURST = 500


def job_selector(job: batch_pb2.Job) -> labels.Selector:
    if not job.spec.HasField("selector"):
        return labels.nothing()
    return labels.from_label_selector(job.spec.selector)


def is_indexed(job: batch_pb2.Job) -> bool:
    return bool(job.spec.completion_mode == "Indexed")


class JobController:
    """Reconciles Jobs; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext, *, pod_backoff: float = ju.DEFAULT_POD_BACKOFF,
                 max_pod_backoff: float = ju.MAX_POD_BACKOFF) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self._backoff = (pod_backoff, max_pod_backoff)
        self._log = log.bind(controller=NAME)
        self.expectations = ControllerExpectations(ctx.clock)
        # job key -> uids of pods we deleted on purpose (not failures)
        self._deleted_by_us: dict[str, set[str]] = {}
        # job key -> uids whose finalizer removal we issued and have not yet observed
        self._finalizing: dict[str, set[str]] = {}
        self.recorder = ctx.events.new_recorder("job-controller")
        self.pod_control = PodControl(ctx.client, self.recorder)
        self.batches = PodBatches(self.pod_control, self.expectations)
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._jobs = ctx.informers.informer(batch_pb2.Job,
                                            indexers={NAMESPACE_INDEX: namespace_index})
        self._pods = ctx.informers.informer(
            core_pb2.Pod, indexers={NAMESPACE_INDEX: namespace_index,
                              CONTROLLER_UID_INDEX: controller_uid_index})
        self._jobs.add_event_handler(on_add=self._job_changed,
                                     on_update=lambda _o, n: self._job_changed(n),
                                     on_delete=self._job_deleted)
        self._pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                     on_delete=self._pod_deleted)

    # -- event handlers --------------------------------------------------------------------

    def _job_changed(self, job: batch_pb2.Job) -> None:
        self.controller.enqueue(meta_namespace_key(job))

    def _job_deleted(self, job: batch_pb2.Job) -> None:
        key = meta_namespace_key(job)
        self._forget(key)
        # its pods may still carry our finalizer: release them
        for pod in self._pods.indexer.by_index(CONTROLLER_UID_INDEX, job.metadata.uid):
            if ju.has_tracking_finalizer(pod):
                self.controller.enqueue(_POD_KEY + meta_namespace_key(pod))

    def _forget(self, key: str) -> None:
        self.batches.forget(key)
        self._deleted_by_us.pop(key, None)
        self._finalizing.pop(key, None)

    def _resolve(self, pod: core_pb2.Pod) -> str | None:
        """The key of the Job controlling ``pod`` if it is in the cache."""
        ref = controller_of(pod)
        if ref is None or ref.kind != JOB.kind:
            return None
        key = f"{pod.metadata.namespace}/{ref.name}"
        job = self._jobs.indexer.get(key)
        if job is None or job.metadata.uid != ref.uid:
            return None
        return key

    def _jobs_selecting(self, pod: core_pb2.Pod) -> list[str]:
        return [meta_namespace_key(j)
                for j in self._jobs.indexer.by_index(NAMESPACE_INDEX, pod.metadata.namespace)
                if job_selector(j).matches(pod.metadata.labels)]

    def _observe(self, key: str, pod: core_pb2.Pod) -> None:
        """Bookkeeping for finalizer removals and deletions we issued."""
        uids = self._finalizing.get(key)
        if uids is not None and pod.metadata.uid in uids and not ju.has_tracking_finalizer(pod):
            uids.discard(pod.metadata.uid)

    def _pod_added(self, pod: core_pb2.Pod) -> None:
        key = self._resolve(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.controller.enqueue(key)
            return
        if ju.has_tracking_finalizer(pod) and controller_of(pod) is not None:
            self.controller.enqueue(_POD_KEY + meta_namespace_key(pod))
        if controller_of(pod) is None:
            for key in self._jobs_selecting(pod):
                self.controller.enqueue(key)

    def _pod_updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        old_key = self._resolve(old)
        key = self._resolve(new)
        if old_key is not None and old_key != key:
            self.controller.enqueue(old_key)
        if key is not None:
            self._observe(key, new)
            if new.metadata.HasField("deletion_timestamp") and not old.metadata.HasField(
                    "deletion_timestamp"):
                self.batches.deletion_seen(key, new)
            self.controller.enqueue(key)
            return
        if ju.has_tracking_finalizer(new) and controller_of(new) is not None:
            self.controller.enqueue(_POD_KEY + meta_namespace_key(new))
        if controller_of(new) is None:
            for k in self._jobs_selecting(new):
                self.controller.enqueue(k)

    def _pod_deleted(self, pod: core_pb2.Pod) -> None:
        key = self._resolve(pod)
        if key is None:
            return
        self.batches.deletion_seen(key, pod)
        uids = self._finalizing.get(key)
        if uids is not None:
            uids.discard(pod.metadata.uid)
        self.controller.enqueue(key)

    # -- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        if key.startswith(_POD_KEY):
            await self._release_orphan(key.removeprefix(_POD_KEY))
            return None
        job = self._jobs.indexer.get(key)
        if job is None:
            self._forget(key)
            return None
        if job.spec.HasField("managed_by") and job.spec.managed_by not in (
                "", "kubernetes.io/job-controller"):
            return None  # another controller owns this Job
        pods = await self._claim_pods(job)
        if ju.is_finished(job) or job.metadata.HasField("deletion_timestamp"):
            await self._remove_finalizers(key, [p for p in pods if ju.has_tracking_finalizer(p)
                                                and p.metadata.uid
                                                not in self._finalizing.get(key, set())])
            return await self._expire(job)
        return await _Sync(self, key, job, pods).run()

    async def _claim_pods(self, job: batch_pb2.Job) -> list[core_pb2.Pod]:
        selector = job_selector(job)
        uid = job.metadata.uid
        deleting = job.metadata.HasField("deletion_timestamp")
        claimed: list[core_pb2.Pod] = []
        can_adopt: bool | None = None
        for pod in self._pods.indexer.by_index(NAMESPACE_INDEX, job.metadata.namespace):
            ref = controller_of(pod)
            matches = selector.matches(pod.metadata.labels)
            if ref is not None:
                if ref.uid != uid:
                    continue
                if matches or ju.has_tracking_finalizer(pod):
                    # a finished pod of ours stays ours to count, whatever its labels
                    claimed.append(pod)
                elif not deleting:
                    await self.pod_control.release(pod, job)
                continue
            if not matches or deleting or ju.is_deleting(pod):
                continue
            if can_adopt is None:
                can_adopt = await self._job_still_current(job)
            if not can_adopt:
                continue
            if await self.pod_control.adopt(pod, job,
                                            lambda p: selector.matches(p.metadata.labels),
                                            finalizers=(ju.JOB_TRACKING_FINALIZER,)):
                claimed.append(pod)
        return claimed

    async def _job_still_current(self, job: batch_pb2.Job) -> bool:
        try:
            fresh = await self._client.get(JOB, job.metadata.name, job.metadata.namespace)
        except errors.NotFound:
            return False
        return bool(fresh.metadata.uid == job.metadata.uid
                    and not fresh.metadata.HasField("deletion_timestamp"))

    async def _remove_finalizers(self, key: str, pods: Iterable[core_pb2.Pod]) -> set[str]:
        """Remove our finalizer from ``pods``; the uids done (or gone)."""
        pods = list(pods)
        if not pods:
            return set()
        pending = self._finalizing.setdefault(key, set())
        for p in pods:
            pending.add(p.metadata.uid)
        results = await asyncio.gather(*(self._strip(p) for p in pods), return_exceptions=True)
        done: set[str] = set()
        first: BaseException | None = None
        for pod, res in zip(pods, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                pending.discard(pod.metadata.uid)
                first = first or res
            else:
                done.add(pod.metadata.uid)
        if first is not None:
            raise first
        return done

    async def _strip(self, pod: core_pb2.Pod) -> None:
        """Remove the tracking finalizer (compare-and-swap, re-read on a conflict); a pod
        that is gone, or replaced by a namesake, needs nothing."""

        def without_finalizer(p: core_pb2.Pod) -> bool:
            if JOB_FINALIZER not in p.metadata.finalizers:
                return False
            keep = [f for f in p.metadata.finalizers if f != JOB_FINALIZER]
            del p.metadata.finalizers[:]
            p.metadata.finalizers.extend(keep)
            return True

        try:
            await guaranteed_update(self._client, core_pb2.Pod, pod.metadata.namespace,
                                    pod.metadata.name, without_finalizer, current=pod,
                                    attempts=5)
        except errors.NotFound:
            return

    async def _release_orphan(self, pod_key: str) -> None:
        """A pod with our finalizer whose Job is gone: remove the finalizer."""
        pod = self._pods.indexer.get(pod_key)
        if pod is None or not ju.has_tracking_finalizer(pod):
            return
        if self._resolve(pod) is not None:
            return  # its Job exists: the Job's own sync handles it
        ref = controller_of(pod)
        if ref is not None and ref.kind == JOB.kind:
            try:
                fresh = await self._client.get(JOB, ref.name, pod.metadata.namespace)
                if (fresh.metadata.uid == ref.uid
                        and not fresh.metadata.HasField("deletion_timestamp")):
                    return  # the cache is behind: the Job exists
            except errors.NotFound:
                pass
        await self._strip(pod)

    async def _expire(self, job: batch_pb2.Job) -> Result | None:
        """ttlSecondsAfterFinished: delete the finished Job once its time is up."""
        if job.metadata.HasField("deletion_timestamp"):
            return None
        remaining = ju.ttl_remaining(job, self._clock.now())
        if remaining is None:
            return None
        if remaining > 0:
            return Result(requeue_after=remaining)
        try:
            fresh = await self._client.get(JOB, job.metadata.name, job.metadata.namespace)
        except errors.NotFound:
            return None
        again = ju.ttl_remaining(fresh, self._clock.now())
        if fresh.metadata.uid != job.metadata.uid or again is None:
            return None
        if again > 0:
            return Result(requeue_after=again)
        try:
            await self._client.delete(JOB, job.metadata.name, job.metadata.namespace,
                                      propagation_policy="Foreground", uid=job.metadata.uid,
                                      resource_version=fresh.metadata.resource_version)
        except errors.NotFound:
            return None
        self._log.info("deleted finished job after its TTL", key=meta_namespace_key(job))
        return None

    # -- pod writes ------------------------------------------------------------------------

    async def create_pods(self, key: str, job: batch_pb2.Job,
                          plan: list[tuple[int | None, int]]) -> None:
        """Create one pod per (index, failure count); Indexed pods are ``<job>-<i>-``."""
        await self.batches.create(key, job, [
            (ju.pod_template(job, ix, count),
             f"{job.metadata.name}-{ix}-" if ix is not None else None) for ix, count in plan])

    async def delete_pods(self, key: str, job: batch_pb2.Job, victims: list[core_pb2.Pod]) -> None:
        self._deleted_by_us.setdefault(key, set()).update(p.metadata.uid for p in victims)
        await self.batches.delete(key, job, victims)

    def deleted_by_us(self, key: str) -> set[str]:
        return self._deleted_by_us.get(key, set())

    def finalizing(self, key: str) -> set[str]:
        return self._finalizing.get(key, set())


JOB_FINALIZER = ju.JOB_TRACKING_FINALIZER


class _Sync:
    """One pass over one Job (steps 3-6 of the module docstring)."""

    def __init__(self, ctl: JobController, key: str, job: batch_pb2.Job,
                 pods: list[core_pb2.Pod]) -> None:
        self.ctl = ctl
        self.key = key
        self.job = job
        self.pods = pods
        self.now = ctl._clock.now()
        self.status = batch_pb2.JobStatus()
        self.status.CopyFrom(job.status)
        self.indexed = is_indexed(job)
        self.completions = job.spec.completions if job.spec.HasField("completions") else None
        self.per_index = job.spec.HasField("backoff_limit_per_index")

    async def run(self) -> Result | None:
        job, status, key = self.job, self.status, self.key
        ctl = self.ctl
        fail_job = await self._track()
        active = [p for p in self.pods if ju.is_active(p)]
        terminating = [p for p in self.pods if ju.is_terminating(p)]
        uncounted = status.uncounted_terminated_pods
        succeeded = status.succeeded + len(uncounted.succeeded)
        failed = status.failed + len(uncounted.failed)
        succeeded_ix = ju.parse_indexes(status.completed_indexes, self.completions)
        failed_ix = ju.parse_indexes(status.failed_indexes, self.completions)
        requeue: float | None = None

        # -- step 4: has the Job reached an end? --------------------------------------
        target = ju.find_condition(status, ju.FAILURE_TARGET)
        criteria = ju.find_condition(status, ju.SUCCESS_CRITERIA_MET)
        ending: tuple[str, str, str] | None = None  # (terminal type, reason, message)
        if target is not None and target.status == "True":
            ending = (ju.FAILED, target.reason, target.message)
        elif criteria is not None and criteria.status == "True":
            ending = (ju.COMPLETE, criteria.reason, criteria.message)
        else:
            failure = fail_job or self._failure(failed, active, failed_ix, succeeded_ix)
            success = self._success(succeeded, active, succeeded_ix)
            # as in Kubernetes, a met successPolicy wins over failures seen in the same pass
            # (not over a podFailurePolicy FailJob verdict already recorded)
            if failure is not None and (fail_job is not None or success is None
                                        or success[0] != ju.SUCCESS_POLICY):
                ending = (ju.FAILED, *failure)
                ju.set_condition(status, ju.FAILURE_TARGET, "True", *failure, self.now)
            elif success is not None:
                ending = (ju.COMPLETE, *success)
                ju.set_condition(status, ju.SUCCESS_CRITERIA_MET, "True", *success, self.now)
        suspended = job.spec.suspend and ending is None

        if ending is not None or suspended:
            if active and ctl.expectations.satisfied(key):
                await ctl.delete_pods(key, job, active)
                terminating += active
                active = []
        else:
            requeue = await self._manage(active, terminating, succeeded, succeeded_ix, failed_ix)

        # -- step 6: status ----------------------------------------------------------
        if ending is not None and not active and not terminating and not (
                uncounted.succeeded or uncounted.failed) and not any(
                    ju.has_tracking_finalizer(p) and ju.is_terminal(p) for p in self.pods):
            ctype, reason, message = ending
            if ju.set_condition(status, ctype, "True", reason, message, self.now):
                if ctype == ju.COMPLETE:
                    status.completion_time.CopyFrom(time_at(self.now))
                    ctl.recorder.event(job, NORMAL, "Completed", "Job completed")
                else:
                    ctl.recorder.event(job, WARNING, reason, message)
        if ending is None:
            if suspended:
                if ju.set_condition(status, ju.SUSPENDED, "True", "JobSuspended",
                                    "Job suspended", self.now):
                    ctl.recorder.event(job, NORMAL, "Suspended", "Job suspended")
            else:
                if ju.condition_true(status, ju.SUSPENDED):
                    ju.set_condition(status, ju.SUSPENDED, "False", "JobResumed", "Job resumed",
                                     self.now)
                    ctl.recorder.event(job, NORMAL, "Resumed", "Job resumed")
                    # resuming restarts the activeDeadlineSeconds clock
                    status.start_time.CopyFrom(time_at(self.now))
                elif not status.HasField("start_time"):
                    status.start_time.CopyFrom(time_at(self.now))
        status.active = len(active)
        status.ready = sum(1 for p in active if is_pod_ready(p))
        status.terminating = len(terminating)
        await self._write()

        if ending is None and not suspended and job.spec.HasField("active_deadline_seconds"):
            left = self._deadline_left()
            if left is not None:
                requeue = left if requeue is None else min(requeue, left)
        if ju.is_finished(self.job):
            ttl = await ctl._expire(self.job)
            if ttl is not None and ttl.requeue_after is not None:
                requeue = ttl.requeue_after
        if requeue is not None:
            return Result(requeue_after=max(requeue, 0.05))
        return None

    # -- step 3 ----------------------------------------------------------------------------

    async def _track(self) -> tuple[str, str] | None:
        """Count finished pods through uncountedTerminatedPods; the podFailurePolicy's
        FailJob verdict, if a pod met one."""
        job, status, ctl = self.job, self.status, self.ctl
        uncounted = status.uncounted_terminated_pods
        seen_s, seen_f = set(uncounted.succeeded), set(uncounted.failed)
        finalizing = ctl.finalizing(self.key)
        ours = ctl.deleted_by_us(self.key)
        succeeded_ix = ju.parse_indexes(status.completed_indexes, self.completions)
        failed_ix = ju.parse_indexes(status.failed_indexes, self.completions)
        ending = (ju.condition_true(status, ju.FAILURE_TARGET)
                  or ju.condition_true(status, ju.SUCCESS_CRITERIA_MET))
        flush = False
        fail_job: tuple[str, str] | None = None
        strip: list[core_pb2.Pod] = []
        room = MAX_UNCOUNTED - len(seen_s) - len(seen_f)
        for pod in self.pods:
            uid = pod.metadata.uid
            if not ju.has_tracking_finalizer(pod) or uid in finalizing:
                continue
            if room <= 0:
                break
            finished = ju.is_terminal(pod)
            if finished or (ju.is_deleting(pod) and not ju.only_replace_failed(job)) or ending:
                strip.append(pod)
            elif ju.is_deleting(pod) and uid in ours:
                strip.append(pod)
            ix = ju.completion_index(pod) if self.indexed else None
            if pod.status.phase == "Succeeded" and uid not in seen_f:
                if self.indexed:
                    if (ix is not None and self.completions is not None
                            and ix < self.completions and ix not in succeeded_ix):
                        succeeded_ix.add(ix)
                        flush = True
                elif uid not in seen_s:
                    uncounted.succeeded.append(uid)
                    seen_s.add(uid)
                    room -= 1
                    flush = True
            elif ju.is_pod_failed(pod, job) and uid not in ours and uid not in seen_f:
                match = (ju.match_pod_failure_policy(job, pod)
                         if pod.status.phase == "Failed" else None)
                if match is not None and match.action == "Ignore":
                    continue
                uncounted.failed.append(uid)
                seen_f.add(uid)
                room -= 1
                flush = True
                if match is not None and match.action == "FailJob" and fail_job is None:
                    fail_job = (ju.POD_FAILURE_POLICY, match.message)
                if self.per_index and ix is not None and (
                        (match is not None and match.action == "FailIndex")
                        or ju.index_failure_count(pod) + 1 > job.spec.backoff_limit_per_index):
                    failed_ix.add(ix)
        if self.indexed:
            status.completed_indexes = ju.format_indexes(succeeded_ix)
            status.succeeded = len(succeeded_ix)
        if self.per_index:
            status.failed_indexes = ju.format_indexes(failed_ix)
        if fail_job is not None:
            ju.set_condition(status, ju.FAILURE_TARGET, "True", *fail_job, self.now)
        if flush:
            await self._write()  # the intent is durable before any finalizer goes
        done = await ctl._remove_finalizers(self.key, strip)
        present = {p.metadata.uid: p for p in self.pods}

        def counted(uid: str) -> bool:
            pod = present.get(uid)
            return uid in done or pod is None or not ju.has_tracking_finalizer(pod)

        moved_s = [u for u in uncounted.succeeded if counted(u)]
        moved_f = [u for u in uncounted.failed if counted(u)]
        if moved_s or moved_f:
            status.succeeded += 0 if self.indexed else len(moved_s)
            status.failed += len(moved_f)
            keep_s = [u for u in uncounted.succeeded if u not in set(moved_s)]
            keep_f = [u for u in uncounted.failed if u not in set(moved_f)]
            del uncounted.succeeded[:]
            uncounted.succeeded.extend(keep_s)
            del uncounted.failed[:]
            uncounted.failed.extend(keep_f)
        return fail_job

    # -- step 4 ----------------------------------------------------------------------------

    def _failure(self, failed: int, active: list[core_pb2.Pod], failed_ix: set[int],
                 succeeded_ix: set[int]) -> tuple[str, str] | None:
        job = self.job
        if failed > job.spec.backoff_limit or ju.past_backoff_limit_on_failure(job, active):
            return ju.BACKOFF_LIMIT_EXCEEDED
        if self._deadline_left() == 0.0:
            return ju.DEADLINE_EXCEEDED
        if self.indexed and self.per_index and self.completions is not None:
            if job.spec.HasField("max_failed_indexes") and len(failed_ix) > \
                    job.spec.max_failed_indexes:
                return ju.MAX_FAILED_INDEXES_EXCEEDED
            if failed_ix and len(failed_ix | succeeded_ix) >= self.completions:
                return ju.FAILED_INDEXES
        return None

    def _success(self, succeeded: int, active: list[core_pb2.Pod],
                 succeeded_ix: set[int]) -> tuple[str, str] | None:
        job = self.job
        if self.indexed:
            rule = ju.success_policy_match(job, succeeded_ix)
            if rule is not None:
                return (ju.SUCCESS_POLICY, f"Matched rules at index {rule}")
            if self.completions is not None and len(succeeded_ix) >= self.completions:
                return ju.COMPLETIONS_REACHED
            return None
        if self.completions is None:
            return ju.COMPLETIONS_REACHED if succeeded > 0 and not active else None
        return ju.COMPLETIONS_REACHED if succeeded >= self.completions else None

    def _deadline_left(self) -> float | None:
        job = self.job
        if not job.spec.HasField("active_deadline_seconds") or job.spec.suspend:
            return None
        if not self.status.HasField("start_time"):
            return None
        started = self.status.start_time.seconds + self.status.start_time.nanos / 1e9
        return max(0.0, started + job.spec.active_deadline_seconds - self.now)

    # -- step 5 ----------------------------------------------------------------------------

    async def _manage(self, active: list[core_pb2.Pod], terminating: list[core_pb2.Pod],
                      succeeded: int,
                      succeeded_ix: set[int], failed_ix: set[int]) -> float | None:
        ctl, job, key = self.ctl, self.job, self.key
        if not ctl.expectations.satisfied(key):
            return None
        base, cap = ctl._backoff
        occupied = len(terminating) if ju.only_replace_failed(job) else 0
        if not self.indexed:
            want = ju.want_active(job, succeeded)
            if len(active) > want:
                victims = pods_to_delete(active, len(active) - want)
                await ctl.delete_pods(key, job, victims)
                for v in victims:
                    active.remove(v)
                    terminating.append(v)
                return None
            missing = min(want - len(active) - occupied, BURST)
            if missing <= 0:
                return None
            record = ju.backoff_record(
                [ju.finish_time(p, self.now) for p in self.pods if p.status.phase == "Succeeded"],
                [ju.finish_time(p, self.now) for p in self.pods
                 if ju.is_pod_failed(p, job) and p.metadata.uid not in ctl.deleted_by_us(key)])
            wait = ju.backoff_remaining(record, self.now, base, cap)
            if wait > 0:
                return wait
            await ctl.create_pods(key, job, [(None, 0)] * missing)
            return None
        return await self._manage_indexed(active, terminating, succeeded_ix, failed_ix)

    async def _manage_indexed(self, active: list[core_pb2.Pod], terminating: list[core_pb2.Pod],
                              succeeded_ix: set[int], failed_ix: set[int]) -> float | None:
        ctl, job, key = self.ctl, self.job, self.key
        base, cap = ctl._backoff
        completions = self.completions or 0
        # one active pod per index; extras, strays and done indexes go
        running: dict[int, core_pb2.Pod] = {}
        victims: list[core_pb2.Pod] = []
        for pod in sorted(active, key=lambda p: (p.metadata.creation_timestamp.seconds,
                                                 p.metadata.name)):
            ix = ju.completion_index(pod)
            if (ix is None or ix >= completions or ix in running or ix in succeeded_ix
                    or ix in failed_ix):
                victims.append(pod)
            else:
                running[ix] = pod
        parallelism = job.spec.parallelism
        if len(running) > parallelism:
            for ix in sorted(running)[parallelism:]:
                victims.append(running.pop(ix))
        if victims:
            await ctl.delete_pods(key, job, victims)
            for v in victims:
                active.remove(v)
                terminating.append(v)
            return None
        blocked: set[int] = set()
        if ju.only_replace_failed(job):
            blocked |= {ix for p in terminating if (ix := ju.completion_index(p)) is not None}
        # failures per index and the backoff each index is in
        failures: dict[int, int] = {}
        last_failure: dict[int, float] = {}
        ours = ctl.deleted_by_us(key)
        for p in self.pods:
            ix = ju.completion_index(p)
            if ix is None or not ju.is_pod_failed(p, job) or p.metadata.uid in ours:
                continue
            match = ju.match_pod_failure_policy(job, p) if p.status.phase == "Failed" else None
            count = ju.index_failure_count(p) + (0 if match and match.action == "Ignore" else 1)
            failures[ix] = max(failures.get(ix, 0), count)
            last_failure[ix] = max(last_failure.get(ix, 0.0), ju.finish_time(p, self.now))
        wait: float | None = None
        done = succeeded_ix | failed_ix
        for ix, count in failures.items():
            if ix in done or ix in running:
                continue
            left = ju.backoff_remaining(ju.BackoffRecord(count, last_failure[ix]), self.now,
                                        base, cap)
            if left > 0:
                blocked.add(ix)
                wait = left if wait is None else min(wait, left)
        room = min(parallelism - len(running) - (len(terminating) if ju.only_replace_failed(job)
                                                 else 0), BURST)
        start = ju.indexes_to_start(completions, done, set(running), room, blocked)
        await ctl.create_pods(key, job, [(ix, failures.get(ix, 0)) for ix in start])
        return wait

    async def _write(self) -> None:
        """Write the status if it changed; continue from the stored Job."""
        status = self.status
        status_copy = batch_pb2.JobStatus()
        status_copy.CopyFrom(status)
        if status_copy == self.job.status:
            return
        new = batch_pb2.Job()
        new.CopyFrom(self.job)
        new.status.CopyFrom(status_copy)
        self.job = await self.ctl._client.update_status(new)

