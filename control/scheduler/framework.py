"""The scheduling framework: extension points, typed statuses and the per-pod pipeline.

Owns ``Status`` (Success / Unschedulable / UnschedulableAndUnresolvable / Error / Skip with
reasons), ``CycleState`` (the per-cycle scratchpad plugins pass data through), the plugin
base classes (one per extension point: queue sort, pre-filter, filter, post-filter,
pre-score, score + normalize, reserve/unreserve, pre-bind, bind), ``Framework`` (one profile's plugin
set, running them in kube-scheduler's order) and ``FitError`` (which turns the per-node
statuses into Kubernetes' "0/3 nodes are available: ..." message).

Pipeline of one scheduling cycle (``Framework.schedule``)::

    PreFilter (may skip a plugin's Filter/Score, or narrow the nodes) -> Filter over nodes
    starting at a rotating index until enough feasible nodes are found
    (percentageOfNodesToScore) -> PreScore -> Score -> NormalizeScore -> x weight -> pick the
    best (ties at random) ... and on failure: PostFilter (preemption).

Fast path conventions: ``filter`` returns ``None`` for success (no Status allocated per
node), and a score plugin may override ``score_nodes`` to score every node in one call.

Concurrency contract: ``schedule`` is synchronous and never awaits, so the cache it reads
cannot change under it: the cache is its own snapshot for the length of a cycle. Only
``pre_bind`` and ``bind`` await (the binding cycle runs as its own task, after
``reserve``).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from control.runtime.clock import Clock, RealClock
from control.scheduler.types import NodeInfo, PodInfo
from control.scheduler.volumes import VolumeStore

if TYPE_CHECKING:
    from control.scheduler.cache import Cache

MAX_NODE_SCORE = 100
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5


class Code(IntEnum):
    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    SKIP = 4


@dataclass(frozen=True, slots=True)
class Status:
    """A plugin's verdict; ``reasons`` are the user-facing texts counted in FitError."""

    code: Code
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @staticmethod
    def unschedulable(*reasons: str) -> Status:
        return Status(Code.UNSCHEDULABLE, reasons)

    @staticmethod
    def unresolvable(*reasons: str) -> Status:
        """Unschedulable and preemption cannot help (wrong labels, cordoned...)."""
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons)

    @staticmethod
    def error(message: str) -> Status:
        return Status(Code.ERROR, (message,))

    @property
    def is_success(self) -> bool:
        return self.code == Code.SUCCESS

    @property
    def is_rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)


SUCCESS = Status(Code.SUCCESS)
SKIP = Status(Code.SKIP)


@dataclass(slots=True)
class PreFilterResult:
    """A pre-filter's answer that narrows the candidates (NodeName, matchFields)."""

    node_names: set[str] | None = None


class CycleState:
    """The per-cycle scratchpad: plugins write in pre-filter/pre-score, read in filter/score.

    ``snapshot`` is the cache (read-only during the cycle). ``skip_filter`` and
    ``skip_score`` name the plugins whose pre-step said "nothing to do for this pod"."""

    __slots__ = ("data", "skip_filter", "skip_score", "snapshot")

    def __init__(self, snapshot: Cache) -> None:
        self.snapshot = snapshot
        self.data: dict[str, Any] = {}
        self.skip_filter: set[str] = set()
        self.skip_score: set[str] = set()

    def clone(self) -> CycleState:
        c = CycleState(self.snapshot)
        c.data = {k: (v.clone() if hasattr(v, "clone") else v) for k, v in self.data.items()}
        c.skip_filter = set(self.skip_filter)
        c.skip_score = set(self.skip_score)
        return c


# -- plugin interfaces ---------------------------------------------------------------------


class Plugin:
    name: ClassVar[str] = ""
    # True when the plugin's filter/score for a pod on a node depend only on that node's
    # own state and the pod's class (types.PodInfo.class_key): the framework may then
    # reuse the answer until the node changes.
    node_local: ClassVar[bool] = False


class QueueSortPlugin(Plugin):
    def sort_key(self, priority: int, timestamp: float) -> tuple[Any, ...]:
        raise NotImplementedError


