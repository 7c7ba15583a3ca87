"""Pods' resolv.conf from dnsPolicy and dnsConfig (kubelet's rules), and the syncer handing
it to the sandbox with its warnings as Events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import HOST_HANDLER
from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.dns import (
    ResolvConf,
    merge_options,
    parse_resolv_conf,
    pod_resolv_conf,
)
from agent.kubelet.sync import PodState, PodSyncer, SyncConfig
from agent.runtime.fake import FakeRuntime
from control.api import convert
from control.api.pb import core_pb2
from control.runtime.clock import FakeClock
from control.runtime.events import FakeRecorder

HOST = ResolvConf(nameservers=["192.0.2.53", "192.0.2.54"], searches=["corp.example"],
                  options=["timeout:2", "ndots:1"])
CLUSTER = ["10.96.0.10"]
CLUSTER_SEARCH = ["web.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def pod(policy: str = "", host_network: bool = False, dns_config: dict[str, Any] | None = None,
        ns: str = "web") -> core_pb2.Pod:
    spec: dict[str, Any] = {"containers": [{"name": "app"}], "hostNetwork": host_network}
    if policy:
        spec["dnsPolicy"] = policy
    if dns_config is not None:
        spec["dnsConfig"] = dns_config
    return convert.from_dict({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "p", "namespace": ns, "uid": "u1"},
                              "spec": spec}, core_pb2.Pod())


@pytest.mark.parametrize(("p", "want"), [
    pytest.param(pod("ClusterFirst"),
                 ResolvConf(CLUSTER, [*CLUSTER_SEARCH, "corp.example"], ["ndots:5"]),
                 id="cluster-first"),
    pytest.param(pod(""), ResolvConf(CLUSTER, [*CLUSTER_SEARCH, "corp.example"], ["ndots:5"]),
                 id="empty-policy-is-cluster-first"),
    pytest.param(pod("ClusterFirst", host_network=True), HOST,
                 id="cluster-first-on-host-network-is-default"),
    pytest.param(pod("ClusterFirstWithHostNet", host_network=True),
                 ResolvConf(CLUSTER, [*CLUSTER_SEARCH, "corp.example"], ["ndots:5"]),
                 id="cluster-first-with-host-net"),
    pytest.param(pod("Default"), HOST, id="default"),
    pytest.param(pod("None", dns_config={"nameservers": ["1.2.3.4"], "searches": ["a.b"],
                                          "options": [{"name": "ndots", "value": "2"},
                                                      {"name": "edns0"}]}),
                 ResolvConf(["1.2.3.4"], ["a.b"], ["ndots:2", "edns0"]), id="none"),
    pytest.param(pod("ClusterFirst", dns_config={
        "nameservers": ["10.96.0.10", "1.1.1.1"], "searches": ["cluster.local", "x.y"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}),
        ResolvConf([*CLUSTER, "1.1.1.1"], [*CLUSTER_SEARCH, "corp.example", "x.y"],
                   ["ndots:2", "single-request"]),
        id="dns-config-merged-without-duplicates"),
    pytest.param(pod("Default", dns_config={"options": [{"name": "timeout", "value": "5"}]}),
                 ResolvConf(HOST.nameservers, HOST.searches, ["timeout:5", "ndots:1"]),
                 id="option-overrides-in-place"),
    pytest.param(pod("None", dns_config={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3",
                                                          "4.4.4.4"]}),
                 ResolvConf(["1.1.1.1", "2.2.2.2", "3.3.3.3"], [], []),
                 id="at-most-three-nameservers"),
    pytest.param(pod("ClusterFirst", ns="kube-system"),
                 ResolvConf(CLUSTER, ["kube-system.svc.cluster.local", "svc.cluster.local",
                                      "cluster.local", "corp.example"], ["ndots:5"]),
                 id="namespace-in-search"),
])
def test_pod_resolv_conf(p: core_pb2.Pod, want: ResolvConf) -> None:
    got, _ = pod_resolv_conf(p, HOST, CLUSTER, "cluster.local")
    assert got == want


def test_too_many_search_domains_are_cut_with_a_warning() -> None:
    searches = [f"d{i}.example" for i in range(40)]
    got, warnings = pod_resolv_conf(pod("None", dns_config={"nameservers": ["1.1.1.1"],
                                                            "searches": searches}),
                                    HOST, CLUSTER, "cluster.local")
    assert got.searches == searches[:32]
    assert [r for r, _ in warnings] == ["DNSConfigForming"]
    long = [("x" * 60) + f"{i}.example" for i in range(32)]
    got, warnings = pod_resolv_conf(pod("None", dns_config={"nameservers": ["1.1.1.1"],
                                                            "searches": long}),
                                    HOST, CLUSTER, "cluster.local")
    assert len(" ".join(got.searches)) <= 2048 < len(" ".join(long))
    assert got.searches == long[:len(got.searches)]
    assert "applied search line" in warnings[0][1]


def test_missing_cluster_dns_falls_back_to_host_with_a_warning() -> None:
    got, warnings = pod_resolv_conf(pod("ClusterFirst"), HOST, [], "cluster.local")
    assert got == HOST
    assert [r for r, _ in warnings] == ["MissingClusterDNS"]
    # None: a node whose pods share the host's network, no cluster DNS on purpose
    got, warnings = pod_resolv_conf(pod("ClusterFirst"), HOST, None, "cluster.local")
    assert got == HOST and warnings == []


def test_parse_and_render() -> None:
    text = ("# generated\nnameserver 192.0.2.53\ndomain old.example\n"
            "search a.example b.example. .\nnameserver 192.0.2.54 ; second\n"
            "options ndots:1 timeout:2\noptions ndots:3\nsortlist 1.2.3.4\n")
    conf = parse_resolv_conf(text)
    assert conf == ResolvConf(["192.0.2.53", "192.0.2.54"], ["a.example", "b.example"],
                              ["ndots:3", "timeout:2"])
    assert conf.render() == ("search a.example b.example\nnameserver 192.0.2.53\n"
                             "nameserver 192.0.2.54\noptions ndots:3 timeout:2\n")
    assert parse_resolv_conf(conf.render()) == conf
    assert merge_options(["a:1", "b"], ["b:2", "c"]) == ["a:1", "b:2", "c"]


async def test_sandbox_gets_the_pods_resolv_conf(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 192.0.2.53\nsearch corp.example\n")
    clock = FakeClock()
    rt = FakeRuntime(clock)
    recorder = FakeRecorder()
    syncer = PodSyncer(rt, clock, SyncConfig(node_name="n1", data_dir=tmp_path,
                                             cluster_dns=[], resolv_conf=host,
                                             default_handler=HOST_HANDLER),
                       CrashLoopBackoff(clock), recorder=recorder)
    p = pod("ClusterFirst")
    p.spec.node_name = "n1"
    await syncer.sync_pod(p, PodState("u1"))
    (sb,) = rt.sandboxes.values()
    assert sb.config.resolv_conf == "search corp.example\nnameserver 192.0.2.53\n"
    assert "MissingClusterDNS" in recorder.reasons()

    syncer.config.cluster_dns = ["10.96.0.10"]
    p2 = pod("ClusterFirst", ns="db")
    p2.metadata.uid = "u2"
    p2.spec.node_name = "n1"
    await syncer.sync_pod(p2, PodState("u2"))
    sb2 = next(s for s in rt.sandboxes.values() if s.config.pod_uid == "u2")
    assert sb2.config.resolv_conf == (
        "search db.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "nameserver 10.96.0.10\noptions ndots:5\n")
