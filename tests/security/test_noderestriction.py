"""NodeRestriction admission as tables: the labels a node may set on itself, its taints,
other nodes, mirror pods, the status of pods on other nodes, its Lease."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import errors
from control.api.nodelabels import kubelet_may_set
from control.api.pb import coordination_pb2, core_pb2
from control.apiserver import noderestriction
from tests.support.node_authz import pod


@pytest.mark.parametrize(("key", "allowed"), [
    ("kubernetes.io/hostname", True),
    ("kubernetes.io/os", True),
    ("beta.kubernetes.io/arch", True),
    ("topology.kubernetes.io/zone", True),
    ("failure-domain.beta.kubernetes.io/region", True),
    ("node.kubernetes.io/instance-type", True),
    ("node.kubernetes.io/anything", True),  # the kubelet's own namespaces
    ("sub.kubelet.kubernetes.io/x", True),
    ("example.com/gpu", True),  # outside kubernetes.io and k8s.io: the node's business
    ("plain", True),
    ("node-restriction.kubernetes.io/pci", False),
    ("team.node-restriction.kubernetes.io/pci", False),
    ("node-role.kubernetes.io/control-plane", False),  # an admin's, not the kubelet's
    ("kubernetes.io/role", False),
    ("example.k8s.io/x", False),
])
def test_labels_a_node_may_set(key: str, allowed: bool) -> None:
    assert kubelet_may_set(key) is allowed


def node(name: str, labels: dict[str, str] | None = None,
         taints: list[str] | None = None) -> core_pb2.Node:
    n = core_pb2.Node()
    n.metadata.name = name
    n.metadata.uid = f"uid-{name}"
    n.metadata.labels.update(labels or {})
    for t in taints or []:
        n.spec.taints.add(key=t, effect="NoSchedule")
    return n


def refused(fn: Any, *args: Any) -> str:
    with pytest.raises(errors.Forbidden) as e:
        fn(*args)
    return e.value.message


def test_nodes() -> None:
    admit = noderestriction.admit_node
    admit("n1", node("n1", {"kubernetes.io/hostname": "n1", "example.com/x": "1"}), None)
    assert "is not allowed to modify node \"n2\"" in refused(admit, "n1", node("n2"), None)
    assert refused(admit, "n1", node("n1", {"node-restriction.kubernetes.io/x": "y"}),
                   None) == ('nodes "n1" is forbidden: node "n1" is not allowed to set the '
                             'following labels: node-restriction.kubernetes.io/x')
    # an admin's restricted label and taint on the stored node stay the admin's
    stored = node("n1", {"node-restriction.kubernetes.io/pci": "true"}, ["dedicated"])
    same = node("n1", {"node-restriction.kubernetes.io/pci": "true", "example.com/x": "1"},
                ["dedicated"])
    admit("n1", same, stored)  # changing its own allowed labels is fine
    removed = node("n1", {}, ["dedicated"])
    assert "is not allowed to modify labels: node-restriction.kubernetes.io/pci" in refused(
        admit, "n1", removed, stored)
    untainted = node("n1", {"node-restriction.kubernetes.io/pci": "true"})
    assert "is not allowed to modify taints" in refused(admit, "n1", untainted, stored)


def mirror(node_name: str, owner: core_pb2.Node) -> core_pb2.Pod:
    p = pod("kube-system", "static-web", node_name)
    p.metadata.annotations[noderestriction.MIRROR_ANNOTATION] = "hash"
    p.metadata.owner_references.add(api_version="v1", kind="Node", name=owner.metadata.name,
                                     uid=owner.metadata.uid, controller=True)
    return p


def test_pods() -> None:
    n1 = node("n1")
    admit = noderestriction.admit_pod
    admit("n1", mirror("n1", n1), None, n1.metadata.uid)
    plain = pod("default", "web", "n1")
    assert "can only create mirror pods" in refused(admit, "n1", plain, None, "uid-n1")
    assert "spec.nodeName set to itself" in refused(admit, "n1", mirror("n2", n1), None,
                                                    "uid-n1")
    assert "single owner reference" in refused(admit, "n1", mirror("n1", node("n2")), None,
                                               "uid-n1")
    assert "uid mismatch" in refused(admit, "n1", mirror("n1", n1), None, "another-uid")
    with_secret = mirror("n1", n1)
    with_secret.spec.volumes.add(name="s").secret.secret_name = "s"
    assert "reference secrets" in refused(admit, "n1", with_secret, None, "uid-n1")
    with_sa = mirror("n1", n1)
    with_sa.spec.service_account_name = "builder"
    assert "service account" in refused(admit, "n1", with_sa, None, "uid-n1")
    # status updates: pods bound to it, labels untouched
    mine, theirs = pod("default", "a", "n1"), pod("default", "b", "n2")
    admit("n1", mine, mine, None)
    assert "pods with spec.nodeName set to itself" in refused(admit, "n1", theirs, theirs,
                                                              None)
    relabelled = core_pb2.Pod()
    relabelled.CopyFrom(mine)
    relabelled.metadata.labels["app"] = "other"
    assert "cannot update labels through pod status" in refused(admit, "n1", relabelled,
                                                                mine, None)


def test_pod_deletes() -> None:
    noderestriction.admit_pod_delete("n1", pod("default", "a", "n1"))
    assert "can only delete pods with spec.nodeName set to itself" in refused(
        noderestriction.admit_pod_delete, "n1", pod("default", "b", "n2"))


def test_volumes() -> None:
    old = core_pb2.PersistentVolume()
    old.metadata.name = "pv"
    old.metadata.finalizers.extend(["flotilla.io/local-path-cleanup", "kubernetes.io/pv-protection"])
    old.spec.host_path.path = "/var/lib/flotilla/volumes/pv"
    done = core_pb2.PersistentVolume()
    done.CopyFrom(old)
    done.metadata.finalizers.remove("flotilla.io/local-path-cleanup")
    noderestriction.admit_volume("n1", done, old)
    elsewhere = core_pb2.PersistentVolume()
    elsewhere.CopyFrom(done)
    elsewhere.spec.host_path.path = "/etc"
    assert "only remove finalizers" in refused(noderestriction.admit_volume, "n1",
                                               elsewhere, old)
    more = core_pb2.PersistentVolume()
    more.CopyFrom(old)
    more.metadata.finalizers.append("example.com/keep")
    assert "only remove finalizers" in refused(noderestriction.admit_volume, "n1", more, old)
    assert "cannot create volumes" in refused(noderestriction.admit_volume, "n1", old, None)


def test_leases_and_dispatch() -> None:
    own, other = coordination_pb2.Lease(), coordination_pb2.Lease()
    own.metadata.name, other.metadata.name = "n1", "n2"
    noderestriction.admit("n1", "leases", own, None, lambda *_: None)
    assert "same name as the requesting node" in refused(
        noderestriction.admit, "n1", "leases", other, None, lambda *_: None)
    # a mirror pod's Node uid is looked up
    n1 = node("n1")
    noderestriction.admit("n1", "pods", mirror("n1", n1), None,
                          lambda r, ns, name: n1 if (r, name) == ("nodes", "n1") else None)
    assert "uid mismatch" in refused(noderestriction.admit, "n1", "pods", mirror("n1", n1),
                                     None, lambda *_: None)
    noderestriction.admit("n1", "configmaps", core_pb2.ConfigMap(), None, lambda *_: None)
