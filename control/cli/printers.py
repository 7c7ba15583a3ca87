"""Output formatting for the ``flotilla`` CLI: tables, json/yaml, name and jsonpath output.

This module owns how ``get``-style verbs render API objects, following kubectl's habits:

- ``-o`` values: "" (table), "wide", "json", "yaml", "name", "jsonpath=TEMPLATE",
  "jsonpath-as-json=TEMPLATE", "custom-columns=HEADER:.path,...";
- kubectl's List wrapping: a collection (or several named objects) prints as
  ``{"apiVersion": "v1", "items": [...], "kind": "List", "metadata": {"resourceVersion": ""}}``
  in json/yaml/jsonpath, a single named object as itself;
- table layout: Go's ``text/tabwriter`` as kubectl configures it (left-aligned cells, three
  spaces of padding, minimum cell width 6, last column unpadded, widths remembered across a
  watch);
- :class:`WatchPrinter` for ``get --watch``: one line (or document) per event, flushed.

Per-kind columns live in :mod:`control.cli.columns`, JSONPath in :mod:`control.cli.jsonpath`.
Everything is a pure function except the ``print_*`` helpers and :class:`WatchPrinter`,
which only write to the ``TextIO`` they are given.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from google.protobuf.message import Message

from control.api import convert, kinds
from control.api.kinds import KindInfo
from control.cli import columns

if TYPE_CHECKING:
    import yaml

    from control.cli import jsonpath

__all__ = [
    "OUTPUT_FORMATS",
    "OutputError",
    "OutputFormat",
    "WatchPrinter",
    "dump_json",
    "dump_yaml",
    "format_table",
    "list_dict",
    "object_dict",
    "parse_output",
    "print_name",
    "print_objects",
    "table_rows",
    "tabwrite",
    "validate_output",
]

OUTPUT_FORMATS = (
    "custom-columns",
    "json",
    "jsonpath",
    "jsonpath-as-json",
    "name",
    "wide",
    "yaml",
)

# kubectl's tabwriter settings (cli-runtime/pkg/printers/tabwriter.go).
_MIN_WIDTH = 6
_PADDING = 3


class OutputError(ValueError):
    """A bad ``-o`` value or template; the message is ready to show after "error: "."""


@dataclass(frozen=True)
class OutputFormat:
    """A parsed ``-o`` value: ``kind`` is "table", "wide", "json", "yaml", "name",
    "jsonpath", "jsonpath-as-json" or "custom-columns"; ``arg`` the template, if any."""

    kind: str
    arg: str = ""
    template: jsonpath.Template | None = None
    # custom-columns: (header, parsed template) per column
    custom: tuple[tuple[str, jsonpath.Template], ...] = ()


def _parse_custom_columns(spec: str) -> tuple[tuple[str, jsonpath.Template], ...]:
    from control.cli import jsonpath

    cols: list[tuple[str, jsonpath.Template]] = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header or not path:
            raise OutputError(
                f"unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>"
            )
        # kubectl's RelaxedJSONPathExpression: braces and the leading dot are optional.
        path = path.strip()
        if path.startswith("{") and path.endswith("}"):
            path = path[1:-1]
        if not path.startswith((".", "[")):
            path = "." + path
        try:
            cols.append((header, jsonpath.parse("{" + path + "}")))
        except jsonpath.JSONPathError as e:
            raise OutputError(f"error parsing jsonpath {path}, {e}") from None
    return tuple(cols)


def parse_output(output: str) -> OutputFormat:
    """Parse an ``-o`` value; raises :class:`OutputError` for an unknown format or template."""
    name, sep, arg = output.partition("=")
    if output in ("", "wide", "json", "yaml", "name"):
        return OutputFormat(output or "table")
    if name in ("jsonpath", "jsonpath-as-json"):
        if not sep or not arg:
            raise OutputError("template format specified but no template given")
        from control.cli import jsonpath

        try:
            tmpl = jsonpath.parse(arg)
        except jsonpath.JSONPathError as e:
            raise OutputError(f"error parsing jsonpath {arg}, {e}") from None
        return OutputFormat(name, arg, tmpl)
    if name == "custom-columns":
        if not sep or not arg:
            raise OutputError("custom-columns format specified but no custom columns given")
        return OutputFormat(name, arg, custom=_parse_custom_columns(arg))
    raise OutputError(
        f'unable to match a printer suitable for the output format "{output}", '
        f"allowed formats are: {','.join(OUTPUT_FORMATS)}"
    )


def validate_output(output: str) -> None:
    """Raise :class:`OutputError` when ``output`` is not a supported ``-o`` value."""
    parse_output(output)


# ------------------------------------------------------------------------ object documents


def _info_of(obj: Message, fallback: KindInfo | None) -> KindInfo:
    try:
        return kinds.by_message(obj)
    except KeyError:
        if fallback is None:
            raise
        return fallback


def object_dict(obj: Message, info: KindInfo | None = None) -> dict[str, Any]:
    """``convert.to_dict(obj)`` with ``apiVersion`` and ``kind`` first, filled in if unset.

    List items from the API may come without them; kubectl always prints them.
    """
    info = _info_of(obj, info)
    d = convert.to_dict(obj)
    rest = {k: v for k, v in d.items() if k not in ("apiVersion", "kind")}
    return {
        "apiVersion": d.get("apiVersion") or info.api_version,
        "kind": d.get("kind") or info.kind,
        **rest,
    }


def list_dict(objs: list[Message], info: KindInfo | None = None) -> dict[str, Any]:
    """kubectl's ``{"apiVersion": "v1", "items": [...], "kind": "List", ...}`` wrapper."""
    return {
        "apiVersion": "v1",
        "items": [object_dict(o, info) for o in objs],
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }


