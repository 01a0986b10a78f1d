"""Render feature visualizations: many units at once, and Deep Dream from a photo.

:func:`visualize` optimizes one image per target unit, all units of a batch in ONE forward
pass (image ``i`` maximizes unit ``i``), so every channel of a layer costs a few large batches
instead of a loop. :func:`dream` amplifies whatever a layer sees in an image, octave by
octave. Both run the model in eval mode with frozen parameters (restored afterwards), remove
every hook they add even on errors, follow the model's device, and are deterministic under
``seed`` on CPU. The forward pass stops at the deepest layer the objective reads when that is
safe (each read layer runs once per pass), so early layers cost only the layers before them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inverset.checks import is_whole
from inverset.domain import sparse_points
from inverset.errors import InversetError, first_line, model_backward
from inverset.featvis.objectives import Context, Objective, as_objective
from inverset.featvis.param import ImageParam, LatentImage, make_param
from inverset.featvis.transforms import Transform, as_transform
from inverset.model import (
    OUTPUT,
    WARM_STEPS,
    Activations,
    LeakyReLUs,
    check_layer_names,
    check_one_input,
    check_repeatable,
    check_rows,
    first_tensor,
    hookable_layers,
    input_shape_of,
    layer_text,
    model_device,
    model_dtype,
    named_layers,
    output_activation,
    output_rows,
    passes_units,
    probe,
    restore_mode,
    to_numpy,
    units_first,
    work_dtype,
)
from inverset.progress import progress_bar
from inverset.result import Result
from inverset.space import Latent
from inverset.target import n_classes
from inverset.zoo import MAX_SEARCH_SEED, check_seed

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage


class _Stop(Exception):
    """Raised by a hook once every activation an objective reads has been computed."""


@dataclass
class _Runner:
    """How rendered images reach the model: resize (fixed-size models) and normalize, then
    one forward pass that records the objective's layers and stops early where safe."""

    model: nn.Module
    layers: list[str]
    model_size: tuple[int, ...] | None  # resize inputs to this spatial size when set
    mean: torch.Tensor | None
    std: torch.Tensor | None
    early_stop: bool
    dtype: torch.dtype  # the model's: images are cast to it on the way in
    render: tuple[int, ...] | None = None  # a spatial size the model was seen to take
    note: str = ""  # what the runner had to change on the way (said in the message)
    #: input shapes a whole pass has run on (the layouts of layers read are known for them)
    seen: set[tuple[int, ...]] = field(default_factory=set)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.model_size is not None and tuple(x.shape[2:]) != self.model_size:
            x = _resize(x, self.model_size)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def model_input(self, x: torch.Tensor) -> np.ndarray:
        """The input the model ran on for image ``x``, in its dtype, as host numpy: what a
        result returns (a half-precision model's input too, not the float32 image)."""
        return to_numpy(self.prepare(x.detach()).to(self.dtype))

    @contextlib.contextmanager
    def session(self) -> Iterator[Callable[[torch.Tensor], dict[str, torch.Tensor]]]:
        names = [n for n in self.layers if n != OUTPUT]
        stop = self.early_stop and OUTPUT not in self.layers and bool(names)
        mods = named_layers(self.model)
        # a layer that keeps its input's layout (a GELU, a residual block) is decided by a
        # whole pass (what reads its output counts): one per input shape runs to the end
        fixed = not any(passes_units(mods[n]) for n in names)
        seen = self.seen
        may_stop = [fixed]
        with probe(self.model, names) as acts:
            handles = []
            try:
                if stop:
                    for n in names:

                        def hook(_m, _i, _o):
                            if may_stop[0] and all(k in acts for k in names):
                                raise _Stop

                        handles.append(mods[n].register_forward_hook(hook))

                probs = output_activation(self.model)

                def forward(x: torch.Tensor) -> None:
                    acts.clear()
                    shape = tuple(x.shape[1:])
                    may_stop[0] = fixed or shape in seen
                    with contextlib.suppress(_Stop):
                        acts[OUTPUT] = output_rows(first_tensor(self.model(x)), len(x))
                    seen.add(shape)

                def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
                    x = self.prepare(x).to(self.dtype)
                    try:
                        forward(x)
                    except InversetError:  # a layer never run, run twice, no row per input
                        raise
                    except (RuntimeError, ValueError, IndexError) as exc:
                        size = tuple(x.shape[2:])
                        if self.model_size is not None or self.render in (None, size):
                            raise
                        # a size the transforms made (pad, random scale) that the model does
                        # not take: from now on every image goes in at the size it took
                        self.model_size = self.render
                        self.note = (
                            f"the model fails on the transforms' {'x'.join(map(str, size))} "
                            f"inputs ({first_line(exc)}): every transformed image is resized "
                            f"to {'x'.join(map(str, self.render))}"
                        )
                        forward(_resize(x, self.render))
                    got = Activations(acts)
                    got.probs = probs  # a model ending in a Softmax: prob:k reads its output
                    return got

                yield run
            finally:
                for h in handles:
                    h.remove()


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) == size:
        return x
    if x.dim() == 3:
        return F.interpolate(x, size=size, mode="linear", align_corners=False)
    down = size[0] < x.shape[2] or size[1] < x.shape[3]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=down)


def _norm(v, c: int, spatial: int, device, dtype) -> torch.Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v, dtype=dtype, device=device).reshape(-1)
    if t.numel() not in (1, c):
        need = (
            "1 value (the model takes 1 channel)"
            if c == 1
            else f"1 or {c} values (one per channel)"
        )
        raise InversetError(f"mean/std (--mean/--std) need {need}, got {t.numel()}")
    if not torch.isfinite(t).all():
        raise InversetError(f"mean/std (--mean/--std) must be finite numbers, got {v}")
    return t.expand(c).reshape(1, c, *([1] * spatial)).clone()


def _value_range(value_range) -> tuple[float, float]:
    lo, hi = (float(v) for v in value_range)
    if not hi > lo or not (math.isfinite(lo) and math.isfinite(hi)):
        raise InversetError(
            f"value_range (--range) must be (low, high) with low < high, got {value_range}"
        )
    return lo, hi


def _check_std(std) -> None:
    if std is not None and not (np.asarray(std, dtype=np.float64) > 0).all():
        raise InversetError(f"std must be positive (it divides the input), got {std}")


MAX_PIXELS = 2048 * 2048  # per rendered image; a batch of larger ones exhausts memory
#: a dream's roll is at most this fraction (1/JITTER_SHARE) of its octave's shorter side
JITTER_SHARE = 8


class RenderOutOfMemory(InversetError):
    """A batch of ``images`` renders at ``size`` (e.g. '1024x1024') ran out of memory;
    ``why`` is the allocator's line. Its message names visualize's option; a caller that
    batches under another name rewords it with :func:`out_of_memory_message`."""

    images: int = 0
    size: str = ""
    why: str = ""


