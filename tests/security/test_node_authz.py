"""The node authorizer and its graph as tables: what node n1 may do, given a pod of its own
that uses a Secret, a ConfigMap, a claim and a ServiceAccount, and a pod on n2 that uses
others; the graph following pod events; the reason a denial gives."""

from __future__ import annotations

import pytest

from control.api import errors, kinds
from control.api.pb import core_pb2
from control.apiserver.authn import UserInfo
from control.apiserver.authz import Attributes, Decision, default_chain
from control.apiserver.node_authz import NodeAuthorizer
from control.apiserver.node_graph import pod_references, pv_secret_references
from tests.support.node_authz import Objects, pod

N1 = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
# a certificate naming a node but without the nodes group is not a node
NOT_A_NODE = UserInfo("system:node:n1", ("system:authenticated",))


def claim(ns: str, name: str, volume: str) -> core_pb2.PersistentVolumeClaim:
    c = core_pb2.PersistentVolumeClaim()
    c.metadata.namespace, c.metadata.name = ns, name
    c.spec.volume_name = volume
    return c


def volume(name: str, *, local_on: str = "", csi_secret: tuple[str, str] | None = None
           ) -> core_pb2.PersistentVolume:
    pv = core_pb2.PersistentVolume()
    pv.metadata.name = name
    if local_on:
        pv.spec.local.path = "/mnt/disk"
        term = pv.spec.node_affinity.required.node_selector_terms.add()
        term.match_expressions.add(key="kubernetes.io/hostname", operator="In",
                                   values=[local_on])
    if csi_secret:
        pv.spec.csi.driver = "example.com/csi"
        ref = pv.spec.csi.node_publish_secret_ref
        ref.namespace, ref.name = csi_secret
    return pv


def world() -> Objects:
    o = Objects()
    mine = pod("default", "mine", "n1", service_account_name="runner")
    mine.spec.volumes.add(name="s").secret.secret_name = "mine-secret"
    mine.spec.volumes.add(name="c").config_map.name = "mine-config"
    mine.spec.volumes.add(name="d").persistent_volume_claim.claim_name = "mine-claim"
    o.put_pod(mine)
    theirs = pod("default", "theirs", "n2")
    theirs.spec.volumes.add(name="s").secret.secret_name = "their-secret"
    theirs.spec.volumes.add(name="d").persistent_volume_claim.claim_name = "their-claim"
    o.put_pod(theirs)
    o.put_pod(pod("default", "pending", ""))  # not bound: references nothing yet
    o.put("persistentvolumeclaims", claim("default", "mine-claim", "pv-mine"))
    o.put("persistentvolumeclaims", claim("default", "their-claim", "pv-theirs"))
    o.put("persistentvolumes", volume("pv-mine", csi_secret=("storage", "csi-creds")))
    o.put("persistentvolumes", volume("pv-theirs"))
    o.put("persistentvolumes", volume("local-n1", local_on="n1"))
    o.put("persistentvolumes", volume("local-n2", local_on="n2"))
    return o


def ask(z: NodeAuthorizer, verb: str, resource: str, ns: str = "", name: str = "",
        sub: str = "", user: UserInfo = N1) -> Decision:
    group = kinds.by_resource(resource).group
    return z.authorize(Attributes(user, verb, resource, group, sub, ns, name))


ALLOWED, DENIED = True, False


