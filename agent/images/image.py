"""What the image service knows of one image (pure data, JSON round-trip)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from agent.images.manifest import ImageConfig


@dataclass(frozen=True)
class Layer:
    diff_id: str  # sha256 of the uncompressed tar: names the unpacked directory
    digest: str  # the blob as served (compressed)
    media_type: str
    size: int  # compressed bytes


@dataclass
class Image:
    """One image: ``id`` is its config's digest (as CRI and containerd name images)."""

    id: str
    repo_tags: list[str]  # docker.io/library/nginx:1.27
    repo_digests: list[str]  # docker.io/library/nginx@sha256:<manifest digest>
    manifest_digest: str
    size: int  # bytes as distributed: config + compressed layers
    config: ImageConfig
    layers: list[Layer]
    created_at: float = 0.0  # when this node first stored it
    last_used: float = 0.0  # when a container last started from it (image GC's order)
    pinned: bool = field(default=False)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Image:
        doc = dict(doc)
        doc["config"] = ImageConfig(**doc["config"])
        doc["layers"] = [Layer(**layer) for layer in doc["layers"]]
        return cls(**doc)

    def names(self) -> list[str]:
        """Node.status.images[].names: digests first, then tags (as the kubelet lists)."""
        return [*self.repo_digests, *self.repo_tags]


@dataclass(frozen=True)
class FsUsage:
    """The image filesystem (CRI ImageFsInfo): what images use, and the filesystem's room."""

    used_bytes: int
    inodes_used: int
    capacity_bytes: int
    available_bytes: int
