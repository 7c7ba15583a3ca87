"""InterPodAffinity: place a pod near (affinity) or away from (anti-affinity) pods matching a
label selector, where "near" means "same value of ``topologyKey``" on their nodes.

Filter (required terms), as Kubernetes:
- existing pods' anti-affinity: a node is refused if it is in a topology domain holding a
  pod whose required anti-affinity term selects the incoming pod
  ("node(s) didn't satisfy existing pods anti-affinity rules");
- the pod's affinity: every term needs a matching pod in the node's domain; the node must
  carry the topology key. The first pod of a group that selects itself may go anywhere
  ("node(s) didn't match pod affinity rules", unresolvable);
- the pod's anti-affinity: no matching pod in the node's domain
  ("node(s) didn't match pod anti-affinity rules").

Score (preferred terms of the incoming pod): +weight per matching pod in the node's domain
for affinity, -weight for anti-affinity, min-max normalised.

The counts are computed once per pod in pre-filter from the cache's label index and its
anti-affinity groups (see cache.py), so the per-node filter is a few dict lookups.
Namespaces: the term's list, or its namespaceSelector (an empty selector means all), or the
pod's own namespace.

Args: ``hardPodAffinityWeight`` (accepted; symmetric scoring of existing pods' terms is not
implemented, see docs).

Concurrency contract: stateless; per-pod data lives in the CycleState.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from control.scheduler.framework import (
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
    normalize_min_max,
)
from control.scheduler.types import AffinityTerm, NodeInfo, PodInfo

R_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
R_AFFINITY = "node(s) didn't match pod affinity rules"
R_ANTI = "node(s) didn't match pod anti-affinity rules"
_REJECT_EXISTING = Status.unschedulable(R_EXISTING_ANTI)
_REJECT_AFFINITY = Status.unresolvable(R_AFFINITY)
_REJECT_ANTI = Status.unschedulable(R_ANTI)

_STATE = "InterPodAffinity/filter"
_SCORE = "InterPodAffinity/score"


@dataclass
class AffinityState:
    """Per-pod counts: topology key -> value -> number of pods."""

    existing_anti: dict[str, dict[str, int]] = field(default_factory=dict)
    affinity: list[tuple[AffinityTerm, dict[str, int]]] = field(default_factory=list)
    anti: list[tuple[AffinityTerm, dict[str, int]]] = field(default_factory=list)
    self_affinity_ok: bool = False

    # ``filter_node`` as DomainRules, built on first use and dropped when counts change
    rules: list[DomainRule] | None = None

    def clone(self) -> AffinityState:
        return AffinityState({k: dict(v) for k, v in self.existing_anti.items()},
                             [(t, dict(c)) for t, c in self.affinity],
                             [(t, dict(c)) for t, c in self.anti], self.self_affinity_ok)


def domain_rules(st: AffinityState) -> list[DomainRule]:
    """``filter_node``'s decision as rules over topology values, in its order: existing
    pods' anti-affinity, the pod's affinity, the pod's anti-affinity."""
    rules = []
    for key, values in st.existing_anti.items():
        rules.append(DomainRule(key, None, dict.fromkeys(
            (v for v, n in values.items() if n > 0), _REJECT_EXISTING), None, None))
    for term, counts in st.affinity:
        allowed = None if st.self_affinity_ok else {v for v, n in counts.items() if n > 0}
        rules.append(DomainRule(term.topology_key, _REJECT_AFFINITY, {}, allowed,
                                _REJECT_AFFINITY))
    for term, counts in st.anti:
        rules.append(DomainRule(term.topology_key, None, dict.fromkeys(
            (v for v, n in counts.items() if n > 0), _REJECT_ANTI), None, None))
    return rules


def _bump(counts: dict[str, int], value: str | None, delta: int) -> None:
    if value is None:
        return
    n = counts.get(value, 0) + delta
    if n > 0:
        counts[value] = n
    else:
        counts.pop(value, None)


