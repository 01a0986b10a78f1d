"""Certified maxima: inverset's exact solver beside OMLT, PySCIPOpt-ML and gurobi-ml in one run.

Nets: seeded random ReLU MLPs (``torch.manual_seed(0)``, PyTorch default init) *small*
2-32-32-1, *mid* 8-32-32-1, *medium* 8-64-64-64-1 over [-1, 1]^n; the zoo's scikit-learn
MLPRegressor on the diabetes data over the data's box; a few ACAS Xu instances and one
MNIST-FC instance (VNN-COMP 2021, from ../shared/external). Every reported x* is re-evaluated
on the network. Times include building the model (compiling it, for inverset); a solve that
takes under a second is repeated up to 10 times and its median reported. The peers are
not dependencies; each runs when installed: ``pip install omlt pyomo`` (OMLT big-M, HiGHS
through Pyomo), ``pip install pyscipopt-ml`` (SCIP), ``pip install gurobi-machinelearning
gurobipy`` (Gurobi under the wheel's size-limited licence; models over its limit are reported
as ``licence``). They maximize the MLP nets' output and decide the VNN-LIB instances as MILP
feasibility problems (one per unsafe conjunction), on the Linear/ReLU chain inverset extracts
from the ONNX file. Peers run with their default thread counts, inverset with ``--threads``
torch threads (default one).

    python benchmarks/exact.py [--nets small,mid,medium,diabetes,acas,mnist]
        [--time-limit 60] [--medium-time-limit 600] [--peer-time-limit 120] [--no-peers]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

# inverset's one-time import (torch.optim's first optimizer loads it, 1-2 s), outside the
# timings as the peers' imports are
import torch._dynamo
from torch import nn

import inverset as iv
from inverset.target import Expr

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "external"


def mlp(sizes: list[int]) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


Chain = list[tuple[np.ndarray, np.ndarray]]  # (W, b) of each Linear; ReLU between them
Comparisons = list[tuple[np.ndarray, float]]  # c . Y <= d, all at once


def linear_layers(model: nn.Module) -> Chain:
    """The Linear/ReLU chain of ``model`` in float64: its ``nn.Linear`` layers for a torch
    MLP, the chain inverset extracts (input normalization folded in) for anything else."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if layers:
        return [
            (m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in layers
        ]
    from inverset.exact.ir import extract
    from inverset.target import Ref

    shape = model.input_shape
    with torch.no_grad():
        n_out = model(torch.zeros(1, *shape)).reshape(-1).shape[0]
    net = extract(model, shape, [Ref("out", "out", (j,)) for j in range(n_out)])
    return [(w.numpy(), b.numpy()) for w, b in zip(net.weights, net.biases, strict=True)]


def value_at(model: nn.Module, target: str | Expr, x: np.ndarray) -> float:
    from inverset.model import forward, input_shape_of, model_dtype

    expr = iv.parse_target(target) if isinstance(target, str) else target
    shape = input_shape_of(model) or np.shape(x)
    xt = torch.as_tensor(np.asarray(x), dtype=model_dtype(model)).reshape(1, *shape)
    with torch.no_grad():
        return float(expr.evaluate(forward(model, xt, expr.layers()))[0])


def omlt_solve(chain: Chain, lo, hi, time_limit: float, require: Comparisons | None = None):
    """OMLT ReluBigMFormulation of the chain, solved by HiGHS through Pyomo: maximize output 0,
    or (``require``) find a point whose outputs meet every ``c . Y <= d`` (the time includes
    building the model, as inverset's includes compiling it)."""
    import pyomo.environ as pyo
    from omlt import OmltBlock
    from omlt.neuralnet import NetworkDefinition, ReluBigMFormulation
    from omlt.neuralnet.layer import DenseLayer, InputLayer
    from pyomo.contrib.appsi.solvers import Highs

    logging.getLogger("pyomo").setLevel(logging.ERROR)  # its warnings on loading no solution
    t = time.perf_counter()
    net = NetworkDefinition(
        scaled_input_bounds={
            i: (float(a), float(b)) for i, (a, b) in enumerate(zip(lo, hi, strict=True))
        }
    )
    prev = InputLayer([len(lo)])
    net.add_layer(prev)
    for k, (W, b) in enumerate(chain):
        act = "relu" if k < len(chain) - 1 else "linear"
        layer = DenseLayer(prev.output_size, [W.shape[0]], activation=act, weights=W.T, biases=b)
        net.add_layer(layer)
        net.add_edge(prev, layer)
        prev = layer
    m = pyo.ConcreteModel()
    m.nn = OmltBlock()
    m.nn.build_formulation(ReluBigMFormulation(net))
    out = m.nn.outputs
    if require is None:
        m.obj = pyo.Objective(expr=out[0], sense=pyo.maximize)
    else:
        m.req = pyo.ConstraintList()
        for c, d in require:
            m.req.add(sum(float(c[j]) * out[j] for j in np.nonzero(c)[0]) <= float(d))
        m.obj = pyo.Objective(expr=0.0 * out[0])
    solver = Highs()
    solver.config.time_limit = time_limit
    solver.config.load_solution = False
    res = solver.solve(m)
    dt = time.perf_counter() - t
    status = str(res.termination_condition).split(".")[-1]
    x = None
    try:
        res.solution_loader.load_vars()
        x = np.array([pyo.value(m.nn.inputs[i]) for i in range(len(lo))])
    except Exception:  # no feasible point within the time limit
        x = None
    return status, x, res.best_objective_bound, dt


def row(name, solver, status, value, bound, seconds, runs=1):
    v = "-" if value is None else f"{value:.6f}"
    b = "-" if bound is None or not math.isfinite(bound) else f"{bound:.6f}"
    print(f"{name:26} {solver:22} {status:12} {v:>11} {b:>11} {seconds:8.3f} {runs:>4}", flush=True)


def repeated(call):
    """``call()`` again while it is fast (first run under 1 s), up to 10 runs, so that
    millisecond times are not one noisy sample: (last output, median seconds, runs)."""
    times = []
    while True:
        t = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t)
        if times[0] >= 1.0 or len(times) >= 10:
            return out, statistics.median(times), len(times)


