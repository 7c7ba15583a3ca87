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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from control.api import labels as labelsmod
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
_OPS = {"In": labelsmod.IN, "NotIn": labelsmod.NOT_IN, "Exists": labelsmod.EXISTS,
        "DoesNotExist": labelsmod.DOES_NOT_EXIST, "Gt": labelsmod.GREATER_THAN,
        "Lt": labelsmod.LESS_THAN}

NodeMatcher = Callable[[str, Mapping[str, str]], bool]  # (node name, node labels) -> fits


def _requirements(reqs: Sequence[core_pb2.NodeSelectorRequirement]) -> list[labelsmod.Requirement] | None:
    out = []
    for r in reqs:
        op = _OPS.get(r.operator)
        if op is None:
            return None  # an unknown operator matches nothing
        if op in (labelsmod.GREATER_THAN, labelsmod.LESS_THAN):
            try:
                int(r.values[0]) if len(r.values) == 1 else int("x")
            except ValueError:
                return None
        out.append(labelsmod.Requirement(r.key, op, tuple(sorted(set(r.values)))))
    return out


def compile_term(term: core_pb2.NodeSelectorTerm) -> NodeMatcher | None:
    """A matcher for one NodeSelectorTerm, or None if it can never match."""
    if not term.match_expressions and not term.match_fields:
        return None
    exprs = _requirements(term.match_expressions)
    fields = _requirements(term.match_fields)
    if exprs is None or fields is None:
        return None
    if any(f.key != "metadata.name" for f in fields):
        return None
    sel = labelsmod.Selector(tuple(exprs))

    def match(name: str, node_labels: Mapping[str, str]) -> bool:
        if fields and not all(f.matches({"metadata.name": name}) for f in fields):
            return False
        return sel.matches(node_labels)

    return match


def compile_node_selector(sel: core_pb2.NodeSelector) -> NodeMatcher:
    """ORed terms; no terms (or none that can match) matches nothing."""
    terms = [m for m in (compile_term(t) for t in sel.node_selector_terms) if m is not None]

    def match(name: str, node_labels: Mapping[str, str]) -> bool:
        return any(t(name, node_labels) for t in terms)

    return match


def required_matcher(pod: core_pb2.Pod) -> NodeMatcher | None:
    """nodeSelector AND required node affinity; None when the pod constrains nothing."""
    spec = pod.spec
    node_selector = dict(spec.node_selector)
    aff: NodeMatcher | None = None
    if spec.HasField("affinity") and spec.affinity.HasField("node_affinity") and \
            spec.affinity.node_affinity.HasField(
                "required_during_scheduling_ignored_during_execution"):
        aff = compile_node_selector(
            spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution)
    if not node_selector and aff is None:
        return None

    def match(name: str, node_labels: Mapping[str, str]) -> bool:
        for k, v in node_selector.items():
            if node_labels.get(k) != v:
                return False
        return aff is None or aff(name, node_labels)

    return match


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
