"""The Deployment controller's arithmetic and bookkeeping, as plain functions (Kubernetes'
``pkg/controller/deployment/util/deployment_util.go`` plus the pure parts of sync.go,
rolling.go and progress.go).

What lives here, all without I/O:

- rollout fenceposts: ``maxSurge`` / ``maxUnavailable`` as numbers or percentages of the
  desired replicas (surge rounds up, unavailable rounds down; when both resolve to 0,
  unavailable becomes 1 so a rollout can always move);
- which ReplicaSet is the "new" one (its template equals the Deployment's, ignoring the
  ``pod-template-hash`` label), the template hash that names it, revisions and the
  annotations a Deployment keeps on its ReplicaSets (revision, revision-history,
  desired-replicas, max-replicas);
- the scaling plans: how far the new ReplicaSet may grow (``new_rs_new_replicas``), how
  far old ones may shrink (``old_rs_scale_down``, unhealthy replicas first, never below
  ``replicas - maxUnavailable`` available), and proportional scaling of every active
  ReplicaSet when ``replicas`` changes mid-rollout (``proportional_scale``);
- status (``calculate_status``) and the Progressing / Available conditions.

Plans return the sizes to write (``{replica set name: replicas}``); the controller does the
writes. Functions never modify the ReplicaSets they are given (the informer's objects).

One deliberate difference from Kubernetes: the scale-down arithmetic counts a ReplicaSet's
available replicas as ``min(status.availableReplicas, spec.replicas)``. A ReplicaSet just
scaled down still reports the pods it is about to delete as available until its controller
catches up; counting them would let a quick second pass scale down again and dip below
``replicas - maxUnavailable``. The ReplicaSet controller deletes unavailable pods first, so
the minimum is exactly what will be left.

Concurrency contract: pure functions; safe anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from control.api.deployutil import (
    ANNOTATIONS_TO_SKIP,
    DESIRED_REPLICAS_ANNOTATION,
    HASH_LABEL,
    MAX_REPLICAS_ANNOTATION,
    PROGRESSING,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    TIMED_OUT,
    equal_ignore_hash,
    revision_of,
)
from control.api.pb import apps_pb2, core_pb2, meta_pb2
from control.api.podutil import Object
from control.api.timeutil import time_at

ReplicaSet = apps_pb2.ReplicaSet
Deployment = apps_pb2.Deployment

# -- names Kubernetes gives these things ---------------------------------------------------

MAX_REVISION_HISTORY_CHARS = 2000

ROLLING_UPDATE = "RollingUpdate"
RECREATE = "Recreate"

# Condition types and reasons (apps/v1 and deployment_util.go).
AVAILABLE = "Available"
REPLICA_FAILURE = "ReplicaFailure"

MIN_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
MIN_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
RS_CREATE_ERROR = "ReplicaSetCreateError"
FAILED_RS_CREATE = "FailedCreate"

# progressDeadlineSeconds at this value means "no deadline" (Kubernetes' MaxInt32 rule).
NO_DEADLINE = 2**31 - 1

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


# -- fenceposts ----------------------------------------------------------------------------


def scaled_value(value: meta_pb2.IntOrString | None, total: int, round_up: bool) -> int:
    """An int-or-percent against ``total``: ``"25%"`` of 10 is 3 rounded up, 2 down."""
    if value is None:
        return 0
    which = value.WhichOneof("value")
    if which is None:
        return 0
    if which == "int_val":
        return int(value.int_val)
    text = value.str_val
    if not text.endswith("%"):
        raise ValueError(f"invalid value {text!r}: a string must be a percentage")
    try:
        percent = int(text[:-1])
    except ValueError:
        raise ValueError(f"invalid value {text!r}: not a percentage") from None
    return -(-percent * total // 100) if round_up else percent * total // 100


def resolve_fenceposts(max_surge: meta_pb2.IntOrString | None,
                       max_unavailable: meta_pb2.IntOrString | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable) for ``desired`` replicas; never both 0."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        # Both percentages rounded to 0: allow one unavailable pod so the rollout moves.
        unavailable = 1
    return surge, unavailable


def is_rolling(d: Deployment) -> bool:
    return d.spec.strategy.type != RECREATE


def _fenceposts(d: Deployment) -> tuple[int, int]:
    ru = d.spec.strategy.rolling_update
    return resolve_fenceposts(
        ru.max_surge if ru.HasField("max_surge") else None,
        ru.max_unavailable if ru.HasField("max_unavailable") else None,
        d.spec.replicas)


def max_unavailable(d: Deployment) -> int:
    """How many of ``replicas`` may be unavailable during a rolling update."""
    if not is_rolling(d) or d.spec.replicas == 0:
        return 0
    return min(_fenceposts(d)[1], d.spec.replicas)


def max_surge(d: Deployment) -> int:
    """How many pods above ``replicas`` a rolling update may run."""
    if not is_rolling(d):
        return 0
    return _fenceposts(d)[0]


# -- replica set collections ---------------------------------------------------------------


def creation_key(obj: Object) -> tuple[int, int, str]:
    """Oldest first, by creation time, then name."""
    ts = obj.metadata.creation_timestamp
    return ts.seconds, ts.nanos, obj.metadata.name


def by_creation(rss: Iterable[ReplicaSet], newest_first: bool = False) -> list[ReplicaSet]:
    return sorted(rss, key=creation_key, reverse=newest_first)


def active(rss: Iterable[ReplicaSet | None]) -> list[ReplicaSet]:
    """The ReplicaSets that want pods."""
    return [rs for rs in rss if rs is not None and rs.spec.replicas > 0]


def spec_total(rss: Iterable[ReplicaSet | None]) -> int:
    return sum(rs.spec.replicas for rs in rss if rs is not None)


def status_total(rss: Iterable[ReplicaSet | None]) -> int:
    return sum(rs.status.replicas for rs in rss if rs is not None)


def ready_total(rss: Iterable[ReplicaSet | None]) -> int:
    return sum(rs.status.ready_replicas for rs in rss if rs is not None)


def available_total(rss: Iterable[ReplicaSet | None]) -> int:
    return sum(rs.status.available_replicas for rs in rss if rs is not None)


def settled_available(rs: ReplicaSet | None) -> int:
    """Available replicas once the ReplicaSet reaches its spec (see the module docstring)."""
    if rs is None:
        return 0
    return min(rs.status.available_replicas, rs.spec.replicas)


# -- templates, hashes, revisions ----------------------------------------------------------


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: core_pb2.PodTemplateSpec, collision_count: int | None = None) -> str:
    """The pod-template-hash: FNV-32a of the canonical (deterministic protobuf) template and
    the collision count, spelled with Kubernetes' consonant-and-digit alphabet."""
    data = template.SerializeToString(deterministic=True)
    if collision_count is not None:
        data += collision_count.to_bytes(4, "little", signed=False)
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in str(_fnv32a(data)))