def _document(objs: list[Message], info: KindInfo, list_kind: bool) -> dict[str, Any]:
    # Several named objects print as a List too, as kubectl does for `get pod a b -o json`.
    if list_kind or len(objs) != 1:
        return list_dict(objs, info)
    return object_dict(objs[0], info)


def dump_json(doc: Any) -> str:
    """kubectl's JSON: four-space indent, non-ASCII kept, trailing newline."""
    return json.dumps(doc, indent=4, ensure_ascii=False) + "\n"


@functools.cache
def _block_dumper() -> type[yaml.SafeDumper]:
    """Safe dumper writing multi-line strings as ``|`` blocks, as kubectl's YAML does.

    Built on first use: YAML is imported only by a call that writes YAML.
    """
    import yaml

    class BlockDumper(yaml.SafeDumper):
        pass

    def str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # PyYAML falls back to a quoted style by itself when a block cannot represent it.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, str_representer)
    return BlockDumper


def dump_yaml(doc: Any) -> str:
    """Block-style YAML, keys in document order (kubectl's field order), unicode kept."""
    import yaml

    return yaml.dump(
        doc,
        Dumper=_block_dumper(),
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,  # never fold long strings (kubectl doesn't)
    )


def print_name(obj: Message, info: KindInfo | None = None) -> str:
    """``deployment.apps/web``; core kinds just ``pod/web``."""
    info = _info_of(obj, info)
    prefix = info.kind.lower() + (f".{info.group}" if info.group else "")
    return f"{prefix}/{obj.metadata.name}"  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------- tables


