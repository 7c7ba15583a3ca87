"""Table tests for control.api.convert: Kubernetes JSON <-> protobuf messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2, wrappers_pb2
from google.protobuf.message import Message

from control.api import convert
from control.api.errors import FieldError, Invalid
from control.api.pb import apps_pb2, core_pb2, meta_pb2

META = {
    "name": "web",
    "generateName": "web-",
    "namespace": "default",
    "uid": "0b1c",
    "resourceVersion": "42",
    "generation": 3,
    "creationTimestamp": "2024-01-02T03:04:05Z",
    "deletionTimestamp": "2024-01-02T03:04:05.123456Z",
    "deletionGracePeriodSeconds": 0,
    "labels": {"app": "web", "tier": ""},
    "annotations": {"a/b": "x"},
    "ownerReferences": [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "rs",
            "uid": "u1",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ],
    "finalizers": ["kubernetes.io/x"],
}

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
        "containers": [
            {
                "name": "c",
                "image": "nginx",
                "command": ["sh", "-c"],
                "ports": [{"containerPort": 80, "protocol": "TCP", "hostIP": "127.0.0.1"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B"}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "nodeSelector": {"disk": "ssd"},
        "hostPID": True,
    },
    "status": {"phase": "Running", "podIP": "10.244.0.5", "startTime": "2024-01-02T03:04:05Z"},
}

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "d"},
    "spec": {
        "replicas": 0,
        "selector": {
            "matchLabels": {"app": "d"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}],
        },
        "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]},
        },
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
        },
    },
}

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "s"},
    "spec": {
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
            {"port": 81, "targetPort": 8081},
        ],
        "selector": {"app": "web"},
        "clusterIP": "10.96.0.20",
        "type": "NodePort",
    },
}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (META, meta_pb2.ObjectMeta),
        ({}, meta_pb2.ObjectMeta),
        (POD, core_pb2.Pod),
        (DEPLOYMENT, apps_pb2.Deployment),
        (SERVICE, core_pb2.Service),
        ({"data": {"k": "aGVsbG8="}, "type": "Opaque", "immutable": False}, core_pb2.Secret),
        ({"matchLabels": {"a": "b"}}, meta_pb2.LabelSelector),
    ],
)
def test_round_trip(doc: dict[str, Any], message: type[Message]) -> None:
    msg = convert.from_dict(doc, message())
    assert convert.to_dict(msg) == doc
    # and through JSON text, whose key order is the declaration order
    again = convert.from_json(convert.to_json(msg), message())
    assert again == msg


def test_key_order_is_declaration_order() -> None:
    scrambled = {
        "status": POD["status"],
        "spec": POD["spec"],
        "metadata": POD["metadata"],
        "kind": "Pod",
        "apiVersion": "v1",
    }
    out = convert.to_dict(convert.from_dict(scrambled, core_pb2.Pod()))
    assert list(out) == ["apiVersion", "kind", "metadata", "spec", "status"]


def test_presence_of_optional_zero() -> None:
    d = convert.from_dict(DEPLOYMENT, apps_pb2.Deployment())
    assert d.spec.HasField("replicas") and d.spec.replicas == 0
    assert not d.spec.HasField("revision_history_limit")
    assert convert.to_dict(d)["spec"]["replicas"] == 0
    # an unset optional stays absent
    d2 = convert.from_dict({"spec": {"paused": False}}, apps_pb2.Deployment())
    assert not d2.spec.HasField("replicas")
    assert convert.to_dict(d2) == {"spec": {}}  # present (empty) message, zero scalar omitted


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"spec": {"replicas": None}}, {"spec": {}}),  # null means unset
        ({"metadata": None}, {}),
        ({"spec": {"replicas": 3.0}}, {"spec": {"replicas": 3}}),  # JSON 3.0
        ({"metadata": {"generation": "12"}}, {"metadata": {"generation": 12}}),  # int64 string
        ({"metadata": {"generation": 2**40}}, {"metadata": {"generation": 2**40}}),
        ({"metadata": {"labels": {"a": None}}}, {"metadata": {"labels": {"a": ""}}}),  # Go: ""
        ({"metadata": {"labels": {1: "x"}}}, {"metadata": {"labels": {"1": "x"}}}),  # YAML int key
        ({"metadata": {"finalizers": None}}, {"metadata": {}}),
        ({"metadata": {"finalizers": []}}, {"metadata": {}}),  # empty lists are omitted
        ({"metadata": {"labels": {}}}, {"metadata": {}}),
        (
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": ""}]}]}
                    }
                }
            },
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "c", "env": [{"name": "B"}]}]}}
                }
            },
        ),
        (
            {"metadata": {"creationTimestamp": "2024-01-02T04:04:05+01:00"}},
            {"metadata": {"creationTimestamp": "2024-01-02T03:04:05Z"}},
        ),
        (
            {"metadata": {"creationTimestamp": "2024-01-02T03:04:05.5Z"}},
            {"metadata": {"creationTimestamp": "2024-01-02T03:04:05.500000Z"}},
        ),
        (
            {"metadata": {"creationTimestamp": "1970-01-01T00:00:00Z"}},
            {"metadata": {"creationTimestamp": "1970-01-01T00:00:00Z"}},
        ),  # zero but present
    ],
)
def test_normalising_reads(doc: dict[str, Any], expected: dict[str, Any]) -> None:
    assert convert.to_dict(convert.from_dict(doc, apps_pb2.Deployment())) == expected


@pytest.mark.parametrize(
    ("value", "stored", "written"),
    [
        ("500m", "500m", "500m"),
        ("1Gi", "1Gi", "1Gi"),
        (1, "1", "1"),
        (0.5, "0.5", "0.5"),
        (2.0, "2", "2"),
    ],
)
def test_quantity_forms(value: Any, stored: str, written: str) -> None:
    doc = {"limits": {"cpu": value}}
    rr = convert.from_dict(doc, core_pb2.ResourceRequirements())
    assert rr.limits["cpu"].string == stored
    assert convert.to_dict(rr) == {"limits": {"cpu": written}}


@pytest.mark.parametrize(
    ("doc", "message", "errors"),
    [
        (
            {"spec": {"containers": [{"ports": [{"bogus": 1}]}]}},
            core_pb2.Pod,
            [FieldError("spec.containers[0].ports[0].bogus", 'unknown field "bogus"')],
        ),
        ({"bogus": 1}, core_pb2.Pod, [FieldError("bogus", 'unknown field "bogus"')]),
        (
            {"spec": {"containers": [{"env": [{"name": "A", "value": 1}]}]}},
            core_pb2.Pod,
            [FieldError("spec.containers[0].env[0].value", "expected string, got number")],
        ),
        (
            {"spec": {"replicas": True}},
            apps_pb2.Deployment,
            [FieldError("spec.replicas", "expected int32, got boolean")],
        ),
        (
            {"spec": {"replicas": "3"}},  # strings only for int64, as in Kubernetes
            apps_pb2.Deployment,
            [FieldError("spec.replicas", "expected int32, got string")],
        ),
        (
            {"spec": {"replicas": 2**31}},
            apps_pb2.Deployment,
            [FieldError("spec.replicas", "value 2147483648 out of range for int32")],
        ),
        (
            {"spec": {"replicas": 1.5}},
            apps_pb2.Deployment,
            [FieldError("spec.replicas", "expected int32, got non-integer 1.5")],
        ),
        (
            {"metadata": {"generation": "12a"}},
            apps_pb2.Deployment,
            [FieldError("metadata.generation", "expected int64, got string '12a'")],
        ),
        (
            {"spec": {"paused": "true"}},
            apps_pb2.Deployment,
            [FieldError("spec.paused", "expected boolean, got string")],
        ),
        (
            {"metadata": {"labels": ["a"]}},
            apps_pb2.Deployment,
            [FieldError("metadata.labels", "expected object, got array")],
        ),
        (
            {"metadata": {"labels": {"a": 1, "b": True}}},
            apps_pb2.Deployment,
            [
                FieldError("metadata.labels[a]", "expected string, got number"),
                FieldError("metadata.labels[b]", "expected string, got boolean"),
            ],
        ),
        (
            {"metadata": {"finalizers": "x"}},
            apps_pb2.Deployment,
            [FieldError("metadata.finalizers", "expected array, got string")],
        ),
        (
            {"metadata": {"finalizers": ["a", 2]}},
            apps_pb2.Deployment,
            [FieldError("metadata.finalizers[1]", "expected string, got number")],
        ),
        (
            {"spec": "x"},
            apps_pb2.Deployment,
            [FieldError("spec", "expected object, got string")],
        ),
        (
            {"metadata": {"creationTimestamp": "yesterday"}},
            apps_pb2.Deployment,
            [
                FieldError(
                    "metadata.creationTimestamp",
                    "invalid time 'yesterday': expected RFC 3339 like \"2006-01-02T15:04:05Z\"",
                )
            ],
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": "1x"}}}]}},
            core_pb2.Pod,
            [
                FieldError(
                    "spec.containers[0].resources.limits[cpu]",
                    "invalid quantity '1x': unknown suffix 'x'; quantities must match the "
                    "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )
            ],
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": True}}}]}},
            core_pb2.Pod,
            [
                FieldError(
                    "spec.containers[0].resources.limits[cpu]",
                    "expected quantity (string or number), got boolean",
                )
            ],
        ),
        (
            {"spec": {"ports": [{"targetPort": 1.5}, {"targetPort": [1]}]}},
            core_pb2.Service,
            [
                FieldError("spec.ports[0].targetPort", "expected integer or string, got 1.5"),
                FieldError("spec.ports[1].targetPort", "expected integer or string, got array"),
            ],
        ),
        (
            {"data": {"k": "not base64!"}},
            core_pb2.Secret,
            [FieldError("data[k]", "invalid base64 data")],
        ),
    ],
)
def test_errors(doc: dict[str, Any], message: type[Message], errors: list[FieldError]) -> None:
    with pytest.raises(Invalid) as info:
        convert.from_dict(doc, message())
    assert info.value.errors == errors


def test_all_errors_are_collected() -> None:
    doc = {
        "metadata": {"name": 1, "labels": {"a": 2}},
        "spec": {
            "containers": [
                {"ports": [{"bogus": 1, "containerPort": "80"}]},
                {"name": "ok", "image": 3},
            ]
        },
    }
    with pytest.raises(Invalid) as info:
        convert.from_dict(doc, core_pb2.Pod())
    assert [e.path for e in info.value.errors] == [
        "metadata.name",
        "metadata.labels[a]",
        "spec.containers[0].ports[0].bogus",
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[1].image",
    ]
    assert 'spec.containers[0].ports[0].bogus: unknown field "bogus"' in str(info.value)


def test_path_prefix_and_top_level_type() -> None:
    with pytest.raises(Invalid) as info:
        convert.from_dict({"bogus": 1}, core_pb2.PodSpec(), path="spec.template.spec")
    assert info.value.errors == [FieldError("spec.template.spec.bogus", 'unknown field "bogus"')]
    with pytest.raises(Invalid) as info:
        convert.from_dict([], core_pb2.Pod())  # type: ignore[arg-type]
    assert info.value.errors == [FieldError("", "expected object, got array")]


def test_int_or_string() -> None:
    svc = convert.from_dict(SERVICE, core_pb2.Service())
    assert svc.spec.ports[0].target_port.WhichOneof("value") == "str_val"
    assert svc.spec.ports[1].target_port.int_val == 8081
    zero = convert.from_dict({"maxUnavailable": 0}, apps_pb2.RollingUpdateDeployment())
    assert zero.HasField("max_unavailable")
    assert convert.to_dict(zero) == {"maxUnavailable": 0}


def test_bytes_padding_tolerant() -> None:
    s = convert.from_dict({"data": {"a": "aGVsbG8", "b": ""}}, core_pb2.Secret())
    assert s.data["a"] == b"hello"
    assert convert.to_dict(s) == {"data": {"a": "aGVsbG8=", "b": ""}}


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"a": 1, "b": "x", "c": None, "d": True, "e": [1, 2.5, "y", None, {"f": []}], "g": {}},
        {"nested": {"deep": {"list": [[1], [2, [3]]]}}},
    ],
)
def test_struct_is_plain_json(doc: dict[str, Any]) -> None:
    msg = convert.from_dict(doc, struct_pb2.Struct())
    out = convert.to_dict(msg)
    assert out == doc
    assert json.dumps(out) == json.dumps(doc, sort_keys=True)  # 1 stays 1, not 1.0


@pytest.mark.parametrize(
    ("message", "doc", "field", "value", "written"),
    [
        (duration_pb2.Duration, "1h30m", "seconds", 5400, "1h30m0s"),
        (duration_pb2.Duration, "300ms", "nanos", 300_000_000, "300ms"),
        (wrappers_pb2.Int64Value, "7", "value", 7, 7),
        (wrappers_pb2.BoolValue, True, "value", True, True),
        (wrappers_pb2.StringValue, "x", "value", "x", "x"),
        (
            timestamp_pb2.Timestamp,
            "2024-01-02T03:04:05.000001Z",
            "nanos",
            1000,
            "2024-01-02T03:04:05.000001Z",
        ),
    ],
)
def test_well_known_types(
    message: type[Message], doc: Any, field: str, value: Any, written: Any
) -> None:
    msg = convert.from_dict(doc, message())
    assert getattr(msg, field) == value
    assert convert.to_dict(msg) == written


def test_struct_field_inside_message() -> None:
    v = convert.from_dict({"a": [1, {"b": None}]}, struct_pb2.Struct())
    assert v.fields["a"].list_value.values[1].struct_value.fields["b"].WhichOneof("kind") == (
        "null_value"
    )


def test_from_json_errors() -> None:
    with pytest.raises(Invalid, match="invalid JSON"):
        convert.from_json("{", core_pb2.Pod())
    pod = convert.from_json(b'{"metadata": {"name": "x"}}', core_pb2.Pod())
    assert pod.metadata.name == "x"
    assert convert.to_json(pod) == '{"metadata":{"name":"x"}}'
    assert convert.to_json(pod, indent=2).startswith("{\n")


def test_int64_written_as_number() -> None:
    m = meta_pb2.ObjectMeta(generation=2**62)
    assert convert.to_dict(m) == {"generation": 2**62}
    assert convert.to_json(m) == f'{{"generation":{2**62}}}'


# ---------------------------------------------------------------------------------------
# control.api.timeutil (the time forms convert reads and writes; kept here, next to them)

from control.api import timeutil  # noqa: E402


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("40s", 40.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("300ms", 0.3),
        ("1.5h", 5400.0),
        ("-1m", -60.0),
        ("+2s", 2.0),
        ("1h1m1s1ms1us1ns", 3661.001001001),
        ("2µs", 2e-6),
        (".5s", 0.5),
    ],
)
def test_time_parse_duration(text: str, seconds: float) -> None:
    assert timeutil.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid duration"),
        ("5", "invalid duration"),
        ("1d", 'unknown unit "d"'),
        ("s", "invalid duration"),
        ("1h 30m", 'unknown unit "h "'),  # as Go says it
        ("-", "invalid duration"),
    ],
)
def test_time_parse_duration_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        timeutil.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (300, "5m0s"),
        (5400, "1h30m0s"),
        (0.3, "300ms"),
        (1.5, "1.5s"),
        (0.0015, "1.5ms"),
        (-60, "-1m0s"),
        (90061, "25h1m1s"),
    ],
)
def test_time_format_duration(seconds: float, text: str) -> None:
    assert timeutil.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "age"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (800 * 86400, "2y70d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_time_human_age(seconds: float, age: str) -> None:
    assert timeutil.human_age(seconds) == age


@pytest.mark.parametrize(
    ("text", "seconds", "nanos", "canonical"),
    [
        ("1970-01-01T00:00:00Z", 0, 0, "1970-01-01T00:00:00Z"),
        ("2024-01-02T03:04:05Z", 1704164645, 0, "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.123456789Z", 1704164645, 123456789, "2024-01-02T03:04:05.123456Z"),
        ("2024-01-02T05:04:05+02:00", 1704164645, 0, "2024-01-02T03:04:05Z"),
        ("2024-01-02T01:34:05-01:30", 1704164645, 0, "2024-01-02T03:04:05Z"),
        ("2024-01-02t03:04:05.1z", 1704164645, 100000000, "2024-01-02T03:04:05.100000Z"),
    ],
)
def test_time_rfc3339(text: str, seconds: int, nanos: int, canonical: str) -> None:
    ts = timeutil.parse_rfc3339(text)
    assert (ts.seconds, ts.nanos) == (seconds, nanos)
    assert timeutil.format_rfc3339(ts) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02",
        "2024-01-02T03:04:05",
        "2024-02-30T00:00:00Z",
        "2024-01-02T24:00:00Z",
        "2024-01-02T03:04:05+2:00",
        "2024-01-02 03:04:05Z",
        "x",
    ],
)
def test_time_rfc3339_errors(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time"):
        timeutil.parse_rfc3339(text)


def test_time_now_and_other_inputs() -> None:
    import datetime as dt

    now = timeutil.now_timestamp()
    assert now.nanos == 0 and now.seconds > 1_700_000_000
    assert timeutil.format_rfc3339(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == (
        "2024-01-02T03:04:05Z"
    )
    assert timeutil.format_rfc3339(1704164645.5) == "2024-01-02T03:04:05.500000Z"
    assert timeutil.timestamp_seconds(timeutil.parse_rfc3339("1970-01-01T00:00:01.5Z")) == 1.5
