"""``solver="exact"``: certified optimum (or reachability decision) for ReLU networks.

The model and target are compiled to an Affine/ReLU chain (:mod:`inverset.exact.ir`),
checked against the model on sample points, then solved by input-splitting branch and bound
with batched CROWN bounds (low-dimensional inputs, boxes), by ReLU-phase branch and bound
with beta-CROWN bounds (many inputs and many unstable ReLUs, boxes) or by a big-M MILP (HiGHS
or SCIP; integer inputs, linear constraints, extra target ranges, few unstable ReLUs). Every answer
is re-evaluated on the original model.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from inverset.checks import is_whole
from inverset.errors import InversetError, UnsupportedModelError
from inverset.exact import bab, relu_bab
from inverset.exact.bounds import Bounds, _affine_box, crown
from inverset.exact.ir import Head, Network, SquashedOutputError, extract, split_head
from inverset.exact.milp import build
from inverset.model import OUTPUT, output_activation, torch_threads
from inverset.problem import Problem
from inverset.progress import progress_bar
from inverset.result import Result, clamped_bound
from inverset.space import Direct
from inverset.target import Expr, Neg, Ref

#: branch and bound splits input boxes: strong in few dimensions, hopeless in many. Measured:
#: 2-32-32-1 over [-1, 1]^2, branch and bound 0.07 s, MILP 1.9 s; 8-32-32-1 over [-1, 1]^8,
#: 4 s vs no certificate in 15 s; ACAS Xu (5 inputs, 299 unstable ReLUs), far ahead; the wine
#: surrogate (13 inputs, 43 unstable), MILP 1.3 s vs no certificate in 60 s.
BAB_MAX_INPUTS = 8
#: with at most this many unstable ReLUs at the root, a MILP has few binaries and beats input
#: splitting even in low dimension (diabetes 10-16-16-1, 14 unstable: MILP 0.06 s, branch and
#: bound not certified in 15 s)
MILP_MAX_UNSTABLE = 24
#: beyond this many unstable ReLUs (and more than PORTFOLIO_MAX_INPUTS inputs) the MILP's
#: big-M relaxation is too weak and ReLU-phase branch and bound with optimized bounds takes
#: over. Measured: MNIST-FC 256x2 (784 inputs, 100-170 unstable), ReLU splitting decides in
#: 1-11 s instances the MILP leaves open after 40 s.
RELU_MIN_UNSTABLE = 64
#: from more inputs than input splitting takes (BAB_MAX_INPUTS) up to this many, neither the
#: MILP nor ReLU splitting is reliably ahead once more than MILP_MAX_UNSTABLE ReLUs are
#: unstable, so 'auto' runs the MILP for a share of the time and then ReLU splitting from its
#: point, keeping the tighter bound. ``python benchmarks/exact_methods.py`` (20 s): random
#: MLPs of 12-64 inputs and 64-128 unstable ReLUs, ReLU splitting's bound is 0.42-2.29 where
#: the MILP's is 0.99-4.20 (best values 0.22-0.45); two conv nets (9 and 36 inputs, 69 and 64
#: unstable), the MILP certifies in 2.2 and 0.3 s and ReLU splitting is open at 20 s.
PORTFOLIO_MAX_INPUTS = 64
#: the MILP's time there: this share of the time left, at least PORTFOLIO_MIN_SECONDS (when
#: left) and at most PORTFOLIO_MAX_SECONDS (also without a time limit)
PORTFOLIO_SHARE = 0.25
PORTFOLIO_MIN_SECONDS = 2.0
PORTFOLIO_MAX_SECONDS = 20.0
#: branch and bound starts only with time left for this many root CROWN passes: its own root
#: (optimized slopes, node bounds recomputed through the splits) costs several, and does not
#: stop at the deadline (a 0.5 s limit on an 8x8 digits CNN ran 1.0 s over)
BAB_MIN_CROWNS = 4


#: what an unreachable range's message says of its point (callers that return no point cut it)
POINT_NOTE = "the point returned is the best the proof met, not the nearest (reach searches it)"


def without_point_note(message: str) -> str:
    """An unreachability message without :data:`POINT_NOTE`, for callers whose answer is not
    that point (an empty inverse set, a certificate)."""
    return message.split(f"; {POINT_NOTE}", 1)[0]


#: how a search ended without an answer: its status, and what the message says
STOPS = {
    "time_limit": "stopped at the time limit",
    "max_evals": "stopped at the node budget (max_evals)",
    "incomplete": "branch and bound on ReLU phases could split no further (a min/max target "
    "over linear regions; method='milp' decides it)",
    "undecided": "the MILP's point reaches the range only within its feasibility tolerance, "
    "the network's value at it a rounding short (numerical limits)",
    "rounded": "not certified: the network's optimum, its input rounded to the model's "
    "float precision, is worth less to the model itself (an input the model cannot hold "
    "exactly)",
    "breaks": "no input found that the model itself keeps within the target constraints: the "
    "network's optimum meets them in exact arithmetic, the model's float evaluation breaks "
    "them by a rounding, and the MILP with each range inset by that rounding found no point "
    "(numerical limits)",
    "inset": "not certified: the network's optimum meets the target constraints in exact "
    "arithmetic, the model's float evaluation breaks them there by a rounding; the best input "
    "found with each range inset by that rounding is further from the bound than the "
    "tolerance (numerical limits)",
}


def compile_problem(problem: Problem) -> Network:
    """The problem's target (row 0) and constraint expressions (rows 1..) as a checked chain."""
    if not isinstance(problem.space, Direct):
        raise InversetError(
            "the exact solver searches model inputs directly, not a generator's latent space; "
            "use --solver gradient with a latent space"
        )
    if problem.dtype in (torch.float16, torch.bfloat16):
        raise InversetError(
            f"the exact solver certifies float32 and float64 models; this one computes in "
            f"{str(problem.dtype).removeprefix('torch.')}, whose rounding a certificate would "
            "not cover; convert it to float32 first: model.float() in Python, or on the command "
            "line save the model after model.float() (inverset has no option to convert it), "
            "or use --solver gradient"
        )
    exprs = _exprs(problem)
    for i, e in enumerate(exprs):
        if not e.piecewise_linear:
            prob = next((r for r in e.refs() if r.kind == "prob"), None)
            if prob is not None and output_activation(problem.model):
                _name_logits(problem, prob.index[0])
            what = "target" if i == 0 else "constraint expression"
            raise InversetError(
                f"{what} {e} is not piecewise linear (prob:k or a product of network values); "
                "use logit:k / margin:k with the exact solver, or --solver gradient"
            )
    shape = problem.domain.shape
    with problem.session():
        net = extract(problem.model, shape, exprs)
        _check(problem, net)
    return net


def _exprs(problem: Problem) -> list[Expr]:
    """The target and the constraint expressions: the rows of the compiled chain."""
    return [problem.target, *(c[0] for c in problem.constraints)]


def _name_logits(problem: Problem, k: int) -> None:
    """For ``prob:k`` of a model ending in a Softmax or Sigmoid (which ``prob:k`` reads):
    raise the error naming the layer below it, the logits the exact solver can take."""
    try:
        with problem.session():
            extract(problem.model, problem.domain.shape, [Ref("prob", OUTPUT, (k,))])
    except SquashedOutputError:
        raise
    except InversetError:
        pass  # another layer stops the exact solver first: the caller's error stands


#: sample points on which the compiled chain must reproduce the model (model evaluations that
#: ``solver='auto'`` counts in its budget)
CHECK_POINTS = 16
#: how many times its estimate the model's rounding is taken to reach: the largest difference
#: from the chain seen on the check's sample points (a sample's largest is not the box's), the
#: margin of a reachability decision; the per-layer rounding bound, the check's allowance
ROUNDING_SAFETY = 4.0


def rounding_error(net: Network, lo: torch.Tensor, hi: torch.Tensor, dtype) -> float:
    """The rounding a float evaluation of the chain in ``dtype`` may make in its layers' sums,
    summed over the layers, anywhere in the box [lo, hi] (flat): a sum of n products rounds by
    at most gamma_n = n u / (1 - n u) times the sum of their magnitudes (Higham), which
    interval bounds give per layer. It grows with the magnitudes summed (inputs near 1e4), not
    with the output; later layers' amplification of earlier errors is left out (it makes the
    worst case of a deep net useless: 13 on ACAS Xu, where the model differs by 3e-7)."""
    u = torch.finfo(dtype).eps / 2
    lo, hi = lo.double().reshape(1, -1), hi.double().reshape(1, -1)
    total = 0.0
    last = len(net.weights) - 1
    for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        w, b = w.double(), b.double()
        n = w.shape[1] + 1
        gamma = n * u / max(1.0 - n * u, 1e-3)
        mag = torch.maximum(lo.abs(), hi.abs())[0]
        total += gamma * float((w.abs() @ mag + b.abs()).max())
        lo, hi = _affine_box(w, b, lo, hi)
        if k < last:
            lo, hi = lo.clamp_min(0), hi.clamp_min(0)
    return total


