"""Objectives to maximize, Lucid style: small objects combined with ``+``, ``-`` and ``*``.

An objective maps a :class:`Context` (the activations of one forward pass and the images that
produced them) to ONE VALUE PER BATCH ELEMENT, so each image in a batch can chase its own
target: ``channel("conv2", [0, 1, 2, 3])`` asks image ``i`` to excite channel ``i``. Unit
arguments take an int (same unit for every image) or one unit per image.

    obj = channel("conv2", range(16)) - 0.05 * total_variation() + 0.1 * diversity("conv2")

Penalties (total variation, L1, L2, blur) are positive numbers: subtract them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from inverset.errors import InversetError
from inverset.featvis.transforms import gaussian_blur
from inverset.model import OUTPUT


@dataclass
class Context:
    """What an objective may read: ``acts[name]`` (and ``acts['out']``) and ``images``
    (the rendered images in the model's input range, before random transforms; ``alpha``
    holds the alpha channel when the parameterization has one)."""

    acts: dict[str, torch.Tensor]
    images: torch.Tensor
    alpha: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return self.images.shape[0]


class Objective:
    """A per-image score ``fn(ctx) -> tensor[B]`` with a name and the layers it reads."""

    def __init__(self, fn: Callable[[Context], torch.Tensor], name: str, layers: Iterable = ()):
        self.fn, self.name, self.layers = fn, name, tuple(dict.fromkeys(layers))

    def __call__(self, ctx: Context) -> torch.Tensor:
        v = self.fn(ctx)
        if v.dim() == 0:
            v = v.expand(ctx.batch)
        return v

    def __repr__(self) -> str:
        return self.name

    @staticmethod
    def _lift(other: Objective | float) -> Objective:
        if isinstance(other, Objective):
            return other
        if isinstance(other, int | float):
            c = float(other)
            return Objective(lambda ctx: ctx.images.new_full((ctx.batch,), c), f"{c:g}")
        raise TypeError(f"cannot combine an objective with {type(other).__name__}")

    def __add__(self, other):
        o = self._lift(other)
        return Objective(lambda c: self(c) + o(c), f"{self} + {o}", self.layers + o.layers)

    __radd__ = __add__

    def __sub__(self, other):
        o = self._lift(other)
        return Objective(lambda c: self(c) - o(c), f"{self} - {o}", self.layers + o.layers)

    def __rsub__(self, other):
        return self._lift(other) - self

    def __neg__(self):
        return Objective(lambda c: -self(c), f"-({self})", self.layers)

    def __mul__(self, other):
        o = self._lift(other)
        name = f"{o.name}*({self})" if not isinstance(other, Objective) else f"({self})*({o})"
        return Objective(lambda c: self(c) * o(c), name, self.layers + o.layers)

    __rmul__ = __mul__

    def __truediv__(self, other: float):
        if not isinstance(other, int | float):
            raise TypeError("an objective can only be divided by a number")
        return self * (1.0 / other)


def _act(ctx: Context, layer: str) -> torch.Tensor:
    a = ctx.acts.get(layer)
    if a is None:
        raise InversetError(f"layer {layer!r} produced no activation in the forward pass")
    return a


def _units(unit: int | Sequence[int] | torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """One unit index per batch element (broadcast an int; check a sequence's length)."""
    b = a.shape[0]
    u = torch.as_tensor(list(unit) if isinstance(unit, range) else unit, device=a.device)
    u = u.long().reshape(-1)
    if u.numel() == 1:
        u = u.expand(b)
    if u.numel() != b:
        raise InversetError(f"got {u.numel()} units for a batch of {b} images; give one per image")
    n = a.shape[1]
    if int(u.max()) >= n or int(u.min()) < -n:
        raise InversetError(f"unit {int(u.max())} out of range: the layer has {n} units/channels")
    return u


def _name(unit) -> str:
    if isinstance(unit, int):
        return str(unit)
    u = list(unit) if not isinstance(unit, torch.Tensor) else unit.tolist()
    return str(u[0]) if len(u) == 1 else f"{u[0]}..{u[-1]}"


def channel(layer: str, unit: int | Sequence[int]) -> Objective:
    """Spatial mean of a channel (a 2-D activation's unit itself)."""

    def fn(ctx):
        a = _act(ctx, layer)
        sel = a[torch.arange(a.shape[0], device=a.device), _units(unit, a)]
        return sel.reshape(a.shape[0], -1).mean(1)

    return Objective(fn, f"{layer}:{_name(unit)}", [layer])


def neuron(
    layer: str, unit: int | Sequence[int], position: Sequence[int] | None = None
) -> Objective:
    """One spatial position of a channel (the centre unless ``position`` is given)."""

    def fn(ctx):
        a = _act(ctx, layer)
        sel = a[torch.arange(a.shape[0], device=a.device), _units(unit, a)]
        if sel.dim() == 1:
            return sel
        pos = position if position is not None else [n // 2 for n in sel.shape[1:]]
        for p in pos:
            sel = sel[:, p]
        return sel

    return Objective(
        fn, f"{layer}:{_name(unit)}@{'centre' if position is None else position}", [layer]
    )


def class_logit(unit: int | Sequence[int]) -> Objective:
    """A class logit (unit of the model output; spatial mean for a map-shaped output)."""

    def fn(ctx):
        out = _act(ctx, OUTPUT)
        sel = out[torch.arange(out.shape[0], device=out.device), _units(unit, out)]
        return sel.reshape(out.shape[0], -1).mean(1)

    return Objective(fn, f"logit:{_name(unit)}", [OUTPUT])


def class_prob(unit: int | Sequence[int]) -> Objective:
    """A class probability (softmax over the model output's axis 1; the output itself when
    the model's last layer is a Softmax or Sigmoid, whose outputs are probabilities)."""

    def fn(ctx):
        out = _act(ctx, OUTPUT)
        p = out if getattr(ctx.acts, "probs", None) else torch.softmax(out, 1)
        sel = p[torch.arange(p.shape[0], device=p.device), _units(unit, p)]
        return sel.reshape(p.shape[0], -1).mean(1)

    return Objective(fn, f"prob:{_name(unit)}", [OUTPUT])


def direction(layer: str, vector: Sequence[float] | torch.Tensor) -> Objective:
    """Mean over positions of the activation's dot product with a unit ``vector`` (C,) or
    one vector per image (B, C): a direction in the layer's activation space."""

    def fn(ctx):
        a = _act(ctx, layer)
        v = torch.as_tensor(vector, dtype=a.dtype, device=a.device)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        v = v.reshape(-1 if v.dim() == 2 else 1, a.shape[1], *([1] * (a.dim() - 2)))
        return (a * v).sum(1).reshape(a.shape[0], -1).mean(1)

    return Objective(fn, f"direction({layer})", [layer])


def deep_dream(layer: str) -> Objective:
    """Mean squared activation of a whole layer (Deep Dream's objective)."""
    return Objective(
        lambda ctx: _act(ctx, layer).pow(2).reshape(ctx.batch, -1).mean(1),
        f"dream({layer})",
        [layer],
    )


def diversity(layer: str) -> Objective:
    """Minus the mean cosine similarity of each image's Gram matrix at ``layer`` with the
    other images' (Lucid's diversity term): pushes a batch towards different styles."""

    def fn(ctx):
        a = _act(ctx, layer)
        b, c = a.shape[:2]
        if b < 2:
            return a.new_zeros(b)
        flat = a.reshape(b, c, -1)
        gram = F.normalize((flat @ flat.transpose(1, 2)).reshape(b, -1), dim=1)
        sim = gram @ gram.T
        return -(sim.sum(1) - sim.diagonal()) / (b - 1)

    return Objective(fn, f"diversity({layer})", [layer])


def _per_image(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(1)


def total_variation() -> Objective:
    """Mean absolute difference of neighbouring pixels (a penalty: subtract it)."""

    def fn(ctx):
        x = ctx.images
        tv = x.new_zeros(x.shape[0])
        for axis in range(2, x.dim()):
            tv = tv + _per_image(x.diff(dim=axis).abs())
        return tv

    return Objective(fn, "tv")


def l1(constant: float = 0.5) -> Objective:
    """Mean |image - constant| (a penalty)."""
    return Objective(lambda ctx: _per_image((ctx.images - constant).abs()), f"l1({constant:g})")


def l2(constant: float = 0.5) -> Objective:
    """Mean (image - constant)^2 (a penalty)."""
    return Objective(lambda ctx: _per_image((ctx.images - constant) ** 2), f"l2({constant:g})")


def blur(sigma: float = 1.0) -> Objective:
    """Mean squared distance to a blurred, fixed copy of the image (a penalty pulling
    towards smoother images; Lucid's ``blur_input_each_step``)."""
    return Objective(
        lambda ctx: _per_image((ctx.images - gaussian_blur(ctx.images.detach(), sigma)) ** 2),
        f"blur({sigma:g})",
    )


def alpha_mean() -> Objective:
    """Mean opacity of images with an alpha channel (a penalty: subtract it for transparency)."""

    def fn(ctx):
        if ctx.alpha is None:
            raise InversetError("alpha_mean() needs a parameterization with alpha=True")
        return _per_image(ctx.alpha)

    return Objective(fn, "alpha")


def as_objective(
    obj: Objective | str, layer: str, units: int | Sequence[int] | torch.Tensor
) -> Objective:
    """An objective by name for ``units`` at ``layer``: 'channel', 'neuron', 'logit', 'prob',
    'dream'; an :class:`Objective` is returned unchanged."""
    if isinstance(obj, Objective):
        return obj
    makers = {
        "channel": lambda: channel(layer, units),
        "neuron": lambda: neuron(layer, units),
        "logit": lambda: class_logit(units),
        "prob": lambda: class_prob(units),
        "dream": lambda: deep_dream(layer),
    }
    if obj not in makers:
        raise InversetError(f"unknown objective {obj!r}; use one of {', '.join(makers)}")
    return makers[obj]()
