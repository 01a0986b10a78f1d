"""Soundness of the exact solver's network compilation and bounds."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from inverset.errors import InversetError, UnsupportedModelError
from inverset.exact import crown, extract, interval
from inverset.exact.ir import Head, split_head
from inverset.exact.relu_bab import _Nodes
from inverset.model import forward
from inverset.target import parse_target


def _mlp(sizes, seed):
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


def _values(model, expr, x):
    with torch.no_grad():
        return expr.evaluate(forward(model, x, expr.layers())).double()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_in=st.integers(1, 4),
    widths=st.lists(st.integers(1, 12), min_size=1, max_size=3),
    n_out=st.integers(2, 3),
    target=st.sampled_from(["out:0", "margin:0", "max(out:0, -out:0)", "0:0 - 2*out:0"]),
)
def test_bounds_contain_every_value(seed, n_in, widths, n_out, target):
    model = _mlp([n_in, *widths, n_out], seed)
    expr = parse_target(target)
    net = extract(model, (n_in,), [expr])
    g = torch.Generator().manual_seed(seed)
    B = 5
    c = torch.rand(B, n_in, generator=g, dtype=torch.float64) * 4 - 2
    r = torch.rand(B, n_in, generator=g, dtype=torch.float64) * 1.5
    lo, hi = c - r, c + r
    pts = lo[:, None] + (hi - lo)[:, None] * torch.rand(
        B, 64, n_in, generator=g, dtype=torch.float64
    )
    pts[:, 0], pts[:, 1] = lo, hi  # corners too
    vals = _values(model, expr, pts.reshape(-1, n_in)).reshape(B, 64)
    out, zs = net.forward(pts.reshape(-1, n_in), pre=True)
    assert torch.allclose(out[:, 0].reshape(B, 64), vals, atol=1e-9)
    for bounds in (
        interval(net, lo, hi),
        crown(net, lo, hi),
        crown(net, lo, hi, intermediate="forward"),
        crown(net, lo, hi, alpha_steps=4),
        crown(net, lo, hi, alpha_steps=4, alpha_hidden=4),
    ):
        assert (bounds.out_hi[:, :1] >= vals - 1e-9).all()
        assert (bounds.out_lo[:, :1] <= vals + 1e-9).all()
        for (zl, zu), z in zip(bounds.pre, zs, strict=True):
            z = z.reshape(B, 64, -1)
            assert (zl[:, None] <= z + 1e-9).all() and (zu[:, None] >= z - 1e-9).all()
    # per-row bounds combined through the min/max head bound the target too
    head, leaves = split_head(expr, n_out)
    hnet = extract(model, (n_in,), leaves)
    hb = crown(hnet, lo, hi, lower=False)
    assert (head.apply(hb.out_hi)[:, None] >= vals - 1e-9).all()
    assert torch.allclose(head.apply(hnet.forward(pts.reshape(-1, n_in))).reshape(B, 64), vals)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_in=st.integers(1, 6),
    widths=st.lists(st.integers(2, 10), min_size=1, max_size=3),
    frac=st.floats(0.0, 1.0),
)
def test_split_node_bounds_contain_every_value_of_their_region(seed, n_in, widths, frac):
    """beta-CROWN bounds of a ReLU-phase node hold at every point following its splits, and a
    fully split node's linear program is attained and never beaten there."""
    model = _mlp([n_in, *widths, 2], seed)
    net = extract(model, (n_in,), [parse_target("out:0"), parse_target("out:1")])
    head = Head("max", children=(Head("leaf", 0), Head("leaf", 1)))
    lo, hi = -torch.ones(n_in, dtype=torch.float64), torch.ones(n_in, dtype=torch.float64)
    nodes = _Nodes(net, lo, hi, head, steps=3)
    g = torch.Generator().manual_seed(seed)
    pts = lo + (hi - lo) * torch.rand(4096, n_in, generator=g, dtype=torch.float64)
    out, zs = net.forward(pts, pre=True)
    z = torch.cat(zs, 1)
    unstable = (nodes.L < 0) & (nodes.U > 0)
    phase = torch.where(z[0] >= 0, 1, -1).to(torch.int8)  # point 0's phases
    choose = unstable & (torch.rand(unstable.shape, generator=g) < frac)
    for S in (torch.where(choose, phase, 0).to(torch.int8), torch.where(unstable, phase, 0)):
        inside = ((z * S.double()) >= 0).all(1)
        assert bool(inside[0])
        S1 = S[None].to(torch.int8)
        rows, _, pick, warm = nodes.bound(S1, nodes.root_rows, -math.inf, steps=5)
        assert (rows[0] >= out[inside] - 1e-9).all()
        # warm-started from the optimized slopes and multipliers: still sound
        again, _, _, _ = nodes.bound(S1, nodes.root_rows, -math.inf, steps=3, warm=warm)
        assert (again[0] >= out[inside] - 1e-9).all()
        if int(pick[0]) < 0:  # no unstable ReLU left: a linear region, solved exactly
            v, x = nodes.linear_region(S.to(torch.int8))
            best = float(head.apply(out[inside]).max())
            assert v >= best - 1e-7
            got = float(head.apply(net.forward(torch.as_tensor(x)[None]))[0])
            assert got == pytest.approx(v, abs=1e-6)


