"""The CLI end to end, in subprocesses, as a user runs it — including every bad input."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset.model import forward
from tests.conftest import cli


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return cli(*args, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_cnn):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    surrogate = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    torch.jit.script(surrogate).save(d / "surrogate.pt")
    data = np.random.default_rng(0).uniform(-2, 3, (50, 6))
    np.savetxt(d / "bounds.csv", data, delimiter=",", header="a,b,c,d,e,f", comments="")
    torch.save(digits_cnn.model.state_dict(), d / "cnn.pt")
    torch.save(digits_cnn.model, d / "cnn_full.pt")
    (d / "weird.xyz").write_text("?")
    (d / "broken.onnx").write_bytes(b"\x00garbage")
    (d / "two_columns.csv").write_text("1,1\n")
    (d / "infeasible.csv").write_text("1,0,0,0,0,0,-5\n")  # x0 <= -5 in a box [0, 1]
    (d / "three.txt").write_text("a\nb\nc\n")
    (d / "nan.csv").write_text("1,0,0,0,0,nan,1\n")
    (d / "failing.py").write_text("def build():\n    raise ValueError('no weights here')\n")
    return d


def test_layers_acas(shared, run_main):
    acas = shared / "external/acasxu/ACASXU_run2a_1_1_batch_2000.onnx"
    p = run_main("layers", acas)
    assert p.returncode == 0, p.stderr
    assert "linear7" in p.stdout and "(50,)" in p.stdout and "(5,)" in p.stdout
    p = run_main("layers", acas, "--json")
    names = [row["name"] for row in json.loads(p.stdout)]
    assert names[-1] == "out" and "relu6" in names


def test_maximize_onnx_json_and_out(shared, tmp_path, run_main):
    acas = shared / "external/acasxu/ACASXU_run2a_1_1_batch_2000.onnx"
    p = run_main(
        "maximize",
        acas,
        "--target",
        "out:0 - out:1",
        "--box=-1,1",
        "--starts",
        "64",
        "--out",
        tmp_path / "a",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "converged"
    res = iv.Result.load(tmp_path / "a")
    model = iv.load_model(acas)
    with torch.no_grad():
        y = model(torch.as_tensor(res.x[None], dtype=torch.float32))[0]
    assert float(y[0] - y[1]) == pytest.approx(summary["value"], abs=1e-4)
    assert np.abs(res.x).max() <= 1 + 1e-6
    assert (tmp_path / "a" / "best_input.png").stat().st_size > 1000
    assert (tmp_path / "a" / "convergence.png").is_file()


def test_minimize_box_file_integer(files, tmp_path, run_main):
    p = run_main(
        "minimize",
        files / "surrogate.pt",
        "--target",
        "out:0",
        "--box-file",
        files / "bounds.csv",
        "--integer",
        "2,5",
        "--out",
        tmp_path / "b",
    )
    assert p.returncode == 0, p.stderr
    assert "status" in p.stdout and "best input" in p.stdout
    # TorchScript records no feature names: the header cannot be matched, and the user is told
    assert (
        f"warning: the model records no feature names, so the columns of {files / 'bounds.csv'} "
        "are taken as its inputs in file order (a, b, c, ...); check that the model takes this "
        "order\n"
    ) in p.stderr
    res = iv.Result.load(tmp_path / "b")
    box = iv.Box.from_csv(files / "bounds.csv")
    assert box.contains(torch.as_tensor(res.x[None])).all()
    assert res.x[2] == round(res.x[2]) and res.x[5] == round(res.x[5])
    assert res.query["domain"]["names"] == list("abcdef")


def test_reach_hidden_channel_with_factory(files, digits_cnn, run_main):
    p = run_main(
        "reach",
        files / "cnn.pt",
        "--factory",
        "inverset.zoo:DigitsCNN",
        "--target",
        "conv2:5",
        "--value",
        "3.0",
        "--input-shape",
        "1,8,8",
        "--box",
        "0,1",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "found" and s["value"] == pytest.approx(3.0, abs=1e-3)
    x = torch.tensor(s["x"], dtype=torch.float32).reshape(1, 1, 8, 8)
    with torch.no_grad():
        acts = forward(digits_cnn.model, x, ["conv2"])
    assert float(acts["conv2"][0, 5].mean()) == pytest.approx(3.0, abs=1e-3)


def test_range_prob_with_trusted_pickle(files, digits_cnn, run_main):
    p = run_main(
        "range",
        files / "cnn_full.pt",
        "--trust",
        "--target",
        "prob:3",
        "--range",
        "0.6,0.7",
        "--input-shape",
        "1,8,8",
        "--box",
        "0,1",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "found" and s["n_points"] >= 1
    x = torch.tensor(s["x"], dtype=torch.float32).reshape(1, 1, 8, 8)
    prob = torch.softmax(digits_cnn.model(x), 1)[0, 3].item()
    assert 0.6 <= prob <= 0.7


CNN = "maximize {d}/cnn.pt --factory inverset.zoo:DigitsCNN"


@pytest.mark.parametrize(
    "args, message",
    [
        ("maximize {d}/missing.onnx -t out:0", "does not exist"),
        ("maximize {d}/broken.onnx -t out:0", "not a readable ONNX file"),
        ("maximize {d}/weird.xyz -t out:0", "unsupported model file type"),
        ("maximize {d}/cnn_full.pt -t out:0", "--trust"),
        ("maximize {d}/cnn.pt -t out:0", "--factory"),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 --starts 0",
            "starts must be at least 1",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 --time-limit -1",
            "time limit must be >= 0",
        ),
        ("maximize {d}/surrogate.pt -t 'out:0 +' --box 0,1 --input-shape 6", "malformed target"),
        ("maximize {d}/surrogate.pt -t out:3 --box 0,1 --input-shape 6", "out of range"),
        ("maximize {d}/surrogate.pt -t out:0 --box 1,0 --input-shape 6", "lo > hi"),
        (
            "maximize {d}/surrogate.pt -t out:0 --box-file {d}/bounds.csv --input-shape 4",
            "do not fit the input shape (4,)",
        ),
        ("range {d}/surrogate.pt -t out:0 --range 2,1 --box 0,1 --input-shape 6", "z1 > z2"),
        (
            f"{CNN} -t conv9:1 --box 0,1 --input-shape 1,8,8",
            "unknown layer 'conv9'; valid layers: conv1",
        ),
        (
            f"{CNN} -t conv2:99 --box 0,1 --input-shape 1,8,8",
            "channel 99 is out of range",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1e39 --input-shape 6",
            "beyond the largest float32",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 --option nope=1",
            "unknown option 'nope' for solver 'gradient'; its options: starts, steps",
        ),
        ("range {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6", "Missing option '--range'"),
        ("maximize {d}/surrogate.pt -t out:0 --bogus", "No such option: --bogus"),
        ("frobnicate", "No such command 'frobnicate'"),
        ("maximize {d}/surrogate.pt -t out:0 --starts abc", "Invalid value for '--starts'"),
        ("maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 7", "fails on inputs"),
        ("maximize {d}/surrogate.pt -t out:0 --input-shape 6 --device cuda:99", "not available"),
        ("maximize {d}/surrogate.pt -t out:0 --input-shape 6 --device gpu", "unknown device 'gpu'"),
        (
            "maximize {d}/surrogate.pt -t out:0 --input-shape 6 --device xpu",
            "'xpu' is not available",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --input-shape 6 --device mps",
            "'mps' is not available",
        ),
        ("maximize {d}/surrogate.pt -t out:0 --input-shape 6 --device meta", "holds no values"),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 --option starts=abc",
            "option 'starts' of solver 'gradient' takes an integer, got 'abc'",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 --option lr=0",
            "lr must be > 0",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 "
            "--constraints {d}/two_columns.csv",
            "linear constraints have 1 columns but the input has 6 features",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 "
            "--constraints {d}/infeasible.csv",
            "have no point inside the box",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 --labels {d}/three.txt",
            "3 class names for a model with 2 classes",
        ),
        (  # a name the file lacks: the count, not "unknown class name", is the mistake
            "maximize {d}/surrogate.pt -t prob:d --box 0,1 --input-shape 6 --labels {d}/three.txt",
            "3 class names for a model with 2 classes",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 "
            "--constraints {d}/nan.csv",
            "row 0 holds nan or inf",
        ),
        (
            "maximize {d}/surrogate.pt -t out:0 --box 0,1 --input-shape 6 --out {d}/nan.csv",
            "output directory {d}/nan.csv is a file",
        ),
        (
            "sample {d}/surrogate.pt -t out:0 --range 0,1 --box 0,1 --input-shape 6 "
            "--out {d}/nan.csv/run",
            "is inside {d}/nan.csv, which is a file",
        ),
        ("atlas {d}/surrogate.pt -t out:0 --input-shape 6 --out {d}/nan.csv", "is a file"),
        ("layers {d}/surrogate.pt --input-shape 7", "the model fails on inputs of shape (7,)"),
        (
            "atlas {d}/surrogate.pt -t out:0 --input-shape 7 --out {d}/atlas7",
            "the model fails on inputs of shape (7,)",
        ),
        (
            "maximize {d}/cnn.pt --factory failing:build -t out:0",
            "factory 'failing:build' failed (ValueError: no weights here)",
        ),
    ],
)
def test_bad_input_one_line_exit_2(files, args, message, run_main, monkeypatch):
    """In this process (a subprocess each took 3-5 s, 38 of them about two minutes);
    ``test_a_bad_input_in_a_fresh_process_is_one_line_exit_2`` runs the real entry point."""
    message = message.format(d=files)
    monkeypatch.chdir(files)
    monkeypatch.syspath_prepend(str(files))  # as python -m puts the working directory first
    p = run_main(*[a.format(d=files) for a in shlex.split(args)])
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    assert message in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("maximize {d}/cnn.pt --factory failing:build -t out:0", "no weights here"),
        ("maximize {d}/surrogate.pt -t out:9 --box 0,1 --input-shape 6", "out of range"),
    ],
)
def test_a_bad_input_in_a_fresh_process_is_one_line_exit_2(files, args, message):
    p = run(*[a.format(d=files) for a in shlex.split(args)], cwd=files)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], p.stderr


def test_demo_runs(tmp_path):
    p = run("demo", "--out", tmp_path / "demo")
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert s["diabetes"]["max"] > s["diabetes"]["min"]
    proof = s["diabetes"]["certified_max"]
    assert proof["status"] == "optimal"
    assert proof["value"] - 1e-3 <= s["diabetes"]["max"] <= proof["bound"] + 1e-6
    assert s["ideal_3"]["predicted"] == 3 and s["ideal_3"]["margin"] > 0
    assert (tmp_path / "demo" / "ideal_3" / "inputs.png").is_file()
    assert (
        "4 results (result.json + result.npz each): diabetes_certified_max, diabetes_maximize, "
        "diabetes_minimize, ideal_3"
    ) in p.stdout


def test_a_corrupt_saved_result_is_a_clear_error(tmp_path):
    (tmp_path / "result.json").write_text("{bad")
    with pytest.raises(iv.InversetError, match="is not a saved result"):
        iv.Result.load(tmp_path)
    (tmp_path / "result.json").write_text('{"status": "found", "value": 1.0}')
    np.savez(tmp_path / "result.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(iv.InversetError, match="pickles"):
        iv.Result.load(tmp_path)


@pytest.mark.parametrize(("low", "high"), [(-np.inf, -5.0), (3.0, np.inf)])
def test_a_histogram_shades_a_half_infinite_range(tmp_path, low, high):
    import warnings

    from inverset.report.images import save_histogram

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_histogram(np.linspace(-8, 4, 50), tmp_path / "h.png", low=low, high=high)
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_option_values_parse_numbers_tuples_and_text():
    from inverset.cli.app import parse_options

    got = parse_options(["a=3", "b=0.5", "c=true", "mutation=0.5,1.0", "s=best1bin", "t=x,1"])
    assert got == {"a": 3, "b": 0.5, "c": True, "mutation": (0.5, 1.0), "s": "best1bin", "t": "x,1"}
    # the errors offer None ("takes a number or None"): the CLI can give it; 'none' stays text
    # (feature visualization's transforms=none)
    got = parse_options(["T=None", "popsize=null", "transforms=none"])
    assert got == {"T": None, "popsize": None, "transforms": "none"}
    # a key given twice ran with the last value, silently (audit 114)
    with pytest.raises(iv.InversetError, match=r"--option starts is given twice \(starts=3 and "):
        parse_options(["starts=3", "starts=5"])


# ------------------------------------------------- in-process runs of the CLI (fast)
@pytest.fixture
def tiny_ts(tmp_path):
    """A TorchScript 2-8-1 ReLU net, input shape recorded by --input-shape 2."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    torch.jit.script(m).save(str(tmp_path / "tiny.pt"))
    return tmp_path / "tiny.pt"


