"""Pulls from a real registry on loopback (Debian's docker-registry), filled by the tests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import stat
from pathlib import Path

import httpx
import pytest

from agent.images.auth import DOCKER_CFG, DOCKER_CONFIG_JSON, keyring_from_secrets
from agent.images.errors import DigestMismatch, NotFound, PullError, Unauthorized
from agent.images.reference import parse
from agent.images.registry import RegistryClient, RegistryConfig
from agent.images.service import LocalImageService
from agent.images.store import Store
from tests.images import builder as b
from tests.images import registry as reg
from tests.images.conftest import USERS, make_service, needs_root

pytestmark = needs_root


def _read(root: str, rel: str) -> bytes:
    return Path(root, rel).read_bytes()


def _islink(root: str, rel: str) -> bool:
    return os.path.islink(Path(root, rel))


def _exists(root: str, rel: str) -> bool:
    return Path(root, rel).exists()


def _busybox(config: dict[str, object] | None = None, **kw: object) -> b.BuiltImage:
    return b.build_image([b.busybox_layer()], config or {"Cmd": ["sh"]}, **kw)  # type: ignore[arg-type]


async def test_pull_by_tag_and_digest(registry: reg.Registry, service: LocalImageService) -> None:
    app = b.layer_tar([b.Entry("app", kind="dir", mode=0o755), b.Entry("app/hello", b"hi\n")])
    image = b.build_image(
        [b.busybox_layer(), app],
        {"Entrypoint": ["/bin/sh"], "Env": ["A=1"]},
        compression=["gzip", "zstd"],
    )
    pusher = b.Pusher(registry.url)
    pusher.image("team/app", "v1", image)
    pusher.close()

    ref = f"{registry.host}/team/app:v1"
    got = await service.pull(ref)
    assert got.id == image.id
    assert got.repo_tags == [ref]
    assert got.repo_digests == [f"{registry.host}/team/app@{image.manifest.digest}"]
    assert got.config.entrypoint == ["/bin/sh"] and got.config.env == ["A=1"]
    assert got.size == len(image.config.data) + sum(len(x.data) for x in image.layers)
    lower = service.layer_dirs(got)
    assert _read(lower[1], "app/hello") == b"hi\n"
    assert _islink(lower[0], "bin/sh")

    by_digest = await service.pull(f"{registry.host}/team/app@{image.manifest.digest}")
    assert by_digest.id == got.id
    assert (await service.status(ref)) is not None
    assert (await service.status(f"{registry.host}/team/app@{image.manifest.digest}")) is not None
    assert (await service.status(got.id[7:19])) is not None
    assert [i.id for i in await service.list_images()] == [got.id]


async def test_unknown_tag_and_digest(registry: reg.Registry, service: LocalImageService) -> None:
    with pytest.raises(NotFound, match="not found"):
        await service.pull(f"{registry.host}/nothing/here:v1")
    pusher = b.Pusher(registry.url)
    pusher.image("app", "v1", _busybox())
    pusher.close()
    with pytest.raises(NotFound):
        await service.pull(f"{registry.host}/app@sha256:{'0' * 64}")
    assert await service.list_images() == []


async def test_corrupt_blob_refused(
    tmp_path: Path, registry: reg.Registry, service: LocalImageService
) -> None:
    image = _busybox()
    pusher = b.Pusher(registry.url)
    pusher.image("app", "v1", image)
    pusher.close()
    # the registry serves what is on its disk without checking: corrupt the layer there
    hexd = image.layers[0].digest[7:]
    data = tmp_path / "registry/storage/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(DigestMismatch, match="hashes to"):
        await service.pull(f"{registry.host}/app:v1")
    assert await service.list_images() == []
    assert not service.store.has_blob(image.layers[0].digest)
    assert list((service.store.root / "tmp").iterdir()) == []


async def test_index_resolved_to_this_platform(
    registry: reg.Registry, service: LocalImageService
) -> None:
    amd = _busybox({"Cmd": ["amd64"]})
    arm = _busybox({"Cmd": ["arm64"]}, arch="arm64")
    pusher = b.Pusher(registry.url)
    index = pusher.index(
        "multi",
        "v1",
        [
            (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            (amd, {"os": "linux", "architecture": "amd64"}),
        ],
    )
    pusher.close()
    service._platform = ("linux", "amd64", "")
    got = await service.pull(f"{registry.host}/multi:v1")
    assert got.config.cmd == ["amd64"]
    # the repo digest is the manifest's (what runs), as containerd records it
    assert got.manifest_digest == amd.manifest.digest
    assert service.store.has_blob(index.digest)
    service._platform = ("linux", "s390x", "")
    with pytest.raises(PullError, match="no manifest for linux/s390x"):
        await service.pull(f"{registry.host}/multi:v1")


async def test_docker_media_types_and_layer_sharing(
    registry: reg.Registry, service: LocalImageService
) -> None:
    base = b.busybox_layer()
    one = b.build_image([base, b.layer_tar([b.Entry("one", b"1")])], {}, flavour="docker")
    two = b.build_image([base, b.layer_tar([b.Entry("two", b"2")])], {}, flavour="docker")
    pusher = b.Pusher(registry.url)
    pusher.image("one", "v1", one)
    pusher.image("two", "v1", two)
    pusher.close()
    i1, i2 = await asyncio.gather(
        service.pull(f"{registry.host}/one:v1"), service.pull(f"{registry.host}/two:v1")
    )
    assert service.layer_dirs(i1)[0] == service.layer_dirs(i2)[0]
    assert len(list((service.store.root / "layers/sha256").iterdir())) == 3
    # removing one keeps the shared layer for the other
    await service.remove(i1.id)
    assert _exists(service.layer_dirs(i2)[0], "bin/busybox")
    assert not _exists(service.layer_dirs(i1)[1], ".")
    assert len(list((service.store.root / "layers/sha256").iterdir())) == 2


async def test_whiteouts_across_layers(registry: reg.Registry, service: LocalImageService) -> None:
    lower = b.layer_tar(
        [
            b.Entry("etc", kind="dir", mode=0o755),
            b.Entry("etc/gone", b"x"),
            b.Entry("cache", kind="dir", mode=0o755),
            b.Entry("cache/old", b"o"),
        ]
    )
    upper = b.layer_tar(
        [
            b.Entry("etc", kind="dir", mode=0o755),
            b.Entry("etc/.wh.gone"),
            b.Entry("cache", kind="dir", mode=0o755),
            b.Entry("cache/.wh..wh..opq"),
            b.Entry("cache/new", b"n"),
        ]
    )
    pusher = b.Pusher(registry.url)
    pusher.image("wh", "v1", b.build_image([lower, upper], {}))
    pusher.close()
    got = await service.pull(f"{registry.host}/wh:v1")
    top = Path(service.layer_dirs(got)[1])
    assert stat.S_ISCHR(os.lstat(top / "etc/gone").st_mode)
    assert os.getxattr(top / "cache", "trusted.overlay.opaque") == b"y"


async def test_concurrent_pulls_deduplicated(tmp_path: Path, registry: reg.Registry) -> None:
    image = _busybox()
    pusher = b.Pusher(registry.url)
    pusher.image("app", "v1", image)
    pusher.close()
    requests: list[str] = []

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            requests.append(request.url.path)
            return await super().handle_async_request(request)

    client = RegistryClient(
        RegistryConfig(insecure=frozenset({registry.host})), transport=Counting()
    )
    svc = LocalImageService(Store(tmp_path / "s"), client)
    try:
        results = await asyncio.gather(*(svc.pull(f"{registry.host}/app:v1") for _ in range(5)))
    finally:
        await svc.aclose()
    assert {r.id for r in results} == {image.id}
    assert requests.count(f"/v2/app/blobs/{image.layers[0].digest}") == 1
    assert requests.count("/v2/app/manifests/v1") == 1


async def test_https_unless_insecure(tmp_path: Path, registry: reg.Registry) -> None:
    svc = make_service(tmp_path / "s")  # the registry is not listed as insecure
    try:
        with pytest.raises(PullError, match="cannot reach the registry"):
            await svc.pull(f"{registry.host}/app:v1")
    finally:
        await svc.aclose()


async def test_mirror_stands_in_for_docker_hub(tmp_path: Path, registry: reg.Registry) -> None:
    image = _busybox()
    pusher = b.Pusher(registry.url)
    pusher.image("library/busybox", "test", image)
    pusher.close()
    svc = make_service(tmp_path / "s", registry.host, mirrors={"docker.io": [registry.host]})
    try:
        got = await svc.pull("busybox:test")
        assert got.repo_tags == ["docker.io/library/busybox:test"]
        assert got.repo_digests == [f"docker.io/library/busybox@{image.manifest.digest}"]
        # docker.io itself is never contacted: a missing image fails at the mirror
        with pytest.raises(NotFound, match=registry.host):
            await svc.pull("busybox:missing")
    finally:
        await svc.aclose()


def _dockerconfigjson(host: str, user: str, password: str) -> dict[str, bytes]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {".dockerconfigjson": json.dumps({"auths": {host: {"auth": auth}}}).encode()}


async def test_private_registry_basic_auth(tmp_path: Path, private_registry: reg.Registry) -> None:
    image = _busybox()
    pusher = b.Pusher(private_registry.url, auth=("alice", USERS["alice"]))
    pusher.image("private/app", "v1", image)
    pusher.close()
    ref = f"{private_registry.host}/private/app:v1"
    svc = make_service(tmp_path / "s", private_registry.host)
    try:
        with pytest.raises(Unauthorized, match="credentials"):
            await svc.pull(ref)
        wrong = keyring_from_secrets(
            [("bad", DOCKER_CONFIG_JSON, _dockerconfigjson(private_registry.host, "alice", "nope"))]
        )
        with pytest.raises(Unauthorized, match="as 'alice'"):
            await svc.pull(ref, wrong.lookup(parse(ref)))
        good = keyring_from_secrets(
            [
                (
                    "bad",
                    DOCKER_CONFIG_JSON,
                    _dockerconfigjson(private_registry.host, "alice", "nope"),
                ),
                (
                    "old",
                    DOCKER_CFG,
                    {
                        ".dockercfg": json.dumps(
                            {
                                private_registry.host: {
                                    "username": "alice",
                                    "password": USERS["alice"],
                                }
                            }
                        ).encode()
                    },
                ),
            ]
        )
        got = await svc.pull(ref, good.lookup(parse(ref)))  # the second credential works
        assert got.id == image.id
    finally:
        await svc.aclose()


async def test_token_auth(
    tmp_path: Path, token_registry: tuple[reg.Registry, reg.TokenService]
) -> None:
    registry, tokens = token_registry
    token = tokens.token("alice", "repository:public/app:pull,push")
    pusher = b.Pusher(registry.url)
    pusher.http.headers["Authorization"] = f"Bearer {token}"
    image = _busybox()
    pusher.image("public/app", "v1", image)
    pusher.http.headers["Authorization"] = "Bearer " + tokens.token(
        "alice", "repository:private/app:pull,push"
    )
    pusher.image("private/app", "v1", image)
    pusher.close()
    svc = make_service(tmp_path / "s", registry.host)
    try:
        assert (await svc.pull(f"{registry.host}/public/app:v1")).id == image.id
        assert tokens.requests[-1] == (None, "repository:public/app:pull")
        with pytest.raises(Unauthorized):
            await svc.pull(f"{registry.host}/private/app:v1")
        ring = keyring_from_secrets(
            [("s", DOCKER_CONFIG_JSON, _dockerconfigjson(registry.host, "alice", USERS["alice"]))]
        )
        got = await svc.pull(
            f"{registry.host}/private/app:v1", ring.lookup(parse(f"{registry.host}/private/app"))
        )
        assert got.id == image.id and tokens.requests[-1] == (
            "alice",
            "repository:private/app:pull",
        )
    finally:
        await svc.aclose()


async def test_removal_during_a_pull_keeps_the_pulls_content(
    tmp_path: Path, registry: reg.Registry
) -> None:
    one = b.build_image([b.layer_tar([b.Entry("one", b"1")])], {})
    two = b.build_image([b.layer_tar([b.Entry("two", b"2")])], {})
    pusher = b.Pusher(registry.url)
    pusher.image("one", "v1", one)
    pusher.image("two", "v1", two)
    pusher.close()
    gate = asyncio.Event()
    reached = asyncio.Event()

    class Gated(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == f"/v2/two/blobs/{two.layers[0].digest}":
                reached.set()
                await gate.wait()
            return await super().handle_async_request(request)

    client = RegistryClient(RegistryConfig(insecure=frozenset({registry.host})), transport=Gated())
    svc = LocalImageService(Store(tmp_path / "s"), client)
    try:
        first = await svc.pull(f"{registry.host}/one:v1")
        pulling = asyncio.create_task(svc.pull(f"{registry.host}/two:v1"))
        await asyncio.wait_for(reached.wait(), 10)
        await svc.remove(first.id)
        assert svc.store.has_blob(two.manifest.digest)  # not pruned under the running pull
        gate.set()
        second = await asyncio.wait_for(pulling, 10)
        assert _exists(svc.layer_dirs(second)[0], "two")
        assert not _exists(svc.layer_dirs(first)[0], ".")  # pruned once the pull ended
    finally:
        gate.set()
        await svc.aclose()


async def test_manifest_not_matching_its_digest_refused(
    tmp_path: Path, registry: reg.Registry, service: LocalImageService
) -> None:
    image = _busybox()
    pusher = b.Pusher(registry.url)
    pusher.image("app", "v1", image)
    pusher.close()
    hexd = image.manifest.digest[7:]
    data = tmp_path / "registry/storage/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    data.write_bytes(data.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    with pytest.raises(DigestMismatch, match="served content hashing to"):
        await service.pull(f"{registry.host}/app@{image.manifest.digest}")
    assert await service.list_images() == []


async def test_https_verified_with_the_system_cas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS is the default: a registry whose certificate the system's CAs do not vouch for
    is refused; once its CA is among them (SSL_CERT_FILE, as OpenSSL reads it), the pull
    works over HTTPS."""
    ca, cert, key = reg.self_signed_ca(tmp_path / "tls")
    with reg.running_registry(tmp_path / "registry", tls=(cert, key)) as (registry, _):
        pusher = b.Pusher(f"https://{registry.host}")
        pusher.http = httpx.Client(
            base_url=f"https://{registry.host}",
            verify=ssl.create_default_context(cafile=str(ca)),
            timeout=30,
        )
        pusher.image("app", "v1", _busybox())
        pusher.close()
        untrusted = make_service(tmp_path / "s1")
        try:
            with pytest.raises(PullError, match=r"cannot reach the registry.*(?i:certificate)"):
                await untrusted.pull(f"{registry.host}/app:v1")
        finally:
            await untrusted.aclose()
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        trusted = make_service(tmp_path / "s2")
        try:
            assert (await trusted.pull(f"{registry.host}/app:v1")).repo_tags
        finally:
            await trusted.aclose()