def test_optimized_slopes_tighten_crown_and_stay_sound():
    model = _mlp([4, 24, 24, 24, 1], 1)
    net = extract(model, (4,), [parse_target("out:0")])
    g = torch.Generator().manual_seed(0)
    c = torch.rand(16, 4, generator=g, dtype=torch.float64) * 2 - 1
    lo, hi = c - 0.3, c + 0.3
    plain, tight = crown(net, lo, hi), crown(net, lo, hi, alpha_steps=20)
    assert (tight.out_hi <= plain.out_hi + 1e-12).all()
    assert float((plain.out_hi - tight.out_hi).mean()) > 0.02 * float(plain.out_hi.abs().mean())
    pts = lo[:, None] + (hi - lo)[:, None] * torch.rand(
        16, 256, 4, generator=g, dtype=torch.float64
    )
    v = net.forward(pts.reshape(-1, 4))[:, 0].reshape(16, 256)
    lin = (tight.A_hi[:, 0, None, :] * pts).sum(-1) + tight.c_hi[:, :1]
    assert (tight.out_hi[:, :1] >= v - 1e-9).all() and (lin >= v - 1e-9).all()


def test_crown_is_tighter_than_interval_on_a_deep_net():
    model = _mlp([3, 20, 20, 20, 1], 0)
    net = extract(model, (3,), [parse_target("out:0")])
    lo, hi = -torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    assert float(crown(net, lo, hi).out_hi) < 0.5 * float(interval(net, lo, hi).out_hi)


def test_conv_pool_batchnorm_and_hidden_targets_compile_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 2, 2),
        nn.ReLU(),
        nn.AvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(2, 3),
    )
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.rand(20, 1, 4, 4)
    for t in ["out:1", "margin:2", "4:1", "3:2,1,0", "min(out:0, 5:1 + 1)"]:
        expr = parse_target(t)
        net = extract(model, (1, 4, 4), [expr])
        assert torch.allclose(
            net.forward(x.reshape(20, -1).double())[:, 0], _values(model, expr, x)
        )
        b = crown(
            net, torch.zeros(1, 16, dtype=torch.float64), torch.ones(1, 16, dtype=torch.float64)
        )
        assert float(b.out_hi[0, 0]) >= float(_values(model, expr, x).max()) - 1e-6


def test_a_hidden_layer_is_carried_only_as_the_rows_the_target_reads():
    """``out:0 - 0.1*c:1`` reads one number of a conv layer; the chain used to carry every
    one of its activations through the layers after it (here 2*16*16 more units in each, on
    the digits CNN 4096 and a compile of 3.4 s that ignored the time limit)."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("c", nn.Conv2d(1, 2, 3, padding=1))
    model.add_module("r", nn.ReLU())
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(512, 6))
    model.add_module("r2", nn.ReLU())
    model.add_module("out_", nn.Linear(6, 3))
    model.eval()
    x = torch.rand(20, 1, 16, 16)
    for t in ["out:0 - 0.1*c:1", "max(c:1, r:0,3,4) - out:2", "margin:1 + fc:2 - fc:2"]:
        expr = parse_target(t)
        net = extract(model, (1, 16, 16), [expr])
        assert max(net.widths()[1:]) <= 16, (t, net.widths())
        assert torch.allclose(
            net.forward(x.reshape(20, -1).double())[:, 0], _values(model, expr, x), atol=1e-6
        )


def test_residual_function_graph_traces():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 2)

        def forward(self, x):
            h = torch.relu(self.a(x)) + x * 2 - 1
            return self.b(h.reshape(x.shape[0], -1))

    torch.manual_seed(1)
    m = Res().eval()
    expr = parse_target("out:0 - out:1")
    net = extract(m, (3,), [expr])
    x = torch.randn(30, 3)
    assert torch.allclose(net.forward(x.double())[:, 0], _values(m, expr, x), atol=1e-6)


def test_unsupported_layers_and_targets_fail_clearly():
    m = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1))
    with pytest.raises(UnsupportedModelError, match=r"Sigmoid.*--solver gradient"):
        extract(m, (2,), [parse_target("out:0")])
    m2 = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(InversetError, match="not piecewise linear"):
        extract(m2, (2,), [parse_target("prob:1")])
