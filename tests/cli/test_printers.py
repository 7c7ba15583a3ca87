"""Tests of control.cli.printers and control.cli.columns: kubectl's get output formats."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import yaml
from google.protobuf.message import Message

from control.api import convert, kinds
from control.api.timeutil import parse_rfc3339_parts
from control.cli import columns, printers

NOW = float(parse_rfc3339_parts("2024-01-01T12:00:00Z")[0])
CREATED = "2024-01-01T11:00:00Z"  # one hour before NOW
POD = kinds.by_kind("Pod")


def obj(kind: str, data: dict[str, Any]) -> Message:
    return convert.from_dict(data, kinds.by_kind(kind).message())


def pod(name: str = "web", *, spec: dict[str, Any] | None = None, **status: Any) -> Message:
    return obj(
        "Pod",
        {
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": CREATED},
            "spec": spec or {"containers": [{"name": "c", "image": "nginx"}]},
            "status": status,
        },
    )


def running(ready: bool = True, restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": "c",
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": CREATED}},
        **extra,
    }


TWO_CONTAINERS = {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}
INIT = {
    "initContainers": [{"name": "init", "image": "busybox"}],
    "containers": [{"name": "c", "image": "nginx"}],
}


@pytest.mark.parametrize(
    ("p", "ready", "status", "restarts"),
    [
        (pod(phase="Pending"), "0/1", "Pending", "0"),
        (pod(phase="Running", containerStatuses=[running()]), "1/1", "Running", "0"),
        (
            pod(
                spec=TWO_CONTAINERS,
                phase="Running",
                containerStatuses=[
                    {**running(), "name": "a"},
                    {**running(ready=False), "name": "b"},
                ],
            ),
            "1/2",
            "Running",
            "0",
        ),
        (
            pod(
                phase="Running",
                containerStatuses=[
                    {
                        "name": "c",
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:55:00Z"}
                        },
                    }
                ],
            ),
            "0/1",
            "CrashLoopBackOff",
            "4 (5m ago)",
        ),
        (
            pod(
                phase="Pending",
                containerStatuses=[
                    {"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}
                ],
            ),
            "0/1",
            "ContainerCreating",
            "0",
        ),
        (
            pod(
                phase="Succeeded",
                containerStatuses=[
                    {"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
                ],
            ),
            "0/1",
            "Completed",
            "0",
        ),
        (
            pod(
                phase="Failed",
                containerStatuses=[{"name": "c", "state": {"terminated": {"exitCode": 137}}}],
            ),
            "0/1",
            "ExitCode:137",
            "0",
        ),
        (
            pod(
                spec=INIT,
                phase="Pending",
                initContainerStatuses=[
                    {"name": "init", "state": {"running": {"startedAt": CREATED}}}
                ],
                containerStatuses=[
                    {"name": "c", "state": {"waiting": {"reason": "PodInitializing"}}}
                ],
            ),
            "0/1",
            "Init:0/1",
            "0",
        ),
        (
            pod(
                spec=INIT,
                phase="Pending",
                initContainerStatuses=[
                    {
                        "name": "init",
                        "restartCount": 2,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    }
                ],
            ),
            "0/1",
            "Init:CrashLoopBackOff",
            "2",
        ),
        (
            pod(
                spec=INIT,
                phase="Pending",
                initContainerStatuses=[{"name": "init", "state": {"terminated": {"exitCode": 3}}}],
            ),
            "0/1",
            "Init:ExitCode:3",
            "0",
        ),
        (
            pod(
                phase="Running",
                conditions=[
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
                ],
            ),
            "0/1",
            "SchedulingGated",
            "0",
        ),
        (pod(phase="Pending", reason="Evicted"), "0/1", "Evicted", "0"),
    ],
)
def test_pod_ready_status_restarts(p: Message, ready: str, status: str, restarts: str) -> None:
    assert columns.pod_status_cells(convert.to_dict(p), NOW) == (ready, status, restarts)


def test_pod_terminating() -> None:
    p = pod(phase="Running", containerStatuses=[running()])
    p.metadata.deletion_timestamp.FromSeconds(int(NOW))  # type: ignore[attr-defined]
    assert columns.pod_status_cells(convert.to_dict(p), NOW)[1] == "Terminating"


def test_pod_table_layout_and_wide() -> None:
    pods = [
        pod("web-1", phase="Running", containerStatuses=[running()]),
        pod("a-much-longer-name", phase="Pending"),
    ]
    header, rows = printers.table_rows(pods, POD, False, False, NOW)
    assert printers.format_table(header, rows) == (
        "NAME                 READY   STATUS    RESTARTS   AGE\n"
        "web-1                1/1     Running   0          60m\n"
        "a-much-longer-name   0/1     Pending   0          60m\n"
    )
    header, rows = printers.table_rows(pods[:1], POD, True, True, NOW)
    assert header == [
        "NAMESPACE",
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert rows[0][0] == "default"
    assert rows[0][6:] == ["<none>", "<none>", "<none>", "<none>"]


def test_format_table_minimum_width_and_last_column_unpadded() -> None:
    assert printers.format_table(["A", "B"], [["x", "y"]]) == "A     B\nx     y\n"
    assert printers.format_table([], [["x", "y"]]) == "x     y\n"


@pytest.mark.parametrize(
    ("ports", "type_", "expected_ports", "external"),
    [
        (
            [{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}],
            "NodePort",
            "80:30080/TCP",
            "<none>",
        ),
        (
            [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            "ClusterIP",
            "53/UDP,53/TCP",
            "<none>",
        ),
        ([], "LoadBalancer", "<none>", "<pending>"),
    ],
)
def test_service_row(
    ports: list[dict[str, Any]], type_: str, expected_ports: str, external: str
) -> None:
    svc = obj(
        "Service",
        {
            "metadata": {"name": "web", "creationTimestamp": CREATED},
            "spec": {"type": type_, "clusterIP": "10.96.0.10", "ports": ports},
        },
    )
    _, rows = printers.table_rows([svc], kinds.by_kind("Service"), False, False, NOW)
    assert rows == [["web", type_, "10.96.0.10", external, expected_ports, "60m"]]


def node(name: str, ready: str | None, unschedulable: bool = False) -> Message:
    return obj(
        "Node",
        {
            "metadata": {
                "name": name,
                "creationTimestamp": "2023-12-01T12:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": ""},
            },
            "spec": {"unschedulable": unschedulable},
            "status": {
                "conditions": [{"type": "Ready", "status": ready}] if ready else [],
                "nodeInfo": {"kubeletVersion": "v1.30.0"},
            },
        },
    )


@pytest.mark.parametrize(
    ("n", "status"),
    [
        (node("a", "True"), "Ready"),
        (node("b", "False"), "NotReady"),
        (node("c", "Unknown"), "NotReady"),
        (node("d", None), "Unknown"),
        (node("e", "True", unschedulable=True), "Ready,SchedulingDisabled"),
    ],
)
def test_node_status(n: Message, status: str) -> None:
    _, rows = printers.table_rows([n], kinds.by_kind("Node"), False, True, NOW)
    # cluster-scoped: no NAMESPACE column even when all namespaces are listed
    assert rows[0] == [n.metadata.name, status, "control-plane", "31d", "v1.30.0"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "data", "header", "row"),
    [
        (
            "Deployment",
            {
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
                },
                "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
            },
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
            ["x", "2/3", "3", "2", "60m", "c", "nginx:1", "app=web"],
        ),
        (
            "ReplicaSet",
            {"spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 1}},
            ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
            ["x", "2", "2", "1", "60m", "", "", "<none>"],
        ),
        (
            "Job",
            {
                "spec": {"completions": 3},
                "status": {
                    "succeeded": 3,
                    "startTime": "2024-01-01T11:00:00Z",
                    "completionTime": "2024-01-01T11:00:42Z",
                    "conditions": [{"type": "Complete", "status": "True"}],
                },
            },
            [
                "NAME",
                "STATUS",
                "COMPLETIONS",
                "DURATION",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
            ["x", "Complete", "3/3", "42s", "60m", "", "", "<none>"],
        ),
        (
            "CronJob",
            {"spec": {"schedule": "*/5 * * * *", "suspend": False}},
            [
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
            ["x", "*/5 * * * *", "<none>", "False", "0", "<none>", "60m", "", "", "<none>"],
        ),
        (
            "ConfigMap",
            {"data": {"a": "1", "b": "2"}},
            ["NAME", "DATA", "AGE"],
            ["x", "2", "60m"],
        ),
        (
            "Secret",
            {"type": "Opaque", "data": {"a": "MQ=="}},
            ["NAME", "TYPE", "DATA", "AGE"],
            ["x", "Opaque", "1", "60m"],
        ),
        (
            "Endpoints",
            {
                "subsets": [
                    {
                        "addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)],
                        "ports": [{"port": 80}],
                    }
                ]
            },
            ["NAME", "ENDPOINTS", "AGE"],
            ["x", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...", "60m"],
        ),
        (
            "RoleBinding",
            {
                "roleRef": {"kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": "jane"}],
            },
            ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
            ["x", "ClusterRole/view", "60m", "jane", "", ""],
        ),
        (
            "PodDisruptionBudget",
            {"spec": {"minAvailable": 1}, "status": {"disruptionsAllowed": 1}},
            ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"],
            ["x", "1", "N/A", "1", "60m"],
        ),
        (
            "PriorityClass",
            {"value": 1000},
            ["NAME", "VALUE", "GLOBAL-DEFAULT", "PREEMPTIONPOLICY", "AGE"],
            ["x", "1000", "false", "<unset>", "60m"],
        ),
        ("Role", {}, ["NAME", "CREATED AT"], ["x", CREATED]),
        (
            "ControllerRevision",
            {"revision": 2},
            ["NAME", "CONTROLLER", "REVISION", "AGE"],
            ["x", "<none>", "2", "60m"],
        ),
    ],
)
def test_kind_rows(kind: str, data: dict[str, Any], header: list[str], row: list[str]) -> None:
    o = obj(kind, {"metadata": {"name": "x", "creationTimestamp": CREATED}, **data})
    h, rows = printers.table_rows([o], kinds.by_kind(kind), True, False, NOW)
    assert (h, rows) == (header, [row])


def test_every_kind_has_a_table() -> None:
    for info in kinds.KINDS:
        o = obj(
            info.kind, {"metadata": {"name": "x", "namespace": "ns", "creationTimestamp": CREATED}}
        )
        for wide in (False, True):
            header, rows = printers.table_rows([o], info, wide, True, NOW, show_labels=True)
            assert len(header) == len(rows[0]), info.kind
            assert header[-1] == "LABELS"


def test_event_row_counts_repeats() -> None:
    ev = obj(
        "Event",
        {
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "type": "Warning",
            "reason": "BackOff",
            "message": "Back-off restarting failed container ",
            "firstTimestamp": "2024-01-01T11:55:00Z",
            "lastTimestamp": "2024-01-01T11:58:00Z",
            "count": 3,
        },
    )
    header, rows = printers.table_rows([ev], kinds.by_kind("Event"), False, False, NOW)
    assert header == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert rows == [
        ["2m (x3 over 5m)", "Warning", "BackOff", "pod/web", "Back-off restarting failed container"]
    ]


def test_show_kind_and_labels() -> None:
    d = obj("Deployment", {"metadata": {"name": "web", "labels": {"b": "2", "a": "1"}}})
    _, rows = printers.table_rows(
        [d], kinds.by_kind("Deployment"), False, False, NOW, show_kind=True, show_labels=True
    )
    assert rows[0][0] == "deployment.apps/web"
    assert rows[0][-1] == "a=1,b=2"


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        (None, "<none>"),
        ({}, "<none>"),
        ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
        (
            {
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["b", "a"]},
                    {"key": "env", "operator": "NotIn", "values": ["prod"]},
                    {"key": "x", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ]
            },
            "env notin (prod),!legacy,tier in (a,b),x",
        ),
    ],
)
def test_format_label_selector(selector: dict[str, Any] | None, text: str) -> None:
    assert columns.format_label_selector(selector) == text


def render(objs: list[Message], output: str, *, list_kind: bool, **kw: Any) -> str:
    out = io.StringIO()
    printers.print_objects(
        objs, POD, output, out, list_kind=list_kind, show_namespace=False, now=NOW, **kw
    )
    return out.getvalue()


@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_list_wrapping(n: int, fmt: str) -> None:
    pods = [pod(f"p{i}") for i in range(n)]
    text = render(pods, fmt, list_kind=True)
    doc = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert doc["kind"] == "List"
    assert doc["apiVersion"] == "v1"
    assert doc["metadata"] == {"resourceVersion": ""}
    assert [i["metadata"]["name"] for i in doc["items"]] == [f"p{i}" for i in range(n)]
    assert all(i["kind"] == "Pod" and i["apiVersion"] == "v1" for i in doc["items"])


def test_single_named_object_prints_itself() -> None:
    text = render([pod("p")], "json", list_kind=False)
    assert text.startswith('{\n    "apiVersion": "v1",\n    "kind": "Pod",\n')
    assert json.loads(text)["metadata"]["name"] == "p"
    y = render([pod("p")], "yaml", list_kind=False)
    assert y.startswith("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n")
    # several named objects are a List again
    assert json.loads(render([pod("a"), pod("b")], "json", list_kind=False))["kind"] == "List"


def test_yaml_multiline_strings_are_blocks() -> None:
    cm = obj("ConfigMap", {"metadata": {"name": "c"}, "data": {"f": "line1\nline2\n"}})
    text = printers.dump_yaml(printers.object_dict(cm))
    assert "  f: |\n    line1\n    line2\n" in text


def test_name_output() -> None:
    d = obj("Deployment", {"metadata": {"name": "web"}})
    assert printers.print_name(d) == "deployment.apps/web"
    assert printers.print_name(pod("web")) == "pod/web"
    assert render([pod("a"), pod("b")], "name", list_kind=True) == "pod/a\npod/b\n"


def test_jsonpath_output() -> None:
    pods = [pod("a"), pod("b")]
    assert render(pods, "jsonpath={.items[*].metadata.name}", list_kind=True) == "a b"
    assert render(pods[:1], "jsonpath={.metadata.name}", list_kind=False) == "a"
    assert render(pods[:1], "jsonpath={.items[0].metadata.name}", list_kind=True) == "a"
    assert render(pods, "jsonpath-as-json={.items[*].metadata.name}", list_kind=True) == (
        '[\n    "a",\n    "b"\n]\n'
    )


def test_custom_columns() -> None:
    text = render(
        [pod("a")], "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName", list_kind=True
    )
    assert text == "NAME   NODE\na      <none>\n"


def test_empty_table_prints_nothing_and_no_headers() -> None:
    assert render([], "", list_kind=True) == ""
    text = render([pod("a", phase="Pending")], "", list_kind=True, no_headers=True)
    assert text == "a     0/1   Pending   0     60m\n"


def test_mixed_kinds_print_one_table_per_kind() -> None:
    svc = obj("Service", {"metadata": {"name": "s", "creationTimestamp": CREATED}})
    text = render([pod("a"), svc], "", list_kind=True, show_kind=True)
    blocks = text.split("\n\n")
    assert blocks[0].startswith("NAME    READY")
    assert "pod/a" in blocks[0]
    assert blocks[1].startswith("NAME        TYPE")
    assert "service/s" in blocks[1]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("xml", 'unable to match a printer suitable for the output format "xml"'),
        ("jsonpath", "template format specified but no template given"),
        ("jsonpath={.a[}", "error parsing jsonpath"),
        ("custom-columns=NAME", "expected <header>:<json-path-expr>"),
    ],
)
def test_bad_output(output: str, message: str) -> None:
    with pytest.raises(printers.OutputError, match=message.replace("[", r"\[")):
        printers.validate_output(output)


def test_jsonpath_execution_error() -> None:
    with pytest.raises(printers.OutputError, match="array index out of bounds"):
        render([], "jsonpath={.items[0].metadata.name}", list_kind=True)


class FlushCounter(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_watch_printer_table() -> None:
    out = FlushCounter()
    w = printers.WatchPrinter(POD, "", out, show_namespace=False)
    w.print_event("ADDED", pod("a", phase="Pending"), NOW)
    w.print_event(
        "MODIFIED", pod("a-longer-name", phase="Running", containerStatuses=[running()]), NOW
    )
    assert out.getvalue() == (
        "NAME   READY   STATUS    RESTARTS   AGE\n"
        "a      0/1     Pending   0          60m\n"
        "a-longer-name   1/1     Running   0          60m\n"
    )
    assert out.flushes == 2


def test_watch_printer_events_column_and_yaml() -> None:
    out = io.StringIO()
    w = printers.WatchPrinter(POD, "", out, show_namespace=False, output_watch_events=True)
    w.print_objects([pod("a")], NOW)
    assert out.getvalue().splitlines()[0].split()[:2] == ["EVENT", "NAME"]
    assert out.getvalue().splitlines()[1].split()[:2] == ["ADDED", "a"]
    out = io.StringIO()
    w = printers.WatchPrinter(POD, "yaml", out, show_namespace=False)
    w.print_event("ADDED", pod("a"), NOW)
    w.print_event("DELETED", pod("a"), NOW)
    docs = list(yaml.safe_load_all(out.getvalue()))
    assert [d["metadata"]["name"] for d in docs] == ["a", "a"]
