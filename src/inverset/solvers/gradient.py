"""Gradient search: batched multi-start projected Adam, optional L-BFGS-B (or SLSQP) polish.

All starts move through the model as one batch. After each Adam step the points are
projected back onto the domain (box, then linear constraints by alternating projections).
Integer features are rounded at the end and improved by a batched +-1 neighbour search,
alternating with a polish of the continuous features at the rounded integers.
Returns the best point and the distinct local optima found, with their values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch

# torch.optim's first optimizer imports torch._dynamo (1-2 s): import it with this module,
# when the solver is chosen, so that it is not charged to the first search's time limit
import torch._dynamo

from inverset.domain import sparse_points, unit_widths
from inverset.errors import InversetError, model_backward, no_gradient
from inverset.model import WARM_STEPS, LeakyReLUs, leaky_slopes, to_numpy
from inverset.problem import Problem
from inverset.progress import progress_bar
from inverset.result import Result
from inverset.solvers._common import SLSQP_MAX_DIMS, distinct
from inverset.space import Direct


class Scaled:
    """Maps unit coordinates ``u`` to the search variable ``z = lo + s * u`` of a box."""

    def __init__(self, problem: Problem):
        box = problem.space.box
        lo, hi = box.tensors(problem.device, problem.dtype)
        finite = torch.isfinite(lo) & torch.isfinite(hi)
        self.lo = torch.where(finite, lo, torch.zeros_like(lo))
        self.s = torch.where(finite, unit_widths(lo, hi), torch.ones_like(lo))
        self.box = box

    def z(self, u: torch.Tensor) -> torch.Tensor:
        return self.lo + self.s * u

    def u(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.lo) / self.s


def _stop_reason(deadline: float, used: int, max_evals: int | None, reserve: int):
    """'time_limit' (past ``deadline``, a ``time.perf_counter()`` value), 'max_evals' (when
    ``reserve`` more evaluations after the ``used`` ones would exceed the budget) or None."""
    if time.perf_counter() >= deadline:
        return "time_limit"
    if max_evals is not None and used + reserve > max_evals:
        return "max_evals"
    return None


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    starts: int = 32,
    steps: int = 300,
    lr: float = 0.05,
    polish: bool = True,
    patience: int = 40,
    penalty: float = 10.0,
) -> Result:
    """Minimize the goal's loss from ``starts`` random points at once.

    ``lr`` is relative to the box width per feature. ``polish`` runs scipy's L-BFGS-B on the
    best points (SLSQP under linear constraints ``A x <= b``; not for range goals) and, on
    integer features, on their continuous features after rounding (every goal).
    ``patience`` stops early when no start improved its loss in that many steps.
    Starts whose gradient is exactly zero (a flat region: every unit the target reads is off)
    are moved (:func:`_move_flat_starts`) and, when the model calls ReLUs, take
    their first steps (WARM_STEPS) through leaky ReLUs, each start with its own slope from
    LEAKY_SLOPE down to LEAKY_SLOPE_LOW; their values count from the first step on the model
    itself.

    ``max_evals`` counts this solve's evaluations (a problem may arrive with some made: auto's
    probes). The status is ``step_limit`` when an iteration cap (``steps`` with no polish, the
    polish's or the integer search's own) ended the last stage before its convergence test
    (Adam's ``patience``, L-BFGS-B's tolerances, no better integer neighbour). ``history``
    has one entry per Adam step and one for the polish or integer search (``stage``); on
    integer features Adam's values, of non-integer points, are ``relaxed``, not ``best``.
    """
    if starts < 1:
        raise InversetError(f"starts must be at least 1, got {starts}")
    if steps < 0:
        raise InversetError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise InversetError(f"lr must be > 0, got {lr}")
    nfev0 = problem.nfev
    if max_evals is not None:  # room for one step and the final evaluation of every start
        starts = max(1, min(starts, max_evals // 2))
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    gen = torch.Generator().manual_seed(int(seed))
    box = problem.space.box
    single = box.single_point  # the one point is the answer: one start, no step, no polish
    if single:
        starts, steps, polish = 1, 0, False
    sc = Scaled(problem)
    goal = problem.goal
    history: dict[str, list] = {"step": [], "best": [], "time": [], "nfev": [], "stage": []}
    # a range goal aims a little inside [z1, z2] so that float noise keeps points inside
    if goal.kind == "range":
        from inverset.goal import Goal

        width = goal.high - goal.low
        ends = [abs(v) for v in (goal.low, goal.high) if math.isfinite(v)]
        # one-sided ranges: a relative margin from the finite end (none for (-inf, inf))
        inset = 1e-3 * width if math.isfinite(width) else 1e-6 * max([1.0, *ends]) * len(ends)
        aim = Goal.range(goal.low + inset, goal.high - inset)
    else:
        aim = goal

    def loss_of(v: torch.Tensor, cv: torch.Tensor) -> torch.Tensor:
        return aim.loss(v) + penalty * problem.constraint_violation(cv)

    def losses(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, cv = problem.evaluate_all(problem.space.to_input(z))
        return loss_of(v, cv), v

    def used() -> int:
        return problem.nfev - nfev0

    def left() -> int | None:
        """Evaluations of the budget left after the final one (no budget: None)."""
        return None if max_evals is None else max_evals - used() - starts

    def escalate() -> bool:
        """Every ``patience`` steps: when the best start breaks a target constraint by more
        than ``RISE_AT`` of the constraints' scale (not Adam's jitter at the boundary), the
        penalty is too weak for the target's scale (the penalized optimum lies outside): raise
        it tenfold, up to ``PENALTY_RISE`` times its start and within the model's dtype
        (float16 overflowed), and recompute the best losses under it."""
        nonlocal penalty, best_loss
        best = int(torch.argmin(best_loss))
        if not problem.constraints or 10 * penalty > top_penalty:
            return False
        if not math.isfinite(best_loss[best]):
            return False
        violation = float(problem.constraint_violation(best_cv[best : best + 1])[0])
        if violation <= RISE_AT * (1 + constraint_scale):
            return False
        penalty *= 10
        counted = torch.isfinite(best_loss)
        best_loss = torch.where(counted, loss_of(best_v, best_cv).detach(), best_loss)
        return True

    top_penalty = min(penalty * PENALTY_RISE, torch.finfo(problem.dtype).max / 1e3)
    ends = [abs(e) for _, lo, hi in problem.constraints for e in (lo, hi) if math.isfinite(e)]
    constraint_scale = max(ends, default=0.0)
    deadline = math.inf if time_limit is None else t0 + time_limit

    status = "converged"
    capped = False  # Adam ran all its steps: its convergence test (patience) never passed
    with problem.session():
        z = box.sample(starts, gen, device=problem.device, dtype=problem.dtype)
        if isinstance(problem.space, Direct):
            z = _sparse_starts(z, sc, gen)
        u = sc.u(z).detach().requires_grad_(True)
        opt = torch.optim.Adam([u], lr=lr)
        best_loss = torch.full((starts,), math.inf, device=problem.device, dtype=problem.dtype)
        best_u = u.detach().clone()
        stale = 0
        blew_up: int | None = None  # the step at which every start left the finite region
        nonfinite = 0  # start-steps whose target was NaN or infinite (not taken as a best)
        moved = False  # whether any start's target value ever left its first value
        grad_scale, safe_grad = 1.0, math.sqrt(torch.finfo(problem.dtype).max) / 16
        # starts on a flat region (every unit the target reads is off): their first steps
        # follow a network with leaky ReLUs, which has a gradient there
        warm: torch.Tensor | None = None
        warm_end = -1
        slopes = leaky_slopes(starts)
        t_adam = time.perf_counter()
        try:
            with progress_bar(progress, steps + 1, "gradient search") as bar:
                for step in range(steps + 1):
                    for g in opt.param_groups:
                        g["lr"] = lr * (
                            0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
                        )
                    opt.zero_grad()
                    warming = warm is not None and step <= warm_end
                    x = problem.space.to_input(sc.z(u))
                    if step == 0 or warming:
                        relus = LeakyReLUs(warm if warming else None, slopes)
                        with relus:
                            v, cv = problem.evaluate_all(x)
                    else:
                        v, cv = problem.evaluate_all(x)
                    loss = loss_of(v, cv)
                    finite = torch.isfinite(loss)
                    nonfinite += int((~finite).sum())
                    if not finite.any() and not bool(torch.isfinite(best_loss).any()):
                        raise InversetError(
                            f"the target {problem.target} became non-finite at every start; "
                            "check the model's input scaling or narrow the box"
                        )
                    if not finite.any():  # the finite points found so far are the answer
                        blew_up = step
                        break
                    ld = torch.where(finite, loss.detach(), torch.full_like(loss, math.inf))
                    if warming:  # the stand-in network's values are not the target's
                        ld = torch.where(warm, torch.full_like(ld, math.inf), ld)
                    # a step counts when it gains 1e-9 of the target's scale (not the loss's:
                    # a far reach goal, 1e12, has losses near 1e12 whatever the point)
                    scale = v.detach().abs().double().nan_to_num(posinf=0, neginf=0)
                    improved = ld < best_loss - 1e-9 * (1 + scale)
                    best_u[improved] = u.detach()[improved]
                    if step == 0:
                        first_v = v.detach().clone()
                    elif not moved:  # the model's own values, not a warming start's stand-ins
                        changed = v.detach() != first_v
                        moved = bool((changed & ~warm if warming else changed).any())
                    if step == 0:  # the values at best_u: the answer when no budget is left
                        best_v, best_cv = v.detach().clone(), cv.detach().clone()
                    else:
                        best_v[improved], best_cv[improved] = (
                            v.detach()[improved],
                            cv.detach()[improved],
                        )
                    best_loss = torch.minimum(best_loss, ld)
                    # no start to converge while every one follows the stand-in network
                    held = warming and bool(warm.all())
                    stale = 0 if held or bool(improved.any()) else stale + 1
                    ib = int(torch.argmin(best_loss))
                    history["step"].append(step)
                    history["best"].append(
                        float(v.detach()[ib])
                        if improved[ib]
                        else (history["best"][-1] if history["best"] else float("nan"))
                    )
                    history["time"].append(time.perf_counter() - t0)
                    history["nfev"].append(used())
                    history["stage"].append("adam")
                    bar.update(1, best=history["best"][-1])
                    # the next step and the final evaluation each cost one pass over the starts
                    reason = _stop_reason(deadline, used(), max_evals, 2 * starts)
                    if reason:
                        status = reason
                        break
                    if step % patience == patience - 1 and escalate():
                        stale = 0
                    if stale >= patience and warming:  # the others have converged
                        warm_end, stale = step, 0
                    elif stale >= patience:
                        break
                    if step == steps:
                        capped = True
                        break
                    if goal.kind == "range" and bool((best_loss <= 0).all()):
                        break
                    if goal.kind == "reach" and float(best_loss.min()) <= 1e-7 * (
                        1 + abs(goal.value)
                    ):
                        break
                    if not loss.requires_grad:
                        raise no_gradient("the gradient search")
                    with model_backward():
                        torch.where(finite, loss, torch.zeros_like(loss)).sum().backward()
                    u.grad = torch.nan_to_num(u.grad)
                    # Adam squares the gradient: a target near 1e30 overflowed it (float32) and
                    # no start moved; one constant factor leaves Adam's steps as they were
                    top_grad = float(u.grad.abs().max())
                    if top_grad * grad_scale > safe_grad:
                        grad_scale = 1.0 / top_grad
                    if grad_scale != 1.0:
                        u.grad.mul_(grad_scale)
                    if step == 0:
                        flat = _move_flat_starts(u, gen, isinstance(problem.space, Direct))
                        if bool(flat.any()) and relus.calls:
                            warm, warm_end = flat, min(WARM_STEPS, steps // 3)
                    opt.step()
                    with torch.no_grad():
                        u.copy_(sc.u(box.project(sc.z(u))))
        except KeyboardInterrupt:
            status = "interrupted"
        timings["adam"] = time.perf_counter() - t_adam
        zs = box.project(sc.z(best_u)).detach()
        top = min(starts, 8)
        # polishing evaluates every start, then ``calls`` times the best, then those again
        calls = None if max_evals is None else (left() - starts - top) // top
        plain = status == "converged" and goal.kind != "range" and blew_up is None
        # the last stage's end decides a status the Adam loop left at 'converged'
        end, final_stage = "step_limit" if capped else "converged", None
        if polish and plain and (calls is None or calls >= 3):
            tp = time.perf_counter()
            final_stage = "polish"
            try:
                zs, end = _polish(problem, losses, zs, sc, top, calls, deadline)
            except KeyboardInterrupt:  # outside L-BFGS-B's loop: Adam's points stand
                end = "interrupted"
            timings["polish"] = time.perf_counter() - tp
        if end == "interrupted":
            status = "interrupted"
        # no room in the budget to evaluate the final points again: keep Adam's own values
        short = max_evals is not None and left() < 0
        if box.integer and not short and not single:
            # after a Ctrl-C the points are only rounded to whole numbers, not searched
            rounds = 0 if status == "interrupted" else 25
            tp = time.perf_counter()
            before = end  # how the continuous features' search ended
            zs, end = _integer_search(problem, losses, zs, box, rounds, left(), deadline)
            continuous = len(box.integer) < zs[0].numel()
            if polish and end == "converged" and continuous:
                zs, end = _mixed_search(problem, losses, zs, sc, top, rounds, left, deadline)
            elif end == "converged" and continuous and before == "step_limit":
                end = before  # the whole-number neighbours converged, the other features not
            timings["integer"] = time.perf_counter() - tp
            final_stage = "integer"
        if status == "converged" or end == "interrupted":
            status = end
        if status in ("converged", "step_limit") and time.perf_counter() > deadline:
            status = "time_limit"  # the polish or the integer search was cut short
        with torch.no_grad():
            x = problem.space.to_input(zs)
            # each point alone, as a user re-evaluates it (a float32 batch rounds otherwise),
            # the most promising first; past the deadline (or after a Ctrl-C) the rest are
            # left out
            order = torch.argsort(best_loss.nan_to_num(math.inf), stable=True)
            alone = torch.ones(starts, dtype=torch.bool, device=x.device)
            try:
                if short:
                    values, cv = best_v, best_cv
                else:
                    # a search the limit stopped still checks its points for a tenth of the
                    # limit, from 0.1 to 0.5 s
                    grace = min(0.5, max(0.1, 0.1 * time_limit)) if time_limit else 0.0
                    until = max(deadline, time.perf_counter() + grace)
                    values, cv, alone = problem.evaluate_each_until(x, until, order)
            except KeyboardInterrupt:  # the answer's values, then stop
                status = "interrupted"
                values, cv, alone = problem.evaluate_each_until(x, -math.inf, order)
            final_loss = loss_of(values, cv)
            ok = box.contains(zs) & torch.isfinite(final_loss) & alone
            if problem.constraints:
                ok &= problem.keeps_constraints(cv)
            if goal.kind in ("range", "reach"):
                final_loss = goal.loss(values)
    unchecked = starts - int(alone.sum())
    if unchecked and status in ("converged", "step_limit"):  # the search itself ended in time
        status = "time_limit"
    r = _result(problem, zs, x, values, final_loss, ok, status, history, timings, t0, starts)
    if unchecked:
        r.info["not_evaluated_alone"] = unchecked
        why = "interrupted" if status == "interrupted" else "no time left"
        r.message += f"; {unchecked} of {starts} starts left out, not evaluated alone ({why})"
    if short and box.integer and r.x is None:  # the budget, not the domain, left no point
        r.status = "max_evals"
        r.message = (
            f"max_evals={max_evals} left no evaluation for rounding the integer features to "
            "whole numbers; give a larger budget"
        )
    if single:
        if r.status in ("step_limit", "max_evals", "time_limit"):
            # no budget stopped anything: there is nothing more to search
            r.message = r.message.removeprefix(f"stopped ({r.status}); ")
            missed = goal.kind == "range" and not bool(
                goal.satisfied(torch.tensor([r.value], dtype=torch.float64))
            )
            r.status = "not_found" if r.x is None or missed else "converged"
        r.message += f" ({box.SINGLE_POINT})"
    if not moved and len(history["step"]) > 1 and r.status != "interrupted":
        r.info["flat"] = True
        r.message += (
            "; the target never moved from its first value at any start (zero gradient "
            "everywhere the search went: a unit that stays off, or a constant output); more "
            "starts may turn it on, and the exact solver proves whether any input does"
        )
    if nonfinite:
        r.info["nonfinite"] = nonfinite
        r.message += (
            f"; {nonfinite} start-steps gave a target that is not finite (NaN or infinite), "
            "left out"
        )
    if blew_up is not None:
        r.message += (
            f"; at step {blew_up} every start stepped where the target is not finite: the best "
            "finite points before it are returned, not polished (narrow the box to where the "
            "model is defined)"
        )
    r.nfev = used()  # this solve's evaluations, not the problem's running total
    _close_history(history, bool(box.integer), final_stage, r.value, r.timings["total"], r.nfev)
    return r


def _close_history(
    history: dict[str, list],
    integer: bool,
    stage: str | None,
    value: float | None,
    t: float,
    nfev: int,
) -> None:
    """End ``history['best']`` at the returned ``value``: an entry for the polish or integer
    search ``stage`` (or for a final evaluation that differs from Adam's last best). On integer
    features Adam's values, of the continuous relaxation, move to ``relaxed``."""
    if integer:
        history["relaxed"] = history["best"]
        history["best"] = [math.nan] * len(history["relaxed"])
    if value is None or (stage is None and history["best"][-1:] == [value]):
        return
    history["step"].append(history["step"][-1] + 1 if history["step"] else 0)
    history["best"].append(value)
    history["time"].append(t)
    history["nfev"].append(nfev)
    history["stage"].append(stage or "final")
    if integer:
        history["relaxed"].append(math.nan)


#: how far the target-constraint penalty may rise (tenfold at a time) while the best start
#: breaks a constraint: a target that changes 100 units per unit of a constrained output (the
#: diabetes surrogate) needs 100, not the default 10
PENALTY_RISE = 1e6
#: a violation (relative to the constraints' scale) below which the penalty does not rise:
#: Adam's steps jitter across an active constraint by 1e-6 to 5e-5
RISE_AT = 1e-3


#: inputs from which a quarter of the starts are sparse corner points (image-like domains)
SPARSE_STARTS_DIMS = 100


def _sparse_starts(z: torch.Tensor, sc: Scaled, gen: torch.Generator) -> torch.Tensor:
    """In a bounded box of many inputs, every fourth start becomes a sparse corner point:
    ReLU image classifiers (the MNIST-FC nets) respond most near such points, and uniform
    random images can switch them off almost entirely."""
    box = sc.box
    if z[0].numel() < SPARSE_STARTS_DIMS or not box.bounded or len(z) < 4:
        return z  # (callers pass input-space searches only: a latent code is no image)
    idx = torch.arange(3, len(z), 4)
    sparse = sparse_points((len(idx), *z.shape[1:]), gen).to(z)
    z = z.clone()
    z[idx] = box.project(sc.z(sparse))
    return z


def _move_flat_starts(
    u: torch.Tensor, gen: torch.Generator, image_like: bool = True
) -> torch.Tensor:
    """Starts whose gradient is exactly zero sit on a flat region (random images on the
    MNIST-FC nets switch off every ReLU of a layer) where Adam cannot move: put them on the
    box's lower and upper corners, its centre, then in turn (unit coordinates) on random
    points near the lower corner, sparse points (:func:`~inverset.domain.sparse_points`;
    ``image_like``, i.e. input space, else more near-corner points), and the mirror images of
    both near the upper corner: where such nets respond."""
    flat = (u.grad.reshape(len(u), -1) == 0).all(1)
    k = int(flat.sum())
    if k == 0:
        return flat
    ones, shape = (1,) * (u.dim() - 1), (k, *u.shape[1:])
    scale = 0.5 * torch.rand((k, *ones), generator=gen, dtype=torch.float64)
    near = scale * torch.rand(shape, generator=gen, dtype=torch.float64)
    kind = torch.arange(k).reshape(-1, *ones) % 4
    sparse = sparse_points(shape, gen) if image_like else near
    new = torch.where(kind % 2 == 0, near, sparse)
    new = torch.where(kind >= 2, 1 - new, new)
    for i, corner in enumerate((0.0, 1.0, 0.5)[:k]):
        new[i] = corner
    with torch.no_grad():
        u[flat] = new.to(u)
    return flat


class _Halt(Exception):
    """The polish's budget or deadline is used up (raised from inside scipy's loop); its
    argument is the status that names which: 'max_evals' or 'time_limit'."""


def _polish(
    problem,
    losses,
    zs,
    sc,
    top: int,
    calls: int | None = None,
    deadline: float = math.inf,
    fixed: Sequence[int] = (),
) -> tuple[torch.Tensor, str]:
    """L-BFGS-B from the ``top`` best points at once (their losses are summed; separable), or
    under linear constraints ``A x <= b`` SLSQP from each in turn (projected Adam stalls on
    their faces); at most ``calls`` loss evaluations per point (default: the method's own
    iteration limit) and not past ``deadline`` (``time.perf_counter()``). The features
    ``fixed`` (flat indices: the integer ones, after rounding) keep each point's values. A
    point is only replaced by a better one inside the domain. Returns the points and how the
    polish ended: 'converged' (the method's own test), 'step_limit' (its iteration cap),
    'max_evals' (``calls``), 'time_limit' or 'interrupted' (a Ctrl-C: the best points so far,
    re-evaluated)."""
    from scipy.optimize import LinearConstraint, minimize

    box = problem.space.box
    with torch.no_grad():
        loss0, _ = losses(zs)
    order = torch.argsort(loss0)[:top]
    z0 = zs[order]
    if box.A is not None and z0[0].numel() > SLSQP_MAX_DIMS:
        return zs, "converged"  # no polish: Adam's end stands
    # per point bounds: the box's, and each point's own value on the fixed features
    flat0 = z0.detach().double().cpu().numpy().reshape(len(z0), -1)
    lo = np.broadcast_to(box.lower, z0.shape[1:]).reshape(1, -1).repeat(len(z0), 0)
    hi = np.broadcast_to(box.upper, z0.shape[1:]).reshape(1, -1).repeat(len(z0), 0)
    fixed = list(fixed)
    lo[:, fixed] = hi[:, fixed] = flat0[:, fixed]

    ends: list[str] = []
    maxiter = 200

    def descend(start_z: torch.Tensor, rows: slice) -> torch.Tensor:
        shape = start_z.shape
        bounds = [
            (None if not np.isfinite(a) else a, None if not np.isfinite(b) else b)
            for a, b in zip(lo[rows].reshape(-1), hi[rows].reshape(-1), strict=True)
        ]
        start = start_z.detach().double().cpu().numpy().reshape(-1)
        seen = {"n": 0, "f": math.inf, "x": start}

        def fg(flat: np.ndarray):
            if time.perf_counter() > deadline:
                raise _Halt("time_limit")
            if calls is not None and seen["n"] >= calls - 1:
                raise _Halt("max_evals")
            seen["n"] += 1
            # a copy: scipy hands a read-only array when every bound is fixed (lo == hi)
            zz = torch.as_tensor(flat.copy(), dtype=z0.dtype, device=z0.device).reshape(shape)
            zz.requires_grad_(True)
            loss, _ = losses(zz)
            total = loss.sum()
            if not torch.isfinite(total):
                return float("inf"), np.zeros_like(flat)
            with model_backward():
                total.backward()
            f = float(total.detach())
            if f < seen["f"]:
                seen["f"], seen["x"] = f, flat.copy()
            return f, zz.grad.double().cpu().numpy().reshape(-1)

        def on_time(*_):  # between iterations too, not only when the model is evaluated
            if time.perf_counter() > deadline:
                raise _Halt("time_limit")

        how = {"method": "L-BFGS-B", "callback": on_time}
        if box.A is not None:
            how.update(method="SLSQP", constraints=[LinearConstraint(box.A, -np.inf, box.b)])
        if "interrupted" in ends:  # a Ctrl-C stopped an earlier point's SLSQP: no more
            return start_z
        try:
            res = minimize(fg, start, jac=True, bounds=bounds, options={"maxiter": maxiter}, **how)
        except (_Halt, KeyboardInterrupt) as halt:
            best = seen["x"]
            ends.append(str(halt) if isinstance(halt, _Halt) else "interrupted")
        else:
            best = res.x
            # scipy reports no iterations (no ``nit``) when every bound is fixed (lo == hi)
            ends.append("step_limit" if getattr(res, "nit", 0) >= maxiter else "converged")
        return torch.as_tensor(np.array(best), dtype=z0.dtype, device=z0.device).reshape(shape)

    # separable under a box: all points at once; under A x <= b, SLSQP from each in turn
    rows = [slice(None)] if box.A is None else [slice(i, i + 1) for i in range(len(z0))]
    zp = torch.cat([descend(z0[r], r) for r in rows])
    if fixed:  # the box only: a projection onto A x <= b would move the fixed features too
        t_lo, t_hi = (torch.as_tensor(a, dtype=zp.dtype, device=zp.device) for a in (lo, hi))
        zp = torch.clamp(zp.reshape(len(zp), -1), t_lo, t_hi).reshape(zp.shape)
    else:
        zp = box.project(zp)
    with torch.no_grad():
        lp, _ = losses(zp)
    out = zs.clone()
    better = lp < loss0[order]
    if fixed:
        better &= box.contains(zp)
    out[order[better]] = zp[better]
    if "interrupted" in ends:
        return out, "interrupted"
    return out, next((e for e in ends if e != "converged"), "converged")


def _integer_search(
    problem,
    losses,
    zs,
    box,
    rounds: int = 25,
    budget: int | None = None,
    deadline: float = math.inf,
) -> tuple[torch.Tensor, str]:
    """Round integer features, then move each point to its best +-1 integer neighbour
    (all neighbours of all points in one batch) until none improves ('converged'), ``rounds``
    rounds all moved ('step_limit'), a round would take more than ``budget`` evaluations in
    all ('max_evals'), ``deadline`` has passed ('time_limit') or a Ctrl-C came
    ('interrupted': the points of the last finished move). Returns the points and that end."""
    z = box.project(zs, round_integers=True)
    idx = list(box.integer)
    n, d = z.shape[0], len(idx)
    if budget is not None and budget < n:
        return z, "max_evals"
    lo = torch.as_tensor(box.lower.reshape(-1)[idx], dtype=z.dtype, device=z.device)
    hi = torch.as_tensor(box.upper.reshape(-1)[idx], dtype=z.dtype, device=z.device)
    try:
        with torch.no_grad():
            cur, _ = losses(z)
            used = n
            for _ in range(rounds):
                used += 2 * n * d
                if budget is not None and used > budget:
                    return z, "max_evals"
                if time.perf_counter() > deadline:
                    return z, "time_limit"
                flat = z.reshape(n, -1)
                cand = flat[:, None, :].repeat(1, 2 * d, 1)
                for j, i in enumerate(idx):
                    cand[:, 2 * j, i] += 1
                    cand[:, 2 * j + 1, i] -= 1
                sub = cand[:, :, idx]
                valid = ((sub >= lo) & (sub <= hi)).all(-1)
                cz = cand.reshape(n * 2 * d, *z.shape[1:])
                if box.A is not None:
                    valid &= box.contains(cz).reshape(n, 2 * d)
                parts = []
                for i in range(0, len(cz), 4096):  # chunks: a round on 784 inputs is 50k points
                    if time.perf_counter() > deadline:
                        return z, "time_limit"
                    parts.append(losses(cz[i : i + 4096])[0])
                cl = torch.cat(parts)
                cl = torch.where(
                    valid, cl.reshape(n, 2 * d), torch.full_like(valid, math.inf, dtype=cl.dtype)
                )
                bl, bj = cl.min(1)
                move = bl < cur - 1e-12
                if not bool(move.any()):
                    return z, "converged"
                flat = flat.clone()
                flat[move] = cand[move, bj[move]]
                z = flat.reshape(z.shape)  # one assignment: a Ctrl-C keeps the old or the new
                cur = torch.where(move, bl, cur)
    except KeyboardInterrupt:
        return z, "interrupted"
    return z, "step_limit"


#: rounds of the mixed-integer search: a polish of the continuous features, then the integer
#: neighbour search from its points, until that search moves no point
MIXED_ROUNDS = 5


def _mixed_search(
    problem, losses, zs, sc, top: int, rounds: int, left, deadline: float
) -> tuple[torch.Tensor, str]:
    """After the integer search: polish the continuous features of the ``top`` best points
    with the integer ones held (:func:`_polish`), then search the integer neighbours of the
    polished points; repeat while that search moves a point, at most MIXED_ROUNDS times.
    Adam's and the relaxed polish's continuous values are optimal for non-integer points, not
    for the rounded ones (a maximize answered 3.2390 where 3.2569 was at the same integer).
    ``left()`` is the budget left (None: no budget). Returns the points and how the last
    stage ended, as :func:`_integer_search`."""
    box = problem.space.box
    idx = list(box.integer)
    n = len(zs)
    for _ in range(MIXED_ROUNDS):
        budget = left()
        calls = None if budget is None else (budget - n - top) // top
        if calls is not None and calls < 3:
            return zs, "max_evals"
        try:
            zs = _off_bounds(zs, box, idx)
            zs, end = _polish(problem, losses, zs, sc, top, calls, deadline, fixed=idx)
        except KeyboardInterrupt:  # outside L-BFGS-B's loop: the points before it stand
            return zs, "interrupted"
        if end != "converged":
            return zs, end
        before = zs.reshape(n, -1)[:, idx]
        zs, end = _integer_search(problem, losses, zs, box, rounds, left(), deadline)
        if end != "converged" or torch.equal(zs.reshape(n, -1)[:, idx], before):
            return zs, end
    return zs, "step_limit"


#: how far (a share of the box width) the continuous features of rounded points are moved
#: off a box bound before their polish
NUDGE = 1e-6


def _off_bounds(zs: torch.Tensor, box, fixed: list[int]) -> torch.Tensor:
    """``zs`` with each continuous feature that lies exactly on a box bound moved inward by
    NUDGE of its width, where that adds no violation of ``A x <= b``: a ReLU at its kink
    there has a zero gradient, and the polish of the rounded points stayed put (max x0 + 1.3
    x1 + 0.5 x2, 2 x0 + 2 x1 + x2 <= 3.7, x0, x1 whole: the relaxation's x2 = 0 kept x2 at 0,
    1.3 for 1.8, on a machine whose float32 sums left x2 at exactly 0)."""
    n = len(zs)
    z = zs.reshape(n, -1)
    lo, hi = (t.reshape(-1) for t in box.tensors(z.device, z.dtype))
    step = torch.where(torch.isfinite(hi - lo), (hi - lo) * NUDGE, torch.zeros_like(lo))
    free = torch.ones_like(lo, dtype=torch.bool)
    free[fixed] = False
    moved = z + step * ((z == lo) & free) - step * ((z == hi) & free)
    moved = moved.reshape(zs.shape)
    keep = box.violation(moved) <= box.violation(zs)
    return torch.where(keep.reshape(-1, *[1] * (zs.dim() - 1)), moved, zs)


def _result(problem, zs, x, values, loss, ok, status, history, timings, t0, starts) -> Result:
    goal = problem.goal
    loss = torch.where(ok, loss, torch.full_like(loss, math.inf)).double().cpu().numpy()
    order = np.argsort(loss, kind="stable")
    order = order[np.isfinite(loss[order])]
    zs_np = zs.detach().double().cpu().numpy()
    cand = order if goal.kind != "range" else order[loss[order] <= 0]
    xs = to_numpy(x)
    keep = [int(cand[i]) for i in distinct(problem, xs[cand])]
    vals = values.detach().double().cpu().numpy()
    timings["total"] = time.perf_counter() - t0
    if not len(order):  # whatever ended the search (README: never a success)
        stop = "" if status == "converged" else f" (the search stopped: {status.replace('_', ' ')})"
        return Result(
            x=None,
            value=None,
            status="not_found",
            message=f"no start ended inside the domain and constraints{stop}",
            nfev=problem.nfev,
            solver="gradient",
            history=history,
            timings=timings,
        )
    best = int(order[0])
    stopped = status if status in ("time_limit", "max_evals", "interrupted", "step_limit") else None
    if goal.kind == "range":
        found = len(keep) > 0
        if found or status == "converged":  # a point in range answers the query, stopped or not
            status = "found" if found else "not_found"
        msg = (
            f"{len(keep)} distinct points inside [{goal.low:g}, {goal.high:g}] from {starts} starts"
            if found
            else f"no start reached [{goal.low:g}, {goal.high:g}]; closest value {vals[best]:.6g}"
        )
    elif goal.kind == "reach":
        close = loss[best] <= 1e-4 * max(1.0, abs(goal.value))
        if close or status == "converged":
            status = "found" if close else "not_found"
        msg = f"closest value {vals[best]:.6g} to {goal.value:g} (|diff| {loss[best]:.3g})"
    else:
        msg = f"best of {starts} starts: {vals[best]:.6g}; {len(keep)} distinct local optima"
    if stopped:
        msg = f"stopped ({stopped}); " + msg
    sel = keep if keep else [best]
    arrays = {} if isinstance(problem.space, Direct) else {"z": zs_np[sel]}
    return Result(
        x=xs[best],
        value=float(vals[best]),
        status=status,
        message=msg,
        xs=xs[sel],
        values=vals[sel],
        nfev=problem.nfev,
        solver="gradient",
        history=history,
        timings=timings,
        arrays=arrays,
        info={"starts": starts, "distinct": len(keep)},
    )
