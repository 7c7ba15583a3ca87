"""kubectl's generic describer, used for every kind without a specific one (RBAC, storage,
batch, policy...): sorted fields as "Title Case: value" lines, nested levels indented.

Pure functions; no I/O, no shared state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.api.kinds import KindInfo
from control.cli.describe._text import (
    _annotations,
    _go,
    _labels,
    _map,
    _s,
    _Writer,
    smart_label,
)


def _unstructured(
    w: _Writer, level: int, content: Mapping[str, Any], skip: str, skips: set[str]
) -> None:
    """kubectl's ``printUnstructuredContent``: sorted fields, smart labels, nested levels."""
    for key in sorted(content):
        path = f"{skip}.{key}"
        if path in skips:
            continue
        value = content[key]
        if isinstance(value, Mapping):
            w.write(level, f"{smart_label(key)}:\n")
            _unstructured(w, level + 1, value, path, skips)
        elif isinstance(value, list):
            w.write(level, f"{smart_label(key)}:\n")
            for item in value:
                if isinstance(item, Mapping):
                    _unstructured(w, level + 1, item, path, skips)
                else:
                    w.write(level + 1, f"{_go(item)}\n")
        else:
            w.write(level, f"{smart_label(key)}:\t{_go(value)}\n")


def _describe_generic(
    w: _Writer, obj: dict[str, Any], related: Mapping[str, Any], now: float, info: KindInfo
) -> None:
    meta = _map(obj, "metadata")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    if info.namespaced:
        w.write(0, f"Namespace:\t{_s(meta, 'namespace')}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    content = {"apiVersion": info.api_version, "kind": info.kind, **obj}
    skips = {
        ".metadata.managedFields",
        ".metadata.name",
        ".metadata.namespace",
        ".metadata.labels",
        ".metadata.annotations",
    }
    _unstructured(w, 0, content, "", skips)
