"""Validation of the workload kinds: apps/v1 (Deployment, ReplicaSet, DaemonSet, StatefulSet,
ControllerRevision) and batch/v1 (Job, CronJob).

Common to all: a selector that is required, valid, non-empty and selects the template's
labels (else the controller would create pods it cannot see and never stop), a valid pod
template with the restart policy the controller can honour, non-negative counts, and on
update an immutable selector. Rules and messages follow Kubernetes' apps and batch
validation.
"""

from __future__ import annotations

import zoneinfo

from control.api import names
from control.api.pb import apps_pb2, batch_pb2, core_pb2, meta_pb2
from control.apiserver.validation_core import validate_pvc_spec
from control.apiserver.validation_pod import validate_pod_template
from control.apiserver.validation_util import (
    Errors,
    child,
    cron_errors,
    enum,
    forbidden,
    immutable,
    index,
    int_or_percent,
    int_or_string_value,
    invalid,
    is_zero_int_or_percent,
    label_sel_to_dict,
    messages,
    non_negative,
    required,
    workload_selector,
)

__all__ = [
    "validate_controller_revision",
    "validate_cron_job",
    "validate_daemon_set",
    "validate_deployment",
    "validate_job",
    "validate_replica_set",
    "validate_stateful_set",
]

# CronJob names get a suffix of 11 characters for their jobs, which must stay <= 63.
CRONJOB_NAME_MAX = 52


def _template(
    template: core_pb2.PodTemplateSpec, path: str, restart_policies: tuple[str, ...]
) -> Errors:
    errs = validate_pod_template(template, path, restart_policies=restart_policies)
    return errs


def _no_active_deadline(template: core_pb2.PodTemplateSpec, path: str, kind: str) -> Errors:
    if template.spec.HasField("active_deadline_seconds"):
        return [
            forbidden(
                child(path, "spec.activeDeadlineSeconds"),
                f"activeDeadlineSeconds in {kind} is not Supported",
            )
        ]
    return []


_AppsSpec = (
    apps_pb2.DeploymentSpec
    | apps_pb2.ReplicaSetSpec
    | apps_pb2.DaemonSetSpec
    | apps_pb2.StatefulSetSpec
)


def _selector_immutable(new_spec: _AppsSpec, old_spec: _AppsSpec) -> Errors:
    # apps/v1 made selectors immutable: changing one would orphan the existing pods.
    if new_spec.selector != old_spec.selector:
        return [immutable("spec.selector", label_sel_to_dict(new_spec.selector))]
    return []


# ---------------------------------------------------------------------------------------
# Deployment


def _validate_rolling_update(
    ru: apps_pb2.RollingUpdateDeployment | apps_pb2.RollingUpdateDaemonSet, path: str
) -> Errors:
    mu_path = child(path, "maxUnavailable")
    ms_path = child(path, "maxSurge")
    errs = int_or_percent(mu_path, ru.max_unavailable, max_100=True)
    errs.extend(int_or_percent(ms_path, ru.max_surge))
    if is_zero_int_or_percent(ru.max_unavailable) and is_zero_int_or_percent(ru.max_surge):
        # Both zero: a rollout could neither add a pod nor take one away.
        errs.append(invalid(mu_path, _ios(ru.max_unavailable), "may not be 0 when `maxSurge` is 0"))
    return errs


def _ios(ios: meta_pb2.IntOrString) -> int | str | None:
    return int_or_string_value(ios)


def validate_deployment(d: apps_pb2.Deployment, old: apps_pb2.Deployment | None) -> Errors:
    spec = d.spec
    errs: Errors = []
    if spec.HasField("replicas"):
        errs.extend(non_negative("spec.replicas", spec.replicas))
    errs.extend(
        workload_selector(
            "spec",
            spec.selector if spec.HasField("selector") else None,
            spec.template.metadata.labels,
            kind="deployment",
        )
    )
    errs.extend(_template(spec.template, "spec.template", ("Always",)))
    errs.extend(_no_active_deadline(spec.template, "spec.template", "Deployment"))
    st = spec.strategy
    if st.type == "Recreate":
        if st.HasField("rolling_update"):
            errs.append(
                forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                )
            )
    elif st.type == "RollingUpdate":
        errs.extend(_validate_rolling_update(st.rolling_update, "spec.strategy.rollingUpdate"))
    else:
        errs.extend(enum("spec.strategy.type", st.type, ("Recreate", "RollingUpdate")))
    errs.extend(non_negative("spec.minReadySeconds", spec.min_ready_seconds))
    if spec.HasField("revision_history_limit"):
        errs.extend(non_negative("spec.revisionHistoryLimit", spec.revision_history_limit))
    if spec.HasField("progress_deadline_seconds"):
        pds = spec.progress_deadline_seconds
        errs.extend(non_negative("spec.progressDeadlineSeconds", pds))
        if pds <= spec.min_ready_seconds:
            errs.append(
                invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")
            )
    if old is not None:
        errs.extend(_selector_immutable(spec, old.spec))
    return errs


