"""Reading manifests for ``apply``/``create``/``delete``/``diff -f``: files, directories, stdin.

Owns the whole path from ``-f`` arguments to checked objects, and does it all before any
verb talks to the server, so that a bad file writes nothing:

1. :func:`read_documents` reads every source (a file, a directory's ``.yaml``/``.yml``/
   ``.json`` files in name order, ``-`` for stdin) and parses multi-document YAML (KYAML's
   flow style is plain YAML) or a stream of JSON values; a ``kind: List`` is expanded into
   its items. Parse errors name the file, the document number and the line.
2. :func:`check_documents` resolves each document's ``apiVersion``/``kind``, converts it
   into the kind's message (``convert.from_dict``: unknown fields and wrong types are
   refused with their paths), checks the name, and settles the namespace as kubectl does.
   Every problem of every document is collected and raised as one :class:`CliError`.

Pure apart from reading the sources.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from google.protobuf.message import Message

from control.api import convert, kinds, names
from control.api import errors as api_errors
from control.cli.errors import CliError

MANIFEST_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class Document:
    """One parsed document: where it came from (``source``, 1-based ``number``) and its data."""

    source: str
    number: int
    data: Any

    @property
    def where(self) -> str:
        return f"{self.source}: document {self.number}"


@dataclass
class Manifest:
    """A checked document: its kind, the message, and the normalized Kubernetes JSON."""

    doc: Document
    info: kinds.KindInfo
    obj: Message
    data: dict[str, Any]  # convert.to_dict(obj): canonical form, what apply compares

    @property
    def name(self) -> str:
        return str(self.obj.metadata.name)  # type: ignore[attr-defined]

    @property
    def namespace(self) -> str:
        return str(self.obj.metadata.namespace)  # type: ignore[attr-defined]


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 timestamps: ``2024-01-01`` stays a string, as Kubernetes
    (which decodes into typed fields) reads it; datetime objects would not be JSON."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expand_lists(doc: Document) -> Iterator[Document]:
    # kubectl accepts a List (kind: List or any *List) and applies its items one by one.
    data = doc.data
    if (
        isinstance(data, dict)
        and isinstance(data.get("kind"), str)
        and data["kind"].endswith("List")
        and isinstance(data.get("items"), list)
    ):
        for i, item in enumerate(data["items"]):
            yield Document(f"{doc.source}: document {doc.number} items[{i}]", 0, item)
        return
    yield doc


def _parse_json_stream(text: str, source: str) -> list[Document]:
    decoder = json.JSONDecoder()
    docs: list[Document] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return docs
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise CliError(
                f"error parsing {source}: document {len(docs) + 1}: invalid JSON: "
                f"{e.msg} (line {e.lineno}, column {e.colno})"
            ) from None
        docs.append(Document(source, len(docs) + 1, value))


def _parse_yaml_stream(text: str, source: str) -> list[Document]:
    docs: list[Document] = []
    loader = _Loader(text)
    number = 0  # documents fully or partly read so far
    reading = False  # True while composing document ``number``
    try:
        while loader.check_data():
            number += 1
            reading = True
            value = loader.get_data()
            reading = False
            if value is not None:  # empty documents ("---" twice) are skipped, as kubectl does
                docs.append(Document(source, number, value))
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        detail = f"{context}: {problem}" if context else problem
        raise CliError(
            f"error parsing {source}: document {number if reading else number + 1}: "
            f"invalid YAML: {detail}{where}"
        ) from None
    finally:
        loader.dispose()
    return docs


def parse_text(text: str, source: str) -> list[Document]:
    """Every non-empty document of ``text`` (YAML or a JSON stream), Lists expanded."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") and not stripped.startswith("{{"):
        try:
            raw = _parse_json_stream(text, source)
        except CliError:
            # A YAML flow mapping (KYAML) also starts with "{" but need not be JSON.
            raw = _parse_yaml_stream(text, source)
    else:
        raw = _parse_yaml_stream(text, source)
    out: list[Document] = []
    for doc in raw:
        out.extend(_expand_lists(doc))
    return out


def _files_of(path: Path, recursive: bool) -> list[Path]:
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.is_dir():
            if recursive:
                found.extend(_files_of(child, recursive))
        elif child.suffix in MANIFEST_SUFFIXES:
            found.append(child)
    return found


