"""Kubernetes ``resource.Quantity``: parsing, exact arithmetic and canonical formatting.

Owns the quantity grammar (the same as ``k8s.io/apimachinery/pkg/api/resource``)::

    <quantity>        ::= <signedNumber><suffix>
    <signedNumber>    ::= <number> | <sign><number>
    <sign>            ::= "+" | "-"
    <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedInteger> | "E" <signedInteger>

Values are exact ``fractions.Fraction``s (no float anywhere), so ``"0.1"`` + ``"0.2"`` is
exactly ``"300m"``.  Like Kubernetes, the integer accessors round *up* (away from zero):
``value("100m") == 1`` and ``milli_value("0.1m") == 1``, and canonical formatting rounds
up to nano precision.  Unlike Kubernetes, a bare sign (``"+"``) is refused: it needs a digit.

Pure module: no I/O.
"""

from __future__ import annotations

import re
from enum import Enum
from fractions import Fraction

__all__ = [
    "QuantityError",
    "SuffixFamily",
    "add",
    "canonicalize",
    "compare",
    "format_quantity",
    "is_zero",
    "milli_value",
    "parse_quantity",
    "quantity_family",
    "sub",
    "value",
]


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


class SuffixFamily(Enum):
    """Kubernetes' quantity Format: which suffixes a canonical form uses."""

    DECIMAL_SI = "DecimalSI"  # n u m "" k M G T P E
    BINARY_SI = "BinarySI"  # Ki Mi Gi Ti Pi Ei
    DECIMAL_EXPONENT = "DecimalExponent"  # e3, e-3


_DECIMAL_SUFFIXES: dict[str, int] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES: dict[str, int] = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXP = {0: "", **{v: k for k, v in _BINARY_SUFFIXES.items()}}

# One regex for the number, the suffix is looked up in the tables (clearer errors than one
# big alternation).  The exponent is a signed integer, as Kubernetes parses it with ParseInt.
_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)", re.DOTALL)
_EXPONENT = re.compile(r"[eE]([+-]?[0-9]+)")

_EXPECTED = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)

# Parsing is on every object the scheduler and quota look at: keep the results.
_CACHE: dict[str, tuple[Fraction, SuffixFamily]] = {}
_CACHE_MAX = 4096

QuantityLike = str | int | Fraction


def _parse(s: str) -> tuple[Fraction, SuffixFamily]:
    hit = _CACHE.get(s)
    if hit is not None:
        return hit
    if not isinstance(s, str):
        raise QuantityError(f"quantity must be a string, got {type(s).__name__}")
    m = _NUMBER.fullmatch(s)
    if m is None:  # pragma: no cover - the pattern matches any string
        raise QuantityError(f"invalid quantity {s!r}: {_EXPECTED}")
    sign, whole, frac, suffix = m.groups()
    if not whole and not frac:
        raise QuantityError(f"invalid quantity {s!r}: {_EXPECTED}")
    digits = whole + (frac or "")
    number = Fraction(int(digits or "0"), 10 ** len(frac or ""))
    if sign == "-":
        number = -number
    if suffix in _DECIMAL_SUFFIXES:
        result = number * Fraction(10) ** _DECIMAL_SUFFIXES[suffix]
        family = SuffixFamily.DECIMAL_SI
    elif suffix in _BINARY_SUFFIXES:
        result = number * (1 << _BINARY_SUFFIXES[suffix])
        family = SuffixFamily.BINARY_SI
    else:
        em = _EXPONENT.fullmatch(suffix)
        if em is None:
            raise QuantityError(f"invalid quantity {s!r}: unknown suffix {suffix!r}; {_EXPECTED}")
        exp = int(em.group(1))
        # Kubernetes refuses absurd exponents too (they overflow its int64 scale).
        if abs(exp) > 1000:
            raise QuantityError(f"invalid quantity {s!r}: exponent out of range")
        result = number * Fraction(10) ** exp
        family = SuffixFamily.DECIMAL_EXPONENT
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[s] = (result, family)
    return result, family