class PreFilterPlugin(Plugin):
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | PreFilterResult | None:
        """None or SUCCESS to go on; SKIP to skip this plugin's filter for the pod."""
        raise NotImplementedError

    # PreFilterExtensions: keep pre-filter state right when preemption removes/adds pods.
    def add_pod(self, state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo) -> None:
        return None

    def remove_pod(self, state: CycleState, pod: PodInfo, other: PodInfo,
                   node: NodeInfo) -> None:
        return None


class DomainRule(NamedTuple):
    """One check of a filter whose verdict depends only on a node's value of
    ``topology_key``: a node without the key gets ``missing`` (None: passes this rule),
    a value in ``rejected`` gets that status, a value outside ``allowed`` (when not None)
    gets ``not_allowed``; anything else passes this rule."""

    topology_key: str
    missing: Status | None
    rejected: Mapping[str, Status]
    allowed: AbstractSet[str] | None
    not_allowed: Status | None


class FilterPlugin(Plugin):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        raise NotImplementedError

    def domain_rules(self, state: CycleState, pod: PodInfo) -> Sequence[DomainRule] | None:
        """This cycle's ``filter`` as rules over topology values, checked in order (the
        first that rejects is the verdict), so the framework need not call ``filter`` per
        node; None (the default) when the filter cannot be put that way. Must agree with
        ``filter`` on every node: tests/scheduler check both ways on random clusters."""
        return None


@dataclass(slots=True)
class PostFilterResult:
    nominated_node: str
    victims: list[PodInfo] = field(default_factory=list)


class PostFilterPlugin(Plugin):
    def post_filter(self, state: CycleState, pod: PodInfo, fw: Framework,
                    statuses: Mapping[str, Status]) -> tuple[PostFilterResult | None, str]:
        """A result (e.g. a node to nominate and pods to evict) or None, and a message."""
        raise NotImplementedError


class PreScorePlugin(Plugin):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        raise NotImplementedError


class ScorePlugin(Plugin):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        raise NotImplementedError

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        score = self.score
        return [score(state, pod, n) for n in nodes]

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None


class ReservePlugin(Plugin):
    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        raise NotImplementedError

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        return None


class PreBindPlugin(Plugin):
    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        """Prepare what the pod needs before it is bound (volumes): None or SUCCESS to go
        on; anything else fails the binding cycle (the pod is unreserved and retried)."""
        raise NotImplementedError


class BindPlugin(Plugin):
    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        """SKIP passes the pod to the next binder."""
        raise NotImplementedError


# -- helpers shared by score plugins -------------------------------------------------------


def normalize_max(scores: list[int], reverse: bool = False) -> None:
    """Kubernetes' DefaultNormalizeScore: scale to 0..100 by the maximum (reversed:
    100 - that), in place."""
    top = max(scores, default=0)
    if top == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, s in enumerate(scores):
        v = MAX_NODE_SCORE * s // top
        scores[i] = MAX_NODE_SCORE - v if reverse else v


def normalize_min_max(scores: list[int]) -> None:
    """Scale to 0..100 between the minimum and the maximum (InterPodAffinity's way)."""
    if not scores:
        return
    lo, hi = min(scores), max(scores)
    span = hi - lo
    for i, s in enumerate(scores):
        scores[i] = MAX_NODE_SCORE * (s - lo) // span if span else 0


# -- results and errors --------------------------------------------------------------------


@dataclass(slots=True)
class Diagnosis:
    node_statuses: dict[str, Status] = field(default_factory=dict)
    unschedulable_plugins: set[str] = field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""


class FitError(Exception):
    """No node fits; ``str()`` is the FailedScheduling message."""

    def __init__(self, pod: PodInfo, num_all_nodes: int, diagnosis: Diagnosis) -> None:
        self.pod = pod
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis
        super().__init__(self.message())

    def message(self) -> str:
        return fit_error_message(self.num_all_nodes, self.diagnosis)


