"""`flotilla agent`'s timing flags: Go durations, kubelet's defaults, passed through to
AgentOptions and KubeletOptions, validated with the flag's name in the message."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentOptions
from agent.main import kubelet_options, proxy_mode
from control.cli import verbs_agent


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    verbs_agent.register(parser.add_subparsers())
    return parser.parse_args(["agent", "--node-name", "n1", "--data-dir", "/tmp/x", *argv])


def options(*argv: str) -> AgentOptions:
    return verbs_agent.options_from_args(parse(*argv), "127.0.0.1:6443")


def test_labels_a_node_may_not_set_itself_are_refused_at_start() -> None:
    """As the kubelet: NodeRestriction would refuse the Node with them."""
    options("--labels", "zone=eu,node.kubernetes.io/pool=a,example.com/gpu=t").validate()
    with pytest.raises(ValueError, match=r"--labels node-restriction\.kubernetes\.io/pci, "
                                         r"node-role\.kubernetes\.io/worker: a node may not"):
        options("--labels", "node-role.kubernetes.io/worker=,zone=eu,"
                            "node-restriction.kubernetes.io/pci=true").validate()


def test_defaults_are_kubelets() -> None:
    o = options()
    o.validate()
    assert (o.sync_frequency, o.runtime_relist_period, o.crash_loop_backoff_initial,
            o.crash_loop_backoff_max, o.volume_refresh_period) == (60.0, 1.0, 10.0, 300.0,
                                                                    60.0)
    assert (o.node_lease_duration_seconds, o.renew_interval,
            o.node_status_update_frequency, o.daemon_port) == (40, 10.0, 10.0, 0)
    k = kubelet_options(o)
    assert (k.sync_period, k.relist_period, k.backoff_initial, k.backoff_max,
            k.volume_refresh_period, k.data_dir) == (60.0, 1.0, 10.0, 300.0, 60.0,
                                                     Path("/tmp/x"))


@pytest.mark.parametrize(("argv", "field", "value"), [
    (["--sync-frequency", "30s"], "sync_frequency", 30.0),
    (["--sync-frequency", "1m30s"], "sync_frequency", 90.0),
    (["--sync-frequency", "2"], "sync_frequency", 2.0),
    (["--runtime-relist-period", "500ms"], "runtime_relist_period", 0.5),
    (["--crash-loop-backoff-initial", "1s"], "crash_loop_backoff_initial", 1.0),
    (["--crash-loop-backoff-max", "10m"], "crash_loop_backoff_max", 600.0),
    (["--volume-refresh-period", "5s"], "volume_refresh_period", 5.0),
    (["--node-lease-renew-interval", "2s"], "renew_interval", 2.0),
    (["--node-lease-duration-seconds", "20"], "renew_interval", 5.0),
    (["--node-status-update-frequency", "1.5s"], "node_status_update_frequency", 1.5),
    (["--daemon-port", "10250"], "daemon_port", 10250),
    (["--daemon-port", "0"], "daemon_port", 0),
    (["--proxy-mode", "nftables"], "proxy_mode", "nftables"),
    ([], "proxy_mode", "auto"),
    (["--proxy-sync-period", "5"], "proxy_sync_period", 5.0),
    ([], "stop_pods_after_disconnect", None),
    (["--stop-pods-after-disconnect", "90s"], "stop_pods_after_disconnect", 90.0),
    ([], "local_volume_dir", Path("/tmp/x/storage")),
    (["--volume-dir", "/srv/volumes"], "local_volume_dir", Path("/srv/volumes")),
])
def test_flag_parses_and_passes_through(argv: list[str], field: str, value: Any) -> None:
    o = options(*argv)
    o.validate()
    assert getattr(o, field) == value


def test_timings_reach_the_kubelet() -> None:
    k = kubelet_options(options(
        "--sync-frequency", "5s", "--runtime-relist-period", "100ms",
        "--crash-loop-backoff-initial", "1s", "--crash-loop-backoff-max", "4s",
        "--volume-refresh-period", "3s", "--stop-pods-after-disconnect", "2m"))
    assert (k.sync_period, k.relist_period, k.backoff_initial, k.backoff_max,
            k.volume_refresh_period, k.stop_pods_after_disconnect) == (5.0, 0.1, 1.0, 4.0,
                                                                      3.0, 120.0)


@pytest.mark.parametrize("argv", [
    ["--sync-frequency", "soon"],
    ["--runtime-relist-period", "1x"],
    ["--crash-loop-backoff-max", ""],
    ["--daemon-port", "http"],
])
def test_bad_syntax_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse(*argv)


@pytest.mark.parametrize(("argv", "flag"), [
    (["--sync-frequency", "0s"], "--sync-frequency"),
    (["--runtime-relist-period", "0"], "--runtime-relist-period"),
    (["--crash-loop-backoff-initial", "0s"], "--crash-loop-backoff-initial"),
    (["--crash-loop-backoff-initial", "1m", "--crash-loop-backoff-max", "30s"],
     "--crash-loop-backoff-max"),
    (["--volume-refresh-period", "0s"], "--volume-refresh-period"),
    (["--node-lease-renew-interval", "40s"], "--node-lease-renew-interval"),
    (["--node-lease-renew-interval", "0s"], "--node-lease-renew-interval"),
    (["--daemon-port", "70000"], "--daemon-port"),
    (["--daemon-port", "-1"], "--daemon-port"),
    (["--proxy-mode", "userspace"], "--proxy-mode userspace is not available yet"),
    (["--proxy-sync-period", "0"], "--proxy-sync-period"),
    (["--stop-pods-after-disconnect", "0s"], "--stop-pods-after-disconnect"),
])
def test_bad_values_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        options(*argv).validate()


def test_help_lists_the_timing_flags_with_defaults() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    verbs_agent.register(sub)
    text = sub.choices["agent"].format_help()
    for flag, default in (("--sync-frequency", "1m"), ("--runtime-relist-period", "1s"),
                          ("--crash-loop-backoff-initial", "10s"),
                          ("--crash-loop-backoff-max", "5m"),
                          ("--volume-refresh-period", "1m"),
                          ("--node-status-update-frequency", "10s"),
                          ("--node-lease-renew-interval", "10s"),
                          ("--daemon-port", "0")):
        assert flag in text
        after = " ".join(text.split(flag, 2)[-1].split()[:40])
        assert f"default {default}" in after or f"{default})" in after, (flag, after)


def test_pod_network_flags() -> None:
    o = options()
    # the command line defaults to a pod network when root; agents built in code to host
    assert (o.pod_network, o.cluster_cidr, o.service_cidr) == (
        "auto", "10.244.0.0/16", "10.96.0.0/12")
    assert AgentOptions(server="s", node_name="n", data_dir=Path("/x")).pod_network == "host"
    o = options("--pod-network", "bridge", "--cluster-cidr", "10.200.0.0/16")
    o.validate()
    assert (o.pod_network, o.cluster_cidr) == ("bridge", "10.200.0.0/16")
    with pytest.raises(ValueError, match=r"--cluster-cidr '10\.200\.0\.1/16'"):
        options("--cluster-cidr", "10.200.0.1/16").validate()
    with pytest.raises(ValueError, match="--service-cidr 'nope'"):
        options("--service-cidr", "nope").validate()
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse("--pod-network", "calico")


def test_dns_flags() -> None:
    o = options()
    o.validate()
    assert (o.cluster_dns, o.cluster_domain, o.resolv_conf) == (
        ["10.96.0.10"], "cluster.local", Path("/etc/resolv.conf"))
    o = options("--cluster-dns", "10.100.0.10", "--cluster-dns", "fd00::a",
                "--cluster-domain", "corp.internal", "--resolv-conf", "/run/resolv.conf")
    o.validate()
    assert (o.cluster_dns, o.cluster_domain, o.resolv_conf) == (
        ["10.100.0.10", "fd00::a"], "corp.internal", Path("/run/resolv.conf"))
    with pytest.raises(ValueError, match=r"--cluster-dns 'dns\.example'"):
        options("--cluster-dns", "dns.example").validate()
    with pytest.raises(ValueError, match="--cluster-domain 'Corp_Internal'"):
        options("--cluster-domain", "Corp_Internal").validate()


@pytest.mark.parametrize(
    ("flag", "pod_network", "runs"),
    [
        ("auto", True, "nftables"),
        ("auto", False, "none"),
        ("none", True, "none"),
        ("nftables", False, "nftables"),
    ],
)
def test_proxy_mode_auto_follows_the_pod_network(flag: str, pod_network: bool, runs: str) -> None:
    assert proxy_mode(options("--proxy-mode", flag), pod_network) == runs