def find_new_rs(d: Deployment, rss: Iterable[ReplicaSet]) -> ReplicaSet | None:
    """The oldest ReplicaSet whose template is the Deployment's (the current revision)."""
    for rs in by_creation(rss):
        if equal_ignore_hash(rs.spec.template, d.spec.template):
            return rs
    return None




def max_revision(rss: Iterable[ReplicaSet]) -> int:
    return max((revision_of(rs) for rs in rss), default=0)


def by_revision(rss: Iterable[ReplicaSet]) -> list[ReplicaSet]:
    return sorted(rss, key=lambda rs: (revision_of(rs), creation_key(rs)))


def _int_annotation(rs: ReplicaSet, key: str) -> int | None:
    value = rs.metadata.annotations.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def desired_replicas_annotation(rs: ReplicaSet) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)


def max_replicas_annotation(rs: ReplicaSet) -> int | None:
    return _int_annotation(rs, MAX_REPLICAS_ANNOTATION)


def replicas_annotations_need_update(rs: ReplicaSet, desired: int, max_replicas: int) -> bool:
    ann = rs.metadata.annotations
    return (ann.get(DESIRED_REPLICAS_ANNOTATION) != str(desired)
            or ann.get(MAX_REPLICAS_ANNOTATION) != str(max_replicas))


def set_replicas_annotations(rs: ReplicaSet, desired: int, max_replicas: int) -> bool:
    """Record the Deployment's replicas (and replicas + maxSurge) on ``rs``; True if changed."""
    if not replicas_annotations_need_update(rs, desired, max_replicas):
        return False
    rs.metadata.annotations[DESIRED_REPLICAS_ANNOTATION] = str(desired)
    rs.metadata.annotations[MAX_REPLICAS_ANNOTATION] = str(max_replicas)
    return True


