"""Pure logic of the Job controller: no I/O, no clock of its own (``now`` is passed in).

- completion indexes: the ``batch.kubernetes.io/job-completion-index`` annotation, interval
  strings such as ``"0-2,5"`` (``status.completedIndexes``, ``failedIndexes``,
  ``successPolicy.rules[].succeededIndexes``);
- which pods are active, terminating, succeeded or failed, and when a pod finished;
- the pod retry backoff: ``base * 2**(failures-1)`` capped at ``cap`` (Kubernetes: 10 s
  doubling to 6 minutes), measured from the last failure after the last success;
- podFailurePolicy matching (exit codes and pod conditions) with Kubernetes' messages;
- successPolicy matching, how many pods to keep running, which indexes to start next;
- the conditions of ``status.conditions`` (set/replace, with transition times).

Concurrency contract: plain functions over protobuf messages; safe anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from control.api.pb import batch_pb2, core_pb2
from control.api.timeutil import time_at, timestamp_seconds

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT_KEY = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT_KEY = "batch.kubernetes.io/job-index-ignored-failure-count"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"

# condition types
COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
FAILURE_TARGET = "FailureTarget"
SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"

# reasons and messages Kubernetes writes
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
MAX_FAILED_INDEXES_EXCEEDED = ("MaxFailedIndexesExceeded",
                               "Job has exceeded the specified maximal number of failed indexes")
FAILED_INDEXES = ("FailedIndexes", "Job has failed indexes")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
POD_FAILURE_POLICY = "PodFailurePolicy"
SUCCESS_POLICY = "SuccessPolicy"

# Kubernetes' DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
DEFAULT_POD_BACKOFF = 10.0
MAX_POD_BACKOFF = 360.0


# -- indexes -------------------------------------------------------------------------------


def parse_indexes(text: str, limit: int | None = None) -> set[int]:
    """``"0-2,5"`` -> {0, 1, 2, 5}; indexes at or past ``limit`` and malformed parts are
    dropped (the apiserver validates what users write; status is ours)."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo_text, dash, hi_text = part.partition("-")
        if not lo_text.isdigit() or (dash and not hi_text.isdigit()):
            continue
        lo = int(lo_text)
        hi = int(hi_text) if dash else lo
        if limit is not None:
            hi = min(hi, limit - 1)
        out.update(range(lo, hi + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """{0, 1, 2, 5} -> ``"0-2,5"`` (runs of three or more collapse; two stay "3,4", as
    Kubernetes writes them)."""
    out: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{ordered[i]}-{ordered[j]}")
        else:
            out.extend(str(ordered[k]) for k in range(i, j + 1))
        i = j + 1
    return ",".join(out)


def completion_index(pod: core_pb2.Pod) -> int | None:
    """The pod's completion index (annotation first, then label), None if absent/invalid."""
    for source in (pod.metadata.annotations, pod.metadata.labels):
        text = source.get(COMPLETION_INDEX_KEY)
        if text is not None:
            return int(text) if text.isdigit() else None
    return None


def index_failure_count(pod: core_pb2.Pod) -> int:
    text = pod.metadata.annotations.get(INDEX_FAILURE_COUNT_KEY, "0")
    return int(text) if text.isdigit() else 0


# -- pods ----------------------------------------------------------------------------------


def is_terminal(pod: core_pb2.Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def is_deleting(pod: core_pb2.Pod) -> bool:
    return bool(pod.metadata.HasField("deletion_timestamp"))


def is_active(pod: core_pb2.Pod) -> bool:
    return not is_terminal(pod) and not is_deleting(pod)


def is_terminating(pod: core_pb2.Pod) -> bool:
    return is_deleting(pod) and not is_terminal(pod)


def has_tracking_finalizer(pod: core_pb2.Pod) -> bool:
    return JOB_TRACKING_FINALIZER in pod.metadata.finalizers


def only_replace_failed(job: batch_pb2.Job) -> bool:
    """Replacement pods wait for the old pod to be fully Failed (podReplacementPolicy
    Failed, which a podFailurePolicy implies)."""
    return bool(job.spec.pod_replacement_policy == "Failed"
                or job.spec.HasField("pod_failure_policy"))


def is_pod_failed(pod: core_pb2.Pod, job: batch_pb2.Job) -> bool:
    """Counts as a failure: Failed, or — unless only Failed pods are replaced — deleted
    before it succeeded (an orphaned or evicted pod may never reach Failed)."""
    if pod.status.phase == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return is_deleting(pod) and pod.status.phase != "Succeeded"


def finish_time(pod: core_pb2.Pod, now: float) -> float:
    """When the pod finished: its containers' latest finishedAt, else its deletion time,
    else ``now``."""
    latest = 0.0
    for cs in list(pod.status.init_container_statuses) + list(pod.status.container_statuses):
        if cs.state.HasField("terminated") and cs.state.terminated.HasField("finished_at"):
            latest = max(latest, timestamp_seconds(cs.state.terminated.finished_at))
    if latest:
        return latest
    if is_deleting(pod):
        return timestamp_seconds(pod.metadata.deletion_timestamp)
    return now


def restarts(pod: core_pb2.Pod) -> int:
    return sum(cs.restart_count for cs in
               list(pod.status.init_container_statuses) + list(pod.status.container_statuses))


def past_backoff_limit_on_failure(job: batch_pb2.Job, pods: Iterable[core_pb2.Pod]) -> bool:
    """restartPolicy OnFailure: container restarts of running pods count as failures."""
    if job.spec.template.spec.restart_policy != "OnFailure":
        return False
    total = sum(restarts(p) for p in pods if p.status.phase in ("Running", "Pending"))
    limit = job.spec.backoff_limit
    return total > 0 if limit == 0 else total >= limit


# -- backoff -------------------------------------------------------------------------------


def backoff_delay(failures: int, base: float = DEFAULT_POD_BACKOFF,
                  cap: float = MAX_POD_BACKOFF) -> float:
    """The wait before the next pod after ``failures`` consecutive failures."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 30)))


@dataclass(frozen=True)
class BackoffRecord:
    """Consecutive failures since the last success, and when the last one happened."""

    failures: int
    last_failure: float


def backoff_record(succeeded_at: Sequence[float], failed_at: Sequence[float]) -> BackoffRecord:
    """From the finish times of the succeeded and failed pods."""
    last_success = max(succeeded_at, default=float("-inf"))
    after = [t for t in failed_at if t >= last_success]
    return BackoffRecord(len(after), max(after, default=0.0))


def backoff_remaining(record: BackoffRecord, now: float, base: float = DEFAULT_POD_BACKOFF,
                      cap: float = MAX_POD_BACKOFF) -> float:
    """Seconds still to wait before creating a pod (0 when it may be created now)."""
    if record.failures == 0:
        return 0.0
    return max(0.0, record.last_failure + backoff_delay(record.failures, base, cap) - now)


# -- podFailurePolicy ----------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyMatch:
    action: str  # FailJob, FailIndex, Ignore, Count
    message: str


def _exit_code_match(rule: batch_pb2.PodFailurePolicyRule, index: int,
                     pod: core_pb2.Pod) -> PolicyMatch | None:
    req = rule.on_exit_codes
    values = set(req.values)
    statuses = list(pod.status.container_statuses)
    if pod.spec.restart_policy == "Never" or not req.HasField("container_name"):
        statuses = list(pod.status.init_container_statuses) + statuses
    for cs in statuses:
        if req.HasField("container_name") and cs.name != req.container_name:
            continue
        if not cs.state.HasField("terminated"):
            continue
        code = cs.state.terminated.exit_code
        if code == 0:
            continue  # a success never matches, whatever the operator
        hit = code in values if req.operator == "In" else code not in values
        if hit:
            return PolicyMatch(rule.action,
                               f"Container {cs.name} for pod {pod.metadata.namespace}/"
                               f"{pod.metadata.name} failed with exit code {code} matching "
                               f"{rule.action} rule at index {index}")
    return None


def _condition_match(rule: batch_pb2.PodFailurePolicyRule, index: int,
                     pod: core_pb2.Pod) -> PolicyMatch | None:
    for pattern in rule.on_pod_conditions:
        for c in pod.status.conditions:
            if c.type == pattern.type and c.status == (pattern.status or "True"):
                return PolicyMatch(rule.action,
                                   f"Pod {pod.metadata.namespace}/{pod.metadata.name} has "
                                   f"condition {c.type} matching {rule.action} rule at "
                                   f"index {index}")
    return None


def match_pod_failure_policy(job: batch_pb2.Job, pod: core_pb2.Pod) -> PolicyMatch | None:
    """The first rule of the Job's podFailurePolicy that the Failed ``pod`` matches."""
    if not job.spec.HasField("pod_failure_policy"):
        return None
    for i, rule in enumerate(job.spec.pod_failure_policy.rules):
        match = (_exit_code_match(rule, i, pod) if rule.HasField("on_exit_codes")
                 else _condition_match(rule, i, pod))
        if match is not None:
            return match
    return None


# -- success policy and what to run --------------------------------------------------------


def success_policy_match(job: batch_pb2.Job, succeeded: set[int]) -> int | None:
    """The index of the first successPolicy rule that the succeeded indexes satisfy."""
    if not job.spec.HasField("success_policy"):
        return None
    completions = job.spec.completions
    for i, rule in enumerate(job.spec.success_policy.rules):
        if rule.HasField("succeeded_indexes"):
            wanted = parse_indexes(rule.succeeded_indexes, completions)
            done = len(wanted & succeeded)
            need = rule.succeeded_count if rule.HasField("succeeded_count") else len(wanted)
            if wanted and done >= need:
                return i
        elif rule.HasField("succeeded_count") and len(succeeded) >= rule.succeeded_count:
            return i
    return None


def want_active(job: batch_pb2.Job, succeeded: int) -> int:
    """How many pods a NonIndexed Job should have running (Kubernetes' manageJob)."""
    parallelism = job.spec.parallelism
    if not job.spec.HasField("completions"):
        # a work queue: once one pod succeeded no new pods start; the rest finish
        return 0 if succeeded > 0 else parallelism
    return max(0, min(parallelism, job.spec.completions - succeeded))


def indexes_to_start(completions: int, done: set[int], running: set[int], count: int,
                     blocked: set[int] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """The lowest ``count`` indexes below ``completions`` that are neither done (succeeded
    or failed) nor running nor ``blocked`` (backing off, or waiting for a terminating pod)."""
    out: list[int] = []
    if count <= 0:
        return out
    for i in range(completions):
        if i in done or i in running or i in blocked:
            continue
        out.append(i)
        if len(out) == count:
            break
    return out


# -- conditions ----------------------------------------------------------------------------


def find_condition(status: batch_pb2.JobStatus,
                   ctype: str) -> batch_pb2.JobCondition | None:
    for c in status.conditions:
        if c.type == ctype:
            return c
    return None


def condition_true(status: batch_pb2.JobStatus, ctype: str) -> bool:
    c = find_condition(status, ctype)
    return c is not None and c.status == "True"


def is_finished(job: batch_pb2.Job) -> bool:
    return condition_true(job.status, COMPLETE) or condition_true(job.status, FAILED)


def set_condition(status: batch_pb2.JobStatus, ctype: str, value: str, reason: str,
                  message: str, now: float) -> bool:
    """Set a condition in place; the transition time moves only when the status does.
    True when anything changed."""
    ts = time_at(now)
    c = find_condition(status, ctype)
    if c is None:
        status.conditions.add(type=ctype, status=value, reason=reason, message=message,
                              last_probe_time=ts, last_transition_time=ts)
        return True
    if c.status == value and c.reason == reason and c.message == message:
        return False
    if c.status != value:
        c.last_transition_time.CopyFrom(ts)
    c.status, c.reason, c.message = value, reason, message
    c.last_probe_time.CopyFrom(ts)
    return True


def finished_at(job: batch_pb2.Job) -> float | None:
    """When the Job finished (its Complete/Failed condition's transition), None if not."""
    for ctype in (COMPLETE, FAILED):
        c = find_condition(job.status, ctype)
        if c is not None and c.status == "True":
            if c.HasField("last_transition_time"):
                return timestamp_seconds(c.last_transition_time)
            if job.status.HasField("completion_time"):
                return timestamp_seconds(job.status.completion_time)
            return None
    return None


def ttl_remaining(job: batch_pb2.Job, now: float) -> float | None:
    """Seconds until a finished Job with ttlSecondsAfterFinished may be deleted (0: now);
    None when it never expires (no TTL, not finished)."""
    if not job.spec.HasField("ttl_seconds_after_finished"):
        return None
    done = finished_at(job)
    if done is None:
        return None
    return max(0.0, done + job.spec.ttl_seconds_after_finished - now)


# -- pods to create --------------------------------------------------------------------------


def pod_template(job: batch_pb2.Job, index: int | None,
                 failure_count: int = 0) -> core_pb2.PodTemplateSpec:
    """The template of one new pod: the Job's, with the tracking finalizer, and for an
    Indexed Job the completion index (annotation, label, ``JOB_COMPLETION_INDEX`` from the
    annotation through the downward API) and the stable hostname ``<job>-<index>``."""
    template = type(job.spec.template)()
    template.CopyFrom(job.spec.template)
    if JOB_TRACKING_FINALIZER not in template.metadata.finalizers:
        template.metadata.finalizers.append(JOB_TRACKING_FINALIZER)
    if index is None:
        return template
    template.metadata.annotations[COMPLETION_INDEX_KEY] = str(index)
    template.metadata.labels[COMPLETION_INDEX_KEY] = str(index)
    if job.spec.HasField("backoff_limit_per_index"):
        template.metadata.annotations[INDEX_FAILURE_COUNT_KEY] = str(failure_count)
    if not template.spec.hostname:
        template.spec.hostname = f"{job.metadata.name}-{index}"
    for c in list(template.spec.init_containers) + list(template.spec.containers):
        if any(e.name == COMPLETION_INDEX_ENV for e in c.env):
            continue
        env = c.env.add(name=COMPLETION_INDEX_ENV)
        env.value_from.field_ref.field_path = f"metadata.annotations['{COMPLETION_INDEX_KEY}']"
    return template
