"""Deep Dream on scikit-image's bundled ``chelsea`` cat photo with EfficientNet-Lite0.

Amplifies what a middle block sees, over 4 octaves (smallest first), carrying the added detail
from octave to octave. Writes ``grid.png`` (original and dream) and the Result, and prints the
objective (the layer's mean squared activation) of the unchanged photo and of the dream, both
at full size without jitter: the gain the dream made.

Run: ``python examples/deep_dream_chelsea.py [--layer _blocks.8] [--out examples_out/dream]``
(pip install 'inverset[examples]'; a missing package is a one-line error, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inverset import featvis as fv
from inverset.errors import InversetError
from inverset.featvis.zoo import efficientnet_lite
from inverset.model import forward


def mean_square(model: nn.Module, image: np.ndarray, layer: str) -> float:
    """Deep Dream's objective, ``layer``'s mean squared activation, on one (C, H, W) image as
    it is (full size, no jitter)."""
    with torch.no_grad():
        a = forward(model, torch.as_tensor(image, dtype=torch.float32), [layer])[layer]
    return float(a.pow(2).mean())


def chelsea() -> np.ndarray:
    """scikit-image's bundled cat photo, (H, W, 3) uint8."""
    try:
        from skimage import data
    except ImportError:
        raise InversetError(
            "scikit-image is not installed; pip install 'inverset[examples]'"
        ) from None
    return data.chelsea()


def parser() -> argparse.ArgumentParser:
    """The command line, its defaults included."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="_blocks.8")
    ap.add_argument("--octaves", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="examples_out/dream")
    ap.add_argument("--threads", type=int, default=2)
    return ap


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    if args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    photo = chelsea()
    model = efficientnet_lite(0)
    t = time.perf_counter()
    r = fv.dream(model, photo, args.layer, octaves=args.octaves, steps=args.steps)
    print(f"{r.message}: {time.perf_counter() - t:.0f} s")
    before = mean_square(model, r.arrays["original"], args.layer)
    after = mean_square(model, r.arrays["images"], args.layer)
    print(
        f"{args.layer} mean squared activation, full size, no jitter: "
        f"photo {before:.3g} -> dream {after:.3g} (the dream's own value: {r.value:.3g})"
    )
    out = Path(args.out)
    fv.save(r, out)
    print(f"wrote into {out}/: result.json + result.npz (the Result), grid.png (photo, dream)")


if __name__ == "__main__":
    try:
        main()
    except InversetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
