"""inverset: which inputs drive this output, or this hidden neuron, where I want it?"""

import importlib
from typing import Any

__version__ = "0.1.0"

# Everything loads on first use (PEP 562), so `import inverset` and `inverset --help` do not
# wait for torch.
_LAZY = {
    "in_range": ("inverset.api", "in_range"),
    "maximize": ("inverset.api", "maximize"),
    "minimize": ("inverset.api", "minimize"),
    "reach": ("inverset.api", "reach"),
    "solve": ("inverset.api", "solve"),
    "Box": ("inverset.domain", "Box"),
    "InversetError": ("inverset.errors", "InversetError"),
    "UnsupportedModelError": ("inverset.errors", "UnsupportedModelError"),
    "Goal": ("inverset.goal", "Goal"),
    "load_model": ("inverset.loaders", "load_model"),
    "layers": ("inverset.model", "layers"),
    "probe": ("inverset.model", "probe"),
    "Problem": ("inverset.problem", "Problem"),
    "Result": ("inverset.result", "Result"),
    "SaveError": ("inverset.result", "SaveError"),
    "Direct": ("inverset.space", "Direct"),
    "Latent": ("inverset.space", "Latent"),
    "Space": ("inverset.space", "Space"),
    "parse_target": ("inverset.target", "parse_target"),
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
        try:  # a submodule, as `import inverset; inverset.api` read it once imported
            return importlib.import_module(f"inverset.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"inverset.{name}":
                raise
        raise AttributeError(f"module 'inverset' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)


def __dir__() -> list[str]:
    """The lazy names too, for completion in a shell or notebook."""
    return sorted({*globals(), *_LAZY})


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
