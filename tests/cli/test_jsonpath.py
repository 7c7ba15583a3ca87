"""Table tests of control.cli.jsonpath: kubectl's JSONPath template subset."""

from __future__ import annotations

from typing import Any

import pytest

from control.cli import jsonpath

DATA: dict[str, Any] = {
    "kind": "List",
    "items": [
        {
            "metadata": {"name": "a", "labels": {"app": "web", "app.kubernetes.io/name": "x"}},
            "spec": {"replicas": 2, "ports": [{"port": 80}, {"port": 443}]},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "Scheduled", "status": "False"},
                ],
                "ready": True,
            },
        },
        {
            "metadata": {"name": "b", "labels": {"app": "db"}},
            "spec": {"replicas": 5},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        },
    ],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{.kind}", "List"),
        ("{.items[0].metadata.name}", "a"),
        ("{.items[-1].metadata.name}", "b"),
        ("{.items[*].metadata.name}", "a b"),
        ("{.items[0:1].metadata.name}", "a"),
        ("{.items[0,1].spec.replicas}", "2 5"),
        ("{.items[0].spec.ports}", '[{"port":80},{"port":443}]'),
        ("{.items[0].metadata.labels}", '{"app":"web","app.kubernetes.io/name":"x"}'),
        ("{.items[0].status.ready}", "true"),
        ("{.items[0].metadata.labels.app\\.kubernetes\\.io/name}", "x"),
        ("{.items[0].metadata.labels['app.kubernetes.io/name']}", "x"),
        ("{.items[*]['metadata.name','spec.replicas']}", "a b 2 5"),
        ('{range .items[*]}{.metadata.name}{"\\n"}{end}', "a\nb\n"),
        ("{range .items[*]}{.metadata.name}:{.spec.replicas} {end}", "a:2 b:5 "),
        (
            "{range .items[*]}{range .status.conditions[*]}{.type}={.status},{end};{end}",
            "Ready=True,Scheduled=False,;Ready=False,;",
        ),
        ('{.items[0].status.conditions[?(@.type=="Ready")].status}', "True"),
        ("{.items[?(@.spec.replicas>3)].metadata.name}", "b"),
        ("{.items[?(@.spec.replicas<=2)].metadata.name}", "a"),
        ('{.items[?(@.metadata.name!="a")].metadata.name}', "b"),
        ("{.items[?(@.spec.ports)].metadata.name}", "a"),
        ("{..port}", "80 443"),
        ('name: {.items[0].metadata.name}{"\\t"}end', "name: a\tend"),
        ("{.items[0].missing}", ""),
        ("{.nope.deeper}", ""),
        ("plain text", "plain text"),
        ("{.items[5:5]}", ""),
        ("{@.kind}", "List"),
    ],
)
def test_execute(template: str, expected: str) -> None:
    assert jsonpath.execute(template, DATA) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{.items[0]", "unclosed action"),
        ("{range .items[*]}{.x}", "without a matching {end}"),
        ("{end}", "without a matching {range}"),
        ("{.items[abc]}", "invalid array index"),
        ("{metadata.name}", "unrecognized identifier metadata"),
        ('{"unterminated}', "unterminated quoted string"),
        ("{.items[?(@.a==)]}", "nothing right of =="),
        ("{range}", "needs an expression"),
    ],
)
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(jsonpath.JSONPathError, match=message.replace("[", r"\[")):
        jsonpath.parse(template)


@pytest.mark.parametrize(
    ("template", "message", "allow_missing"),
    [
        ("{.items[2].metadata.name}", "array index out of bounds: index 2, length 2", True),
        ("{.kind[0]}", "string is not array or slice", True),
        ("{.items[0].missing}", "missing is not found", False),
        ('{.items[?(@.spec.replicas>"x")]}', "incompatible types", True),
    ],
)
def test_execute_errors(template: str, message: str, allow_missing: bool) -> None:
    with pytest.raises(jsonpath.JSONPathError, match=message):
        jsonpath.execute(template, DATA, allow_missing_keys=allow_missing)


def test_as_json_prints_each_result_set_as_an_array() -> None:
    out = jsonpath.execute("{.items[*].metadata.name}", DATA, as_json=True)
    assert out == '[\n    "a",\n    "b"\n]\n'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        (3, "3"),
        (1.5, "1.5"),
        (2.0, "2"),
        (False, "false"),
        (None, "<nil>"),
        ({"b": 1, "a": [1]}, '{"a":[1],"b":1}'),
    ],
)
def test_format_value(value: Any, text: str) -> None:
    assert jsonpath.format_value(value) == text
