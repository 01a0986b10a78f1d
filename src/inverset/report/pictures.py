"""The pictures that go with a saved Result: its inputs, its convergence, its values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inverset.report.images import save_bars, save_curve, save_grid, save_histogram
from inverset.result import Result, stored_floats


def is_image(shape: tuple[int, ...]) -> bool:
    """Inputs shaped (C, H, W) or (H, W), at least 4 by 4, are drawn as images: 1 channel in
    grey, 3 in colour, any other count side by side in grey (a model's input has no
    transparency: :func:`~inverset.report.images.to_hwc` with ``alpha=False``)."""
    return (len(shape) == 3 and shape[0] >= 1 and min(shape[1:]) >= 4) or (
        len(shape) == 2 and min(shape) >= 4
    )


#: flat inputs of at least this many values, a whole square and without feature names, are
#: drawn as a square image (784 -> 28x28: an MNIST net loaded without an input shape)
SQUARE_FROM = 256


def picture_shape(shape: tuple[int, ...], names: Sequence[str] | None = None) -> tuple | None:
    """The shape an input of ``shape`` is drawn in as an image: its own (:func:`is_image`),
    (1, k, k) for a flat input of k*k >= :data:`SQUARE_FROM` values (axes of 1 beside its
    one axis allowed) without feature ``names``; None when it is drawn as bars."""
    shape = tuple(int(n) for n in shape)
    if is_image(shape):
        return shape
    n = math.prod(shape)
    # flat: one axis, or one with axes of 1 beside it (an ONNX MNIST net's (784, 1))
    if sum(k > 1 for k in shape) != 1 or names or n < SQUARE_FROM:
        return None
    side = math.isqrt(n)
    return (1, side, side) if side * side == n else None


def drawn_as(n: int, shape: tuple) -> str:
    """What a picture's title says of a flat input drawn as a square (:func:`picture_shape`)."""
    return f"{n} inputs drawn as {shape[-2]}x{shape[-1]}"


def _goal_text(goal: dict[str, Any]) -> str:
    """A picture title's goal: 'maximize', 'reach 3', 'range [8, 12]'."""
    kind = str(goal.get("kind", ""))
    try:
        if kind == "reach":
            return f"reach {float(goal['value']):g}"
        if kind == "range":
            return f"range [{float(goal['low']):g}, {float(goal['high']):g}]"
    except (KeyError, TypeError, ValueError):
        pass
    return kind


def _constraints(query: dict[str, Any]) -> list[tuple[str, float, float] | None]:
    """A query's target constraints (a sample's intersections) as (target, z1, z2), None for
    an entry that is not one (a result.json edited by hand)."""
    out: list[tuple[str, float, float] | None] = []
    for c in query.get("constraints") or []:
        try:
            t, lo, hi = c
            out.append((str(t), float(lo), float(hi)))
        except (TypeError, ValueError):
            out.append(None)
    return out


def constraints_text(query: dict[str, Any]) -> str:
    """A picture title's target constraints: ', logit:7 in [-6, -1]' per constraint; ''
    without any."""
    return "".join(f", {t} in [{lo:g}, {hi:g}]" for t, lo, hi in filter(None, _constraints(query)))


def goal_span(query: dict[str, Any]) -> tuple[float | None, float | None]:
    """What a histogram of a result's values marks: a range's (z1, z2), a reach's (value,
    value), else (None, None)."""
    goal = query.get("goal") or {}
    if not isinstance(goal, dict):
        return None, None
    try:
        if goal.get("kind") == "reach":
            return float(goal["value"]), float(goal["value"])
        if goal.get("low") is not None and goal.get("high") is not None:
            return float(goal["low"]), float(goal["high"])
    except (KeyError, TypeError, ValueError):
        pass
    rng = query.get("range")  # a sample's
    if isinstance(rng, list | tuple) and len(rng) == 2:
        return float(rng[0]), float(rng[1])
    return None, None


def rendered(result: Result) -> tuple[np.ndarray, np.ndarray] | None:
    """A visualization's or dream's pictures in pixel values, alpha dropped: (``x``'s image,
    all images (N, C, H, W), or (N, C, L) for signals); None for others. Its ``x``/``xs`` are
    the model's inputs, normalized by ``--mean/--std`` when it was: drawn on the pixels'
    scale, wrong."""
    images = result.arrays.get("images")
    x = np.asarray(result.x) if result.x is not None else None
    if images is None or x is None or x.ndim not in (2, 3):  # (C, H, W) or a signal's (C, L)
        return None
    images = np.asarray(images)
    images = images[None] if images.ndim == x.ndim else images
    if images.ndim != x.ndim + 1:
        return None
    images = images[:, : x.shape[0]]
    if images.shape[1:] != x.shape:
        return None
    xs = None if result.xs is None else np.asarray(result.xs)
    k = 0  # x is the best image, which need not be the first (visualize keeps channel order)
    if xs is not None and xs.shape == images.shape:
        k = int(np.argmin(np.abs(xs - x).reshape(len(xs), -1).max(1)))
    return images[k], images


