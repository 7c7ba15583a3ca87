"""Importing ``docker save`` archives and OCI layouts into the store."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from agent.images.archive import import_archive
from agent.images.errors import BadArchive
from agent.images.store import Store
from tests.images import builder as b
from tests.images.conftest import needs_root

pytestmark = needs_root


def test_docker_save(tmp_path: Path) -> None:
    base = b.busybox_layer()
    one = b.build_image([base], {"Cmd": ["sh"]}, flavour="docker")
    two = b.build_image(
        [base, b.layer_tar([b.Entry("x", b"x")])], {"Entrypoint": ["/x"]}, flavour="docker"
    )
    archive = tmp_path / "save.tar"
    b.docker_save(archive, [(one, ["busybox:test", "example.com/bb:1"]), (two, ["two:v2"])])
    store = Store(tmp_path / "store")
    images = import_archive(store, archive)
    assert [i.id for i in images] == [one.id, two.id]
    assert images[0].repo_tags == ["docker.io/library/busybox:test", "example.com/bb:1"]
    assert store.find("busybox:test") is not None and store.find("two:v2") is not None
    assert images[1].config.entrypoint == ["/x"]
    assert Path(store.layer_path(one.diff_ids[0]), "bin/busybox").exists()
    assert len(list((store.root / "layers/sha256").iterdir())) == 2  # the base layer is shared


def test_oci_layout(tmp_path: Path) -> None:
    image = b.build_image([b.busybox_layer()], {"Cmd": ["sh"]}, compression="zstd")
    archive = tmp_path / "oci.tar"
    b.oci_layout(archive, image, "registry.example.com/tools/bb:1.0")
    store = Store(tmp_path / "store")
    [got] = import_archive(store, archive)
    assert got.id == image.id
    assert got.repo_tags == ["registry.example.com/tools/bb:1.0"]
    assert got.repo_digests == [f"registry.example.com/tools/bb@{image.manifest.digest}"]


def test_bad_archives(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(BadArchive, match="not a tar"):
        import_archive(store, tmp_path / "junk.tar")
    image = b.build_image(
        [b.busybox_layer(), b.layer_tar([b.Entry("../evil", b"x")])], {}, flavour="docker"
    )
    archive = tmp_path / "evil.tar"
    b.docker_save(archive, [(image, ["evil:1"])])
    with pytest.raises(BadArchive, match="leaves the layer"):
        import_archive(store, archive)
    assert store.images() == []
    # a layer that does not match its diff_id
    bad = tmp_path / "mismatch.tar"
    b.docker_save(bad, [(image, ["evil:1"])])
    with tarfile.open(bad) as src, tarfile.open(tmp_path / "m2.tar", "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith("layer.tar") and len(data) < 100_000:
                data = b.layer_tar([b.Entry("other", b"y")])
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(BadArchive, match="the image config says"):
        import_archive(store, tmp_path / "m2.tar")
    assert store.images() == []
