"""argparse types shared by the benchmark scripts: a bad value is argparse's one-line error
(exit 2), not a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from typing import Any


def positive(kind: type) -> Callable[[str], Any]:
    """A finite number of ``kind`` above zero."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        return value

    return parse


def listed(
    item: Callable[[str], Any],
    choices: Iterable[str] | None = None,
    count: int = 0,
    empty: bool = False,
):
    """A comma-separated list of ``item`` values (from ``choices`` when given; exactly
    ``count`` of them when nonzero; none only when ``empty``)."""
    valid = None if choices is None else list(choices)

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts and not empty:
            raise argparse.ArgumentTypeError("give at least one value")
        if valid is not None:
            bad = [p for p in parts if p not in valid]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {','.join(bad)}; choose from {','.join(valid)}"
                )
        if count and len(parts) != count:
            raise argparse.ArgumentTypeError(f"{text!r}: give {count} comma-separated values")
        try:
            return [item(p) for p in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None

    return parse
