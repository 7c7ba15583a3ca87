"""An in-memory :class:`~agent.images.service.ImageService` for kubelet tests.

Tests put images in with :meth:`FakeImageService.add` (as if they were in a registry) and
make pulls fail with :meth:`fail`; the double records every pull. No I/O; single event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from agent.images.auth import Credential
from agent.images.errors import ImageNotFound, NotFound, PullError, Unauthorized
from agent.images.image import FsUsage, Image
from agent.images.manifest import ImageConfig
from agent.images.reference import parse
from agent.images.store import find_by_reference


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class FakeImageService:
    def __init__(self, capacity_bytes: int = 100 << 30) -> None:
        self.remote: dict[str, Image] = {}  # "name:tag" -> image a pull would get
        self.private: dict[str, Credential] = {}  # repository name -> the credential it needs
        self.local: dict[str, Image] = {}  # id -> pulled image
        self.pulls: list[str] = []
        self.failures: dict[str, PullError] = {}
        self.capacity_bytes = capacity_bytes

    def add(
        self,
        ref: str,
        config: ImageConfig | None = None,
        size: int = 1 << 20,
        credential: Credential | None = None,
    ) -> Image:
        parsed = parse(ref)
        manifest = _digest(f"manifest {parsed}")
        image = Image(
            id=_digest(f"config {parsed}"),
            repo_tags=[f"{parsed.name}:{parsed.tag}"] if parsed.tag else [],
            repo_digests=[f"{parsed.name}@{manifest}"],
            manifest_digest=manifest,
            size=size,
            config=config or ImageConfig(),
            layers=[],
        )
        self.remote[str(parsed)] = image
        if credential is not None:
            self.private[parsed.name] = credential
        return image

    def fail(self, ref: str, error: PullError | None) -> None:
        if error is None:
            self.failures.pop(str(parse(ref)), None)
        else:
            self.failures[str(parse(ref))] = error

    async def pull(self, ref: str, credentials: Sequence[Credential] = ()) -> Image:
        parsed = parse(ref)
        self.pulls.append(str(parsed))
        if str(parsed) in self.failures:
            raise self.failures[str(parsed)]
        image = self.remote.get(str(parsed))
        if image is None and parsed.digest:
            image = find_by_reference(list(self.remote.values()), parsed)
        if image is None:
            raise NotFound(f"{parsed}: not found")
        needed = self.private.get(parsed.name)
        if needed is not None and needed not in credentials:
            raise Unauthorized(f"{parsed}: 401 without credentials")
        pulled = replace(image, repo_tags=list(image.repo_tags))
        for other in self.local.values():
            other.repo_tags = [t for t in other.repo_tags if t not in pulled.repo_tags]
        self.local[pulled.id] = pulled
        return pulled

    async def status(self, ref: str) -> Image | None:
        if ref in self.local:
            return self.local[ref]
        return find_by_reference(list(self.local.values()), parse(ref))

    async def list_images(self) -> list[Image]:
        return list(self.local.values())

    async def remove(self, image_id: str) -> None:
        image = await self.status(image_id)
        if image is None:
            raise ImageNotFound(f"no image {image_id!r} on this node")
        del self.local[image.id]

    async def fs_usage(self) -> FsUsage:
        used = sum(i.size for i in self.local.values())
        return FsUsage(used, len(self.local), self.capacity_bytes, self.capacity_bytes - used)

    def layer_dirs(self, image: Image) -> list[str]:
        return []

    async def mark_used(self, image_id: str) -> None:
        if image_id in self.local:
            self.local[image_id].last_used += 1
