"""What the pictures and pages show: another result's pictures never beside a new one, inputs
of any channel count drawn as images, a visualization's pixels rather than its normalized
inputs, long feature names, a user's own pages left alone (audit 118)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from inverset import Result
from inverset.errors import InversetError
from inverset.files import GENERATOR
from inverset.report.html import _range_label, build_report, write_target_pictures
from inverset.report.images import BAR_LABEL_CHARS, _shortened, save_bars
from inverset.report.pictures import write_pictures


def _result(x, xs=None, values=None, **query) -> Result:
    r = Result(x=x, value=1.0, status="converged", xs=xs, values=values)
    r.query = {"target": "out:0", "domain": {"lo": 0.0, "hi": 1.0}, **query}
    return r


def test_saving_a_result_removes_the_pictures_of_the_one_it_replaces(tmp_path):
    """A result saved through the API where the CLI had saved another kept the old inputs.png,
    values.png and convergence.png, and its report showed them under the new target."""
    old = _result(np.full((1, 8, 8), 0.5), np.full((4, 1, 8, 8), 0.5), np.arange(4.0))
    old.history = {"best": [0.0, 1.0], "step": [0, 1]}
    old.save(tmp_path)
    written = {p.name for p in write_pictures(old, tmp_path)}
    assert {"inputs.png", "convergence.png", "values.png"} <= written
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "index.html").write_text(f"<html><head>{GENERATOR}</head></html>")
    _result(np.zeros((1, 8, 8)), target="logit:5").save(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["notes.txt", "result.json", "result.npz"]
    page = build_report(tmp_path).read_text()
    assert "logit:5" in page and "<img" not in page


def test_saving_into_a_directory_without_a_result_keeps_files_of_inverset_names(tmp_path):
    """A user's own grid.png or histogram.png beside a first save is theirs (audit 120)."""
    for name in ("grid.png", "histogram.png", "index.html"):
        (tmp_path / name).write_text("mine")
    _result(np.zeros(3)).save(tmp_path)
    assert all((tmp_path / n).read_text() == "mine" for n in ("grid.png", "histogram.png"))


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_inputs_of_any_channel_count_are_drawn_side_by_side_not_as_transparency(tmp_path, channels):
    """2 and 4 channels were drawn as grey or RGB with the last as transparency, 5 as a
    line profile of 1280 features."""
    x = np.random.default_rng(0).uniform(size=(channels, 16, 16))
    r = _result(x)
    r.save(tmp_path)
    assert write_target_pictures(r, tmp_path) == ["thumb.png"]
    with Image.open(tmp_path / "thumb.png") as im:
        thumb = np.asarray(im)
    assert thumb.ndim == 2  # grey, no alpha
    side = thumb.shape[0] // 16
    assert thumb.shape[1] == side * (channels * 16 + channels - 1)
    for c in range(channels):  # each channel in its own place, on the box's scale
        tile = thumb[::side, c * 17 * side :: side][:16, :16] / 255
        np.testing.assert_allclose(tile, x[c], atol=0.5 / 255 + 1e-9)
    assert {p.name for p in write_pictures(r, tmp_path / "p")} == {"inputs.png"}


def test_a_normalized_visualization_is_drawn_from_its_pixels(tmp_path):
    """With --mean/--std the thumbnail drew the normalized inputs (-4..5) on the pixels'
    scale: black and white; and of the first channel, not of x (the best)."""
    images = np.random.default_rng(1).uniform(0.1, 0.9, size=(3, 1, 8, 8))
    xs = (images - 0.5) / 0.1
    r = _result(xs[2], xs, np.array([1.0, 2.0, 3.0]), value_range=[0.0, 1.0])
    r.arrays["images"] = images
    r.save(tmp_path)
    pics = write_target_pictures(r, tmp_path)
    assert pics[:2] == ["thumb.png", "samples.png"]
    with Image.open(tmp_path / "thumb.png") as im:
        thumb = np.asarray(im.convert("L"), dtype=float) / 255
    s = thumb.shape[0] // 8
    np.testing.assert_allclose(thumb[::s, ::s], images[2, 0], atol=1 / 255)