def tabwrite(text: str, *, min_width: int = 0, padding: int = 2) -> str:
    """Go's ``text/tabwriter`` (flags 0, space padding) applied to ``text``.

    A cell is text ending in a tab; the last text of a line is not a cell. A column is
    aligned over a block of consecutive lines that all have a cell in it, so a line
    without tabs ends the alignment of the lines above (kubectl describe relies on this).
    Defaults are kubectl describe's settings; tables use :func:`format_table`.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(l0: int, l1: int) -> None:
        for row in lines[l0:l1]:
            parts = []
            for j, cell in enumerate(row):
                parts.append(cell.ljust(widths[j]) if j < len(widths) else cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = min_width
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out)


def _row_widths(rows: list[list[str]], widths: list[int] | None = None) -> list[int]:
    """Column widths (cell + padding, at least the minimum), growing ``widths``."""
    result = list(widths or [])
    for row in rows:
        for j, cell in enumerate(row[:-1]):  # the last column is never padded
            w = max(len(cell) + _PADDING, _MIN_WIDTH)
            if j >= len(result):
                result.append(w)
            elif w > result[j]:
                result[j] = w
    return result


def _render(rows: list[list[str]], widths: list[int]) -> str:
    out = []
    for row in rows:
        cells = [c.ljust(widths[j]) if j < len(row) - 1 else c for j, c in enumerate(row)]
        out.append("".join(cells) + "\n")
    return "".join(out)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """kubectl's table: left-aligned columns, three spaces apart (cells at least six wide),
    the last column unpadded; no header line when ``header`` is empty."""
    all_rows = ([header] if header else []) + rows
    return _render(all_rows, _row_widths(all_rows))


def _kind_prefix(info: KindInfo) -> str:
    return info.kind.lower() + (f".{info.group}" if info.group else "")


def _table_header(info: KindInfo, wide: bool, show_namespace: bool, show_labels: bool) -> list[str]:
    header = columns.header_for(info.kind, wide)
    if show_namespace and info.namespaced:
        header = ["NAMESPACE", *header]
    if show_labels:
        header.append("LABELS")
    return header


def _table_row(
    d: Mapping[str, Any],
    info: KindInfo,
    wide: bool,
    show_namespace: bool,
    now: float,
    show_kind: bool,
    show_labels: bool,
) -> list[str]:
    cols = columns.columns_for(info.kind)
    cells = cols.row(d, now, wide)
    if show_kind and cols.name_index is not None:
        cells[cols.name_index] = f"{_kind_prefix(info)}/{cells[cols.name_index]}"
    meta = d.get("metadata") or {}
    if show_namespace and info.namespaced:
        cells = [str(meta.get("namespace", "")), *cells]
    if show_labels:
        cells.append(columns.format_labels(meta.get("labels")))
    return cells


def table_rows(
    objs: list[Message],
    info: KindInfo,
    wide: bool,
    show_namespace: bool,
    now: float | None = None,
    *,
    show_kind: bool = False,
    show_labels: bool = False,
) -> tuple[list[str], list[list[str]]]:
    """Header and cell rows for ``objs`` (all of kind ``info``).

    ``show_namespace`` adds a NAMESPACE column first, for namespaced kinds only (kubectl
    omits it for cluster-scoped kinds even with ``-A``).
    """
    now = time.time() if now is None else now
    header = _table_header(info, wide, show_namespace, show_labels)
    rows = [
        _table_row(convert.to_dict(o), info, wide, show_namespace, now, show_kind, show_labels)
        for o in objs
    ]
    return header, rows


def _custom_rows(
    objs: list[Message], info: KindInfo, fmt: OutputFormat
) -> tuple[list[str], list[list[str]]]:
    from control.cli import jsonpath

    header = [h for h, _ in fmt.custom]
    rows = []
    for o in objs:
        d = object_dict(o, info)
        row = []
        for _, tmpl in fmt.custom:
            try:
                values = [v for s in jsonpath.find_results(tmpl, d) for v in s]
            except jsonpath.JSONPathError as e:
                raise OutputError(f"error executing jsonpath {tmpl.source!r}: {e}") from None
            row.append(",".join(jsonpath.format_value(v) for v in values) or "<none>")
        rows.append(row)
    return header, rows


def _group_by_kind(objs: list[Message], info: KindInfo) -> list[tuple[KindInfo, list[Message]]]:
    groups: dict[str, tuple[KindInfo, list[Message]]] = {}
    for o in objs:
        i = _info_of(o, info)
        groups.setdefault(i.kind, (i, []))[1].append(o)
    return list(groups.values())


def _run_jsonpath(fmt: OutputFormat, doc: Any) -> str:
    from control.cli import jsonpath

    assert fmt.template is not None
    try:
        return jsonpath.execute(fmt.template, doc, as_json=fmt.kind == "jsonpath-as-json")
    except jsonpath.JSONPathError as e:
        raise OutputError(f"error executing jsonpath {fmt.arg!r}: {e}") from None


def print_objects(
    objs: list[Message],
    info: KindInfo,
    output: str,
    out: TextIO,
    *,
    list_kind: bool,
    show_namespace: bool,
    show_kind: bool = False,
    no_headers: bool = False,
    show_labels: bool = False,
    now: float | None = None,
) -> None:
    """Render ``objs`` in ``output`` format to ``out``.

    ``list_kind`` is True when the user asked for a collection (no names): json/yaml then
    print a List even for 0 or 1 items. An empty table prints nothing (the verb prints
    kubectl's "No resources found" to stderr itself). Objects of several kinds print as one
    table per kind, separated by a blank line, as ``kubectl get pods,services`` does; each
    object's kind is taken from its message type, ``info`` being the fallback.
    Raises :class:`OutputError` for a bad format or jsonpath template.
    """
    fmt = parse_output(output)
    if fmt.kind in ("table", "wide"):
        first = True
        for kinfo, group in _group_by_kind(objs, info):
            header, rows = table_rows(
                group,
                kinfo,
                fmt.kind == "wide",
                show_namespace,
                now,
                show_kind=show_kind,
                show_labels=show_labels,
            )
            if not first:
                out.write("\n")
            first = False
            out.write(format_table([] if no_headers else header, rows))
    elif fmt.kind == "custom-columns":
        header, rows = _custom_rows(objs, info, fmt)
        if rows:
            out.write(format_table([] if no_headers else header, rows))
    elif fmt.kind == "name":
        for o in objs:
            out.write(print_name(o, info) + "\n")
    else:
        doc = _document(objs, info, list_kind)
        if fmt.kind == "json":
            out.write(dump_json(doc))
        elif fmt.kind == "yaml":
            out.write(dump_yaml(doc))
        else:
            out.write(_run_jsonpath(fmt, doc))
    out.flush()


# ------------------------------------------------------------------------------------ watch


class WatchPrinter:
    """Prints one line per watch event (table row, or json/yaml/name document), flushing each.

    The table header is printed once, before the first row. Column widths are remembered and
    only grow (kubectl's tabwriter ``RememberWidths``), so rows stay aligned with the header
    unless a later cell is wider. ``output_watch_events`` adds kubectl's EVENT column
    (ADDED/MODIFIED/DELETED) and, for json/yaml, wraps objects as ``{"type", "object"}``.
    """

    def __init__(
        self,
        info: KindInfo,
        output: str,
        out: TextIO,
        *,
        show_namespace: bool,
        show_kind: bool = False,
        no_headers: bool = False,
        show_labels: bool = False,
        output_watch_events: bool = False,
    ) -> None:
        self.info = info
        self.fmt = parse_output(output)
        self.out = out
        self.show_namespace = show_namespace
        self.show_kind = show_kind
        self.no_headers = no_headers
        self.show_labels = show_labels
        self.output_watch_events = output_watch_events
        self._widths: list[int] = []
        self._header_done = False
        self._docs = 0

    def _header(self) -> list[str]:
        if self.fmt.kind == "custom-columns":
            header = [h for h, _ in self.fmt.custom]
        else:
            header = _table_header(
                self.info, self.fmt.kind == "wide", self.show_namespace, self.show_labels
            )
        return ["EVENT", *header] if self.output_watch_events else header

    def _row(self, event_type: str, obj: Message, now: float) -> list[str]:
        if self.fmt.kind == "custom-columns":
            row = _custom_rows([obj], self.info, self.fmt)[1][0]
        else:
            row = _table_row(
                convert.to_dict(obj),
                self.info,
                self.fmt.kind == "wide",
                self.show_namespace,
                now,
                self.show_kind,
                self.show_labels,
            )
        return [event_type, *row] if self.output_watch_events else row

    def _write_rows(self, rows: list[list[str]]) -> None:
        if not self._header_done:
            self._header_done = True
            if not self.no_headers:
                rows = [self._header(), *rows]
        self._widths = _row_widths(rows, self._widths)
        self.out.write(_render(rows, self._widths))
        self.out.flush()

    def print_objects(self, objs: list[Message], now: float | None = None) -> None:
        """The initial listing of a watch: rows aligned together (as ``ADDED`` events)."""
        now = time.time() if now is None else now
        if self.fmt.kind in ("table", "wide", "custom-columns"):
            if objs:
                self._write_rows([self._row("ADDED", o, now) for o in objs])
            return
        for o in objs:
            self.print_event("ADDED", o, now)

    def print_event(self, event_type: str, obj: Message, now: float | None = None) -> None:
        """Print one watch event (``event_type`` ADDED/MODIFIED/DELETED)."""
        now = time.time() if now is None else now
        kind = self.fmt.kind
        if kind in ("table", "wide", "custom-columns"):
            self._write_rows([self._row(event_type, obj, now)])
            return
        if kind == "name":
            self.out.write(print_name(obj, self.info) + "\n")
        else:
            doc: Any = object_dict(obj, self.info)
            if self.output_watch_events:
                doc = {"type": event_type, "object": doc}
            if kind == "json":
                self.out.write(dump_json(doc))
            elif kind == "yaml":
                if self._docs:
                    self.out.write("---\n")
                self.out.write(dump_yaml(doc))
            else:
                self.out.write(_run_jsonpath(self.fmt, doc))
        self._docs += 1
        self.out.flush()