@pytest.mark.parametrize("command", ["maximize", "certify"])
def test_an_out_that_cannot_be_made_fails_before_the_search(
    tiny_ts, tmp_path, monkeypatch, run_main, command
):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc, where no directory can be made")
    import inverset.api

    def no_search(*a, **k):
        raise AssertionError("the search ran before --out was checked")

    monkeypatch.setattr(inverset.api, "solve", no_search)
    monkeypatch.setattr(inverset.api, "in_range", no_search)
    extra = ["--below", "5"] if command == "certify" else []
    code, _, err = run_main(
        command, tiny_ts, "-t", "out:0", "--box=-1,1", "--input-shape", "2",
        *extra, "--out", "/proc/inverset_test/a", "--no-progress",
    )  # fmt: skip
    assert code == 2, err
    assert "cannot write to output directory /proc/inverset_test/a" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_output_directory_is_checked_without_leaving_directories(tmp_path):
    from inverset.result import output_directory

    d = tmp_path / "a" / "b"
    assert output_directory(d, create=False) == d
    assert not (tmp_path / "a").exists()  # checked by making it, then removed again
    assert output_directory(d).is_dir()
    if Path("/proc/self").is_dir():  # no directory can be made there, even by root
        for create in (True, False):
            with pytest.raises(iv.InversetError, match="cannot write to output directory"):
                output_directory("/proc/inverset_test/x", create=create)


