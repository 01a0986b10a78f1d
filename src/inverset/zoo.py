"""Small models trained in seconds on data that ships inside scikit-learn.

Used by the demo, the examples and the tests; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from inverset.checks import is_whole
from inverset.errors import InversetError

#: seeds scikit-learn's random_state (and numpy's legacy seeding) accept: 0 .. 2**32 - 1
#: the largest seed scikit-learn takes (the zoo's models are trained with it)
MAX_SEED = 2**32 - 1
#: the largest seed a search takes (torch's generators take 64 bits)
MAX_SEARCH_SEED = 2**64 - 1


def check_seed(seed: int, most: int = MAX_SEED) -> int:
    """``seed`` if it is a whole number from 0 to ``most`` (default: what every generator the
    zoo's models are trained with takes), else a one-line error (scikit-learn and numpy refuse
    negative seeds with a long message of their own)."""
    if not is_whole(seed) or not 0 <= seed <= most:
        raise InversetError(
            f"seed must be an integer from 0 to {most} (e.g. --seed 0 / seed=0), got {seed!r}"
        )
    return int(seed)


@dataclass
class Trained:
    """A trained model with the data it saw (inputs already scaled as the model expects)."""

    model: nn.Module
    X: np.ndarray
    y: np.ndarray
    names: list[str]
    accuracy: float | None = None


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits in [0, 1]: conv1 -> relu1 -> conv2 -> relu2 -> fc1 -> fc2."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2 * width * 16, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


class DigitsMLP(nn.Module):
    """A different architecture for 8x8 digits, used as an independent judge."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64, hidden)
        self.act1 = nn.Tanh()
        self.fc2 = nn.Linear(hidden, hidden)
        self.act2 = nn.Tanh()
        self.fc3 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(self.flatten(x))))))


def _fit(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, lr=3e-3):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    lossf = nn.CrossEntropyLoss() if y.dtype == torch.long else nn.MSELoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(X.shape[0], generator=gen)
        for i in range(0, X.shape[0], 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            lossf(model(X[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


def digits(arch: str = "cnn", seed: int = 0, epochs: int = 15) -> Trained:
    """A digits classifier (``cnn`` or ``mlp``) on sklearn's 8x8 digits scaled to [0, 1].

    Inputs have shape (1, 8, 8); outputs are 10 logits. Accuracy is on a held-out quarter.
    """
    from sklearn.datasets import load_digits

    seed = check_seed(seed)
    torch.manual_seed(seed)
    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    tr, te = perm[: len(X) * 3 // 4], perm[len(X) * 3 // 4 :]
    model = DigitsCNN() if arch == "cnn" else DigitsMLP()
    _fit(model, torch.from_numpy(X[tr]), torch.from_numpy(y[tr]), epochs, seed)
    with torch.no_grad():
        acc = (model(torch.from_numpy(X[te])).argmax(1).numpy() == y[te]).mean()
    model.input_shape = (1, 8, 8)
    model.labels = [str(i) for i in range(10)]
    return Trained(model, X, y, [f"px{i}" for i in range(64)], float(acc))


def diabetes(
    hidden: tuple[int, ...] = (16, 16), seed: int = 0
) -> tuple[Any, np.ndarray, np.ndarray, list[str]]:
    """A scikit-learn ReLU ``MLPRegressor`` on the diabetes data (10 features, as shipped).

    Returns the fitted regressor, the data, the targets and the feature names.
    """
    import warnings

    from sklearn.datasets import load_diabetes
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    seed = check_seed(seed)
    d = load_diabetes()
    reg = MLPRegressor(
        hidden_layer_sizes=hidden, max_iter=2000, random_state=seed, learning_rate_init=1e-2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(d.data, d.target)
    return reg, d.data, d.target, list(d.feature_names)
