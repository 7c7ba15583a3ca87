"""The framework pipeline over a real Cache (no API): fit, messages, scoring, affinity,
spread, preemption, configuration."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from control.runtime.clock import FakeClock
from control.scheduler import config as configmod
from control.scheduler.cache import Cache
from control.scheduler.framework import (
    CycleState,
    Diagnosis,
    FitError,
    Framework,
    Handle,
    Status,
    fit_error_message,
    num_feasible_nodes_to_find,
)
from control.scheduler.registry import ConfigError, build_framework
from tests.scheduler.builders import anti_affinity, info, node, pod, spread


def framework(doc: dict | None = None, seed: int = 1) -> Framework:  # type: ignore[type-arg]
    cfg = configmod.parse(doc)
    prof = cfg.profiles[0]
    return build_framework(prof.scheduler_name, prof.plugins, prof.plugin_args, Handle(),
                           percentage_of_nodes_to_score=cfg.percentage_of_nodes_to_score,
                           rng=random.Random(seed))


def cache_with(*nodes, pods=()) -> Cache:  # type: ignore[no-untyped-def]
    c = Cache(FakeClock())
    for n in nodes:
        c.add_node(n)
    for p in pods:
        c.add_pod(info(p))
    return c


def schedule(fw: Framework, cache: Cache, p) -> str:  # type: ignore[no-untyped-def]
    return fw.schedule(CycleState(cache), info(p)).node


def test_fit_error_message_counts_reasons() -> None:
    d = Diagnosis({"a": Status.unschedulable("Insufficient cpu"),
                   "b": Status.unschedulable("Insufficient cpu"),
                   "c": Status.unresolvable("node(s) didn't match Pod's node affinity/selector")})
    assert fit_error_message(3, d) == ("0/3 nodes are available: 2 Insufficient cpu, 1 node(s) "
                                       "didn't match Pod's node affinity/selector.")
    assert fit_error_message(0, Diagnosis()) == "no nodes available to schedule pods"
    d.post_filter_msg = "preemption: x"
    assert fit_error_message(3, d).endswith("selector. preemption: x.")


def test_schedules_on_fitting_node_and_explains_refusal() -> None:
    fw = framework()
    cache = cache_with(node("small", cpu="1"), node("big", cpu="8"),
                       node("other", labels={"disk": "hdd"}))
    assert schedule(fw, cache, pod("p", cpu="2")) == "big"
    with pytest.raises(FitError) as ei:
        schedule(fw, cache, pod("q", cpu="16", node_selector={"disk": "ssd"}))
    assert str(ei.value) == ("0/3 nodes are available: 3 node(s) didn't match Pod's node "
                             "affinity/selector.")


def test_least_allocated_spreads_most_allocated_packs() -> None:
    nodes = (node("a", cpu="4", memory="8Gi"), node("b", cpu="4", memory="8Gi"))
    for strategy, same in (("LeastAllocated", False), ("MostAllocated", True)):
        fw = framework({"profiles": [{"pluginConfig": [
            {"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": strategy}}}]}]})
        cache = cache_with(*nodes)
        placed = []
        for i in range(2):
            p = info(pod(f"p{i}", cpu="1", memory="1Gi"))
            n = fw.schedule(CycleState(cache), p).node
            cache.assume(p, n)
            placed.append(n)
        assert (placed[0] == placed[1]) is same, strategy


def test_percentage_of_nodes_to_score() -> None:
    assert num_feasible_nodes_to_find(50, 0) == 50
    assert num_feasible_nodes_to_find(1000, 0) == 420
    assert num_feasible_nodes_to_find(5000, 0) == 500
    assert num_feasible_nodes_to_find(5000, 1) == 100
    assert num_feasible_nodes_to_find(5000, 100) == 5000


def test_anti_affinity_and_topology_spread_through_cache() -> None:
    fw = framework()
    zones = {"a1": "a", "a2": "a", "b1": "b"}
    cache = cache_with(*(node(n, labels={"topology.kubernetes.io/zone": z})
                         for n, z in zones.items()))
    # anti-affinity over hostname: three replicas land on three different nodes
    seen = set()
    for i in range(3):
        p = info(anti_affinity(pod(f"db{i}", labels={"app": "db"}), {"app": "db"}))
        n = fw.schedule(CycleState(cache), p).node
        cache.assume(p, n)
        seen.add(n)
    assert seen == {"a1", "a2", "b1"}
    with pytest.raises(FitError):
        schedule(fw, cache, anti_affinity(pod("db3", labels={"app": "db"}), {"app": "db"}))
    # zone spread with maxSkew 1: after one web pod in zone a, the next must go to zone b
    cache.add_pod(info(pod("w0", labels={"app": "web"}, node_name="a1")))
    n = schedule(fw, cache, spread(pod("w1", labels={"app": "web"}), {"app": "web"},
                                   "topology.kubernetes.io/zone"))
    assert n == "b1"


def test_required_pod_affinity_follows_the_target() -> None:
    fw = framework()
    cache = cache_with(node("x"), node("y"), pods=[pod("cache", labels={"app": "cache"},
                                                       node_name="y")])
    p = anti_affinity(pod("app"), {"app": "cache"}, affinity=True)
    assert schedule(fw, cache, p) == "y"


def test_preemption_picks_fewest_victims() -> None:
    fw = framework()
    cache = cache_with(
        node("n1", cpu="2"), node("n2", cpu="2"),
        pods=[pod("a1", cpu="1", node_name="n1", priority=0),
              pod("a2", cpu="1", node_name="n1", priority=0),
              pod("b1", cpu="2", node_name="n2", priority=0)])
    p = info(pod("vip", cpu="2", priority=100))
    state = CycleState(cache)
    with pytest.raises(FitError) as ei:
        fw.schedule(state, p)
    result = fw.run_post_filter(state, p, ei.value.diagnosis)
    assert result is not None and result.nominated_node == "n2"
    assert [v.name for v in result.victims] == ["b1"]
    # a pod that may not preempt gets the reason in its message
    never = pod("polite", cpu="2", priority=100)
    never.spec.preemption_policy = "Never"
    state = CycleState(cache)
    with pytest.raises(FitError) as ei:
        fw.schedule(state, info(never))
    assert fw.run_post_filter(state, info(never), ei.value.diagnosis) is None
    assert "preemptionPolicy=Never" in ei.value.diagnosis.post_filter_msg


def test_preemption_keeps_what_it_can() -> None:
    fw = framework()
    cache = cache_with(node("n1", cpu="3"), pods=[
        pod("hi", cpu="1", node_name="n1", priority=50),
        pod("lo1", cpu="1", node_name="n1", priority=1),
        pod("lo2", cpu="1", node_name="n1", priority=2)])
    p = info(pod("vip", cpu="1", priority=100))
    # fits? 3 used of 3: no -> one victim, the least important (lo1)
    state = CycleState(cache)
    with pytest.raises(FitError) as ei:
        fw.schedule(state, p)
    result = fw.run_post_filter(state, p, ei.value.diagnosis)
    assert result is not None and [v.name for v in result.victims] == ["lo1"]


# -- configuration -------------------------------------------------------------------------

def test_default_profile_has_kubernetes_weights() -> None:
    cfg = configmod.default_config()
    score = dict(cfg.profiles[0].plugins["score"])
    assert score == {"TaintToleration": 3, "NodeAffinity": 2, "NodeResourcesFit": 1,
                     "PodTopologySpread": 2, "InterPodAffinity": 2,
                     "NodeResourcesBalancedAllocation": 1}
    assert [n for n, _ in cfg.profiles[0].plugins["filter"]][:3] == [
        "NodeUnschedulable", "NodeName", "TaintToleration"]


def test_config_enable_disable_weights(tmp_path: Path) -> None:
    f = tmp_path / "sched.yaml"
    f.write_text("""
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
    filter:
      disabled: [{name: TaintToleration}]
  pluginConfig:
  - name: NodeResourcesFit
    args: {scoringStrategy: {type: MostAllocated}}
""")
    cfg = configmod.load(f)
    assert cfg.percentage_of_nodes_to_score == 30
    packer = cfg.profiles[1]
    assert packer.plugins["score"] == [("NodeResourcesFit", 5)]
    assert "TaintToleration" not in [n for n, _ in packer.plugins["filter"]]
    assert packer.plugin_args["NodeResourcesFit"]["scoringStrategy"]["type"] == "MostAllocated"


@pytest.mark.parametrize("doc, fragment", [
    ({"bogus": 1}, "unknown field(s) bogus"),
    ({"profiles": [{"plugins": {"filter": {"enabled": [{"name": "Nope"}]}}}]},
     "unknown plugin 'Nope'"),
    ({"profiles": [{"plugins": {"sideways": {}}}]}, "unknown extension point 'sideways'"),
    ({"profiles": [{"plugins": {"filter": {"enabled": [{"name": "DefaultBinder"}]}}}]},
     "does not implement filter"),
    ({"profiles": [{}, {}]}, "duplicate schedulerName"),
    ({"kind": "Pod"}, "is not KubeSchedulerConfiguration"),
])
def test_config_errors_name_the_problem(doc: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as ei:
        configmod.parse(doc)
    assert fragment in str(ei.value)