def test_demo_refuses_a_negative_seed_before_any_work(tmp_path, run_main):
    code, _, err = run_main("demo", "--seed=-1", "--out", tmp_path / "d")
    assert code == 2 and "seed must be an integer from 0 to 4294967295" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "d").exists()
    from inverset.zoo import digits

    with pytest.raises(iv.InversetError, match="seed must be an integer"):
        digits(seed=2**32)


def test_plain_inverset_prints_the_help_and_no_empty_error(run_main):
    code, out, err = run_main()
    assert code == 0 and "Usage: inverset" in out
    assert "error" not in err


def test_flags_show_as_plain_flags_in_help(run_main):
    for args in (["maximize", "--help"], ["--help"], ["demo", "--help"]):
        code, out, _ = run_main(*args)
        assert code == 0 and "--help" in out
        assert "<bool>" not in out, args


def test_command_summaries_are_one_line():
    import inspect

    from inverset.cli import register
    from inverset.cli.app import app

    register()
    for info in app.registered_commands:
        name = info.name or info.callback.__name__
        first = inspect.cleandoc(info.callback.__doc__ or "").split("\n\n")[0]
        assert "\n" not in first and first.endswith("."), f"{name}: {first!r}"


def _layers_table(monkeypatch, run_main, *args, width: int = 200) -> str:
    from rich.console import Console

    import inverset.cli.core as core

    monkeypatch.setattr(core, "out", Console(width=width, force_terminal=False))
    code, out, err = run_main("layers", *args)
    assert code == 0, err
    return out


