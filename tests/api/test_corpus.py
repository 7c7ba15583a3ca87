"""Compatibility corpus: Kubernetes' own example manifests must convert to our messages.

Walks every document of /work/shared/k8s-examples (Kubernetes' website examples, see its
README.md), and for each document whose kind the registry (control/api/kinds.py) serves,
converts it with control.api.convert.from_dict. At least 90% of those must be accepted; a
refusal must say why by field path (``spec.ipFamily: unknown field``) or name the document
problem (unparseable YAML, wrong apiVersion, no metadata.name). Files that do not parse
count as refused. The test is skipped when the corpus is not present.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.api import convert, kinds
from control.api.errors import Invalid

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "k8s-examples"
MIN_ACCEPTED = 0.90


@dataclass(frozen=True)
class Refusal:
    where: str
    reason: str
    explained: bool  # the reason names a field path or the document problem


def _files() -> list[Path]:
    index = CORPUS / "INDEX.tsv"
    if index.is_file():
        with index.open(newline="") as f:
            paths = {row["path"] for row in csv.DictReader(f, delimiter="\t")}
        return [CORPUS / p for p in sorted(paths)]
    return sorted(CORPUS.rglob("*.yaml"))


def _check(doc: dict[str, Any], where: str) -> Refusal | None:
    info = kinds.by_kind(doc["kind"])
    if doc.get("apiVersion") != info.api_version:
        return Refusal(
            where,
            f"apiVersion {doc.get('apiVersion')!r} of {info.kind} is not served "
            f"(we serve {info.api_version})",
            True,
        )
    try:
        msg = convert.from_dict(doc, info.message())
    except Invalid as e:
        explained = bool(e.errors) and all(err.path for err in e.errors)
        return Refusal(where, str(e), explained)
    except Exception as e:  # a crash in the converter is a failure, not a refusal
        return Refusal(where, f"converter raised {type(e).__name__}: {e}", False)
    meta = msg.metadata  # type: ignore[attr-defined]
    if not meta.name and not meta.generate_name:
        return Refusal(where, "metadata.name: Required value (no name or generateName)", True)
    return None


def _walk() -> tuple[list[str], list[Refusal]]:
    accepted: list[str] = []
    refused: list[Refusal] = []
    for path in _files():
        rel = str(path.relative_to(CORPUS))
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            refused.append(Refusal(rel, f"unparseable YAML: {first}", True))
            continue
        for i, doc in enumerate(docs):
            if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
                continue
            try:
                kinds.by_kind(doc["kind"])
            except KeyError:
                continue  # a kind we do not serve: not part of this measure
            where = f"{rel}#{i} ({doc['kind']})"
            refusal = _check(doc, where)
            if refusal is None:
                accepted.append(where)
            else:
                refused.append(refusal)
    return accepted, refused


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not present at {CORPUS}")
def test_kubernetes_examples_convert() -> None:
    accepted, refused = _walk()
    total = len(accepted) + len(refused)
    assert total > 0, "no documents of a registered kind found in the corpus"
    share = len(accepted) / total
    report = "\n".join(
        f"  {'' if r.explained else '[UNEXPLAINED] '}{r.where}: {r.reason}" for r in refused
    )
    summary = f"accepted {len(accepted)}/{total} ({share:.1%}); refused:\n{report}"
    assert share >= MIN_ACCEPTED, summary
    assert all(r.explained for r in refused), summary
    print(summary)
