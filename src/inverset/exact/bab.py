"""Branch and bound on input boxes with batched CROWN bounds.

Each round takes the ``batch`` open boxes with the largest upper bounds, halves each along
one dimension (see ``branching`` of :func:`maximize`), bounds all children in one batched
CROWN pass, and evaluates the network at every child's centre and at the vertices maximizing
its linear upper bounds (incumbents), plus a few projected gradient steps from the best of
them and an exact MILP search of a small box around the best point (:mod:`.polish`). Boxes
that cannot beat the incumbent by more than the tolerance (or cannot reach the threshold in
decision mode) are dropped; the largest upper bound of a dropped box is remembered so that
the reported bound stays sound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from inverset.exact.bounds import corner, crown
from inverset.exact.ir import Head, Network
from inverset.exact.polish import polish

LEAF = Head("leaf", 0)


@dataclass
class BaBResult:
    # optimal | time_limit | max_evals (node budget) | reached (best >= threshold) | below
    # (bound < threshold) | incomplete (nothing left to split, no proof: relu_bab, min heads)
    status: str
    x: torch.Tensor | None
    value: float
    bound: float
    nodes: int
    rounds: int
    history: dict[str, list] = field(default_factory=dict)


def allowed_gap(tol: float, value: float) -> float:
    """The gap to the bound that counts as optimal: ``tol`` absolute, or relative to the best
    ``value`` (``tol`` alone before there is one)."""
    return max(tol, tol * abs(value)) if math.isfinite(value) else tol


def local_ascent(
    net: Network,
    x: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    steps: int = 30,
    head: Head = LEAF,
    deadline: float = math.inf,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected sign-gradient ascent of ``head(net(x))`` from the points ``x`` in [lo, hi]
    (fewer steps when the ``time.perf_counter()`` deadline comes first)."""
    width = (hi - lo).clamp_min(1e-12)
    x = x.detach().clone()
    with torch.no_grad():
        best_v = head.apply(net.forward(x))
    best_x = x.clone()
    step = 0.1 * width
    for i in range(steps):
        if time.perf_counter() > deadline:
            break
        x.requires_grad_(True)
        v = head.apply(net.forward(x))
        (g,) = torch.autograd.grad(v.sum(), x)
        with torch.no_grad():
            better = v > best_v
            best_v = torch.where(better, v, best_v)
            best_x[better] = x[better]
            x = torch.minimum(torch.maximum(x + step * torch.sign(g), lo), hi)
            if i % 10 == 9:
                step = step * 0.5
    with torch.no_grad():
        v = head.apply(net.forward(x))
        better = v > best_v
        best_v = torch.where(better, v, best_v)
        best_x[better] = x[better]
    return best_x, best_v


def end_of_round(
    ub: torch.Tensor,
    dropped: float,
    best_v: float,
    threshold: float | None,
    eps: float,
    history: dict[str, list],
    t0: float,
    on_round=None,
) -> str | None:
    """Record a round (history, progress callback) of a branch and bound over open nodes with
    upper bounds ``ub`` and say whether the search is over: 'reached', 'below', 'optimal' or
    None (go on). ``dropped``: the largest bound of a node pruned so far."""
    bound = final_bound(ub, dropped, best_v, below=False)
    history["time"].append(time.perf_counter() - t0)
    history["best"].append(best_v)
    history["bound"].append(bound)
    history["open"].append(int(ub.numel()))
    if on_round is not None:
        on_round(best_v, bound, int(ub.numel()))
    if threshold is not None and best_v >= threshold:
        return "reached"
    if ub.numel() == 0:
        return "below" if threshold is not None else "optimal"
    if threshold is None and bound - best_v <= eps:
        return "optimal"
    return None


def final_bound(ub: torch.Tensor, dropped: float, best_v: float, below: bool) -> float:
    """The certified bound when the search stops (at least the best value, unless every node
    was proven below the threshold)."""
    bound = max(dropped, float(ub.max())) if ub.numel() else dropped
    return bound if below else max(bound, best_v)


