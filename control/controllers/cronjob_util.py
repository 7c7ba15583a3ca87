"""Pure logic of the CronJob controller: which run is due, the Job for a run, history.

- ``schedule_of``: the CronJob's schedule and time zone (``spec.timeZone``, else UTC, the
  controller manager's zone in Kubernetes' containers).
- ``most_recent``: Kubernetes' mostRecentScheduleTime — from the last scheduled run (or
  the CronJob's creation), bounded by ``startingDeadlineSeconds``, the latest activation
  not after ``now`` and how many were missed (so after a controller restart at most one
  catch-up run is made, and more than 100 missed gives a warning).
- ``job_for``: the Job of one run, named ``<cronjob>-<minutes since the epoch>``, with the
  jobTemplate's labels, annotations and spec, the scheduled-timestamp annotation and a
  controller reference to the CronJob.
- ``to_delete``: the finished Jobs past the history limits, oldest first.

Concurrency contract: plain functions; safe anywhere.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from control.api import cron, kinds
from control.api.pb import batch_pb2, meta_pb2
from control.api.timeutil import timestamp_seconds
from control.controllers import job_util as ju

SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# More missed runs than this and Kubernetes warns (TooManyMissedTimes).
MAX_MISSED_WARNING = 100
# Counting missed runs stops here (the answer is only "more than 100" past that).
_COUNT_LIMIT = 10_000


def schedule_of(cj: batch_pb2.CronJob) -> tuple[cron.Schedule, dt.tzinfo]:
    """The parsed schedule and its zone; CronError / ZoneInfoNotFoundError when invalid."""
    sched = cron.parse(cj.spec.schedule)
    tz: dt.tzinfo = dt.UTC
    if cj.spec.HasField("time_zone"):
        tz = zoneinfo.ZoneInfo(cj.spec.time_zone)
    elif sched.zone is not None:
        tz = zoneinfo.ZoneInfo(sched.zone)  # a stored schedule's CRON_TZ= prefix
    return sched, tz


def _at(seconds: float, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz)


@dataclass(frozen=True)
class Due:
    """The latest activation not after now (None: none since ``earliest``), how many were
    missed, and the activation after now."""

    scheduled: float | None
    missed: int
    next_run: float | None


def earliest(cj: batch_pb2.CronJob, now: float, with_deadline: bool) -> float:
    """Where the search for missed runs starts."""
    start = timestamp_seconds(cj.metadata.creation_timestamp) if cj.metadata.HasField(
        "creation_timestamp") else now
    if cj.status.HasField("last_schedule_time"):
        start = timestamp_seconds(cj.status.last_schedule_time)
    if with_deadline and cj.spec.HasField("starting_deadline_seconds"):
        start = max(start, now - cj.spec.starting_deadline_seconds)
    return start


def most_recent(sched: cron.Schedule, tz: dt.tzinfo, since: float, now: float) -> Due:
    """Activations in (since, now]: the latest, and how many."""
    t = sched.next(_at(since, tz))
    latest: dt.datetime | None = None
    missed = 0
    now_dt = _at(now, tz)
    while t is not None and t <= now_dt:
        latest = t
        missed += 1
        if missed >= _COUNT_LIMIT:
            # far behind: jump close to now and keep only the last one
            t = sched.next(now_dt - dt.timedelta(days=1))
            while t is not None and t <= now_dt:
                latest = t
                t = sched.next(t)
            break
        t = sched.next(t)
    # t is now the first activation after now (None: the schedule never fires again)
    return Due(latest.timestamp() if latest is not None else None, missed,
               t.timestamp() if t is not None else None)


def job_name(cj: batch_pb2.CronJob, scheduled: float) -> str:
    """``<cronjob>-<scheduled time in minutes since the epoch>`` (Kubernetes' name)."""
    return f"{cj.metadata.name}-{int(scheduled) // 60}"


def job_for(cj: batch_pb2.CronJob, scheduled: float, tz: dt.tzinfo) -> batch_pb2.Job:
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    m = job.metadata
    m.name = job_name(cj, scheduled)
    m.namespace = cj.metadata.namespace
    m.labels.update(cj.spec.job_template.metadata.labels)
    m.annotations.update(cj.spec.job_template.metadata.annotations)
    m.annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = _at(scheduled, tz).isoformat()
    info = kinds.by_message(batch_pb2.CronJob)
    m.owner_references.append(meta_pb2.OwnerReference(
        api_version=info.api_version, kind=info.kind, name=cj.metadata.name,
        uid=cj.metadata.uid, controller=True, block_owner_deletion=True))
    job.spec.CopyFrom(cj.spec.job_template.spec)
    return job


def finished_type(job: batch_pb2.Job) -> str | None:
    """Complete or Failed once the Job has finished, else None."""
    for ctype in (ju.COMPLETE, ju.FAILED):
        if ju.condition_true(job.status, ctype):
            return ctype
    return None


def _finish_key(job: batch_pb2.Job) -> float:
    if job.status.HasField("completion_time"):
        return timestamp_seconds(job.status.completion_time)
    done = ju.finished_at(job)
    if done is not None:
        return done
    return timestamp_seconds(job.metadata.creation_timestamp)


def to_delete(jobs: Iterable[batch_pb2.Job], successful_limit: int | None,
              failed_limit: int | None) -> list[batch_pb2.Job]:
    """Finished Jobs beyond the history limits (None: keep all), oldest first."""
    out: list[batch_pb2.Job] = []
    jobs = list(jobs)
    for ctype, limit in ((ju.COMPLETE, successful_limit), (ju.FAILED, failed_limit)):
        if limit is None:
            continue
        done = sorted((j for j in jobs if finished_type(j) == ctype), key=_finish_key)
        if len(done) > limit:
            out.extend(done[:len(done) - limit])
    return out
