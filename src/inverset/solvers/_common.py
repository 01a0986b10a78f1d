"""What every black-box solver shares: one batched objective over the unit cube.

Library optimizers (scipy, cma, nevergrad, BoTorch) search ``u`` in ``[0, 1]^d``; the
:class:`Objective` maps it to the search variable ``z = lo + (hi - lo) * u`` of
``problem.space.box`` (the input domain for ``Direct``, the latent box for ``Latent``), repairs
it (integer features rounded; linear constraints ``A z <= b`` by Dykstra projection, or a
penalty), evaluates a whole batch in one forward pass, counts evaluations, enforces the time
limit and evaluation budget by raising :class:`StopSearch`, and keeps the best distinct points.
:func:`run` wraps a search in a session and turns what the objective saw into a ``Result``.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from inverset.domain import Box
from inverset.errors import (
    InversetError,
    NoGradient,
    first_line,
    model_backward,
    no_gradient,
)
from inverset.model import to_numpy
from inverset.problem import CONSTRAINT_TOL, Problem
from inverset.progress import progress_bar
from inverset.result import Result
from inverset.solvers import global_rngs_kept, unbounded
from inverset.space import Direct

#: a point is inside the domain and the target constraints when its violation is below this
FEASIBLE_TOL = 1e-6
#: Share of a time limit or evaluation budget kept for the final gradient polish
#: (``polish=True``) of a population or Bayesian search that would otherwise use it all.
POLISH_SHARE = 0.1
#: SLSQP (the polish under linear constraints) solves a dense least-squares problem per
#: iteration, O(n^3) and not interruptible: up to this many inputs (3,000 took 40 s)
SLSQP_MAX_DIMS = 500


#: points that agree to this share of the box width in every feature are one point
DISTINCT_TOL = 1e-3
#: past this many feature comparisons (points^2 x features) the distinct points are grid
#: cells of that size only (a point near a cell's edge may then stay beside its copy): a
#: k-d tree finds close pairs fast in few features, and in many it compares nearly all pairs
DISTINCT_MAX_WORK = 1e10


def distinct(problem: Problem, xs: np.ndarray) -> list[int]:
    """Indices of the model inputs ``xs`` (best first) that differ from every better one
    kept by more than DISTINCT_TOL of the domain's width in some feature: copies of one
    optimum shown once. On inputs, not on a generator's codes: two codes G draws alike are
    one picture. A grid of cells that size first takes out exact copies (thousands of
    starts); a k-d tree then finds the cells' points that close to each other, and each is
    dropped when a better one is kept."""
    from scipy.spatial import cKDTree

    if not len(xs):
        return []
    box = problem.domain
    lo = np.broadcast_to(box.lower, box.shape).reshape(-1).astype(np.float64)
    hi = np.broadcast_to(box.upper, box.shape).reshape(-1).astype(np.float64)
    width = np.maximum(np.where(np.isfinite(hi - lo), hi - lo, 1.0), 1e-12)
    base = np.where(np.isfinite(lo), lo, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):  # x ~ 1e35 on an unbounded box
        u = (xs.reshape(len(xs), -1).astype(np.float64) - base) / width
        keys = np.round(u / DISTINCT_TOL) + 0.0  # + 0.0: -0.0 keys as 0.0
    cells = np.sort(np.unique(keys, axis=0, return_index=True)[1])
    finite = np.isfinite(u[cells]).all(1)  # others are told apart by their cells only
    near = cells[finite]
    if len(near) ** 2 * u.shape[1] > DISTINCT_MAX_WORK or len(near) < 2:
        return [int(i) for i in cells]
    pairs = cKDTree(u[near]).query_pairs(DISTINCT_TOL * (1 + 1e-9), p=np.inf, output_type="ndarray")
    keep = np.ones(len(near), dtype=bool)
    # by the worse point of each pair: every better point's fate is settled before it
    for i, j in pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))].tolist():
        if keep[i]:
            keep[j] = False
    dropped = set(near[~keep].tolist())
    return [int(i) for i in cells if int(i) not in dropped]


class StopSearch(Exception):
    """Raised by the objective when the budget is used up or the goal is met."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Objective:
    """Loss (smaller is better) of a batch of unit-cube points ``u`` of shape ``[S, d]``.

    ``linear='repair'`` projects each point onto ``A z <= b`` before evaluating it (the
    optimizer keeps its own point, the evaluated one is recorded); ``'penalty'`` evaluates the
    point as is and adds ``penalty * sum(max(0, A z - b))``. Residual violations (after integer
    rounding) are always penalized, and only feasible points are ever reported.
    """

    def __init__(
        self,
        problem: Problem,
        name: str,
        *,
        time_limit: float | None = None,
        max_evals: int | None = None,
        linear: str = "repair",
        penalty: float = 1e3,
        keep: int = 32,
        chunk: int = 4096,
        polish: bool = False,
        bar: Any = None,
        alone: bool = False,
    ):
        box = problem.space.box
        if not box.bounded:
            what, fix = unbounded(problem.space)
            raise InversetError(f"solver {name!r} needs a bounded search space: {what}; {fix}")
        if linear not in ("repair", "penalty"):
            raise InversetError(f"linear must be 'repair' or 'penalty', got {linear!r}")
        self.problem, self.name, self.box = problem, name, box
        self.shape = tuple(box.shape)
        self.lo = np.asarray(box.lower, dtype=np.float64).reshape(-1)
        self.hi = np.asarray(box.upper, dtype=np.float64).reshape(-1)
        self.width = self.hi - self.lo
        self.dim = self.lo.size
        # the box as the model's dtype holds it, rounded inwards: the points evaluated
        self.lo_in, self.hi_in = (
            np.broadcast_to(to_numpy(t).astype(np.float64), self.shape).reshape(-1)
            for t in box.tensors(dtype=problem.dtype)
        )
        self.integer = np.asarray(box.integer, dtype=np.int64)
        self.A = None if box.A is None else np.asarray(box.A, dtype=np.float64)
        self.b = None if box.b is None else np.asarray(box.b, dtype=np.float64)
        self.linear, self.penalty, self.keep, self.chunk = linear, penalty, keep, chunk
        #: the search evaluates one point at a time (scipy's dual annealing): each value is
        #: the point's own, and the budget keeps nothing for evaluating the answer again
        self.alone = alone
        self.time_limit, self.max_evals, self.bar = time_limit, max_evals, bar
        self.t0 = time.perf_counter()
        self.nfev = 0
        self.nonfinite = 0  # evaluations whose target was NaN or infinite (left out)
        self.polish_nfev = 0
        self.polish_note: str | None = None
        #: the last polish ended by L-BFGS-B's own convergence test (not its iteration cap)
        self.polish_converged = False
        # with a budget and polish=True, the search gets 90% of it and the polish the rest
        # (run() turns the reserve on once it knows the model has gradients)
        self.polish_wanted, self.reserving, self.main_stop = polish, False, ""
        #: seconds past the time limit the final polish may take when the search overran its
        #: share (:meth:`final_polish`)
        self.grace = 0.0
        self.best_loss = math.inf
        self.best_z: np.ndarray | None = None
        self.best_value = math.nan
        self.history: dict[str, list] = {"nfev": [], "time": [], "best": []}
        self.arch_loss = np.zeros(0)
        self.arch_z = np.zeros((0, self.dim))
        self.arch_v = np.zeros(0)
        #: whether any points were evaluated together (a float32 batch rounds its sums
        #: otherwise than one point alone): the answer's points are then evaluated again
        self.batched = False
        goal = problem.goal
        self.found_tol = 1e-4 * max(1.0, abs(goal.value)) if goal.kind == "reach" else 0.0
        self.stop_when_found = goal.kind in ("reach", "range")

    # ------------------------------------------------------------------ budget
    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def budgeted(self) -> bool:
        """True when a time limit or evaluation budget bounds the search."""
        return self.time_limit is not None or self.max_evals is not None

    @property
    def _share(self) -> float:
        """The part of the budget the search may use (all but the polish's reserve)."""
        return 1.0 - POLISH_SHARE if self.reserving else 1.0

    @property
    def main_time_limit(self) -> float | None:
        return None if self.time_limit is None else self._share * self.time_limit + self.grace

    @property
    def check_reserve(self) -> int:
        """Evaluations an evaluation budget keeps for re-evaluating the answer's points alone
        (:meth:`result`): up to ``keep``, a tenth of the budget at most."""
        if self.max_evals is None or self.alone:
            return 0
        return min(self.keep, self.max_evals // 10)

    @property
    def remaining_evals(self) -> int | None:
        if self.max_evals is None:
            return None
        return max(0, int(self._share * self.max_evals) - self.check_reserve - self.nfev)

    @property
    def over_time(self) -> bool:
        return self.time_limit is not None and self.elapsed >= self.main_time_limit

    @property
    def cannot_polish(self) -> str | None:
        """Why the gradient polish cannot run on this domain (None: it can): it moves the
        features that are not whole numbers, under ``A x <= b`` by SLSQP."""
        if self.integer.size == self.dim:
            return "every feature is a whole number"
        if self.A is not None and self.dim > SLSQP_MAX_DIMS:
            return f"SLSQP under A x <= b takes at most {SLSQP_MAX_DIMS} features"
        return None

    def stop(self, budget: str) -> StopSearch:
        """The stop for a used-up ``budget``: 'polish' while the polish's reserve is kept."""
        self.main_stop = budget
        return StopSearch("polish" if self.reserving else budget)

    def check(self) -> None:
        """Raise :class:`StopSearch` when the time limit or the evaluation budget is used up."""
        if self.over_time:
            raise self.stop("time_limit")
        if self.remaining_evals == 0:
            raise self.stop("max_evals")

    @property
    def found(self) -> bool:
        """A reach/range goal is met by the best point."""
        return self.stop_when_found and self.best_loss <= self.found_tol

    # ------------------------------------------------------------------ mapping
    def to_z(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube points to repaired search points (box, linear constraints, integers)."""
        u = np.clip(np.asarray(u, dtype=np.float64).reshape(-1, self.dim), 0.0, 1.0)
        z = np.clip(self.lo + self.width * u, self.lo, self.hi)
        if self.A is not None and self.linear == "repair":
            zt = torch.as_tensor(z.reshape(-1, *self.shape))
            z = self.box.project(zt).numpy().reshape(-1, self.dim)
        if self.integer.size:
            lo, hi = np.ceil(self.lo[self.integer]), np.floor(self.hi[self.integer])
            z[:, self.integer] = np.clip(np.round(z[:, self.integer]), lo, hi)
        # the points as the model's dtype holds them (those it evaluates), kept in the box
        zt = torch.as_tensor(z.reshape(-1, *self.shape)).to(self.problem.dtype)
        z = to_numpy(self.box.hold(zt)).astype(np.float64).reshape(-1, self.dim)
        return np.clip(z, self.lo_in, self.hi_in)

    def to_u(self, z: np.ndarray) -> np.ndarray:
        w = np.where(self.width > 0, self.width, 1.0)
        return np.clip((np.asarray(z, dtype=np.float64).reshape(-1, self.dim) - self.lo) / w, 0, 1)

    def linear_violation(self, z: np.ndarray) -> np.ndarray:
        if self.A is None:
            return np.zeros(len(z))
        return np.clip(z @ self.A.T - self.b, 0, None).sum(1)

    def _torch(self, z: np.ndarray) -> torch.Tensor:
        p = self.problem
        return torch.as_tensor(z.reshape(-1, *self.shape), dtype=p.dtype, device=p.device)

    def _losses(self, zt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, target value, target-constraint violation) of search points ``zt``."""
        p = self.problem
        v, cv = p.evaluate_all(p.space.to_input(zt))
        viol = p.constraint_violation(cv)
        return p.goal.loss(v) + 10.0 * viol, v, viol

    # ------------------------------------------------------------------ evaluation
    def __call__(self, u: np.ndarray, late: bool = False) -> np.ndarray:
        """Losses of the unit-cube points ``u`` ([S, d] or [d]), one forward pass per chunk.

        ``late=True`` evaluates the points even past the time limit (points that were costly
        to choose, such as a Bayesian round's); the evaluation budget is always kept."""
        if late:
            if self.remaining_evals == 0:
                raise self.stop("max_evals")
        else:
            self.check()
        u = np.asarray(u, dtype=np.float64)
        single = u.ndim == 1
        u = u.reshape(-1, self.dim)
        cut = self.remaining_evals is not None and len(u) > self.remaining_evals
        if cut:
            u = u[: self.remaining_evals]
        z = self.to_z(u)
        losses, values, viols = [], [], []
        late_stop = False
        with torch.no_grad():
            for i in range(0, len(z), self.chunk):
                # a large population (DE in hundreds of dimensions) is several chunks: keep
                # what was evaluated and stop on time
                if i and not late and self.over_time:
                    z, late_stop = z[:i], True
                    break
                loss, v, viol = self._losses(self._torch(z[i : i + self.chunk]))
                losses.append(loss.double().cpu().numpy())
                values.append(v.double().cpu().numpy())
                viols.append(viol.double().cpu().numpy())
        loss = np.concatenate(losses) if losses else np.zeros(0)
        lin = self.linear_violation(z)
        loss = loss + self.penalty * lin
        feasible = (lin <= FEASIBLE_TOL) & (np.concatenate(viols) <= CONSTRAINT_TOL)
        self._record(z, loss, np.concatenate(values), feasible)
        if cut:
            raise self.stop("max_evals")
        if late_stop:
            raise self.stop("time_limit")
        if self.found:
            raise StopSearch("found")
        out = np.nan_to_num(loss, nan=1e30, posinf=1e30, neginf=-1e30)
        return out[0] if single else out

    def value_and_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and its gradient in ``u`` at one point, by the model's autograd.

        The gradient is taken at the repaired point (straight through the rounding and the
        projection), so it is exact wherever no repair was needed.
        """
        self.check()
        u = np.asarray(u, dtype=np.float64).reshape(1, self.dim)
        z = self.to_z(u)
        zt = self._torch(z).requires_grad_(True)
        loss, v, viol = self._losses(zt)
        g = None
        if loss.requires_grad:
            with model_backward():
                (g,) = torch.autograd.grad(loss.sum(), zt, allow_unused=True)
        if g is None:
            raise no_gradient(f"solver {self.name!r}")
        lin = self.linear_violation(z)
        total = loss.detach().double().cpu().numpy() + self.penalty * lin
        feasible = (lin <= FEASIBLE_TOL) & (viol.detach().double().cpu().numpy() <= CONSTRAINT_TOL)
        self._record(z, total, v.detach().double().cpu().numpy(), feasible)
        grad = np.nan_to_num(g.double().cpu().numpy().reshape(-1)) * self.width
        if self.A is not None:
            active = (z @ self.A.T - self.b)[0] > 0
            grad = grad + self.penalty * (self.A[active].sum(0) * self.width)
        if self.found:
            raise StopSearch("found")
        f = float(total[0])
        return (f, grad) if math.isfinite(f) else (1e30, np.zeros_like(grad))

    def differentiable(self) -> bool:
        """Whether the loss has a gradient (one evaluation, at the box's centre). A gradient
        of zero there is one: a ReLU unit off at a few points may be on near the best one (a
        probe of four points left 12 of 16 hidden units of an MLP without their polish)."""
        try:
            self.value_and_grad(np.full(self.dim, 0.5))
        except NoGradient:
            return False
        return True

    def polished(self) -> str | None:
        """The end of a search with no convergence test of its own that ran its full count:
        None ('converged') when a polish from its best point converged (a local optimum),
        else 'step_limit' (nothing tested the point)."""
        return None if self.polish_converged else "step_limit"

    def final_polish(self) -> str:
        """Polish the best point with the reserve kept for it. The run's status is the budget
        that stopped the search (more of it may find more), however much the polish used."""
        self.reserving = False
        self.polish_note = f"the search used its 90% of the {self.main_stop.replace('_', ' ')}"
        if self.time_limit is not None:
            # a search that overran its share (a generation across it, a pause of the process)
            # still leaves the polish its share of the limit, up to 0.5 s: it had none, and a
            # swarm ended 0.03 s past 3 s with the bowl's peak unpolished
            share = min(POLISH_SHARE * self.time_limit, 0.5)
            self.grace = max(0.0, self.elapsed + share - self.time_limit)
        try:
            if self.best_z is not None:
                self.polish(self.to_u(self.best_z))
        except StopSearch as stop:
            return stop.reason
        return self.main_stop

    def polish(self, u0: np.ndarray, maxiter: int = 200) -> None:
        """L-BFGS-B from ``u0`` with the model's gradients, or SLSQP under ``A x <= b``; whole-
        number features keep ``u0``'s values. A domain it cannot take
        (:attr:`cannot_polish`) or a model without gradients is noted in the result and left
        unpolished. Sets :attr:`polish_converged`."""
        self.polish_converged = False
        if self.cannot_polish:
            self.polish_note = f"skipped: {self.cannot_polish}"
            return
        from scipy.optimize import LinearConstraint, minimize

        u0 = np.clip(np.asarray(u0, dtype=np.float64).reshape(-1), 0, 1)
        bounds = [(0.0, 1.0)] * self.dim
        for i in self.integer:
            bounds[i] = (u0[i], u0[i])
        how: dict[str, Any] = {"method": "L-BFGS-B"}
        if self.A is not None:  # A (lo + width u) <= b in the unit cube searched
            rows = LinearConstraint(self.A * self.width, -np.inf, self.b - self.A @ self.lo)
            how = {"method": "SLSQP", "constraints": [rows]}
        before = self.nfev
        try:
            res = minimize(
                self.value_and_grad,
                u0,
                jac=True,
                bounds=bounds,
                options={"maxiter": maxiter},
                **how,
            )
            self.polish_converged = res.nit < maxiter
        except NoGradient:
            self.polish_note = "skipped: the target has no gradient"
        finally:
            self.polish_nfev += self.nfev - before

    # ------------------------------------------------------------------ memory
    def _record(self, z: np.ndarray, loss: np.ndarray, v: np.ndarray, ok: np.ndarray) -> None:
        n = len(z)
        self.nfev += n
        self.batched |= n > 1
        self.nonfinite += int((~np.isfinite(v)).sum())
        ok = ok & np.isfinite(loss)
        if ok.any():
            i = int(np.argmin(np.where(ok, loss, np.inf)))
            if loss[i] < self.best_loss:
                self.best_loss, self.best_z, self.best_value = float(loss[i]), z[i].copy(), v[i]
                self.history["nfev"].append(self.nfev)
                self.history["time"].append(self.elapsed)
                self.history["best"].append(float(v[i]))
            self._archive(z[ok], loss[ok], v[ok])
        if self.bar is not None:
            self.bar.update(n, best=float(self.best_value))

    def _archive(self, z: np.ndarray, loss: np.ndarray, v: np.ndarray) -> None:
        """Keep the ``keep`` best points that differ by more than DISTINCT_TOL of the box width
        (in the searched codes; :func:`distinct` then compares the inputs they give): a new
        point replaces a worse kept point it is that close to, else it takes the worst slot."""
        if len(self.arch_loss) >= self.keep:
            sel = loss < self.arch_loss[-1]
            z, loss, v = z[sel], loss[sel], v[sel]
        w = np.where(self.width > 0, self.width, 1.0)
        for i in np.argsort(loss, kind="stable")[: self.keep]:
            near = np.abs(self.arch_z - z[i]) <= DISTINCT_TOL * w
            close = np.flatnonzero(near.all(1)) if len(self.arch_z) else np.zeros(0, int)
            if close.size:
                j = int(close[0])
                if loss[i] >= self.arch_loss[j]:
                    continue
                self.arch_z[j], self.arch_loss[j], self.arch_v[j] = z[i], loss[i], v[i]
            elif len(self.arch_loss) < self.keep:
                self.arch_z = np.concatenate([self.arch_z, z[i][None]])
                self.arch_loss = np.append(self.arch_loss, loss[i])
                self.arch_v = np.append(self.arch_v, v[i])
            elif loss[i] < self.arch_loss[-1]:
                self.arch_z[-1], self.arch_loss[-1], self.arch_v[-1] = z[i], loss[i], v[i]
            else:
                continue
            order = np.argsort(self.arch_loss, kind="stable")
            self.arch_z, self.arch_loss, self.arch_v = (
                self.arch_z[order],
                self.arch_loss[order],
                self.arch_v[order],
            )

    # ------------------------------------------------------------------ answer
    def result(self, status: str, info: dict[str, Any] | None = None) -> Result:
        """The Result of everything evaluated so far."""
        p = self.problem
        goal = p.goal
        info = {**(info or {}), "dims": self.dim}
        if self.polish_nfev:
            info["polish_evals"] = self.polish_nfev
        if self.polish_note:
            info["polish"] = self.polish_note
        timings = {"total": self.elapsed}
        zs = self.arch_z if len(self.arch_z) else self.best_z
        room = None if self.max_evals is None else max(0, self.max_evals - self.nfev)
        if zs is not None and not self.batched:  # each point was evaluated alone
            zs = zs.reshape(-1, self.dim)
            vals = self.arch_v if len(self.arch_v) else np.array([self.best_value])
            loss = goal.loss(torch.as_tensor(vals)).numpy()
        elif zs is not None and room == 0:  # no evaluation left: the best, as the search saw it
            zs, vals = self.best_z[None], np.array([self.best_value])
            loss = goal.loss(torch.as_tensor(vals)).numpy()
        elif zs is not None:
            # the answer's values as a user re-evaluates each point, alone (a float32 batch
            # rounds otherwise), the best the budget's reserve allows: a point that then
            # breaks a target constraint is left out
            zs = zs.reshape(-1, self.dim)[:room]
            with torch.no_grad():
                v, cv = p.evaluate_each(p.space.to_input(self._torch(zs)))
            self.nfev += len(zs)
            vals = v.double().cpu().numpy()
            loss = goal.loss(v.double()).cpu().numpy()
            keep = p.keeps_constraints(cv.double()).cpu().numpy() & np.isfinite(loss)
            order = np.argsort(np.where(keep, loss, np.inf), kind="stable")[: int(keep.sum())]
            zs, vals, loss = (zs[order], vals[order], loss[order]) if len(order) else (None,) * 3
        if zs is None:
            # a search that ended with no point in the domain is not_found, whatever ended it
            # (the message says what); a Ctrl-C stays interrupted
            stop = status.replace("_", " ")
            if self.nfev == 0:
                why = f"no point was evaluated ({stop})"
                if status != "interrupted":
                    status = "not_found"
            else:
                why = f"none of {self.nfev} evaluated points lay inside the domain and constraints"
                if status != "converged":
                    why += f" (the search stopped: {stop})"
                status = "not_found"
            return Result(
                x=None,
                value=None,
                status=status,
                message=f"{self.name}: {why}",
                nfev=self.nfev,
                solver=self.name,
                history=self.history,
                timings=timings,
                info=info,
            )
        found = self.stop_when_found and bool(loss[0] <= self.found_tol)
        if goal.kind in ("reach", "range"):
            if found:
                status = "found"
            elif status in ("converged", "found"):
                status = "not_found"
        if goal.kind == "range" and found:
            zs, vals = zs[loss <= 0], vals[loss <= 0]
        with torch.no_grad():
            xs = to_numpy(p.space.to_input(self._torch(zs)))
        one = distinct(p, xs)  # the archive's kept points may have moved next to each other
        zs, vals, xs = zs[one], vals[one], xs[one]
        value = float(vals[0])
        if goal.kind == "reach":
            diff = abs(value - goal.value)
            msg = f"closest value {value:.6g} to {goal.value:g} (|diff| {diff:.3g})"
        elif goal.kind == "range":
            msg = (
                f"{len(zs)} distinct points inside [{goal.low:g}, {goal.high:g}]"
                if found
                else f"no point reached [{goal.low:g}, {goal.high:g}]; closest value {value:.6g}"
            )
        else:
            msg = f"best {value:.6g}; {len(zs)} distinct good points kept"
        msg = f"{self.name}: {msg} after {self.nfev} evaluations in {self.elapsed:.2f} s"
        if info.get("single_point"):
            msg += f" ({Box.SINGLE_POINT})"
        if self.nonfinite:
            info["nonfinite"] = self.nonfinite
            msg += (
                f"; {self.nonfinite} of them gave a target that is not finite (NaN or infinite), "
                "left out"
            )
        if status in ("time_limit", "max_evals", "interrupted", "step_limit"):
            msg = f"stopped ({status}); {msg}"
        arrays = {} if isinstance(p.space, Direct) else {"z": zs.reshape(-1, *self.shape)}
        return Result(
            x=xs[0],
            value=value,
            status=status,
            message=msg,
            xs=xs,
            values=vals,
            nfev=self.nfev,
            solver=self.name,
            history=self.history,
            timings=timings,
            info=info,
            arrays=arrays,
        )


def run(
    problem: Problem,
    name: str,
    search: Callable[[Objective, dict[str, Any]], str | None],
    *,
    time_limit: float | None,
    max_evals: int | None,
    progress: bool,
    **objective: Any,
) -> Result:
    """Run ``search(objective, info)`` inside a session; stop cleanly on budget, goal or Ctrl-C.

    ``search`` returns None when the library finished on its own ('converged') and may fill
    ``info`` with what the Result should record (restarts, population sizes, ...). The clock
    starts here: solvers import their library with their module (a first import of nevergrad
    takes 1-2 s), not inside ``search``, where it would count against the time limit.
    """
    info: dict[str, Any] = {}
    if objective.get("polish"):
        # L-BFGS-B's module (a first import: 0.3-0.8 s), before the clock as the libraries are
        importlib.import_module("scipy.optimize")
    with (
        progress_bar(progress, max_evals, name) as bar,
        problem.session(),
        global_rngs_kept(),
    ):
        obj = Objective(
            problem, name, time_limit=time_limit, max_evals=max_evals, bar=bar, **objective
        )
        probed = 0  # evaluations before the search (the gradient probe)
        try:
            if problem.space.box.single_point:  # the one point is the answer
                info["single_point"] = True
                obj(np.zeros((1, obj.dim)))
                return obj.result("converged", info)
            if obj.polish_wanted and obj.cannot_polish:
                obj.polish_note = f"skipped: {obj.cannot_polish}"
            if obj.polish_wanted and obj.budgeted and not obj.cannot_polish:
                obj.reserving = obj.differentiable()
                probed = obj.nfev
                if not obj.reserving:
                    obj.polish_note = "no budget kept for it: the target has no gradient"
            status = search(obj, info) or "converged"
            obj.check()  # a library that stopped exactly at the budget
        except StopSearch as stop:
            status = stop.reason
        except KeyboardInterrupt:
            status = "interrupted"
        except InversetError:
            raise
        except (ValueError, TypeError, AssertionError, ArithmeticError, RuntimeError) as exc:
            if obj.nfev > probed:  # raised after evaluating points: not about the options
                raise
            raise InversetError(
                f"{name} rejected its options before evaluating anything ({first_line(exc)}); "
                "check the values given with --option / as keyword arguments"
            ) from None
        if status == "polish":  # the search used its share: the polish gets the rest
            try:
                status = obj.final_polish()
            except KeyboardInterrupt:
                status = "interrupted"
        return _span(obj.result(status, info))


def _span(result: Result) -> Result:
    """The history records improvements only: one more record at the end of the run, so that
    it (and the convergence plot) spans every evaluation the solve made."""
    h = result.history
    if result.value is not None and h.get("nfev") and h["nfev"][-1] < result.nfev:
        h["nfev"].append(result.nfev)
        h["time"].append(result.timings.get("total", h["time"][-1]))
        h["best"].append(result.value)
    return result


def restart_seeds(seed: int) -> Any:
    """Independent integer seeds for successive restarts of one solve."""
    ss = np.random.SeedSequence(int(seed))
    while True:
        (child,) = ss.spawn(1)
        yield int(child.generate_state(1)[0] % (2**31 - 2)) + 1
