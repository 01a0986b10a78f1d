"""Labelled image grids and charts written as PNG (matplotlib, Agg backend: no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def to_hwc(img: np.ndarray) -> np.ndarray:
    """(C,H,W) or (H,W) or (H,W,C) image -> (H,W), (H,W,3) or (H,W,4) float in [0,1] for
    display (a grey image with alpha becomes RGBA)."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 2, 3, 4) and a.shape[-1] not in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 2:  # grey and alpha: shown as RGBA
        a = np.concatenate([a[..., :1]] * 3 + [a[..., 1:]], -1)
    if a.ndim == 1:
        a = a[None, :]
    lo, hi = np.nanmin(a), np.nanmax(a)
    if lo < 0 or hi > 1:
        a = (a - lo) / (hi - lo + 1e-12)
    return np.clip(a, 0, 1)


def save_grid(
    images: np.ndarray | Sequence[np.ndarray],
    path: str | Path,
    labels: Sequence[str] | None = None,
    ncol: int | None = None,
    title: str | None = None,
    cmap: str = "gray",
) -> Path:
    """Save images (N,C,H,W / N,H,W / N,H,W,C) as one PNG grid, each with a label under it."""
    imgs = [to_hwc(im) for im in images]
    n = len(imgs)
    ncol = ncol or min(n, 8) or 1
    nrow = max(1, -(-n // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.8 * ncol, 2.0 * nrow), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(
                imgs[i],
                cmap=cmap if imgs[i].ndim == 2 else None,
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            if labels is not None and i < len(labels):
                ax.set_title(str(labels[i]), fontsize=7, y=-0.18)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_bars(
    values: np.ndarray,
    path: str | Path,
    names: Sequence[str] | None = None,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """A tabular input as a labelled bar chart, with the box bounds drawn as whiskers."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    names = list(names) if names is not None else [str(i) for i in range(len(v))]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(v) + 1.5), 3.0))
    ax.bar(range(len(v)), v, color="#3b6ea8")
    if lo is not None and hi is not None:
        lo_, hi_ = np.broadcast_to(lo, v.shape), np.broadcast_to(hi, v.shape)
        ok = np.isfinite(lo_) & np.isfinite(hi_)
        ax.vlines(np.arange(len(v))[ok], lo_[ok], hi_[ok], color="#999", lw=1)
    ax.set_xticks(range(len(v)), names[: len(v)], rotation=60, ha="right", fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_curve(
    history: dict[str, list],
    path: str | Path,
    x: str = "step",
    y: str = "best",
    title: str | None = None,
) -> Path:
    """Convergence plot of ``history[y]`` against ``history[x]``."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    if history.get(y):
        xs = history.get(x) or list(range(len(history[y])))
        ax.plot(xs, history[y], color="#3b6ea8")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_histogram(
    values: np.ndarray,
    path: str | Path,
    low: float | None = None,
    high: float | None = None,
    title: str | None = None,
    bins: int = 30,
) -> Path:
    """Histogram of target values, with the requested range [low, high] shaded."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size:
        ax.hist(v, bins=bins, color="#3b6ea8", zorder=2)
    if low is not None and high is not None:
        # an infinite end is drawn to the edge of the plot (axvspan cannot take inf)
        left, right = ax.get_xlim()
        lo = low if np.isfinite(low) else min(left, high)
        hi = high if np.isfinite(high) else max(right, low)
        ax.axvspan(lo, hi, color="#cde3c5", label="range", zorder=1)
        ax.set_xlim(min(left, lo), max(right, hi))
    ax.set_xlabel("target value")
    ax.set_ylabel("count")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
