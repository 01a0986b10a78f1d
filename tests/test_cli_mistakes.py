"""A user's mistakes on the command line (audit 119): each is a one-line error naming the
option and the fix, exit 2, never a traceback, a guessed domain or a NaN answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset import featvis as fv

torch.set_num_threads(1)


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))


def linear3() -> nn.Module:
    return nn.Linear(3, 1)


@pytest.fixture
def conv_ts(tmp_path):
    torch.jit.script(_conv()).save(str(tmp_path / "conv.pt"))
    return tmp_path / "conv.pt"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "command, extra",
    [
        ("layers", []),
        ("visualize", ["--layer", "2", "--steps", "1"]),
        ("maximize", ["-t", "2:0", "--box", "0,1"]),
    ],
)
@pytest.mark.parametrize("shape", ["-1,8,8", "0,8,8", ""])
def test_a_bad_input_shape_names_the_option(run_main, conv_ts, tmp_path, command, extra, shape):
    """-1 (numpy's reshape idiom) crashed layers, visualize and dream with a torch traceback
    (exit 4); maximize blamed the box."""
    code, _, err = run_main(command, conv_ts, "--input-shape", shape, *extra)
    assert code == 2
    assert "--input-shape takes one input's shape without the batch axis" in _one_line(err)
    with pytest.raises(iv.InversetError, match=r"input_shape is one input's shape"):
        iv.load_model(_conv(), input_shape=(-1, 8, 8))


@pytest.mark.parametrize("option", ["--box", "--integer"])
def test_an_empty_box_or_integer_list_is_refused_not_ignored(run_main, conv_ts, option):
    """``--box "$BOX"`` with BOX unset ran an unbounded search (3.8e37); ``--integer ''`` was
    ignored."""
    args = ["maximize", conv_ts, "--input-shape", "1,8,8", "-t", "2:0", "--steps", "1"]
    args += ["--box", "0,1"] if option == "--integer" else []
    code, _, err = run_main(*args, option, "")
    assert code == 2 and f"{option} is empty; give e.g. {option} " in _one_line(err)


def test_sample_without_a_box_is_refused_as_the_api_refuses_it(run_main, tmp_path):
    """The command line sampled [0, 1] for every feature, unsaid, where ``iv.sample`` and
    ``atlas --mode sample`` refuse."""
    torch.save(nn.Linear(3, 1).state_dict(), tmp_path / "w.pt")
    args = [tmp_path / "w.pt", "--factory", "tests.test_cli_mistakes:linear3"]
    args += ["--input-shape", "3", "-t", "out:0", "--range", "0,1", "-n", "3"]
    code, _, err = run_main("sample", *args, "--out", tmp_path / "s")
    assert code == 2 and "needs a bounded search space" in _one_line(err)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_dream_start_holding_nan_is_refused(bad):
    """One NaN pixel made every pixel of the dream NaN, status step_limit, exit 0."""
    start = np.full((8, 8), 0.5, dtype=np.float32)
    start[3, 4] = bad
    with pytest.raises(iv.InversetError, match="NaN or infinite values"):
        fv.dream(_conv(), start, "2", octaves=1, steps=1, input_shape=(1, 8, 8))


def test_a_dream_start_outside_the_value_range_is_refused_not_clipped():
    start = np.random.default_rng(0).uniform(30, 200, (8, 8)).astype(np.float32)
    with pytest.raises(iv.InversetError, match=r"outside the value range \[0, 1\]; give the"):
        fv.dream(_conv(), start, "2", octaves=1, steps=1, input_shape=(1, 8, 8))
    r = fv.dream(
        _conv(), start, "2", octaves=1, steps=1, value_range=(0.0, 255.0), input_shape=(1, 8, 8)
    )
    np.testing.assert_allclose(r.arrays["original"][0, 0], start, rtol=1e-6)


def test_a_dream_from_a_result_of_another_range_is_moved_onto_the_dreams():
    """A visualization on 0..255 dreamt on [0, 1] became one flat image of 1.0 (clipped)."""
    vis = fv.visualize(
        _conv(), "2", channels=[1], size=8, steps=3, value_range=(0.0, 255.0), input_shape=(1, 8, 8)
    )
    r = fv.dream(_conv(), vis, "2", octaves=1, steps=1, input_shape=(1, 8, 8))
    np.testing.assert_allclose(r.arrays["original"], vis.arrays["images"] / 255.0, atol=1e-6)


def test_random_bytes_are_not_called_a_pickled_module(run_main, tmp_path):
    """Random bytes named .pt were 'a pickled module ... pass --trust': advice to unpickle
    a corrupt file."""
    bad = tmp_path / "rand.pt"
    bad.write_bytes(b"ABCD" + np.random.default_rng(0).bytes(2000))
    code, _, err = run_main("layers", bad)
    assert (
        code == 2
        and _one_line(err) == f"error: {bad} is not a readable torch file (UnpicklingError)"
    )
    torch.save(nn.Linear(2, 1), tmp_path / "module.pt")  # a real pickle still is one
    code, _, err = run_main("layers", tmp_path / "module.pt")
    assert code == 2 and "holds a pickled module, which can run code" in _one_line(err)


def test_certify_with_infeasible_constraints_gives_no_exact_solver_advice(
    run_main, shared, tmp_path
):
    """The right error, then '; certify needs the exact solver (...--solver gradient)'."""
    acas = shared / "external" / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx"
    (tmp_path / "c.csv").write_text("1,0,0,0,0,-1\n-1,0,0,0,0,-1\n")  # x0 <= -1 and x0 >= 1
    code, _, err = run_main(
        "certify", acas, "-t", "out:0", "--box=-0.1,0.1", "--constraints", tmp_path / "c.csv",
        "--below", "1",
    )  # fmt: skip
    line = _one_line(err)
    assert code == 2 and "have no point inside the box" in line and "exact solver" not in line


def test_a_reversed_channel_range_says_so():
    with pytest.raises(iv.InversetError, match=r"channels range '3-1' ends before it starts"):
        fv.visualize(_conv(), "2", channels="3-1", size=8, steps=1, input_shape=(1, 8, 8))


def test_the_same_option_has_the_same_names_in_every_command():
    """sample took -n and atlas only --n; visualize --batch-size and atlas only --batch;
    visualize -c and atlas only --channels."""
    import typer.main

    from inverset.cli import app, register

    register()
    commands = {c.name: c for c in typer.main.get_command(app).commands.values()}
    names = {
        cmd: {o for p in c.params for o in p.opts if o.startswith("-")}
        for cmd, c in commands.items()
    }
    assert {"-n", "--n"} <= names["sample"] and {"-n", "--n"} <= names["atlas"]
    assert "--batch-size" in names["visualize"] and "--batch-size" in names["atlas"]
    assert {"-c", "--channels"} <= names["visualize"] and {"-c", "--channels"} <= names["atlas"]


def test_a_corrupt_file_starting_like_a_pickle_is_not_called_a_pickled_module(run_main, tmp_path):
    bad = tmp_path / "rand.pt"
    bad.write_bytes(b"\x80" + np.random.default_rng(1).bytes(2000))
    code, _, err = run_main("layers", bad)
    assert code == 2 and "pickled module" not in _one_line(err)
    torch.save(nn.Linear(2, 1), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    code, _, err = run_main("layers", tmp_path / "old.pt")
    assert code == 2 and "holds a pickled module, which can run code" in _one_line(err)


def test_an_input_shape_with_an_empty_field_is_refused(run_main, conv_ts):
    code, _, err = run_main("layers", conv_ts, "--input-shape", "1,,8")
    assert code == 2 and "--input-shape takes one input's shape" in _one_line(err)


def test_a_negative_count_is_not_told_that_zero_would_do():
    """--starts -3 said 'must be a finite number >= 0'; --starts 0 then said 'at least 1'."""
    with pytest.raises(
        iv.InversetError, match=r"option 'starts' of solver 'gradient' cannot be neg"
    ):
        iv.maximize(nn.Linear(2, 1), "out:0", iv.Box(-1, 1, shape=(2,)), starts=-3)


def test_an_atlas_refused_as_bad_input_leaves_no_directory_it_made(tmp_path):
    """A directory made for the job stayed behind, empty, after exit 2 ('no job is left')."""
    from inverset.jobs import atlas

    out = tmp_path / "new" / "at"
    with pytest.raises(iv.InversetError, match="starts must be at least 1"):
        atlas(nn.Linear(2, 2), out, classes="all", domain=iv.Box(-1, 1, shape=(2,)), starts=0)
    assert not out.exists()
    out.mkdir()  # one the user made stays
    with pytest.raises(iv.InversetError, match="starts must be at least 1"):
        atlas(nn.Linear(2, 2), out, classes="all", domain=iv.Box(-1, 1, shape=(2,)), starts=0)
    assert out.is_dir()