def test_layers_of_torchscript_lists_only_the_output(tiny_ts, monkeypatch, run_main):
    out = _layers_table(monkeypatch, run_main, tiny_ts, "--input-shape", "2")
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and "out:0" in rows[0]
    assert "TorchScript layers cannot be hooked" in out


def test_layers_never_cut_names_and_mark_layers_that_are_no_targets(monkeypatch, run_main):
    import types

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.feature_extractor_stage_one_convolution = nn.Linear(3, 4)
            self.spare = nn.Linear(4, 4)  # never run
            self.act = nn.ReLU()  # run twice
            self.head = nn.Linear(4, 1)
            self.input_shape = (3,)

        def forward(self, x):
            return self.head(self.act(self.act(self.feature_extractor_stage_one_convolution(x))))

    mod = types.ModuleType("inverset_test_layers_net")
    mod.make = Net
    monkeypatch.setitem(__import__("sys").modules, mod.__name__, mod)
    out = _layers_table(monkeypatch, run_main, f"{mod.__name__}:make", width=60)
    text = "".join(
        "".join(c.strip() for c in line.split("│")[1:2]) for line in out.splitlines()
    )  # the layer column, its folded pieces joined
    assert "feature_extractor_stage_one_convolution" in text
    assert "…" not in out
    flat = "".join(c for c in out if not c.isspace() and c != "│")  # folded cells rejoined
    assert "spareLinear?neverrunbyforward" in flat
    assert "actReLU?runs2xperforward:notarget" in flat


