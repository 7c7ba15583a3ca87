"""Pure logic of the CronJob controller: which run is due (missed runs, deadlines, zones),
the Job of a run, history limits. No I/O."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import convert, cron
from control.api.pb import batch_pb2
from control.controllers import cronjob_util as cu
from control.controllers import job_util as ju

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()  # midnight
MIN = 60.0


def cronjob(schedule: str = "*/5 * * * *", **spec: Any) -> batch_pb2.CronJob:
    out: batch_pb2.CronJob = convert.from_dict({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"schedule": schedule, "jobTemplate": {
            "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox"}]}}}}, **spec}}, batch_pb2.CronJob())
    return out


@pytest.mark.parametrize(("since", "now", "scheduled", "missed", "next_run"), [
    (T0, T0 + 4 * MIN, None, 0, T0 + 5 * MIN),
    (T0, T0 + 5 * MIN, T0 + 5 * MIN, 1, T0 + 10 * MIN),
    (T0, T0 + 7 * MIN, T0 + 5 * MIN, 1, T0 + 10 * MIN),
    # down for an hour: one run is due (the latest), twelve were missed
    (T0, T0 + 60 * MIN + 30, T0 + 60 * MIN, 12, T0 + 65 * MIN),
    # since is itself an activation: it does not count again
    (T0 + 5 * MIN, T0 + 6 * MIN, None, 0, T0 + 10 * MIN),
])
def test_most_recent(since: float, now: float, scheduled: float | None, missed: int,
                     next_run: float) -> None:
    due = cu.most_recent(cron.parse("*/5 * * * *"), dt.UTC, since, now)
    assert due == cu.Due(scheduled, missed, next_run)


def test_most_recent_far_behind_stays_bounded() -> None:
    due = cu.most_recent(cron.parse("* * * * *"), dt.UTC, T0, T0 + 30 * 86400)
    assert due.scheduled == T0 + 30 * 86400
    assert due.missed > cu.MAX_MISSED_WARNING
    assert due.next_run == T0 + 30 * 86400 + MIN


def test_earliest_uses_last_schedule_and_deadline() -> None:
    cj = cronjob()
    assert cu.earliest(cj, T0 + 3600, with_deadline=True) == T0
    cj.status.last_schedule_time.CopyFrom(Timestamp(seconds=int(T0 + 600)))
    assert cu.earliest(cj, T0 + 3600, with_deadline=True) == T0 + 600
    cj.spec.starting_deadline_seconds = 100
    assert cu.earliest(cj, T0 + 3600, with_deadline=True) == T0 + 3500
    assert cu.earliest(cj, T0 + 3600, with_deadline=False) == T0 + 600


def test_schedule_in_time_zone() -> None:
    cj = cronjob("0 9 * * *", timeZone="Asia/Tokyo")
    sched, tz = cu.schedule_of(cj)
    due = cu.most_recent(sched, tz, T0, T0 + 86400)
    # 09:00 in Tokyo is 00:00 UTC
    assert due.scheduled == T0 + 86400


def test_job_for() -> None:
    cj = cronjob()
    job = cu.job_for(cj, T0 + 5 * MIN, dt.UTC)
    assert job.metadata.name == f"tick-{int(T0) // 60 + 5}"
    assert dict(job.metadata.labels) == {"team": "a"}
    assert job.metadata.annotations["note"] == "x"
    assert job.metadata.annotations[cu.SCHEDULED_TIMESTAMP_ANNOTATION] == (
        "2026-01-01T00:05:00+00:00")
    (ref,) = job.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("CronJob", "tick", "cj-uid", True)
    assert job.spec.template.spec.containers[0].image == "busybox"


def finished(name: str, ctype: str, at: float) -> batch_pb2.Job:
    j = batch_pb2.Job()
    j.metadata.name = name
    j.metadata.creation_timestamp.CopyFrom(Timestamp(seconds=int(at - 10)))
    ju.set_condition(j.status, ctype, "True", "", "", at)
    if ctype == ju.COMPLETE:
        j.status.completion_time.CopyFrom(Timestamp(seconds=int(at)))
    return j


@pytest.mark.parametrize(("ok", "bad", "deleted"), [
    (3, 1, ["f1"]),
    (1, 1, ["s1", "s2", "f1"]),
    (0, 0, ["s1", "s2", "s3", "f1", "f2"]),
    (None, None, []),
])
def test_to_delete(ok: int | None, bad: int | None, deleted: list[str]) -> None:
    running = batch_pb2.Job()
    running.metadata.name = "r"
    jobs = [finished("s3", ju.COMPLETE, T0 + 30), finished("s1", ju.COMPLETE, T0 + 10),
            finished("s2", ju.COMPLETE, T0 + 20), finished("f2", ju.FAILED, T0 + 25),
            finished("f1", ju.FAILED, T0 + 5), running]
    assert [j.metadata.name for j in cu.to_delete(jobs, ok, bad)] == deleted


def test_schedule_zone_from_a_stored_prefix() -> None:
    sched, tz = cu.schedule_of(cronjob("CRON_TZ=Asia/Tokyo 0 9 * * *"))
    assert cu.most_recent(sched, tz, T0, T0 + 86400).scheduled == T0 + 86400
    # the timeZone field wins
    _, tz = cu.schedule_of(cronjob("CRON_TZ=Asia/Tokyo 0 9 * * *", timeZone="UTC"))
    assert str(tz) == "UTC"
