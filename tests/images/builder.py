"""Build OCI / Docker images in tests and put them where the image service reads them:
a registry (push over the distribution API), a ``docker save`` tarball, an OCI layout.

Layers are tarballs made here; :func:`busybox_layer` gives a small runnable root from
Debian's busybox-static (``/bin/busybox`` and its applets as symlinks), enough for a shell,
``sleep`` and ``httpd``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import zstandard

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh",
    "ls",
    "cat",
    "echo",
    "sleep",
    "httpd",
    "env",
    "id",
    "pwd",
    "true",
    "false",
    "mkdir",
    "rm",
    "touch",
    "wget",
    "printf",
    "test",
    "kill",
    "ps",
    "hostname",
    "mount",
)

MEDIA = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", ""): "application/vnd.oci.image.layer.v1.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("docker", ""): "application/vnd.docker.image.rootfs.diff.tar",
}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    """One tar member: kind is file, dir, symlink, hardlink or fifo."""

    path: str
    data: bytes = b""
    mode: int = 0o644
    kind: str = "file"
    link: str = ""
    uid: int = 0
    gid: int = 0


def layer_tar(entries: Sequence[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, 1_700_000_000
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[e.kind]
            info.linkname = e.link
            tar.addfile(info)
    return buf.getvalue()


def busybox_entries() -> list[Entry]:
    out = [Entry("bin", kind="dir", mode=0o755), Entry("bin/busybox", BUSYBOX.read_bytes(), 0o755)]
    out += [Entry(f"bin/{a}", kind="symlink", link="busybox") for a in APPLETS]
    out += [
        Entry("etc", kind="dir", mode=0o755),
        Entry(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/home/web:/bin/sh\n"
            b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        Entry("etc/group", b"root:x:0:\nweb:x:1001:\nnogroup:x:65534:\n"),
        Entry("tmp", kind="dir", mode=0o1777),
        Entry("home", kind="dir", mode=0o755),
        Entry("home/web", kind="dir", mode=0o755, uid=1000, gid=1001),
    ]
    return out


def busybox_layer() -> bytes:
    return layer_tar(busybox_entries())


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


@dataclass
class Blob:
    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return digest(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


@dataclass
class BuiltImage:
    manifest: Blob
    config: Blob
    layers: list[Blob]
    diff_ids: list[str]
    blobs: list[Blob] = field(default_factory=list)  # every blob, index manifests included

    @property
    def id(self) -> str:
        return self.config.digest


def build_image(
    layers: Sequence[bytes],
    config: dict[str, Any] | None = None,
    *,
    compression: Sequence[str] | str = "gzip",
    flavour: str = "oci",
    arch: str = "amd64",
) -> BuiltImage:
    """An image of uncompressed ``layers`` (bottom first) and ``config`` (the ``config``
    object of an image config: Entrypoint, Cmd, Env, WorkingDir, User...)."""
    comps = [compression] * len(layers) if isinstance(compression, str) else list(compression)
    blobs = [
        Blob(compress(raw, c), MEDIA[(flavour, c)]) for raw, c in zip(layers, comps, strict=True)
    ]
    diff_ids = [digest(raw) for raw in layers]
    config_doc = {
        "architecture": arch,
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_blob = Blob(
        json.dumps(config_doc).encode(),
        "application/vnd.oci.image.config.v1+json"
        if flavour == "oci"
        else "application/vnd.docker.container.image.v1+json",
    )
    manifest_type = (
        "application/vnd.oci.image.manifest.v1+json"
        if flavour == "oci"
        else "application/vnd.docker.distribution.manifest.v2+json"
    )
    manifest = Blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": config_blob.descriptor(),
                "layers": [b.descriptor() for b in blobs],
            }
        ).encode(),
        manifest_type,
    )
    return BuiltImage(manifest, config_blob, blobs, diff_ids, [config_blob, *blobs])


def build_index(images: Sequence[tuple[BuiltImage, dict[str, str]]]) -> Blob:
    return Blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [img.manifest.descriptor(platform=plat) for img, plat in images],
            }
        ).encode(),
        "application/vnd.oci.image.index.v1+json",
    )


class Pusher:
    """Pushes to a registry over the distribution API (monolithic blob uploads)."""

    def __init__(self, base: str, auth: tuple[str, str] | None = None) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, auth=auth, timeout=30)

    def close(self) -> None:
        self.http.close()

    def blob(self, repo: str, blob: Blob) -> None:
        if self.http.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 200:
            return
        start = self.http.post(f"/v2/{repo}/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = start.headers["location"]
        sep = "&" if "?" in location else "?"
        done = self.http.put(
            f"{location}{sep}digest={blob.digest}",
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text

    def manifest(self, repo: str, ref: str, manifest: Blob) -> None:
        resp = self.http.put(
            f"/v2/{repo}/manifests/{ref}",
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        assert resp.status_code == 201, resp.text

    def image(self, repo: str, tag: str, image: BuiltImage) -> None:
        for blob in image.blobs:
            self.blob(repo, blob)
        self.manifest(repo, tag, image.manifest)

    def index(
        self, repo: str, tag: str, images: Sequence[tuple[BuiltImage, dict[str, str]]]
    ) -> Blob:
        for img, _ in images:
            for blob in img.blobs:
                self.blob(repo, blob)
            self.manifest(repo, img.manifest.digest, img.manifest)
        index = build_index(images)
        self.manifest(repo, tag, index)
        return index

    def delete(self, repo: str, manifest_digest: str) -> None:
        resp = self.http.delete(f"/v2/{repo}/manifests/{manifest_digest}")
        assert resp.status_code == 202, resp.text


def docker_save(path: Path, images: Sequence[tuple[BuiltImage, list[str]]]) -> None:
    """A ``docker save`` archive: uncompressed layers as ``<hex>/layer.tar``."""
    entries: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    for image, tags in images:
        layer_names = []
        for blob in image.layers:
            raw = gzip.decompress(blob.data) if blob.media_type.endswith("gzip") else blob.data
            name = f"{digest(raw)[7:]}/layer.tar"
            files[name] = raw
            layer_names.append(name)
        config_name = f"{image.config.digest[7:]}.json"
        files[config_name] = image.config.data
        entries.append({"Config": config_name, "RepoTags": tags, "Layers": layer_names})
    files["manifest.json"] = json.dumps(entries).encode()
    _write_tar(path, files)


def oci_layout(path: Path, image: BuiltImage, name: str) -> None:
    files = {f"blobs/sha256/{b.digest[7:]}": b.data for b in [*image.blobs, image.manifest]}
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                image.manifest.descriptor(annotations={"io.containerd.image.name": name})
            ],
        }
    ).encode()
    _write_tar(path, files)


def _write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
