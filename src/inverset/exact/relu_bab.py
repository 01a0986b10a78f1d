"""Branch and bound on ReLU phases with beta-CROWN bounds, for networks with many inputs.

Splitting input boxes (:mod:`.bab`) is hopeless in hundreds of dimensions (an MNIST image).
Here a node fixes some unstable ReLUs active (z >= 0) or inactive (z <= 0) on the whole box.
Its bound is CROWN's with those ReLUs linear and each split condition added as a Lagrangian
term ``beta * z`` (beta-CROWN, Wang et al., NeurIPS 2021); the lower slopes (alpha) and the
multipliers (beta >= 0) of all nodes of a round are optimized together by a few Adam steps,
each child starting from its parent's (its new split's multiplier from 0). Every iterate is a
sound bound, so the tightest seen is kept. Intermediate bounds are the root's (with optimized
slopes), clamped by each node's splits and, for inputs of up to 64 dimensions, recomputed
through them. A node whose ReLUs are all fixed is a linear region: its maximum there is a
linear program, solved exactly (scipy's HiGHS).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy.optimize import linprog

from inverset.exact.adam import Adam
from inverset.exact.bab import (
    LEAF,
    BaBResult,
    allowed_gap,
    end_of_round,
    final_bound,
    local_ascent,
)
from inverset.exact.bounds import _relax, backward, corner, crown
from inverset.exact.ir import Head, Network

LR_BETA = 0.1
#: nodes recompute their hidden-layer bounds through their splits when the input has at most
#: this many dimensions (12-20 inputs: 10-15% tighter bounds at 30 s; MNIST's 784: 6x fewer
#: nodes per second and a looser bound at 60 s)
RECOMPUTE_MAX_INPUTS = 64


class _Nodes:
    """What bounding a batch of nodes (split patterns) needs: the root's intermediate bounds
    and the layer layout of the flat pattern vector."""

    def __init__(self, net, lo, hi, head: Head, steps: int, deadline: float = math.inf):
        self.net, self.lo, self.hi, self.head = net, lo, hi, head
        # optimized slopes for every layer's bounds, once: each node reuses them
        root = crown(
            net,
            lo[None],
            hi[None],
            lower=False,
            alpha_hidden=steps,
            alpha_steps=steps,
            deadline=deadline,
        )
        self.L = torch.cat([p[0][0] for p in root.pre])
        self.U = torch.cat([p[1][0] for p in root.pre])
        self.sizes = net.widths()
        self.root_rows = root.out_hi

    def layers(self, t: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(t, self.sizes, dim=-1))

    def clamped(self, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Root pre-activation bounds [B, n] restricted by the split patterns S [B, n]."""
        return (
            torch.where(S > 0, self.L.clamp_min(0), self.L),
            torch.where(S < 0, self.U.clamp_max(0), self.U),
        )

    def pre(self, S: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Pre-activation bounds per layer for the nodes S: the root's, clamped by the splits,
        then recomputed by CROWN through the split (now linear) ReLUs of earlier layers."""
        Lc, Uc = self.clamped(S)
        pre = list(zip(self.layers(Lc), self.layers(Uc), strict=True))
        if self.net.n_relu > 1 and self.net.n_inputs <= RECOMPUTE_MAX_INPUTS:
            B = S.shape[0]
            lo, hi = self.lo[None].expand(B, -1), self.hi[None].expand(B, -1)
            pre = crown(self.net, lo, hi, lower=False, init=pre).pre
        return pre

    def bound(
        self,
        S: torch.Tensor,
        rows: torch.Tensor,
        level: float,
        steps: int,
        lr=0.1,
        warm: torch.Tensor | None = None,
        deadline: float = math.inf,
    ):
        """Tighter upper bounds of the output rows of the nodes S [B, n] (split phase +1/-1,
        0 free) whose current row bounds are ``rows`` [B, m].

        Under a max (or single-row) head, rows already below ``level`` cannot matter and are
        not bounded again. ``warm`` [B, 2n]: slopes and multipliers to start from (a
        parent's). Returns (row bounds [B, m], the input coefficients [P, n0] of every row
        bounded, the unstable free ReLU to split next per node (-1 for a linear region), the
        optimized slopes and multipliers per node [B, 2n] for its children). Past
        ``deadline`` the optimization stops (every iterate is a sound bound)."""
        net = self.net
        live = rows >= level if self.head.kind in ("leaf", "max") else torch.ones_like(rows)
        live = live.bool()
        live[~live.any(1), 0] = True  # every node gets its branching decision
        bi, ri = live.nonzero(as_tuple=True)
        P = bi.numel()
        pre = self.pre(S[bi])
        relax = [_relax(lb, ub) for lb, ub in pre]
        unstable = [((lb < 0) & (ub > 0))[:, None, :] for lb, ub in pre]
        dt = pre[0][0].dtype
        Sj = [s.to(dt)[:, None, :] for s in self.layers(S[bi])]
        split = [bool((s != 0).any()) for s in Sj]
        A0 = net.weights[-1][ri][:, None, :]
        c0 = net.biases[-1][ri][:, None]
        lo, hi = self.lo[None].expand(P, -1), self.hi[None].expand(P, -1)
        init = [r[2][:, None, :] for r in relax]
        if warm is None:
            alphas = [a.clone().requires_grad_(True) for a in init]
            betas = [torch.zeros(P, 1, n, dtype=dt).requires_grad_(True) for n in self.sizes]
        else:
            wa, wb = warm[bi].to(dt).chunk(2, dim=1)
            alphas = [
                torch.where(u, a[:, None, :], a0).requires_grad_(True)
                for a, u, a0 in zip(self.layers(wa), unstable, init, strict=True)
            ]
            betas = [b[:, None, :].clone().requires_grad_(True) for b in self.layers(wb)]
        groups = [
            {"params": [a for a, u in zip(alphas, unstable, strict=True) if bool(u.any())]},
            {"params": [bt for bt, has in zip(betas, split, strict=True) if has], "lr": LR_BETA},
        ]
        groups = [g for g in groups if g["params"]]
        opt = Adam(groups, lr=lr) if groups and steps else None
        best = None
        for it in range(steps + 1):
            slopes = [
                (su, tu, torch.where(u, a.clamp(0, 1), a0))
                for (su, tu, _), u, a, a0 in zip(relax, unstable, alphas, init, strict=True)
            ]
            beta = [
                bt.clamp_min(0) * s if has else None
                for bt, s, has in zip(betas, Sj, split, strict=True)
            ]
            trace: list[torch.Tensor] = []
            ub, A, _ = backward(net, net.n_relu - 1, A0, c0, slopes, lo, hi, beta, trace)
            with torch.no_grad():
                if best is None:
                    best = [ub.detach().clone(), A.detach().clone(), trace]
                else:
                    better = ub < best[0]
                    best[0] = torch.where(better, ub, best[0])
                    best[1] = torch.where(better[:, :, None], A, best[1])
                    best[2] = trace
            if it == steps or opt is None or time.perf_counter() > deadline:
                break
            opt.zero_grad()
            ub.sum().backward()
            opt.step()
        # crossed bounds: the splits contradict each other, the node holds no input
        empty = torch.stack([(lb > ub + 1e-7).any(1) for lb, ub in pre]).any(0)
        got = torch.where(empty, -math.inf, best[0][:, 0])
        new = rows.clone()
        new[bi, ri] = torch.minimum(rows[bi, ri], got)
        coeffs = [t.detach()[:, 0, :] for t in best[2][::-1]]
        pick = self._branch(new, bi, ri, coeffs, pre, Sj, S.shape[0])
        first = torch.ones(P, dtype=torch.bool)
        first[1:] = bi[1:] != bi[:-1]
        with torch.no_grad():
            params = torch.cat(
                [a[:, 0].clamp(0, 1) for a in alphas] + [b[:, 0].clamp_min(0) for b in betas], 1
            )
        out = torch.zeros(S.shape[0], params.shape[1], dtype=torch.float32)
        out[bi[first]] = params[first].float()
        return new, best[1][:, 0, :], pick, out

    def _branch(self, rows, bi, ri, coeffs, pre, Sj, B) -> torch.Tensor:
        """Per node, the free unstable ReLU whose triangle relaxation costs the rows that
        decide the node's bound the most (coefficient of its output times the triangle's
        intercept, weighted by the head's sensitivity to each row)."""
        r = rows.detach().clone().requires_grad_(True)
        (w,) = torch.autograd.grad(self.head.apply(r).sum(), r)
        wp = w[bi, ri][:, None] + 1e-6
        scores = []
        for A, (lb, ub), s in zip(coeffs, pre, Sj, strict=True):
            free = (lb < 0) & (ub > 0) & (s[:, 0, :] == 0)
            gap = -ub * lb / (ub - lb).clamp_min(1e-30)
            sc = wp * A.clamp_min(0) * gap + 1e-9 * gap
            scores.append(torch.where(free, sc, torch.full_like(sc, -math.inf)))
        sc = torch.cat(scores, 1)
        node = torch.full((B, sc.shape[1]), -math.inf, dtype=sc.dtype)
        node = node.scatter_reduce(0, bi[:, None].expand_as(sc), sc, "amax")
        top, idx = node.max(1)
        return torch.where(torch.isfinite(top), idx, torch.full_like(idx, -1))

    def linear_region(self, s: torch.Tensor) -> tuple[float, np.ndarray | None]:
        """Maximum of the head over the box where the ReLUs follow the pattern s [n] (none
        unstable): there the network is linear, so this is a linear program per leaf row, or
        one for a min of rows (its epigraph). Exact for a row, a max or a min of rows; for
        deeper min/max trees an upper bound. Returns (value, -inf when the region is empty;
        an input reaching it, or None)."""
        net = self.net
        pre = self.pre(s[None])
        active = [(lb[0] >= 0).to(lb.dtype) for lb, _ in pre]
        M, c = net.weights[0], net.biases[0]
        rows, rhs = [], []
        for j, (sj, dj) in enumerate(zip(self.layers(s), active, strict=True)):
            fixed = sj != 0
            if bool(fixed.any()):  # split phase: -s z <= 0
                sign = sj[fixed].to(M.dtype)[:, None]
                rows.append(-sign * M[fixed])
                rhs.append(sign[:, 0] * c[fixed])
            M, c = net.weights[j + 1] @ (dj[:, None] * M), net.weights[j + 1] @ (dj * c)
            c = c + net.biases[j + 1]
        G = torch.cat(rows).numpy() if rows else np.zeros((0, M.shape[1]))
        h = torch.cat(rhs).numpy() if rows else np.zeros(0)
        M, c = M.numpy(), c.numpy()
        box = list(zip(self.lo.tolist(), self.hi.tolist(), strict=True))

        def lp(idx: list[int]) -> tuple[float, np.ndarray | None]:
            # max t s.t. t <= M[r] x + c[r] for r in idx, G x <= h, x in the box
            n0 = M.shape[1]
            A = np.vstack(
                [
                    np.hstack([G, np.zeros((len(h), 1))]),
                    np.hstack([-M[idx], np.ones((len(idx), 1))]),
                ]
            )
            rhs_ = np.concatenate([h, c[idx]])
            obj = np.zeros(n0 + 1)
            obj[-1] = -1.0
            res = linprog(obj, A_ub=A, b_ub=rhs_, bounds=[*box, (None, None)], method="highs")
            if res.status == 2:
                return -math.inf, None
            if res.status != 0:  # numerical trouble: the box maximum of the rows (sound)
                top = np.clip(M[idx], 0, None) @ self.hi.numpy()
                top = top + np.clip(M[idx], None, 0) @ self.lo.numpy() + c[idx]
                return float(top.min()), None
            return float(-res.fun), res.x[:n0]

        def solve(hd: Head) -> tuple[float, np.ndarray | None]:
            if hd.kind == "leaf":
                return lp([hd.index])
            if hd.kind == "min" and all(ch.kind == "leaf" for ch in hd.children):
                return lp([ch.index for ch in hd.children])
            parts = [solve(ch) for ch in hd.children]
            pick = max if hd.kind == "max" else min  # min of maxima: an upper bound
            return pick(parts, key=lambda p: p[0])

        return solve(self.head)


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
    batch: int = 256,
    on_round=None,
    steps: int = 10,
) -> BaBResult:
    """Certified maximum of ``head(net(x))`` over the box [lo, hi] by splitting ReLU phases.

    Same contract as :func:`inverset.exact.bab.maximize` (``threshold``: stop at the first
    point reaching it, or once every node is bounded below it). ``steps``: Adam steps on the
    slopes and multipliers of each round's nodes (0 = plain CROWN on the clamped bounds).
    A Ctrl-C ends the search: status 'interrupted' with the incumbent and bound so far.
    """
    t0 = time.perf_counter()
    deadline = math.inf if time_limit is None else t0 + time_limit
    best_x, best_v = (lo + hi) / 2, -math.inf
    if incumbent is not None and incumbent[0] is not None:
        best_x, best_v = incumbent[0].to(lo), float(incumbent[1])
    history: dict[str, list] = {"time": [], "best": [], "bound": [], "open": []}

    def take(cand: torch.Tensor) -> None:
        nonlocal best_x, best_v
        with torch.no_grad():
            vals = head.apply(net.forward(cand))
        i = int(torch.argmax(vals))
        if float(vals[i]) > best_v:
            best_v, best_x = float(vals[i]), cand[i].clone()

    def eps() -> float:
        return allowed_gap(tol, best_v)

    def level() -> float:
        return threshold if threshold is not None else best_v + eps()

    def evaluate(S: torch.Tensor, rows: torch.Tensor, warm=None):
        """Row bounds, incumbents and next splits of the nodes S; linear regions exactly."""
        rows, A, pick, wout = nodes_.bound(S, rows, level(), steps, warm=warm, deadline=deadline)
        take(corner(A, lo[None, :], hi[None, :]))
        ub = head.apply(rows)
        for i in (pick < 0).nonzero().reshape(-1).tolist():
            v, x = nodes_.linear_region(S[i])
            ub[i] = min(float(ub[i]), v)
            if x is not None:
                take(torch.as_tensor(x, dtype=lo.dtype)[None])
        return rows, ub, pick, wout

    nodes, rounds, dropped = 1, 0, -math.inf
    status = "time_limit"
    ub = torch.full((1,), math.inf, dtype=lo.dtype)  # no bound before the root's
    try:
        # the root's optimized bounds take at most a third of the time limit
        nodes_ = _Nodes(net, lo, hi, head, max(steps, 20), t0 + (deadline - t0) / 3)
        ub = head.apply(nodes_.root_rows)  # the root's, until its node is bounded
        n = int(nodes_.L.numel())
        S = torch.zeros(1, n, dtype=torch.int8)
        now = time.perf_counter()
        R, ub, pick, Wm = evaluate(S, nodes_.root_rows)
        per_node = time.perf_counter() - now
        xs, _ = local_ascent(net, best_x[None], lo, hi, head=head, deadline=deadline)
        take(xs)
        size = _round_size(min(batch, 8), per_node, deadline)
        while True:
            keep = ub >= level()
            if not bool(keep.all()):
                dropped = max(dropped, float(ub[~keep].max()))
                S, R, ub, pick, Wm = S[keep], R[keep], ub[keep], pick[keep], Wm[keep]
            done = end_of_round(ub, dropped, best_v, threshold, eps(), history, t0, on_round)
            if done is not None:
                status = done
                break
            splittable = pick >= 0
            if not bool(splittable.any()):  # only linear regions left (min heads: not exact)
                status = "incomplete"
                break
            now = time.perf_counter()
            # each split makes two nodes: a round splits no more than the budget has room for
            room = math.inf if max_nodes is None else (max_nodes - nodes) // 2
            if room < 1:
                status = "max_evals"
                break
            if now + 2 * per_node >= deadline:  # not even the smallest round fits
                break
            order = torch.argsort(torch.where(splittable, ub, -math.inf), descending=True)
            top = order[: int(min(size, int(splittable.sum()), room))]
            rest = torch.ones(ub.numel(), dtype=torch.bool)
            rest[top] = False
            Sc = S[top].repeat(2, 1)
            k = top.numel()
            rows_ = torch.arange(2 * k)
            Sc[rows_, pick[top].repeat(2)] = torch.cat(
                [torch.ones(k, dtype=torch.int8), -torch.ones(k, dtype=torch.int8)]
            )
            Rc, ubc, pickc, Wc = evaluate(Sc, R[top].repeat(2, 1), Wm[top].repeat(2, 1))
            if rounds % 4 == 3:
                xs, _ = local_ascent(
                    net, best_x[None], lo, hi, steps=20, head=head, deadline=deadline
                )
                take(xs)
            nodes += 2 * k
            rounds += 1
            per_node = (time.perf_counter() - now) / (2 * k)
            size = _round_size(
                int(min(batch, max(4, 0.5 / max(per_node, 1e-9) / 2))), per_node, deadline
            )
            S = torch.cat([S[rest], Sc])
            R = torch.cat([R[rest], Rc])
            ub = torch.cat([ub[rest], ubc])
            pick = torch.cat([pick[rest], pickc])
            Wm = torch.cat([Wm[rest], Wc])
    except KeyboardInterrupt:  # a Ctrl-C: the incumbent and the open nodes' bound so far
        status = "interrupted"
    bound = final_bound(ub, dropped, best_v, threshold is not None and status == "below")
    return BaBResult(status, best_x, best_v, bound, nodes, rounds, history)


def _round_size(size: int, per_node: float, deadline: float) -> int:
    """``size`` nodes to split next round (each makes two children, ``per_node`` seconds
    apiece), fewer when that would run past ``deadline`` (one at least)."""
    if time.perf_counter() + per_node * 2 * size > deadline:
        size = max(1, int((deadline - time.perf_counter()) / max(per_node, 1e-9) / 2))
    return size
