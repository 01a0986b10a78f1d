"""The Python door: ``maximize``, ``minimize``, ``reach``, ``in_range`` and ``solve``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from inverset.checks import is_whole, two_numbers
from inverset.domain import Box
from inverset.errors import InversetError
from inverset.goal import Goal
from inverset.model import NotRepeatableError
from inverset.problem import Problem
from inverset.result import Result
from inverset.solvers import (
    NOISE_TOLERANT,
    check_options,
    check_time_limit,
    get_solver,
    unbounded,
)
from inverset.space import Latent, Space
from inverset.target import Expr
from inverset.zoo import MAX_SEARCH_SEED, MAX_SEED, check_seed


def solve(
    model: nn.Module,
    target: str | Expr,
    goal: Goal | str,
    domain: Box | None = None,
    *,
    solver: str = "gradient",
    space: Space | None = None,
    input_shape: int | Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    constraints: Sequence[tuple[str | Expr, float, float]] = (),
    seed: int | None = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    **options: Any,
) -> Result:
    """Answer one query with the named solver; the Result records the query it answered.

    ``model``: a torch module, or a fitted scikit-learn MLP (alone or after scalers in a
    Pipeline), converted exactly. A ``domain`` whose ``names`` differ in order from the model's
    feature names is matched to them by name.
    ``target``: e.g. ``"out:0"``, ``"logit:7"``, ``"prob:cat"`` (with ``labels``),
    ``"fc2:3"``, ``"conv5:197"``, ``"out:0 - 0.5*out:3"``, ``min(...)``, ``max(...)``.
    ``goal``: a :class:`Goal`, or 'maximize' / 'minimize'. ``domain``: a :class:`Box` (bounds,
    integer features, ``A x <= b``); None is the unbounded box. ``solver``: 'gradient'
    (default), 'exact' (certified, ReLU networks), 'auto', or a black-box one: 'evolution',
    'annealing', 'basinhopping', 'cmaes', 'swarm', 'bayes' (:data:`inverset.solvers.SOLVERS`).
    ``space``: None searches the inputs; ``Latent(G, dim)`` a generator's codes.
    ``input_shape``: the shape of one input without the batch axis, when the model does not
    record it. ``constraints``: ``(target, lo, hi)`` triples every answer must satisfy.
    ``seed``: an integer from 0 to 2**32 - 1 makes the run repeatable; None draws a fresh
    random seed, recorded in ``result.query["seed"]`` so the run can be repeated.
    ``time_limit``: seconds (None: none). ``max_evals``: a whole number >= 1 of model
    evaluations (None: no cap). ``progress``: a progress bar on stderr. ``options``: the
    solver's own (gradient: ``starts=32``, ``steps=300``, ``lr``, ``polish``; exact:
    ``method``, ``milp_solver``; ...); an unknown one is an error listing them.
    A Ctrl-C returns what was found so far, status ``interrupted``.
    """
    check_time_limit(time_limit)
    max_evals = _check_max_evals(max_evals)
    seed = check_seed(secrets.randbelow(MAX_SEED + 1) if seed is None else seed, MAX_SEARCH_SEED)
    goal = Goal.of(goal)
    t0 = time.perf_counter()
    try:
        problem = Problem.build(
            model,
            target,
            goal,
            domain,
            space=space,
            input_shape=input_shape,
            labels=labels,
            constraints=constraints,
            noisy_ok=solver in NOISE_TOLERANT,
        )
    except NotRepeatableError as exc:
        raise NotRepeatableError(
            f"{exc}; or, for a model noisy on purpose, use a black-box solver that takes noise "
            f"({', '.join(NOISE_TOLERANT)}: --solver cmaes)"
        ) from None
    try:  # a process's first cma, nevergrad or BoTorch import takes 1-2 s: a Ctrl-C there
        fn = get_solver(solver)  # ends the call as one during the search does
    except KeyboardInterrupt:
        fn = None
    if fn is not None:
        check_options(f"solver {solver!r}", fn, options)
    impossible = problem.impossible()
    if fn is None:
        result = Result(
            None,
            None,
            "interrupted",
            message="interrupted before the search began (while importing the solver's library)",
            solver=solver,
        )
    elif impossible is not None:  # no search can help: say so at once, with the proof
        status, why, bound = impossible
        result = Result(None, None, status, message=why, bound=bound, solver=solver)
    else:
        result = fn(
            problem,
            seed=seed,
            time_limit=time_limit,
            max_evals=max_evals,
            progress=progress,
            **options,
        )
    result.query = {
        **problem.to_dict(),
        "solver": solver,
        "seed": seed,
        "time_limit": time_limit,
        "max_evals": max_evals,
        "options": {k: v for k, v in options.items() if isinstance(v, int | float | str | bool)},
        **result.query,
    }
    result.timings.setdefault("total", time.perf_counter() - t0)
    if goal.kind in ("maximize", "minimize") and result.message:
        result.message += _unbounded_note(problem.space)
    if problem.noisy:
        result.message += (
            "; the model's outputs change from pass to pass (noise, dropout or batch "
            "statistics): each value is one noisy evaluation"
        )
    return result


def _check_max_evals(max_evals: Any) -> int | None:
    """``max_evals`` as an int >= 1 (a whole float such as 1e3 is taken), or None."""
    if max_evals is None:
        return None
    if isinstance(max_evals, float | np.floating) and float(max_evals).is_integer():
        max_evals = int(max_evals)
    if not is_whole(max_evals) or max_evals < 1:
        raise InversetError(
            f"max_evals must be a whole number >= 1 of model evaluations (or None), "
            f"got {max_evals!r}"
        )
    return int(max_evals)


def _unbounded_note(space: Space) -> str:
    """A note for max/min answers when the model's inputs can grow without limit: the search
    box is unbounded and (for a latent space) so is the box ``G(z)`` is clamped into."""
    if space.box.bounded:
        return ""
    if isinstance(space, Latent) and space.domain is not None and space.domain.bounded:
        return ""
    what, fix = unbounded(space)
    return f"; {what}, so the value may grow without limit: {fix}"


def maximize(model: nn.Module, target: str | Expr, domain: Box | None = None, **kw: Any) -> Result:
    """Inputs in ``domain`` that make ``target`` as large as possible; ``kw``: what :func:`solve`
    takes (``solver``, ``seed``, ``time_limit``, ``max_evals``, ``progress``, ``space``,
    ``input_shape``, the solver's options such as ``starts`` and ``steps``)."""
    return solve(model, target, Goal.maximize(), domain, **kw)


def minimize(model: nn.Module, target: str | Expr, domain: Box | None = None, **kw: Any) -> Result:
    """Inputs in ``domain`` that make ``target`` as small as possible; ``kw``: what :func:`solve`
    takes (``solver``, ``seed``, ``time_limit``, ``max_evals``, ``progress``, ``space``,
    ``input_shape``, the solver's options such as ``starts`` and ``steps``)."""
    return solve(model, target, Goal.minimize(), domain, **kw)


def reach(
    model: nn.Module, target: str | Expr, value: float, domain: Box | None = None, **kw: Any
) -> Result:
    """Inputs in ``domain`` whose ``target`` is as close as possible to ``value``; ``kw``: what
    :func:`solve` takes."""
    return solve(model, target, Goal.reach(value), domain, **kw)


def in_range(
    model: nn.Module,
    target: str | Expr,
    range: tuple[float, float],
    domain: Box | None = None,
    **kw: Any,
) -> Result:
    """Inputs in ``domain`` whose ``target`` lies in ``range``, ``(z1, z2)`` (several, when
    found); ``kw``: what :func:`solve` takes."""
    ends = two_numbers(range)
    if ends is None:
        raise InversetError(f"range must be two numbers (z1, z2), got {range!r}")
    return solve(model, target, Goal.range(*ends), domain, **kw)
