"""Small networks with known optima, shared by the solver tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def tent(peak: float = 0.3, width: float = 0.2, height: float = 1.0) -> nn.Module:
    """A ReLU net equal to a tent: 0 outside [peak-width, peak+width], ``height`` at ``peak``."""
    net = nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 1))
    s = height / width
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.copy_(torch.tensor([-(peak - width), -peak, -(peak + width)]))
        net[2].weight.copy_(torch.tensor([[s, -2 * s, s]]))
        net[2].bias.zero_()
    return net


def bump2d() -> nn.Module:
    """f(x, y) = 2 - |x - 0.25| - 2|y + 0.5| on [-1, 1]^2 as a ReLU net (max 2 at (0.25, -0.5))."""
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0], [-1.0, 0], [0, 1.0], [0, -1.0]]))
        net[0].bias.copy_(torch.tensor([-0.25, 0.25, 0.5, -0.5]))
        net[2].weight.copy_(torch.tensor([[-1.0, -1.0, -2.0, -2.0]]))
        net[2].bias.fill_(2.0)
    return net


class Coupled(nn.Module):
    """f(x0, x1, k) = -(x0 - 0.3 k + 0.45)^2 - (x1 - 0.2 k + 0.1)^2 - 0.1 (k - 2.3)^2: the best
    continuous values move with the integer k, so the relaxed optimum (k = 2.3) rounded to
    k = 2 keeps continuous values 0.09 and 0.06 off the best ones for k = 2 (value -0.0207
    against -0.009)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, k = x[:, 0], x[:, 1], x[:, 2]
        f = -((x0 - 0.3 * k + 0.45) ** 2) - (x1 - 0.2 * k + 0.1) ** 2 - 0.1 * (k - 2.3) ** 2
        return f[:, None]


def brute_force(net: nn.Module, ks: range, A=None, b=None, step: float = 0.0025):
    """The best value and point over every integer k and a grid of (x0, x1) in [-1, 1]^2 that
    keeps ``A x <= b``."""
    dtype = next((p.dtype for p in net.parameters()), torch.float64)
    g = torch.arange(-1, 1 + step / 2, step, dtype=dtype)
    x0, x1 = (t.reshape(-1) for t in torch.meshgrid(g, g, indexing="ij"))
    best = (-np.inf, None)
    for k in ks:
        X = torch.stack([x0, x1, torch.full_like(x0, k)], 1)
        if A is not None:
            slack = torch.as_tensor(b) - X @ torch.as_tensor(A, dtype=X.dtype).T
            X = X[(slack >= -1e-12).all(1)]
        with torch.no_grad():
            v = net(X)[:, 0]
        i = int(v.argmax())
        if float(v[i]) > best[0]:
            best = (float(v[i]), X[i].numpy())
    return best
