"""``--scheduler-config FILE``: Kubernetes' KubeSchedulerConfiguration, the parts we honour.

::

    apiVersion: kubescheduler.config.k8s.io/v1
    kind: KubeSchedulerConfiguration
    percentageOfNodesToScore: 0          # 0: adaptive (50% - nodes/125, at least 5%)
    podInitialBackoffSeconds: 1
    podMaxBackoffSeconds: 10
    profiles:
    - schedulerName: default-scheduler
      plugins:
        multiPoint: {enabled: [{name: X, weight: 2}], disabled: [{name: "*"}]}
        score:      {enabled: [...], disabled: [...]}
        filter: ...   (queueSort, preFilter, filter, postFilter, preScore, score, reserve, bind)
      pluginConfig:
      - name: NodeResourcesFit
        args: {scoringStrategy: {type: MostAllocated}}

Resolution follows kube-scheduler: each point starts from the (default or configured)
multiPoint plugins that implement it; the point's ``disabled`` removes names (``"*"``: all
of them), its ``enabled`` appends (or overrides the weight of) explicit entries. An unknown
field, plugin or extension point is an error naming it, never silently ignored.

Concurrency contract: pure functions (file I/O only in ``load``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from control.scheduler.registry import (
    DEFAULT_PLUGINS,
    EXTENSION_POINTS,
    REGISTRY,
    UNSUPPORTED_POINTS,
    ConfigError,
    points_of,
)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
API_VERSIONS = ("kubescheduler.config.k8s.io/v1", "kubescheduler.config.k8s.io/v1beta3")

_TOP_FIELDS = {"apiVersion", "kind", "profiles", "percentageOfNodesToScore",
               "podInitialBackoffSeconds", "podMaxBackoffSeconds", "parallelism",
               "leaderElection", "clientConnection", "extenders"}
_PROFILE_FIELDS = {"schedulerName", "plugins", "pluginConfig", "percentageOfNodesToScore"}


@dataclass
class ProfileConfig:
    scheduler_name: str
    # extension point -> [(plugin, weight)], resolved
    plugins: dict[str, list[tuple[str, int]]]
    plugin_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    percentage_of_nodes_to_score: int | None = None


@dataclass
class SchedulerConfig:
    profiles: list[ProfileConfig]
    percentage_of_nodes_to_score: int = 0
    pod_initial_backoff_seconds: float = 1.0
    pod_max_backoff_seconds: float = 10.0


def _entries(node: Any, where: str) -> list[tuple[str, int]]:
    if node is None:
        return []
    if not isinstance(node, list):
        raise ConfigError(f"{where}: expected a list of {{name, weight}}")
    out = []
    for i, e in enumerate(node):
        if not isinstance(e, Mapping) or "name" not in e:
            raise ConfigError(f"{where}[{i}]: expected {{name: ..., weight: ...}}")
        extra = set(e) - {"name", "weight"}
        if extra:
            raise ConfigError(f"{where}[{i}]: unknown field(s) {', '.join(sorted(extra))}")
        name = str(e["name"])
        if name != "*" and name not in REGISTRY:
            raise ConfigError(f"{where}[{i}]: unknown plugin {name!r} "
                              f"(known: {', '.join(sorted(REGISTRY))})")
        out.append((name, int(e.get("weight") or 0)))
    return out


def resolve_plugins(plugins: Mapping[str, Any] | None, where: str = "plugins"
                    ) -> dict[str, list[tuple[str, int]]]:
    """Per extension point, the enabled (plugin, weight) list (see the module docstring)."""
    plugins = dict(plugins or {})
    for point in plugins:
        if point != "multiPoint" and point not in EXTENSION_POINTS \
                and point not in UNSUPPORTED_POINTS:
            raise ConfigError(f"{where}: unknown extension point {point!r}")

    def section(point: str) -> tuple[list[tuple[str, int]], set[str]]:
        sec = plugins.get(point) or {}
        if not isinstance(sec, Mapping):
            raise ConfigError(f"{where}.{point}: expected enabled/disabled lists")
        extra = set(sec) - {"enabled", "disabled"}
        if extra:
            raise ConfigError(f"{where}.{point}: unknown field(s) {', '.join(sorted(extra))}")
        enabled = _entries(sec.get("enabled"), f"{where}.{point}.enabled")
        disabled = {n for n, _ in _entries(sec.get("disabled"), f"{where}.{point}.disabled")}
        if point in UNSUPPORTED_POINTS and enabled:
            raise ConfigError(f"{where}.{point}: no plugin implements this extension point yet")
        return enabled, disabled

    mp_enabled, mp_disabled = section("multiPoint")
    multi: list[tuple[str, int]] = [] if "*" in mp_disabled else \
        [(n, w) for n, w in DEFAULT_PLUGINS if n not in mp_disabled]
    for name, weight in mp_enabled:
        multi = [(n, w) for n, w in multi if n != name] + [(name, weight)]

    out: dict[str, list[tuple[str, int]]] = {}
    for point in EXTENSION_POINTS:
        enabled, disabled = section(point)
        base = [] if "*" in disabled else \
            [(n, w) for n, w in multi if n not in disabled and point in points_of(REGISTRY[n])]
        for name, weight in enabled:
            if point not in points_of(REGISTRY[name]):
                raise ConfigError(f"{where}.{point}.enabled: plugin {name} does not implement "
                                  f"{point}")
            old = next((w for n, w in base if n == name), 0)
            base = [(n, w) for n, w in base if n != name] + [(name, weight or old)]
        out[point] = base
    for point in UNSUPPORTED_POINTS:
        section(point)
    return out


def default_config() -> SchedulerConfig:
    return SchedulerConfig([ProfileConfig(DEFAULT_SCHEDULER_NAME, resolve_plugins(None))])


def parse(doc: Mapping[str, Any] | None) -> SchedulerConfig:
    """A SchedulerConfig from a decoded KubeSchedulerConfiguration document."""
    if not doc:
        return default_config()
    if not isinstance(doc, Mapping):
        raise ConfigError("scheduler config: expected a mapping")
    extra = set(doc) - _TOP_FIELDS
    if extra:
        raise ConfigError(f"scheduler config: unknown field(s) {', '.join(sorted(extra))}")
    if doc.get("kind", "KubeSchedulerConfiguration") != "KubeSchedulerConfiguration":
        raise ConfigError(f"scheduler config: kind {doc.get('kind')!r} is not "
                          "KubeSchedulerConfiguration")
    if doc.get("apiVersion", API_VERSIONS[0]) not in API_VERSIONS:
        raise ConfigError(f"scheduler config: apiVersion {doc.get('apiVersion')!r} is not one "
                          f"of {', '.join(API_VERSIONS)}")
    pct = int(doc.get("percentageOfNodesToScore") or 0)
    if not 0 <= pct <= 100:
        raise ConfigError("percentageOfNodesToScore: must be between 0 and 100")
    cfg = SchedulerConfig(
        [], pct,
        float(doc.get("podInitialBackoffSeconds", 1.0)),
        float(doc.get("podMaxBackoffSeconds", 10.0)),
    )
    if cfg.pod_initial_backoff_seconds <= 0 or \
            cfg.pod_max_backoff_seconds < cfg.pod_initial_backoff_seconds:
        raise ConfigError("need 0 < podInitialBackoffSeconds <= podMaxBackoffSeconds")
    profiles = doc.get("profiles") or [{"schedulerName": DEFAULT_SCHEDULER_NAME}]
    seen: set[str] = set()
    for i, prof in enumerate(profiles):
        where = f"profiles[{i}]"
        if not isinstance(prof, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        extra = set(prof) - _PROFILE_FIELDS
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
        name = str(prof.get("schedulerName") or DEFAULT_SCHEDULER_NAME)
        if name in seen:
            raise ConfigError(f"{where}: duplicate schedulerName {name!r}")
        seen.add(name)
        args: dict[str, dict[str, Any]] = {}
        for j, pc in enumerate(prof.get("pluginConfig") or []):
            if not isinstance(pc, Mapping) or "name" not in pc:
                raise ConfigError(f"{where}.pluginConfig[{j}]: expected {{name, args}}")
            if pc["name"] not in REGISTRY:
                raise ConfigError(f"{where}.pluginConfig[{j}]: unknown plugin {pc['name']!r}")
            args[str(pc["name"])] = dict(pc.get("args") or {})
        p_pct = prof.get("percentageOfNodesToScore")
        cfg.profiles.append(ProfileConfig(
            name, resolve_plugins(prof.get("plugins"), f"{where}.plugins"), args,
            int(p_pct) if p_pct is not None else None))
    return cfg


def load(path: str | Path) -> SchedulerConfig:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read scheduler config {path}: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"scheduler config {path}: {e}") from None
    return parse(doc)