def sequential(chain: Chain) -> nn.Sequential:
    """The chain as a plain float64 ``nn.Sequential`` of Linear/ReLU (what the peers read)."""
    layers: list[nn.Module] = []
    for W, b in chain:
        lin = nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(W))
            lin.bias.copy_(torch.as_tensor(b))
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def pyscipopt_ml_solve(chain: Chain, lo, hi, time_limit: float, require=None):
    """PySCIPOpt-ML's formulation of the chain, solved by SCIP: maximize output 0 or meet
    ``require`` (time includes building)."""
    from pyscipopt import Model
    from pyscipopt_ml.add_predictor import add_predictor_constr

    t = time.perf_counter()
    s = Model()
    s.hideOutput()
    s.setParam("limits/time", time_limit)
    x = np.array([[s.addVar(lb=float(a), ub=float(b)) for a, b in zip(lo, hi, strict=True)]])
    y = np.array([[s.addVar(lb=None, ub=None) for _ in range(chain[-1][0].shape[0])]])
    add_predictor_constr(s, sequential(chain), x, y, unique_naming_prefix="nn_")
    if require is None:
        s.setObjective(y[0, 0], "maximize")
    for c, d in require or []:
        s.addCons(sum(float(c[j]) * y[0, j] for j in np.nonzero(c)[0]) <= float(d))
    s.optimize()
    xo = None
    if s.getNSols() > 0:
        best = s.getBestSol()
        xo = np.array([s.getSolVal(best, v) for v in x[0]])
    return s.getStatus(), xo, float(s.getDualbound()), time.perf_counter() - t


def gurobi_ml_solve(chain: Chain, lo, hi, time_limit: float, require=None):
    """gurobi-machinelearning's formulation solved by Gurobi under the pip wheel's
    size-limited licence (larger models raise; reported as such)."""
    import gurobipy as gp
    from gurobi_ml import add_predictor_constr

    t = time.perf_counter()
    with gp.Env(params={"OutputFlag": 0}) as env, gp.Model(env=env) as m:
        m.Params.TimeLimit = time_limit
        x = m.addMVar((1, len(lo)), lb=lo[None], ub=hi[None])
        y = m.addMVar((1, chain[-1][0].shape[0]), lb=-gp.GRB.INFINITY)
        add_predictor_constr(m, sequential(chain), x, y)
        if require is None:
            m.setObjective(y[0, 0], gp.GRB.MAXIMIZE)
        for c, d in require or []:
            m.addConstr(c @ y[0] <= d)
        try:
            m.optimize()
        except gp.GurobiError as exc:
            print(f"  (gurobi: {exc})", flush=True)
            return "licence", None, None, time.perf_counter() - t
        status = {2: "optimal", 3: "infeasible", 9: "time_limit"}.get(m.Status, str(m.Status))
        xo = np.asarray(x.X).reshape(-1) if m.SolCount > 0 else None
        bound = float(m.ObjBound) if require is None and m.SolCount > 0 else None
        return status, xo, bound, time.perf_counter() - t


PEERS = {
    "OMLT bigM+HiGHS": omlt_solve,
    "PySCIPOpt-ML+SCIP": pyscipopt_ml_solve,
    "gurobi-ml+Gurobi": gurobi_ml_solve,
}


