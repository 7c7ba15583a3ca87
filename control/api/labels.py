"""Label selectors: Kubernetes' string syntax, LabelSelector messages and matching.

Owns ``Selector`` (an immutable conjunction of ``Requirement``s) and the ways to build one:

- ``parse("app=web,tier!=db,env in (a,b),!legacy,zone")``: the ``kubectl -l`` / API
  ``labelSelector`` syntax: ``=``, ``==``, ``!=``, ``in``, ``notin``, ``key`` (exists),
  ``!key`` (does not exist), ``gt``/``lt`` as ``key>1`` / ``key<1``, comma-separated,
  whitespace tolerant; a bad selector raises ``BadRequest`` naming the position;
- ``from_label_selector(LabelSelector)``: matchLabels + matchExpressions (a missing selector
  selects nothing, an empty one everything, as Kubernetes' LabelSelectorAsSelector);
- ``from_map({"app": "web"})``: ReplicationController / Service style;
- ``everything()`` / ``nothing()``.

``str(selector)`` is the canonical form (requirements sorted by key, values sorted), so it can
key caches. ``exact_match_values`` lets an index answer ``app=web`` / ``app in (a,b)``
without a scan. Pure module: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from control.api import names
from control.api.errors import BadRequest, FieldError, Invalid, excerpt
from control.api.pb import meta_pb2

__all__ = [
    "DOES_NOT_EXIST",
    "DOUBLE_EQUALS",
    "EQUALS",
    "EXISTS",
    "GREATER_THAN",
    "IN",
    "LESS_THAN",
    "NOT_EQUALS",
    "NOT_IN",
    "Requirement",
    "Selector",
    "everything",
    "exact_match_values",
    "from_label_selector",
    "from_map",
    "nothing",
    "parse",
    "validate_label_selector",
]

# Operators, spelled as Kubernetes' selection.Operator values.
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_SET_OPS = frozenset({IN, NOT_IN})
_EQ_OPS = frozenset({EQUALS, DOUBLE_EQUALS, IN})
_NEQ_OPS = frozenset({NOT_EQUALS, NOT_IN})
_NUM_OPS = frozenset({GREATER_THAN, LESS_THAN})

# LabelSelectorRequirement operators (capitalised in the API) -> our operators.
_EXPRESSION_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


@dataclass(frozen=True, order=True)
class Requirement:
    """One ``key op values`` term; ``values`` sorted and de-duplicated."""

    key: str
    operator: str
    values: tuple[str, ...] = ()
    # The value set, for matching in O(1); not part of equality or order.
    _set: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_set", frozenset(self.values))

    @staticmethod
    def new(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
        """A validated requirement (Kubernetes' NewRequirement); ``BadRequest`` if invalid."""
        vals = tuple(sorted(set(values)))
        msgs = _requirement_errors(key, operator, vals)
        if msgs:
            raise BadRequest("; ".join(msgs))
        return Requirement(key, operator, vals)

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in _EQ_OPS:
            v = labels.get(self.key)
            return v is not None and v in self._set
        if op in _NEQ_OPS:
            v = labels.get(self.key)
            return v is None or v not in self._set
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        v = labels.get(self.key)
        if v is None:
            return False
        try:
            n, bound = int(v), int(self.values[0])
        except ValueError:
            return False
        return n > bound if op == GREATER_THAN else n < bound

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        if op in _SET_OPS:
            return f"{self.key} {op} ({','.join(self.values)})"
        if op == GREATER_THAN:
            return f"{self.key}>{self.values[0]}"
        if op == LESS_THAN:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op}{self.values[0]}"


