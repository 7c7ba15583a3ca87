"""The image service's errors, as one hierarchy.

    ImageError                  anything the image service refuses or fails at
    ├── InvalidReference        not an image reference (``nginx:1.27``, ``repo@sha256:...``)
    ├── PullError               a pull failed; ``reason`` is a short word for Events
    │   ├── NotFound            the registry has no such repository, tag or digest
    │   ├── Unauthorized        the registry refused the credentials we had (or none)
    │   ├── DigestMismatch      content did not hash to the digest that named it
    │   └── NoMatchingPlatform  an index without a manifest for this node's platform
    ├── ImageNotFound           no such image in the local store
    ├── ImageInUse              removal refused: a container uses the image
    └── BadArchive              an import archive (docker save, OCI layout) is malformed

Every message names what was asked for and why it failed, so the kubelet can put it in an
Event and the CLI can print it as is.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base of every image service error."""


class InvalidReference(ImageError):
    pass


class PullError(ImageError):
    reason = "PullFailed"


class NotFound(PullError):
    reason = "NotFound"


class Unauthorized(PullError):
    reason = "Unauthorized"


class DigestMismatch(PullError):
    reason = "DigestMismatch"


class NoMatchingPlatform(PullError):
    reason = "NoMatchingPlatform"


class ImageNotFound(ImageError):
    pass


class ImageInUse(ImageError):
    pass


class BadArchive(ImageError):
    pass
