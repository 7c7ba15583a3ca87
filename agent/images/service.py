"""The image service: the interface the kubelet and runtime use, and the real one.

:class:`ImageService` is CRI's image service in Python: pull, status, list, remove and the
image filesystem's usage. :class:`LocalImageService` keeps images in the node's
:class:`~agent.images.store.Store` and pulls them with a
:class:`~agent.images.registry.RegistryClient`; ``agent/images/fake.py`` is the in-memory
double.

Concurrency: all methods run on the agent's event loop; file work goes to threads. Pulls of
one reference share one task (the second caller waits for the first's result), and layers
are unpacked under a per-diff_id future, so two images sharing a layer unpack it once.
Up to three blobs of one pull download at a time. Content freed by a removal is pruned only
while no pull runs (a pull's blobs and layers exist before its image record does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from agent.images import manifest as mf
from agent.images.auth import Credential
from agent.images.errors import DigestMismatch, ImageNotFound, PullError, Unauthorized
from agent.images.image import FsUsage, Image, Layer
from agent.images.reference import Reference, parse
from agent.images.registry import RegistryClient
from agent.images.store import Store, find_by_reference

PARALLEL_BLOBS = 3


class ImageService(Protocol):
    async def pull(self, ref: str, credentials: Sequence[Credential] = ()) -> Image:
        """Fetch ``ref`` (trying each credential in turn, anonymously when none) and
        return the stored image."""
        ...

    async def status(self, ref: str) -> Image | None:
        """The local image a reference, id or id prefix names, or None."""
        ...

    async def list_images(self) -> list[Image]: ...

    async def remove(self, image_id: str) -> None:
        """Remove the image (every tag) and the content only it used."""
        ...

    async def fs_usage(self) -> FsUsage: ...

    def layer_dirs(self, image: Image) -> list[str]:
        """The unpacked layer directories, bottom first: an overlay's lower dirs reversed."""
        ...

    async def mark_used(self, image_id: str) -> None:
        """A container started from the image now (image GC removes the least recent)."""
        ...


