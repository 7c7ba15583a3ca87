"""The pure parts of `auth whoami|can-i` and the --as/--as-group global flags, as tables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from control.cli.errors import UsageError
from control.cli.main import split_globals
from control.cli.verbs_auth import AccessTarget, access_target, rule_rows, whoami_rows


@pytest.mark.parametrize(("arg", "sub", "want"), [
    ("pods", "", AccessTarget("pods", "", "")),
    ("pod", "log", AccessTarget("pods", "", "log")),
    ("pods/exec", "", AccessTarget("pods", "", "exec")),
    ("deploy", "", AccessTarget("deployments", "apps", "")),
    ("deployments.apps/scale", "", AccessTarget("deployments", "apps", "scale")),
    ("nodes", "", AccessTarget("nodes", "", "", namespaced=False)),
    ("*", "", AccessTarget("*", "*", "")),
    ("/logs", "", AccessTarget(path="/logs")),
    ("widgets.example.com", "", AccessTarget("widgets", "example.com", "", known=False)),
])
def test_access_target(arg: str, sub: str, want: AccessTarget) -> None:
    assert access_target(arg, sub) == want


@pytest.mark.parametrize(("arg", "sub"), [("/logs", "x"), ("pods/log", "status")])
def test_access_target_refuses(arg: str, sub: str) -> None:
    with pytest.raises(UsageError):
        access_target(arg, sub)


def rule(verbs: list[str], groups: list[str], resources: list[str],
         names: list[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(verbs=verbs, api_groups=groups, resources=resources,
                           resource_names=names or [])


def test_rule_rows_break_down_merge_and_sort() -> None:
    rows = rule_rows(
        [rule(["get", "list"], ["", "apps"], ["pods", "deployments/scale"]),
         rule(["watch"], [""], ["pods"]),
         rule(["get"], [""], ["configmaps"], ["a", "b"]),
         rule(["*"], ["*"], ["*"])],
        [SimpleNamespace(verbs=["get"], non_resource_urls=["/healthz", "/api/*"])])
    assert rows == [
        ["*.*", "[]", "[]", "[*]"],
        ["configmaps", "[]", "[a]", "[get]"],
        ["configmaps", "[]", "[b]", "[get]"],
        ["deployments.apps/scale", "[]", "[]", "[get list]"],
        ["deployments/scale", "[]", "[]", "[get list]"],
        ["pods", "[]", "[]", "[get list watch]"],
        ["pods.apps", "[]", "[]", "[get list]"],
        ["", "[/api/*]", "[]", "[get]"],
        ["", "[/healthz]", "[]", "[get]"],
    ]


def test_whoami_rows() -> None:
    assert whoami_rows("u", "", ["a", "b"]) == [["Username", "u"], ["Groups", "[a b]"]]
    assert whoami_rows("u", "7", []) == [["Username", "u"], ["UID", "7"]]


def test_as_flags_anywhere_and_repeatable() -> None:
    opts, rest = split_globals(["auth", "--as", "bob", "whoami", "--as-group", "g1",
                                "--as-group=g2", "-n", "x"])
    assert (opts.as_user, opts.as_groups, opts.namespace) == ("bob", ["g1", "g2"], "x")
    assert rest == ["auth", "whoami"]
    with pytest.raises(UsageError):
        split_globals(["get", "--as-group"])
