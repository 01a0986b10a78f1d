"""Deep Dream on scikit-image's bundled ``chelsea`` cat photo with EfficientNet-Lite0.

Amplifies what a middle block sees, over 4 octaves (smallest first), carrying the added detail
from octave to octave. Writes ``grid.png`` (original and dream) and the Result.

Run: ``python examples/deep_dream_chelsea.py [--layer _blocks.8] [--out dream_out]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from skimage import data

from inverset import featvis as fv
from inverset.featvis.zoo import efficientnet_lite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="_blocks.8")
    ap.add_argument("--octaves", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="dream_out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = efficientnet_lite(0)
    t = time.perf_counter()
    r = fv.dream(model, data.chelsea(), args.layer, octaves=args.octaves, steps=args.steps)
    print(f"{r.message}: {time.perf_counter() - t:.0f} s")
    h = r.history["objective"]
    print(f"layer L2 objective: {h[0]:.3g} at the first step -> {r.value:.3g} at the end")
    print("wrote", *map(str, fv.save(r, args.out)))


if __name__ == "__main__":
    main()