# ------------------------------------------- a failed save, an interrupt, odd arguments
def _full_disk(monkeypatch, what: str = "savez_compressed") -> None:
    """Writing the arrays of a Result (``np.savez_compressed``) fails as on a full disk,
    having begun its file."""
    import errno
    import os

    def full(file, *args, **kwargs):
        Path(file).write_bytes(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, what, full)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_a_full_disk_prints_the_result_then_a_one_line_error(
    tiny_ts, tmp_path, monkeypatch, run_main, as_json
):
    _full_disk(monkeypatch)
    out = tmp_path / "r"
    code, stdout, err = run_main(
        "maximize", tiny_ts, "-t", "out:0", "--box=-1,1", "--input-shape", "2", "--starts", "2",
        "--steps", "5", "--no-progress", "--out", out, *(["--json"] if as_json else []),
    )  # fmt: skip
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: the result was not saved in {out} (No space left on device); free some space "
        "or give another directory (e.g. --out runs/a)"
    ]
    if as_json:
        s = json.loads(stdout)
        assert s["status"] == "converged" and len(s["x"]) == 2 and "out" not in s
    else:
        assert "converged" in stdout and "best input" in stdout and "saved to" not in stdout
    assert sorted(p.name for p in out.iterdir()) == []  # no temporary file


def test_a_full_disk_in_sample_prints_the_samples_then_a_one_line_error(
    tiny_ts, tmp_path, monkeypatch, run_main
):
    args = ["sample", tiny_ts, "-t", "out:0", "--range=-100,100", "--box=-1,1",
            "--input-shape", "2", "-n", "5", "--no-progress"]  # fmt: skip
    _full_disk(monkeypatch)  # the final save of the Result
    code, stdout, err = run_main(*args, "--out", tmp_path / "s")
    assert code == 2, err
    assert err.startswith(f"error: the result was not saved in {tmp_path / 's'} (No space")
    assert len(err.strip().splitlines()) == 1
    assert "found" in stdout and "generated 5, accepted 5" in stdout
    assert not list((tmp_path / "s").glob("result*"))
    monkeypatch.undo()
    _full_disk(monkeypatch, "savez")  # the samples written as they are accepted
    code, stdout, err = run_main(*args, "--out", tmp_path / "s2")
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: the samples could not be written to {tmp_path / 's2'} (No space left on "
        "device); free some space or give another directory (--out)"
    ]
    assert not list((tmp_path / "s2").glob("*.tmp*"))  # the failed chunk left nothing
    # the samples in memory are shown all the same (audit 111: nothing was printed)
    assert "found" in stdout and "accepted 5" in stdout, stdout


