"""Pure logic of the DaemonSet controller: no I/O.

- ``should_run``: Kubernetes' NodeShouldRunDaemonPod — a node fits when the template's
  nodeName (if any), nodeSelector and required node affinity match it and every
  NoSchedule/NoExecute taint is tolerated (with the tolerations every daemon pod gets);
  a pod already there may stay while no NoExecute taint is untolerated.
- ``daemon_template``: the template with those tolerations (not-ready and unreachable
  NoExecute; disk-, memory-, pid-pressure and unschedulable NoSchedule; network-unavailable
  NoSchedule with hostNetwork) and the ``controller-revision-hash`` label;
  ``pin_to_node`` replaces its required node affinity by ``metadata.name In [node]`` so
  the scheduler places it there (Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity);
  ``target_node`` reads a pod's node back (nodeName, else that affinity).
- ControllerRevisions: ``revision_hash``; ``revision_data`` / ``template_of`` come from
  control/api/revisions.py (shared with the CLI).
- ``rolling_update``: which old pods to delete and on which nodes to surge, within
  maxUnavailable / maxSurge (Kubernetes' rollingUpdate of the DaemonSet controller).
- ``count_status``: the status counts.

Concurrency contract: plain functions; safe anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from control.api import revisions
from control.api.nodeaffinity import required_matcher
from control.api.pb import core_pb2
from control.api.podutil import is_pod_available, is_pod_ready
from control.controllers import deployment_util as du
from control.controllers.taint_eviction import tolerates

REVISION_HASH_LABEL = "controller-revision-hash"
NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"

# (key, effect) of the tolerations Kubernetes adds to every daemon pod
DAEMON_TOLERATIONS: tuple[tuple[str, str], ...] = (
    ("node.kubernetes.io/not-ready", NO_EXECUTE),
    ("node.kubernetes.io/unreachable", NO_EXECUTE),
    ("node.kubernetes.io/disk-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/pid-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/unschedulable", NO_SCHEDULE),
)
NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", NO_SCHEDULE)


# -- templates ---------------------------------------------------------------------------


def _add_toleration(spec: core_pb2.PodSpec, key: str, effect: str) -> None:
    for t in spec.tolerations:
        if t.key == key and t.effect == effect and t.operator == "Exists":
            return
    spec.tolerations.add(key=key, operator="Exists", effect=effect)


def add_daemon_tolerations(spec: core_pb2.PodSpec) -> None:
    for key, effect in DAEMON_TOLERATIONS:
        _add_toleration(spec, key, effect)
    if spec.host_network:
        _add_toleration(spec, *NETWORK_UNAVAILABLE)


def revision_hash(template: core_pb2.PodTemplateSpec, collision_count: int | None = None) -> str:
    return du.compute_hash(template, collision_count)


def daemon_template(template: core_pb2.PodTemplateSpec, hash_: str) -> core_pb2.PodTemplateSpec:
    """The template pods are created from (without the node pin)."""
    out = core_pb2.PodTemplateSpec()
    out.CopyFrom(template)
    out.metadata.labels[REVISION_HASH_LABEL] = hash_
    add_daemon_tolerations(out.spec)
    return out


def pin_to_node(template: core_pb2.PodTemplateSpec, node: str) -> core_pb2.PodTemplateSpec:
    out = core_pb2.PodTemplateSpec()
    out.CopyFrom(template)
    required = out.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    del required.node_selector_terms[:]
    term = required.node_selector_terms.add()
    term.match_fields.add(key="metadata.name", operator="In", values=[node])
    return out


def target_node(pod: core_pb2.Pod) -> str:
    """The node a daemon pod is for: its nodeName, else its metadata.name affinity pin."""
    if pod.spec.node_name:
        return str(pod.spec.node_name)
    spec = pod.spec
    if not (spec.HasField("affinity") and spec.affinity.HasField("node_affinity")):
        return ""
    required = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    for term in required.node_selector_terms:
        for f in term.match_fields:
            if f.key == "metadata.name" and f.operator == "In" and len(f.values) == 1:
                return str(f.values[0])
    return ""


# -- eligibility -------------------------------------------------------------------------


def _untolerated(taints: Iterable[core_pb2.Taint], tolerations: Sequence[core_pb2.Toleration],
                 effects: set[str]) -> bool:
    return any(t.effect in effects and not any(tolerates(tol, t) for tol in tolerations)
               for t in taints)


def node_fit(template: core_pb2.PodTemplateSpec) -> Callable[[core_pb2.Node], tuple[bool, bool]]:
    """``should_run`` for one template, compiled once: node -> (should run, may stay)."""
    spec = template.spec
    matcher = required_matcher(core_pb2.Pod(spec=spec))
    tolerations = list(spec.tolerations)
    extra = core_pb2.PodSpec()
    extra.host_network = spec.host_network
    add_daemon_tolerations(extra)
    tolerations.extend(extra.tolerations)

    def fit(node: core_pb2.Node) -> tuple[bool, bool]:
        name = node.metadata.name
        if spec.node_name and spec.node_name != name:
            return False, False
        if matcher is not None and not matcher(name, node.metadata.labels):
            return False, False
        if _untolerated(node.spec.taints, tolerations, {NO_SCHEDULE, NO_EXECUTE}):
            return False, not _untolerated(node.spec.taints, tolerations, {NO_EXECUTE})
        return True, True

    return fit


def should_run(node: core_pb2.Node, template: core_pb2.PodTemplateSpec) -> tuple[bool, bool]:
    """(a daemon pod should run on ``node``, a daemon pod there may keep running)."""
    return node_fit(template)(node)


# -- revisions -----------------------------------------------------------------------------


revision_data = revisions.revision_data
template_of = revisions.template_of


# -- rolling update ------------------------------------------------------------------------


@dataclass
class NodePods:
    """A node's daemon pods split by revision (active ones: not deleting, not finished)."""

    node: str
    should_run: bool
    old: list[core_pb2.Pod] = field(default_factory=list)
    new: list[core_pb2.Pod] = field(default_factory=list)


