"""`--encryption-provider-config`: read and check an EncryptionConfiguration file.

The format is Kubernetes' (``apiVersion: apiserver.config.k8s.io/v1``, ``kind:
EncryptionConfiguration``): a list of entries, each naming ``resources`` (``secrets``,
``deployments.apps``, ``*.`` for every core resource, ``*.apps`` for a group, ``*.*`` for
all) and an ordered list of ``providers``, one type each: ``aescbc`` and ``aesgcm`` with
named base64 ``keys``, ``identity: {}``. The first provider (and its first key) writes;
all of them read. ``secretbox`` needs XSalsa20-Poly1305, which no library of this build
provides, and ``kms`` needs a KMS plugin: both are refused, saying so.

Every problem of a file is reported at once, each as ``FILE: FIELD: why`` (Kubernetes'
field paths), and never with a key's secret. Pure functions; ``load`` reads the file.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
# provider type -> accepted key lengths in bytes (Kubernetes': AES-128/192/256)
KEY_LENGTHS: dict[str, tuple[int, ...]] = {"aescbc": (16, 24, 32), "aesgcm": (16, 24, 32)}
REFUSED = {
    "secretbox": "XSalsa20-Poly1305 is not available in this build (no installed library "
                 "provides it); use aesgcm or aescbc",
    "kms": "KMS plugins are not supported by this server; use aesgcm or aescbc",
}
KNOWN_PROVIDERS = (*KEY_LENGTHS, "identity", *REFUSED)


class ConfigError(ValueError):
    """The file cannot be used; ``problems`` lists each ``FIELD: why``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        if len(problems) == 1:
            super().__init__(f"{source}: {problems[0]}")
        else:
            super().__init__(f"{source}: {len(problems)} problems:"
                             + "".join(f"\n  {p}" for p in problems))


@dataclass(frozen=True)
class Key:
    name: str
    secret: bytes = field(repr=False)  # never printed


@dataclass(frozen=True)
class Provider:
    type: str  # "aescbc", "aesgcm" or "identity"
    keys: tuple[Key, ...] = ()


@dataclass(frozen=True)
class ResourceRule:
    resources: tuple[str, ...]  # as written: "secrets", "deployments.apps", "*.", "*.*"
    providers: tuple[Provider, ...]


@dataclass(frozen=True)
class EncryptionConfig:
    rules: tuple[ResourceRule, ...]


