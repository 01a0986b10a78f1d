"""What counts as a whole number and as a number, for every entry point's argument checks
(API, CLI, solvers, sampler), so that all of them accept and refuse the same values: Python's
and numpy's numbers, never True/False."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np


def is_whole(v: object) -> bool:
    """An integer (Python's or numpy's), not a bool."""
    return isinstance(v, Integral) and not isinstance(v, bool | np.bool_)


def is_number(v: object) -> bool:
    """A real number (Python's or numpy's, integer or float), not a bool."""
    return isinstance(v, Real) and not isinstance(v, bool | np.bool_)


def two_numbers(v: object) -> tuple[float, float] | None:
    """``(z1, z2)`` of a range given as any two numbers (a tuple, list, array, tensor); None
    for anything else (one number, a string, three values), for the caller's one-line error."""
    if isinstance(v, str | bytes):
        return None
    try:
        ends = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
    return (float(ends[0]), float(ends[1])) if ends.shape == (2,) else None
