"""Which objects each node may read: the graph behind the node authorizer.

Owns the pure "what does this pod reference" walk (:func:`pod_references`: the Secrets,
ConfigMaps, PersistentVolumeClaims and ServiceAccount a pod names in its volumes,
projected sources, containers' env and envFrom, imagePullSecrets and
serviceAccountName, as Kubernetes' node authorizer graph does), the PersistentVolume side
(:func:`pv_secret_references`) and :class:`NodeGraph`: for every
node, a count of the references of the pods bound to it.

The graph is not rebuilt per request: it follows the watch cache's pod event window. Each
``sync`` applies the pod events newer than the revision it last saw (a bound pod adds its
references to its node, a deleted or rebound one takes its old ones back); only when that
window no longer reaches back to it (trimmed, or the cache reloaded) does it rescan the
pods once. A request therefore costs a dictionary lookup plus the events since the last
request.

Edges through claims (node <- pod <- claim <- volume <- secret) are followed at request
time with single lookups by key, because a claim's binding changes without its pod
changing.

Concurrency: event-loop only; ``sync`` runs synchronously inside ``authorize``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

SECRETS = "secrets"
CONFIGMAPS = "configmaps"
CLAIMS = "persistentvolumeclaims"
SERVICEACCOUNTS = "serviceaccounts"

# (resource, namespace, name) of an object a pod uses
Ref = tuple[str, str, str]


def _set(msg: Any, field: str) -> bool:
    return bool(msg.HasField(field))


def _volume_source_secrets(source: Any) -> Iterator[str]:
    """Secret names a volume source names: ``secretRef``/``nodePublishSecretRef`` (a
    LocalObjectReference) or ``secretName`` (secret and azureFile volumes)."""
    for f, value in source.ListFields():
        if f.name in ("secret_ref", "node_publish_secret_ref") and value.name:
            yield value.name
        elif f.name == "secret_name" and value:
            yield value


def _containers(pod: Any) -> Iterable[Any]:
    yield from pod.spec.init_containers
    yield from pod.spec.containers
    yield from pod.spec.ephemeral_containers


def pod_references(pod: Any) -> frozenset[Ref]:
    """The Secrets, ConfigMaps, claims and ServiceAccount ``pod`` uses (all in its
    namespace)."""
    ns = pod.metadata.namespace
    secrets: set[str] = set()
    configmaps: set[str] = set()
    claims: set[str] = set()
    spec = pod.spec
    secrets.update(r.name for r in spec.image_pull_secrets if r.name)
    for c in _containers(pod):
        for e in c.env:
            if not _set(e, "value_from"):
                continue
            src = e.value_from
            if _set(src, "secret_key_ref") and src.secret_key_ref.name:
                secrets.add(src.secret_key_ref.name)
            if _set(src, "config_map_key_ref") and src.config_map_key_ref.name:
                configmaps.add(src.config_map_key_ref.name)
        for ef in c.env_from:
            if _set(ef, "secret_ref") and ef.secret_ref.name:
                secrets.add(ef.secret_ref.name)
            if _set(ef, "config_map_ref") and ef.config_map_ref.name:
                configmaps.add(ef.config_map_ref.name)
    sa = spec.service_account_name or spec.service_account or "default"
    for v in spec.volumes:
        for f, source in v.ListFields():
            if f.name == "name":
                continue
            if f.name == "config_map":
                if source.name:
                    configmaps.add(source.name)
            elif f.name == "persistent_volume_claim":
                if source.claim_name:
                    claims.add(source.claim_name)
            elif f.name == "ephemeral":
                # the claim the ephemeral volume controller makes: <pod>-<volume>
                claims.add(f"{pod.metadata.name}-{v.name}")
            elif f.name == "projected":
                for p in source.sources:
                    if _set(p, "secret") and p.secret.name:
                        secrets.add(p.secret.name)
                    if _set(p, "config_map") and p.config_map.name:
                        configmaps.add(p.config_map.name)
            else:
                secrets.update(_volume_source_secrets(source))
    return frozenset([*((SECRETS, ns, n) for n in secrets),
                      *((CONFIGMAPS, ns, n) for n in configmaps),
                      *((CLAIMS, ns, n) for n in claims),
                      (SERVICEACCOUNTS, ns, sa)])


def pv_secret_references(pv: Any, claim_namespace: str) -> frozenset[tuple[str, str]]:
    """(namespace, name) of the Secrets a PersistentVolume's source names (a reference
    without a namespace is in its claim's)."""
    out: set[tuple[str, str]] = set()
    for _field, source in pv.spec.ListFields():
        if not hasattr(source, "ListFields"):
            continue
        for g, value in source.ListFields():
            if g.name.endswith("secret_ref") and hasattr(value, "name") and value.name:
                ns = getattr(value, "namespace", "") or claim_namespace
                out.add((ns, value.name))
            elif g.name == "secret_name" and isinstance(value, str) and value:
                ns = getattr(source, "secret_namespace", "") or claim_namespace
                out.add((ns, value))
    return frozenset(out)


