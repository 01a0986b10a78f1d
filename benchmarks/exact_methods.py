"""The exact solver's methods side by side on nets of 9 to 64 inputs, where ``method='auto'``
has the hardest choice: the MILP (HiGHS), ReLU-phase branch and bound, and auto (which runs
one of them, or the MILP for a share of the time and then ReLU splitting).

Nets: seeded random ReLU MLPs (``torch.manual_seed(0)``, PyTorch default init) over
[-1, 1]^n, maximizing output 0; the zoo's digits CNN (inputs in [0, 1]^64,
``margin:3``); a breast-cancer MLPClassifier (30 features, over the data's box, ``out:1``);
random conv nets on 3x3 and 6x6 inputs (two of them
nets an audit found the MILP closes). Each method gets the same time limit; the table
gives its status, best value, certified bound, time and the root's unstable ReLUs, and for
each net which method closed it first or, if none did, reached the lowest bound. A method
within 1% (of the best value's magnitude, at least 1e-3) of the lowest bound counts as tied.

    python benchmarks/exact_methods.py [--time-limit 20] [--nets all|name,...]
        [--methods milp,relu,auto] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from _args import listed, positive
from exact import mlp
from torch import nn

import inverset as iv


def conv9() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 2),
        nn.ReLU(),
        nn.Conv2d(8, 16, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16, 32),
        nn.ReLU(),
        nn.Linear(32, 3),
    ).eval()


def conv_bn9() -> nn.Sequential:
    """A 3x3-input conv net with BatchNorm and max pooling (an audit's net the MILP closes)."""
    torch.manual_seed(2)
    bn = nn.BatchNorm2d(3)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.3, 2)
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        bn,
        nn.ReLU(),
        nn.MaxPool2d(2, 1, padding=1),
        nn.Conv2d(3, 2, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(18, 6),
        nn.ReLU(),
        nn.Linear(6, 3),
    ).eval()


def conv_pool36() -> nn.Sequential:
    """A 6x6-input conv net averaged over the picture (an audit's net the MILP closes)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 1, 1), nn.Flatten()
    ).eval()


def cancer():
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    clf = make_pipeline(StandardScaler(), MLPClassifier((32, 32), max_iter=300, random_state=0))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    return clf, iv.Box.from_data(np.asarray(X))


def digits(arch: str):
    from inverset.zoo import digits as trained

    return trained(arch).model, iv.Box(0, 1, shape=(1, 8, 8))


def random_mlp(sizes: list[int]):
    return mlp(sizes), iv.Box(-1, 1, shape=(sizes[0],))


#: name -> (what builds the model and box, target)
NETS: dict[str, tuple[Callable[[], tuple[object, iv.Box]], str]] = {
    "mlp 9-16-16-1": (lambda: random_mlp([9, 16, 16, 1]), "out:0"),
    "mlp 12-32-32-1": (lambda: random_mlp([12, 32, 32, 1]), "out:0"),
    "mlp 16-32-32-1": (lambda: random_mlp([16, 32, 32, 1]), "out:0"),
    "mlp 24-32-32-1": (lambda: random_mlp([24, 32, 32, 1]), "out:0"),
    "mlp 16-64-64-1": (lambda: random_mlp([16, 64, 64, 1]), "out:0"),
    "mlp 32-64-64-1": (lambda: random_mlp([32, 64, 64, 1]), "out:0"),
    "mlp 64-32-32-1": (lambda: random_mlp([64, 32, 32, 1]), "out:0"),
    "mlp 12-24-24-24-1": (lambda: random_mlp([12, 24, 24, 24, 1]), "out:0"),
    "conv 9 (3x3)": (lambda: (conv9(), iv.Box(-1, 1, shape=(1, 3, 3))), "margin:2"),
    "conv bn 9 (3x3)": (lambda: (conv_bn9(), iv.Box(-1, 1, shape=(1, 3, 3))), "margin:2"),
    "conv pool 36 (6x6)": (lambda: (conv_pool36(), iv.Box(0, 1, shape=(1, 6, 6))), "out:0"),
    "cancer 30-32-32": (cancer, "out:1"),
    "digits cnn": (lambda: digits("cnn"), "margin:3"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-limit", type=positive(float), default=20.0)
    ap.add_argument("--nets", type=listed(str, ["all", *NETS]), default=["all"])
    ap.add_argument(
        "--methods",
        type=listed(str, ["milp", "relu", "bab", "auto"]),
        default=["milp", "relu", "auto"],
    )
    ap.add_argument("--threads", type=positive(int), default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = list(NETS) if "all" in args.nets else args.nets
    tiny, box = random_mlp([2, 4, 1])
    iv.maximize(tiny, "out:0", box, solver="exact", time_limit=10)  # first-call set-up
    print(f"time limit {args.time_limit:g} s, {args.threads} torch thread(s)")
    print(
        f"{'net':20} {'method':6} {'ran':9} {'status':10} {'value':>11} {'bound':>11} "
        f"{'time':>6} {'unstable':>8}"
    )
    for name in names:
        build, target = NETS[name]
        model, box = build()
        rows = []
        for method in args.methods:
            t = time.perf_counter()
            r = iv.maximize(
                model, target, box, solver="exact", method=method, time_limit=args.time_limit
            )
            dt = time.perf_counter() - t
            rows.append((method, r, dt))
            print(
                f"{name:20} {method:6} {r.info.get('method', '-')!s:9} {r.status:10} "
                f"{r.value:11.5f} {r.bound:11.5f} {dt:6.1f} {r.info.get('unstable', '-')!s:>8}",
                flush=True,
            )
        print(f"{'':20} best: {verdict(rows)}")


def verdict(rows: list[tuple[str, iv.Result, float]]) -> str:
    """Which methods closed the net, fastest first, or else reached the lowest bound (ties
    within 1% of the best value's magnitude, at least 1e-3)."""
    closed = sorted((dt, m) for m, r, dt in rows if r.status == "optimal")
    if closed:
        return "optimal: " + ", ".join(f"{m} {dt:.1f} s" for dt, m in closed)
    low = min(r.bound for _, r, _ in rows)
    best = max(r.value for _, r, _ in rows)
    tol = max(1e-3, 0.01 * abs(best))
    tied = [m for m, r, _ in rows if r.bound <= low + tol]
    return f"open; lowest bound {low:.5f} (best value {best:.5f}): {', '.join(tied)}"


if __name__ == "__main__":
    main()