@pytest.mark.parametrize(("verb", "resource", "sub", "ns", "name", "allowed"), [
    # Secrets and ConfigMaps: one named object its pod uses
    ("get", "secrets", "", "default", "mine-secret", ALLOWED),
    ("watch", "secrets", "", "default", "mine-secret", ALLOWED),  # metadata.name selector
    ("get", "secrets", "", "default", "their-secret", DENIED),
    ("list", "secrets", "", "default", "", DENIED),  # every Secret of the namespace: no
    ("update", "secrets", "", "default", "mine-secret", DENIED),
    ("get", "secrets", "", "kube-system", "mine-secret", DENIED),
    ("get", "configmaps", "", "default", "mine-config", ALLOWED),
    ("get", "configmaps", "", "default", "other", DENIED),
    # node <- pod <- claim <- volume <- secret
    ("get", "secrets", "", "storage", "csi-creds", ALLOWED),
    # claims and volumes
    ("get", "persistentvolumeclaims", "", "default", "mine-claim", ALLOWED),
    ("update", "persistentvolumeclaims", "status", "default", "mine-claim", ALLOWED),
    ("update", "persistentvolumeclaims", "", "default", "mine-claim", DENIED),
    ("get", "persistentvolumeclaims", "", "default", "their-claim", DENIED),
    ("list", "persistentvolumeclaims", "", "default", "", DENIED),
    ("get", "persistentvolumes", "", "", "pv-mine", ALLOWED),
    ("get", "persistentvolumes", "", "", "pv-theirs", DENIED),
    ("get", "persistentvolumes", "", "", "local-n1", ALLOWED),  # its node affinity names n1
    ("get", "persistentvolumes", "", "", "local-n2", DENIED),
    ("watch", "persistentvolumes", "", "", "", ALLOWED),  # the local-path cleaner's
    ("update", "persistentvolumes", "", "", "local-n1", ALLOWED),  # its finalizer
    ("update", "persistentvolumes", "", "", "local-n2", DENIED),
    ("update", "persistentvolumes", "", "", "pv-mine", DENIED),
    ("delete", "persistentvolumes", "", "", "local-n1", DENIED),
    # service accounts: its pods' only, and their tokens
    ("create", "serviceaccounts", "token", "default", "runner", ALLOWED),
    ("get", "serviceaccounts", "", "default", "runner", ALLOWED),
    ("create", "serviceaccounts", "token", "default", "default", DENIED),  # n2's pod's
    ("update", "serviceaccounts", "", "default", "runner", DENIED),
    ("list", "serviceaccounts", "", "default", "", DENIED),
    # its own Node, any Node's reading
    ("get", "nodes", "", "", "n2", ALLOWED),
    ("watch", "nodes", "", "", "", ALLOWED),
    ("create", "nodes", "", "", "n1", ALLOWED),
    ("create", "nodes", "", "", "n2", DENIED),
    ("update", "nodes", "", "", "n1", ALLOWED),
    ("patch", "nodes", "status", "", "n1", ALLOWED),
    ("update", "nodes", "status", "", "n2", DENIED),
    ("delete", "nodes", "", "", "n1", DENIED),
    # its Lease
    ("update", "leases", "", "kube-node-lease", "n1", ALLOWED),
    ("create", "leases", "", "kube-node-lease", "n1", ALLOWED),
    ("get", "leases", "", "kube-node-lease", "n2", DENIED),
    ("update", "leases", "", "kube-system", "n1", DENIED),
    ("list", "leases", "", "kube-node-lease", "", DENIED),
    # pods: read all, write those bound to it
    ("list", "pods", "", "", "", ALLOWED),
    ("get", "pods", "", "default", "theirs", ALLOWED),
    ("update", "pods", "status", "default", "mine", ALLOWED),
    ("patch", "pods", "status", "default", "theirs", DENIED),
    ("delete", "pods", "", "default", "mine", ALLOWED),
    ("delete", "pods", "", "default", "theirs", DENIED),
    ("create", "pods", "eviction", "default", "mine", ALLOWED),
    ("create", "pods", "eviction", "default", "theirs", DENIED),
    # a pod that is gone: the registry answers NotFound, which a kubelet acts on
    ("update", "pods", "status", "default", "gone", ALLOWED),
    ("delete", "pods", "", "default", "gone", ALLOWED),
    ("update", "pods", "", "default", "mine", DENIED),  # a pod's spec is not the node's
    ("create", "pods", "exec", "default", "mine", DENIED),
    ("create", "pods", "", "default", "mirror", ALLOWED),  # NodeRestriction judges it
    # what every node reads or writes
    ("list", "services", "", "", "", ALLOWED),
    ("watch", "endpointslices", "", "", "", ALLOWED),
    ("get", "endpoints", "", "default", "x", ALLOWED),
    ("get", "namespaces", "", "", "default", ALLOWED),
    ("watch", "runtimeclasses", "", "", "", ALLOWED),
    ("create", "events", "", "default", "e", ALLOWED),
    ("patch", "events", "", "default", "e", ALLOWED),
    ("delete", "events", "", "default", "e", DENIED),
    ("create", "certificatesigningrequests", "", "", "c", ALLOWED),
    ("watch", "certificatesigningrequests", "", "", "", ALLOWED),
    ("update", "certificatesigningrequests", "approval", "", "c", DENIED),
    ("delete", "services", "", "default", "x", DENIED),
    ("create", "deployments", "", "default", "x", DENIED),
    ("list", "clusterroles", "", "", "", DENIED),
])
def test_what_node_n1_may_do(verb: str, resource: str, sub: str, ns: str, name: str,
                             allowed: bool) -> None:
    z = world().authorizer()
    assert isinstance(z, NodeAuthorizer)
    assert (ask(z, verb, resource, ns, name, sub) is Decision.ALLOW) == allowed


def test_others_get_no_opinion() -> None:
    z = world().authorizer()
    assert isinstance(z, NodeAuthorizer)
    assert ask(z, "get", "secrets", "default", "mine-secret",
               user=NOT_A_NODE) is Decision.NO_OPINION
    assert ask(z, "get", "secrets", "default", "mine-secret",
               user=UserInfo("admin", ("system:masters",))) is Decision.NO_OPINION


def test_a_denial_names_who_what_where_and_why() -> None:
    chain = default_chain(world().authorizer())
    with pytest.raises(errors.Forbidden) as e:
        chain.check(Attributes(N1, "get", "secrets", "", "", "default", "their-secret"))
    assert e.value.message == (
        'secrets "their-secret" is forbidden: User "system:node:n1" cannot get resource '
        '"secrets" in API group "" in the namespace "default": no relationship found '
        "between node 'n1' and this object")
    with pytest.raises(errors.Forbidden, match="can only read individual secrets"):
        chain.check(Attributes(N1, "list", "secrets", "", "", "default"))
    with pytest.raises(errors.Forbidden) as e:
        chain.check(Attributes(N1, "delete", "pods", "", "", "default", "theirs"))
    assert e.value.message.endswith(
        "node 'n1' can only delete pods with spec.nodeName set to itself")