# ---------------------------------------------------------------------------------------
# ReplicaSet


def validate_replica_set(rs: apps_pb2.ReplicaSet, old: apps_pb2.ReplicaSet | None) -> Errors:
    spec = rs.spec
    errs: Errors = []
    if spec.HasField("replicas"):
        errs.extend(non_negative("spec.replicas", spec.replicas))
    errs.extend(non_negative("spec.minReadySeconds", spec.min_ready_seconds))
    errs.extend(
        workload_selector(
            "spec",
            spec.selector if spec.HasField("selector") else None,
            spec.template.metadata.labels,
            kind="replicaset",
        )
    )
    errs.extend(_template(spec.template, "spec.template", ("Always",)))
    errs.extend(_no_active_deadline(spec.template, "spec.template", "ReplicaSet"))
    if old is not None:
        errs.extend(_selector_immutable(spec, old.spec))
    return errs


# ---------------------------------------------------------------------------------------
# DaemonSet


def validate_daemon_set(ds: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet | None) -> Errors:
    spec = ds.spec
    errs = workload_selector(
        "spec",
        spec.selector if spec.HasField("selector") else None,
        spec.template.metadata.labels,
        kind="daemonset",
    )
    errs.extend(_template(spec.template, "spec.template", ("Always",)))
    errs.extend(_no_active_deadline(spec.template, "spec.template", "DaemonSet"))
    us = spec.update_strategy
    if us.type == "OnDelete":
        if us.HasField("rolling_update"):
            errs.append(
                forbidden(
                    "spec.updateStrategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'OnDelete'",
                )
            )
    elif us.type == "RollingUpdate":
        errs.extend(
            _validate_rolling_update(us.rolling_update, "spec.updateStrategy.rollingUpdate")
        )
    else:
        errs.extend(enum("spec.updateStrategy.type", us.type, ("RollingUpdate", "OnDelete")))
    errs.extend(non_negative("spec.minReadySeconds", spec.min_ready_seconds))
    if spec.HasField("revision_history_limit"):
        errs.extend(non_negative("spec.revisionHistoryLimit", spec.revision_history_limit))
    if old is not None:
        errs.extend(_selector_immutable(spec, old.spec))
    return errs


# ---------------------------------------------------------------------------------------
# StatefulSet


