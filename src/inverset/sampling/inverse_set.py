"""Sampling the inverse set of a neuron (Hada & Carreira-Perpiñán), with intersections.

The inverse set of a target ``f`` is every valid input with ``z1 <= f(x) <= z2``. It is
sampled in two phases, both on the search variable ``z`` of the space (the input itself in its
box, or the code of a generator ``x = G(z)``):

1. **Seeds** (paper eq. 8-9). ``K`` walkers maximize their summed pairwise squared distance in
   the encoder space ``E`` subject to the range constraints, by a bound-constrained augmented
   Lagrangian with slacks: per outer iteration ``inner_steps`` gradient steps move the walkers,
   the slacks taking their closed form ``s = max(0, c - lambda/mu)`` at every step (the paper
   updates them once per round of its coordinate descent); then ``lambda <- max(lambda - mu c,
   0)`` and ``mu <- alpha mu``. Seeding stops once every walker
   lies in the range.
2. **Sampling walk** (eq. 10-11). With ``lambda*``, ``mu*`` frozen, each iteration takes ONE
   gradient step of the sampling Lagrangian (pairwise diversity within the walkers plus distance
   to the accepted samples) and accepts every walker that lies in the range.

Adaptations: the paper's constraint ``z2 - f <= eps`` is one-sided (its ``z2`` is the neuron's
maximum). Here every range gives one constraint per finite side, ``(f - z1)/w - m >= 0`` and
``(z2 - f)/w - m >= 0`` with ``w = z2 - z1`` and margin ``m`` (default 1/4, the two-sided
analogue of the paper's ``eps0 = eps/2``), so the walk aims at the middle of the range while
acceptance uses the true range ``[z1, z2]``. Constraints are divided by ``w`` and E-distances by
the spread of ``E`` at random points, so that ``mu0 = 10`` means the same on every model. The
distance to all accepted samples costs O(K) per step, not O(n K), through their centroid:
``sum_y ||e - e_y||^2 = M ||e - mean_y e_y||^2 + const``; the term is used without the factor
``M`` (the number of samples), so its weight does not grow as samples accumulate.

Improvements over the paper (each measured in ``benchmarks/inverse_set.py``): seeding steps
with Adam (scale-free per coordinate; ``optimizer='sgd'`` is the paper's plain step), while the
walk keeps the paper's plain gradient step, normalized per walker (``walk_optimizer='sgd'``,
``step`` 0.025 of the box width; on the digits benchmark an Adam walk gave less diverse
samples); seeding stops at the first inner step where all K walkers lie in the range, and a
walker stuck outside for a whole outer iteration (a local optimum below the range) is redrawn;
a walker that produced no new sample for ``restart`` steps restarts at a random accepted
sample, and one that met another walker (both then take the same steps) at once; no point within
``COPY_TOL`` of an accepted sample is accepted (a walker pinned at a corner of the box, or two
walkers merged), nor a point within ``spacing`` (half) a step of one of its walker's RECENT last
samples: the normalized step of a walker held between the range and the diversity push goes
back and forth, and the paper's rule (every feasible walker, every step) took each return as a
new sample (86% of 200 samples within a quarter step of another on a 16-input MLP);
``diversity='log'`` (mean log distance to the nearest samples) is offered beside the paper's
squared distances.

Every returned sample is re-evaluated on the model from scratch (in chunks, as the run goes,
so that the time limit covers it; alone when its chunk's value lies within rounding reach of a
range end) and lies in all its ranges and in the domain.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inverset.checks import is_number, is_whole, two_numbers
from inverset.domain import Box, unit_widths
from inverset.errors import InversetError, model_backward, reworded
from inverset.goal import Goal
from inverset.model import LeakyReLUs, fingerprint, forward, leaky_slopes, to_numpy
from inverset.problem import Problem
from inverset.progress import progress_bar, sigterm_as_interrupt
from inverset.result import WRITE_ERRORS, Result, SaveError, write_fix
from inverset.sampling.encoders import Encoder, make_encoder
from inverset.sampling.store import SampleStore
from inverset.solvers import check_time_limit, unbounded
from inverset.space import Direct, Latent, Space
from inverset.zoo import MAX_SEARCH_SEED, check_seed

#: a walker's new sample must lie ``spacing`` steps away from each of this many of its own
#: last samples (a walker circling a point makes near-copies every other step, not only
#: consecutive ones)
RECENT = 8
#: the exact reachability check is skipped with less time left than this (it needs about a
#: second to compile and bound the model, which would overrun the time limit)
EXACT_MIN_SECONDS = 2.0
#: two samples closer than this (root mean square difference per coordinate, in units of the
#: box width) are copies: 84 float32 ulps at the box's far end, far above the rounding of one
#: point (unit coordinates recomputed from a saved input differ by a few ulps) and 2500 times
#: below a walk step (0.025)
COPY_TOL = 1e-5
#: a verified sample whose chunk value lies within this many ulps (of the model's dtype) of a
#: range end, relative to that end or the value, is evaluated again alone: a float32 model's
#: batch sums round differently (4 ulps apart on inputs near 1e4); 64 leaves a margin of 16
#: while a half-precision model's samples are not all evaluated again
REACH_ULPS = 64
#: samples of the first verified chunk evaluated alone to measure how far chunk values stray
GAP_PROBES = 8
#: diversity (mean pairwise distance) of more samples than this is estimated on this many of
#: them, drawn at random: all pairs of 20,000 samples would take longer than the run
DIVERSITY_PAIRS_OF = 2000
#: accepted samples are re-evaluated from scratch (verified) in chunks of this many, during
#: the run: the end of a run verifies at most one chunk, within the time limit
VERIFY_CHUNK = 1024
#: held back from a time limit for the work after the search (messages, result assembly),
#: besides the measured costs of verifying and of the diversity estimate
FINISH_SECONDS = 0.1
#: seconds per pair of samples and feature of the diversity estimate (float64 cdist, one core)
PAIR_SECONDS = 6e-11
#: compressed writing speed assumed for the final save to ``out`` (np.savez_compressed of
#: float data: about 25 MB/s measured on one core)
SAVE_BYTES_PER_SECOND = 15e6


class _Rows:
    """Rows appended in batches, in a buffer that doubles when full (no copy of every row at
    every append)."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None
        self.n = 0

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.detach()
        if self.buf is None or self.n + len(rows) > len(self.buf):
            cap = max(64, 2 * (self.n + len(rows)))
            buf = rows.new_empty((cap, *rows.shape[1:]))
            if self.buf is not None:
                buf[: self.n] = self.buf[: self.n]
            self.buf = buf
        self.buf[self.n : self.n + len(rows)] = rows
        self.n += len(rows)

    @property
    def rows(self) -> torch.Tensor | None:
        return None if self.buf is None else self.buf[: self.n]

    def __len__(self) -> int:
        return self.n


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 at least (a half-precision model's features)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class _Stop(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _parse_ranges(
    target: str, rng: Sequence[float], intersect: Sequence[tuple[str, float, float]]
) -> tuple[float, float, list[tuple[str, float, float]]]:
    ends = two_numbers(rng)
    if ends is None:
        raise InversetError(f"range must be two numbers (z1, z2), got {rng!r}")
    z1, z2 = ends
    cons = []
    for item in intersect:
        if not isinstance(item, Sequence) or len(item) != 3:
            raise InversetError(
                f"each intersection is (target, z1, z2), e.g. ('fc1:3', 0.5, 1.0); got {item!r}"
            )
        cons.append((item[0], float(item[1]), float(item[2])))
    for t, lo, hi in [(target, z1, z2), *cons]:
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise InversetError(
                f"the range of {t} must have z1 < z2 (got {lo:g}, {hi:g}); an inverse set needs "
                "a range of positive width"
            )
    return z1, z2, cons


