"""PodTopologySpread: spread matching pods evenly across topology domains (zones, nodes...).

For each ``topologySpreadConstraint`` (``labelSelector`` + ``matchLabelKeys`` selecting pods
in the pod's namespace; ``topologyKey``; ``maxSkew``):

- ``whenUnsatisfiable: DoNotSchedule`` filters: placing the pod in a node's domain must keep
  ``count(domain) + self - min(count over eligible domains) <= maxSkew``; a node without the
  key is refused as unresolvable. With ``minDomains`` and fewer eligible domains than that,
  the global minimum is taken as 0.
- ``ScheduleAnyway`` scores: fewer matching pods in the node's domain is better.
- Eligible domains are those of nodes that pass the pod's node affinity/selector
  (``nodeAffinityPolicy: Honor``, the default; ``Ignore`` counts every node) and, with
  ``nodeTaintsPolicy: Honor``, whose taints the pod tolerates (default ``Ignore``).

System default spreading (Kubernetes' DefaultPodTopologySpread / SelectorSpread): a pod with
no constraints of its own but a controller owner is scored as if it had
``{hostname, maxSkew 3}`` and ``{zone, maxSkew 5}`` ScheduleAnyway constraints over the pods
of the same owner, using the cache's owner index (so the cost is the owner's pod count, not
the cluster's). Kubernetes derives that selector from the Services/ReplicaSets selecting the
pod; "same controller" is the same set for the common case and needs no extra informers.

Args: ``defaultingType: System|List`` and ``defaultConstraints`` (List) are accepted;
explicit default constraints are not applied yet.

Concurrency contract: stateless; per-pod data lives in the CycleState.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from control.api import labels as labelsmod
from control.api.nodeaffinity import required_matcher
from control.scheduler.framework import (
    MAX_NODE_SCORE,
    SKIP,
    CycleState,
    DomainRule,
    FilterPlugin,
    Handle,
    PreFilterPlugin,
    PreFilterResult,
    PreScorePlugin,
    ScorePlugin,
    Status,
)
from control.scheduler.plugins.taint_toleration import first_untolerated
from control.scheduler.types import (
    HOSTNAME_LABEL,
    ZONE_LABEL,
    NodeInfo,
    PodInfo,
    compile_selector,
)

R_SKEW = "node(s) didn't match pod topology spread constraints"
R_MISSING = "node(s) didn't match pod topology spread constraints (missing required label)"
_REJECT_SKEW = Status.unschedulable(R_SKEW)
_REJECT_MISSING = Status.unresolvable(R_MISSING)

_STATE = "PodTopologySpread/filter"
_SCORE = "PodTopologySpread/score"


@dataclass(slots=True)
class Constraint:
    max_skew: int
    topology_key: str
    hard: bool
    selector: labelsmod.Selector
    min_domains: int = 1
    honor_affinity: bool = True
    honor_taints: bool = False


@dataclass
class SpreadState:
    """Per hard constraint: counts per domain, and the minimum over eligible domains."""

    constraints: list[Constraint]
    counts: list[dict[str, int]]
    domains: list[AbstractSet[str]]
    self_match: list[int]
    min_counts: list[int] = field(default_factory=list)

    def recompute_min(self) -> None:
        self.min_counts = []
        for c, counts, domains in zip(self.constraints, self.counts, self.domains, strict=True):
            if len(domains) < c.min_domains or not domains:
                self.min_counts.append(0)
            else:
                # counts only holds eligible domains, so fewer positive entries than
                # domains means some domain is empty (without walking every domain)
                positive = [n for n in counts.values() if n > 0]
                self.min_counts.append(0 if len(positive) < len(domains) else min(positive))

    def clone(self) -> SpreadState:
        return SpreadState(self.constraints, [dict(c) for c in self.counts], self.domains,
                           self.self_match, list(self.min_counts))

    def rules(self) -> list[DomainRule]:
        """The filter as rules over topology values, one per constraint in order: a node
        without the key is refused as unresolvable, a domain whose count would exceed the
        skew as unschedulable. A domain holding no matching pod always passes (its count
        0 plus at most 1 minus a minimum >= 0 never exceeds a maxSkew >= 1), so only the
        counted domains need listing."""
        return [DomainRule(c.topology_key, _REJECT_MISSING, dict.fromkeys(
            (v for v, n in counts.items() if not skew_ok(n, self_match, min_count, c.max_skew)),
            _REJECT_SKEW), None, None)
            for c, counts, self_match, min_count in zip(
                self.constraints, self.counts, self.self_match, self.min_counts, strict=True)]


def skew_ok(count: int, self_match: int, min_count: int, max_skew: int) -> bool:
    return count + self_match - min_count <= max_skew


def constraints_of(pod: PodInfo, hard: bool) -> list[Constraint]:
    out = []
    for c in pod.pod.spec.topology_spread_constraints:
        is_hard = c.when_unsatisfiable != "ScheduleAnyway"
        if is_hard != hard:
            continue
        sel = compile_selector(c.label_selector) if c.HasField("label_selector") \
            else labelsmod.nothing()
        extra = [labelsmod.Requirement(k, labelsmod.IN, (pod.labels[k],))
                 for k in c.match_label_keys if k in pod.labels]
        if extra:
            sel = sel.add(*extra)
        out.append(Constraint(
            max(c.max_skew, 1), c.topology_key, is_hard, sel,
            c.min_domains if c.HasField("min_domains") and c.min_domains > 0 else 1,
            not (c.HasField("node_affinity_policy") and c.node_affinity_policy == "Ignore"),
            c.HasField("node_taints_policy") and c.node_taints_policy == "Honor"))
    return out


def _eligible(pod: PodInfo, c: Constraint) -> Callable[[NodeInfo], bool] | None:
    """A node predicate for the policies, or None when every node is eligible."""
    matcher = required_matcher(pod.pod) if c.honor_affinity else None
    if matcher is None and not c.honor_taints:
        return None

    def ok(ni: NodeInfo) -> bool:
        if matcher is not None and not matcher(ni.name, ni.labels):
            return False
        return not (c.honor_taints and first_untolerated(ni.taints, pod.tolerations) is not None)

    return ok


def all_domains(state: CycleState, key: str) -> AbstractSet[str]:
    """Every value of ``key`` over the nodes (from the cache's position index, rebuilt
    only when nodes or their labels change)."""
    return state.snapshot.topology_positions(key)[0].keys()


def count_domains(state: CycleState, pod: PodInfo, c: Constraint
                  ) -> tuple[dict[str, int], AbstractSet[str]]:
    """(matching pods per domain, eligible domains) for one constraint. The counts come
    from the cache's incrementally kept counter (not recounted per pod), narrowed to the
    eligible domains."""
    cache = state.snapshot
    eligible = _eligible(pod, c)
    key = c.topology_key
    domains: AbstractSet[str]
    if eligible is None:
        domains = all_domains(state, key)
    else:
        domains = {v for ni in cache.node_list()
                   if (v := ni.labels.get(key)) is not None and eligible(ni)}
    raw = cache.domain_counts(pod.namespace, c.selector, key)
    counts = {v: n for v, n in raw.items() if v in domains}
    if cache.has_pod(pod.key) and not pod.terminating and c.selector.matches(pod.labels):
        # the pod itself (already placed: a what-if) is not one of the others
        ni = cache.node(cache.node_of(pod.key))
        v = ni.labels.get(key) if ni is not None else None
        if v is not None and counts.get(v, 0) > 0:
            counts[v] -= 1
            if not counts[v]:
                del counts[v]
    return counts, domains


class PodTopologySpread(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "PodTopologySpread"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        args = args or {}
        self.defaulting_type = args.get("defaultingType", "System")

    # -- filter --------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | PreFilterResult | None:
        if not pod.pod.spec.topology_spread_constraints:
            return SKIP
        cs = constraints_of(pod, hard=True)
        if not cs:
            return SKIP
        counts, domains = [], []
        for c in cs:
            cnt, dom = count_domains(state, pod, c)
            counts.append(cnt)
            domains.append(dom)
        st = SpreadState(cs, counts, domains,
                         [1 if c.selector.matches(pod.labels) else 0 for c in cs])
        st.recompute_min()
        state.data[_STATE] = st
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        st: SpreadState = state.data[_STATE]
        labels = node.labels
        for i, c in enumerate(st.constraints):
            v = labels.get(c.topology_key)
            if v is None:
                return _REJECT_MISSING
            if not skew_ok(st.counts[i].get(v, 0), st.self_match[i], st.min_counts[i],
                           c.max_skew):
                return _REJECT_SKEW
        return None

    def domain_rules(self, state: CycleState, pod: PodInfo) -> Sequence[DomainRule] | None:
        # Built per call: only find_feasible asks, once per cycle, after any add/remove.
        st: SpreadState = state.data[_STATE]
        return st.rules()

    def _update(self, state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo,
                delta: int) -> None:
        st: SpreadState | None = state.data.get(_STATE)
        if st is None or other.namespace != pod.namespace:
            return
        for i, c in enumerate(st.constraints):
            v = node.labels.get(c.topology_key)
            if v is not None and v in st.domains[i] and c.selector.matches(other.labels):
                st.counts[i][v] = max(0, st.counts[i].get(v, 0) + delta)
        st.recompute_min()

    def add_pod(self, state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo) -> None:
        self._update(state, pod, other, node, 1)

    def remove_pod(self, state: CycleState, pod: PodInfo, other: PodInfo,
                   node: NodeInfo) -> None:
        self._update(state, pod, other, node, -1)

    # -- score ---------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if pod.pod.spec.topology_spread_constraints:
            cs = constraints_of(pod, hard=False)
            if not cs:
                return SKIP
            data: list[tuple[str, dict[str, int], float]] = []
            for c in cs:
                counts, domains = count_domains(state, pod, c)
                if c.topology_key == HOSTNAME_LABEL:
                    size = len(nodes)
                else:
                    size = len(domains)
                data.append((c.topology_key, counts, math.log(size + 2)))
            state.data[_SCORE] = ("explicit", data)
            return None
        if self.defaulting_type != "System" or not pod.owner_uid:
            return SKIP
        cache = state.snapshot
        per_node = cache.owners.get(pod.owner_uid)
        if not per_node:
            return SKIP  # nothing of this owner placed yet: every node scores the same
        zones: dict[str, int] = {}
        for node_name, n in per_node.items():
            ni = cache.node(node_name)
            z = ni.labels.get(ZONE_LABEL) if ni is not None else None
            if z is not None:
                zones[z] = zones.get(z, 0) + n
        state.data[_SCORE] = ("default", (per_node, zones, math.log(len(nodes) + 2),
                                          math.log(len(zones) + 2) if zones else 0.0))
        return None

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        kind, data = state.data[_SCORE]
        raw: list[float] = []
        if kind == "default":
            per_node, zones, w_host, w_zone = data
            for ni in nodes:
                s = per_node.get(ni.name, 0) * w_host
                if zones:
                    z = ni.labels.get(ZONE_LABEL)
                    if z is not None:
                        s += zones.get(z, 0) * w_zone
                raw.append(s)
        else:
            for ni in nodes:
                s = 0.0
                for key, counts, weight in data:
                    v = ni.labels.get(key) if key != HOSTNAME_LABEL else \
                        ni.labels.get(key, ni.name)
                    if v is not None:
                        s += counts.get(v, 0) * weight
                raw.append(s)
        return spread_scores(raw)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return self.score_nodes(state, pod, [node])[0]


def spread_scores(raw: Sequence[float]) -> list[int]:
    """Kubernetes' normalisation: 100 * (max + min - s) / max (fewest pods -> 100)."""
    if not raw:
        return []
    hi, lo = max(raw), min(raw)
    if hi == 0:
        return [MAX_NODE_SCORE] * len(raw)
    return [int(MAX_NODE_SCORE * (hi + lo - s) / hi) for s in raw]
