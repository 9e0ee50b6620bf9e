"""Parsers of analysis options: ``parse(value, option name) -> canonical value``.

Each accepts what the command line gives (text: comma-separated lists, ``start:step:stop``
ranges, fractions such as ``8/255``) and what a TOML study file gives (lists, numbers), and
raises a one-line UserError naming the option. Parsers of one analysis's own options live in
its module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from cutmix_eval.errors import UserError

Parser = Callable[[Any, str], Any]


def plain(value: Any, option: str) -> Any:
    """Any value, unchanged."""
    return value


def texts(value: Any) -> list[str]:
    """A comma-separated string or a list of strings -> the stripped, non-empty strings."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def count(least: int, optional: bool = False) -> Parser:
    """A whole number of at least ``least`` (``optional``: or None); text such as ``"12"`` too."""
    def check(value: Any, option: str) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"option {option} must be a whole number of at least {least}"
                            f"{' (or left out)' if optional else ''}, not {value!r}")
        return value
    return check


def number(positive: bool = False, optional: bool = False) -> Parser:
    """A finite number (``"8/255"`` read as a fraction), > 0 when ``positive``."""
    def check(value: Any, option: str) -> float | None:
        if value is None and optional:
            return None
        try:
            out = float(Fraction(value) if isinstance(value, str) else value)
        except (TypeError, ValueError, ZeroDivisionError):
            out = float("nan")
        if not math.isfinite(out) or (positive and out <= 0):
            raise UserError(f"option {option} must be a {'positive ' if positive else ''}number, not {value!r}")
        return out
    return check


def choice(choices: Callable[[], Sequence[str]]) -> Parser:
    """One of ``choices()`` (asked when parsing, so registries filled later count)."""
    def check(value: Any, option: str) -> str:
        if value not in choices():
            raise UserError(f"option {option} must be one of {', '.join(choices())}, not {value!r}")
        return value
    return check


def choices(known: Callable[[], Sequence[str]], what: str = "") -> Parser:
    """One or more of ``known()`` (``what`` they are, for the error), duplicates dropped, in the
    order given."""
    def check(value: Any, option: str) -> tuple[str, ...]:
        values = texts(value)
        unknown = [v for v in values if v not in known()]
        if unknown or not values:
            raise UserError(f"option {option}: unknown {what + ' ' if what else ''}"
                            f"{', '.join(unknown) or '(none given)'}; choose from {', '.join(known())}")
        return tuple(dict.fromkeys(values))
    return check


def flag(value: Any, option: str) -> bool:
    """True or false."""
    if not isinstance(value, bool):
        raise UserError(f"option {option} must be true or false, not {value!r}")
    return value


def grid(value: Any, option: str) -> tuple[float, ...]:
    """Fractions in [0, 1], increasing: ``start:step:stop``, a comma list, or a list."""
    from cutmix_eval.evaluate.occlusion import check_fractions, parse_grid

    if isinstance(value, str):
        return tuple(parse_grid(value, option))
    return tuple(check_fractions([number()(v, option) for v in value], option))


def path(value: Any, option: str) -> str | None:
    """A file path as text (or None)."""
    return None if value is None else str(value)