def _check_values(o: dict[str, Any], flags: dict[str, Any]) -> None:
    """One-line errors for sampler options the run cannot use, raised before any work is done
    (a bad ``max_steps`` would otherwise surface only after the whole seeding phase)."""
    whole = {
        "n": 1,
        "K (walkers)": 1,
        "neighbours": 1,
        "inner_steps": 1,
        "max_outer": 1,
        "restart": 0,
        "max_steps": 0,
    }
    for name, least in whole.items():
        v = o[name.split()[0]]
        if name == "max_steps" and v is None:
            continue
        if not is_whole(v) or v < least:
            raise InversetError(f"{name} must be a whole number >= {least}, got {v!r}")
    for name in ("mu0", "alpha", "lr", "step", "exact_time"):
        v = o[name]
        if not is_number(v) or not 0 < v < math.inf:
            raise InversetError(f"{name} must be a positive number, got {v!r}")
    for name in ("weight", "spacing"):
        if not is_number(o[name]) or not 0 <= o[name] < math.inf:
            raise InversetError(f"{name} must be a finite number >= 0, got {o[name]!r}")
    for name in ("margin", "walk_margin"):
        v = o[name]
        if name == "walk_margin" and v is None:
            continue
        if not is_number(v) or not 0 <= v < 0.5:
            raise InversetError(
                f"{name} is a fraction of the range per side in [0, 0.5), got {v!r}"
            )
    for name, v in flags.items():
        if not isinstance(v, bool | np.bool_):
            raise InversetError(f"{name} must be True or False, got {v!r}")
    for name, choices in (
        ("optimizer", ("adam", "sgd")),
        ("walk_optimizer", ("adam", "sgd")),
        ("diversity", ("sq", "log")),
        ("memory", ("all", "last")),
    ):
        if o[name] not in choices:
            raise InversetError(
                f"{name} must be {' or '.join(map(repr, choices))}, got {o[name]!r}"
            )