def load(path: str | Path) -> EncryptionConfig:
    """Read and check ``path``; :class:`ConfigError` names the file, the field and why."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(source, [f"cannot read the file: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, ["not a text (YAML) file"]) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(source, [f"not valid YAML: {e}"]) from None
    return parse(doc, source)


def parse(doc: Any, source: str = "<config>") -> EncryptionConfig:
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        raise ConfigError(source, ["expected a YAML mapping (an EncryptionConfiguration)"])
    if doc.get("kind") != KIND:
        problems.append(f"kind: expected {KIND!r}, got {doc.get('kind')!r}")
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: expected {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    _unknown(doc, {"kind", "apiVersion", "resources"}, "", problems)
    entries = doc.get("resources")
    rules: list[ResourceRule] = []
    if not isinstance(entries, list) or not entries:
        problems.append("resources: required: a list of at least one entry")
        entries = []
    seen: dict[str, str] = {}  # resource -> the field that named it first
    for i, entry in enumerate(entries):
        where = f"resources[{i}]"
        if not _mapping(entry, {"resources", "providers"}, where, problems):
            continue
        names = _resources(entry.get("resources"), where, seen, problems)
        providers = _providers(entry.get("providers"), where, problems)
        rules.append(ResourceRule(tuple(names), tuple(providers)))
    if problems:
        raise ConfigError(source, problems)
    return EncryptionConfig(tuple(rules))


def _unknown(value: Mapping[Any, Any], known: set[str], where: str,
             problems: list[str]) -> None:
    problems.extend(f"{where}{extra}: unknown field" for extra in sorted(set(value) - known,
                                                                         key=str))


def _mapping(value: Any, known: set[str], where: str, problems: list[str]) -> bool:
    """Whether ``value`` is a mapping (unknown fields reported, not fatal)."""
    if not isinstance(value, Mapping):
        problems.append(f"{where}: expected a mapping with {' and '.join(sorted(known))}")
        return False
    _unknown(value, known, f"{where}.", problems)
    return True


def _resources(value: Any, where: str, seen: dict[str, str], problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not value:
        problems.append(f"{where}.resources: required: a list of at least one resource")
        return []
    out = []
    for j, name in enumerate(value):
        at = f"{where}.resources[{j}]"
        if not isinstance(name, str) or not name:
            problems.append(f"{at}: expected a resource name such as secrets or "
                            "deployments.apps")
            continue
        if name == "*":
            problems.append(f"{at}: '*' is not allowed: use '*.' for every core resource or "
                            "'*.*' for every resource")
            continue
        if name != name.lower():
            problems.append(f"{at}: {name!r}: resource names are lowercase")
            continue
        resource, _, group = name.partition(".")
        if group == "*" and resource != "*":
            problems.append(f"{at}: {name!r}: a wildcard group needs a wildcard resource "
                            "('*.*')")
            continue
        if name in seen:
            problems.append(f"{at}: {name!r} is already named at {seen[name]}")
            continue
        masking = _masked_by(resource, group, seen)
        if masking is not None:
            problems.append(f"{at}: {name!r} is masked by the earlier rule {masking!r} at "
                            f"{seen[masking]} (the first matching rule wins)")
            continue
        seen[name] = at
        out.append(name)
    return out


def _masked_by(resource: str, group: str, seen: Mapping[str, str]) -> str | None:
    if "*.*" in seen:
        return "*.*"
    if resource != "*" and f"*.{group}" in seen:
        return f"*.{group}"
    return None


def _providers(value: Any, where: str, problems: list[str]) -> list[Provider]:
    if not isinstance(value, list) or not value:
        problems.append(f"{where}.providers: required: a list of at least one provider "
                        "(aescbc, aesgcm or identity)")
        return []
    out = []
    for j, element in enumerate(value):
        at = f"{where}.providers[{j}]"
        if not isinstance(element, Mapping) or not element:
            problems.append(f"{at}: expected one provider: aescbc, aesgcm or identity")
            continue
        if len(element) > 1:
            problems.append(f"{at}: more than one provider ({', '.join(sorted(element))}) in "
                            "one element: give each its own list element")
            continue
        ((kind, body),) = element.items()
        if kind not in KNOWN_PROVIDERS:
            problems.append(f"{at}.{kind}: unknown provider type (known: aescbc, aesgcm, "
                            "identity)")
        elif kind in REFUSED:
            problems.append(f"{at}.{kind}: not supported: {REFUSED[kind]}")
        elif kind == "identity":
            if body not in (None, {}):
                problems.append(f"{at}.identity: takes no settings (write 'identity: {{}}')")
            else:
                out.append(Provider("identity"))
        else:
            keys = _keys(body, f"{at}.{kind}", KEY_LENGTHS[kind], problems)
            if keys:
                out.append(Provider(kind, tuple(keys)))
    return out


def _keys(body: Any, where: str, lengths: tuple[int, ...], problems: list[str]) -> list[Key]:
    keys = body.get("keys") if isinstance(body, Mapping) else None
    if isinstance(body, Mapping):
        _unknown(body, {"keys"}, f"{where}.", problems)
    if not isinstance(keys, list) or not keys:
        problems.append(f"{where}.keys: required: a list of at least one key "
                        "(name and base64 secret)")
        return []
    out: list[Key] = []
    names: set[str] = set()
    for k, entry in enumerate(keys):
        at = f"{where}.keys[{k}]"
        if not _mapping(entry, {"name", "secret"}, at, problems):
            continue
        name, secret = entry.get("name"), entry.get("secret")
        ok = True
        if not isinstance(name, str) or not name:
            problems.append(f"{at}.name: required")
            ok = False
        elif ":" in name:
            # the name is part of the stored prefix "k8s:enc:<provider>:v1:<name>:"
            problems.append(f"{at}.name: {name!r}: must not contain ':'")
            ok = False
        elif name in names:
            problems.append(f"{at}.name: {name!r}: duplicate key name in this provider")
            ok = False
        if not isinstance(secret, str) or not secret:
            problems.append(f"{at}.secret: required: base64 of a {_lengths(lengths)}-byte key")
            continue
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{at}.secret: not valid base64 (the secret is not shown)")
            continue
        if len(raw) not in lengths:
            problems.append(f"{at}.secret: the key is {len(raw)} bytes, expected "
                            f"{_lengths(lengths)} (e.g. head -c 32 /dev/urandom | base64)")
            continue
        if ok and isinstance(name, str):
            names.add(name)
            out.append(Key(name, raw))
    return out


def _lengths(lengths: tuple[int, ...]) -> str:
    return ", ".join(map(str, lengths[:-1])) + f" or {lengths[-1]}" if len(lengths) > 1 \
        else str(lengths[0])


__all__ = ["ConfigError", "EncryptionConfig", "Key", "Provider", "ResourceRule", "load",
           "parse"]
