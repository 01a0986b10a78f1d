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
from inverset.model import OUTPUT, Activations, units_first
from inverset.target import Ref, n_classes


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
    """A per-image score ``fn(ctx) -> tensor[B]`` with a name and the layers it reads.

    ``ascent``: what gradient ascent climbs in the score's place, when not the score itself:
    a surrogate with the same maximizers whose gradient does not vanish where the score's
    does (:func:`class_prob` climbs the log-odds). A number added, subtracted or multiplied
    keeps it (the maximizers stay the surrogate's); combined with another objective (a sum,
    a difference, a product, ``extra``) the scores themselves are climbed: ``logit:3 -
    prob:5`` climbing ``logit:3 - log-odds(5)`` reached 16.2 of the 25.2 its plain sum reaches.
    """

    def __init__(
        self,
        fn: Callable[[Context], torch.Tensor],
        name: str,
        layers: Iterable = (),
        ascent: Callable[[Context], torch.Tensor] | None = None,
    ):
        self.fn, self.name, self.layers = fn, name, tuple(dict.fromkeys(layers))
        self.surrogate = ascent
        self.constant = False  # a number lifted to an objective (see _lift)

    @staticmethod
    def _batched(v: torch.Tensor, ctx: Context) -> torch.Tensor:
        return v.expand(ctx.batch) if v.dim() == 0 else v

    def __call__(self, ctx: Context) -> torch.Tensor:
        return self._batched(self.fn(ctx), ctx)

    def ascent(self, ctx: Context) -> torch.Tensor:
        """The values gradient ascent climbs: the surrogate when there is one, else the score."""
        return self._batched((self.surrogate or self.fn)(ctx), ctx)

    def __repr__(self) -> str:
        return self.name

    @staticmethod
    def _lift(other: Objective | float) -> Objective:
        if isinstance(other, Objective):
            return other
        if isinstance(other, int | float):
            c = float(other)
            lifted = Objective(lambda ctx: ctx.images.new_full((ctx.batch,), c), f"{c:g}")
            lifted.constant = True
            return lifted
        raise TypeError(f"cannot combine an objective with {type(other).__name__}")

    def _join(self, o: Objective, op: Callable, name: str) -> Objective:
        """``op`` of two objectives' scores, and of their ascents when one side has a
        surrogate and the other is a number."""
        asc = None
        if (self.constant or o.constant) and (self.surrogate or o.surrogate):

            def asc(c):
                return op(self.ascent(c), o.ascent(c))

        return Objective(lambda c: op(self(c), o(c)), name, self.layers + o.layers, asc)

    def __add__(self, other):
        o = self._lift(other)
        return self._join(o, torch.add, f"{self} + {o}")

    __radd__ = __add__

    def __sub__(self, other):
        o = self._lift(other)
        return self._join(o, torch.sub, f"{self} - {o}")

    def __rsub__(self, other):
        return self._lift(other) - self

    def __neg__(self):
        asc = (lambda c: -self.ascent(c)) if self.surrogate else None
        return Objective(lambda c: -self(c), f"-({self})", self.layers, asc)

    def __mul__(self, other):
        o = self._lift(other)
        name = f"{o.name}*({self})" if o.constant else f"({self})*({o})"
        return self._join(o, torch.mul, name)

    __rmul__ = __mul__

    def __truediv__(self, other: float):
        if not isinstance(other, int | float):
            raise TypeError("an objective can only be divided by a number")
        return self * (1.0 / other)


def _act(ctx: Context, layer: str) -> torch.Tensor:
    """The activation of ``layer`` with its units on axis 1: a layer whose units are its last
    axis (a Linear applied to a sequence, :func:`inverset.model.units_last`) moved there."""
    if ctx.acts.get(layer) is None:
        raise InversetError(f"layer {layer!r} produced no activation in the forward pass")
    return units_first(ctx.acts, layer)


