"""Table tests of the plugins' pure decisions."""

from __future__ import annotations

import pytest

from control.api.nodeaffinity import compile_node_selector, required_matcher
from control.api.pb import core_pb2
from control.scheduler.framework import Code
from control.scheduler.plugins.balanced_allocation import balanced_score
from control.scheduler.plugins.inter_pod_affinity import (
    R_AFFINITY,
    R_ANTI,
    R_EXISTING_ANTI,
    AffinityState,
    filter_node,
)
from control.scheduler.plugins.node_name import fits
from control.scheduler.plugins.node_ports import ports_fit
from control.scheduler.plugins.node_resources_fit import (
    NodeResourcesFit,
    insufficient,
    least_allocated,
    most_allocated,
)
from control.scheduler.plugins.node_unschedulable import tolerates_unschedulable
from control.scheduler.plugins.pod_topology_spread import skew_ok, spread_scores
from control.scheduler.plugins.taint_toleration import (
    count_intolerable_prefer,
    first_untolerated,
)
from control.scheduler.types import (
    AffinityTerm,
    Resources,
    TaintInfo,
    TolerationInfo,
    pod_requests,
)
from tests.scheduler.builders import info, node, node_info, pod

GI = 1024**3


# -- requests ------------------------------------------------------------------------------

@pytest.mark.parametrize("p, cpu, mem", [
    (pod("a", cpu="500m", memory="1Gi"), 500, GI),
    # init container larger than the app containers: the max wins
    (pod("b", cpu="500m", init=[("2", "", False)]), 2000, 0),
    # sidecar (restartPolicy Always) adds to the app containers
    (pod("c", cpu="500m", init=[("250m", "", True)]), 750, 0),
    # a regular init container after a sidecar runs alongside it: 1 + 0.25
    (pod("d", cpu="100m", init=[("250m", "", True), ("1", "", False)]), 1250, 0),
    (pod("e", cpu="100m", overhead={"cpu": "50m", "memory": "10Mi"}), 150, 10 * 1024**2),
    (pod("f"), 0, 0),
])
def test_pod_requests(p: core_pb2.Pod, cpu: int, mem: int) -> None:
    r = pod_requests(p.spec)
    assert (r.milli_cpu, r.memory) == (cpu, mem)


def test_non_zero_requests_for_scoring() -> None:
    r = pod_requests(pod("x").spec, non_zero=True)
    assert (r.milli_cpu, r.memory) == (100, 200 * 1024**2)


# -- NodeResourcesFit ----------------------------------------------------------------------

def R(cpu: int = 0, mem: int = 0, pods: int = 110, **scalar: int) -> Resources:
    return Resources(cpu, mem, 0, pods,
                     {k.replace("_com_", ".com/"): v for k, v in scalar.items()})


@pytest.mark.parametrize("req, used, alloc, npods, want", [
    (R(1000), R(0), R(2000), 0, []),
    (R(1000), R(1500), R(2000), 0, ["Insufficient cpu"]),
    (R(0, GI), R(0, GI), R(4000, GI), 0, ["Insufficient memory"]),
    (R(3000, 2 * GI), R(0), R(2000, GI), 0, ["Insufficient cpu", "Insufficient memory"]),
    (R(0), R(0), R(2000, GI, pods=3), 3, ["Too many pods"]),
    (R(0, 0, 110, example_com_gpu=1), R(0), R(2000), 0, ["Insufficient example.com/gpu"]),
    (R(0, 0, 110, example_com_gpu=1), R(0), R(2000, 0, 110, example_com_gpu=2), 0, []),
])
def test_insufficient(req: Resources, used: Resources, alloc: Resources, npods: int,
                      want: list[str]) -> None:
    assert insufficient(req, used, alloc, npods) == want


@pytest.mark.parametrize("requested, capacity, least, most", [
    (0, 1000, 100, 0), (500, 1000, 50, 50), (1000, 1000, 0, 100), (1500, 1000, 0, 100),
    (10, 0, 0, 0),
])
def test_allocation_scores(requested: int, capacity: int, least: int, most: int) -> None:
    assert least_allocated(requested, capacity) == least
    assert most_allocated(requested, capacity) == most


