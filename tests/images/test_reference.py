from __future__ import annotations

import pytest

from agent.images.errors import InvalidReference
from agent.images.reference import defaults_to_always_pull, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", "1", None),
        ("ghcr.io/a/b/c:v1", "ghcr.io", "a/b/c", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("127.0.0.1:5000/busybox:test", "127.0.0.1:5000", "busybox", "test", None),
        (f"quay.io/x/y@{D}", "quay.io", "x/y", None, D),
        (f"nginx:1.27@{D}", "docker.io", "library/nginx", "1.27", D),
        ("registry:5000/a", "registry:5000", "a", "latest", None),
        ("a__b/c-d.e", "docker.io", "a__b/c-d.e", "latest", None),
    ],
)
def test_parse(text: str, domain: str, path: str, tag: str | None, digest: str | None) -> None:
    ref = parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)


@pytest.mark.parametrize(
    "text",
    ["", " nginx", "Nginx", "nginx:", "nginx@sha256:abc", "a//b", "nginx:-bad", "-x/y", "a/B:1"],
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse(text)


def test_str_and_with_digest() -> None:
    ref = parse("nginx:1.27")
    assert str(ref) == "docker.io/library/nginx:1.27"
    assert str(ref.with_digest(D)) == f"docker.io/library/nginx@{D}"
    assert ref.object == "1.27"
    assert parse(f"nginx:1@{D}").object == D


@pytest.mark.parametrize(
    ("text", "always"),
    [
        ("nginx", True),
        ("nginx:latest", True),
        ("nginx:1", False),
        (f"nginx@{D}", False),
        (f"nginx:latest@{D}", False),
    ],
)
def test_pull_policy_default(text: str, always: bool) -> None:
    assert defaults_to_always_pull(text) is always
