"""Shared fixtures: two threads at most, the third-party networks in ../shared, small models."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest
import torch

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def need(module: str) -> Any:
    """Import an optional integration; skip without it, but fail under CI=true, where
    ``.ci/run`` installs every extra and a skipped test would hide a broken install."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(
        module, reason=f"{module} is not installed (pip install -e '.[all]')"
    )


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared`` beside the checkout: required under CI=true, else skipped with a reason."""
    if not (SHARED / "external").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED}/external is missing; CI must have shared/ beside the checkout")
        pytest.skip(f"{SHARED}/external not found beside the checkout (third-party networks)")
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
