"""The example scripts: where they write by default, their missing-package errors, what they say."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HINT = "pip install 'inverset[examples]'"


def example(name: str, *args: str, hide: str | None = None, pythonpath: Path | None = None):
    """Run ``examples/NAME.py ARGS`` as a user would; ``hide`` makes that module fail to import
    (a stub on the path that raises ImportError, as when the package is not installed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if hide:
        assert pythonpath is not None
        (pythonpath / f"{hide}.py").write_text("raise ImportError('not installed')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "name, default",
    [
        ("deep_dream_chelsea", "examples_out/dream"),
        ("imagenet", "examples_out/imagenet"),
        ("digits_inverse_set", "examples_out/inverse_set"),
    ],
)
def test_default_output_goes_under_the_ignored_examples_out(name, default):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.parser().parse_args([]).out == default
    assert f"--out {default}]" in module.__doc__  # the docstring's Run line says so
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{default}/grid.png"], cwd=ROOT)
    assert ignored.returncode == 0, f"{default} is not ignored by git"


@pytest.mark.parametrize(
    "name, hide, package",
    [
        ("deep_dream_chelsea", "efficientnet_lite_pytorch", "efficientnet-lite-pytorch"),
        ("deep_dream_chelsea", "skimage", "scikit-image"),
        ("imagenet", "efficientnet_lite_pytorch", "efficientnet-lite-pytorch"),
    ],
)
def test_a_missing_examples_package_is_one_line_exit_2(tmp_path, name, hide, package):
    p = example(name, "--out", str(tmp_path / "out"), hide=hide, pythonpath=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.strip() == f"error: {package} is not installed; {HINT}"
    assert not (tmp_path / "out").exists()


def test_deep_dream_says_what_it_wrote(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("skimage")
    out = tmp_path / "dream"
    p = example("deep_dream_chelsea", "--octaves", "1", "--steps", "1", "--threads", "1",
                "--out", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert last == (
        f"wrote into {out}/: result.json + result.npz (the Result), grid.png (photo, dream)"
    )
    assert sorted(f.name for f in out.iterdir()) == ["grid.png", "result.json", "result.npz"]