def run_mlp(name, model, target, box, args, time_limit):
    r, dt, runs = repeated(
        lambda: iv.maximize(model, target, box, solver="exact", time_limit=time_limit)
    )
    x = r.x.reshape(-1) if r.x is not None else None
    val = value_at(model, target, r.x) if x is not None else None
    row(name, f"inverset ({r.info['method']})", r.status, val, r.bound, dt, runs)
    if args.no_peers:
        return
    chain = linear_layers(model)
    lo, hi = box.lower.reshape(-1), box.upper.reshape(-1)
    for peer, solve in PEERS.items():
        try:
            (status, xo, bound, _), dt, runs = repeated(
                lambda solve=solve: solve(chain, lo, hi, args.peer_time_limit)
            )
        except ModuleNotFoundError as exc:
            row(name, peer, f"no {exc.name}", None, None, 0.0)
            continue
        val = value_at(model, target, xo) if xo is not None else None
        row(name, peer, status, val, bound, dt, runs)


def run_vnn(name, onnx_path, vnn_path, args, time_limit):
    """Decide one VNN-LIB instance: inverset's ``in_range(g, [0, inf))`` on the property's
    ``g`` (see ``inverset.exact.vnnlib``), then each peer as a MILP feasibility problem per
    input box and unsafe conjunction (sat at the first feasible one). The value column is
    ``g`` re-evaluated on the ONNX model at the witness (>= 0 when the witness is real)."""
    from inverset.exact.vnnlib import read_vnnlib

    model = iv.load_model(str(onnx_path))
    prop = read_vnnlib(vnn_path)
    g = prop.target()
    t = time.perf_counter()
    answer, bound, val = "unsat", None, None
    for lo, hi in prop.boxes:
        box = iv.Box(lo, hi).with_shape(model.input_shape)
        left = time_limit - (time.perf_counter() - t)
        r = iv.in_range(model, g, (0.0, math.inf), box, solver="exact", time_limit=max(left, 0.1))
        if r.status == "found":
            answer, val = "sat", value_at(model, g, r.x)
            break
        if r.status != "unreachable":
            answer = "timeout"
            print(f"  ({name}: {r.status}: {r.message})", flush=True)
            break
        bound = r.bound if bound is None else max(bound, r.bound)
    row(name, "inverset (decide)", answer, val, bound, time.perf_counter() - t)
    if args.no_peers:
        return
    chain = linear_layers(model)
    for peer, solve in PEERS.items():
        t = time.perf_counter()
        answer, val = "unsat", None
        try:
            for (lo, hi), conj in itertools.product(prop.boxes, prop.unsafe):
                left = args.peer_time_limit - (time.perf_counter() - t)
                status, xo, _, _ = solve(chain, lo, hi, max(left, 0.1), conj)
                if xo is not None:  # a witness that is not one on the network is 'false sat'
                    val = value_at(model, g, xo)
                    answer = "sat" if val >= 0 else "false sat"
                    break
                if status.lower() != "infeasible":
                    answer = "timeout" if "time" in status.lower() else status
                    break
        except ModuleNotFoundError as exc:
            answer = f"no {exc.name}"
        row(name, peer, answer, val, None, time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="small,mid,medium,diabetes,acas,mnist")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--medium-time-limit", type=float, default=600.0)
    ap.add_argument("--peer-time-limit", type=float, default=120.0)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="inverset's torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nets = args.nets.split(",")
    head = ("net", "solver", "status", "value", "bound", "time s", "runs")
    print("{:26} {:22} {:12} {:>11} {:>11} {:>8} {:>4}".format(*head))
    specs = {
        "small": [2, 32, 32, 1],
        "mid": [8, 32, 32, 1],
        "medium": [8, 64, 64, 64, 1],
    }
    for name, sizes in specs.items():
        if name in nets:
            tl = args.medium_time_limit if name == "medium" else args.time_limit
            box = iv.Box(-1, 1, shape=(sizes[0],))
            run_mlp(name, mlp(sizes), "out:0", box, args, tl)
    if "diabetes" in nets:
        from inverset.loaders.sklearn import from_sklearn
        from inverset.zoo import diabetes

        est, X, _, _ = diabetes()
        model = from_sklearn(est)
        run_mlp("diabetes MLPRegressor", model, "out:0", iv.Box.from_data(X), args, args.time_limit)
    if "acas" in nets:
        for net, prop in [("1_1", 1), ("2_1", 2), ("1_1", 3), ("4_1", 3), ("1_9", 7)]:
            onnx = SHARED / "acasxu" / f"ACASXU_run2a_{net}_batch_2000.onnx"
            run_vnn(
                f"ACAS Xu {net} prop {prop}",
                onnx,
                SHARED / "acasxu" / f"prop_{prop}.vnnlib",
                args,
                args.time_limit,
            )
    if "mnist" in nets:
        run_vnn(
            "MNIST-FC 256x2 prop 0 .03",
            SHARED / "mnistfc" / "mnist-net_256x2.onnx",
            SHARED / "mnistfc" / "prop_0_0.03.vnnlib",
            args,
            args.time_limit,
        )


if __name__ == "__main__":
    main()
