"""Certified maxima: inverset's exact solver beside OMLT (big-M, HiGHS) in one run.

Nets: seeded random ReLU MLPs (``torch.manual_seed(0)``, PyTorch default init) *small*
2-32-32-1, *mid* 8-32-32-1, *medium* 8-64-64-64-1 over [-1, 1]^n; the zoo's scikit-learn
MLPRegressor on the diabetes data over the data's box; a few ACAS Xu instances and one
MNIST-FC instance (VNN-COMP 2021, from ../shared/external). Every reported x* is re-evaluated
on the network. OMLT runs only when ``omlt`` and ``pyomo`` are installed (MLP nets only).

    python benchmarks/exact.py [--nets small,mid,medium,diabetes,acas,mnist]
        [--time-limit 60] [--medium-time-limit 600] [--peer-time-limit 120] [--no-peers]
"""

from __future__ import annotations

import argparse
import itertools
import math
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


def row(name, solver, status, value, bound, seconds):
    v = "-" if value is None else f"{value:.6f}"
    b = "-" if bound is None or not math.isfinite(bound) else f"{bound:.6f}"
    print(f"{name:24} {solver:22} {status:12} {v:>11} {b:>11} {seconds:8.2f}", flush=True)


def run_mlp(name, model, target, box, args, time_limit):
    t = time.perf_counter()
    r = iv.maximize(model, target, box, solver="exact", time_limit=time_limit)
    x = r.x.reshape(-1) if r.x is not None else None
    val = value_at(model, target, r.x) if x is not None else None
    row(name, f"inverset ({r.info['method']})", r.status, val, r.bound, time.perf_counter() - t)
    if args.no_peers:
        return
    try:
        status, xo, bound, dt = omlt_max(
            model, box.lower.reshape(-1), box.upper.reshape(-1), args.peer_time_limit
        )
    except ModuleNotFoundError as exc:
        row(name, "OMLT bigM+HiGHS", f"no {exc.name}", None, None, 0.0)
        return
    val = value_at(model, target, xo) if xo is not None else None
    row(name, "OMLT bigM+HiGHS", status, val, bound, dt)


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
    args = ap.parse_args()
    torch.set_num_threads(1)
    nets = args.nets.split(",")
    print(f"{'net':24} {'solver':22} {'status':12} {'value':>11} {'bound':>11} {'time s':>8}")
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
