"""Table tests for control.api.quantity, mostly Kubernetes' own examples (quantity_test.go)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from control.api import quantity as q
from control.api.quantity import SuffixFamily


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Fraction(0)),
        ("1", Fraction(1)),
        ("+1", Fraction(1)),
        ("-1", Fraction(-1)),
        ("500m", Fraction(1, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("1Ki", Fraction(1024)),
        ("1.5Ki", Fraction(1536)),
        ("1Mi", Fraction(2**20)),
        ("1Gi", Fraction(2**30)),
        ("1Ti", Fraction(2**40)),
        ("1Pi", Fraction(2**50)),
        ("1Ei", Fraction(2**60)),
        ("1k", Fraction(1000)),
        ("1M", Fraction(10**6)),
        ("1G", Fraction(10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),
        ("100n", Fraction(1, 10**7)),
        ("1u", Fraction(1, 10**6)),
        ("128974848", Fraction(128974848)),
        ("129e6", Fraction(129 * 10**6)),
        ("129E6", Fraction(129 * 10**6)),
        ("123Mi", Fraction(123 * 2**20)),
        ("1e3", Fraction(1000)),
        ("1e+3", Fraction(1000)),
        ("1e-3", Fraction(1, 1000)),
        ("-1.5Gi", Fraction(-3 * 2**29)),
        ("0.1", Fraction(1, 10)),
        ("007", Fraction(7)),
    ],
)
def test_parse(text: str, value: Fraction) -> None:
    assert q.parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "a",
        ".",
        "+",
        "-",
        "1.1.1",
        "1i",
        "1K",
        "1Kb",
        "1MiB",
        "1Ki1",
        "1e",
        "1ee3",
        "1e1.5",
        "1m1",
        "1x",
        "Ki",
        "--1",
        "1,5",
        "1_000",
    ],
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(q.QuantityError, match="quantit"):
        q.parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0", "0"),
        ("0n", "0"),
        ("0Ki", "0"),
        ("1", "1"),
        ("+1", "1"),
        ("-1", "-1"),
        ("1Ki", "1Ki"),
        ("1024Ki", "1Mi"),
        ("1.5Ki", "1536"),
        ("0.5Gi", "512Mi"),
        ("100Ki", "100Ki"),
        ("1023", "1023"),
        ("1000k", "1M"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("1.5", "1500m"),
        ("0.5", "500m"),
        ("12.34", "12340m"),
        ("0.001", "1m"),
        ("0.0001", "100u"),
        ("0.1m", "100u"),
        ("100n", "100n"),
        ("0.1n", "1n"),  # below a nano: rounded up
        ("-0.1n", "-1n"),
        ("1e3", "1e3"),
        ("1E3", "1e3"),
        ("1.5e3", "1500"),
        ("129e6", "129e6"),
        ("1e-3", "1e-3"),
        ("1E", "1E"),
        ("100000000000000000000", "100E"),
        ("0.5Ki", "512"),  # under 1024 BinarySI is shown as DecimalSI
        ("1.5Mi", "1536Ki"),
    ],
)
def test_canonicalize(text: str, canonical: str) -> None:
    assert q.canonicalize(text) == canonical


@pytest.mark.parametrize(
    ("amount", "family", "text"),
    [
        (Fraction(1, 2), SuffixFamily.DECIMAL_SI, "500m"),
        (2048, SuffixFamily.BINARY_SI, "2Ki"),
        (Fraction(3, 2), SuffixFamily.BINARY_SI, "1500m"),
        (10**6, SuffixFamily.DECIMAL_EXPONENT, "1e6"),
        (0, SuffixFamily.BINARY_SI, "0"),
        ("1Gi", SuffixFamily.DECIMAL_SI, "1073741824"),
    ],
)
def test_format(amount: Fraction | int | str, family: SuffixFamily, text: str) -> None:
    assert q.format_quantity(amount, family) == text


@pytest.mark.parametrize(
    ("text", "value", "milli"),
    [
        ("1", 1, 1000),
        ("100m", 1, 100),
        ("0.1m", 1, 1),
        ("1500m", 2, 1500),
        ("1Ki", 1024, 1024000),
        ("-100m", -1, -100),
        ("0", 0, 0),
    ],
)
def test_value_and_milli(text: str, value: int, milli: int) -> None:
    assert q.value(text) == value
    assert q.milli_value(text) == milli


@pytest.mark.parametrize(
    ("a", "b", "result"),
    [("1", "1000m", 0), ("1Gi", "1G", 1), ("500m", "0.6", -1), ("1Ki", 1024, 0)],
)
def test_compare(a: str, b: str | int, result: int) -> None:
    assert q.compare(a, b) == result


def test_arithmetic_is_exact() -> None:
    assert q.format_quantity(q.add("0.1", "0.2")) == "300m"
    assert q.sub("1Gi", "512Mi") == 2**29
    assert q.is_zero("0Mi")
    assert q.quantity_family("1Gi") is SuffixFamily.BINARY_SI
    assert q.quantity_family("1e3") is SuffixFamily.DECIMAL_EXPONENT