def copy_deployment_annotations(d: Deployment, rs: ReplicaSet) -> bool:
    """Copy the Deployment's own annotations (change-cause...) to ``rs``; True if changed."""
    changed = False
    for key, value in d.metadata.annotations.items():
        if key in ANNOTATIONS_TO_SKIP or rs.metadata.annotations.get(key) == value:
            continue
        rs.metadata.annotations[key] = value
        changed = True
    return changed


def set_new_rs_annotations(d: Deployment, rs: ReplicaSet, new_revision: int,
                           exists: bool) -> bool:
    """Annotations of the new ReplicaSet: the Deployment's own, the revision (raised to
    ``new_revision`` when older, remembering the old one in revision-history), and for a
    ReplicaSet being created the replicas annotations. True if anything changed."""
    changed = copy_deployment_annotations(d, rs)
    ann = rs.metadata.annotations
    old_text = ann.get(REVISION_ANNOTATION, "")
    try:
        old = int(old_text) if old_text else 0
    except ValueError:
        return changed
    if old < new_revision:
        ann[REVISION_ANNOTATION] = str(new_revision)
        changed = True
        if old_text:
            history = ann.get(REVISION_HISTORY_ANNOTATION, "")
            entries = [e for e in history.split(",") if e] + [old_text]
            text = ",".join(entries)
            while len(text) > MAX_REVISION_HISTORY_CHARS and len(entries) > 1:
                entries.pop(0)
                text = ",".join(entries)
            ann[REVISION_HISTORY_ANNOTATION] = text
    if not exists and set_replicas_annotations(rs, d.spec.replicas,
                                               d.spec.replicas + max_surge(d)):
        changed = True
    return changed


def set_deployment_revision(d: Deployment, revision: str) -> bool:
    if d.metadata.annotations.get(REVISION_ANNOTATION) == revision:
        return False
    d.metadata.annotations[REVISION_ANNOTATION] = revision
    return True




def new_controller_ref(d: Deployment) -> meta_pb2.OwnerReference:
    return meta_pb2.OwnerReference(api_version="apps/v1", kind="Deployment",
                                   name=d.metadata.name, uid=d.metadata.uid,
                                   controller=True, block_owner_deletion=True)


def selects_everything(selector: meta_pb2.LabelSelector) -> bool:
    return not selector.match_labels and not selector.match_expressions


def new_replica_set(d: Deployment, collision_count: int | None) -> ReplicaSet:
    """The ReplicaSet for the Deployment's current template (replicas 0, no annotations)."""
    template = core_pb2.PodTemplateSpec()
    template.CopyFrom(d.spec.template)
    pod_hash = compute_hash(template, collision_count)
    template.metadata.labels[HASH_LABEL] = pod_hash
    rs = ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name = f"{d.metadata.name}-{pod_hash}"
    rs.metadata.namespace = d.metadata.namespace
    rs.metadata.labels.update(template.metadata.labels)
    rs.metadata.owner_references.append(new_controller_ref(d))
    rs.spec.replicas = 0
    rs.spec.min_ready_seconds = d.spec.min_ready_seconds
    rs.spec.selector.CopyFrom(d.spec.selector)
    rs.spec.selector.match_labels[HASH_LABEL] = pod_hash
    rs.spec.template.CopyFrom(template)
    return rs


# -- scaling plans -------------------------------------------------------------------------


def new_rs_new_replicas(d: Deployment, all_rss: Sequence[ReplicaSet],
                        new_rs: ReplicaSet) -> int:
    """How many replicas the new ReplicaSet may have now (rolling: within maxSurge)."""
    if not is_rolling(d):
        return d.spec.replicas
    current = spec_total(all_rss)
    max_total = d.spec.replicas + max_surge(d)
    if current >= max_total:
        return new_rs.spec.replicas
    scale_up = min(max_total - current, d.spec.replicas - new_rs.spec.replicas)
    return new_rs.spec.replicas + max(scale_up, 0)


def new_rs_target(d: Deployment, all_rss: Sequence[ReplicaSet],
                  new_rs: ReplicaSet) -> int | None:
    """The new ReplicaSet's next size in a rolling update, or None to leave it."""
    if new_rs.spec.replicas == d.spec.replicas:
        return None
    if new_rs.spec.replicas > d.spec.replicas:
        return d.spec.replicas
    target = new_rs_new_replicas(d, all_rss, new_rs)
    return None if target == new_rs.spec.replicas else target


