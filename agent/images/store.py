"""The content-addressed image store in the agent's data dir (blocking; callers use threads).

Layout under ``root`` (``<data-dir>/images``)::

    blobs/sha256/<hex>          manifests, configs, compressed layers, as served
    layers/sha256/<hex>/        one unpacked layer per diff_id, in overlayfs' format
    images/<config hex>.json    one record per image (Image.to_json)
    tmp/                        ingests and unpacks in progress (cleared at open)
    lock                        flock: the agent and `flotilla image` may share the store

Every blob is written to ``tmp/`` while its sha256 is computed and renamed into place only
when it matches its digest (and size, when known), so a blob path always holds verified
content. Layers are unpacked into ``tmp/`` and renamed into place: a layer directory that
exists is complete. Image records change under the ``lock`` flock (read, modify, write a
temporary file, rename). Blobs and layers referenced by no image are removed by
:meth:`Store.prune`, also under the lock, so a pull in another process that has written a
blob but not yet its record could lose it; the pull then fails and its retry fetches the
blob again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from agent.images import layers as layer_unpack
from agent.images.errors import DigestMismatch, ImageNotFound, InvalidReference
from agent.images.image import FsUsage, Image
from agent.images.reference import Reference, is_digest, parse


def _hex(digest: str) -> str:
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.split(":", 1)[1]


class BlobWriter:
    """Write one blob; :meth:`commit` verifies it and moves it into place."""

    def __init__(self, store: Store, digest: str, size: int | None) -> None:
        self._store = store
        self.digest = digest
        self._size = size
        fd, name = tempfile.mkstemp(dir=store.root / "tmp", prefix="blob-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._hash = hashlib.sha256()
        self.written = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.written += len(data)
        if self._size is not None and self.written > self._size:
            raise DigestMismatch(
                f"blob {self.digest}: more than the {self._size} bytes its descriptor says"
            )
        self._file.write(data)

    def commit(self) -> Path:
        self._file.close()
        got = "sha256:" + self._hash.hexdigest()
        if got != self.digest:
            self.abort()
            raise DigestMismatch(f"blob {self.digest}: content hashes to {got}")
        if self._size is not None and self.written != self._size:
            self.abort()
            raise DigestMismatch(
                f"blob {self.digest}: {self.written} bytes, its descriptor says {self._size}"
            )
        dest = self._store.blob_path(self.digest)
        os.replace(self._tmp, dest)
        return dest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("blobs/sha256", "layers/sha256", "images", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "lock").touch(exist_ok=True)
        self._thread_lock = threading.Lock()

    def clear_tmp(self) -> None:
        """Drop what an interrupted pull left; only the process that owns the store calls it
        at start (another process may be mid-ingest otherwise)."""
        with self.locked():
            for entry in (self.root / "tmp").iterdir():
                _remove_tree(entry)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._thread_lock, open(self.root / "lock", "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # blobs

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def blob_writer(self, digest: str, size: int | None = None) -> BlobWriter:
        _hex(digest)
        return BlobWriter(self, digest, size)

    def put_blob(self, digest: str, data: bytes) -> None:
        writer = self.blob_writer(digest, len(data))
        try:
            writer.write(data)
        except BaseException:
            writer.abort()
            raise
        writer.commit()

    # layers

    def layer_path(self, diff_id: str) -> Path:
        return self.root / "layers" / "sha256" / _hex(diff_id)

    def has_layer(self, diff_id: str) -> bool:
        return self.layer_path(diff_id).is_dir()

    def unpack_layer(self, diff_id: str, blob_digest: str, compression: str) -> Path:
        """Unpack the (verified) blob into the layer directory for ``diff_id``, unless it is
        there already; the uncompressed content must hash to ``diff_id``."""
        dest = self.layer_path(diff_id)
        if dest.is_dir():
            return dest
        tmp = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix="layer-"))
        try:
            os.chmod(tmp, 0o755)
            with open(self.blob_path(blob_digest), "rb") as raw:
                layer_unpack.unpack(raw, compression, str(tmp), diff_id)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not dest.is_dir():  # else another process unpacked it first: keep theirs
                    raise
        finally:
            if tmp.exists():
                _remove_tree(tmp)
        return dest

    # image records

    def _record_path(self, image_id: str) -> Path:
        return self.root / "images" / f"{_hex(image_id)}.json"

    def images(self) -> list[Image]:
        out = []
        for path in sorted((self.root / "images").glob("*.json")):
            try:
                out.append(Image.from_json(json.loads(path.read_bytes())))
            except FileNotFoundError:
                continue  # removed while we listed
        return out

    def get(self, image_id: str) -> Image | None:
        try:
            return Image.from_json(json.loads(self._record_path(image_id).read_bytes()))
        except FileNotFoundError:
            return None

    def _write(self, image: Image) -> None:
        path = self._record_path(image.id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(image.to_json(), sort_keys=True))
        os.replace(tmp, path)

    def record(self, image: Image) -> Image:
        """Store ``image``, merging with an existing record of the same id; its tags move
        off any other image (a tag names one image at a time)."""
        with self.locked():
            for other in self.images():
                if other.id == image.id:
                    continue
                kept = [t for t in other.repo_tags if t not in image.repo_tags]
                if kept != other.repo_tags:
                    other.repo_tags = kept
                    self._write(other)
            existing = self.get(image.id)
            if existing is not None:
                image.repo_tags = _union(existing.repo_tags, image.repo_tags)
                image.repo_digests = _union(existing.repo_digests, image.repo_digests)
                image.created_at = existing.created_at or image.created_at
                image.last_used = max(existing.last_used, image.last_used)
            self._write(image)
            return image

    def touch(self, image_id: str, when: float) -> None:
        with self.locked():
            image = self.get(image_id)
            if image is not None:
                image.last_used = when
                self._write(image)

    def find(self, text: str) -> Image | None:
        """An image by reference (tag or digest, normalised like a pull), by id
        (``sha256:<hex>``), or by a unique prefix of at least 12 hex digits of its id."""
        images = self.images()
        bare = text.removeprefix("sha256:")
        if is_digest(text) or (len(bare) >= 12 and all(c in "0123456789abcdef" for c in bare)):
            matches = [i for i in images if _hex(i.id).startswith(bare)]
            if len(matches) == 1:
                return matches[0]
            if is_digest(text):
                return None
        try:
            ref = parse(text)
        except InvalidReference:
            return None
        return find_by_reference(images, ref)

    def remove(self, image_id: str) -> Image:
        with self.locked():
            image = self.get(image_id)
            if image is None:
                raise ImageNotFound(f"no image {image_id} on this node")
            self._record_path(image_id).unlink()
            return image

    def untag(self, image_id: str, name: str) -> Image | None:
        """Drop one tag or repo digest from an image; removes the record when none is left
        and returns None then."""
        with self.locked():
            image = self.get(image_id)
            if image is None:
                raise ImageNotFound(f"no image {image_id} on this node")
            image.repo_tags = [t for t in image.repo_tags if t != name]
            image.repo_digests = [d for d in image.repo_digests if d != name]
            if not image.repo_tags and not image.repo_digests:
                self._record_path(image_id).unlink()
                return None
            self._write(image)
            return image

    def prune(self) -> int:
        """Remove blobs and layers no image references; returns bytes of blobs freed."""
        with self.locked():
            blobs: set[str] = set()
            diff_ids: set[str] = set()
            for image in self.images():
                blobs.update({image.id, image.manifest_digest})
                blobs.update(layer.digest for layer in image.layers)
                diff_ids.update(layer.diff_id for layer in image.layers)
            freed = 0
            for path in (self.root / "blobs" / "sha256").iterdir():
                if "sha256:" + path.name not in blobs:
                    freed += path.stat().st_size
                    path.unlink()
            for path in (self.root / "layers" / "sha256").iterdir():
                if "sha256:" + path.name not in diff_ids:
                    _remove_tree(path)
            return freed

    def usage(self) -> FsUsage:
        used = inodes = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                inodes += 1
                with contextlib.suppress(FileNotFoundError):
                    st = os.lstat(os.path.join(dirpath, name))
                    used += st.st_blocks * 512
        vfs = os.statvfs(self.root)
        return FsUsage(
            used_bytes=used,
            inodes_used=inodes,
            capacity_bytes=vfs.f_blocks * vfs.f_frsize,
            available_bytes=vfs.f_bavail * vfs.f_frsize,
        )


def find_by_reference(images: list[Image], ref: Reference) -> Image | None:
    if ref.digest:
        want = f"{ref.name}@{ref.digest}"
        for image in images:
            if want in image.repo_digests:
                return image
        return None
    want = f"{ref.name}:{ref.tag}"
    for image in images:
        if want in image.repo_tags:
            return image
    return None


def _union(a: list[str], b: list[str]) -> list[str]:
    return a + [x for x in b if x not in a]


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        # unpacked layers hold read-only directories and whiteout devices
        def onerror(func: object, p: str, exc: object) -> None:
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(p), 0o700)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)

        shutil.rmtree(path, onerror=onerror)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