@dataclass(frozen=True)
class UpdatePlan:
    delete: list[core_pb2.Pod]
    surge_on: list[str]


def rolling_update(nodes: Sequence[NodePods], max_surge: int, max_unavailable: int,
                   min_ready_seconds: int, now: float) -> UpdatePlan:
    """Old pods to delete and nodes to start a new pod on beside the old one."""
    def available(p: core_pb2.Pod) -> bool:
        return is_pod_available(p, min_ready_seconds, now)

    delete: list[core_pb2.Pod] = []
    surge_on: list[str] = []
    if max_surge == 0:
        unavailable = 0
        candidates: list[core_pb2.Pod] = []
        for n in nodes:
            if not n.should_run or (n.old and n.new) or not (n.old or n.new):
                continue  # mixed or empty nodes are the manage pass's business
            if not n.old:
                if not any(available(p) for p in n.new):
                    unavailable += 1  # being replaced: counts against the budget
                continue
            for p in n.old:
                if not available(p):
                    delete.append(p)  # already down: replacing it costs nothing
                else:
                    candidates.append(p)
        budget = max(0, max_unavailable - unavailable)
        candidates.sort(key=lambda p: p.spec.node_name or target_node(p))
        delete.extend(candidates[:budget])
        return UpdatePlan(delete, surge_on)
    surging = 0
    wanting: list[NodePods] = []
    for n in nodes:
        if not n.should_run or not n.old:
            continue
        if n.new:
            surging += 1
            if any(available(p) for p in n.new):
                delete.extend(n.old)  # the new pod is up: the old one goes
                surging -= 1
            continue
        if not any(available(p) for p in n.old):
            delete.extend(n.old)  # nothing to keep up on this node
        else:
            wanting.append(n)
    budget = max(0, max_surge - surging)
    surge_on = [n.node for n in sorted(wanting, key=lambda n: n.node)[:budget]]
    return UpdatePlan(delete, surge_on)


# -- status --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    desired: int
    current: int
    misscheduled: int
    ready: int
    available: int
    updated: int


def count_status(nodes: Iterable[NodePods], min_ready_seconds: int, now: float) -> Counts:
    desired = current = mis = ready = available = updated = 0
    for n in nodes:
        pods = n.new + n.old
        if n.should_run:
            desired += 1
            if not pods:
                continue
            current += 1
            if n.new:
                updated += 1
            best = n.new if n.new else n.old
            if any(is_pod_ready(p) for p in best):
                ready += 1
            if any(is_pod_available(p, min_ready_seconds, now) for p in best):
                available += 1
        elif pods:
            mis += 1
    return Counts(desired, current, mis, ready, available, updated)
