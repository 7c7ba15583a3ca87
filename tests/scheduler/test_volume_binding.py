"""VolumeBinding: the pure per-node decision (table), the plugin through the framework on
an in-memory cache and VolumeStore (messages, assumptions), PreBind's writes and bounded
wait with a fake client and a fake clock, and the whole path against a real server with
the PV binder."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from control.api import errors
from control.api.pb import core_pb2
from control.runtime.clock import FakeClock
from control.scheduler import config as configmod
from control.scheduler.cache import Cache
from control.scheduler.framework import Code, CycleState, FitError, Framework, Handle
from control.scheduler.plugins.volume_binding import (
    R_BIND_CONFLICT,
    R_NODE_CONFLICT,
    R_PV_NOT_EXIST,
    R_UNBOUND_IMMEDIATE,
    SELECTED_NODE,
    VolumeBinding,
    find_pod_volumes,
)
from control.scheduler.registry import build_framework
from control.scheduler.volumes import VolumeStore
from tests.conftest import Cluster
from tests.scheduler.builders import (
    info,
    node,
    pod,
    pv,
    pvc,
    storage_class,
    with_claims,
)
from tests.support import eventually

PVC = core_pb2.PersistentVolumeClaim
PV = core_pb2.PersistentVolume


def store_with(*objs: Any) -> VolumeStore:
    s = VolumeStore()
    for o in objs:
        if isinstance(o, PVC):
            s.set_claim(o)
        elif isinstance(o, PV):
            s.set_volume(o)
        else:
            s.set_class(o)
    return s


LABELS = {"kubernetes.io/hostname": "n1", "topology.kubernetes.io/zone": "a"}


# -- the per-node decision -----------------------------------------------------------------

@pytest.mark.parametrize("name, objs, bound, to_bind, reasons, static, dynamic", [
    ("bound volume on this node",
     [pv("v", node_name="n1", claim=pvc("c", volume="v"))], ["c"], [], [], [], []),
    ("bound volume without node affinity fits anywhere",
     [pv("v", claim=pvc("c", volume="v"))], ["c"], [], [], [], []),
    ("bound volume on another node",
     [pv("v", node_name="n2", claim=pvc("c", volume="v"))], ["c"], [], [R_NODE_CONFLICT],
     [], []),
    ("bound to a volume that does not exist", [], ["c"], [], [R_PV_NOT_EXIST], [], []),
    ("an available volume on this node", [storage_class("local"), pv("v", node_name="n1")],
     [], ["c"], [], ["v"], []),
    ("the smallest fitting volume", [storage_class("local"), pv("big", "10Gi", node_name="n1"),
                                     pv("small", "2Gi", node_name="n1"),
                                     pv("tiny", "100Mi", node_name="n1")],
     [], ["c"], [], ["small"], []),
    ("only a volume on another node, no provisioner",
     [storage_class("local"), pv("v", node_name="n2")], [], ["c"], [R_BIND_CONFLICT], [], []),
    ("a volume of another class",
     [storage_class("local"), pv("v", node_name="n1", sc="other")], [], ["c"],
     [R_BIND_CONFLICT], [], []),
    ("a volume taken by another claim",
     [storage_class("local"), pv("v", node_name="n1", claim=pvc("other", volume="v"))], [],
     ["c"], [R_BIND_CONFLICT], [], []),
    ("no volume, a provisioner", [storage_class("local", "flotilla.io/local-path")], [], ["c"],
     [], [], ["c"]),
    ("a provisioner whose allowedTopologies admit the node",
     [storage_class("local", "x.io/p", allowed={"topology.kubernetes.io/zone": ["a"]})], [],
     ["c"], [], [], ["c"]),
    ("a provisioner whose allowedTopologies exclude the node",
     [storage_class("local", "x.io/p", allowed={"topology.kubernetes.io/zone": ["b"]})], [],
     ["c"], [R_BIND_CONFLICT], [], []),
    ("a static volume is preferred to provisioning",
     [storage_class("local", "x.io/p"), pv("v", node_name="n1")], [], ["c"], [], ["v"], []),
    ("being provisioned for this node",
     [storage_class("local", "x.io/p")], [], ["selected-n1"], [], [], ["selected-n1"]),
    ("being provisioned for another node",
     [storage_class("local", "x.io/p")], [], ["selected-n2"], [R_BIND_CONFLICT], [], []),
    ("two claims never share a volume", [storage_class("local"), pv("v", node_name="n1")], [],
     ["c", "d"], [R_BIND_CONFLICT], ["v"], []),
    ("two claims, two volumes", [storage_class("local"), pv("v", node_name="n1"),
                                 pv("w", node_name="n1")], [], ["c", "d"], [], ["v", "w"], []),
    ("bound and to bind, both fine", [storage_class("local"),
                                      pv("b", node_name="n1", claim=pvc("c", volume="b")),
                                      pv("v", node_name="n1")], ["c"], ["d"], [], ["v"], []),
])
def test_find_pod_volumes(name: str, objs: list[Any], bound: list[str], to_bind: list[str],
                          reasons: list[str], static: list[str], dynamic: list[str]) -> None:
    store = store_with(*objs)
    claims = {"c": pvc("c", volume="v" if "bound volume" in name else ""),
              "d": pvc("d"),
              "selected-n1": pvc("selected-n1", annotations={SELECTED_NODE: "n1"}),
              "selected-n2": pvc("selected-n2", annotations={SELECTED_NODE: "n2"})}
    if name.startswith("bound to a volume"):
        claims["c"] = pvc("c", volume="gone")
    if name.startswith("bound and to bind"):
        claims["c"] = pvc("c", volume="b")
    found, got = find_pod_volumes(store, [claims[c] for c in bound],
                                  [claims[c] for c in to_bind], "n1", LABELS)
    assert got == reasons, name
    if not reasons:
        assert [v.metadata.name for _, v in found.static] == static, name
        assert [c.metadata.name for c in found.dynamic] == dynamic, name


# -- through the framework -----------------------------------------------------------------


def framework(store: VolumeStore, client: Any = None, clock: FakeClock | None = None,
              timeout: float = 600) -> Framework:
    cfg = configmod.parse({"profiles": [{"pluginConfig": [
        {"name": "VolumeBinding", "args": {"bindTimeoutSeconds": timeout}}]}]})
    prof = cfg.profiles[0]
    handle = Handle(client=client, volumes=store, clock=clock or FakeClock())
    return build_framework(prof.scheduler_name, prof.plugins, prof.plugin_args, handle,
                           rng=random.Random(1))


def three_nodes() -> Cache:
    c = Cache(FakeClock())
    for n in ("n1", "n2", "n3"):
        c.add_node(node(n))
    return c


def test_volume_binding_is_a_default_plugin() -> None:
    fw = framework(VolumeBinding().store)
    names = [p.name for p in fw.plugins.filter]
    assert names.index("VolumeBinding") == names.index("NodeResourcesFit") + 1
    assert [p.name for p in fw.plugins.pre_bind] == ["VolumeBinding"]
    assert "VolumeBinding" in [p.name for p in fw.plugins.reserve]


@pytest.mark.parametrize("objs, message", [
    ([storage_class("local"), pvc("data")],
     "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind."),
    ([storage_class("local"), pvc("data", volume="v"),
      pv("v", node_name="elsewhere", claim=pvc("data", volume="v"))],
     "0/3 nodes are available: 3 node(s) had volume node affinity conflict."),
    ([pvc("data", sc="")],
     f"0/3 nodes are available: {R_UNBOUND_IMMEDIATE}."),
    ([storage_class("local", wait=False), pvc("data")],
     f"0/3 nodes are available: {R_UNBOUND_IMMEDIATE}."),
    ([], '0/3 nodes are available: persistentvolumeclaim "data" not found.'),
])
def test_unschedulable_messages(objs: list[Any], message: str) -> None:
    fw = framework(store_with(*objs))
    with pytest.raises(FitError) as ei:
        fw.schedule(CycleState(three_nodes()), info(with_claims(pod("p"), "data")))
    assert str(ei.value) == message
    for st in ei.value.diagnosis.node_statuses.values():
        assert st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE


def test_claim_being_deleted_and_foreign_ephemeral_claim() -> None:
    c = pvc("data")
    c.metadata.deletion_timestamp.FromSeconds(1)
    fw = framework(store_with(storage_class("local"), c))
    with pytest.raises(FitError, match='persistentvolumeclaim "data" is being deleted'):
        fw.schedule(CycleState(three_nodes()), info(with_claims(pod("p"), "data")))
    p = pod("p")
    p.spec.volumes.add(name="scratch").ephemeral.volume_claim_template.spec.access_modes.append(
        "ReadWriteOnce")
    fw = framework(store_with(storage_class("local"), pvc("p-scratch")))
    with pytest.raises(FitError, match='"p-scratch" was not created for the pod'):
        fw.schedule(CycleState(three_nodes()), info(p))
    owned = pvc("p-scratch")
    owned.metadata.owner_references.add(kind="Pod", name="p", uid=p.metadata.uid,
                                        controller=True)
    fw = framework(store_with(storage_class("local", "x.io/p"), owned))
    assert fw.schedule(CycleState(three_nodes()), info(p)).node in ("n1", "n2", "n3")


def test_bound_volume_pins_the_pod_to_its_node() -> None:
    store = store_with(storage_class("local"), pvc("data", volume="v"),
                       pv("v", node_name="n2", claim=pvc("data", volume="v")))
    fw = framework(store)
    cache = three_nodes()
    for i in range(5):
        assert fw.schedule(CycleState(cache), info(with_claims(pod(f"p{i}"), "data"))).node == "n2"


def test_reserve_assumes_so_the_next_pod_takes_another_volume() -> None:
    store = store_with(storage_class("local"), pvc("a"), pvc("b"), pvc("c"),
                       pv("v1", node_name="n1"), pv("v2", node_name="n2"))
    fw = framework(store)
    cache = three_nodes()
    picked = {}
    states = {}
    for name in ("a", "b"):
        pi = info(with_claims(pod(f"p-{name}"), name))
        state = CycleState(cache)
        node_name = fw.schedule(state, pi).node
        assert fw.run_reserve(state, pi, node_name) is None
        cache.assume(pi, node_name)
        picked[name] = node_name
        states[name] = (state, pi, node_name)
    assert sorted(picked.values()) == ["n1", "n2"]
    v = {picked["a"]: "v1", picked["b"]: "v2"}
    assert store.volume(v[picked["a"]]).spec.claim_ref.name == "a"  # type: ignore[union-attr]
    assert store.informer_volume("v1").spec.claim_ref.name == ""  # type: ignore[union-attr]
    # both volumes assumed taken: a third claim finds none
    with pytest.raises(FitError, match=r"3 node\(s\) didn.t find available persistent volumes"):
        fw.schedule(CycleState(cache), info(with_claims(pod("p-c"), "c")))
    # unreserving the first gives its volume back
    state, pi, node_name = states["a"]
    fw.run_unreserve(state, pi, node_name)
    cache.forget(pi.key)
    assert store.assumed_counts() == (0, 1)
    assert fw.schedule(CycleState(cache), info(with_claims(pod("p-c"), "c"))).node == picked["a"]


def test_newer_informer_object_replaces_the_assumption() -> None:
    store = store_with(pv("v", rv="5"))
    assumed = pv("v", rv="5")
    assumed.spec.claim_ref.name = "mine"
    store.assume_volume(assumed)
    store.set_volume(pv("v", rv="5"))  # the same version again: still ours
    assert store.volume("v").spec.claim_ref.name == "mine"  # type: ignore[union-attr]
    store.set_volume(pv("v", rv="6"))
    assert store.volume("v").spec.claim_ref.name == ""  # type: ignore[union-attr]
    assert store.assumed_counts() == (0, 0)


# -- PreBind -------------------------------------------------------------------------------


class FakeApi:
    """Records updates; each returns the object with the next resourceVersion and, when
    ``deliver``, shows it to the store as the informer would."""

    def __init__(self, store: VolumeStore, deliver: bool = True) -> None:
        self.store = store
        self.deliver = deliver
        self.updates: list[Any] = []
        self.rv = 100
        self.fail: errors.ApiError | None = None

    async def update(self, obj: Any) -> Any:
        if self.fail is not None:
            raise self.fail
        self.rv += 1
        out = type(obj)()
        out.CopyFrom(obj)
        out.metadata.resource_version = str(self.rv)
        self.updates.append(out)
        if self.deliver:
            if isinstance(out, PV):
                self.store.set_volume(out)
            else:
                self.store.set_claim(out)
        return out


def bind_claim(store: VolumeStore, claim: PVC, volume: PV, rv: int) -> None:
    """What the PV binder (and a provisioner) do: claim and volume Bound to each other."""
    v = PV()
    v.CopyFrom(volume)
    v.spec.claim_ref.name = claim.metadata.name
    v.spec.claim_ref.namespace = claim.metadata.namespace
    v.spec.claim_ref.uid = claim.metadata.uid
    v.metadata.resource_version = str(rv)
    store.set_volume(v)
    c = PVC()
    c.CopyFrom(claim)
    c.spec.volume_name = volume.metadata.name
    c.metadata.annotations["pv.kubernetes.io/bind-completed"] = "yes"
    c.metadata.resource_version = str(rv + 1)
    store.set_claim(c)


async def _reserve(fw: Framework, cache: Cache, p: core_pb2.Pod) -> tuple[CycleState, Any, str]:
    pi = info(p)
    state = CycleState(cache)
    node_name = fw.schedule(state, pi).node
    assert fw.run_reserve(state, pi, node_name) is None
    return state, pi, node_name


async def test_pre_bind_writes_claim_ref_and_waits_for_the_binder() -> None:
    store = store_with(storage_class("local"), pvc("data"), pv("v", node_name="n3"))
    api = FakeApi(store)
    fw = framework(store, api)
    state, pi, node_name = await _reserve(fw, three_nodes(), with_claims(pod("p"), "data"))
    assert node_name == "n3"
    task = asyncio.create_task(fw.run_pre_bind(state, pi, node_name))
    await asyncio.sleep(0.01)
    assert not task.done()  # claimRef written, the claim is not bound yet
    [written] = api.updates
    assert written.metadata.name == "v" and written.spec.claim_ref.name == "data"
    assert written.spec.claim_ref.uid == "uid-data"
    bind_claim(store, pvc("data"), written, 200)
    assert await asyncio.wait_for(task, 1) is None


async def test_pre_bind_selects_the_node_for_provisioning() -> None:
    store = store_with(storage_class("local", "flotilla.io/local-path"), pvc("data"))
    api = FakeApi(store)
    fw = framework(store, api)
    state, pi, node_name = await _reserve(fw, three_nodes(), with_claims(pod("p"), "data"))
    task = asyncio.create_task(fw.run_pre_bind(state, pi, node_name))
    await asyncio.sleep(0.01)
    [claim] = api.updates
    assert claim.metadata.annotations[SELECTED_NODE] == node_name
    assert not task.done()
    # the provisioner creates a volume on that node and the binder binds it
    bind_claim(store, claim, pv("pvc-1", node_name=node_name), 300)
    assert await asyncio.wait_for(task, 1) is None


async def test_pre_bind_fails_when_the_provisioner_gives_the_claim_back() -> None:
    store = store_with(storage_class("local", "x.io/p"), pvc("data"))
    api = FakeApi(store)
    fw = framework(store, api)
    state, pi, node_name = await _reserve(fw, three_nodes(), with_claims(pod("p"), "data"))
    task = asyncio.create_task(fw.run_pre_bind(state, pi, node_name))
    await asyncio.sleep(0.01)
    reset = pvc("data", rv="500")  # the annotation removed
    store.set_claim(reset)
    st = await asyncio.wait_for(task, 1)
    assert st is not None and st.code == Code.ERROR
    assert "selectedNode annotation reset" in st.message
    assert st.message.startswith('running PreBind plugin "VolumeBinding"')


async def test_pre_bind_waits_for_its_own_write_to_arrive() -> None:
    store = store_with(storage_class("local", "x.io/p"), pvc("data"))
    api = FakeApi(store, deliver=False)  # the informer is behind our write
    fw = framework(store, api)
    state, pi, node_name = await _reserve(fw, three_nodes(), with_claims(pod("p"), "data"))
    task = asyncio.create_task(fw.run_pre_bind(state, pi, node_name))
    await asyncio.sleep(0.01)
    store.set_claim(pvc("data", rv="2"))  # an older change: not a reset
    await asyncio.sleep(0.01)
    assert not task.done()
    bind_claim(store, api.updates[0], pv("pvc-1", node_name=node_name), 300)
    assert await asyncio.wait_for(task, 1) is None


async def test_pre_bind_wait_is_bounded() -> None:
    store = store_with(storage_class("local"), pvc("data"), pv("v", node_name="n1"))
    clock = FakeClock()
    fw = framework(store, FakeApi(store), clock, timeout=30)
    state, pi, node_name = await _reserve(fw, three_nodes(), with_claims(pod("p"), "data"))
    task = asyncio.create_task(fw.run_pre_bind(state, pi, node_name))
    await clock.wait_for_sleepers(1)
    clock.advance(29)
    await asyncio.sleep(0.01)
    assert not task.done()
    clock.advance(2)
    st = await asyncio.wait_for(task, 1)
    assert st is not None and "timed out waiting for the claims to be bound" in st.message


async def test_pre_bind_conflict_fails_the_binding() -> None:
    store = store_with(storage_class("local"), pvc("data"), pv("v", node_name="n1"))
    api = FakeApi(store)
    api.fail = errors.Conflict("the object has been modified")
    fw = framework(store, api)
    state, pi, node_name = await _reserve(fw, three_nodes(), with_claims(pod("p"), "data"))
    st = await fw.run_pre_bind(state, pi, node_name)
    assert st is not None and st.code == Code.ERROR and "modified" in st.message
    fw.run_unreserve(state, pi, node_name)
    assert store.assumed_counts() == (0, 0)


async def test_pod_with_bound_claims_needs_no_writes() -> None:
    store = store_with(storage_class("local"), pvc("data", volume="v"),
                       pv("v", node_name="n1", claim=pvc("data", volume="v")))
    api = FakeApi(store)
    fw = framework(store, api)
    state, pi, node_name = await _reserve(fw, three_nodes(), with_claims(pod("p"), "data"))
    assert node_name == "n1"
    assert await fw.run_pre_bind(state, pi, node_name) is None
    assert api.updates == []


# -- a real server, the PV binder and the scheduler ----------------------------------------


async def test_scheduler_binds_a_local_volume_through_the_api(cluster: Cluster) -> None:
    c = cluster.client
    for n in ("n1", "n2", "n3"):
        await c.create(node(n))
    await c.create(storage_class("local"))
    for name, on in (("v2", "n2"), ("v3", "n3")):
        v = pv(name, node_name=on)
        v.metadata.uid = ""
        v.metadata.resource_version = ""
        v.ClearField("status")
        await c.create(v)
    for name in ("data", "more"):
        claim = pvc(name, rv="")
        claim.metadata.uid = ""
        claim.ClearField("status")
        await c.create(claim)
    await c.create(with_claims(pod("db", uid=""), "data"))

    async def bound(name: str) -> core_pb2.Pod | None:
        p = await c.get("pods", name, "default")
        return p if p.spec.node_name else None

    db = await eventually(lambda: bound("db"), timeout=20)
    assert db.spec.node_name in ("n2", "n3")

    async def claim_bound() -> PVC | None:
        got = await c.get("persistentvolumeclaims", "data", "default")
        return got if got.status.phase == "Bound" else None

    claim = await eventually(claim_bound, timeout=20)
    volume = await c.get("persistentvolumes", claim.spec.volume_name)
    assert volume.spec.node_affinity.required.node_selector_terms[0].match_expressions[0] \
        .values == [db.spec.node_name]
    assert volume.spec.claim_ref.uid == claim.metadata.uid

    # the other volume is left for the next claim; a third claim has none
    await c.create(with_claims(pod("db2", uid=""), "more"))
    db2 = await eventually(lambda: bound("db2"), timeout=20)
    assert {db.spec.node_name, db2.spec.node_name} == {"n2", "n3"}
    last = pvc("last", rv="")
    last.metadata.uid = ""
    last.ClearField("status")
    await c.create(last)
    await c.create(with_claims(pod("db3", uid=""), "last"))

    async def failed() -> str | None:
        p = await c.get("pods", "db3", "default")
        for cond in p.status.conditions:
            if cond.type == "PodScheduled" and cond.reason == "Unschedulable":
                return str(cond.message)
        return None

    assert await eventually(failed, timeout=20) == (
        "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to "
        "bind.")
