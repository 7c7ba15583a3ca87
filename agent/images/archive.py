"""Import images from an archive file: ``docker save`` tarballs and OCI image layouts
(blocking; callers run it in a thread).

``docker save`` writes ``manifest.json`` (per image: ``Config``, ``RepoTags``, ``Layers``,
paths inside the tar); newer Docker writes an OCI layout beside it, which we ignore when
``manifest.json`` is there. An OCI layout archive has ``oci-layout``, ``index.json`` and
``blobs/sha256/``; an image's name comes from the ``io.containerd.image.name`` annotation
or a full reference in ``org.opencontainers.image.ref.name``.

Every blob is stored verified (an OCI layout names blobs by digest; docker save's layers
are hashed as we copy them), every layer is checked against the config's diff_ids while it
is unpacked, and image records are written only after all of an image's content is in the
store, so a bad archive leaves no image behind.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from pathlib import Path
from typing import IO, Any

from agent.images import manifest as mf
from agent.images.errors import BadArchive, ImageError, InvalidReference, PullError
from agent.images.image import Image, Layer
from agent.images.reference import parse
from agent.images.store import Store

CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"


def import_archive(
    store: Store, path: Path, platform: tuple[str, str, str] | None = None
) -> list[Image]:
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise BadArchive(f"{path}: not a tar archive: {e}") from e
    with tar:
        names = set(tar.getnames())
        try:
            if "manifest.json" in names:
                return _docker_save(store, tar, path)
            if "index.json" in names and "oci-layout" in names:
                return _oci_layout(store, tar, path, platform)
        except PullError as e:
            raise BadArchive(f"{path}: {e}") from e
        raise BadArchive(f"{path}: neither a docker save archive nor an OCI layout")


def _member(tar: tarfile.TarFile, name: str, path: Path) -> IO[bytes]:
    try:
        f = tar.extractfile(name[2:] if name.startswith("./") else name)
    except KeyError:
        f = None
    if f is None:
        raise BadArchive(f"{path}: {name!r} is missing from the archive")
    return f


def _read(tar: tarfile.TarFile, name: str, path: Path) -> bytes:
    return _member(tar, name, path).read()


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as e:
        raise BadArchive(f"{what} is not JSON: {e}") from e


def _store_member(store: Store, tar: tarfile.TarFile, name: str, path: Path) -> tuple[str, int]:
    """Copy a member into the blob store; returns (digest, size)."""
    h = hashlib.sha256()
    src = _member(tar, name, path)
    while chunk := src.read(1 << 20):
        h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    if not store.has_blob(digest):
        writer = store.blob_writer(digest)
        try:
            src = _member(tar, name, path)
            while chunk := src.read(1 << 20):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
    return digest, store.blob_path(digest).stat().st_size


def _compression(store: Store, digest: str) -> str:
    with open(store.blob_path(digest), "rb") as f:
        magic = f.read(4)
    if magic.startswith(_GZIP):
        return "gzip"
    if magic == _ZSTD:
        return "zstd"
    return ""


def _docker_save(store: Store, tar: tarfile.TarFile, path: Path) -> list[Image]:
    doc = _json(_read(tar, "manifest.json", path), f"{path}: manifest.json")
    if not isinstance(doc, list):
        raise BadArchive(f"{path}: manifest.json is not a list")
    out = []
    for n, entry in enumerate(doc):
        where = f"{path}: manifest.json entry {n}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise BadArchive(f"{where}: no Config")
        config_body = _read(tar, entry["Config"], path)
        config_digest = "sha256:" + hashlib.sha256(config_body).hexdigest()
        config = mf.parse_config(config_body, f"{where} config")
        layer_names = entry.get("Layers") or []
        if len(layer_names) != len(config.diff_ids):
            raise BadArchive(
                f"{where}: {len(layer_names)} layers but {len(config.diff_ids)} diff_ids"
            )
        tags = []
        for tag in entry.get("RepoTags") or []:
            try:
                ref = parse(str(tag))
            except InvalidReference as e:
                raise BadArchive(f"{where}: {e}") from e
            tags.append(f"{ref.name}:{ref.tag}")
        store.put_blob(config_digest, config_body)
        layers = []
        for name, diff_id in zip(layer_names, config.diff_ids, strict=True):
            digest, size = _store_member(store, tar, str(name), path)
            compression = _compression(store, digest)
            media = {
                "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
                "": "application/vnd.docker.image.rootfs.diff.tar",
            }[compression]
            _unpack(store, diff_id, digest, compression, where)
            layers.append(Layer(diff_id, digest, media, size))
        manifest_body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mf.DOCKER_MANIFEST,
                "config": {
                    "mediaType": mf.DOCKER_CONFIG,
                    "digest": config_digest,
                    "size": len(config_body),
                },
                "layers": [
                    {"mediaType": la.media_type, "digest": la.digest, "size": la.size}
                    for la in layers
                ],
            },
            separators=(",", ":"),
        ).encode()
        manifest_digest = "sha256:" + hashlib.sha256(manifest_body).hexdigest()
        store.put_blob(manifest_digest, manifest_body)
        out.append(
            store.record(
                Image(
                    id=config_digest,
                    repo_tags=tags,
                    repo_digests=[],  # docker save keeps no registry digest
                    manifest_digest=manifest_digest,
                    size=len(config_body) + sum(la.size for la in layers),
                    config=config,
                    layers=layers,
                    created_at=time.time(),
                )
            )
        )
    return out


def _unpack(store: Store, diff_id: str, digest: str, compression: str, where: str) -> None:
    try:
        store.unpack_layer(diff_id, digest, compression)
    except ImageError as e:
        raise BadArchive(f"{where}: layer {diff_id}: {e}") from e


def _blob(tar: tarfile.TarFile, digest: str, path: Path) -> bytes:
    return _read(tar, f"blobs/sha256/{digest.split(':', 1)[1]}", path)


def _oci_layout(
    store: Store, tar: tarfile.TarFile, path: Path, platform: tuple[str, str, str] | None
) -> list[Image]:
    index = _json(_read(tar, "index.json", path), f"{path}: index.json")
    entries = mf.parse_index(json.dumps(index).encode(), f"{path}: index.json")
    raw_entries = index.get("manifests") or []
    out = []
    for n, desc in enumerate(entries):
        annotations = (raw_entries[n] or {}).get("annotations") or {}
        where = f"{path}: index.json manifest {n}"
        name = annotations.get(CONTAINERD_NAME) or annotations.get(OCI_REF_NAME) or ""
        body = _verified(tar, desc.digest, path)
        media = mf.media_type_of(body, desc.media_type)
        if media in mf.INDEX_TYPES:
            inner = mf.select_platform(mf.parse_index(body, where), where, platform)
            store.put_blob(desc.digest, body)
            desc, body = inner, _verified(tar, inner.digest, path)
        manifest = mf.parse_manifest(body, where)
        config_body = _verified(tar, manifest.config.digest, path)
        config = mf.parse_config(config_body, f"{where} config")
        if len(config.diff_ids) != len(manifest.layers):
            raise BadArchive(f"{where}: layers and diff_ids differ in number")
        layers = []
        for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
            if not store.has_blob(layer.digest):
                store.put_blob(layer.digest, _verified(tar, layer.digest, path))
            _unpack(store, diff_id, layer.digest, mf.LAYER_TYPES[layer.media_type], where)
            layers.append(Layer(diff_id, layer.digest, layer.media_type, layer.size))
        store.put_blob(manifest.config.digest, config_body)
        store.put_blob(desc.digest, body)
        tags: list[str] = []
        digests: list[str] = []
        if "/" in name or ":" in name:
            try:
                ref = parse(name)
            except InvalidReference as e:
                raise BadArchive(f"{where}: image name {name!r}: {e}") from e
            if ref.tag:
                tags.append(f"{ref.name}:{ref.tag}")
            digests.append(f"{ref.name}@{desc.digest}")
        out.append(
            store.record(
                Image(
                    id=manifest.config.digest,
                    repo_tags=tags,
                    repo_digests=digests,
                    manifest_digest=desc.digest,
                    size=manifest.config.size + sum(la.size for la in layers),
                    config=config,
                    layers=layers,
                    created_at=time.time(),
                )
            )
        )
    return out


def _verified(tar: tarfile.TarFile, digest: str, path: Path) -> bytes:
    body = _blob(tar, digest, path)
    got = "sha256:" + hashlib.sha256(body).hexdigest()
    if got != digest:
        raise BadArchive(f"{path}: blob {digest} hashes to {got}")
    return body
