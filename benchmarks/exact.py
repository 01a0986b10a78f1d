"""Certified maxima: inverset's exact solver beside OMLT, PySCIPOpt-ML and gurobi-ml in one run.

Nets: seeded random ReLU MLPs (``torch.manual_seed(0)``, PyTorch default init) *small*
2-32-32-1, *mid* 8-32-32-1, *medium* 8-64-64-64-1 over [-1, 1]^n; the zoo's scikit-learn
MLPRegressor on the diabetes data over the data's box; a few ACAS Xu instances and one
MNIST-FC instance (VNN-COMP 2021, from ../shared/external). Every reported x* is re-evaluated
on the network. Times include building the model (compiling it, for inverset); a solve that
takes under a second is repeated up to 10 times and its median reported. The peers (MLP nets
only) are not dependencies; each runs when installed: ``pip install omlt pyomo`` (OMLT big-M,
HiGHS through Pyomo), ``pip install pyscipopt-ml`` (SCIP), ``pip install
gurobi-machinelearning gurobipy`` (Gurobi under the wheel's size-limited licence; models over
its limit are reported as ``licence``). Peers run with their default thread counts, inverset
with ``--threads`` torch threads (default one).

    python benchmarks/exact.py [--nets small,mid,medium,diabetes,acas,mnist]
        [--time-limit 60] [--medium-time-limit 600] [--peer-time-limit 120] [--no-peers]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import inverset as iv

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "external"


def mlp(sizes: list[int]) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def linear_layers(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]


def value_at(model: nn.Module, target: str, x: np.ndarray) -> float:
    from inverset.model import forward

    expr = iv.parse_target(target)
    dtype = next(model.parameters()).dtype
    xt = torch.as_tensor(np.asarray(x), dtype=dtype)[None]
    with torch.no_grad():
        return float(expr.evaluate(forward(model, xt, expr.layers()))[0])


def omlt_max(model: nn.Module, lo: np.ndarray, hi: np.ndarray, time_limit: float):
    """OMLT ReluBigMFormulation of a Linear/ReLU MLP, solved by HiGHS through Pyomo (the time
    includes building the model, as inverset's includes compiling it)."""
    import pyomo.environ as pyo
    from omlt import OmltBlock
    from omlt.neuralnet import NetworkDefinition, ReluBigMFormulation
    from omlt.neuralnet.layer import DenseLayer, InputLayer

    t = time.perf_counter()
    layers = linear_layers(model)
    net = NetworkDefinition(
        scaled_input_bounds={
            i: (float(a), float(b)) for i, (a, b) in enumerate(zip(lo, hi, strict=True))
        }
    )
    prev = InputLayer([len(lo)])
    net.add_layer(prev)
    for k, (W, b) in enumerate(layers):
        act = "relu" if k < len(layers) - 1 else "linear"
        layer = DenseLayer(prev.output_size, [W.shape[0]], activation=act, weights=W.T, biases=b)
        net.add_layer(layer)
        net.add_edge(prev, layer)
        prev = layer
    m = pyo.ConcreteModel()
    m.nn = OmltBlock()
    m.nn.build_formulation(ReluBigMFormulation(net))
    m.obj = pyo.Objective(expr=m.nn.outputs[0], sense=pyo.maximize)
    from pyomo.contrib.appsi.solvers import Highs

    solver = Highs()
    solver.config.time_limit = time_limit
    solver.config.load_solution = False
    res = solver.solve(m)
    dt = time.perf_counter() - t
    bound = res.best_objective_bound
    x = None
    try:
        res.solution_loader.load_vars()
        x = np.array([pyo.value(m.nn.inputs[i]) for i in range(len(lo))])
    except Exception:  # no feasible point within the time limit
        x = None
    status = str(res.termination_condition).split(".")[-1]
    return status, x, bound, dt


def row(name, solver, status, value, bound, seconds, runs=1):
    v = "-" if value is None else f"{value:.6f}"
    b = "-" if bound is None or not math.isfinite(bound) else f"{bound:.6f}"
    print(f"{name:24} {solver:22} {status:12} {v:>11} {b:>11} {seconds:8.3f} {runs:>4}", flush=True)


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


def sequential(model: nn.Module) -> nn.Sequential:
    """The Linear/ReLU chain of an MLP as a plain ``nn.Sequential`` (what the peers read)."""
    layers: list[nn.Module] = []
    for W, b in linear_layers(model):
        lin = nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(W))
            lin.bias.copy_(torch.as_tensor(b))
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def pyscipopt_ml_max(model: nn.Module, lo: np.ndarray, hi: np.ndarray, time_limit: float):
    """PySCIPOpt-ML's formulation of the torch Sequential, solved by SCIP (time includes
    building)."""
    from pyscipopt import Model
    from pyscipopt_ml.add_predictor import add_predictor_constr

    t = time.perf_counter()
    s = Model()
    s.hideOutput()
    s.setParam("limits/time", time_limit)
    x = np.array([[s.addVar(lb=float(a), ub=float(b)) for a, b in zip(lo, hi, strict=True)]])
    y = np.array([[s.addVar(lb=None, ub=None)]])
    add_predictor_constr(s, sequential(model), x, y, unique_naming_prefix="nn_")
    s.setObjective(y[0, 0], "maximize")
    s.optimize()
    xo = None
    if s.getNSols() > 0:
        best = s.getBestSol()
        xo = np.array([s.getSolVal(best, v) for v in x[0]])
    return s.getStatus(), xo, float(s.getDualbound()), time.perf_counter() - t


