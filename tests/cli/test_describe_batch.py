"""`describe` of Jobs, CronJobs and DaemonSets: kubectl's layout, from JSON dicts."""

from __future__ import annotations

from typing import Any

from control.api import kinds
from control.cli import describe
from tests.support.describe import NOW, lines, obj

TEMPLATE = {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}


def has(text: str, *expected: str) -> None:
    got = lines(text)
    for e in expected:
        assert e in got, (e, got)


def test_describe_job() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "ix", "namespace": "default"},
        "spec": {"parallelism": 2, "completions": 3, "completionMode": "Indexed",
                 "suspend": False, "backoffLimit": 6, "backoffLimitPerIndex": 1,
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                 "template": TEMPLATE},
        "status": {"startTime": "2024-01-01T11:00:00Z", "completionTime": "2024-01-01T11:01:05Z",
                   "active": 0, "ready": 0, "succeeded": 2, "failed": 1,
                   "completedIndexes": "0,2", "failedIndexes": "1",
                   "conditions": [{"type": "Failed", "status": "True",
                                   "reason": "FailedIndexes"}]},
    }
    text = describe.describe_object(obj("Job", job), kinds.by_kind("Job"), {"events": []},
                                    now=NOW)
    has(text, "Name:                     ix",
        "Selector:                 batch.kubernetes.io/controller-uid=u",
        "Parallelism:              2", "Completions:              3",
        "Completion Mode:          Indexed", "Suspend:                  false",
        "Backoff Limit:            6", "Backoff Limit Per Index:  1",
        "Start Time:               Mon, 01 Jan 2024 11:00:00 +0000",
        "Completed At:             Mon, 01 Jan 2024 11:01:05 +0000",
        "Duration:                 65s",
        "Pods Statuses:            0 Active (0 Ready) / 2 Succeeded / 1 Failed",
        "Completed Indexes:        0,2", "Failed Indexes:           1",
        "  Failed   True    FailedIndexes", "Events:    <none>")


def test_describe_cronjob() -> None:
    cj: dict[str, Any] = {
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {"schedule": "*/5 * * * *", "timeZone": "Europe/Paris",
                 "concurrencyPolicy": "Forbid", "suspend": True,
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                 "jobTemplate": {"spec": {"template": TEMPLATE}}},
        "status": {"lastScheduleTime": "2024-01-01T11:55:00Z",
                   "active": [{"name": "hello-28400000"}]},
    }
    text = describe.describe_object(obj("CronJob", cj), kinds.by_kind("CronJob"), {}, now=NOW)
    has(text, "Schedule:                      */5 * * * *",
        "Time Zone:                     Europe/Paris",
        "Concurrency Policy:            Forbid", "Suspend:                       True",
        "Successful Job History Limit:  3", "Failed Job History Limit:      1",
        "Starting Deadline Seconds:     <unset>", "Selector:                      <unset>",
        "Last Schedule Time:  Mon, 01 Jan 2024 11:55:00 +0000",
        "Active Jobs:         hello-28400000")


def test_describe_daemonset() -> None:
    ds: dict[str, Any] = {
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"nodeSelector": {"disk": "ssd"},
                                       "containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                   "updatedNumberScheduled": 2, "numberAvailable": 2,
                   "numberMisscheduled": 1},
    }
    pods = [{"status": {"phase": "Running"}}, {"status": {"phase": "Running"}},
            {"status": {"phase": "Pending"}}]
    text = describe.describe_object(obj("DaemonSet", ds), kinds.by_kind("DaemonSet"),
                                    {"pods": pods}, now=NOW)
    has(text, "Selector:       app=agent", "Node-Selector:  disk=ssd",
        "Desired Number of Nodes Scheduled: 3",
        "Current Number of Nodes Scheduled: 3",
        "Number of Nodes Scheduled with Up-to-date Pods: 2",
        "Number of Nodes Scheduled with Available Pods: 2",
        "Number of Nodes Misscheduled: 1",
        "Pods Status:  2 Running / 1 Waiting / 0 Succeeded / 0 Failed")