@pytest.mark.parametrize("command", ["maximize", "reach", "range", "sample", "certify"])
def test_an_interrupted_query_exits_130_after_printing_and_saving(
    tiny_ts, tmp_path, monkeypatch, run_main, command
):
    import inverset.api
    import inverset.sampling

    def stopped(*args, **kwargs):
        x = np.array([0.25, -0.5])
        return iv.Result(x=x, value=0.5, status="interrupted", message="stopped by the user",
                         xs=x[None], values=np.array([0.5]), solver="gradient")  # fmt: skip

    for name in ("solve", "in_range"):
        monkeypatch.setattr(inverset.api, name, stopped)
    monkeypatch.setattr(inverset.sampling, "sample", stopped)
    goal = {"reach": ["--value", "1"], "certify": ["--below", "5"]}.get(command, [])
    if command in ("range", "sample"):
        goal = ["--range", "0,1"]
    code, stdout, err = run_main(
        command, tiny_ts, "-t", "out:0", "--box=-1,1", "--input-shape", "2", *goal,
        "--no-progress", "--out", tmp_path / "r",
    )  # fmt: skip
    assert code == 130, err
    assert "interrupted" in stdout and "0.25" in stdout and "saved to" in stdout
    assert iv.Result.load(tmp_path / "r").status == "interrupted"


def test_sigterm_is_a_ctrl_c_for_the_query_commands(tiny_ts, tmp_path, monkeypatch, run_main):
    """SIGTERM raises KeyboardInterrupt in every command, so a terminated search answers as
    an interrupted one (only sampling and atlas jobs turned it so before: maximize was killed
    with nothing printed or saved)."""
    import os
    import signal
    import time

    import inverset.api

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(2)  # the handler raises in here
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(inverset.api, "solve", terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run_main(
        "maximize", tiny_ts, "-t", "out:0", "--box=-1,1", "--input-shape", "2", "--no-progress"
    )
    assert code == 130 and err.strip() == "interrupted", err
    assert signal.getsignal(signal.SIGTERM) is before  # restored afterwards


@pytest.mark.parametrize("command", ["visualize", "dream"])
def test_interrupted_images_exit_130_after_printing(tmp_path, monkeypatch, run_main, command):
    import inverset.featvis

    def stopped(*args, **kwargs):
        labels = {"labels": ["conv2:0", "conv2:1"]}
        return iv.Result(x=None, value=None, status="interrupted", message="2 of 4 images",
                         values=np.array([1.5, 2.5]), info=labels)  # fmt: skip

    monkeypatch.setattr(inverset.featvis, command, stopped)
    torch.jit.script(nn.Sequential(nn.Conv2d(1, 2, 3))).save(str(tmp_path / "c.pt"))
    extra = ["--image", tmp_path / "c.pt"] if command == "dream" else []
    code, stdout, err = run_main(command, tmp_path / "c.pt", "--layer", "out", *extra)
    assert code == 130, err
    assert "2 of 4 images" in stdout and "conv2:1" in stdout and "2.5" in stdout


@pytest.mark.parametrize("exc", [KeyboardInterrupt, EOFError])
def test_an_interrupt_says_so_and_an_eof_is_an_internal_error(tiny_ts, monkeypatch, run_main, exc):
    import inverset.api

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(inverset.api, "solve", fail)
    code, _, err = run_main("maximize", tiny_ts, "-t", "out:0", "--box=-1,1",
                            "--input-shape", "2", "--no-progress")  # fmt: skip
    if exc is KeyboardInterrupt:
        assert (code, err) == (130, "interrupted\n")
    else:  # a bug, as any other: its own traceback, not typer's Abort
        assert code == 4 and "EOFError" in err and "internal error" in err
        assert "Abort" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "a" * 300], "cannot write to output directory"),
        (["--out", ""], "Invalid value for '--out' / '-o': the output directory is empty; "),
        (["--factory", "tiny"], "a factory, the function that builds the model for a state dict"),
        (["--input-shape", "99999999,99999999"], "(99999999, 99999999) has 9,999,999,800,000,001"),
        (["-t", "1e400*out:0"], "target '1e400*out:0' holds the number 1e400, too large"),
        (["-t", "out:0 / 0"], "target 'out:0 / 0' divides by zero; divide by a nonzero number"),
        (["-t", "+".join(["out:0"] * 1000)], "is too deeply nested or too long"),
        (["-t", "(" * 500 + "out:0" + ")" * 500], "is too deeply nested or too long"),
    ],
    ids=["long out", "empty out", "factory", "huge shape", "1e400", "/0", "terms", "parens"],
)
def test_odd_arguments_are_one_line_errors(tiny_ts, tmp_path, monkeypatch, run_main, args, message):
    monkeypatch.chdir(tmp_path)
    base = [
        a for k, v in (("-t", "out:0"), ("--input-shape", "2")) if k not in args for a in (k, v)
    ]
    code, stdout, err = run_main(
        "maximize", tiny_ts, "--box=-1,1", *base, *args, "--starts", "2", "--steps", "2",
        "--no-progress",
    )  # fmt: skip
    assert code == 2, (stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert list(tmp_path.iterdir()) == [tiny_ts]  # nothing written into the current directory


def test_an_empty_model_argument_says_it_is_empty(run_main):
    code, _, err = run_main("maximize", "", "-t", "out:0")
    assert code == 2
    assert err.strip() == (
        "error: the model is an empty name; give a model file (.onnx, .pt, .joblib) or "
        "package.module:factory"
    )


def test_usage_errors_and_missing_extras_are_one_line_without_click(
    run_main, monkeypatch, tmp_path
):
    """typer >= 0.29 carries its own click and no longer installs click: in a plain install a
    usage error was two tracebacks (``import click`` failed inside the handler), exit 1; a
    command needing an extra that is not installed (the demo's scikit-learn) ended the same
    way. One line each, exit 2, naming the extra."""
    monkeypatch.setitem(sys.modules, "click", None)  # `import click` raises ImportError
    r = run_main("maximize", "--nonsense")
    assert r.returncode == 2 and r.stderr.startswith("error: No such option: --nonsense"), r.stderr
    assert "Traceback" not in r.stderr
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    r = run_main("demo", "--out", tmp_path / "demo")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "error: this command needs the missing package 'sklearn'; install it with: pip install "
        "'inverset[sklearn]' (or 'inverset[all]')"
    )


