"""Pure helpers of the node side: flag parsers, capacity arithmetic, condition transitions,
labels, registration/adoption of the Node object, and the Lease renewal."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from agent import config
from agent.config import AgentOptions, TaintSpec
from agent.kubelet import lease as lease_mod
from agent.kubelet import node_status as ns
from agent.kubelet.machine import MachineInfo, Pressure
from control.api import errors
from control.api.pb import core_pb2
from control.api.timeutil import micro_time_at
from control.runtime.clock import FakeClock

GiB = 2**30

MACHINE = MachineInfo(
    cpus=4, memory_bytes=8 * GiB, ephemeral_storage_bytes=100 * GiB, hostname="box",
    operating_system="linux", architecture="amd64", kernel_version="6.8.0",
    os_image="Ubuntu 24.04 LTS", machine_id="m" * 32, system_uuid="", boot_id="b" * 36,
)
CALM = Pressure(memory_available_bytes=4 * GiB, disk_available_bytes=50 * GiB,
                disk_total_bytes=100 * GiB, processes=300, pid_max=4_194_304)


def opts(**kw: object) -> AgentOptions:
    base: dict[str, object] = {"server": "127.0.0.1:6443", "node_name": "n1",
                               "data_dir": Path("/tmp/x")}
    return AgentOptions(**{**base, **kw})  # type: ignore[arg-type]


# -- flag parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("a=b", {"a": "b"}),
        ("zone=eu, example.com/tier=gold", {"zone": "eu", "example.com/tier": "gold"}),
        ("empty=", {"empty": ""}),
    ],
)
def test_parse_labels(text: str, expected: dict[str, str]) -> None:
    assert config.parse_labels(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=v", "bad key=v", "k=bad value", "k=" + "x" * 64])
def test_parse_labels_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_labels(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dedicated=gpu:NoSchedule",
         [TaintSpec("dedicated", "gpu", "NoSchedule")]),
        ("key:NoExecute,a=b:PreferNoSchedule",
         [TaintSpec("key", "", "NoExecute"), TaintSpec("a", "b", "PreferNoSchedule")]),
        ("example.com/x=y:NoSchedule", [TaintSpec("example.com/x", "y", "NoSchedule")]),
    ],
)
def test_parse_taints(text: str, expected: list[TaintSpec]) -> None:
    assert config.parse_taints(text) == expected


@pytest.mark.parametrize(
    "text", ["k=v", "k=v:Sometimes", ":NoSchedule", "bad key:NoSchedule", "a:NoSchedule,a=b:NoSchedule"]
)
def test_parse_taints_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_taints(text)


def test_parse_resource_list() -> None:
    assert config.parse_resource_list("cpu=100m, memory=256Mi") == {"cpu": "100m",
                                                                     "memory": "256Mi"}
    assert config.parse_resource_list("ephemeral-storage=1G") == {"ephemeral-storage": "1G"}
    for bad in ("cpu", "gpu=1", "cpu=lots", "memory=-1Mi"):
        with pytest.raises(ValueError):
            config.parse_resource_list(bad)


def test_options_defaults_follow_kubelet() -> None:
    o = opts()
    assert o.node_lease_duration_seconds == 40
    assert o.renew_interval == 10.0
    assert o.node_status_update_frequency == 10.0
    assert o.max_pods == 110
    assert opts(lease_renew_interval=0.2).renew_interval == 0.2
    with pytest.raises(ValueError):
        opts(node_name="Bad_Name").validate()


def test_default_data_dir_is_per_node() -> None:
    assert config.default_data_dir("n1").parts[-2:] == ("agent", "n1")


# -- capacity ------------------------------------------------------------------------------


def test_machine_capacity_units() -> None:
    assert ns.machine_capacity(MACHINE, 110) == {
        "cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "110",
    }
    odd = MachineInfo(**{**MACHINE.__dict__, "memory_bytes": 16318428 * 1024})
    assert ns.machine_capacity(odd, 5)["memory"] == "16318428Ki"


@pytest.mark.parametrize(
    ("capacity", "reserved", "expected"),
    [
        ({"cpu": "4"}, {}, {"cpu": "4"}),
        ({"cpu": "4"}, {"cpu": "100m"}, {"cpu": "3900m"}),
        ({"cpu": "4", "memory": "8Gi"}, {"memory": "256Mi"}, {"cpu": "4", "memory": "7936Mi"}),
        ({"memory": "1Gi"}, {"memory": "2Gi"}, {"memory": "0"}),  # floored, never negative
        ({"pods": "110"}, {"cpu": "1"}, {"pods": "110"}),  # reservations of absent resources
    ],
)
def test_allocatable(capacity: dict[str, str], reserved: dict[str, str],
                     expected: dict[str, str]) -> None:
    assert ns.allocatable(capacity, reserved) == expected


# -- conditions -------------------------------------------------------------------------------


def ts(s: int) -> Timestamp:
    return Timestamp(seconds=s)


def test_next_condition_transitions() -> None:
    want_ok = ns.ConditionWant("DiskPressure", "False", "KubeletHasNoDiskPressure", "m")
    want_bad = ns.ConditionWant("DiskPressure", "True", "KubeletHasDiskPressure", "m")
    first = ns.next_condition(None, want_ok, ts(100))
    assert (first.last_heartbeat_time.seconds, first.last_transition_time.seconds) == (100, 100)
    same = ns.next_condition(first, want_ok, ts(110))
    assert (same.last_heartbeat_time.seconds, same.last_transition_time.seconds) == (110, 100)
    flipped = ns.next_condition(same, want_bad, ts(120))
    assert (flipped.status, flipped.reason) == ("True", "KubeletHasDiskPressure")
    assert flipped.last_transition_time.seconds == 120
    # A reason change alone is not a transition.
    reworded = ns.next_condition(flipped, ns.ConditionWant("DiskPressure", "True", "Other", "x"),
                                 ts(130))
    assert reworded.last_transition_time.seconds == 120


def test_merge_conditions_keeps_foreign_and_order() -> None:
    foreign = core_pb2.NodeCondition(type="NetworkUnavailable", status="False", reason="RouteCreated")
    old_ready = ns.next_condition(None, ns.ready_condition(), ts(1))
    merged = ns.merge_conditions([foreign, old_ready], [ns.ready_condition(),
                                 ns.ConditionWant("PIDPressure", "False", "r", "m")], ts(5))
    assert [c.type for c in merged] == ["NetworkUnavailable", "Ready", "PIDPressure"]
    assert merged[0] == foreign
    assert merged[1].last_transition_time.seconds == 1
    assert merged[1].last_heartbeat_time.seconds == 5


@pytest.mark.parametrize(
    ("pressure", "expected"),
    [
        (CALM, ("False", "False", "False")),
        (Pressure(50 * 2**20, 50, 100, 1, 100), ("True", "False", "False")),
        (Pressure(GiB, 5, 100, 1, 100), ("False", "True", "False")),
        (Pressure(GiB, 50, 100, 95, 100), ("False", "False", "True")),
        (Pressure(None, None, None, None, None), ("False", "False", "False")),
        (Pressure(GiB, 0, 0, 5, 0), ("False", "False", "False")),  # zero totals: unknown
    ],
)
def test_pressure_conditions(pressure: Pressure, expected: tuple[str, str, str]) -> None:
    got = ns.pressure_conditions(pressure)
    assert [c.type for c in got] == ["MemoryPressure", "DiskPressure", "PIDPressure"]
    assert tuple(c.status for c in got) == expected


# -- the Node object ------------------------------------------------------------------------


def test_build_node() -> None:
    o = opts(labels={"zone": "eu", ns.LABEL_HOSTNAME: "spoofed"},
             taints=[TaintSpec("dedicated", "gpu", "NoSchedule")],
             system_reserved={"cpu": "500m"}, max_pods=20)
    node = ns.build_node(o, MACHINE, CALM, "10.0.0.5", ts(1000))
    labels = dict(node.metadata.labels)
    assert labels == {
        "zone": "eu", "kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    }
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
        ("dedicated", "gpu", "NoSchedule")]
    assert not node.spec.unschedulable
    st = node.status
    assert st.capacity["cpu"].string == "4" and st.allocatable["cpu"].string == "3500m"
    assert st.capacity["pods"].string == "20"
    assert [(a.type, a.address) for a in st.addresses] == [("InternalIP", "10.0.0.5"),
                                                           ("Hostname", "n1")]
    assert st.node_info.kubelet_version == ns.KUBELET_VERSION
    assert st.node_info.container_runtime_version == "flotilla-process://0.1.0"
    assert st.node_info.architecture == "amd64" and st.node_info.os_image == MACHINE.os_image
    conds = {c.type: c for c in st.conditions}
    assert list(conds) == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert conds["Ready"].status == "True" and conds["Ready"].reason == "KubeletReady"


def test_apply_status_moves_heartbeat_not_transition() -> None:
    node = ns.build_node(opts(), MACHINE, CALM, "10.0.0.5", ts(1000))
    ns.apply_status(node, opts(), MACHINE, CALM, "10.0.0.5", ts(1010))
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert (ready.last_heartbeat_time.seconds, ready.last_transition_time.seconds) == (1010, 1000)
    assert len(node.status.addresses) == 2 and len(node.status.conditions) == 4


def test_reconcile_labels_keeps_user_spec() -> None:
    node = core_pb2.Node()
    node.metadata.labels.update({"kubernetes.io/hostname": "old", "user": "keep"})
    node.spec.unschedulable = True
    wanted = ns.node_labels("n1", MACHINE, {})
    assert ns.reconcile_labels(node, wanted)
    assert node.metadata.labels["kubernetes.io/hostname"] == "n1"
    assert node.metadata.labels["user"] == "keep"
    assert node.spec.unschedulable
    assert not ns.reconcile_labels(node, wanted)


def test_volume_dir_annotation() -> None:
    key = "local-path.flotilla.io/volume-dir"
    node = ns.build_node(opts(), MACHINE, CALM, "10.0.0.5", ts(1000))
    assert node.metadata.annotations[key] == "/tmp/x/storage"
    moved = ns.node_annotations(opts(volume_dir=Path("/srv/volumes")))
    assert moved == {key: "/srv/volumes"}
    node.metadata.annotations["user"] = "keep"
    assert ns.reconcile_annotations(node, moved)
    assert dict(node.metadata.annotations) == {key: "/srv/volumes", "user": "keep"}
    assert not ns.reconcile_annotations(node, moved)


# -- the Lease ------------------------------------------------------------------------------


def test_micro_time_at() -> None:
    t = micro_time_at(1700000000.1234567)
    assert (t.seconds, t.nanos) == (1700000000, 123457000)


def test_new_lease_and_renew() -> None:
    lease = lease_mod.new_lease("n1", 40, ts(10), None)
    assert lease.metadata.namespace == "kube-node-lease"
    assert (lease.spec.holder_identity, lease.spec.lease_duration_seconds) == ("n1", 40)
    assert not lease.metadata.owner_references
    lease_mod.renew(lease, "n1", 40, ts(20), "uid-1")
    assert lease.spec.renew_time.seconds == 20 and lease.spec.acquire_time.seconds == 10
    assert [(r.kind, r.name, r.uid) for r in lease.metadata.owner_references] == [
        ("Node", "n1", "uid-1")]
    assert not lease_mod.set_owner(lease, "n1", "uid-1")
    lease.spec.holder_identity = "someone-else"
    lease_mod.renew(lease, "n1", 40, ts(30), "uid-1")
    assert lease.spec.holder_identity == "n1" and lease.spec.acquire_time.seconds == 30
    assert lease.spec.lease_transitions == 1


def _conds(**statuses: str) -> list[core_pb2.NodeCondition]:
    return [core_pb2.NodeCondition(type=t, status=s) for t, s in statuses.items()]


@pytest.mark.parametrize(("before", "after", "reasons"), [
    ({}, {"MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False",
          "Ready": "True"},
     ["NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady"]),
    ({"Ready": "True", "DiskPressure": "False"}, {"Ready": "True", "DiskPressure": "True"},
     ["NodeHasDiskPressure"]),
    ({"Ready": "Unknown"}, {"Ready": "True"}, ["NodeReady"]),
    ({"Ready": "True"}, {"Ready": "False"}, ["NodeNotReady"]),
    ({"Ready": "True", "NetworkUnavailable": "True"},
     {"Ready": "True", "NetworkUnavailable": "False"}, []),
])
def test_condition_events(before: dict[str, str], after: dict[str, str],
                          reasons: list[str]) -> None:
    assert ns.condition_events(_conds(**before), _conds(**after)) == reasons


class _ThrottlingClient:
    """Refuses every call as a server shedding load would."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        self.calls = 0

    async def get(self, *a: object, **kw: object) -> object:
        self.calls += 1
        raise errors.TooManyRequests("too many requests", retry_after=self.retry_after)


@pytest.mark.parametrize(("retry_after", "wait"), [(3, 3.0), (60, 10.0)])
async def test_a_throttled_lease_renewal_waits_the_retry_after_within_the_interval(
        retry_after: int, wait: float) -> None:
    clock = FakeClock()
    client = _ThrottlingClient(retry_after)
    ctl = lease_mod.LeaseController(client, opts(), clock=clock)  # type: ignore[arg-type]
    task = asyncio.create_task(ctl.run())
    try:
        await clock.wait_for_sleepers(1)
        deadline = clock.next_deadline()
        assert deadline is not None
        # at least what the server asked (not the 0.2 s backoff), never past the renew
        # interval (10 s): a lease must not lapse for a long retry-after
        assert deadline - clock.monotonic() == pytest.approx(wait)
        assert client.calls == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
