"""kubectl's JSONPath templates (``-o jsonpath=...``): a parser and an evaluator.

Owns the template language of ``k8s.io/client-go/util/jsonpath``, the subset kubectl users
write:

- text outside braces is printed as is; ``{"\\n"}`` / ``{'\\t'}`` are quoted literals;
- ``{.a.b}`` fields (``\\.`` escapes a dot in a name: ``{.metadata.labels.app\\.kubernetes\\.io/name}``),
  ``{.}`` / ``@`` / ``$`` the current object, ``{.*}`` / ``[*]`` wildcards, ``..name``
  recursive descent;
- ``[0]``, ``[-1]``, ``[1:3]``, ``[::2]`` indexes and slices, ``[0,2]`` unions,
  ``['key']`` keys (a literal key; a dotted key missing as such is read as a path, so
  kubectl's ``['metadata.name','status.phase']`` works), ``[?(@.type=="Ready")]`` filters
  with ``== != < > <= >=`` or existence (``[?(@.ports)]``);
- ``{range EXPR}...{end}``, nestable.

Semantics follow kubectl: each top-level node (text or ``{...}``) yields one result set;
the values of a set are printed separated by spaces (strings raw, maps and lists as compact
JSON), sets are concatenated. Missing keys print nothing (kubectl's
``--allow-missing-template-keys=true``) or raise "X is not found" when not allowed; an index
out of range is an error as in kubectl. Pure module: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JSONPathError", "Template", "execute", "find_results", "format_value", "parse"]


class JSONPathError(ValueError):
    """A template that does not parse, or that fails on the data."""


# ---------------------------------------------------------------------------------- syntax


@dataclass(frozen=True)
class _Field:
    name: str
    # A quoted ['a.b'] key: read as a path when the literal key is missing.
    quoted: bool = False


@dataclass(frozen=True)
class _Wildcard:
    pass


@dataclass(frozen=True)
class _Recursive:
    pass


@dataclass(frozen=True)
class _Slice:
    start: int | None
    end: int | None
    step: int | None
    single: bool  # [n]: the end is derived as n+1


@dataclass(frozen=True)
class _Union:
    branches: tuple[tuple[Step, ...], ...]


@dataclass(frozen=True)
class _Filter:
    left: tuple[Step, ...]
    op: str  # "exists" or a comparison
    right: tuple[Step, ...] | None = None
    literal: Any = None


@dataclass(frozen=True)
class _Literal:
    text: str


Step = _Field | _Wildcard | _Recursive | _Slice | _Union | _Filter | _Literal


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Action:
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class _Range:
    steps: tuple[Step, ...]
    body: tuple[Node, ...]


Node = _Text | _Action | _Range


@dataclass(frozen=True)
class Template:
    """A parsed template; ``source`` is the text it came from (for error messages)."""

    source: str
    nodes: tuple[Node, ...] = field(default=())


# ---------------------------------------------------------------------------------- parser

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_NAME_STOP = set(".[]()\t\n ,=!<>&|\"'{}@$")
_SLICE = re.compile(r"^(-?\d*)(?::(-?\d*))?(?::(-?\d*))?$")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    """The unescaped literal starting at the quote ``s[i]``, and the index after it."""
    quote = s[i]
    out: list[str] = []
    j = i + 1
    while j < len(s):
        c = s[j]
        if c == "\\":
            if j + 1 >= len(s):
                break
            e = s[j + 1]
            if e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[j + 2 : j + 6]):
                out.append(chr(int(s[j + 2 : j + 6], 16)))
                j += 6
                continue
            if e not in _ESCAPES:
                raise JSONPathError(f"invalid escape sequence \\{e} in {s[i:]}")
            out.append(_ESCAPES[e])
            j += 2
            continue
        if c == quote:
            return "".join(out), j + 1
        out.append(c)
        j += 1
    raise JSONPathError(f"unterminated quoted string {s[i:]}")


def _read_name(s: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])  # \. is a dot inside a name (label keys)
            i += 2
            continue
        if c in _NAME_STOP:
            break
        out.append(c)
        i += 1
    return "".join(out), i


def _matching(s: str, i: int, open_: str, close: str) -> int:
    """Index of the ``close`` matching ``s[i] == open_``, skipping quoted text."""
    depth = 0
    j = i
    while j < len(s):
        c = s[j]
        if c in "\"'":
            _, j = _read_quoted(s, j)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j
        j += 1
    raise JSONPathError(f"unclosed {open_!r} in {s[i:]!r}: expected {close!r}")


def _split_top(s: str, sep: str) -> list[str]:
    """``s`` split on ``sep`` outside quotes, brackets and parentheses."""
    parts: list[str] = []
    depth = 0
    start = j = 0
    while j < len(s):
        c = s[j]
        if c in "\"'":
            _, j = _read_quoted(s, j)
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(s[start:j])
            start = j + 1
        j += 1
    parts.append(s[start:])
    return parts


def _parse_int(text: str) -> int | None:
    return int(text) if text not in ("", "-") else None


def _parse_index(text: str) -> _Slice:
    compact = text.replace(" ", "")
    m = _SLICE.match(compact)
    if not compact or m is None:
        raise JSONPathError(f"invalid array index {text!r}")
    start, end, step = (_parse_int(g) if g is not None else None for g in m.groups())
    single = ":" not in compact
    if single and start is None:
        raise JSONPathError(f"invalid array index {text!r}")
    return _Slice(start, end, step, single)


def _parse_filter(expr: str) -> _Filter:
    inner = expr[1:].strip()  # drop "?"
    if not (inner.startswith("(") and inner.endswith(")")):
        raise JSONPathError(f"invalid filter [{expr}]: expected [?(@.field == value)]")
    inner = inner[1:-1].strip()
    # Find the comparison operator outside quoted text.
    j = 0
    while j < len(inner):
        c = inner[j]
        if c in "\"'":
            _, j = _read_quoted(inner, j)
            continue
        op = next((o for o in _OPERATORS if inner.startswith(o, j)), None)
        if op is not None:
            left = _parse_steps(inner[:j].strip())
            rtext = inner[j + len(op) :].strip()
            if not rtext:
                raise JSONPathError(f"invalid filter [{expr}]: nothing right of {op}")
            if rtext[0] in "\"'":
                lit, end = _read_quoted(rtext, 0)
                if rtext[end:].strip():
                    raise JSONPathError(f"invalid filter [{expr}]: unexpected {rtext[end:]!r}")
                return _Filter(left, op, None, lit)
            if rtext in ("true", "false"):
                return _Filter(left, op, None, rtext == "true")
            if re.fullmatch(r"-?\d+", rtext):
                return _Filter(left, op, None, int(rtext))
            if re.fullmatch(r"-?\d*\.\d+(?:[eE][-+]?\d+)?", rtext):
                return _Filter(left, op, None, float(rtext))
            if rtext[0] in "@$.":
                return _Filter(left, op, _parse_steps(rtext))
            raise JSONPathError(f"invalid filter [{expr}]: unrecognized value {rtext!r}")
        j += 1
    return _Filter(_parse_steps(inner), "exists")


def _parse_bracket(text: str) -> Step:
    inner = text.strip()
    if not inner:
        raise JSONPathError("empty array index []")
    if inner.startswith("?"):
        return _parse_filter(inner)
    if inner == "*":
        return _Wildcard()
    parts = [p.strip() for p in _split_top(inner, ",")]
    branches: list[tuple[Step, ...]] = []
    for p in parts:
        if p[:1] in ("'", '"'):
            key, end = _read_quoted(p, 0)
            if p[end:].strip():
                raise JSONPathError(f"invalid key {p!r}")
            branches.append((_Field(key, quoted=True),))
        else:
            branches.append((_parse_index(p),))
    if len(branches) == 1:
        return branches[0][0]
    return _Union(tuple(branches))


def _parse_steps(s: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace() or c in "@$":
            i += 1
        elif c in "\"'":
            text, i = _read_quoted(s, i)
            steps.append(_Literal(text))
        elif s.startswith("..", i):
            steps.append(_Recursive())
            i += 2
            if i < n and s[i] not in "[*":
                name, i = _read_name(s, i)
                if not name:
                    raise JSONPathError(f"expected a field name after '..' in {s!r}")
                steps.append(_Field(name))
        elif c == ".":
            i += 1
            if i < n and s[i] == "*":
                steps.append(_Wildcard())
                i += 1
                continue
            name, i = _read_name(s, i)
            if name:  # a lone "." is the current object
                steps.append(_Field(name))
        elif c == "*":
            steps.append(_Wildcard())
            i += 1
        elif c == "[":
            end = _matching(s, i, "[", "]")
            steps.append(_parse_bracket(s[i + 1 : end]))
            i = end + 1
        else:
            word, _ = _read_name(s, i)
            if word:
                raise JSONPathError(f"unrecognized identifier {word}")
            raise JSONPathError(f"unrecognized character in action: {c!r}")
    return tuple(steps)


def _split_actions(src: str) -> list[tuple[bool, str]]:
    """``(is_action, text)`` pieces: text outside braces and the insides of ``{...}``."""
    out: list[tuple[bool, str]] = []
    i = 0
    while i < len(src):
        j = src.find("{", i)
        if j < 0:
            out.append((False, src[i:]))
            break
        if j > i:
            out.append((False, src[i:j]))
        k = j + 1
        while k < len(src) and src[k] != "}":
            if src[k] in "\"'":
                _, k = _read_quoted(src, k)
                continue
            k += 1
        if k >= len(src):
            raise JSONPathError(f"unclosed action {src[j:]!r}: missing '}}'")
        out.append((True, src[j + 1 : k]))
        i = k + 1
    return out


def parse(source: str) -> Template:
    """Parse a template; raises :class:`JSONPathError` naming the problem."""
    # A stack of open bodies: the template's, then one per unclosed {range}.
    stack: list[tuple[tuple[Step, ...] | None, list[Node]]] = [(None, [])]
    for is_action, text in _split_actions(source):
        if not is_action:
            stack[-1][1].append(_Text(text))
            continue
        inner = text.strip()
        if inner == "end":
            if len(stack) == 1:
                raise JSONPathError("{end} without a matching {range}")
            steps, body = stack.pop()
            assert steps is not None
            stack[-1][1].append(_Range(steps, tuple(body)))
        elif inner == "range" or inner.startswith(("range ", "range\t")):
            expr = inner[5:].strip()
            if not expr:
                raise JSONPathError("{range} needs an expression, like {range .items[*]}")
            stack.append((_parse_steps(expr), []))
        else:
            stack[-1][1].append(_Action(_parse_steps(inner)))
    if len(stack) > 1:
        raise JSONPathError("{range} without a matching {end}")
    return Template(source, tuple(stack[0][1]))


# ------------------------------------------------------------------------------- evaluator


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _compare(left: Any, op: str, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        pass
    elif type(left) is not type(right):
        if op in ("==", "!="):
            return op == "!="
        raise JSONPathError(
            f"incompatible types for comparison: {type(left).__name__} and {type(right).__name__}"
        )
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    try:
        if op == "<":
            return bool(left < right)
        if op == ">":
            return bool(left > right)
        if op == "<=":
            return bool(left <= right)
        return bool(left >= right)
    except TypeError:
        raise JSONPathError(f"cannot compare {left!r} {op} {right!r}") from None


def _descendants(value: Any) -> list[Any]:
    """``value`` and every nested map or list below it, pre-order (for ``..``)."""
    out: list[Any] = []
    children: list[Any] = []
    if isinstance(value, Mapping):
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    if children:
        out.append(value)
        for c in children:
            out += _descendants(c)
    return out


def _slice(value: list[Any], s: _Slice) -> list[Any]:
    length = len(value)
    start = s.start if s.start is not None else 0
    if start < 0:
        start += length
    if s.single:
        end = start + 1
    else:
        end = s.end if s.end is not None else length
        if end < 0:
            end += length
    if end == start:
        return []
    if start >= length or start < 0:
        raise JSONPathError(f"array index out of bounds: index {start}, length {length}")
    if end > length or end < 0:
        raise JSONPathError(f"array index out of bounds: index {end - 1}, length {length}")
    if start > end:
        raise JSONPathError(f"starting index {start} is greater than ending index {end}")
    step = s.step if s.step is not None else 1
    if step <= 0:
        raise JSONPathError("step must be > 0")
    return value[start:end:step]


def _type_name(v: Any) -> str:
    if isinstance(v, Mapping):
        return "map"
    return {str: "string", bool: "bool", int: "int", float: "float"}.get(type(v), type(v).__name__)


def _walk(steps: tuple[Step, ...], cur: list[Any], allow_missing: bool) -> list[Any]:
    for st in steps:
        cur = _step(st, cur, allow_missing)
    return cur


def _step(st: Step, cur: list[Any], allow_missing: bool) -> list[Any]:
    out: list[Any] = []
    if isinstance(st, _Literal):
        return [st.text]
    if isinstance(st, _Field):
        for v in cur:
            if not isinstance(v, Mapping):
                continue
            if st.name in v:
                out.append(v[st.name])
            elif st.quoted and "." in st.name:
                out += _walk(tuple(_Field(p) for p in st.name.split(".")), [v], True)
        if not out and cur and not allow_missing:
            raise JSONPathError(f"{st.name} is not found")
        return out
    if isinstance(st, _Wildcard):
        for v in cur:
            if isinstance(v, Mapping):
                out += list(v.values())
            elif isinstance(v, list):
                out += v
        return out
    if isinstance(st, _Recursive):
        for v in cur:
            out += _descendants(v)
        return out
    if isinstance(st, _Slice):
        for v in cur:
            if v is None:
                continue
            if not isinstance(v, list):
                raise JSONPathError(f"{_type_name(v)} is not array or slice")
            out += _slice(v, st)
        return out
    if isinstance(st, _Union):
        for branch in st.branches:
            out += _walk(branch, cur, allow_missing)
        return out
    # _Filter
    for v in cur:
        if v is None:
            continue
        if not isinstance(v, list):
            raise JSONPathError(f"{_type_name(v)} is not array or slice and cannot be filtered")
        for item in v:
            lefts = _walk(st.left, [item], True)
            if st.op == "exists":
                if lefts:
                    out.append(item)
                continue
            if not lefts:
                continue
            if len(lefts) > 1:
                raise JSONPathError("can only compare one element at a time")
            if st.right is not None:
                rights = _walk(st.right, [item], True)
                if not rights:
                    continue
                if len(rights) > 1:
                    raise JSONPathError("can only compare one element at a time")
                right = rights[0]
            else:
                right = st.literal
            if _compare(lefts[0], st.op, right):
                out.append(item)
    return out


def find_results(
    template: Template, data: Any, *, allow_missing_keys: bool = True
) -> list[list[Any]]:
    """The result sets of ``template`` on ``data``: one per text/action, per range item."""

    def run(nodes: tuple[Node, ...], cur: Any) -> list[list[Any]]:
        sets: list[list[Any]] = []
        for node in nodes:
            if isinstance(node, _Text):
                sets.append([node.text])
            elif isinstance(node, _Action):
                sets.append(_walk(node.steps, [cur], allow_missing_keys))
            else:
                for item in _walk(node.steps, [cur], allow_missing_keys):
                    sets += run(node.body, item)
        return sets

    return run(template.nodes, data)


def format_value(v: Any) -> str:
    """A value as kubectl prints it: strings raw, maps and lists as compact JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "<nil>"  # Go's fmt.Print of a nil interface
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, Mapping | list):
        # Go's json.Marshal: compact, map keys sorted.
        return json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return str(v)


def execute(
    template: str | Template,
    data: Any,
    *,
    allow_missing_keys: bool = True,
    as_json: bool = False,
) -> str:
    """The text ``template`` produces on ``data`` (kubectl's ``-o jsonpath=``).

    ``as_json`` is ``-o jsonpath-as-json=``: each result set as an indented JSON array.
    Raises :class:`JSONPathError` for a bad template or a failing evaluation.
    """
    tmpl = parse(template) if isinstance(template, str) else template
    sets = find_results(tmpl, data, allow_missing_keys=allow_missing_keys)
    if as_json:
        return "".join(json.dumps(s, indent=4, ensure_ascii=False) + "\n" for s in sets)
    return "".join(" ".join(format_value(v) for v in s) for s in sets)
