"""Shared fixtures: two threads at most, the third-party networks in ../shared, small models."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pytest
import torch

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def cli(*args: Any, threads: int = 2, timeout: float = 300, cwd: Any = None):
    """Run ``inverset ARGS`` in a subprocess as a user would (wide columns, few threads);
    returns the ``subprocess.CompletedProcess``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "inverset", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


class Ran(NamedTuple):
    """What ``inverset ARGS`` did: exit code, standard output, standard error."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_main(capsys, monkeypatch):
    """``run_main(*ARGS)`` runs ``inverset ARGS`` in this process, as the entry point does
    (wide columns; no subprocess start-up or fresh imports): a :class:`Ran`."""
    from inverset.cli import main

    def go(*args: Any) -> Ran:
        monkeypatch.setattr(sys, "argv", ["inverset", *map(str, args)])
        monkeypatch.setenv("COLUMNS", "200")
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return go


@pytest.fixture
def saved_figures(monkeypatch) -> list[Any]:
    """The matplotlib figures saved while the test runs (still saved to their files), in order:
    what a picture function drew, to inspect after it has closed them."""
    import matplotlib.figure

    saved: list[Any] = []
    real = matplotlib.figure.Figure.savefig

    def spy(fig, *args: Any, **kwargs: Any) -> Any:
        saved.append(fig)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return saved


def missing(reason: str) -> NoReturn:
    """Skip a test whose requirement is absent, but fail under CI=true, where ``.ci/run``
    provides everything and a skipped test would hide a broken set-up."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def need(module: str) -> Any:
    """Import an optional integration, or :func:`missing`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"{module} is not installed (pip install -e '.[all]')")


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared`` beside the checkout (the third-party networks)."""
    if not (SHARED / "external").is_dir():
        missing(f"{SHARED}/external not found; CI must have shared/ beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def digits_cnn():
    """A digits CNN trained once per test session (a few seconds)."""
    from inverset.zoo import digits

    return digits("cnn", seed=0)


@pytest.fixture(scope="session")
def digits_judge():
    """An independent digits classifier (other architecture and seed)."""
    from inverset.zoo import digits

    return digits("mlp", seed=1)


def ctrl_c_on_call(monkeypatch, module: Any, name: str, n: int) -> list[int]:
    """``module.name`` raises KeyboardInterrupt (a Ctrl-C) on its n-th call; returns the
    call count (a one-element list)."""
    real, calls = getattr(module, name), [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls
