"""Certified maxima: inverset's exact solver beside OMLT, PySCIPOpt-ML and gurobi-ml in one run.

Nets: seeded random ReLU MLPs (``torch.manual_seed(0)``, PyTorch default init) *small*
2-32-32-1, *mid* 8-32-32-1, *medium* 8-64-64-64-1 over [-1, 1]^n; the zoo's scikit-learn
MLPRegressor on the diabetes data over the data's box; a few ACAS Xu instances and one
MNIST-FC instance (VNN-COMP 2021, from ../shared/external). The peers are not dependencies;
each runs when installed: ``pip install omlt pyomo`` (OMLT big-M, HiGHS through Pyomo),
``pip install pyscipopt-ml`` (SCIP), ``pip install gurobi-machinelearning gurobipy`` (Gurobi
under the wheel's size-limited licence; models over its limit are reported as ``licence``).
They maximize the MLP nets' output and decide the VNN-LIB instances as MILP feasibility
problems on the Linear/ReLU chain inverset extracts from the ONNX file: each peer builds its
model of the network once per input box, then per unsafe conjunction adds that conjunction's
rows, solves and removes them (sat at the first feasible one).

Timing: every package is imported and every solver (inverset too) solves a tiny problem once
before the first timed run, so no time includes an import or a first call's set-up. A time
includes building the model (compiling it, for inverset) and counts against that solver's
limit, so the solver gets what the build left (``timeout`` if the build used it all). The
peers are handed the network as a list of weight matrices read once, outside their times;
inverset's time includes reading it from the torch module (and checking it). A run
that takes under a second is repeated up to 10 times and its median reported, for the MLP nets
and the VNN-LIB instances alike. Every reported x* is re-evaluated on the network; a VNN-LIB
witness counts as ``sat`` only when onnxruntime confirms it (in a box and in the unsafe
region, as ``vnncomp.py`` checks), else ``false sat``. Peers run with their default thread
counts, inverset with ``--threads`` torch threads (default one).

    python benchmarks/exact.py [--nets small,mid,medium,diabetes,acas,mnist]
        [--time-limit 60] [--medium-time-limit 600] [--peer-time-limit 120] [--no-peers]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import logging
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _args import positive
from torch import nn
from vnncomp import check_witness

import inverset as iv
from inverset.exact.vnnlib import Property, read_vnnlib
from inverset.target import Expr

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "external"
MLP_SIZES = {"small": [2, 32, 32, 1], "mid": [8, 32, 32, 1], "medium": [8, 64, 64, 64, 1]}
ACAS = [("1_1", 1), ("2_1", 2), ("1_1", 3), ("4_1", 3), ("1_9", 7)]  # (network, property)
NETS = [*MLP_SIZES, "diabetes", "acas", "mnist"]


def vnn_instances(net: str) -> list[tuple[str, Path, Path]]:
    """(row name, ONNX file, VNN-LIB file) of each instance that ``--nets`` name ``net`` runs."""
    if net == "acas":
        return [
            (
                f"ACAS Xu {a} prop {p}",
                SHARED / "acasxu" / f"ACASXU_run2a_{a}_batch_2000.onnx",
                SHARED / "acasxu" / f"prop_{p}.vnnlib",
            )
            for a, p in ACAS
        ]
    if net == "mnist":
        return [
            (
                "MNIST-FC 256x2 prop 0 .03",
                SHARED / "mnistfc" / "mnist-net_256x2.onnx",
                SHARED / "mnistfc" / "prop_0_0.03.vnnlib",
            )
        ]
    return []


def mlp(sizes: list[int]) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


Chain = list[tuple[np.ndarray, np.ndarray]]  # (W, b) of each Linear; ReLU between them
Comparisons = list[tuple[np.ndarray, float]]  # c . Y <= d, all at once
Solved = tuple[str, np.ndarray | None, float | None]  # (status, x or None, dual bound or None)


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


class Peer:
    """One peer's MILP of a Linear/ReLU chain over one input box, built once (the constructor)
    and solved as often as needed: ``solve`` maximizes output 0 (built with ``maximize``) or
    adds the rows of ``require``, finds a feasible point and removes those rows again, so a
    property with many unsafe conjunctions costs one build, not one per conjunction.

    A bounded box through a bounded network is never unbounded, so a solver's
    "infeasible or unbounded" is reported as ``infeasible``."""

    name = ""
    modules: tuple[str, ...] = ()  # imported by load_peers, before any timing

    def solve(self, time_limit: float, require: Comparisons = ()) -> Solved:
        """(optimal | infeasible | timeout | the solver's own status, x or None, bound)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the solver's model (Gurobi holds a licence environment)."""


class OmltPeer(Peer):
    """OMLT's ReluBigMFormulation (its default bounds, from the input box) solved by HiGHS
    through Pyomo's persistent appsi interface, which takes the added and deleted rows as an
    update instead of reloading the model."""

    name = "OMLT bigM+HiGHS"
    modules = ("pyomo.environ", "omlt", "omlt.neuralnet", "pyomo.contrib.appsi.solvers")

    def __init__(self, chain: Chain, lo: np.ndarray, hi: np.ndarray, maximize: bool):
        import pyomo.environ as pyo
        from omlt import OmltBlock
        from omlt.neuralnet import NetworkDefinition, ReluBigMFormulation
        from omlt.neuralnet.layer import DenseLayer, InputLayer
        from pyomo.contrib.appsi.solvers import Highs

        logging.getLogger("pyomo").setLevel(logging.ERROR)  # its warnings on loading no solution
        bounds = {i: (float(a), float(b)) for i, (a, b) in enumerate(zip(lo, hi, strict=True))}
        net = NetworkDefinition(scaled_input_bounds=bounds)
        prev = InputLayer([len(lo)])
        net.add_layer(prev)
        for k, (W, b) in enumerate(chain):
            act = "relu" if k < len(chain) - 1 else "linear"
            layer = DenseLayer(
                prev.output_size, [W.shape[0]], activation=act, weights=W.T, biases=b
            )
            net.add_layer(layer)
            net.add_edge(prev, layer)
            prev = layer
        self.pyo, self.n = pyo, len(lo)
        self.m = pyo.ConcreteModel()
        self.m.nn = OmltBlock()
        self.m.nn.build_formulation(ReluBigMFormulation(net))
        out = self.m.nn.outputs[0]
        self.m.obj = pyo.Objective(expr=out if maximize else 0.0 * out, sense=pyo.maximize)
        self.solver = Highs()
        self.solver.config.load_solution = False
        self.solver.set_instance(self.m)  # loading the model into HiGHS is part of the build

    def solve(self, time_limit: float, require: Comparisons = ()) -> Solved:
        pyo, m = self.pyo, self.m
        if require:
            m.req = pyo.ConstraintList()
            for c, d in require:
                m.req.add(sum(float(c[j]) * m.nn.outputs[j] for j in np.nonzero(c)[0]) <= float(d))
        self.solver.config.time_limit = time_limit
        try:
            res = self.solver.solve(m)
        finally:
            if require:
                m.del_component(m.req)
        name = str(res.termination_condition).split(".")[-1]
        status = {
            "optimal": "optimal",
            "infeasible": "infeasible",
            "infeasibleOrUnbounded": "infeasible",
            "maxTimeLimit": "timeout",
        }.get(name, name)
        x = None
        if res.best_feasible_objective is not None:
            res.solution_loader.load_vars()
            x = np.array([pyo.value(m.nn.inputs[i]) for i in range(self.n)])
        return status, x, res.best_objective_bound


class ScipPeer(Peer):
    """PySCIPOpt-ML's formulation of the chain solved by SCIP; rows are deleted after
    ``freeTransform`` returns SCIP to the original problem."""

    name = "PySCIPOpt-ML+SCIP"
    modules = ("pyscipopt", "pyscipopt_ml.add_predictor")

    def __init__(self, chain: Chain, lo: np.ndarray, hi: np.ndarray, maximize: bool):
        from pyscipopt import Model
        from pyscipopt_ml.add_predictor import add_predictor_constr

        s = self.s = Model()
        s.hideOutput()
        self.x = [s.addVar(lb=float(a), ub=float(b)) for a, b in zip(lo, hi, strict=True)]
        self.y = [s.addVar(lb=None, ub=None) for _ in range(chain[-1][0].shape[0])]
        add_predictor_constr(
            s, sequential(chain), np.array([self.x]), np.array([self.y]), unique_naming_prefix="nn_"
        )
        if maximize:
            s.setObjective(self.y[0], "maximize")

    def solve(self, time_limit: float, require: Comparisons = ()) -> Solved:
        s = self.s
        s.setParam("limits/time", time_limit)
        rows = [
            s.addCons(sum(float(c[j]) * self.y[j] for j in np.nonzero(c)[0]) <= float(d))
            for c, d in require
        ]
        s.optimize()
        name = s.getStatus()
        status = {"inforunbd": "infeasible", "timelimit": "timeout"}.get(name, name)
        x = None
        if s.getNSols() > 0:
            best = s.getBestSol()
            x = np.array([s.getSolVal(best, v) for v in self.x])
        bound = float(s.getDualbound())
        s.freeTransform()
        for r in rows:
            s.delCons(r)
        return status, x, bound


class GurobiPeer(Peer):
    """gurobi-machinelearning's formulation solved by Gurobi under the pip wheel's
    size-limited licence (larger models raise on solving; reported as ``licence``)."""

    name = "gurobi-ml+Gurobi"
    modules = ("gurobipy", "gurobi_ml")

    def __init__(self, chain: Chain, lo: np.ndarray, hi: np.ndarray, maximize: bool):
        import gurobipy as gp
        from gurobi_ml import add_predictor_constr

        self.gp, self.maximize = gp, maximize
        self.env = gp.Env(params={"OutputFlag": 0})
        m = self.m = gp.Model(env=self.env)
        self.x = m.addMVar((1, len(lo)), lb=lo[None], ub=hi[None])
        self.y = m.addMVar((1, chain[-1][0].shape[0]), lb=-gp.GRB.INFINITY)
        add_predictor_constr(m, sequential(chain), self.x, self.y)
        if maximize:
            m.setObjective(self.y[0, 0], gp.GRB.MAXIMIZE)

    def solve(self, time_limit: float, require: Comparisons = ()) -> Solved:
        m = self.m
        m.Params.TimeLimit = time_limit
        rows = [m.addConstr(c @ self.y[0] <= d) for c, d in require]
        try:
            m.optimize()
        except self.gp.GurobiError as exc:
            print(f"  (gurobi: {exc})", flush=True)
            return "licence", None, None
        finally:
            m.remove(rows)
        # 4 is INF_OR_UNBD, infeasible here (see Peer)
        status = {2: "optimal", 3: "infeasible", 4: "infeasible", 9: "timeout"}
        xo = np.asarray(self.x.X).reshape(-1) if m.SolCount > 0 else None
        bound = float(m.ObjBound) if self.maximize and m.SolCount > 0 else None
        return status.get(m.Status, str(m.Status)), xo, bound

    def close(self) -> None:
        self.m.dispose()
        self.env.dispose()


PEERS: list[type[Peer]] = [OmltPeer, ScipPeer, GurobiPeer]


def load_peers() -> dict[type[Peer], str | None]:
    """Import each peer's packages now, before any timing: peer -> None when it is installed,
    else the name of the missing module."""
    missing: dict[type[Peer], str | None] = {}
    for peer in PEERS:
        missing[peer] = None
        try:
            for module in peer.modules:
                importlib.import_module(module)
        except ModuleNotFoundError as exc:
            missing[peer] = exc.name
    return missing


def peer_maximize(peer: type[Peer], chain: Chain, lo, hi, limit: float) -> Solved:
    """Build ``peer``'s model on [lo, hi] and maximize output 0 in what the build left of
    ``limit`` seconds (``timeout`` when the build used it all)."""
    t = time.perf_counter()
    p = peer(chain, lo, hi, maximize=True)
    try:
        left = limit - (time.perf_counter() - t)
        return p.solve(left) if left > 0 else ("timeout", None, None)
    finally:
        p.close()


def peer_decide(peer: type[Peer], chain: Chain, prop: Property, limit: float):
    """('sat' | 'unsat' | 'timeout' | a solver status, witness or None): one model per input
    box, each unsafe conjunction added, solved and removed in turn until one is feasible, all
    (builds included) within ``limit`` seconds."""
    t = time.perf_counter()
    for lo, hi in prop.boxes:
        p = peer(chain, lo, hi, maximize=False)
        try:
            for conj in prop.unsafe:
                left = limit - (time.perf_counter() - t)
                if left <= 0:
                    return "timeout", None
                status, x, _ = p.solve(left, conj)
                if x is not None:
                    return "sat", x
                if status != "infeasible":
                    return status, None
        finally:
            p.close()
    return "unsat", None


def inverset_decide(model: nn.Module, g: Expr, prop: Property, limit: float):
    """inverset's ``in_range(g, [0, inf))`` on each input box within ``limit`` seconds:
    (sat | unsat | timeout, witness or None, largest bound of g over the boxes, message)."""
    t = time.perf_counter()
    bound = None
    for lo, hi in prop.boxes:
        left = limit - (time.perf_counter() - t)
        if left <= 0:
            return "timeout", None, bound, "time limit reached between boxes"
        box = iv.Box(lo, hi).with_shape(model.input_shape)
        r = iv.in_range(model, g, (0.0, math.inf), box, solver="exact", time_limit=left)
        if r.status == "found":
            return "sat", r.x, bound, ""
        if r.status != "unreachable":
            return "timeout", None, bound, f"{r.status}: {r.message}"
        bound = r.bound if bound is None else max(bound, r.bound)
    return "unsat", None, bound, ""


def warm_up(peers: list[type[Peer]]) -> None:
    """Solve a tiny problem once with inverset and each peer, both ways (maximize; decide a
    property with one unsafe row), untimed, so that no reported time pays a first call's
    one-time set-up (lazy imports, solver libraries, caches)."""
    tiny = mlp([2, 4, 1])
    box = iv.Box(-1, 1, shape=(2,))
    iv.maximize(tiny, "out:0", box, solver="exact", time_limit=10)
    iv.in_range(tiny, "out:0", (0.0, math.inf), box, solver="exact", time_limit=10)
    lo, hi = box.lower.reshape(-1), box.upper.reshape(-1)
    prop = Property([(lo, hi)], [[(np.array([-1.0]), 0.0)]], 2, 1)
    chain = linear_layers(tiny)
    for peer in peers:
        peer_maximize(peer, chain, lo, hi, 10.0)
        peer_decide(peer, chain, prop, 10.0)


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


def run_mlp(name, model, target, box, args, time_limit, peers):
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
    for peer, missing in peers.items():
        if missing:
            row(name, peer.name, f"no {missing}", None, None, 0.0)
            continue
        (status, xo, bound), dt, runs = repeated(
            lambda peer=peer: peer_maximize(peer, chain, lo, hi, args.peer_time_limit)
        )
        val = value_at(model, target, xo) if xo is not None else None
        row(name, peer.name, status, val, bound, dt, runs)


def run_vnn(name, onnx_path, vnn_path, args, time_limit, peers):
    """Decide one VNN-LIB instance: inverset's ``in_range(g, [0, inf))`` on the property's
    ``g`` (see ``inverset.exact.vnnlib``), then each peer (``peer_decide``). The value column
    is ``g`` at the witness on inverset's conversion of the ONNX model; the answer is ``sat``
    for every solver alike only when onnxruntime confirms the witness (``check_witness``),
    ``false sat`` otherwise."""
    model = iv.load_model(str(onnx_path))
    prop = read_vnnlib(vnn_path)
    g = prop.target()

    def report(solver, answer, x, bound, seconds, runs):
        val = None
        if x is not None:
            val = value_at(model, g, x)
            answer = "sat" if check_witness(onnx_path, prop, x) else "false sat"
        row(name, solver, answer, val, bound, seconds, runs)

    (answer, x, bound, msg), dt, runs = repeated(
        lambda: inverset_decide(model, g, prop, time_limit)
    )
    if msg:
        print(f"  ({name}: {msg})", flush=True)
    report("inverset (decide)", answer, x, bound, dt, runs)
    if args.no_peers:
        return
    chain = linear_layers(model)
    for peer, missing in peers.items():
        if missing:
            row(name, peer.name, f"no {missing}", None, None, 0.0)
            continue
        (answer, x), dt, runs = repeated(
            lambda peer=peer: peer_decide(peer, chain, prop, args.peer_time_limit)
        )
        report(peer.name, answer, x, None, dt, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS), help="comma-separated, from: %(default)s")
    ap.add_argument("--time-limit", type=positive(float), default=60.0, help="seconds")
    ap.add_argument("--medium-time-limit", type=positive(float), default=600.0, help="seconds")
    ap.add_argument("--peer-time-limit", type=positive(float), default=120.0, help="seconds")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--threads", type=positive(int), default=1, help="inverset's torch threads")
    args = ap.parse_args()
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    if not nets:
        ap.error(f"--nets selects no net; give one or more of {','.join(NETS)}")
    unknown = [n for n in nets if n not in NETS]
    if unknown:
        ap.error(f"--nets: unknown {','.join(unknown)}; choose from {','.join(NETS)}")
    for net in nets:
        for _, *files in vnn_instances(net):
            for f in files:
                if not f.is_file():
                    ap.error(
                        f"--nets {net} needs {f}, which is missing: put VNN-COMP 2021's "
                        f"benchmarks folders (github.com/stanleybak/vnncomp2021) in {SHARED} "
                        f"or leave {net} out of --nets"
                    )
    torch.set_num_threads(args.threads)
    peers = {} if args.no_peers else load_peers()
    warm_up([p for p, missing in peers.items() if not missing])
    head = ("net", "solver", "status", "value", "bound", "time s", "runs")
    print("{:26} {:22} {:12} {:>11} {:>11} {:>8} {:>4}".format(*head))
    for name, sizes in MLP_SIZES.items():
        if name in nets:
            tl = args.medium_time_limit if name == "medium" else args.time_limit
            box = iv.Box(-1, 1, shape=(sizes[0],))
            run_mlp(name, mlp(sizes), "out:0", box, args, tl, peers)
    if "diabetes" in nets:
        from inverset.loaders.sklearn import from_sklearn
        from inverset.zoo import diabetes

        est, X, _, _ = diabetes()
        box = iv.Box.from_data(X)
        run_mlp(
            "diabetes MLPRegressor", from_sklearn(est), "out:0", box, args, args.time_limit, peers
        )
    for net in ("acas", "mnist"):
        if net in nets:
            for name, onnx, vnn in vnn_instances(net):
                run_vnn(name, onnx, vnn, args, args.time_limit, peers)


if __name__ == "__main__":
    main()