def test_long_feature_names_keep_their_ends_and_the_chart_its_bars(tmp_path):
    names = [f"num__age_measured_at_baseline_visit_scaled_and_standardized_{i}" for i in range(8)]
    short = [_shortened(n) for n in names]
    assert all(len(s) == BAR_LABEL_CHARS for s in short) and len(set(short)) == 8
    assert short[3].startswith("num__age_meas") and short[3].endswith("standardized_3")
    assert _shortened("bmi") == "bmi"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Tight layout not applied" was printed
        save_bars(np.linspace(0, 1, 8), tmp_path / "b.png", names, np.zeros(8), np.ones(8))


def test_a_report_never_overwrites_a_users_own_page(run_main, tmp_path):
    """``inverset report PARENT`` over results saved side by side overwrote a user's
    index.html there and in a result's directory; ``report DIR`` alone refused."""
    for k in ("run1", "run2"):
        _result(np.zeros(3)).save(tmp_path / k)
    mine = "<html><body>my notes</body></html>"
    (tmp_path / "run1" / "index.html").write_text(mine)
    code, _, err = run_main("report", tmp_path)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'run1' / 'index.html'} is not a page inverset wrote" in err
    assert (tmp_path / "run1" / "index.html").read_text() == mine
    assert (
        not (tmp_path / "index.html").exists() and not (tmp_path / "run2" / "index.html").exists()
    )
    (tmp_path / "run1" / "index.html").unlink()
    (tmp_path / "index.html").write_text(mine)
    code, _, err = run_main("report", tmp_path)
    assert code == 2 and f"{tmp_path / 'index.html'} is not a page" in err
    assert (tmp_path / "index.html").read_text() == mine
    (tmp_path / "index.html").unlink()
    assert run_main("report", tmp_path)[0] == 0
    assert GENERATOR in (tmp_path / "run1" / "index.html").read_text()


def test_an_intersection_card_names_every_range():
    r = _result(np.zeros(3), goal={"kind": "range", "low": -4.0, "high": 0.0})
    r.query["constraints"] = [["logit:7", -6.0, -1.0]]
    assert _range_label(r) == " <span class=s>[-4, 0], logit:7 in [-6, -1]</span>"


def test_a_dream_starts_from_a_flat_result_as_its_pictures_draw_it():
    """A maximize on MNIST-FC loaded without an input shape saves x as (784, 1), drawn as
    28x28; a dream from it was refused as 'a single row or column'."""
    from inverset.featvis.render import _load_image

    x = np.random.default_rng(2).uniform(size=(784, 1))
    start = _load_image(_result(x), 1, 0.0, 1.0)
    assert tuple(start.shape) == (1, 1, 28, 28)
    np.testing.assert_allclose(start.numpy().reshape(-1), x.reshape(-1), atol=1e-6)


def test_a_tabular_inputs_page_lists_its_numbers_with_their_box(run_main, tmp_path):
    """A recipe was shown only as bars; the page now gives each feature's value and box."""
    r = _result(np.array([0.125, -3.5, 7.0]))
    r.query["domain"] = {"lo": [0.0, -4.0, 0.0], "hi": [1.0, 4.0, 10.0], "names": ["a<b", "y", "z"]}
    r.save(tmp_path)
    assert run_main("report", tmp_path)[0] == 0
    page = (tmp_path / "index.html").read_text()
    assert "<tr><td>a&lt;b</td><td>0.125</td><td>[0, 1]</td></tr>" in page
    assert "<tr><td>z</td><td>7</td><td>[0, 10]</td></tr>" in page


def test_a_dream_from_a_visualization_starts_from_its_best_image_without_alpha():
    """It took the first channel's image, not x's (the best), with its alpha channel (which
    then failed as a second channel); an atlas target's one (C, H, W) image gave its first
    channel alone."""
    from inverset.featvis.render import _load_image

    images = np.random.default_rng(3).uniform(0.1, 0.9, size=(3, 2, 8, 8))  # grey + alpha
    xs = (images[:, :1] - 0.5) / 0.1
    r = _result(xs[1], xs, np.array([1.0, 3.0, 2.0]), value_range=[0.0, 1.0])
    r.arrays["images"] = images
    start = _load_image(r, 1, 0.0, 1.0).numpy()[0, 0]
    np.testing.assert_allclose(start, images[1, 0], atol=1e-6)
    atlas = _result(xs[1], value_range=[0.0, 1.0])
    atlas.arrays["images"] = images[1]
    np.testing.assert_allclose(
        _load_image(atlas, 1, 0.0, 1.0).numpy()[0, 0], images[1, 0], atol=1e-6
    )


