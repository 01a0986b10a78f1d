"""``inverset report`` and ``atlas`` on directories holding foreign, corrupt or stale files, and
pictures of inputs with many features: a clear one-line error, or a report that shows what is
wrong with a target and still covers the others; pictures of bounded size."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inverset import Box, Result, maximize
from inverset.errors import InversetError
from inverset.jobs import atlas
from inverset.report.html import build_report, write_target_pictures
from inverset.report.images import save_bars
from inverset.report.pictures import picture_shape, write_pictures

torch.set_num_threads(1)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 3))


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A finished 3-target maximize atlas, copied fresh for each test."""
    out = tmp_path_factory.mktemp("robust") / "job"
    dom = Box(-1, 1, shape=(3,))
    s = atlas(_model(), out, classes="all", domain=dom, steps=5, starts=1, polish=False)
    assert s.status == "complete"
    return out


@pytest.fixture
def fresh(job, tmp_path):
    out = tmp_path / "job"
    shutil.copytree(job, out)
    return out


def _meta(index) -> str:
    text = index.read_text()
    return text[text.index("<div class=meta>") :].split("</div>")[0]


def test_report_of_a_foreign_result_json_builds_and_says_broken(run_main, tmp_path):
    (tmp_path / "f" / "run1").mkdir(parents=True)
    (tmp_path / "f" / "run1" / "result.json").write_text('{"status": "ok"}')
    code, _, err = run_main("report", tmp_path / "f")
    assert code == 0, err
    assert "Traceback" not in err and "internal error" not in err
    assert "run1/result.json" in err and "broken" in err and len(err.strip().splitlines()) == 1
    assert "0/1 targets done" in _meta(tmp_path / "f" / "index.html")
    assert "broken:" in (tmp_path / "f" / "index.html").read_text()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"targets": [{"key": "../x"}]}'])
def test_corrupt_job_json_is_one_line_error_in_report_and_atlas(run_main, fresh, text):
    (fresh / "job.json").write_text(text)
    code, _, err = run_main("report", fresh)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{fresh / 'job.json'} is not an atlas job record" in err and "move it away" in err
    with pytest.raises(InversetError, match="is not an atlas job record"):
        atlas(_model(), fresh, classes="all", domain=Box(-1, 1, shape=(3,)), steps=5, starts=2)


def test_one_unreadable_result_is_a_broken_card_not_a_failed_report(fresh):
    assert (fresh / "out_1" / "index.html").is_file()  # the earlier result's page
    (fresh / "out_1" / "result.json").write_text('{"status": "optimal", "value": [')
    heard: list[str] = []
    index = build_report(fresh, warn=heard.append)
    text = index.read_text()
    assert "2/3 targets done" in _meta(index) and "1 broken" in _meta(index)
    assert "broken:" in text and "out_1/result.json is not a saved result" in text
    assert (fresh / "out_0" / "index.html").is_file() and (fresh / "out_2" / "index.html").is_file()
    assert len(heard) == 1 and str(fresh / "out_1") in heard[0]
    # the broken target keeps no page or picture of the result it no longer holds
    assert not any((fresh / "out_1" / n).exists() for n in ("index.html", "thumb.png"))
    # the advice is what works: a rerun alone refuses the directory (it said 'rerun the
    # atlas to recompute it'); removing it first recomputes it
    assert heard[0].endswith(f"(remove {fresh / 'out_1'} and rerun the atlas to recompute it)")
    kw = {"classes": "all", "domain": Box(-1, 1, shape=(3,)), "steps": 5, "starts": 1}
    kw.update(polish=False, report=False)
    with pytest.raises(InversetError, match="holds a result that is not this job's"):
        atlas(_model(), fresh, **kw)
    shutil.rmtree(fresh / "out_1")
    s = atlas(_model(), fresh, **kw)
    assert s.status == "complete" and s.skipped == 2 and s.finished == 1
    assert Result.load(fresh / "out_1").query["target"] == "out:1"


def test_another_querys_result_is_foreign_not_done(fresh):
    other = maximize(_model(), "out:0", Box(-1, 1, shape=(3,)), steps=5, starts=1, seed=7)
    for name in ("result.json", "result.npz"):
        (fresh / "out_1" / name).unlink()
    other.save(fresh / "out_1")
    heard: list[str] = []
    index = build_report(fresh, warn=heard.append)
    assert "2/3 targets done" in _meta(index) and "1 foreign" in _meta(index)
    card = index.read_text().split("data-key='out_1'")[1].split("data-key=")[0]
    assert "foreign:" in card and f"{other.value:.5g}" not in card
    assert len(heard) == 1 and "another query" in heard[0]