def _requirement_errors(key: str, operator: str, values: tuple[str, ...]) -> list[str]:
    msgs = [f"key {excerpt(key)!r}: {m}" for m in names.is_qualified_name(key)]
    if operator in _SET_OPS:
        if not values:
            msgs.append("for 'in', 'notin' operators, values set can't be empty")
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            msgs.append("exact-match compatibility requires one single value")
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if values:
            msgs.append("values set must be empty for exists and does not exist")
    elif operator in _NUM_OPS:
        if len(values) != 1:
            msgs.append("for 'Gt', 'Lt' operators, exactly one value is required")
        else:
            try:
                int(values[0])
            except ValueError:
                msgs.append(
                    f"for 'Gt', 'Lt' operators, the value must be an integer, got {excerpt(values[0])!r}"
                )
    else:
        msgs.append(f"operator {operator!r} is not recognized")
    if operator not in _NUM_OPS:
        for v in values:
            msgs.extend(f"value {excerpt(v)!r}: {m}" for m in names.is_valid_label_value(v))
    return msgs


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; ``is_nothing`` is Kubernetes' Nothing() selector."""

    requirements: tuple[Requirement, ...] = ()
    is_nothing: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.is_nothing:
            return False
        for r in self.requirements:
            if not r.matches(labels):
                return False
        return True

    def empty(self) -> bool:
        """True for the selector that matches everything."""
        return not self.requirements and not self.is_nothing

    def add(self, *requirements: Requirement) -> Selector:
        return _make(self.requirements + requirements, self.is_nothing)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __bool__(self) -> bool:  # a Selector is an object, not a truth value
        return True


def _make(reqs: Iterable[Requirement], is_nothing: bool = False) -> Selector:
    # Stable sort by key only (as Kubernetes): two terms on one key keep the order written.
    return Selector(tuple(sorted(reqs, key=lambda r: r.key)), is_nothing)


_EVERYTHING = Selector()
_NOTHING = Selector(is_nothing=True)


def everything() -> Selector:
    return _EVERYTHING


def nothing() -> Selector:
    return _NOTHING


def from_map(labels: Mapping[str, str] | None) -> Selector:
    """``key=value`` for every entry (SelectorFromValidatedSet); empty -> everything."""
    if not labels:
        return _EVERYTHING
    return _make(Requirement.new(k, EQUALS, (v,)) for k, v in labels.items())


def validate_label_selector(
    selector: meta_pb2.LabelSelector, path: str = "selector"
) -> list[FieldError]:
    """Kubernetes' ValidateLabelSelector: operators, values, keys, matchLabels."""
    errs: list[FieldError] = []
    for i, expr in enumerate(selector.match_expressions):
        p = f"{path}.matchExpressions[{i}]"
        op = expr.operator
        if op in ("In", "NotIn"):
            if not expr.values:
                errs.append(
                    FieldError(
                        f"{p}.values",
                        "Required value: must be specified when `operator` is 'In' or 'NotIn'",
                    )
                )
        elif op in ("Exists", "DoesNotExist"):
            if expr.values:
                errs.append(
                    FieldError(
                        f"{p}.values",
                        "Forbidden: may not be specified when `operator` is 'Exists' or "
                        "'DoesNotExist'",
                    )
                )
        else:
            errs.append(
                FieldError(
                    f"{p}.operator",
                    f'Unsupported value: "{op}": supported values: "In", "NotIn", "Exists", '
                    '"DoesNotExist"',
                )
            )
        errs.extend(
            FieldError(f"{p}.key", f'Invalid value: "{expr.key}": {m}')
            for m in names.is_qualified_name(expr.key)
        )
        for v in expr.values:
            errs.extend(
                FieldError(f"{p}.values", f'Invalid value: "{v}": {m}')
                for m in names.is_valid_label_value(v)
            )
    errs.extend(names.validate_labels(selector.match_labels, f"{path}.matchLabels"))
    return errs


def from_label_selector(selector: meta_pb2.LabelSelector | None) -> Selector:
    """LabelSelectorAsSelector: None -> nothing, empty -> everything; ``Invalid`` if bad."""
    if selector is None:
        return _NOTHING
    if not selector.match_labels and not selector.match_expressions:
        return _EVERYTHING
    errs = validate_label_selector(selector)
    if errs:
        raise Invalid("invalid label selector", errs)
    reqs = [Requirement.new(k, EQUALS, (v,)) for k, v in selector.match_labels.items()]
    reqs.extend(
        Requirement.new(e.key, _EXPRESSION_OPS[e.operator], e.values)
        for e in selector.match_expressions
    )
    return _make(reqs)


def exact_match_values(selector: Selector, key: str) -> frozenset[str] | None:
    """The values ``key`` must have for a match (``=``, ``==``, ``in``), or None if unconstrained.

    Several such terms on one key intersect (``a in (x,y),a=x`` -> ``{x}``).
    """
    result: frozenset[str] | None = None
    for r in selector.requirements:
        if r.key == key and r.operator in _EQ_OPS:
            result = r._set if result is None else result & r._set
    return result


