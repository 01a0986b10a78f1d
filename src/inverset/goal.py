"""What the user wants of the target: maximize, minimize, reach a value, or lie in a range."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from inverset.errors import InversetError


@dataclass(frozen=True)
class Goal:
    """Turns target values into a loss to *minimize* and says when a value is good enough."""

    kind: str = "maximize"  # maximize | minimize | reach | range
    value: float | None = None  # reach
    low: float | None = None  # range
    high: float | None = None  # range

    def __post_init__(self) -> None:
        if self.kind not in ("maximize", "minimize", "reach", "range"):
            raise InversetError(
                f"unknown goal {self.kind!r}; use maximize, minimize, reach or range"
            )
        for name in ("value", "low", "high"):
            v = getattr(self, name)
            if v is None:
                continue
            try:
                if isinstance(v, bool | str | bytes):
                    raise TypeError
                object.__setattr__(self, name, float(v))
            except (TypeError, ValueError):
                raise InversetError(f"the goal's {name} must be a number, got {v!r}") from None
        if self.kind == "reach" and (self.value is None or not math.isfinite(self.value)):
            raise InversetError("reach needs a finite value, e.g. --value 3.0")
        if self.kind == "range":
            if self.low is None or self.high is None:
                raise InversetError("range needs two numbers z1,z2, e.g. --range 0.6,0.7")
            if math.isnan(self.low) or math.isnan(self.high):
                raise InversetError(
                    f"range [{self.low}, {self.high}] has a NaN end; give numbers (inf allowed)"
                )
            if self.low == math.inf or self.high == -math.inf:
                raise InversetError(
                    f"range [{self.low:g}, {self.high:g}] holds no finite value; give a finite "
                    "end on the side the range is bounded"
                )
            if self.low > self.high:
                raise InversetError(
                    f"range has z1 > z2 ({self.low:g} > {self.high:g}); write it as z1,z2 "
                    "with z1 <= z2"
                )

    # convenience constructors -------------------------------------------------
    @classmethod
    def of(cls, goal: Goal | str) -> Goal:
        """``goal`` itself, or the goal a name gives ('maximize' or 'minimize'; 'reach' and
        'range' need numbers: Goal.reach(z), Goal.range(z1, z2))."""
        if isinstance(goal, Goal):
            return goal
        if isinstance(goal, str) and goal.strip().lower() in ("maximize", "minimize"):
            return cls(goal.strip().lower())
        raise InversetError(
            f"goal must be an inverset.Goal or 'maximize'/'minimize' (e.g. Goal.reach(3.0), "
            f"Goal.range(0.6, 0.7)), got {goal!r}"
        )

    @classmethod
    def maximize(cls) -> Goal:
        return cls("maximize")

    @classmethod
    def minimize(cls) -> Goal:
        return cls("minimize")

    @classmethod
    def reach(cls, value: float) -> Goal:
        return cls("reach", value=value)

    @classmethod
    def range(cls, low: float, high: float) -> Goal:
        return cls("range", low=low, high=high)

    # semantics -----------------------------------------------------------------
    @property
    def sense(self) -> int:
        """+1 when larger target values are better, -1 when smaller are, 0 otherwise."""
        return {"maximize": 1, "minimize": -1}.get(self.kind, 0)

    def loss(self, v: torch.Tensor) -> torch.Tensor:
        """Per-point loss, smaller is better, zero exactly when a reach/range goal is met.

        A reach or range loss is computed in float64 (differentiable all the same): in a
        float32 model's dtype, values near a far goal (1e9) round to the same distance, and a
        goal past float32's range (1e39) to infinity."""
        if self.kind == "maximize":
            return -v
        if self.kind == "minimize":
            return v
        v = _wide(v)
        if self.kind == "reach":
            return (v - self.value).abs()
        return (self.low - v).clamp_min(0) + (v - self.high).clamp_min(0)

    def satisfied(self, v: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
        """Mask of values meeting a reach/range goal (all True for max/min)."""
        if self.kind in ("maximize", "minimize"):
            return torch.ones_like(v, dtype=torch.bool)
        return self.loss(v) <= tol

    def better(self, a: float, b: float) -> bool:
        """Is value ``a`` better than value ``b``?"""
        la, lb = self.loss(torch.tensor([a, b], dtype=torch.float64)).tolist()
        return la < lb

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def __str__(self) -> str:
        if self.kind == "reach":
            return f"reach {self.value:g}"
        if self.kind == "range":
            return f"range [{self.low:g}, {self.high:g}]"
        return self.kind


def _wide(v: torch.Tensor) -> torch.Tensor:
    """``v`` in float64 where its device has it (Apple's MPS has not)."""
    return v if v.device.type == "mps" else v.double()