def test_results_without_a_job_id_match_on_key_and_seed(fresh):
    """Results written before atlases recorded the job id still count (the rule atlas uses)."""
    p = fresh / "out_2" / "result.json"
    meta = json.loads(p.read_text())
    del meta["info"]["job"]["id"]
    p.write_text(json.dumps(meta))
    assert "3/3 targets done" in _meta(build_report(fresh))
    meta["info"]["job"]["seed"] += 1
    p.write_text(json.dumps(meta))
    assert "2/3 targets done" in _meta(build_report(fresh))


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_many_features_draw_a_bounded_picture_quickly(tmp_path, saved_figures):
    t0 = time.perf_counter()
    save_bars(np.linspace(-1, 1, 3000), tmp_path / "w.png", lo=np.zeros(3000), hi=np.ones(3000))
    assert time.perf_counter() - t0 < 1.5
    w, h = _size(tmp_path / "w.png")
    assert w <= 1400 and h <= 400
    # 784 inputs of a model without an image shape or feature names: drawn as 28x28 (they
    # were a 1-D profile); 900 named features stay a (bounded) vector picture
    x = np.zeros(784)
    x[28 * 5 + 7] = 1.0  # one lit pixel, row 5, column 7
    res = Result(
        x=x,
        value=1.0,
        status="converged",
        xs=np.stack([x, 1 - x]),
        values=np.array([1.0, 0.5]),
        query={"target": "out:0", "domain": {"lo": 0.0, "hi": 1.0}},
    )
    (path, _) = write_pictures(res, tmp_path / "mnist")
    assert path.name == "inputs.png"
    fig = saved_figures[-2]  # inputs.png, then values.png
    assert fig._suptitle.get_text().replace("\n", " ").endswith("(784 inputs drawn as 28x28)")
    shown = np.asarray(fig.axes[0].get_images()[0].get_array())
    assert shown.shape[:2] == (28, 28)
    assert np.unravel_index(np.argmax(shown.reshape(28, 28, -1)[..., 0]), (28, 28)) == (5, 7)
    pics = write_target_pictures(res, tmp_path / "mnist")
    assert {"thumb.png", "samples.png"} <= set(pics)
    titles = [f._suptitle.get_text().replace("\n", " ") for f in saved_figures if f._suptitle]
    assert "out:0: returned points (784 inputs drawn as 28x28)" in titles, titles
    # the MNIST-FC ONNX nets take (784, 1): drawn alike (they were bars)
    assert picture_shape((784, 1)) == picture_shape((1, 784)) == (1, 28, 28)
    assert picture_shape((784, 2)) is None and picture_shape((784,), ["a"] * 784) is None
    named = Result(
        x=np.zeros(900),
        value=1.0,
        status="converged",
        query={
            "target": "out:0",
            "domain": {"lo": 0.0, "hi": 1.0, "names": list(map(str, range(900)))},
        },
    )
    (path,) = write_pictures(named, tmp_path / "named")
    assert path.name == "best_input.png" and _size(path)[0] <= 1400


