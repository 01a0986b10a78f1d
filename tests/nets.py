"""Small ReLU networks with known optima, shared by the solver tests."""

from __future__ import annotations

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