def gurobi_ml_max(model: nn.Module, lo: np.ndarray, hi: np.ndarray, time_limit: float):
    """gurobi-machinelearning's formulation solved by Gurobi under the pip wheel's
    size-limited licence (larger models raise; reported as such)."""
    import gurobipy as gp
    from gurobi_ml import add_predictor_constr

    t = time.perf_counter()
    with gp.Env(params={"OutputFlag": 0}) as env, gp.Model(env=env) as m:
        m.Params.TimeLimit = time_limit
        x = m.addMVar((1, len(lo)), lb=lo[None], ub=hi[None])
        y = m.addMVar((1, 1), lb=-gp.GRB.INFINITY)
        add_predictor_constr(m, sequential(model), x, y)
        m.setObjective(y.sum(), gp.GRB.MAXIMIZE)
        try:
            m.optimize()
        except gp.GurobiError as exc:
            print(f"  (gurobi: {exc})", flush=True)
            return "licence", None, None, time.perf_counter() - t
        status = {2: "optimal", 9: "time_limit"}.get(m.Status, str(m.Status))
        xo = np.asarray(x.X).reshape(-1) if m.SolCount > 0 else None
        return status, xo, float(m.ObjBound), time.perf_counter() - t


PEERS = {
    "OMLT bigM+HiGHS": omlt_max,
    "PySCIPOpt-ML+SCIP": pyscipopt_ml_max,
    "gurobi-ml+Gurobi": gurobi_ml_max,
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
    lo, hi = box.lower.reshape(-1), box.upper.reshape(-1)
    for peer, solve in PEERS.items():
        try:
            (status, xo, bound, _), dt, runs = repeated(
                lambda solve=solve: solve(model, lo, hi, args.peer_time_limit)
            )
        except ModuleNotFoundError as exc:
            row(name, peer, f"no {exc.name}", None, None, 0.0)
            continue
        val = value_at(model, target, xo) if xo is not None else None
        row(name, peer, status, val, bound, dt, runs)


def run_vnn(name, onnx_path, vnn_path, time_limit):
    from inverset.exact.vnnlib import read_vnnlib

    model = iv.load_model(str(onnx_path))
    prop = read_vnnlib(vnn_path)
    t = time.perf_counter()
    answer, bound, val = "unsat", None, None
    for lo, hi in prop.boxes:
        box = iv.Box(lo, hi).with_shape(model.input_shape)
        left = time_limit - (time.perf_counter() - t)
        r = iv.in_range(
            model, prop.target(), (0.0, math.inf), box, solver="exact", time_limit=max(left, 0.1)
        )
        if r.status == "found":
            answer, val = "sat", r.value
            break
        if r.status != "unreachable":
            answer = "timeout"
            print(f"  ({name}: {r.status}: {r.message})", flush=True)
            break
        bound = r.bound if bound is None else max(bound, r.bound)
    row(name, "inverset (decide)", answer, val, bound, time.perf_counter() - t)


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
    print("{:24} {:22} {:12} {:>11} {:>11} {:>8} {:>4}".format(*head))
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
                args.time_limit,
            )
    if "mnist" in nets:
        run_vnn(
            "MNIST-FC 256x2 prop 0 .03",
            SHARED / "mnistfc" / "mnist-net_256x2.onnx",
            SHARED / "mnistfc" / "prop_0_0.03.vnnlib",
            args.time_limit,
        )


if __name__ == "__main__":
    main()
