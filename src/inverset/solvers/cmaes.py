"""CMA-ES (the ``cma`` package), ask/tell with the whole population in one forward pass.

The search runs in the unit cube ``[0, 1]^d`` with cma's ``bounds`` option, so every asked point
lies in the box. cma has no integer support that survives this scaling: integer features are
rounded before evaluation (the rounded point is what is recorded and returned). Linear
constraints ``A x <= b`` are repaired by projection before evaluation (or penalized with
``linear='penalty'``). Whenever a run stops, CMA-ES restarts with a doubled population (IPOP):
``restarts`` times without a budget, and until the time limit or evaluation budget is used up
when one is given. Above :data:`DIAGONAL_ABOVE` dimensions the covariance is diagonal
(sep-CMA-ES, Ros & Hansen 2008): a full one costs an eigendecomposition of d x d (1.2 s at
784-D), which overran time limits and found less in the same time.
"""

from __future__ import annotations

import time
from typing import Any

# imported with this module, when the solver is chosen (cma's first import takes about 1 s):
# inside the search it would be charged to the time limit
import cma
import numpy as np

from inverset.errors import InversetError
from inverset.problem import Problem
from inverset.result import Result
from inverset.solvers._common import Objective, restart_seeds, run

#: search spaces with more dimensions than this get a diagonal covariance unless ``diagonal``
#: says otherwise (random 128-D and 784-D ReLU MLPs, 5 s: 0.909 / 2.40 diagonal, 0.880 / 1.88
#: full; 16-64-D alike)
DIAGONAL_ABOVE = 100


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    popsize: int | None = None,
    sigma0: float = 0.3,
    tolfun: float = 1e-11,
    restarts: int = 4,
    polish: bool = False,
    linear: str = "repair",
    diagonal: bool | None = None,
) -> Result:
    """Minimize the query's loss with CMA-ES from a random start in the box.

    ``popsize`` defaults to cma's ``4 + 3 ln(d)``; ``sigma0`` is relative to the box width.
    ``polish`` finishes each run with L-BFGS-B on the model's gradients (continuous boxes).
    ``diagonal``: learn only the covariance's diagonal (None: above :data:`DIAGONAL_ABOVE`
    search dimensions).
    """
    if not sigma0 > 0:
        raise InversetError(
            f"sigma0 (the initial step, relative to the box) must be > 0, got {sigma0}"
        )

    def search(obj: Objective, info: dict[str, Any]) -> str | None:
        lam = popsize or 4 + int(3 * np.log(max(obj.dim, 1)))
        diag = obj.dim > DIAGONAL_ABOVE if diagonal is None else bool(diagonal)
        info.update(runs=0, popsizes=[], covariance="diagonal" if diag else "full")
        capped = False  # a run stopped at cma's iteration cap, not at its tolerances
        # seconds of the last ask-evaluate-tell: one that would end past the time limit is
        # not begun (each restart doubles the population; asking for 40960 points took 1.6 s
        # and a 2 s limit ran to 3.9 s, the clock being read only in the evaluations)
        last = 0.0
        for s in restart_seeds(seed):
            rng = np.random.default_rng(s)
            opts = {
                "bounds": [0.0, 1.0],
                "popsize": lam,
                "seed": s,
                "verbose": -9,
                "tolfun": tolfun,
                "tolx": 1e-12,
                "CMA_diagonal": diag,
            }
            if obj.remaining_evals is not None:
                opts["maxfevals"] = obj.remaining_evals
            x0 = rng.uniform(0.1, 0.9, obj.dim) if obj.dim > 1 else rng.uniform(0.1, 0.9, 2)
            es = cma.CMAEvolutionStrategy(x0, sigma0, opts)
            info["runs"] += 1  # counted when it starts: a budget may end it
            info["popsizes"].append(lam)
            while not es.stop():
                if obj.time_limit is not None and obj.elapsed + last > obj.main_time_limit:
                    raise obj.stop("time_limit")
                t = time.perf_counter()
                xs = np.asarray(es.ask())
                es.tell(list(xs), list(obj(xs[:, : obj.dim])))
                last = time.perf_counter() - t
            capped = capped or "maxiter" in es.stop()
            if polish:
                obj.polish(obj.to_u(obj.best_z))
            if not obj.budgeted and info["runs"] > restarts:
                return "step_limit" if capped else None
            # IPOP doubles the population, unless a step of the doubled one would not fit
            # in the time left: the next run keeps this one's
            if obj.time_limit is None or obj.elapsed + 2 * last <= obj.main_time_limit:
                lam *= 2
                last *= 2

    return run(
        problem,
        "cmaes",
        search,
        time_limit=time_limit,
        max_evals=max_evals,
        progress=progress,
        linear=linear,
        polish=polish,
    )
