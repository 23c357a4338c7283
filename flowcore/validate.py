"""Checks of user-given settings, each failing with one line that names the setting."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` if it is an integer (not a bool) in `[minimum, maximum]`, else a ValueError."""
    if (not isinstance(value, int) or isinstance(value, bool) or value < minimum
            or (maximum is not None and value > maximum)):
        if maximum is not None:
            kind = f"an integer in [{minimum}, {maximum}]"
        else:
            kind = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def check_ints(source: Any, names: Iterable[str], minimum: int = 1) -> None:
    """`check_int` on each named field of `source` (a dataclass or any object with those attributes)."""
    for name in names:
        check_int(name, getattr(source, name), minimum)


def check_number(name: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """`value` if it is a finite real number >= `minimum` (> with `strict`), else a ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        kind = ("a positive number" if strict and minimum == 0 else "a non-negative number" if minimum == 0
                else f"a number {'>' if strict else '>='} {minimum}")
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return float(value)


def reject_unknown(given: Iterable[str], allowed: Iterable[str], what: str) -> None:
    """A ValueError naming the keys of `given` that are not in `allowed`, and the valid ones."""
    allowed = set(allowed)
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(sorted(unknown))}; valid: {', '.join(sorted(allowed))}")
