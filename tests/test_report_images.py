"""Image grids: every tile's label is readable (not under another image, not off the figure)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from torch import nn

import inverset as iv
from inverset.report.images import save_curve, save_grid

torch.set_num_threads(1)


def _drawn_grid(saved_figures, tmp_path, images, labels, ncol, title):
    """Run save_grid and return the figure it saved (drawn) with the label texts by string."""
    save_grid(images, tmp_path / "grid.png", labels, ncol=ncol, title=title)
    (fig,) = saved_figures
    FigureCanvasAgg(fig)  # plt.close detached the figure from its canvas
    fig.set_dpi(110)
    fig.canvas.draw()
    texts = fig.findobj(lambda a: isinstance(a, Text) and a.get_visible() and a.get_text())
    return fig, {t.get_text(): t for t in texts}


@pytest.mark.parametrize(("n", "ncol"), [(20, 10), (30, 10), (7, 3), (1, 1)])
def test_grid_labels_clear_of_images_and_inside_the_figure(saved_figures, tmp_path, n, ncol):
    rng = np.random.default_rng(0)
    images = rng.random((n, 1, 8, 8))
    labels = [f"[{i},{i + 3}]\n{i + 0.25:.2f}" if i % ncol == 0 else f"{i:.2f}" for i in range(n)]
    fig, texts = _drawn_grid(saved_figures, tmp_path, images, labels, ncol, "a title (top)")
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    boxes = [im.get_window_extent(renderer) for ax in fig.axes for im in ax.get_images()]
    assert len(boxes) == n
    for s in labels:
        b = texts[s].get_window_extent(renderer)
        assert page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1, s
        hit = [(round(o.x0), round(o.y0)) for o in boxes if b.overlaps(o)]
        assert not hit, f"label {s!r} at {b} lies on images at {hit}"
    title = texts["a title (top)"].get_window_extent(renderer)
    assert page.y1 >= title.y1 and not any(title.overlaps(o) for o in boxes)
    label_boxes = [texts[s].get_window_extent(renderer) for s in labels]
    for i, a in enumerate(label_boxes):
        assert not any(a.overlaps(b) for b in label_boxes[i + 1 :]), labels[i]


def test_grid_none_is_a_blank_tile(saved_figures, tmp_path):
    images = [np.zeros((8, 8)), None, np.ones((8, 8))]
    fig, texts = _drawn_grid(saved_figures, tmp_path, images, ["a", "", "c"], 3, None)
    assert sum(len(ax.get_images()) for ax in fig.axes) == 2
    assert sorted(texts) == ["a", "c"]


def test_range_histograms_draw_each_runs_samples_over_its_range(saved_figures, tmp_path):
    from inverset.report.images import save_range_histograms

    groups = [("low", np.array([0.5, 1.0, 2.5]), 0.0, 3.0), ("high", np.full(4, 12.5), 12, 15)]
    save_range_histograms(groups, tmp_path / "h.png", bins=10)
    (ax,) = saved_figures[0].axes
    counts = [sum(b.get_height() for b in bars) for bars in ax.containers]
    assert counts == [3, 4]
    bars = {id(b) for c in ax.containers for b in c}
    spans = [p.get_extents() for p in ax.patches if id(p) not in bars]
    to_data = ax.transData.inverted()
    spans_x = sorted(
        tuple(np.round(to_data.transform([[e.x0, 0], [e.x1, 0]])[:, 0], 3)) for e in spans
    )
    assert spans_x == [(0.0, 3.0), (12.0, 15.0)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["low: 3", "high: 4"]


def test_grid_labels_longer_than_a_tile_wrap_instead_of_running_together(saved_figures, tmp_path):
    labels = [f"out:{i} = 0.123456789, a label far wider than its tile goes on" for i in range(6)]
    images = np.random.default_rng(0).random((6, 3, 16, 16))
    fig, texts = _drawn_grid(saved_figures, tmp_path, images, labels, 3, None)
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    shown = {" ".join(t.split()): texts[t] for t in texts}
    boxes = [shown[s].get_window_extent(renderer) for s in labels]  # every word kept
    for i, b in enumerate(boxes):
        assert page.x0 <= b.x0 and b.x1 <= page.x1, labels[i]
        assert not any(b.overlaps(o) for o in boxes[i + 1 :]), labels[i]
        assert shown[labels[i]].get_fontsize() >= 6, "wrapped, not shrunk to illegible"


def test_integer_search_curve_draws_its_relaxation(saved_figures, tmp_path):
    """A gradient search over whole numbers keeps its steps' relaxed values apart: the curve
    draws them (it was empty: 'best' holds only the integer search's point)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
    r = iv.maximize(m, "out:0", iv.Box(0, 4, shape=(3,), integer=[0, 1, 2]), seed=0, steps=30)
    assert r.history["best"][-1] == r.value
    save_curve(r.history, tmp_path / "c.png", x="step", y="best")
    (ax,) = saved_figures[0].axes
    drawn = [np.isfinite(line.get_ydata().astype(float)).sum() for line in ax.get_lines()]
    assert sum(drawn) >= 30, drawn
    # Adam's points, not a relaxation's bound (which a reader would take as one above the answer)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["search steps, before rounding", "whole-number points"]


def _result(x, xs=None, values=None, target="out:0", lo=0.0, hi=1.0, history=None):
    """A maximize Result over the box [lo, hi] with the given inputs."""
    return iv.Result(
        x=x,
        value=1.0,
        status="converged",
        xs=xs,
        values=values,
        history=history or {},
        query={
            "target": target,
            "goal": {"kind": "maximize"},
            "domain": {"lo": lo, "hi": hi, "shape": list(np.shape(x))},
        },
    )


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 5, 4)])
def test_images_four_or_fewer_pixels_wide_are_drawn_channels_first(saved_figures, tmp_path, shape):
    """(C, H, W) with W <= 4 was taken for (H, W, C): a grey 4x4 image became a 1x4 RGBA strip."""
    from PIL import Image

    from inverset.report.html import write_target_pictures
    from inverset.report.pictures import write_pictures

    x = np.random.default_rng(0).random(shape).round(2)
    r = _result(x, xs=np.stack([x, 1 - x]), values=np.array([1.0, 0.5]))
    write_pictures(r, tmp_path)
    tile = saved_figures[0].axes[0].get_images()[0].get_array()
    want = x[0] if shape[0] == 1 else np.moveaxis(x, 0, -1)
    np.testing.assert_allclose(np.asarray(tile), want)
    r.save(tmp_path / "t")
    write_target_pictures(r, tmp_path / "t")
    im = Image.open(tmp_path / "t" / "thumb.png")
    scale = 160 // max(shape[1:])
    assert im.size == (shape[2] * scale, shape[1] * scale)
    assert im.mode == ("L" if shape[0] == 1 else "RGB")
    px = np.asarray(im)[::scale, ::scale].astype(float) / 255
    np.testing.assert_allclose(px, want, atol=1 / 255)


