"""Labelled image grids and charts written as PNG (matplotlib, Agg backend: no display).

Every picture is drawn inside :func:`drawing`: text is literal (a ``$`` in a class name is a
dollar sign, not mathtext), glyphs a font lacks fall back to an installed CJK font when there
is one (else they are boxes, without matplotlib's warnings: the HTML report shows the text).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from inverset.files import replacing

#: font families with CJK glyphs, tried in order as fallbacks when installed
CJK_FONTS = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "IPAGothic",
    "Microsoft YaHei",
    "SimHei",
    "MS Gothic",
    "PingFang SC",
    "Hiragino Sans",
    "Arial Unicode MS",
)


@functools.cache
def _fallback_fonts() -> tuple[str, ...]:
    """The :data:`CJK_FONTS` matplotlib knows of on this machine."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return tuple(f for f in CJK_FONTS if f in installed)


@contextmanager
def drawing() -> Iterator[None]:
    """The settings every text inverset draws is made and drawn under: no mathtext, CJK
    fallback fonts when installed, no 'Glyph ... missing' warnings."""
    rc: dict[str, Any] = {"text.parse_math": False}
    if _fallback_fonts():
        rc["font.family"] = [*plt.rcParams["font.family"], *_fallback_fonts()]
    with plt.rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        yield


F = TypeVar("F", bound=Callable[..., Any])


def _drawn(fn: F) -> F:
    """``fn`` run under :func:`drawing`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with drawing():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _range(value_range: Sequence[float] | None) -> tuple[float, float] | None:
    """``(lo, hi)`` when both are finite and ``lo < hi``, else None."""
    if value_range is None:
        return None
    lo, hi = (float(v) for v in value_range)
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) and lo < hi else None


def to_hwc(
    img: np.ndarray, value_range: Sequence[float] | None = None, alpha: bool = True
) -> np.ndarray:
    """A (C,H,W) image (channels first, as every tensor inverset draws) or an (H,W) one ->
    (H,W), (H,W,3) or (H,W,4) floats in [0,1] for display. 1 channel is grey, 3 are RGB; with
    ``alpha`` a last channel of 2 or 4 is transparency (RGBA). Any other count (5 bands, or
    2 and 4 without ``alpha``) is drawn as its channels side by side in grey, a white line
    between them: no channel is read as colour or transparency it is not. ``value_range``
    (lo, hi) maps lo to 0 and hi to 1 (e.g. the domain's box, so that images share one
    scale); without it an image outside [0,1] is stretched to its own min..max."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] not in ((1, 2, 3, 4) if alpha else (1, 3)):
        a = _side_by_side(a, value_range)
        value_range = (0.0, 1.0)
    if a.ndim == 3:
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 2:  # grey and alpha: shown as RGBA
        a = np.concatenate([a[..., :1]] * 3 + [a[..., 1:]], -1)
    if a.ndim == 1:
        a = a[None, :]
    rng = _range(value_range)
    if rng is None:
        lo, hi = np.nanmin(a), np.nanmax(a)
        rng = (lo, hi + 1e-12) if lo < 0 or hi > 1 else None
    if rng is not None:
        a = (a - rng[0]) / (rng[1] - rng[0])
    return np.clip(a, 0, 1)


def _side_by_side(a: np.ndarray, value_range: Sequence[float] | None) -> np.ndarray:
    """(C,H,W) -> (H, C*W + C-1) in [0,1]: the channels on one scale, a white column between."""
    rng = _range(value_range)
    if rng is None:
        lo, hi = np.nanmin(a), np.nanmax(a)
        rng = (lo, hi + 1e-12) if lo < 0 or hi > 1 else (0.0, 1.0)
    a = (a - rng[0]) / (rng[1] - rng[0])
    c, h, _ = a.shape
    gap = np.ones((c, h, 1))
    return np.concatenate(np.concatenate([a, gap], 2), 1)[:, :-1]