# ------------------------------------------------------------------------------ the parser

_SPECIAL = frozenset("=!(),<> \t\n\r")


class _Token:
    __slots__ = ("kind", "pos", "text")

    def __init__(self, kind: str, text: str, pos: int) -> None:
        self.kind = (
            kind  # "id", "in", "notin", "=", "==", "!=", "!", "(", ")", ",", ">", "<", "end"
        )
        self.text = text
        self.pos = pos


def _lex(s: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\n\r":
            i += 1
            continue
        if c in "=!":
            two = s[i : i + 2]
            if two in ("==", "!="):
                tokens.append(_Token(two, two, i))
                i += 2
            else:
                tokens.append(_Token(c, c, i))
                i += 1
            continue
        if c in "(),<>":
            tokens.append(_Token(c, c, i))
            i += 1
            continue
        start = i
        while i < n and s[i] not in _SPECIAL:
            i += 1
        word = s[start:i]
        kind = word if word in ("in", "notin") else "id"
        tokens.append(_Token(kind, word, start))
    tokens.append(_Token("end", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def fail(self, tok: _Token, expected: str) -> BadRequest:
        found = "end of string" if tok.kind == "end" else f"'{excerpt(tok.text)}'"
        return BadRequest(
            f"unable to parse label selector {excerpt(self.text)!r}: found {found} at position "
            f"{tok.pos}, expected: {expected}"
        )

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        if self.peek().kind == "end":
            return reqs
        while True:
            reqs.append(self.requirement())
            tok = self.next()
            if tok.kind == "end":
                return reqs
            if tok.kind != ",":
                raise self.fail(tok, "',' or end of string")

    def requirement(self) -> Requirement:
        tok = self.next()
        if tok.kind == "!":
            key = self.next()
            if key.kind != "id":
                raise self.fail(key, "identifier")
            return self.build(key, DOES_NOT_EXIST, ())
        if tok.kind != "id":
            raise self.fail(tok, "!, identifier")
        key = tok
        op_tok = self.peek()
        if op_tok.kind in ("end", ","):
            return self.build(key, EXISTS, ())
        self.next()
        ops = {
            "=": EQUALS,
            "==": DOUBLE_EQUALS,
            "!=": NOT_EQUALS,
            "in": IN,
            "notin": NOT_IN,
            ">": GREATER_THAN,
            "<": LESS_THAN,
        }
        op = ops.get(op_tok.kind)
        if op is None:
            raise self.fail(op_tok, "=, ==, !=, in, notin, >, <")
        if op in _SET_OPS:
            return self.build(key, op, self.value_set())
        val = self.peek()
        if val.kind in ("end", ","):  # `a=` is `a` equal to the empty value
            return self.build(key, op, ("",))
        if val.kind not in ("id", "in", "notin"):
            raise self.fail(val, "identifier")
        self.next()
        return self.build(key, op, (val.text,))

    def value_set(self) -> tuple[str, ...]:
        tok = self.next()
        if tok.kind != "(":
            raise self.fail(tok, "'('")
        values: list[str] = []
        expect_value = True
        while True:
            tok = self.next()
            if tok.kind in ("id", "in", "notin") and expect_value:
                values.append(tok.text)
                expect_value = False
            elif tok.kind == ",":
                if expect_value:  # `(a,,b)`: the empty value between the commas
                    values.append("")
                expect_value = True
            elif tok.kind == ")":
                if expect_value and values:  # `(a,)` ends with an empty value
                    values.append("")
                return tuple(values)
            else:
                raise self.fail(tok, "identifier, ',' or ')'" if expect_value else "',' or ')'")

    def build(self, key: _Token, op: str, values: tuple[str, ...]) -> Requirement:
        vals = tuple(sorted(set(values)))
        msgs = _requirement_errors(key.text, op, vals)
        if msgs:
            raise BadRequest(
                f"unable to parse label selector {excerpt(self.text)!r}: requirement at position "
                f"{key.pos}: " + "; ".join(msgs)
            )
        return Requirement(key.text, op, vals)


def parse(text: str) -> Selector:
    """A selector from Kubernetes' string syntax; ``""`` selects everything."""
    return _make(_Parser(text).parse())
