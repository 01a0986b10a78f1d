"""``inverset sample`` end to end: generator, intersection, resume, bad input (in this process,
as the entry point runs it; a bad input in a fresh process as well)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from inverset.report.pictures import constraint_panels
from inverset.result import Result
from tests.conftest import cli


def fresh(*args) -> subprocess.CompletedProcess:
    return cli("sample", *args, threads=1)


@pytest.fixture
def run(run_main):
    """``inverset sample ARGS`` in this process (a subprocess costs 3-5 s of start-up)."""
    return lambda *args: run_main("sample", *args)


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_cnn):
    from inverset.sampling.vae import Decoder

    d = tmp_path_factory.mktemp("sample_cli")
    torch.save(digits_cnn.model.state_dict(), d / "cnn.pt")
    torch.manual_seed(0)
    torch.save(Decoder(8).state_dict(), d / "dec.pt")
    return d


def test_sample_with_generator_intersection_and_resume(files, tmp_path, digits_cnn, run):
    out = tmp_path / "run"
    common = [
        files / "cnn.pt", "--factory", "inverset.zoo:DigitsCNN", "--input-shape", "1,8,8",
        "--target", "logit:1", "--range", "-4,0", "--intersect", "logit:7:-6,-1",
        "--generator", "inverset.sampling.vae:Decoder", "--generator-weights", files / "dec.pt",
        "--out", out, "--json",
    ]  # fmt: skip
    p = run(*common, "-n", "40")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "found" and s["n_points"] == 40, s
    assert (out / "samples_000.npz").is_file() and (out / "state.json").is_file()
    p = run(*common, "-n", "40")  # the directory holds a run: refuse without --resume
    assert p.returncode == 2 and "--resume" in p.stderr
    p = run(*common, "-n", "70", "--resume")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["n_points"] == 70
    r = Result.load(out)
    assert r.status == "found" and len(r.xs) == 70 and r.arrays["z"].shape == (70, 8)
    assert len(np.unique(r.xs.reshape(70, -1).round(6), axis=0)) == 70
    with torch.no_grad():
        logits = digits_cnn.model(torch.as_tensor(r.xs, dtype=torch.float32)).numpy()
    # the decoder here is untrained (any decoder is a generator); the model is the same weights
    assert ((logits[:, 1] >= -4) & (logits[:, 1] <= 0)).all()
    assert ((logits[:, 7] >= -6) & (logits[:, 7] <= -1)).all()
    assert r.info["diversity"] > 0 and r.info["encoder"] == "layer relu1"
    # values.png: a histogram per range, the intersected target's values as the model gives them
    ((name, vals, lo, hi),) = constraint_panels(r)
    assert (name, lo, hi) == ("logit:7", -6.0, -1.0)
    np.testing.assert_allclose(vals, logits[:, 7], rtol=1e-5, atol=1e-5)
    with Image.open(out / "values.png") as im:
        assert im.size[0] > 1.4 * 4.5 * 110, im.size  # two panels side by side, not one


def test_sample_input_space_prints_summary(files, tmp_path, run):
    p = run(
        files / "cnn.pt", "--factory", "inverset.zoo:DigitsCNN", "--input-shape", "1,8,8",
        "--box", "0,1", "--target", "conv2:5", "--range", "0.6,0.8", "-n", "30",
        "--out", tmp_path / "o",
        "--no-progress", "--option", "step=0.05",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "found" in p.stdout and "accepted 30" in p.stdout and "diversity" in p.stdout
    assert (tmp_path / "o" / "inputs.png").is_file()


def test_sample_bad_input_is_one_line(files):
    p = fresh(
        files / "cnn.pt", "--factory", "inverset.zoo:DigitsCNN", "--input-shape", "1,8,8",
        "--target", "logit:1", "--range", "0,1", "--intersect", "fc1",
    )  # fmt: skip
    assert p.returncode == 2, p.stdout + p.stderr
    assert "--intersect takes TARGET:z1,z2" in p.stderr and "Traceback" not in p.stderr
    p = fresh(
        files / "cnn.pt", "--factory", "inverset.zoo:DigitsCNN", "--input-shape", "1,8,8",
        "--target", "logit:1", "--range", "0,1", "--option", "out=x",
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "unknown option 'out' for the sampler; its options: mu0, alpha" in p.stderr


def test_parse_helpers():
    from inverset.cli.sample import parse_intersect, parse_range
    from inverset.errors import InversetError

    assert parse_range("-4,0.5") == (-4.0, 0.5)
    assert parse_intersect("conv2:5,1,2:0.5,1") == ("conv2:5,1,2", 0.5, 1.0)
    assert parse_intersect("prob:cat:0.2,0.9") == ("prob:cat", 0.2, 0.9)
    for bad in ("1", "a,b", "1,2,3"):
        with pytest.raises(InversetError, match="--range"):
            parse_range(bad)
    for bad in ("fc1", "fc1:3", ":0,1"):
        with pytest.raises(InversetError, match="--intersect"):
            parse_intersect(bad)


def test_sample_integer_features_and_linear_constraints(tmp_path, run):
    """--integer and --constraints, as in the other commands: whole numbers, sum(x) <= 2."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    torch.jit.script(net).save(str(tmp_path / "s4.pt"))
    (tmp_path / "c.csv").write_text("1,1,1,1,2\n")
    args = ["-t", "out:0", "--range", "0,0.1", "--box", "0,3", "--input-shape", "4"]
    p = run(
        tmp_path / "s4.pt",
        *args,
        "--integer",
        "0,1",
        "--constraints",
        tmp_path / "c.csv",
        "-n",
        "30",
        "--no-progress",
        "--out",
        tmp_path / "s",
    )
    assert p.returncode == 0, p.stderr
    r = Result.load(tmp_path / "s")
    x = r.xs.reshape(len(r.xs), -1).astype(np.float64)
    assert r.status == "found" and len(x) == 30
    np.testing.assert_array_equal(x[:, :2], np.round(x[:, :2]))
    assert (x.sum(1) <= 2 + 1e-5).all()
    with torch.no_grad():
        v = net(torch.as_tensor(x, dtype=torch.float32))[:, 0].numpy()
    assert ((v >= -1e-5) & (v <= 0.1 + 1e-5)).all()


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    from torch import nn

    d = tmp_path_factory.mktemp("sample_small")
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)), d / "relu2.pt")
    return d / "relu2.pt"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--option", "K=3"], "unknown option 'K' for the sampler; its options: mu0, alpha"),
        (["--option", "n=5"], "unknown option 'n'"),
        (["--option", "encoder=identity"], "unknown option 'encoder'"),
        (["--option", "time_limit=3"], "unknown option 'time_limit'"),
        (["--option", "seed=1"], "unknown option 'seed'"),
        (["--option", "max_steps=-1"], "max_steps"),
        (["--option", "inner_steps=0"], "inner_steps"),
        (["--seed", "18446744073709551616"], "seed must be an integer"),
        (["--latent-dim", "0"], "--latent-dim takes a code's size or shape"),
        (["--latent-dim", "-2"], "--latent-dim"),
        (["--latent-bound", "0"], "--latent-bound must be a positive number"),
        (["--latent-bound", "-1"], "--latent-bound"),
        (["--generator-weights", "w.pt"], "--generator-weights applies to a generator"),
        (["--latent-bound", "2"], "--latent-bound applies to a generator; give --generator too"),
    ],
)
def test_sample_bad_options_are_one_line(run_main, small_net, extra, message):
    p = run_main(
        "sample", small_net, "--trust", "--input-shape", "3", "--box", "0,1", "-t", "out:0",
        "--range", "-100,100", "-n", "5", "--no-progress", *extra,
    )  # fmt: skip
    assert p.returncode == 2, p.stdout + p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_sample_resumed_with_another_generator_is_refused(run_main, small_net, tmp_path):
    """Other weights of the generator would mix two generators' samples in one run: refused
    (exit 2), the run left as it was; the same generator resumes."""
    from torch import nn

    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(nn.Sequential(nn.Linear(2, 3), nn.Sigmoid()), tmp_path / f"g{seed}.pt")
    out = tmp_path / "run"
    common = [
        "sample", small_net, "--trust", "--input-shape", "3", "--box", "0,1", "-t", "out:0",
        "--range", "-100,100", "--latent-dim", "2", "--no-progress", "--out", out, "--json",
    ]  # fmt: skip
    p = run_main(*common, "-n", "10", "--generator", tmp_path / "g0.pt")
    assert p.returncode == 0, p.stderr
    p = run_main(*common, "-n", "20", "--resume", "--generator", tmp_path / "g1.pt")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "answered a different query (space.generator differ)" in p.stderr
    assert len(Result.load(out).xs) == 10
    p = run_main(*common, "-n", "20", "--resume", "--generator", tmp_path / "g0.pt")
    assert p.returncode == 0, p.stderr
    r = Result.load(out)
    assert len(r.xs) == 20 and r.query["space"]["bound"] == 3.0
    g = torch.load(tmp_path / "g0.pt", weights_only=False)
    with torch.no_grad():
        x = g(torch.as_tensor(r.arrays["z"], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(x, r.xs, atol=1e-6)


def test_sample_encoder_run_twice_is_refused(run_main, tmp_path):
    """``act`` runs twice per forward pass: ``--encoder act`` is the targets' one-line
    refusal (exit 2), and the default encoder skips it."""
    from tests.test_sampling_robust import SharedAct

    torch.save(SharedAct().state_dict(), tmp_path / "w.pt")
    args = ["sample", tmp_path / "w.pt", "--factory", "tests.test_sampling_robust:SharedAct"]
    args += ["--input-shape", "4", "--box", "0,1", "-t", "out:0", "--range", "-100,100"]
    p = run_main(*args, "-n", "5", "--no-progress", "--encoder", "act")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "layer 'act' runs 2 times in one forward pass" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_main(*args, "-n", "5", "--no-progress", "--out", tmp_path / "s")
    assert p.returncode == 0, p.stderr
    assert Result.load(tmp_path / "s").info["encoder"] == "layer fc1"


def test_sample_interrupted_exact_check_exits_130_and_resume_finds(run_main, tmp_path, monkeypatch):
    """A Ctrl-C or SIGTERM answered by the exact check's solver: exit 130, status
    interrupted, saved; ``--resume`` runs the check again and finds the samples."""
    pytest.importorskip("highspy")
    import inverset.exact.solver as exact
    from tests.test_sampling_robust import peaked

    torch.save(peaked().state_dict(), tmp_path / "w.pt")
    stopped = Result(x=None, value=None, status="interrupted", message="interrupted: no answer")
    real = exact.solve
    monkeypatch.setattr(exact, "solve", lambda *_a, **_k: stopped)
    args = ["sample", tmp_path / "w.pt", "--factory", "tests.test_sampling_robust:peaked"]
    args += ["--input-shape", "10", "--box", "0,1", "-t", "out:0", "--range", "0.1,1.2"]
    args += ["-n", "20", "--no-progress", "--out", tmp_path / "s"]
    args += ["--option", "inner_steps=1", "--option", "max_outer=1"]
    p = run_main(*args)
    assert p.returncode == 130, p.stdout + p.stderr
    assert Result.load(tmp_path / "s").status == "interrupted"
    monkeypatch.setattr(exact, "solve", real)
    p = run_main(*args, "--resume")
    assert p.returncode == 0, p.stdout + p.stderr
    r = Result.load(tmp_path / "s")
    assert r.status == "found" and len(r.xs) == 20 and "witness found" in r.info["exact_check"]


def test_sample_summary_says_when_the_diversity_is_estimated(run_main, small_net, monkeypatch):
    """Over ``DIVERSITY_PAIRS_OF`` samples the diversity is estimated on a random subset of
    them: the summary says so (it did not)."""
    from inverset.sampling import inverse_set

    monkeypatch.setattr(inverse_set, "DIVERSITY_PAIRS_OF", 10)
    p = run_main(
        "sample", small_net, "--trust", "--input-shape", "3", "--box", "0,1", "-t", "out:0",
        "--range", "-100,100", "-n", "30", "--no-progress", "--option", "spacing=0",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "on 10 random samples of 30) " in " ".join(p.stdout.split())
