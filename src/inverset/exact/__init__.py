"""Exact, certified answers for piecewise-linear (ReLU) networks.

``extract`` compiles a model and target to an Affine/ReLU chain, ``interval``/``crown``
bound it over batches of boxes, ``build_milp`` makes a big-M MILP users can extend, and
``solve`` (registered as ``solver="exact"``) picks branch and bound or MILP.
"""

from inverset.exact.bounds import Bounds, crown, interval
from inverset.exact.ir import Network, extract
from inverset.exact.milp import MILPModel, MILPSolution
from inverset.exact.milp import build as build_milp
from inverset.exact.solver import compile_problem, is_supported, solve, unsupported

__all__ = [
    "Bounds",
    "MILPModel",
    "MILPSolution",
    "Network",
    "build_milp",
    "compile_problem",
    "crown",
    "extract",
    "interval",
    "is_supported",
    "solve",
    "unsupported",
]
