"""Sampling the inverse set of a neuron (Hada & Carreira-Perpiñán), with intersections.

The inverse set of a target ``f`` is every valid input with ``z1 <= f(x) <= z2``. It is
sampled in two phases, both on the search variable ``z`` of the space (the input itself in its
box, or the code of a generator ``x = G(z)``):

1. **Seeds** (paper eq. 8-9). ``K`` walkers maximize their summed pairwise squared distance in
   the encoder space ``E`` subject to the range constraints, by a bound-constrained augmented
   Lagrangian with slacks: per outer iteration the slacks take their closed form
   ``s = max(0, c - lambda/mu)`` and ``inner_steps`` gradient steps move the walkers; then
   ``lambda <- max(lambda - mu c, 0)`` and ``mu <- alpha mu``. Seeding stops once every walker
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
``sum_y ||e - e_y||^2 = M ||e - mean_y e_y||^2 + const``.

Improvements over the paper (each measured in ``benchmarks/inverse_set.py``): seeding steps
with Adam (scale-free per coordinate; ``optimizer='sgd'`` is the paper's plain step), while the
walk keeps the paper's plain gradient step, normalized per walker (``walk_optimizer='sgd'``,
``step`` 0.025 of the box width; on the digits benchmark an Adam walk gave less diverse
samples); seeding stops at the first inner step where all K walkers lie in the range, and a
walker stuck outside for a whole outer iteration (a local optimum below the range) is redrawn;
a walker that produced no new sample for ``restart`` steps restarts at a random accepted
sample; a walker repeating an accepted sample exactly (e.g. pinned at a corner of the box) is not
accepted twice; ``diversity='log'`` (mean log distance to the nearest samples) is offered
beside the paper's squared distances.

Every returned sample is re-evaluated on the model at the end and lies in all its ranges.
"""

from __future__ import annotations

import builtins
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inverset.domain import Box
from inverset.errors import InversetError
from inverset.goal import Goal
from inverset.model import fingerprint, forward
from inverset.problem import Problem
from inverset.progress import progress_bar, sigterm_as_interrupt
from inverset.result import Result
from inverset.sampling.encoders import Encoder, make_encoder
from inverset.sampling.store import SampleStore
from inverset.solvers import check_time_limit
from inverset.space import Direct, Latent, Space

#: acceptance keeps this fraction of the range width away from its ends, so that a point
#: accepted in one batch stays inside when re-evaluated alone (float noise of batching)
ACCEPT_INSET = 1e-6
#: the exact reachability check is skipped with less time left than this (it needs about a
#: second to compile and bound the model, which would overrun the time limit)
EXACT_MIN_SECONDS = 2.0
#: diversity (mean pairwise distance) of more samples than this is estimated on this many of
#: them, drawn at random: all pairs of 20,000 samples would take longer than the run
DIVERSITY_PAIRS_OF = 2000


