"""OCI and Docker v2 manifests, indexes and image configs (pure).

Parses what a registry or an archive serves into typed values, refuses what we cannot run
(schema 1 manifests, foreign or unknown layer types), and picks the manifest of this
node's platform out of an index / manifest list.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from typing import Any

from agent.images.errors import NoMatchingPlatform, PullError
from agent.images.reference import is_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

# layer media type -> compression ("" = plain tar)
LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "",
    "application/vnd.oci.image.layer.v1.tar": "",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: list[Descriptor]


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a container runs with."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    diff_ids: list[str] = field(default_factory=list)
    os: str = ""
    architecture: str = ""


def _descriptor(raw: object, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise PullError(f"{where}: descriptor is not an object")
    digest = raw.get("digest")
    size = raw.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise PullError(f"{where}: digest {digest!r} is not sha256:<64 hex>")
    if not isinstance(size, int) or size < 0:
        raise PullError(f"{where}: bad size {size!r}")
    plat = raw.get("platform")
    return Descriptor(
        str(raw.get("mediaType", "")), digest, size, plat if isinstance(plat, dict) else None
    )


def _load(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise PullError(f"{what} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise PullError(f"{what} is not a JSON object")
    return doc


def media_type_of(body: bytes, header_type: str) -> str:
    """The manifest's media type: its own ``mediaType`` field, else the HTTP header's, else
    guessed from its shape (OCI makes the field optional)."""
    doc = _load(body, "manifest")
    own = doc.get("mediaType")
    if isinstance(own, str) and own:
        return own
    if header_type and header_type.split(";")[0].strip() in MANIFEST_TYPES + INDEX_TYPES:
        return header_type.split(";")[0].strip()
    if doc.get("schemaVersion") == 1:
        return "application/vnd.docker.distribution.manifest.v1+json"
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse_manifest(body: bytes, where: str) -> Manifest:
    doc = _load(body, where)
    if doc.get("schemaVersion") != 2:
        raise PullError(f"{where}: schema version {doc.get('schemaVersion')!r} is not supported")
    config = _descriptor(doc.get("config"), f"{where} config")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise PullError(f"{where}: no layers list")
    layers = [_descriptor(item, f"{where} layer {i}") for i, item in enumerate(raw_layers)]
    for i, layer in enumerate(layers):
        if layer.media_type not in LAYER_TYPES:
            raise PullError(f"{where}: layer {i} has unsupported media type {layer.media_type!r}")
    return Manifest(config, layers)


def parse_index(body: bytes, where: str) -> list[Descriptor]:
    doc = _load(body, where)
    raw = doc.get("manifests")
    if not isinstance(raw, list):
        raise PullError(f"{where}: no manifests list")
    return [_descriptor(item, f"{where} manifest {i}") for i, item in enumerate(raw)]


def node_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) of this machine in OCI's words."""
    machine = platform.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", ""),
        "amd64": ("amd64", ""),
        "aarch64": ("arm64", "v8"),
        "arm64": ("arm64", "v8"),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", ""),
        "i386": ("386", ""),
        "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""),
        "riscv64": ("riscv64", ""),
    }.get(machine, (machine, ""))
    return "linux", arch, variant


def select_platform(
    entries: list[Descriptor], where: str, want: tuple[str, str, str] | None = None
) -> Descriptor:
    """The entry for this platform: os and architecture must match; an exact variant beats
    a missing one (arm64's default variant is v8). Attestation manifests (platform
    unknown/unknown) never match."""
    os_, arch, variant = want or node_platform()
    best: Descriptor | None = None
    for entry in entries:
        plat = entry.platform or {}
        if plat.get("os") != os_ or plat.get("architecture") != arch:
            continue
        if entry.media_type and entry.media_type not in MANIFEST_TYPES:
            continue
        got_variant = str(plat.get("variant", ""))
        if got_variant == variant:
            return entry
        if best is None and (not got_variant or not variant):
            best = entry
    if best is None:
        seen = sorted(
            {
                "/".join(str((e.platform or {}).get(k, "")) for k in ("os", "architecture"))
                for e in entries
            }
        )
        raise NoMatchingPlatform(
            f"{where}: no manifest for {os_}/{arch}{'/' + variant if variant else ''}"
            f" (the index has {', '.join(seen) or 'none'})"
        )
    return best


def _strings(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def parse_config(body: bytes, where: str) -> ImageConfig:
    doc = _load(body, where)
    conf = doc.get("config") or {}
    if not isinstance(conf, dict):
        conf = {}
    rootfs = doc.get("rootfs") or {}
    diff_ids = _strings(rootfs.get("diff_ids") if isinstance(rootfs, dict) else None)
    for d in diff_ids:
        if not is_digest(d):
            raise PullError(f"{where}: diff_id {d!r} is not sha256:<64 hex>")
    labels = conf.get("Labels") or {}
    ports = conf.get("ExposedPorts") or {}
    return ImageConfig(
        entrypoint=_strings(conf.get("Entrypoint")),
        cmd=_strings(conf.get("Cmd")),
        env=_strings(conf.get("Env")),
        working_dir=str(conf.get("WorkingDir") or ""),
        user=str(conf.get("User") or ""),
        stop_signal=str(conf.get("StopSignal") or ""),
        exposed_ports=sorted(ports) if isinstance(ports, dict) else [],
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        diff_ids=diff_ids,
        os=str(doc.get("os") or ""),
        architecture=str(doc.get("architecture") or ""),
    )