def test_fit_scoring_strategies_prefer_opposite_nodes() -> None:
    empty = node_info(node("empty", cpu="4"))
    busy = node_info(node("busy", cpu="4"), pod("x", cpu="3", memory="6Gi"))
    p = info(pod("p", cpu="100m", memory="100Mi"))
    least = NodeResourcesFit()
    most = NodeResourcesFit({"scoringStrategy": {"type": "MostAllocated"}})
    ls = least.score_nodes(None, p, [empty, busy])  # type: ignore[arg-type]
    ms = most.score_nodes(None, p, [empty, busy])  # type: ignore[arg-type]
    assert ls[0] > ls[1] and ms[1] > ms[0]
    with pytest.raises(ValueError):
        NodeResourcesFit({"scoringStrategy": {"type": "Bogus"}})


@pytest.mark.parametrize("fractions, want", [
    ([0.5, 0.5], 100), ([1.0, 0.0], 50), ([0.2, 0.6], 80), ([2.0, 1.0], 100),
])
def test_balanced_score(fractions: list[float], want: int) -> None:
    assert balanced_score(fractions) == want


# -- NodeName, NodePorts, NodeUnschedulable ------------------------------------------------

@pytest.mark.parametrize("wanted, node_name, ok", [("", "a", True), ("a", "a", True),
                                                   ("a", "b", False)])
def test_node_name(wanted: str, node_name: str, ok: bool) -> None:
    assert fits(wanted, node_name) is ok


@pytest.mark.parametrize("wanted, used, ok", [
    ([("0.0.0.0", "TCP", 80)], {}, True),
    ([("0.0.0.0", "TCP", 80)], {("TCP", 80): ["10.0.0.1"]}, False),
    ([("10.0.0.2", "TCP", 80)], {("TCP", 80): ["10.0.0.1"]}, True),
    ([("10.0.0.2", "TCP", 80)], {("TCP", 80): ["0.0.0.0"]}, False),
    ([("0.0.0.0", "UDP", 80)], {("TCP", 80): ["0.0.0.0"]}, True),
])
def test_ports_fit(wanted: list[tuple[str, str, int]], used: dict[tuple[str, int], list[str]],
                   ok: bool) -> None:
    assert ports_fit(wanted, used) is ok


def test_unschedulable_toleration() -> None:
    assert not tolerates_unschedulable(())
    assert tolerates_unschedulable((TolerationInfo("node.kubernetes.io/unschedulable",
                                                   "Exists", "", "NoSchedule"),))
    assert tolerates_unschedulable((TolerationInfo("", "Exists", "", ""),))


# -- TaintToleration -----------------------------------------------------------------------

T = TaintInfo
TOL = TolerationInfo


@pytest.mark.parametrize("taints, tols, untolerated", [
    ([T("k", "v", "NoSchedule")], [], "k"),
    ([T("k", "v", "NoSchedule")], [TOL("k", "Equal", "v", "NoSchedule")], None),
    ([T("k", "v", "NoSchedule")], [TOL("k", "Equal", "other", "NoSchedule")], "k"),
    ([T("k", "v", "NoSchedule")], [TOL("k", "Exists", "", "")], None),
    ([T("k", "v", "NoExecute")], [TOL("k", "Exists", "", "NoSchedule")], "k"),
    ([T("k", "v", "NoExecute")], [TOL("", "Exists", "", "")], None),
    ([T("k", "v", "PreferNoSchedule")], [], None),
])
def test_first_untolerated(taints: list[TaintInfo], tols: list[TolerationInfo],
                           untolerated: str | None) -> None:
    t = first_untolerated(taints, tols)
    assert (t.key if t else None) == untolerated


def test_prefer_no_schedule_counts() -> None:
    taints = [T("a", "", "PreferNoSchedule"), T("b", "", "PreferNoSchedule"),
              T("c", "", "NoSchedule")]
    assert count_intolerable_prefer(taints, []) == 2
    assert count_intolerable_prefer(taints, [TOL("a", "Exists", "", "PreferNoSchedule")]) == 1
    assert count_intolerable_prefer(taints, [TOL("a", "Exists", "", "NoSchedule")]) == 2


# -- NodeAffinity --------------------------------------------------------------------------

def _sel(*exprs: tuple[str, str, list[str]], fields: tuple[str, str, list[str]] | None = None
         ) -> core_pb2.NodeSelector:
    term = core_pb2.NodeSelectorTerm()
    for k, op, vals in exprs:
        term.match_expressions.add(key=k, operator=op, values=vals)
    if fields:
        term.match_fields.add(key=fields[0], operator=fields[1], values=fields[2])
    return core_pb2.NodeSelector(node_selector_terms=[term])