def validate_stateful_set(ss: apps_pb2.StatefulSet, old: apps_pb2.StatefulSet | None) -> Errors:
    spec = ss.spec
    errs: Errors = []
    if spec.HasField("replicas"):
        errs.extend(non_negative("spec.replicas", spec.replicas))
    errs.extend(non_negative("spec.minReadySeconds", spec.min_ready_seconds))
    errs.extend(
        workload_selector(
            "spec",
            spec.selector if spec.HasField("selector") else None,
            spec.template.metadata.labels,
            kind="statefulset",
        )
    )
    # The claim templates become volumes of every pod: mounts may name them.
    claims = [pvc.metadata.name for pvc in spec.volume_claim_templates]
    errs.extend(
        validate_pod_template(
            spec.template, "spec.template", restart_policies=("Always",), extra_volumes=claims
        )
    )
    errs.extend(_no_active_deadline(spec.template, "spec.template", "StatefulSet"))
    errs.extend(
        enum("spec.podManagementPolicy", spec.pod_management_policy, ("OrderedReady", "Parallel"))
    )
    us = spec.update_strategy
    if us.type == "OnDelete":
        if us.HasField("rolling_update"):
            errs.append(
                forbidden(
                    "spec.updateStrategy.rollingUpdate",
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    elif us.type == "RollingUpdate":
        ru = us.rolling_update
        if ru.HasField("partition"):
            errs.extend(non_negative("spec.updateStrategy.rollingUpdate.partition", ru.partition))
        if ru.HasField("max_unavailable"):
            p = "spec.updateStrategy.rollingUpdate.maxUnavailable"
            errs.extend(int_or_percent(p, ru.max_unavailable, max_100=True))
            if is_zero_int_or_percent(ru.max_unavailable):
                errs.append(invalid(p, _ios(ru.max_unavailable), "must be greater than 0"))
    else:
        errs.extend(enum("spec.updateStrategy.type", us.type, ("RollingUpdate", "OnDelete")))
    policy = spec.persistent_volume_claim_retention_policy
    for name, value in (("whenDeleted", policy.when_deleted), ("whenScaled", policy.when_scaled)):
        errs.extend(
            enum(f"spec.persistentVolumeClaimRetentionPolicy.{name}", value, ("Retain", "Delete"))
        )
    if spec.HasField("revision_history_limit"):
        errs.extend(non_negative("spec.revisionHistoryLimit", spec.revision_history_limit))
    if spec.HasField("ordinals"):
        errs.extend(non_negative("spec.ordinals.start", spec.ordinals.start))
    for i, pvc in enumerate(spec.volume_claim_templates):
        p = index("spec.volumeClaimTemplates", i)
        if not pvc.metadata.name:
            errs.append(required(child(p, "metadata.name"), ""))
        errs.extend(validate_pvc_spec(pvc.spec, child(p, "spec")))
    if old is not None:
        # Kubernetes' list of what a StatefulSet update may touch.
        a, b = apps_pb2.StatefulSetSpec(), apps_pb2.StatefulSetSpec()
        a.CopyFrom(spec)
        b.CopyFrom(old.spec)
        for s in (a, b):
            for name in (
                "replicas",
                "ordinals",
                "template",
                "update_strategy",
                "persistent_volume_claim_retention_policy",
                "min_ready_seconds",
                "revision_history_limit",
            ):
                s.ClearField(name)
        if a != b:
            errs.append(
                forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                    "'template', 'updateStrategy', 'revisionHistoryLimit', "
                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                )
            )
    return errs


def validate_controller_revision(
    cr: apps_pb2.ControllerRevision, old: apps_pb2.ControllerRevision | None
) -> Errors:
    errs = non_negative("revision", cr.revision)
    if old is not None and cr.data != old.data:
        errs.append(immutable("data", None))
    return errs


# ---------------------------------------------------------------------------------------
# Job and CronJob


def validate_job_spec(spec: batch_pb2.JobSpec, path: str, *, require_selector: bool) -> Errors:
    errs: Errors = []
    for name, json_name in (
        ("parallelism", "parallelism"),
        ("completions", "completions"),
        ("backoff_limit", "backoffLimit"),
        ("ttl_seconds_after_finished", "ttlSecondsAfterFinished"),
        ("backoff_limit_per_index", "backoffLimitPerIndex"),
        ("max_failed_indexes", "maxFailedIndexes"),
    ):
        if spec.HasField(name):
            errs.extend(non_negative(child(path, json_name), getattr(spec, name)))
    if spec.HasField("active_deadline_seconds"):
        errs.extend(
            non_negative(child(path, "activeDeadlineSeconds"), spec.active_deadline_seconds)
        )
    mode = spec.completion_mode if spec.HasField("completion_mode") else ""
    if mode:
        errs.extend(enum(child(path, "completionMode"), mode, ("NonIndexed", "Indexed")))
    if mode == "Indexed" and not spec.HasField("completions"):
        errs.append(required(child(path, "completions"), "when completion mode is Indexed"))
    if mode != "Indexed":
        for name, json_name in (
            ("backoff_limit_per_index", "backoffLimitPerIndex"),
            ("max_failed_indexes", "maxFailedIndexes"),
        ):
            if spec.HasField(name):
                errs.append(
                    forbidden(
                        child(path, json_name),
                        "requires indexed completion mode",
                    )
                )
    if spec.HasField("pod_replacement_policy"):
        errs.extend(
            enum(
                child(path, "podReplacementPolicy"),
                spec.pod_replacement_policy,
                ("TerminatingOrFailed", "Failed"),
            )
        )
    if spec.HasField("pod_failure_policy"):
        errs.extend(_validate_pod_failure_policy(spec, path))
    manual = spec.HasField("manual_selector") and spec.manual_selector
    if spec.HasField("selector") or require_selector or manual:
        errs.extend(
            workload_selector(
                path,
                spec.selector if spec.HasField("selector") else None,
                spec.template.metadata.labels,
                kind="job",
            )
        )
    tp = child(path, "template")
    errs.extend(_template(spec.template, tp, ("OnFailure", "Never")))
    return errs


def _validate_pod_failure_policy(spec: batch_pb2.JobSpec, path: str) -> Errors:
    errs: Errors = []
    rules_path = child(path, "podFailurePolicy.rules")
    for i, rule in enumerate(spec.pod_failure_policy.rules):
        p = index(rules_path, i)
        errs.extend(
            enum(child(p, "action"), rule.action, ("FailJob", "FailIndex", "Ignore", "Count"))
        )
        has_codes = rule.HasField("on_exit_codes")
        if has_codes == bool(rule.on_pod_conditions):
            errs.append(
                invalid(p, "", "specifying one of OnExitCodes and OnPodConditions is required")
            )
        if has_codes:
            cp = child(p, "onExitCodes")
            errs.extend(enum(child(cp, "operator"), rule.on_exit_codes.operator, ("In", "NotIn")))
            if not rule.on_exit_codes.values:
                errs.append(required(child(cp, "values"), "at least one value is required"))
        if spec.template.spec.restart_policy != "Never":
            errs.append(
                invalid(
                    child(path, "podFailurePolicy"),
                    "",
                    "only allowed when the pod template has restartPolicy=Never",
                )
            )
            break
    return errs


def validate_job(job: batch_pb2.Job, old: batch_pb2.Job | None) -> Errors:
    spec = job.spec
    # The selector is generated from the uid unless the user manages it; before a uid is
    # assigned (dry runs), an absent selector is not an error yet.
    require = bool(job.metadata.uid) or (spec.HasField("manual_selector") and spec.manual_selector)
    errs = validate_job_spec(spec, "spec", require_selector=require)
    if old is not None:
        errs.extend(_validate_job_update(job, old))
    return errs


def _validate_job_update(job: batch_pb2.Job, old: batch_pb2.Job) -> Errors:
    errs: Errors = []
    spec, ospec = job.spec, old.spec
    if spec.selector != ospec.selector:
        errs.append(immutable("spec.selector", label_sel_to_dict(spec.selector)))
    if spec.completion_mode != ospec.completion_mode:
        errs.append(immutable("spec.completionMode", spec.completion_mode))
    # Indexed jobs may scale elastically: completions follows parallelism.
    elastic = spec.completion_mode == "Indexed" and spec.completions == spec.parallelism
    if spec.completions != ospec.completions and not elastic:
        errs.append(immutable("spec.completions", spec.completions))
    if spec.template != ospec.template:
        # A suspended job that has not started may still get new scheduling directives.
        suspended = (
            ospec.HasField("suspend") and ospec.suspend and not old.status.HasField("start_time")
        )
        if not suspended or not _only_scheduling_changed(spec.template, ospec.template):
            errs.append(immutable("spec.template", None))
    return errs


def _only_scheduling_changed(new: core_pb2.PodTemplateSpec, old: core_pb2.PodTemplateSpec) -> bool:
    a, b = core_pb2.PodTemplateSpec(), core_pb2.PodTemplateSpec()
    a.CopyFrom(new)
    b.CopyFrom(old)
    for t in (a, b):
        t.metadata.ClearField("labels")
        t.metadata.ClearField("annotations")
        for name in ("node_selector", "affinity", "tolerations", "scheduling_gates"):
            t.spec.ClearField(name)
    return a == b


def validate_cron_job(cj: batch_pb2.CronJob, old: batch_pb2.CronJob | None) -> Errors:
    spec = cj.spec
    errs: Errors = []
    if len(cj.metadata.name) > CRONJOB_NAME_MAX:
        errs.append(
            invalid(
                "metadata.name",
                cj.metadata.name,
                f"must be no more than {CRONJOB_NAME_MAX} characters",
            )
        )
    if not spec.schedule:
        errs.append(required("spec.schedule", ""))
    elif "TZ=" in spec.schedule and (old is None or old.spec.schedule != spec.schedule):
        # Kubernetes refuses it in a new or changed schedule only: an object stored with
        # one (from before the timeZone field) stays updatable
        errs.append(
            invalid(
                "spec.schedule",
                spec.schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            )
        )
    else:
        errs.extend(messages("spec.schedule", spec.schedule, cron_errors(spec.schedule)))
    if spec.HasField("time_zone"):
        errs.extend(_validate_time_zone(spec.time_zone))
    errs.extend(
        enum("spec.concurrencyPolicy", spec.concurrency_policy, ("Allow", "Forbid", "Replace"))
    )
    for name, json_name in (
        ("starting_deadline_seconds", "startingDeadlineSeconds"),
        ("successful_jobs_history_limit", "successfulJobsHistoryLimit"),
        ("failed_jobs_history_limit", "failedJobsHistoryLimit"),
    ):
        if spec.HasField(name):
            errs.extend(non_negative(f"spec.{json_name}", getattr(spec, name)))
    jt = spec.job_template
    errs.extend(names.validate_labels(jt.metadata.labels, "spec.jobTemplate.metadata.labels"))
    errs.extend(
        names.validate_annotations(jt.metadata.annotations, "spec.jobTemplate.metadata.annotations")
    )
    errs.extend(validate_job_spec(jt.spec, "spec.jobTemplate.spec", require_selector=False))
    return errs


def _validate_time_zone(tz: str) -> Errors:
    path = "spec.timeZone"
    if not tz:
        return [invalid(path, tz, "unknown time zone ")]
    if tz.lower() == "local" or " " in tz:
        return [invalid(path, tz, "unknown time zone " + tz)]
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [invalid(path, tz, "unknown time zone " + tz)]
    return []
