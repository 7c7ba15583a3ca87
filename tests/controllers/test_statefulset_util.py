"""Table tests of the StatefulSet controller's pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert
from control.api.pb import apps_pb2, core_pb2
from control.controllers import statefulset_util as ssu

NOW = 1000.0


def pod(ordinal: int, *, rev: str = "new", phase: str = "Running", ready: bool = True,
        since: float = 0.0, deleting: bool = False) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = f"web-{ordinal}"
    p.metadata.labels[ssu.REVISION_HASH_LABEL] = rev
    p.status.phase = phase
    c = p.status.conditions.add(type="Ready", status="True" if ready else "False")
    c.last_transition_time.FromSeconds(int(since))
    if deleting:
        p.metadata.deletion_timestamp.FromSeconds(1)
    return p


def policy(replicas: int = 3, *, start: int = 0, parallel: bool = False, rolling: bool = True,
           partition: int = 0, max_unavailable: int = 1, mrs: int = 0) -> ssu.Policy:
    return ssu.Policy(start, replicas, parallel, rolling, partition, max_unavailable, mrs)


def names(pods: list[core_pb2.Pod]) -> list[str]:
    return [p.metadata.name for p in pods]


@pytest.mark.parametrize(("name", "have", "pol", "create", "delete", "waiting"), [
    ("empty: OrderedReady creates the first only", {}, policy(), [0], [], True),
    ("Parallel creates all", {}, policy(parallel=True), [0, 1, 2], [], False),
    ("ordinals.start", {}, policy(start=5, parallel=True), [5, 6, 7], [], False),
    ("next after a healthy one", {0: pod(0)}, policy(), [1], [], True),
    ("halts while one is not ready", {0: pod(0, ready=False)}, policy(), [], [], True),
    ("halts within minReadySeconds", {0: pod(0, since=NOW - 5)}, policy(mrs=10), [], [],
     True),
    ("goes on after minReadySeconds", {0: pod(0, since=NOW - 15)}, policy(mrs=10), [1], [],
     True),
    ("Parallel does not halt", {0: pod(0, ready=False)}, policy(parallel=True), [1, 2], [],
     False),
    ("failed pod deleted to be recreated", {0: pod(0), 1: pod(1, phase="Failed")}, policy(),
     [], ["web-1"], True),
    ("scale down: highest first, one at a time",
     {0: pod(0), 1: pod(1), 2: pod(2), 3: pod(3)}, policy(2), [], ["web-3"], False),
    ("scale down waits for the terminating one",
     {0: pod(0), 1: pod(1), 2: pod(2, deleting=True), 3: pod(3)}, policy(2), [], [], True),
    ("scale down halts while a replica is unhealthy",
     {0: pod(0, ready=False), 1: pod(1), 2: pod(2)}, policy(1), [], [], True),
    ("scale down halts while a lower condemned pod is unhealthy",
     {0: pod(0), 1: pod(1, ready=False), 2: pod(2)}, policy(1), [], [], True),
    ("scale down deletes the unhealthy highest one",
     {0: pod(0), 1: pod(1), 2: pod(2, ready=False)}, policy(1), [], ["web-2"], False),
    ("Parallel scales down all at once",
     {0: pod(0), 1: pod(1), 2: pod(2)}, policy(1, parallel=True), [], ["web-2", "web-1"],
     False),
    ("rolling update: highest first",
     {0: pod(0, rev="old"), 1: pod(1, rev="old"), 2: pod(2, rev="old")}, policy(), [],
     ["web-2"], True),
    ("rolling update waits for the updated pod to be healthy",
     {0: pod(0, rev="old"), 1: pod(1, rev="old"), 2: pod(2, ready=False)}, policy(), [], [],
     True),
    ("rolling update stops at the partition",
     {0: pod(0, rev="old"), 1: pod(1, rev="old"), 2: pod(2)}, policy(partition=2), [], [],
     False),
    ("maxUnavailable 2", {0: pod(0, rev="old"), 1: pod(1, rev="old"), 2: pod(2, rev="old")},
     policy(parallel=True, max_unavailable=2), [], ["web-2", "web-1"], True),
    ("OnDelete leaves old pods", {0: pod(0, rev="old")}, policy(1, rolling=False), [], [],
     False),
])
def test_plan(name: str, have: dict[int, core_pb2.Pod], pol: ssu.Policy, create: list[int],
              delete: list[str], waiting: bool) -> None:
    out = ssu.plan(have, pol, "new", "old", NOW)
    assert (out.create, names(out.delete), out.waiting) == (create, delete, waiting), name


def test_plan_creates_below_the_partition_at_the_current_revision() -> None:
    out = ssu.plan({}, policy(parallel=True, partition=2), "new", "old", NOW)
    assert out.create == [0, 1, 2]
    assert out.create_current == {0, 1}


@pytest.mark.parametrize(("set_name", "pod_name", "ordinal"), [
    ("web", "web-0", 0), ("web", "web-12", 12), ("web", "web-01", None), ("web", "web-x", None),
    ("web", "webb-1", None), ("my-web", "my-web-3", 3), ("web", "web-", None),
])
def test_ordinal_of(set_name: str, pod_name: str, ordinal: int | None) -> None:
    assert ssu.ordinal_of(set_name, pod_name) == ordinal


def stateful_set(**spec: Any) -> apps_pb2.StatefulSet:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "serviceName": "nginx",
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}],
                              "volumes": [{"name": "www", "emptyDir": {}}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "www", "labels": {"tier": "db"}},
                                  "spec": {"accessModes": ["ReadWriteOnce"]}}],
        **spec}
    out: apps_pb2.StatefulSet = convert.from_dict(
        {"metadata": {"name": "web", "namespace": "ns"}, "spec": body}, apps_pb2.StatefulSet())
    return out


def test_pod_template_identity_and_claims() -> None:
    ss = stateful_set()
    t = ssu.pod_template(ss, ss.spec.template, 2, "web-abc")
    assert dict(t.metadata.labels) == {
        "app": "web", ssu.POD_NAME_LABEL: "web-2", ssu.POD_INDEX_LABEL: "2",
        ssu.REVISION_HASH_LABEL: "web-abc"}
    assert (t.spec.hostname, t.spec.subdomain) == ("web-2", "nginx")
    (vol,) = t.spec.volumes  # the claim replaces the template's volume of that name
    assert vol.persistent_volume_claim.claim_name == "www-web-2"
    claim = ssu.new_claim(ss, ss.spec.volume_claim_templates[0], 2)
    assert (claim.metadata.name, claim.metadata.namespace) == ("www-web-2", "ns")
    assert dict(claim.metadata.labels) == {"tier": "db", "app": "web"}
    assert list(claim.spec.access_modes) == ["ReadWriteOnce"]


def test_policy_of_reads_the_spec() -> None:
    ss = stateful_set(replicas=4, podManagementPolicy="Parallel", ordinals={"start": 3},
                      updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
                          "partition": 2, "maxUnavailable": "50%"}})
    assert ssu.policy_of(ss) == policy(4, start=3, parallel=True, partition=2,
                                       max_unavailable=2)
    ss = stateful_set(updateStrategy={"type": "OnDelete"})
    assert ssu.policy_of(ss) == policy(1, rolling=False)


def test_count_status() -> None:
    have = {0: pod(0, rev="old"), 1: pod(1, ready=False), 2: pod(2, deleting=True)}
    assert ssu.count_status(have, 0, NOW, "old", "new") == ssu.Counts(2, 1, 1, 1, 1)
