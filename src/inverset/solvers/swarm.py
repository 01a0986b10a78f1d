"""Particle swarm optimization (nevergrad's ``ConfPSO``), ask/tell a whole swarm per pass.

The swarm flies in the unit cube (a bounded nevergrad ``Array``); each generation the whole
swarm is asked, evaluated in one batched forward pass and told back. nevergrad's PSO has no
integer support here: integer features are rounded before evaluation (the rounded point is
recorded and returned). Linear constraints ``A x <= b`` are repaired by projection before
evaluation (or penalized with ``linear='penalty'``). PSO never declares convergence: it runs
``generations`` swarms unless a time limit or evaluation budget is given, which it then uses up.
Having no convergence test, a run that ends at ``generations`` is ``step_limit`` unless
``polish`` (L-BFGS-B, which has one) converged from its best particle.
"""

from __future__ import annotations

from typing import Any

# imported with this module, when the solver is chosen (nevergrad's first import takes 1-2 s):
# inside the search it would be charged to the time limit
import nevergrad as ng
import numpy as np

from inverset.errors import InversetError
from inverset.problem import Problem
from inverset.result import Result
from inverset.solvers._common import Objective, run


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    popsize: int = 40,
    generations: int = 200,
    omega: float = 0.5 / np.log(2.0),
    phip: float = 0.5 + np.log(2.0),
    phig: float = 0.5 + np.log(2.0),
    polish: bool = False,
    linear: str = "repair",
) -> Result:
    """Minimize the query's loss with a swarm of ``popsize`` particles (SPSO-2011 constants).

    ``generations`` caps the run when no budget is given; ``polish`` finishes with L-BFGS-B on
    the model's gradients from the best particle (continuous boxes only).
    """
    if popsize < 1 or generations < 1:
        raise InversetError(
            f"popsize and generations must be at least 1, got {popsize} and {generations}"
        )

    def search(obj: Objective, info: dict[str, Any]) -> str | None:
        # clipping (not nevergrad's default bouncing) lets particles sit on the bounds, where
        # the optima of piecewise-linear models often are
        param = ng.p.Array(init=np.full(obj.dim, 0.5)).set_mutation(sigma=0.3)
        param.set_bounds(0.0, 1.0, method="clipping")
        param.random_state = np.random.RandomState(int(seed) % (2**32))
        budget = None if obj.budgeted else popsize * generations
        if obj.remaining_evals is not None:
            budget = obj.remaining_evals
        opt = ng.families.ConfPSO(popsize=popsize, omega=omega, phip=phip, phig=phig)(
            param, budget=budget, num_workers=popsize
        )
        info.update(popsize=popsize, generations=0)
        while budget is None or opt.num_ask < budget:
            n = popsize if budget is None else min(popsize, budget - opt.num_ask)
            cands = [opt.ask() for _ in range(n)]
            losses = obj(np.stack([c.value for c in cands]))
            for c, loss in zip(cands, losses, strict=True):
                opt.tell(c, float(loss))
            info["generations"] += 1
        if polish:
            obj.polish(obj.to_u(obj.best_z))
        return obj.polished()

    return run(
        problem,
        "swarm",
        search,
        time_limit=time_limit,
        max_evals=max_evals,
        progress=progress,
        linear=linear,
        polish=polish,
    )