def _units(
    unit: int | Sequence[int] | torch.Tensor, a: torch.Tensor, n: int | None = None
) -> torch.Tensor:
    """One unit index per batch element (broadcast an int; check a sequence's length) among
    ``n`` units (default: ``a``'s axis 1)."""
    b = a.shape[0]
    u = torch.as_tensor(list(unit) if isinstance(unit, range) else unit, device=a.device)
    u = u.long().reshape(-1)
    if u.numel() == 1:
        u = u.expand(b)
    if u.numel() != b:
        raise InversetError(f"got {u.numel()} units for a batch of {b} images; give one per image")
    n = a.shape[1] if n is None else n
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
    """A class logit (unit of the model output; spatial mean for a map-shaped output). A
    model whose last layer is a Softmax or Sigmoid has no logits: an error naming
    :func:`class_prob`, as the core target ``logit:k`` is."""

    def fn(ctx):
        out = _act(ctx, OUTPUT)
        probs = getattr(ctx.acts, "probs", None)
        if probs:
            raise InversetError(
                f"logit:{_name(unit)}: the model outputs probabilities (its last layer is "
                f"{probs}), not logits; use the objective prob (--objective prob, "
                f"objective='prob', class_prob), which reads them, or load or export the model "
                f"without the final {probs}"
            )
        sel = out[torch.arange(out.shape[0], device=out.device), _units(unit, out)]
        return sel.reshape(out.shape[0], -1).mean(1)

    return Objective(fn, f"logit:{_name(unit)}", [OUTPUT])


def _classifiers(ctx: Context, unit) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The model output as one classifier per image and position: rows ``(B*S, C)`` of the
    classes along axis 1 (a flat output ``(B, C)`` stays), each row's class (its image's
    unit, among :func:`~inverset.target.n_classes` classes), and the batch size B."""
    out = _act(ctx, OUTPUT)
    b = out.shape[0]
    out = out.reshape(b, 1) if out.dim() < 2 else out
    rows = out.movedim(1, -1).reshape(-1, out.shape[1])
    u = _units(unit, out, n_classes(out.shape[1]))
    return rows, u.repeat_interleave(rows.shape[0] // b), b


def _log(t: torch.Tensor) -> torch.Tensor:
    """The log of probabilities, a probability of 0 (underflow) taken as the smallest one."""
    return t.clamp_min(torch.finfo(t.dtype).tiny).log()


def _log_odds(rows: torch.Tensor, u: torch.Tensor, probs: str | None) -> torch.Tensor:
    """``log(p / (1 - p))`` of each row's class ``u`` (``p`` as :func:`class_prob` reads it),
    computed without cancellation: from the logits, ``z_k - logsumexp_{j != k} z_j`` (a
    single logit: ``z`` for class 1, ``-z`` for class 0); from a Softmax's output,
    ``log p_k - log sum_{j != k} p_j``; from a Sigmoid's, each output its own binary class."""
    n = rows.shape[1]
    if n == 1:
        z = rows[:, 0]
        z = _log(z) - _log(1 - z) if probs else z
        return torch.where(u == 1, z, -z)
    mine = F.one_hot(u, n).bool()
    own = rows.gather(1, u[:, None])[:, 0]
    if probs == "Softmax":
        return _log(own) - _log(rows.masked_fill(mine, 0).sum(1))
    if probs:
        return _log(own) - _log(1 - own)
    return own - rows.masked_fill(mine, float("-inf")).logsumexp(1)


def class_prob(unit: int | Sequence[int]) -> Objective:
    """A class probability, as the core target ``prob:k`` defines it
    (:class:`inverset.target.Ref`, whose code computes it): the softmax of the outputs; for a
    single output (a binary classifier, classes 0 and 1) its sigmoid for class 1 and one
    minus it for class 0; the output itself when the model's last layer is a Softmax or
    Sigmoid, whose outputs are probabilities. A map-shaped output (C, H, W) is a classifier
    per position along axis 1: the value is the mean over positions.

    Gradient ascent climbs the log-odds ``log(p / (1 - p))`` (from the logits: the class's
    logit minus the log-sum-exp of the others), which rises with ``p`` (the same maximizers)
    and, unlike ``p`` or ``log p``, keeps a gradient both on a class the model gives ~1e-11
    and on one near 1; the value reported is the probability."""

    def fn(ctx):
        rows, u, b = _classifiers(ctx, unit)
        acts = Activations({OUTPUT: rows})
        acts.probs = getattr(ctx.acts, "probs", None)
        p = rows.new_zeros(rows.shape[0])
        for k in u.unique().tolist():
            p = torch.where(u == k, Ref("prob", OUTPUT, (k,)).evaluate(acts), p)
        return p.reshape(b, -1).mean(1)

    def log_odds(ctx):
        rows, u, b = _classifiers(ctx, unit)
        v = _log_odds(rows, u, getattr(ctx.acts, "probs", None))
        return v.reshape(b, -1).mean(1)

    return Objective(fn, f"prob:{_name(unit)}", [OUTPUT], ascent=log_odds)


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
