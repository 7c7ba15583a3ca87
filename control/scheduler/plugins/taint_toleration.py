"""TaintToleration: a node's NoSchedule and NoExecute taints keep out pods that do not
tolerate them; PreferNoSchedule taints only lower the score (fewer untolerated ones is
better).

Tolerations match as Kubernetes' ToleratesTaint: an empty effect tolerates every effect,
an empty key with ``Exists`` tolerates every taint, ``Equal`` (the default) compares values.

Concurrency contract: stateless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from control.scheduler.framework import (
    CycleState,
    FilterPlugin,
    Handle,
    ScorePlugin,
    Status,
    normalize_max,
)
from control.scheduler.types import NodeInfo, PodInfo, TaintInfo, TolerationInfo

NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"
PREFER_NO_SCHEDULE = "PreferNoSchedule"


def first_untolerated(taints: Iterable[TaintInfo],
                      tolerations: Sequence[TolerationInfo]) -> TaintInfo | None:
    """The first NoSchedule/NoExecute taint no toleration covers."""
    for t in taints:
        if t.effect not in (NO_SCHEDULE, NO_EXECUTE):
            continue
        if not any(tol.tolerates(t.key, t.value, t.effect) for tol in tolerations):
            return t
    return None


def count_intolerable_prefer(taints: Iterable[TaintInfo],
                             tolerations: Sequence[TolerationInfo]) -> int:
    prefs = [tol for tol in tolerations if tol.effect in ("", PREFER_NO_SCHEDULE)]
    return sum(1 for t in taints if t.effect == PREFER_NO_SCHEDULE
               and not any(tol.tolerates(t.key, t.value, t.effect) for tol in prefs))


class TaintToleration(FilterPlugin, ScorePlugin):
    name = "TaintToleration"
    node_local = True

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.taints:
            return None
        t = first_untolerated(node.taints, pod.tolerations)
        if t is None:
            return None
        return Status.unresolvable(f"node(s) had untolerated taint {{{t.key}: {t.value}}}")

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if not node.taints:
            return 0
        return count_intolerable_prefer(node.taints, pod.tolerations)

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        normalize_max(scores, reverse=True)