def test_a_solver_whose_extra_is_missing_names_it(monkeypatch):
    """The error names the extra that installs the missing package, not only 'all'."""
    from inverset.solvers import get_solver

    monkeypatch.setitem(sys.modules, "cma", None)
    monkeypatch.delitem(sys.modules, "inverset.solvers.cmaes", raising=False)
    with pytest.raises(iv.InversetError, match=r"^solver 'cmaes' needs the missing package 'cma'"):
        get_solver("cmaes")
    with pytest.raises(iv.InversetError, match=r"pip install 'inverset\[blackbox\]'"):
        get_solver("cmaes")


def test_a_missing_submodule_of_an_installed_package_is_no_missing_extra():
    """Only a package that is not installed is named as an extra to install: a submodule
    missing from an installed one (a typo, a version mismatch) is a real error."""
    from inverset.errors import missing_package

    assert missing_package(ModuleNotFoundError(name="sklearn.neural_netwrk")) is None
    assert missing_package(ModuleNotFoundError(name="numpy_not_ours")) is None
    err = missing_package(ModuleNotFoundError(name="sklearn"), "the demo")
    assert str(err).startswith("the demo needs the missing package 'sklearn'")


def test_help_and_import_do_not_wait_for_torch():
    """``import inverset`` and ``inverset --help`` load no torch (1.3 s for --help); the
    package's names and submodules load on first use."""
    code = (
        "import sys, inverset\n"
        "from inverset.cli import main\n"
        "sys.argv = ['inverset', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
        "print(inverset.Box.__name__, inverset.api.solve.__name__, inverset.maximize.__name__)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-2:] == ["False", "Box solve maximize"]


def test_a_ctrl_c_while_saving_keeps_the_printed_answer(tiny_ts, tmp_path, monkeypatch, run_main):
    """Audit 111: a Ctrl-C (or SIGTERM) while --out was written lost the printed table (it
    came after the save) and left result.json.tmp / result.tmp.npz behind."""

    def stopped(file, *args, **kwargs):
        Path(file).write_bytes(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", stopped)
    out = tmp_path / "r"
    code, stdout, err = run_main(
        "maximize", tiny_ts, "-t", "out:0", "--box=-1,1", "--input-shape", "2", "--starts", "2",
        "--steps", "5", "--no-progress", "--out", out,
    )  # fmt: skip
    assert code == 130, err
    assert "converged" in stdout and "best input" in stdout and "saved to" not in stdout
    assert err.strip() == f"interrupted while saving; {out}/ holds no new result"
    assert sorted(p.name for p in out.iterdir()) == []


@pytest.mark.parametrize("stop", ["full", "ctrl-c"])
def test_visualize_prints_its_values_before_a_failed_or_stopped_save(
    tmp_path, monkeypatch, run_main, stop
):
    """Audit 111: a full disk while writing grid.png was an internal error (exit 4, a
    traceback, a 0-byte grid.png) and printed nothing; so did a Ctrl-C while saving."""
    import errno
    import os

    import inverset.report.images as images

    def full(*args, **kwargs):
        if stop == "full":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "grid_figure", full)
    torch.manual_seed(0)
    torch.jit.script(nn.Sequential(nn.Conv2d(1, 2, 3))).save(str(tmp_path / "c.pt"))
    out = tmp_path / "v"
    code, stdout, err = run_main(
        "visualize", tmp_path / "c.pt", "--layer", "out", "--input-shape", "1,8,8",
        "--steps", "3", "--no-progress", "--out", out,
    )  # fmt: skip
    assert "logit:0" in stdout and "logit:1" in stdout and "saved" not in stdout, stdout
    if stop == "full":
        assert code == 2, err
        assert err.strip().splitlines() == [
            f"error: grid.png was not written in {out} (No space left on device; result.json "
            "and result.npz hold the images); free some space or give another directory (--out)"
        ]
    else:
        assert code == 130 and err.strip() == "interrupted while saving", err
    assert sorted(p.name for p in out.iterdir()) == ["result.json", "result.npz"]
    assert iv.Result.load(out).arrays["images"].shape == (2, 1, 8, 8)


def test_an_interrupted_demo_exits_130_with_what_it_found(tmp_path, monkeypatch, run_main):
    """Audit 111: the demo went on after a Ctrl-C in its first search, and exited 0."""
    import inverset.demo

    def stopped(*args, **kwargs):
        x = np.zeros(10)
        return iv.Result(x=x, value=1.0, status="interrupted", message="stopped by the user",
                         xs=x[None], values=np.array([1.0]), solver="gradient")  # fmt: skip

    monkeypatch.setattr(inverset.demo, "maximize", stopped)
    code, stdout, err = run_main("demo", "--out", tmp_path / "d")
    assert code == 130 and err.strip() == "interrupted", err
    assert "Classifier" not in stdout
    assert iv.Result.load(tmp_path / "d" / "diabetes_maximize").status == "interrupted"


@pytest.mark.parametrize(
    "extra, said",
    [
        (["-t", "out:1"], "--target/-t is given twice; give it once; several targets go in one"),
        (["--box=0,1"], "--box is given twice; give it once"),
        (["--steps", "3", "--steps=4"], "--steps is given twice; give it once"),
    ],
)
def test_an_option_given_twice_is_refused(tiny_ts, run_main, extra, said):
    """Audit 111: click kept the last value without a word (-t logit:3 -t logit:4 searched
    logit:4 alone, a user may have meant both)."""
    code, stdout, err = run_main(
        "maximize", tiny_ts, "-t", "out:0", "--box=-1,1", "--input-shape", "2", *extra
    )
    assert code == 2 and not stdout, err
    # a value that starts with '-' is the option's value, not an option (audit 113)
    code, _, err2 = run_main(
        "maximize", tiny_ts, "-t", "-out:0", "--box=-1,1", "--input-shape", "2", "--steps", "2"
    )
    assert code == 0, err2
    assert err.strip().splitlines() == [f"error: {said}"] or (
        said in err and len(err.strip().splitlines()) == 1
    ), err
