"""Describers of Job, CronJob and DaemonSet, in kubectl's layout.

Pure functions over the object's JSON dict; a DaemonSet's "Pods Status" line needs the
``pods`` the caller fetched (its selector's pods that it controls).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.api.timeutil import human_age
from control.cli import columns
from control.cli.columns import format_label_selector
from control.cli.describe._text import (
    _annotations,
    _as_dict,
    _get,
    _i,
    _labels,
    _list,
    _map,
    _s,
    _Writer,
    format_time,
)
from control.cli.describe.podspec import _pod_template


def _opt(value: Any) -> str:
    """An optional field as kubectl prints it: ``<unset>`` when absent."""
    if value is None or value == "":
        return "<unset>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _header(w: _Writer, meta: Mapping[str, Any]) -> None:
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    w.write(0, f"Namespace:\t{_s(meta, 'namespace')}\n")


def _describe_job(w: _Writer, job: dict[str, Any], related: Mapping[str, Any],
                  now: float) -> None:
    meta, spec, st = _map(job, "metadata"), _map(job, "spec"), _map(job, "status")
    _header(w, meta)
    w.write(0, f"Selector:\t{format_label_selector(_map(spec, 'selector'))}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, f"Parallelism:\t{_opt(spec.get('parallelism'))}\n")
    w.write(0, f"Completions:\t{_opt(spec.get('completions'))}\n")
    w.write(0, f"Completion Mode:\t{_s(spec, 'completionMode') or 'NonIndexed'}\n")
    w.write(0, f"Suspend:\t{_opt(bool(spec.get('suspend', False)))}\n")
    w.write(0, f"Backoff Limit:\t{_opt(spec.get('backoffLimit'))}\n")
    if "backoffLimitPerIndex" in spec:
        w.write(0, f"Backoff Limit Per Index:\t{spec['backoffLimitPerIndex']}\n")
    if "maxFailedIndexes" in spec:
        w.write(0, f"Max Failed Indexes:\t{spec['maxFailedIndexes']}\n")
    if "activeDeadlineSeconds" in spec:
        w.write(0, f"Active Deadline Seconds:\t{spec['activeDeadlineSeconds']}s\n")
    if "ttlSecondsAfterFinished" in spec:
        w.write(0, f"TTL Seconds After Finished:\t{spec['ttlSecondsAfterFinished']}\n")
    start = _get(st, "startTime")
    if start:
        w.write(0, f"Start Time:\t{format_time(start)}\n")
    done = _get(st, "completionTime")
    if done:
        w.write(0, f"Completed At:\t{format_time(done)}\n")
    begun = columns.time_seconds(start) if isinstance(start, str) else None
    if begun is not None:
        end = columns.time_seconds(done) if isinstance(done, str) else None
        w.write(0, f"Duration:\t{human_age((end if end is not None else now) - begun)}\n")
    w.write(0, f"Pods Statuses:\t{_i(st, 'active')} Active ({_i(st, 'ready')} Ready) / "
               f"{_i(st, 'succeeded')} Succeeded / {_i(st, 'failed')} Failed\n")
    if _s(spec, "completionMode") == "Indexed":
        w.write(0, f"Completed Indexes:\t{_s(st, 'completedIndexes') or '<none>'}\n")
        if "failedIndexes" in st:
            w.write(0, f"Failed Indexes:\t{_s(st, 'failedIndexes') or '<none>'}\n")
    _pod_template(w, _map(spec, "template"))
    conditions = _list(st, "conditions")
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
        w.write(1, "----\t------\t------\n")
        for c in conditions:
            w.write(1, f"{_s(c, 'type')} \t{_s(c, 'status')}\t{_s(c, 'reason')}\n")


def _describe_cronjob(w: _Writer, cj: dict[str, Any], related: Mapping[str, Any],
                      now: float) -> None:
    meta, spec, st = _map(cj, "metadata"), _map(cj, "spec"), _map(cj, "status")
    _header(w, meta)
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, f"Schedule:\t{_s(spec, 'schedule')}\n")
    if "timeZone" in spec:
        w.write(0, f"Time Zone:\t{_s(spec, 'timeZone')}\n")
    w.write(0, f"Concurrency Policy:\t{_s(spec, 'concurrencyPolicy') or 'Allow'}\n")
    w.write(0, f"Suspend:\t{'True' if spec.get('suspend') else 'False'}\n")
    w.write(0, "Successful Job History Limit:\t"
               f"{_opt(spec.get('successfulJobsHistoryLimit'))}\n")
    w.write(0, f"Failed Job History Limit:\t{_opt(spec.get('failedJobsHistoryLimit'))}\n")
    w.write(0, f"Starting Deadline Seconds:\t{_opt(spec.get('startingDeadlineSeconds'))}\n")
    job_spec = _map(spec, "jobTemplate", "spec")
    selector = _map(job_spec, "selector")
    w.write(0, f"Selector:\t{format_label_selector(selector) if selector else '<unset>'}\n")
    w.write(0, f"Parallelism:\t{_opt(job_spec.get('parallelism'))}\n")
    w.write(0, f"Completions:\t{_opt(job_spec.get('completions'))}\n")
    _pod_template(w, _map(job_spec, "template"))
    w.write(0, f"Last Schedule Time:\t{format_time(_get(st, 'lastScheduleTime'))}\n")
    active = [_s(r, "name") for r in _list(st, "active")]
    w.write(0, f"Active Jobs:\t{', '.join(active) or '<none>'}\n")


def _describe_daemonset(w: _Writer, ds: dict[str, Any], related: Mapping[str, Any],
                        now: float) -> None:
    meta, spec, st = _map(ds, "metadata"), _map(ds, "spec"), _map(ds, "status")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    w.write(0, f"Selector:\t{format_label_selector(_map(spec, 'selector'))}\n")
    node_selector = _map(spec, "template", "spec", "nodeSelector")
    w.write(0, "Node-Selector:\t"
               f"{','.join(f'{k}={v}' for k, v in sorted(node_selector.items())) or '<none>'}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, f"Desired Number of Nodes Scheduled: {_i(st, 'desiredNumberScheduled')}\n")
    w.write(0, f"Current Number of Nodes Scheduled: {_i(st, 'currentNumberScheduled')}\n")
    w.write(0, "Number of Nodes Scheduled with Up-to-date Pods: "
               f"{_i(st, 'updatedNumberScheduled')}\n")
    w.write(0, "Number of Nodes Scheduled with Available Pods: "
               f"{_i(st, 'numberAvailable')}\n")
    w.write(0, f"Number of Nodes Misscheduled: {_i(st, 'numberMisscheduled')}\n")
    if "pods" in related:
        phases = [_s(_as_dict(p), "status", "phase") for p in related["pods"] or []]
        w.write(0, f"Pods Status:\t{phases.count('Running')} Running / "
                   f"{phases.count('Pending')} Waiting / {phases.count('Succeeded')} "
                   f"Succeeded / {phases.count('Failed')} Failed\n")
    _pod_template(w, _map(spec, "template"))
