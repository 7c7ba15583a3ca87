"""The scheduler's cache: nodes, the pods placed on them, and the indexes plugins query.

Owns the ``NodeInfo`` of every node and the state of every pod that holds resources on a
node: *bound* (the informer showed it with ``spec.nodeName``) or *assumed* (we chose a node
and the bind is in flight). Kubernetes' life cycle of an assumed pod::

    assume (scheduling cycle picked a node) -> finish_binding (bind RPC returned; a TTL
    starts) -> confirmed by the informer's ADD/UPDATE with the node  -- or --
    forget (bind failed)  -- or --  expired (TTL passed without the informer showing it)

so back-to-back pods see each other's requests before the watch catches up, and a bind
whose result never arrives does not hold resources forever.

Indexes kept incrementally (so no plugin scans every pod for every pod):
- labels: (namespace, key, value) -> pod keys, and namespace -> pod keys: candidates for a
  label selector come from its most selective exact-match term;
- controller owner uid -> node -> count (default spreading of a ReplicaSet's pods);
- required anti-affinity terms grouped by their canonical text -> node -> count: replicas of
  one template share one group, so "does any existing pod's anti-affinity forbid this
  pod?" costs one selector match per distinct term, not one per existing pod - and only
  for the groups whose exact-match label the pod carries (groups indexed by it);
- node-list positions by topology value (``topology_positions``), and topology spread's
  matching-pod counts per (namespace, selector, topology key) (``domain_counts``: counted
  once, then updated as pods are placed and removed, through an index of the counters by
  the label their selector needs) - both rebuilt when the node list or a node's labels
  change;
- node order with zones interleaved (kube's NodeTree), rebuilt only when nodes come or go.

Concurrency contract: event loop only, no awaits; every method is atomic. The scheduling
cycle reads the cache directly without a snapshot copy because it does not await.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from control.api import labels as labelsmod
from control.api.pb import core_pb2
from control.runtime.clock import Clock, RealClock
from control.scheduler.types import ZONE_LABEL, AffinityTerm, NodeInfo, PodInfo

log = structlog.get_logger(__name__, component="scheduler-cache")

K = TypeVar("K")

DEFAULT_ASSUME_TTL = 30.0


@dataclass(slots=True)
class _PodState:
    info: PodInfo
    node: str
    assumed: bool = False
    binding_finished: bool = False
    deadline: float = 0.0


@dataclass(slots=True)
class AntiAffinityGroup:
    """Existing pods sharing one required anti-affinity term, counted per node."""

    term: AffinityTerm
    nodes: dict[str, int] = field(default_factory=dict)
    # the (key, value) pairs a pod needs one of to be selected (from the selector's
    # first exact-match requirement); empty: no such requirement, always a candidate
    index_keys: tuple[tuple[str, str], ...] = ()


def _index_keys(term: AffinityTerm) -> tuple[tuple[str, str], ...]:
    return _selector_index_keys(term.selector)


def _selector_index_keys(sel: labelsmod.Selector) -> tuple[tuple[str, str], ...]:
    for r in sel.requirements:
        vals = labelsmod.exact_match_values(sel, r.key)
        if vals is not None:
            return tuple((r.key, v) for v in sorted(vals))
    return ()


@dataclass(slots=True)
class DomainCounter:
    """Placed, non-terminating pods of one namespace matching one selector, counted per
    value of one topology key of their node (nodes without the key are not counted)."""

    namespace: str
    selector: labelsmod.Selector
    topology_key: str
    counts: dict[str, int] = field(default_factory=dict)
    index_keys: tuple[tuple[str, str], ...] = ()


MAX_DOMAIN_COUNTERS = 4096


class Cache:
    """See the module docstring."""

    def __init__(self, clock: Clock | None = None, assume_ttl: float = DEFAULT_ASSUME_TTL) -> None:
        self._clock = clock or RealClock()
        self.assume_ttl = assume_ttl
        self._nodes: dict[str, NodeInfo] = {}
        self._node_list: list[NodeInfo] | None = None
        self._pods: dict[str, _PodState] = {}
        self._label_index: dict[tuple[str, str, str], set[str]] = {}
        self._ns_index: dict[str, set[str]] = {}
        self.owners: dict[str, dict[str, int]] = {}
        self.anti_affinity_groups: dict[str, AntiAffinityGroup] = {}
        # (label key, value) -> signatures of the groups whose term needs that label;
        # the groups that need no particular label are in _anti_affinity_any
        self._anti_affinity_by_label: dict[tuple[str, str], set[str]] = {}
        self._anti_affinity_any: set[str] = set()
        self.namespace_labels: dict[str, dict[str, str]] = {}
        # Counts of pods with any (anti-)affinity term, so plugins can skip their work.
        self.pods_with_affinity = 0
        # Bumped on every node add/update/remove: plugins memoise node-derived data on it.
        self.node_generation = 0
        # topology key -> (value -> ascending positions in node_list(), positions of the
        # nodes without the key); valid until the node list or a node's labels change
        self._positions: dict[str, tuple[dict[str, list[int]], list[int]]] = {}
        # Topology spread's counts, kept up to date as pods are placed and removed:
        # (namespace, selector, key) -> counter; (namespace, label key, value) -> the
        # counters whose selector needs that label; per namespace, the others.
        self._counters: dict[tuple[str, labelsmod.Selector, str], DomainCounter] = {}
        self._counters_by_label: dict[tuple[str, str, str], list[DomainCounter]] = {}
        self._counters_any: dict[str, list[DomainCounter]] = {}

    # -- nodes -------------------------------------------------------------------------

    def add_node(self, node: core_pb2.Node) -> NodeInfo:
        self.node_generation += 1
        name = node.metadata.name
        ni = self._nodes.get(name)
        if ni is None:
            ni = NodeInfo(node)
            self._nodes[name] = ni
            self._node_list = None
        else:
            was_placeholder = ni.node is None
            zone_changed = ni.labels.get(ZONE_LABEL) != node.metadata.labels.get(ZONE_LABEL)
            if ni.labels != dict(node.metadata.labels):
                self._topology_changed()
            ni.set_node(node)
            if was_placeholder or zone_changed:
                self._node_list = None
        return ni

    update_node = add_node

    def remove_node(self, name: str) -> None:
        ni = self._nodes.get(name)
        if ni is None:
            return
        self.node_generation += 1
        if ni.pods:
            # Pods still bound here are gone from our point of view only when their own
            # delete arrives; keep them on a placeholder so their resources stay counted.
            ni.node = None
        else:
            del self._nodes[name]
        self._node_list = None

    def node(self, name: str) -> NodeInfo | None:
        ni = self._nodes.get(name)
        return ni if ni is not None and ni.node is not None else None

    def node_list(self) -> list[NodeInfo]:
        """Every real node, zones interleaved (so a prefix of the list spans zones)."""
        if self._node_list is None:
            zones: dict[str, list[NodeInfo]] = {}
            for ni in self._nodes.values():
                if ni.node is not None:
                    zones.setdefault(ni.labels.get(ZONE_LABEL, ""), []).append(ni)
            groups = list(zones.values())
            out: list[NodeInfo] = []
            i = 0
            while groups:
                groups = [g for g in groups if i < len(g)]
                out.extend(g[i] for g in groups)
                i += 1
            self._node_list = out
            self._topology_changed()
        return self._node_list

    def _topology_changed(self) -> None:
        """A node's labels or the set of nodes changed: what is derived from them is
        rebuilt on next use."""
        self._positions.clear()
        self._counters.clear()
        self._counters_by_label.clear()
        self._counters_any.clear()

    def domain_counts(self, namespace: str, selector: labelsmod.Selector,
                      key: str) -> Mapping[str, int]:
        """Placed, non-terminating pods of ``namespace`` matching ``selector`` per value
        of their node's ``key`` (Kubernetes' topology spread counts before its policies
        narrow the domains). Counted once from the label index, then updated as pods are
        placed and removed; read-only for the caller."""
        if self._node_list is None:
            self.node_list()  # a pending rebuild drops every counter: do it first
        ck = (namespace, selector, key)
        c = self._counters.get(ck)
        if c is not None:
            return c.counts
        if len(self._counters) >= MAX_DOMAIN_COUNTERS:
            self._topology_changed()
        c = DomainCounter(namespace, selector, key, index_keys=_selector_index_keys(selector))
        for other in self.pods_matching(selector, (namespace,)):
            if not other.terminating:
                ni = self.node(self.node_of(other.key))
                v = ni.labels.get(key) if ni is not None else None
                if v is not None:
                    c.counts[v] = c.counts.get(v, 0) + 1
        self._counters[ck] = c
        if selector.is_nothing:
            pass  # nothing to keep up to date
        elif c.index_keys:
            for k, v in c.index_keys:
                self._counters_by_label.setdefault((namespace, k, v), []).append(c)
        else:
            self._counters_any.setdefault(namespace, []).append(c)
        return c.counts

    def _count(self, pi: PodInfo, node: str, delta: int) -> None:
        if not self._counters or pi.terminating:
            return
        ni = self.node(node)
        if ni is None:
            return
        ns = pi.namespace
        seen: list[DomainCounter] = []
        cands = list(self._counters_any.get(ns, ()))
        for lk, lv in pi.labels.items():
            cands.extend(self._counters_by_label.get((ns, lk, lv), ()))
        for c in cands:
            if any(c is d for d in seen) or not c.selector.matches(pi.labels):
                continue
            seen.append(c)
            v = ni.labels.get(c.topology_key)
            if v is not None:
                n = c.counts.get(v, 0) + delta
                if n > 0:
                    c.counts[v] = n
                else:
                    c.counts.pop(v, None)

    def topology_positions(self, key: str) -> tuple[dict[str, list[int]], list[int]]:
        """Where each value of ``key`` sits in ``node_list()``: value -> ascending
        positions, and the positions of the nodes without the key. Built once per node
        list and label state, so a filter whose verdict depends on a node's domain can
        visit only the nodes of the domains it admits."""
        nodes = self.node_list()
        got = self._positions.get(key)
        if got is None:
            by_value: dict[str, list[int]] = {}
            missing: list[int] = []
            for i, ni in enumerate(nodes):
                v = ni.labels.get(key)
                if v is None:
                    missing.append(i)
                else:
                    by_value.setdefault(v, []).append(i)
            got = self._positions[key] = (by_value, missing)
        return got

    @property
    def node_count(self) -> int:
        return len(self.node_list())

    # -- namespaces --------------------------------------------------------------------

    def set_namespace(self, ns: core_pb2.Namespace) -> None:
        self.namespace_labels[ns.metadata.name] = dict(ns.metadata.labels)

    def remove_namespace(self, name: str) -> None:
        self.namespace_labels.pop(name, None)

    # -- pods --------------------------------------------------------------------------

    def assume(self, pi: PodInfo, node: str) -> None:
        """Count ``pi`` on ``node`` before the bind has happened."""
        if pi.key in self._pods:
            raise ValueError(f"pod {pi.key} is already in the cache")
        self._place(pi, node)
        self._pods[pi.key] = _PodState(pi, node, assumed=True)

    def finish_binding(self, key: str) -> None:
        st = self._pods.get(key)
        if st is not None and st.assumed:
            st.binding_finished = True
            st.deadline = self._clock.monotonic() + self.assume_ttl

    def forget(self, key: str) -> None:
        """The bind failed: give the assumed pod's room back."""
        st = self._pods.get(key)
        if st is not None and st.assumed:
            self._unplace(st.info, st.node)
            del self._pods[key]

    def is_assumed(self, key: str) -> bool:
        st = self._pods.get(key)
        return st is not None and st.assumed

    def has_pod(self, key: str) -> bool:
        return key in self._pods

    def add_pod(self, pi: PodInfo) -> None:
        """A pod the informer shows bound to ``pi.node_name`` (confirms an assumption)."""
        st = self._pods.get(pi.key)
        if st is not None:
            if st.assumed and st.info.uid != pi.uid:
                log.info("assumed pod replaced by another of the same name", pod=pi.key)
            self._unplace(st.info, st.node)
        self._place(pi, pi.node_name)
        self._pods[pi.key] = _PodState(pi, pi.node_name)

    update_pod = add_pod

    def confirm(self, pod: core_pb2.Pod, previous_version: str) -> bool:
        """Confirm our own assumption cheaply: ``pod`` is the informer's view of a pod we
        assumed, bound to the node we assumed, and its previous version (``previous_version``
        is the informer's resourceVersion before this update) is the very object we
        scheduled, so the update is our binding (nodeName + PodScheduled) and nothing a
        plugin reads changed. The assumed PodInfo is kept (no re-placement, so the node's
        generation - and the plugins' memos of it - stay valid). False: not that case, the
        caller does the full ``update_pod``."""
        m = pod.metadata
        st = self._pods.get(f"{m.namespace}/{m.name}")
        if st is None or not st.assumed or st.node != pod.spec.node_name:
            return False
        info = st.info
        old = info.pod.metadata
        if old.uid != m.uid or old.resource_version != previous_version \
                or m.HasField("deletion_timestamp"):
            return False
        info.pod = pod
        info.node_name = st.node
        st.assumed = False
        st.binding_finished = False
        return True

    def remove_pod(self, key: str) -> PodInfo | None:
        st = self._pods.pop(key, None)
        if st is None:
            return None
        self._unplace(st.info, st.node)
        return st.info

    def cleanup_expired(self) -> list[str]:
        """Drop assumptions whose bind finished longer than the TTL ago and never showed up."""
        now = self._clock.monotonic()
        expired = [k for k, st in self._pods.items()
                   if st.assumed and st.binding_finished and st.deadline <= now]
        for k in expired:
            log.warning("assumed pod expired: its binding never showed up", pod=k)
            self.remove_pod(k)
        return expired

    def pod(self, key: str) -> PodInfo | None:
        st = self._pods.get(key)
        return st.info if st is not None else None

    def pod_count(self) -> int:
        return len(self._pods)

    def assumed_count(self) -> int:
        return sum(1 for st in self._pods.values() if st.assumed)

    def _place(self, pi: PodInfo, node: str) -> None:
        ni = self._nodes.get(node)
        if ni is None:
            # The pod's node has not arrived yet (or is gone): account on a placeholder.
            ni = NodeInfo(name=node)
            self._nodes[node] = ni
        ni.add_pod(pi)
        self._count(pi, node, 1)
        key = pi.key
        ns = pi.namespace
        self._ns_index.setdefault(ns, set()).add(key)
        li = self._label_index
        for k, v in pi.labels.items():
            li.setdefault((ns, k, v), set()).add(key)
        if pi.owner_uid:
            per_node = self.owners.setdefault(pi.owner_uid, {})
            per_node[node] = per_node.get(node, 0) + 1
        if pi.has_affinity:
            self.pods_with_affinity += 1
        for t in pi.required_anti_affinity:
            g = self.anti_affinity_groups.get(t.signature)
            if g is None:
                g = self.anti_affinity_groups[t.signature] = AntiAffinityGroup(
                    t, index_keys=_index_keys(t))
                if t.selector.is_nothing:
                    pass  # selects no pod: never a candidate
                elif g.index_keys:
                    for lk in g.index_keys:
                        self._anti_affinity_by_label.setdefault(lk, set()).add(t.signature)
                else:
                    self._anti_affinity_any.add(t.signature)
            g.nodes[node] = g.nodes.get(node, 0) + 1

    def _unplace(self, pi: PodInfo, node: str) -> None:
        self._count(pi, node, -1)
        ni = self._nodes.get(node)
        if ni is not None:
            ni.remove_pod(pi.key)
            if ni.node is None and not ni.pods:
                del self._nodes[node]
                self._node_list = None
        key = pi.key
        ns = pi.namespace
        _discard(self._ns_index, ns, key)
        for k, v in pi.labels.items():
            _discard(self._label_index, (ns, k, v), key)
        if pi.owner_uid:
            per_node = self.owners.get(pi.owner_uid)
            if per_node is not None:
                _decrement(per_node, node)
                if not per_node:
                    del self.owners[pi.owner_uid]
        if pi.has_affinity:
            self.pods_with_affinity -= 1
        for t in pi.required_anti_affinity:
            g = self.anti_affinity_groups.get(t.signature)
            if g is not None:
                _decrement(g.nodes, node)
                if not g.nodes:
                    del self.anti_affinity_groups[t.signature]
                    for lk in g.index_keys:
                        _discard(self._anti_affinity_by_label, lk, t.signature)
                    self._anti_affinity_any.discard(t.signature)

    # -- queries for plugins -----------------------------------------------------------

    def anti_affinity_candidates(self, pi: PodInfo) -> Iterator[AntiAffinityGroup]:
        """The groups whose term may select ``pi`` (a superset: callers still match the
        term), found through the groups' exact-match labels instead of trying every
        group."""
        by_label = self._anti_affinity_by_label
        seen: set[str] = set()
        groups = self.anti_affinity_groups
        for sig in self._anti_affinity_any:
            seen.add(sig)
            yield groups[sig]
        for kv in pi.labels.items():
            for sig in by_label.get(kv, ()):
                if sig not in seen:
                    seen.add(sig)
                    yield groups[sig]

    def pods_matching(self, selector: labelsmod.Selector, namespaces: Iterable[str] | None,
                      ) -> Iterator[PodInfo]:
        """Placed pods in ``namespaces`` (None: all) whose labels match ``selector``, found
        through the label index when the selector has an exact-match term."""
        if selector.is_nothing:
            return
        ns_list = list(self._ns_index) if namespaces is None else list(namespaces)
        exact: list[tuple[str, frozenset[str]]] = []
        for r in selector.requirements:
            vals = labelsmod.exact_match_values(selector, r.key)
            if vals is not None:
                exact.append((r.key, vals))
        pods = self._pods
        for ns in ns_list:
            keys: Iterable[str]
            if exact:
                best: set[str] | None = None
                for k, vals in exact:
                    cand: set[str] = set()
                    for v in vals:
                        cand |= self._label_index.get((ns, k, v), set())
                    if best is None or len(cand) < len(best):
                        best = cand
                keys = best or ()
            else:
                keys = self._ns_index.get(ns, ())
            for key in list(keys):
                st = pods.get(key)
                if st is not None and selector.matches(st.info.labels):
                    yield st.info

    def pods_matching_term(self, term: AffinityTerm) -> Iterator[PodInfo]:
        """Placed pods an affinity term selects (namespaces or namespace selector)."""
        if term.namespace_selector is None:
            namespaces: set[str] | None = set(term.namespaces)
        elif term.namespace_selector.empty():
            namespaces = None
        else:
            sel = term.namespace_selector
            namespaces = set(term.namespaces) | {
                n for n, lab in self.namespace_labels.items() if sel.matches(lab)}
        return self.pods_matching(term.selector, namespaces)

    def node_of(self, pod_key: str) -> str:
        st = self._pods.get(pod_key)
        return st.node if st is not None else ""

    def nodes_by_name(self) -> Mapping[str, NodeInfo]:
        return self._nodes


def _discard(index: dict[K, set[str]], key: K, value: str) -> None:
    s = index.get(key)
    if s is not None:
        s.discard(value)
        if not s:
            del index[key]


def _decrement(counts: dict[str, int], key: str) -> None:
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
