"""Differential evolution (scipy ``differential_evolution``, vectorized).

The whole population goes through the model in one batched forward pass per generation
(``vectorized=True``, ``updating='deferred'``). Integer inputs use scipy's native
``integrality`` (the population itself stays integral); linear constraints ``A x <= b`` are
repaired by projecting each trial point before it is evaluated (or penalized with
``linear='penalty'``). With a time limit or evaluation budget, DE restarts from a fresh
population whenever it converges, until the budget is used up. ``polish`` finishes each run
with box-bounded L-BFGS-B on the model's own gradients (continuous boxes only), instead of
scipy's finite-difference polish. In many dimensions the population ``popsize * dims`` is
capped at ``max_population`` (drawn by the same ``init`` rule): scipy's own bookkeeping on
15 x 784 points takes seconds per generation, before any model evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import differential_evolution
from scipy.stats import qmc

from inverset.errors import InversetError
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
    max_population: int = 1000,
) -> Result:
    """Minimize the query's loss with DE; ``popsize`` is scipy's multiplier (population
    ``popsize * dims``, at most ``max_population``). Without a budget, DE runs ``1 + restarts``
    times."""
    if init not in INITS:
        raise InversetError(f"init must be one of {', '.join(INITS)}; got {init!r}")
    if max_population < 5:  # scipy's smallest population
        raise InversetError(f"max_population must be at least 5, got {max_population}")

    def search(obj: Objective, info: dict[str, Any]) -> str | None:
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

        def due(intermediate_result: Any) -> bool:  # scipy's callback: True stops the run
            return obj.over_time

        size = popsize * obj.dim
        capped_size = size > max_population
        info.update(popsize=min(size, max_population), runs=0)
        capped = False  # a run stopped at maxiter, not at its tolerance
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
                init=_population(init, max_population, bounds, s) if capped_size else init,
                updating="deferred",
                vectorized=True,
                integrality=integrality,
                callback=due,
            )
            info["runs"] += 1
            capped = capped or res.nit >= maxiter
            if obj.over_time:  # stopped between generations
                obj.check()
            if polish:
                obj.polish(obj.to_u(res.x))
            if not obj.budgeted and info["runs"] > restarts:
                return "step_limit" if capped else None

    return run(
        problem,
        "evolution",
        search,
        time_limit=time_limit,
        max_evals=max_evals,
        progress=progress,
        linear=linear,
        polish=polish,
    )


#: scipy's initial population rules: the quasi-random ones by name in ``scipy.stats.qmc``
INITS = {"latinhypercube": "LatinHypercube", "sobol": "Sobol", "halton": "Halton", "random": ""}


def _population(init: str, n: int, bounds: list[tuple[float, float]], seed: int) -> np.ndarray:
    """``n`` first points in ``bounds`` by scipy's rule ``init``, for a capped population."""
    import warnings

    rng = np.random.default_rng(seed)
    d = len(bounds)
    if INITS[init]:
        with warnings.catch_warnings():  # Sobol prefers powers of two: any n is fine here
            warnings.simplefilter("ignore")
            u = getattr(qmc, INITS[init])(d, rng=rng).random(n)
    else:
        u = rng.uniform(size=(n, d))
    lo, hi = np.asarray(bounds, dtype=np.float64).T
    return lo + u * (hi - lo)