def test_a_reach_histogram_marks_its_value(saved_figures, tmp_path):
    r = _result(np.zeros(2), np.zeros((5, 2)), np.array([2.9, 3.0, 3.1, 3.05, 2.95]))
    r.query["goal"] = {"kind": "reach", "value": 3.0}
    assert "values.png" in {p.name for p in write_pictures(r, tmp_path)}
    (ax,) = next(f for f in saved_figures if f.axes[0].get_xlabel() == "target value").axes
    lines = [ln for ln in ax.get_lines() if ln.get_label() == "value"]
    assert len(lines) == 1 and list(lines[0].get_xdata()) == [3.0, 3.0]


def test_a_signal_is_drawn_as_lines_not_a_strip_two_pixels_high(saved_figures, tmp_path):
    """A (2, 128) signal's grid tile was a 2x128 picture: a strip no one could read."""
    from inverset.report.images import save_grid

    t = np.linspace(0, 12, 128)
    signals = np.stack([np.stack([np.sin(t), np.cos(t)]) * 0.5 + 0.5] * 2)
    save_grid(signals, tmp_path / "g.png", ["a", "b"], value_range=(0.0, 1.0))
    axes = saved_figures[-1].axes
    assert len(axes) == 2 and axes[0].get_ylim() == (0.0, 1.0)
    lines = axes[0].get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_ydata(), signals[0, 1])
    tile = axes[0].get_window_extent()
    assert tile.height > 0.5 * tile.width  # a plot, not a strip


def test_an_atlas_refuses_a_users_page_or_files_before_it_computes_anything(tmp_path):
    """It computed every target, then ended in the report's refusal (exit 2, no summary);
    files of a user's in an unfinished target's directory were deleted with it."""
    from torch import nn

    from inverset import Box
    from inverset.jobs import atlas

    torch_model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    kw = dict(classes="all", domain=Box(-1, 1, shape=(3,)), steps=3, starts=1, polish=False)
    out = tmp_path / "a"
    out.mkdir()
    (out / "index.html").write_text("mine")
    with pytest.raises(InversetError, match=r"index.html is not a page inverset wrote"):
        atlas(torch_model, out, **kw)
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]  # no job, no target
    (out / "index.html").unlink()
    (out / "out_1").mkdir()
    (out / "out_1" / "notes.txt").write_text("mine")
    with pytest.raises(InversetError, match=r"out_1 holds files inverset did not write"):
        atlas(torch_model, out, **kw)
    assert (out / "out_1" / "notes.txt").read_text() == "mine" and not (out / "out_0").exists()
    (out / "out_1" / "notes.txt").unlink()
    assert atlas(torch_model, out, **kw).status == "complete"


def test_a_signal_visualization_is_drawn_and_dreamt_from_its_best_pixels():
    """rendered() took (C, H, W) inputs only: a (C, L) signal's dream started from the first
    image, and its thumbnail drew the normalized inputs (audit 120)."""
    from inverset.featvis.render import _load_image
    from inverset.report.pictures import rendered

    images = np.random.default_rng(4).uniform(0.1, 0.9, size=(3, 2, 32))
    xs = (images - 0.5) / 0.1
    r = _result(xs[2], xs, np.array([1.0, 2.0, 3.0]), value_range=[0.0, 1.0])
    r.arrays["images"] = images
    image, pixels = rendered(r)
    np.testing.assert_array_equal(image, images[2])  # x's image, the third
    assert pixels.shape == (3, 2, 32)
    start = _load_image(r, 2, 0.0, 1.0, signal=True).numpy()[0]
    np.testing.assert_allclose(start, images[2], atol=1e-6)