@pytest.mark.parametrize("name", ["price $^$", "$5 - 10$"])
def test_a_dollar_in_a_class_name_is_drawn_as_text(saved_figures, tmp_path, name):
    """Text is never mathtext: 'price $^$' failed to parse (no pictures), '$5 - 10$' was
    drawn as a formula."""
    from inverset.report.pictures import write_pictures

    x = np.random.default_rng(0).random((1, 8, 8))
    target = f'prob:"{name}"'
    r = _result(x, xs=np.stack([x, x]), values=np.array([0.7, 0.6]), target=target)
    r.history = {"nfev": [1, 2], "best": [0.5, 0.7]}
    written = write_pictures(r, tmp_path)
    assert sorted(p.name for p in written) == ["convergence.png", "inputs.png", "values.png"]
    assert all(p.is_file() for p in written)
    texts = [
        t
        for fig in saved_figures
        for t in fig.findobj(Text)
        if name in t.get_text() and t.get_visible()
    ]
    assert len(texts) >= 5  # grid title, two labels, curve and histogram titles
    assert all(t._preprocess_math(t.get_text()) == (t.get_text(), False) for t in texts)


def test_names_in_other_scripts_draw_without_glyph_warnings(tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_grid(np.zeros((2, 1, 8, 8)), tmp_path / "g.png", ["猫", "狗 dog"], title="クラス")
    assert not [w for w in caught if "Glyph" in str(w.message)]
    assert (tmp_path / "g.png").is_file()


def test_curves_are_drawn_against_what_the_history_records_with_the_bound(saved_figures, tmp_path):
    """An exact solver's history has time, best and bound (no nfev): it was drawn against the
    record index, labelled nfev, without the bound."""
    exact = {"time": [0.5, 1.0, 2.0], "best": [1.0, 1.5, 1.5], "bound": [9.0, 4.0, 2.0]}
    save_curve(exact, tmp_path / "e.png")
    (ax,) = saved_figures[0].axes
    assert ax.get_xlabel() == "time (s)"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["best"].get_xdata()) == [0.5, 1.0, 2.0]
    assert list(lines["proven bound"].get_ydata()) == [9.0, 4.0, 2.0]
    # the best so far and the bound hold until the next record: steps, not slopes between
    assert lines["best"].get_drawstyle() == lines["proven bound"].get_drawstyle() == "steps-post"
    save_curve({"nfev": [10, 40], "time": [0.1, 0.2], "best": [1, 2]}, tmp_path / "b.png")
    ax = saved_figures[1].axes[0]
    assert ax.get_xlabel() == "evaluations"
    assert list(ax.get_lines()[0].get_xdata()) == [10, 40]
    save_curve({"best": [3.0, 4.0]}, tmp_path / "r.png")
    assert saved_figures[2].axes[0].get_xlabel() == "record"


def test_tiles_share_the_domains_scale(saved_figures, tmp_path):
    """In a [-1, 1] box, an image spanning the box and one nearly flat at -1 were both
    stretched to black and white: they looked the same."""
    from inverset.report.pictures import write_pictures

    a = -np.ones((1, 8, 8))
    a[0, :, :4] = 1.0
    b = -np.ones((1, 8, 8))
    b[0, :, :4] = -0.9
    r = _result(a, xs=np.stack([a, b]), values=np.array([2.0, 1.0]), lo=-1.0, hi=1.0)
    write_pictures(r, tmp_path)
    ta, tb = (np.asarray(ax.get_images()[0].get_array()) for ax in saved_figures[0].axes)
    assert (tb[0, 0], tb[0, 7]) == pytest.approx((0.05, 0.0))
    assert (ta[0, 0], ta[0, 7]) == pytest.approx((1.0, 0.0))
    # an unbounded box: the tiles' joint min and max
    c, d = np.zeros((2, 1, 4, 4))
    c[0, :, :2], d[0, :, :2] = 2.0, 1.0
    save_grid([c, d], tmp_path / "j.png")
    ta, tb = (np.asarray(ax.get_images()[0].get_array()) for ax in saved_figures[-1].axes)
    assert ta.max() == pytest.approx(1.0) and tb.max() == pytest.approx(0.5)