class PodEvents(Protocol):
    """The watch cache's view of the pods (control.apiserver.watchcache.ResourceCache)."""

    objects: dict[str, Any]
    events: collections.deque[Any]
    window_start: int
    generation: int


class NodeGraph:
    """node -> how many of its pods reference each object; see the module docstring.
    ``pods()`` returns the watch cache's ResourceCache of pods (it may be replaced by a
    reload: the graph notices and rescans)."""

    def __init__(self, pods: Callable[[], PodEvents | None]) -> None:
        self._source = pods
        self._seen: tuple[int, int] = (0, -1)  # (id of the ResourceCache, its generation)
        self._revision = -1
        self._pods: dict[str, tuple[str, frozenset[Ref]]] = {}
        self._refs: dict[str, collections.Counter[Ref]] = {}
        self.rebuilds = 0  # full rescans (a test and a metric watch this stay low)
        self.walks = 0  # pods whose references were computed

    def _add(self, key: str, node: str, refs: frozenset[Ref]) -> None:
        self._pods[key] = (node, refs)
        self._refs.setdefault(node, collections.Counter()).update(refs)

    def _drop(self, key: str) -> None:
        old = self._pods.pop(key, None)
        if old is None:
            return
        node, refs = old
        counter = self._refs.get(node)
        if counter is None:
            return
        counter.subtract(refs)
        for r in refs:
            if counter[r] <= 0:
                del counter[r]
        if not counter:
            del self._refs[node]

    def _put(self, key: str, pod: Any) -> None:
        self._drop(key)
        node = pod.spec.node_name
        if node:
            self._add(key, node, pod_references(pod))
            self.walks += 1

    def _rebuild(self, rc: PodEvents) -> None:
        self._pods.clear()
        self._refs.clear()
        for key, co in rc.objects.items():
            self._put(key, co.obj)
        self._revision = max((ev.revision for ev in rc.events), default=rc.window_start)
        self._revision = max(self._revision, rc.window_start,
                             *(co.revision for co in rc.objects.values()))
        self.rebuilds += 1

    def sync(self) -> None:
        rc = self._source()
        if rc is None:
            return
        seen = (id(rc), rc.generation)
        if seen == self._seen:
            return
        if seen[0] != self._seen[0] or self._revision < rc.window_start:
            self._rebuild(rc)
        else:
            newer = []
            for ev in reversed(rc.events):
                if ev.revision <= self._revision:
                    break
                newer.append(ev)
            for ev in reversed(newer):
                if ev.deleted:
                    self._drop(ev.new.key)
                elif ev.prev is None or ev.prev.obj.spec != ev.new.obj.spec:
                    self._put(ev.new.key, ev.new.obj)
                # else: a status or metadata write (most pod events): the spec, node
                # included, and so the references, are what the graph has
                self._revision = ev.revision
        self._seen = seen

    def references(self, node: str) -> collections.Counter[Ref]:
        """The objects the pods bound to ``node`` use (up to date with the cache)."""
        self.sync()
        return self._refs.get(node, collections.Counter())

    def has(self, node: str, ref: Ref) -> bool:
        return ref in self.references(node)

    def claims(self, node: str) -> list[tuple[str, str]]:
        """(namespace, name) of the claims its pods use."""
        return [(ns, name) for (r, ns, name) in self.references(node) if r == CLAIMS]


__all__ = ["CLAIMS", "CONFIGMAPS", "SECRETS", "SERVICEACCOUNTS", "NodeGraph", "Ref",
           "pod_references", "pv_secret_references"]
