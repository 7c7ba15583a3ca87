"""Inter-pod (anti-)affinity and topology spread: the semantics pinned case by case, and
the framework's fast filter pass (node-local memo + plugins' domain rules) checked against
calling every filter on every node, on random clusters, before and after the
incremental updates preemption makes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from control.api.pb import core_pb2, meta_pb2
from control.runtime.clock import FakeClock
from control.scheduler import config as configmod
from control.scheduler.cache import Cache
from control.scheduler.framework import (
    CycleState,
    Diagnosis,
    FitError,
    Framework,
    Handle,
    num_feasible_nodes_to_find,
)
from control.scheduler.registry import build_framework
from tests.scheduler.builders import anti_affinity, info, node, pod, spread

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def framework(seed: int = 1, percentage: int = 0) -> Framework:
    cfg = configmod.parse(None)
    prof = cfg.profiles[0]
    return build_framework(prof.scheduler_name, prof.plugins, prof.plugin_args, Handle(),
                           percentage_of_nodes_to_score=percentage, rng=random.Random(seed))


def zoned(layout: dict[str, str], **labels: dict[str, str]) -> Cache:
    """Nodes named by ``layout`` (node -> zone), extra labels per node."""
    c = Cache(FakeClock())
    for n, z in layout.items():
        c.add_node(node(n, labels={ZONE: z, **labels.get(n, {})}))
    return c


def place(cache: Cache, name: str, on: str, **kw: Any) -> None:
    cache.add_pod(info(pod(name, node_name=on, **kw)))


def feasible_nodes(fw: Framework, cache: Cache, p: core_pb2.Pod) -> set[str]:
    """Every node the pod may go to (all nodes evaluated)."""
    state = CycleState(cache)
    pi = info(p)
    rejected, _ = fw.run_pre_filter(state, pi)
    if rejected is not None:
        return set()
    fw.percentage_of_nodes_to_score = 100
    feasible, _ = fw.find_feasible(state, pi, cache.node_list(), Diagnosis())
    return {ni.name for ni in feasible}


def message(fw: Framework, cache: Cache, p: core_pb2.Pod) -> str:
    with pytest.raises(FitError) as ei:
        fw.schedule(CycleState(cache), info(p))
    return str(ei.value)


# -- topology spread -----------------------------------------------------------------------

def test_max_skew_counts_domains() -> None:
    cache = zoned({"a1": "a", "a2": "a", "b1": "b", "c1": "c"})
    place(cache, "w0", "a1", labels={"app": "web"})
    place(cache, "w1", "b1", labels={"app": "web"})
    web = {"app": "web"}
    assert feasible_nodes(framework(), cache, spread(pod("p", labels=web), web, ZONE)) == {"c1"}
    assert feasible_nodes(framework(), cache, spread(pod("p", labels=web), web, ZONE, 2)) == \
        {"a1", "a2", "b1", "c1"}
    # a pod the selector does not match adds nothing to its domain: 1 + 0 - 0 <= 1
    assert feasible_nodes(framework(), cache, spread(pod("p"), web, ZONE)) == \
        {"a1", "a2", "b1", "c1"}


def test_nodes_without_the_key_are_unresolvable() -> None:
    cache = zoned({"a1": "a"})
    cache.add_node(node("bare"))
    web = {"app": "web"}
    assert feasible_nodes(framework(), cache, spread(pod("p", labels=web), web, ZONE)) == {"a1"}
    cache = Cache(FakeClock())
    cache.add_node(node("bare"))
    assert message(framework(), cache, spread(pod("p", labels=web), web, ZONE)) == (
        "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints "
        "(missing required label).")


def test_schedule_anyway_never_filters_but_scores() -> None:
    cache = zoned({"a1": "a", "b1": "b"})
    for i in range(3):
        place(cache, f"w{i}", "a1", labels={"app": "web"})
    web = {"app": "web"}
    p = spread(pod("p", labels=web), web, ZONE, hard=False)
    assert feasible_nodes(framework(), cache, p) == {"a1", "b1"}
    for seed in range(5):
        assert framework(seed).schedule(CycleState(cache), info(p)).node == "b1"


def test_min_domains_takes_the_global_minimum_as_zero() -> None:
    cache = zoned({"a1": "a", "b1": "b"})
    place(cache, "w0", "a1", labels={"app": "web"})
    place(cache, "w1", "b1", labels={"app": "web"})
    web = {"app": "web"}
    assert feasible_nodes(framework(), cache, spread(pod("p", labels=web), web, ZONE)) == \
        {"a1", "b1"}
    assert feasible_nodes(framework(), cache,
                          spread(pod("p", labels=web), web, ZONE, min_domains=3)) == set()
    assert feasible_nodes(framework(), cache,
                          spread(pod("p", labels=web), web, ZONE, min_domains=2)) == \
        {"a1", "b1"}


def test_node_affinity_policy() -> None:
    # zone c's node does not match the pod's selector: Honor leaves zone c out of the
    # domains (min 1, zones a and b allowed), Ignore counts its 0 (a and b refused).
    cache = zoned({"a1": "a", "b1": "b", "c1": "c"},
                  a1={"disk": "ssd"}, b1={"disk": "ssd"})
    place(cache, "w0", "a1", labels={"app": "web"})
    place(cache, "w1", "b1", labels={"app": "web"})
    web = {"app": "web"}
    honor = spread(pod("p", labels=web, node_selector={"disk": "ssd"}), web, ZONE)
    assert feasible_nodes(framework(), cache, honor) == {"a1", "b1"}
    ignore = spread(pod("p", labels=web, node_selector={"disk": "ssd"}), web, ZONE,
                    node_affinity_policy="Ignore")
    assert feasible_nodes(framework(), cache, ignore) == set()


def test_node_taints_policy() -> None:
    cache = Cache(FakeClock())
    for n, z in (("a1", "a"), ("b1", "b")):
        cache.add_node(node(n, labels={ZONE: z}))
    cache.add_node(node("c1", labels={ZONE: "c"}, taints=[("dedicated", "x", "NoSchedule")]))
    place(cache, "w0", "a1", labels={"app": "web"})
    place(cache, "w1", "b1", labels={"app": "web"})
    web = {"app": "web"}
    # default Ignore: the tainted zone's 0 is the minimum, zones a and b are refused
    assert feasible_nodes(framework(), cache, spread(pod("p", labels=web), web, ZONE)) == set()
    honor = spread(pod("p", labels=web), web, ZONE, node_taints_policy="Honor")
    assert feasible_nodes(framework(), cache, honor) == {"a1", "b1"}


def test_match_label_keys_splits_revisions() -> None:
    cache = zoned({"a1": "a", "b1": "b"})
    for i in range(3):
        place(cache, f"old{i}", "a1", labels={"app": "web", "pod-template-hash": "v1"})
    web = {"app": "web"}
    new = {"app": "web", "pod-template-hash": "v2"}
    assert feasible_nodes(framework(), cache, spread(pod("p", labels=new), web, ZONE)) == {"b1"}
    keyed = spread(pod("p", labels=new), web, ZONE, match_label_keys=["pod-template-hash"])
    assert feasible_nodes(framework(), cache, keyed) == {"a1", "b1"}


def test_spread_counts_only_the_pods_namespace() -> None:
    cache = zoned({"a1": "a", "b1": "b"})
    place(cache, "w0", "a1", labels={"app": "web"}, namespace="other")
    web = {"app": "web"}
    assert feasible_nodes(framework(), cache, spread(pod("p", labels=web), web, ZONE)) == \
        {"a1", "b1"}


# -- inter-pod affinity --------------------------------------------------------------------

def test_anti_affinity_by_zone_and_by_host() -> None:
    cache = zoned({"a1": "a", "a2": "a", "b1": "b"})
    place(cache, "db0", "a1", labels={"app": "db"})
    host = anti_affinity(pod("p"), {"app": "db"})
    assert feasible_nodes(framework(), cache, host) == {"a2", "b1"}
    zone = anti_affinity(pod("p"), {"app": "db"}, topology_key=ZONE)
    assert feasible_nodes(framework(), cache, zone) == {"b1"}


def test_existing_pods_anti_affinity_is_symmetric() -> None:
    cache = zoned({"a1": "a", "a2": "a", "b1": "b"})
    cache.add_pod(info(anti_affinity(pod("guard", node_name="a1"), {"app": "web"},
                                     topology_key=ZONE)))
    assert feasible_nodes(framework(), cache, pod("p", labels={"app": "web"})) == {"b1"}
    assert feasible_nodes(framework(), cache, pod("q", labels={"app": "api"})) == \
        {"a1", "a2", "b1"}
    assert message(framework(), Cache(FakeClock()), pod("x")) == \
        "no nodes available to schedule pods"


def test_affinity_needs_a_match_in_the_domain_unless_first_of_its_group() -> None:
    cache = zoned({"a1": "a", "a2": "a", "b1": "b"})
    place(cache, "cache0", "a2", labels={"app": "cache"})
    p = anti_affinity(pod("p"), {"app": "cache"}, topology_key=ZONE, affinity=True)
    assert feasible_nodes(framework(), cache, p) == {"a1", "a2"}
    # no pod matches and the pod does not match itself: nowhere, and unresolvable
    lone = anti_affinity(pod("p"), {"app": "nothing"}, affinity=True)
    assert message(framework(), cache, lone) == (
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules.")
    # the first pod of a group that selects itself may go anywhere
    first = anti_affinity(pod("p", labels={"app": "new"}), {"app": "new"}, affinity=True)
    assert feasible_nodes(framework(), cache, first) == {"a1", "a2", "b1"}


def test_affinity_namespaces_and_namespace_selector() -> None:
    cache = zoned({"a1": "a", "b1": "b"})
    place(cache, "db0", "a1", labels={"app": "db"}, namespace="data")
    same_ns = anti_affinity(pod("p"), {"app": "db"}, affinity=True)
    assert feasible_nodes(framework(), cache, same_ns) == set()
    named = anti_affinity(pod("p"), {"app": "db"}, affinity=True)
    named.spec.affinity.pod_affinity.required_during_scheduling_ignored_during_execution[0] \
        .namespaces.append("data")
    assert feasible_nodes(framework(), cache, named) == {"a1"}
    by_selector = anti_affinity(pod("p"), {"app": "db"}, affinity=True)
    by_selector.spec.affinity.pod_affinity.required_during_scheduling_ignored_during_execution[
        0].namespace_selector.CopyFrom(meta_pb2.LabelSelector())
    assert feasible_nodes(framework(), cache, by_selector) == {"a1"}


# -- the fast filter pass is run_filters, node by node -------------------------------------

def _random_pod(rng: random.Random, name: str, node_name: str = "") -> core_pb2.Pod:
    group = rng.choice(["a", "b", "c"])
    labels = {"group": group, "rev": rng.choice(["1", "2"])}
    ns = rng.choice(["default", "default", "other"])
    p = pod(name, cpu=rng.choice(["", "500m", "2"]), labels=labels, namespace=ns,
            node_name=node_name,
            node_selector={"disk": "ssd"} if rng.random() < 0.15 else None,
            tolerations=[{"key": "dedicated", "operator": "Exists"}] if rng.random() < 0.2
            else ())
    target = {"group": rng.choice(["a", "b", "c"])}
    key = rng.choice([HOST, ZONE])
    r = rng.random()
    if r < 0.25:
        anti_affinity(p, target, topology_key=key)
    elif r < 0.35:
        anti_affinity(p, target, topology_key=key, affinity=True)
    elif r < 0.45:
        anti_affinity(p, target, topology_key=key, required=False)
    if not node_name and rng.random() < 0.6:
        kw: dict[str, Any] = {}
        if rng.random() < 0.3:
            kw["min_domains"] = rng.randint(1, 6)
        if rng.random() < 0.3:
            kw["node_affinity_policy"] = rng.choice(["Honor", "Ignore"])
        if rng.random() < 0.3:
            kw["node_taints_policy"] = rng.choice(["Honor", "Ignore"])
        if rng.random() < 0.3:
            kw["match_label_keys"] = ["rev"]
        spread(p, target if rng.random() < 0.5 else {"group": group},
               rng.choice([ZONE, HOST, ZONE]), rng.randint(1, 2),
               hard=rng.random() < 0.8, **kw)
    return p


def _random_cluster(rng: random.Random) -> Cache:
    cache = Cache(FakeClock())
    # past 100 nodes the percentage of nodes to score stops the pass early
    for i in range(rng.randint(3, 40) if rng.random() < 0.6 else rng.randint(100, 140)):
        labels = {}
        if rng.random() < 0.9:
            labels[ZONE] = rng.choice("xyzw")
        if rng.random() < 0.5:
            labels["disk"] = "ssd"
        taints = [("dedicated", "x", "NoSchedule")] if rng.random() < 0.15 else []
        cache.add_node(node(f"n{i}", cpu=rng.choice(["2", "4", "8"]), labels=labels,
                            taints=taints))
    names = [ni.name for ni in cache.node_list()]
    for j in range(rng.randint(0, 40)):
        cache.add_pod(info(_random_pod(rng, f"placed{j}", rng.choice(names))))
    return cache


def _same(fast: Any, ref: Any) -> bool:
    if fast is None or ref is None:
        return fast is ref
    return bool((fast.code, fast.reasons, fast.plugin) == (ref.code, ref.reasons, ref.plugin))


def _check(fw: Framework, state: CycleState, pi: Any, cache: Cache,
           rng: random.Random) -> None:
    """find_feasible agrees with run_filters on every node: the same feasible nodes, in
    rotation order, as many as the percentage asks, and the same reason (code, text,
    plugin) for every node it reports; on failure it reports every node."""
    nodes = cache.node_list()
    n = len(nodes)
    ref = [fw.run_filters(state, pi, ni) for ni in nodes]
    for percentage in (100, 30):
        fw.percentage_of_nodes_to_score = percentage
        start = fw._next_start = rng.randrange(n)
        d = Diagnosis()
        feasible, evaluated = fw.find_feasible(state, pi, nodes, d)
        to_find = num_feasible_nodes_to_find(n, percentage)
        rotation = list(range(start, n)) + list(range(start))
        want = [nodes[i].name for i in rotation if ref[i] is None][:to_find]
        assert [ni.name for ni in feasible] == want
        if len(want) == to_find:
            last = rotation.index(next(i for i in rotation if nodes[i].name == want[-1]))
            assert evaluated == last + 1
        else:
            assert evaluated == n
        for i, ni in enumerate(nodes):
            got = d.node_statuses.get(ni.name)
            if ref[i] is None:
                assert got is None, ni.name
            elif got is not None or not feasible:
                assert _same(got, ref[i]), (ni.name, got, ref[i])


@pytest.mark.parametrize("seed", range(60))
def test_fast_filter_pass_equals_every_filter_on_every_node(seed: int) -> None:
    rng = random.Random(seed)
    cache = _random_cluster(rng)
    fw = framework(seed)
    for k in range(6):
        pi = info(_random_pod(rng, f"incoming{k}"))
        state = CycleState(cache)
        rejected, _ = fw.run_pre_filter(state, pi)
        if rejected is not None:
            continue
        _check(fw, state, pi, cache, rng)
        _check(fw, state, pi, cache, rng)  # the second pass reads the memo
        # preemption's what-if: pods removed and added update the pre-filter state
        placed = [p for ni in cache.node_list() for p in ni.pods.values()]
        if placed:
            victim = rng.choice(placed)
            ni = cache.node(cache.node_of(victim.key))
            assert ni is not None
            what_if = state.clone()
            fw.run_remove_pod(what_if, pi, victim, ni)
            _check(fw, what_if, pi, cache, rng)
            fw.run_add_pod(what_if, pi, victim, ni)
            _check(fw, what_if, pi, cache, rng)
        # and the pod's placement changes a node: memo entries of that node go stale
        try:
            chosen = fw.schedule(CycleState(cache), pi).node
        except FitError:
            continue
        cache.assume(pi, chosen)


def test_anti_affinity_candidates_are_every_group_that_selects_the_pod() -> None:
    rng = random.Random(7)
    cache = zoned({"a1": "a", "b1": "b"})
    selectors = [
        meta_pb2.LabelSelector(match_labels={"group": "a"}),
        meta_pb2.LabelSelector(match_labels={"group": "b", "rev": "1"}),
        meta_pb2.LabelSelector(match_expressions=[meta_pb2.LabelSelectorRequirement(
            key="group", operator="In", values=["a", "c"])]),
        meta_pb2.LabelSelector(match_expressions=[meta_pb2.LabelSelectorRequirement(
            key="group", operator="NotIn", values=["a"])]),
        meta_pb2.LabelSelector(match_expressions=[meta_pb2.LabelSelectorRequirement(
            key="rev", operator="Exists")]),
        meta_pb2.LabelSelector(),
    ]
    for j, sel in enumerate(selectors):
        p = pod(f"guard{j}", node_name=rng.choice(["a1", "b1"]),
                namespace=rng.choice(["default", "other"]))
        p.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution \
            .add(label_selector=sel, topology_key=HOST)
        cache.add_pod(info(p))
    for k in range(40):
        target = info(_random_pod(rng, f"t{k}"))
        want = {sig for sig, g in cache.anti_affinity_groups.items()
                if g.term.matches(target, cache.namespace_labels)}
        got = {g.term.signature for g in cache.anti_affinity_candidates(target)
               if g.term.matches(target, cache.namespace_labels)}
        assert got == want
    for j in range(len(selectors)):
        cache.remove_pod(f"default/guard{j}")
        cache.remove_pod(f"other/guard{j}")
    assert cache.anti_affinity_groups == {}
    assert list(cache.anti_affinity_candidates(info(pod("x", labels={"group": "a"})))) == []


def _recount(cache: Cache, ns: str, sel: Any, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for ni in cache.node_list():
        for p in ni.pods.values():
            if p.namespace == ns and not p.terminating and sel.matches(p.labels):
                v = ni.labels.get(key)
                if v is not None:
                    out[v] = out.get(v, 0) + 1
    return out


@pytest.mark.parametrize("seed", range(20))
def test_domain_counts_follow_pods_and_nodes(seed: int) -> None:
    """The cache's incrementally kept spread counts equal a recount after any sequence of
    pods placed, assumed, forgotten, deleted or terminating and nodes relabelled, added
    or removed."""
    from control.api import labels as labelsmod
    rng = random.Random(seed)
    cache = _random_cluster(rng)
    selectors = [labelsmod.from_map({"group": g}) for g in "abc"] + [
        labelsmod.from_map({"group": "a", "rev": "1"}), labelsmod.everything(),
        labelsmod.nothing()]
    keys = [ZONE, HOST, "disk"]
    for step in range(60):
        # read some counters (creating them) before changing things
        for _ in range(3):
            ns, sel, key = rng.choice(["default", "other"]), rng.choice(selectors), \
                rng.choice(keys)
            assert dict(cache.domain_counts(ns, sel, key)) == _recount(cache, ns, sel, key)
        names = [ni.name for ni in cache.node_list()]
        op = rng.random()
        placed = [k for ni in cache.node_list() for k in ni.pods]
        if op < 0.35 and names:
            cache.add_pod(info(_random_pod(rng, f"s{seed}-{step}", rng.choice(names))))
        elif op < 0.5 and names:
            pi = info(_random_pod(rng, f"a{seed}-{step}"))
            cache.assume(pi, rng.choice(names))
            if rng.random() < 0.5:
                cache.forget(pi.key)
        elif op < 0.65 and placed:
            cache.remove_pod(rng.choice(placed))
        elif op < 0.75 and placed:
            k = rng.choice(placed)
            old = cache.pod(k)
            assert old is not None
            p = core_pb2.Pod()
            p.CopyFrom(old.pod)
            p.spec.node_name = cache.node_of(k)
            p.metadata.deletion_timestamp.FromSeconds(1)
            cache.update_pod(info(p))
        elif op < 0.85 and names:
            ni = cache.node(rng.choice(names))
            assert ni is not None and ni.node is not None
            n = core_pb2.Node()
            n.CopyFrom(ni.node)
            n.metadata.labels[ZONE] = rng.choice("xyzw")
            cache.update_node(n)
        elif op < 0.92:
            cache.add_node(node(f"late{step}", labels={ZONE: rng.choice("xyzw")}))
        elif names:
            cache.remove_node(rng.choice(names))