def joint_range(images: Sequence[np.ndarray | None]) -> tuple[float, float] | None:
    """The min and max over all ``images`` when they leave [0,1] (None when they do not, or
    hold no finite value): one scale for every tile of a grid."""
    vals = [np.asarray(a, dtype=np.float64) for a in images if a is not None]
    finite = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.zeros(0)
    if not finite.size or (finite.min() >= 0 and finite.max() <= 1):
        return None
    return float(finite.min()), float(finite.max()) + 1e-12


#: save_grid's layout, in inches: image width, gaps between columns and rows, label font
TILE_W, GAP_X, GAP_Y, LABEL_PT, TITLE_PT = 1.6, 0.2, 0.12, 7.0, 9.0
#: characters of a LABEL_PT label that fit under one tile
LABEL_CHARS = 30


def _lines(text: str) -> int:
    return text.count("\n") + 1


def _wrap(text: object) -> str:
    """A label's lines wrapped to about LABEL_CHARS characters: wider than its tile, it would
    run into its neighbours (shrinking alone stops at a legible size)."""
    import textwrap

    return "\n".join(textwrap.fill(ln, LABEL_CHARS) or ln for ln in str(text).split("\n"))


def _fit_width(fig, texts: Sequence, width_px: float, smallest: float) -> None:
    """Shrink each text's font until it is at most ``width_px`` wide (not below ``smallest``)."""
    renderer = fig.canvas.get_renderer()
    for t in texts:
        w = t.get_window_extent(renderer).width
        if w > width_px:
            t.set_fontsize(max(smallest, t.get_fontsize() * width_px / w))


#: a 1-D signal's tile, height over width
SIGNAL_RATIO = 0.6


def _signal(a: np.ndarray) -> bool:
    """A tile that is a 1-D signal (channels, length): fewer than 4 rows of at least 8 values,
    which as a picture would be a strip a few pixels high."""
    return a.ndim == 2 and a.shape[0] < 4 and a.shape[1] >= 8


def _draw_signal(ax, a: np.ndarray, scale: tuple[float, float] | None) -> None:
    """``a`` (channels, length) as one line per channel, on the grid's scale when it has one
    (its bottom and top are the frame's, as an image's black and white are; no tick labels,
    which the label under the tile would cover)."""
    for k, row in enumerate(a):
        ax.plot(row, lw=0.8, label=f"channel {k}")
    if scale is not None:
        ax.set_ylim(*scale)
    ax.set_xlim(0, a.shape[1] - 1)
    ax.set_xticks([])
    ax.set_yticks([])


