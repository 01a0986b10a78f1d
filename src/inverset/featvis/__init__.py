"""Feature visualization for image (and 1-D) models: parameterizations, transforms,
objectives, batched rendering and Deep Dream. ``from inverset import featvis as fv``."""

from inverset.featvis import objectives, transforms
from inverset.featvis.objectives import (
    Context,
    Objective,
    alpha_mean,
    blur,
    channel,
    class_logit,
    class_prob,
    deep_dream,
    direction,
    diversity,
    l1,
    l2,
    neuron,
    total_variation,
)
from inverset.featvis.param import FourierImage, ImageParam, LatentImage, Pixels
from inverset.featvis.render import dream, save, visualize

__all__ = [
    "Context",
    "FourierImage",
    "ImageParam",
    "LatentImage",
    "Objective",
    "Pixels",
    "alpha_mean",
    "blur",
    "channel",
    "class_logit",
    "class_prob",
    "deep_dream",
    "direction",
    "diversity",
    "dream",
    "l1",
    "l2",
    "neuron",
    "objectives",
    "save",
    "total_variation",
    "transforms",
    "visualize",
]
