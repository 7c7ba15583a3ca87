"""The plugin registry: every plugin by name, the default profile, and building a Framework.

``REGISTRY`` maps a plugin name (Kubernetes' names) to its class; a class's extension
points are the base classes it derives from. ``DEFAULT_PLUGINS`` is kube-scheduler's default
multiPoint set with its score weights (TaintToleration 3, NodeAffinity 2,
PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1,
NodeResourcesBalancedAllocation 1), in kube's order, which is also the order filters run
and therefore which plugin a node's rejection is attributed to.

Concurrency contract: module-level constants; ``build_framework`` is pure construction.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from control.scheduler.framework import (
    BindPlugin,
    FilterPlugin,
    Framework,
    Handle,
    Plugin,
    PluginSet,
    PostFilterPlugin,
    PreBindPlugin,
    PreFilterPlugin,
    PreScorePlugin,
    QueueSortPlugin,
    ReservePlugin,
    ScorePlugin,
)
from control.scheduler.plugins.balanced_allocation import NodeResourcesBalancedAllocation
from control.scheduler.plugins.default_binder import DefaultBinder
from control.scheduler.plugins.default_preemption import DefaultPreemption
from control.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from control.scheduler.plugins.node_affinity import NodeAffinity
from control.scheduler.plugins.node_name import NodeName
from control.scheduler.plugins.node_ports import NodePorts
from control.scheduler.plugins.node_resources_fit import NodeResourcesFit
from control.scheduler.plugins.node_unschedulable import NodeUnschedulable
from control.scheduler.plugins.pod_topology_spread import PodTopologySpread
from control.scheduler.plugins.priority_sort import PrioritySort
from control.scheduler.plugins.taint_toleration import TaintToleration
from control.scheduler.plugins.volume_binding import VolumeBinding

PluginFactory = type[Plugin]

REGISTRY: dict[str, PluginFactory] = {
    cls.name: cls
    for cls in (
        PrioritySort, NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
        NodeResourcesFit, VolumeBinding, PodTopologySpread, InterPodAffinity,
        NodeResourcesBalancedAllocation, DefaultPreemption, DefaultBinder,
    )
}

# (name, score weight) of kube-scheduler's default multiPoint plugins, in its order.
DEFAULT_PLUGINS: tuple[tuple[str, int], ...] = (
    ("PrioritySort", 0),
    ("NodeUnschedulable", 0),
    ("NodeName", 0),
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodePorts", 0),
    ("NodeResourcesFit", 1),
    ("VolumeBinding", 0),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("DefaultPreemption", 0),
    ("NodeResourcesBalancedAllocation", 1),
    ("DefaultBinder", 0),
)

# extension point (KubeSchedulerConfiguration's key) -> the interface a plugin needs
EXTENSION_POINTS: dict[str, type[Plugin]] = {
    "queueSort": QueueSortPlugin,
    "preFilter": PreFilterPlugin,
    "filter": FilterPlugin,
    "postFilter": PostFilterPlugin,
    "preScore": PreScorePlugin,
    "score": ScorePlugin,
    "reserve": ReservePlugin,
    "preBind": PreBindPlugin,
    "bind": BindPlugin,
}
# Points Kubernetes has that no Flotilla plugin implements yet: accepted when empty.
UNSUPPORTED_POINTS = ("permit", "postBind", "preEnqueue")


class ConfigError(ValueError):
    """A scheduler configuration that cannot be built (names the offending part)."""


def points_of(cls: type[Plugin]) -> list[str]:
    return [p for p, iface in EXTENSION_POINTS.items() if issubclass(cls, iface)]


def build_framework(
    scheduler_name: str,
    enabled: Mapping[str, list[tuple[str, int]]],
    plugin_args: Mapping[str, Mapping[str, Any]],
    handle: Handle,
    *,
    percentage_of_nodes_to_score: int = 0,
    rng: random.Random | None = None,
) -> Framework:
    """A Framework from per-point lists of (plugin name, weight); one instance per plugin."""
    instances: dict[str, Plugin] = {}

    def get(name: str) -> Plugin:
        p = instances.get(name)
        if p is None:
            cls = REGISTRY.get(name)
            if cls is None:
                raise ConfigError(f"profile {scheduler_name!r}: unknown plugin {name!r} "
                                  f"(known: {', '.join(sorted(REGISTRY))})")
            try:
                p = cls(plugin_args.get(name) or {}, handle)  # type: ignore[call-arg]
            except (ValueError, TypeError, KeyError) as e:
                raise ConfigError(f"profile {scheduler_name!r}: plugin {name}: {e}") from None
            instances[name] = p
        return p

    ps = PluginSet()
    for point, entries in enabled.items():
        iface = EXTENSION_POINTS[point]
        for name, weight in entries:
            p = get(name)
            if not isinstance(p, iface):
                raise ConfigError(f"profile {scheduler_name!r}: plugin {name} does not "
                                  f"implement the {point} extension point")
            if point == "queueSort":
                if ps.queue_sort is not None:
                    raise ConfigError(f"profile {scheduler_name!r}: only one queueSort plugin "
                                      "may be enabled")
                ps.queue_sort = p  # type: ignore[assignment]
            elif point == "score":
                ps.score.append((p, weight or 1))  # type: ignore[arg-type]
            else:
                getattr(ps, _FIELD[point]).append(p)
    if not ps.bind:
        raise ConfigError(f"profile {scheduler_name!r}: at least one bind plugin is required")
    return Framework(scheduler_name, ps,
                     percentage_of_nodes_to_score=percentage_of_nodes_to_score, rng=rng)


_FIELD = {"preFilter": "pre_filter", "filter": "filter", "postFilter": "post_filter",
          "preScore": "pre_score", "reserve": "reserve", "preBind": "pre_bind",
          "bind": "bind"}