@pytest.mark.parametrize("expr, labels, ok", [
    (("zone", "In", ["a", "b"]), {"zone": "a"}, True),
    (("zone", "In", ["a", "b"]), {"zone": "c"}, False),
    (("zone", "NotIn", ["a"]), {}, True),
    (("zone", "NotIn", ["a"]), {"zone": "a"}, False),
    (("gpu", "Exists", []), {"gpu": ""}, True),
    (("gpu", "DoesNotExist", []), {"gpu": "1"}, False),
    (("cores", "Gt", ["4"]), {"cores": "8"}, True),
    (("cores", "Gt", ["4"]), {"cores": "4"}, False),
    (("cores", "Lt", ["4"]), {"cores": "2"}, True),
    (("cores", "Lt", ["4"]), {"cores": "x"}, False),
    (("cores", "Gt", ["x"]), {"cores": "8"}, False),
])
def test_node_selector_operators(expr: tuple[str, str, list[str]], labels: dict[str, str],
                                 ok: bool) -> None:
    assert compile_node_selector(_sel(expr))("n", labels) is ok


def test_match_fields_and_or_of_terms() -> None:
    sel = _sel(fields=("metadata.name", "In", ["n1"]))
    assert compile_node_selector(sel)("n1", {}) and not compile_node_selector(sel)("n2", {})
    two = core_pb2.NodeSelector(node_selector_terms=[
        _sel(("a", "In", ["1"])).node_selector_terms[0],
        _sel(("b", "In", ["1"])).node_selector_terms[0]])
    m = compile_node_selector(two)
    assert m("n", {"b": "1"}) and not m("n", {"c": "1"})
    assert not compile_node_selector(core_pb2.NodeSelector())("n", {})


def test_node_selector_and_affinity_both_apply() -> None:
    p = pod("p", node_selector={"disk": "ssd"})
    p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.CopyFrom(
        _sel(("zone", "In", ["a"])))
    m = required_matcher(p)
    assert m is not None
    assert m("n", {"disk": "ssd", "zone": "a"})
    assert not m("n", {"disk": "ssd", "zone": "b"})
    assert not m("n", {"zone": "a"})
    assert required_matcher(pod("q")) is None


# -- InterPodAffinity ----------------------------------------------------------------------

def _term(key: str = "kubernetes.io/hostname") -> AffinityTerm:
    from control.api import labels
    return AffinityTerm(labels.from_map({"app": "db"}), frozenset({"default"}), None, key)


@pytest.mark.parametrize("st, labels, want", [
    (AffinityState(), {"kubernetes.io/hostname": "a"}, None),
    (AffinityState(existing_anti={"kubernetes.io/hostname": {"a": 1}}),
     {"kubernetes.io/hostname": "a"}, R_EXISTING_ANTI),
    (AffinityState(existing_anti={"kubernetes.io/hostname": {"a": 1}}),
     {"kubernetes.io/hostname": "b"}, None),
    (AffinityState(affinity=[(_term(), {"a": 2})]), {"kubernetes.io/hostname": "a"}, None),
    (AffinityState(affinity=[(_term(), {"a": 2})]), {"kubernetes.io/hostname": "b"}, R_AFFINITY),
    (AffinityState(affinity=[(_term(), {})], self_affinity_ok=True),
     {"kubernetes.io/hostname": "b"}, None),
    (AffinityState(affinity=[(_term("zone"), {"z": 1})]), {"kubernetes.io/hostname": "b"},
     R_AFFINITY),
    (AffinityState(anti=[(_term(), {"a": 1})]), {"kubernetes.io/hostname": "a"}, R_ANTI),
    (AffinityState(anti=[(_term("zone"), {"z": 1})]), {"kubernetes.io/hostname": "a"}, None),
])
def test_inter_pod_affinity_filter(st: AffinityState, labels: dict[str, str],
                                   want: str | None) -> None:
    got = filter_node(st, labels)
    assert (got.reasons[0] if got else None) == want
    if want == R_AFFINITY:
        assert got is not None and got.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE


# -- PodTopologySpread ---------------------------------------------------------------------

@pytest.mark.parametrize("count, self_match, min_count, max_skew, ok", [
    (0, 1, 0, 1, True), (1, 1, 0, 1, False), (1, 1, 1, 1, True), (3, 0, 1, 2, True),
    (4, 0, 1, 2, False),
])
def test_skew(count: int, self_match: int, min_count: int, max_skew: int, ok: bool) -> None:
    assert skew_ok(count, self_match, min_count, max_skew) is ok


def test_spread_scores_prefer_fewest() -> None:
    assert spread_scores([0.0, 0.0]) == [100, 100]
    s = spread_scores([0.0, 2.0, 4.0])
    assert s[0] == 100 and s[0] > s[1] > s[2]
