"""``inverset atlas`` and ``inverset report`` end to end, in subprocesses, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from inverset.cli.atlas import parse_ranges, parse_ray
from inverset.errors import InversetError
from inverset.jobs import load_atlas
from tests.conftest import cli, need

JOB = [
    "--factory",
    "inverset.zoo:DigitsCNN",
    "--input-shape",
    "1,8,8",
    "--box",
    "0,1",
    "--steps",
    "10",
    "--starts",
    "4",
    "--option",
    "polish=false",
    "--no-progress",
]


def run(*args) -> subprocess.CompletedProcess:
    return cli(*args, timeout=600)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, digits_cnn):
    p = tmp_path_factory.mktemp("atlas_cli") / "cnn.pt"
    torch.save(digits_cnn.model.state_dict(), p)
    return p


def test_atlas_runs_resumes_and_reports(weights, tmp_path, digits_cnn, run_main):
    out = tmp_path / "job"
    p = run_main(
        "atlas", weights, "--layer", "conv2", "--channels", "0-3,30", *JOB, "--out", out, "--json"
    )
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "complete" and s["done"] == 5 and s["finished"] == 5
    assert s["index"] == str(out / "index.html") and (out / "index.html").is_file()
    got = load_atlas(out)
    assert list(got) == ["conv2_0", "conv2_1", "conv2_2", "conv2_3", "conv2_30"]
    # each stored value is the channel mean of conv2 at the stored input, in the real model
    for c, r in zip([0, 1, 2, 3, 30], got.values(), strict=True):
        x = torch.as_tensor(r.x[None], dtype=torch.float32)
        with torch.no_grad():
            v = digits_cnn.model.conv2(digits_cnn.model.relu1(digits_cnn.model.conv1(x)))
        assert abs(float(v[0, c].mean()) - r.value) < 1e-5
        assert r.x.min() >= 0 and r.x.max() <= 1
    p = run_main("atlas", weights, "--layer", "conv2", "--channels", "0-3,30", *JOB, "--out", out)
    assert p.returncode == 0, p.stderr
    assert "5/5 targets done (0 this run, 5 already there)" in p.stdout
    (out / "index.html").unlink()
    (out / "conv2_1" / "thumb.png").unlink()
    p = run_main("report", out)
    assert p.returncode == 0, p.stderr
    assert (out / "index.html").is_file() and (out / "conv2_1" / "thumb.png").is_file()
    assert f"atlas: {out / 'index.html'}" in p.stdout.replace("\n", "")


def test_sample_mode_from_the_command_line(weights, tmp_path, run_main):
    out = tmp_path / "s"
    p = run_main(
        "atlas",
        weights,
        "--classes",
        "3",
        "--mode",
        "sample",
        "--ranges",
        "2,4;6,8",
        "--n",
        "5",
        "--option",
        "exact_check=false",
        *JOB[:6],
        "--out",
        out,
        "--json",
        "--no-progress",
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["done"] == 2
    got = load_atlas(out)
    assert list(got) == ["out_3__2_4", "out_3__6_8"]
    assert all(len(r.values) >= 1 for r in got.values())
    assert np.all((got["out_3__6_8"].values >= 6 - 1e-4) & (got["out_3__6_8"].values <= 8 + 1e-4))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "conv1", "--channels", "0-99"], "out of range; there are 16"),
        (["--layer", "conv9"], "unknown layer 'conv9'"),
        (["--classes", "0-1", "--mode", "sample"], "--mode sample needs --ranges"),
        (["--classes", "0-1", "--ranges", "1"], "--ranges takes z1,z2"),
        (["--classes", "0-1", "--bogus"], "unknown option or argument --bogus"),
        # an option given twice: one was dropped silently (starts), or a TypeError (seed)
        (["--classes", "0", "--option", "starts=7"], "--starts 4 and --option starts=7 both"),
        (["--classes", "0", "--option", "seed=3"], "not an option of the mode's call; use --seed"),
        (["--classes", "0", "--option", "batch=3"], "use --batch"),
    ],
)
def test_bad_input_exits_2_with_one_line(weights, tmp_path, args, message, monkeypatch, capsys):
    from inverset.cli import main

    monkeypatch.setattr(
        sys,
        "argv",
        ["inverset", "atlas", str(weights), *JOB, *args, "--out", str(tmp_path / "bad")],
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", ["--starts", "--steps"])
def test_maximize_refuses_an_option_given_twice(run_main, weights, flag):
    """`--starts 2 --option starts=7` ran with one of them, silently."""
    key = flag.removeprefix("--")
    p = run_main("maximize", weights, *JOB[:6], "-t", "out:0", flag, 2, "--option", f"{key}=7")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip() == (
        f"error: {flag} 2 and --option {key}=7 both set {key}; give one of them"
    )


def test_report_of_an_empty_directory_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from inverset.cli import main

    monkeypatch.setattr(sys, "argv", ["inverset", "report", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "holds no results (no result.json, no */result.json)" in err
    assert "give the --out of an atlas job or of one query" in err  # not only an atlas's


def test_ray_flag_forms():
    assert parse_ray("m.onnx", []) == ("m.onnx", False, None)
    assert parse_ray("m.onnx", ["--ray"]) == ("m.onnx", True, None)
    assert parse_ray("m.onnx", ["--ray", "auto"]) == ("m.onnx", True, "auto")
    assert parse_ray("m.onnx", ["--ray=10.0.0.1:6379"]) == ("m.onnx", True, "10.0.0.1:6379")
    assert parse_ray("--ray", ["m.onnx"]) == ("m.onnx", True, None)
    assert parse_ray("--ray", ["auto", "m.onnx"]) == ("m.onnx", True, "auto")
    with pytest.raises(InversetError, match="unknown option"):
        parse_ray("m.onnx", ["--ray", "a", "b"])
    assert parse_ranges(["0.5,1", "1,2;3,4"]) == [(0.5, 1.0), (1.0, 2.0), (3.0, 4.0)]


def test_atlas_on_a_local_ray_cluster_from_the_command_line(weights, tmp_path, run_main):
    need("ray")
    a, b = tmp_path / "inline", tmp_path / "ray"
    p = run_main("atlas", weights, "--layer", "conv1", "--channels", "0-3", *JOB, "--out", a)
    assert p.returncode == 0, p.stderr
    p = run(
        "atlas",
        weights,
        "--layer",
        "conv1",
        "--channels",
        "0-3",
        *JOB,
        "--out",
        b,
        "--ray",
        "--workers",
        "2",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["runner"].startswith("ray (local cluster, 2 CPUs)")
    ra, rb = load_atlas(a), load_atlas(b)
    assert list(ra) == list(rb) == ["conv1_0", "conv1_1", "conv1_2", "conv1_3"]
    for k in ra:
        np.testing.assert_array_equal(ra[k].x, rb[k].x)
        np.testing.assert_array_equal(ra[k].values, rb[k].values)