class LocalImageService:
    def __init__(
        self,
        store: Store,
        registry: RegistryClient,
        *,
        platform: tuple[str, str, str] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self._platform = platform
        self._wall = wall
        self._pulls: dict[tuple[str, tuple[Credential, ...]], asyncio.Future[Image]] = {}
        self._unpacks: dict[str, asyncio.Future[None]] = {}
        # A pull writes blobs and layers before its image record: pruning meanwhile would
        # take them away, so pruning waits until no pull runs (``_prune_due``).
        self._running = 0
        self._prune_due = False

    async def pull(self, ref: str, credentials: Sequence[Credential] = ()) -> Image:
        parsed = parse(ref)
        key = (str(parsed), tuple(credentials))
        running = self._pulls.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Image] = asyncio.get_running_loop().create_future()
        self._pulls[key] = future
        self._running += 1
        try:
            image = await self._pull_with(parsed, list(credentials) or [None])
        except BaseException as e:
            if not future.cancelled():
                future.set_exception(e)
                future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(image)
            return image
        finally:
            del self._pulls[key]
            self._running -= 1
            if self._running == 0 and self._prune_due:
                self._prune_due = False
                await asyncio.to_thread(self.store.prune)

    async def _pull_with(self, ref: Reference, creds: list[Credential | None]) -> Image:
        last: PullError | None = None
        for cred in creds:
            try:
                return await self._pull(ref, cred)
            except PullError as e:
                # kubelet: every credential is tried; the last failure is reported
                last = e
                if not isinstance(e, Unauthorized):
                    raise
        assert last is not None
        raise last

    async def _pull(self, ref: Reference, cred: Credential | None) -> Image:
        fetched = await self.registry.fetch_manifest(ref, cred)
        media_type = mf.media_type_of(fetched.body, fetched.media_type)
        manifest_body, manifest_digest = fetched.body, fetched.digest
        blobs = [(fetched.digest, fetched.body)]
        if media_type in mf.INDEX_TYPES:
            entries = mf.parse_index(fetched.body, f"index {ref}")
            chosen = mf.select_platform(entries, f"index {ref}", self._platform)
            inner = await self.registry.fetch_manifest(ref, cred, chosen.digest)
            manifest_body, manifest_digest = inner.body, inner.digest
            blobs.append((inner.digest, inner.body))
        elif media_type not in mf.MANIFEST_TYPES:
            raise PullError(f"{ref}: manifest type {media_type!r} is not supported")
        manifest = mf.parse_manifest(manifest_body, f"manifest {ref.name}@{manifest_digest}")
        for digest, body in blobs:
            await asyncio.to_thread(self.store.put_blob, digest, body)
        await self._fetch_blob(ref, cred, manifest.config)
        config_body = await asyncio.to_thread(self.store.read_blob, manifest.config.digest)
        config = mf.parse_config(config_body, f"config {manifest.config.digest} of {ref}")
        if len(config.diff_ids) != len(manifest.layers):
            raise PullError(
                f"{ref}: the manifest has {len(manifest.layers)} layers, its config"
                f" {len(config.diff_ids)} diff_ids"
            )
        limit = asyncio.Semaphore(PARALLEL_BLOBS)

        async def layer(desc: mf.Descriptor, diff_id: str) -> None:
            if self.store.has_layer(diff_id):
                return
            async with limit:
                await self._fetch_blob(ref, cred, desc)
            await self._unpack(diff_id, desc)

        await _gather([layer(d, i) for d, i in zip(manifest.layers, config.diff_ids, strict=True)])
        tags = [f"{ref.name}:{ref.tag}"] if ref.tag and not ref.digest else []
        image = Image(
            id=manifest.config.digest,
            repo_tags=tags,
            repo_digests=[f"{ref.name}@{manifest_digest}"],
            manifest_digest=manifest_digest,
            size=manifest.config.size + sum(d.size for d in manifest.layers),
            config=config,
            layers=[
                Layer(i, d.digest, d.media_type, d.size)
                for d, i in zip(manifest.layers, config.diff_ids, strict=True)
            ],
            created_at=self._wall(),
        )
        return await asyncio.to_thread(self.store.record, image)

    async def _fetch_blob(
        self, ref: Reference, cred: Credential | None, desc: mf.Descriptor
    ) -> None:
        if self.store.has_blob(desc.digest):
            return
        writer = self.store.blob_writer(desc.digest, desc.size)
        try:
            await self.registry.fetch_blob(ref, cred, desc.digest, writer.write)
            await asyncio.to_thread(writer.commit)
        except DigestMismatch as e:
            writer.abort()
            raise DigestMismatch(f"{ref}: {e}") from e
        except BaseException:
            writer.abort()
            raise

    async def _unpack(self, diff_id: str, desc: mf.Descriptor) -> None:
        running = self._unpacks.get(diff_id)
        if running is not None:
            await asyncio.shield(running)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unpacks[diff_id] = future
        try:
            await asyncio.to_thread(
                self.store.unpack_layer, diff_id, desc.digest, mf.LAYER_TYPES[desc.media_type]
            )
        except BaseException as e:
            future.set_exception(e)
            future.exception()
            raise
        else:
            future.set_result(None)
        finally:
            del self._unpacks[diff_id]

    async def status(self, ref: str) -> Image | None:
        return await asyncio.to_thread(self.store.find, ref)

    async def list_images(self) -> list[Image]:
        return await asyncio.to_thread(self.store.images)

    async def remove(self, image_id: str) -> None:
        image = await self.status(image_id)
        if image is None:
            raise ImageNotFound(f"no image {image_id!r} on this node")
        await asyncio.to_thread(self.store.remove, image.id)
        if self._running:
            self._prune_due = True
        else:
            await asyncio.to_thread(self.store.prune)

    async def fs_usage(self) -> FsUsage:
        return await asyncio.to_thread(self.store.usage)

    def layer_dirs(self, image: Image) -> list[str]:
        return [str(self.store.layer_path(layer.diff_id)) for layer in image.layers]

    async def mark_used(self, image_id: str) -> None:
        await asyncio.to_thread(self.store.touch, image_id, self._wall())

    async def aclose(self) -> None:
        await self.registry.aclose()


async def _gather(aws: list[Awaitable[None]]) -> None:
    """Run all; on the first failure cancel the rest and wait for them, then raise it (a
    pull must not leave unpacks running into a store the caller may prune)."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


__all__ = ["ImageService", "LocalImageService", "find_by_reference"]
