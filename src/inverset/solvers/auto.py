"""``auto``: pick a solver from the model and the domain, and say which and why.

The rule, first match wins:

1. the search box is unbounded -> ``gradient`` (the only solver that needs no bounds);
2. a latent space, an image-like input (2 or more axes longer than 1) or more than
   ``max_blackbox_dims`` inputs -> ``gradient`` (batched multi-start Adam scales where
   black-box search does not);
3. the exact solver supports the query (a piecewise-linear network small enough to certify)
   -> a ``gradient`` multi-start (30% of the budget, or until it converges) for an incumbent,
   then ``exact`` (certified when it finishes; the better of the two answers otherwise);
4. the target has no usable gradient (zero or non-finite at every probe point) -> ``cmaes``;
5. a differentiable model with at most ``max_evolution_dims`` inputs -> ``gradient``
   multi-start for ``gradient_share`` of the budget, then ``evolution`` (differential
   evolution, restarted until the budget is used, each run polished by L-BFGS-B on the
   model's gradients); the better answer wins;
6. otherwise (a differentiable model with more inputs, where populations are slow) ->
   ``gradient`` multi-start for at least 60% of the budget, then ``basinhopping`` (random hops
   with gradient local search) for the rest.

``result.message`` starts with the choice and the reason; ``result.info['auto']`` records both
and what every stage returned. ``result.history`` holds every stage's records (``stage`` names
it; ``nfev`` counts from the start of the solve, a stage without its own count, exact, at its
evaluations), ``best`` the best value so far of the whole solve, ``bound`` the proven bound
when a stage proves one; it ends at the returned value, after the last stage.

``max_evals`` is a hard budget for the whole solve, the probes included: the exact solver's
support check (``EXACT_CHECK_EVALS`` model evaluations) is only made when the budget also
holds the exact stage (``_exact_evals``) and a gradient stage, and the gradient probe only when
it costs at most a quarter of the budget; a budget too small for either goes to ``gradient``
alone.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import numpy as np
import torch

from inverset.errors import InversetError, NoGradient, UnsupportedModelError
from inverset.exact.solver import CHECK_POINTS
from inverset.problem import Problem
from inverset.result import Result, clamped_bound
from inverset.solvers import check_options, get_solver, unbounded
from inverset.space import Direct

#: the solvers auto may pick: the options it forwards must be ones at least one of them takes
CANDIDATES = ("gradient", "exact", "cmaes", "evolution", "basinhopping")
#: model evaluations of the exact solver's support check (its chain checked on sample inputs),
#: paid again when the exact stage compiles
EXACT_CHECK_EVALS = CHECK_POINTS
#: points of the gradient probe (whether the model has a usable input gradient)
GRADIENT_PROBE = 8
#: the fewest evaluations a gradient stage is given (one evaluation of each of two starts)
GRADIENT_MIN_EVALS = 2
#: the gradient probe is made when it costs at most 1 / PROBE_SHARE of what the budget has left
PROBE_SHARE = 4


def _exact_evals(problem: Problem) -> int:
    """Model evaluations the exact stage itself makes (its max_evals caps branch-and-bound
    boxes, not evaluations): its check and the answer's value; for reach and range also the
    witness search (both ends and up to 80 bisection points)."""
    extra = 1 if problem.goal.kind in ("maximize", "minimize") else 2 + 80 + 2
    return EXACT_CHECK_EVALS + extra


def _exact_supported(problem: Problem) -> tuple[bool, str]:
    """Whether the exact solver is installed and takes this query (never raises)."""
    try:
        from inverset import exact
    except Exception as exc:
        return False, f"exact solver unavailable ({type(exc).__name__})"
    try:
        why = exact.unsupported(problem)
    except Exception as exc:
        return False, f"exact support check failed ({type(exc).__name__}: {exc})"
    if why is not None:
        return False, f"exact declined: {why}"
    return True, "piecewise-linear network the exact solver supports"


def _has_gradient(problem: Problem, seed: int, n: int) -> bool:
    """True when the loss has a finite, non-zero input gradient at one of ``n`` random points."""
    gen = torch.Generator().manual_seed(int(seed))
    z = problem.space.box.sample(n, gen, device=problem.device, dtype=problem.dtype)
    z.requires_grad_(True)
    try:
        with problem.session():
            loss, _ = problem.loss(z)
            (g,) = torch.autograd.grad(loss.sum(), z, allow_unused=True)
    except RuntimeError:  # e.g. a model whose output does not require grad
        return False
    return g is not None and bool((torch.isfinite(g) & (g != 0)).any())


def _better(problem: Problem, a: Result | None, b: Result | None) -> Result | None:
    """The result whose best value is better for the goal (ties keep ``a`` unless only ``b``
    answered the query: 'found' beats a limit's status at the same value)."""
    if a is None:
        return b
    if b is None or b.value is None:
        return a
    if a.value is None:
        return b
    la, lb = _loss(problem, a.value), _loss(problem, b.value)
    return b if lb < la or (lb == la and b.success and not a.success) else a


def _loss(problem: Problem, value: Any) -> float:
    """The goal's loss at ``value`` (inf for no value or NaN: every value is better)."""
    if value is None or np.isnan(value):
        return float("inf")
    return float(problem.goal.loss(torch.tensor([float(value)], dtype=torch.float64))[0])


def _share(total: float | int | None, frac: float, used: float | int = 0):
    if total is None:
        return None
    rest = total - used
    return max(rest * frac, 0) if isinstance(total, float) else max(int(rest * frac), 1)


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    max_blackbox_dims: int = 64,
    max_evolution_dims: int = 12,
    gradient_share: float = 0.2,
    **options: Any,
) -> Result:
    """Choose and run solvers for the query (options go to the chosen final solver; one that
    none of :data:`CANDIDATES` takes is an error before any work)."""
    check_options("solver 'auto'", solve, options)
    # the first torch optimizer built in a process pays a one-off lazy import (~2 s); pay it
    # before the clock starts so that a short gradient stage is not spent on it
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    t0 = time.perf_counter()
    nfev0 = problem.nfev
    box = problem.space.box
    latent = not isinstance(problem.space, Direct)
    dims = box.size
    # image-like: two or more non-trivial axes ((1, 8, 8) is; ACAS Xu's (1, 1, 5) is not)
    image = box.shape is not None and sum(n > 1 for n in box.shape) >= 2
    tl = float(time_limit) if time_limit is not None else None
    probed = 0  # evaluations made to choose (exact's support check, the gradient probe)
    share = gradient_share
    budget = f"a budget of {max_evals} evaluations"

    stages: list[tuple[str, dict[str, Any]]]
    exact_ok, exact_why = (False, "")
    if box.bounded and not (latent or image or dims > max_blackbox_dims):
        need = EXACT_CHECK_EVALS + GRADIENT_MIN_EVALS + _exact_evals(problem)
        if max_evals is not None and max_evals < need:
            exact_why = f"{budget} is too small for the exact solver, which needs {need}"
        else:
            before = problem.nfev
            exact_ok, exact_why = _exact_supported(problem)
            probed += problem.nfev - before
    if not box.bounded:
        why = f"{unbounded(problem.space)[0]}; only gradient search needs no bounds"
        stages = [("gradient", options)]
    elif latent or image or dims > max_blackbox_dims:
        what = "a latent space" if latent else ("an image-like input" if image else "")
        what = what or f"{dims} inputs (> {max_blackbox_dims})"
        why = f"{what}: batched multi-start gradient search"
        stages = [("gradient", options)]
    elif exact_ok:
        why = f"{exact_why}: a gradient multi-start, then exact (certified)"
        share = max(share, 0.3)
        stages = [("gradient", {}), ("exact", options)]
    elif max_evals is not None and max_evals - probed < PROBE_SHARE * GRADIENT_PROBE:
        why = f"{budget}, too few to probe for a gradient: gradient search ({exact_why})"
        stages = [("gradient", options)]
    else:
        before = problem.nfev
        smooth = _has_gradient(problem, seed, GRADIENT_PROBE)
        probed += problem.nfev - before
        if not smooth:
            why = f"the target has no usable input gradient: CMA-ES on {dims} inputs ({exact_why})"
            stages = [("cmaes", options)]
        elif dims <= max_evolution_dims:
            why = (
                f"a differentiable model with {dims} inputs (<= {max_evolution_dims}): gradient "
                f"multi-start, then differential evolution with gradient polish ({exact_why})"
            )
            stages = [("gradient", {}), ("evolution", options)]
        else:
            share = max(share, 0.6)
            why = (
                f"a differentiable model with {dims} inputs (> {max_evolution_dims}, where "
                f"population search is slow): gradient multi-start, then basin hopping with "
                f"gradient local search ({exact_why})"
            )
            stages = [("gradient", {}), ("basinhopping", options)]

    best: Result | None = None
    proven: float | None = None
    log: list[dict[str, Any]] = []
    history: dict[str, list] = {"nfev": [], "time": [], "best": [], "stage": [], "bound": []}
    so_far = math.nan  # the best value of the records so far, over every stage
    statuses: list[str] = []
    ignored: list[str] = []
    final = ""  # the stage the options went to
    # a stage's library (cma, nevergrad, BoTorch) is imported before its clock starts, as a
    # solver run alone imports it: a process's first import of cma took 1-2 s of a 1 s limit
    ts = time.perf_counter()
    try:
        for name, _ in stages:
            get_solver(name)
    except KeyboardInterrupt:  # answered as one in a stage is: no stage runs
        statuses.append("interrupted")
        stages = []
    t0 += time.perf_counter() - ts
    for k, (name, opts) in enumerate(stages):
        last = k == len(stages) - 1
        elapsed = time.perf_counter() - t0
        if tl is not None and elapsed >= tl and best is not None:
            statuses.append("time_limit")
            break
        stage_tl = None if tl is None else (tl - elapsed if last else _share(tl, share, elapsed))
        used = problem.nfev - nfev0
        if max_evals is not None and used >= max_evals:
            statuses.append("max_evals")
            break
        stage_me = None
        if max_evals is not None:
            stage_me = max_evals - used
            if not last:  # its share, leaving the exact stage what it evaluates
                later = any(n == "exact" for n, _ in stages[k + 1 :])
                reserve = _exact_evals(problem) if later else 0
                stage_me = max(min(_share(max_evals, share, used), stage_me - reserve), 1)
        fn = get_solver(name)
        if opts is options:
            final = name
            opts, ignored = _taken(name, fn, options)
        if name == "exact" and best is not None and best.x is not None:
            opts = {**opts, "incumbent": (np.asarray(best.x), float(best.value))}
        ts, before = time.perf_counter(), problem.nfev
        try:
            res = fn(
                problem,
                seed=seed,
                time_limit=stage_tl,
                max_evals=stage_me,
                progress=progress,
                **opts,
            )
        except UnsupportedModelError as exc:
            log.append({"solver": name, "error": str(exc)})
            if name == "exact":  # fall back to the low-dimensional rule
                stages.append(("evolution", options))
                continue
            raise
        except NoGradient as exc:  # a model run without autograd: the exact stage still works
            if last:
                raise
            log.append({"solver": name, "error": str(exc)})
            continue
        except KeyboardInterrupt:  # a stage that answers no Ctrl-C itself: the earlier ones'
            log.append({"solver": name, "status": "interrupted"})
            statuses.append("interrupted")
            break
        spent = problem.nfev - before
        # solvers count from 0 or from the problem's running total: rebase to this solve
        offset = before - nfev0 - (res.nfev - spent)
        h = res.history
        n = len(h.get("best") or [])
        times = h.get("time") or [time.perf_counter() - ts] * n
        nfevs = h.get("nfev") or [res.nfev] * n  # exact counts no evaluations per record
        bounds = h.get("bound") or [None] * n
        for t, nf, b, bd in zip(times, nfevs, h.get("best") or [], bounds, strict=False):
            if _loss(problem, b) < _loss(problem, so_far):
                so_far = b
            history["time"].append(ts - t0 + t)
            history["nfev"].append(offset + nf)
            history["best"].append(so_far)
            history["stage"].append(name)
            history["bound"].append(bd)
        log.append(
            {
                "solver": name,
                "status": res.status,
                "value": res.value,
                "nfev": spent,
                "time": time.perf_counter() - ts,
                "message": res.message,
            }
        )
        statuses.append(res.status)
        if res.bound is not None and problem.goal.kind in ("maximize", "minimize"):
            proven = res.bound  # a proof holds whichever answer wins
        nearest = _better(problem, best, res)
        if res.status in ("optimal", "unreachable", "infeasible", "interrupted"):
            if res.status == "unreachable" and nearest is not None and nearest is not res:
                # the proof is the exact stage's; a nearer input an earlier stage found still
                # tells how close the target came (a range between attainable values)
                from inverset.exact.solver import without_point_note

                res.x, res.xs, res.values = nearest.x, nearest.xs, nearest.values
                res.value, res.arrays = nearest.value, {**nearest.arrays, **res.arrays}
                res.message = (
                    f"{without_point_note(res.message)}; the point returned is the nearest "
                    f"{nearest.solver} found"
                )
            best = res if res.status != "interrupted" else nearest
            break
        best = nearest
        if problem.goal.kind in ("reach", "range") and res.status == "found":
            break

    chain = " -> ".join(e["solver"] for e in log)
    picked = {"picked": chain, "why": why, "stages": log, "probe_nfev": probed}
    if best is None and "interrupted" in statuses:
        best = Result(
            x=None,
            value=None,
            status="interrupted",
            message="interrupted before any search found a point",
            solver="none",
        )
    if best is None:  # no stage ran: the budget went on choosing
        stop = next((s for s in statuses if s in ("time_limit", "max_evals")), "max_evals")
        best = Result(
            x=None,
            value=None,
            status=stop,
            message=f"no search ran: {problem.nfev - nfev0} evaluations went on choosing one",
            solver="none",
        )
    if proven is not None and best.value is not None:
        sense = float(problem.goal.sense)
        best.bound, best.gap = clamped_bound(sense, sense * proven, best.value)
    status = best.status
    if status not in ("optimal", "unreachable", "infeasible", "found"):
        for s in ("interrupted", "time_limit", "max_evals"):
            if s in statuses:
                status = s
                break
    message = f"auto picked {chain or 'nothing'} ({why}); {best.message}"
    if proven is not None and best.bound is not None and "certified" not in best.message:
        # another stage's point won; the exact stage's proof still bounds it
        word = "max" if problem.goal.sense > 0 else "min"
        ended = log[-1]["status"].replace("_", " ")
        message += (
            f"; the exact stage ended ({ended}) with certified {word} bound {best.bound:.6g} "
            f"(gap {best.gap:.3g})"
        )
    if ignored:
        picked["ignored_options"] = ignored
        message += f"; options not taken by {final}: {', '.join(ignored)}"
    best.info = {**best.info, "auto": picked}
    best.message = message
    best.status = status
    best.solver = f"auto:{best.solver}"
    best.nfev = problem.nfev - nfev0
    best.timings = {**best.timings, "total": time.perf_counter() - t0}
    end = (history["best"][-1:], history["nfev"][-1:]) != ([best.value], [best.nfev])
    if best.value is not None and log and end:  # the end of the solve, at the returned value
        history["time"].append(best.timings["total"])
        history["nfev"].append(best.nfev)
        history["best"].append(best.value)
        history["stage"].append(log[-1]["solver"])
        history["bound"].append(proven)
    if all(v is None for v in history["bound"]):
        del history["bound"]
    best.history = history
    return best


solve.forwards_to = CANDIDATES  # type: ignore[attr-defined]


def _taken(name: str, fn: Any, options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The options solver ``name`` takes, and (sorted) those it does not take or whose value
    it does not accept (another candidate does: :func:`solve` checked that)."""
    params = inspect.signature(fn).parameters
    taken: dict[str, Any] = {}
    for k, v in options.items():
        try:
            if k in params:
                check_options(f"solver {name!r}", fn, {k: v})
                taken[k] = v
        except InversetError:
            pass
    return taken, sorted(set(options) - set(taken))
