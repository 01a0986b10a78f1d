"""``load_model``: one entry point from any supported source to a ``torch.nn.Module``.

Sources: a module as is; ``.onnx`` files (own converter); TorchScript files; sklearn MLP
objects; ``package.module:factory`` plus a state-dict file; pickled modules and joblib files
only with ``trust=True`` (pickles run code). Loaders record ``input_shape``, ``labels``,
``feature_names`` and ``source`` on the module when the source tells them.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inverset.errors import InversetError, first_line


def _is_sklearn(obj: Any) -> bool:
    return type(obj).__module__.startswith("sklearn.")


def _from_factory(spec: str, weights: str | Path | None, device: str | None) -> nn.Module:
    mod_name, _, fn_name = spec.partition(":")
    if os.getcwd() not in sys.path:  # as `python -m` does: mymod.py here is importable
        sys.path.append(os.getcwd())
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise InversetError(
            f"cannot import factory {spec!r} ({exc}); give it as package.module:function, "
            "importable from the current directory or PYTHONPATH"
        ) from None
    try:
        model = fn()
    except Exception as exc:  # the user's own code: any error, reported in one line
        raise InversetError(
            f"factory {spec!r} failed ({type(exc).__name__}: {first_line(exc)}); it must build "
            "the model when called with no arguments"
        ) from None
    if not isinstance(model, nn.Module):
        raise InversetError(f"factory {spec!r} returned {type(model).__name__}, not an nn.Module")
    if weights is not None:
        state = _load_state(Path(weights), device)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            # torch's message: a header line, then one line per missing/unexpected/misshaped key
            lines = [ln.strip() for ln in str(exc).strip().splitlines()]
            detail = "; ".join(ln for ln in lines[1:] if ln) or lines[0]
            if len(detail) > 300:
                detail = detail[:300] + " ..."
            raise InversetError(f"weights {weights} do not fit {spec}: {detail}") from None
    model.source = spec
    return model


def _load_state(path: Path, device: str | None) -> dict:
    if not path.is_file():
        raise InversetError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as exc:
        raise InversetError(f"{path} is not a readable state dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InversetError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_model(
    source: Any,
    *,
    trust: bool = False,
    weights: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """A ``torch.nn.Module`` from a module, file path, sklearn MLP or factory spec.

    ``trust=True`` allows unpickling (full torch modules, joblib files): only for files you
    trust, since a pickle can run any code. ``weights`` is a state-dict file for a factory.
    ``device`` moves the model; by default it stays where it is (CPU for files).
    """
    if isinstance(source, nn.Module):
        model = source
    elif _is_sklearn(source):
        from inverset.loaders.sklearn import from_sklearn

        model = from_sklearn(source)
    elif isinstance(source, str | Path):
        text = str(source)
        path = Path(text)
        if not path.exists() and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text):
            model = _from_factory(text, weights, None)
        else:
            model = _load_file(path, trust, device)
    else:
        raise InversetError(
            f"cannot load a model from {type(source).__name__}; give an nn.Module, a file "
            "(.onnx, .pt TorchScript, state dict with a factory) or a fitted sklearn MLP"
        )
    if input_shape is not None:
        model.input_shape = tuple(int(s) for s in input_shape)
    if device is not None:
        model = model.to(device)
    return model


def _load_file(path: Path, trust: bool, device: str | torch.device | None = None) -> nn.Module:
    if not path.exists():
        raise InversetError(f"model file {path} does not exist; check the path")
    if path.is_dir():
        raise InversetError(f"{path} is a directory; give a model file (.onnx, .pt, .joblib)")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from inverset.loaders.onnx import load_onnx

        return load_onnx(path)
    if suffix in (".joblib", ".pkl", ".pickle"):
        if not trust:
            raise InversetError(
                f"{path} is a pickle, which can run code when loaded; pass --trust "
                "(trust=True) only if you trust its author"
            )
        import joblib

        obj = joblib.load(path)
        if _is_sklearn(obj):
            from inverset.loaders.sklearn import from_sklearn

            model = from_sklearn(obj)
        elif isinstance(obj, nn.Module):
            model = obj
        else:
            raise InversetError(f"{path} holds a {type(obj).__name__}, not a model")
        model.source = str(path)
        return model
    if suffix in (".pt", ".pth", ".ts", ".torchscript", ".bin"):
        return _load_torch(path, trust, device)
    if suffix == ".py":
        raise InversetError(
            f"{path} is Python source, not a model file; name the function in it that builds the "
            f"model, {path.stem}:FUNCTION, as MODEL, or as --factory with a state dict as MODEL "
            f"(in Python: load_model('{path.stem}:FUNCTION', weights=path))"
        )
    raise InversetError(
        f"unsupported model file type {suffix or '(none)'!r} for {path}; use .onnx, .pt/.pth "
        "(TorchScript, or a pickled module with --trust), .joblib (with --trust), or a state "
        "dict with the code that builds the model: --factory package.module:function "
        "(in Python: load_model('pkg.mod:fn', weights=path))"
    )


def _load_torch(path: Path, trust: bool, device: str | torch.device | None = None) -> nn.Module:
    """A TorchScript file (its constants straight onto ``device``: a frozen module cannot
    move them later), a state dict (refused: it needs a factory) or, trusted, a pickle."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            scripted = any(n.split("/", 1)[-1].startswith("code/") for n in zf.namelist())
        if scripted:
            try:
                model = torch.jit.load(str(path), map_location=device or "cpu")
            except Exception as exc:
                raise InversetError(f"{path} is not a loadable TorchScript file ({exc})") from None
            model.source = str(path)
            return model
    try:
        with warnings.catch_warnings():  # the refusal below says it in one line
            if not trust:
                warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        msg = str(exc)
        if not trust and ("weights_only" in msg or "Unsupported global" in msg):
            raise InversetError(
                f"{path} holds a pickled module, which can run code when loaded; pass --trust "
                "(trust=True) if you trust its author, or save it as TorchScript or a state "
                "dict with a factory"
            ) from None
        raise InversetError(f"{path} is not a readable torch file ({type(exc).__name__})") from None
    if isinstance(obj, nn.Module):
        obj.source = str(path)
        return obj
    if isinstance(obj, dict):
        raise InversetError(
            f"{path} holds a state dict, not a model; also give the code that builds the model: "
            "--factory package.module:function "
            "(in Python: load_model('pkg.mod:fn', weights=path))"
        )
    raise InversetError(f"{path} holds a {type(obj).__name__}, not a model")
