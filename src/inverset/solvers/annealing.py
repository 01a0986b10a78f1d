"""Generalized simulated annealing (scipy ``dual_annealing``) with gradient local search.

The annealing chain visits one point at a time (scipy has no vectorized mode), so each visit
is a batch of one; its local searches are box-bounded L-BFGS-B using the model's gradients by
autograd instead of finite differences. The search runs in the unit cube. Integer features are
rounded before evaluation (the rounded point is recorded and returned; gradients pass
straight through the rounding). Linear constraints ``A x <= b`` are repaired by projection
before evaluation (or penalized with ``linear='penalty'``). With a time limit or evaluation
budget, annealing restarts with a fresh seed whenever scipy finishes, until the budget is used.
Annealing has no convergence test: scipy stops at ``maxiter``. With ``local_search`` the best
point comes from L-BFGS-B (a local optimum: 'converged'); without it the run is 'step_limit'.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import dual_annealing

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
    maxiter: int = 1000,
    initial_temp: float = 5230.0,
    visit: float = 2.62,
    accept: float = -5.0,
    local_search: bool = True,
    restarts: int = 0,
    linear: str = "repair",
) -> Result:
    """Minimize the query's loss with dual annealing (scipy's defaults for the schedule).

    ``local_search=False`` gives plain generalized simulated annealing without L-BFGS-B.
    Without a budget, annealing runs ``1 + restarts`` times.
    """
    if maxiter < 1:  # scipy loops without evaluating anything at maxiter=0
        raise InversetError(f"maxiter must be at least 1, got {maxiter}")
    if not 1 < visit <= 3:  # scipy's range for the visiting distribution's parameter
        raise InversetError(f"visit must be in (1, 3], got {visit}")

    def search(obj: Objective, info: dict[str, Any]) -> str | None:
        dim = max(obj.dim, 1)
        info.update(runs=0)
        minimizer = {
            "method": "L-BFGS-B",
            "jac": lambda u: obj.value_and_grad(u)[1],
            "options": {"maxiter": 200},
        }
        for s in restart_seeds(seed):
            dual_annealing(
                obj,
                [(0.0, 1.0)] * dim,
                maxiter=maxiter,
                minimizer_kwargs=minimizer,
                initial_temp=initial_temp,
                visit=visit,
                accept=accept,
                rng=np.random.default_rng(s),
                no_local_search=not local_search,
            )
            info["runs"] += 1
            if not obj.budgeted and info["runs"] > restarts:
                return None if local_search else "step_limit"

    return run(
        problem,
        "annealing",
        search,
        time_limit=time_limit,
        max_evals=max_evals,
        progress=progress,
        linear=linear,
        alone=True,
    )
