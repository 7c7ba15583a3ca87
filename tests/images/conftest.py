"""Fixtures: a real registry on loopback (open, basic auth, token auth), and an image
service on a temporary store that may pull from it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.images.registry import RegistryClient, RegistryConfig
from agent.images.service import LocalImageService
from agent.images.store import Store
from tests.images import registry as reg

needs_registry = pytest.mark.skipif(
    not reg.available(), reason="Debian's docker-registry is not installed"
)
needs_root = pytest.mark.root(reason="whiteouts need mknod (root)")

USERS = {"alice": "wonderland"}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[reg.Registry]:
    if not reg.available():
        pytest.skip("Debian's docker-registry is not installed")
    with reg.running_registry(tmp_path / "registry") as (r, _):
        yield r


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[reg.Registry]:
    if not reg.available():
        pytest.skip("Debian's docker-registry is not installed")
    with reg.running_registry(tmp_path / "private", auth="htpasswd", users=USERS) as (r, _):
        yield r


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[reg.Registry, reg.TokenService]]:
    if not reg.available():
        pytest.skip("Debian's docker-registry is not installed")
    with reg.running_registry(tmp_path / "token", auth="token", users=USERS) as (r, tokens):
        assert tokens is not None
        yield r, tokens


def make_service(
    root: Path, *hosts: str, mirrors: dict[str, list[str]] | None = None
) -> LocalImageService:
    config = RegistryConfig(mirrors=mirrors or {}, insecure=frozenset(hosts))
    return LocalImageService(Store(root), RegistryClient(config, timeout=10))


@pytest.fixture
async def service(tmp_path: Path, registry: reg.Registry) -> AsyncIterator[LocalImageService]:
    svc = make_service(tmp_path / "store", registry.host)
    yield svc
    await svc.aclose()
