"""scikit-learn ``MLPRegressor``/``MLPClassifier`` (alone, or last in a ``Pipeline`` after
``StandardScaler``/``MinMaxScaler`` steps) -> an exactly equivalent torch module."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from inverset.errors import InversetError

_ACTS = {"identity": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid}


class SklearnMLP(nn.Module):
    """Layers ``fc1, act1, fc2, act2, ..., out`` in float64, as sklearn computes.

    Regressors output predictions. Classifiers output logits; a binary classifier's single
    logit z becomes the two logits (0, z) (its ``out`` layer gets a zero first row), so
    ``prob:1`` (softmax) equals sklearn's ``predict_proba[:, 1]`` exactly.
    """

    def __init__(self, est: Any, scale: np.ndarray | None = None, shift: np.ndarray | None = None):
        """``scale``/``shift``: a scaling ``x * scale + shift`` of the raw inputs before ``est``
        (a pipeline's scalers), folded into the first layer."""
        super().__init__()
        act = est.activation
        if act not in _ACTS:
            raise InversetError(
                f"sklearn activation {act!r} is not supported; use one of {list(_ACTS)}"
            )
        n = len(est.coefs_)
        binary = est.out_activation_ == "logistic" and est.coefs_[-1].shape[1] == 1
        for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
            if i == 0 and scale is not None and shift is not None:  # W (x s + t) + b
                w, b = w * scale[:, None], b + shift @ w
            if i == n - 1 and binary:  # logits (0, z) from one plain Linear layer: row 0 is zero
                w = np.concatenate([np.zeros_like(w), w], axis=1)
                b = np.concatenate([np.zeros_like(b), b])
            lin = nn.Linear(w.shape[0], w.shape[1]).double()
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float64).T))
                lin.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float64)))
            if i < n - 1:
                self.add_module(f"fc{i + 1}", lin)
                self.add_module(f"act{i + 1}", _ACTS[act]())
            else:
                self.add_module("out", lin)
        self.n_hidden = n - 1
        self.out_activation = est.out_activation_
        self.is_classifier = hasattr(est, "classes_")
        if not self.is_classifier and self.out_activation not in ("identity", "exp"):
            raise InversetError(f"sklearn regressor output {self.out_activation!r} unsupported")
        if self.is_classifier and self.out_activation not in ("softmax", "logistic"):
            raise InversetError("sklearn classifier with an unknown output activation")
        if self.is_classifier and self.out_activation == "logistic" and not binary:
            raise InversetError("multilabel MLPClassifier is not supported; fit one per label")
        self.input_shape = (int(est.coefs_[0].shape[0]),)
        self.labels = [str(c) for c in est.classes_] if self.is_classifier else None
        #: the output row that is 0 for every input (a binary classifier's logit 0), if any
        self.zero_logit = 0 if binary and self.is_classifier else None
        names = getattr(est, "feature_names_in_", None)
        self.feature_names = [str(f) for f in names] if names is not None else None
        self.source = f"sklearn {type(est).__name__}"

    def chain(self) -> list[str] | None:
        """Names of the layers ``forward`` applies in turn to its flattened input, or None
        when it does more (a Poisson regressor's exp): the exact solver reads this chain
        instead of tracing ``forward``, which costs about 1.5 ms a solve."""
        if type(self).forward is not SklearnMLP.forward or self.out_activation == "exp":
            return None
        return self._layers()

    def _layers(self) -> list[str]:
        """``fc1, act1, ..., out``: the layers in the order ``forward`` applies them."""
        hidden = [f"{k}{i}" for i in range(1, self.n_hidden + 1) for k in ("fc", "act")]
        return [*hidden, "out"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.reshape(x.shape[0], -1)
        for name in self._layers():
            z = getattr(self, name)(z)
        if self.out_activation == "exp":
            z = torch.exp(z)
        return z


#: what inverset reads: an MLP, alone or last in a Pipeline after these scalers
MLPS, SCALERS = ("MLPRegressor", "MLPClassifier"), ("StandardScaler", "MinMaxScaler")
READS = "an MLPRegressor/MLPClassifier, or a Pipeline of StandardScaler/MinMaxScaler steps and one"


def from_sklearn(est: Any) -> SklearnMLP:
    """Convert a fitted sklearn MLP, or a Pipeline of scalers ending in one (the scalers are
    folded into the first layer, so the box stays in the raw feature space)."""
    name = type(est).__name__
    steps = [s for _, s in est.steps] if name == "Pipeline" else [est]
    mlp, scalers = steps[-1], [s for s in steps[:-1] if s is not None and s != "passthrough"]
    kinds = [type(s).__name__ for s in (*scalers, mlp)]
    if kinds[-1] not in MLPS or any(k not in SCALERS for k in kinds[:-1]):
        what = f"Pipeline({', '.join(kinds)})" if name == "Pipeline" else f"{name}"
        raise InversetError(f"cannot convert a {what}; inverset reads {READS}")
    for s in (*scalers, mlp):
        if not hasattr(s, "coefs_" if s is mlp else "n_features_in_"):
            raise InversetError(f"the {type(s).__name__} is not fitted; call fit() first")
    scale, shift = np.ones(mlp.coefs_[0].shape[0]), np.zeros(mlp.coefs_[0].shape[0])
    for s in scalers:
        a, c = _affine(s)
        scale, shift = scale * a, shift * a + c
    model = SklearnMLP(mlp, scale, shift) if scalers else SklearnMLP(mlp)
    if scalers:
        names = getattr(est, "feature_names_in_", None)
        if names is not None:
            model.feature_names = [str(f) for f in names]
        model.source = f"sklearn Pipeline({', '.join(kinds)})"
    return model.eval()


def _affine(scaler: Any) -> tuple[np.ndarray, np.ndarray]:
    """(a, c) with ``scaler.transform(x) == x * a + c``; a clipping MinMaxScaler is refused."""
    n = int(scaler.n_features_in_)
    if type(scaler).__name__ == "MinMaxScaler":
        if getattr(scaler, "clip", False):
            raise InversetError(
                "a MinMaxScaler with clip=True is not a linear map; refit it with clip=False"
            )
        return np.asarray(scaler.scale_, dtype=np.float64), np.asarray(scaler.min_, np.float64)
    mean = scaler.mean_ if scaler.with_mean else np.zeros(n)
    std = scaler.scale_ if scaler.with_std else np.ones(n)
    a = 1.0 / np.asarray(std, dtype=np.float64)
    return a, -np.asarray(mean, dtype=np.float64) * a
