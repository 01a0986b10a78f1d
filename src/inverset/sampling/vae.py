"""A small VAE on scikit-learn's 8x8 digits: its decoder is a generator ``G`` for sampling in a
latent space (``Latent(decoder, dim)``), trained in seconds on a CPU, nothing downloaded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class Decoder(nn.Module):
    """``z [B, dim] -> x [B, 1, 8, 8]`` in [0, 1]."""

    def __init__(self, dim: int = 8, hidden: int = 256):
        super().__init__()
        self.latent_dim = dim
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 64), nn.Sigmoid(),
        )  # fmt: skip
        self.input_shape = (dim,)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(z.shape[0], 1, 8, 8)


class Encoder(nn.Module):
    """``x [B, 1, 8, 8] -> (mean, log variance)`` of the code."""

    def __init__(self, dim: int = 8, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return h.chunk(2, dim=1)


@dataclass
class TrainedVAE:
    decoder: Decoder
    encoder: Encoder
    dim: int
    recon_error: float  # mean absolute pixel error on the data


def digits_vae(dim: int = 8, epochs: int = 150, seed: int = 0, beta: float = 1.0) -> TrainedVAE:
    """Train a VAE on all 1797 digits (pixels / 16, in [0, 1]); a few seconds on a CPU."""
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    X = torch.from_numpy((load_digits().images / 16.0).astype(np.float32)[:, None])
    dec, enc = Decoder(dim), Encoder(dim)
    opt = torch.optim.Adam([*dec.parameters(), *enc.parameters()], lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), 128):
            x = X[perm[i : i + 128]]
            mean, logvar = enc(x)
            z = mean + torch.randn(mean.shape, generator=gen) * (0.5 * logvar).exp()
            rec = nn.functional.binary_cross_entropy(dec(z), x, reduction="sum") / len(x)
            kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum() / len(x)
            opt.zero_grad()
            (rec + beta * kl).backward()
            opt.step()
    dec.eval()
    enc.eval()
    with torch.no_grad():
        err = float((dec(enc(X)[0]) - X).abs().mean())
    return TrainedVAE(dec, enc, dim, err)
