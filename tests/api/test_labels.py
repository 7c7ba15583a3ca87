"""Table tests for control.api.labels: selector syntax, matching and LabelSelector messages."""

from __future__ import annotations

import pytest

from control.api import labels
from control.api.errors import BadRequest, Invalid
from control.api.pb import meta_pb2

WEB = {"app": "web", "tier": "frontend", "env": "prod", "replicas": "3"}


@pytest.mark.parametrize(
    ("text", "canonical", "matches_web"),
    [
        ("", "", True),
        ("app=web", "app=web", True),
        ("app==web", "app==web", True),
        ("app = web", "app=web", True),
        ("app!=web", "app!=web", False),
        ("app!=db", "app!=db", True),
        ("missing!=x", "missing!=x", True),  # absent keys satisfy !=
        ("app", "app", True),
        ("!app", "!app", False),
        ("!missing", "!missing", True),
        ("env in (prod, staging)", "env in (prod,staging)", True),
        ("env in (staging,prod)", "env in (prod,staging)", True),
        ("env in(prod)", "env in (prod)", True),
        ("env notin (prod)", "env notin (prod)", False),
        ("missing notin (prod)", "missing notin (prod)", True),
        ("missing in (prod)", "missing in (prod)", False),
        ("tier=frontend,app=web", "app=web,tier=frontend", True),
        ("tier=frontend, app=db", "app=db,tier=frontend", False),
        ("  app=web ,  !legacy  ", "app=web,!legacy", True),
        ("app=", "app=", False),
        ("missing=", "missing=", False),
        ("x in (a,,b)", "x in (,a,b)", False),
        ("replicas>2", "replicas>2", True),
        ("replicas<3", "replicas<3", False),
        ("app>2", "app>2", False),  # not an integer: no match
        ("example.com/role=a.b_c-d", "example.com/role=a.b_c-d", False),
    ],
)
def test_parse_and_match(text: str, canonical: str, matches_web: bool) -> None:
    sel = labels.parse(text)
    assert str(sel) == canonical
    assert sel.matches(WEB) is matches_web
    assert labels.parse(str(sel)) == sel  # the canonical form parses to the same selector


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a in b", "found 'b' at position 5, expected: '('"),
        ("a=b c", "found 'c' at position 4"),
        ("!", "found end of string at position 1, expected: identifier"),
        ("a,", "found end of string at position 2"),
        (",a", "found ',' at position 0"),
        ("a!b", "found '!' at position 1"),
        ("a in ()", "values set can't be empty"),
        ("a in (b", "found end of string at position 7"),
        ("a=b=c", "found '=' at position 3"),
        ("a b", "found 'b' at position 2"),
        ("a/b/c=d", "a qualified name must consist"),
        ("-a=b", "key '-a'"),
        ("a=b c d", "position 4"),
        ("a=bad value!", "found 'value' at position 6"),
        ("a=-x", "value '-x'"),
        ("a>b", "must be an integer"),
        ("a=" + "x" * 64, "must be no more than 63 characters"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        labels.parse(text)
    assert fragment in str(info.value)


def test_everything_and_nothing() -> None:
    assert labels.everything().matches({})
    assert labels.everything().empty()
    assert not labels.nothing().matches({})
    assert not labels.nothing().matches(WEB)
    assert not labels.nothing().empty()


@pytest.mark.parametrize(
    ("mapping", "canonical", "matches_web"),
    [
        ({}, "", True),
        (None, "", True),
        ({"app": "web"}, "app=web", True),
        ({"tier": "frontend", "app": "web"}, "app=web,tier=frontend", True),
        ({"app": "db"}, "app=db", False),
    ],
)
def test_from_map(mapping: dict[str, str] | None, canonical: str, matches_web: bool) -> None:
    sel = labels.from_map(mapping)
    assert str(sel) == canonical
    assert sel.matches(WEB) is matches_web


def _req(key: str, op: str, *values: str) -> meta_pb2.LabelSelectorRequirement:
    return meta_pb2.LabelSelectorRequirement(key=key, operator=op, values=list(values))


@pytest.mark.parametrize(
    ("selector", "canonical", "matches_web"),
    [
        (None, "", False),  # nil selector: nothing
        (meta_pb2.LabelSelector(), "", True),  # empty selector: everything
        (meta_pb2.LabelSelector(match_labels={"app": "web"}), "app=web", True),
        (
            meta_pb2.LabelSelector(
                match_labels={"app": "web"},
                match_expressions=[
                    _req("env", "In", "prod", "dev"),
                    _req("legacy", "DoesNotExist"),
                ],
            ),
            "app=web,env in (dev,prod),!legacy",
            True,
        ),
        (
            meta_pb2.LabelSelector(match_expressions=[_req("env", "NotIn", "prod")]),
            "env notin (prod)",
            False,
        ),
        (meta_pb2.LabelSelector(match_expressions=[_req("tier", "Exists")]), "tier", True),
    ],
)
def test_from_label_selector(
    selector: meta_pb2.LabelSelector | None, canonical: str, matches_web: bool
) -> None:
    sel = labels.from_label_selector(selector)
    assert str(sel) == canonical
    assert sel.matches(WEB) is matches_web


@pytest.mark.parametrize(
    ("selector", "paths"),
    [
        (
            meta_pb2.LabelSelector(match_expressions=[_req("a", "In")]),
            ["selector.matchExpressions[0].values"],
        ),
        (
            meta_pb2.LabelSelector(match_expressions=[_req("a", "NotIn")]),
            ["selector.matchExpressions[0].values"],
        ),
        (
            meta_pb2.LabelSelector(match_expressions=[_req("a", "Exists", "x")]),
            ["selector.matchExpressions[0].values"],
        ),
        (
            meta_pb2.LabelSelector(match_expressions=[_req("a", "DoesNotExist", "x")]),
            ["selector.matchExpressions[0].values"],
        ),
        (
            meta_pb2.LabelSelector(match_expressions=[_req("a", "in", "x")]),
            ["selector.matchExpressions[0].operator"],
        ),
        (
            meta_pb2.LabelSelector(match_expressions=[_req("a b", "Exists")]),
            ["selector.matchExpressions[0].key"],
        ),
        (meta_pb2.LabelSelector(match_labels={"a": "b c"}), ["selector.matchLabels"]),
    ],
)
def test_label_selector_validation(selector: meta_pb2.LabelSelector, paths: list[str]) -> None:
    assert [e.path for e in labels.validate_label_selector(selector)] == paths
    with pytest.raises(Invalid):
        labels.from_label_selector(selector)


@pytest.mark.parametrize(
    ("text", "key", "values"),
    [
        ("app=web", "app", frozenset({"web"})),
        ("app==web,tier=x", "app", frozenset({"web"})),
        ("app in (a,b)", "app", frozenset({"a", "b"})),
        ("app in (a,b),app=a", "app", frozenset({"a"})),
        ("app in (a,b),app in (c)", "app", frozenset()),
        ("app!=web", "app", None),
        ("app", "app", None),
        ("tier=x", "app", None),
    ],
)
def test_exact_match_values(text: str, key: str, values: frozenset[str] | None) -> None:
    assert labels.exact_match_values(labels.parse(text), key) == values


def test_requirement_new_validates() -> None:
    r = labels.Requirement.new("app", labels.IN, ["b", "a", "a"])
    assert r.values == ("a", "b")
    assert r.matches({"app": "a"})
    with pytest.raises(BadRequest, match="exact-match"):
        labels.Requirement.new("app", labels.EQUALS, ["a", "b"])
    with pytest.raises(BadRequest, match="must be empty"):
        labels.Requirement.new("app", labels.EXISTS, ["a"])
    with pytest.raises(BadRequest, match="not recognized"):
        labels.Requirement.new("app", "~", ["a"])
    sel = labels.parse("app=web").add(labels.Requirement("env", labels.NOT_IN, ("dev",)))
    assert str(sel) == "app=web,env notin (dev)"
    assert sel.matches(WEB)