def read_documents(
    filenames: list[str], *, recursive: bool = False, stdin: TextIO | None = None
) -> list[Document]:
    """Read and parse every ``-f`` source; raises :class:`CliError` on the first bad one."""
    if not filenames:
        raise CliError("must specify one of -f and -k")
    docs: list[Document] = []
    for name in filenames:
        if name == "-":
            text = (stdin or sys.stdin).read()
            docs.extend(parse_text(text, "STDIN"))
            continue
        path = Path(name)
        if not path.exists():
            raise CliError(f'the path "{name}" does not exist')
        files = _files_of(path, recursive) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise CliError(f'no manifests (*.yaml, *.yml, *.json) found in directory "{name}"')
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise CliError(f"cannot read {f}: {e}") from None
            docs.extend(parse_text(text, str(f)))
    if not docs:
        raise CliError("no objects passed to apply")
    return docs


def _where(doc: Document) -> str:
    return doc.where if doc.number else doc.source


def check_document(doc: Document, namespace: str, explicit_namespace: bool) -> Manifest:
    """Resolve the kind, convert into its message, check the name and settle the namespace.

    A namespaced object without ``metadata.namespace`` gets ``namespace``; a different
    namespace in the manifest is an error when ``-n`` was given explicitly (kubectl's rule).
    Raises :class:`CliError` naming the document and every failing field.
    """
    where = _where(doc)
    data = doc.data
    if not isinstance(data, dict):
        raise CliError(f"{where}: expected an object (a mapping), got {type(data).__name__}")
    problems = [f"{key} not set" for key in ("apiVersion", "kind") if not data.get(key)]
    if problems:
        raise CliError(f"{where}: error validating data: [{', '.join(problems)}]")
    api_version, kind = data["apiVersion"], data["kind"]
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise CliError(f"{where}: apiVersion and kind must be strings")
    try:
        info = kinds.by_kind(kind, api_version)
    except KeyError:
        raise CliError(
            f'{where}: no matches for kind "{kind}" in version "{api_version}"'
        ) from None
    obj = info.message()
    try:
        convert.from_dict(data, obj)
    except api_errors.Invalid as e:
        name = (
            data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
        )
        label = f"{kind} {name!r}" if isinstance(name, str) and name else kind
        details = "; ".join(str(fe) for fe in e.errors) or e.message
        raise CliError(f"{where} ({label}): {details}") from None
    meta: Any = obj.metadata  # type: ignore[attr-defined]
    if not meta.name and not meta.generate_name:
        raise CliError(f"{where} ({kind}): metadata.name: Required value: name is required")
    if meta.name:
        # The kind's own rule, as the server applies it (RBAC names may hold ':').
        bad = names.name_validator(kind)(meta.name, False)
        if bad:
            raise CliError(
                f"{where} ({kind}): metadata.name: Invalid value: {meta.name!r}: {bad[0]}"
            )
    if info.namespaced:
        if not meta.namespace:
            meta.namespace = namespace
        elif explicit_namespace and meta.namespace != namespace:
            raise CliError(
                f"{where} ({kind} {meta.name!r}): the namespace from the provided object "
                f'"{meta.namespace}" does not match the namespace "{namespace}". '
                f"You must pass '--namespace={meta.namespace}' to perform this operation."
            )
    else:
        meta.namespace = ""  # kubectl ignores a namespace on a cluster-scoped object
    return Manifest(doc=doc, info=info, obj=obj, data=convert.to_dict(obj))


def check_documents(
    docs: list[Document], namespace: str, explicit_namespace: bool
) -> list[Manifest]:
    """:func:`check_document` for all, collecting every document's error before raising."""
    out: list[Manifest] = []
    problems: list[str] = []
    for doc in docs:
        try:
            out.append(check_document(doc, namespace, explicit_namespace))
        except CliError as e:
            problems.append(e.message)
    if problems:
        raise CliError(
            "\n".join(problems)
            if len(problems) == 1
            else "\n".join(["invalid manifests, nothing was changed:", *problems])
        )
    seen: dict[tuple[str, str, str], Document] = {}
    for m in out:
        if not m.name:
            continue
        key = (m.info.plural, m.namespace, m.name)
        if key in seen:
            raise CliError(
                f"{_where(m.doc)}: {m.info.kind} {m.name!r} is also defined in {_where(seen[key])}"
            )
        seen[key] = m.doc
    return out


def load(
    filenames: list[str],
    namespace: str,
    explicit_namespace: bool,
    *,
    recursive: bool = False,
    stdin: TextIO | None = None,
) -> list[Manifest]:
    """Read, parse and check every manifest (nothing is sent anywhere)."""
    docs = read_documents(filenames, recursive=recursive, stdin=stdin)
    return check_documents(docs, namespace, explicit_namespace)


__all__ = [
    "Document",
    "Manifest",
    "check_document",
    "check_documents",
    "load",
    "parse_text",
    "read_documents",
]
