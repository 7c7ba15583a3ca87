"""The kubelet's image manager: make sure a container's image is on the node before the
container is created, as Kubernetes' ``EnsureImageExists`` does.

- ``imagePullPolicy`` (defaulted by the apiserver; ``Always`` for ``:latest`` or no tag,
  else ``IfNotPresent`` when missing): ``Never`` uses the local image or fails with
  ``ErrImageNeverPull``; ``IfNotPresent`` pulls only when missing; ``Always`` resolves the
  tag again on every container start (the layers already on the node are not fetched again).
- Credentials: the pod's ``imagePullSecrets`` (``kubernetes.io/dockerconfigjson`` and
  ``dockercfg``) read from the API at pull time; a Secret that is missing or malformed is
  logged and skipped, as the kubelet does, and the pull goes on with the others.
- A failed pull is ``ErrImagePull`` with the registry's reason; the next attempt waits out
  a per-(pod, image) backoff (10 s doubling to 5 min), showing ``ImagePullBackOff``
  meanwhile. An unparsable name is ``InvalidImageName``.
- Events on the pod, with the container's fieldPath: ``Pulling``, ``Pulled`` (size and
  time, or "already present"), ``Failed`` (+ ``ErrImageNeverPull``), ``BackOff``.

Concurrency: called from pod workers (one call per pod at a time); pulls of one image by
several pods are deduplicated by the image service. The backoff table is touched only on
the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent.images.auth import Keyring, parse_secret
from agent.images.errors import ImageError, InvalidReference
from agent.images.image import Image
from agent.images.reference import defaults_to_always_pull, parse
from agent.images.service import ImageService
from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.fetch import Fetcher
from agent.kubelet.status import container_field_path
from control.api.pb import core_pb2
from control.runtime.events import Recorder

log = structlog.get_logger(__name__)

ERR_IMAGE_PULL = "ErrImagePull"
IMAGE_PULL_BACKOFF = "ImagePullBackOff"
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
INVALID_IMAGE_NAME = "InvalidImageName"


class PullFailure(Exception):
    """The container waits with ``reason``/``message``; retry after ``retry_after`` s."""

    def __init__(self, reason: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class EnsuredImage:
    image: Image
    image_ref: str  # containerStatuses[].imageID: registry/repo@sha256:... (or the id)


def image_ref_for(image: Image, requested: str) -> str:
    """The repo digest of the repository the pod named, else any repo digest, else the
    image id (an imported image has no registry digest)."""
    try:
        name = parse(requested).name
    except InvalidReference:
        name = ""
    for d in image.repo_digests:
        if d.split("@", 1)[0] == name:
            return d
    return image.repo_digests[0] if image.repo_digests else image.id


def pull_policy(container: core_pb2.Container) -> str:
    if container.image_pull_policy:
        return container.image_pull_policy
    return "Always" if defaults_to_always_pull(container.image) else "IfNotPresent"


class ImagePuller:
    def __init__(
        self,
        service: ImageService,
        backoff: CrashLoopBackoff,
        *,
        fetch: Fetcher | None = None,
        recorder: Recorder | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.backoff = backoff
        self.fetch = fetch
        self.recorder = recorder
        self._monotonic = monotonic
        # when each (pod uid, image) last failed: the backoff counts from there
        self._failed_at: dict[tuple[str, str], float] = {}

    def _event(self, pod: core_pb2.Pod, c: core_pb2.Container, kind: str, reason: str,
               message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(pod, kind, reason, message, field_path=container_field_path(pod, c.name))

    async def ensure(self, pod: core_pb2.Pod, c: core_pb2.Container) -> EnsuredImage:
        name = c.image
        try:
            parse(name)
        except InvalidReference as e:
            msg = f'Failed to apply default image tag "{name}": {e}'
            self._event(pod, c, "Warning", INVALID_IMAGE_NAME, msg)
            raise PullFailure(INVALID_IMAGE_NAME, msg, self.backoff.initial) from e
        policy = pull_policy(c)
        present = await self.service.status(name)
        if present is not None and policy != "Always":
            self._event(pod, c, "Normal", "Pulled",
                        f'Container image "{name}" already present on machine')
            return EnsuredImage(present, image_ref_for(present, name))
        if policy == "Never":
            msg = f'Container image "{name}" is not present with pull policy of Never'
            self._event(pod, c, "Warning", ERR_IMAGE_NEVER_PULL, msg)
            raise PullFailure(ERR_IMAGE_NEVER_PULL, msg, self.backoff.initial)
        key = (pod.metadata.uid, f"image:{name}")
        now = self.backoff.clock.now()
        remaining = self.backoff.remaining(key, self._failed_at.get(key, now))
        if remaining > 0:
            msg = f'Back-off pulling image "{name}"'
            self._event(pod, c, "Normal", "BackOff", msg)
            raise PullFailure(IMAGE_PULL_BACKOFF, msg, remaining)
        self._event(pod, c, "Normal", "Pulling", f'Pulling image "{name}"')
        started = self._monotonic()
        try:
            image = await self.service.pull(name, (await self._keyring(pod)).lookup(parse(name)))
        except ImageError as e:
            self.backoff.next(key, now)
            self._failed_at[key] = now
            msg = f'Failed to pull image "{name}": {e}'
            log.warning("image pull failed", pod=pod.metadata.name, image=name, error=str(e))
            self._event(pod, c, "Warning", "Failed", msg)
            self._event(pod, c, "Warning", "Failed", f"Error: {ERR_IMAGE_PULL}")
            raise PullFailure(ERR_IMAGE_PULL, str(e), self.backoff.delay(key)) from e
        self._failed_at.pop(key, None)
        took = self._monotonic() - started
        self._event(pod, c, "Normal", "Pulled",
                    f'Successfully pulled image "{name}" in {_seconds(took)}. '
                    f"Image size: {image.size} bytes.")
        return EnsuredImage(image, image_ref_for(image, name))

    async def _keyring(self, pod: core_pb2.Pod) -> Keyring:
        if self.fetch is None or not pod.spec.image_pull_secrets:
            return Keyring()
        entries = []
        for ref in pod.spec.image_pull_secrets:
            try:
                secret = await self.fetch(core_pb2.Secret, pod.metadata.namespace, ref.name)
            except Exception as e:  # kubelet: a pull secret it cannot read is skipped
                log.warning("cannot read image pull secret", pod=pod.metadata.name,
                            secret=ref.name, error=str(e))
                continue
            if secret is None:
                log.warning("image pull secret not found", pod=pod.metadata.name,
                            secret=ref.name)
                continue
            try:
                entries.extend(parse_secret(secret.type, dict(secret.data), f"secret {ref.name!r}"))
            except ValueError as e:
                log.warning("bad image pull secret", pod=pod.metadata.name, error=str(e))
        return Keyring(entries)

    def forget_pod(self, uid: str) -> None:
        self.backoff.forget_pod(uid)
        for key in [k for k in self._failed_at if k[0] == uid]:
            del self._failed_at[key]


def _seconds(value: float) -> str:
    return f"{value:.3f}s" if value < 1 else f"{value:.1f}s"
