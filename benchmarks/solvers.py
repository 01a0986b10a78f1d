"""Every solver on the same queries at equal budgets, side by side.

Queries: maximize and minimize one output of small ReLU MLP surrogates trained on data that
ships with scikit-learn, over the box of that data:

* ``diabetes``: ``inverset.zoo.diabetes()`` (MLPRegressor 10 -> 16 -> 16 -> 1), target ``out:0``;
* ``cancer``: MLPClassifier 30 -> 16 -> 16 -> 2 on standardized breast-cancer data,
  target ``margin:1`` (malignant-vs-benign logit margin);
* ``wine``: MLPClassifier 13 -> 16 -> 16 -> 3 on standardized wine data, target ``margin:0``.

For each solver and budget (wall-clock seconds, and separately model evaluations) the table
gives the median best value, the median relative gap to the reference optimum
``sense * (opt - value) / max(1, |opt|)``, the success rate over seeds (gap <= 1e-4) and the
median number of model evaluations. The reference is the exact solver's certified optimum
(run once with a tight tolerance); when it cannot certify within ``--ref-time`` seconds the
best value any run found is used instead, and the table says so. Timings on a shared machine
are noisy: other processes slow some runs down, which hurts the wall-clock budgets most.

Quick run::

    python benchmarks/solvers.py --budgets 1,5 --seeds 3 --problems diabetes

Full run (hours)::

    python benchmarks/solvers.py --budgets 1,5,30 --seeds 10 --evals 1000,20000
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from _args import listed, positive

import inverset as iv
from inverset.goal import Goal
from inverset.loaders import load_model

SOLVERS = [
    "gradient",
    "basinhopping",
    "annealing",
    "evolution",
    "swarm",
    "cmaes",
    "bayes",
    "auto",
]


def _classifier(loader: Callable, seed: int = 0):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    data = loader()
    X = StandardScaler().fit_transform(data.data)
    clf = MLPClassifier((16, 16), max_iter=2000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, data.target)
    return load_model(clf), iv.Box.from_data(X)


def diabetes():
    from inverset.zoo import diabetes as zoo_diabetes

    reg, X, _, _ = zoo_diabetes()
    return load_model(reg), iv.Box.from_data(X), "out:0"


def cancer():
    from sklearn.datasets import load_breast_cancer

    return (*_classifier(load_breast_cancer), "margin:1")


def wine():
    from sklearn.datasets import load_wine

    return (*_classifier(load_wine), "margin:0")


PROBLEMS = {"diabetes": diabetes, "cancer": cancer, "wine": wine}
GOALS = ("maximize", "minimize")  # reach and range need a value this script does not take


def reference(model, target, goal, box, ref_time: float) -> tuple[float | None, str]:
    """The exact solver's certified optimum, or None when it cannot certify in time."""
    try:
        res = iv.solve(model, target, goal, box, solver="exact", time_limit=ref_time, tol=1e-7)
    except Exception as exc:  # the exact solver is optional for this benchmark
        return None, f"exact failed: {type(exc).__name__}: {exc}"
    if res.status == "optimal":
        return float(res.value), f"certified by exact in {res.timings.get('total', 0):.1f} s"
    return None, f"exact {res.status} after {ref_time:g} s (value {res.value}, bound {res.bound})"


def one_run(model, target, goal, box, solver, seed, time_limit, max_evals) -> dict:
    t = time.perf_counter()
    try:
        res = iv.solve(
            model,
            target,
            goal,
            box,
            solver=solver,
            seed=seed,
            time_limit=time_limit,
            max_evals=max_evals,
        )
    except iv.InversetError as exc:
        return {"error": str(exc)}
    return {
        "value": res.value,
        "nfev": res.nfev,
        "time": time.perf_counter() - t,
        "status": res.status,
        "picked": res.info.get("auto", {}).get("picked"),
    }


def warm_up(model, target, box, solvers: list[str]) -> None:
    """First calls pay for imports and lazy initialization (torch.optim alone takes seconds)."""
    for s in solvers:
        kw = {"rounds": 1} if s == "bayes" else {}
        iv.solve(model, target, Goal.maximize(), box, solver=s, max_evals=60, **kw)


def summarize(runs: list[dict], opt: float, sense: int) -> dict:
    ok = [r for r in runs if "error" not in r and r["value"] is not None]
    if not ok:
        err = runs[0].get("error", "no value") if runs else "no runs"
        return {"error": err}
    vals = np.array([r["value"] for r in ok])
    gaps = sense * (opt - vals) / max(1.0, abs(opt))
    return {
        "value": float(np.median(vals)),
        "gap": float(np.median(gaps)),
        "success": int((gaps <= 1e-4).sum()),
        "n": len(runs),
        "nfev": int(np.median([r["nfev"] for r in ok])),
        "time": float(np.median([r["time"] for r in ok])),
        "mean_value": float(np.mean(vals)),
        "picked": sorted({r["picked"] for r in ok if r.get("picked")}),
    }


