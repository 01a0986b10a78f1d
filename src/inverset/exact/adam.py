"""Adam for the exact solver's slope and multiplier optimization, without torch._dynamo.

``torch.optim.Optimizer``'s constructor imports ``torch._dynamo``: 1.4-1.8 s once per
process, more from a cold disk. A first exact solve paid it out of its time limit (an 8 s limit
took 10 s of wall time). This class keeps ``torch.optim.Adam``'s interface as used here
(parameter groups with their own ``lr``, ``zero_grad``, ``step``) and its update, computed by
torch's own functional ``torch.optim.adam.adam``, which imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam


class Adam:
    """``torch.optim.Adam(groups, lr)`` with default betas and eps, no weight decay.

    ``groups``: tensors, or dicts ``{"params": [...], "lr": ...}`` as for torch.optim."""

    def __init__(self, groups: Iterable, lr: float) -> None:
        groups = list(groups)
        if groups and isinstance(groups[0], torch.Tensor):
            groups = [{"params": groups}]
        self.groups = [(list(g["params"]), float(g.get("lr", lr))) for g in groups]
        self.state = {
            id(p): (torch.zeros_like(p), torch.zeros_like(p), torch.tensor(0.0))
            for params, _ in self.groups
            for p in params
        }

    def zero_grad(self) -> None:
        """Forget the gradients of the last backward pass."""
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step on every parameter that has a gradient."""
        for params, lr in self.groups:
            live = [p for p in params if p.grad is not None]
            if not live:
                continue
            m, v, steps = zip(*(self.state[id(p)] for p in live), strict=True)
            adam(
                live,
                [p.grad for p in live],
                list(m),
                list(v),
                [],
                list(steps),
                amsgrad=False,
                beta1=0.9,
                beta2=0.999,
                lr=lr,
                weight_decay=0.0,
                eps=1e-8,
                maximize=False,
            )
