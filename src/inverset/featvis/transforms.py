"""Random transforms applied to the images at every step (transformation robustness).

A visualization that still excites its unit after being padded, shifted, zoomed, rotated and
blurred looks like an object rather than an adversarial pattern. Each transform is a small
callable ``t(x, generator) -> x`` on a batch ``(B, C, *spatial)`` (1-D or 2-D spatial),
stays on ``x``'s device, and draws its randomness from the given CPU ``torch.Generator`` so
that a seed fixes the result whatever the device. Compose them with :class:`Compose` or a list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from inverset.errors import InversetError


def _randint(gen: torch.Generator, low: int, high: int, n: int = 1) -> torch.Tensor:
    return torch.randint(low, high + 1, (n,), generator=gen)


class Transform:
    """Base class; subclasses implement ``__call__(x, generator)``."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Pad(Transform):
    """Pad every spatial side by ``width`` pixels (reflect, or a constant ``value``)."""

    def __init__(self, width: int, mode: str = "reflect", value: float = 0.5):
        self.width, self.mode, self.value = int(width), mode, float(value)

    def __call__(self, x, gen):
        if self.width <= 0:
            return x
        pads = [self.width] * (2 * (x.dim() - 2))
        if self.mode == "constant":
            return F.pad(x, pads, mode="constant", value=self.value)
        mode = self.mode if min(x.shape[2:]) > self.width else "replicate"
        return F.pad(x, pads, mode=mode)


class Jitter(Transform):
    """Random crop that shifts the image by up to ``d`` pixels (size shrinks by ``d``)."""

    def __init__(self, d: int):
        self.d = int(d)

    def __call__(self, x, gen):
        if self.d <= 0:
            return x
        out = x
        for axis in range(2, x.dim()):
            n = x.shape[axis]
            d = min(self.d, n - 1)
            start = int(_randint(gen, 0, d))
            out = out.narrow(axis, start, n - d)
        return out


class _Affine(Transform):
    """Per-image random scale and rotation through one ``grid_sample`` (2-D images)."""

    scales: Sequence[float] = (1.0,)
    angles: Sequence[float] = (0.0,)

    def __call__(self, x, gen):
        b = x.shape[0]
        s = torch.tensor(self.scales, dtype=x.dtype)[
            torch.randint(len(self.scales), (b,), generator=gen)
        ]
        a = torch.tensor(self.angles, dtype=x.dtype)[
            torch.randint(len(self.angles), (b,), generator=gen)
        ]
        if x.dim() == 3:  # 1-D signals: scale only (rotation has no meaning)
            return _scale_1d(x, float(s[0]))
        a = a * (math.pi / 180.0)
        cos, sin = torch.cos(a) / s, torch.sin(a) / s
        # affine_grid's coordinates run -1..1 over each side: a rotation of the pixels of a
        # non-square image scales its sine terms by the sides' ratio (else it shears)
        r = x.shape[-2] / x.shape[-1]
        theta = torch.stack(
            [
                torch.stack([cos, -sin * r, torch.zeros_like(s)], 1),
                torch.stack([sin / r, cos, 0 * s], 1),
            ],
            1,
        ).to(x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )


def _scale_1d(x: torch.Tensor, s: float) -> torch.Tensor:
    n = x.shape[-1]
    y = F.interpolate(x, size=max(2, round(n * s)), mode="linear", align_corners=False)
    if y.shape[-1] >= n:
        start = (y.shape[-1] - n) // 2
        return y[..., start : start + n]
    left = (n - y.shape[-1]) // 2
    return F.pad(y, [left, n - y.shape[-1] - left], mode="replicate")


class RandomScale(_Affine):
    """Zoom each image by a factor drawn from ``scales`` (size kept)."""

    def __init__(self, scales: Sequence[float]):
        self.scales = tuple(float(v) for v in scales)
        self.angles = (0.0,)


class RandomRotate(_Affine):
    """Rotate each image by an angle in degrees drawn from ``angles`` (size kept)."""

    def __init__(self, angles: Sequence[float]):
        self.angles = tuple(float(v) for v in angles)
        self.scales = (1.0,)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over the spatial axes of a batch (reflect padding)."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    for axis in range(2, x.dim()):
        shape = [1] * (x.dim() - 2)
        shape[axis - 2] = k.numel()
        w = k.view(1, 1, *shape).repeat(c, 1, *([1] * (x.dim() - 2)))
        pad = [0, 0] * (x.dim() - 2)
        idx = 2 * (x.dim() - 1 - axis)
        pad[idx] = pad[idx + 1] = r
        mode = "reflect" if x.shape[axis] > r else "replicate"
        xp = F.pad(x, pad, mode=mode)
        x = (F.conv1d if x.dim() == 3 else F.conv2d)(xp, w, groups=c)
    return x


class Blur(Transform):
    """Gaussian blur with standard deviation ``sigma`` pixels (applied every step)."""

    def __init__(self, sigma: float = 0.5):
        self.sigma = float(sigma)

    def __call__(self, x, gen):
        return gaussian_blur(x, self.sigma)


class Compose(Transform):
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x, gen):
        for t in self.transforms:
            x = t(x, gen)
        return x

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


def standard(size: int) -> Compose:
    """Lucid's standard transforms, scaled from 224 px to the image size (smallest side).

    At 224 px: constant pad 12, jitter 8, scale 0.9..1.1, rotate -10..10 degrees, jitter 4
    (exactly Lucid's). Images under 32 px get a size-preserving pad-1 / jitter-2 only, since
    any zoom or rotation is large relative to a few pixels.
    """
    if size < 32:
        return Compose([Pad(1), Jitter(2)])
    u = size / 224.0
    return Compose(
        [
            Pad(round(12 * u), mode="constant"),
            Jitter(max(1, round(8 * u))),
            RandomScale([1 + (i - 5) / 50 for i in range(11)]),
            RandomRotate(list(range(-10, 11))),
            Jitter(max(1, round(4 * u))),
        ]
    )


def lucid() -> Compose:
    """Lucid's ``standard_transforms`` unscaled (pad 12, jitter 8, scale, rotate, jitter 4)."""
    return Compose(
        [
            Pad(12, mode="constant"),
            Jitter(8),
            RandomScale([1 + (i - 5) / 50 for i in range(11)]),
            RandomRotate(list(range(-10, 11))),
            Jitter(4),
        ]
    )


def as_transform(t: Transform | Sequence[Transform] | str | None, size: int) -> Compose:
    """``None``/'standard' -> :func:`standard`; 'none' -> no transforms; list -> Compose."""
    if t is None or t == "standard":
        return standard(size)
    if t == "none":
        return Compose([])
    if isinstance(t, Compose):
        return t
    if isinstance(t, Transform):
        return Compose([t])
    if isinstance(t, str):
        raise InversetError(f"unknown transforms {t!r}; use 'standard', 'none' or a list")
    if callable(t):  # one transform of the user's own
        return Compose([t])
    return Compose(list(t))
