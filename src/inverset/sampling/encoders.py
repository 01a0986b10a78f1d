"""The encoder E: the space in which sample diversity is measured and pushed.

Hada & Carreira-Perpiñán measure distances on ``E(x)`` rather than on pixels, because pixel
distances react to tiny changes; their E is the first layers of a trained classifier. Here E is
one of: a layer of the model itself (read in the same forward pass as the target, so it costs
nothing extra), the identity (flattened input), or any ``nn.Module`` applied to the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from inverset.errors import InversetError
from inverset.model import (
    check_layer_names,
    check_rows,
    first_tensor,
    hookable_layers,
    inputs_for,
    layers,
    one_row_each,
    run_twice,
)

#: recurrent and attention layers are a hidden block each (their activations are inside)
_BLOCKS = (
    nn.RNNBase,
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_ACTIVATIONS = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.ReLU6,
)


def default_layer(model: nn.Module, input_shape: Sequence[int] | None = None) -> str | None:
    """The output of the model's first hidden block: a recurrent or attention layer, or the
    first activation module that follows its first Linear/Conv layer (in registration order),
    else that layer itself.
    Only layers that forward hooks can read and, when the input shape is known
    (``input_shape`` or recorded on the model), that the forward pass runs exactly once with
    one row per input are candidates: a registered but unused module is never picked, nor
    one used at several places (a shared activation, whose output is ambiguous), nor one
    inside a time-first sequence model (rows of positions, not inputs)."""
    found = hookable_layers(model)
    try:
        infos = {info.name: info for info in layers(model, input_shape)}
    except InversetError:  # the model fails on that shape: the run reports it
        infos = {}
    first = None
    for name, m in found.items():
        info = infos.get(name)
        if info is not None and (info.calls != 1 or info.rows is not None):
            continue
        if isinstance(m, _BLOCKS):  # a whole block (after an input projection or not)
            return name
        if first is None and isinstance(m, _WEIGHTED):
            first = name
        elif first is not None and isinstance(m, _ACTIVATIONS):
            return name
    return first


class Encoder:
    """``E``: features [B, p] of model inputs, either from a model layer or a module."""

    def __init__(self, kind: str, layer: str | None = None, module: nn.Module | None = None):
        self.kind, self.layer, self.module = kind, layer, module

    def __call__(self, x: torch.Tensor, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Features of inputs ``x``; ``acts`` are the activations of the same forward pass.
        A layer that ran more than once in it is refused, as targets refuse it."""
        if self.kind == "layer":
            calls = getattr(acts, "calls", {}).get(self.layer, 1)
            if calls > 1:
                raise run_twice(self.layer, calls)
            e = acts[self.layer]
            check_rows(self.layer, e, len(x))
        elif self.kind == "identity":
            e = x
        else:  # on its own device, wherever the model is (as a Latent's generator)
            out = self.module(inputs_for(self.module, x))
            try:  # a VAE encoder's (mean, log-variance): its mean, as a model's first tensor
                e = first_tensor(out).to(x.device)
            except InversetError:
                raise InversetError(
                    f"the encoder module returned {type(out).__name__}, not a tensor; give one "
                    "that returns a tensor (or a tuple/list/dict whose first is the features)"
                ) from None
            if e.dim() == 0 or not one_row_each(e, len(x)):
                raise InversetError(
                    f"the encoder module gives {tuple(e.shape)} for a batch of {len(x)} inputs, "
                    "not one row per input; give a module whose output keeps the batch first"
                )
        return e.reshape(e.shape[0], -1)

    def describe(self) -> str:
        if self.kind == "layer":
            return f"layer {self.layer}"
        return self.kind if self.kind == "identity" else f"module {type(self.module).__name__}"


def make_encoder(
    model: nn.Module, encoder: str | nn.Module | None, input_shape: Sequence[int] | None = None
) -> Encoder:
    """Resolve the user's choice: None (default early layer), 'identity', a layer name, a
    module. ``input_shape`` (without the batch axis) lets the default skip unused layers."""
    if isinstance(encoder, nn.Module):
        return Encoder("module", module=encoder)
    if encoder == "identity":
        return Encoder("identity")
    if encoder is None:
        name = default_layer(model, input_shape)
        return Encoder("layer", layer=name) if name else Encoder("identity")
    if not isinstance(encoder, str):
        raise InversetError(
            f"encoder must be None, 'identity', a layer name or an nn.Module, not "
            f"{type(encoder).__name__}"
        )
    check_layer_names(model, [encoder])
    if encoder == "out":
        raise InversetError("encoder 'out' is the model output; name a hidden layer or 'identity'")
    return Encoder("layer", layer=encoder)
