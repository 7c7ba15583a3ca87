"""The CronJob controller: start a Job at each scheduled time (Kubernetes' CronJobV2).

``reconcile(namespace/name)``:

1. Bookkeeping of ``status.active``: a listed Job that finished leaves it (Event
   SawCompletedJob; a Complete one moves ``lastSuccessfulTime``); a listed Job that no
   longer exists leaves it (MissingJob). Jobs are ours by controller reference.
2. History: finished Jobs beyond ``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit``
   are deleted, oldest first (Background propagation).
3. Suspended: nothing more. Otherwise the latest activation not after now is found
   (``cronjob_util.most_recent``, from ``lastScheduleTime`` or the creation time, bounded by
   ``startingDeadlineSeconds``): so after downtime at most ONE missed run starts, and more
   than 100 missed runs also give a TooManyMissedTimes warning. A run later than
   ``startingDeadlineSeconds`` is skipped (MissSchedule).
4. concurrencyPolicy: Forbid skips the run while a Job is active (lastScheduleTime is not
   moved, so the run starts late if still within its deadline once the active Job ends);
   Replace deletes the active Jobs first; Allow just starts another.
5. The Job ``<name>-<minutes since the epoch>`` is created (its name makes a second
   creation for the same time fail with AlreadyExists, which is then adopted into
   ``status.active``), ``lastScheduleTime`` set, and the key requeued for the next
   activation, measured on the injected clock (so tests move a FakeClock instead of
   waiting a minute).

Concurrency contract: runs under ``control.runtime.Controller`` (one CronJob never
reconciled by two workers at once). Event handlers are synchronous and only enqueue.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING

import structlog

from control.api import cron, errors, kinds
from control.api.pb import batch_pb2, meta_pb2
from control.api.podutil import controller_of
from control.api.timeutil import time_at, timestamp_seconds
from control.client.client import ApiClient
from control.controllers import cronjob_util as cu
from control.controllers.podcontrol import (
    CONTROLLER_UID_INDEX,
    controller_uid_index,
)
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, WARNING
from control.runtime.indexer import NAMESPACE_INDEX, meta_namespace_key, namespace_index

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller")

NAME = "cronjob"
CRONJOB = kinds.by_message(batch_pb2.CronJob)
JOB = kinds.by_message(batch_pb2.Job)
# Kubernetes adds 100 ms so that the requeue lands after the activation, not before.
_NEXT_SLACK = 0.1


class CronJobController:
    """Reconciles CronJobs; see the module docstring."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self._clock = ctx.clock
        self._log = log.bind(controller=NAME)
        self.recorder = ctx.events.new_recorder("cronjob-controller")
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._cronjobs = ctx.informers.informer(batch_pb2.CronJob,
                                                indexers={NAMESPACE_INDEX: namespace_index})
        self._jobs = ctx.informers.informer(
            batch_pb2.Job, indexers={NAMESPACE_INDEX: namespace_index,
                              CONTROLLER_UID_INDEX: controller_uid_index})
        self._cronjobs.add_event_handler(
            on_add=self._enqueue, on_update=self._cronjob_updated, on_delete=self._enqueue)
        self._jobs.add_event_handler(on_add=self._job_event,
                                     on_update=lambda _o, n: self._job_event(n),
                                     on_delete=self._job_event)

    def _enqueue(self, cj: batch_pb2.CronJob) -> None:
        self.controller.enqueue(meta_namespace_key(cj))

    def _cronjob_updated(self, old: batch_pb2.CronJob, new: batch_pb2.CronJob) -> None:
        self._enqueue(new)

    def _job_event(self, job: batch_pb2.Job) -> None:
        ref = controller_of(job)
        if ref is None or ref.kind != CRONJOB.kind:
            return
        self.controller.enqueue(f"{job.metadata.namespace}/{ref.name}")

    # -- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        cj = self._cronjobs.indexer.get(key)
        for _ in range(3):
            if cj is None or cj.metadata.HasField("deletion_timestamp"):
                return None
            try:
                return await self._sync(cj)
            except errors.Conflict:
                # our cached copy was behind (typically our own last status write): the
                # pass is idempotent (a run's Job has a fixed name), so redo it on a fresh one
                try:
                    cj = await self._client.get(batch_pb2.CronJob, cj.metadata.name,
                                                cj.metadata.namespace)
                except errors.NotFound:
                    return None
        raise errors.Conflict(f"cronjob {key} keeps changing")

    async def _sync(self, cj: batch_pb2.CronJob) -> Result | None:
        jobs = [j for j in self._jobs.indexer.by_index(CONTROLLER_UID_INDEX, cj.metadata.uid)
                if j.metadata.namespace == cj.metadata.namespace]
        now = self._clock.now()
        status = batch_pb2.CronJobStatus()
        status.CopyFrom(cj.status)
        await self._track_active(cj, status, jobs)
        await self._clean_history(cj, jobs)
        result = await self._schedule(cj, status, jobs, now)
        await self._write(cj, status)
        return result

    async def _track_active(self, cj: batch_pb2.CronJob, status: batch_pb2.CronJobStatus,
                            jobs: list[batch_pb2.Job]) -> None:
        by_uid = {j.metadata.uid: j for j in jobs}
        keep = []
        for ref in status.active:
            job = by_uid.get(ref.uid)
            if job is None:
                if await self._exists(ref):
                    keep.append(ref)  # the cache is behind
                    continue
                self.recorder.event(cj, NORMAL, "MissingJob", f"Active job went missing: {ref.name}")
                continue
            done = cu.finished_type(job)
            if done is not None:
                self.recorder.event(cj, NORMAL, "SawCompletedJob",
                                    f"Saw completed job: {job.metadata.name}, condition: {done}")
                continue
            keep.append(ref)
        if len(keep) != len(status.active):
            del status.active[:]
            status.active.extend(keep)
        for job in jobs:
            if cu.finished_type(job) == "Complete" and job.status.HasField("completion_time"):
                done_at = timestamp_seconds(job.status.completion_time)
                if (not status.HasField("last_successful_time")
                        or timestamp_seconds(status.last_successful_time) < done_at):
                    status.last_successful_time.CopyFrom(job.status.completion_time)

    async def _exists(self, ref: meta_pb2.ObjectReference) -> bool:
        try:
            job = await self._client.get(batch_pb2.Job, ref.name, ref.namespace)
        except errors.NotFound:
            return False
        return bool(job.metadata.uid == ref.uid)

    async def _clean_history(self, cj: batch_pb2.CronJob, jobs: list[batch_pb2.Job]) -> None:
        spec = cj.spec
        ok = spec.successful_jobs_history_limit if spec.HasField(
            "successful_jobs_history_limit") else None
        bad = spec.failed_jobs_history_limit if spec.HasField("failed_jobs_history_limit") else None
        for job in cu.to_delete(jobs, ok, bad):
            await self._delete_job(cj, job.metadata.name, job.metadata.uid)

    async def _delete_job(self, cj: batch_pb2.CronJob, name: str, uid: str) -> None:
        try:
            await self._client.delete(JOB, name, cj.metadata.namespace,
                                      propagation_policy="Background", uid=uid)
        except (errors.NotFound, errors.Conflict):
            return  # gone, or a namesake that is not ours
        except errors.ApiError as exc:
            self.recorder.event(cj, WARNING, "FailedDelete", f"Deleted job: {exc}")
            raise
        self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {name}")

    async def _schedule(self, cj: batch_pb2.CronJob, status: batch_pb2.CronJobStatus,
                        jobs: list[batch_pb2.Job], now: float) -> Result | None:
        spec = cj.spec
        if spec.suspend:
            return None
        try:
            sched, tz = cu.schedule_of(cj)
        except cron.CronError as exc:
            self.recorder.event(cj, WARNING, "UnparseableSchedule",
                                f"unparseable schedule: {spec.schedule!r} : {exc}")
            return None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            self.recorder.event(cj, WARNING, "UnknownTimeZone",
                                f"invalid timeZone: {spec.time_zone!r}: {exc}")
            return None
        due = cu.most_recent(sched, tz, cu.earliest(cj, now, with_deadline=True), now)
        requeue = (Result(requeue_after=max(0.0, due.next_run - now) + _NEXT_SLACK)
                   if due.next_run is not None else None)
        if due.missed > cu.MAX_MISSED_WARNING:
            self.recorder.event(
                cj, WARNING, "TooManyMissedTimes",
                f"too many missed start times: {due.missed}. Set or decrease "
                ".spec.startingDeadlineSeconds or check clock skew")
        if due.scheduled is None:
            return requeue
        scheduled = due.scheduled
        if (spec.HasField("starting_deadline_seconds")
                and scheduled + spec.starting_deadline_seconds < now):
            self.recorder.event(cj, WARNING, "MissSchedule",
                                "Missed scheduled time to start a job: "
                                f"{dt.datetime.fromtimestamp(scheduled, tz).isoformat()}")
            return requeue
        name = cu.job_name(cj, scheduled)
        existing = next((j for j in jobs if j.metadata.name == name), None)
        if existing is not None or any(r.name == name for r in status.active):
            if existing is not None:
                self._record_run(status, existing, scheduled)
            return requeue
        if spec.concurrency_policy == "Forbid" and status.active:
            self.recorder.event(cj, NORMAL, "JobAlreadyActive",
                                "Not starting job because prior execution is running and "
                                "concurrency policy is Forbid")
            return requeue
        if spec.concurrency_policy == "Replace":
            for ref in list(status.active):
                await self._delete_job(cj, ref.name, ref.uid)
            del status.active[:]
        job = cu.job_for(cj, scheduled, tz)
        try:
            created = await self._client.create(job)
        except errors.AlreadyExists:
            created = await self._client.get(batch_pb2.Job, name, cj.metadata.namespace)
            owner = controller_of(created)
            if owner is None or owner.uid != cj.metadata.uid:
                self.recorder.event(cj, WARNING, "FailedCreate",
                                    f"Error creating job: job {name} exists and is not ours")
                return requeue
        except errors.ApiError as exc:
            self.recorder.event(cj, WARNING, "FailedCreate", f"Error creating job: {exc}")
            raise
        else:
            self.recorder.event(cj, NORMAL, "SuccessfulCreate", f"Created job {name}")
        self._record_run(status, created, scheduled)
        return requeue

    def _record_run(self, status: batch_pb2.CronJobStatus, job: batch_pb2.Job,
                    scheduled: float) -> None:
        """The Job of the run at ``scheduled`` exists: active (unless finished), and the
        run is the last scheduled one."""
        if cu.finished_type(job) is None and not any(
                r.uid == job.metadata.uid for r in status.active):
            status.active.append(meta_pb2.ObjectReference(
                kind=JOB.kind, api_version=JOB.api_version, namespace=job.metadata.namespace,
                name=job.metadata.name, uid=job.metadata.uid,
                resource_version=job.metadata.resource_version))
        if (not status.HasField("last_schedule_time")
                or timestamp_seconds(status.last_schedule_time) < scheduled):
            status.last_schedule_time.CopyFrom(time_at(scheduled))

    async def _write(self, cj: batch_pb2.CronJob, status: batch_pb2.CronJobStatus) -> None:
        if status == cj.status:
            return
        new = batch_pb2.CronJob()
        new.CopyFrom(cj)
        new.status.CopyFrom(status)
        try:
            await self._client.update_status(new)
        except errors.NotFound:
            return
