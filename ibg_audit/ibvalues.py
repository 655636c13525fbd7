"""IB value conventions: "unset" sentinels are missing values, never numbers."""

from __future__ import annotations

import math

UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INT = 2**31 - 1
UNSET_LONG = 2**63 - 1


def clean_float(value) -> float | int | None:
    """A JSON-ready number: None for unset/NaN/inf, int when the value is integral (100.0 -> 100)."""
    if value is None or value == "":
        return None
    value = float(value)
    if not math.isfinite(value) or value >= UNSET_DOUBLE:
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def clean_int(value) -> int | None:
    if value is None or value == "":
        return None
    value = int(value)
    return None if value in (UNSET_INT, UNSET_LONG) else value


def to_number(text: str):
    """Account values arrive as text: numbers become JSON numbers, anything else stays text."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return text
    if not math.isfinite(number):
        return text
    return clean_float(number)
