"""Feature visualization: inverset vs Lucent (torch-lucent 0.1.8), side by side.

Same model, same 16 channels of one layer, same size, steps, Adam lr 0.05, Fourier
parameterization with decorrelated colour and Lucid's standard transforms on both sides.
Lucent renders all channels in ONE batched call (its fastest mode: a per-image objective
``channel(layer, c, batch=i)`` summed), with its defaults otherwise (it upsamples images under
224 px to 224 before the model; it leaves parameter gradients on). Final activations of both
are measured the same way: the target channel's spatial mean on the final 128 px image, no
transforms (and, for Lucent, also at the 224 px it optimized at).

Lucent does not install on this torch/Python without help; it runs in a throwaway venv::

    python3 -m venv /tmp/lucentvenv
    SP=/tmp/lucentvenv/lib/python3.11/site-packages
    echo /work/venv/lib/python3.11/site-packages > $SP/w.pth  # reuse torch, numpy, ...
    /tmp/lucentvenv/bin/pip install --no-deps torch-lucent==0.1.8 'kornia<=0.4.1' tqdm decorator
    # plus two shims: torchvision/transforms.py (Normalize) and IPython/display.py (display)

Both sides start from the same seed (``--seed``, default 0): inverset's ``visualize(seed=...)``,
and in Lucent's worker torch's and numpy's global generators (its image parameterization draws
from torch, its transforms from numpy), so that each side is reproducible run to run.

Times are CPU seconds of the rendering process (``time.process_time``, one thread), not wall
time: the machine is shared, and wall time there measures the neighbours' load.

Run: ``python benchmarks/featvis.py [--steps 256] [--models cnn,lite0] [--threads 1] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _args import listed, positive
from torch import nn

HERE = Path(__file__).resolve().parent
LUCENT_PYTHON = os.environ.get("LUCENT_PYTHON", "/tmp/lucentvenv/bin/python")
LAYERS = {"cnn": "features.4", "lite0": "_blocks.6"}


class SmallCNN(nn.Module):
    """A small random-weight CNN (seeded): layers 'features.0' .. 'features.6'."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def build(name: str) -> nn.Module:
    if name == "cnn":
        return SmallCNN().eval()
    from inverset.featvis.zoo import efficientnet_lite

    return efficientnet_lite(0)


def channel_means(model: nn.Module, layer: str, images: np.ndarray, size: int) -> np.ndarray:
    """The target channel's spatial mean for image i = channel i (no transforms)."""
    from inverset.model import forward, restore_mode

    x = torch.tensor(images, dtype=torch.float32)
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
    with torch.no_grad(), restore_mode(model):
        a = forward(model, x, [layer])[layer]
    return a[torch.arange(len(x)), torch.arange(len(x))].mean((-2, -1)).numpy()


def run_inverset(model, layer, n, size, steps, seed: int = 0) -> tuple[float, np.ndarray]:
    from inverset import featvis as fv

    t = time.process_time()
    r = fv.visualize(
        model,
        layer=layer,
        channels=list(range(n)),
        size=size,
        steps=steps,
        batch_size=n,
        transforms=fv.transforms.lucid(),
        seed=seed,
    )
    return time.process_time() - t, r.arrays["images"]


def lucent_worker(args) -> None:
    """Runs inside the Lucent venv: render, save images, print the time as JSON."""
    torch.set_num_threads(args.threads)
    from lucent.optvis import objectives, param, render, transform

    model = build(args.worker)
    torch.manual_seed(args.seed)  # Lucent draws its initial image from torch's global RNG
    np.random.seed(args.seed)  # and its jitter, scale and rotation from numpy's
    layer = LAYERS[args.worker].replace(".", "_")
    obj = sum(objectives.channel(layer, i, batch=i) for i in range(args.n))
    t = time.process_time()
    imgs = render.render_vis(
        model,
        obj,
        lambda: param.image(args.size, batch=args.n),
        transforms=transform.standard_transforms,
        thresholds=(args.steps,),
        preprocess=False,
        progress=False,
        show_image=False,
    )
    dt = time.process_time() - t
    np.save(args.out, np.transpose(imgs[-1], (0, 3, 1, 2)))
    print(json.dumps({"seconds": dt}))