def _check(problem: Problem, net: Network) -> None:
    """The chain must reproduce the model's target and constraint values on sample points."""
    gen = torch.Generator().manual_seed(1234)
    x = problem.domain.sample(CHECK_POINTS, gen, device=problem.device, dtype=problem.dtype)
    with torch.no_grad():
        v, cv = problem.evaluate_all(x)
        ref = torch.cat([v[:, None], cv], 1).double().cpu()
        got = net.forward(x.reshape(CHECK_POINTS, -1).double().cpu())
    err = float((ref - got).abs().max())
    scale = 1.0 + float(ref.abs().max())
    tol = 1e-9 if problem.dtype == torch.float64 else 1e-4
    dom = problem.domain
    lo, hi = (
        torch.as_tensor(np.broadcast_to(v, dom.shape).reshape(-1).copy())
        for v in (dom.lower, dom.upper)
    )
    rounding = ROUNDING_SAFETY * rounding_error(net, lo, hi, problem.dtype)
    rounding = rounding if math.isfinite(rounding) else 0.0  # an unbounded box
    net.disagreement = err
    if not math.isfinite(err) or err > tol * scale + rounding:
        # more than the sums' own rounding: a layer's rounding that later layers amplify (the
        # estimate leaves that out) is the model's own float arithmetic when the chain run in
        # the model's dtype reproduces it (a first layer near 3e4 rounded by 0.001, times a
        # slope of 1e6: 977 apart, depending on the CPU's float32 kernels)
        own = replace(
            net,
            weights=[w.to(problem.dtype) for w in net.weights],
            biases=[b.to(problem.dtype) for b in net.biases],
        ).forward(x.reshape(CHECK_POINTS, -1).cpu())
        err = float((ref - own.double()).abs().max())
    if not math.isfinite(err) or err > tol * scale + rounding:
        raise UnsupportedModelError(
            f"the exact solver's linear model disagrees with the network by {err:.3g} on sample "
            "inputs (a layer it does not understand); use --solver gradient"
        )


#: the fix an exact-solver error names for the queries (maximize, range, ...): ``--solver
#: gradient`` in its forms ('; use --solver gradient', ', or --solver gradient', '(use ...)')
_SOLVER_HINT = re.compile(
    r"(?:,? or |; | )\(?(?:use )?--solver gradient(?: with a latent space)?\)?"
)


def without_solver_hint(message: str) -> str:
    """An exact-solver error without its '--solver gradient' fix, for commands that have no
    such option (certify, the sampler's exact check)."""
    return _SOLVER_HINT.sub("", message)


def unsupported(problem: Problem) -> str | None:
    """Why the exact solver cannot answer this problem, in a line (None when it can): an
    unbounded box, a target or constraint that is not piecewise linear, or what
    :func:`compile_problem` refuses (a layer, a latent space, a half-precision model)."""
    if not problem.domain.bounded:
        return "the domain is unbounded (the exact solver needs finite bounds on every input)"
    for e in _exprs(problem):
        if not e.piecewise_linear:
            # said before compile_problem's extraction, which would name prob:k's logits
            probs = [str(r) for r in e.refs() if r.kind == "prob"]
            if probs:
                return (
                    f"{probs[0]} is a probability, not piecewise linear (a range of its logit, "
                    "logit:k, can be checked)"
                )
            return f"{e} is not piecewise linear"
    try:
        compile_problem(problem)
    except InversetError as exc:
        return without_solver_hint(str(exc))  # its callers (auto, the sampler) have no option
    return None


def is_supported(problem: Problem) -> bool:
    """Can the exact solver answer this problem (piecewise-linear net/target, bounded box)?"""
    return unsupported(problem) is None