class _Stop(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _parse_ranges(
    target: str, rng: Sequence[float], intersect: Sequence[tuple[str, float, float]]
) -> tuple[float, float, list[tuple[str, float, float]]]:
    if len(rng) != 2:
        raise InversetError(f"range must be two numbers (z1, z2), got {rng!r}")
    z1, z2 = float(rng[0]), float(rng[1])
    cons = []
    for item in intersect:
        if len(item) != 3:
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
    normalized step or Adam). ``memory``: 'all' (distance to
    every accepted sample) or 'last' (to the last accepted batch, the paper's literal reading).
    ``max_steps`` caps the walk (default ``20 n / K + 200``). ``out`` writes samples as they are
    accepted; ``resume`` continues a run there. ``callback(state)`` runs after every step.
    """
    z1, z2, cons = _parse_ranges(target, range, intersect)
    for name, v in (("n", n), ("K (walkers)", K), ("neighbours", neighbours)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InversetError(f"{name} must be a whole number >= 1, got {v!r}")
    for name, v in (("mu0", mu0), ("alpha", alpha), ("lr", lr), ("step", step)):
        if not v > 0 or not math.isfinite(v):
            raise InversetError(f"{name} must be a positive number, got {v!r}")
    check_time_limit(time_limit)
    for name, opt in (("optimizer", optimizer), ("walk_optimizer", walk_optimizer)):
        if opt not in ("adam", "sgd"):
            raise InversetError(f"{name} must be 'adam' or 'sgd', got {opt!r}")
    if diversity not in ("sq", "log"):
        raise InversetError(f"diversity must be 'sq' (the paper's) or 'log', got {diversity!r}")
    if memory not in ("all", "last"):
        raise InversetError(f"memory must be 'all' or 'last', got {memory!r}")
    if not 0 <= margin < 0.5:
        raise InversetError(f"margin is a fraction of the range per side in [0, 0.5), got {margin}")
    if resume and out is None:
        raise InversetError("resume needs the output directory of the run (out=DIR / --out DIR)")
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
    enc = make_encoder(model, encoder)
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
        "max_steps": max_steps if max_steps is not None else 20 * math.ceil(n / K) + 200,
        "exact_check": exact_check,
        "seed_restarts": seed_restarts,
        "exact_time": exact_time,
    }
    sampler = _Sampler(problem, enc, seed, options, callback)
    query = {
        **problem.to_dict(),
        "solver": "inverse_set",
        "weights": fingerprint(model),
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

    def __init__(self, problem: Problem, enc: Encoder, seed: int, opts: dict, callback):
        self.p, self.enc, self.seed, self.o, self.callback = problem, enc, seed, opts, callback
        self.dev, self.dt = problem.device, problem.dtype
        self.box = problem.space.box
        lo, hi = self.box.tensors(self.dev, self.dt)
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise InversetError(
                "inverse-set sampling needs a bounded search box; give the input domain finite "
                "bounds (e.g. Box(0, 1)) or search a generator's latent space"
            )
        self.lo, self.width = lo, (hi - lo).clamp_min(1e-12)
        g = problem.goal
        rows = [(g.low, g.high), *[(a, b) for _, a, b in problem.constraints]]
        self.rlo = torch.tensor([r[0] for r in rows], dtype=self.dt, device=self.dev)
        self.rhi = torch.tensor([r[1] for r in rows], dtype=self.dt, device=self.dev)
        finite_w = torch.isfinite(self.rhi - self.rlo)
        self.rw = torch.where(finite_w, self.rhi - self.rlo, torch.ones_like(self.rlo))
        self.lo_idx = torch.nonzero(torch.isfinite(self.rlo)).flatten()
        self.hi_idx = torch.nonzero(torch.isfinite(self.rhi)).flatten()
        extra = [enc.layer] if enc.layer else []
        self.names = list(dict.fromkeys([*problem.layer_names, *extra]))
        self.gen = torch.Generator().manual_seed(int(seed))
        self.sigma = 1.0
        self.margin = opts["margin"]
        self.acc_e: torch.Tensor | None = None
        self.e_sum: torch.Tensor | None = None
        self.last_e: torch.Tensor | None = None
        self.n_e = 0
        self.seen: set[bytes] = set()  # accepted walkers, rounded: no sample is taken twice
        # counters (all persisted for resume)
        self.c: dict[str, Any] = {
            "seed_steps": 0,
            "outer_iterations": 0,
            "sample_steps": 0,
            "generated": 0,
            "rejected": 0,
            "duplicates": 0,
            "restarts": 0,
            "seed_restarts": 0,
        }
        self.t0 = time.perf_counter()
        self.elapsed_before = 0.0
        self.nfev_before = 0  # evaluations of the runs this one resumes
        self.time_limit: float | None = None

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

    def cons(self, V: torch.Tensor) -> torch.Tensor:
        """One-sided constraints ``c >= 0`` per walker, in range widths, with the margin."""
        m = self.margin
        parts = [
            (V[:, self.lo_idx] - self.rlo[self.lo_idx]) / self.rw[self.lo_idx] - m,
            (self.rhi[self.hi_idx] - V[:, self.hi_idx]) / self.rw[self.hi_idx] - m,
        ]
        return torch.cat(parts, 1)

    def feasible(self, V: torch.Tensor) -> torch.Tensor:
        inset = ACCEPT_INSET * self.rw
        ok = (self.rlo + inset <= V) & (self.rhi - inset >= V) & torch.isfinite(V)
        return ok.all(1)

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
        d2 = torch.cdist(e, e).pow(2)
        d2 = d2 + torch.diag(torch.full_like(d2[:, 0], math.inf))
        if memory and self.acc_e is not None:
            d2 = torch.cat([d2, torch.cdist(e, self.acc_e).pow(2)], 1)
        k = min(self.o["neighbours"], d2.shape[1])
        near = torch.topk(d2, k, dim=1, largest=False).values
        near = torch.where(torch.isfinite(near), near, torch.zeros_like(near))
        return torch.log(near + 1e-2).mean(1)

    def check(self) -> None:
        if self.time_limit is not None and self.left() <= 0:
            raise _Stop("time_limit")

    def left(self) -> float:
        """Seconds of this call's time limit left (a resumed run gets the whole limit again)."""
        if self.time_limit is None:
            return math.inf
        return self.time_limit - (time.perf_counter() - self.t0)

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
    def seeding(self, bar) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
        """Eq. 8-9: (walkers u, lambda*, mu*, all seeds feasible)."""
        o, K = self.o, self.o["K"]
        u = self.initial(K).requires_grad_(True)
        lam = torch.zeros((K, len(self.lo_idx) + len(self.hi_idx)), dtype=self.dt, device=self.dev)
        mu = float(o["mu0"])
        self.any_feasible = False
        worst = torch.full((K,), -math.inf, dtype=self.dt, device=self.dev)
        for outer in builtins.range(o["max_outer"]):
            opt = self.make_opt(u, o["lr"])
            for it in builtins.range(o["inner_steps"]):
                if opt is not None:
                    opt.zero_grad()
                u.grad = None
                V, E, _ = self.evaluate(u)
                feas = self.feasible(V.detach())
                self.any_feasible |= bool(feas.any())
                if it > 0 and (bool(feas.all()) or bool((self.cons(V.detach()) >= 0).all())):
                    break
                self.lagrangian(V, E, lam, mu, False).backward()
                self.take_step(u, opt, o["lr"])
                self.c["seed_steps"] += 1
                bar.update(0, phase="seeding", step=self.c["seed_steps"])
                self.tick("seeding")
            with torch.no_grad():
                V, _, _ = self.evaluate(u)
                c = self.cons(V)
                feas = self.feasible(V)
            self.any_feasible |= bool(feas.any())
            lam = (lam - mu * c).clamp_min(0)
            mu *= o["alpha"]
            self.c["outer_iterations"] = outer + 1
            if bool(feas.all()):
                return u, lam, mu, True
            # improvement on the paper: a walker still outside whose worst constraint did not
            # improve in a whole outer iteration sits at a local optimum below the range;
            # redraw it from the prior rather than spend the remaining iterations on it
            cmin = c.min(1).values
            stuck = ~feas & (cmin <= worst + 1e-3)
            worst = cmin
            if o["seed_restarts"] and bool(stuck.any()) and outer + 1 < o["max_outer"]:
                idx = torch.nonzero(stuck).flatten()
                with torch.no_grad():
                    u[idx] = self.initial(len(idx))
                lam[idx] = 0
                worst[idx] = -math.inf
                self.c["seed_restarts"] += len(idx)
            if outer == 0 and not self.any_feasible and o["exact_check"]:
                witness = self.exact_reachability()
                if witness is not None:
                    with torch.no_grad():
                        u[0] = self.u(witness.to(self.dev, self.dt).reshape(u.shape[1:]))
        return u, lam, mu, False

    def exact_reachability(self) -> torch.Tensor | None:
        """When a first round found no feasible point: ask the exact solver (piecewise-linear
        models, input space) whether the range is reachable at all. Raises ``_Stop`` with the
        proof when it is not; returns its witness (Direct space) when it found one."""
        try:
            from inverset.exact import is_supported
            from inverset.exact.solver import solve as exact_solve
        except ImportError:
            self.c["exact_check"] = "exact solver not importable; skipped"
            return None
        p = self.p
        g = p.goal
        direct = Problem(
            p.model, p.target, Goal.range(g.low, g.high), p.domain, Direct(p.domain), p.constraints
        )
        if not direct.domain.bounded or not is_supported(direct):
            self.c["exact_check"] = "model or domain not supported by the exact solver; skipped"
            return None
        budget = min(self.o["exact_time"], self.left())
        if budget < EXACT_MIN_SECONDS:
            self.c["exact_check"] = (
                f"skipped: less than {EXACT_MIN_SECONDS:g} s of the time limit left"
            )
            return None
        r = exact_solve(direct, seed=self.seed, time_limit=budget)
        self.c["exact_check"] = (
            r.message if r.message.startswith(r.status) else f"{r.status}: {r.message}"
        )
        if r.status == "unreachable":
            self.exact_result = r
            raise _Stop("unreachable")
        if r.status == "found" and r.x is not None and isinstance(p.space, Direct):
            return torch.as_tensor(np.asarray(r.x))
        return None

    def tick(self, phase: str) -> None:
        self.check()
        if self.callback is not None:
            self.callback({"phase": phase, "accepted": self.n_acc, **self.c})

    # ------------------------------------------------------------------ run
    def run(self, store: SampleStore | None, time_limit: float | None, progress: bool) -> Result:
        K, n = self.o["K"], self.o["n"]
        self.time_limit = time_limit
        self.acc: dict[str, list[np.ndarray]] = {"x": [], "values": [], "constraints": [], "z": []}
        self.n_acc = 0
        self.store = store
        status, message = "found", ""
        latent = not isinstance(self.p.space, Direct)
        self.last_flush = time.perf_counter()
        with progress_bar(progress, n, "inverse set") as bar, self.p.session():
            saved = self.restore() if store is not None else None
            try:
                if saved is None:
                    self.set_sigma()
                    u, lam, mu, ok = self.seeding(bar)
                    self.c["seeds_all_feasible"] = ok
                    with torch.no_grad():
                        V, E, x = self.evaluate(u)
                    feas = self.feasible(V)
                    self.c["generated"] += K
                    if not bool(feas.any()):
                        raise _Stop("no_seed")
                    took = self.accept(u, V, E, x, feas, latent)
                    self.c["rejected"] += int((~took).sum())
                else:
                    u, lam, mu = saved
                bar.update(self.n_acc, phase="sampling")
                self.walk(u, lam, mu, latent, bar)
            except _Stop as stop:
                status = stop.reason
            except KeyboardInterrupt:
                status = "interrupted"
            finally:
                if store is not None:
                    self.flush(force=True)
            return self.finish(status, message)

    def walk(self, u, lam, mu, latent, bar) -> None:
        """Eq. 10-11: single gradient steps with frozen multipliers, accepting feasible walkers."""
        o, K, n = self.o, self.o["K"], self.o["n"]
        u = u.detach().clone().requires_grad_(True)
        opt = self.make_opt(u, o["step"], o["walk_optimizer"])
        if o["walk_margin"] is not None:
            self.margin = o["walk_margin"]
        outside = torch.zeros(K, dtype=torch.long, device=self.dev)
        self.walk_state = (u, lam, mu)
        first = True
        while self.n_acc < n:
            if opt is not None:
                opt.zero_grad()
            u.grad = None
            V, E, x = self.evaluate(u)
            Vd = V.detach()
            if not first:
                feas = self.feasible(Vd)
                self.c["generated"] += K
                before = self.n_acc
                take = self.accept(u, Vd, E.detach(), x, feas, latent)
                self.c["rejected"] += int((~take).sum())
                got = self.n_acc - before
                outside = torch.where(take, torch.zeros_like(outside), outside + 1)
                bar.update(got, phase="sampling", step=self.c["sample_steps"])
                if self.n_acc >= n:
                    break
                if self.c["sample_steps"] >= o["max_steps"]:
                    raise _Stop("not_found")
            first = False
            self.lagrangian(V, E, lam, mu, True).backward()
            self.take_step(u, opt, o["step"])
            self.c["sample_steps"] += 1
            if o["restart"] and bool((outside >= o["restart"]).any()):
                self.restart_walkers(u, opt, outside)
            self.walk_state = (u, lam, mu)
            self.flush()
            self.tick("sampling")

    def restart_walkers(self, u, opt, outside) -> None:
        """Walkers that produced no new sample (outside the range, or stuck at a corner of the
        box) for ``restart`` steps restart at random accepted samples."""
        idx = torch.nonzero(outside >= self.o["restart"]).flatten()
        pool = torch.as_tensor(np.concatenate(self.acc["u"]), dtype=self.dt, device=self.dev)
        pick = torch.randint(0, pool.shape[0], (len(idx),), generator=self.gen)
        # a small random move off the sample: at an accepted sample that is the centroid of
        # the memory (one sample, or K = 1) the diversity gradient is zero and the walker
        # would stay put
        noise = torch.rand((len(idx), *u.shape[1:]), generator=self.gen, dtype=torch.float64)
        with torch.no_grad():
            moved = pool[pick.to(self.dev)] + self.o["step"] * (2 * noise.to(self.dev, self.dt) - 1)
            u[idx] = self.project(moved)
        if opt is not None:
            st = opt.state.get(u, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    st[key][idx] = 0
        outside[idx] = 0
        self.c["restarts"] += len(idx)

    def accept(self, u, V, E, x, feas, latent) -> torch.Tensor:
        """Record the feasible walkers that are not exact repeats of an accepted sample (up to
        n in all) and their E features; returns the mask of walkers taken. With integer
        features the candidates are the walkers rounded to whole numbers, evaluated again
        (the walk itself stays continuous)."""
        if self.box.integer and not latent:
            with torch.no_grad():
                u = self.u(self.box.project(self.z(u.detach()), round_integers=True))
                V, E, x = self.evaluate(u)
            feas = self.feasible(V)
        cand = torch.nonzero(feas).flatten().tolist()
        if not cand:
            return torch.zeros_like(feas)
        ucand = u[cand].detach().double().cpu().numpy().reshape(len(cand), -1)
        keep = []
        for i, row in zip(cand, ucand, strict=True):
            if len(keep) >= self.o["n"] - self.n_acc:
                break
            key = np.round(row, 7).tobytes()
            if key in self.seen:
                self.c["duplicates"] += 1
                continue
            self.seen.add(key)
            keep.append(i)
        took = torch.zeros_like(feas)
        took[keep] = True
        idx = torch.as_tensor(keep, dtype=torch.long, device=self.dev)
        if len(idx) == 0:
            return took
        self.remember(E[idx].detach() / self.sigma)
        xi = x[idx].detach().cpu().numpy()
        Vi = V[idx].detach().double().cpu().numpy()
        ui = u[idx].detach().cpu().numpy()
        zi = self.z(u[idx].detach()).cpu().numpy() if latent else None
        self.acc["x"].append(xi)
        self.acc["values"].append(Vi[:, 0])
        self.acc["constraints"].append(Vi[:, 1:])
        self.acc.setdefault("u", []).append(ui)
        if latent:
            self.acc["z"].append(zi)
        self.n_acc += len(idx)
        if self.store is not None:
            self.store.add(x=xi, values=Vi[:, 0], constraints=Vi[:, 1:], z=zi)
        return took

    def remember(self, e: torch.Tensor) -> None:
        """Add normalized E features of accepted samples to the distance memory (the features
        themselves are kept only for 'log' diversity; 'sq' needs their sum alone)."""
        if self.o["diversity"] == "log":
            self.acc_e = e if self.acc_e is None else torch.cat([self.acc_e, e])
        self.n_e += len(e)
        self.e_sum = e.sum(0) if self.e_sum is None else self.e_sum + e.sum(0)
        self.last_e = e

    def set_sigma(self) -> None:
        """Spread of E at random walkers: distances are measured in units of it."""
        with torch.no_grad():
            _, E, _ = self.evaluate(self.initial(max(16, self.o["K"])))
        var = float(((E - E.mean(0)) ** 2).sum(1).mean())
        self.sigma = math.sqrt(var) if var > 1e-24 else 1.0

    # ------------------------------------------------------------------ persistence
    def flush(self, force: bool = False) -> None:
        st = self.store
        due = st is not None and (st.pending >= 64 or time.perf_counter() - self.last_flush > 5)
        if st is None or not (force or due):
            return
        walkers = None
        if getattr(self, "walk_state", None) is not None:
            u, lam, mu = self.walk_state
            walkers = {
                "u": u.detach().cpu().numpy(),
                "lam": lam.detach().cpu().numpy(),
                "mu": np.array(mu),
                "sigma": np.array(self.sigma),
                "gen": self.gen.get_state().numpy(),
            }
        phase = "sampling" if walkers is not None else "seeding"
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

    def restore(self):
        """Walk state of a saved run, or None to start afresh (no run, or stopped in seeding)."""
        st = self.store
        w = st.walkers()
        if w is None or st.state.get("phase") != "sampling":
            return None
        data = st.load()
        if data:
            for k in ("x", "values", "constraints", "z"):
                if k in data:
                    self.acc[k].append(data[k])
            self.n_acc = len(data["x"])
            self.acc["u"] = [self.acc_u_from(data)]
            rows = self.acc["u"][0].astype(np.float64).reshape(self.n_acc, -1)
            self.seen = {np.round(r, 7).tobytes() for r in rows}
        for k in self.c:
            if k in st.state:
                self.c[k] = st.state[k]
        self.elapsed_before = float(st.state.get("elapsed", 0.0))
        self.nfev_before = int(st.state.get("nfev", 0))
        self.sigma = float(w["sigma"])
        self.gen.set_state(torch.as_tensor(w["gen"], dtype=torch.uint8))
        t = lambda a: torch.as_tensor(a, dtype=self.dt, device=self.dev)  # noqa: E731
        if self.n_acc:
            _, E = self.verify(data["x"])
            e = t(E) / self.sigma
            self.remember(e)
            self.last_e = e[-self.o["K"] :]
        self.walk_state = (t(w["u"]), t(w["lam"]), float(w["mu"]))
        self.resumed = True
        return self.walk_state

    def acc_u_from(self, data: dict[str, np.ndarray]) -> np.ndarray:
        """Unit coordinates of accepted samples (inputs in Direct space, codes in Latent)."""
        src = data["z"] if "z" in data else data["x"]
        zt = torch.as_tensor(src, dtype=self.dt, device=self.dev)
        return self.u(zt).cpu().numpy()

    # ------------------------------------------------------------------ answer
    def finish(self, status: str, message: str) -> Result:
        """Re-evaluate every accepted sample on the model and build the Result."""
        o, n = self.o, self.o["n"]
        p = self.p
        info: dict[str, Any] = {**self.c, "K": o["K"], "n": n, "encoder": self.enc.describe()}
        if getattr(self, "resumed", False):
            info["resumed"] = True
        timings = {"total": self.elapsed}
        if status == "unreachable":
            r = self.exact_result
            return Result(
                x=None,
                value=None,
                status="unreachable",
                message=f"inverse set is empty: {r.message}",
                bound=r.bound,
                nfev=self.nfev_before + p.nfev,
                solver="inverse_set",
                timings=timings,
                info=info,
            )
        xs = np.concatenate(self.acc["x"]) if self.acc["x"] else np.zeros((0, *p.domain.shape))
        V, E = self.verify(xs)
        inside = self.in_ranges(V) & self.in_domain(xs)
        info["verified"] = int(inside.sum())
        info["failed_verification"] = int((~inside).sum())
        xs, V, E = xs[inside], V[inside], E[inside]
        accepted = len(xs)
        info["accepted"] = accepted
        info["diversity"] = _mean_pairwise(E)
        info["diversity_input"] = _mean_pairwise(xs.reshape(len(xs), -1)) if len(xs) > 1 else None
        if accepted > DIVERSITY_PAIRS_OF:
            info["diversity_of"] = f"{DIVERSITY_PAIRS_OF} random samples of {accepted}"
        info["grad_evals"] = (self.c["seed_steps"] + self.c["sample_steps"]) * o["K"]
        info["seconds_per_sample"] = self.elapsed / accepted if accepted else None
        rng = self.describe_ranges()
        steps = f"{self.c['seed_steps']} seeding + {self.c['sample_steps']} sampling steps"
        if status == "found" and accepted >= n:
            message = f"{accepted} samples, all verified in {rng}, after {steps}"
        else:
            why = {
                "no_seed": f"seeding found no point in {rng} after {self.c['outer_iterations']} "
                f"outer iterations ({self.c['seed_steps']} steps)",
                "not_found": f"the walk used its budget of {o['max_steps']} steps",
                "found": "every sample was taken",
                "time_limit": "time limit reached",
                "interrupted": "interrupted",
            }.get(status, status)
            if info["failed_verification"]:
                why += (
                    f" but {info['failed_verification']} failed verification on the model and "
                    "domain"
                )
            if status == "found":
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
            message = f"{why}: {accepted} of {n} samples, all verified in {rng}, after {steps}"
            if self.store is not None and resumable:
                message += f"; saved in {self.store.dir}, continue with resume=True / --resume"
        arrays: dict[str, np.ndarray] = {}
        if V.shape[1] > 1:
            arrays["constraints"] = V[:, 1:]
        if self.acc["z"]:
            arrays["z"] = np.concatenate(self.acc["z"])[inside]
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
            timings=timings,
            info=info,
            arrays=arrays,
        )

    @torch.no_grad()
    def verify(self, xs: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(values [N, m], E features [N, p]) of model inputs ``xs``, recomputed from scratch."""
        vs, es = [], []
        for i in builtins.range(0, len(xs), chunk):
            x = torch.as_tensor(xs[i : i + chunk], dtype=self.dt, device=self.dev)
            acts = forward(self.p.model, x, self.names)
            v = [self.p.target.evaluate(acts)]
            v += [t.evaluate(acts) for t, _, _ in self.p.constraints]
            vs.append(torch.stack(v, 1).double().cpu().numpy())
            es.append(self.enc(x, acts).double().cpu().numpy())
        m = len(self.rlo)
        if not vs:
            return np.zeros((0, m)), np.zeros((0, 1))
        return np.concatenate(vs), np.concatenate(es)

    def in_ranges(self, V: np.ndarray) -> np.ndarray:
        lo, hi = self.rlo.double().cpu().numpy(), self.rhi.double().cpu().numpy()
        return ((lo <= V) & (hi >= V) & np.isfinite(V)).all(1)

    def in_domain(self, xs: np.ndarray) -> np.ndarray:
        if not len(xs):
            return np.zeros(0, dtype=bool)
        x = torch.as_tensor(xs, dtype=torch.float64)
        return self.p.domain.contains(x, tol=1e-5).cpu().numpy()

    def describe_ranges(self) -> str:
        parts = [f"{self.p.target} in [{self.p.goal.low:g}, {self.p.goal.high:g}]"]
        parts += [f"{t} in [{a:g}, {b:g}]" for t, a, b in self.p.constraints]
        return " and ".join(parts)


def _mean_pairwise(E: np.ndarray, chunk: int = 1024, seed: int = 0) -> float | None:
    """Mean Euclidean distance over all pairs of rows (the paper's diversity metric); over
    ``DIVERSITY_PAIRS_OF`` random rows when there are more (an unbiased estimate)."""
    if len(E) < 2:
        return None
    if len(E) > DIVERSITY_PAIRS_OF:
        pick = np.random.default_rng(seed).choice(len(E), DIVERSITY_PAIRS_OF, replace=False)
        E = E[pick]
    e = torch.as_tensor(E, dtype=torch.float64)
    total = 0.0
    for i in builtins.range(0, len(e), chunk):
        d = torch.cdist(e[i : i + chunk], e)
        total += float(d.sum())
    n = len(e)
    return total / (n * (n - 1))