def constraint_panels(result: Result) -> list[tuple[str, np.ndarray, float, float]]:
    """A sample's intersected ranges as histogram panels ``(target, its values at the
    returned points, z1, z2)``; [] when it has none, or their values were not kept."""
    cons = _constraints(result.query)
    vals = result.arrays.get("constraints")
    if not cons or vals is None or None in cons:
        return []
    vals = np.asarray(vals, dtype=np.float64)
    if vals.ndim != 2 or vals.shape[1] != len(cons):
        return []
    return [(t, vals[:, k], lo, hi) for k, (t, lo, hi) in enumerate(cons)]


def domain_names(result: Result) -> list[str] | None:
    """The feature names a result's domain records, if any."""
    dom = result.query.get("domain") or {}
    return dom.get("names") if isinstance(dom, dict) else None


def image_range(query: dict[str, Any]) -> tuple[float, float] | None:
    """The values an image input spans, to draw every image on this one scale: a rendering's
    ``value_range`` (visualize), else the domain's box (its lowest and highest bound); None
    when unbounded (pictures then share their joint min and max)."""
    rng = query.get("value_range")
    if not (isinstance(rng, list | tuple) and len(rng) == 2):
        dom = query.get("domain") or {}
        if not isinstance(dom, dict):
            return None
        lo, hi = stored_floats(dom.get("lo")), stored_floats(dom.get("hi"))
        rng = (lo.min(initial=np.inf), hi.max(initial=-np.inf)) if lo.size and hi.size else None
    if rng is None:
        return None
    lo, hi = (float(v) for v in stored_floats(rng))
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) and lo < hi else None


def write_pictures(
    result: Result,
    directory: str | Path,
    names: list[str] | None = None,
    max_images: int = 32,
) -> list[Path]:
    """PNG files for ``result`` in ``directory``: inputs (image grid on the domain's scale,
    or bar chart), convergence plot, and a histogram of returned values when there are
    several; returns the files written. The pictures of an earlier result there were removed
    when this one was saved over it (:meth:`Result.save`), so none is left beside a result it
    does not show; a user's files of other names are never touched."""
    d = Path(directory)
    out: list[Path] = []
    target = result.query.get("target", "target")
    if result.x is not None:
        x = np.asarray(result.x)
        dom = result.query.get("domain") or {}
        shape = picture_shape(x.shape, names or domain_names(result))
        if shape is not None:
            xs = result.xs if result.xs is not None else x[None]
            vals = result.values if result.values is not None else [result.value]
            labels = [f"{target}={v:.4g}" for v in vals[:max_images]]
            title = f"{_goal_text(result.query.get('goal') or {})} {target}"
            title += constraints_text(result.query)
            if len(xs) > max_images:
                title += f", the first {max_images} of {len(xs)}"
            if shape != x.shape:
                xs = np.asarray(xs).reshape(len(xs), *shape)
                title += f" ({drawn_as(x.size, shape)})"
            out.append(
                save_grid(
                    xs[:max_images],
                    d / "inputs.png",
                    labels,
                    title=title,
                    value_range=image_range(result.query),
                    alpha=False,
                )
            )
        else:
            lo = np.broadcast_to(np.asarray(dom.get("lo", np.nan), dtype=float), x.shape)
            hi = np.broadcast_to(np.asarray(dom.get("hi", np.nan), dtype=float), x.shape)
            names = names or dom.get("names")
            out.append(
                save_bars(
                    x,
                    d / "best_input.png",
                    names,
                    lo.reshape(-1),
                    hi.reshape(-1),
                    title=f"{result.x_label}: {target} = {result.value:.5g}",
                )
            )
    if result.history.get("best"):
        out.append(
            save_curve(
                result.history,
                d / "convergence.png",
                y="best",
                title=f"{result.solver}: best {target}",
            )
        )
    if result.values is not None and len(result.values) > 1:
        more = constraint_panels(result)
        out.append(
            save_histogram(
                result.values,
                d / "values.png",
                *goal_span(result.query),
                title="values of returned points" if more else f"{target} of returned points",
                more=more,
                name=target,
            )
        )
    return out
