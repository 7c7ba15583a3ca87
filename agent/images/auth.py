"""Registry credentials from imagePullSecrets, matched to an image as the kubelet does (pure).

A ``kubernetes.io/dockerconfigjson`` Secret holds ``.dockerconfigjson`` =
``{"auths": {KEY: ENTRY}}``; the older ``kubernetes.io/dockercfg`` holds ``.dockercfg`` =
``{KEY: ENTRY}``. ENTRY has ``username``/``password`` or ``auth`` (base64 of
``user:password``). KEY is a registry host, optionally with a scheme, a path prefix, and
``*`` globs in host labels (``*.example.com``); ``https://index.docker.io/v1/`` means
Docker Hub. Every entry whose host matches the image's registry and whose path is a prefix
of the image's repository applies; the most specific (longest) key comes first, and the
puller tries them in turn (the kubelet's keyring semantics).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.images.reference import DEFAULT_DOMAIN, LEGACY_DOMAINS, Reference

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"


@dataclass(frozen=True)
class Credential:
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password into a log
        return f"Credential(username={self.username!r})"


@dataclass(frozen=True)
class Entry:
    host: str
    path: str
    credential: Credential


class Keyring:
    """Credentials by registry key; :meth:`lookup` gives those that apply to an image."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries = list(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ref: Reference) -> list[Credential]:
        found: list[tuple[int, Credential]] = []
        for entry in self._entries:
            if not _host_matches(entry.host, ref.domain):
                continue
            if entry.path and not (
                ref.path == entry.path or ref.path.startswith(entry.path.rstrip("/") + "/")
            ):
                continue
            found.append((len(entry.host) + len(entry.path), entry.credential))
        found.sort(key=lambda item: -item[0])
        out: list[Credential] = []
        for _, cred in found:
            if cred not in out:
                out.append(cred)
        return out


def _normalise_key(key: str) -> tuple[str, str]:
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
    host, _, path = key.partition("/")
    # Docker's config names Hub by its old API URL; the path there is the API version.
    if host in LEGACY_DOMAINS or host == DEFAULT_DOMAIN:
        return DEFAULT_DOMAIN, "" if path.startswith("v1") or path.startswith("v2") else path
    return host.lower(), path.strip("/")


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if "*" not in pattern:
        return False
    want, got = pattern.split("."), host.split(".")
    return len(want) == len(got) and all(
        fnmatch.fnmatchcase(g, w) for w, g in zip(want, got, strict=True)
    )


def _entry(key: str, value: object, where: str) -> Entry:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: entry {key!r} is not an object")
    username = value.get("username") or ""
    password = value.get("password") or ""
    auth = value.get("auth")
    if auth:
        try:
            decoded = base64.b64decode(str(auth), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ValueError(f"{where}: entry {key!r}: auth is not base64 of user:password") from e
        if ":" not in decoded:
            raise ValueError(f"{where}: entry {key!r}: auth does not hold user:password")
        username, password = decoded.split(":", 1)
    host, path = _normalise_key(key)
    return Entry(host, path, Credential(str(username), str(password)))


def parse_secret(secret_type: str, data: Mapping[str, bytes], where: str) -> list[Entry]:
    """The entries of one pull Secret; ``ValueError`` names the Secret (``where``) and the
    fault. A Secret of another type gives nothing (the kubelet ignores it too)."""
    if secret_type == DOCKER_CONFIG_JSON:
        raw = data.get(".dockerconfigjson")
        if raw is None:
            raise ValueError(f"{where}: no .dockerconfigjson key")
        doc = _json(raw, where)
        auths = doc.get("auths") if isinstance(doc, dict) else None
        if not isinstance(auths, dict):
            raise ValueError(f"{where}: .dockerconfigjson has no auths object")
        return [_entry(k, v, where) for k, v in auths.items()]
    if secret_type == DOCKER_CFG:
        raw = data.get(".dockercfg")
        if raw is None:
            raise ValueError(f"{where}: no .dockercfg key")
        doc = _json(raw, where)
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: .dockercfg is not an object")
        return [_entry(k, v, where) for k, v in doc.items()]
    return []


def _json(raw: bytes, where: str) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: not JSON: {e}") from e


def keyring_from_secrets(secrets: Iterable[tuple[str, str, Mapping[str, bytes]]]) -> Keyring:
    """A keyring from ``(name, type, data)`` of each pull Secret, in the pod's order."""
    entries: list[Entry] = []
    for name, secret_type, data in secrets:
        entries.extend(parse_secret(secret_type, data, f"secret {name!r}"))
    return Keyring(entries)
