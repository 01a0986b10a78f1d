"""Solver registry: every solver is ``solve(problem, *, seed, time_limit, max_evals, progress,
**options) -> Result`` in a module of its own, imported only when asked for."""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import math
import random
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

from inverset.checks import is_number
from inverset.errors import InversetError, missing_package

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


#: solvers that take a model whose outputs change from pass to pass (noise on purpose): they
#: compare values without gradients, and the result says the values are noisy
NOISE_TOLERANT = ("annealing", "evolution", "swarm", "cmaes", "bayes")


def get_solver(name: str) -> Callable:
    """The solve function registered under ``name`` (error lists the valid names)."""
    if name not in SOLVERS:
        raise InversetError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}")
    module, func = SOLVERS[name].split(":")
    try:
        with global_rngs_kept():  # a library's first import may draw from them
            mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise missing_package(exc, f"solver {name!r}") or exc from None
    return getattr(mod, func)


@contextlib.contextmanager
def global_rngs_kept() -> Iterator[None]:
    """numpy's and Python's global random states as they were after the block: cma seeds
    ``np.random`` with the solver's seed, nevergrad draws from it, and a user's own draws
    after a solve must not depend on which solver ran."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


#: what every solver takes from the query itself, not as a solver option
COMMON = ("problem", "seed", "time_limit", "max_evals", "progress")


def check_time_limit(time_limit: float | None) -> None:
    """A time limit is None (none) or a number of seconds >= 0 (not NaN)."""
    if time_limit is None:
        return
    if not is_number(time_limit):
        raise InversetError(f"time limit must be a number of seconds >= 0, got {time_limit!r}")
    if not time_limit >= 0:
        raise InversetError(f"time limit must be >= 0 seconds, got {time_limit}")


def unbounded(space: Any) -> tuple[str, str]:
    """(what is unbounded, how to bound it) for a search space whose box is not finite: a
    latent code with ``bound=inf`` (the query's box bounds G(z), not z) or the input box."""
    from inverset.space import Direct

    if not isinstance(space, Direct):
        return (
            "the latent space is unbounded (Latent bound=inf; the box bounds G(z), not z)",
            "give Latent a finite bound (iv.Latent(G, dim, bound=3.0) / --latent-bound)",
        )
    return (
        "the search box is unbounded",
        "give finite lo/hi for every feature (domain=iv.Box(lo, hi) / --box LO,HI or "
        "--box-file data.csv)",
    )


def check_options(
    name: str, fn: Callable, options: Iterable[str], exclude: Iterable[str] = COMMON
) -> None:
    """Raise a one-line error for options ``fn`` (solver or sampler ``name``) does not take,
    listing the ones it does, and (``options`` a dict) for values not of their kind: integer,
    number or true/false, from the default or, for a default of None, from the annotation
    (``int | None``). A function that forwards ``**options`` to other solvers names them in
    its ``forwards_to`` attribute (``auto``): an option must then be one of its own or one at
    least one of them takes, with a value that one of them accepts."""
    params = inspect.signature(fn).parameters
    skip = set(exclude)
    valid = [
        k
        for k, p in params.items()
        if k not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    forwards = any(p.kind is p.VAR_KEYWORD for p in params.values())
    targets = getattr(fn, "forwards_to", None) if forwards else None
    rest = [k for k in options if k not in valid]
    if rest and targets is not None:
        _check_forwarded(name, valid, targets, options, rest)
    elif rest and not forwards:
        raise InversetError(
            f"unknown option {rest[0]!r} for {name}; its options: {', '.join(valid)}"
        )
    if not isinstance(options, Mapping) or not options:
        return
    hints = _hints(fn)
    for k, v in options.items():
        if k in valid:
            _check_value(name, k, v, params[k].default, hints.get(k))


def _check_forwarded(
    name: str, own: list[str], targets: Iterable[str], options: Iterable[str], rest: list[str]
) -> None:
    """``rest`` (options not ``name``'s own) must each be taken by one of the solvers
    ``targets``, with a value (``options`` a dict) one of them accepts."""
    takers: dict[str, list[tuple[str, Callable]]] = {}
    for solver in targets:
        try:
            fn = get_solver(solver)
        except InversetError:  # not installed: it is never picked
            continue
        for k in inspect.signature(fn).parameters:
            if k not in COMMON:
                takers.setdefault(k, []).append((solver, fn))
    unknown = [k for k in rest if k not in takers]
    if unknown:
        raise InversetError(
            f"unknown option {unknown[0]!r} for {name}; its options: {', '.join(own)}, and "
            f"those of the solvers it may pick ({', '.join(targets)}): "
            f"{', '.join(sorted(takers))}"
        )
    if not isinstance(options, Mapping):
        return
    for k in rest:
        errors = []
        for solver, fn in takers[k]:
            try:
                check_options(f"solver {solver!r}", fn, {k: options[k]})
            except InversetError as exc:
                errors.append(exc)
            else:
                break
        else:
            raise errors[0]


@functools.cache
def _hints(fn: Callable) -> dict[str, Any]:
    """``fn``'s resolved annotations (none when one cannot be resolved); resolving them costs
    as much as a small MILP's solve, so once per function."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a name imported only for type checkers
        return {}


#: the value kinds an option is checked against, and how an error names them
KINDS: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool, np.bool_), "true or false"),
    int: ((Integral,), "an integer"),
    float: ((Real,), "a number"),
}


def _kind(default: Any, hint: Any) -> type | None:
    """bool, int or float: the default's type, or for a default of None the one plain number
    type of the annotation (``int | None`` -> int); None when it is neither (the solver
    checks such values itself)."""
    if default is not None:  # a numpy scalar default (0.5 / np.log(2.0)) as its Python type
        default = default.item() if isinstance(default, np.generic) else default
        return type(default) if type(default) in KINDS else None
    args = set(typing.get_args(hint)) - {type(None)} if hint is not None else set()
    if len(args) == 1 and (t := args.pop()) in KINDS:
        return t
    return None


def _check_value(name: str, k: str, v: Any, default: Any, hint: Any) -> None:
    """One option's value against its kind (see :func:`check_options`)."""
    if default is None and v is None:
        return
    kind = _kind(default, hint)
    if kind is None:
        return
    kinds, what = KINDS[kind]
    wrong_bool = isinstance(v, bool | np.bool_) and kind is not bool
    if not isinstance(v, kinds) or wrong_bool:
        nothing = " or None" if default is None else ""
        raise InversetError(f"option {k!r} of {name} takes {what}{nothing}, got {v!r}")
    if kind is bool or default is None:  # ranges of None-default options: the solver's
        return
    # sizes, counts, steps and rates: a positive default means the value cannot be negative
    if not math.isfinite(v):
        raise InversetError(f"option {k!r} of {name} must be a finite number, got {v!r}")
    if default > 0 and v < 0:  # the solver may ask for more (starts >= 1): not said here
        raise InversetError(f"option {k!r} of {name} cannot be negative, got {v!r}")
