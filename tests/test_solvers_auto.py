"""``auto`` says what it picked and why, and its pick answers the query."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset.errors import InversetError
from tests.conftest import ctrl_c_on_call
from tests.test_solvers_blackbox import bump2d, tent

torch.set_num_threads(1)


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


def test_a_stages_library_import_is_outside_the_time_limit(monkeypatch):
    # a process's first import of cma (1-2 s) ran on auto's clock: a 1 s limit took 2.6 s
    import time

    from inverset.solvers import auto, get_solver

    slow = set()

    def importing(name):
        if name not in slow:
            slow.add(name)
            time.sleep(1.5)
        return get_solver(name)

    monkeypatch.setattr(auto, "get_solver", importing)
    res = iv.maximize(
        Stepped(), "out:0", iv.Box(-1, 1, shape=(2,)), solver="auto", seed=0, time_limit=1.0
    )
    assert res.info["auto"]["picked"] == "cmaes" and res.status == "time_limit"
    assert res.timings["total"] < 1.3
    assert res.info["auto"]["stages"][0]["time"] > 0.5  # the stage had its time


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
    assert res.nfev <= 2000
    assert np.isfinite(res.value)


@pytest.mark.parametrize("budget", [1, 5, 10, 20, 40, 60])
@pytest.mark.parametrize("net", [bump2d, smooth2d])
def test_auto_budget_is_hard_and_small_budgets_answer(net, budget):
    """The probes (exact's support check, the gradient probe) count: the total never exceeds
    max_evals, and a budget too small for them still returns the best point evaluated."""
    res = iv.maximize(net(), "out:0", iv.Box(-1, 1, shape=(2,)), solver="auto", max_evals=budget)
    assert res.nfev <= budget, res.info["auto"]
    assert res.x is not None and np.isfinite(res.value)
    assert res.status in ("max_evals", "optimal", "converged"), res.status
    spent = sum(s.get("nfev", 0) for s in res.info["auto"]["stages"])
    assert res.nfev == spent + res.info["auto"]["probe_nfev"]


def test_auto_budget_keeps_the_exact_route_when_it_fits():
    res = iv.maximize(bump2d(), "out:0", iv.Box(-1, 1, shape=(2,)), solver="auto", max_evals=60)
    assert res.info["auto"]["picked"] == "gradient -> exact" and res.nfev <= 60
    assert res.status == "optimal" and res.value == pytest.approx(2.0, abs=1e-4)


class Counted(nn.Module):
    """bump2d, counting its forward passes."""

    def __init__(self):
        super().__init__()
        self.inner, self.calls = bump2d(), 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_auto_rejects_options_no_candidate_takes_before_any_work():
    net, box = Counted(), iv.Box(-1, 1, shape=(2,))
    with pytest.raises(InversetError, match="unknown option 'strats' for solver 'gradient'"):
        iv.maximize(net, "out:0", box, strats=5)
    building = net.calls  # the query's own checks; no search starts
    with pytest.raises(InversetError, match=r"unknown option 'strats' for solver 'auto'.*starts"):
        iv.maximize(net, "out:0", box, solver="auto", strats=5, max_evals=200)
    with pytest.raises(InversetError, match="option 'steps' of solver 'gradient' takes an int"):
        iv.maximize(net, "out:0", box, solver="auto", steps="many")
    assert net.calls == 3 * building


def test_auto_reports_options_its_pick_did_not_take():
    g = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    box = iv.Box(0, 1, shape=(1, 4, 4))
    res = iv.maximize(g, "out:0", box, solver="auto", popsize=99, steps=5, seed=0)
    assert res.info["auto"]["picked"] == "gradient"
    assert res.info["auto"]["ignored_options"] == ["popsize"]
    assert "options not taken by gradient: popsize" in res.message


def test_auto_names_an_unbounded_latent_space():
    gen = nn.Linear(2, 2)
    space = iv.Latent(gen, 2, bound=float("inf"))
    box = iv.Box(-1, 1, shape=(2,))
    res = iv.maximize(smooth2d(), "out:0", box, solver="auto", space=space, steps=5, seed=0)
    assert res.info["auto"]["why"].startswith("the latent space is unbounded")


def _history_ends_at_the_answer(res) -> dict:
    h = res.history
    n = len(h["best"])
    assert all(len(v) == n for v in h.values()), {k: len(v) for k, v in h.items()}
    assert h["best"][-1] == res.value and h["nfev"][-1] == res.nfev
    assert list(h["nfev"]) == sorted(h["nfev"]) and list(h["time"]) == sorted(h["time"])
    stages = [s["solver"] for s in res.info["auto"]["stages"]]
    assert list(dict.fromkeys(h["stage"])) == stages
    return h


def test_history_holds_every_stage_and_ends_at_the_returned_value():
    """The history held the gradient stage only: with an exact stage after it, it ended at
    the gradient's -0.0567 while auto returned exact's -0.0261 (and had no bound)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    box = iv.Box(-1, 1, shape=(4,))
    res = iv.maximize(net, "min(out:0, out:1)", box, solver="auto", max_evals=400, seed=0)
    assert res.info["auto"]["picked"] == "gradient -> exact", res.info["auto"]["why"]
    h = _history_ends_at_the_answer(res)
    best = np.asarray(h["best"], dtype=float)
    assert np.all(np.diff(best) >= -1e-6)  # the best so far of the whole solve (maximize)
    exact = [i for i, s in enumerate(h["stage"]) if s == "exact"]
    assert exact and h["bound"][-1] == res.bound
    assert all(h["bound"][i] is not None for i in exact)
    assert all(b is None for b, s in zip(h["bound"], h["stage"], strict=True) if s == "gradient")


def test_history_of_gradient_then_evolution_spans_the_solve():
    res = iv.maximize(smooth2d(), "out:0", iv.Box(-3, 3, shape=(2,)), solver="auto", max_evals=900)
    assert res.info["auto"]["picked"] == "gradient -> evolution"
    h = _history_ends_at_the_answer(res)
    assert "bound" not in h and "evolution" in h["stage"]


def test_unreachable_range_between_integer_values_keeps_the_nearest_input():
    """auto took the exact stage's 'unreachable' (a range between the values integer inputs
    attain, proven by an infeasible MILP, with no input) and dropped the gradient stage's
    nearest point."""
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight[:] = torch.tensor([[1.0, 0.01]])
        m.bias.zero_()
    box = iv.Box(0, 3, shape=(2,), integer=[0])
    r = iv.in_range(m, "out:0", (2.4, 2.6), box, solver="auto", seed=0)
    assert r.status == "unreachable" and "infeasible" in r.message
    assert r.x is not None and r.x[0] == 2.0
    with torch.no_grad():
        assert float(m(torch.as_tensor(r.x, dtype=torch.float32))[0]) == pytest.approx(r.value)
    assert r.value == pytest.approx(2.03, abs=1e-6)
    assert r.message.endswith("the point returned is the nearest gradient found"), r.message
    assert "best the proof met" not in r.message  # (the exact stage's farther point, 3.03)


def _no_escape(solve):
    """``solve()``, failing the test (not ending the session) when a Ctrl-C escapes it."""
    try:
        return solve()
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped the solve instead of ending it with a result")


def _relu4() -> nn.Module:
    """4-32-32-1 ReLU net: the exact stage runs branch and bound on input boxes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)
    )


def test_a_ctrl_c_in_the_exact_stage_answers_interrupted(monkeypatch):
    """A Ctrl-C in the exact stage's branch and bound (its 3rd batch of bounds) escaped auto
    and lost both stages; now auto answers 'interrupted' with the better point of the two,
    its value the model's own, and the bound the exact stage proved so far."""
    from inverset.exact import bab

    net, box = _relu4(), iv.Box(-1, 1, shape=(4,))
    calls = ctrl_c_on_call(monkeypatch, bab, "crown", 3)
    res = _no_escape(lambda: iv.maximize(net, "out:0", box, solver="auto", seed=0))
    assert calls[0] == 3 and res.info["auto"]["picked"] == "gradient -> exact"
    assert res.status == "interrupted" and res.info["auto"]["stages"][1]["status"] == "interrupted"
    with torch.no_grad():
        value = float(net(torch.as_tensor(res.x[None], dtype=torch.float32))[0, 0])
    assert res.value == pytest.approx(value, abs=1e-6)
    assert np.isfinite(res.bound) and res.bound >= res.value
    monkeypatch.undo()
    done = iv.maximize(net, "out:0", box, solver="exact")
    assert done.status == "optimal" and res.value <= done.value + 1e-6 <= res.bound + 2e-6


def test_a_stage_that_raises_ctrl_c_keeps_the_earlier_answer(monkeypatch):
    """A Ctrl-C that a stage lets escape (here as the exact stage sets up) ends auto with the
    earlier stages' answer, 'interrupted'."""
    from inverset.exact import solver

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(solver._Ctx, "__init__", ctrl_c)
    net, box = _relu4(), iv.Box(-1, 1, shape=(4,))
    res = _no_escape(lambda: iv.maximize(net, "out:0", box, solver="auto", seed=0))
    assert res.status == "interrupted" and res.solver == "auto:gradient"
    assert [s["solver"] for s in res.info["auto"]["stages"]] == ["gradient", "exact"]
    assert res.info["auto"]["stages"][1]["status"] == "interrupted"
    with torch.no_grad():
        value = float(net(torch.as_tensor(res.x[None], dtype=torch.float32))[0, 0])
    assert res.value == pytest.approx(value, abs=1e-6)


def test_a_model_run_without_autograd_goes_on_to_the_exact_stage():
    """A forward under torch.no_grad(): auto's gradient stage had ended the solve with its
    error, though the exact stage that follows needs no gradient."""

    class NoGrad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x):
            with torch.no_grad():
                return torch.relu(self.fc(x))

    torch.manual_seed(0)
    m = NoGrad().eval()
    r = iv.maximize(m, "out:0", iv.Box(0, 1, shape=(2,)), solver="auto")
    w, b = m.fc.weight.detach()[0], float(m.fc.bias.detach()[0])
    assert r.status == "optimal"
    assert r.value == pytest.approx(max(0.0, b + float(w.clamp_min(0).sum())), abs=1e-6)


