"""The inverse-set paper's figures in miniature, on 8x8 digits (a minute or two on a CPU).

Trains a digits CNN (the network under study) and a small VAE whose decoder is the generator G,
then samples, in G's latent space, inputs whose neuron lies in a chosen range:

* ``class_neuron.png``  rows of samples for several ranges of a class logit (paper Fig. 1);
* ``hidden_neuron.png`` rows for a low and a high range of a hidden fc1 unit (Fig. 3);
* ``intersection.png``  neuron A alone, neuron B alone, and their intersection (Fig. 4-5);
* ``hist_class_neuron.png``, ``hist_hidden_neuron.png``  the re-evaluated values of every
  sample of every range, each range's samples in its own colour over its own shaded range;
* ``hist_intersection_a.png``, ``_b.png``  both neurons' values of the intersection samples.

    python examples/digits_inverse_set.py [--out examples_out/inverse_set] [-n 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import inverset as iv
from inverset.errors import InversetError
from inverset.model import forward
from inverset.report.images import save_grid, save_histogram, save_range_histograms
from inverset.sampling import sample
from inverset.sampling.vae import digits_vae
from inverset.zoo import digits


def row(result, ncol: int = 10) -> tuple[list[np.ndarray], list[float]]:
    """Up to ``ncol`` distinct samples spread over the run's values (lowest to highest); all
    of them, each once, when the run has fewer."""
    values = np.asarray(result.values if result.values is not None else [])
    order = np.argsort(values)
    k = min(ncol, len(order))
    pick = order[np.unique(np.linspace(0, len(order) - 1, k).round().astype(int))]
    return [result.xs[i] for i in pick], [float(values[i]) for i in pick]


def show(runs, path: Path, title: str, ncol: int = 10) -> None:
    """One grid row per run (tiles a run lacks are left blank), labelled with the values."""
    images: list[np.ndarray | None] = []
    labels: list[str] = []
    for name, r in runs:
        imgs, vals = row(r, ncol)
        pad = ncol - len(imgs)
        images += imgs + [None] * pad
        labels += [f"{name}\n{v:.2f}" if j == 0 else f"{v:.2f}" for j, v in enumerate(vals)]
        labels += [f"{name}\nnone" if not imgs and j == 0 else "" for j in range(pad)]
    save_grid(images, path, labels, ncol=ncol, title=title)
    print(f"wrote {path}")


def _values(r) -> np.ndarray:
    """A run's re-evaluated target values (none when it returned no samples)."""
    return np.asarray(r.values if r.values is not None else [], dtype=np.float64)


def report(name: str, r) -> None:
    i = r.info
    div = "-" if i["diversity"] is None else f"{i['diversity']:.3f}"  # one sample: none
    print(
        f"  {name:28s} {r.status:9s} {i['accepted']:4d} in range (verified {i['verified']}), "
        f"steps {i['seed_steps']}+{i['sample_steps']}, diversity {div}, "
        f"{r.timings['total']:.1f} s"
    )


def parser() -> argparse.ArgumentParser:
    """The command line, its defaults included."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="examples_out/inverse_set")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main() -> None:
    a = parser().parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    t0 = time.perf_counter()
    cnn = digits("cnn", seed=a.seed)
    vae = digits_vae(seed=a.seed)
    print(
        f"digits CNN accuracy {cnn.accuracy:.3f}, VAE reconstruction |error| "
        f"{vae.recon_error:.3f} ({time.perf_counter() - t0:.0f} s)"
    )
    model = cnn.model
    space = iv.Latent(vae.decoder, vae.dim, domain=iv.Box(0, 1, shape=(1, 8, 8)))
    box = iv.Box(0, 1)
    kw = dict(n=a.n, domain=box, space=space, seed=a.seed)
    ncol = min(10, a.n)  # a row shows each sample once: fewer columns when n < 10

    # what the prior of G gives, to choose ranges that exist
    with torch.no_grad():
        z = torch.randn(4000, vae.dim, generator=torch.Generator().manual_seed(0)).clamp(-3, 3)
        acts = forward(model, vae.decoder(z), ["fc1"])
    fc1 = acts["fc1"].numpy()

    # Fig. 1: one class neuron, several activation ranges
    cls = 3
    ranges = [(0, 3), (4, 7), (8, 11), (12, 15)]
    print(f"class neuron logit:{cls}")
    runs = []
    for lo, hi in ranges:
        r = sample(model, f"logit:{cls}", (lo, hi), **kw)
        report(f"[{lo}, {hi}]", r)
        runs.append((f"[{lo},{hi}]", r))
    show(runs, out / "class_neuron.png", f"logit:{cls} (class {cls}) in each range, rows low->high",
         ncol)  # fmt: skip
    groups = [(name, _values(r), lo, hi) for (name, r), (lo, hi) in zip(runs, ranges, strict=True)]
    title = f"logit:{cls}: every sample of each range"
    save_range_histograms(groups, out / "hist_class_neuron.png", title=title)

    # Fig. 3: a hidden neuron (the fc1 unit that varies most under G), low and high range
    unit = int(np.argmax(fc1.std(0)))
    q = np.quantile(fc1[:, unit], [0.4, 0.6, 0.97, 0.999])
    hidden = [(float(q[0]), float(q[1])), (float(q[2]), float(q[3]))]
    print(f"hidden neuron fc1:{unit}")
    runs = []
    for lo, hi in hidden:
        r = sample(model, f"fc1:{unit}", (lo, hi), **kw)
        report(f"[{lo:.2f}, {hi:.2f}]", r)
        runs.append((f"[{lo:.1f},{hi:.1f}]", r))
    show(runs, out / "hidden_neuron.png", f"fc1:{unit}: a middle range (top) and a high range",
         ncol)  # fmt: skip
    groups = [(name, _values(r), lo, hi) for (name, r), (lo, hi) in zip(runs, hidden, strict=True)]
    title = f"fc1:{unit}: every sample of each range"
    save_range_histograms(groups, out / "hist_hidden_neuron.png", title=title)

    # Fig. 4-5: two class neurons and their intersection
    ta, tb, rng = "logit:3", "logit:5", (4.0, 8.0)
    print(f"intersection of {ta} and {tb} in [{rng[0]:g}, {rng[1]:g}]")
    ra = sample(model, ta, rng, **kw)
    rb = sample(model, tb, rng, **kw)
    rab = sample(model, ta, rng, intersect=[(tb, *rng)], **kw)
    for name, r in ((ta, ra), (tb, rb), (f"{ta} and {tb}", rab)):
        report(name, r)
    show([(ta, ra), (tb, rb), ("both", rab)], out / "intersection.png",
         f"{ta} in {rng} (top), {tb} in {rng} (middle), both (bottom)", ncol)  # fmt: skip
    if rab.xs is not None and len(rab.xs):
        save_histogram(rab.arrays["constraints"][:, 0], out / "hist_intersection_b.png", *rng,
                       title=f"{tb} of the intersection samples")  # fmt: skip
        save_histogram(rab.values, out / "hist_intersection_a.png", *rng,
                       title=f"{ta} of the intersection samples")  # fmt: skip
    print(f"done in {time.perf_counter() - t0:.0f} s; pictures in {out}/")


if __name__ == "__main__":
    try:
        main()
    except InversetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
