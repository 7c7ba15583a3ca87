"""Pure logic of the Job controller: indexes, backoff, podFailurePolicy, successPolicy,
what to run, conditions and TTL. No I/O."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import convert
from control.api.pb import batch_pb2, core_pb2
from control.controllers import job_util as ju

NOW = 1_700_000_000.0


def job(**spec: Any) -> batch_pb2.Job:
    body: dict[str, Any] = {"template": {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": "busybox", "env": [{"name": "A", "value": "1"}]}]}}}
    body.update(spec)
    out: batch_pb2.Job = convert.from_dict(
        {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": "pi", "namespace": "default"}, "spec": body}, batch_pb2.Job())
    return out


def pod(phase: str = "Running", *, exit_codes: dict[str, int] | None = None,
        conditions: dict[str, str] | None = None, deleting: bool = False,
        restart_policy: str = "Never", restarts: int = 0) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "pi-abc", "default"
    p.spec.restart_policy = restart_policy
    p.status.phase = phase
    for name, code in (exit_codes or {}).items():
        cs = p.status.container_statuses.add(name=name)
        cs.state.terminated.exit_code = code
    for ctype, status in (conditions or {}).items():
        p.status.conditions.add(type=ctype, status=status)
    if restarts:
        p.status.container_statuses.add(name="main", restart_count=restarts)
    if deleting:
        p.metadata.deletion_timestamp.CopyFrom(Timestamp(seconds=int(NOW)))
    return p


@pytest.mark.parametrize(("text", "limit", "indexes"), [
    ("", None, set()),
    ("0-2,5", None, {0, 1, 2, 5}),
    ("1,3-4", 4, {1, 3}),
    ("x,2", None, {2}),
    ("7", 5, set()),
])
def test_parse_indexes(text: str, limit: int | None, indexes: set[int]) -> None:
    assert ju.parse_indexes(text, limit) == indexes


@pytest.mark.parametrize(("indexes", "text"), [
    (set(), ""), ({0}, "0"), ({0, 1}, "0,1"), ({0, 1, 2}, "0-2"),
    ({0, 1, 2, 5, 7, 8, 9, 10}, "0-2,5,7-10"), ({3, 4, 9}, "3,4,9"),
])
def test_format_indexes(indexes: set[int], text: str) -> None:
    assert ju.format_indexes(indexes) == text
    assert ju.parse_indexes(text) == indexes


@pytest.mark.parametrize(("failures", "delay"), [
    (0, 0.0), (1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0), (7, 360.0), (100, 360.0)])
def test_backoff_delay(failures: int, delay: float) -> None:
    assert ju.backoff_delay(failures) == delay


@pytest.mark.parametrize(("succeeded", "failed", "record", "remaining"), [
    ([], [], ju.BackoffRecord(0, 0.0), 0.0),
    ([], [NOW - 5], ju.BackoffRecord(1, NOW - 5), 5.0),
    ([], [NOW - 30, NOW - 5], ju.BackoffRecord(2, NOW - 5), 15.0),
    # a success resets the count
    ([NOW - 10], [NOW - 30, NOW - 5], ju.BackoffRecord(1, NOW - 5), 5.0),
    ([], [NOW - 100], ju.BackoffRecord(1, NOW - 100), 0.0),
])
def test_backoff_record(succeeded: list[float], failed: list[float], record: ju.BackoffRecord,
                        remaining: float) -> None:
    got = ju.backoff_record(succeeded, failed)
    assert got == record
    assert ju.backoff_remaining(got, NOW) == remaining


@pytest.mark.parametrize(("p", "job_spec", "failed"), [
    (pod("Failed"), {}, True),
    (pod("Succeeded", deleting=True), {}, False),
    (pod("Running", deleting=True), {}, True),
    (pod("Running", deleting=True), {"podReplacementPolicy": "Failed"}, False),
    (pod("Running"), {}, False),
])
def test_is_pod_failed(p: Any, job_spec: dict[str, Any], failed: bool) -> None:
    assert ju.is_pod_failed(p, job(**job_spec)) is failed


RULES = {"rules": [
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In",
                                          "values": [42]}},
    {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
    {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}},
]}


@pytest.mark.parametrize(("p", "action", "message"), [
    (pod("Failed", conditions={"DisruptionTarget": "True"}), "Ignore",
     "Pod default/pi-abc has condition DisruptionTarget matching Ignore rule at index 0"),
    (pod("Failed", exit_codes={"main": 42}), "FailJob",
     "Container main for pod default/pi-abc failed with exit code 42 matching FailJob rule "
     "at index 1"),
    (pod("Failed", exit_codes={"side": 42}), "Count",
     "Container side for pod default/pi-abc failed with exit code 42 matching Count rule "
     "at index 2"),
    (pod("Failed", exit_codes={"main": 1}), "FailIndex",
     "Container main for pod default/pi-abc failed with exit code 1 matching FailIndex rule "
     "at index 3"),
    (pod("Failed", exit_codes={"main": 2}), None, None),
    (pod("Failed", exit_codes={"main": 0}), None, None),  # a success matches nothing
])
def test_pod_failure_policy(p: Any, action: str | None, message: str | None) -> None:
    got = ju.match_pod_failure_policy(job(podFailurePolicy=RULES), p)
    if action is None:
        assert got is None
    else:
        assert got == ju.PolicyMatch(action, message or "")


def test_no_policy_matches_nothing() -> None:
    assert ju.match_pod_failure_policy(job(), pod("Failed", exit_codes={"main": 42})) is None


@pytest.mark.parametrize(("rules", "succeeded", "match"), [
    ([{"succeededIndexes": "0"}], {0}, 0),
    ([{"succeededIndexes": "0-2"}], {0, 1}, None),
    ([{"succeededIndexes": "0-2", "succeededCount": 2}], {0, 2}, 0),
    ([{"succeededCount": 3}], {0, 1}, None),
    ([{"succeededIndexes": "4"}, {"succeededCount": 2}], {0, 1}, 1),
])
def test_success_policy(rules: list[dict[str, Any]], succeeded: set[int],
                        match: int | None) -> None:
    j = job(completions=5, completionMode="Indexed", successPolicy={"rules": rules})
    assert ju.success_policy_match(j, succeeded) == match


@pytest.mark.parametrize(("spec", "succeeded", "want"), [
    ({"completions": 5, "parallelism": 2}, 0, 2),
    ({"completions": 5, "parallelism": 2}, 4, 1),
    ({"completions": 5, "parallelism": 2}, 5, 0),
    ({"parallelism": 3}, 0, 3),  # a work queue
    ({"parallelism": 3}, 1, 0),
])
def test_want_active(spec: dict[str, Any], succeeded: int, want: int) -> None:
    assert ju.want_active(job(**spec), succeeded) == want


@pytest.mark.parametrize(("done", "running", "count", "blocked", "start"), [
    (set(), set(), 2, set(), [0, 1]),
    ({0}, {1}, 2, set(), [2, 3]),
    ({0}, {1}, 2, {2}, [3, 4]),
    (set(range(5)), set(), 3, set(), []),
    (set(), set(), 0, set(), []),
])
def test_indexes_to_start(done: set[int], running: set[int], count: int, blocked: set[int],
                          start: list[int]) -> None:
    assert ju.indexes_to_start(5, done, running, count, blocked) == start


@pytest.mark.parametrize(("restarts", "limit", "past"), [(0, 0, False), (1, 0, True),
                                                         (2, 3, False), (3, 3, True)])
def test_past_backoff_limit_on_failure(restarts: int, limit: int, past: bool) -> None:
    j = job(backoffLimit=limit)
    j.spec.template.spec.restart_policy = "OnFailure"
    assert ju.past_backoff_limit_on_failure(j, [pod("Running", restarts=restarts)]) is past
    j.spec.template.spec.restart_policy = "Never"
    assert not ju.past_backoff_limit_on_failure(j, [pod("Running", restarts=restarts)])


def test_set_condition_moves_transition_time_only_on_change() -> None:
    status = batch_pb2.JobStatus()
    assert ju.set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", NOW)
    assert not ju.set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended",
                                NOW + 5)
    assert ju.set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", NOW + 9)
    (c,) = status.conditions
    assert (c.status, c.reason, c.last_transition_time.seconds) == (
        "False", "JobResumed", int(NOW + 9))


def test_ttl_remaining() -> None:
    j = job(ttlSecondsAfterFinished=30)
    assert ju.ttl_remaining(j, NOW) is None  # not finished
    ju.set_condition(j.status, ju.COMPLETE, "True", "CompletionsReached", "", NOW - 10)
    assert ju.ttl_remaining(j, NOW) == 20.0
    assert ju.ttl_remaining(j, NOW + 100) == 0.0
    assert ju.ttl_remaining(job(), NOW) is None


def test_indexed_pod_template() -> None:
    j = job(completions=3, completionMode="Indexed", backoffLimitPerIndex=1)
    t = ju.pod_template(j, 2, failure_count=1)
    assert t.metadata.annotations[ju.COMPLETION_INDEX_KEY] == "2"
    assert t.metadata.labels[ju.COMPLETION_INDEX_KEY] == "2"
    assert t.metadata.annotations[ju.INDEX_FAILURE_COUNT_KEY] == "1"
    assert t.spec.hostname == "pi-2"
    assert list(t.metadata.finalizers) == [ju.JOB_TRACKING_FINALIZER]
    env = {e.name: e for e in t.spec.containers[0].env}
    assert env["A"].value == "1"
    assert env[ju.COMPLETION_INDEX_ENV].value_from.field_ref.field_path == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    plain = ju.pod_template(job(), None)
    assert ju.COMPLETION_INDEX_KEY not in plain.metadata.annotations
    assert not plain.spec.hostname
    assert not j.spec.template.metadata.finalizers  # the Job is untouched
