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

from inverset.errors import InversetError, first_line, no_file


def _is_sklearn(obj: Any) -> bool:
    return type(obj).__module__.startswith("sklearn.")


def as_module(model: Any) -> nn.Module:
    """A model object as a torch module: a module as is, a fitted sklearn MLP (or Pipeline of
    scalers and one) converted; anything else (a file name too) is a one-line error."""
    if isinstance(model, nn.Module):
        return model
    if _is_sklearn(model):
        from inverset.loaders.sklearn import from_sklearn

        return from_sklearn(model)
    raise InversetError(
        f"model must be a torch.nn.Module or a fitted sklearn MLP, not {type(model).__name__} "
        "(load files with inverset.load_model)"
    )


def _cwd_importable() -> None:
    """Make modules in the current directory importable, as ``python -m`` does: a factory's
    ``mymod.py`` here, or the module a trusted pickle's class lives in."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def _from_factory(spec: str, weights: str | Path | None, device: str | None) -> nn.Module:
    mod_name, _, fn_name = spec.partition(":")
    _cwd_importable()
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
        if _wrapped(state) and not _wrapped(model.state_dict()):
            # saved from an nn.DataParallel / DistributedDataParallel wrapper
            state = dict(state)
            torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state, "module.")
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


def _wrapped(state: dict) -> bool:
    """Whether every key of a state dict starts with ``module.`` (an ``nn.DataParallel``'s)."""
    return bool(state) and all(str(k).startswith("module.") for k in state)


#: where a training checkpoint (a dict with the epoch, the optimizer's state, ...) keeps the
#: model's state dict: Lightning's key, the PyTorch tutorials' and a common short one
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")


def _load_state(path: Path, device: str | None) -> dict:
    if not path.is_file():
        raise no_file(path, "weights file")
    try:
        with warnings.catch_warnings():  # torch warns of a TorchScript file: said below
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as exc:
        raise _misread(path, "state dict", ("torch",), state_dict=True) or InversetError(
            f"{path} is not a readable state dict ({type(exc).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise InversetError(f"{path} holds a {type(state).__name__}, not a state dict")
    # a training checkpoint keeps the weights under a key beside the epoch and optimizer
    state = next((state[k] for k in CHECKPOINT_KEYS if isinstance(state.get(k), dict)), state)
    other = [str(k) for k, v in state.items() if not torch.is_tensor(v)]
    if state and len(other) == len(state):
        raise InversetError(
            f"{path} holds a dict without tensors ({', '.join(other[:6])}), "
            f"not a state dict; save model.state_dict() alone, or a checkpoint that keeps it "
            f"under {' or '.join(repr(k) for k in CHECKPOINT_KEYS)}"
        )
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
    if device is not None:  # checked before a file is read onto it
        device = resolve_device(str(device))
    if isinstance(source, nn.Module) or _is_sklearn(source):
        model = as_module(source)
    elif isinstance(source, str | Path):
        text = str(source)
        if not text.strip():
            raise InversetError(
                "the model is an empty name; give a model file (.onnx, .pt, .joblib) or "
                "package.module:factory"
            )
        path = Path(text)
        factory = re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text) is not None
        if weights is not None and not factory:
            raise InversetError(
                "a factory, the function that builds the model for a state dict, is given as "
                "package.module:function (e.g. --factory inverset.zoo:DigitsCNN, or "
                f"load_model('pkg.mod:fn', weights=path)), got {text!r}"
            )
        if factory and (weights is not None or not path.exists()):
            model = _from_factory(text, weights, None)
        else:
            model = _load_file(path, trust, device)
    else:
        raise InversetError(
            f"cannot load a model from {type(source).__name__}; give an nn.Module, a file "
            "(.onnx, .pt TorchScript, state dict with a factory) or a fitted sklearn MLP"
        )
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise InversetError(
                "input_shape is one input's shape without the batch axis, whole numbers >= 1 "
                f"(e.g. input_shape=(1, 28, 28) / --input-shape 1,28,28), got {shape}"
            )
        model.input_shape = shape
    if device is not None:
        model = model.to(device)
    return model


def resolve_device(device: str) -> str:
    """'auto' -> CUDA when present, else the CPU; a named device must exist here (a one-line
    error, not torch's, for one this torch or machine lacks)."""

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InversetError(
            f"unknown device {device!r}; use auto, cpu, cuda or cuda:N (device= / --device)"
        ) from None
    if dev.type == "cuda" and (
        not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()
    ):
        raise InversetError(
            f"device {device!r} is not available (this torch sees "
            f"{torch.cuda.device_count()} CUDA devices); use device='cpu' or 'auto' (--device)"
        )
    if dev.type == "meta":
        raise InversetError(
            "device 'meta' holds no values to search; use device='cpu' or 'auto' (--device)"
        )
    try:  # another accelerator (mps, xpu, ...) this torch may lack
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError) as exc:
        why = first_line(exc)
        why = why if len(why) <= 100 else "this torch build cannot allocate memory there"
        raise InversetError(
            f"device {device!r} is not available here ({why}); use device='cpu' or 'auto' "
            "(--device)"
        ) from None
    return device


def _load_file(path: Path, trust: bool, device: str | torch.device | None = None) -> nn.Module:
    if not path.is_file():
        fix = "give a model file (.onnx, .pt, .joblib)" if path.is_dir() else "check the path"
        raise no_file(path, "model file", fix)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from inverset.loaders.onnx import load_onnx

        try:
            return load_onnx(path)
        except InversetError as exc:
            raise _misread(path, "ONNX file", ("onnx",)) or exc from None
    if suffix in (".joblib", ".pkl", ".pickle"):
        if not trust:
            raise InversetError(
                f"{path} is a pickle, which can run code when loaded; pass --trust "
                "(trust=True) only if you trust its author"
            )
        import joblib

        try:
            obj = joblib.load(path)
        except Exception as exc:  # any damage: unpickling runs arbitrary code paths
            if (missing := _class_not_found(path, exc)) is not None:
                raise missing from None
            kind, why = type(exc).__name__, first_line(exc)[:100]
            raise _misread(path, "joblib file", ()) or InversetError(
                f"{path} is not a readable joblib file ({kind if why == kind else f'{kind}: {why}'}"
                "); give a file written by joblib.dump"
            ) from None
        if not (_is_sklearn(obj) or isinstance(obj, nn.Module)):
            raise InversetError(f"{path} holds a {type(obj).__name__}, not a model")
        model = as_module(obj)
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


