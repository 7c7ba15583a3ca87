"""Image garbage collection by disk usage, as the kubelet's image GC manager does.

Every ``period`` (5 min) the image filesystem's usage is read; at or above
``--image-gc-high-threshold`` percent, unused images are removed, least recently used
first, until usage is back under ``--image-gc-low-threshold``. An image is used while any
container the runtime knows (running or exited) was created from it; an image younger
than ``min_age`` (kubelet's --minimum-image-ttl-duration, 2 min) is kept too, so a pull
is not undone before its container starts. Removing an image removes only the layers no
other image shares, so the bytes freed are estimated from the image's size.

Concurrency: one supervised task on the agent's loop; removals go through the image
service, which serialises store changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from agent.images.errors import ImageError
from agent.images.image import FsUsage, Image
from agent.images.service import ImageService
from control.runtime.clock import Clock

log = structlog.get_logger(__name__)

DEFAULT_HIGH = 85
DEFAULT_LOW = 80
DEFAULT_PERIOD = 300.0
DEFAULT_MIN_AGE = 120.0


@dataclass(frozen=True)
class GCPolicy:
    high: int = DEFAULT_HIGH
    low: int = DEFAULT_LOW
    min_age: float = DEFAULT_MIN_AGE


def bytes_to_free(usage: FsUsage, policy: GCPolicy) -> int:
    """0 below the high threshold, else what brings usage down to the low one."""
    if usage.capacity_bytes <= 0:
        return 0
    used = usage.capacity_bytes - usage.available_bytes
    if used * 100 < policy.high * usage.capacity_bytes:
        return 0
    return max(0, used - usage.capacity_bytes * policy.low // 100)


def images_to_remove(
    images: Sequence[Image], in_use: set[str], amount: int, now: float, policy: GCPolicy
) -> list[Image]:
    """Unused images old enough, least recently used first, until ``amount`` is covered."""
    candidates = [
        i for i in images if i.id not in in_use and now - i.created_at >= policy.min_age
    ]
    candidates.sort(key=lambda i: (i.last_used or i.created_at, i.created_at))
    out: list[Image] = []
    freed = 0
    for image in candidates:
        if freed >= amount:
            break
        out.append(image)
        freed += image.size
    return out


class ImageGC:
    def __init__(
        self,
        service: ImageService,
        in_use: Callable[[], Awaitable[set[str]]],
        clock: Clock,
        policy: GCPolicy | None = None,
        period: float = DEFAULT_PERIOD,
    ) -> None:
        self.service = service
        self.in_use = in_use
        self.clock = clock
        self.policy = policy or GCPolicy()
        self.period = period

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.period)
            await self.collect()

    async def collect(self) -> list[str]:
        """One pass; the ids of the images removed."""
        amount = bytes_to_free(await self.service.fs_usage(), self.policy)
        if amount == 0:
            return []
        used = await self.in_use()
        victims = images_to_remove(
            await self.service.list_images(), used, amount, self.clock.now(), self.policy
        )
        removed = []
        for image in victims:
            try:
                await self.service.remove(image.id)
            except ImageError as e:
                log.warning("image GC could not remove an image", image=image.id, error=str(e))
                continue
            log.info("image GC removed an image", image=image.id, tags=image.repo_tags,
                     size=image.size)
            removed.append(image.id)
        if len(removed) < len(victims) or not victims:
            log.warning("image GC could not free enough", wanted=amount, removed=len(removed))
        return removed
