"""Solver registry: every solver is ``solve(problem, *, seed, time_limit, max_evals, progress,
**options) -> Result`` in a module of its own, imported only when asked for."""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from numbers import Integral, Real

import numpy as np

from inverset.errors import InversetError

SOLVERS: dict[str, str] = {
    "gradient": "inverset.solvers.gradient:solve",
    "exact": "inverset.exact.solver:solve",
    "basinhopping": "inverset.solvers.basinhopping:solve",
    "annealing": "inverset.solvers.annealing:solve",
    "evolution": "inverset.solvers.evolution:solve",
    "swarm": "inverset.solvers.swarm:solve",
    "cmaes": "inverset.solvers.cmaes:solve",
    "bayes": "inverset.solvers.bayes:solve",
    "auto": "inverset.solvers.auto:solve",
}


def get_solver(name: str) -> Callable:
    """The solve function registered under ``name`` (error lists the valid names)."""
    if name not in SOLVERS:
        raise InversetError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}")
    module, func = SOLVERS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise InversetError(
            f"solver {name!r} needs the missing package {exc.name!r}; "
            f"install it with: pip install 'inverset[all]'"
        ) from None
    return getattr(mod, func)


#: what every solver takes from the query itself, not as a solver option
COMMON = ("problem", "seed", "time_limit", "max_evals", "progress")


def check_time_limit(time_limit: float | None) -> None:
    """A time limit is None (none) or a number of seconds >= 0 (not NaN)."""
    if time_limit is not None and not time_limit >= 0:
        raise InversetError(f"time limit must be >= 0 seconds, got {time_limit}")


def check_options(
    name: str, fn: Callable, options: Iterable[str], exclude: Iterable[str] = COMMON
) -> None:
    """Raise a one-line error for options ``fn`` (solver or sampler ``name``) does not take,
    listing the ones it does, and (``options`` a dict) for values not of their default's kind:
    integer, number or true/false. Functions that forward ``**options`` (``auto``) accept
    anything."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [k for k in params if k not in set(exclude)]
    bad = [k for k in options if k not in valid]
    if bad:
        raise InversetError(
            f"unknown option {bad[0]!r} for {name}; its options: {', '.join(valid)}"
        )
    if not isinstance(options, Mapping):
        return
    for k, v in options.items():
        default = params[k].default
        kinds = {bool: (bool, np.bool_), int: (Integral,), float: (Real,)}.get(type(default))
        if kinds is None:  # no default or not a plain number: the solver checks it
            continue
        wrong_bool = isinstance(v, bool | np.bool_) and type(default) is not bool
        if not isinstance(v, kinds) or wrong_bool:
            what = {bool: "true or false", int: "an integer", float: "a number"}[type(default)]
            raise InversetError(f"option {k!r} of {name} takes {what}, got {v!r}")
        if isinstance(default, bool):
            continue
        # sizes, counts, steps and rates: a positive default means the value cannot be negative
        if not math.isfinite(v) or (default > 0 and v < 0):
            raise InversetError(f"option {k!r} of {name} must be a finite number >= 0, got {v!r}")