def _class_not_found(path: Path, exc: Exception) -> InversetError | None:
    """The one-line error for a trusted pickle whose class cannot be found when loading (its
    module is not importable, or the class is not in it: a class defined in the training
    script lives in ``__main__``, which is inverset's, not that script), else None."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return InversetError(
            f"{path} holds a pickled model whose class's module {exc.name!r} cannot be "
            "imported; run from the folder of that module's code or add the folder to "
            "PYTHONPATH (install it if it is a package), or save the model as TorchScript"
        )
    found = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", str(exc))
    if not isinstance(exc, AttributeError) or found is None:
        return None
    cls, module = found.groups()
    if module == "__main__" or module.endswith(".__main__"):
        return InversetError(
            f"{path} holds a pickled model whose class {cls} was defined in the script that "
            "saved it (__main__), so it cannot be found here; move the class into a module "
            "importable from here (e.g. surrogate.py) and save again, or save the model as "
            "TorchScript (torch.jit.script(model).save(...)) or as a state dict for --factory"
        )
    return InversetError(
        f"{path} holds a pickled model of class {cls}, which module {module!r} no longer "
        "defines (its code changed since the file was saved); run with the code it was "
        "saved with, or save the model as TorchScript"
    )


def _load_torch(path: Path, trust: bool, device: str | torch.device | None = None) -> nn.Module:
    """A TorchScript file (its constants straight onto ``device``: a frozen module cannot
    move them later), a state dict (refused: it needs a factory) or, trusted, a pickle."""
    if _holds(path) == "torchscript":
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
            else:
                _cwd_importable()
            obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        misread = _misread(path, "torch file", ("torch",))
        if misread is not None:
            raise misread from None
        msg = str(exc)
        pickled = _holds(path) == "torch" or _starts_with(path, LEGACY_TORCH)
        if not trust and pickled and ("weights_only" in msg or "Unsupported global" in msg):
            raise InversetError(
                f"{path} holds a pickled module, which can run code when loaded; pass --trust "
                "(trust=True) if you trust its author, or save it as TorchScript or a state "
                "dict with a factory"
            ) from None
        if trust and (missing := _class_not_found(path, exc)) is not None:
            raise missing from None
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


#: what :func:`_holds` can tell a file holds, as the error says it
HOLDS = {
    "empty": "it is empty (0 bytes)",
    "onnx": "it holds an ONNX model",
    "torchscript": "it holds a TorchScript module",
    "torch": "it holds a torch file (a state dict or a pickled module)",
    "text": "it holds text",
}
#: the file name suffix each kind of model file loads under
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "torch": ".pt"}


def _misread(
    path: Path, what: str, expected: tuple[str, ...], state_dict: bool = False
) -> InversetError | None:
    """The error for a file that failed to load as a ``what`` because it holds something
    else (an ONNX model named .pt, text, nothing), naming what it holds and the fix; None when
    its bytes do not tell or it holds what was ``expected``."""
    kind = _holds(path)
    if kind is None or kind in expected:
        return None
    if kind in SUFFIX and state_dict:
        fix = f"give it as MODEL without --factory (named {path.stem}{SUFFIX[kind]})"
    elif kind in SUFFIX:
        fix = f"rename it {path.with_suffix(SUFFIX[kind]).name}"
    else:
        fix = f"give the {what} itself"
    return InversetError(f"{path} is not a readable {what}: {HOLDS[kind]}; {fix}")


def _holds(path: Path) -> str | None:
    """What the bytes of ``path`` tell it holds (a key of :data:`HOLDS`), or None."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
        if not head:
            return "empty"
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n.split("/", 1)[-1] for n in zf.namelist()]
            if any(n.startswith("code/") for n in names):
                return "torchscript"
            return "torch" if "data.pkl" in names else None
        if head[:1] == b"\x08" and _is_onnx(path):  # field 1 of a ModelProto: ir_version
            return "onnx"
    except (OSError, zipfile.BadZipFile):
        return None
    return "text" if _is_text(head) else None


#: how a torch file of the old (not zip) format starts: pickle protocol 2, then torch's
#: 10-byte magic number as a LONG1
LEGACY_TORCH = b"\x80\x02\x8a\x0a"


def _starts_with(path: Path, magic: bytes) -> bool:
    """Whether the file at ``path`` starts with ``magic``."""
    try:
        with path.open("rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _is_onnx(path: Path) -> bool:
    """Does ``path`` parse as an ONNX model with a graph (needs the onnx package)?"""
    try:
        import onnx

        proto = onnx.ModelProto()
        proto.ParseFromString(path.read_bytes())
    except Exception:  # no onnx package, or not an ONNX protobuf
        return False
    return len(proto.graph.node) > 0


def _is_text(head: bytes) -> bool:
    """Are these bytes printable UTF-8 text (and not a protocol-0 pickle, which is too)?"""
    import codecs
    import pickletools

    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return False
    if not all(c.isprintable() or c in "\t\r\n\f" for c in text):
        return False
    try:
        for _ in pickletools.genops(head):
            pass
    except Exception:  # not a whole pickle: text
        return True
    return False
