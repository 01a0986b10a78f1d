"""Inverse-set sampling (Hada & Carreira-Perpiñán): many diverse inputs whose target lies in a
range, and in intersections of ranges. ``sample`` is the entry point."""

from inverset.sampling.encoders import Encoder, default_layer, make_encoder
from inverset.sampling.inverse_set import sample

__all__ = ["Encoder", "default_layer", "make_encoder", "sample"]
