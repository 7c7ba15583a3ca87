"""Node selection shared by the scheduler and the DaemonSet controller: ``nodeSelector``
and required node affinity compiled into a matcher over (node name, node labels).

- ``spec.nodeSelector``: every label must be equal.
- required ``nodeSelectorTerms``: ORed; inside a term ``matchExpressions`` and
  ``matchFields`` are ANDed; operators In, NotIn, Exists, DoesNotExist, Gt, Lt (NotIn and
  DoesNotExist match a node without the label, Gt/Lt compare integers); ``matchFields``
  supports ``metadata.name``. A term with no requirements matches nothing.

Concurrency contract: pure; matchers are plain closures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from control.api import labels as labelsmod
from control.api.pb import core_pb2

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
