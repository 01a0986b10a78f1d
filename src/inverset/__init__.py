"""inverset: which inputs drive this output, or this hidden neuron, where I want it?"""

import importlib
from typing import Any

from inverset.api import in_range, maximize, minimize, reach, solve
from inverset.domain import Box
from inverset.errors import InversetError, UnsupportedModelError
from inverset.goal import Goal
from inverset.loaders import load_model
from inverset.model import layers, probe
from inverset.problem import Problem
from inverset.result import Result, SaveError
from inverset.space import Direct, Latent, Space
from inverset.target import parse_target

__version__ = "0.1.0"

# Heavier capabilities load on first use, so `import inverset` stays quick.
_LAZY = {
    "sample": ("inverset.sampling", "sample"),
    "visualize": ("inverset.featvis", "visualize"),
    "dream": ("inverset.featvis", "dream"),
    "atlas": ("inverset.jobs", "atlas"),
    "load_atlas": ("inverset.jobs", "load_atlas"),
    "featvis": ("inverset.featvis", None),
    "sampling": ("inverset.sampling", None),
    "exact": ("inverset.exact", None),
    "jobs": ("inverset.jobs", None),
}


def __getattr__(name: str) -> Any:
    """Import a capability the first time it is used (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'inverset' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)


__all__ = [
    "Box",
    "Direct",
    "Goal",
    "InversetError",
    "Latent",
    "Problem",
    "Result",
    "SaveError",
    "Space",
    "UnsupportedModelError",
    "atlas",
    "dream",
    "in_range",
    "layers",
    "load_atlas",
    "load_model",
    "maximize",
    "minimize",
    "parse_target",
    "probe",
    "reach",
    "sample",
    "solve",
    "visualize",
]
