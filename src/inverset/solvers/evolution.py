"""Differential evolution (scipy ``differential_evolution``, vectorized).

The whole population goes through the model in one batched forward pass per generation
(``vectorized=True``, ``updating='deferred'``). Integer inputs use scipy's native
``integrality`` (the population itself stays integral); linear constraints ``A x <= b`` are
repaired by projecting each trial point before it is evaluated (or penalized with
``linear='penalty'``). With a time limit or evaluation budget, DE restarts from a fresh
population whenever it converges, until the budget is used up. ``polish`` finishes each run
with box-bounded L-BFGS-B on the model's own gradients (continuous boxes only), instead of
scipy's finite-difference polish.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inverset.problem import Problem
from inverset.result import Result
from inverset.solvers._common import Objective, restart_seeds, run


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    popsize: int = 15,
    maxiter: int = 1000,
    tol: float = 0.01,
    mutation: float | tuple[float, float] = (0.5, 1.0),
    recombination: float = 0.7,
    strategy: str = "best1bin",
    init: str = "latinhypercube",
    polish: bool = True,
    restarts: int = 0,
    linear: str = "repair",
) -> Result:
    """Minimize the query's loss with DE; ``popsize`` is scipy's multiplier (population
    ``popsize * dims``). Without a budget, DE runs ``1 + restarts`` times."""

    def search(obj: Objective, info: dict[str, Any]) -> None:
        from scipy.optimize import differential_evolution

        integrality = None
        if obj.integer.size:
            integrality = np.zeros(obj.dim, dtype=bool)
            integrality[obj.integer] = True
        bounds = list(zip(obj.lo, obj.hi, strict=True))
        if integrality is not None:
            # scipy needs integer bounds that hold a whole number for integral features
            for i in obj.integer:
                bounds[i] = (float(np.ceil(obj.lo[i])), float(np.floor(obj.hi[i])))
        fixed = obj.width <= 0
        if fixed.any():  # scipy rejects lo == hi
            bounds = [
                (a, b + 1e-12) if f else (a, b) for (a, b), f in zip(bounds, fixed, strict=True)
            ]

        def f(zt: np.ndarray) -> np.ndarray:
            return obj(obj.to_u(np.atleast_2d(zt.T)))

        info.update(popsize=popsize * obj.dim, runs=0)
        for s in restart_seeds(seed):
            res = differential_evolution(
                f,
                bounds,
                strategy=strategy,
                maxiter=maxiter,
                popsize=popsize,
                tol=tol,
                mutation=mutation,
                recombination=recombination,
                rng=np.random.default_rng(s),
                polish=False,
                init=init,
                updating="deferred",
                vectorized=True,
                integrality=integrality,
            )
            info["runs"] += 1
            if polish:
                obj.polish(obj.to_u(res.x))
            if not obj.budgeted and info["runs"] > restarts:
                return

    return run(
        problem,
        "evolution",
        search,
        time_limit=time_limit,
        max_evals=max_evals,
        progress=progress,
        linear=linear,
    )
