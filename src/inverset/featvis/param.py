"""Image parameterizations: what the optimizer changes, and how it becomes an image.

Each parameterization is a small ``nn.Module`` whose ``forward()`` returns a batch of images
``(B, C, *spatial)`` in ``[0, 1]`` (plus an alpha channel last when ``alpha=True``); the
renderer maps ``[0, 1]`` onto the model's valid input range. A squashing sigmoid keeps every
image valid without clipping, so gradients never vanish at the range's edges.

``FourierImage`` optimizes a 1/f-scaled spectrum with decorrelated colours (Olah et al.,
"Feature Visualization", Distill 2017): plain pixel gradients are dominated by high
frequencies, and scaling the spectrum evens out the optimization across frequencies.
Both work for 1-D signals ``(C, L)`` and images ``(C, H, W)`` of any size and channel count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from inverset.errors import InversetError
from inverset.space import Latent, same_layout

#: Square root of the ImageNet colour covariance (from Lucid), used to decorrelate RGB.
IMAGENET_COLOR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64
)


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    s = tuple(int(v) for v in shape)
    if len(s) not in (2, 3) or min(s) < 1:
        raise InversetError(f"image shape must be (C, L) or (C, H, W) with positive sizes, got {s}")
    return s


def _color_matrix(channels: int, matrix: np.ndarray | Sequence | None) -> torch.Tensor | None:
    """The colour-mixing matrix normalized like Lucid (largest column norm 1), or None."""
    if matrix is None:
        if channels != 3:
            return None
        matrix = IMAGENET_COLOR_SQRT
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (channels, channels):
        raise InversetError(
            f"color matrix must be {channels}x{channels} for {channels} channels, got {m.shape}"
        )
    m = m / max(np.linalg.norm(m, axis=0).max(), 1e-12)
    return torch.tensor(m, dtype=torch.float32)


class ImageParam(nn.Module):
    """Base: a batch of ``batch`` images of ``shape`` (C, *spatial), optionally with alpha."""

    def __init__(self, shape: Sequence[int], batch: int = 1, alpha: bool = False):
        super().__init__()
        self.shape = _shape(shape)
        self.batch = int(batch)
        self.alpha = bool(alpha)
        self.channels = self.shape[0] + (1 if alpha else 0)

    def _finish(self, t: torch.Tensor, color: torch.Tensor | None) -> torch.Tensor:
        """Mix colours (if a matrix is set) and squash every channel into [0, 1]."""
        if color is not None:
            rgb = torch.einsum("bc...,dc->bd...", t[:, : self.shape[0]], color.to(t))
            t = torch.cat([rgb, t[:, self.shape[0] :]], 1)
        return torch.sigmoid(t)

    def _unsquash(self, init: torch.Tensor, color: torch.Tensor | None) -> torch.Tensor:
        """The values before :meth:`_finish` that give ``init`` (images in [0, 1], one or
        ``batch`` of them; up to the clamp: a pixel at 0 or 1 comes out at 1e-4 from it)."""
        y = torch.logit(init.detach().float().cpu().clamp(1e-4, 1 - 1e-4))
        y = y.expand(self.batch, *y.shape[1:]).clone()
        if color is not None:
            inv = torch.linalg.inv(color)
            rgb = torch.einsum("bc...,dc->bd...", y[:, : self.shape[0]], inv)
            y = torch.cat([rgb, y[:, self.shape[0] :]], 1)
        return y

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "shape": list(self.shape), "alpha": self.alpha}


class Pixels(ImageParam):
    """Pixel values themselves (through a sigmoid), optionally colour-decorrelated."""

    def __init__(
        self,
        shape: Sequence[int],
        batch: int = 1,
        alpha: bool = False,
        decorrelate: bool = True,
        color_matrix: np.ndarray | None = None,
        sd: float = 0.01,
        seed: int = 0,
        init: torch.Tensor | None = None,
    ):
        super().__init__(shape, batch, alpha)
        gen = torch.Generator().manual_seed(int(seed))
        size = (self.batch, self.channels, *self.shape[1:])
        raw = torch.randn(size, generator=gen, dtype=torch.float32) * sd  # whatever the default
        self.color = _color_matrix(self.shape[0], color_matrix) if decorrelate else None
        if init is not None:
            raw = self._unsquash(init, self.color)
        self.raw = nn.Parameter(raw)

    def forward(self) -> torch.Tensor:
        return self._finish(self.raw, self.color)


class FourierImage(ImageParam):
    """A 1/f-scaled Fourier spectrum per channel, colour-decorrelated, then squashed.

    ``decay`` is the spectrum's power-law exponent (1 = natural-image 1/f statistics);
    ``color_matrix`` (C x C) mixes channels; the default is the ImageNet RGB matrix for three
    channels and no mixing otherwise (pass ``decorrelate=False`` to turn it off for RGB).
    """

    def __init__(
        self,
        shape: Sequence[int],
        batch: int = 1,
        alpha: bool = False,
        decorrelate: bool = True,
        color_matrix: np.ndarray | None = None,
        decay: float = 1.0,
        sd: float = 0.01,
        seed: int = 0,
        init: torch.Tensor | None = None,
    ):
        super().__init__(shape, batch, alpha)
        spatial = self.shape[1:]
        freqs = [torch.fft.fftfreq(n, dtype=torch.float32) for n in spatial[:-1]]
        freqs.append(torch.fft.rfftfreq(spatial[-1], dtype=torch.float32))
        grids = torch.meshgrid(*freqs, indexing="ij")
        f = torch.sqrt(sum(g**2 for g in grids))
        scale = 1.0 / torch.clamp(f, min=1.0 / max(spatial)) ** decay
        self.register_buffer("scale", scale.float(), persistent=False)
        gen = torch.Generator().manual_seed(int(seed))
        size = (self.batch, self.channels, *scale.shape, 2)
        spec = torch.randn(size, generator=gen, dtype=torch.float32) * sd
        self.color = _color_matrix(self.shape[0], color_matrix) if decorrelate else None
        self.dims = tuple(range(2, 2 + len(spatial)))
        if init is not None:  # the spectrum whose image is init (irfftn inverts rfftn)
            t = 4.0 * self._unsquash(init, self.color)
            spec = torch.view_as_real(torch.fft.rfftn(t, dim=self.dims, norm="ortho") / scale)
        self.spectrum = nn.Parameter(spec.contiguous())

    def forward(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        t = torch.fft.irfftn(spec, s=self.shape[1:], dim=self.dims, norm="ortho")
        return self._finish(t / 4.0, self.color)


class LatentImage(ImageParam):
    """Images drawn by a generator: ``x = G(z)`` with ``z`` in ``[-bound, bound]^dim``
    (a core :class:`inverset.space.Latent`), so visualizations stay on the data manifold.

    ``value_range`` is the generator's output range; images are mapped from it to [0, 1]
    (and clamped), as every parameterization returns. ``z`` is ``bound * tanh(raw)``.
    ``device``: where the codes go in (the model's); by default the generator module's, the
    CPU for a plain callable. ``shape``: the model's input (C, H, W), which a flat generator's
    output (or one differing by axes of size 1) is laid out as.
    """

    def __init__(
        self,
        latent: Latent,
        batch: int = 1,
        seed: int = 0,
        value_range: tuple[float, float] = (0.0, 1.0),
        sd: float = 0.5,
        device: torch.device | str | None = None,
        shape: Sequence[int] | None = None,
    ):
        if not isinstance(latent, Latent):
            raise InversetError(
                f"LatentImage takes an inverset.Latent, not {type(latent).__name__}; to "
                "visualize in a generator's latent space pass param=iv.Latent(G, dim) to "
                "visualize"
            )
        if not math.isfinite(latent.bound):
            raise InversetError(
                f"a Latent space for feature visualization needs a finite bound (z = bound * "
                f"tanh(raw)), got {latent.bound}; give Latent(..., bound=3.0) or another number"
            )
        gen = torch.Generator().manual_seed(int(seed))
        raw = torch.randn((int(batch), *latent.shape), generator=gen, dtype=torch.float32) * sd
        with torch.no_grad():
            z = torch.zeros((1, *latent.shape), device=device or _device(latent))
            sample = latent.first_input(z)
        drawn = tuple(sample.shape[1:])
        if shape is not None and len(shape) in (2, 3) and tuple(shape) != drawn:
            shape = tuple(int(v) for v in shape)
            if math.prod(shape) != math.prod(drawn) or not same_layout(drawn, shape):
                raise InversetError(
                    f"the generator draws {drawn} per code, not the model's input {shape}; give "
                    "a generator whose output is the model's input (or its values, flat)"
                )
            drawn = shape
        elif len(drawn) not in (2, 3):
            raise InversetError(
                f"the generator draws {drawn} per code, not an image (C, H, W); give the "
                "model's input shape to lay it out (input_shape= / --input-shape)"
            )
        super().__init__(drawn, batch, alpha=False)
        self.latent = latent
        self.lo, self.hi = (float(v) for v in value_range)
        self.raw = nn.Parameter(raw)

    def codes(self) -> torch.Tensor:
        """The latent codes ``z`` (batch, *latent shape) of the images, detached."""
        return (self.latent.bound * torch.tanh(self.raw)).detach()

    def forward(self) -> torch.Tensor:
        z = self.latent.bound * torch.tanh(self.raw)
        x = self.latent.to_input(z).reshape(self.batch, *self.shape)
        return ((x - self.lo) / (self.hi - self.lo)).clamp(0, 1)

    def describe(self) -> dict:
        return {**super().describe(), **self.latent.to_dict()}


def _device(latent: Latent) -> torch.device:
    from inverset.model import model_device

    g = latent.generator
    return model_device(g) if isinstance(g, nn.Module) else torch.device("cpu")


PARAMS = {"fourier": FourierImage, "pixels": Pixels}


def make_param(
    kind: str | ImageParam | Latent,
    shape: Sequence[int],
    batch: int,
    device: torch.device | str | None = None,
    **kw,
) -> ImageParam:
    """A parameterization by name ('fourier' or 'pixels'), a :class:`LatentImage` for a core
    ``Latent`` space (its codes on ``device``), or the given ImageParam unchanged (its batch
    must match)."""
    if isinstance(kind, Latent):
        return LatentImage(
            kind,
            batch,
            seed=kw.get("seed", 0),
            value_range=kw["value_range"],
            device=device,
            shape=shape,
        )
    if isinstance(kind, ImageParam):
        if kind.batch != batch:
            raise InversetError(
                f"the given parameterization holds {kind.batch} images but a batch needs {batch};"
                " set batch_size to match"
            )
        return kind
    kw.pop("value_range", None)
    if kind not in PARAMS:
        raise InversetError(f"unknown param {kind!r}; use one of {', '.join(PARAMS)}")
    return PARAMS[kind](shape, batch, **kw)
