"""`logs`/`exec` targets: a pod, or a workload whose best pod is picked as kubectl does."""

from __future__ import annotations

import pytest

from control.api import convert
from control.api.pb import core_pb2
from control.cli.errors import UsageError
from control.cli.verbs_logs import parse_target, pod_rank


@pytest.mark.parametrize(("arg", "plural", "name"), [
    ("web-1", None, "web-1"),
    ("pod/web-1", None, "web-1"),
    ("po/web-1", None, "web-1"),
    ("deploy/web", "deployments", "web"),
    ("rs/web-abc", "replicasets", "web-abc"),
    ("statefulset/db", "statefulsets", "db"),
])
def test_parse_target(arg: str, plural: str | None, name: str) -> None:
    info, got = parse_target(arg)
    assert (info.plural if info else None, got) == (plural, name)


@pytest.mark.parametrize("arg", ["svc/web", "deploy/", "configmap/x"])
def test_parse_target_refuses_what_has_no_pods(arg: str) -> None:
    with pytest.raises(UsageError):
        parse_target(arg)


def pod(name: str, phase: str, ready: bool, created: int) -> core_pb2.Pod:
    return convert.from_dict({
        "metadata": {"name": name, "creationTimestamp": f"2026-01-01T00:00:{created:02d}Z"},
        "status": {"phase": phase,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }, core_pb2.Pod())


def test_pod_rank_prefers_running_ready_then_newest() -> None:
    pods = [pod("pending", "Pending", False, 50), pod("old-ready", "Running", True, 10),
            pod("new-ready", "Running", True, 20), pod("unready", "Running", False, 30)]
    assert min(pods, key=pod_rank).metadata.name == "new-ready"
