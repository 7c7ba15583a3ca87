"""Names and pure helpers of node-local storage shared by the control plane and the agent.

- The local-path provisioner's names (k3s' local-path-provisioner): the provisioner
  ``rancher.io/local-path`` (the same name as k3s', so StorageClasses written for k3s work
  unchanged), the default StorageClass ``local-path``, the cleanup finalizer the provisioner
  puts on every volume it creates (``flotilla.io/local-path-cleanup``, removed by the agent
  of the volume's node once the directory is dealt with), and the Node annotation where an
  agent advertises its volume directory.
- ``ephemeral_claim_name``: the claim of a pod's ephemeral volume.
- ``default_class``: the StorageClass a claim naming none gets.
- ``pinned_node``: the one node a volume's required node affinity allows, when it names
  exactly one by ``kubernetes.io/hostname`` (how local volumes are tied to their machine).
- ``within``: whether a path lies strictly inside a directory (the guard before any
  directory of a volume is created or deleted).

Concurrency contract: constants and plain functions; safe anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from control.api.pb import core_pb2

PROVISIONER = "rancher.io/local-path"
DEFAULT_CLASS = "local-path"
CLEANUP_FINALIZER = "flotilla.io/local-path-cleanup"
# the agent's --volume-dir, on its Node, for the provisioner to place directories under
VOLUME_DIR_ANNOTATION = "local-path.flotilla.io/volume-dir"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")
HOSTNAME_LABEL = "kubernetes.io/hostname"


def ephemeral_claim_name(pod_name: str, volume_name: str) -> str:
    """The claim of a pod's ephemeral volume: ``<pod>-<volume>`` (Kubernetes' naming)."""
    return f"{pod_name}-{volume_name}"


def is_default_class(cls: object) -> bool:
    annotations = cls.metadata.annotations  # type: ignore[attr-defined]
    return any(annotations.get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS)


def default_class(classes: Iterable[Any]) -> Any | None:
    """The default StorageClass among ``classes`` (the newest when several say so, as
    Kubernetes picks), or None."""
    marked = [c for c in classes if is_default_class(c)]
    if not marked:
        return None
    return max(marked, key=lambda c: (c.metadata.creation_timestamp.seconds,
                                      c.metadata.creation_timestamp.nanos, c.metadata.name))


def pinned_node(pv: core_pb2.PersistentVolume) -> str | None:
    """The node a volume's required node affinity names by hostname (``In`` one value,
    in every term), else None."""
    if not pv.spec.HasField("node_affinity"):
        return None
    terms = pv.spec.node_affinity.required.node_selector_terms
    found: set[str] = set()
    for term in terms:
        names = [tuple(e.values) for e in term.match_expressions
                 if e.key == HOSTNAME_LABEL and e.operator == "In"]
        if len(names) != 1 or len(names[0]) != 1:
            return None
        found.add(names[0][0])
    return found.pop() if len(found) == 1 else None


def volume_path(pv: core_pb2.PersistentVolume) -> str:
    """The directory of a hostPath or local volume ("" for other sources)."""
    if pv.spec.HasField("host_path"):
        return pv.spec.host_path.path
    if pv.spec.HasField("local"):
        return pv.spec.local.path
    return ""


def within(path: str, directory: str) -> bool:
    """``path`` names something strictly below ``directory`` (lexically, after
    normalising both; symlinks are the caller's to resolve)."""
    if not path or not directory or not os.path.isabs(path) or not os.path.isabs(directory):
        return False
    p, d = os.path.normpath(path), os.path.normpath(directory)
    return p != d and os.path.commonpath([p, d]) == d
