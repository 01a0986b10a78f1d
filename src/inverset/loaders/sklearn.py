"""scikit-learn ``MLPRegressor``/``MLPClassifier`` -> an exactly equivalent torch module."""

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

    def __init__(self, est: Any):
        super().__init__()
        act = est.activation
        if act not in _ACTS:
            raise InversetError(
                f"sklearn activation {act!r} is not supported; use one of {list(_ACTS)}"
            )
        n = len(est.coefs_)
        binary = est.out_activation_ == "logistic" and est.coefs_[-1].shape[1] == 1
        for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
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
        names = getattr(est, "feature_names_in_", None)
        self.feature_names = [str(f) for f in names] if names is not None else None
        self.source = f"sklearn {type(est).__name__}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)
        for i in range(1, self.n_hidden + 1):
            h = getattr(self, f"act{i}")(getattr(self, f"fc{i}")(h))
        z = self.out(h)
        if self.out_activation == "exp":
            z = torch.exp(z)
        return z


def from_sklearn(est: Any) -> SklearnMLP:
    """Convert a fitted sklearn MLP (checks that it is one and that it is fitted)."""
    name = type(est).__name__
    if name not in ("MLPRegressor", "MLPClassifier"):
        raise InversetError(f"cannot convert a {name}; inverset reads MLPRegressor/MLPClassifier")
    if not hasattr(est, "coefs_"):
        raise InversetError(f"the {name} is not fitted; call fit() first")
    return SklearnMLP(est).eval()
