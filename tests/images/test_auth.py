from __future__ import annotations

import base64
import json

import pytest

from agent.images.auth import DOCKER_CFG, DOCKER_CONFIG_JSON, Credential, keyring_from_secrets
from agent.images.reference import parse


def _cfg(auths: dict[str, dict[str, str]]) -> dict[str, bytes]:
    return {".dockerconfigjson": json.dumps({"auths": auths}).encode()}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_dockerconfigjson_and_dockercfg() -> None:
    ring = keyring_from_secrets(
        [
            ("a", DOCKER_CONFIG_JSON, _cfg({"reg.example.com": {"auth": _b64("u1:p:1")}})),
            (
                "b",
                DOCKER_CFG,
                {
                    ".dockercfg": json.dumps(
                        {"https://index.docker.io/v1/": {"username": "hub", "password": "pw"}}
                    ).encode()
                },
            ),
            ("c", "Opaque", {"x": b"y"}),
        ]
    )
    assert ring.lookup(parse("reg.example.com/app:1")) == [Credential("u1", "p:1")]
    assert ring.lookup(parse("nginx")) == [Credential("hub", "pw")]
    assert ring.lookup(parse("other.example.com/app")) == []


@pytest.mark.parametrize(
    ("key", "image", "matches"),
    [
        ("reg.example.com", "reg.example.com/a/b", True),
        ("https://reg.example.com/", "reg.example.com/a", True),
        ("reg.example.com/team", "reg.example.com/team/app", True),
        ("reg.example.com/team", "reg.example.com/teams/app", False),
        ("*.example.com", "reg.example.com/app", True),
        ("*.example.com", "a.b.example.com/app", False),
        ("reg.example.com:5000", "reg.example.com/app", False),
        ("reg.example.com:5000", "reg.example.com:5000/app", True),
        ("docker.io", "nginx", True),
    ],
)
def test_matching(key: str, image: str, matches: bool) -> None:
    ring = keyring_from_secrets(
        [("s", DOCKER_CONFIG_JSON, _cfg({key: {"username": "u", "password": "p"}}))]
    )
    assert bool(ring.lookup(parse(image))) is matches


def test_most_specific_first() -> None:
    ring = keyring_from_secrets(
        [
            (
                "s",
                DOCKER_CONFIG_JSON,
                _cfg(
                    {
                        "reg.example.com": {"username": "wide", "password": "p"},
                        "reg.example.com/team/app": {"username": "narrow", "password": "p"},
                    }
                ),
            ),
        ]
    )
    assert [c.username for c in ring.lookup(parse("reg.example.com/team/app"))] == [
        "narrow",
        "wide",
    ]


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        (DOCKER_CONFIG_JSON, {}, "no .dockerconfigjson"),
        (DOCKER_CONFIG_JSON, {".dockerconfigjson": b"{"}, "not JSON"),
        (DOCKER_CONFIG_JSON, {".dockerconfigjson": b"{}"}, "no auths"),
        (DOCKER_CONFIG_JSON, _cfg({"r": {"auth": "!!"}}), "not base64"),
        (DOCKER_CONFIG_JSON, _cfg({"r": {"auth": _b64("nocolon")}}), "user:password"),
        (DOCKER_CFG, {".dockercfg": b"[]"}, "not an object"),
    ],
)
def test_bad_secrets(kind: str, data: dict[str, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        keyring_from_secrets([("pull", kind, data)])
    assert "secret 'pull'" in str(err.value)


def test_credential_repr_hides_password() -> None:
    assert "secret" not in repr(Credential("u", "secret"))
