"""How the search variable ``z`` becomes a model input ``x``.

``Direct`` searches the inputs themselves inside the domain. ``Latent`` searches the code of a
generator (a VAE/GAN decoder) so that ``x = G(z)`` looks like real data. Image
parameterizations (Fourier, decorrelated colour) live in :mod:`inverset.featvis.param`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from inverset.domain import Box


class Space:
    """Search space protocol: a box for ``z`` and a differentiable map ``z -> x``."""

    #: the box the search variable lives in (what solvers project onto)
    box: Box

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": type(self).__name__}


class Direct(Space):
    """Search the model inputs directly: ``x = z``, ``z`` in the query's domain."""

    def __init__(self, box: Box):
        self.box = box

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        return z


class Latent(Space):
    """Search the code of ``generator``: ``x = G(z)`` with ``z`` in ``[-bound, bound]^dim``.

    The generator's output is clamped into the input domain so that every point handed to the
    model is a valid input.
    """

    def __init__(
        self,
        generator: nn.Module,
        dim: int | tuple[int, ...],
        bound: float = 3.0,
        domain: Box | None = None,
    ):
        self.generator = generator
        self.shape = (dim,) if isinstance(dim, int) else tuple(dim)
        self.bound = float(bound)
        self.box = Box(-self.bound, self.bound, shape=self.shape)
        self.domain = domain

    def with_domain(self, domain: Box) -> Latent:
        """This space clamping into ``domain`` too (a query's domain; one given here wins)."""
        return Latent(self.generator, self.shape, self.bound, self.domain or domain)

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z)`` in the dtype of ``z`` (the model's), whatever the generator's dtype."""
        gdtype = next((t.dtype for t in self.generator.parameters()), z.dtype)
        x = self.generator(z.to(gdtype)).to(z.dtype)
        if self.domain is not None and self.domain.shape is not None:
            x = x.reshape(x.shape[0], *self.domain.shape)
            lo, hi = self.domain.tensors(x.device, x.dtype)
            x = torch.maximum(torch.minimum(x, hi), lo)
        return x

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "Latent", "dim": list(self.shape), "bound": self.bound}
