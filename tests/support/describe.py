"""Shared pieces of the describe tests: a fixed "now", objects from Kubernetes JSON, lines."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from control.api import convert, kinds
from control.api.timeutil import parse_rfc3339_parts

NOW = float(parse_rfc3339_parts("2024-01-01T12:00:00Z")[0])


def obj(kind: str, data: dict[str, Any]) -> Message:
    return convert.from_dict(data, kinds.by_kind(kind).message())


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]
