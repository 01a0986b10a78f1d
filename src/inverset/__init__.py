"""inverset: which inputs drive this output, or this hidden neuron, where I want it?"""

from inverset.api import in_range, maximize, minimize, reach, solve
from inverset.domain import Box
from inverset.errors import InversetError, UnsupportedModelError
from inverset.goal import Goal
from inverset.loaders import load_model
from inverset.model import layers, probe
from inverset.problem import Problem
from inverset.result import Result
from inverset.space import Direct, Latent, Space
from inverset.target import parse_target

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Direct",
    "Goal",
    "InversetError",
    "Latent",
    "Problem",
    "Result",
    "Space",
    "UnsupportedModelError",
    "in_range",
    "layers",
    "load_model",
    "maximize",
    "minimize",
    "parse_target",
    "probe",
    "reach",
    "solve",
]