def parse_quantity(s: str) -> Fraction:
    """The exact value of quantity ``s``; :class:`QuantityError` if it is not one."""
    return _parse(s)[0]


def quantity_family(s: str) -> SuffixFamily:
    """The suffix family ``s`` was written in (Kubernetes keeps it for formatting)."""
    return _parse(s)[1]


def _value_of(q: QuantityLike) -> Fraction:
    if isinstance(q, str):
        return _parse(q)[0]
    if isinstance(q, bool):
        raise QuantityError("quantity must not be a boolean")
    return Fraction(q)


def _ceil_away(x: Fraction) -> int:
    """Round away from zero, as Kubernetes' ScaledValue (inf.RoundUp)."""
    n = -((-abs(x).numerator) // abs(x).denominator)
    return n if x >= 0 else -n


def value(q: QuantityLike) -> int:
    """Kubernetes' ``Value()``: the integer value, rounded up (``"100m"`` -> 1)."""
    return _ceil_away(_value_of(q))


def milli_value(q: QuantityLike) -> int:
    """Kubernetes' ``MilliValue()``: thousandths, rounded up (``"0.1m"`` -> 1)."""
    return _ceil_away(_value_of(q) * 1000)


def compare(a: QuantityLike, b: QuantityLike) -> int:
    """-1, 0 or 1 as ``a`` is less than, equal to or greater than ``b`` (``Cmp``)."""
    x, y = _value_of(a), _value_of(b)
    return (x > y) - (x < y)


def is_zero(q: QuantityLike) -> bool:
    return _value_of(q) == 0


def add(a: QuantityLike, b: QuantityLike) -> Fraction:
    return _value_of(a) + _value_of(b)


def sub(a: QuantityLike, b: QuantityLike) -> Fraction:
    return _value_of(a) - _value_of(b)


def _split_pow(n: int, base: int) -> tuple[int, int]:
    """``n == m * base**k`` with the largest ``k``; ``n`` must be non-zero."""
    k = 0
    while n % base == 0:
        n //= base
        k += 1
    return n, k


def format_quantity(
    amount: Fraction | int | str, family: SuffixFamily = SuffixFamily.DECIMAL_SI
) -> str:
    """Kubernetes' canonical text for ``amount`` in ``family``.

    Matches ``Quantity.String()``: ``1024`` BinarySI -> ``"1Ki"``, ``1536`` -> ``"1536"``,
    ``0.5`` DecimalSI -> ``"500m"``, ``1000`` -> ``"1k"``, DecimalExponent ``1000`` -> ``"1e3"``.
    Values finer than a nano are rounded up to the next nano, as Kubernetes does.
    """
    x = _value_of(amount)
    # Kubernetes keeps at most nano precision, rounding up (away from zero).
    if (x * 10**9).denominator != 1:
        x = Fraction(_ceil_away(x * 10**9), 10**9)
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    ax = abs(x)
    if family is SuffixFamily.BINARY_SI and ax >= 1024 and ax.denominator == 1:
        mantissa, k = _split_pow(ax.numerator, 1024)
        k = min(k, 6)  # Ei is the largest binary suffix
        mantissa = ax.numerator >> (10 * k)
        return f"{sign}{mantissa}{_BINARY_BY_EXP[10 * k]}"
    # Decimal: an integer mantissa times 10**exp with exp a multiple of 3, the largest such.
    scaled = ax * 10**9  # an integer now
    mantissa = scaled.numerator
    mantissa, k = _split_pow(mantissa, 10)
    exp = k - 9
    # Round the exponent down to a multiple of 3 by moving digits back into the mantissa.
    rem = exp % 3
    mantissa *= 10**rem
    exp -= rem
    if family is SuffixFamily.DECIMAL_EXPONENT:
        return f"{sign}{mantissa}" + (f"e{exp}" if exp else "")
    if exp > 18:
        mantissa *= 10 ** (exp - 18)
        exp = 18
    return f"{sign}{mantissa}{_DECIMAL_BY_EXP[exp]}"


def canonicalize(s: str) -> str:
    """``s`` in canonical form, keeping the suffix family it was written in."""
    x, family = _parse(s)
    return format_quantity(x, family)
