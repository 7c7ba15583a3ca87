"""The labels a node may set on its own Node (Kubernetes' kubelet label set).

Shared by NodeRestriction admission (control.apiserver.noderestriction), which refuses
any other from a node, and the agent, which refuses such ``--labels`` at start as the
kubelet does, instead of failing to register. Allowed: ``kubernetes.io/hostname``,
``kubernetes.io/os`` and ``arch`` (and their ``beta.`` twins), the instance type (and the
beta one), the topology zone and region (and the failure-domain beta ones), anything under
``kubelet.kubernetes.io/`` or ``node.kubernetes.io/``, and any label outside the
``kubernetes.io``/``k8s.io`` domains; never one under ``node-restriction.kubernetes.io/``,
which is how an admin marks nodes in a way nodes cannot forge.

Concurrency contract: constants and pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable

NODE_RESTRICTION_DOMAIN = "node-restriction.kubernetes.io"
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname",
    "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
    "node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
})
KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _domain(key: str) -> str:
    prefix, slash, _ = key.partition("/")
    return prefix if slash else ""


def _in_domain(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def kubelet_may_set(key: str) -> bool:
    """Whether a node may set (add, change or remove) the label ``key`` on itself."""
    domain = _domain(key)
    if _in_domain(domain, NODE_RESTRICTION_DOMAIN):
        return False
    if not (_in_domain(domain, "kubernetes.io") or _in_domain(domain, "k8s.io")):
        return True
    return key in KUBELET_LABELS or any(_in_domain(domain, d) for d in KUBELET_LABEL_DOMAINS)


def forbidden_labels(keys: Iterable[str]) -> list[str]:
    """The keys a node may not set, sorted."""
    return sorted(k for k in keys if not kubelet_may_set(k))


__all__ = ["KUBELET_LABELS", "KUBELET_LABEL_DOMAINS", "NODE_RESTRICTION_DOMAIN",
           "forbidden_labels", "kubelet_may_set"]