@_drawn
def grid_figure(
    images: np.ndarray | Sequence[np.ndarray | None],
    labels: Sequence[str] | None = None,
    ncol: int | None = None,
    title: str | None = None,
    cmap: str = "gray",
    value_range: Sequence[float] | None = None,
    alpha: bool = True,
):
    """The figure :func:`save_grid` writes: tiles laid out by hand, with a band under each row
    sized to its labels' line count and one on top for the title, so that no label is covered
    by the next row's images or cut off by the figure's edge. A ``None`` image is a blank tile.
    Every tile is on one scale: ``value_range`` (see :func:`to_hwc`), else
    :func:`joint_range`."""
    import textwrap

    raw = [None if im is None else np.asarray(im, dtype=np.float64) for im in images]
    scale = _range(value_range) or joint_range(raw)
    imgs = [None if im is None or _signal(im) else to_hwc(im, scale, alpha) for im in raw]
    n = len(imgs)
    ncol = ncol or min(n, 8) or 1
    nrow = max(1, -(-n // ncol))
    labels = [_wrap(v) for v in labels[:n]] if labels is not None else []
    shapes = [im.shape for im in imgs if im is not None]
    shapes += [(SIGNAL_RATIO, 1.0) for im in raw if im is not None and _signal(im)]
    ratio = max([h / w for h, w, *_ in shapes] or [1.0])
    img_h = TILE_W * float(np.clip(ratio, 0.1, 2.5))
    line = LABEL_PT * 1.3 / 72
    rows = [labels[r * ncol : (r + 1) * ncol] for r in range(nrow)]
    bands = [0.05 + line * max([_lines(t) for t in row] or [0]) for row in rows]
    fig_w = ncol * (TILE_W + GAP_X)
    title = textwrap.fill(title, max(20, int(fig_w * 13))) if title else None
    top = (0.12 + _lines(title) * TITLE_PT * 1.3 / 72) if title else GAP_Y
    fig_h = top + sum(img_h + b + GAP_Y for b in bands)
    fig = plt.figure(figsize=(fig_w, fig_h))
    texts = []
    y = fig_h - top  # top edge of the current row, inches from the figure's bottom
    for r in range(nrow):
        for c in range(ncol):
            i = r * ncol + c
            if i >= n or raw[i] is None:
                continue
            x0 = c * (TILE_W + GAP_X) + GAP_X / 2
            ax = fig.add_axes((x0 / fig_w, (y - img_h) / fig_h, TILE_W / fig_w, img_h / fig_h))
            if imgs[i] is None:  # a 1-D signal: its channels as lines
                _draw_signal(ax, raw[i], scale)
            else:
                ax.axis("off")
                ax.imshow(
                    imgs[i],
                    cmap=cmap if imgs[i].ndim == 2 else None,
                    vmin=0,
                    vmax=1,
                    interpolation="nearest",
                )
            if i < len(labels):
                xc, yl = (x0 + TILE_W / 2) / fig_w, (y - img_h - 0.03) / fig_h
                texts.append(fig.text(xc, yl, labels[i], fontsize=LABEL_PT, ha="center", va="top"))
        y -= img_h + bands[r] + GAP_Y
    _fit_width(fig, texts, (TILE_W + 0.8 * GAP_X) * fig.dpi, 4.0)
    if title:
        t = fig.suptitle(title, fontsize=TITLE_PT, y=1 - 0.06 / fig_h, va="top")
        _fit_width(fig, [t], 0.98 * fig_w * fig.dpi, 5.0)
    return fig


def _write(fig, path: str | Path, ax=None, title: str | None = None) -> Path:
    """Every picture's last step: the title on ``ax`` and a tight layout (a figure laid out
    by hand, without ``ax``, is kept as it is), then the PNG at ``path`` (whole or not at
    all: :func:`~inverset.files.replacing`), figure closed."""
    if ax is not None:
        if title:
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # through a temporary file: an interrupted or failed write leaves no broken picture
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


@_drawn
def save_grid(
    images: np.ndarray | Sequence[np.ndarray | None],
    path: str | Path,
    labels: Sequence[str] | None = None,
    ncol: int | None = None,
    title: str | None = None,
    cmap: str = "gray",
    value_range: Sequence[float] | None = None,
    alpha: bool = True,
) -> Path:
    """Save images (N,C,H,W or N,H,W; channels first) as one PNG grid, each with a label
    under it (a ``None`` image leaves its tile blank), all on one scale (``value_range``, e.g.
    the domain's box, else the images' joint min and max). ``alpha``: see :func:`to_hwc`."""
    return _write(grid_figure(images, labels, ncol, title, cmap, value_range, alpha), path)


#: save_bars draws up to this many features as labelled bars; more as a profile over the index
MAX_BARS = 64
#: the widest picture save_bars draws, in inches (1,320 px at the 110 dpi pictures are saved at)
MAX_BARS_W = 12.0


@_drawn
def save_bars(
    values: np.ndarray,
    path: str | Path,
    names: Sequence[str] | None = None,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """A tabular input as a labelled bar chart, with the box bounds drawn as whiskers. Over
    ``MAX_BARS`` features it is a step profile of value against feature index, bounds shaded,
    so the picture keeps a bounded size (and drawing time) however many features there are."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n, idx = len(v), np.arange(len(v))
    if lo is None or hi is None:
        lo_ = hi_ = np.full(v.shape, np.nan)
    else:
        lo_, hi_ = np.broadcast_to(lo, v.shape), np.broadcast_to(hi, v.shape)
    ok = np.isfinite(lo_) & np.isfinite(hi_)
    if n > MAX_BARS:
        fig, ax = plt.subplots(figsize=(MAX_BARS_W * 2 / 3, 3.0))
        if ok.any():
            low, high = np.where(ok, lo_, np.nan), np.where(ok, hi_, np.nan)
            ax.fill_between(idx, low, high, step="mid", color="#ddd", lw=0)
        ax.step(idx, v, where="mid", color="#3b6ea8", lw=0.8)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xlabel(f"feature index ({n} features)")
    else:
        names = [_shortened(t) for t in (names if names is not None else range(n))][:n]
        longest = max((len(t) for t in names), default=0)
        # a slanted label takes about 0.05 inch of height per character, below the bars
        height = max(3.0, 2.0 + 0.05 * longest)
        fig, ax = plt.subplots(figsize=(min(MAX_BARS_W, max(4.0, 0.45 * n + 1.5)), height))
        ax.bar(idx, v, color="#3b6ea8")
        ax.vlines(idx[ok], lo_[ok], hi_[ok], color="#999", lw=1)
        ax.set_xticks(idx, names, rotation=60, ha="right", fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    return _write(fig, path, ax, title)


#: characters of a feature's name a bar chart shows (longer ones lose their middle)
BAR_LABEL_CHARS = 32


def _shortened(name: object) -> str:
    """A feature's name of at most :data:`BAR_LABEL_CHARS` characters: a longer one keeps its
    start and end (where a pipeline's prefixes and a name's own words are) around '…'."""
    text = str(name)
    if len(text) <= BAR_LABEL_CHARS:
        return text
    head = (BAR_LABEL_CHARS - 1) // 2
    return f"{text[:head]}…{text[len(text) - (BAR_LABEL_CHARS - 1 - head) :]}"


#: what a convergence plot's x axis is, by the history key it is drawn against
AXIS_LABELS = {"step": "step", "nfev": "evaluations", "time": "time (s)"}


def curve_axis(history: dict[str, list], y: str = "best") -> str | None:
    """The history key a convergence plot of ``history[y]`` is drawn against: ``step``, then
    ``nfev``, then ``time``, the first recorded for every point (``time`` first when the
    history has a ``bound``: a proof tightens with time, not with model evaluations); None
    when there is none (the record's index)."""
    n = len(history.get(y) or [])
    keys = ("time", "step", "nfev") if history.get("bound") else ("step", "nfev", "time")
    return next((k for k in keys if n and len(history.get(k) or []) == n), None)


def _floats(values: Sequence[Any]) -> np.ndarray:
    """Numbers to plot: None (no value) and non-finite as NaN (a gap in the line)."""
    a = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return np.where(np.isfinite(a), a, np.nan)


@_drawn
def save_curve(
    history: dict[str, list],
    path: str | Path,
    x: str | None = None,
    y: str = "best",
    title: str | None = None,
) -> Path:
    """Convergence plot of ``history[y]`` against ``history[x]`` (by default
    :func:`curve_axis`), with the proven bound dashed when the history records one. A search
    over whole numbers records its steps' values before rounding apart (``history['relaxed']``):
    they are drawn dashed beside the feasible points, which are then few (the integer search's)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    ys = history.get(y) or []
    x = x if x is not None else curve_axis(history, y)
    if ys:
        xs = _floats(history[x]) if x is not None else np.arange(len(ys))
        relaxed = history.get("relaxed") if y == "best" else None
        bound = history.get("bound") if y == "best" else None
        # one record is a point (a line through it has no length and draws nothing)
        dot = "o" if len(ys) == 1 else None
        if relaxed:
            # not a relaxation's bound: the search's own points before their rounding
            label = "search steps, before rounding"
            ax.plot(xs, _floats(relaxed), color="#999999", ls="--", label=label)
            ax.plot(xs, _floats(ys), color="#3b6ea8", marker="o", label="whole-number points")
        elif y == "best":  # the best so far holds until the next record: steps, not slopes
            ax.step(xs, _floats(ys), where="post", color="#3b6ea8", label=y, marker=dot)
        else:
            ax.plot(xs, _floats(ys), color="#3b6ea8", label=y, marker=dot)
        if bound and len(bound) == len(ys):
            ax.step(
                xs,
                _floats(bound),
                where="post",
                color="#c44e52",
                ls="--",
                label="proven bound",
                marker=dot,
            )
        if relaxed or bound:
            ax.legend(fontsize=7)
    ax.set_xlabel(AXIS_LABELS.get(x, x) if x is not None else "record")
    ax.set_ylabel(y)
    return _write(fig, path, ax, title)


@_drawn
def save_histogram(
    values: np.ndarray,
    path: str | Path,
    low: float | None = None,
    high: float | None = None,
    title: str | None = None,
    bins: int = 30,
    more: Sequence[tuple[str, np.ndarray, float, float]] = (),
    name: str | None = None,
) -> Path:
    """Histogram of target values, with the requested range [low, high] shaded (low == high:
    a reach's value, drawn as a dashed line); ``more``: further panels ``(name, values, low,
    high)`` beside it, one per constraint on the same points (a sample's intersected ranges),
    so that every range's values can be seen; ``name`` heads the first panel then."""
    n = 1 + len(more)
    ncol = min(n, 3)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.5 if n == 1 else 3.4 * ncol, 3.0 * nrow))
    axes = np.atleast_1d(axes).reshape(-1)
    panels = [(name if more else None, values, low, high), *more]
    for ax, (head, v, lo, hi) in zip(axes, panels, strict=False):
        _histogram(ax, np.asarray(v, dtype=np.float64).reshape(-1), lo, hi, bins)
        if head is not None:
            ax.set_title(str(head), fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    if n == 1:
        return _write(fig, path, axes[0], title)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _write(fig, path)


def _histogram(ax, v: np.ndarray, low: float | None, high: float | None, bins: int) -> None:
    """One panel of :func:`save_histogram`: ``v`` with [low, high] shaded (an infinite end
    drawn to the edge of the plot: axvspan cannot take inf)."""
    if v.size:
        ax.hist(v, bins=bins, color="#3b6ea8", zorder=2)
    if low is not None and low == high:  # a reach: its value as a line
        left, right = ax.get_xlim()
        ax.axvline(low, color="#4a8a3a", ls="--", lw=1.2, label="value", zorder=3)
        ax.set_xlim(min(left, low), max(right, low))
    elif low is not None and high is not None:
        left, right = ax.get_xlim()
        lo = low if np.isfinite(low) else min(left, high)
        hi = high if np.isfinite(high) else max(right, low)
        ax.axvspan(lo, hi, color="#cde3c5", label="range", zorder=1)
        ax.set_xlim(min(left, lo), max(right, hi))
    with contextlib.suppress(AttributeError):  # values 1e-8 apart: no "+1.406e1" offset
        ax.ticklabel_format(axis="x", useOffset=False)
    ax.set_xlabel("target value")
    ax.set_ylabel("count")


@_drawn
def save_range_histograms(
    groups: Sequence[tuple[str, np.ndarray, float, float]],
    path: str | Path,
    title: str | None = None,
    bins: int = 60,
) -> Path:
    """One histogram of several runs' target values on shared bins, each run ``(name, values,
    low, high)`` in its own colour with its own range shaded in a light shade of it."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    colours = plt.get_cmap("tab10").colors
    vals = [np.asarray(v, dtype=np.float64).reshape(-1) for _, v, _, _ in groups]
    ends = [e for _, _, lo, hi in groups for e in (lo, hi) if np.isfinite(e)]
    pool = np.concatenate([*vals, np.asarray(ends, dtype=np.float64)])
    edges = np.histogram_bin_edges(pool, bins=bins) if pool.size else bins
    for k, ((name, _, low, high), v) in enumerate(zip(groups, vals, strict=True)):
        colour = colours[k % len(colours)]
        if pool.size:  # an infinite end is shaded to the edge of the data (axvspan needs finite)
            low, high = max(low, pool.min()), min(high, pool.max())
        ax.axvspan(low, high, color=colour, alpha=0.15, zorder=1, lw=0)
        ax.hist(v, bins=edges, color=colour, zorder=2, label=f"{name}: {len(v)}")
    ax.legend(fontsize=7, title="range: samples", title_fontsize=7)
    ax.set_xlabel("target value")
    ax.set_ylabel("count")
    return _write(fig, path, ax, title)
