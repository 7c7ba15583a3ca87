"""Table tests of the Deployment controller's arithmetic (control/controllers/deployment_util)."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import deployutil
from control.api.pb import apps_pb2, core_pb2, meta_pb2
from control.api.podutil import controller_of
from control.controllers import deployment_util as du

NOW = 1_700_000_000.0


def ios(value: int | str | None) -> meta_pb2.IntOrString | None:
    if value is None:
        return None
    if isinstance(value, int):
        return meta_pb2.IntOrString(int_val=value)
    return meta_pb2.IntOrString(str_val=value)


def deploy(replicas: int = 3, surge: int | str = 1, unavailable: int | str = 0,
           strategy: str = "RollingUpdate", generation: int = 1,
           deadline: int | None = 600, status_replicas: int = 0) -> apps_pb2.Deployment:
    d = apps_pb2.Deployment()
    d.metadata.name = "web"
    d.metadata.namespace = "default"
    d.metadata.uid = "d-uid"
    d.metadata.generation = generation
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="c", image="busybox")
    d.spec.strategy.type = strategy
    if strategy == "RollingUpdate":
        ms, mu = ios(surge), ios(unavailable)
        assert ms is not None and mu is not None
        d.spec.strategy.rolling_update.max_surge.CopyFrom(ms)
        d.spec.strategy.rolling_update.max_unavailable.CopyFrom(mu)
    if deadline is not None:
        d.spec.progress_deadline_seconds = deadline
    d.spec.revision_history_limit = 10
    d.status.replicas = status_replicas
    return d


def rs(name: str, replicas: int, available: int | None = None, created: int = 0,
       ready: int | None = None, status_replicas: int | None = None,
       **annotations: str) -> apps_pb2.ReplicaSet:
    r = apps_pb2.ReplicaSet()
    r.metadata.name = name
    r.metadata.uid = f"{name}-uid"
    r.metadata.creation_timestamp.seconds = 1000 + created
    r.spec.replicas = replicas
    r.status.replicas = replicas if status_replicas is None else status_replicas
    r.status.available_replicas = replicas if available is None else available
    r.status.ready_replicas = r.status.available_replicas if ready is None else ready
    for key, value in annotations.items():
        r.metadata.annotations[key.replace("_", "-")] = value
    return r


def sized(rs_: apps_pb2.ReplicaSet, desired: int, max_replicas: int) -> apps_pb2.ReplicaSet:
    rs_.metadata.annotations[deployutil.DESIRED_REPLICAS_ANNOTATION] = str(desired)
    rs_.metadata.annotations[deployutil.MAX_REPLICAS_ANNOTATION] = str(max_replicas)
    return rs_


def revised(rs_: apps_pb2.ReplicaSet, revision: int) -> apps_pb2.ReplicaSet:
    rs_.metadata.annotations[deployutil.REVISION_ANNOTATION] = str(revision)
    return rs_


# -- fenceposts ----------------------------------------------------------------------------


@pytest.mark.parametrize(("surge", "unavailable", "desired", "expected"), [
    ("25%", "25%", 4, (1, 1)),
    ("25%", "25%", 10, (3, 2)),     # surge rounds up, unavailable down
    ("25%", "25%", 1, (1, 0)),
    (1, 0, 3, (1, 0)),
    (0, 1, 3, (0, 1)),
    ("0%", "0%", 10, (0, 1)),       # both 0 after rounding: one may be unavailable
    ("10%", "10%", 5, (1, 0)),
    ("100%", "0%", 3, (3, 0)),
    (None, None, 3, (0, 1)),
])
def test_resolve_fenceposts(surge: Any, unavailable: Any, desired: int,
                            expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(ios(surge), ios(unavailable), desired) == expected


@pytest.mark.parametrize(("d", "surge", "unavailable"), [
    (deploy(3, 1, 0), 1, 0),
    (deploy(3, "50%", "50%"), 2, 1),
    (deploy(2, 0, 5), 0, 2),                     # never more than replicas
    (deploy(0, 1, 1), 1, 0),                     # nothing to keep available
    (deploy(3, strategy="Recreate"), 0, 0),
])
def test_max_surge_and_unavailable(d: apps_pb2.Deployment, surge: int, unavailable: int) -> None:
    assert du.max_surge(d) == surge
    assert du.max_unavailable(d) == unavailable


def test_scaled_value_refuses_a_string_that_is_not_a_percentage() -> None:
    with pytest.raises(ValueError, match="percentage"):
        du.scaled_value(ios("5"), 10, True)


# -- new ReplicaSet ------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "old", "new", "expected"), [
    (deploy(3, 1, 0), [3], 0, 1),        # room for one surge pod
    (deploy(3, 1, 0), [3], 1, 1),        # at replicas + maxSurge: wait
    (deploy(3, 1, 0), [2], 1, 2),
    (deploy(3, 1, 0), [0], 2, 3),        # never above replicas
    (deploy(3, 2, 0), [3, 1], 0, 1),     # two old ReplicaSets use up the surge
    (deploy(4, "50%", 0), [4], 0, 2),
    (deploy(3, strategy="Recreate"), [0], 0, 3),
])
def test_new_rs_new_replicas(d: apps_pb2.Deployment, old: list[int], new: int,
                             expected: int) -> None:
    olds = [rs(f"old{i}", n, created=i) for i, n in enumerate(old)]
    new_rs = rs("new", new, created=10)
    assert du.new_rs_new_replicas(d, [*olds, new_rs], new_rs) == expected


def test_new_rs_target_scales_down_a_too_big_new_replica_set() -> None:
    d = deploy(3)
    new_rs = rs("new", 5)
    assert du.new_rs_target(d, [new_rs], new_rs) == 3
    assert du.new_rs_target(d, [rs("new", 3)], rs("new", 3)) is None


# -- old ReplicaSets -----------------------------------------------------------------------


@pytest.mark.parametrize(("d", "old", "new", "expected"), [
    # (replicas, available) of each old ReplicaSet (oldest first) and of the new one
    (deploy(3, 1, 0), [(3, 3)], (1, 0), {}),             # the surge pod is not available yet
    (deploy(3, 1, 0), [(3, 3)], (1, 1), {"old0": 2}),    # it is: one old pod may go
    (deploy(3, 1, 1), [(3, 3)], (1, 0), {"old0": 2}),    # maxUnavailable 1: one may go at once
    (deploy(3, 0, 1), [(3, 3)], (0, 0), {"old0": 2}),    # no surge: make room first
    (deploy(3, 1, 0), [(3, 1)], (1, 0), {}),             # maxUnavailable 0: no room
    (deploy(3, 2, 1), [(3, 1)], (0, 0), {"old0": 2}),    # unhealthy old pods go first
    (deploy(5, 1, 2), [(5, 2)], (1, 1), {"old0": 2}),    # 3 unhealthy, 2 available
    (deploy(3, 1, 1), [(2, 2), (1, 1)], (1, 0), {"old0": 1}),  # the oldest first
    (deploy(3, 1, 0), [(2, 2), (1, 1)], (3, 3), {"old0": 0, "old1": 0}),
    # a ReplicaSet just scaled down (2) still reports 3 available: counted as 2
    (deploy(3, 1, 1), [(2, 3)], (2, 1), {"old0": 1}),
    (deploy(3, 1, 0), [(0, 0)], (3, 3), {}),
])
def test_old_rs_scale_down(d: apps_pb2.Deployment, old: list[tuple[int, int]],
                           new: tuple[int, int], expected: dict[str, int]) -> None:
    olds = [rs(f"old{i}", n, a, created=i) for i, (n, a) in enumerate(old)]
    new_rs = rs("new", new[0], new[1], created=10)
    assert du.old_rs_scale_down(d, [*olds, new_rs], du.active(olds), new_rs) == expected


def test_scale_down_never_drops_below_min_available() -> None:
    """Every reachable state of a small rollout: the plan keeps replicas - maxUnavailable
    available, counting what each ReplicaSet will have once it reaches its spec."""
    for replicas in (1, 2, 3, 5):
        for surge, unavailable in ((1, 0), (0, 1), (2, 1), ("25%", "25%")):
            d = deploy(replicas, surge, unavailable)
            min_available = replicas - du.max_unavailable(d)
            for old_n in range(replicas + 1):
                for old_a in range(old_n + 1):
                    for new_n in range(replicas + 1):
                        for new_a in range(new_n + 1):
                            old = rs("old", old_n, old_a, created=0)
                            new = rs("new", new_n, new_a, created=1)
                            plan = du.old_rs_scale_down(d, [old, new], du.active([old]), new)
                            if "old" not in plan:
                                continue
                            after = min(old_a, plan["old"]) + new_a
                            assert after >= min(min_available, old_a + new_a), (
                                replicas, surge, unavailable, old_n, old_a, new_n, new_a)


# -- proportional scaling ------------------------------------------------------------------


def test_proportional_scaling_up_mid_rollout_follows_kubernetes_example() -> None:
    # 10 replicas, maxSurge 3: old 8 + new 5 = 13 running; scaled to 15 -> 18 allowed:
    # 3 more for the old ReplicaSet, 2 for the new one (Kubernetes' documentation).
    d = deploy(15, 3, 2)
    old = sized(rs("old", 8, created=0), 10, 13)
    new = sized(rs("new", 5, 0, created=1), 10, 13)
    plan = {r.metadata.name: n for r, n in du.proportional_scale(d, new, [old])}
    assert plan == {"old": 11, "new": 7}


@pytest.mark.parametrize(("replicas", "old", "new", "expected"), [
    (5, 8, 5, {"old": 5, "new": 3}),       # 10 -> 5 (allowed 8): 13 -> 8
    (0, 8, 5, {"old": 0, "new": 0}),       # to zero: everything goes
    (20, 4, 4, {"old": 7, "new": 16}),     # ties: the newer is first and gets the leftover
])
def test_proportional_scaling(replicas: int, old: int, new: int,
                              expected: dict[str, int]) -> None:
    d = deploy(replicas, 3, 2)
    old_rs = sized(rs("old", old, created=0), 10, 13)
    new_rs = sized(rs("new", new, 0, created=1), 10, 13)
    plan = {r.metadata.name: n for r, n in du.proportional_scale(d, new_rs, [old_rs])}
    assert plan == expected
    assert sum(plan.values()) == (replicas + 3 if replicas else 0)


def test_proportional_scaling_with_one_active_replica_set_sets_it_to_replicas() -> None:
    d = deploy(7)
    new = sized(rs("new", 3, created=1), 3, 4)
    old = rs("old", 0, created=0)
    assert [(r.metadata.name, n) for r, n in du.proportional_scale(d, new, [old])] == [("new", 7)]
    # nothing active at all: the latest one gets the replicas
    d0 = deploy(2)
    assert [(r.metadata.name, n) for r, n in
            du.proportional_scale(d0, None, [rs("a", 0, created=0), rs("b", 0, created=5)])] \
        == [("b", 2)]


def test_saturated_new_replica_set_scales_old_ones_to_zero() -> None:
    d = deploy(3)
    new = sized(rs("new", 3, 3, created=1), 3, 4)
    old = rs("old", 1, created=0)
    assert [(r.metadata.name, n) for r, n in du.proportional_scale(d, new, [old])] == [("old", 0)]


def test_is_scaling_event() -> None:
    d = deploy(5)
    assert du.is_scaling_event(d, sized(rs("new", 3), 3, 4), [])
    assert not du.is_scaling_event(d, sized(rs("new", 3), 5, 6), [])
    assert not du.is_scaling_event(d, rs("new", 3), [])  # no annotation: not ours to judge


# -- templates and revisions ---------------------------------------------------------------


def test_hash_is_stable_and_changes_with_template_and_collisions() -> None:
    d = deploy()
    h = du.compute_hash(d.spec.template)
    assert h == du.compute_hash(deploy().spec.template)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert du.compute_hash(d.spec.template, 1) != h
    other = deploy()
    other.spec.template.spec.containers[0].image = "nginx"
    assert du.compute_hash(other.spec.template) != h


def test_new_replica_set_and_equal_ignore_hash() -> None:
    d = deploy()
    new = du.new_replica_set(d, None)
    pod_hash = new.spec.template.metadata.labels[deployutil.HASH_LABEL]
    assert new.metadata.name == f"web-{pod_hash}"
    assert new.spec.selector.match_labels == {"app": "web", deployutil.HASH_LABEL: pod_hash}
    assert controller_of(new) is not None
    assert deployutil.equal_ignore_hash(new.spec.template, d.spec.template)
    assert du.find_new_rs(d, [new]) is new
    changed = deploy()
    changed.spec.template.spec.containers[0].image = "nginx"
    assert du.find_new_rs(changed, [new]) is None


def test_find_new_rs_prefers_the_oldest_identical_template() -> None:
    d = deploy()
    a = du.new_replica_set(d, None)
    a.metadata.creation_timestamp.seconds = 20
    b = du.new_replica_set(d, 1)
    b.metadata.creation_timestamp.seconds = 10
    assert du.find_new_rs(d, [a, b]) is b


@pytest.mark.parametrize(("before", "new_revision", "exists", "revision", "history"), [
    ({}, 1, False, "1", None),
    ({deployutil.REVISION_ANNOTATION: "1"}, 3, True, "3", "1"),       # rolled back to: history kept
    ({deployutil.REVISION_ANNOTATION: "2", deployutil.REVISION_HISTORY_ANNOTATION: "1"}, 4, True,
     "4", "1,2"),
    ({deployutil.REVISION_ANNOTATION: "3"}, 3, True, "3", None),      # already current
])
def test_set_new_rs_annotations(before: dict[str, str], new_revision: int, exists: bool,
                                revision: str, history: str | None) -> None:
    d = deploy()
    d.metadata.annotations[deployutil.CHANGE_CAUSE_ANNOTATION] = "kubectl set image"
    d.metadata.annotations[deployutil.REVISION_ANNOTATION] = "9"  # the Deployment's own: not copied
    r = rs("new", 0)
    r.metadata.annotations.update(before)
    assert du.set_new_rs_annotations(d, r, new_revision, exists)
    ann = r.metadata.annotations
    assert ann[deployutil.REVISION_ANNOTATION] == revision
    assert ann.get(deployutil.REVISION_HISTORY_ANNOTATION) == history
    assert ann[deployutil.CHANGE_CAUSE_ANNOTATION] == "kubectl set image"
    assert (deployutil.DESIRED_REPLICAS_ANNOTATION in ann) == (not exists)
    assert not du.set_new_rs_annotations(d, r, new_revision, exists)  # idempotent


def test_cleanup_candidates_respects_revision_history_limit() -> None:
    d = deploy()
    d.spec.revision_history_limit = 1
    old = [revised(rs(f"r{i}", 0, created=i), i) for i in (1, 2, 3)]
    busy = revised(rs("r0", 1, created=0), 0)
    names = [r.metadata.name for r in du.cleanup_candidates(d, [*old, busy])]
    # 4 old, keep 1 -> the 3 oldest revisions are candidates; r0 still has replicas
    assert names == ["r1", "r2"]
    d.ClearField("spec")
    assert du.cleanup_candidates(d, old) == []


# -- status and conditions -----------------------------------------------------------------


def test_calculate_status() -> None:
    d = deploy(3, 1, 1, generation=4)
    old = rs("old", 2, 2, ready=2, created=0)
    new = rs("new", 2, 0, ready=1, created=1)
    s = du.calculate_status([old, new], new, d, NOW)
    assert (s.observed_generation, s.replicas, s.updated_replicas, s.ready_replicas,
            s.available_replicas, s.unavailable_replicas) == (4, 4, 2, 3, 2, 2)
    avail = du.get_condition(s, du.AVAILABLE)
    assert avail is not None
    assert (avail.status, avail.reason) == ("True", du.MIN_REPLICAS_AVAILABLE)
    s2 = du.calculate_status([rs("new", 3, 1)], None, d, NOW)
    avail = du.get_condition(s2, du.AVAILABLE)
    assert avail is not None
    assert (avail.status, avail.reason) == ("False", du.MIN_REPLICAS_UNAVAILABLE)


def test_set_condition_keeps_times_unless_status_changes() -> None:
    status = apps_pb2.DeploymentStatus()
    du.set_condition(status, du.new_condition(deployutil.PROGRESSING, "True", du.NEW_RS_CREATED,
                                              "a", NOW))
    du.set_condition(status, du.new_condition(deployutil.PROGRESSING, "True", du.NEW_RS_CREATED,
                                              "b", NOW + 5))
    cond = du.get_condition(status, deployutil.PROGRESSING)
    assert cond is not None and cond.message == "a"  # same status and reason: untouched
    du.set_condition(status, du.new_condition(deployutil.PROGRESSING, "True", du.RS_UPDATED, "c",
                                              NOW + 10))
    cond = du.get_condition(status, deployutil.PROGRESSING)
    assert cond is not None and cond.message == "c"
    assert cond.last_transition_time.seconds == int(NOW)
    assert cond.last_update_time.seconds == int(NOW + 10)
    du.set_condition(status, du.new_condition(deployutil.PROGRESSING, "False",
                     deployutil.TIMED_OUT, "d",
                                              NOW + 20))
    cond = du.get_condition(status, deployutil.PROGRESSING)
    assert cond is not None and cond.last_transition_time.seconds == int(NOW + 20)
    assert len(status.conditions) == 1


def progressing(d: apps_pb2.Deployment, reason: str, at: float, status: str = "True") -> None:
    du.set_condition(d.status, du.new_condition(deployutil.PROGRESSING, status, reason, "", at))


@pytest.mark.parametrize(("case", "reason", "status"), [
    ("complete", du.NEW_RS_AVAILABLE, "True"),
    ("progress", du.RS_UPDATED, "True"),
    ("stuck-in-time", du.NEW_RS_CREATED, "True"),
    ("stuck-too-long", deployutil.TIMED_OUT, "False"),
])
def test_rollout_status_conditions(case: str, reason: str, status: str) -> None:
    d = deploy(3, 1, 0, deadline=30)
    d.status.observed_generation = 1
    d.status.replicas, d.status.updated_replicas = 4, 1
    d.status.ready_replicas = d.status.available_replicas = 3
    progressing(d, du.NEW_RS_CREATED, NOW)
    old = rs("old", 3, created=0)
    new = rs("new", 1, 0, created=1)
    now = NOW + 10
    if case == "complete":
        old, new = rs("old", 0, created=0), rs("new", 3, created=1)
    elif case == "progress":
        new = rs("new", 1, 1, created=1)
    elif case == "stuck-too-long":
        now = NOW + 31
    s = du.rollout_status([old, new], new, d, now)
    cond = du.get_condition(s, deployutil.PROGRESSING)
    assert cond is not None
    assert (cond.reason, cond.status) == (reason, status)
    if case == "progress":
        assert cond.last_update_time.seconds == int(now)  # progress restarts the deadline
    delay = du.requeue_after(d, s, now)
    if case in ("complete", "stuck-too-long"):
        assert delay is None
    else:
        assert delay is not None and 0 < delay <= 30.1


def test_no_progress_deadline_means_no_progressing_condition() -> None:
    d = deploy(deadline=None)
    progressing(d, du.NEW_RS_CREATED, NOW)
    s = du.rollout_status([rs("new", 3)], rs("new", 3), d, NOW)
    assert du.get_condition(s, deployutil.PROGRESSING) is None


@pytest.mark.parametrize(("paused", "current", "expected"), [
    (True, None, du.PAUSED),
    (True, du.PAUSED, None),
    (False, du.PAUSED, du.RESUMED),
    (False, du.RS_UPDATED, None),
    (True, deployutil.TIMED_OUT, None),
])
def test_paused_condition_change(paused: bool, current: str | None,
                                 expected: str | None) -> None:
    d = deploy()
    d.spec.paused = paused
    if current is not None:
        progressing(d, current, NOW)
    cond = du.paused_condition_change(d, NOW)
    assert (cond.reason if cond is not None else None) == expected


# -- what `rollout status` prints ----------------------------------------------------------


@pytest.mark.parametrize(("generation", "observed", "updated", "replicas", "available",
                          "message", "done"), [
    (2, 1, 3, 3, 3, "Waiting for deployment spec update to be observed...", False),
    (1, 1, 1, 4, 0, 'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas '
                    "have been updated...", False),
    (1, 1, 3, 4, 3, 'Waiting for deployment "web" rollout to finish: 1 old replicas are '
                    "pending termination...", False),
    (1, 1, 3, 3, 1, 'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas '
                    "are available...", False),
    (1, 1, 3, 3, 3, 'deployment "web" successfully rolled out', True),
])
def test_rollout_status_message(generation: int, observed: int, updated: int, replicas: int,
                                available: int, message: str, done: bool) -> None:
    d = deploy(3, generation=generation)
    d.status.observed_generation = observed
    d.status.updated_replicas = updated
    d.status.replicas = replicas
    d.status.available_replicas = available
    assert deployutil.rollout_status_message(d) == (message, done)


def test_rollout_status_message_reports_a_stalled_rollout() -> None:
    d = deploy(3)
    d.status.observed_generation = 1
    progressing(d, deployutil.TIMED_OUT, NOW, "False")
    with pytest.raises(deployutil.RolloutStalled, match='deployment "web" exceeded its progress'):
        deployutil.rollout_status_message(d)


def test_template_without_hash_does_not_touch_its_argument() -> None:
    t = core_pb2.PodTemplateSpec()
    t.metadata.labels[deployutil.HASH_LABEL] = "x"
    assert deployutil.HASH_LABEL not in deployutil.template_without_hash(t).metadata.labels
    assert t.metadata.labels[deployutil.HASH_LABEL] == "x"
