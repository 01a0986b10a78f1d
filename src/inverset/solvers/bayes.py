"""Bayesian optimization (BoTorch): a Gaussian process and a batch acquisition function.

A scrambled Sobol design of ``init`` points is evaluated in one batch; then each round fits a
``SingleTaskGP`` (inputs in the unit cube, outcomes standardized) to everything seen and picks
``batch`` new points at once by maximizing ``qLogExpectedImprovement`` with ``optimize_acqf``;
the ``batch`` points go through the model in one forward pass. Meant for inputs of up to a few
dozen dimensions (``max_dims``, 40 by default): above that a GP needs far more points than
the time allows, and the solver refuses with a message naming better choices. Integer
features are rounded before evaluation (the GP sees the rounded points' losses); linear
constraints ``A x <= b`` are repaired by projection before evaluation (or penalized with
``linear='penalty'``). Under a time limit, the GP fit and the acquisition optimization get
timeouts from the time left, and a round is not started when the last round's duration would
overrun the limit. Having no convergence test, a run that ends after its ``rounds`` is
``step_limit`` unless ``polish`` (L-BFGS-B, which has one) converged from the best point.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Any

import numpy as np
import torch
import torch.fx.experimental.symbolic_shapes

# imported with this module, when the solver is chosen (about 0.5 s the first time): inside
# the search it would be charged to the time limit; so are torch's symbolic shapes (imported
# above, with sympy: about 0.5 s), which the first GP fit imports (a 0.4 s limit took 0.85 to
# 1.5 s in a fresh process)
from botorch.acquisition.logei import qLogExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.optim import optimize_acqf
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch.quasirandom import SobolEngine

from inverset.errors import InversetError
from inverset.model import torch_threads
from inverset.problem import Problem
from inverset.result import Result
from inverset.solvers._common import Objective, run

#: under a time limit, a round's GP fit and acquisition search may take these shares of the
#: time left, so that a round leaves room for more: 0.3 and 0.4 let the first round take most
#: of the limit (a 6-feature surrogate, 3 s: 1 round, 7.20; now 5 rounds, 8.92)
FIT_SHARE = 0.1
ACQ_SHARE = 0.15


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    init: int | None = None,
    batch: int = 4,
    rounds: int | None = None,
    num_restarts: int = 8,
    raw_samples: int = 256,
    max_points: int = 400,
    max_dims: int = 40,
    polish: bool = False,
    linear: str = "repair",
) -> Result:
    """Minimize the query's loss by GP-based Bayesian optimization.

    ``init`` defaults to ``2 d + 2`` Sobol points; ``rounds`` of ``batch`` points follow (by
    default 25 without a budget, and as many as the time limit or evaluation budget allows
    with one). The GP is fitted to at most ``max_points``
    points (the best half and the most recent half) to keep each round fast.
    """
    for name, v in (
        ("batch", batch),
        ("init", init),
        ("rounds", rounds),
        ("max_points", max_points),
        ("num_restarts", num_restarts),
        ("raw_samples", raw_samples),
    ):
        if v is not None and v < 1:
            raise InversetError(f"{name} must be at least 1, got {v}")
    if raw_samples < num_restarts:  # BoTorch starts its restarts from the best raw samples
        raise InversetError(
            f"raw_samples ({raw_samples}) must be at least num_restarts ({num_restarts}): the "
            "acquisition's restarts start from the best of its raw samples"
        )
    dims = problem.space.box.size
    if dims > max_dims:
        raise InversetError(
            f"bayes handles up to {max_dims} search dimensions, this query has {dims}; use "
            "cmaes, evolution or gradient, or search a low-dimensional Latent space"
        )

    def search(obj: Objective, info: dict[str, Any]) -> str | None:
        d = obj.dim
        n0 = init or 2 * d + 2
        if obj.remaining_evals is not None:
            n0 = min(n0, obj.remaining_evals)
        U = SobolEngine(d, scramble=True, seed=int(seed)).draw(n0, dtype=torch.float64).numpy()
        Y = -obj(U)
        bounds = torch.stack([torch.zeros(d), torch.ones(d)]).double()
        info.update(init=n0, batch=batch, rounds=0)
        last = 0.0
        limit = rounds if rounds is not None else (None if obj.budgeted else 25)
        while limit is None or info["rounds"] < limit:
            # a round that would end past the limit (its search share) does not start
            if obj.time_limit is not None and obj.elapsed + last > obj.main_time_limit:
                raise obj.stop("time_limit")
            t = time.perf_counter()
            left = None if obj.time_limit is None else obj.main_time_limit - obj.elapsed
            fit_time = None if left is None else FIT_SHARE * left
            X_t, Y_t = _training_set(U, Y, max_points)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gp = SingleTaskGP(X_t, Y_t, outcome_transform=Standardize(m=1))
                # a failed fit keeps the default hyperparameters
                with contextlib.suppress(Exception):
                    fit_gpytorch_mll(
                        ExactMarginalLogLikelihood(gp.likelihood, gp),
                        optimizer_kwargs={"timeout_sec": fit_time},
                    )
                acq = qLogExpectedImprovement(gp, best_f=Y_t.max())
                q = batch
                if obj.remaining_evals is not None:
                    q = max(1, min(q, obj.remaining_evals))
                cand, _ = optimize_acqf(
                    acq,
                    bounds,
                    q=q,
                    num_restarts=num_restarts,
                    raw_samples=raw_samples,
                    timeout_sec=None if left is None else ACQ_SHARE * left,
                )
            un = cand.detach().numpy()
            yn = -obj(un, late=True)
            U, Y = np.concatenate([U, un]), np.concatenate([Y, yn])
            info["rounds"] += 1
            last = time.perf_counter() - t
        if polish:
            obj.polish(obj.to_u(obj.best_z))
        return obj.polished()

    # a GP on a few hundred points is many tiny ops: extra threads only add contention
    # (tenfold slower on a busy machine), so BoTorch runs single-threaded
    with torch_threads(1), torch.random.fork_rng():
        torch.manual_seed(int(seed))
        return run(
            problem,
            "bayes",
            search,
            time_limit=time_limit,
            max_evals=max_evals,
            progress=progress,
            linear=linear,
            polish=polish,
        )


def _training_set(U: np.ndarray, Y: np.ndarray, max_points: int):
    """GP training data: every point, or the best and the most recent half when too many;
    outcomes clipped from below so that failed evaluations do not swamp the scale."""
    idx = np.arange(len(U))
    if len(U) > max_points:
        best = np.argsort(-Y, kind="stable")[: max_points // 2]
        recent = idx[-(max_points - max_points // 2) :]
        idx = np.unique(np.concatenate([best, recent]))
    y = Y[idx]
    ok = np.abs(y) < 1e29
    floor = y[ok].min() if ok.any() else -1.0
    y = np.where(ok, y, floor)
    return torch.as_tensor(U[idx]), torch.as_tensor(y)[:, None]
