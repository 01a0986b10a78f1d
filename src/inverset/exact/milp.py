"""Network -> mixed-integer linear program (big-M with the tightest bounds we have).

:class:`MILPModel` holds columns (inputs ``x``, ReLU outputs ``h``, phase binaries ``d``),
rows and an objective as plain arrays, so users can add their own constraints and objective
terms before :meth:`MILPModel.solve` hands it to HiGHS (``highspy``, default) or SCIP
(``pyscipopt``). For a ReLU with pre-activation bounds ``l < 0 < u``::

    h >= z,  h >= 0,  h <= z - l (1 - d),  h <= u d,  d in {0, 1}

stable ReLUs need no binary (``h = z`` or ``h = 0``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import ArrayLike

from inverset.errors import InversetError
from inverset.exact.bounds import Bounds
from inverset.exact.ir import Network

#: seconds past a MILP solver's own time limit after which it is asked to stop
STOP_GRACE = 0.2


@dataclass
class MILPSolution:
    # optimal (within the gaps asked) | time_limit | infeasible | feasible (decide mode: a
    # solution found) | interrupted (a Ctrl-C stopped the solver: its best solution and bound
    # so far) | unbounded (a user's model: its objective has no bound, or HiGHS could not
    # tell that from infeasible)
    status: str
    x: np.ndarray | None  # flat input
    objective: float | None
    bound: float | None
    nodes: int = 0
    seconds: float = 0.0
    solver: str = "highs"


@dataclass
class MILPModel:
    """A MILP over the network's inputs; column index arrays say which variable is which.

    ``x`` holds the input columns (flattened input order), ``h[k]``/``d[k]`` the ReLU outputs
    and binaries of layer k (``d[k][j] == -1`` when neuron j is stable).
    """

    net: Network
    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[tuple[np.ndarray, np.ndarray, float, float]] = field(default_factory=list)
    obj: dict[int, float] = field(default_factory=dict)
    obj_const: float = 0.0
    maximize: bool = True
    x: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    h: list[np.ndarray] = field(default_factory=list)
    d: list[np.ndarray] = field(default_factory=list)

    def __repr__(self) -> str:
        """Counts, not the rows (a digits CNN's model printed 13 MB in a notebook)."""
        binaries = sum(int((d >= 0).sum()) for d in self.d)
        return (
            f"MILPModel(inputs={len(self.x)}, columns={len(self.lb)}, rows={len(self.rows)}, "
            f"binaries={binaries}, integer inputs={sum(self.integer[i] for i in self.x)}, "
            f"{'maximize' if self.maximize else 'minimize'} {len(self.obj)} terms)"
        )

    # ------------------------------------------------------------------ building
    def add_var(self, lb: float, ub: float, integer: bool = False) -> int:
        """A new column in ``[lb, ub]`` (infinite for no bound); returns its index."""
        lb, ub = float(lb), float(ub)
        if math.isnan(lb) or math.isnan(ub):
            raise InversetError(
                f"add_var: bounds must be numbers (-inf/inf for none), not {lb}, {ub}"
            )
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(bool(integer))
        return len(self.lb) - 1

    def add_constraint(
        self, idx: ArrayLike, coef: ArrayLike, lo: float = -math.inf, hi: float = math.inf
    ) -> None:
        """Add ``lo <= sum coef[i] * var[idx[i]] <= hi``."""
        idx, coef = self._terms(idx, coef, "add_constraint")
        lo, hi = float(lo), float(hi)
        if math.isnan(lo) or math.isnan(hi):
            raise InversetError(
                f"add_constraint: lo and hi must be numbers (-inf/inf for no bound), not {lo}, {hi}"
            )
        self.rows.append((idx, coef, lo, hi))

    def _terms(self, idx: ArrayLike, coef: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
        """``(idx, coef)`` checked against the model's columns, with a column named twice
        summed (the MILP solvers read a row's repeated column differently: HiGHS kept one
        entry and certified a maximum above the unconstrained one) and zeros dropped."""
        raw = np.asarray(idx).reshape(-1)
        coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        if raw.size != coef.size:
            raise InversetError(
                f"{what}: {raw.size} column indices but {coef.size} coefficients; give one "
                "coefficient per column"
            )
        if raw.size and not (
            np.issubdtype(raw.dtype, np.integer) or np.array_equal(raw, np.round(raw))
        ):
            raise InversetError(f"{what}: column indices must be whole numbers, not {raw}")
        idx = raw.astype(np.int64)
        n = len(self.lb)
        bad = (idx < 0) | (idx >= n)
        if bad.any():
            raise InversetError(
                f"{what}: column {idx[bad][0]} does not exist; the model's columns are "
                f"0..{n - 1} (m.x, m.h[k] and m.d[k] hold their indices)"
            )
        if not np.isfinite(coef).all():
            raise InversetError(
                f"{what}: coefficients must be finite, not {coef[~np.isfinite(coef)][0]}"
            )
        if len(np.unique(idx)) < idx.size:
            idx, at = np.unique(idx, return_inverse=True)
            coef = np.bincount(at, weights=coef, minlength=idx.size)
        keep = coef != 0
        return idx[keep], coef[keep]

    def output(self, row: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
        """Output ``row`` of the network as (column indices, coefficients, constant)."""
        rows = self.net.weights[-1].shape[0]
        if not (isinstance(row, (int, np.integer)) and 0 <= row < rows):
            raise InversetError(
                f"output row {row} does not exist; the network's rows are 0..{rows - 1}"
            )
        w = self.net.weights[-1][row].double().cpu().numpy()
        c = float(self.net.biases[-1][row])
        prev = self.h[-1] if self.h else self.x
        return prev.copy(), w.copy(), c

    def add_output_constraint(self, row: int, lo: float = -math.inf, hi: float = math.inf) -> None:
        """Require ``lo <= output[row] <= hi``."""
        idx, w, c = self.output(row)
        self.add_constraint(idx, w, lo - c, hi - c)

    def set_objective(
        self, idx: ArrayLike, coef: ArrayLike, const: float = 0.0, maximize: bool = True
    ) -> None:
        """Replace the objective by ``sum coef[i] * var[idx[i]] + const``."""
        old = self.obj, self.obj_const
        self.obj, self.obj_const = {}, 0.0
        try:
            self.add_objective_term(idx, coef, const)
        except InversetError:
            self.obj, self.obj_const = old
            raise
        self.maximize = maximize

    def add_objective_term(self, idx: ArrayLike, coef: ArrayLike, const: float = 0.0) -> None:
        """Add ``sum coef[i] * var[idx[i]] + const`` to the objective."""
        idx, coef = self._terms(idx, coef, "add_objective_term")
        const = float(const)
        if not math.isfinite(const):
            raise InversetError(f"add_objective_term: const must be finite, not {const}")
        for i, c in zip(idx.tolist(), coef.tolist(), strict=True):
            self.obj[i] = self.obj.get(i, 0.0) + c
        self.obj_const += const

    def columns(self, x: np.ndarray) -> np.ndarray:
        """Values of every column at the flat input ``x`` (a warm start)."""
        vals = np.zeros(len(self.lb))
        vals[self.x] = x
        with torch.no_grad():
            xt = torch.as_tensor(x, dtype=self.net.weights[0].dtype).reshape(1, -1)
            _, zs = self.net.forward(xt, pre=True)
        for k, z in enumerate(zs):
            z = z[0].cpu().numpy()
            vals[self.h[k]] = np.maximum(z, 0)
            on = self.d[k] >= 0
            vals[self.d[k][on]] = (z[on] > 0).astype(float)
        return vals

    # ------------------------------------------------------------------ solving
    def solve(
        self,
        solver: str = "highs",
        time_limit: float | None = None,
        warm_start: np.ndarray | None = None,
        first_solution: bool = False,
        rel_gap: float = 1e-4,
        abs_gap: float = 1e-4,
        threads: int = 1,
    ) -> MILPSolution:
        """Solve; ``first_solution`` stops at the first feasible point (reachability). A
        Ctrl-C while the solver runs stops it: status 'interrupted', with its best solution
        and bound so far."""
        if solver not in ("highs", "scip"):
            raise InversetError(f"unknown MILP solver {solver!r}; use 'highs' or 'scip'")
        if time_limit is not None and not time_limit >= 0:  # 0: a deadline passed (0.01 s)
            raise InversetError(f"time_limit must be seconds >= 0 (or None), not {time_limit}")
        if warm_start is not None:
            warm_start = np.asarray(warm_start, dtype=np.float64).reshape(-1)
            if len(warm_start) == len(self.x) != len(self.lb):  # an input: its columns
                warm_start = self.columns(warm_start)
            if len(warm_start) != len(self.lb):
                raise InversetError(
                    f"warm_start has {len(warm_start)} values; give the {len(self.x)} inputs "
                    f"or all {len(self.lb)} columns (m.columns(x))"
                )
        unit, warm, lo, w = _unit_inputs(self, warm_start)
        if solver == "highs":
            sol = _solve_highs(unit, time_limit, warm, first_solution, rel_gap, abs_gap, threads)
        else:
            sol = _solve_scip(unit, time_limit, warm, first_solution, rel_gap, abs_gap)
        if sol.x is not None:  # back in raw units, inside the box despite the rounding
            lb, ub = np.asarray(self.lb)[self.x], np.asarray(self.ub)[self.x]
            sol.x = np.clip(lo + w * sol.x, lb, ub)
        return sol


def build(
    net: Network,
    lo: np.ndarray,
    hi: np.ndarray,
    bounds: Bounds,
    *,
    integer: tuple[int, ...] = (),
    A: np.ndarray | None = None,
    b: np.ndarray | None = None,
    objective_row: int | None = 0,
    maximize: bool = True,
    deadline: float | None = None,
) -> MILPModel | None:
    """Big-M model of ``net`` on the box [lo, hi] (flat) with pre-activation ``bounds`` of
    that box (batch of one), optional integer inputs and rows ``A x <= b``. Returns None when
    ``deadline`` (a ``time.perf_counter()`` value) passes while building."""
    lo, hi = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (lo, hi))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise InversetError(
            "the exact solver needs a bounded box on every input; give --box LO,HI or a box file"
        )
    _check_box_bounds(net, lo, hi, bounds)
    ints = {int(i) for i in integer}
    if any(not 0 <= i < len(lo) for i in ints):
        raise InversetError(
            f"integer: input {sorted(i for i in ints if not 0 <= i < len(lo))[0]} does not "
            f"exist; the flat input has indices 0..{len(lo) - 1}"
        )
    m = MILPModel(net)
    m.x = np.array([m.add_var(lo[i], hi[i], i in ints) for i in range(len(lo))], dtype=np.int64)
    if A is not None:
        for r in range(A.shape[0]):
            m.add_constraint(m.x, A[r], -math.inf, float(b[r]))

    def row(idx: np.ndarray, coef: np.ndarray, lo: float, hi: float) -> None:
        """A row of the network's own (distinct columns, finite coefficients): appended
        without :meth:`MILPModel.add_constraint`'s checks, which made MNIST-FC 256x6's
        build 5-9 times slower."""
        keep = coef != 0
        m.rows.append((idx[keep], coef[keep], float(lo), float(hi)))

    prev = m.x
    for k, (w, bias) in enumerate(zip(net.weights[:-1], net.biases[:-1], strict=True)):
        W = w.double().cpu().numpy()
        bb = bias.double().cpu().numpy()
        lb = bounds.pre[k][0][0].double().cpu().numpy()
        ub = bounds.pre[k][1][0].double().cpu().numpy()
        hcols = np.empty(W.shape[0], dtype=np.int64)
        dcols = np.full(W.shape[0], -1, dtype=np.int64)
        for j in range(W.shape[0]):
            if deadline is not None and j % 32 == 0 and time.perf_counter() > deadline:
                return None
            nz = np.nonzero(W[j])[0]
            # row h - W x (and -lb d): the h and d slots are filled in below
            idx = np.concatenate(([0], prev[nz], [0]))
            coef = np.concatenate(([1.0], -W[j, nz], [0.0]))
            if ub[j] <= 0:
                hcols[j] = m.add_var(0.0, 0.0)
            elif lb[j] >= 0:
                idx[0] = hcols[j] = m.add_var(lb[j], ub[j])
                row(idx[:-1], coef[:-1], bb[j], bb[j])
            else:
                idx[0] = hj = hcols[j] = m.add_var(0.0, ub[j])
                idx[-1] = dj = dcols[j] = m.add_var(0.0, 1.0, True)
                coef[-1] = -lb[j]
                row(idx[:-1], coef[:-1], bb[j], math.inf)
                row(idx, coef, -math.inf, bb[j] - lb[j])
                row(np.array([hj, dj]), np.array([1.0, -ub[j]]), -math.inf, 0.0)
        m.h.append(hcols)
        m.d.append(dcols)
        prev = hcols
    if objective_row is not None:
        idx, w, c = m.output(objective_row)
        m.set_objective(idx, w, c, maximize)
    return m


def _check_box_bounds(net: Network, lo: np.ndarray, hi: np.ndarray, bounds: Bounds) -> None:
    """Refuse ``bounds`` made for a smaller box than [lo, hi]: their big-M rows would cut
    off inputs of the box, and the MILP certify a wrong optimum. The first layer's exact
    range over the box is the test (bounds of a larger box are looser, and sound)."""
    if not bounds.pre or len(net.weights) < 2:
        return
    w = net.weights[0].double().cpu().numpy()
    if w.shape[1] != len(lo):
        raise InversetError(
            f"the box has {len(lo)} inputs where the network takes {w.shape[1]}; give the "
            "flat box the network was compiled for"
        )
    c, r = (hi + lo) / 2, (hi - lo) / 2
    mid = w @ c + net.biases[0].double().cpu().numpy()
    rad = np.abs(w) @ r
    lb = bounds.pre[0][0][0].double().cpu().numpy()
    ub = bounds.pre[0][1][0].double().cpu().numpy()
    tol = 1e-5 * (1 + np.abs(mid) + rad)
    if lb.shape != mid.shape or (lb > mid - rad + tol).any() or (ub < mid + rad - tol).any():
        raise InversetError(
            "bounds: these bounds are not of the box [lo, hi] given: compute them over the "
            "same box, crown(net, lo, hi)"
        )


def _unit_inputs(
    model: MILPModel, warm: np.ndarray | None
) -> tuple[MILPModel, np.ndarray | None, np.ndarray, np.ndarray]:
    """``model`` with each continuous input column ``x_i`` in ``[lo_i, hi_i]`` replaced by
    ``u_i`` in [0, 1], ``x_i = lo_i + w_i u_i`` (rows, objective and the warm start
    rewritten), and ``(lo, w)`` to map a solution back. Inputs in raw units of very different
    scales (a pressure in Pa beside a fraction: bounds 1e7 beside first-layer weights 1e-8)
    leave the MILP solver's tolerances to decide, and it certified a maximum 12 below the
    true one; on the unit box the first layer's coefficients are the network's own scale."""
    n = len(model.lb)
    shift, scale = np.zeros(n), np.ones(n)
    xs = model.x
    lo = np.asarray(model.lb, dtype=np.float64)[xs]
    w = np.asarray(model.ub, dtype=np.float64)[xs] - lo
    move = ~np.asarray(model.integer, dtype=bool)[xs] & np.isfinite(lo) & np.isfinite(w) & (w > 0)
    lo, w = np.where(move, lo, 0.0), np.where(move, w, 1.0)
    shift[xs], scale[xs] = lo, w
    unit = MILPModel(model.net, list(model.lb), list(model.ub), model.integer, [], {}, 0.0)
    unit.maximize, unit.x, unit.h, unit.d = model.maximize, model.x, model.h, model.d
    for i in xs[move]:
        unit.lb[i], unit.ub[i] = 0.0, 1.0
    for idx, coef, rlo, rhi in model.rows:
        c = coef * scale[idx]
        off = float(coef @ shift[idx])
        unit.rows.append((idx, c, rlo - off, rhi - off))
    const = model.obj_const
    for i, c in model.obj.items():
        unit.obj[i] = c * scale[i]
        const += c * shift[i]
    unit.obj_const = const
    if warm is not None:
        warm = np.asarray(warm, dtype=np.float64).copy()
        warm[xs] = (warm[xs] - lo) / w
    return unit, warm, lo, w


def _csr(model: MILPModel):
    starts, index, value = [0], [], []
    lower, upper = [], []
    for idx, coef, lo, hi in model.rows:
        index.append(idx)
        value.append(coef)
        starts.append(starts[-1] + len(idx))
        lower.append(lo)
        upper.append(hi)
    index = np.concatenate(index) if index else np.zeros(0, dtype=np.int64)
    value = np.concatenate(value) if value else np.zeros(0)
    return (
        np.asarray(starts[:-1], dtype=np.int32),
        index.astype(np.int32),
        value,
        np.asarray(lower),
        np.asarray(upper),
    )


def _new_highs():
    """A silent ``highspy.Highs``. Its first construction in a process prints a banner on the C
    stdout before any option can be set, which would corrupt ``--json`` output: swallow it."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solve_highs(model, time_limit, warm, first, rel_gap, abs_gap, threads) -> MILPSolution:
    import highspy

    t0 = time.perf_counter()
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", rel_gap)
    h.setOptionValue("mip_abs_gap", abs_gap)
    h.setOptionValue("threads", threads)
    if first:
        h.setOptionValue("mip_max_improving_sols", 1)
    n = len(model.lb)
    cost = np.zeros(n)
    for i, c in model.obj.items():
        cost[i] = c
    inf = highspy.kHighsInf
    lb = np.where(np.isfinite(model.lb), model.lb, -inf)
    ub = np.where(np.isfinite(model.ub), model.ub, inf)
    h.addVars(n, lb, ub)
    h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
    starts, index, value, lower, upper = _csr(model)
    lower = np.where(np.isfinite(lower), lower, -inf)
    upper = np.where(np.isfinite(upper), upper, inf)
    if len(starts):
        h.addRows(len(starts), lower, upper, len(index), starts, index, value)
    ints = np.nonzero(model.integer)[0].astype(np.int32)
    if len(ints):
        h.changeColsIntegrality(
            len(ints), ints, np.array([highspy.HighsVarType.kInteger] * len(ints))
        )
    h.changeObjectiveOffset(model.obj_const)
    h.changeObjectiveSense(
        highspy.ObjSense.kMaximize if model.maximize else highspy.ObjSense.kMinimize
    )
    if warm is not None:
        # with a start point the feasibility-jump heuristic finds nothing the search needs and
        # costs ~3 ms per solve (diabetes 10-16-16-1: 6.0 -> 2.9 ms; same nodes on the wine,
        # breast-cancer and random 10-16-16-1 / 12-16-16-16-1 nets, 0-25% faster)
        h.setOptionValue("mip_heuristic_run_feasibility_jump", False)
        sol = highspy.HighsSolution()
        sol.col_value = list(map(float, warm))
        sol.value_valid = True
        h.setSolution(sol)
    deadline = None
    if time_limit is not None:  # what is left after passing the model to HiGHS
        left = max(float(time_limit) - (time.perf_counter() - t0), 0.01)
        h.setOptionValue("time_limit", left)
        deadline = time.perf_counter() + left + STOP_GRACE
    run_status, interrupted, timed_out = _run_highs(h, deadline)
    if run_status == highspy.HighsStatus.kError and not (interrupted or timed_out):
        # HiGHS keeps one thread scheduler per process: a solve started earlier with another
        # thread count (e.g. through Pyomo) makes this run refuse; reset it and run again
        highspy.Highs.resetGlobalScheduler(True)
        run_status, interrupted, timed_out = _run_highs(h, deadline)
        if run_status == highspy.HighsStatus.kError and not interrupted:
            raise InversetError("HiGHS failed to run the MILP; try milp_solver='scip'")
    status = h.getModelStatus()
    info = h.getInfo()
    S = highspy.HighsModelStatus
    has_sol = info.primal_solution_status == 2
    x = np.asarray(h.getSolution().col_value)[model.x] if has_sol else None
    obj = float(info.objective_function_value) if has_sol else None
    # HiGHS reports a dual bound of 0 where its MIP search did not run (a model without
    # integer columns is solved as an LP; a run a Ctrl-C stopped before it began): no bound
    bound = None
    if len(ints) and info.mip_node_count >= 0 and math.isfinite(info.mip_dual_bound):
        bound = float(info.mip_dual_bound)
    elif not len(ints) and status == S.kOptimal and has_sol:
        bound = obj
    if status == S.kInfeasible:
        st = "infeasible"
    elif status in (S.kUnbounded, S.kUnboundedOrInfeasible):
        st = "unbounded"
    elif status == S.kOptimal:
        st = "optimal"
    elif interrupted or (status == S.kInterrupt and not timed_out):
        st = "interrupted"
    elif first and has_sol:
        st = "feasible"
    else:
        st = "time_limit"
    return MILPSolution(
        st, x, obj, bound, int(info.mip_node_count), time.perf_counter() - t0, "highs"
    )


def _run_highs(h, deadline: float | None = None) -> tuple[object, bool, bool]:
    """``h.run()`` where a Ctrl-C stops it: HiGHS runs in a worker thread (in the main thread
    it holds the signal until its time limit: a Ctrl-C 6 s into a 30 s ACAS Xu MILP was
    seen at 31 s) while this thread waits, and on KeyboardInterrupt asks HiGHS to stop (its
    interrupt callbacks; mostly within a second, but some root-node phases do not look for
    several seconds: 2-8 s on an ACAS Xu MILP; further Ctrl-Cs wait for it). Returns the
    run's HighsStatus (None if it never ran), whether a Ctrl-C came and whether ``deadline``
    stopped it (:func:`_in_worker`). A highspy without interrupt callbacks runs in this
    thread."""
    if not hasattr(h, "cancelSolve"):
        return h.run(), False, False
    h.HandleUserInterrupt = True
    status: list = []

    def work() -> None:
        status.append(h.run())
        # as highspy's own threaded solve: the next run may come from another thread
        reset = getattr(type(h), "resetThreadScheduler", None)
        if reset is not None:
            reset(False)

    interrupted, timed_out = _in_worker(work, h.cancelSolve, deadline)
    return (status[0] if status else None), interrupted, timed_out


def _in_worker(work, stop, deadline: float | None = None) -> tuple[bool, bool]:
    """Run ``work()`` in a worker thread while this (the main) thread waits, where a Ctrl-C
    lands; on one, call ``stop()`` until ``work`` ends (see :func:`_run_highs` for how long
    that takes; further Ctrl-Cs wait for it). Past ``deadline`` (a ``time.perf_counter()``
    value: the solver's own time limit and :data:`STOP_GRACE`), ``stop()`` is called too:
    SCIP's root phases look at its clock rarely, and ran up to 1.9 s past its limit. Returns
    (whether a Ctrl-C came, whether the deadline stopped it). The wait is on an Event:
    ``Thread.join`` interrupted by a Ctrl-C can report a running thread finished (CPython
    3.11), and the solver's results would be read while it still runs."""
    done = threading.Event()
    timed_out = False

    def run() -> None:
        try:
            work()
        finally:
            done.set()

    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        while not done.wait(0.05):
            if deadline is not None and time.perf_counter() > deadline:
                timed_out = True
                with contextlib.suppress(Exception):
                    stop()
        return False, timed_out
    except KeyboardInterrupt:  # (in start() too: the thread may have started)
        if not worker.is_alive() and not done.is_set():
            raise
    while not done.is_set():
        with contextlib.suppress(Exception, KeyboardInterrupt):
            stop()
        with contextlib.suppress(KeyboardInterrupt):
            done.wait(0.05)
    return True, timed_out


def _solve_scip(model, time_limit, warm, first, rel_gap, abs_gap) -> MILPSolution:
    t0 = time.perf_counter()  # a first import of pyscipopt takes about a second: it counts
    from pyscipopt import Model, quicksum

    s = Model()
    s.hideOutput()
    s.setParam("limits/gap", rel_gap)
    s.setParam("limits/absgap", abs_gap)
    if first:
        s.setParam("limits/bestsol", 1)
    v = [
        s.addVar(
            lb=None if not math.isfinite(lo) else lo,
            ub=None if not math.isfinite(hi) else hi,
            vtype="I" if it else "C",
        )
        for lo, hi, it in zip(model.lb, model.ub, model.integer, strict=True)
    ]
    for k, (idx, coef, lo, hi) in enumerate(model.rows):
        # building in Python takes about a second per 100k coefficients: keep the limit
        if time_limit is not None and k % 256 == 0 and time.perf_counter() - t0 > time_limit:
            return MILPSolution("time_limit", None, None, None, 0, time.perf_counter() - t0, "scip")
        e = quicksum(float(c) * v[i] for i, c in zip(idx.tolist(), coef.tolist(), strict=True))
        if lo == hi:
            s.addCons(e == lo)
            continue
        if math.isfinite(lo):
            s.addCons(e >= lo)
        if math.isfinite(hi):
            s.addCons(e <= hi)
    s.setObjective(
        quicksum(c * v[i] for i, c in model.obj.items()) + model.obj_const,
        "maximize" if model.maximize else "minimize",
    )
    if warm is not None:
        sol = s.createSol()
        for var, val in zip(v, warm, strict=True):
            s.setSolVal(sol, var, float(val))
        s.addSol(sol)
    deadline = None
    if time_limit is not None:  # what is left after building the model in Python
        left = max(float(time_limit) - (time.perf_counter() - t0), 0.01)
        s.setParam("limits/time", left)
        deadline = time.perf_counter() + left + STOP_GRACE
    interrupted, timed_out = _run_scip(s, deadline)
    st = s.getStatus()
    has = s.getNSols() > 0
    x = None
    obj = None
    if has:
        best = s.getBestSol()
        x = np.array([s.getSolVal(best, v[i]) for i in model.x])
        obj = float(s.getObjVal())
    bound = float(s.getDualbound()) if st not in ("infeasible", "unbounded", "inforunbd") else None
    if st in ("infeasible", "unbounded", "inforunbd"):
        status = "unbounded" if st == "inforunbd" else st
    elif st in ("optimal", "gaplimit"):  # SCIP's stop at the gaps asked: optimal here
        status = "optimal"
    elif interrupted or (st == "userinterrupt" and not timed_out):
        status = "interrupted"
    elif first and has:
        status = "feasible"
    else:
        status = "time_limit"
    return MILPSolution(status, x, obj, bound, int(s.getNNodes()), time.perf_counter() - t0, "scip")


def _run_scip(s, deadline: float | None = None) -> tuple[bool, bool]:
    """``s.optimize()`` where a Ctrl-C or ``deadline`` stops it (:func:`_in_worker`); returns
    whether a Ctrl-C came and whether the deadline stopped it. SCIP's own Ctrl-C handler is
    off: in the main thread it answers the first Ctrl-C by printing on stdout (a ``--json``
    summary would be corrupted), and status 'userinterrupt'. ``interruptSolve`` is refused
    before SCIP's solving stages begin: it is asked again until SCIP stops."""
    if not hasattr(s, "optimizeNogil"):  # an older pyscipopt: SCIP's own handler
        s.optimize()
        return False, False
    s.setParam("misc/catchctrlc", False)
    return _in_worker(s.optimizeNogil, s.interruptSolve, deadline)
