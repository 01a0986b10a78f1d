"""The Python door: ``maximize``, ``minimize``, ``reach``, ``in_range`` and ``solve``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from torch import nn

from inverset.domain import Box
from inverset.errors import InversetError
from inverset.goal import Goal
from inverset.problem import Problem
from inverset.result import Result
from inverset.solvers import check_options, check_time_limit, get_solver
from inverset.space import Space
from inverset.target import Expr


def solve(
    model: nn.Module,
    target: str | Expr,
    goal: Goal,
    domain: Box | None = None,
    *,
    solver: str = "gradient",
    space: Space | None = None,
    input_shape: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    constraints: Sequence[tuple[str | Expr, float, float]] = (),
    seed: int = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    **options: Any,
) -> Result:
    """Answer one query with the named solver; the Result records the query it answered."""
    check_time_limit(time_limit)
    if max_evals is not None and max_evals < 1:
        raise InversetError(f"max_evals must be >= 1, got {max_evals}")
    t0 = time.perf_counter()
    problem = Problem.build(
        model,
        target,
        goal,
        domain,
        space=space,
        input_shape=input_shape,
        labels=labels,
        constraints=constraints,
    )
    fn = get_solver(solver)
    check_options(f"solver {solver!r}", fn, options)
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
    if goal.kind in ("maximize", "minimize") and not problem.space.box.bounded and result.message:
        result.message += (
            "; the search space is unbounded, so the value may grow without limit: give a "
            "box (domain=iv.Box(lo, hi) / --box LO,HI)"
        )
    return result


def maximize(model: nn.Module, target: str | Expr, domain: Box | None = None, **kw: Any) -> Result:
    """Inputs in ``domain`` that make ``target`` as large as possible."""
    return solve(model, target, Goal.maximize(), domain, **kw)


def minimize(model: nn.Module, target: str | Expr, domain: Box | None = None, **kw: Any) -> Result:
    """Inputs in ``domain`` that make ``target`` as small as possible."""
    return solve(model, target, Goal.minimize(), domain, **kw)


def reach(
    model: nn.Module, target: str | Expr, value: float, domain: Box | None = None, **kw: Any
) -> Result:
    """Inputs in ``domain`` whose ``target`` is as close as possible to ``value``."""
    return solve(model, target, Goal.reach(value), domain, **kw)


def in_range(
    model: nn.Module,
    target: str | Expr,
    range: tuple[float, float],
    domain: Box | None = None,
    **kw: Any,
) -> Result:
    """Inputs in ``domain`` whose ``target`` lies in ``[z1, z2]`` (several, when found)."""
    if len(range) != 2:
        raise InversetError(f"range must be two numbers (z1, z2), got {range!r}")
    return solve(model, target, Goal.range(*range), domain, **kw)