def sample(
    model: nn.Module,
    target: str,
    range: tuple[float, float],
    n: int = 500,
    domain: Box | None = None,
    *,
    space: Space | None = None,
    encoder: str | nn.Module | None = None,
    intersect: Sequence[tuple[str, float, float]] = (),
    K: int = 10,
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    time_limit: float | None = None,
    progress: bool = False,
    input_shape: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    mu0: float = 10.0,
    alpha: float = 10.0,
    inner_steps: int = 100,
    max_outer: int = 8,
    lr: float = 0.05,
    step: float = 0.025,
    optimizer: str = "adam",
    walk_optimizer: str = "sgd",
    margin: float = 0.25,
    memory: str = "all",
    walk_margin: float | None = None,
    diversity: str = "sq",
    neighbours: int = 10,
    weight: float = 1.0,
    restart: int = 20,
    spacing: float = 0.5,
    max_steps: int | None = None,
    seed_restarts: bool = True,
    exact_check: bool = True,
    exact_time: float = 30.0,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> Result:
    """``n`` diverse inputs whose ``target`` lies in ``range`` (and every ``intersect`` range).

    ``space``: None searches the inputs in ``domain``; ``Latent(G, dim)`` searches a generator's
    code. ``encoder``: where diversity is measured (None = the model's first hidden block,
    'identity', a layer name, or a module). ``K`` walkers; seeding uses ``mu0``, ``alpha``,
    ``inner_steps`` per outer iteration (at most ``max_outer``), Adam step ``lr`` (relative to
    the box width); the walk takes single steps of size ``step`` (``walk_optimizer``: plain
    normalized step or Adam). A walker's point is a new sample only ``spacing`` steps or more
    away from each of its own last samples (0: every feasible point, the paper's rule; a
    walker circling a point would return near-copies). ``memory``: 'all' (distance to
    every accepted sample) or 'last' (to the last accepted batch, the paper's literal reading).
    ``max_steps`` caps the walk of each call (default ``20 n / K + 200``; a resumed run gets
    the budget again). ``out`` writes samples as they are accepted; ``resume`` continues a run
    there. ``callback(state)`` runs after every step. ``time_limit`` covers the whole call,
    the final checks and the saving of ``out`` included.
    """
    z1, z2, cons = _parse_ranges(target, range, intersect)
    seed = check_seed(seed, MAX_SEARCH_SEED)
    check_time_limit(time_limit)
    options = {
        "n": n,
        "K": K,
        "mu0": mu0,
        "alpha": alpha,
        "inner_steps": inner_steps,
        "max_outer": max_outer,
        "lr": lr,
        "step": step,
        "optimizer": optimizer,
        "walk_optimizer": walk_optimizer,
        "margin": margin,
        "walk_margin": walk_margin,
        "memory": memory,
        "diversity": diversity,
        "neighbours": neighbours,
        "weight": weight,
        "restart": restart,
        "spacing": spacing,
        "max_steps": max_steps,
        "exact_check": exact_check,
        "seed_restarts": seed_restarts,
        "exact_time": exact_time,
    }
    flags = {
        "exact_check": exact_check,
        "seed_restarts": seed_restarts,
        "resume": resume,
        "progress": progress,
    }
    _check_values(options, flags)
    if max_steps is None:
        options["max_steps"] = 20 * math.ceil(n / K) + 200
    if resume and out is None:
        raise InversetError("resume needs the output directory of the run (out=DIR / --out DIR)")
    if "adam" in (optimizer, walk_optimizer):
        # torch.optim.Adam imports torch._dynamo once per process (about a second): a cost of
        # torch, not of this run, so it is kept off the clock
        with contextlib.suppress(ImportError):
            importlib.import_module("torch._dynamo")
    start = time.perf_counter()  # the clock of the time limit: it covers the whole call
    problem = Problem.build(
        model,
        target,
        Goal.range(z1, z2),
        domain,
        space=space,
        input_shape=input_shape,
        labels=labels,
        constraints=cons,
    )
    enc = make_encoder(problem.model, encoder, problem.domain.shape)
    sampler = _Sampler(problem, enc, seed, options, callback, start)
    sampler.probe()  # a bad encoder or layer fails here, before anything is written to ``out``
    query = {
        **problem.to_dict(),
        "solver": "inverse_set",
        "weights": fingerprint(problem.model),
        "encoder": enc.describe(),
        "K": K,
        "seed": seed,
    }
    store = SampleStore(out, query, resume) if out is not None else None
    with sigterm_as_interrupt():
        result = sampler.run(store, time_limit, progress)
    result.query = {**query, "options": options, "time_limit": time_limit}
    if out is not None:
        result.save(out)
    return result


class _Sampler:
    """One sampling run: the walkers, the multipliers, the accepted samples, the counters."""

    def __init__(
        self, problem: Problem, enc: Encoder, seed: int, opts: dict, callback, start: float
    ):
        self.p, self.enc, self.seed, self.o, self.callback = problem, enc, seed, opts, callback
        self.dev, self.dt = problem.device, problem.dtype
        self.box = problem.space.box
        lo, hi = self.box.tensors(self.dev, self.dt)
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            what, fix = unbounded(problem.space)
            raise InversetError(f"inverse-set sampling needs a bounded search space: {what}; {fix}")
        self.lo, self.width = lo, unit_widths(lo, hi)
        if not torch.isfinite(self.width).all():
            raise InversetError(
                f"the box is wider than the model's dtype {self.dt} can hold "
                f"({torch.finfo(self.dt).max:g}): narrow it or give the model in float32"
            )
        g = problem.goal
        rows = [(g.low, g.high), *[(a, b) for _, a, b in problem.constraints]]
        # the user's bounds exactly (float64): acceptance and verification compare against them,
        # never against their rounding to the model's dtype (float32 moves 100000.03 by 0.002)
        self.lo64 = np.array([r[0] for r in rows], dtype=np.float64)
        self.hi64 = np.array([r[1] for r in rows], dtype=np.float64)
        self.rlo = torch.tensor(self.lo64, dtype=self.dt, device=self.dev)
        self.rhi = torch.tensor(self.hi64, dtype=self.dt, device=self.dev)
        w64 = self.hi64 - self.lo64
        self.rw64 = np.where(np.isfinite(w64), w64, 1.0)
        self.rw = torch.tensor(self.rw64, dtype=self.dt, device=self.dev)
        self.lo_idx = torch.nonzero(torch.isfinite(self.rlo)).flatten()
        self.hi_idx = torch.nonzero(torch.isfinite(self.rhi)).flatten()
        extra = [enc.layer] if enc.layer else []
        self.names = list(dict.fromkeys([*problem.layer_names, *extra]))
        self.gen = torch.Generator().manual_seed(int(seed))
        self.sigma = 1.0
        self.margin = opts["margin"]
        self.acc_e = _Rows()  # 'log' diversity: E features of the accepted samples, less e0
        self.e0: torch.Tensor | None = None  # the first accepted features (centre of acc_e)
        self.e_sum: torch.Tensor | None = None
        self.last_e: torch.Tensor | None = None
        self.n_e = 0
        # unit coordinates (flat) of every accepted sample: no copy of one is taken, and
        # walkers restart from them; with their projections on a random direction (float64),
        # which find the candidates for a copy without a distance to every sample
        self.acc_u = _Rows()
        self.acc_p = _Rows()
        self.direction: torch.Tensor | None = None
        # verified samples (model inputs, values, codes), in acceptance order
        self.acc: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "values", "z")}
        self.n_acc = 0  # accepted: verified plus pending
        self.pending: list[dict[str, np.ndarray]] = []  # accepted, not yet verified
        # counters (all persisted for resume)
        self.c: dict[str, Any] = {
            "seed_steps": 0,
            "outer_iterations": 0,
            "sample_steps": 0,
            "generated": 0,
            "rejected": 0,
            "duplicates": 0,
            "failed_verification": 0,
            "restarts": 0,
            "seed_restarts": 0,
            "too_close": 0,
        }
        # each walker's last RECENT samples (unit coordinates; NaN: none yet), see ``spacing``
        self.recent: torch.Tensor | None = None
        self.t0 = start  # when the call began (time limit and timings count from there)
        self.elapsed_before = 0.0
        self.nfev_before = 0  # evaluations of the runs this one resumes
        self.time_limit: float | None = None
        self.store: SampleStore | None = None
        self.walk_state: tuple | None = None
        self.seed_state: dict[str, Any] | None = None
        self.resumed = False
        # the largest difference of a value computed in a chunk from the model's on its point
        # alone, per range, seen so far; measured on the first chunk's first samples
        self.batch_gap = np.zeros(len(self.lo64))
        self.gap_probed = False
        self.shown = 0  # samples the progress bar shows
        self.sec_per_point = 1e-3  # verification cost per sample, measured as the run goes
        self.bytes_per_sample = 8 * (len(rows) + 1)
        self.pair_cost = 0.0  # seconds per pair of samples in the diversity estimate

    # ------------------------------------------------------------------ evaluation
    def z(self, u: torch.Tensor) -> torch.Tensor:
        return self.lo + self.width * u

    def u(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.lo) / self.width

    def project(self, u: torch.Tensor) -> torch.Tensor:
        return self.u(self.box.project(self.z(u)))

    def evaluate(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values [B, m]: target then intersections, E features [B, p], model inputs x)."""
        x = self.p.space.to_input(self.z(u))
        self.p.nfev += int(x.shape[0])
        acts = forward(self.p.model, x, self.names)
        vals = [self.p.target.evaluate(acts), *[t.evaluate(acts) for t, _, _ in self.p.constraints]]
        return torch.stack(vals, 1), self.enc(x, acts), x

    def probe(self) -> None:
        """One pass at the centre of the box: a layer the encoder cannot read or an encoder
        module that does not take the model's inputs is a one-line error before the run."""
        u = torch.full((1, *self.box.shape), 0.5, dtype=self.dt, device=self.dev)
        with torch.no_grad(), self.p.session():
            t = time.perf_counter()
            x = self.p.space.to_input(self.z(u))
            acts = forward(self.p.model, x, self.names)
            with reworded(
                lambda why: (
                    f"the encoder ({self.enc.describe()}) fails on the model's inputs "
                    f"of shape {tuple(x.shape[1:])} ({why}); give one that takes them, a "
                    "layer name or 'identity'"
                )
            ):
                e = self.enc(x, acts)
            self.sec_per_point = time.perf_counter() - t
        self.bytes_per_sample += x[0].numel() * x.element_size()
        self.pair_cost = PAIR_SECONDS * (x[0].numel() + e[0].numel())
        if isinstance(self.p.space, Latent):
            self.bytes_per_sample += u[0].numel() * u.element_size()

    def cons(self, V: torch.Tensor) -> torch.Tensor:
        """One-sided constraints ``c >= 0`` per walker, in range widths, with the margin."""
        m = self.margin
        parts = [
            (V[:, self.lo_idx] - self.rlo[self.lo_idx]) / self.rw[self.lo_idx] - m,
            (self.rhi[self.hi_idx] - V[:, self.hi_idx]) / self.rw[self.hi_idx] - m,
        ]
        return torch.cat(parts, 1)

    def dead(self, V: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Walkers with a constraint they break whose value has no gradient at all (every
        unit it reads is off there: a ReLU neuron at random inputs); the graph is kept."""
        c = self.cons(V)
        out = torch.zeros(len(u), dtype=torch.bool, device=u.device)
        for j in builtins.range(c.shape[1]):
            (g,) = torch.autograd.grad(c[:, j].sum(), u, retain_graph=True, allow_unused=True)
            zero = (g.reshape(len(u), -1) == 0).all(1) if g is not None else torch.ones_like(out)
            out |= zero & (c[:, j].detach() < 0)
        return out

    def feasible(self, V: torch.Tensor) -> torch.Tensor:
        """Walkers inside every range, ends included (compared in float64: a whole-number
        model's values often lie on them). Verification, which evaluates a value near an end
        alone, drops a point batching put inside."""
        v = V.detach().double().cpu().numpy()
        ok = (self.lo64 <= v) & (self.hi64 >= v) & np.isfinite(v)
        return torch.as_tensor(ok.all(1), device=V.device)

    def lagrangian(
        self, V: torch.Tensor, E: torch.Tensor, lam: torch.Tensor, mu: float, memory: bool
    ) -> torch.Tensor:
        """-weight * diversity + sum of augmented-Lagrangian terms with closed-form slacks."""
        c = self.cons(V)
        s = (c - lam / mu).clamp_min(0).detach()
        r = c - s
        al = (-lam * r + 0.5 * mu * r * r).sum(1)
        e = E / self.sigma
        div = self.diversity(e, memory)
        loss = -self.o["weight"] * div + al
        return torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss)).sum()

    def diversity(self, e: torch.Tensor, memory: bool) -> torch.Tensor:
        """Per walker: 'sq' (paper) = squared distances to the other walkers and to the accepted
        samples (through their centroid); 'log' = mean log distance to the ``neighbours``
        nearest walkers and accepted samples (pushes walkers into the gaps)."""
        if self.o["diversity"] == "sq":
            div = 2.0 * ((e - e.mean(0)) ** 2).sum(1)
            if memory and self.n_e:
                mem = self.e_sum / self.n_e if self.o["memory"] == "all" else self.last_e.mean(0)
                div = div + ((e - mem) ** 2).sum(1)
            return div
        e = _wide(e)  # cdist has no half precision on the CPU
        d2 = torch.cdist(e, e).pow(2)
        d2 = d2 + torch.diag(torch.full_like(d2[:, 0], math.inf))
        if memory and len(self.acc_e):
            # squared distances as |a|^2 + |b|^2 - 2 a.b (one matmul, 2.8 times faster than
            # cdist), about e0 so that the rounding (float32: 1e-7 of the squared norms) stays
            # far below the 1e-2 the log adds
            a, c = self.acc_e.rows, e - self.e0
            far = (c * c).sum(1, keepdim=True) + (a * a).sum(1) - 2 * c @ a.T
            d2 = torch.cat([d2, far.clamp_min(0)], 1)
        k = min(self.o["neighbours"], d2.shape[1])
        near = torch.topk(d2, k, dim=1, largest=False).values
        near = torch.where(torch.isfinite(near), near, torch.zeros_like(near))
        return torch.log(near + 1e-2).mean(1)

    def check(self) -> None:
        if self.time_limit is not None and self.left() <= 0:
            raise _Stop("time_limit")

    def left(self) -> float:
        """Seconds of this call's time limit left for the search (a resumed run gets the whole
        limit again): what verifying the pending samples and saving the result will take is
        held back, so that the call returns within its limit."""
        if self.time_limit is None:
            return math.inf
        return self.time_limit - (time.perf_counter() - self.t0) - self.reserve()

    def reserve(self) -> float:
        """Estimated seconds of the work after the search: verifying the pending samples, the
        diversity estimate, and writing the samples (compressed) to the output directory."""
        todo = sum(len(p["x"]) for p in self.pending)
        m = min(self.n_acc, DIVERSITY_PAIRS_OF)  # rows of the diversity estimate
        t = FINISH_SECONDS + (todo + m) * self.sec_per_point + m * m * self.pair_cost
        if self.store is not None:
            t += self.n_acc * self.bytes_per_sample / SAVE_BYTES_PER_SECOND
        return t

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def initial(self, k: int) -> torch.Tensor:
        """``k`` random walkers (unit coordinates): uniform in an input box, the prior N(0, I)
        (clipped to the box) in a generator's latent space."""
        if isinstance(self.p.space, Latent):
            z = torch.randn((k, *self.box.shape), generator=self.gen, dtype=torch.float64)
            z = self.box.project(z.to(self.dev, self.dt))
        else:
            z = self.box.sample(k, self.gen, device=self.dev, dtype=self.dt)
        return self.u(z)

    def make_opt(self, u: torch.Tensor, lr: float, kind: str | None = None):
        if (kind or self.o["optimizer"]) == "adam":
            return torch.optim.Adam([u], lr=lr)
        return None

    def take_step(self, u: torch.Tensor, opt, lr: float) -> None:
        """One gradient step on ``u`` (Adam, or a per-walker normalized plain step), then
        projection onto the box."""
        u.grad = torch.nan_to_num(u.grad)
        if opt is not None:
            opt.step()
        else:
            g = u.grad.reshape(u.shape[0], -1)
            rms = g.pow(2).mean(1).sqrt().clamp_min(1e-30)
            with torch.no_grad():
                u -= lr * (g / rms[:, None]).reshape(u.shape)
        with torch.no_grad():
            u.copy_(self.project(u))

    # ------------------------------------------------------------------ phases
    def seeding(self, bar, start: dict[str, Any] | None = None):
        """Eq. 8-9: (walkers u, lambda*, mu*, all seeds feasible); the seeds in range are the
        first samples. A walker that passed through the range but ended outside it (a range
        too narrow to stay in) is put back at the last in-range point it met. ``start``: the
        saved state of an interrupted seeding (an exact check it left due runs first)."""
        o, K = self.o, self.o["K"]
        if start is None:
            u = self.initial(K)
            lam = torch.zeros(
                (K, len(self.lo_idx) + len(self.hi_idx)), dtype=self.dt, device=self.dev
            )
            mu, first = float(o["mu0"]), 0
            worst = torch.full((K,), -math.inf, dtype=self.dt, device=self.dev)
            self.any_feasible = self.exact_due = False
        else:
            u, lam, mu, first = start["u"], start["lam"], start["mu"], start["outer"]
            worst, self.any_feasible = start["worst"], start["any_feasible"]
            self.exact_due = start.get("exact_due", False)
        u = u.detach().clone().requires_grad_(True)
        feas = torch.zeros(K, dtype=torch.bool, device=self.dev)
        kept = start or {}
        # each walker's last in-range point (where ``was_in``), kept by a saved run
        met = kept.get("met", u.detach().clone())
        was_in = kept.get("was_in", torch.zeros(K, dtype=torch.bool, device=self.dev))

        def snapshot(outer: int) -> None:
            """What an interruption saves: the state the outer iteration ``outer`` starts
            from (or, while it runs, restarts from)."""
            self.seed_state = {
                "u": u,
                "lam": lam,
                "mu": mu,
                "outer": outer,
                "worst": worst,
                "met": met,
                "was_in": was_in,
            }

        def note(feas: torch.Tensor) -> None:
            if bool(feas.any()):
                if not self.any_feasible:
                    self.any_feasible = self.rounded_in_range(u.detach()[feas])
                met[feas] = u.detach()[feas]
                was_in.logical_or_(feas)

        def seeds() -> tuple[torch.Tensor, torch.Tensor, float, bool]:
            with torch.no_grad():
                back = was_in & ~feas
                if bool(back.any()):
                    u[back] = met[back]
                V, E, x = self.evaluate(u)
                ok = self.feasible(V)
                self.accept(u, V, E, x, among=ok)
            if not self.any_feasible and o["exact_check"] and "exact_check" not in self.c:
                # seeds in range only between whole numbers: the range may be unreachable
                exact_witness()
                with torch.no_grad():
                    V, E, x = self.evaluate(u[:1])
                    self.accept(u[:1], V, E, x, among=self.feasible(V))
            return u, lam, mu, bool(ok.all())

        def exact_witness() -> None:
            """The due exact check; its witness replaces walker 0. It stays due when the time
            limit skipped or cut it short (a resumed run gets it again)."""
            witness, settled = self.exact_reachability()
            self.exact_due = not settled
            if witness is not None:
                with torch.no_grad():
                    u[0] = self.u(witness.to(self.dev, self.dt).reshape(u.shape[1:]))

        snapshot(first)
        if self.exact_due and not self.any_feasible:
            exact_witness()
        slopes = leaky_slopes(K, self.dt).to(self.dev)
        warmed: torch.Tensor | None = None  # the walkers warmed in the first outer iteration
        for outer in builtins.range(first, o["max_outer"]):
            self.c["outer_iterations"] = outer + 1
            snapshot(outer)
            opt = self.make_opt(u, o["lr"])
            # walkers with no gradient at all (every unit the target reads is off: a ReLU
            # neuron at random inputs) take this outer iteration's steps through leaky ReLUs,
            # as the gradient solver's flat starts do; their values then are the stand-in's
            warm: torch.Tensor | None = None
            for it in builtins.range(o["inner_steps"]):
                if opt is not None:
                    opt.zero_grad()
                u.grad = None
                with LeakyReLUs(warm, slopes) as relus:
                    V, E, _ = self.evaluate(u)
                feas = self.feasible(V) if warm is None else self.feasible(V) & ~warm
                note(feas)
                if it > 0 and (bool(feas.all()) or bool((self.cons(V.detach()) >= 0).all())):
                    break
                with model_backward(solvers=False, what="inverse-set sampling"):
                    flat = self.dead(V, u) & ~feas if it == 0 and relus.calls else None
                    self.lagrangian(V, E, lam, mu, False).backward()
                if flat is not None and bool(flat.any()):
                    warm = flat
                    self.c["warmed_walkers"] = self.c.get("warmed_walkers", 0) + int(flat.sum())
                self.take_step(u, opt, o["lr"])
                self.c["seed_steps"] += 1
                self.show(bar, "seeding", self.c["seed_steps"])
                self.flush()
                self.tick("seeding")
            with torch.no_grad():
                V = self.evaluate(u)[0]
                c = self.cons(V)
                feas = self.feasible(V)
                note(feas)
            lam = (lam - mu * c).clamp_min(0)
            mu *= o["alpha"]
            snapshot(outer + 1)
            if bool(feas.all()):
                return seeds()
            # improvement on the paper: a walker still outside whose worst constraint did not
            # improve in a whole outer iteration sits at a local optimum below the range;
            # redraw it from the prior rather than spend the remaining iterations on it
            cmin = c.min(1).values
            # (a warmed walker climbed the stand-in: its own value may not have moved yet)
            stuck = ~feas & (cmin <= worst + 1e-3) & (True if warm is None else ~warm)
            worst = cmin
            if o["seed_restarts"] and bool(stuck.any()) and outer + 1 < o["max_outer"]:
                idx = torch.nonzero(stuck).flatten()
                with torch.no_grad():
                    u[idx] = self.initial(len(idx))
                lam[idx] = 0
                worst[idx] = -math.inf
                self.c["seed_restarts"] += len(idx)
            self.seed_state["worst"] = worst
            # the exact check after the first outer iteration, or the second when warmed
            # walkers spent the first climbing a stand-in (relu3:14 of the digits CNN: in
            # range after 322 steps, while the check spent its 30 s undecided)
            warmed = warm if outer == 0 else warmed
            if outer == (0 if warmed is None else 1) and not self.any_feasible:
                self.exact_due = bool(o["exact_check"])
            if self.exact_due and not self.any_feasible:
                exact_witness()
        return seeds()

    def rounded_in_range(self, u: torch.Tensor) -> bool:
        """Whether any of these in-range walkers stays in range and in the domain once its
        integer features are rounded (always, without integer features): walkers in range only
        between whole numbers do not show the range reachable."""
        if not self.rounds:
            return True
        with torch.no_grad():
            _, V, _, x = self.rounded(u)
        return bool((self.feasible(V) & self.in_domain(x)).any())

    @property
    def rounds(self) -> bool:
        """Whether candidates are rounded: integer features of the inputs (a latent code's
        box has none to round)."""
        return bool(self.box.integer) and not isinstance(self.p.space, Latent)

    def rounded(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Walkers ``u`` with their integer features rounded to whole numbers, evaluated:
        (u, values, encoder features, model inputs)."""
        uc = self.u(self.box.project(self.z(u), round_integers=True))
        return (uc, *self.evaluate(uc))

    def exact_reachability(self) -> tuple[torch.Tensor | None, bool]:
        """When a first round found no feasible point: ask the exact solver (piecewise-linear
        models, input space) whether the range is reachable at all. Raises ``_Stop`` with the
        proof when it is not, KeyboardInterrupt when a Ctrl-C or SIGTERM stopped it; returns
        its witness (Direct space) when it found one, and whether the check is settled (not
        skipped or cut short by the time limit). Skipped for time, it is not tried again in
        this call; the time left is checked before its imports and model check (2 s on the
        digits CNN) and again after them."""
        if self.skip_exact():
            return None, False
        try:
            from inverset.exact import unsupported
            from inverset.exact.solver import solve as exact_solve
            from inverset.exact.solver import without_point_note

            if self.time_limit is not None:
                # the exact solver imports it under a time limit before its own clock starts
                # (1 s, once per process): here it is on this call's clock, before the budget
                importlib.import_module("torch._dynamo")
        except ImportError:
            self.c["exact_check"] = "exact solver not importable; skipped"
            return None, True
        p = self.p
        g = p.goal
        direct = Problem(
            p.model, p.target, Goal.range(g.low, g.high), p.domain, Direct(p.domain), p.constraints
        )
        why = unsupported(direct)
        if why is not None:
            self.c["exact_check"] = f"{why}; skipped"
            return None, True
        if self.skip_exact():
            return None, False
        budget = min(self.o["exact_time"], self.left())
        r = exact_solve(direct, seed=self.seed, time_limit=budget)
        if r.status == "found":
            # the proof is about the model's inputs; through a generator G(z) may not reach them
            via = "" if isinstance(p.space, Direct) else " (the check searches inputs, not G(z))"
            self.c["exact_check"] = (
                f"witness found: some input of the model has {self.describe_ranges()}{via}"
            )
        elif r.status == "time_limit":
            t = self.o["exact_time"]
            self.c["exact_check"] = (
                f"its own budget (exact_time={t:g} s) ran out before reachability was decided: "
                f"raise it (exact_time={4 * t:g} / --option exact_time={4 * t:g})"
                if budget >= t
                else f"the time limit left it {budget:.1f} s, too little to decide reachability "
                "(raise time_limit / --time-limit)"
            )
        else:
            said = without_point_note(r.message)  # the sampler returns no such point
            self.c["exact_check"] = said if said.startswith(r.status) else f"{r.status}: {said}"
        if r.status == "interrupted":  # the solver answered a Ctrl-C: so does the run
            raise KeyboardInterrupt
        if r.status == "infeasible":
            # the domain with every range admits no input: an empty intersection of the
            # ranges when the domain alone is feasible, else an empty domain
            self.proof_bound = r.bound
            self.empty_because = self.why_infeasible(direct, exact_solve)
            raise _Stop("unreachable")
        if r.status == "unreachable":
            # with other ranges the proof is about inputs meeting them: say which fails
            self.proof_bound = r.bound
            self.empty_because = (
                self.why_infeasible(direct, exact_solve)
                if p.constraints
                else without_point_note(r.message)
            )
            raise _Stop("unreachable")
        if r.status == "found" and r.x is not None and isinstance(p.space, Direct):
            return torch.as_tensor(np.asarray(r.x)), True
        return None, r.status == "found" or budget >= self.o["exact_time"]

    def skip_exact(self) -> bool:
        """Whether the time limit leaves the exact check too little time (then noted; the
        time left only shrinks, so it is not tried again in this call)."""
        if self.left() >= EXACT_MIN_SECONDS:
            return False
        self.c["exact_check"] = f"skipped: less than {EXACT_MIN_SECONDS:g} s of the time limit left"
        return True

    def why_infeasible(self, direct: Problem, exact_solve) -> str:
        """Why the exact solver found no input meeting every range: the ranges cannot hold at
        once (the domain itself is feasible), or the domain admits no input at all."""
        from inverset.exact.solver import without_point_note

        p = self.p
        rng = self.describe_ranges()
        if not p.constraints:
            return "the domain admits no input (proven by the exact solver)"
        alone = Problem(p.model, p.target, direct.goal, p.domain, Direct(p.domain), [])
        budget = min(self.o["exact_time"], max(self.left(), EXACT_MIN_SECONDS))
        r = exact_solve(alone, seed=self.seed, time_limit=budget)
        if r.status == "infeasible":
            return "the domain admits no input (proven by the exact solver)"
        if r.status == "unreachable":
            return without_point_note(r.message)
        return (
            f"the ranges cannot all hold at once on this domain: no input has {rng} (proven by "
            "the exact solver)"
        )

    def show(self, bar, phase: str, step: int) -> None:
        """Move the progress bar to the accepted count."""
        shown = min(self.n_acc, self.o["n"])
        bar.update(shown - self.shown, phase=phase, step=step)
        self.shown = shown

    def tick(self, phase: str) -> None:
        self.check()
        if self.callback is not None:
            self.callback({"phase": phase, "accepted": self.n_acc, **self.c})

    # ------------------------------------------------------------------ run
    def run(self, store: SampleStore | None, time_limit: float | None, progress: bool) -> Result:
        n = self.o["n"]
        self.time_limit = time_limit
        self.store = store
        status = "found"
        self.last_flush = time.perf_counter()
        failed, unwritten = True, None
        with progress_bar(progress, n, "inverse set") as bar, self.p.session():
            saved = self.restore() if store is not None else None
            try:
                impossible = self.p.impossible()
                if impossible is not None:  # no input can: no walker need try
                    _, self.empty_because, self.proof_bound = impossible
                    raise _Stop("unreachable")
                self.show(bar, "seeding", self.c["seed_steps"])
                if saved is None or saved[0] == "seeding":
                    if not self.resumed:  # a resumed run has its sigma (saved, or restore's)
                        self.set_sigma()
                    u, lam, mu, ok = self.seeding(bar, None if saved is None else saved[1])
                    self.c["seeds_all_feasible"] = ok
                    if self.n_acc == 0 and not bool(self.feasible(self.evaluate_nograd(u)).any()):
                        raise _Stop("no_seed")
                    fresh = False
                else:
                    u, lam, mu = saved[1]
                    fresh = True  # the saved walkers were never evaluated
                self.walk(u, lam, mu, bar, fresh)
                failed = False
            except _Stop as stop:
                status, failed = stop.reason, False
            except KeyboardInterrupt:
                status, failed = "interrupted", False
            except OSError as exc:  # the store's writes failed (a full disk): shown, then said
                if store is None or exc.errno not in WRITE_ERRORS:
                    raise
                status, failed, unwritten = "unwritten", False, exc
            finally:
                # an unexpected error keeps what was computed, but leaves no empty run behind
                computed = self.n_acc or self.c["seed_steps"] or self.c["sample_steps"]
                if not failed or computed:
                    self.verify_pending()
                    if store is not None and unwritten is None:
                        try:
                            self.flush(force=True)
                        except OSError as exc:
                            if exc.errno not in WRITE_ERRORS:
                                raise
                            unwritten = exc
            if unwritten is not None:
                self.store = None  # nothing to resume from: the result must not offer it
            result = self.finish(status)
        if unwritten is not None:
            raise SaveError(
                result,
                f"the samples could not be written to {store.dir} ({unwritten.strerror}); "
                f"{write_fix(unwritten)} or give another directory (--out)",
            )
        return result

    def evaluate_nograd(self, u: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.evaluate(u)[0]

    def walk(self, u, lam, mu, bar, fresh: bool) -> None:
        """Eq. 10-11: single gradient steps with frozen multipliers, accepting feasible walkers.
        The walkers come evaluated from seeding (``fresh``: from a saved run, not yet)."""
        o, K = self.o, self.o["K"]
        u = u.detach().clone().requires_grad_(True)
        opt = self.make_opt(u, o["step"], o["walk_optimizer"])
        if o["walk_margin"] is not None:
            self.margin = o["walk_margin"]
        outside = torch.zeros(K, dtype=torch.long, device=self.dev)
        self.walk_state = (u, lam, mu)
        self.seed_state = None
        limit = self.c["sample_steps"] + o["max_steps"]  # every call gets the whole budget
        first = not fresh
        while not self.done():
            if opt is not None:
                opt.zero_grad()
            u.grad = None
            V, E, x = self.evaluate(u)
            if not first:
                take = self.accept(u, V, E, x)
                outside = torch.where(take, torch.zeros_like(outside), outside + 1)
                self.show(bar, "sampling", self.c["sample_steps"])
                if self.done():
                    break
                if self.c["sample_steps"] >= limit:
                    raise _Stop("not_found")
            first = False
            with model_backward(solvers=False, what="inverse-set sampling"):
                self.lagrangian(V, E, lam, mu, True).backward()
            self.take_step(u, opt, o["step"])
            self.c["sample_steps"] += 1
            # merged walkers take the same steps from now on: one of them leaves at once
            due = self.merged(u) | ((outside >= o["restart"]) if o["restart"] else False)
            if bool(due.any()):
                self.restart_walkers(u, opt, outside, torch.nonzero(due).flatten())
            self.walk_state = (u, lam, mu)
            self.flush()
            self.tick("sampling")

    def done(self) -> bool:
        """``n`` samples accepted and verified (pending ones are verified first)."""
        if self.n_acc < self.o["n"]:
            return False
        self.verify_pending()
        return self.n_acc >= self.o["n"]

    def merged(self, u: torch.Tensor) -> torch.Tensor:
        """Bool per walker: within ``COPY_TOL`` of a walker before it."""
        close = self.close_pairs(u.detach().reshape(len(u), -1).double())
        return torch.tril(close, -1).any(1)

    def restart_step(self) -> torch.Tensor | float:
        """How far a restarted walker moves off its sample, per feature: ``step``, and on
        integer features at least one whole number (a smaller move rounds back to the
        sample: 4 integers in 0..5 summing to [3, 5] gave 40 of 100 samples, the rest
        copies, where 111 inputs qualify)."""
        if not self.rounds:
            return self.o["step"]
        one = torch.zeros(self.box.size, dtype=self.dt, device=self.dev)
        one[list(self.box.integer)] = 1.0
        one = (one.reshape(self.width.shape) / self.width).clamp(max=1.0)
        return one.clamp(min=self.o["step"])

    def restart_walkers(self, u, opt, outside, idx: torch.Tensor) -> None:
        """Walkers ``idx`` (no new sample for ``restart`` steps, or merged with another)
        restart at random accepted samples (at random points while there is none, e.g.
        integer features in the range only between whole numbers)."""
        if not len(self.acc_u):
            with torch.no_grad():
                u[idx] = self.initial(len(idx))
        else:
            pick = torch.randint(0, len(self.acc_u), (len(idx),), generator=self.gen)
            start = self.acc_u.rows[pick.to(self.dev)].reshape(len(idx), *u.shape[1:])
            # a small random move off the sample: at an accepted sample that is the centroid of
            # the memory (one sample, or K = 1) the diversity gradient is zero and the walker
            # would stay put
            noise = torch.rand((len(idx), *u.shape[1:]), generator=self.gen, dtype=torch.float64)
            with torch.no_grad():
                step = self.restart_step() * (2 * noise.to(self.dev, self.dt) - 1)
                u[idx] = self.project(start + step)
            if self.recent is not None:  # its first sample is a new one, not the one it left
                self.recent[idx] = math.nan
                self.push_recent(idx, start)
        if opt is not None:
            st = opt.state.get(u, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    st[key][idx] = 0
        outside[idx] = 0
        self.c["restarts"] += len(idx)

    def accept(self, u, V, E, x, among: torch.Tensor | None = None) -> torch.Tensor:
        """Take the walkers (all, or those in the mask ``among``) that lie in every range and
        in the domain and are no copies (``COPY_TOL``) of an accepted sample, nor of one taken
        before them in this batch, up to ``n`` in all;
        returns the mask of walkers taken. Walkers looked at count as generated, those not
        taken as rejected; walkers left once ``n`` is reached count as neither. With integer
        features the candidates are the walkers rounded to whole numbers, evaluated again (the
        walk itself stays continuous)."""
        took = torch.zeros(u.shape[0], dtype=torch.bool, device=self.dev)
        rows = torch.arange(u.shape[0], device=self.dev)
        if among is not None:
            rows = rows[among]
        if not len(rows):
            return took
        with torch.no_grad():
            uc, V, E, x = u.detach()[rows], V.detach()[rows], E.detach()[rows], x.detach()[rows]
            if self.rounds:
                uc, V, E, x = self.rounded(uc)
        ok = (self.feasible(V) & self.in_domain(x)).tolist()
        flat = uc.reshape(len(uc), -1).double()
        copy = self.copies(flat).tolist()
        close = self.close_pairs(flat).tolist()
        near = self.near_recent(uc, rows, u.shape[0]).tolist()
        keep: list[int] = []
        for j in builtins.range(len(rows)):
            if self.n_acc + len(keep) >= self.o["n"]:
                break
            self.c["generated"] += 1
            again = copy[j] or any(close[j][i] for i in keep)
            if ok[j] and again:
                self.c["duplicates"] += 1
            if not ok[j] or again:
                self.c["rejected"] += 1
                continue
            if near[j]:
                self.c["too_close"] += 1
                self.c["rejected"] += 1
                continue
            keep.append(j)
        if not keep:
            return took
        took[rows[keep]] = True
        self.push_recent(rows[keep], uc[keep])
        idx = torch.as_tensor(keep, dtype=torch.long, device=self.dev)
        self.add_accepted(flat[idx].to(self.dt))
        self.remember(E[idx] / self.sigma)
        self.pending.append(
            {
                "x": to_numpy(x[idx]),
                **({"z": to_numpy(self.z(uc[idx]))} if isinstance(self.p.space, Latent) else {}),
            }
        )
        self.n_acc += len(keep)
        return took

    @staticmethod
    def copy_reach(d: int) -> float:
        """Euclidean distance in unit coordinates (``d`` of them) below which two points are
        copies: ``COPY_TOL`` per coordinate, root mean square."""
        return COPY_TOL * math.sqrt(d)

    def close_pairs(self, flat: torch.Tensor) -> torch.Tensor:
        """Bool matrix: which pairs of points (flat unit coordinates) are copies."""
        return torch.cdist(flat, flat) < self.copy_reach(flat.shape[1])

    def projection(self, flat: torch.Tensor) -> torch.Tensor:
        """Unit coordinates ``flat`` projected (float64) on a fixed random direction: points
        within a distance have projections within it."""
        if self.direction is None:
            g = torch.Generator().manual_seed(int(self.seed))
            d = torch.randn(flat.shape[1], generator=g, dtype=torch.float64)
            self.direction = (d / d.norm()).to(flat.device)
        return flat.double() @ self.direction

    def add_accepted(self, flat: torch.Tensor) -> None:
        """Remember accepted samples' unit coordinates (flat) against copies and as restart
        points."""
        self.acc_u.add(flat)
        self.acc_p.add(self.projection(flat))

    def copies(self, flat: torch.Tensor) -> torch.Tensor:
        """Bool per candidate (flat unit coordinates): within ``COPY_TOL`` of an accepted
        sample; only samples whose projection lies that close are measured."""
        out = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
        if not len(self.acc_u):
            return out
        r = self.copy_reach(flat.shape[1])
        gap = (self.acc_p.rows[None, :] - self.projection(flat)[:, None]).abs()
        i, j = torch.nonzero(gap <= r * (1 + 1e-9)).T
        if len(i):
            d = (self.acc_u.rows[j].double() - flat[i].double()).norm(dim=1)
            out[i[d < r]] = True
        return out

    def near_recent(self, uc: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
        """Bool per candidate ``uc`` (of walkers ``rows``, ``k`` walkers in all): closer than
        ``spacing`` steps (unit coordinates) to one of its walker's last RECENT samples."""
        flat = uc.reshape(len(uc), -1)
        if self.recent is None or self.recent.shape[0] != k:
            self.recent = torch.full((k, RECENT, flat.shape[1]), math.nan, dtype=flat.dtype)
            self.recent = self.recent.to(flat.device)
        reach = self.o["spacing"] * self.o["step"] * math.sqrt(flat.shape[1])
        d = (self.recent[rows] - flat[:, None, :]).pow(2).sum(2).sqrt()
        return torch.nan_to_num(d, nan=math.inf).amin(1) < reach

    def push_recent(self, walkers: torch.Tensor, uc: torch.Tensor) -> None:
        """Make ``uc`` the newest of the ``walkers``' recent samples (the oldest drops out)."""
        self.recent[walkers] = torch.roll(self.recent[walkers], 1, dims=1)
        self.recent[walkers, 0] = uc.reshape(len(uc), -1)

    def verify_pending(self) -> None:
        """Re-evaluate the pending samples from scratch (not in the batch they were accepted
        in): those in every range and in the domain join the verified samples (and the store);
        the rest are dropped and counted. They stay pending until verified: a Ctrl-C in the
        model's passes here left 66 accepted samples neither returned, stored nor counted."""
        if not self.pending:
            return
        part = {k: np.concatenate([p[k] for p in self.pending]) for k in self.pending[0]}
        t = time.perf_counter()
        V, _ = self.verify(part["x"], features=False)
        self.sec_per_point = (time.perf_counter() - t) / len(V)
        V = self.alone_near_ends(part["x"], V)
        ok = self.in_ranges(V) & self.in_domain(torch.as_tensor(part["x"])).cpu().numpy()
        self.pending = []
        bad = int((~ok).sum())
        self.c["failed_verification"] += bad
        self.n_acc -= bad
        if not ok.any():
            return
        part = {k: v[ok] for k, v in part.items()}
        for k in ("x", "z"):
            if k in part:
                self.acc[k].append(part[k])
        self.acc["values"].append(V[ok])
        if self.store is not None:
            V = V[ok]
            self.store.add(x=part["x"], values=V[:, 0], constraints=V[:, 1:], z=part.get("z"))

    @torch.no_grad()
    def alone_near_ends(self, xs: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Values ``V`` (computed in chunks) with those near a range end replaced by the model's
        value of their point alone, as a user checks a sample. Near: within ``REACH_ULPS`` of
        the end or the value, or 4 times the largest chunk-versus-alone difference seen so far
        (the first ``GAP_PROBES`` samples verified are evaluated alone first to measure it:
        the model's rounding depends on its inner sums, not on its output)."""
        V = V.copy()
        done = np.zeros(len(V), dtype=bool)
        if not self.gap_probed:
            self.gap_probed = True
            done[:GAP_PROBES] = True
            self.evaluate_alone(xs, V, done)
        ends = np.stack([self.lo64, self.hi64])[None]  # (1, 2, m)
        mag = np.maximum(np.abs(np.where(np.isfinite(ends), ends, 0)), np.abs(V)[:, None])
        ulps = REACH_ULPS * torch.finfo(self.dt).eps * np.where(np.isfinite(mag), mag, 0)
        reach = np.maximum(ulps, 4 * self.batch_gap)
        near = (np.abs(V[:, None, :] - ends) <= reach).any((1, 2)) & ~done
        if near.any():
            self.evaluate_alone(xs, V, near)
        return V

    def evaluate_alone(self, xs: np.ndarray, V: np.ndarray, rows: np.ndarray) -> None:
        """Replace the values ``V`` of the samples ``rows`` (a mask) by the model's on each one
        alone, and widen the measured chunk-versus-alone gap by theirs."""
        x = torch.as_tensor(xs[rows], dtype=self.dt, device=self.dev)
        v, cv = self.p.evaluate_each(x)
        alone = torch.cat([v[:, None], cv], 1).double().cpu().numpy()
        diff = np.abs(alone - V[rows])
        gap = np.where(np.isfinite(diff), diff, 0).max(0, initial=0.0)
        self.batch_gap = np.maximum(self.batch_gap, gap)
        V[rows] = alone

    def remember(self, e: torch.Tensor) -> None:
        """Add normalized E features of accepted samples to the distance memory (the features
        themselves are kept only for 'log' diversity; 'sq' needs their sum alone)."""
        if self.o["diversity"] == "log":
            e = _wide(e)
            if self.e0 is None:
                self.e0 = e[0].clone()
            self.acc_e.add(e - self.e0)
        self.n_e += len(e)
        self.e_sum = e.sum(0) if self.e_sum is None else self.e_sum + e.sum(0)
        self.last_e = e

    def set_sigma(self) -> None:
        """Spread of E at random walkers: distances are measured in units of it."""
        k = max(16, self.o["K"])
        t = time.perf_counter()
        with torch.no_grad():
            _, E, _ = self.evaluate(self.initial(k))
        self.sec_per_point = (time.perf_counter() - t) / k
        var = float(((E - E.mean(0)) ** 2).sum(1).mean())
        self.sigma = math.sqrt(var) if var > 1e-24 else 1.0

    # ------------------------------------------------------------------ persistence
    def flush(self, force: bool = False) -> None:
        """Verify the pending samples and write them, the walkers and the counters to the
        store: every 64 samples or 5 seconds (or ``force``). Without a store, verify in
        chunks as samples come."""
        st = self.store
        todo = sum(len(p["x"]) for p in self.pending)
        if st is None:
            # in chunks, but soon enough that the time held back for them stays small
            if todo >= VERIFY_CHUNK or todo * self.sec_per_point > 0.1:
                self.verify_pending()
            return
        due = todo >= 64 or time.perf_counter() - self.last_flush > 5
        if not (force or due):
            return
        self.verify_pending()
        t = to_numpy
        common = {"sigma": np.array(self.sigma), "gen": self.gen.get_state().numpy()}
        if self.walk_state is not None:
            u, lam, mu = self.walk_state
            phase, walkers = "sampling", {"u": t(u), "lam": t(lam), "mu": np.array(mu), **common}
        elif self.seed_state is not None:
            s = self.seed_state
            phase, walkers = (
                "seeding",
                {
                    "u": t(s["u"]),
                    "lam": t(s["lam"]),
                    "mu": np.array(s["mu"]),
                    "outer": np.array(s["outer"]),
                    "worst": t(s["worst"]),
                    "any_feasible": np.array(self.any_feasible),
                    "met": t(s["met"]),
                    "was_in": t(s["was_in"]),
                    "exact_due": np.array(self.exact_due),
                    **common,
                },
            )
        else:
            phase, walkers = "seeding", None
        st.flush(
            {
                "phase": phase,
                "accepted": self.n_acc,
                "elapsed": self.elapsed,
                "nfev": self.nfev_before + self.p.nfev,
                **self.c,
            },
            walkers,
        )
        self.last_flush = time.perf_counter()

    def restore(self) -> tuple[str, Any] | None:
        """The saved run: its verified samples and counters, and its walkers, as
        ('sampling', (u, lambda, mu)) or ('seeding', state); None to start afresh."""
        st = self.store
        if not st.state:
            return None
        self.resumed = True
        data = st.load()
        for k in (*self.c, "exact_check", "warmed_walkers"):  # the last two: when they ran
            if k in st.state:
                self.c[k] = st.state[k]
        self.elapsed_before = float(st.state.get("elapsed", 0.0))
        self.nfev_before = int(st.state.get("nfev", 0))
        w = st.walkers()
        if w is not None:
            self.sigma = float(w["sigma"])
            self.gen.set_state(torch.as_tensor(w["gen"], dtype=torch.uint8))
        else:
            self.set_sigma()
        if data:
            self.n_acc = len(data["x"])
            self.acc["x"].append(data["x"])
            cons = data.get("constraints", np.zeros((self.n_acc, 0)))
            self.acc["values"].append(np.concatenate([data["values"][:, None], cons], 1))
            if "z" in data:
                self.acc["z"].append(data["z"])
            self.add_accepted(self.acc_u_from(data).reshape(self.n_acc, -1))
            t = time.perf_counter()
            _, E = self.verify(data["x"])
            self.sec_per_point = (time.perf_counter() - t) / self.n_acc
            e = torch.as_tensor(E, dtype=self.dt, device=self.dev) / self.sigma
            self.remember(e)
            self.last_e = e[-self.o["K"] :]
        if w is None:
            return None
        t = lambda a: torch.as_tensor(a, dtype=self.dt, device=self.dev)  # noqa: E731
        if st.state.get("phase") == "sampling":
            return "sampling", (t(w["u"]), t(w["lam"]), float(w["mu"]))
        if "outer" not in w:
            return None
        state = {
            "u": t(w["u"]),
            "lam": t(w["lam"]),
            "mu": float(w["mu"]),
            "outer": int(w["outer"]),
            "worst": t(w["worst"]),
            "any_feasible": bool(w["any_feasible"]),
        }
        if "met" in w:  # runs saved before these were kept start without them
            state["met"] = t(w["met"])
            state["was_in"] = torch.as_tensor(w["was_in"], dtype=torch.bool, device=self.dev)
            state["exact_due"] = bool(w["exact_due"])
        return "seeding", state

    def acc_u_from(self, data: dict[str, np.ndarray]) -> torch.Tensor:
        """Unit coordinates of accepted samples (inputs in Direct space, codes in Latent)."""
        src = data["z"] if "z" in data else data["x"]
        return self.u(torch.as_tensor(src, dtype=self.dt, device=self.dev))

    # ------------------------------------------------------------------ answer
    def finish(self, status: str) -> Result:
        """The Result: the first ``n`` verified samples (every sample was re-evaluated on the
        model when it was verified), with counts and the diversity."""
        o, n = self.o, self.o["n"]
        p = self.p
        info: dict[str, Any] = {**self.c, "K": o["K"], "n": n, "encoder": self.enc.describe()}
        if self.resumed:
            info["resumed"] = True
        shape = tuple(p.domain.shape or ())
        if status == "unreachable":
            info["accepted"] = 0
            return Result(
                x=None,
                value=None,
                status="unreachable",
                message=f"inverse set is empty: {self.empty_because}",
                bound=self.proof_bound,
                xs=np.zeros((0, *shape), dtype=np.float32),
                values=np.zeros(0),
                nfev=self.nfev_before + p.nfev,
                solver="inverse_set",
                timings=self.timings(),
                info=info,
            )
        cat = lambda k, empty: np.concatenate(self.acc[k])[:n] if self.acc[k] else empty  # noqa: E731
        xs = cat("x", np.zeros((0, *shape), dtype=np.float32))
        V = cat("values", np.zeros((0, len(self.lo64))))
        accepted = len(xs)
        info["accepted"] = info["verified"] = accepted
        held = sum(len(a) for a in self.acc["x"])
        if held > accepted:  # a resumed run asked for fewer than its store holds
            info["stored"] = held
        pick = np.arange(accepted)
        if accepted > DIVERSITY_PAIRS_OF:
            pick = np.random.default_rng(0).choice(accepted, DIVERSITY_PAIRS_OF, replace=False)
            info["diversity_of"] = f"{DIVERSITY_PAIRS_OF} random samples of {accepted}"
        _, E = self.verify(xs[pick])
        info["diversity"] = _mean_pairwise(E)
        info["diversity_input"] = (
            _mean_pairwise(xs[pick].reshape(len(pick), -1)) if len(pick) else None
        )
        info["grad_evals"] = (self.c["seed_steps"] + self.c["sample_steps"]) * o["K"]
        info["seconds_per_sample"] = self.elapsed / accepted if accepted else None
        rng = self.describe_ranges()
        steps = f"{self.c['seed_steps']} seeding + {self.c['sample_steps']} sampling steps"
        if status == "found" and accepted >= n:
            message = f"{accepted} samples, all verified in {rng}, after {steps}"
            if held > accepted:
                message += (
                    f" (the first {accepted} of the {held} the run holds: its counts are of "
                    "all of them)"
                )
        else:
            point = "point with" if isinstance(p.space, Direct) else "code z whose G(z) has"
            why = {
                "no_seed": f"seeding found no {point} {rng} after {self.c['outer_iterations']} "
                f"outer iterations ({self.c['seed_steps']} steps)",
                "not_found": f"the walk used its budget of {o['max_steps']} steps",
                "found": "every sample was taken",
                "time_limit": "time limit reached",
                "interrupted": "interrupted",
                "unwritten": "stopped: the samples could not be written",
            }.get(status, status)
            if status == "not_found" and self.c["too_close"]:
                why += (
                    f" ({self.c['too_close']} points were refused as near-copies of their "
                    f"walker's recent samples, spacing {o['spacing']:g} steps: spacing=0.1 / "
                    "--option spacing=0.1 accepts closer ones, 0 every one)"
                )
            if status == "not_found" and self.c["duplicates"]:
                why += (
                    f" ({self.c['duplicates']} points were copies of accepted samples: the "
                    "range may hold fewer distinct inputs than n, e.g. on whole numbers, or "
                    "the walk's steps may be too short to leave them: a larger step "
                    "(--option step=0.1) tells)"
                )
            if self.c["failed_verification"]:
                why += (
                    f" ({self.c['failed_verification']} accepted samples failed verification on "
                    "the model and domain and were dropped)"
                )
            if status in ("found", "unwritten"):
                status = "not_found"
            resumable = status in ("interrupted", "time_limit", "not_found")
            if status == "no_seed":
                status = "not_found"
                check = self.c.get("exact_check")
                if check:
                    why += f"; exact check: {check}"
                else:
                    why += "; no proof that the range is unreachable (widen the range or raise "
                    why += "max_outer)"
            verified = f", all verified in {rng}," if accepted else ""
            message = f"{why}: {accepted} of {n} samples{verified} after {steps}"
            if self.store is not None and resumable:
                message += f"; saved in {self.store.dir}, continue with resume=True / --resume"
        arrays: dict[str, np.ndarray] = {}
        if V.shape[1] > 1:
            arrays["constraints"] = V[:, 1:]
        if isinstance(self.p.space, Latent):  # (0, *code shape) when none was accepted
            empty = np.zeros((0, *self.box.shape), dtype=xs.dtype)
            arrays["z"] = np.concatenate([empty, *self.acc["z"]])[:n]
        return Result(
            x=xs[0] if accepted else None,
            value=float(V[0, 0]) if accepted else None,
            status=status,
            message=message,
            xs=xs,
            values=V[:, 0],
            nfev=self.nfev_before + p.nfev,
            solver="inverse_set",
            history={},
            timings=self.timings(),
            info=info,
            arrays=arrays,
        )

    def timings(self) -> dict[str, float]:
        """Seconds of this call, from its start to the answer (the saving of ``out`` is held
        within the time limit, not counted here); 'all_runs' adds the runs it resumes."""
        t = {"total": time.perf_counter() - self.t0}
        if self.resumed:
            t["all_runs"] = self.elapsed
        return t

    @torch.no_grad()
    def verify(
        self, xs: np.ndarray, chunk: int = VERIFY_CHUNK, features: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(values [N, m], E features [N, p]) of model inputs ``xs``, recomputed from scratch
        (float64); ``features=False`` leaves E out (an empty array)."""
        vs, es = [], []
        for i in builtins.range(0, len(xs), chunk):
            x = torch.as_tensor(xs[i : i + chunk], dtype=self.dt, device=self.dev)
            acts = forward(self.p.model, x, self.names)
            v = [self.p.target.evaluate(acts)]
            v += [t.evaluate(acts) for t, _, _ in self.p.constraints]
            vs.append(torch.stack(v, 1).double().cpu().numpy())
            if features:
                es.append(self.enc(x, acts).double().cpu().numpy())
        m = len(self.lo64)
        V = np.concatenate(vs) if vs else np.zeros((0, m))
        return V, (np.concatenate(es) if es else np.zeros((len(V), 0)))

    def in_ranges(self, V: np.ndarray) -> np.ndarray:
        """Rows of values inside every range: the user's bounds exactly, in float64."""
        return ((self.lo64 <= V) & (self.hi64 >= V) & np.isfinite(V)).all(1)

    def in_domain(self, x: torch.Tensor) -> torch.Tensor:
        """Which model inputs lie in the query's domain (box, integers, linear constraints)."""
        if not len(x):
            return torch.zeros(0, dtype=torch.bool, device=x.device)
        return self.p.domain.contains(x.detach().double())

    def describe_ranges(self) -> str:
        parts = [f"{self.p.target} in {_interval(self.p.goal.low, self.p.goal.high)}"]
        parts += [f"{t} in {_interval(a, b)}" for t, a, b in self.p.constraints]
        return " and ".join(parts)


def _interval(a: float, b: float) -> str:
    """``[a, b]`` with each end as short as ``%g`` when that shows it exactly, else in full:
    [100000, 100000.03], not [100000, 100000]."""

    def num(v: float) -> str:
        return f"{v:g}" if float(f"{v:g}") == v else repr(float(v))

    return f"[{num(a)}, {num(b)}]"


def _mean_pairwise(E: np.ndarray, chunk: int = 1024) -> float | None:
    """Mean Euclidean distance over all pairs of rows (the paper's diversity metric)."""
    if len(E) < 2:
        return None
    e = torch.as_tensor(E, dtype=torch.float64)
    total = 0.0
    for i in builtins.range(0, len(e), chunk):
        d = torch.cdist(e[i : i + chunk], e)
        total += float(d.sum())
    n = len(e)
    return total / (n * (n - 1))