def out_of_memory_message(
    images: int, size: str, why: str, flag: str, keyword: str, size_flag: str = "--size N"
) -> str:
    """One line for a batch that ran out of memory: what ran, and the smaller batch
    (``flag``/``keyword``: the caller's option) or, for one image, a smaller size."""
    k = max(1, images // 4)
    fix = (
        f"render fewer at a time: {flag} {k} ({keyword}={k})"
        if images > 1
        else f"render smaller images: {size_flag} (size=N)"
    )
    return f"out of memory rendering {images} image(s) at {size} in one batch ({why}); {fix}"


def _is_out_of_memory(exc: BaseException) -> bool:
    """An allocator failure: torch's OutOfMemoryError (CUDA), the CPU allocator's
    RuntimeError ("DefaultCPUAllocator: can't allocate memory"), MPS's, or a MemoryError."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text
        or "DefaultCPUAllocator" in text
        or "out of memory" in text.lower()
    )


def _out_of_memory(exc: BaseException, images: int, spatial: Sequence[int]) -> RenderOutOfMemory:
    """The RenderOutOfMemory for ``exc`` in a batch of ``images`` at ``spatial``."""
    size, why = "x".join(map(str, spatial)), first_line(exc)
    err = RenderOutOfMemory(out_of_memory_message(images, size, why, "--batch-size", "batch_size"))
    err.images, err.size, err.why = images, size, why
    return err


def _check_lr(lr: float) -> None:
    """A step size must be a finite positive number (Adam refuses others with a traceback,
    and NaN would silently turn every image into NaN)."""
    try:
        v = math.nan if isinstance(lr, bool) else float(lr)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise InversetError(f"lr (--lr) must be a finite number > 0 (e.g. 0.05), got {lr!r}")


#: the fix for a render size that is no picture (the option that set it)
SIZE_FIX = "give a size of at least 2 pixels per axis: --size N or H,W (size=)"


def _check_picture(
    shape: Sequence[int] | None, what: str = "the input shape", fix: str | None = None
) -> None:
    """Refuse a shape that is no picture or signal (channels first): no axes after the
    channels or only size-1 ones (a vector), or a 2-D one a single pixel high or wide (a row
    of tabular features such as ACAS Xu's (1, 1, 5), whose valid range is not an image's).
    Small pictures (7x7) and 1-D signals of any length above 1 are fine. ``fix``: how to
    mend the option that set the shape (default: the model's input shape)."""
    if shape is None:
        return
    shape = tuple(int(v) for v in shape)
    tabular = (
        "; a model of a few features is searched with `inverset maximize` over its valid box "
        "(--box LO,HI)"
        if fix is None
        else ""
    )
    fix = fix or (
        "if the model reshapes a picture, give its shape: --input-shape 1,28,28 "
        "(input_shape=(1, 28, 28))"
    )
    if all(v == 1 for v in shape[1:]):  # (784, 1): a vector, not a picture
        raise InversetError(
            f"{what} {shape} has no picture axes to render (channels first, then height and "
            f"width); {fix}"
        )
    if len(shape) == 3 and min(shape[1:]) < 2:
        raise InversetError(
            f"{what} {shape} is a single row or column of values, not a picture (feature "
            f"visualization needs a height and width of at least 2){tabular}; {fix}"
        )


def _spatial(size, model_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The render size: the model's when not given; an int means square (or length for 1-D).
    Sizes are whole numbers >= 1 with at most MAX_PIXELS pixels per image."""
    nd = len(model_shape) - 1 if model_shape is not None else 2
    if size is None:
        if model_shape is not None:
            return tuple(model_shape[1:])
        raise InversetError(
            "the model records no input shape; give --size (size=, e.g. 128) or "
            "--input-shape 3,H,W (input_shape=(3, H, W))"
        )
    raw = [size] if is_whole(size) else list(np.ravel(np.asarray(size)))
    if not all(is_whole(v) for v in raw):
        raise InversetError(f"size (--size) must be whole numbers: N or H,W, got {size!r}")
    s = tuple(int(v) for v in raw)
    s = s * nd if len(s) == 1 else s
    if len(s) != nd:
        raise InversetError(
            f"size (--size) {s} has {len(s)} dims but the model takes {nd}-D inputs; give N or "
            f"{','.join('N' * nd) if nd else 'nothing'}"
        )
    if any(v < 1 for v in s):
        raise InversetError(f"size (--size) must be at least 1 pixel per axis, got {s}")
    if math.prod(s) > MAX_PIXELS:
        raise InversetError(
            f"size (--size) {'x'.join(map(str, s))} is too large: at most {MAX_PIXELS} pixels "
            "per image (2048x2048), as a batch of larger renders exhausts memory; 224 to 512 "
            "is usual"
        )
    return s


def _check_hookable(model: nn.Module, names: Sequence[str]) -> None:
    """Hidden layers of a TorchScript model cannot carry forward hooks, so they cannot be
    read: say so (and how to load the model instead) before any pass is tried, and before
    the names are checked (a frozen TorchScript model keeps no layers: no name would do).
    A name that is no layer of a model that has some is left to ``check_layer_names``."""
    hookable, known = hookable_layers(model), named_layers(model)
    frozen = isinstance(model, torch.jit.ScriptModule) and not known
    for n in names:
        if n not in hookable and (n in known or frozen):
            why = (
                "is inside a TorchScript model, whose hidden layers cannot be hooked"
                if known
                else "cannot be read: the model is a frozen TorchScript module, which keeps no "
                "layers"
            )
            raise InversetError(
                f"layer {n!r} {why}; visualize its output (--layer out / layer='out'), or load "
                "the model as an nn.Module (--factory package.module:function with its state "
                "dict; load_model('pkg.mod:fn', weights=...)) or as an ONNX file"
            )


def _fixed_size(model: nn.Module) -> tuple[int, ...] | None:
    """The spatial input size an ONNX file declares (its only one: onnxruntime refuses
    others, even where the converted graph would run on them), else None: other models
    (fully convolutional ones take any size) are tried at the render size first."""
    from inverset.loaders.onnx import OnnxModel

    shape = input_shape_of(model)
    return tuple(shape[1:]) if isinstance(model, OnnxModel) and shape is not None else None


def _setup(
    model: nn.Module,
    layers: list[str],
    input_shape: Sequence[int] | None,
    size,
    mean,
    std,
    also: Sequence[tuple[int, ...]] = (),
) -> tuple[_Runner, tuple[int, ...], int, dict[str, tuple[int, ...]], str]:
    """Check layer names, pick the render shape, find out whether the model takes any size
    (else inputs are resized to its fixed size, and the note says so), read layer shapes
    (units first, :func:`inverset.model.units_last`).
    ``also``: further render sizes the model must take (a dream's smaller octaves); when it
    fails on one, every input is resized to the render size it took, and the note says so."""
    names = [n for n in layers if n != OUTPUT]
    check_one_input(model)
    _check_hookable(model, names)
    check_layer_names(model, names)
    model_shape = tuple(input_shape) if input_shape is not None else input_shape_of(model)
    _check_picture(model_shape)
    spatial = _spatial(size, model_shape)
    c = model_shape[0] if model_shape is not None else 3
    _check_picture((c, *spatial), "the render shape", SIZE_FIX)
    fixed = _fixed_size(model)
    fixed = fixed if fixed is not None and len(fixed) == len(spatial) else None
    device, dtype = model_device(model), work_dtype(model)
    m, s = _norm(mean, c, len(spatial), device, dtype), _norm(std, c, len(spatial), device, dtype)
    if (m is None) != (s is None):
        raise InversetError("give both mean and std (--mean and --std) or neither")
    counts = dict.fromkeys(names, 0)
    runner = _Runner(model, layers, None, m, s, False, model_dtype(model))
    note = ""
    failure: list[Exception] = []

    def try_size(sp) -> dict[str, torch.Tensor] | None:
        """One pass at spatial size ``sp`` counting each read layer's calls; None (and the
        error kept in ``failure``) when the model's forward fails on that shape."""
        x = torch.full((1, c, *sp), 0.5, device=device, dtype=dtype)
        counts.update(dict.fromkeys(names, 0))
        mods = named_layers(model)
        with runner.session() as run:
            hs = []
            try:
                for n in names:

                    def count(_m, _i, _o, _n=n):
                        counts[_n] += 1

                    hs.append(mods[n].register_forward_hook(count))
                try:
                    return run(x)
                except InversetError:
                    raise
                except (RuntimeError, ValueError, IndexError) as exc:
                    failure.append(exc)
                    return None
            finally:
                for h in hs:
                    h.remove()

    def failed(shape: Sequence[int]) -> InversetError:
        dims = "x".join(map(str, shape))
        return InversetError(
            f"the model fails on a 1x{dims} input ({first_line(failure[-1])}); give the shape "
            "it takes: --input-shape C,H,W (input_shape=(C, H, W))"
        )

    with torch.no_grad():
        acts = try_size(spatial) if fixed in (None, spatial) else None
        if acts is None:
            own = fixed or (tuple(model_shape[1:]) if model_shape is not None else None)
            if own is None or own == spatial:
                raise failed((c, *spatial))
            runner.model_size = own
            acts = try_size(own)
            if acts is None:
                raise failed((c, *runner.model_size))
            note = (
                f"rendered at {'x'.join(map(str, spatial))} and resized to the model's fixed "
                f"input size {'x'.join(map(str, runner.model_size))}"
            )
        else:
            sizes = [sp for sp in dict.fromkeys(map(tuple, also)) if sp != spatial]
            refused = [sp for sp in sizes if try_size(sp) is None]
            if refused:
                runner.model_size = spatial
                acts = try_size(spatial)
                note = (
                    f"the model fails on {', '.join('x'.join(map(str, sp)) for sp in refused)} "
                    f"inputs: every octave is resized to {'x'.join(map(str, spatial))}"
                )
    runner.early_stop = all(v == 1 for v in counts.values())
    runner.render = runner.model_size or tuple(spatial)
    # two random pictures, run as the renders are (up to the deepest layer read): dropout or
    # batch statistics still active change the outputs from pass to pass (one line, as a
    # query's check says)
    pics = torch.rand((2, c, *spatial), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), runner.session() as run:
        pics = pics.to(device, dtype)
        try:
            two = run(pics)
        except (RuntimeError, ValueError, IndexError):
            two = None  # a model that takes one picture at a time: not checked
        for n in names:  # each image's own units: one row per picture
            if n in acts:
                check_rows(n, (two or acts)[n], 2 if two is not None else 1, "pictures")
        if two is not None:
            check_repeatable(run, pics, two, [n for n in layers if n in acts] or [OUTPUT])
    # units first: a Linear applied to a sequence (B, L, F) has F units (its last axis)
    shapes = {k: tuple(units_first(acts, k).shape[1:]) for k in acts}
    return runner, spatial, c, shapes, note


def _check_generator(latent: Latent, device: torch.device) -> None:
    """Refuse, as a query does, a generator whose pictures for the same codes change from
    pass to pass (dropout left on, batch statistics): two random codes in its box, again."""
    gen = torch.Generator().manual_seed(0)
    scale = min(latent.bound, 1.0)
    z = ((torch.rand((2, *latent.shape), generator=gen) * 2 - 1) * scale).to(device)
    with torch.no_grad():
        latent.check_repeatable(z)


def parse_channels(channels: str | int | Sequence[int] | range, n: int) -> list[int]:
    """'all' | int | 'A-B' | 'a,b,c' | range | list -> unit indices in [0, n)."""
    if isinstance(channels, str):
        text = channels.strip()
        if text == "all":
            out = list(range(n))
        else:
            spans = []  # (first, last) of each part
            try:
                for part in text.split(","):
                    if "-" in part.strip()[1:]:
                        a, b = part.split("-", 1)
                        spans.append((part.strip(), int(a), int(b)))
                    elif part.strip():
                        spans.append((part.strip(), int(part), int(part)))
            except ValueError:
                raise InversetError(
                    f"channels must be 'all', 'A-B' or 'a,b,c', got {channels!r}"
                ) from None
            out = []
            for part, a, b in spans:
                if b < a:
                    raise InversetError(
                        f"channels range {part!r} ends before it starts; write {b}-{a}"
                    )
                out += list(range(a, b + 1))
    else:
        if isinstance(channels, torch.Tensor | np.ndarray):
            channels = channels.tolist()
        items = list(channels) if isinstance(channels, Iterable) else [channels]
        wrong = [v for v in items if not is_whole(v)]
        if wrong:
            raise InversetError(
                f"channels must be whole numbers (e.g. [3, 7] or '3,7'), got {wrong[0]!r}"
            )
        out = [int(v) for v in items]
    bad = [u for u in out if not 0 <= u < n]
    if bad:
        raise InversetError(f"channel {bad[0]} out of range: the layer has {n} (0..{n - 1})")
    if not out:
        raise InversetError("no channels selected")
    return out


def _composite(x, alpha, lo, hi, gen: torch.Generator | None) -> torch.Tensor:
    """Images with alpha over a random background (training) or mid-grey (final)."""
    if alpha is None:
        return x
    if gen is None:
        bg = torch.full_like(x, (lo + hi) / 2)
    else:
        bg = (lo + (hi - lo) * torch.rand(x.shape, generator=gen)).to(x)
    return x * alpha + bg * (1 - alpha)


def _score(
    objective: Objective, ctx: Context, climbed: torch.Tensor, stand_in: torch.Tensor | None = None
) -> float:
    """The mean score of a step for the history: the values climbed, or the objective's own
    score when it climbs a surrogate (a probability's, not its log's). Rows ``stand_in`` (bool
    [B]: on leaky ReLUs) are left out, their values not the model's; NaN when every row is."""
    with torch.no_grad():
        v = (climbed if objective.surrogate is None else objective(ctx)).detach()
        if stand_in is not None:
            v = v[~stand_in.to(v.device)]
        return float(v.mean()) if v.numel() else math.nan


def _flat_rows(v: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Bool [B]: the images whose ``v`` (one value each) has an exactly zero gradient."""
    with model_backward(solvers=False, what="feature visualization"):
        (g,) = torch.autograd.grad(v.sum(), img, retain_graph=True, allow_unused=True)
    if g is None:
        return torch.ones(len(img), dtype=torch.bool, device=img.device)
    return (g.reshape(len(img), -1) == 0).all(1)


def _render_batch(
    runner: _Runner,
    param: ImageParam,
    objective: Objective,
    target: Objective,
    transforms: Transform,
    steps: int,
    lr: float,
    value_range: tuple[float, float],
    gen: torch.Generator,
    frame_every: int,
    bar,
) -> tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, list[float], list[torch.Tensor], bool, torch.Tensor
]:
    """Optimize one batch of images; the second last item says whether Ctrl-C ended the steps
    early (the images as they are then are still evaluated and returned), the last which
    targets never moved: still at their start value with a zero gradient.

    Images whose target has no gradient at the start (every ReLU it reads is off) take their
    first steps through leaky ReLUs, as the gradient solver's flat starts do
    (:class:`~inverset.model.LeakyReLUs`); on the MNIST-FC nets, whose first layer random
    images hold near -100, most logits stay stuck all the same: :func:`visualize` then starts
    them again from sparse images."""
    lo, hi = value_range
    c = param.shape[0]
    opt = torch.optim.Adam(param.parameters(), lr=lr)
    history, frames = [], []
    interrupted = False
    # the images on leaky ReLUs until step warm_end (then checked again), when any ReLU runs
    warm: torch.Tensor | None = None
    warm_end, span, leaky = 0, min(WARM_STEPS, steps // 3), False
    start: torch.Tensor | None = None  # the targets' values at the first step
    with runner.session() as run:
        try:
            for step in range(steps):
                img = param()
                x, a = lo + (hi - lo) * img[:, :c], (img[:, c:] if param.alpha else None)
                warming = warm is not None and step < warm_end
                relus = LeakyReLUs(warm if warming else None)
                with relus if step == 0 or warming else contextlib.nullcontext():
                    # the transforms see the images on [0, 1], whatever the value range: a
                    # constant pad of 0.5 is mid-grey (it was near black on 0..255)
                    seen = (_composite(x, a, lo, hi, gen) - lo) / (hi - lo)
                    ctx = Context(run(lo + (hi - lo) * transforms(seen, gen)), x, a)
                v = objective.ascent(ctx)
                if step == 0:
                    with torch.no_grad():
                        start = target(ctx).detach()
                    leaky = span > 0 and relus.calls > 0
                if leaky and step == warm_end:  # the first step and each after a warm-up
                    flat = _flat_rows(target.ascent(ctx), img)
                    warm = flat if bool(flat.any()) else None
                    warm_end = step + 1 + span
                opt.zero_grad(set_to_none=True)
                with model_backward(solvers=False, what="feature visualization"):
                    (-v.sum()).backward()
                opt.step()
                history.append(_score(objective, ctx, v, warm if warming else None))
                if frame_every and step % frame_every == 0:
                    frames.append(img.detach().cpu())
                bar.update(1, objective=history[-1])
        except KeyboardInterrupt:
            interrupted = True
        img = param()
        x, a = lo + (hi - lo) * img[:, :c], (img[:, c:] if param.alpha else None)
        xin = _composite(x, a, lo, hi, None)
        ctx = Context(run(xin), x, a)
        values = target(ctx).detach()
        stuck = _flat_rows(target.ascent(ctx), img)
        start = values if start is None else start  # Ctrl-C before the first step
        stuck &= (values - start).abs() <= 1e-9 * (1 + start.abs())
        img, xin = img.detach(), xin.detach()
    if frame_every:
        frames.append(img.cpu())
    return img, xin, values, history, frames, interrupted, stuck


#: sparse images tried per target for its second start when a target of the batch never
#: moved (a quarter of them otherwise: only a check, which a good render passes)
RESCUE_STARTS = 64


def _sparse_starts(
    runner: _Runner,
    objective: str,
    layer: str,
    units: list[int],
    shape: tuple[int, ...],
    value_range: tuple[float, float],
    seed: int,
    like: torch.Tensor,
    moving: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each unit, the one of RESCUE_STARTS sparse images
    (:func:`~inverset.domain.sparse_points`: strokes on a dark background) on which its target
    is highest: (images [n, *shape] in [0, 1], their values), in passes of as many images as
    the render's batch (``len(units)``: what the model and the memory took). ``moving``: for
    targets that never moved: also backward, and only images on which the target has a
    gradient count; else forward passes of a quarter as many images (about 2% of a 256-step
    render). Grey or noise images leave fully connected digit nets (MNIST-FC) all off; their
    units answer such images."""
    lo, hi = value_range
    n, k = len(units), RESCUE_STARTS if moving else RESCUE_STARTS // 4
    img = sparse_points((k * n, *shape), torch.Generator().manual_seed(seed)).to(like)
    which = [u for _ in range(k) for u in units]  # image i reads units[i % n]
    vals = []
    with runner.session() as run, torch.set_grad_enabled(moving):
        for i in range(0, len(img), n):
            part = img[i : i + n].requires_grad_(moving)
            x = lo + (hi - lo) * part
            target = as_objective(objective, layer, which[i : i + n])
            ctx = Context(run(x), x, None)
            v = target(ctx).detach().double().cpu()
            if moving:
                v = v.masked_fill(_flat_rows(target.ascent(ctx), part).cpu(), -math.inf)
            vals.append(v)
    v = torch.cat(vals).nan_to_num(nan=-math.inf).reshape(k, n)
    top, at = v.max(0)
    picked = img.cpu().reshape(k, n, *shape)[at, torch.arange(n)]
    return picked, top


def visualize(
    model: nn.Module,
    layer: str = OUTPUT,
    channels: str | int | Sequence[int] = "all",
    objective: str | Objective | None = None,
    *,
    size: int | Sequence[int] | None = None,
    steps: int = 256,
    param: str | ImageParam | Latent = "fourier",
    transforms: Transform | Sequence[Transform] | str | None = None,
    batch_size: int = 32,
    lr: float = 0.05,
    seed: int = 0,
    value_range: tuple[float, float] = (0.0, 1.0),
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    extra: Objective | None = None,
    alpha: bool = False,
    decorrelate: bool = True,
    color_matrix: np.ndarray | None = None,
    input_shape: Sequence[int] | None = None,
    frames: int = 0,
    progress: bool = False,
) -> Result:
    """One image per unit of ``layer`` that maximizes it: ``channels`` picks the units
    ('all', 'A-B', a list/range), rendered ``batch_size`` at a time, one target per image.

    ``objective``: 'channel' (default; spatial mean), 'neuron' (centre position), 'logit' /
    'prob' (they read the output, so another ``layer`` is an error; the default for
    ``layer='out'`` is 'logit', or 'prob' when the model's last layer is a Softmax or Sigmoid,
    which has no logits: 'logit' is then an error), 'dream', or an :class:`Objective` (then
    one batch of ``batch_size`` images is rendered for it and ``channels`` is ignored).
    'prob' is the core target ``prob:k`` (a single output has classes 0 and 1), reported as
    the probability and climbed as its log-odds, which keep a gradient on a saturated class
    (:func:`~inverset.featvis.objectives.class_prob`). ``extra`` is added
    to every image's objective (e.g. ``-0.05 * total_variation() + diversity(layer)``).
    ``param``: 'fourier' (1/f spectrum, decorrelated colour), 'pixels', an
    :class:`ImageParam`, or a core :class:`inverset.space.Latent` (images ``G(z)`` of a
    generator whose outputs lie in ``value_range``; the generator is frozen meanwhile; the
    codes are returned in ``arrays['z']``). ``transforms``: 'standard' (Lucid's, scaled to
    the image size; the default), 'none', or a list of transforms (callables ``t(x, gen)``
    of a batch on [0, 1], whatever ``value_range``); with a ``Latent`` (or
    :class:`LatentImage`) param the default is 'none': the generator already keeps images
    on its manifold, and random shifts of a small generated image (1 pixel of 8 is large)
    pull the codes away from what the model sees unshifted.
    Images live in ``value_range`` (the model's valid input range); ``mean``/``std`` normalize
    them on the way into the model, so the visualization space stays e.g. [0, 1] RGB.
    ``size`` is the render size (default: the model's input size; a model that only takes
    its own size gets resized inputs, and ``result.message`` says so: an ONNX file that
    declares a fixed input size, or a model whose forward fails at the render size; at most
    2048x2048 pixels; with a ``Latent`` param the images are the generator's output, and a
    ``size`` that differs is not applied: the message says so). The input and the render
    must be pictures (height and width at least 2) or 1-D signals: vectors and a row of
    features shaped (1, 1, 5) are refused. A batch that runs out of memory is the
    :class:`RenderOutOfMemory` error naming a smaller ``batch_size``.
    ``frames`` > 0 keeps that many snapshots of the optimization for a GIF.
    A target that ends below the best of 16 sparse images (strokes on a dark background), or
    of 64 with a gradient when a target of its batch never moved, is rendered again from that
    image, and the higher of the two renders is kept
    (with a 'fourier' or 'pixels' param and a built-in objective): grey and noise starts switch
    fully connected digit nets (MNIST-FC) off. The message and ``info['restarted']`` name them.

    Returns a Result with ``arrays['images']`` (N, C[+1 alpha], *size) in ``value_range``,
    ``arrays['targets']`` (unit per image), ``arrays['z']`` (the latent codes, with a
    ``Latent`` param), ``xs`` the images as the model receives them,
    ``values`` each image's final target activation; all in target order (not best first).
    """
    t0 = time.perf_counter()
    if steps < 1 or batch_size < 1:
        raise InversetError("steps and batch_size (--steps, --batch-size) must be at least 1")
    if frames < 0:
        raise InversetError(f"frames must be >= 0 (0: no GIF snapshots), got {frames}")
    _check_lr(lr)
    seed = check_seed(seed, MAX_SEARCH_SEED)
    lo, hi = _value_range(value_range)
    _check_std(std)
    custom = isinstance(objective, Objective)
    if objective is None and layer == OUTPUT:
        # a model ending in a Softmax/Sigmoid outputs probabilities, not logits: read them
        objective = "prob" if output_activation(model) else "logit"
    elif objective is None:
        objective = "channel"
    if objective in ("logit", "prob") and layer != OUTPUT:
        raise InversetError(
            f"objective {objective!r} raises the model's output classes, not layer {layer!r}; "
            f"drop --layer (layer=) to render classes, or use --objective channel or neuron "
            f"to render {layer!r}"
        )
    sample = objective if custom else as_objective(objective, layer, 0)
    read = list(sample.layers) + (list(extra.layers) if extra is not None else [])
    read = list(dict.fromkeys(read)) or [OUTPUT]
    count_from = OUTPUT if sample.layers == (OUTPUT,) else layer
    device = model_device(model)
    ignored = ""
    with contextlib.ExitStack() as stack:
        stack.enter_context(restore_mode(model, train=False, freeze=True))
        if isinstance(param, Latent):
            if isinstance(param.generator, nn.Module):
                stack.enter_context(restore_mode(param.generator, train=False, freeze=True))
            # the generator's output is the picture the model receives: its shape decides
            want = input_shape or getattr(model, "input_shape", None)
            drawn = LatentImage(param, 1, value_range=(lo, hi), device=device, shape=want).shape
            _check_generator(param, device)
            if size is not None and _spatial(size, drawn) != drawn[1:]:
                ignored = (
                    f"size {'x'.join(map(str, _spatial(size, drawn)))} does not apply to a "
                    f"Latent param: the images are the generator's own "
                    f"{'x'.join(map(str, drawn[1:]))} output"
                )
            size = drawn[1:]
            input_shape = drawn if input_shape is None else input_shape
        runner, spatial, c, shapes, note = _setup(model, read, input_shape, size, mean, std)
        note = "; ".join(n for n in (ignored, note) if n)
        if custom:
            units, labels = list(range(batch_size)), [objective.name] * batch_size
        else:
            shape = shapes.get(count_from)
            if shape is None or len(shape) == 0:
                raise InversetError(f"layer {layer!r} has no channel axis to visualize")
            # a single output is a binary classifier: prob has classes 0 and 1 (as prob:k)
            units = parse_channels(
                channels, n_classes(shape[0]) if objective == "prob" else shape[0]
            )
            # what each image raises: the whole layer for dream, a class for logit/prob
            if objective == "dream":
                labels = [f"dream {layer} (seed {k})" for k in range(len(units))]
            else:
                prefix = objective if objective in ("logit", "prob") else layer_text(layer)
                labels = [f"{prefix}:{u}" for u in units]
        prior = isinstance(param, Latent | LatentImage)
        tf = as_transform("none" if transforms is None and prior else transforms, min(spatial))
        chunks = [units[i : i + batch_size] for i in range(0, len(units), batch_size)]
        frame_every = max(1, steps // frames) if frames else 0
        imgs, xins, vals, frame_list, codes, stuck = [], [], [], [], [], []
        restarted: list[str] = []  # targets that moved from a second, sparse start
        cut = ""  # what a Ctrl-C stopped after a batch's first render (which stands)
        second = 0  # image-steps of those second starts
        hist, counts = np.zeros(steps), np.zeros(steps)
        interrupted = False
        with progress_bar(progress, steps * len(chunks), "visualize") as bar:

            def render(units: list[int], pseed: int, gen_seed: int, init=None):
                """The param of ``units``' images (from ``init`` when given) and its render."""
                target = objective if custom else as_objective(objective, layer, units)
                p = make_param(
                    param,
                    (c, *spatial),
                    len(units),
                    alpha=alpha,
                    decorrelate=decorrelate,
                    color_matrix=color_matrix,
                    seed=pseed,
                    value_range=(lo, hi),
                    device=device,
                    init=init,
                ).to(device=device, dtype=work_dtype(model))
                return p, _render_batch(
                    runner,
                    p,
                    target + extra if extra is not None else target,
                    target,
                    tf,
                    steps,
                    lr,
                    (lo, hi),
                    torch.Generator().manual_seed(gen_seed),
                    frame_every,
                    bar,
                )

            for k, chunk in enumerate(chunks):
                # each chunk's seeds (cseed to cseed + 3) within torch's 64 bits
                cseed = (seed * 100_003 + k) % (2**64 - 4)
                try:
                    p, (img, xin, v, h, fr, interrupted, still) = render(chunk, cseed, cseed + 1)
                    if not interrupted and isinstance(param, str) and not custom:
                        # a second start from the sparse image that best raises a target,
                        # where that image is above where the render ended
                        try:
                            init, top = _sparse_starts(
                                runner,
                                objective,
                                layer,
                                chunk,
                                (c, *spatial),
                                (lo, hi),
                                cseed + 2,
                                img,
                                moving=bool(still.any()),
                            )
                        except KeyboardInterrupt:  # the batch's first render stands
                            interrupted, cut = True, "the search for second starts"
                            top = torch.full((len(chunk),), -math.inf, dtype=torch.float64)
                        # (a stuck target cannot climb from where it is: any start may)
                        found = (top > v.detach().double().cpu()) | (
                            still.cpu() & (top > -math.inf)
                        )
                        rows = found.nonzero().reshape(-1).tolist()
                    else:
                        rows = []
                    if rows:
                        init = init[found]
                        if alpha:  # opaque
                            init = torch.cat([init, torch.ones_like(init[:, :1])], 1)
                        bar.extend(steps)
                        _, (img2, xin2, v2, h2, fr2, interrupted, still2) = render(
                            [chunk[j] for j in rows], cseed, cseed + 3, init
                        )
                        second += len(h2) * len(rows)
                        if interrupted:  # a second render cut short: the first stands
                            cut, rows = f"its second starts after {len(h2)} steps", []
                        img, xin, v, still = img.clone(), xin.clone(), v.clone(), still.clone()
                        for i, j in enumerate(rows):
                            if not bool(v2[i] > v[j]):
                                continue
                            img[j], xin[j], v[j], still[j] = img2[i], xin2[i], v2[i], still2[i]
                            if len(fr2) == len(fr):
                                for a, b in zip(fr, fr2, strict=True):
                                    a[j] = b[i]
                            restarted.append(labels[k * batch_size + j])
                except (RuntimeError, MemoryError) as exc:
                    if not _is_out_of_memory(exc):
                        raise
                    raise _out_of_memory(exc, len(chunk), spatial) from None
                img = img.clone()
                img[:, :c] = lo + (hi - lo) * img[:, :c]
                imgs.append(img.cpu())
                xins.append(runner.model_input(xin))
                vals.append(v.cpu())
                stuck.append(still.cpu())
                hist[: len(h)] += np.asarray(h) * len(chunk)
                counts[: len(h)] += len(chunk)
                frame_list.append(fr)
                if isinstance(p, LatentImage):
                    codes.append(p.codes().cpu())
                if interrupted:  # Ctrl-C: the images so far, the rest not begun
                    break
    images = torch.cat(imgs).numpy()
    values = torch.cat(vals).double().numpy()
    best = int(np.argmax(values))
    n, asked = len(values), len(units)
    units, labels = units[:n], labels[:n]
    arrays = {"images": images, "targets": np.asarray(units)}
    if codes:
        arrays["z"] = torch.cat(codes).numpy()
    stacked = [torch.stack(fr) for fr in frame_list] if frames else []  # (T, b, C, ...)
    if stacked and len({f.shape[0] for f in stacked}) == 1:  # an interrupted batch has fewer
        arrays["frames"] = torch.cat(stacked, 1).numpy()
        arrays["frames"][:, :, :c] = lo + (hi - lo) * arrays["frames"][:, :, :c]
    xs = np.concatenate(xins)
    ran = int((counts > 0).sum())
    msg = f"rendered {n} image(s) of {layer if not custom else objective.name} at " + "x".join(
        map(str, spatial)
    )
    msg += f" in {len(imgs)} batch(es)" + "".join(f"; {n}" for n in (note, runner.note) if n)
    never = [lab for lab, s in zip(labels, torch.cat(stuck).tolist(), strict=True) if s]
    if restarted:
        msg += (
            f"; {len(restarted)} target(s) ended higher from a second start, a sparse image "
            f"(strokes on a dark background) that raised them more than the first render: "
            f"{', '.join(restarted[:8])}" + (", ..." if len(restarted) > 8 else "")
        )
    if never:
        msg += (
            f"; {len(never)} of the {n} target(s) never moved from their start value (zero "
            f"gradient: every unit they read stays off): {', '.join(never[:8])}"
            + (", ..." if len(never) > 8 else "")
            + f"; the gradient solver's many starts may reach them (inverset maximize -t "
            f"{never[0]})"
        )
    if interrupted:
        msg = f"interrupted: {msg} ({n} of the {asked} asked for; the last batch " + (
            f"stopped after {len(h)} of {steps} steps)"
            if not cut
            else f"ran its {steps} steps, then the Ctrl-C stopped {cut}: none is kept)"
        )
    return Result(
        x=xs[best],
        value=float(values[best]),
        status="interrupted" if interrupted else "not_found" if len(never) == n else "step_limit",
        message=msg,
        xs=xs,
        values=values,
        nfev=int(counts.sum()) + second,
        solver="featvis",
        history={
            "step": list(range(1, ran + 1)),
            "objective": (hist[:ran] / counts[:ran]).tolist(),
        },
        timings={"total": time.perf_counter() - t0},
        query={
            "kind": "visualize",
            "layer": layer,
            "objective": str(objective) if custom else objective,
            "extra": None if extra is None else str(extra),
            "targets": labels,
            "size": list(spatial),
            "channels_in": c,
            "steps": steps,
            "param": param if isinstance(param, str) else _describe(param),
            "transforms": repr(tf),
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "value_range": [lo, hi],
            "mean": None if mean is None else np.asarray(mean).tolist(),
            "std": None if std is None else np.asarray(std).tolist(),
            "alpha": alpha,
            "resized_to": None if runner.model_size is None else list(runner.model_size),
        },
        info={"labels": labels, "device": str(device), "stuck": never, "restarted": restarted},
        arrays=arrays,
    )


def _describe(param) -> dict:
    return param.describe() if isinstance(param, ImageParam) else param.to_dict()


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L"


def _grey_scale(a: np.ndarray, mode: str) -> float:
    """What a non-8-bit grey image's full scale is: 65535 for 16-bit integers (PNG); for
    float images 1, 255 or 65535, whichever first holds every pixel."""
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    scales = (65535.0,) if mode != "F" else (1.0, 255.0, 65535.0)
    for scale in scales:
        if lo >= 0 and hi <= scale:
            return scale
    raise InversetError(
        f"the image (mode {mode}) holds values {lo:g}..{hi:g}, outside 0..65535; save it as an "
        "8- or 16-bit PNG, or pass it as a float array scaled to [0, 1]"
    )


def _pil_pixels(im: PILImage, channels: int) -> np.ndarray:
    """A PIL image of any mode as float32 (H, W) grey or (H, W, 3) RGB in [0, 1]: 16- and
    32-bit integer and float greys keep their full range (PIL's "L" would clip them to
    white), palettes are expanded, and transparency is composited over white, as viewers
    show it. Grey when the model takes other than 3 channels."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = (a / _grey_scale(a, mode)).astype(np.float32)
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        a = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    else:
        a = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
    if a.ndim == 3 and channels != 3:
        a = a @ _LUMA
    return a


def _load_image(image, channels: int, lo: float, hi: float, signal: bool = False) -> torch.Tensor:
    """The start of a dream -> (1, C, H, W) (``signal``: (1, C, L)) float in [lo, hi].

    Pictures are read on [0, 1] and mapped onto [lo, hi]: a path or PIL image (any mode:
    8/16-bit, float, palette, alpha) and an unsigned integer array (uint8, uint16), (H,W[,C])
    or (C,H,W). Float arrays and tensors are taken as values of the model's pixels, in
    [lo, hi], as a Result's ``x`` is: (C,H,W) (first axis the model's channels, last axis no
    colour) or (H,W[,C]). A Result gives its image (in ``arrays['images']``, the pixels of a
    visualize or dream run, before any mean/std normalization: that of its ``x``, the best,
    without alpha), else its ``x``, moved from the range it was made on onto [lo, hi]. Each
    may have a batch axis of one. RGBA pictures are composited over white, as viewers show
    them. Values outside [lo, hi], NaN or infinite are refused (not clipped)."""
    from PIL import Image

    if isinstance(image, str | Path):
        image = _stored_start(Path(image))
    src_range = None  # the range a Result's pixels are on, when it is another one
    if isinstance(image, Result):
        from inverset.report.pictures import image_range, picture_shape, rendered

        src_range = image_range(image.query)
        pics, pixels = image.arrays.get("images"), rendered(image)
        if pixels is not None:  # x's image (the best; visualize keeps channel order), no alpha
            image = pixels[0]
        else:
            image = pics[0] if pics is not None and len(pics) else image.x
        if image is None:
            raise InversetError("the Result holds no image (no x); give one that found a point")
        if pics is None:  # a flat x (784 inputs) as its pictures draw it (1, 28, 28)
            image = np.asarray(image)
            image = image.reshape(picture_shape(image.shape) or image.shape)
    unit = False  # values on [0, 1], to be mapped onto [lo, hi]
    if isinstance(image, str | Path | Image.Image) and signal:
        raise InversetError(
            f"the model takes 1-D signals (channels, length); give the dream's start as an "
            f"array or tensor of shape ({channels}, L), not a picture"
        )
    if isinstance(image, str | Path):
        p = Path(image)
        if p.is_dir():
            raise InversetError(
                f"image {p} is a directory with no result.json; give an image file (PNG or "
                "JPEG), a .npy array or a result's directory (--out of visualize or dream)"
            )
        if not p.is_file():
            raise InversetError(f"image {p} does not exist")
        try:
            with Image.open(p) as im:
                image, unit = _pil_pixels(im, channels), True
        except OSError as exc:  # PIL.UnidentifiedImageError included
            raise InversetError(f"cannot read {p} as an image ({exc}); give a PNG or JPEG") from exc
    elif isinstance(image, Image.Image):
        image, unit = _pil_pixels(image, channels), True
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    a = np.asarray(image)
    if np.issubdtype(a.dtype, np.unsignedinteger):
        a, unit = a / float(np.iinfo(a.dtype).max), True
    try:
        a = a.astype(np.float32)
    except (TypeError, ValueError):
        raise InversetError(
            f"the image is an array of {a.dtype}; give numbers (a picture, or pixel values)"
        ) from None
    if signal:
        t = _signal_start(a, channels)
    else:
        if a.ndim == 4 and len(a) != 1:
            raise InversetError(f"image is a batch of {len(a)} pictures; give one")
        a = a[0] if a.ndim == 4 else a
        if a.ndim == 2:
            a = a[..., None]
        first, last = (a.shape[0], a.shape[-1]) if a.ndim == 3 else (0, 0)
        chw = first in (channels, 1, 3) and (
            last not in (1, 3, 4) or (first == channels and last != channels)
        )
        t = torch.from_numpy(np.ascontiguousarray(a if chw else np.moveaxis(a, -1, 0)))
        if unit and t.shape[0] == 4 and channels != 4:  # RGBA: over white, as viewers show it
            t = t[:3] * t[3:] + (1.0 - t[3:])
    if unit:
        t = lo + (hi - lo) * t
    elif src_range is not None and tuple(src_range) != (lo, hi):  # a Result of another range
        a, b = src_range
        t = lo + (t - a) * ((hi - lo) / (b - a))
    if not torch.isfinite(t).all():
        raise InversetError("the start image holds NaN or infinite values; give finite pixels")
    if t.min() < lo - 1e-6 * (hi - lo) or t.max() > hi + 1e-6 * (hi - lo):
        raise InversetError(
            f"the start's values span [{t.min():.4g}, {t.max():.4g}], outside the value range "
            f"[{lo:g}, {hi:g}]; give the range they are on (value_range= / --range), or "
            "scale them into it"
        )
    if t.shape[0] != channels:
        if t.shape[0] == 3 and channels == 1:
            t = t.mean(0, keepdim=True)
        elif t.shape[0] == 1:
            t = t.expand(channels, *t.shape[1:])
        else:
            raise InversetError(f"image has {t.shape[0]} channels; the model takes {channels}")
    return t[None].clamp(lo, hi)


def _stored_start(p: Path) -> Path | Result | np.ndarray:
    """A dream's start saved by inverset or numpy: a result's directory (``--out`` of
    visualize, dream, maximize...) -> the Result; a ``.npy`` file -> its array (no pickles);
    else the path itself (a picture)."""
    if p.is_dir() and (p / "result.json").is_file():
        return Result.load(p)
    if p.suffix.lower() == ".npy" and p.is_file():
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InversetError(f"cannot read {p} as a numpy array ({first_line(exc)})") from None
    return p


def _signal_start(a: np.ndarray, channels: int) -> torch.Tensor:
    """A 1-D signal's dream start, (L,), (C, L) or (1, C, L) -> (C, L)."""
    if a.ndim == 3 and len(a) == 1:
        a = a[0]
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[-1] < 2:
        raise InversetError(
            f"the start has shape {a.shape}; the model takes 1-D signals: give ({channels}, L)"
        )
    return torch.from_numpy(np.ascontiguousarray(a))


def dream(
    model: nn.Module,
    image: str | Path | np.ndarray | torch.Tensor | PILImage | Result,
    layer: str,
    objective: Objective | None = None,
    *,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 20,
    lr: float = 0.02,
    jitter: int = 16,
    seed: int = 0,
    value_range: tuple[float, float] = (0.0, 1.0),
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    input_shape: Sequence[int] | None = None,
    frames: bool = False,
    progress: bool = False,
) -> Result:
    """Deep Dream: amplify what ``layer`` sees in ``image`` (default objective: the layer's
    mean squared activation), from the smallest octave up, carrying the added detail along.

    Each step adds ``lr * (hi - lo)`` times the gradient normalized by its mean magnitude,
    after a random roll of up to ``jitter`` pixels (at most an eighth of the octave's side,
    JITTER_SHARE). An objective that ends at its value on the image has never moved: it is
    named in ``info['stuck']``, status 'not_found'. Returns a Result with
    ``arrays['images']`` (the dream), ``arrays['original']`` and the dream as the model input
    in ``x``; ``value`` is the objective on the final image.
    """
    from inverset.featvis.objectives import deep_dream

    t0 = time.perf_counter()
    seed = check_seed(seed, MAX_SEARCH_SEED)
    lo, hi = _value_range(value_range)
    _check_std(std)
    if isinstance(octaves, bool) or not isinstance(octaves, int) or octaves < 1:
        raise InversetError(f"octaves must be a whole number >= 1, got {octaves!r}")
    if not octave_scale >= 1 or not math.isfinite(octave_scale):
        raise InversetError(
            f"octave_scale (--octave-scale) must be a number >= 1 (1.4 is usual), got "
            f"{octave_scale}"
        )
    if steps < 1:
        raise InversetError(f"steps must be at least 1, got {steps}")
    _check_lr(lr)
    if not is_whole(jitter) or jitter < 0:
        raise InversetError(f"jitter must be a whole number of pixels >= 0, got {jitter!r}")
    obj = objective if objective is not None else deep_dream(layer)
    layers = list(obj.layers) or [OUTPUT]
    device, dtype = model_device(model), work_dtype(model)
    shape = tuple(input_shape) if input_shape is not None else input_shape_of(model)
    _check_picture(shape)  # before the image is read: a vector model is the problem, not it
    c = shape[0] if shape is not None else 3
    signal = shape is not None and len(shape) == 2
    base = _load_image(image, c, lo, hi, signal).to(device=device, dtype=dtype)
    full = tuple(base.shape[2:])
    _check_picture((c, *full), "the image")
    if math.prod(full) > MAX_PIXELS:
        raise InversetError(
            f"the image is {'x'.join(map(str, full))}, over {MAX_PIXELS} pixels (2048x2048), "
            "which exhausts memory in a dream; resize it (e.g. to 1024 px on the long side)"
        )
    gen = torch.Generator().manual_seed(int(seed))
    sizes = [
        tuple(max(1, round(n / octave_scale**k)) for n in full) for k in reversed(range(octaves))
    ]
    history, snapshots = [], []
    with restore_mode(model, train=False, freeze=True):
        # a model of any size drops octaves under 8 pixels; one that fails on a larger octave
        # has every octave resized to the image size (as a fixed-size model to its own)
        big = [s for s in sizes if min(s) >= 8] if shape is not None else sizes
        runner, _, _, _, note = _setup(model, layers, shape or (c, *full), full, mean, std, big)
        if runner.model_size is None:
            sizes = big or [full]
        detail = torch.zeros_like(_resize(base, sizes[0]))
        interrupted = False
        b, x = base, base.clone()
        with progress_bar(progress, steps * len(sizes), "dream") as bar, runner.session() as run:
            try:
                for sz in sizes:
                    b = _resize(base, sz)
                    x = (b + _resize(detail, sz)).clamp(lo, hi)
                    # a roll of at most an eighth of the octave: 16 px rolled a 28 px MNIST
                    # image by over half its width, and the steps climbed other images (the
                    # objective fell from 0.121 to 0.087 on MNIST-FC's relu1)
                    roll = min(int(jitter), min(sz) // JITTER_SHARE)
                    for _ in range(steps):
                        x.requires_grad_(True)
                        shifts = [
                            int(v) for v in torch.randint(-roll, roll + 1, (2,), generator=gen)
                        ]
                        dims = tuple(range(2, x.dim()))
                        xr = torch.roll(x, shifts[: len(dims)], dims)
                        ctx = Context(run(xr), xr)
                        v = obj.ascent(ctx)
                        with model_backward(solvers=False, what="feature visualization"):
                            (g,) = torch.autograd.grad(v.sum(), x)
                        with torch.no_grad():
                            x = (x + lr * (hi - lo) * g / (g.abs().mean() + 1e-12)).clamp(lo, hi)
                        history.append(_score(obj, ctx, v))
                        bar.update(1, objective=history[-1])
                    if frames:
                        snapshots.append(_resize(x.detach(), full).cpu())
                    detail = x.detach() - b
            except KeyboardInterrupt:  # Ctrl-C: the detail so far, on the full image
                interrupted = True
                x = (base + _resize(x.detach() - b, full)).clamp(lo, hi)
                if frames:  # the GIF ends on it (one stopped in the first octave had none)
                    snapshots.append(x.detach().cpu())
            except (RuntimeError, MemoryError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                at = "x".join(map(str, tuple(x.shape[2:])))
                raise InversetError(
                    f"out of memory dreaming at {at} ({first_line(exc)}); give a smaller image "
                    "(e.g. half the size) or a layer nearer the input"
                ) from None
            with torch.no_grad():
                value = float(obj(Context(run(x), x)).mean())
                start = float(obj(Context(run(base), base)).mean())
                xin = runner.model_input(x)
    arrays = {"images": x.detach().cpu().numpy(), "original": base.cpu().numpy()}
    if frames and snapshots:
        arrays["frames"] = torch.stack(snapshots).numpy()
    msg = f"dreamed {len(sizes)} octave(s) x {steps} steps on {obj}" + (f"; {note}" if note else "")
    info: dict[str, Any] = {"labels": [str(obj)], "device": str(device)}
    status = "interrupted" if interrupted else "step_limit"
    if value == start and not interrupted:
        info["stuck"] = [str(obj)]
        status = "not_found"
        msg += (
            f"; {obj} never moved from its value on the image ({value:.6g}): every unit it "
            "reads is off there (zero gradient); try a layer nearer the input or another image"
        )
    if interrupted:
        msg = f"interrupted after {len(history)} of the {msg.removeprefix('dreamed ')}"
    return Result(
        x=xin[0],
        value=value,
        status=status,
        message=msg,
        xs=xin,
        values=np.asarray([value]),
        nfev=len(history),
        solver="dream",
        history={"step": list(range(1, len(history) + 1)), "objective": history},
        timings={"total": time.perf_counter() - t0},
        query={
            "kind": "dream",
            "layer": layer,
            "objective": str(obj),
            "octaves": [list(s) for s in sizes],
            "steps": steps,
            "lr": lr,
            "jitter": jitter,
            "seed": seed,
            "value_range": [lo, hi],
        },
        info=info,
        arrays=arrays,
    )


#: GIF frames show each image at least this many pixels high (8x8 digits 16 times larger)
GIF_SIDE = 128


def _rgb(image: np.ndarray, alpha: bool) -> np.ndarray:
    """One (C, H, W) image in [0, 1] -> (H', W', 3) as grid.png draws it (to_hwc: channels
    that are no colour side by side), transparency over white; (C, L) signals -> a strip."""
    from inverset.report.images import to_hwc

    if image.ndim == 2:  # a 1-D signal: its first channel (three as colour), 8 px high
        rows = image[:3] if len(image) >= 3 else np.repeat(image[:1], 3, 0)
        return np.repeat(np.moveaxis(rows, 0, -1)[None], 8, 0)
    a = to_hwc(image, (0.0, 1.0), alpha)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, -1)
    if a.shape[-1] == 4:
        return a[..., :3] * a[..., 3:] + (1.0 - a[..., 3:])
    return a


def _tile(images: np.ndarray, ncol: int, alpha: bool = False) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (H', W', 3) uint8 mosaic (for GIF frames), each image
    drawn as :func:`_rgb` and enlarged by a whole factor (nearest pixel) to at least
    GIF_SIDE pixels high (at most 1024 wide)."""
    n = images.shape[0]
    imgs = np.stack([_rgb(im, alpha) for im in images])
    k = max(1, min(-(-GIF_SIDE // imgs.shape[1]), 1024 // imgs.shape[2]))
    imgs = imgs.repeat(k, 1).repeat(k, 2)
    h, w = imgs.shape[1:3]
    nrow = math.ceil(n / ncol)
    out = np.ones((nrow * (h + 2), ncol * (w + 2), 3))
    for i in range(n):
        r, q = divmod(i, ncol)
        out[r * (h + 2) : r * (h + 2) + h, q * (w + 2) : q * (w + 2) + w] = imgs[i]
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def save(result: Result, out: str | Path, gif: bool = False, ncol: int | None = None) -> list[Path]:
    """Write ``result.json``/``result.npz``, ``grid.png`` (each image labelled with its target
    and final value) and, with ``gif`` and recorded frames, ``optimization.gif``. The pictures
    of an earlier run in ``out`` are removed first (by :meth:`Result.save
    <inverset.result.Result.save>`), so none is left beside this result. A write
    that fails is a :class:`~inverset.result.SaveError` holding the result."""
    from inverset.files import replacing
    from inverset.report.images import save_grid
    from inverset.result import SaveError, write_fix

    out = Path(out)
    written = [result.save(out)]
    lo, hi = result.query.get("value_range", [0.0, 1.0])
    images = (np.asarray(result.arrays["images"]) - lo) / (hi - lo)
    if result.query.get("alpha"):
        c = images.shape[1] - 1
        images = np.concatenate([images[:, :c], images[:, c:] * (hi - lo) + lo], 1)
    values = np.asarray(result.values).reshape(-1)
    names = result.info.get("labels") or [str(i) for i in range(len(images))]
    if result.query.get("kind") == "dream":
        orig = (np.asarray(result.arrays["original"]) - lo) / (hi - lo)
        images = np.concatenate([orig, images])
        labels = ["original", f"dream  {values[0]:.3g}"]
    else:
        labels = [f"{n}  {v:.3g}" for n, v in zip(names, values, strict=False)]
    path = out / "grid.png"
    try:
        alpha = bool(result.query.get("alpha"))
        written.append(save_grid(np.clip(images, 0, 1), path, labels, ncol=ncol, alpha=alpha))
        if gif and "frames" in result.arrays:
            from PIL import Image

            fr = np.asarray(result.arrays["frames"], dtype=np.float64)
            c = fr.shape[2] - alpha  # the colour channels in [lo, hi], alpha in [0, 1]
            fr[:, :, :c] = (fr[:, :, :c] - lo) / (hi - lo)
            k = ncol or min(fr.shape[1], 8)
            tiles = [Image.fromarray(_tile(f, k, alpha)) for f in fr]
            path = out / "optimization.gif"
            with replacing(path) as tmp:
                tiles[0].save(tmp, save_all=True, append_images=tiles[1:], duration=120, loop=0)
            written.append(path)
    except OSError as exc:  # a full disk: the images are in result.npz all the same
        raise SaveError(
            result,
            f"{path.name} was not written in {out} ({exc.strerror or type(exc).__name__}; "
            f"result.json and result.npz hold the images); {write_fix(exc)} or give another "
            "directory (--out)",
        ) from None
    return written
