"""Gradient search on mixed integer domains: after rounding, the continuous features are
re-optimized with the integer ones held, so the answer matches a brute force over the integer
values (a fine grid, or the exact solver, over the continuous ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from tests.nets import Coupled, brute_force

torch.set_num_threads(1)


def test_the_continuous_features_are_reoptimized_at_the_rounded_integers():
    """Before: 'converged' at -0.0207 (the relaxed optimum's x0, x1 with k rounded to 2)."""
    net = Coupled()
    box = iv.Box([-1, -1, 0], [1, 1, 4], integer=[2])
    best, at = brute_force(net, range(5))
    assert best == pytest.approx(-0.009, abs=1e-12)
    np.testing.assert_allclose(at, [0.15, 0.3, 2], atol=1e-9)
    for seed in (0, 1):
        r = iv.maximize(net, "out:0", box, seed=seed)
        assert r.status == "converged" and r.x[2] == 2
        assert r.value == pytest.approx(best, abs=1e-7)
        np.testing.assert_allclose(r.x, at, atol=1e-4)


def test_under_linear_constraints_too():
    """x0 + x1 + 0.2 k <= 0.6 (SLSQP with the integer feature held): the best point is
    (0.025, 0.175, 2), value -0.04025. Before: -0.2091 at k = 1 (seed 0)."""
    net = Coupled()
    A, b = [[1.0, 1.0, 0.2]], [0.6]
    box = iv.Box([-1, -1, 0], [1, 1, 4], integer=[2], A=A, b=b)
    best, at = brute_force(net, range(5), A, b)
    assert best == pytest.approx(-0.04025, abs=1e-12)
    np.testing.assert_allclose(at, [0.025, 0.175, 2], atol=1e-9)
    for seed in (0, 1):
        r = iv.maximize(net, "out:0", box, seed=seed)
        assert r.status == "converged" and r.x[2] == 2
        assert r.x[0] + r.x[1] + 0.2 * r.x[2] <= 0.6 + 1e-6
        assert r.value == pytest.approx(best, abs=1e-7)
        np.testing.assert_allclose(r.x, at, atol=1e-4)


def test_a_relu_net_nears_the_exact_solver():
    """A small ReLU net (2 continuous inputs, 1 integer): the exact solver's certified optimum
    -0.183104 is at k = 1, x0 = -1 on a kink of x1 (-0.3411); L-BFGS-B steps over that kink to
    the next local maximum, -0.183223 at x1 = -0.3038. Before: -0.183837 (x1 = -0.3989, the
    relaxed optimum's)."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    box = iv.Box([-1, -1, 0], [1, 1, 4], integer=[2])
    exact = iv.maximize(net, "out:0", box, solver="exact", tol=1e-7, time_limit=30)
    assert exact.status == "optimal" and exact.bound - exact.value <= 1e-6
    grid, _ = brute_force(net, range(5))
    assert exact.value - 1e-4 <= grid <= exact.bound + 1e-6
    for seed in (0, 1):
        r = iv.maximize(net, "out:0", box, seed=seed)
        assert r.status == "converged" and r.x[2] == exact.x[2] == 1
        assert exact.value - 1.5e-4 <= r.value <= exact.bound + 1e-6


def test_reach_and_range_goals_are_met_at_the_rounded_integers():
    """Reach -0.02 and -0.1, and the range [-0.0095, -0.009] (only k = 2 gets there, within
    0.007 of its best x0, x1): the continuous features meet them after rounding. Before, seed 0
    ended not_found for all three (closest -0.018935, -0.100206, -0.010639)."""
    net = Coupled()
    box = iv.Box([-1, -1, 0], [1, 1, 4], integer=[2])
    for seed in (0, 1):
        for value in (-0.02, -0.1):
            r = iv.reach(net, "out:0", value, box, seed=seed)
            assert r.status == "found" and r.value == pytest.approx(value, abs=1e-6)
            assert r.x[2] == 2
        inside = iv.in_range(net, "out:0", (-0.0095, -0.009), box, seed=seed)
        assert inside.status == "found" and (inside.xs[:, 2] == 2).all()
        with torch.no_grad():
            vals = net(torch.as_tensor(inside.xs))[:, 0].numpy()
        assert ((vals >= -0.0095) & (vals <= -0.009)).all()
        np.testing.assert_allclose(inside.values, vals, atol=1e-12)


def test_without_polish_the_rounded_points_stand():
    """``polish=False`` runs no L-BFGS-B: the integer neighbour search's points are the answer."""
    r = iv.maximize(Coupled(), "out:0", iv.Box([-1, -1, 0], [1, 1, 4], integer=[2]), polish=False)
    assert r.x[2] == 2 and r.value < -0.015


def test_float32_rounding_of_a_linear_constraint_moves_no_point():
    """max x0 + 1.3 x1 + 0.5 x2 through ReLUs, 2 x0 + 2 x1 + x2 <= 3.7, x0, x1 whole: a repair
    of the projection that took float32 rounding of A x for a violation pulled the points to
    an inner point at every step, and the search ended at 1.3 (x2 = 0) in 3 of 4 seeds."""
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 1.3, 0.5]]))
        net[2].bias.zero_()
    box = iv.Box(0, [3, 3, 1], integer=[0, 1], A=[[2.0, 2.0, 1.0]], b=[3.7])
    for seed in range(4):
        r = iv.maximize(net, "out:0", box, solver="gradient", seed=seed)
        assert r.value == pytest.approx(1.8, abs=1e-5), (seed, r.x)
        np.testing.assert_allclose(r.x, [0, 1, 1], atol=1e-5)


def test_without_polish_a_search_its_steps_cut_short_is_step_limit():
    """5 Adam steps and polish=False: the whole-number neighbour search's own end made the
    answer 'converged' when the other features had not converged (audit 104). With every
    feature a whole number, that search is the answer's own test."""
    net = Coupled()
    box = iv.Box([-1, -1, 0], [1, 1, 4], integer=[2])
    r = iv.maximize(net, "out:0", box, steps=5, polish=False)
    assert r.status == "step_limit" and r.x[2] == round(r.x[2]), r.message
    lattice = iv.Box([-2, -2, 0], [2, 2, 4], integer=[0, 1, 2])
    r = iv.maximize(net, "out:0", lattice, steps=5, polish=False)
    assert r.status == "converged" and np.array_equal(r.x, np.round(r.x)), r.message
