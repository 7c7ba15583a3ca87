"""NodeRestriction admission: what a node may write, judged on the objects themselves.

The node authorizer (:mod:`control.apiserver.node_authz`) decides from the request's
attributes; this plugin sees the new and the stored object, as Kubernetes'
NodeRestriction does, for writes made by a ``system:node:<name>``:

- Nodes: only its own; on create, only labels a kubelet may set
  (:mod:`control.api.nodelabels`: never ``node-restriction.kubernetes.io/``); on update
  (spec or status), labels only within that set and taints not at all (a node that could
  drop its taints or relabel itself could draw workloads meant for other machines).
- Pods: a create only for a mirror pod (annotation ``kubernetes.io/config.mirror``)
  bound to itself, owned by its Node (one controller reference with the Node's uid) and
  using no ServiceAccount, Secret, ConfigMap or claim; a status update only of a pod
  bound to it, without changing its labels.
- Pods, deleted: only those bound to it (:func:`admit_pod_delete`).
- PersistentVolumes: only finalizers taken off (the authorizer lets it update only the
  volumes pinned to it).
- Leases: a create only of its own ``kube-node-lease/<node>``.

Pure functions of (node name, objects); :func:`admit` dispatches on the resource.

Concurrency: none (called synchronously by admission).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from control.api import errors
from control.api.nodelabels import forbidden_labels
from control.apiserver.node_graph import SERVICEACCOUNTS, pod_references

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# lookup(resource, namespace, name) -> the stored object or None
Lookup = Callable[[str, str, str], Any]


def modified_labels(new: Mapping[str, str], old: Mapping[str, str]) -> set[str]:
    return {k for k in {*new, *old} if new.get(k) != old.get(k)}


def admit_node(node: str, new: Any, old: Any | None) -> None:
    name = new.metadata.name
    if name != node:
        raise errors.Forbidden(f'nodes "{name}" is forbidden: node "{node}" is not allowed '
                               f'to modify node "{name}"')
    if old is None:
        bad = forbidden_labels(new.metadata.labels)
        if bad:
            raise errors.Forbidden(f'nodes "{name}" is forbidden: node "{node}" is not '
                                   f'allowed to set the following labels: {", ".join(bad)}')
        return
    if list(new.spec.taints) != list(old.spec.taints):
        raise errors.Forbidden(f'nodes "{name}" is forbidden: node "{node}" is not allowed '
                               f'to modify taints')
    bad = forbidden_labels(modified_labels(new.metadata.labels, old.metadata.labels))
    if bad:
        raise errors.Forbidden(f'nodes "{name}" is forbidden: is not allowed to modify '
                               f'labels: {", ".join(bad)}')


def admit_pod(node: str, new: Any, old: Any | None, node_uid: str | None) -> None:
    name = new.metadata.name or new.metadata.generate_name
    what = f'pods "{name}" is forbidden: node "{node}"'
    if old is not None:
        # only a status update gets here: the authorizer refuses a node the pod's spec
        if old.spec.node_name != node:
            raise errors.Forbidden(f"{what} can only update pod status for pods with "
                                   f"spec.nodeName set to itself")
        if dict(new.metadata.labels) != dict(old.metadata.labels):
            raise errors.Forbidden(f"{what} cannot update labels through pod status")
        return
    if MIRROR_ANNOTATION not in new.metadata.annotations:
        raise errors.Forbidden(f'{what} can only create mirror pods (annotated '
                               f'"{MIRROR_ANNOTATION}")')
    if new.spec.node_name != node:
        raise errors.Forbidden(f"{what} can only create pods with spec.nodeName set to "
                               f"itself")
    owners = list(new.metadata.owner_references)
    if len(owners) != 1 or owners[0].kind != "Node" or owners[0].api_version != "v1" or (
            owners[0].name != node):
        raise errors.Forbidden(f"{what} can only create pods with a single owner reference "
                               f"set to itself")
    if not owners[0].controller:
        raise errors.Forbidden(f"{what} can only create pods with a controller owner "
                               f"reference set to itself")
    if owners[0].block_owner_deletion:
        raise errors.Forbidden(f"{what} must not set blockOwnerDeletion on an owner "
                               f"reference")
    if node_uid is None or owners[0].uid != node_uid:
        raise errors.Forbidden(f"{what}: node uid mismatch: expected {node_uid}, got "
                               f"{owners[0].uid}")
    if new.spec.service_account_name or new.spec.service_account:
        raise errors.Forbidden(f"{what} can not create pods that reference a service "
                               f"account")
    used = {r for r, _, _ in pod_references(new) if r != SERVICEACCOUNTS}
    if used:
        raise errors.Forbidden(f"{what} can not create pods that reference "
                               f"{', '.join(sorted(used))}")


def admit_pod_delete(node: str, current: Any) -> None:
    if current.spec.node_name != node:
        raise errors.Forbidden(f'pods "{current.metadata.name}" is forbidden: node "{node}" '
                               f"can only delete pods with spec.nodeName set to itself")


def admit_volume(node: str, new: Any, old: Any | None) -> None:
    """A node only takes finalizers off the volumes on its disk: a node that could change
    a volume's path or node affinity could point another machine at any directory."""
    name = new.metadata.name
    if old is None:
        raise errors.Forbidden(f'persistentvolumes "{name}" is forbidden: node "{node}" '
                               f"cannot create volumes")
    if not set(new.metadata.finalizers) <= set(old.metadata.finalizers) or \
            not _same_but_finalizers(new, old):
        raise errors.Forbidden(f'persistentvolumes "{name}" is forbidden: node "{node}" may '
                               f"only remove finalizers of its volumes")


def _same_but_finalizers(new: Any, old: Any) -> bool:
    a, b = type(new)(), type(old)()
    a.CopyFrom(new)
    b.CopyFrom(old)
    for m in (a.metadata, b.metadata):
        m.ClearField("finalizers")
        m.ClearField("resource_version")
    return bool(a == b)


def admit_lease(node: str, new: Any, old: Any | None) -> None:
    if old is None and new.metadata.name != node:
        raise errors.Forbidden(f'leases.coordination.k8s.io "{new.metadata.name}" is '
                               f'forbidden: can only access node lease with the same name '
                               f'as the requesting node')


def admit(node: str, resource: str, new: Any, old: Any | None, lookup: Lookup) -> None:
    """Refuse what node ``node`` may not write (see the module docstring)."""
    if resource == "nodes":
        admit_node(node, new, old)
    elif resource == "pods":
        uid = None
        if old is None:
            n = lookup("nodes", "", node)
            uid = n.metadata.uid if n is not None else None
        admit_pod(node, new, old, uid)
    elif resource == "leases":
        admit_lease(node, new, old)
    elif resource == "persistentvolumes":
        admit_volume(node, new, old)


__all__ = ["MIRROR_ANNOTATION", "admit", "admit_lease", "admit_node", "admit_pod",
           "admit_pod_delete", "admit_volume", "modified_labels"]
