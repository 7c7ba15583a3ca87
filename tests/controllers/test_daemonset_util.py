"""Pure logic of the DaemonSet controller: eligibility, templates pinned to nodes,
revision data, the rolling-update plan and the status counts. No I/O."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import convert
from control.api.pb import core_pb2
from control.controllers import daemonset_util as dsu

NOW = 1_700_000_000.0


def template(**spec: Any) -> core_pb2.PodTemplateSpec:
    body = {"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}
    out: core_pb2.PodTemplateSpec = convert.from_dict(body, core_pb2.PodTemplateSpec())
    return out


def node(name: str = "n1", labels: dict[str, str] | None = None,
         taints: list[tuple[str, str]] | None = None) -> core_pb2.Node:
    n = core_pb2.Node()
    n.metadata.name = name
    n.metadata.labels.update(labels or {})
    for key, effect in taints or []:
        n.spec.taints.add(key=key, effect=effect)
    return n


AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}


@pytest.mark.parametrize(("n", "spec", "expected"), [
    (node(), {}, (True, True)),
    (node(labels={"disk": "ssd"}), {"nodeSelector": {"disk": "ssd"}}, (True, True)),
    (node(), {"nodeSelector": {"disk": "ssd"}}, (False, False)),
    (node(labels={"zone": "a"}), {"affinity": AFFINITY}, (True, True)),
    (node(labels={"zone": "b"}), {"affinity": AFFINITY}, (False, False)),
    (node("n2"), {"nodeName": "n1"}, (False, False)),
    (node(taints=[("k", "NoSchedule")]), {}, (False, True)),
    (node(taints=[("k", "NoExecute")]), {}, (False, False)),
    (node(taints=[("k", "PreferNoSchedule")]), {}, (True, True)),
    (node(taints=[("k", "NoExecute")]),
     {"tolerations": [{"key": "k", "operator": "Exists"}]}, (True, True)),
    # the tolerations every daemon pod gets
    (node(taints=[("node.kubernetes.io/not-ready", "NoExecute"),
                  ("node.kubernetes.io/unreachable", "NoExecute"),
                  ("node.kubernetes.io/unschedulable", "NoSchedule"),
                  ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                  ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                  ("node.kubernetes.io/pid-pressure", "NoSchedule")]), {}, (True, True)),
    (node(taints=[("node.kubernetes.io/network-unavailable", "NoSchedule")]), {},
     (False, True)),
    (node(taints=[("node.kubernetes.io/network-unavailable", "NoSchedule")]),
     {"hostNetwork": True}, (True, True)),
])
def test_should_run(n: core_pb2.Node, spec: dict[str, Any], expected: tuple[bool, bool]) -> None:
    assert dsu.should_run(n, template(**spec)) == expected


def test_daemon_template_pinned_to_a_node() -> None:
    t = dsu.pin_to_node(dsu.daemon_template(template(affinity=AFFINITY, hostNetwork=True),
                                            "abc"), "n7")
    assert t.metadata.labels[dsu.REVISION_HASH_LABEL] == "abc"
    keys = {(x.key, x.effect) for x in t.spec.tolerations}
    assert set(dsu.DAEMON_TOLERATIONS) | {dsu.NETWORK_UNAVAILABLE} == keys
    pod = core_pb2.Pod(spec=t.spec)
    assert dsu.target_node(pod) == "n7"
    pod.spec.node_name = "n8"
    assert dsu.target_node(pod) == "n8"
    # adding them twice adds nothing
    again = dsu.daemon_template(t, "abc")
    assert len(again.spec.tolerations) == len(t.spec.tolerations)


def test_revision_data_round_trip() -> None:
    t = template(nodeSelector={"a": "b"})
    data = dsu.revision_data(t)
    assert data["spec"]["template"]["$patch"] == "replace"
    assert dsu.template_of(data) == t


def pod(name: str, node_name: str, *, ready_for: float | None = None) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = name
    p.spec.node_name = node_name
    if ready_for is not None:
        c = p.status.conditions.add(type="Ready", status="True")
        c.last_transition_time.CopyFrom(Timestamp(seconds=int(NOW - ready_for)))
    return p


def names(pods: list[Any]) -> list[str]:
    return sorted(p.metadata.name for p in pods)


def test_rolling_update_within_max_unavailable() -> None:
    nodes = [dsu.NodePods("n1", True, old=[pod("o1", "n1", ready_for=100)]),
             dsu.NodePods("n2", True, old=[pod("o2", "n2", ready_for=100)]),
             dsu.NodePods("n3", True, old=[pod("o3", "n3")]),  # not ready: goes for free
             dsu.NodePods("n4", True, new=[pod("x4", "n4", ready_for=100)])]
    plan = dsu.rolling_update(nodes, 0, 1, 0, NOW)
    assert names(plan.delete) == ["o1", "o3"]
    # a node being replaced (new pod not ready yet) uses up the budget
    nodes[3] = dsu.NodePods("n4", True, new=[pod("x4", "n4")])
    assert names(dsu.rolling_update(nodes, 0, 1, 0, NOW).delete) == ["o3"]
    # minReadySeconds: a new pod ready for less counts as unavailable
    nodes[3] = dsu.NodePods("n4", True, new=[pod("x4", "n4", ready_for=5)])
    assert names(dsu.rolling_update(nodes, 0, 2, 10, NOW).delete) == ["o1", "o3"]


def test_rolling_update_with_surge() -> None:
    nodes = [dsu.NodePods("n1", True, old=[pod("o1", "n1", ready_for=100)]),
             dsu.NodePods("n2", True, old=[pod("o2", "n2", ready_for=100)]),
             dsu.NodePods("n3", True, old=[pod("o3", "n3", ready_for=100)],
                          new=[pod("x3", "n3", ready_for=100)]),
             dsu.NodePods("n4", True, old=[pod("o4", "n4")])]
    plan = dsu.rolling_update(nodes, 1, 0, 0, NOW)
    # n3's new pod is up: its old one goes; one surge on the first waiting node
    assert names(plan.delete) == ["o3", "o4"]
    assert plan.surge_on == ["n1"]
    nodes[2] = dsu.NodePods("n3", True, old=[pod("o3", "n3", ready_for=100)],
                            new=[pod("x3", "n3")])
    plan = dsu.rolling_update(nodes, 1, 0, 0, NOW)
    assert plan.surge_on == []  # the budget is taken by n3


def test_count_status() -> None:
    nodes = [dsu.NodePods("n1", True, new=[pod("a", "n1", ready_for=100)]),
             dsu.NodePods("n2", True, old=[pod("b", "n2", ready_for=1)]),
             dsu.NodePods("n3", True),
             dsu.NodePods("n4", False, old=[pod("c", "n4")])]
    assert dsu.count_status(nodes, 10, NOW) == dsu.Counts(
        desired=3, current=2, misscheduled=1, ready=2, available=1, updated=1)
