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