def old_rs_scale_down(d: Deployment, all_rss: Sequence[ReplicaSet],
                      old_rss: Sequence[ReplicaSet],
                      new_rs: ReplicaSet | None) -> dict[str, int]:
    """New sizes for the old ReplicaSets in a rolling update (only those that change).

    First unhealthy replicas (not available) of the oldest ReplicaSets go, as far as the
    surge room allows; then available ones, as long as ``replicas - maxUnavailable`` stay
    available.
    """
    if spec_total(old_rss) == 0:
        return {}
    min_available = d.spec.replicas - max_unavailable(d)
    new_unavailable = (new_rs.spec.replicas - settled_available(new_rs)) if new_rs else 0
    max_scaled_down = spec_total(all_rss) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    sizes = {rs.metadata.name: rs.spec.replicas for rs in old_rss}
    ordered = by_creation(old_rss)
    # 1. unhealthy replicas: scaling them down costs no availability
    cleaned = 0
    for rs in ordered:
        if cleaned >= max_scaled_down:
            break
        current = sizes[rs.metadata.name]
        unhealthy = current - rs.status.available_replicas
        if current == 0 or unhealthy <= 0:
            continue
        down = min(max_scaled_down - cleaned, unhealthy)
        sizes[rs.metadata.name] = current - down
        cleaned += down
    # 2. available replicas, down to the minimum availability
    available = sum(min(rs.status.available_replicas, sizes[rs.metadata.name])
                    for rs in old_rss) + settled_available(new_rs)
    room = available - min_available
    scaled = 0
    for rs in ordered:
        if scaled >= room:
            break
        current = sizes[rs.metadata.name]
        if current == 0:
            continue
        down = min(current, room - scaled)
        sizes[rs.metadata.name] = current - down
        scaled += down
    return {rs.metadata.name: sizes[rs.metadata.name] for rs in old_rss
            if sizes[rs.metadata.name] != rs.spec.replicas}


def find_active_or_latest(new_rs: ReplicaSet | None,
                          old_rss: Sequence[ReplicaSet]) -> ReplicaSet | None:
    """The only active ReplicaSet, or the latest when none is active; None when several
    are active (a rollout in progress)."""
    if new_rs is None and not old_rss:
        return None
    newest_first = by_creation(old_rss, newest_first=True)
    live = active([*newest_first, new_rs])
    if not live:
        return new_rs if new_rs is not None else newest_first[0]
    if len(live) == 1:
        return live[0]
    return None


def is_saturated(d: Deployment, rs: ReplicaSet | None) -> bool:
    """The new ReplicaSet runs all of ``replicas``, available, for the current size."""
    if rs is None:
        return False
    return (rs.spec.replicas == d.spec.replicas
            and desired_replicas_annotation(rs) == d.spec.replicas
            and rs.status.available_replicas == d.spec.replicas)


