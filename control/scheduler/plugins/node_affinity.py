"""NodeAffinity (with nodeSelector): which nodes a pod may use, and which it prefers.

- ``spec.nodeSelector``: every label must be equal.
- required ``nodeSelectorTerms``: ORed; inside a term ``matchExpressions`` and
  ``matchFields`` are ANDed; operators In, NotIn, Exists, DoesNotExist, Gt, Lt (NotIn and
  DoesNotExist match a node without the label, Gt/Lt compare integers); ``matchFields``
  supports ``metadata.name``. A term with no requirements matches nothing.
- preferred terms: the score is the sum of the weights of the matching terms, normalised
  to 0..100 by the best node.

A required affinity whose every term pins ``metadata.name In [...]`` narrows the candidate
nodes in pre-filter, as kube-scheduler does.

Concurrency contract: stateless; the compiled matcher lives in the CycleState.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from control.api.nodeaffinity import (
    NodeMatcher,
    compile_term,
    required_matcher,
)
from control.api.pb import core_pb2
from control.scheduler.framework import (
    SKIP,
    CycleState,
    FilterPlugin,
    Handle,
    PreFilterPlugin,
    PreFilterResult,
    PreScorePlugin,
    ScorePlugin,
    Status,
    normalize_max,
)
from control.scheduler.types import NodeInfo, PodInfo

REASON = "node(s) didn't match Pod's node affinity/selector"
_REJECT = Status.unresolvable(REASON)

def pinned_node_names(pod: core_pb2.Pod) -> set[str] | None:
    """Node names when every required term has ``matchFields metadata.name In [...]``."""
    spec = pod.spec
    if not (spec.HasField("affinity") and spec.affinity.HasField("node_affinity")):
        return None
    na = spec.affinity.node_affinity
    if not na.HasField("required_during_scheduling_ignored_during_execution"):
        return None
    names: set[str] = set()
    terms = na.required_during_scheduling_ignored_during_execution.node_selector_terms
    if not terms:
        return None
    for t in terms:
        pinned = [set(f.values) for f in t.match_fields
                  if f.key == "metadata.name" and f.operator == "In"]
        if not pinned:
            return None
        names |= set.intersection(*pinned)
    return names


def preferred_terms(pod: core_pb2.Pod) -> list[tuple[int, NodeMatcher]]:
    spec = pod.spec
    if not (spec.HasField("affinity") and spec.affinity.HasField("node_affinity")):
        return []
    out = []
    for p in spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution:
        m = compile_term(p.preference)
        if m is not None and p.weight:
            out.append((p.weight, m))
    return out


_STATE = "NodeAffinity/required"
_PREF = "NodeAffinity/preferred"


class NodeAffinity(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "NodeAffinity"
    node_local = True

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | PreFilterResult | None:
        m = required_matcher(pod.pod)
        if m is None:
            return SKIP
        state.data[_STATE] = m
        pinned = pinned_node_names(pod.pod)
        return PreFilterResult(pinned) if pinned is not None else None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        m: NodeMatcher = state.data[_STATE]
        return None if m(node.name, node.labels) else _REJECT

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        terms = preferred_terms(pod.pod)
        if not terms:
            return SKIP
        state.data[_PREF] = terms
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        terms: list[tuple[int, NodeMatcher]] = state.data[_PREF]
        return sum(w for w, m in terms if m(node.name, node.labels))

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        normalize_max(scores)
