"""``inverset demo``: two small models trained on bundled data, and the questions users ask.

1. A ReLU MLP surrogate of diabetes progression (scikit-learn's bundled data): which patient
   profile, inside the range of the data, maximizes / minimizes predicted progression?
2. A small CNN on the bundled 8x8 digits: what is its "ideal 3" (largest margin of class 3)?
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from inverset.api import maximize, minimize
from inverset.domain import Box
from inverset.loaders import load_model
from inverset.report.pictures import write_pictures
from inverset.result import output_directory
from inverset.zoo import check_seed, diabetes, digits


def run_demo(
    out_dir: str | Path = "demo_out", seed: int = 0, console: Console | None = None
) -> dict[str, Any]:
    """Run the demo, write its Results, pictures and ``summary.json`` into ``out_dir``, return
    the summary."""
    check_seed(seed)  # before any directory is made or model trained
    console = console or Console()
    out = output_directory(out_dir)
    t0 = time.perf_counter()
    summary: dict = {}
    saved: list[Path] = []  # the Results' directories and the pictures, as written
    pictures: list[Path] = []

    console.print("[bold]1. Surrogate:[/] MLPRegressor 10-16-16-1 (ReLU) on sklearn's diabetes")
    reg, X, y, names = diabetes(seed=seed)
    model = load_model(reg)
    box = Box.from_data(X, names=names)
    best = maximize(model, "out:0", box, starts=64, seed=seed)
    worst = minimize(model, "out:0", box, starts=64, seed=seed)
    for name, res in (("maximize", best), ("minimize", worst)):
        saved.append(res.save(out / f"diabetes_{name}"))
        pictures += write_pictures(res, out / f"diabetes_{name}", names)
    t = Table(title="inputs that maximize / minimize predicted progression (data's box)")
    t.add_column("feature")
    t.add_column("data min", justify="right")
    t.add_column("data max", justify="right")
    t.add_column("argmax", justify="right")
    t.add_column("argmin", justify="right")
    for i, n in enumerate(names):
        t.add_row(
            n,
            f"{X[:, i].min():.3f}",
            f"{X[:, i].max():.3f}",
            f"{best.x[i]:.3f}",
            f"{worst.x[i]:.3f}",
        )
    console.print(t)
    console.print(
        f"predicted progression: max {best.value:.2f}, min {worst.value:.2f} "
        f"(training targets span {y.min():.0f}..{y.max():.0f})"
    )
    # The surrogate is a ReLU network: the exact solver proves how good the gradient answer is.
    proof = maximize(model, "out:0", box, solver="exact", time_limit=30, seed=seed)
    saved.append(proof.save(out / "diabetes_certified_max"))
    console.print(
        f"exact solver ({proof.status}): no input in the box predicts more than "
        f"{proof.bound:.4f}; best input found {proof.value:.4f} (gradient search: {best.value:.4f})"
    )
    summary["diabetes"] = {
        "features": names,
        "argmax": best.x.tolist(),
        "max": best.value,
        "argmin": worst.x.tolist(),
        "min": worst.value,
        "status": [best.status, worst.status],
        "certified_max": {"value": proof.value, "bound": proof.bound, "status": proof.status},
    }

    console.print("\n[bold]2. Classifier:[/] small CNN on sklearn's 8x8 digits")
    trained = digits("cnn", seed=seed)
    cnn = trained.model
    console.print(f"held-out accuracy {trained.accuracy:.3f}")
    ideal = maximize(cnn, "margin:3", Box(0, 1, shape=(1, 8, 8)), starts=32, seed=seed)
    saved.append(ideal.save(out / "ideal_3"))
    pictures += write_pictures(ideal, out / "ideal_3")
    with torch.no_grad():
        x = torch.as_tensor(ideal.x[None], dtype=torch.float32)
        p = torch.softmax(cnn(x), 1)[0]
    console.print(
        f"ideal 3: margin {ideal.value:.2f}, classified as {int(p.argmax())} with "
        f"probability {float(p.max()):.4f}"
    )
    summary["ideal_3"] = {
        "margin": ideal.value,
        "predicted": int(p.argmax()),
        "probability": float(p.max()),
        "status": ideal.status,
    }
    summary["seconds"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    results = sorted(str(d.relative_to(out)) for d in saved)
    pngs = sorted(str(f.relative_to(out)) for f in pictures)
    console.print(f"\nwrote into {out}/:")
    console.print("  summary.json")
    console.print(f"  {len(results)} results (result.json + result.npz each): {', '.join(results)}")
    console.print(f"  {len(pngs)} pictures: {', '.join(pngs)}")
    console.print(f"done in {summary['seconds']:.1f} s")
    return summary
