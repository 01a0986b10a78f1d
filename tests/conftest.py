"""Shared fixtures: two threads at most, the third-party networks in ../shared, small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


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
