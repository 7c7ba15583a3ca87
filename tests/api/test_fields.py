"""Table tests for control.api.fields: field selector syntax and per-kind field values."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from control.api import fields
from control.api.errors import BadRequest
from control.api.pb import core_pb2, meta_pb2

POD = core_pb2.Pod(
    metadata=meta_pb2.ObjectMeta(name="web", namespace="default"),
    spec=core_pb2.PodSpec(node_name="node-1", scheduler_name="default-scheduler"),
    status=core_pb2.PodStatus(phase="Running", pod_ip="10.244.0.5"),
)
POD_FIELDS = fields.object_fields(POD)


@pytest.mark.parametrize(
    ("text", "canonical", "matches_pod"),
    [
        ("", "", True),
        ("metadata.name=web", "metadata.name=web", True),
        ("metadata.name==web", "metadata.name=web", True),
        ("metadata.name!=web", "metadata.name!=web", False),
        ("metadata.namespace!=kube-system", "metadata.namespace!=kube-system", True),
        ("spec.nodeName=", "spec.nodeName=", False),
        ("status.nominatedNodeName=", "status.nominatedNodeName=", True),
        (
            "status.phase=Running,spec.nodeName=node-1",
            "spec.nodeName=node-1,status.phase=Running",
            True,
        ),
        (" status.phase = Running ", "status.phase=Running", True),
        ("status.phase=Running,,", "status.phase=Running", True),
        ("status.podIP=10.244.0.5", "status.podIP=10.244.0.5", True),
        ("spec.hostNetwork=false", "spec.hostNetwork=false", True),
        ("metadata.name=a\\,b", "metadata.name=a\\,b", False),
        ("metadata.name!=a\\=b\\\\", "metadata.name!=a\\=b\\\\", True),
    ],
)
def test_parse_and_match(text: str, canonical: str, matches_pod: bool) -> None:
    sel = fields.parse(text)
    assert str(sel) == canonical
    assert sel.matches(POD_FIELDS) is matches_pod
    assert fields.parse(str(sel)) == sel


def test_escaped_values() -> None:
    assert fields.parse("metadata.name=a\\,b").terms[0].value == "a,b"
    assert fields.parse("metadata.name=a\\=b\\\\").terms[0].value == "a=b\\"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("metadata.name", "can't understand 'metadata.name'"),
        ("status.phase in (Running)", "can't understand"),
        ("a>b", "can't understand 'a>b'"),
        ("a<=b", "invalid field name 'a<'"),
        ("a=b!=c", "invalid field name 'a=b'"),
        ("=x", "invalid field name ''"),
        ("a=b=c", "unescaped character '='"),
        ("a=b\\x", "invalid escape sequence '\\x'"),
        ("a=b\\", "invalid escape sequence"),
        ("a=b,c", "can't understand 'c' at position 4"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        fields.parse(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("spec.nodeName=node-1", "spec.nodeName", "node-1"),
        ("spec.nodeName==", "spec.nodeName", ""),
        ("spec.nodeName!=node-1", "spec.nodeName", None),
        ("status.phase=Running", "spec.nodeName", None),
    ],
)
def test_requires_exact(text: str, field: str, value: str | None) -> None:
    assert fields.parse(text).requires_exact(field) == value


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            POD,
            {
                "metadata.name": "web",
                "metadata.namespace": "default",
                "spec.nodeName": "node-1",
                "spec.restartPolicy": "",
                "spec.schedulerName": "default-scheduler",
                "spec.serviceAccountName": "",
                "spec.hostNetwork": "false",
                "status.phase": "Running",
                "status.podIP": "10.244.0.5",
                "status.nominatedNodeName": "",
            },
        ),
        (
            core_pb2.Node(
                metadata=meta_pb2.ObjectMeta(name="n"), spec=core_pb2.NodeSpec(unschedulable=True)
            ),
            {"metadata.name": "n", "metadata.namespace": "", "spec.unschedulable": "true"},
        ),
        (
            core_pb2.Secret(metadata=meta_pb2.ObjectMeta(name="s", namespace="d"), type="Opaque"),
            {"metadata.name": "s", "metadata.namespace": "d", "type": "Opaque"},
        ),
        (
            core_pb2.ConfigMap(metadata=meta_pb2.ObjectMeta(name="c", namespace="d")),
            {"metadata.name": "c", "metadata.namespace": "d"},
        ),
    ],
)
def test_object_fields(obj: Message, expected: dict[str, str]) -> None:
    assert fields.object_fields(obj) == expected


def test_event_fields() -> None:
    ev = core_pb2.Event(
        metadata=meta_pb2.ObjectMeta(name="e", namespace="d"),
        involved_object=meta_pb2.ObjectReference(kind="Pod", name="web", namespace="d", uid="u"),
        reason="Scheduled",
        type="Normal",
        source=core_pb2.EventSource(component="scheduler"),
    )
    got = fields.object_fields(ev)
    assert got["involvedObject.kind"] == "Pod"
    assert got["involvedObject.name"] == "web"
    assert got["reason"] == "Scheduled"
    assert got["source"] == "scheduler"
    assert set(got) == fields.supported_fields("Event")
    sel = fields.parse("involvedObject.name=web,involvedObject.kind=Pod,type=Normal")
    assert sel.matches(got)


def test_supported_fields_and_check() -> None:
    assert fields.supported_fields("ConfigMap") == {"metadata.name", "metadata.namespace"}
    assert "spec.nodeName" in fields.supported_fields("Pod")
    fields.check_supported(fields.parse("spec.nodeName=n,metadata.name=x"), "Pod")
    with pytest.raises(BadRequest, match=r'"spec\.nodeName" is not a known field selector'):
        fields.check_supported(fields.parse("spec.nodeName=n"), "ConfigMap")
    # every supported Pod field is produced by object_fields
    assert set(fields.object_fields(POD)) == fields.supported_fields("Pod")


def test_one_term_and_everything() -> None:
    sel = fields.one_term("spec.nodeName", "node-1")
    assert sel.matches(POD_FIELDS)
    assert sel.requires_exact("spec.nodeName") == "node-1"
    assert fields.everything().empty()
    assert fields.everything().matches({})