def test_an_earlier_stages_point_under_the_exact_stages_bound_says_the_bound(monkeypatch):
    """When the exact stage stops at its limit short of the gradient stage's point, the answer
    is that point, its bound the exact stage's, and the message says so (it gave the gradient
    stage's message alone)."""
    from inverset.exact import solver

    real = solver.solve

    def stopped_short(problem, **kwargs):
        r = real(problem, **kwargs)
        r.status, r.value = "time_limit", r.value - 0.5
        r.message = f"stopped at the time limit: best {r.value:.6g}, certified max bound ..."
        return r

    monkeypatch.setattr(solver, "solve", stopped_short)
    res = iv.maximize(_relu4(), "out:0", iv.Box(-1, 1, shape=(4,)), solver="auto", seed=0)
    assert res.status == "time_limit" and res.solver == "auto:gradient"
    assert res.bound is not None and res.bound >= res.value
    assert res.message.endswith(
        f"; the exact stage ended (time limit) with certified max bound {res.bound:.6g} "
        f"(gap {res.gap:.3g})"
    )


def test_a_ctrl_c_while_a_stages_library_is_imported_answers_interrupted(monkeypatch):
    from inverset.solvers import auto

    def importing(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(auto, "get_solver", importing)
    res = iv.maximize(Stepped(), "out:0", iv.Box(-1, 1, shape=(2,)), solver="auto", seed=0)
    assert res.status == "interrupted" and res.x is None