def filter_node(st: AffinityState, node_labels: Mapping[str, str]) -> Status | None:
    """The filter decision from precomputed counts (pure; table-tested)."""
    for key, values in st.existing_anti.items():
        v = node_labels.get(key)
        if v is not None and values.get(v, 0) > 0:
            return _REJECT_EXISTING
    if st.affinity and not st.self_affinity_ok:
        for term, counts in st.affinity:
            v = node_labels.get(term.topology_key)
            if v is None or counts.get(v, 0) <= 0:
                return _REJECT_AFFINITY
    elif st.affinity:
        for term, _ in st.affinity:
            if term.topology_key not in node_labels:
                return _REJECT_AFFINITY
    for term, counts in st.anti:
        v = node_labels.get(term.topology_key)
        if v is not None and counts.get(v, 0) > 0:
            return _REJECT_ANTI
    return None


class InterPodAffinity(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "InterPodAffinity"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        self.hard_pod_affinity_weight = int((args or {}).get("hardPodAffinityWeight", 1))

    # -- filter --------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | PreFilterResult | None:
        cache = state.snapshot
        if not cache.anti_affinity_groups and not pod.required_affinity \
                and not pod.required_anti_affinity:
            return SKIP
        ns_labels = cache.namespace_labels
        st = AffinityState()
        for g in cache.anti_affinity_candidates(pod):
            if not g.term.matches(pod, ns_labels):
                continue
            key = g.term.topology_key
            values = st.existing_anti.setdefault(key, {})
            for node_name, n in g.nodes.items():
                ni = cache.node(node_name)
                if ni is not None:
                    _bump(values, ni.labels.get(key), n)
        for terms, out in ((pod.required_affinity, st.affinity),
                           (pod.required_anti_affinity, st.anti)):
            for term in terms:
                counts: dict[str, int] = {}
                for other in cache.pods_matching_term(term):
                    if other.key == pod.key:
                        continue
                    ni = cache.node(cache.node_of(other.key))
                    if ni is not None:
                        _bump(counts, ni.labels.get(term.topology_key), 1)
                out.append((term, counts))
        if st.affinity and all(not c for _, c in st.affinity):
            # No pod matches yet: the first pod of a self-selecting group may go anywhere.
            st.self_affinity_ok = all(t.matches(pod, ns_labels) for t, _ in st.affinity)
        if not st.existing_anti and not st.affinity and not st.anti:
            return SKIP
        state.data[_STATE] = st
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return filter_node(state.data[_STATE], node.labels)

    def domain_rules(self, state: CycleState, pod: PodInfo) -> Sequence[DomainRule] | None:
        st: AffinityState = state.data[_STATE]
        if st.rules is None:
            st.rules = domain_rules(st)
        return st.rules

    def _update(self, state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo,
                delta: int) -> None:
        st: AffinityState | None = state.data.get(_STATE)
        if st is None:
            return
        st.rules = None
        ns_labels = state.snapshot.namespace_labels
        for t in other.required_anti_affinity:
            if t.matches(pod, ns_labels):
                _bump(st.existing_anti.setdefault(t.topology_key, {}),
                      node.labels.get(t.topology_key), delta)
        for term, counts in (*st.affinity, *st.anti):
            if term.matches(other, ns_labels):
                _bump(counts, node.labels.get(term.topology_key), delta)

    def add_pod(self, state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo) -> None:
        self._update(state, pod, other, node, 1)

    def remove_pod(self, state: CycleState, pod: PodInfo, other: PodInfo,
                   node: NodeInfo) -> None:
        self._update(state, pod, other, node, -1)

    # -- score ---------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if not pod.preferred_affinity and not pod.preferred_anti_affinity:
            return SKIP
        cache = state.snapshot
        scores: dict[str, dict[str, int]] = {}
        for terms, sign in ((pod.preferred_affinity, 1), (pod.preferred_anti_affinity, -1)):
            for term in terms:
                per_value = scores.setdefault(term.topology_key, {})
                for other in cache.pods_matching_term(term):
                    ni = cache.node(cache.node_of(other.key))
                    v = ni.labels.get(term.topology_key) if ni is not None else None
                    if v is not None:
                        per_value[v] = per_value.get(v, 0) + sign * term.weight
        state.data[_SCORE] = scores
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        scores: dict[str, dict[str, int]] = state.data[_SCORE]
        total = 0
        for key, per_value in scores.items():
            v = node.labels.get(key)
            if v is not None:
                total += per_value.get(v, 0)
        return total

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        normalize_min_max(scores)