def run_lucent(
    name, n, size, steps, threads, seed: int = 0
) -> tuple[float | None, np.ndarray | None, str]:
    if not Path(LUCENT_PYTHON).exists():
        return None, None, f"Lucent venv not found at {LUCENT_PYTHON} (see module docstring)"
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "lucent.npy"
        env = dict(os.environ, PYTHONPATH=f"{HERE.parent / 'src'}:{HERE}")
        cmd = [LUCENT_PYTHON, str(Path(__file__).resolve()), "--worker", name, "--out", str(out)]
        cmd += ["--n", str(n), "--size", str(size), "--steps", str(steps)]
        cmd += ["--threads", str(threads), "--seed", str(seed)]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            last = (p.stderr.strip().splitlines() or ["?"])[-1]
            return None, None, f"Lucent failed: {last}"
        seconds = json.loads(p.stdout.strip().splitlines()[-1])["seconds"]
        return seconds, np.load(out), ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=listed(str, LAYERS), default="cnn,lite0")
    ap.add_argument("--n", type=positive(int), default=16)
    ap.add_argument("--size", type=positive(int), default=128)
    ap.add_argument(
        "--steps", type=listed(positive(int)), default="256", help="or one per model: 256,64"
    )
    ap.add_argument("--threads", type=positive(int), default=1)
    ap.add_argument("--seed", type=int, default=0, help="both sides' random seed")
    ap.add_argument("--worker", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.worker:
        args.steps = args.steps[0]
        lucent_worker(args)
        return
    torch.set_num_threads(args.threads)
    steps = dict(zip(args.models, args.steps, strict=False))
    print(
        f"{args.n} channels, {args.size} px, {args.threads} thread(s); act = target channel "
        f"mean on the final image ({args.size} px, no transforms); act@224 = Lucent's images "
        "upsampled to 224 as it optimizes them"
    )
    print(
        f"{'model':6} {'steps':>5} {'tool':9} {'cpu s':>8} {'img/cpu s':>9} {'act mean':>9} "
        f"{'act min':>8} {'act@224':>8}  note",
        flush=True,
    )
    rows = []

    def show(name, n_steps, tool, dt, ips, am, amin, a224, note):
        rows.append((name, tool, dt, ips))
        if dt is None:
            print(
                f"{name:6} {n_steps:>5} {tool:9} {'-':>8} {'-':>9} {'-':>9} {'-':>8} {'-':>8}"
                f"  {note}",
                flush=True,
            )
            return
        print(
            f"{name:6} {n_steps:>5} {tool:9} {dt:8.1f} {ips:9.3f} {am:9.3f} {amin:8.3f} "
            f"{a224:>8}  {note}",
            flush=True,
        )

    for name in args.models:
        n_steps = steps.get(name, args.steps[-1])
        model, layer = build(name), LAYERS[name]
        dt, imgs = run_inverset(model, layer, args.n, args.size, n_steps, args.seed)
        act = channel_means(model, layer, imgs, args.size)
        show(name, n_steps, "inverset", dt, args.n / dt, act.mean(), act.min(), "-", "")
        ldt, limgs, why = run_lucent(name, args.n, args.size, n_steps, args.threads, args.seed)
        if ldt is None:
            show(name, n_steps, "lucent", None, None, None, None, None, why)
            continue
        lact = channel_means(model, layer, limgs, args.size)
        l224 = channel_means(model, layer, limgs, 224)
        show(
            name,
            n_steps,
            "lucent",
            ldt,
            args.n / ldt,
            lact.mean(),
            lact.min(),
            f"{l224.mean():.3f}",
            "",
        )
    by = {(r[0], r[1]): r for r in rows}
    for name in args.models:
        a, b = by.get((name, "inverset")), by.get((name, "lucent"))
        if a and b and b[2]:
            print(f"{name}: inverset {a[3] / b[3]:.1f}x Lucent's images/s")


if __name__ == "__main__":
    sys.exit(main())