def test_few_features_keep_labelled_bars(saved_figures, tmp_path):
    from inverset.report.images import MAX_BARS

    names = [f"f{i}" for i in range(MAX_BARS)]
    save_bars(np.ones(MAX_BARS), tmp_path / "b.png", names)
    (ax,) = saved_figures[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert _size(tmp_path / "b.png")[0] <= 1400


def test_rewritten_pictures_leave_no_stale_picture_and_keep_user_files(tmp_path):
    q = {"target": "out:0", "domain": {"lo": -1.0, "hi": 1.0}}
    eight = Result(
        x=np.zeros(2), value=1.0, status="converged", xs=np.zeros((8, 2)), values=np.ones(8)
    )
    eight.query = q
    d = tmp_path / "s"
    eight.save(d)
    assert {p.name for p in write_pictures(eight, d)} == {"best_input.png", "values.png"}
    (d / "values_mine.png").write_bytes(b"mine")
    (d / "notes.txt").write_text("mine")
    one = Result(x=np.zeros(2), value=1.0, status="converged", xs=np.zeros((1, 2)), values=[1.0])
    one.query = q
    one.save(d)  # over the earlier result: its pictures go
    write_pictures(one, d)
    assert not (d / "values.png").exists() and (d / "best_input.png").is_file()
    assert (d / "values_mine.png").read_bytes() == b"mine" and (d / "notes.txt").is_file()
    # an atlas target's pictures likewise
    (d / "histogram.png").write_bytes(b"old")
    assert "histogram.png" not in write_target_pictures(one, d)
    assert not (d / "histogram.png").exists()


def test_visualize_without_a_box_says_what_is_missing():
    from inverset.jobs.atlas import _value_range

    with pytest.raises(InversetError) as exc:
        _value_range(Box(-np.inf, np.inf, shape=(1, 8, 8)))
    assert "no finite bounds" in str(exc.value) and "--box LO,HI" in str(exc.value)
    with pytest.raises(InversetError, match="bounds differ between features"):
        _value_range(Box([0, 0], [1, 2]))
    assert _value_range(Box(0, 1, shape=(1, 8, 8))) == (0.0, 1.0)


def test_non_finite_numbers_round_trip_and_strings_stay_strings(tmp_path):
    """'inf' strings (class names, notes) came back as floats and NaN as None."""
    nan, inf = float("nan"), float("inf")
    r = Result(
        x=np.zeros(3),
        value=nan,
        status="converged",
        bound=inf,
        gap=-inf,
        history={"best": [1.0, nan, inf]},
        timings={"total": 0.5},
        query={"target": 'prob:"inf"', "labels": ["inf", "-inf", "nan", "cat"]},
        info={"note": "inf", "limit": -inf},
    )
    r.save(tmp_path)

    def strict(c):
        raise ValueError(f"non-standard JSON constant {c}")

    meta = json.loads((tmp_path / "result.json").read_text(), parse_constant=strict)
    assert meta["bound"] == {"__float__": "inf"} and meta["value"] == {"__float__": "nan"}
    s = Result.load(tmp_path)
    assert np.isnan(s.value) and s.bound == inf and s.gap == -inf
    assert s.history["best"][:1] == [1.0] and np.isnan(s.history["best"][1])
    assert s.history["best"][2] == inf
    assert s.query == {"target": 'prob:"inf"', "labels": ["inf", "-inf", "nan", "cat"]}
    assert s.info == {"note": "inf", "limit": -inf}
    # a result.json of the older form: 'inf' strings where a number is expected
    meta.update(value="-inf", bound="inf", gap=None)
    (tmp_path / "result.json").write_text(json.dumps(meta))
    old = Result.load(tmp_path)
    assert (old.value, old.bound, old.gap) == (-inf, inf, None)
    assert old.query["labels"][0] == "inf"


@pytest.mark.parametrize("damage", [b"garbage\n", b"PK\x03\x04garbage"])
def test_a_damaged_npz_is_called_not_a_valid_npz_file(tmp_path, damage):
    """A text file in place of result.npz was said to hold pickled data."""
    Result(x=np.zeros(3), value=1.0, status="converged").save(tmp_path)
    (tmp_path / "result.npz").write_bytes(damage)
    with pytest.raises(InversetError, match="not a valid npz file") as err:
        Result.load(tmp_path)
    assert "pickle" not in str(err.value)
    np.savez(tmp_path / "result.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InversetError, match="object arrays"):
        Result.load(tmp_path)


@pytest.mark.parametrize("status", ["unreachable", "infeasible", "not_found"])
def test_a_result_without_arrays_loads_again(tmp_path, status):
    """An answer with no input saves an npz of no arrays (a zip of only its end record), which
    the zip-signature check took for a damaged file."""
    Result(x=None, value=None, status=status, bound=-math.inf).save(tmp_path)
    back = Result.load(tmp_path)
    assert back.status == status and back.x is None and back.bound == -math.inf


def test_pictures_of_a_visualize_run_are_removed_by_a_maximize_into_its_directory(tmp_path):
    """write_pictures left grid.png and optimization.gif of an earlier visualize run (whose
    result the new one is saved over, which removes them)."""
    Result(x=np.zeros(3), value=1.0, status="converged").save(tmp_path)
    for name in ("grid.png", "optimization.gif", "convergence.png", "mine.png"):
        (tmp_path / name).write_bytes(b"old")
    r = maximize(_model(), "out:0", Box(-1, 1, shape=(3,)), steps=5, starts=2, polish=False)
    r.save(tmp_path)
    written = write_pictures(r, tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["mine.png", "result.json", "result.npz", *(p.name for p in written)])
    assert "convergence.png" in left and (tmp_path / "convergence.png").read_bytes() != b"old"


def _read_only(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_report_into_a_read_only_atlas_is_one_line(run_main, fresh, monkeypatch):
    import tempfile

    with monkeypatch.context() as m:  # the directory takes no file at all
        m.setattr(tempfile, "TemporaryFile", _read_only)
        code, _, err = run_main("report", fresh)
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: cannot write the atlas pages into {fresh} (Read-only file system); make it "
        "writable, or copy the atlas to a directory you can write to and report it there"
    ]
    real = Path.write_text

    def pages_fail(self, *args, **kwargs):  # a page of one target cannot be written
        if "index.html" in self.name and self.name != "index.html":  # its temporary file
            real(self, "")  # begun, then the file system refuses
            _read_only()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", pages_fail)
    code, _, err = run_main("report", fresh)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the atlas page "), err
    assert "(Read-only file system); make " in lines[0]
    assert not list(fresh.rglob(".tmp-*"))


def test_cards_of_several_solvers_and_goals_say_which(tmp_path):
    """Results of one target by several solvers and goals, side by side: each card names its
    goal and solver (they read alike, 'out:0 | value ... | converged', before)."""
    from inverset import reach

    dom = Box(-1, 1, shape=(3,))
    maximize(_model(), "out:0", dom, steps=5, starts=1, seed=0).save(tmp_path / "r" / "a")
    maximize(_model(), "out:0", dom, solver="exact").save(tmp_path / "r" / "b")
    reach(_model(), "out:0", 0.25, dom, steps=5, starts=2, seed=0).save(tmp_path / "r" / "c")
    text = build_report(tmp_path / "r").read_text()
    lines = [t.split("</div>")[0] for t in text.split("<div class=s>")[1:]]
    assert any(ln.endswith("· maximize · gradient") for ln in lines), lines
    assert any(ln.endswith("optimal · maximize · exact") for ln in lines), lines
    assert any(ln.endswith("· reach 0.25 · gradient") for ln in lines), lines
    # their directories tell the three out:0 cards and pages apart
    assert {"a", "b", "c"} <= set(lines), lines
    assert "<div class=meta>b</div><h1>out:0</h1>" in (tmp_path / "r/b/index.html").read_text()


def test_a_failed_save_raises_the_public_save_error_holding_the_result(tmp_path):
    """README: a failed write raises ``SaveError`` (``iv.SaveError``), an InversetError whose
    ``.result`` is the Result, and leaves no temporary file."""
    import inverset as iv

    r = maximize(_model(), "out:0", Box(-1, 1, shape=(3,)), steps=3, starts=1, seed=0)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(iv.SaveError) as err:
        r.save(blocker / "run")
    assert isinstance(err.value, iv.InversetError) and err.value.result is r
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_models_feature_names_keep_its_flat_inputs_bars(tmp_path):
    """A model that names its 256 features (a DataFrame's columns) drew its atlas thumbnails
    as 16x16 images: the saved query did not carry the names. It does now."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1))
    model.feature_names = [f"f{i}" for i in range(256)]
    r = maximize(model, "out:0", Box(0, 1, shape=(256,)), starts=2, steps=3)
    assert r.query["domain"]["names"] == model.feature_names
    assert "thumb.png" in write_target_pictures(r, tmp_path)
    w, h = _size(tmp_path / "thumb.png")
    assert w > 2 * h  # bars (it was a 160x160 picture)
    (tmp_path / "n").mkdir()
    assert "thumb.png" in write_target_pictures(
        Result(x=r.x, value=r.value, status=r.status, query={"target": "out:0"}), tmp_path / "n"
    )
    w, h = _size(tmp_path / "n" / "thumb.png")
    assert w == h  # no names: a 16x16 picture


def test_what_users_look_at_says_what_it_shows(tmp_path, saved_figures):
    """Audit 103: an old report's page and pictures stayed beside a new --out result; a
    one-record curve drew nothing; values 1e-8 apart got an offset label over the axis label;
    an image grid showed 32 of 40 samples and said neither that nor the range; a visualize
    atlas's target titled its batch's mean curve as its own; -inf read 'inf'."""
    from inverset.files import GENERATOR
    from inverset.report.html import _fmt
    from inverset.report.images import save_curve, save_histogram

    old, mine = tmp_path / "old", tmp_path / "mine"
    new = Result(x=np.zeros(2), value=1.0, status="converged", query={"target": "out:0"})
    for d, page in ((old, f"<!DOCTYPE html><html><head>{GENERATOR}"), (mine, "<html>mine")):
        new.save(d)  # the earlier result, reported
        (d / "index.html").write_text(page)
        (d / "thumb.png").write_bytes(b"old")
    for d in (old, mine):
        new.save(d)
        write_pictures(new, d)
        assert not (d / "thumb.png").exists()
    assert not (old / "index.html").exists() and (mine / "index.html").read_text() == "<html>mine"

    save_curve({"time": [1.0], "best": [1.38], "bound": [267.9]}, tmp_path / "c.png")
    assert all(line.get_marker() == "o" for line in saved_figures[-1].axes[0].get_lines())
    save_histogram(14.062171 + 1e-8 * np.arange(5.0), tmp_path / "h.png")
    assert saved_figures[-1].axes[0].xaxis.get_major_formatter().get_offset() == ""

    xs = np.random.default_rng(0).random((40, 1, 8, 8))
    grid = Result(
        x=xs[0],
        value=9.0,
        status="found",
        xs=xs,
        values=np.full(40, 9.0),
        query={"target": "logit:3", "goal": {"kind": "range", "low": 8.0, "high": 12.0}},
    )
    write_pictures(grid, tmp_path / "grid")
    title = saved_figures[-2]._suptitle.get_text().replace("\n", " ")
    assert title == "range [8, 12] logit:3, the first 32 of 40", title

    batch = Result(
        x=xs[0],
        value=1.7,
        status="step_limit",
        history={"objective": [1.0, 1.4]},
        info={"history": "mean over the batch"},
        query={"target": "conv2:0"},
    )
    (tmp_path / "b").mkdir()
    write_target_pictures(batch, tmp_path / "b")
    curve = next(f for f in saved_figures if "batch" in f.axes[0].get_title())
    assert curve.axes[0].get_title() == "conv2:0: its render batch's mean objective"
    assert _fmt(float("-inf")) == "-inf" and _fmt(float("inf")) == "inf"


# ---------------------------------------------------------------- pictures cut short (audit 111)
@pytest.mark.parametrize("stop", ["interrupt", "full disk"])
def test_a_picture_cut_short_leaves_no_file_and_is_drawn_again(fresh, monkeypatch, stop):
    """Ctrl-C or a full disk while a picture is written: no broken picture under its name
    (it was kept for good: it is newer than its result), no temporary file; the next report
    draws it."""
    from matplotlib.figure import Figure

    for p in fresh.glob("*/*.png"):
        p.unlink()
    real = Figure.savefig

    def cut(self, fname, *args, **kwargs):
        if "convergence" in Path(fname).name:
            Path(fname).write_bytes(b"\x89PNG\r\n\x1a\n")  # begun, then stopped
            if stop == "interrupt":
                raise KeyboardInterrupt
            import errno
            import os

            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, fname, *args, **kwargs)

    warned: list[str] = []
    with monkeypatch.context() as m:
        m.setattr(Figure, "savefig", cut)
        if stop == "interrupt":
            with pytest.raises(KeyboardInterrupt):
                build_report(fresh)
        else:
            build_report(fresh, warn=warned.append)
            assert len(warned) == 3 and all("pictures not written" in w for w in warned)
    assert not list(fresh.glob("*/convergence.png"))
    assert not list(fresh.rglob(".tmp-*")) and not list(fresh.rglob("*.tmp"))
    build_report(fresh)
    curves = list(fresh.glob("*/convergence.png"))
    assert len(curves) == 3
    for p in curves:
        Image.open(p).load()


def test_a_broken_picture_of_an_earlier_run_is_drawn_again(fresh):
    """An empty or cut-short picture newer than its result (left by an earlier version's
    interrupted write) was kept for good; it is drawn again."""
    pics = sorted(fresh.glob("*/convergence.png")) + sorted(fresh.glob("*/thumb.png"))
    pics[0].write_bytes(b"")
    pics[-1].write_bytes(pics[-1].read_bytes()[:300])
    kept = pics[1].stat().st_mtime_ns
    build_report(fresh)
    for p in pics:
        Image.open(p).load()
    assert pics[1].stat().st_mtime_ns == kept  # a whole picture is not drawn again


def test_an_interrupted_thumbnail_leaves_no_file(tmp_path, monkeypatch):
    from inverset.report.html import _thumbnail

    def cut(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", cut)
    with pytest.raises(KeyboardInterrupt):
        _thumbnail(np.zeros((1, 8, 8)), tmp_path / "thumb.png", None)
    assert list(tmp_path.iterdir()) == []
