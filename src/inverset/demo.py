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
from inverset.errors import InversetError
from inverset.files import replacing
from inverset.loaders import load_model
from inverset.report.pictures import write_pictures
from inverset.result import Result, output_directory, write_fix
from inverset.zoo import check_seed, diabetes, digits


def run_demo(
    out_dir: str | Path = "demo_out", seed: int = 0, console: Console | None = None
) -> dict[str, Any]:
    """Run the demo, write its Results, pictures and ``summary.json`` into ``out_dir``, return
    the summary. Each answer is printed before it is written, so that a full disk (a one-line
    error) or a Ctrl-C (KeyboardInterrupt, once the interrupted answer is kept) never takes it
    with it."""
    check_seed(seed)  # before any directory is made or model trained
    console = console or Console()
    out = output_directory(out_dir)
    t0 = time.perf_counter()
    summary: dict = {}
    saved: list[Path] = []  # the Results' directories and the pictures, as written
    pictures: list[Path] = []

    def keep(res: Result, name: str, names: list[str] | None = None, draw: bool = True) -> None:
        """Save ``res`` (and its pictures) in ``out/name``; an interrupted search stops the
        demo there, as a Ctrl-C would have."""
        saved.append(res.save(out / name))
        if draw:
            try:
                pictures.extend(write_pictures(res, out / name, names))
            except OSError as exc:
                raise _unwritten(out / name, exc) from None
        if res.status == "interrupted":
            raise KeyboardInterrupt

    console.print("[bold]1. Surrogate:[/] MLPRegressor 10-16-16-1 (ReLU) on sklearn's diabetes")
    reg, X, y, names = diabetes(seed=seed)
    model = load_model(reg)
    box = Box.from_data(X, names=names)
    best = maximize(model, "out:0", box, starts=64, seed=seed)
    if best.status == "interrupted":
        keep(best, "diabetes_maximize", names)
    worst = minimize(model, "out:0", box, starts=64, seed=seed)
    if worst.status == "interrupted":
        keep(worst, "diabetes_minimize", names)
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
    keep(best, "diabetes_maximize", names)
    keep(worst, "diabetes_minimize", names)
    # The surrogate is a ReLU network: the exact solver proves how good the gradient answer is.
    proof = maximize(model, "out:0", box, solver="exact", time_limit=30, seed=seed)
    console.print(
        f"exact solver ({proof.status}): no input in the box predicts more than "
        f"{proof.bound:.4f}; best input found {proof.value:.4f} (gradient search: {best.value:.4f})"
    )
    keep(proof, "diabetes_certified_max", draw=False)
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
    keep(ideal, "ideal_3")
    summary["seconds"] = time.perf_counter() - t0
    try:
        with replacing(out / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    except OSError as exc:
        raise _unwritten(out, exc) from None
    results = sorted(str(d.relative_to(out)) for d in saved)
    pngs = sorted(str(f.relative_to(out)) for f in pictures)
    console.print(f"\nwrote into {out}/:")
    console.print("  summary.json")
    console.print(f"  {len(results)} results (result.json + result.npz each): {', '.join(results)}")
    console.print(f"  {len(pngs)} pictures: {', '.join(pngs)}")
    console.print(f"done in {summary['seconds']:.1f} s")
    return summary


def _unwritten(where: Path, exc: OSError) -> InversetError:
    """The one-line error of a demo file that could not be written (a full disk)."""
    return InversetError(
        f"the demo's files were not written in {where} ({exc.strerror or type(exc).__name__}); "
        f"{write_fix(exc)} or give another directory (--out)"
    )
