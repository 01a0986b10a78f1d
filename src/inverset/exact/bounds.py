"""Sound bounds on an Affine/ReLU chain over many input boxes at once.

``interval`` propagates boxes layer by layer. ``crown`` bounds every pre-activation and the
outputs with backward linear relaxations (CROWN: the triangle upper line and an adaptive
0/1 lower line for each unstable ReLU), intersected with the interval bounds. All functions
take boxes ``lo, hi`` of shape [B, n0] (float64) and work on the whole batch in one pass.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from inverset.errors import InversetError
from inverset.exact.adam import Adam
from inverset.exact.ir import Network


@dataclass
class Bounds:
    """Pre-activation bounds per ReLU layer and output bounds, for B boxes."""

    pre: list[tuple[torch.Tensor, torch.Tensor]]  # per ReLU layer: (l [B, n_k], u [B, n_k])
    out_lo: torch.Tensor  # [B, m]
    out_hi: torch.Tensor  # [B, m]
    A_hi: torch.Tensor | None = None  # [B, m, n0] input coefficients of the output upper bound
    c_hi: torch.Tensor | None = None  # [B, m] constants of the output upper bound

    def unstable(self) -> int:
        """Number of (box, neuron) pairs whose ReLU phase is not fixed."""
        return int(sum(((lb < 0) & (ub > 0)).sum() for lb, ub in self.pre))


def _affine_box(w: torch.Tensor, b: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    c, r = (hi + lo) / 2, (hi - lo) / 2
    mid = c @ w.T + b
    rad = r @ w.abs().T
    return mid - rad, mid + rad


def interval(net: Network, lo: torch.Tensor, hi: torch.Tensor) -> Bounds:
    """Interval (box) propagation."""
    pre = []
    hl, hu = lo, hi
    for w, b in zip(net.weights[:-1], net.biases[:-1], strict=True):
        zl, zu = _affine_box(w, b, hl, hu)
        pre.append((zl, zu))
        hl, hu = zl.clamp_min(0), zu.clamp_min(0)
    ol, ou = _affine_box(net.weights[-1], net.biases[-1], hl, hu)
    return Bounds(pre, ol, ou)


def _relax(lb: torch.Tensor, ub: torch.Tensor):
    """Upper line (su, tu) and lower slope sl of relu on [lb, ub], per neuron."""
    active = lb >= 0
    unstable = (lb < 0) & (ub > 0)
    denom = (ub - lb).clamp_min(1e-30)
    zero, one = torch.zeros_like(lb), torch.ones_like(lb)
    su = torch.where(active, one, torch.where(unstable, ub / denom, zero))
    tu = torch.where(unstable, -ub * lb / denom, zero)
    sl = torch.where(active, one, torch.where(unstable & (ub > -lb), one, zero))
    return su, tu, sl


def backward(
    net: Network,
    k: int,
    A: torch.Tensor,
    const: torch.Tensor,
    relax: list,
    lo: torch.Tensor,
    hi: torch.Tensor,
    beta: list | None = None,
    trace: list | None = None,
):
    """Upper bound of ``A @ h_k + const`` over the boxes (``h_k`` is the output of ReLU layer
    ``k``; k = -1 means the input). ``A`` is [m, n_k] (the same for every box) or
    [B, m, n_k]; with the latter, ``relax``'s lower slopes may also be per row, [B, m, n_j]
    (optimized slopes). ``beta[j]`` ([B, m, n_j] or None): Lagrangian terms added to the
    coefficients of layer j's pre-activations (beta-CROWN split conditions, see
    :mod:`.relu_bab`). ``trace``, when given, collects the coefficients of every ``h_j``
    (last layer first). Returns (upper [B, m], input coefficients [B, m, n0], constant [B, m])."""
    for j in range(k, -1, -1):
        su, tu, sl = relax[j]
        W, bj = net.weights[j], net.biases[j]
        m, p = A.shape[-2], W.shape[1]  # rows; width of the layer below
        if A.dim() == 2 and p * (m + 10) < 15 * m:
            # coefficients shared by every box, onto a narrow layer (few inputs: ACAS Xu's 5,
            # the medium net's 8): fold the per-box slopes into W, a [B, n, p] temporary.
            # Estimated work 2mnp + 10np against 15mn + mnp for a [B, m, n] one (elementwise
            # work on a new tensor costs ~5 multiply-adds); 512 boxes, m = 128, n = 64, p = 8:
            # 4 ms vs 18 ms
            pos, neg = A.clamp_min(0), A.clamp_max(0)
            const = const + tu @ pos.T + (su * bj) @ pos.T + (sl * bj) @ neg.T
            A = torch.matmul(pos, su[:, :, None] * W) + torch.matmul(neg, sl[:, :, None] * W)
            continue
        # Az = A * (su where A > 0 else sl), built in place on a fresh temporary: every new
        # [B, m, n] tensor is a large allocation whose page faults cost 4-5x the arithmetic
        # (512 x 128 x 64 doubles: 19 ms vs 4 ms); then one matrix product for all boxes
        if A.dim() == 2:  # coefficients shared by every box (the first step)
            pos = A.clamp_min(0)
            Az = A * sl[:, None, :]
            Az.addcmul_(pos, (su - sl)[:, None, :])
            const = const + tu @ pos.T + Az @ bj
            A = Az @ W
            continue
        if trace is not None:
            trace.append(A)
        pos = A.clamp_min(0)
        const = const + (pos @ tu[:, :, None]).squeeze(-1)
        sl = sl[:, None, :] if sl.dim() == 2 else sl  # lower slopes per box, or per box and row
        if A.requires_grad or sl.requires_grad or su.requires_grad:
            Az = A * sl
            Az.addcmul_(pos, su[:, None, :] - sl)
        else:  # nothing to differentiate: pos's memory becomes Az
            Az = pos.mul_(su[:, None, :] - sl).addcmul_(A, sl)
        if beta is not None and beta[j] is not None:
            Az.add_(beta[j])
        const = const + Az @ bj
        A = Az @ W
    if A.dim() == 2:
        A = A.expand(lo.shape[0], *A.shape)
    c, r = (hi + lo) / 2, (hi - lo) / 2
    ub = const + (A @ c[:, :, None]).squeeze(-1) + (A.abs() @ r[:, :, None]).squeeze(-1)
    return ub, A, const


def _concretize(A: torch.Tensor, c: torch.Tensor, lo, hi, upper: bool) -> torch.Tensor:
    """max (upper) or min over each box of ``A x + c`` with A [B, n, n0], c [B, n]."""
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    v = (A @ mid[:, :, None]).squeeze(-1) + c
    r = (A.abs() @ rad[:, :, None]).squeeze(-1)
    return v + r if upper else v - r


def _boxes(v, net: Network) -> torch.Tensor:
    """Box corners as a [B, n] tensor (a numpy array in the network's dtype): one box in the
    input's shape or flat (a ``Box``'s ``lower``), or a batch of them."""
    if not isinstance(v, torch.Tensor):
        v = torch.as_tensor(np.asarray(v), dtype=net.weights[0].dtype)
    n = net.n_inputs
    if v.numel() == n:
        return v.reshape(1, n)
    if v.dim() >= 2 and v[0].numel() == n:
        return v.reshape(v.shape[0], n)
    raise InversetError(
        f"box corners of shape {tuple(v.shape)} do not fit the network's {n} inputs; give one "
        "box in the input's shape (or flat), or a batch [B, n]"
    )


def crown(
    net: Network,
    lo: torch.Tensor,
    hi: torch.Tensor,
    rows: list[int] | None = None,
    lower: bool = True,
    intermediate: str = "crown",
    init: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    alpha_steps: int = 0,
    alpha_hidden: int = 0,
    deadline: float = math.inf,
) -> Bounds:
    """CROWN bounds: every ReLU layer's pre-activations, then output ``rows`` (all by default).

    ``lower=False`` skips the output lower bounds (BaB on a maximization only needs upper).
    ``intermediate``: how hidden pre-activations are bounded: 'crown' (backward, tightest,
    cost grows with depth squared), 'forward' (linear bounds in the input carried forward,
    cheap for few inputs), 'interval' (the box propagated, cheapest) or 'auto' (forward when
    the input is narrower than the layers).
    ``init``: known pre-activation bounds per layer (e.g. of a parent box) to intersect with;
    neurons they already fix are not recomputed.
    ``alpha_steps``: optimized slopes (alpha-CROWN on the output rows): that many Adam steps on
    the lower slopes of the unstable ReLUs, per box and row, keeping the tightest bound seen
    (every slope in [0, 1] is sound, so each iterate is a valid bound).
    ``alpha_hidden``: the same for every hidden layer's unstable pre-activation bounds, layer
    by layer (costly: for one root box, e.g. before branching on ReLU phases).
    ``deadline`` (a ``time.perf_counter()`` value): slope optimization stops there (each
    iterate is sound, so the bounds are only less tight); the hidden layers bounded past it
    keep their interval bounds (sound, looser, and at once: a solve out of time still gets a
    bound).
    ``lo``/``hi``: a batch of boxes [B, n]; one box [n] (torch or numpy) is a batch of one.
    """
    lo, hi = (_boxes(v, net) for v in (lo, hi))
    B = lo.shape[0]
    if time.perf_counter() > deadline:
        intermediate = "interval"
    if intermediate == "auto":
        widths = net.widths()
        intermediate = "forward" if widths and net.n_inputs * 4 <= min(widths) else "crown"
    pre: list[tuple[torch.Tensor, torch.Tensor]] = []
    relax: list = []
    l_prev, u_prev = lo, hi  # bounds of h_{k-1} (input for k = 0)
    n0 = lo.shape[1]
    eye = torch.eye(n0, dtype=lo.dtype, device=lo.device).expand(B, n0, n0)
    zero = torch.zeros(B, n0, dtype=lo.dtype, device=lo.device)
    fl = (eye, zero)  # forward mode: lower/upper linear functions of x for h_{k-1}
    fu = (eye, zero)
    for k, (w, b) in enumerate(zip(net.weights[:-1], net.biases[:-1], strict=True)):
        if intermediate == "crown" and time.perf_counter() > deadline:
            intermediate = "interval"  # the layers left: sound, looser, at once
        zl, zu = _affine_box(w, b, l_prev, u_prev)
        if init is not None:
            zl, zu = torch.maximum(zl, init[k][0]), torch.minimum(zu, init[k][1])
        if k > 0 and intermediate == "forward":
            wp, wn = w.clamp_min(0), w.clamp_max(0)
            Au = torch.matmul(wp, fu[0]) + torch.matmul(wn, fl[0])
            cu = fu[1] @ wp.T + fl[1] @ wn.T + b
            Al = torch.matmul(wp, fl[0]) + torch.matmul(wn, fu[0])
            cl = fl[1] @ wp.T + fu[1] @ wn.T + b
            zu = torch.minimum(zu, _concretize(Au, cu, lo, hi, True))
            zl = torch.maximum(zl, _concretize(Al, cl, lo, hi, False))
        elif k == 0 and intermediate == "forward":
            Au = Al = w.expand(B, *w.shape)
            cu = cl = b.expand(B, -1)
        if k > 0 and intermediate == "crown":
            rows_k = ((zl < 0) & (zu > 0)).any(0).nonzero().reshape(-1)
            if rows_k.numel():
                W = torch.cat([w[rows_k], -w[rows_k]])
                bb = torch.cat([b[rows_k], -b[rows_k]])
                ub, A_k, c_k = backward(net, k - 1, W, bb.expand(B, -1), relax, lo, hi)
                if alpha_hidden > 0:
                    ub, _, _ = _optimize_slopes(
                        net,
                        W,
                        bb,
                        relax[:k],
                        pre[:k],
                        lo,
                        hi,
                        (ub, A_k, c_k),
                        alpha_hidden,
                        k=k,
                        deadline=deadline,
                    )
                m = rows_k.numel()
                zu = zu.clone()
                zl = zl.clone()
                zu[:, rows_k] = torch.minimum(zu[:, rows_k], ub[:, :m])
                zl[:, rows_k] = torch.maximum(zl[:, rows_k], -ub[:, m:])
        pre.append((zl, zu))
        relax.append(_relax(zl, zu))
        l_prev, u_prev = zl.clamp_min(0), zu.clamp_min(0)
        if intermediate == "forward" and k < net.n_relu - 1:
            su, tu, _sl = relax[-1]
            lam = su  # relu(z) >= lam * z for lam in [0, 1]; the parallel lower line
            fu = (Au * su[:, :, None], cu * su + tu)
            fl = (Al * lam[:, :, None], cl * lam)
    wL, bL = net.weights[-1], net.biases[-1]
    idx = list(range(wL.shape[0])) if rows is None else list(rows)
    W, bb = wL[idx], bL[idx]
    m = len(idx)
    if lower:
        W, bb = torch.cat([W, -W]), torch.cat([bb, -bb])
    ub, A, c = backward(net, net.n_relu - 1, W, bb.expand(B, -1), relax, lo, hi)
    if alpha_steps > 0 and net.n_relu > 0:
        ub, A, c = _optimize_slopes(
            net, W, bb, relax, pre, lo, hi, (ub, A, c), alpha_steps, deadline=deadline
        )
    il, iu = _affine_box(wL[idx], bL[idx], l_prev, u_prev)
    out_hi = torch.minimum(ub[:, :m], iu)
    out_lo = torch.maximum(-ub[:, m:], il) if lower else il
    return Bounds(pre, out_lo, out_hi, A[:, :m], c[:, :m])


def _optimize_slopes(
    net, W, bb, relax, pre, lo, hi, start, steps: int, lr=0.2, k=None, deadline=math.inf
):
    """alpha-CROWN on the rows ``W h + bb`` of layer ``k`` (default: the output): one lower
    slope per (box, row, unstable neuron), optimized by Adam on the sum of upper bounds;
    returns the tightest (ub, A, c)."""
    k = net.n_relu if k is None else k
    B, m = lo.shape[0], W.shape[0]
    best_ub, best_A, best_c = (t.detach().clone() for t in start)
    unstable = [((lb < 0) & (ub > 0))[:, None, :] for lb, ub in pre]
    init = [r[2][:, None, :].expand(B, m, -1) for r in relax]
    alphas = [a.clone().requires_grad_(True) for a in init]
    opt = Adam(alphas, lr=lr)
    for _ in range(steps):
        if time.perf_counter() > deadline:
            break
        slopes = [
            (su, tu, torch.where(u, a.clamp(0, 1), a0))
            for (su, tu, _), u, a, a0 in zip(relax, unstable, alphas, init, strict=True)
        ]
        ub, A, const = backward(net, k - 1, W.expand(B, *W.shape), bb.expand(B, -1), slopes, lo, hi)
        with torch.no_grad():
            better = ub < best_ub
            best_ub = torch.where(better, ub, best_ub)
            best_A = torch.where(better[:, :, None], A, best_A)
            best_c = torch.where(better, const, best_c)
        opt.zero_grad()
        ub.sum().backward()
        opt.step()
    return best_ub, best_A, best_c


def corner(A: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """The box vertex maximizing the linear function with coefficients ``A`` [B, n0]."""
    return torch.where(A > 0, hi, lo)