def _round_div(num: int, den: int) -> int:
    """num / den rounded half away from zero (Go's math.Round), exactly; den > 0."""
    if num >= 0:
        return (2 * num + den) // (2 * den)
    return -((-2 * num + den) // (2 * den))


def rs_fraction(rs: ReplicaSet, d: Deployment) -> int:
    """How many replicas ``rs`` gains (or loses) for the Deployment's new size, in
    proportion to its share of the size it was scaled for (the max-replicas annotation)."""
    if d.spec.replicas == 0:
        return -rs.spec.replicas
    deployment_replicas = d.spec.replicas + max_surge(d)
    annotated = max_replicas_annotation(rs)
    if annotated is None:
        annotated = d.status.replicas
    if annotated <= 0:
        return 0
    return _round_div(rs.spec.replicas * deployment_replicas, annotated) - rs.spec.replicas


def proportion(rs: ReplicaSet, d: Deployment, to_add: int, added: int) -> int:
    if rs.spec.replicas == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = rs_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_scale(d: Deployment, new_rs: ReplicaSet | None,
                       old_rss: Sequence[ReplicaSet]) -> list[tuple[ReplicaSet, int]]:
    """Kubernetes' ``scale()``: the (ReplicaSet, size) pairs to write when the Deployment's
    size changed or the rollout is paused. Pairs whose size is unchanged are included when
    the replicas annotations may need refreshing (the caller skips no-op writes)."""
    target = find_active_or_latest(new_rs, old_rss)
    if target is not None:
        if target.spec.replicas == d.spec.replicas:
            return []
        return [(target, d.spec.replicas)]
    if is_saturated(d, new_rs):
        return [(rs, 0) for rs in active(old_rss)]
    if not is_rolling(d):
        return []
    live = active([*old_rss, new_rs])
    allowed = d.spec.replicas + max_surge(d) if d.spec.replicas > 0 else 0
    to_add = allowed - spec_total(live)
    if to_add > 0:  # largest first; on ties the newest gets more
        live = sorted(by_creation(live, newest_first=True), key=lambda rs: -rs.spec.replicas)
    elif to_add < 0:  # largest first; on ties the oldest loses more
        live = sorted(by_creation(live), key=lambda rs: -rs.spec.replicas)
    sizes: dict[str, int] = {}
    added = 0
    for rs in live:
        if to_add != 0:
            p = proportion(rs, d, to_add, added)
            sizes[rs.metadata.name] = rs.spec.replicas + p
            added += p
        else:
            sizes[rs.metadata.name] = rs.spec.replicas
    if to_add != 0 and live:
        first = live[0].metadata.name
        sizes[first] = max(0, sizes[first] + to_add - added)
    return [(rs, sizes[rs.metadata.name]) for rs in live]


def is_scaling_event(d: Deployment, new_rs: ReplicaSet | None,
                     old_rss: Sequence[ReplicaSet]) -> bool:
    """An active ReplicaSet was sized for another ``replicas`` than the Deployment's now."""
    for rs in active([*old_rss, new_rs]):
        desired = desired_replicas_annotation(rs)
        if desired is not None and desired != d.spec.replicas:
            return True
    return False


def cleanup_candidates(d: Deployment, old_rss: Sequence[ReplicaSet]) -> list[ReplicaSet]:
    """Old ReplicaSets to delete beyond ``revisionHistoryLimit`` (oldest revisions first;
    only empty ones whose controller has seen their latest spec)."""
    if not d.spec.HasField("revision_history_limit"):
        return []
    alive = [rs for rs in old_rss if not rs.metadata.HasField("deletion_timestamp")]
    diff = len(alive) - d.spec.revision_history_limit
    if diff <= 0:
        return []
    out = []
    for i, rs in enumerate(by_revision(alive)):
        if i >= diff:
            break
        if (rs.status.replicas != 0 or rs.spec.replicas != 0
                or rs.metadata.generation > rs.status.observed_generation):
            continue
        out.append(rs)
    return out


# -- conditions ----------------------------------------------------------------------------




def new_condition(ctype: str, status: str, reason: str, message: str,
                  now: float) -> apps_pb2.DeploymentCondition:
    ts = time_at(now)
    return apps_pb2.DeploymentCondition(type=ctype, status=status, reason=reason,
                                        message=message, last_update_time=ts,
                                        last_transition_time=ts)


def get_condition(status: apps_pb2.DeploymentStatus,
                  ctype: str) -> apps_pb2.DeploymentCondition | None:
    for cond in status.conditions:
        if cond.type == ctype:
            return cond
    return None


def remove_condition(status: apps_pb2.DeploymentStatus, ctype: str) -> None:
    keep = [c for c in status.conditions if c.type != ctype]
    del status.conditions[:]
    status.conditions.extend(keep)


def set_condition(status: apps_pb2.DeploymentStatus,
                  cond: apps_pb2.DeploymentCondition) -> None:
    """Set ``cond``; an identical status and reason is left as it is (times included), and
    the transition time survives when only the reason changes."""
    current = get_condition(status, cond.type)
    if current is not None and current.status == cond.status and current.reason == cond.reason:
        return
    new = apps_pb2.DeploymentCondition()
    new.CopyFrom(cond)
    if current is not None and current.status == cond.status:
        new.last_transition_time.CopyFrom(current.last_transition_time)
    remove_condition(status, cond.type)
    status.conditions.append(new)


def has_progress_deadline(d: Deployment) -> bool:
    return (d.spec.HasField("progress_deadline_seconds")
            and d.spec.progress_deadline_seconds != NO_DEADLINE)


# -- status --------------------------------------------------------------------------------


def calculate_status(all_rss: Sequence[ReplicaSet], new_rs: ReplicaSet | None,
                     d: Deployment, now: float) -> apps_pb2.DeploymentStatus:
    """The Deployment's status from its ReplicaSets' (conditions carried over, Available
    recomputed)."""
    available = available_total(all_rss)
    status = apps_pb2.DeploymentStatus(
        observed_generation=d.metadata.generation,
        replicas=status_total(all_rss),
        updated_replicas=status_total([new_rs]),
        ready_replicas=ready_total(all_rss),
        available_replicas=available,
        unavailable_replicas=max(0, spec_total(all_rss) - available),
    )
    if d.status.HasField("collision_count"):
        status.collision_count = d.status.collision_count
    status.conditions.extend(d.status.conditions)
    if available >= d.spec.replicas - max_unavailable(d):
        set_condition(status, new_condition(AVAILABLE, "True", MIN_REPLICAS_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MIN_REPLICAS_UNAVAILABLE,
                                            "Deployment does not have minimum availability.",
                                            now))
    return status


def deployment_complete(d: Deployment, status: apps_pb2.DeploymentStatus) -> bool:
    """Every replica updated and available, and nothing old left running."""
    r = d.spec.replicas
    return (status.updated_replicas == r and status.replicas == r
            and status.available_replicas == r
            and status.observed_generation >= d.metadata.generation)


def deployment_progressing(d: Deployment, status: apps_pb2.DeploymentStatus) -> bool:
    """More updated, ready or available replicas than last time, or fewer old ones."""
    old = d.status
    return (status.updated_replicas > old.updated_replicas
            or (status.replicas - status.updated_replicas) < (old.replicas - old.updated_replicas)
            or status.ready_replicas > old.ready_replicas
            or status.available_replicas > old.available_replicas)


def deployment_timed_out(d: Deployment, status: apps_pb2.DeploymentStatus,
                         now: float) -> bool:
    """No progress for progressDeadlineSeconds since the Progressing condition's update."""
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, PROGRESSING)
    if cond is None or cond.reason == NEW_RS_AVAILABLE:
        return False
    if cond.reason == TIMED_OUT:
        return True
    since = cond.last_update_time.ToNanoseconds() / 1e9
    return since + d.spec.progress_deadline_seconds < now


