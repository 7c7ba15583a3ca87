"""Image references as Docker and containerd read them (pure).

``nginx`` is ``docker.io/library/nginx:latest``; ``ghcr.io/x/y@sha256:...`` names a digest;
a first path component with a dot or a colon, or ``localhost``, is a registry host. A
reference with neither tag nor digest gets the tag ``latest``; a reference with both keeps
both, and the digest wins when pulling (as containerd does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.images.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$"
)


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path``: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> Reference:
        """The repository at ``digest`` (no tag): what containerStatuses[].imageID shows."""
        return Reference(self.domain, self.path, None, digest)

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest, else the tag."""
        return self.digest or self.tag or "latest"


def is_digest(value: str) -> bool:
    return bool(_DIGEST.match(value))


def parse(text: str) -> Reference:
    """Parse and normalise ``text``; :class:`InvalidReference` says what is wrong."""
    if not text or text != text.strip():
        raise InvalidReference(f"invalid image reference {text!r}: empty or padded")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidReference(
                f"invalid image reference {text!r}: digest {digest!r} is not sha256:<64 hex>"
            )
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid image reference {text!r}: bad tag {tag!r}")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
        if not _DOMAIN.match(domain):
            raise InvalidReference(f"invalid image reference {text!r}: bad registry {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise InvalidReference(
                f"invalid image reference {text!r}: repository component {component!r} must"
                " be lower-case letters, digits and separators"
            )
    if len(path) > 255:
        raise InvalidReference(f"invalid image reference {text!r}: repository name too long")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)


def defaults_to_always_pull(text: str) -> bool:
    """Kubernetes' imagePullPolicy default: Always for ``:latest`` or no tag, unless a
    digest pins the image; IfNotPresent otherwise."""
    ref = parse(text)
    return ref.digest is None and ref.tag == "latest"
