"""Solver registry: every solver is ``solve(problem, *, seed, time_limit, max_evals, progress,
**options) -> Result`` in a module of its own, imported only when asked for."""

from __future__ import annotations

import importlib
from collections.abc import Callable

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
