"""ACAS Xu and MNIST-FC instances of VNN-COMP 2021 decided by inverset's exact solver.

Each instance (network, property, timeout) becomes "is g = max_i min_j (d_ij - c_ij . Y) >= 0
reachable on the property's input box(es)?" (see inverset.exact.vnnlib): ``unsat`` when the
solver proves the maximum of g below 0 on every box, ``sat`` with a witness otherwise, re-checked
on onnxruntime (a witness it rejects is printed ``BAD sat`` and counted apart). ``--props``
names ACAS Xu properties by number and MNIST-FC ones by image (``0``: both epsilons) or image
and epsilon (``0_0.03``). ``--method`` runs one of the solver's methods
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
from _args import positive

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


def prop_keys(prop_file: str) -> set[str]:
    """The ``--props`` values that select a property file: ``prop_1.vnnlib`` by ``1``;
    ``prop_0_0.03.vnnlib`` (MNIST image 0, epsilon 0.03) by ``0`` (every epsilon) or ``0_0.03``."""
    key = Path(prop_file).stem.removeprefix("prop_")
    return {key, key.split("_")[0]}


def by_number(key: str) -> tuple:
    """Sort key putting property 2 before 10."""
    return tuple(int(p) if p.isdigit() else math.inf for p in key.split("_"))


def select(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[list[str]]:
    """The instances that --props, --nets, --every and --limit select from the suite's CSV; a
    name that matches nothing is a one-line error listing what exists."""
    csv_path = args.root / f"{args.suite}_instances.csv"
    if not csv_path.is_file():
        ap.error(
            f"--root {args.root} has no {csv_path.name}: point --root at the VNN-COMP 2021 "
            f"{args.suite} folder (github.com/stanleybak/vnncomp2021, benchmarks/{args.suite})"
        )
    with csv_path.open() as f:
        rows = [[cell.strip() for cell in r] for r in csv.reader(f) if r]
    if args.props:
        have = ",".join(sorted({min(prop_keys(r[1]), key=len) for r in rows}, key=by_number))
        want = {p.strip() for p in args.props.split(",") if p.strip()}
        unknown = ",".join(sorted(want - {k for r in rows for k in prop_keys(r[1])}, key=by_number))
        if unknown or not want:
            ap.error(
                f"--props: no property {unknown or args.props!r} in {args.suite}; it has {have}"
            )
        rows = [r for r in rows if prop_keys(r[1]) & want]
    if args.nets:
        names = sorted({r[0] for r in rows})
        have = ", ".join(names if len(names) <= 6 else [*names[:2], "...", names[-1]])
        want = {n.strip() for n in args.nets.split(",") if n.strip()}
        unknown = ",".join(sorted(n for n in want if not any(n in r[0] for r in rows)))
        if unknown or not want:
            among = " with those properties" if args.props else ""
            ap.error(
                f"--nets: no {args.suite} network{among} matches {unknown or args.nets!r}; "
                f"there are {len(names)}: {have}"
            )
        rows = [r for r in rows if any(n in r[0] for n in want)]
    return rows[:: args.every][: args.limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=positive(int), default=None, help="first N selected instances")
    ap.add_argument(
        "--props",
        default=None,
        help="only these properties, e.g. 1,2,5 (ACAS Xu); MNIST-FC 0 is image 0 at both "
        "epsilons, 0_0.03 one of them",
    )
    ap.add_argument("--every", type=positive(int), default=1, help="every K-th selected instance")
    ap.add_argument("--timeout-scale", type=positive(float), default=1.0)
    ap.add_argument("--suite", choices=["acasxu", "mnistfc"], default="acasxu")
    ap.add_argument("--nets", default=None, help="only networks whose name contains one of these")
    ap.add_argument(
        "--method",
        choices=["auto", "bab", "relu", "milp"],
        default="auto",
        help="the exact solver's method",
    )
    ap.add_argument("--root", type=Path, default=None, help="the suite's folder")
    ap.add_argument("--threads", type=positive(int), default=1, help="the solver's threads")
    args = ap.parse_args()
    args.root = args.root or EXTERNAL / args.suite
    rows = select(ap, args)
    torch.set_num_threads(1)
    models: dict[str, torch.nn.Module] = {}
    width = max(len(Path(r[1]).stem) for r in rows)
    print(f"{'network':34} {'prop':{width}} {'limit':>6} {'answer':8} {'time s':>7}  witness")
    counts = {"sat": 0, "unsat": 0, "timeout": 0}
    bad = 0
    total = 0.0
    for net, prop_file, timeout in rows:
        path = args.root / net
        if net not in models:
            models[net] = iv.load_model(str(path))
        prop = read_vnnlib(args.root / prop_file)
        limit = float(timeout) * args.timeout_scale
        t = time.perf_counter()
        answer, x, _ = decide(models[net], prop, limit, method=args.method, threads=args.threads)
        dt = time.perf_counter() - t
        total += dt
        wit = ""
        if x is not None:
            ok = check_witness(path, prop, x)
            flat = np.asarray(x).reshape(-1)
            wit = ("ok " if ok else "BAD ") + (
                np.array2string(flat, precision=5, separator=",")
                if flat.size <= 8
                else f"({flat.size} values)"
            )
            if not ok:
                answer = "BAD sat"
                bad += 1
        if answer in counts:
            counts[answer] += 1
        name = Path(prop_file).stem
        print(f"{net:34} {name:{width}} {limit:6.1f} {answer:8} {dt:7.2f}  {wit}", flush=True)
    print(
        f"\n{len(rows)} instances: {counts['sat']} sat, {counts['unsat']} unsat, "
        f"{counts['timeout']} undecided, {bad} with a witness onnxruntime rejects; "
        f"total {total:.1f} s"
    )


if __name__ == "__main__":
    main()