def reason_histogram(statuses: Iterable[Status]) -> list[str]:
    """Each distinct reason prefixed by how many nodes gave it: the most common first
    (ties alphabetical), the order the issue's example shows."""
    counts: dict[str, int] = {}
    for st in statuses:
        for r in st.reasons:
            counts[r] = counts.get(r, 0) + 1
    return [f"{n} {r}" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def fit_error_message(num_all_nodes: int, d: Diagnosis) -> str:
    if num_all_nodes == 0 and not d.pre_filter_msg:
        return "no nodes available to schedule pods"
    msg = f"0/{num_all_nodes} nodes are available:"
    if d.pre_filter_msg:
        msg += f" {d.pre_filter_msg}."
    else:
        hist = reason_histogram(d.node_statuses.values())
        if hist:
            msg += " " + ", ".join(hist) + "."
    if d.post_filter_msg:
        msg += f" {d.post_filter_msg}."
    return msg


@dataclass(slots=True)
class ScheduleResult:
    node: str
    evaluated: int
    feasible: int


# -- the framework -------------------------------------------------------------------------


@dataclass
class PluginSet:
    """The enabled plugins of one profile, per extension point, in order."""

    queue_sort: QueueSortPlugin | None = None
    pre_filter: list[PreFilterPlugin] = field(default_factory=list)
    filter: list[FilterPlugin] = field(default_factory=list)
    post_filter: list[PostFilterPlugin] = field(default_factory=list)
    pre_score: list[PreScorePlugin] = field(default_factory=list)
    score: list[tuple[ScorePlugin, int]] = field(default_factory=list)
    reserve: list[ReservePlugin] = field(default_factory=list)
    pre_bind: list[PreBindPlugin] = field(default_factory=list)
    bind: list[BindPlugin] = field(default_factory=list)


def num_feasible_nodes_to_find(num_all: int, percentage: int) -> int:
    """kube-scheduler's adaptive percentageOfNodesToScore: all nodes below 100; else
    ``percentage`` (0 = 50 - nodes/125, at least 5) percent, never fewer than 100."""
    if num_all < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all
    pct = percentage
    if pct <= 0:
        pct = max(50 - num_all // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    if pct >= 100:
        return num_all
    return max(num_all * pct // 100, MIN_FEASIBLE_NODES_TO_FIND)


class Framework:
    """One profile: its scheduler name, its plugins, and the pipeline that runs them."""

    def __init__(self, scheduler_name: str, plugins: PluginSet, *,
                 percentage_of_nodes_to_score: int = 0,
                 rng: random.Random | None = None) -> None:
        self.scheduler_name = scheduler_name
        self.plugins = plugins
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        self._rng = rng or random.Random()
        self._next_start = 0
        # node name -> (generation, pod class, node-local verdict, position of the
        # rejecting filter among the pod's active filters) / (generation, key, sum, raws)
        self._filter_memo: dict[str, tuple[int, int, Status | None, int]] = {}
        self._score_memo: dict[str, tuple[int, Any, int, tuple[int, ...]]] = {}
        self._score_keys: dict[tuple[int, tuple[str, ...]], tuple[int, tuple[str, ...]]] = {}

    def plugin(self, name: str) -> Plugin | None:
        ps = self.plugins
        every: list[Plugin] = [*ps.pre_filter, *ps.filter, *ps.post_filter, *ps.pre_score,
                               *(p for p, _ in ps.score), *ps.reserve, *ps.pre_bind,
                               *ps.bind]
        if ps.queue_sort is not None:
            every.append(ps.queue_sort)
        return next((p for p in every if p.name == name), None)

    # -- pre-filter / filter -----------------------------------------------------------

    def run_pre_filter(self, state: CycleState, pod: PodInfo) -> tuple[Status | None, set[str] | None]:
        """(rejection or None, node names to restrict to or None)."""
        allowed: set[str] | None = None
        for p in self.plugins.pre_filter:
            r = p.pre_filter(state, pod)
            if r is None:
                continue
            if isinstance(r, PreFilterResult):
                if r.node_names is not None:
                    allowed = r.node_names if allowed is None else allowed & r.node_names
                continue
            if r.code == Code.SKIP:
                state.skip_filter.add(p.name)
                continue
            if r.code != Code.SUCCESS:
                return Status(r.code, r.reasons, p.name), allowed
        return None, allowed

    def filters(self, state: CycleState) -> list[tuple[str, Callable[..., Status | None]]]:
        skip = state.skip_filter
        return [(p.name, p.filter) for p in self.plugins.filter if p.name not in skip]

    def run_filters(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        """Every enabled filter on one node; the first rejection (with its plugin)."""
        for name, f in self.filters(state):
            st = f(state, pod, node)
            if st is not None and st.code != Code.SUCCESS:
                return Status(st.code, st.reasons, name)
        return None

    def run_remove_pod(self, state: CycleState, pod: PodInfo, other: PodInfo,
                       node: NodeInfo) -> None:
        for p in self.plugins.pre_filter:
            if p.name not in state.skip_filter:
                p.remove_pod(state, pod, other, node)

    def run_add_pod(self, state: CycleState, pod: PodInfo, other: PodInfo,
                    node: NodeInfo) -> None:
        for p in self.plugins.pre_filter:
            if p.name not in state.skip_filter:
                p.add_pod(state, pod, other, node)

    def find_feasible(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                      diagnosis: Diagnosis) -> tuple[list[NodeInfo], int]:
        """Filter from a rotating start until enough nodes fit; (feasible, evaluated).

        Every node gets exactly ``run_filters``' verdict (the first rejecting filter in
        profile order), computed faster:

        - the node-local filters' verdict for the pod's class is memoised on the node's
          generation: a stream of similar pods re-evaluates only the nodes that changed
          since (usually the one that got the last pod), the rest is a dict lookup;
        - a non-local filter that published ``domain_rules`` for this cycle (its verdict
          depends only on the node's values of a few topology keys) is evaluated here
          inline from those rules, without a call per node; rules that only list
          rejected values become one lookup of the node's position;
        - a non-local filter placed after the node-local filter that rejected a node is
          not run for it (the earlier rejection is the verdict anyway);
        - when one domain rule shuts out a tenth of the nodes or more (a spread
          constraint whose other zones are full), only the nodes of the admitted domains
          are visited (and that rule is not checked again on them), in
          the same rotation order; the others would be rejected anyway. Their reasons are
          then not recorded, so a pass that finds no node is redone in full."""
        n = len(nodes)
        if n == 0:
            return [], 0
        to_find = num_feasible_nodes_to_find(n, self.percentage_of_nodes_to_score)
        skip = state.skip_filter
        # Positions are in the profile's filter list (not among the pod's active
        # filters), so a memoised position means the same for every pod of the class.
        active = [(i, p) for i, p in enumerate(self.plugins.filter) if p.name not in skip]
        local = [(i, p.name, p.filter) for i, p in active if p.node_local]
        # (position, name, rules or None, filter) of the others, in profile order
        others = [(i, p.name, p.domain_rules(state, pod), p.filter)
                  for i, p in active if not p.node_local]
        start = self._next_start % n
        found = self._domain_candidates(state, nodes, others, start)
        if found is None:
            feasible, evaluated = self._filter_nodes(
                state, pod, nodes, to_find, start, None, local,
                self._block_positions(state, nodes, others), diagnosis)
        else:
            # Every candidate passes the chosen rule: checking it again per node is moot.
            positions, chosen = found
            rest = [(i, name, None if rules is None else [r for r in rules if r is not chosen],
                     f) for i, name, rules, f in others]
            rest = [o for o in rest if o[2] is None or o[2]]
            feasible, evaluated = self._filter_nodes(
                state, pod, nodes, to_find, start, positions, local,
                self._block_positions(state, nodes, rest), diagnosis)
            if not feasible:
                # The shortcut skipped nodes without recording why: a failure needs every
                # node's reason (the message, preemption), so take the full pass.
                feasible, evaluated = self._filter_nodes(
                    state, pod, nodes, to_find, start, None, local,
                    self._block_positions(state, nodes, others), diagnosis)
        self._next_start = (start + evaluated) % n
        return feasible, evaluated

    def _domain_candidates(self, state: CycleState, nodes: Sequence[NodeInfo],
                           others: Sequence[tuple[int, str, Sequence[DomainRule] | None, Any]],
                           start: int) -> tuple[list[int], DomainRule] | None:
        """Positions (in rotation order from ``start``) of the only nodes that can pass
        the most selective domain rule, and that rule, when it shuts out at least a tenth
        of the nodes; None otherwise (visit every node). Only for the cache's own node
        list, whose positions the cache indexes by topology value."""
        cache = state.snapshot
        if not others or nodes is not cache.node_list():
            return None
        n = len(nodes)
        best: tuple[int, DomainRule] | None = None
        for _, _, rules, _ in others:
            for rule in rules or ():
                by_value, missing = cache.topology_positions(rule.topology_key)
                if rule.allowed is not None:
                    count = sum(len(by_value.get(v, ())) for v in rule.allowed
                                if v not in rule.rejected)
                else:
                    count = n - len(missing) - sum(len(by_value.get(v, ()))
                                                   for v in rule.rejected)
                if rule.missing is None:
                    count += len(missing)
                if best is None or count < best[0]:
                    best = (count, rule)
        # Sorting the candidates is cheap next to visiting a node in Python: worth it as
        # soon as the rule shuts out a tenth of the nodes.
        if best is None or best[0] * 10 > n * 9:
            return None
        rule = best[1]
        by_value, missing = cache.topology_positions(rule.topology_key)
        if rule.allowed is not None:
            passing = [by_value[v] for v in rule.allowed if v in by_value and v not in rule.rejected]
        else:
            rejected = rule.rejected
            passing = [ps for v, ps in by_value.items() if v not in rejected]
        if rule.missing is None:
            passing.append(missing)
        merged = sorted(itertools.chain.from_iterable(passing))
        cut = bisect.bisect_left(merged, start)
        return merged[cut:] + merged[:cut], rule

    @staticmethod
    def _block_positions(state: CycleState, nodes: Sequence[NodeInfo],
                         others: Sequence[tuple[int, str, Sequence[DomainRule] | None, Any]],
                         ) -> list[tuple[int, str, Any, Any]]:
        """Rules that only reject listed values (anti-affinity: these hosts, that zone)
        turned into "position -> status" of the nodes they reject, from the cache's
        position index: the per-node check is then one lookup by position, whatever the
        number of rules. Others are kept as they are. Each entry of the result is
        (position, name, rules, filter) where rules may now be such a dict."""
        cache = state.snapshot
        if not others or nodes is not cache.node_list():
            return list(others)
        out: list[tuple[int, str, Any, Any]] = []
        for i, name, rules, f in others:
            if rules is not None and all(r.missing is None and r.allowed is None
                                         for r in rules):
                blocked: dict[int, Status] = {}
                # the first rejecting rule gives the status: assign in reverse order
                for r in reversed(rules):
                    by_value = cache.topology_positions(r.topology_key)[0]
                    for v, st in r.rejected.items():
                        for pos in by_value.get(v, ()):
                            blocked[pos] = st
                out.append((i, name, blocked, f))
            else:
                out.append((i, name, rules, f))
        return out

    def _filter_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                      to_find: int, start: int, positions: list[int] | None,
                      local: Sequence[tuple[int, str, Any]],
                      others: Sequence[tuple[int, str, Any, Any]],
                      diagnosis: Diagnosis) -> tuple[list[NodeInfo], int]:
        """The filter pass over ``positions`` (None: every node from ``start``); nodes
        not visited count as evaluated when they precede the last one needed."""
        n = len(nodes)
        memo = self._filter_memo
        get = memo.get
        cls = pod.class_key
        feasible: list[NodeInfo] = []
        statuses = diagnosis.node_statuses
        unschedulable_plugins = diagnosis.unschedulable_plugins
        no_local_rejection = len(self.plugins.filter)
        order: Iterable[int] = positions if positions is not None else \
            itertools.chain(range(start, n), range(start))
        # When every non-local filter is a position lookup, a node the node-local filters
        # accept needs one lookup in their union (the earliest filter's status wins);
        # a node they reject still takes the ordered loop, for the attribution.
        blocked_get = None
        if others and all(type(rules) is dict for _, _, rules, _ in others):
            union: dict[int, Status] = {}
            for _, name, rules, _ in reversed(others):
                for pos, st in rules.items():
                    union[pos] = Status(st.code, st.reasons, name)
            blocked_get = union.get
        evaluated = n
        for pos in order:
            ni = nodes[pos]
            m = get(ni.name)
            if m is not None and m[0] == ni.generation and m[1] == cls:
                verdict, at = m[2], m[3]
            else:
                verdict, at = None, no_local_rejection
                for i, name, f in local:
                    st = f(state, pod, ni)
                    if st is not None and st.code != Code.SUCCESS:
                        if st.code == Code.ERROR:
                            raise SchedulingError(f"plugin {name}: {st.message}")
                        verdict, at = Status(st.code, st.reasons, name), i
                        break
                memo[ni.name] = (ni.generation, cls, verdict, at)
            if blocked_get is not None and verdict is None:
                verdict = blocked_get(pos)
            elif others:
                labels = ni.labels
                for i, name, rules, f in others:
                    if i > at:
                        break
                    st = None
                    if type(rules) is dict:
                        st = rules.get(pos)
                    elif rules is None:
                        st = f(state, pod, ni)
                        if st is not None and st.code == Code.SUCCESS:
                            st = None
                        elif st is not None and st.code == Code.ERROR:
                            raise SchedulingError(f"plugin {name}: {st.message}")
                    else:
                        for key, missing, rejected, allowed, not_allowed in rules:
                            v = labels.get(key)
                            if v is None:
                                if missing is not None:
                                    st = missing
                                    break
                                continue
                            st = rejected.get(v)
                            if st is not None:
                                break
                            if allowed is not None and v not in allowed:
                                st = not_allowed
                                break
                    if st is not None:
                        verdict = Status(st.code, st.reasons, name)
                        break
            if verdict is None:
                feasible.append(ni)
                if len(feasible) >= to_find:
                    evaluated = (pos - start) % n + 1
                    break
            else:
                statuses[ni.name] = verdict
                unschedulable_plugins.add(verdict.plugin)
        return feasible, evaluated

    # -- score -------------------------------------------------------------------------

    def run_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """Weighted sum of the normalised scores. Node-local plugins' raw scores are
        memoised per (node generation, pod class) like the filters' verdicts; those that
        do not normalise are kept pre-summed."""
        for pre in self.plugins.pre_score:
            st = pre.pre_score(state, pod, nodes)
            if st is not None:
                if st.code == Code.SKIP:
                    state.skip_score.add(pre.name)
                elif st.code != Code.SUCCESS:
                    raise SchedulingError(f"plugin {pre.name}: {st.message}")
        active = [(p, w) for p, w in self.plugins.score if p.name not in state.skip_score]
        flat = [(p, w) for p, w in active
                if p.node_local and type(p).normalize is ScorePlugin.normalize]
        local_norm = [(p, w) for p, w in active
                      if p.node_local and type(p).normalize is not ScorePlugin.normalize]
        others = [(p, w) for p, w in active if not p.node_local]
        total = [0] * len(nodes)
        if flat or local_norm:
            key = (pod.class_key, tuple(p.name for p, _ in active if p.node_local))
            # Interned, so that the per-node check below is an identity test, not a
            # comparison of two tuples of strings (the hottest line of the score pass).
            key = self._score_keys.setdefault(key, key)
            memo = self._score_memo
            get = memo.get
            entries: list[tuple[int, object, int, tuple[int, ...]]] = []
            append = entries.append
            for ni in nodes:
                m = get(ni.name)
                if m is None or m[0] != ni.generation or m[1] is not key:
                    base = sum(p.score(state, pod, ni) * w for p, w in flat)
                    raw = tuple(p.score(state, pod, ni) for p, _ in local_norm)
                    m = memo[ni.name] = (ni.generation, key, base, raw)
                append(m)
            total = [m[2] for m in entries]
            for j, (p, w) in enumerate(local_norm):
                col = [m[3][j] for m in entries]
                if col.count(col[0]) == len(col):
                    # A constant column (e.g. no node has a PreferNoSchedule taint) normalises
                    # to a constant: normalise one value and add it, skipping the per-node pass.
                    one = [col[0]]
                    p.normalize(state, pod, one)
                    c = one[0] * w
                    if c:
                        total = [t + c for t in total]
                    continue
                p.normalize(state, pod, col)
                total = [t + v * w for t, v in zip(total, col, strict=True)]
        for p, w in others:
            scores = p.score_nodes(state, pod, nodes)
            p.normalize(state, pod, scores)
            for i, v in enumerate(scores):
                total[i] += v * w
        return total

    def select_host(self, nodes: Sequence[NodeInfo], scores: Sequence[int]) -> str:
        """The best score; ties are broken uniformly at random."""
        best = max(scores)
        ties = [i for i, s in enumerate(scores) if s == best]
        return nodes[ties[0] if len(ties) == 1 else self._rng.choice(ties)].name

    # -- the cycle ---------------------------------------------------------------------

    def schedule(self, state: CycleState, pod: PodInfo) -> ScheduleResult:
        """Pick a node for ``pod``; ``FitError`` if none fits. Synchronous (see module doc)."""
        cache = state.snapshot
        all_nodes = cache.node_list()
        diagnosis = Diagnosis()
        rejected, allowed = self.run_pre_filter(state, pod)
        if rejected is not None:
            if rejected.code == Code.ERROR:
                raise SchedulingError(f"plugin {rejected.plugin}: {rejected.message}")
            diagnosis.pre_filter_msg = rejected.message
            diagnosis.unschedulable_plugins.add(rejected.plugin)
            for ni in all_nodes:
                diagnosis.node_statuses[ni.name] = rejected
            raise FitError(pod, len(all_nodes), diagnosis)
        # The node a preemption nominated is tried first and alone: the room was made there.
        nominated = pod.pod.status.nominated_node_name
        if nominated:
            nom = cache.node(nominated)
            if nom is not None and (allowed is None or nominated in allowed) \
                    and self.run_filters(state, pod, nom) is None:
                return ScheduleResult(nominated, 1, 1)
        candidates: Sequence[NodeInfo] = all_nodes
        if allowed is not None:
            candidates = [ni for ni in all_nodes if ni.name in allowed]
            for ni in all_nodes:
                if ni.name not in allowed:
                    diagnosis.node_statuses[ni.name] = Status(
                        Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                        ("node(s) didn't satisfy plugin(s) pre-filter",), "PreFilter")
        feasible, evaluated = self.find_feasible(state, pod, candidates, diagnosis)
        if not feasible:
            raise FitError(pod, len(all_nodes), diagnosis)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated, 1)
        scores = self.run_score(state, pod, feasible)
        return ScheduleResult(self.select_host(feasible, scores), evaluated, len(feasible))

    def run_post_filter(self, state: CycleState, pod: PodInfo,
                        diagnosis: Diagnosis) -> PostFilterResult | None:
        msgs: list[str] = []
        for p in self.plugins.post_filter:
            result, msg = p.post_filter(state, pod, self, diagnosis.node_statuses)
            if msg:
                msgs.append(msg)
            if result is not None:
                diagnosis.post_filter_msg = "; ".join(msgs)
                return result
        diagnosis.post_filter_msg = "; ".join(msgs)
        return None

    def run_reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        for i, p in enumerate(self.plugins.reserve):
            st = p.reserve(state, pod, node_name)
            if st is not None and st.code != Code.SUCCESS:
                for q in reversed(self.plugins.reserve[: i + 1]):
                    q.unreserve(state, pod, node_name)
                return Status(st.code, st.reasons, p.name)
        return None

    def run_unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        for p in reversed(self.plugins.reserve):
            p.unreserve(state, pod, node_name)

    async def run_pre_bind(self, state: CycleState, pod: PodInfo,
                           node_name: str) -> Status | None:
        for p in self.plugins.pre_bind:
            st = await p.pre_bind(state, pod, node_name)
            if st is not None and st.code not in (Code.SUCCESS, Code.SKIP):
                return Status(st.code, (f'running PreBind plugin "{p.name}": {st.message}',),
                              p.name)
        return None

    async def run_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        for p in self.plugins.bind:
            st = await p.bind(state, pod, node_name)
            if st is not None and st.code == Code.SKIP:
                continue
            return st
        return Status.error("no bind plugin accepted the pod")


class SchedulingError(Exception):
    """A plugin failed (not "no fit"): the pod is retried after a backoff."""


@dataclass
class Handle:
    """What a plugin may use besides the cycle state: the API client (binder), the
    scheduler's cache (for plugins that need it outside a cycle), the storage objects the
    scheduler's informers fill (VolumeBinding) and the clock (bounded waits)."""

    client: Any = None
    cache: Cache | None = None
    volumes: VolumeStore = field(default_factory=VolumeStore)
    clock: Clock = field(default_factory=RealClock)
