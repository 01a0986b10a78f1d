"""``inverset certify`` and ``--solver exact`` from the command line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import inverset.cli.exact  # noqa: F401  (registers the certify command)
from inverset import Result
from inverset.cli import register
from inverset.cli.app import app
from tests.conftest import ctrl_c_on_call


def _model(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    path = tmp_path / "small.pt"
    torch.jit.script(m).save(str(path))
    with torch.no_grad():
        grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 201)] * 2, indexing="ij"), -1)
        top = float(m(grid.reshape(-1, 2)).max())
    return path, top


def _run(args):
    register()
    return CliRunner().invoke(app, args, standalone_mode=False, catch_exceptions=False)


def test_certify_proves_or_finds_a_counterexample(tmp_path):
    path, top = _model(tmp_path)
    base = ["certify", str(path), "--target", "out:0", "--box", "-1,1", "--input-shape", "2"]
    r = _run([*base, "--below", f"{top + 0.05}", "--no-progress", "--out", str(tmp_path / "a")])
    assert r.return_value == 0 and "PROVEN" in r.output
    saved = Result.load(tmp_path / "a")
    assert saved.status == "unreachable" and top <= saved.bound <= top + 0.05
    r = _run([*base, "--below", f"{top - 0.05}", "--no-progress", "--json"])
    assert r.return_value == 1
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["status"] == "found" and summary["value"] >= top - 0.05
    r = _run([*base, "--above", "-100", "--no-progress"])
    assert r.return_value == 0 and "PROVEN" in r.output


def test_maximize_with_the_exact_solver(tmp_path):
    path, top = _model(tmp_path)
    args = ["maximize", str(path), "--target", "out:0", "--box", "-1,1", "--input-shape", "2"]
    r = _run([*args, "--solver", "exact", "--json", "--no-progress"])
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["status"] == "optimal" and summary["solver"] == "exact"
    assert summary["value"] >= top - 1e-6 and summary["bound"] >= summary["value"]
    assert summary["info"]["method"] == "milp"  # few unstable ReLUs: auto picks the MILP
    r = _run([*args, "--solver", "exact", "--option", "method=bab", "--json", "--no-progress"])
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["status"] == "optimal" and summary["value"] >= top - 1e-6
    assert summary["info"]["method"] == "bab" and summary["info"]["nodes"] > 1


def test_infinite_claims_and_internal_errors(tmp_path, monkeypatch):
    """certify --below inf is bad input (exit 2); an unexpected exception is exit 4, never
    the 'counterexample' code 1."""
    import subprocess
    import sys

    path, _ = _model(tmp_path)
    base = [sys.executable, "-m", "inverset", "certify", str(path), "-t", "out:0", "--box=-1,1"]
    p = subprocess.run(
        [*base, "--input-shape", "2", "--below", "inf"], capture_output=True, text=True
    )
    assert p.returncode == 2 and "takes a finite number" in p.stderr and "Traceback" not in p.stderr
    import importlib

    cli_app = importlib.import_module(
        "inverset.cli.app"
    )  # the module (the package's `app` is typer's)
    core = importlib.import_module("inverset.cli.core")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(core, "load_cli_model", broken)
    monkeypatch.setattr(sys, "argv", ["inverset", "layers", str(path)])
    with pytest.raises(SystemExit) as exit_:
        cli_app.main()
    assert exit_.value.code == cli_app.INTERNAL_ERROR == 4


class _Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.spare, self.head = nn.Linear(2, 4), nn.Linear(4, 4), nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.relu(self.fc1(x)))


def test_certify_of_a_layer_forward_never_runs_is_a_clear_error(tmp_path, monkeypatch):
    import sys
    import types

    from inverset.errors import InversetError

    mod = types.ModuleType("inverset_test_unused_net")
    mod.make = _Unused
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    torch.save(_Unused().state_dict(), tmp_path / "w.pt")
    args = ["certify", str(tmp_path / "w.pt"), "--factory", f"{mod.__name__}:make"]
    with pytest.raises(InversetError, match="layer 'spare' is never run"):
        _run([*args, "-t", "spare:0", "--box=-1,1", "--input-shape", "2", "--below", "9"])


def test_certify_help_summary_is_one_sentence():
    import inspect

    from inverset.cli.exact import certify

    first = inspect.cleandoc(certify.__doc__).split("\n\n")[0]
    assert "\n" not in first and first.endswith(".")


def test_ctrl_c_keeps_the_answer_so_far(tmp_path, monkeypatch, run_main):
    """A Ctrl-C in the exact search (here in branch and bound's 3rd batch of bounds) exited
    130 with nothing printed or saved; now the incumbent (and, for maximize, the bound) is
    printed and saved, status 'interrupted', and certify says UNDECIDED, never a verdict."""
    from inverset.exact import bab

    path, _ = _model(tmp_path)
    shape = ["--box", "-1,1", "--input-shape", "2", "--no-progress"]
    calls = ctrl_c_on_call(monkeypatch, bab, "crown", 3)
    exact = ["--solver", "exact", "--option", "method=bab"]
    ran = run_main("maximize", path, "-t", "out:0", *shape, *exact, "--out", tmp_path / "max")
    assert calls[0] == 3 and "interrupted" in ran.stdout, ran
    r = Result.load(tmp_path / "max")
    assert r.status == "interrupted" and r.x is not None and r.bound >= r.value
    with torch.no_grad():
        model = torch.jit.load(str(path))
        assert r.value == pytest.approx(float(model(torch.as_tensor(r.x[None]).float())), abs=1e-6)
    calls[0] = 0
    # just above the certified maximum (0.325285): provable, in four rounds of bounds
    claim = ["--below", "0.3254", "--method", "bab"]
    ran = run_main("certify", path, "-t", "out:0", *shape, *claim, "--out", tmp_path / "cert")
    assert calls[0] == 3 and ran.returncode == 130, ran  # interrupted: no verdict
    assert "UNDECIDED (interrupted)" in ran.stdout, ran
    saved = Result.load(tmp_path / "cert")
    assert saved.status == "interrupted" and saved.x is not None and saved.value < 0.3254


def test_certify_on_a_domain_without_inputs_says_so(tmp_path):
    """Integer x0 in [0.2, 0.8] (real points exist, whole ones do not): every claim is
    vacuous; certify says the domain is empty (exit 2), never PROVEN with a bound on it."""
    path, _ = _model(tmp_path)
    rows = tmp_path / "c.csv"
    rows.write_text("-1,0,-0.2\n1,0,0.8\n")
    base = ["certify", str(path), "-t", "out:0", "--box", "-1,1", "--input-shape", "2"]
    base += ["--integer", "0", "--constraints", str(rows), "--no-progress"]
    for claim in (["--below", "100"], ["--below", "-100"], ["--above=-100"], ["--above", "100"]):
        r = _run([*base, *claim])
        assert r.return_value == 2, (claim, r.output)
        assert "NO INPUT: the domain admits no input" in r.output and "PROVEN" not in r.output


def test_certify_shows_a_counterexample_apart_from_the_threshold(tmp_path):
    """A counterexample just past C prints with the digits that tell it from C, and C as
    given (6 significant digits read 'x = 0.436271 ..., not < 0.436271')."""
    import re

    path, _ = _model(tmp_path)
    base = ["certify", str(path), "-t", "out:0", "--box", "-1,1", "--input-shape", "2"]
    r = _run(["maximize", *base[1:], "--solver", "exact", "--json", "--no-progress"])
    top = json.loads(r.output.strip().splitlines()[-1])["value"]
    c = float(f"{top - 3e-8:.10g}")
    r = _run([*base, "--below", repr(c), "--no-progress"])
    assert r.return_value == 1, r.output
    m = re.search(r"= (\S+) at the input below, not < (\S+)", r.output)
    assert m is not None, r.output
    assert float(m[2]) == c and float(m[1]) >= c and m[1] != m[2]


def test_output_read_by_a_reader_that_leaves_keeps_the_exit_code(tmp_path):
    """``inverset certify ... | head -1``: the reader leaves after a line. The answer's exit
    code stands (rich exited with 1, certify's "counterexample", for a proof); a plain
    write (--json) keeps its exit code too (click exited with 1); no traceback."""
    import os
    import subprocess
    import sys

    path, _ = _model(tmp_path)
    args = [str(path), "-t", "out:0", "--box=-1,1", "--input-shape", "2", "--no-progress"]
    codes = {}
    for name, extra in [("certify", ["--below", "1000"]), ("maximize", ["--json"])]:
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line
        p = subprocess.run(
            [sys.executable, "-m", "inverset", name, *args, *extra],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        os.close(write)
        assert "Traceback" not in p.stderr, p.stderr
        codes[name] = p.returncode
    assert codes == {"certify": 0, "maximize": 0}


def test_certify_names_a_fix_it_takes_and_proves_a_probability_claim_at_once(tmp_path):
    """An unsupported layer's error told certify users to 'use --solver gradient', an
    option certify does not have (audit 105). A probability is at most 1: 'below 1.5' is
    proven without the exact solver, which takes no prob:k."""
    from inverset.errors import InversetError

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 4), nn.GELU(), nn.Linear(4, 3))
    path = tmp_path / "gelu.pt"
    torch.jit.trace(m, torch.zeros(1, 2)).save(str(path))
    base = ["certify", str(path), "--box=-1,1", "--input-shape", "2", "--no-progress"]
    with pytest.raises(InversetError, match="cannot handle the operation aten::gelu") as err:
        _run([*base, "-t", "out:0", "--below", "9"])
    assert str(err.value).endswith(
        "affine layers only); certify needs the exact solver (for a search without a proof: "
        "inverset maximize/minimize --solver gradient)"
    )
    with pytest.raises(InversetError) as err:
        _run([*base, "-t", "prob:0", "--above", "0.1"])
    assert str(err.value).endswith(
        "use logit:k / margin:k with the exact solver; certify needs the exact solver (for a "
        "search without a proof: inverset maximize/minimize --solver gradient)"
    )
    r = _run([*base, "-t", "prob:1", "--below", "1.5"])
    assert r.return_value == 0 and "PROVEN: prob:1 < 1.5" in r.output, r.output