def print_table(title: str, cols: list[str], rows: dict[str, dict[str, dict]]) -> None:
    print(f"\n{title}")
    head = f"| {'solver':<12} |" + "".join(f" {c:^38} |" for c in cols)
    print(head)
    print("|" + "-" * 14 + "|" + "".join("-" * 40 + "|" for _ in cols))
    print(
        f"| {'':<12} |"
        + "".join(f" {'median':>11} {'gap':>8} {'ok':>5} {'nfev':>7}   |" for _ in cols)
    )
    for solver, by_col in rows.items():
        line = f"| {solver:<12} |"
        for c in cols:
            s = by_col.get(c, {})
            if "error" in s:
                line += f" {('n/a: ' + s['error'])[:38]:<38} |"
            elif not s:
                line += f" {'-':<38} |"
            else:
                ok = f"{s['success']}/{s['n']}"
                line += f" {s['value']:>11.5g} {s['gap']:>8.1e} {ok:>5} {s['nfev']:>7}   |"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--budgets", type=listed(positive(float)), default="1,5,30", help="wall-clock seconds"
    )
    eval_budgets = listed(positive(int), empty=True)
    ap.add_argument("--evals", type=eval_budgets, default="", help="evaluation budgets: 1000,20000")
    ap.add_argument("--seeds", type=positive(int), default=10)
    ap.add_argument("--problems", type=listed(str, PROBLEMS), default="diabetes,cancer,wine")
    ap.add_argument("--goals", type=listed(str, GOALS), default="maximize,minimize")
    ap.add_argument("--solvers", type=listed(str, SOLVERS), default=",".join(SOLVERS))
    ap.add_argument(
        "--ref-time", type=positive(float), default=300.0, help="seconds for the exact solver"
    )
    ap.add_argument(
        "--cap", type=positive(float), default=60.0, help="time cap of evaluation-budget runs"
    )
    ap.add_argument("--json", default=None, help="also write every run to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    budgets, evals, solvers = args.budgets, args.evals, args.solvers
    print(
        "Timings are wall clock on a shared 2-core machine (torch with 1 thread); other "
        "processes make them noisy."
    )
    raw: dict = {}
    auto_check: list[str] = []
    for pname in args.problems:
        model, box, target = PROBLEMS[pname]()
        warm_up(model, target, box, solvers)
        for gname in args.goals:
            goal = Goal(gname)
            key = f"{pname} {gname} {target}"
            opt, how = reference(model, target, goal, box, args.ref_time)
            runs: dict[str, dict[str, list]] = {s: {} for s in solvers}
            plan = [(f"{b:g} s", b, None) for b in budgets]
            plan += [(f"{e} evals", args.cap, e) for e in evals]
            for col, tl, me in plan:
                for s in solvers:
                    runs[s][col] = [
                        one_run(model, target, goal, box, s, seed, tl, me)
                        for seed in range(args.seeds)
                    ]
            if opt is None:
                found = [
                    r["value"]
                    for by in runs.values()
                    for rs in by.values()
                    for r in rs
                    if r.get("value") is not None
                ]
                opt = max(found) if goal.sense > 0 else min(found)
                how += "; reference = best value any run found (NOT certified)"
            cols = [p[0] for p in plan]
            rows = {s: {c: summarize(runs[s][c], opt, goal.sense) for c in cols} for s in solvers}
            print_table(f"## {key}: optimum {opt:.6g} ({how}); {args.seeds} seeds", cols, rows)
            picks = {c: rows.get("auto", {}).get(c, {}).get("picked") for c in cols}
            print(f"auto picked: {picks}")
            raw[key] = {"optimum": opt, "reference": how, "runs": runs}
            if "auto" in rows and "5 s" in cols:
                singles = [rows[s]["5 s"] for s in solvers if s != "auto"]
                singles = [r for r in singles if "mean_value" in r]
                a = rows["auto"]["5 s"]
                if singles and "mean_value" in a:
                    best = max(r["mean_value"] * goal.sense for r in singles) * goal.sense
                    short = goal.sense * (best - a["mean_value"]) / max(1.0, abs(best))
                    verdict = "OK" if short <= 0.01 else "MISSED"
                    auto_check.append(
                        f"{key}: auto mean {a['mean_value']:.6g} vs best single solver mean "
                        f"{best:.6g}: shortfall {100 * short:.3f}% ({verdict}, target <= 1%)"
                    )
    if auto_check:
        print("\n## auto vs the best single solver at 5 s (mean over seeds)")
        print("\n".join(auto_check))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(raw, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
