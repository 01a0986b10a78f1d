"""``auto`` says what it picked and why, and its pick answers the query."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from tests.test_solvers_blackbox import bump2d, tent


class Stepped(nn.Module):
    """A staircase of the bump: piecewise constant, so its input gradient is zero."""

    def __init__(self):
        super().__init__()
        self.inner = bump2d()

    def forward(self, x):
        return torch.floor(self.inner(x) * 100) / 100


def smooth2d() -> nn.Module:
    """A tanh net (not piecewise-linear): no exact solver, gradient then evolution."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))


def test_piecewise_linear_goes_exact_when_available():
    res = iv.maximize(bump2d(), "out:0", iv.Box(-1, 1, shape=(2,)), solver="auto", seed=0)
    picked = res.info["auto"]["picked"]
    assert res.message.startswith(f"auto picked {picked}")
    assert res.value == pytest.approx(2.0, abs=1e-4)
    try:
        from inverset.exact import is_supported  # noqa: F401
    except ImportError:
        assert picked == "gradient -> evolution"
    else:
        assert picked == "gradient -> exact" and res.status == "optimal"


def test_smooth_low_dimensional_model_uses_gradient_then_evolution():
    net, box = smooth2d(), iv.Box(-3, 3, shape=(2,))
    res = iv.maximize(net, "out:0", box, solver="auto", seed=0, time_limit=3.0)
    assert res.info["auto"]["picked"] == "gradient -> evolution"
    assert "differentiable" in res.info["auto"]["why"]
    ref = iv.maximize(net, "out:0", box, solver="evolution", seed=1, popsize=40)
    assert res.value >= ref.value - 1e-6
    assert [s["solver"] for s in res.info["auto"]["stages"]] == ["gradient", "evolution"]
    spent = sum(s["nfev"] for s in res.info["auto"]["stages"])
    assert res.nfev == spent + res.info["auto"]["probe_nfev"]


def test_no_gradient_uses_cmaes():
    res = iv.maximize(Stepped(), "out:0", iv.Box(-1, 1, shape=(2,)), solver="auto", seed=0)
    assert res.info["auto"]["picked"] == "cmaes"
    assert "gradient" in res.info["auto"]["why"]
    assert res.value == pytest.approx(2.0, abs=0.011)


def test_latent_space_uses_gradient():
    gen = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        gen.weight.copy_(0.5 * torch.eye(2))
    space = iv.Latent(gen, 2, bound=2.0)
    net = smooth2d()
    res = iv.maximize(net, "out:0", solver="auto", space=space, input_shape=(2,), seed=0)
    assert res.info["auto"]["picked"] == "gradient"
    assert "latent" in res.info["auto"]["why"]
    assert res.solver == "auto:gradient" and res.x.shape == (2,)


def test_images_use_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    res = iv.maximize(
        net, "out:0", iv.Box(0, 1), input_shape=(1, 4, 4), solver="auto", seed=0, steps=50
    )
    assert res.info["auto"]["picked"] == "gradient"
    assert "image" in res.info["auto"]["why"]
    assert res.x.shape == (1, 4, 4) and res.x.min() >= 0 and res.x.max() <= 1
    assert res.value == pytest.approx(float(net(torch.as_tensor(res.x[None])).item()), abs=1e-5)


def test_unbounded_box_uses_gradient():
    res = iv.reach(tent(), "out:0", 0.5, iv.Box(shape=(1,)), solver="auto", seed=0)
    assert res.info["auto"]["picked"] == "gradient"
    assert res.status == "found" and abs(res.value - 0.5) < 1e-4


def test_auto_respects_time_limit_and_budget():
    net, box = smooth2d(), iv.Box(-3, 3, shape=(2,))
    res = iv.maximize(net, "out:0", box, solver="auto", seed=0, max_evals=2000)
    assert res.nfev <= 2000 + 64  # the gradient stage may finish its last batch of starts
    assert np.isfinite(res.value)