def maximize(
    net: Network,
    lo: torch.Tensor,
    hi: torch.Tensor,
    *,
    head: Head = LEAF,
    incumbent: tuple[torch.Tensor, float] | None = None,
    threshold: float | None = None,
    tol: float = 1e-4,
    time_limit: float | None = None,
    max_nodes: int | None = None,
    batch: int = 512,
    on_round=None,
    branching: str = "auto",
    alpha_steps: int = 0,
) -> BaBResult:
    """Certified maximum of ``head(net(x))`` (default: output row 0) over the box [lo, hi]
    (1-D tensors). Row bounds are combined through the head's min/max tree.

    With ``threshold`` it only decides whether the maximum reaches it: it stops at the first
    point >= threshold (status 'reached') or when every box is bounded below it ('below').
    ``branching``: 'relaxation' (split where first-layer ReLU relaxations are loosest; best
    on shallow nets), 'gradient' (where the bound's input slope times width is largest),
    'alternate' (the two by turns; the most robust on deep nets such as ACAS Xu) or 'auto'
    (relaxation up to three ReLU layers, else alternate).
    ``alpha_steps``: optimized-slope (alpha-CROWN) steps on every box's output bound.
    A Ctrl-C ends the search: status 'interrupted' with the incumbent and bound so far.
    """
    t0 = time.perf_counter()
    deadline = math.inf if time_limit is None else t0 + time_limit
    L, U = lo[None].clone(), hi[None].clone()
    best_x, best_v = (lo + hi) / 2, -math.inf
    if incumbent is not None and incumbent[0] is not None:
        best_x, best_v = incumbent[0].to(lo), float(incumbent[1])
    history: dict[str, list] = {"time": [], "best": [], "bound": [], "open": []}
    w0 = net.weights[0].abs()
    if branching == "auto":
        branching = "relaxation" if net.n_relu <= 3 else "alternate"

    turn = [0]

    reuse = net.n_relu >= 4  # deep nets: children start from their parent's bounds
    widths = net.widths()

    def unpack(P):
        if P is None:
            return None
        parts = torch.split(P, widths + widths, dim=1)
        n = len(widths)
        return list(zip(parts[:n], parts[n:], strict=True))

    def bound_boxes(L, U, P=None):
        b = crown(net, L, U, lower=False, init=unpack(P), alpha_steps=alpha_steps)
        packed = torch.cat([p[0] for p in b.pre] + [p[1] for p in b.pre], 1) if reuse else None
        ub = head.apply(b.out_hi)
        corners = corner(b.A_hi, L[:, None, :], U[:, None, :]).reshape(-1, L.shape[1])
        cand = torch.cat([corners, (L + U) / 2])
        with torch.no_grad():
            vals = head.apply(net.forward(cand))
        rule = branching
        if rule == "alternate":
            rule = ("relaxation", "gradient")[turn[0] % 2]
            turn[0] += 1
        if rule == "gradient" or not b.pre:
            # the dimension whose halving lowers one child's linear bound the most
            score = b.A_hi.abs().sum(1) * (U - L)
        else:
            # where the first layer's unstable ReLUs are loosest: box width times the
            # relaxation gap each input dimension feeds
            l0, u0 = b.pre[0]
            gap = torch.where((l0 < 0) & (u0 > 0), -u0 * l0 / (u0 - l0).clamp_min(1e-30), 0.0)
            score = (U - L) * (gap @ w0 + 1e-9)
        return ub, score.argmax(1), cand, vals, packed

    def take(cand, vals):
        nonlocal best_x, best_v
        i = int(torch.argmax(vals))
        if float(vals[i]) > best_v:
            best_v, best_x = float(vals[i]), cand[i].clone()

    nodes, rounds = 1, 0
    size, per_box = min(batch, 64), 0.0
    dropped = -math.inf

    def eps() -> float:
        return allowed_gap(tol, best_v)

    def level() -> float:
        return threshold if threshold is not None else best_v + eps()

    polished = [-math.inf, t0]  # value last polished, and when

    def polish_incumbent() -> None:
        # exact local search around the incumbent once the search has run a while, again when
        # the incumbent improved (by more than the tolerance: points polished already come
        # back with rounding-level gains), at most every 2 s and with 5% of the time left
        now = time.perf_counter()
        wait = 0.5 if polished[0] == -math.inf else 2.0
        if head.kind != "leaf" or best_v <= polished[0] + eps() or now - polished[1] < wait:
            return
        budget = min(1.0, 0.05 * (deadline - now))
        if budget > 0.05:
            got = polish(net, best_x, lo, hi, row=head.index, time_limit=budget)
            if got is not None:
                take(got[0][None], torch.tensor([got[1]], dtype=got[0].dtype))
        polished[:] = [best_v, time.perf_counter()]

    status = "time_limit"
    ub = torch.full((1,), math.inf, dtype=lo.dtype)  # no bound before the root's
    try:
        ub, split, cand, vals, P = bound_boxes(L, U)
        take(cand, vals)
        xs, vs = local_ascent(
            net, cand[torch.argsort(vals, descending=True)[:8]], lo, hi, head=head
        )
        take(xs, vs)
        while True:
            polish_incumbent()
            keep = ub >= level()
            if not bool(keep.all()):
                dropped = max(dropped, float(ub[~keep].max()))
                L, U, ub, split = L[keep], U[keep], ub[keep], split[keep]
                P = P[keep] if P is not None else None
            done = end_of_round(ub, dropped, best_v, threshold, eps(), history, t0, on_round)
            if done is not None:
                status = done
                break
            now = time.perf_counter()
            # each split makes two nodes: a round splits no more than the budget has room for
            room = math.inf if max_nodes is None else (max_nodes - nodes) // 2
            if room < 1:
                status = "max_evals"
                break
            if now + 0.5 * per_box * 2 * min(size, ub.numel()) >= deadline:
                break
            k = int(min(size, ub.numel(), room))
            top = torch.topk(ub, k).indices if k < ub.numel() else torch.arange(ub.numel())
            rest = torch.ones(ub.numel(), dtype=torch.bool)
            rest[top] = False
            Lp, Up, sp = L[top], U[top], split[top]
            Lc, Uc = _halves(Lp, Up, sp)
            ubc, splitc, cand, vals, Pc = bound_boxes(
                Lc, Uc, P[top].repeat(2, 1) if reuse else None
            )
            ubc = torch.minimum(ubc, ub[top].repeat(2))
            take(cand, vals)
            if rounds % 4 == 0:
                top8 = cand[torch.argsort(vals, descending=True)[:8]]
                xs, vs = local_ascent(net, top8, lo, hi, steps=20, head=head)
                take(xs, vs)
            nodes += Lc.shape[0]
            rounds += 1
            # keep rounds short (about 0.3 s) so that the time limit is met closely
            per_box = (time.perf_counter() - now) / Lc.shape[0]
            size = int(min(batch, max(8, 0.3 / max(per_box, 1e-9) / 2)))
            L = torch.cat([L[rest], Lc])
            U = torch.cat([U[rest], Uc])
            ub = torch.cat([ub[rest], ubc])
            split = torch.cat([split[rest], splitc])
            P = torch.cat([P[rest], Pc]) if reuse else None
    except KeyboardInterrupt:  # a Ctrl-C: the incumbent and the open nodes' bound so far
        status = "interrupted"
    bound = final_bound(ub, dropped, best_v, threshold is not None and status == "below")
    return BaBResult(status, best_x, best_v, bound, nodes, rounds, history)


def _halves(L: torch.Tensor, U: torch.Tensor, dim: torch.Tensor):
    """Both halves of every box split at the middle of dimension ``dim`` (per box)."""
    mid = (L.gather(1, dim[:, None]) + U.gather(1, dim[:, None])) / 2
    U1 = U.clone()
    U1.scatter_(1, dim[:, None], mid)
    L2 = L.clone()
    L2.scatter_(1, dim[:, None], mid)
    return torch.cat([L, L2]), torch.cat([U1, U])