def test_the_graph_follows_pod_events() -> None:
    o = world()
    z = o.authorizer()
    assert isinstance(z, NodeAuthorizer)
    assert ask(z, "get", "secrets", "default", "mine-secret") is Decision.ALLOW
    # the pod moves to n2 (deleted and recreated there): n1 loses its Secret, n2 gains it
    mine = o.lookup("pods", "default", "mine")
    o.delete_pod("default", "mine")
    assert ask(z, "get", "secrets", "default", "mine-secret") is Decision.NO_OPINION
    moved = core_pb2.Pod()
    moved.CopyFrom(mine)
    moved.spec.node_name = "n2"
    o.put_pod(moved)
    n2 = UserInfo("system:node:n2", ("system:nodes",))
    assert ask(z, "get", "secrets", "default", "mine-secret", user=n2) is Decision.ALLOW
    assert ask(z, "get", "secrets", "default", "mine-secret") is Decision.NO_OPINION
    # a pending pod bound to n1 brings its references with it
    pending = o.lookup("pods", "default", "pending")
    bound = core_pb2.Pod()
    bound.CopyFrom(pending)
    bound.spec.node_name = "n1"
    bound.spec.containers.add(name="c").env_from.add().secret_ref.name = "env-secret"
    o.put_pod(bound)
    assert ask(z, "get", "secrets", "default", "env-secret") is Decision.ALLOW
    # two pods use one Secret: it stays readable until the last one leaves
    twin = core_pb2.Pod()
    twin.CopyFrom(bound)
    twin.metadata.name = "twin"
    o.put_pod(twin)
    o.delete_pod("default", "pending")
    assert ask(z, "get", "secrets", "default", "env-secret") is Decision.ALLOW
    o.delete_pod("default", "twin")
    assert ask(z, "get", "secrets", "default", "env-secret") is Decision.NO_OPINION
    # incremental: one scan at the first request, none after
    assert o.graph.rebuilds == 1
    # a status write walks nothing; a spec change walks that pod only
    walks = o.graph.walks
    running = core_pb2.Pod()
    running.CopyFrom(o.lookup("pods", "default", "theirs"))
    running.status.phase = "Running"
    o.put_pod(running)
    assert ask(z, "get", "secrets", "default", "their-secret", user=n2) is Decision.ALLOW
    assert o.graph.walks == walks
    running.spec.volumes.add(name="more").secret.secret_name = "more"
    o.put_pod(running)
    assert ask(z, "get", "secrets", "default", "more", user=n2) is Decision.ALLOW
    assert o.graph.walks == walks + 1


def test_the_graph_rescans_when_the_window_no_longer_reaches_it() -> None:
    o = Objects(history=2)
    z = o.authorizer()
    assert isinstance(z, NodeAuthorizer)
    p = pod("default", "a", "n1")
    p.spec.volumes.add(name="s").secret.secret_name = "s"
    o.put_pod(p)
    assert ask(z, "get", "secrets", "default", "s") is Decision.ALLOW
    assert o.graph.rebuilds == 1
    for i in range(5):  # more events than the window keeps
        o.put_pod(pod("default", f"filler-{i}", "n2"))
    o.delete_pod("default", "a")
    assert ask(z, "get", "secrets", "default", "s") is Decision.NO_OPINION
    assert o.graph.rebuilds == 2


def test_pod_references() -> None:
    p = pod("ns", "web", "n1")
    p.spec.image_pull_secrets.add(name="pull")
    c = p.spec.init_containers.add(name="init")
    c.env.add(name="A").value_from.secret_key_ref.name = "env-key"
    c = p.spec.containers.add(name="main")
    c.env.add(name="B").value_from.config_map_key_ref.name = "env-cm"
    c.env_from.add().config_map_ref.name = "envfrom-cm"
    proj = p.spec.volumes.add(name="p").projected
    proj.sources.add().secret.name = "proj-secret"
    proj.sources.add().config_map.name = "proj-cm"
    p.spec.volumes.add(name="csi").csi.node_publish_secret_ref.name = "csi-secret"
    p.spec.volumes.add(name="scratch").ephemeral.SetInParent()
    p.spec.volumes.add(name="host").host_path.path = "/tmp"
    assert pod_references(p) == {
        ("secrets", "ns", "pull"), ("secrets", "ns", "env-key"),
        ("secrets", "ns", "proj-secret"), ("secrets", "ns", "csi-secret"),
        ("configmaps", "ns", "env-cm"), ("configmaps", "ns", "envfrom-cm"),
        ("configmaps", "ns", "proj-cm"),
        ("persistentvolumeclaims", "ns", "web-scratch"),
        ("serviceaccounts", "ns", "default"),
    }


def test_volume_secret_references() -> None:
    assert pv_secret_references(volume("x", csi_secret=("", "creds")), "default") == {
        ("default", "creds")}