class _Ctx:
    """What one solve shares: the chain, the flat domain, the clock, counters."""

    def __init__(self, problem: Problem, net: Network, t0: float, time_limit, tol, seed):
        self.problem, self.net, self.t0, self.tol, self.seed = problem, net, t0, tol, seed
        self.deadline = math.inf if time_limit is None else t0 + time_limit
        dom = problem.domain
        self.lo = torch.as_tensor(dom.lower.reshape(-1), dtype=torch.float64)
        self.hi = torch.as_tensor(dom.upper.reshape(-1), dtype=torch.float64)
        self.nodes = 0
        self.side = 1.0  # the sense a reach or range decision is searching (1: its maximum)
        self.history: dict[str, list] = {"time": [], "best": [], "bound": []}
        self.method_used: list[str] = []
        self.timings: dict[str, float] = {}
        self.given: torch.Tensor | None = None
        self._heads: dict[float, tuple[Network, Head]] = {}
        self._root: Bounds | None = None
        self._milp: Bounds | None = None
        #: seconds of the problem's extraction and of the root's CROWN pass: what optional
        #: steps (a second extraction, branch and bound's own root) cost at least
        self.extract_seconds = time.perf_counter() - t0
        self.crown_seconds = 0.0
        #: what a Ctrl-C answers with (:func:`_interrupted`): every feasible input found so
        #: far (flat), the least bound proven on ``sense * target`` per sense, and a reach
        #: goal's unreachability proof (message, bound) once made
        self.found: list[torch.Tensor] = []
        self.proven: dict[float, float] = {}
        self.proof: tuple[str, float | None] | None = None

    def note(self, sense: float, x: torch.Tensor | None, bound: float | None = None) -> None:
        """Keep a feasible input found and a bound proven on ``sense * target`` (the whole
        domain's, not a capped search's) for a Ctrl-C's answer."""
        if x is not None:
            self.found.append(x.detach().reshape(-1).to(torch.float64))
        if bound is not None and not math.isnan(bound):
            self.proven[sense] = min(self.proven.get(sense, math.inf), bound)

    def record(self, sense: float, best: float, bound: float | None) -> None:
        """One history entry of a search of ``sense * target`` (best and bound in the target's
        own sign; no bound yet: infinite), as branch and bound's rounds add theirs. Kept for a
        maximum or minimum: a reach or range decision searches both senses, whose bests are
        not one convergence."""
        if not math.isfinite(best) or self.problem.goal.kind not in ("maximize", "minimize"):
            return
        self.history["time"].append(time.perf_counter() - self.t0)
        self.history["best"].append(sense * best)
        self.history["bound"].append(sense * (math.inf if bound is None else bound))

    def bound_so_far(self, sense: float) -> float | None:
        """The least bound on ``sense * target`` proven so far: a search's, or the root's
        CROWN bounds once computed (None: none yet)."""
        b = self.proven.get(sense, math.inf)
        for r in (self._root, self._milp):
            if r is not None:
                b = min(b, _target_bound(r, sense))
        return b if math.isfinite(b) else None

    def within_tol(self, gap: float, value: float) -> bool:
        """Whether a gap to the bound is within the solve's tolerance, absolute or relative to
        ``value``: what 'optimal' means."""
        return gap <= bab.allowed_gap(self.tol, value)

    def ulps(self, z: float) -> float:
        """8 units in the last place of the model's dtype, relative to ``z``: how far the model's
        own evaluation of a value may pass the network's exact one by its final rounding."""
        return 8 * torch.finfo(self.problem.dtype).eps * (1.0 + abs(z))

    def root_bounds(self) -> Bounds:
        """CROWN bounds of every row on the whole box (computed once per solve: the method
        choice, both senses' MILPs and the witness search share them)."""
        if self._root is None:
            # past the deadline, the hidden layers keep interval bounds: sound, and at once
            t = time.perf_counter()
            self._root = crown(self.net, self.lo[None], self.hi[None], deadline=self.deadline)
            self.crown_seconds = time.perf_counter() - t
        return self._root

    def short_of(self, seconds: float) -> bool:
        """Whether less than ``seconds`` is left before the deadline."""
        left = self.remaining()
        return left is not None and left < seconds

    def milp_bounds(self) -> Bounds:
        """Bounds for the MILP's big-M constants: the root CROWN bounds, and when they leave
        many ReLUs unstable, bounds with optimized slopes in every layer (fewer binaries and
        tighter constants for a one-off cost)."""
        if self._milp is None:
            self._milp = self.root_bounds()
            if self.root_unstable() > MILP_MAX_UNSTABLE and time.perf_counter() < self.deadline:
                lo, hi = self.lo[None], self.hi[None]
                stop = self.share(0.25)
                # intersected with the root's: never looser, even when the time runs out
                self._milp = crown(
                    self.net,
                    lo,
                    hi,
                    init=self._milp.pre,
                    alpha_hidden=20,
                    alpha_steps=20,
                    deadline=stop,
                )
        return self._milp

    def share(self, fraction: float) -> float:
        """The ``time.perf_counter()`` deadline of a step allowed ``fraction`` of the time
        left (infinite without a time limit)."""
        now = time.perf_counter()
        return now + (self.deadline - now) * fraction

    def root_unstable(self) -> int:
        """Unstable ReLUs at the root."""
        return self.root_bounds().unstable()

    def head_net(self, sense: float) -> tuple[Network, Head]:
        """``sense * target`` as a min/max head over separately bounded rows."""
        if sense not in self._heads and self.short_of(self.extract_seconds):
            # no time for a second extraction: the compiled chain is a sound head
            self._heads[sense] = (self.net.select([0], sense), Head("leaf", 0))
        if sense not in self._heads:
            p = self.problem
            e = p.target if sense > 0 else Neg(p.target)
            gen = torch.Generator().manual_seed(99)
            x = None  # sample points: for margin:k (the model's output count), then the check
            n_out = 0
            if any(r.kind == "margin" for r in e.refs()):
                x = p.domain.sample(8, gen, dtype=torch.float64).reshape(8, -1)
                with torch.no_grad(), p.session():
                    out = p.model(x.reshape(8, *p.domain.shape).to(p.device, p.dtype))
                n_out = int(out.reshape(8, -1).shape[1])
            head, leaves = split_head(e, n_out)
            if head.kind == "leaf":  # no min/max at the top: the compiled chain is the head
                self._heads[sense] = (self.net.select([0], sense), Head("leaf", 0))
                return self._heads[sense]
            if x is None:
                x = p.domain.sample(8, gen, dtype=torch.float64).reshape(8, -1)
            with p.session():
                net = extract(p.model, p.domain.shape, leaves)
            with torch.no_grad():
                a = head.apply(net.forward(x))
                b = sense * self.net.forward(x)[:, 0]
            if float((a - b).abs().max()) > 1e-6 * (1 + float(b.abs().max())):
                net, head = self.net.select([0], sense), Head("leaf", 0)
            self._heads[sense] = (net, head)
        return self._heads[sense]

    def milp(self, net: Network | None = None, deadline: float = math.inf, inset: bool = False):
        """The MILP of ``net`` (default: the compiled problem) over the domain (box, integers,
        A x <= b) with the problem's target constraints (``inset``: see
        :meth:`add_constraints`), or None when building it ran past ``deadline``."""
        dom = self.problem.domain
        model = build(
            net if net is not None else self.net,
            self.lo.numpy(),
            self.hi.numpy(),
            self.milp_bounds(),
            integer=tuple(dom.integer),
            A=dom.A,
            b=dom.b,
            deadline=deadline,
        )
        if model is not None:
            self.add_constraints(model, inset)
        return model

    def add_constraints(self, model, inset: bool = False) -> None:
        """The problem's target constraints on ``model``; ``inset``: each finite end moved
        inward by the model's rounding (:meth:`pad`), so that a point meeting the range in
        exact arithmetic meets it on the float model too (a range narrower than that: its
        midpoint)."""
        for i, (_, lo, hi) in enumerate(self.problem.constraints):
            if inset:
                a = lo + self.pad(lo) if math.isfinite(lo) else lo
                b = hi - self.pad(hi) if math.isfinite(hi) else hi
                lo, hi = (a, b) if a <= b else ((lo + hi) / 2,) * 2
            model.add_output_constraint(i + 1, lo, hi)

    def pad(self, z: float) -> float:
        """How far the model's own evaluation of a value near ``z`` may pass the network's
        exact one: its final rounding (:meth:`ulps`), and 4x the rounding it showed on the
        check's points (sums of large terms)."""
        return max(1e-12 * (1.0 + abs(z)), self.ulps(z)) + ROUNDING_SAFETY * self.net.disagreement

    def model_keeps(self, x: torch.Tensor) -> bool:
        """Whether the model itself, at ``x`` rounded to its precision, keeps the target
        constraints as every solver's answer must: the network meeting a range in exact
        arithmetic, the float32 model may break it by a rounding (3.8e-5 near 300)."""
        p = self.problem
        if not p.constraints:
            return True
        xm = self.snap(x.reshape(-1)).reshape(1, *p.domain.shape).to(p.device, p.dtype)
        with torch.no_grad(), p.session():
            _, cv = p.evaluate_all(xm)
        return bool(p.keeps_constraints(cv.double())[0])

    def optimize(self, model, milp_solver: str, threads: int, warm=None, first_solution=False):
        """``model``'s MILP solved in the time left, its nodes and seconds counted. Half the
        tolerance: 'optimal' is judged on the input re-evaluated on the network, which the
        MILP's own feasibility tolerances may leave a little lower."""
        sol = model.solve(
            milp_solver,
            self.remaining(),
            warm,
            first_solution=first_solution,
            rel_gap=self.tol / 2,
            abs_gap=self.tol / 2,
            threads=threads,
        )
        self.nodes += sol.nodes
        self.timings["milp_solve"] = self.timings.get("milp_solve", 0.0) + sol.seconds
        return sol

    def domain_feasible(self, milp_solver: str) -> bool:
        """Whether any input satisfies the domain and the target constraints (a MILP
        feasibility problem; True when undecided in the time left)."""
        model = self.milp(deadline=self.deadline)
        if model is None:
            return True
        sol = model.solve(milp_solver, self.remaining(), first_solution=True)
        if sol.status == "interrupted":
            raise KeyboardInterrupt
        return sol.status != "infeasible"

    def remaining(self) -> float | None:
        if math.isinf(self.deadline):
            return None
        return max(self.deadline - time.perf_counter(), 0.0)

    def snap(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` rounded to the model's float precision, nudged inward where rounding left
        the box or ``A x <= b`` (a float32 witness must itself lie in the domain)."""
        if self.problem.dtype != torch.float32:
            return x
        x32 = x.float()
        x32 = torch.where(x32.double() < self.lo, torch.nextafter(x32, x32 + 1), x32)
        x32 = torch.where(x32.double() > self.hi, torch.nextafter(x32, x32 - 1), x32)
        return self.problem.domain.hold(x32[None])[0].double()

    def model_values(self, x: torch.Tensor) -> np.ndarray:
        """The model's target at the points ``x``, one point at a time, as a user's
        re-evaluation runs them: float32 sums of a batch may round otherwise (a witness at
        its range's end read 3e-8 below it)."""
        p = self.problem
        xm = x.reshape(x.shape[0], *p.domain.shape).to(p.device, p.dtype)
        with torch.no_grad(), p.session():
            return p.evaluate_each(xm)[0].double().cpu().numpy()

    def feasible(self, x: torch.Tensor) -> torch.Tensor:
        p = self.problem
        xm = x.reshape(x.shape[0], *p.domain.shape).to(torch.float64)
        ok = p.domain.contains(xm, tol=1e-7)
        if p.constraints:
            with torch.no_grad():
                out = self.net.forward(x)
            for i, (_, lo, hi) in enumerate(p.constraints):
                ok &= (out[:, i + 1] >= lo - 1e-7) & (out[:, i + 1] <= hi + 1e-7)
        return ok


def _incumbent(
    ctx: _Ctx,
    sense: float,
    threshold: float | None = None,
    n: int = 512,
    steps: int = 50,
    cap: float = math.inf,
) -> tuple[torch.Tensor | None, float]:
    """Sampling, then projected sign-gradient ascent on ``sense * target`` (feasible points
    with ``sense * target <= cap`` only); returns early when a sample already reaches
    ``threshold``."""
    p = ctx.problem
    if ctx.remaining() == 0.0:  # out of time: a few samples, for an answer at all
        n = min(n, 16)
    gen = torch.Generator().manual_seed(ctx.seed)
    x = p.domain.sample(n, gen, dtype=torch.float64).reshape(n, -1)
    x = p.domain.project(x.reshape(n, *p.domain.shape), round_integers=True).reshape(n, -1)
    net = ctx.net.select([0], sense)

    def best(xs):
        with torch.no_grad():
            v = net.forward(xs)[:, 0]
        v = torch.where(ctx.feasible(xs) & (v <= cap), v, torch.full_like(v, -math.inf))
        i = int(torch.argmax(v))
        return (xs[i], float(v[i])) if math.isfinite(float(v[i])) else (None, -math.inf)

    x0, v0 = best(x)
    ctx.note(sense, x0)  # a Ctrl-C in the ascent keeps it
    if (threshold is not None and v0 >= threshold) or steps == 0 or ctx.remaining() == 0.0:
        return x0, v0
    # the ascent only proposes points, each re-evaluated in float64 by best(): float32 is
    # enough for it and twice as fast (784-256-256 nets: 0.9 -> 0.45 s)
    f32 = torch.float32
    xs, _ = bab.local_ascent(
        net.to(dtype=f32),
        x.to(f32),
        ctx.lo.to(f32),
        ctx.hi.to(f32),
        steps=steps,
        deadline=ctx.share(0.25),
    )
    xs = xs.to(torch.float64)
    xs = p.domain.project(xs.reshape(n, *p.domain.shape), round_integers=True).reshape(n, -1)
    x1, v1 = best(xs)
    return (x1, v1) if v1 >= v0 else (x0, v0)


def _method(ctx: _Ctx, method: str) -> str:
    """'milp', 'bab' (input splitting) or 'relu' (ReLU-phase splitting) for this problem."""
    p = ctx.problem
    needs = bool(p.domain.integer) or p.domain.A is not None or bool(p.constraints)
    if method in ("bab", "relu"):
        if needs:
            raise InversetError(
                f"method {method!r} handles plain boxes only; integer inputs, linear constraints "
                "and extra target ranges need method 'milp' (or 'auto')"
            )
        # a chain without ReLUs has no phases to split: its boxes are bounded exactly
        return "bab" if method == "relu" and ctx.net.n_relu == 0 else method
    if method == "milp":
        return method
    if needs:
        return "milp"
    if ctx.net.n_inputs > BAB_MAX_INPUTS:
        # an optimum between 9 and 64 inputs: the MILP first, then ReLU splitting (_portfolio);
        # a decision (reach, range, certify) is closed or not, and ReLU splitting closed few
        # there: the MILP alone up to RELU_MIN_UNSTABLE (audit 113: a 12-input MLP, 40
        # unstable, decided by the MILP in 4.3-9.1 s, open after 30 s of ReLU splitting)
        few = ctx.net.n_inputs <= PORTFOLIO_MAX_INPUTS and p.goal.kind in ("maximize", "minimize")
        most = MILP_MAX_UNSTABLE if few else RELU_MIN_UNSTABLE
        return "relu" if ctx.root_unstable() > most else "milp"
    return "milp" if ctx.root_unstable() <= MILP_MAX_UNSTABLE else "bab"


def _portfolio(ctx: _Ctx, max_nodes: int | None) -> bool:
    """Whether 'auto' runs the MILP and then ReLU splitting (:data:`PORTFOLIO_MAX_INPUTS`):
    where :func:`_method` picks ReLU splitting alone, unless a node budget without a time
    limit asks for ReLU splitting's nodes (the MILP counts none)."""
    if max_nodes is not None and ctx.remaining() is None:
        return False
    return ctx.net.n_inputs <= PORTFOLIO_MAX_INPUTS and _method(ctx, "auto") == "relu"


def _milp_then_relu(
    ctx: _Ctx, sense: float, milp_solver: str, threshold: float | None, *args: Any
) -> dict[str, Any]:
    """:func:`_search` by the MILP for its share of the time (:data:`PORTFOLIO_SHARE`), then,
    unless that decided it, by ReLU splitting from the MILP's point; the bound is the
    tighter of the two (both bound the same problem), the point the better."""
    full, left = ctx.deadline, ctx.remaining()
    share = PORTFOLIO_MAX_SECONDS if left is None else PORTFOLIO_SHARE * left
    share = min(max(share, PORTFOLIO_MIN_SECONDS), PORTFOLIO_MAX_SECONDS)
    ctx.deadline = min(full, time.perf_counter() + share)
    try:
        first = _search(ctx, sense, "milp", milp_solver, threshold, *args)
    finally:
        ctx.deadline = full
    if first["status"] != "time_limit" or ctx.remaining() == 0.0:
        return first
    given = ctx.given
    if first["x"] is not None:
        ctx.given = first["x"]  # at least as good as a given point: the MILP started from it
    try:
        second = _search(ctx, sense, "relu", milp_solver, threshold, *args)
    finally:
        ctx.given = given
    if first["x"] is not None and (second["x"] is None or first["value"] > second["value"]):
        second = {**second, "x": first["x"], "value": first["value"]}
    bounds = [b for b in (first["bound"], second["bound"]) if b is not None]
    second["bound"] = min(bounds) if bounds else None
    if threshold is not None:  # reach and range: reached, below or undecided, never optimal
        if second["status"] == "time_limit" and second["bound"] is not None:
            second["status"] = "below" if second["bound"] < threshold else "time_limit"
        return second
    bound, value = second["bound"], second["value"]
    if second["status"] == "time_limit" and bound is not None:
        second["status"] = "optimal" if ctx.within_tol(bound - value, value) else "time_limit"
    return second


def _check_options(problem, method, milp_solver, batch, branching, alpha_steps, threads, inc):
    """One-line errors for option values the search would only trip over later (or never,
    when another method runs: a misspelt name is still an error)."""
    choices = {
        "method": (method, ("auto", "milp", "bab", "relu")),
        "milp_solver": (milp_solver, ("highs", "scip")),
        "branching": (branching, ("auto", "relaxation", "gradient", "alternate")),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise InversetError(f"unknown {name} {value!r}; use {', '.join(map(repr, allowed))}")

    for name, value, least in (("batch", batch, 1), ("alpha_steps", alpha_steps, 0)):
        if not is_whole(value) or value < least:
            raise InversetError(f"{name} must be a whole number >= {least}, got {value!r}")
    if threads is not None and (not is_whole(threads) or threads < 1):
        raise InversetError(f"threads must be a whole number >= 1 (or None), got {threads!r}")
    if inc is not None and inc[0] is not None:
        size = int(np.asarray(inc[0]).size)
        if size != problem.domain.size:
            raise InversetError(
                f"the incumbent has {size} values but the input has {problem.domain.size}; give "
                "a point of the model's input shape"
            )


def _maximize(ctx: _Ctx, sense: float, *args: Any, **kw: Any) -> dict[str, Any]:
    """:func:`_search`, whose answer's point (and bound, without a cap) is kept
    for a Ctrl-C's answer; a search a Ctrl-C ended ('interrupted') raises KeyboardInterrupt
    for :func:`solve` to answer with everything found so far."""
    r = _search(ctx, sense, *args, **kw)
    # a threshold prunes only boxes bounded below it, so a thresholded search's bound holds
    # on the whole domain (a reach or range decision's); a capped one's does not
    whole = kw.get("cap") is None
    found = r["x"] is not None and r["value"] > -math.inf
    ctx.note(sense, r["x"] if found else None, r["bound"] if whole else None)
    if r["status"] == "interrupted":
        raise KeyboardInterrupt
    return r


def _search(
    ctx: _Ctx,
    sense: float,
    method: str,
    milp_solver: str,
    threshold: float | None,
    progress: bool,
    batch: int,
    threads: int,
    max_nodes: int | None,
    branching: str = "auto",
    alpha_steps: int = 0,
    cap: float | None = None,
) -> dict[str, Any]:
    """Maximize ``sense * target`` (or decide whether it reaches ``threshold``), over the
    inputs with ``sense * target <= cap`` when a ``cap`` is given (a MILP constraint).

    Returns x (flat, float64), value (of sense*target on the chain), bound, status in
    optimal | time_limit | reached | below | infeasible (with a cap: no input is below it) |
    interrupted (a Ctrl-C; the point and bound so far).
    """
    if cap is None and method == "auto" and _portfolio(ctx, max_nodes):
        return _milp_then_relu(
            ctx,
            sense,
            milp_solver,
            threshold,
            progress,
            batch,
            threads,
            max_nodes,
            branching,
            alpha_steps,
        )
    net = ctx.net.select(range(ctx.net.weights[-1].shape[0]))
    net.weights[-1] = net.weights[-1].clone()
    net.biases[-1] = net.biases[-1].clone()
    net.weights[-1][0] *= sense
    net.biases[-1][0] *= sense
    chosen = "milp" if cap is not None else _method(ctx, method)
    use_milp = chosen == "milp"
    top = math.inf if cap is None else cap
    # a MILP with few binaries finds its own optimum at once: sampling is start enough
    small = use_milp and ctx.root_unstable() <= MILP_MAX_UNSTABLE
    x0, v0 = _incumbent(ctx, sense, threshold, steps=0 if small else 50, cap=top)
    if ctx.given is not None:  # a starting point handed in by the caller (e.g. solver auto)
        xg = ctx.given.reshape(1, -1)
        vg = float(ctx.net.forward(xg)[0, 0]) * sense
        if bool(ctx.feasible(xg)[0]) and v0 < vg <= top:
            x0, v0 = xg[0], vg
    ctx.note(sense, x0)
    if threshold is not None and v0 >= threshold:
        ctx.record(sense, v0, None)
        return {"x": x0, "value": v0, "bound": None, "status": "reached", "method": "sampling"}
    if use_milp:
        ctx.method_used.append("milp")
        t = time.perf_counter()
        b = ctx.milp_bounds()  # hidden-layer bounds do not depend on the sense
        hnet, head = ctx.head_net(sense)
        root = min(_root_bound(ctx, sense, b, hnet, head), top)
        ctx.timings["bounds"] = ctx.timings.get("bounds", 0.0) + time.perf_counter() - t
        ctx.record(sense, v0, root)
        if threshold is not None and root < threshold:
            # a bound on an empty domain proves nothing worth saying: with no input found,
            # integer inputs or constraints may leave none at all
            if x0 is None and not ctx.domain_feasible(milp_solver):
                return {"x": None, "value": -math.inf, "bound": None, "status": "infeasible"}
            return {"x": x0, "value": v0, "bound": root, "status": "below", "method": "crown"}
        late = {"x": x0, "value": v0, "bound": root, "method": "crown"}
        if ctx.remaining() == 0.0:
            return {**late, "status": "time_limit"}
        t = time.perf_counter()
        model = ctx.milp(net, ctx.deadline)
        ctx.timings["milp_build"] = ctx.timings.get("milp_build", 0.0) + time.perf_counter() - t
        if model is None or ctx.remaining() == 0.0:
            return {**late, "status": "time_limit"}
        if threshold is not None:
            model.add_output_constraint(0, threshold, math.inf)
        if cap is not None:
            model.add_output_constraint(0, -math.inf, cap)
        warm = None
        if x0 is not None and (threshold is None or v0 >= threshold):
            warm = model.columns(x0.numpy())
        sol = ctx.optimize(model, milp_solver, threads, warm, first_solution=threshold is not None)
        if sol.status == "infeasible":
            # no input reaches the threshold, unless there is no input at all
            if threshold is not None and (x0 is not None or ctx.domain_feasible(milp_solver)):
                return {
                    "x": x0,
                    "value": v0,
                    "bound": threshold,
                    "status": "below",
                    "method": milp_solver,
                    "proof": f"the MILP requiring it is infeasible ({milp_solver})",
                }
            return {
                "x": None,
                "value": -math.inf,
                "bound": None,
                "status": "infeasible",
                "method": milp_solver,
            }
        x, v = x0, v0
        if sol.x is not None:
            xs = _rounded(ctx, sol.x)
            vs = float(net.forward(xs[None])[0, 0])
            if vs > v or x is None:
                x, v = xs, vs
        how = ""
        if threshold is None and sol.status != "interrupted":
            x, v, how = _model_kept(ctx, net, x, v, cap, milp_solver, threads)
        bound = sol.bound if sol.bound is not None else root
        bound = min(bound, root)
        if sol.status == "interrupted":
            st = "interrupted"
        elif threshold is not None:
            st = "reached" if v >= threshold else ("below" if bound < threshold else "")
            # no time limit: the MILP's point meets the threshold only within its feasibility
            # tolerance, the network's value at it falls a rounding short
            st = st or ("time_limit" if sol.status == "time_limit" else "undecided")
        else:
            # optimal as the README defines it: the input found, re-evaluated on the network,
            # within the tolerance of the bound (not the MILP solver's word for its own optimum)
            st = "optimal" if ctx.within_tol(bound - v, v) else "time_limit"
            if how == "breaks":
                st = "breaks"
            elif how == "unkept":  # no time for a point the model keeps them at
                st = "time_limit"
            elif how == "inset" and st == "time_limit" and sol.status != "time_limit":
                st = "inset"
        ctx.record(sense, v, bound)
        return {"x": x, "value": v, "bound": bound, "status": st, "method": milp_solver}
    ctx.method_used.append(chosen)
    need = BAB_MIN_CROWNS * ctx.crown_seconds
    if not ctx.short_of(need):  # the head may take a second extraction: time it too
        hnet, head = ctx.head_net(sense)
        settled = _settled_at_root(ctx, sense, hnet, head, x0, v0, threshold)
        if settled is not None:
            return settled
    if ctx.short_of(need):
        # no time for branch and bound's own root: the root bound, and the time left spent
        # climbing from the incumbent
        root = _target_bound(ctx.root_bounds(), sense)
        if x0 is not None and ctx.remaining():
            row = net.select([0])
            xs, _ = bab.local_ascent(row, x0[None], ctx.lo, ctx.hi, 200, deadline=ctx.deadline)
            v1 = float(row.forward(xs)[0, 0])
            if v1 > v0:
                x0, v0 = xs[0], v1
        ctx.record(sense, v0, root)
        return {"x": x0, "value": v0, "bound": root, "status": "time_limit", "method": chosen}
    start = time.perf_counter() - ctx.t0
    with progress_bar(progress, None, "exact branch and bound") as bar:

        def on_round(best, bound, n_open):
            bar.update(1, best=sense * best, bound=sense * bound, open=n_open)

        common = {
            "head": head,
            "incumbent": (x0, v0) if x0 is not None else None,
            "threshold": threshold,
            "tol": ctx.tol,
            "time_limit": ctx.remaining(),
            "max_nodes": max_nodes,
            "on_round": on_round,
        }
        if chosen == "relu":
            r = relu_bab.maximize(hnet, ctx.lo, ctx.hi, batch=min(batch, 256), **common)
        else:
            r = bab.maximize(
                hnet,
                ctx.lo,
                ctx.hi,
                batch=batch,
                branching=branching,
                alpha_steps=alpha_steps,
                **common,
            )
    ctx.nodes += r.nodes
    ctx.history["time"] += [start + t for t in r.history["time"]]
    ctx.history["best"] += [sense * v for v in r.history["best"]]
    ctx.history["bound"] += [sense * v for v in r.history["bound"]]
    # a search stopped early may hold a looser bound than the root's (CROWN) one
    so_far = ctx.bound_so_far(sense)
    bound = r.bound if so_far is None else min(r.bound, so_far)
    if bound < r.bound:
        ctx.record(sense, r.value, bound)
    return {"x": r.x, "value": r.value, "bound": bound, "status": r.status, "method": chosen}


def _model_kept(
    ctx: _Ctx,
    net: Network,
    x: torch.Tensor | None,
    v: float,
    cap: float | None,
    milp_solver: str,
    threads: int,
) -> tuple[torch.Tensor | None, float, str]:
    """(x, v, how): a MILP search's point ``x`` (value ``v`` of the searched row 0 of
    ``net``) when the model itself keeps the target constraints there (how ''), else the
    optimum of the MILP with each constraint's range inset by the model's rounding (the
    bound stays the first MILP's, on the ranges as asked; how 'inset', or 'late' when that
    MILP stopped at the time limit); 'breaks' when it found no point the model keeps,
    'unkept' when the time ran out first (``x`` is then the point the model breaks them at)."""
    if x is None or ctx.model_keeps(x):
        return x, v, ""
    model = ctx.milp(net, ctx.deadline, inset=True) if ctx.remaining() != 0.0 else None
    if model is None:
        return x, v, "unkept"
    if cap is not None:
        model.add_output_constraint(0, -math.inf, cap)
    sol = ctx.optimize(model, milp_solver, threads)
    if sol.status == "interrupted":
        raise KeyboardInterrupt
    failed = "unkept" if sol.status == "time_limit" else "breaks"
    xs = None if sol.x is None else _rounded(ctx, sol.x)
    if xs is None or not ctx.model_keeps(xs):
        return x, v, failed
    return xs, float(net.forward(xs[None])[0, 0]), "late" if failed == "unkept" else "inset"


def _target_bound(b: Bounds, sense: float) -> float:
    """The bound ``b`` gives ``sense * target`` (the chain's row 0) over the whole box."""
    return float(b.out_hi[0, 0]) if sense > 0 else -float(b.out_lo[0, 0])


def _root_bound(ctx: _Ctx, sense: float, b: Bounds, hnet: Network, head: Head) -> float:
    """The root bound on ``sense * target``: the chain's bounds ``b``, and for a min/max
    target the bound of its rows bounded apart (``head`` over ``hnet``), which is tighter."""
    root = _target_bound(b, sense)
    if head.kind != "leaf":
        hb = crown(hnet, ctx.lo[None], ctx.hi[None], lower=False, deadline=ctx.deadline)
        root = min(root, float(head.apply(hb.out_hi)[0]))
    return root


def _settled_at_root(
    ctx: _Ctx,
    sense: float,
    hnet: Network,
    head: Head,
    x0: torch.Tensor | None,
    v0: float,
    threshold: float | None,
) -> dict[str, Any] | None:
    """The answer when the root's CROWN bound already settles it (a target whose bound the
    incumbent meets, such as ``max(out:0, c)`` with ``c`` above the output's bound, or a
    threshold beyond the bound): branch and bound's own root, with optimized slopes, is
    costly on a convolutional net. None when it does not settle."""
    root = _root_bound(ctx, sense, ctx.root_bounds(), hnet, head)
    if threshold is not None and root < threshold and x0 is not None:
        ctx.record(sense, v0, root)
        return {"x": x0, "value": v0, "bound": root, "status": "below", "method": "crown"}
    if threshold is None and x0 is not None and ctx.within_tol(root - v0, v0):
        ctx.record(sense, v0, root)
        return {"x": x0, "value": v0, "bound": root, "status": "optimal", "method": "crown"}
    return None


def _no_input(ctx: _Ctx) -> str:
    """What an infeasible MILP proves: no input meets the target constraints (a sampler's
    other ranges: an empty intersection), or the domain itself admits none."""
    if ctx.problem.constraints:
        return "no input of the domain meets the target constraints (proven by the MILP solver)"
    return "the domain admits no input (proven by the MILP solver)"


def _decided(ctx: _Ctx, side, sense: float, end: float, asked: str, args, kw, timings, info):
    """The answer when one side of a reach/range decision settles it (None when it does not):
    no input in the domain at all, or proven none at or beyond ``end`` (``sense`` 1: up to z1,
    from the maximum; -1: down to z2, from the minimum). A reach goal goes on to the nearest
    input."""
    if side["status"] == "infeasible":
        return _result(ctx, None, None, "infeasible", _no_input(ctx), None, timings, info, side)
    if side["status"] != "below":
        return None
    reach = ctx.problem.goal.kind == "reach"
    b = sense * side["bound"] + 0.0  # never -0.0
    name = asked if reach else shown(end)
    word, cmp, verb = ("most", "<", "reaches") if sense > 0 else ("least", ">", "goes down to")
    msg = (
        f"unreachable: the target is at {word} {shown_apart(b, end)} {cmp} {name} on the "
        "whole domain (proven)"
    )
    if "proof" in side:
        msg = f"unreachable: no input {verb} {name}; {side['proof']}"
    if reach:
        ctx.proof = (msg, b)
        return _nearest(ctx, side, sense, msg, args, kw, timings, info)
    # a range decision stops at the proof (certify and VNN-LIB checks ask nothing more): its
    # point is the best the decision met, not a searched nearest
    if side["x"] is not None:
        msg += f"; {POINT_NOTE}"
    return _result(ctx, side["x"], None, "unreachable", msg, b, timings, info, side)


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_evals: int | None = None,
    progress: bool = False,
    method: str = "auto",
    milp_solver: str = "highs",
    tol: float = 1e-4,
    batch: int = 512,
    threads: int | None = None,
    branching: str = "auto",
    incumbent: tuple[Any, float] | None = None,
    alpha_steps: int = 0,
) -> Result:
    """Certified answer for a piecewise-linear network over a bounded domain.

    ``method``: 'auto' (on plain boxes: branch and bound on input boxes with at most 8
    inputs and more than 24 unstable ReLUs at the root; with 9 to 64 inputs, a maximum or
    minimum with more than 24 unstable ReLUs gets the MILP for a share of the time, then
    ReLU-phase splitting ('milp+relu'), and a reach/range decision the MILP up to 64 unstable
    ReLUs, then the same; with more than 64 inputs, ReLU-phase splitting past 64 unstable
    ReLUs; else the MILP), 'bab' (input splits), 'relu' (ReLU-phase
    splits, :mod:`inverset.exact.relu_bab`) or 'milp'. ``milp_solver``:
    'highs' or 'scip'. ``tol``: a maximum is 'optimal' once bound - value <= max(tol, tol *
    |value|). ``max_evals`` caps the number of branch-and-bound boxes. ``batch``: boxes split
    per round. ``branching``: input split rule of branch and bound ('auto', 'relaxation',
    'gradient', 'alternate').
    ``alpha_steps``: optimized-slope (alpha-CROWN) steps on every branch-and-bound box's
    bound: tighter bounds (10-20% on ACAS Xu boxes) at a higher cost per box; 0 (default) =
    plain CROWN. On ACAS Xu, 3 steps halved the hardest instance (4_2 prop 2: 97 s -> 50 s)
    but slowed most others, so it is an option, not the default.
    ``incumbent``: an (x, value) start point (x in the model's input shape) used when better
    than the solver's own. ``threads``: torch and MILP solver threads during the solve; None
    (default) = torch's own count. Batched bound passes gain from more cores (2 cores against
    1: ACAS Xu's 186 instances 105 s vs 159 s, MNIST-FC 256x2's 29 decided 19 s vs 31 s), and
    so can HiGHS (a 12-20-20-1 MLP's reach 6.7-7.1 s vs 9.2-9.9 s); the smallest MILPs neither
    gain nor lose. On a machine busy with other work, give 1: the diabetes MLP's maximum took
    9-16 ms on one thread and 45-48 ms on two while both cores ran other jobs.
    """
    _check_options(problem, method, milp_solver, batch, branching, alpha_steps, threads, incumbent)
    threads = torch.get_num_threads() if threads is None else threads
    with torch_threads(threads):
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        if not problem.domain.bounded:
            raise InversetError(
                "the exact solver needs a bounded box on every input; "
                "give --box LO,HI or a box file"
            )
        try:
            net = compile_problem(problem)
        except KeyboardInterrupt:
            timings["total"] = time.perf_counter() - t0
            return Result(
                x=None,
                value=None,
                status="interrupted",
                message="interrupted while compiling the network, before any search",
                nfev=problem.nfev,
                solver="exact",
                timings=timings,
            )
        timings["compile"] = time.perf_counter() - t0
        ctx = _Ctx(problem, net, t0, time_limit, tol, seed)
        if incumbent is not None and incumbent[0] is not None:
            ctx.given = torch.as_tensor(np.asarray(incumbent[0]), dtype=torch.float64).reshape(-1)
        args = (method, milp_solver)
        kw = {
            "progress": progress,
            "batch": batch,
            "threads": threads,
            "max_nodes": max_evals,
            "branching": branching,
        }
        kw["alpha_steps"] = alpha_steps
        info: dict[str, Any] = {"widths": net.widths(), "inputs": net.n_inputs, "tol": tol}

        try:
            return _answer(ctx, args, kw, timings, info)
        except KeyboardInterrupt:
            return _interrupted(ctx, timings, info)


def _answer(ctx: _Ctx, args: tuple, kw: dict[str, Any], timings, info) -> Result:
    """The solve's answer: the certified optimum, or the reachability decision and witness."""
    goal = ctx.problem.goal
    threads = kw["threads"]
    if goal.kind in ("maximize", "minimize"):
        sense = float(goal.sense)
        r = _maximize(ctx, sense, *args, threshold=None, **kw)
        timings["total"] = time.perf_counter() - ctx.t0
        if r["status"] == "infeasible":
            return _result(
                ctx,
                None,
                None,
                "infeasible",
                _no_input(ctx),
                None,
                timings,
                info,
                r,
            )
        if r["x"] is None:  # stopped before any input of the domain was found
            b = None if r["bound"] is None else sense * r["bound"]
            proven = "" if b is None else f"; certified bound {b:.6g}"
            return _result(
                ctx,
                None,
                None,
                "time_limit",
                f"stopped at the time limit before any feasible input was found{proven}",
                b,
                timings,
                info,
                r,
            )
        x = ctx.snap(r["x"])
        value = float(ctx.model_values(x[None])[0])
        bound, gap = clamped_bound(sense, r["bound"], value)
        st = r["status"] if r["status"] in STOPS else "optimal"
        if st == "optimal" and not ctx.within_tol(gap - ctx.ulps(value), value):
            # the network's optimum, its input rounded to the model's precision and evaluated
            # by the model, is further from the bound than the tolerance (and the model's own
            # rounding of its value): not certified
            st = "rounded"
        word = "max" if sense > 0 else "min"
        msg = (
            f"certified {word}imum {value:.6g} (bound {bound:.6g}, gap {gap:.2g}, {r['method']})"
            if st == "optimal"
            else f"{STOPS[st]}: best {value:.6g}, certified {word} bound "
            f"{bound:.6g} (gap {gap:.3g})"
        )
        st = {"incomplete": "converged", "rounded": "converged", "inset": "converged"}.get(st, st)
        st = "not_found" if st == "breaks" else st
        return _result(ctx, x, value, st, msg, bound, timings, info, r, gap)

    # reach / range: decide reachability, then find a witness inside
    # a reach goal is met within its tolerance: the range it asks for
    rt = _reach_tol(goal)
    z1, z2 = (goal.value - rt, goal.value + rt) if goal.kind == "reach" else (goal.low, goal.high)
    # the bounds hold for the network in exact arithmetic, the model computes in its own
    # precision (float32: its value may pass the float64 optimum by a few units in the last
    # place): decide 'unreachable' only beyond that margin (the optimum stays reachable)
    # beyond the rounding the model showed on the check's points, too (sums of large terms)
    pad1, pad2 = ctx.pad(z1), ctx.pad(z2)
    asked = _asked(goal)
    anywhere = {"x": None, "value": math.inf, "bound": None, "status": "reached"}
    ctx.side = 1.0
    hi_side = _maximize(ctx, 1.0, *args, threshold=z1 - pad1, **kw) if z1 > -math.inf else anywhere
    done = _decided(ctx, hi_side, 1.0, z1, asked, args, kw, timings, info)
    if done is not None:
        return done
    ctx.side = -1.0
    lo_side = _maximize(ctx, -1.0, *args, threshold=-z2 - pad2, **kw) if z2 < math.inf else anywhere
    done = _decided(ctx, lo_side, -1.0, z2, asked, args, kw, timings, info)
    if done is not None:
        return done
    pts = [r["x"] for r in (hi_side, lo_side) if r["x"] is not None]
    stops = [r["status"] for r in (hi_side, lo_side) if r["status"] in STOPS]
    if stops:
        why = STOPS[stops[0]]
        st = "not_found" if stops[0] in ("incomplete", "undecided") else stops[0]
        ctx.side = 1.0 if hi_side["status"] in STOPS else -1.0
        bound, proven = _side_bound(ctx)
        msg = f"{why} before reachability was decided{proven}"
        return _closest(ctx, pts, st, msg, timings, info, bound)
    x, why = _witness(ctx, hi_side["x"], lo_side["x"], z1, z2, args[1], threads)
    # the sides were searched to the range's ends less a rounding margin: whether their points
    # reach the ends themselves
    both = hi_side["value"] >= z1 and -lo_side["value"] <= z2
    if why == "infeasible":
        msg = (
            f"unreachable: the target reaches values on both sides of {asked} but none "
            f"{'at' if goal.kind == 'reach' else 'inside'} it; the MILP requiring it is "
            f"infeasible ({args[1]})"
            if both
            else f"unreachable: no input has the target {'at' if goal.kind == 'reach' else 'in'}"
            f" {asked}; the MILP requiring it is infeasible ({args[1]})"
        )
        if goal.kind == "reach":
            ctx.proof = (msg, None)
            return _nearest_between(ctx, z1, z2, pts, msg, args, kw, timings, info)
        # the nearer of the two sides' points (as a range decided by one side returns its)
        x, value = _best_of(ctx, pts)
        msg += f"; {POINT_NOTE}" if x is not None else ""
        return _result(ctx, x, value, "unreachable", msg, None, timings, info, {})
    if x is None and not both and why != "time_limit":
        return _closest(
            ctx,
            pts,
            "not_found",
            f"the target comes within the model's rounding of {asked}, but no input was found "
            "inside it, and the bounds cannot tell at this precision whether one exists "
            "(numerical limits)",
            timings,
            info,
        )
    if x is None:
        connected = not (ctx.problem.domain.integer or ctx.problem.constraints)
        return _closest(
            ctx,
            pts,
            "time_limit" if why == "time_limit" else "not_found",
            f"the target takes values on both sides of {asked}"
            + (
                " (so, on this connected domain, inside it too)"
                if connected
                else ", but the integer inputs or target constraints may skip the range"
            )
            + (
                "; the time limit came before a witness was found"
                if why == "time_limit"
                else "; no witness inside it was pinned down (numerical limits)"
            ),
            timings,
            info,
        )
    return _closest(
        ctx,
        [x, *pts],
        "found",
        f"witness found: {'the value' if goal.kind == 'reach' else 'the range'} {asked} "
        "is reachable",
        timings,
        info,
    )


#: the search for the nearest point after an unreachability proof gets at most the time the
#: proof took times this, plus NEAREST_EXTRA seconds (within the time limit): the proof is the
#: answer, and certifying the optimum can take far longer (medium nets: not in 10 minutes)
NEAREST_SHARE = 1.0
NEAREST_EXTRA = 1.0
#: what the message says of that time when the nearest is not certified
NEAREST_TIME = (
    "the time the proof took"
    + (f" times {NEAREST_SHARE:g}" if NEAREST_SHARE != 1 else "")
    + f", plus {NEAREST_EXTRA:g} s"
)


def _nearest_deadline(ctx: _Ctx) -> None:
    """Bound the search for the nearest point after a proof (NEAREST_SHARE, NEAREST_EXTRA)."""
    now = time.perf_counter()
    ctx.deadline = min(ctx.deadline, now + NEAREST_SHARE * (now - ctx.t0) + NEAREST_EXTRA)


def _nearest(ctx: _Ctx, side, sense, msg, args, kw, timings, info) -> Result:
    """A reach goal proven unreachable from one side: the inputs nearest its value are that
    side's optimum (the max when the value is above every output), so search for it, warm
    started at the point the proof left, for a bounded time (NEAREST_SHARE). The answer stays
    'unreachable' with the certified bound; ``value`` is the certified optimum when that time
    allowed, else the best point found (and the message says which)."""
    if side["x"] is not None:
        ctx.given = side["x"]
    _nearest_deadline(ctx)
    full = _maximize(ctx, sense, *args, threshold=None, **kw)
    x, best = side["x"], side["value"]
    if full["x"] is not None and (x is None or full["value"] > best):
        x, best = full["x"], full["value"]
    bound = side["bound"] if full["bound"] is None else min(side["bound"], full["bound"])
    word = "maximum" if sense > 0 else "minimum"
    value = None
    if x is not None:
        value = float(ctx.model_values(ctx.snap(x)[None])[0])
        done = full["status"] == "optimal"
        msg += (
            f"; nearest: the certified {word} {value:.6g}"
            if done
            else f"; nearest found {value:.6g} (the {word} is not certified: the search for it "
            f"is given {NEAREST_TIME})"
        )
    return _result(ctx, x, value, "unreachable", msg, sense * bound, timings, info, full)


def _nearest_between(ctx: _Ctx, z1, z2, ends, msg, args, kw, timings, info) -> Result:
    """A reach value the target skips (integer inputs or target constraints: values on both
    sides of ``[z1, z2]``, none inside, proven): the nearest inputs are those with the largest
    value below ``z1`` or the smallest above ``z2``, each the optimum of a MILP with the target
    capped, searched for the time the proof took plus NEAREST_EXTRA s (within the time limit).
    ``ends`` are points known on either side. The answer stays 'unreachable'; ``bound`` is the
    certified bound of the returned point's side (no value lies between it and the reach
    value), and the message says whether the nearest is certified."""
    _nearest_deadline(ctx)
    value = ctx.problem.goal.value
    sides = {  # side: (its search, the sense it maximized)
        "below": (_maximize(ctx, 1.0, *args, threshold=None, cap=z1, **kw), 1.0),
        "above": (_maximize(ctx, -1.0, *args, threshold=None, cap=-z2, **kw), -1.0),
    }
    # per side, the proven bound on its value nearest the reach value (None: none proven),
    # and the certified least distance from the reach value to any value there
    bounds: dict[str, float | None] = {}
    least: dict[str, float] = {}
    for name, (r, sense) in sides.items():
        if r["status"] == "infeasible":  # no input on this side at all
            bounds[name], least[name] = None, math.inf
        else:
            bounds[name] = None if r["bound"] is None else sense * r["bound"]
            least[name] = 0.0 if r["bound"] is None else max(sense * (value - bounds[name]), 0.0)
    found = [r["x"] for r, _ in sides.values()] + list(ends)
    pts = [ctx.snap(x) for x in found if x is not None]
    vals = ctx.model_values(torch.stack(pts))
    i = int(np.argmin(np.abs(vals - value)))
    x, v = pts[i], float(vals[i])
    side = "below" if v < value else "above"
    if abs(v - value) <= min(least.values()) + ctx.tol * max(1.0, abs(v)):
        msg += f"; nearest: the certified nearest value {v:.6g} ({side} it)"
    else:
        msg += (
            f"; nearest found {v:.6g} ({side} it; not certified: the search for it is given "
            f"{NEAREST_TIME})"
        )
    return _result(ctx, x, v, "unreachable", msg, bounds[side], timings, info, {})


def _witness(ctx: _Ctx, xa, xb, z1, z2, milp_solver, threads) -> tuple[torch.Tensor | None, str]:
    """A point with target in [z1, z2] given f(xa) >= z1 and f(xb) <= z2 (bisection on the
    segment for convex domains; a MILP feasibility problem when inputs are integer or target
    constraints apply), as (x, ''), or (None, why): 'infeasible' (the MILP proves that no input
    has its target in the range), 'time_limit' or 'numerical'."""
    goal = ctx.problem.goal

    def inside(x: torch.Tensor) -> bool:
        v = ctx.model_values(ctx.snap(x)[None])
        ok = bool(goal.satisfied(torch.as_tensor(v), tol=_reach_tol(goal))[0])
        return ok and ctx.model_keeps(x)

    ends = [x for x in (xa, xb) if x is not None]
    for x in ends:
        if inside(x):
            return x, ""
    if len(ends) < 2:
        return None, "numerical"
    if ctx.problem.domain.integer or ctx.problem.constraints:
        # the range widened by the model's own rounding (its infeasibility is the proof: the
        # float32 model may reach a range the exact network misses by a rounding, 66669 did);
        # the range as asked; when the MILP's point misses it or a target constraint on the
        # model's own float arithmetic, the constraints' ranges inset by a rounding margin,
        # then the range too (by at most a quarter: a reach goal's is only its tolerance wide)
        pad = 1e-6 * (1.0 + max(abs(z) for z in (z1, z2) if math.isfinite(z)))
        pad = min(pad, 0.25 * (z2 - z1))
        w1 = z1 - ctx.pad(z1) if math.isfinite(z1) else z1
        w2 = z2 + ctx.pad(z2) if math.isfinite(z2) else z2
        tries = [(w1, w2, False), (z1, z2, False)]
        if ctx.problem.constraints:
            tries.append((z1, z2, True))
        if z1 + pad < z2 - pad:
            tries.append((z1 + pad, z2 - pad, True))
        for k, (lo, hi, inset) in enumerate(tries):
            model = ctx.milp(deadline=ctx.deadline, inset=inset)
            if model is None:
                return None, "time_limit"
            model.add_output_constraint(0, lo, hi)
            sol = model.solve(milp_solver, ctx.remaining(), first_solution=True, threads=threads)
            if sol.status == "interrupted":  # its point, if any, may be a witness: kept
                ctx.note(1.0, None if sol.x is None else _rounded(ctx, sol.x))
                raise KeyboardInterrupt
            if sol.status == "infeasible" and k == 0:
                return None, "infeasible"
            if sol.status == "infeasible":
                continue
            if sol.x is None:
                return None, "time_limit"
            x = _rounded(ctx, sol.x)
            if inside(x):
                return x, ""
        return None, "numerical"
    if not (math.isfinite(z1) and math.isfinite(z2)):
        return None, "numerical"
    mid = (z1 + z2) / 2
    a, b = xa, xb  # f(a) > z2 >= z1 > f(b) here
    for _ in range(80):
        m = ctx.snap((a + b) / 2)  # as the answer holds it: in the model's dtype and domain
        v = float(ctx.model_values(m[None])[0])
        if bool(
            goal.satisfied(torch.tensor([v], dtype=torch.float64), tol=_reach_tol(goal))[0]
        ) and (goal.kind == "reach" or abs(v - mid) <= 0.25 * (z2 - z1) or _ == 79):
            return m, ""
        if v > mid:
            a = m
        else:
            b = m
    return None, "numerical"


def _rounded(ctx: _Ctx, x: np.ndarray) -> torch.Tensor:
    """A MILP solution's input (flat) with its integer features rounded."""
    x = torch.as_tensor(x, dtype=torch.float64)
    if ctx.problem.domain.integer:
        idx = list(ctx.problem.domain.integer)
        x[idx] = x[idx].round()
    return x


def _reach_tol(goal) -> float:
    return 1e-6 * max(1.0, abs(goal.value)) if goal.kind == "reach" else 0.0


def _best_of(ctx: _Ctx, pts) -> tuple[torch.Tensor | None, float | None]:
    """The point of ``pts`` (flat; None entries skipped) best for the goal on the model
    itself, of those the model keeps within the target constraints when any, and its model
    value; (None, None) for no point."""
    pts = [ctx.snap(p) for p in pts if p is not None]
    pts = [p for p in pts if ctx.model_keeps(p)] or pts
    if not pts:
        return None, None
    vals = ctx.model_values(torch.stack(pts))
    i = int(np.argmin(ctx.problem.goal.loss(torch.as_tensor(vals)).numpy()))
    return pts[i], float(vals[i])


def _closest(ctx, pts, status, message, timings, info, bound=None) -> Result:
    x, value = _best_of(ctx, pts)
    return _result(ctx, x, value, status, message, bound, timings, info, {})


def _side_bound(ctx: _Ctx) -> tuple[float | None, str]:
    """The bound proven so far on the side an undecided reach or range was searching
    (``ctx.side``: 1 its maximum, -1 its minimum), in the target's sign, and the words that
    say it ('' when none is proven): how close the proof came."""
    b = ctx.bound_so_far(ctx.side)
    if b is None:
        return None, ""
    bound = ctx.side * b + 0.0
    word = "maximum is at most" if ctx.side > 0 else "minimum is at least"
    return bound, f"; proven so far: the target's {word} {bound:.6g}"


def _asked(goal) -> str:
    """What messages call a reach or range goal: its value, or its ends."""
    if goal.kind == "reach":
        return shown(goal.value)
    return f"[{shown(goal.low)}, {shown(goal.high)}]"


def shown(v: float) -> str:
    """``v`` as a user wrote it: ``%g`` when that is exact, else the shortest exact form
    (a threshold 6.1780678 is not "6.17807")."""
    short = f"{v:g}"
    return short if float(short) == v else repr(float(v))


def shown_apart(v: float, ref: float) -> str:
    """``v`` to 6 significant digits, or as many more as tell it apart from ``ref`` (a value
    just past a threshold must not read as the threshold)."""
    for digits in range(6, 18):
        text = f"{v:.{digits}g}"
        if float(text) != ref and float(f"{ref:.{digits}g}") != float(text):
            return text
    return repr(float(v))


def _interrupted(ctx: _Ctx, timings, info) -> Result:
    """The answer to a Ctrl-C: the best input found so far (:meth:`_Ctx.note`), re-evaluated
    on the model, and for a maximum or minimum the bound proven so far (a search's, else the
    root's CROWN bound; None before either). A reach or range goal decided before the Ctrl-C
    keeps its answer, as when a limit stops the search: a point found inside is 'found', a
    proof 'unreachable' (the search for the nearest input was what the Ctrl-C stopped)."""
    goal = ctx.problem.goal
    x, value = _best_of(ctx, ctx.found)
    if goal.kind in ("maximize", "minimize"):
        sense = float(goal.sense)
        word = "max" if sense > 0 else "min"
        b = ctx.bound_so_far(sense)
        if b is None:  # the root's bounds, with interval bounds for the hidden layers: at once
            ctx.deadline = min(ctx.deadline, time.perf_counter())
            ctx.root_bounds()
            b = ctx.bound_so_far(sense)
        if value is not None and not ctx.history["time"]:
            ctx.record(sense, sense * value, b)  # the state the Ctrl-C left
        if value is None:
            bound = None if b is None else sense * b + 0.0  # never -0.0
            proven = "" if bound is None else f"; certified {word} bound {bound:.6g}"
            msg = f"interrupted before any feasible input was found{proven}"
            return _result(ctx, None, None, "interrupted", msg, bound, timings, info, {})
        if b is None:
            msg = f"interrupted: best {value:.6g}, no bound proven yet"
            return _result(ctx, x, value, "interrupted", msg, None, timings, info, {})
        bound, gap = clamped_bound(sense, b, value)
        msg = f"interrupted: best {value:.6g}, certified {word} bound {bound:.6g} (gap {gap:.3g})"
        return _result(ctx, x, value, "interrupted", msg, bound, timings, info, {}, gap)
    if ctx.proof is not None:
        msg, bound = ctx.proof
        near = "" if value is None else f" (nearest so far {value:.6g})"
        msg += f"; the search for the nearest input was interrupted{near}"
        return _result(ctx, x, value, "unreachable", msg, bound, timings, info, {})
    asked = _asked(goal)
    if (
        value is not None
        and bool(
            goal.satisfied(torch.tensor([value], dtype=torch.float64), tol=_reach_tol(goal))[0]
        )
        and ctx.model_keeps(x)
    ):
        msg = f"witness found: {asked} is reachable (the search was then interrupted)"
        return _result(ctx, x, value, "found", msg, None, timings, info, {})
    near = "" if value is None else f"; closest value found {value:.6g}"
    bound, proven = _side_bound(ctx)
    msg = f"interrupted before reachability of {asked} was decided{near}{proven}"
    return _result(ctx, x, value, "interrupted", msg, bound, timings, info, {})


def _result(ctx, x, value, status, message, bound, timings, info, r, gap=None) -> Result:
    p = ctx.problem
    timings.update(ctx.timings)
    timings["total"] = time.perf_counter() - ctx.t0
    if x is not None:
        x = ctx.snap(x)
    if x is not None and value is None:
        value = float(ctx.model_values(x[None])[0])
    # + 0.0: no -0.0 (of a negated target) in what the user reads
    xm = None if x is None else x.reshape(p.domain.shape).to(p.dtype).cpu().numpy() + 0.0
    bound = None if bound is None else bound + 0.0
    info = {**info, "method": "+".join(ctx.method_used) or r.get("method", ""), "nodes": ctx.nodes}
    if ctx._root is not None:  # what auto's choice reads (computed by every method but bab's)
        info["unstable"] = ctx._root.unstable()
    h = ctx.history
    if h["time"] and value is not None and h["best"][-1] != value:
        # the search's values are the network's in float64; the answer is the model's own
        # evaluation (float32): it ends the history, as every solver's does (sense 1: the
        # value and bound are in the target's sign already)
        ctx.record(1.0, value, h["bound"][-1] if bound is None else bound)
    return Result(
        x=xm,
        value=value,
        status=status,
        message=message,
        xs=None if xm is None else xm[None],
        values=None if value is None else np.array([value]),
        bound=bound,
        gap=gap,
        nfev=p.nfev,
        solver="exact",
        history=ctx.history if ctx.history["time"] else {},
        timings=timings,
        info=info,
    )
