"""ACAS Xu and MNIST-FC instances of VNN-COMP 2021 decided by inverset's exact solver.

Each instance (network, property, timeout) becomes "is g = max_i min_j (d_ij - c_ij . Y) >= 0
reachable on the property's input box(es)?" (see inverset.exact.vnnlib): ``unsat`` when the
solver proves the maximum of g below 0 on every box, ``sat`` with a witness otherwise, re-checked
on the loaded network (and on onnxruntime). ``--method`` runs one of the solver's methods
instead of its own choice, so the methods can be compared on the same instances (e.g.
``--suite mnistfc --method milp``). Usage::

    python benchmarks/vnncomp.py [--suite acasxu|mnistfc] [--limit N] [--props 1,2]
        [--nets 256x2] [--timeout-scale 1.0] [--every K] [--method auto|bab|relu|milp]
        [--threads N]
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch

import inverset as iv
from inverset.exact.vnnlib import read_vnnlib

EXTERNAL = Path(__file__).resolve().parents[1].parent / "shared" / "external"
ROOT = EXTERNAL / "acasxu"


def decide(model, prop, timeout: float, seed: int = 0, method: str = "auto", threads: int = 1):
    """('sat'|'unsat'|'timeout', witness or None, bound info) for one instance."""
    t0 = time.perf_counter()
    g = prop.target()
    bounds = []
    for lo, hi in prop.boxes:
        left = timeout - (time.perf_counter() - t0)
        if left <= 0:
            return "timeout", None, bounds
        box = iv.Box(lo, hi).with_shape(model.input_shape)
        r = iv.in_range(
            model,
            g,
            (0.0, math.inf),
            box,
            solver="exact",
            time_limit=left,
            seed=seed,
            method=method,
            threads=threads,
        )
        if r.status == "found":
            return "sat", r.x, bounds
        if r.status != "unreachable":
            return "timeout", None, bounds
        bounds.append(r.bound)
    return "unsat", None, bounds


def check_witness(path: Path, prop, x: np.ndarray) -> bool:
    """The witness lies in a box and satisfies the unsafe condition under onnxruntime."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    y = sess.run(None, {inp.name: np.asarray(x, dtype=np.float32).reshape(shape)})[0].reshape(-1)
    xf = np.asarray(x, dtype=np.float64).reshape(-1)
    inside = any(((xf >= lo - 1e-9) & (xf <= hi + 1e-9)).all() for lo, hi in prop.boxes)
    hit = any(all(float(c @ y) <= d + 1e-6 for c, d in conj) for conj in prop.unsafe)
    return bool(inside and hit)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N selected instances")
    ap.add_argument("--props", default=None, help="only these properties, e.g. 1,2,5")
    ap.add_argument("--every", type=int, default=1, help="every K-th selected instance")
    ap.add_argument("--timeout-scale", type=float, default=1.0)
    ap.add_argument("--suite", choices=["acasxu", "mnistfc"], default="acasxu")
    ap.add_argument("--nets", default=None, help="only networks whose name contains one of these")
    ap.add_argument("--method", default="auto", help="the exact solver's method")
    ap.add_argument("--root", type=Path, default=None, help="the suite's folder")
    ap.add_argument("--threads", type=int, default=1, help="the solver's threads")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.root = args.root or EXTERNAL / args.suite
    rows = list(csv.reader((args.root / f"{args.suite}_instances.csv").open()))
    if args.props:
        keep = {p.strip() for p in args.props.split(",")}
        rows = [r for r in rows if r[1].strip()[5:-7] in keep]
    if args.nets:
        rows = [r for r in rows if any(n in r[0] for n in args.nets.split(","))]
    rows = rows[:: args.every][: args.limit]
    models: dict[str, torch.nn.Module] = {}
    print(f"{'network':34} {'prop':6} {'limit':>6} {'answer':8} {'time s':>7}  witness")
    counts = {"sat": 0, "unsat": 0, "timeout": 0}
    total = 0.0
    for net, prop_file, timeout in rows:
        net, prop_file = net.strip(), prop_file.strip()
        path = args.root / net
        if net not in models:
            models[net] = iv.load_model(str(path))
        prop = read_vnnlib(args.root / prop_file)
        limit = float(timeout) * args.timeout_scale
        t = time.perf_counter()
        answer, x, _ = decide(models[net], prop, limit, method=args.method, threads=args.threads)
        dt = time.perf_counter() - t
        total += dt
        counts[answer] += 1
        wit = ""
        if x is not None:
            ok = check_witness(path, prop, x)
            flat = np.asarray(x).reshape(-1)
            wit = ("ok " if ok else "BAD ") + (
                np.array2string(flat, precision=5, separator=",")
                if flat.size <= 8
                else f"({flat.size} values)"
            )
        print(f"{net:34} {prop_file[:-7]:6} {limit:6.0f} {answer:8} {dt:7.2f}  {wit}", flush=True)
    print(
        f"\n{len(rows)} instances: {counts['sat']} sat, {counts['unsat']} unsat, "
        f"{counts['timeout']} undecided; total {total:.1f} s"
    )


if __name__ == "__main__":
    main()