def rollout_status(all_rss: Sequence[ReplicaSet], new_rs: ReplicaSet | None,
                   d: Deployment, now: float) -> apps_pb2.DeploymentStatus:
    """``calculate_status`` plus the Progressing condition (Kubernetes' syncRolloutStatus)."""
    status = calculate_status(all_rss, new_rs, d, now)
    if not has_progress_deadline(d):
        remove_condition(status, PROGRESSING)
        return status
    current = get_condition(d.status, PROGRESSING)
    complete = (status.replicas == status.updated_replicas and current is not None
                and current.reason == NEW_RS_AVAILABLE)
    if complete:
        return status
    name = new_rs.metadata.name if new_rs is not None else ""
    if deployment_complete(d, status):
        msg = (f'ReplicaSet "{name}" has successfully progressed.' if new_rs is not None
               else "Deployment has successfully progressed.")
        set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now))
    elif deployment_progressing(d, status):
        msg = (f'ReplicaSet "{name}" is progressing.' if new_rs is not None
               else "Deployment is progressing.")
        cond = new_condition(PROGRESSING, "True", RS_UPDATED, msg, now)
        if current is not None:
            if current.status == "True":
                cond.last_transition_time.CopyFrom(current.last_transition_time)
            remove_condition(status, PROGRESSING)
        set_condition(status, cond)
    elif deployment_timed_out(d, status, now):
        msg = (f'ReplicaSet "{name}" has timed out progressing.' if new_rs is not None
               else f'Deployment "{d.metadata.name}" has timed out progressing.')
        set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT, msg, now))
    return status


def requeue_after(d: Deployment, status: apps_pb2.DeploymentStatus,
                  now: float) -> float | None:
    """When to look again at a rollout that may hit its progress deadline (None: no need)."""
    cond = get_condition(status, PROGRESSING)
    if not has_progress_deadline(d) or cond is None:
        return None
    if deployment_complete(d, status) or cond.reason in (TIMED_OUT, NEW_RS_AVAILABLE):
        return None
    if cond.reason in (PAUSED,):
        return None
    since = cond.last_update_time.ToNanoseconds() / 1e9
    return max(since + d.spec.progress_deadline_seconds - now, 0.0) + 0.05


def paused_condition_change(d: Deployment, now: float) -> apps_pb2.DeploymentCondition | None:
    """The Progressing condition to set because the Deployment was paused or resumed."""
    if not has_progress_deadline(d):
        return None
    cond = get_condition(d.status, PROGRESSING)
    if cond is not None and cond.reason == TIMED_OUT:
        return None  # a timed-out rollout keeps saying so
    paused_now = cond is not None and cond.reason == PAUSED
    if d.spec.paused and not paused_now:
        return new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now)
    if not d.spec.paused and paused_now:
        return new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", now)
    return None


# -- what `rollout status` says (kubectl's DeploymentStatusViewer) -------------------------



