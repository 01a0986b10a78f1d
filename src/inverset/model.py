"""Read any named activation of a model through forward hooks, and list what can be read.

Hooks are registered for one forward pass at a time and always removed (``finally``),
so a model handed to inverset comes back exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import math
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from inverset.errors import InversetError, first_line

OUTPUT = "out"  # the model output; `logit`, `prob` and `margin` refs read it too
#: what targets call the model output (``out:k``, ``logit:k``, ``prob:k``, ``margin:k``): a
#: submodule so named directly under the model is named with a leading dot (``.logit:1``)
OUTPUT_KINDS = (OUTPUT, "logit", "prob", "margin")


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    """The model's parameters, then its buffers, then (a frozen TorchScript module's weights)
    its graph's tensor constants, found only when asked for."""
    yield from model.parameters()
    yield from model.buffers()
    yield from _constants(model).values()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer, or of a frozen TorchScript
    module's first tensor constant (CPU for a model without any)."""
    for t in _tensors(model):
        return t.device
    return torch.device("cpu")


def _constants(model: nn.Module) -> dict[str, torch.Tensor]:
    """A frozen TorchScript module's weights: the tensor constants of its graph (a module with
    a state dict: none)."""
    if not isinstance(model, torch.jit.ScriptModule) or not hasattr(model, "graph"):
        return {}
    if next(iter(model.state_dict()), None) is not None:
        return {}
    consts = (n.output().toIValue() for n in model.graph.findAllNodes("prim::Constant"))
    return {f"const{i}": c for i, c in enumerate(c for c in consts if torch.is_tensor(c))}


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter, buffer or frozen TorchScript
    constant (float32 for a model without any): a frozen float64 module has only constants."""
    for t in _tensors(model):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def inputs_for(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on ``module``'s device and in its floating dtype, for a helper module (generator,
    encoder) kept apart from the model; a module without parameters or buffers takes ``x``
    as it is."""
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    if first is None:
        return x
    dtype = next((t.dtype for t in _tensors(module) if t.is_floating_point()), x.dtype)
    return x.to(first.device, dtype if x.is_floating_point() else x.dtype)


def work_dtype(model: nn.Module) -> torch.dtype:
    """The dtype to build inputs in for ``model``: its own, float32 for a half-precision model
    (FFTs, image resampling and numpy lack float16 or bfloat16; the model gets a cast)."""
    dtype = model_dtype(model)
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """``t`` as a host numpy array; bfloat16, which numpy lacks, as float32 (exactly)."""
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's state dict (names, dtypes, shapes, values): tells two sets of
    weights of the same architecture apart, e.g. before resuming a saved run or job. A frozen
    TorchScript module has no state dict: the tensor constants of its graph are its weights."""
    h = hashlib.sha256()
    state = dict(model.state_dict()) or _constants(model)
    for name, t in state.items():
        h.update(name.encode())
        a = t.detach().cpu()
        h.update(str(a.dtype).encode() + str(tuple(a.shape)).encode())
        h.update(a.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()


def input_shape_of(model: nn.Module) -> tuple[int, ...] | None:
    """The input shape (without batch) a loader recorded on the model, if any."""
    shape = getattr(model, "input_shape", None)
    return tuple(shape) if shape is not None else None


def _first(out: object) -> tuple[torch.Tensor, str]:
    """The tensor a model or layer returned (the first one of a tuple/list/dict, recursively)
    and where it sits in ``out`` as an index path: '' for a tensor, ``[0]``, ``['cls']``."""
    if isinstance(out, torch.Tensor):
        return out, ""
    if isinstance(out, list | tuple) and out:
        t, path = _first(out[0])
        return t, f"[0]{path}"
    if isinstance(out, dict) and out:
        key = next(iter(out))
        t, path = _first(out[key])
        return t, f"[{key!r}]{path}"
    raise InversetError(
        f"the model returned {type(out).__name__}, not a tensor; wrap it to return one"
    )


def first_tensor(out: object) -> torch.Tensor:
    """The tensor a model returned (first one of a tuple/list/dict)."""
    return _first(out)[0]


def returned(out: object) -> str | None:
    """The part of what a model or layer returned that inverset reads (:func:`first_tensor`)
    when it is no tensor, e.g. "[0] of the tuple of 2", "['cls'] of the dict with keys 'cls',
    'reg'"; None for a tensor."""
    if isinstance(out, torch.Tensor):
        return None
    path = _first(out)[1]
    if isinstance(out, dict):
        keys = ", ".join(map(repr, itertools.islice(out, 8))) + (", ..." if len(out) > 8 else "")
        return f"{path} of the dict with keys {keys}"
    n = len(out) if isinstance(out, list | tuple) else 0
    return f"{path} of the {type(out).__name__} of {n}"


#: layers whose units are the last axis of their output, the same at every position of the
#: axes before it: a Linear applied to a sequence (B, L, F) has F units. Other layers' units
#: are axis 1 (the channels of a (B, C, ...) map).
UNITS_LAST = (
    nn.Linear,
    nn.Bilinear,
    nn.Embedding,
    nn.MultiheadAttention,
    nn.RNNBase,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
)
#: normalizations over the last axis alone keep their input's units there
_LAST_AXIS_NORMS = (nn.LayerNorm, getattr(nn, "RMSNorm", nn.LayerNorm))


def units_last(module: nn.Module) -> bool:
    """Whether ``module``'s units are the last axis of its output (:data:`UNITS_LAST`, or a
    LayerNorm/RMSNorm over the last axis) rather than axis 1, whatever its input. A module
    whose type does not fix its layout keeps its input's (:func:`passes_units`)."""
    if isinstance(module, _LAST_AXIS_NORMS):
        return len(module.normalized_shape) == 1
    return isinstance(module, UNITS_LAST)


def time_first(module: nn.Module) -> bool:
    """Whether ``module`` returns sequences time-first, ``(L, B, ...)``: PyTorch's recurrent,
    attention and transformer layers without ``batch_first=True`` (their default)."""
    if isinstance(module, nn.RNNBase | nn.MultiheadAttention | nn.Transformer):
        return not module.batch_first
    if isinstance(module, nn.TransformerEncoderLayer | nn.TransformerDecoderLayer):
        return not module.self_attn.batch_first
    if isinstance(module, nn.TransformerEncoder | nn.TransformerDecoder):
        return len(module.layers) > 0 and time_first(module.layers[0])
    return False


def layer_output(module: nn.Module, out: object) -> torch.Tensor:
    """What a target reads of what ``module`` returned: its first tensor (:func:`first_tensor`),
    batch first: a time-first sequence ``(L, B, ...)`` (:func:`time_first`) as ``(B, L, ...)``."""
    t = first_tensor(out)
    return t.transpose(0, 1) if t.dim() >= 3 and time_first(module) else t


#: layers whose units are axis 1 whatever their input (the channels of a map)
_UNITS_FIRST = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
)


def passes_units(module: nn.Module) -> bool:
    """A module whose type does not fix where its units are, as :func:`units_last` layers
    and conv, normalization-of-channels and pooling layers do: an activation, dropout, a
    residual block, a hand-written RMSNorm or LayerScale. Its units are where its input's
    were (:class:`LastAxis`)."""
    return not (units_last(module) or isinstance(module, _UNITS_FIRST))


#: model -> input shape (without batch) -> module -> units last (:class:`LastAxis`)
_LAST_SEEN: weakref.WeakKeyDictionary[nn.Module, dict[tuple, dict[nn.Module, bool]]] = (
    weakref.WeakKeyDictionary()
)


class LastAxis:
    """Which layers whose type does not fix their layout (:func:`passes_units`: an
    activation, dropout, a residual block, a hand-written norm) have their units on the last
    axis, as :func:`units_last` layers do. Such a layer keeps the layout of the tensor it works
    on: that of the module that returned its input (a GELU after a Linear on a sequence:
    last; a ReLU after a Conv1d: axis 1) or, when a function made that input (``F.gelu``, a
    residual ``+``), the layout a Linear, LayerNorm or attention layer reading its input or
    output implies (they act on the last axis). A module returning a tensor another module
    returned (a Sequential, an in-place ReLU) has that module's layout.

    One forward pass with every layer hooked decides them for an input shape (:meth:`start`
    and :meth:`done` bracket each pass; before :meth:`done`, an answer sees what ran so far);
    the answer is kept per model and input shape while the model lives, so later passes on
    that shape hook nothing, unless a layer in ``watch`` is new to it (a swapped module)."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[nn.Module] | None = None,
        watch: Sequence[nn.Module] = (),
        live: bool = True,
    ) -> None:
        """``layers``: the model's :func:`hookable_layers` when the caller has them; ``live``:
        the ``watch`` layers are asked about during a pass (else only after it)."""
        self.model = model
        self.found: dict[nn.Module, bool] = {}
        self._layers = list(hookable_layers(model).values()) if layers is None else layers
        self._watch = tuple(watch)
        # the layers asked about while a pass runs (a reader's hook): answered as they run
        self._live = {m for m in self._watch if passes_units(m)} if live else set()
        self._pass: list = []  # the layers' hooks while a pass is being seen
        self._key: tuple | None = None
        # while a pass is seen: what each module returned (module, its input, its output) in
        # the order they ran, and the tensors a last-axis layer took in; the records keep the
        # tensors alive, so their ids name them for the whole pass
        self._runs: list[tuple[nn.Module, torch.Tensor | None, torch.Tensor]] = []
        self._taken: list[torch.Tensor] = []

    def start(self, inp: tuple) -> None:
        """Call as a pass of the model on ``inp`` (its positional arguments) begins."""
        x = inp[0] if inp else None
        self._key = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None
        known = _LAST_SEEN.get(self.model, {}).get(self._key)
        if known is not None and all(m in known for m in self._watch):
            self.remove()  # a pass an early stop left unfinished: its hooks go
            self.found = known
            return
        self.found, self._runs, self._taken = {}, [], []
        if not self._pass:  # first of a layer's hooks: a reader of the layer asks after it
            for m in self._layers:
                hook = m.register_forward_hook(self._note, prepend=True, with_kwargs=True)
                self._pass.append(hook)
                if units_last(m) and not isinstance(m, nn.Embedding):
                    pre = m.register_forward_pre_hook(self._takes, prepend=True, with_kwargs=True)
                    self._pass.append(pre)

    def _takes(self, _module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = _input_of(args, kwargs)
        if x is not None and x.dim() >= 3:
            self._taken.append(x)

    def _note(self, module: nn.Module, args: tuple, kwargs: dict, out: object) -> None:
        try:
            t = first_tensor(out)
        except InversetError:
            return
        self._runs.append((module, _input_of(args, kwargs), t))
        if module in self._live:  # deciding every layer at every call would be quadratic
            self.found[module] = self._decide()[id(t)]

    def _decide(self) -> dict[int, bool]:
        """Each recorded output's layout, by tensor id, from the records so far."""
        taken = {id(x) for x in self._taken}
        last: dict[int, bool] = {}  # a module output's id -> units last
        for module, src, t in self._runs:
            if not passes_units(module):
                verdict = units_last(module)
            elif id(t) in last:  # returned what a module inside returned (or its input)
                verdict = last[id(t)]
            elif src is not None and id(src) in last and src.shape == t.shape:
                verdict = last[id(src)]
            else:  # made by a function: what reads it says
                same = src is not None and src.shape == t.shape and id(src) in taken
                verdict = id(t) in taken or same
            last[id(t)] = verdict
        return last

    def done(self) -> None:
        """Call as a pass of the model ends: every layer decided with what the whole pass
        showed (a tensor a later Linear took in), and the answer kept."""
        if not self._pass:
            return
        for h in self._pass:
            h.remove()
        self._pass = []
        last = self._decide()
        self.found = {module: last[id(t)] for module, _, t in self._runs}
        self._runs, self._taken = [], []
        _LAST_SEEN.setdefault(self.model, {})[self._key] = self.found

    def __call__(self, module: nn.Module) -> bool:
        """Whether ``module``'s output had its units last in the latest pass
        (:func:`units_last` for one the pass did not run)."""
        return self.found.get(module, units_last(module))

    def remove(self) -> None:
        for h in self._pass:
            h.remove()
        self._pass, self._runs, self._taken = [], [], []


def _input_of(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The tensor a module was called on: its first positional argument, else its first
    keyword argument (``act(input=h)``)."""
    first = args[0] if args else next(iter(kwargs.values()), None)
    return first if isinstance(first, torch.Tensor) else None


#: how a target names a submodule called ``out`` directly under the model: ``out`` itself is
#: always the model output (``out:k``), which that module need not compute
OUTPUT_MODULE = f".{OUTPUT}"


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every addressable submodule by its dotted name (the root itself is left out); one
    called ``out`` (or another of :data:`OUTPUT_KINDS`) directly under the model is
    :data:`OUTPUT_MODULE` (``.logit``...)."""
    return {layer_name(name): m for name, m in model.named_modules() if name}


def module_path(layer: str) -> str:
    """The module path (as ``named_modules`` and torch.fx name it) of the layer a target
    names: the inverse of :func:`named_layers`' renaming."""
    return layer[1:] if layer[1:] in OUTPUT_KINDS and layer[:1] == "." else layer


def layer_name(path: str) -> str:
    """The name a target gives the module at ``path`` (:func:`named_layers`' renaming)."""
    return f".{path}" if path in OUTPUT_KINDS else path


def layer_text(name: str) -> str:
    """Layer ``name`` as a target writes it: in quotes when it holds other characters than
    letters, digits, ``_`` and ``.`` (``"blocks.dense-1":0``), which a target cannot read
    bare (``-`` subtracts)."""
    if re.fullmatch(r"[\w.]+", name):
        return name
    return f"'{name}'" if '"' in name else f'"{name}"'


def check_layer_names(model: nn.Module, names: Sequence[str]) -> None:
    """Raise a one-line error listing valid names if any of ``names`` is not a layer."""
    valid = named_layers(model)
    for n in names:
        if n != OUTPUT and n not in valid and not valid and _constants(model):
            raise InversetError(
                f"layer {n!r}: the model is a frozen TorchScript module, which keeps no layers; "
                "target its outputs (out:k), or load the model as an nn.Module or ONNX file"
            )
        if n != OUTPUT and n not in valid:
            readable = hookable_layers(model)
            if valid and not readable:
                raise InversetError(
                    f"unknown layer {n!r}, and a TorchScript model's layers cannot be read (no "
                    "forward hooks); target its outputs (out:k), or load the model as an "
                    "nn.Module or ONNX file"
                )
            shown = ", ".join(list(readable)[:40]) + (" ..." if len(readable) > 40 else "")
            raise InversetError(
                f"unknown layer {n!r}; valid layers: {shown or '(none)'} (or 'out' for the output)"
            )


def one_row_each(a: torch.Tensor, batch: int) -> bool:
    """Whether ``a`` has one row per input of a batch of ``batch`` (its first axis); a
    time-first sequence the model did not hand back batch first, or the batch merged with
    another axis, has not: its values are no input's own."""
    return not a.dim() or len(a) == batch


def check_rows(name: str, a: torch.Tensor, batch: int, what: str = "inputs") -> None:
    """Refuse, in one line, layer ``name``'s activation ``a`` without one row per input
    (:func:`one_row_each`)."""
    if not one_row_each(a, batch):
        raise InversetError(
            f"layer {name!r} gives {len(a)} rows (shape {tuple(a.shape)}) for a batch of "
            f"{batch} {what}, not one row per input (a time-first sequence, or the batch merged "
            "with another axis); pick a layer that keeps the batch first (see `inverset "
            "layers`), or build the model with batch_first=True"
        )


def check_output_rows(out: torch.Tensor, batch: int | None, what: str = "model") -> None:
    """Refuse, in one line, a model output without one row per input: the batch axis merged
    away by ``.flatten()`` or ``.sum(0)``, or dropped by indexing (its outputs cannot be told
    apart). ``what`` names the network in the message ('generator', whose inputs are codes)."""
    if batch is None or (out.dim() and len(out) == batch):
        return
    inputs = "code" if what == "generator" else "input"
    raise InversetError(
        f"the {what}'s output has shape {tuple(out.shape)} for a batch of {batch} {inputs}"
        f"{'s' if batch > 1 else ''}, not one row per {inputs} (a .flatten(), .sum(0) or "
        "indexing at the end of forward merges or drops the batch axis); return one row per "
        f"{inputs}, e.g. y.flatten(1) or y.squeeze(-1)"
    )


def not_hookable(name: str) -> InversetError:
    """The error for a layer inside a TorchScript model, which takes no forward hooks."""
    return InversetError(
        f"layer {name!r} is inside a TorchScript model, which cannot be hooked; target its "
        "outputs (out:k), or load the model as an nn.Module or ONNX file"
    )


def never_run(name: str) -> InversetError:
    """The error for a layer whose hook did not fire in a forward pass."""
    return InversetError(
        f"layer {name!r} is never run by the model's forward (on this input); pick another "
        "layer (see `inverset layers`)"
    )


def run_twice(name: str, calls: int) -> InversetError:
    """The error for a layer (one module) run more than once in one forward pass."""
    return InversetError(
        f"layer {name!r} runs {calls} times in one forward pass (one module used at several "
        "places, e.g. a shared activation); its units are ambiguous: give each use its own "
        "module, or pick another layer (see `inverset layers`)"
    )


def output_activation(model: nn.Module) -> str | None:
    """'Softmax' or 'Sigmoid' when the model's last layer is one, so that its outputs are
    probabilities already (``prob:k`` then reads output k): the last module of an
    ``nn.Sequential``, the last node of an ONNX graph, the operation or module a TorchScript
    graph returns. None otherwise (or not known)."""
    last: nn.Module | None = model
    while True:
        # a Sequential subclass with a forward of its own may change what its last layer gave
        if isinstance(last, nn.Sequential) and len(last) and _own(last, nn.Sequential):
            last = last[-1]
        elif hasattr(type(last), "output_layer"):  # a converted ONNX graph
            last = last.output_layer
        else:
            break
    if isinstance(last, torch.jit.ScriptModule) and hasattr(last, "graph"):
        node = last.graph.return_node().inputsAt(0).node()
        if node.kind() == "prim::CallMethod":  # a submodule's forward: its class
            name = str(node.inputsAt(0).type()).rsplit(".", 1)[-1]
        else:  # an operation: aten::softmax, aten::sigmoid
            name = node.kind().removeprefix("aten::").capitalize()
        return name if name in ("Softmax", "Sigmoid") else None
    if isinstance(last, nn.Softmax) and _own(last, nn.Softmax):
        return "Softmax"
    if isinstance(last, nn.Sigmoid) and _own(last, nn.Sigmoid):
        return "Sigmoid"
    return None


def _own(module: nn.Module, kind: type[nn.Module]) -> bool:
    """Whether ``module`` computes what ``kind`` does: it runs ``kind``'s own forward, or its
    class says its forward computes the same (``computes_as = kind``: the ONNX converter's
    Softmax, which handles ONNX's axes)."""
    same = getattr(type(module), "computes_as", None) is kind
    return same or type(module).forward is kind.forward


def value_range(module: nn.Module | None) -> tuple[float, float] | None:
    """The values an activation module outputs whatever its input ((low, high), an end
    ``inf`` when open), or None when any value may come out (or its type does not say: a
    subclass with a forward of its own may output anything)."""
    kinds: list[tuple[type[nn.Module], tuple[float, float]]] = [
        (nn.ReLU, (0.0, math.inf)),
        (nn.Softplus, (0.0, math.inf)),
        (nn.Sigmoid, (0.0, 1.0)),
        (nn.Softmax, (0.0, 1.0)),
        (nn.Hardsigmoid, (0.0, 1.0)),
        (nn.Tanh, (-1.0, 1.0)),
    ]
    if isinstance(module, nn.Hardtanh):  # ReLU6 too
        kinds.append((nn.Hardtanh, (float(module.min_val), float(module.max_val))))
    if isinstance(module, nn.ELU):
        kinds.append((nn.ELU, (-float(module.alpha), math.inf)))
    for kind, rng in kinds:
        if isinstance(module, kind) and _own(module, kind):
            return rng
    return None


class Activations(dict[str, torch.Tensor]):
    """Layer outputs of forward passes by name; ``calls[name]``: how often the layer ran in the
    last pass (more than once: a reused module, whose units are ambiguous as a target);
    ``probs``: the model's last layer when its outputs are probabilities
    (:func:`output_activation`); ``last``: the layers whose units are the last axis of their
    output (:func:`units_last`, :class:`LastAxis`), not axis 1; ``returned[name]``: what the
    model ('out') or a layer returned when no tensor (:func:`returned`); ``batch``: how many
    inputs the pass took (None: not known). A copy of an Activations keeps them."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)
        src = args[0] if args and isinstance(args[0], Activations) else None
        self.calls: dict[str, int] = dict(src.calls) if src is not None else {}
        self.batch: int | None = src.batch if src is not None else None
        self.probs: str | None = src.probs if src is not None else None
        self.last: set[str] = set(src.last) if src is not None else set()
        self.returned: dict[str, str] = dict(src.returned) if src is not None else {}

    def record(self, name: str, module: nn.Module, out: object, last: bool | None = None) -> None:
        """Keep what ``module`` (the model itself for 'out') returned as activation ``name``:
        its first tensor, one more call, where its units are (``last``, by default
        :func:`units_last`) and what it returned."""
        self.calls[name] = self.calls.get(name, 0) + 1
        if name == OUTPUT:
            self[name] = first_tensor(out)
        else:  # a copy: a later in-place operation (nn.ReLU(inplace=True)) would change it
            a = layer_output(module, out)
            self[name] = a.clone() if isinstance(a, torch.Tensor) else a
        if units_last(module) if last is None else last:
            self.last.add(name)
        note = returned(out)
        if note is not None:
            self.returned[name] = note


def reads_last(acts: Mapping[str, torch.Tensor], name: str) -> bool:
    """Whether layer ``name``'s units are the last axis of its activation in ``acts`` (recorded
    in :attr:`Activations.last`: :func:`units_last`, :class:`LastAxis`), not axis 1; a 2-D
    one has one axis."""
    return acts[name].dim() > 2 and name in getattr(acts, "last", ())


def units_first(acts: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    """Activation ``name`` with its units on axis 1 (:func:`reads_last` ones moved there): what
    ``LAYER:c`` and feature visualization index."""
    a = acts[name]
    return a.movedim(-1, 1) if reads_last(acts, name) else a


@contextlib.contextmanager
def probe(model: nn.Module, names: Sequence[str], once: bool = True) -> Iterator[Activations]:
    """Context manager: inside it, each forward pass fills the yielded dict with the outputs
    of the named layers (``'out'`` is filled by :func:`forward`). Hooks go when it ends.

    At the end of each pass of the whole model, a named layer that did not run is a one-line
    error, not a missing key later; so is one that ran more than once (a reused module, e.g. a
    shared activation) when ``once``, else its last output is kept and ``calls`` counts them."""
    layers = hookable_layers(model)
    acts = Activations()
    handles = []
    named = [n for n in dict.fromkeys(names) if n != OUTPUT]
    for n in named:
        if n not in layers:
            check_layer_names(model, [n])
            raise not_hookable(n)
    # a layer whose type does not fix its layout is decided by the pass (LastAxis)
    passes_on = any(passes_units(layers[n]) for n in named)
    watch = [layers[n] for n in named]
    passed = LastAxis(model, list(layers.values()), watch) if passes_on else None
    try:
        for n in named:

            def hook(_m, _inp, out, _n=n):
                acts.record(_n, _m, out, passed(_m) if passed is not None else None)

            handles.append(layers[n].register_forward_hook(hook))
        if handles:

            def start(_m, inp):
                acts.calls.clear()
                if passed is not None:
                    passed.start(inp)

            def check(_m, _inp, _out):
                if passed is not None:  # what the whole pass showed decides
                    passed.done()
                    for n in named:
                        if n in acts and passes_units(layers[n]):
                            (acts.last.add if passed(layers[n]) else acts.last.discard)(n)
                for n in dict.fromkeys(names):
                    k = acts.calls.get(n, 0)
                    if n != OUTPUT and (k == 0 or (once and k > 1)):
                        raise never_run(n) if k == 0 else run_twice(n, k)

            handles.append(model.register_forward_pre_hook(start))
            handles.append(model.register_forward_hook(check))
        yield acts
    finally:
        for h in handles:
            h.remove()
        if passed is not None:
            passed.remove()


def forward(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> Activations:
    """One forward pass of ``x`` returning ``{name: activation}`` for ``names`` (and 'out').

    A layer that ran more than once keeps its last output, counted in ``calls``: its readers
    (targets, :meth:`inverset.target.Ref.check`; a sampler's encoder) refuse it."""
    with probe(model, names, once=False) as acts:
        acts.record(OUTPUT, model, model(x))
        result = Activations(acts)
        result.calls = dict(acts.calls)
        result.probs = output_activation(model)
        result.batch = len(x)
        out = result.get(OUTPUT)
        if isinstance(out, torch.Tensor):
            result[OUTPUT] = output_rows(out, len(x))
        return result


def output_rows(out: torch.Tensor, n: int) -> torch.Tensor:
    """The model output for a batch of ``n`` with one row per input, when ``y.squeeze()`` at
    the end of forward dropped its axes of size 1: a scalar or ``(K,)`` for one input, ``(N,)``
    for N inputs of one output each (read as ``(N, 1)``). An output that merges the batch
    otherwise is left as it is, for the targets' check to refuse."""
    if n == 1 and (out.dim() == 0 or out.shape[0] != 1):
        out = out.unsqueeze(0)
    return out[:, None] if out.dim() == 1 and len(out) == n else out


def last_axis_layers(
    model: nn.Module, input_shape: Sequence[int], names: Sequence[str]
) -> frozenset[str]:
    """The layers among ``names`` whose units are the last axis of their output on inputs of
    ``input_shape`` (:func:`units_last`; one whose type does not fix it, :class:`LastAxis`,
    is seen in one pass of a zero input), as :func:`forward` records them for targets."""
    layers = hookable_layers(model)
    named = [n for n in names if n in layers]
    if not any(passes_units(layers[n]) for n in named):
        return frozenset(n for n in named if units_last(layers[n]))
    x = torch.zeros((1, *input_shape), device=model_device(model), dtype=model_dtype(model))
    with torch.no_grad(), restore_mode(model, train=False):
        return frozenset(forward(model, x, named).last)


def output_axes(model: nn.Module, input_shape: Sequence[int]) -> Callable[[str], int | None]:
    """A layer's number of output axes after the batch, seen in one pass of a zero input of
    ``input_shape`` when first asked (None: no such layer, or no tensor seen): what tells a
    multi-index from arguments of ``min``/``max`` in a target
    (:func:`inverset.target.parse_target`)."""
    seen: dict[str, int | None] = {}

    def axes(name: str) -> int | None:
        if name not in seen:
            seen[name] = None
            if name in hookable_layers(model):
                a = on_zero_input(model, input_shape, name)
                seen[name] = a.dim() - 1 if a is not None else None
        return seen[name]

    return axes


def on_zero_input(model: nn.Module, input_shape: Sequence[int], name: str) -> torch.Tensor | None:
    """Layer ``name``'s output (``OUTPUT``: the model's) on one zero input of ``input_shape``,
    in eval mode without gradients; None when the pass fails or gives no tensor there (the
    checks that follow say why)."""
    x = torch.zeros((1, *input_shape), device=model_device(model), dtype=model_dtype(model))
    try:
        with torch.no_grad(), restore_mode(model, train=False):
            a = forward(model, x, [name]).get(name)
    except Exception:
        return None
    return a if isinstance(a, torch.Tensor) else None


def input_names(model: nn.Module) -> list[str] | None:
    """The inputs the model's forward requires (those without a default), by name; None when
    its signature is unknown."""
    fwd = getattr(model, "forward", None)
    schema = getattr(fwd, "schema", None)
    if schema is not None:  # a TorchScript method: its first argument is self
        return [a.name for a in schema.arguments[1:] if not a.has_default_value()]
    try:
        params = inspect.signature(fwd).parameters.values()
    except (TypeError, ValueError):
        return None
    P = inspect.Parameter
    kinds = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.default is P.empty]


def check_one_input(model: nn.Module) -> None:
    """Refuse, in one line, a model whose forward requires more than one input: inverset
    calls ``model(x)`` with one tensor."""
    names = input_names(model)
    if names is not None and len(names) > 1:
        raise InversetError(
            f"the model's forward takes {len(names)} inputs ({', '.join(names)}) but inverset "
            "feeds it one tensor; wrap it in a module whose forward(x) splits x into them, e.g. "
            "return model(x[:, :k], x[:, k:])"
        )


#: what a library says when it was given floats where it indexes with integers (nn.Embedding,
#: tensor indexing, gather, index_select, one_hot, take, scatter)
_INTEGER_WANTED = re.compile(r"Long, Int|LongTensor|for index|indices must be long")


def shape_error(x: torch.Tensor, exc: Exception) -> InversetError:
    """The one-line error for a model that fails on inputs shaped like ``x``; one that wanted
    integer inputs (it indexes with them) is told so, as the shape is not the problem."""
    wanted = next((ln for ln in str(exc).splitlines() if _INTEGER_WANTED.search(ln)), None)
    if wanted is not None and x.is_floating_point():
        return InversetError(
            f"the model indexes with its input ({wanted.strip()}): it takes integer ids (e.g. "
            "an nn.Embedding), but inverset searches continuous inputs (float tensors); search "
            "the embedding's output instead: wrap the model so its forward takes the embedding "
            "vectors"
        )
    return InversetError(
        f"the model fails on inputs of shape {tuple(x.shape[1:])} ({first_line(exc)}); pass "
        "the shape it takes (input_shape= / --input-shape)"
    )


def forward_checked(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> Activations:
    """:func:`forward` for a first pass on a shape the user gave: a model that fails on it is
    a one-line error naming the shape, not a traceback from deep inside the model; so is one
    whose forward takes more than one input, or fails to be called with one tensor."""
    check_one_input(model)
    try:
        return forward(model, x, names)
    except InversetError:
        raise
    except (RuntimeError, ValueError, IndexError) as exc:
        raise shape_error(x, exc) from exc
    except TypeError as exc:
        raise InversetError(
            f"the model fails when called on one tensor of shape {tuple(x.shape[1:])} "
            f"(TypeError: {first_line(exc)}); inverset calls model(x) with a single float "
            "tensor: wrap the model so its forward takes that"
        ) from exc


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` agree up to float noise (relative to their largest finite
    magnitude); NaN equals NaN, infinities must match; other dtypes must be equal."""
    if a.shape != b.shape or not a.is_floating_point():
        return a.shape == b.shape and torch.equal(a, b)
    rtol = max(1e-5, 10 * torch.finfo(a.dtype).eps)
    a, b = a.detach().double(), b.detach().double()
    finite = torch.cat([a[a.isfinite()], b[b.isfinite()]]).abs()
    scale = float(finite.max()) if finite.numel() else 0.0
    return torch.allclose(a, b, rtol=0.0, atol=rtol * scale, equal_nan=True)


class NotRepeatableError(InversetError):
    """A model whose outputs change from pass to pass (:func:`check_repeatable`)."""


#: :func:`check_repeatable` runs its batch up to REPEAT_PASSES times, within REPEAT_VALUES
#: input values in all (one 224x224 RGB image's batch runs once)
REPEAT_PASSES, REPEAT_VALUES = 11, 1 << 17


def check_repeatable(
    run: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
    x: torch.Tensor,
    acts: Mapping[str, torch.Tensor],
    names: Sequence[str],
    what: str = "model",
) -> None:
    """Refuse, in one line, a model (in the mode inverset runs it) whose outputs for the
    same input change from run to run or with the rest of its batch: dropout or batch
    statistics still active. ``run(x)`` is a forward pass giving the activations ``names``
    (``acts``: those of the batch ``x``); one more pass of ``x`` with its last row repeated
    must give the same rows again (a batch of other statistics: the same batch twice would
    hide batch statistics), and so must further passes of that batch, up to
    :data:`REPEAT_PASSES` in all: dropout of rate 0.1 on a one-unit output left the five draws
    of one pass alike 59% of the time, 35 draws 3%. The further passes are of the same batch
    size, whose sums a deterministic model rounds alike (a batch of 34 rows summed a tent
    net's cancelling terms otherwise, and its zero outputs differed by 1e-8). A model that
    fails on the longer batch (it takes a batch of one or two only) is not checked. ``what``
    names it in the message ('generator'). The longer batch also shows an activation whose
    rows only matched the batch by chance (``y.sum(0)`` of two outputs for two inputs): it is
    refused as one without a row per input."""
    rows = [*range(x.shape[0]), x.shape[0] - 1]
    passes = max(1, min(REPEAT_PASSES, REPEAT_VALUES // max(x[rows].numel(), 1)))
    try:
        again = run(x[rows])
    except (RuntimeError, ValueError, IndexError):
        return
    checked = [n for n in dict.fromkeys(names) if _has_rows(acts.get(n), again.get(n), len(x))]
    for n in checked:
        if n == OUTPUT:
            check_output_rows(again[n], len(rows), what)
        else:
            check_rows(n, again[n], len(rows))
    for k in range(passes):
        try:
            more = again if k == 0 else run(x[rows])
        except (RuntimeError, ValueError, IndexError):  # out of memory: the search will say
            return
        for n in checked:
            if not _close(acts[n][rows] if k == 0 else again[n], more[n]):
                where = "" if n == OUTPUT else f" at layer {n!r}"
                raise NotRepeatableError(
                    f"the {what} gives different outputs for the same input{where} (randomness "
                    "in its forward: dropout left on by F.dropout(x, p) without "
                    "training=self.training or by a torch.jit.trace made in train mode, added "
                    "noise, or batch statistics); make it repeatable: trace or export it after "
                    "model.eval(), pass training=self.training"
                )


def _has_rows(a: torch.Tensor | None, b: torch.Tensor | None, n: int) -> bool:
    """Whether an activation read in both passes has a row per input of the first (``n``)."""
    return a is not None and b is not None and a.dim() > 0 and len(a) == n


@dataclass(repr=False)
class LayerInfo:
    name: str
    kind: str
    shape: tuple[int, ...] | None  # output shape without batch, when an input shape is known
    #: times the layer runs in one forward pass (None: not traced); only 1 makes it a target
    calls: int | None = field(default=None, repr=False)
    #: its units are the last axis of its output (:func:`units_last`, :class:`LastAxis`)
    last: bool = field(default=False, repr=False)
    #: rows it gives for one input when not one (a time-first sequence, batch merged)
    rows: int | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        """Name, kind and shape, and why it is no target when it is not (runs twice, never
        runs, no row per input): a shape of None alone read as 'unknown'."""
        why = f", note={self.note!r}" if self.note else ""
        return f"LayerInfo(name={self.name!r}, kind={self.kind!r}, shape={self.shape}{why})"

    @property
    def units(self) -> int | None:
        """How many units ``LAYER:c`` can name (channels of a map)."""
        if self.shape is None:
            return None
        if not self.shape:
            return 1
        return self.shape[-1] if self.last else self.shape[0]

    @property
    def note(self) -> str:
        """Why the layer cannot be a target ('' when it can, or when that is unknown)."""
        if self.calls == 0:
            return "never run by forward"
        if self.calls is not None and self.calls > 1:
            return f"runs {self.calls}x per forward: no target"
        if self.rows is not None:
            return f"{self.rows} rows per input (not batch first): no target"
        return ""

    @property
    def example(self) -> str:
        """What a listing shows for the layer: why it is no target, or ``NAME:0`` and what
        that reads ('' when its shape is unknown)."""
        if self.note or self.shape is None:
            return self.note
        target = f"{layer_text(self.name)}:0"
        if self.name != module_path(self.name):
            kind = module_path(self.name)
            target += f" (the module named {kind}; {kind}:k reads the model output)"
        if len(self.shape) <= 1:
            return target
        if self.name == OUTPUT:
            return f"{target} (flattened)"
        return f"{target} ({'unit mean over positions' if self.last else 'channel mean'})"


def hookable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers forward hooks can read: all but TorchScript ones, which cannot be hooked."""
    return {
        n: m for n, m in named_layers(model).items() if not isinstance(m, torch.jit.ScriptModule)
    }


class _Traced(NamedTuple):
    """What one forward pass tells of each layer (:func:`_trace`)."""

    shapes: dict[str, tuple[int, ...]]
    calls: dict[str, int]
    returned: dict[str, str]
    #: the module :data:`OUTPUT_MODULE` returns the model output itself (the last layer)
    module_is_output: bool
    #: the layers whose units were the last axis of their output (:class:`LastAxis`)
    last: frozenset[str]
    #: rows per input of the layers that do not give one (not batch first)
    rows: dict[str, int]


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``b`` is ``a`` or a view of it with the same elements in the same order."""
    return a is b or (
        a.data_ptr() == b.data_ptr()
        and a.numel() == b.numel()
        and a.is_contiguous()
        and b.is_contiguous()
    )


def _trace(model: nn.Module, x: torch.Tensor, layers: dict[str, nn.Module]) -> _Traced:
    """One forward pass of ``x``: each layer's output shape (last call), how often it ran and
    what it returned when no tensor, with the output's under 'out'. Layers returning no
    tensor get no shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    calls = dict.fromkeys(layers, 0)
    notes: dict[str, str] = {}
    last_out: list[torch.Tensor] = []  # what OUTPUT_MODULE returned
    rows: dict[str, int] = {}

    def hook(_m, _inp, out, _n):
        calls[_n] += 1
        with contextlib.suppress(InversetError):
            t = first_tensor(out)
            read = layer_output(_m, out)
            shapes[_n] = tuple(read.shape[1:])
            if not one_row_each(read, len(x)):
                rows[_n] = len(read)
            if _n == OUTPUT_MODULE:
                last_out[:] = [t]
            note = returned(out)
            if note is not None:
                notes[_n] = note

    handles = []
    is_output = False
    passed = LastAxis(model, list(layers.values()), list(layers.values()), live=False)
    try:
        for n, m in layers.items():
            handles.append(m.register_forward_hook(lambda m_, i, o, _n=n: hook(m_, i, o, _n)))
        with contextlib.suppress(InversetError):
            passed.start((x,))
            out = model(x)
            passed.done()
            t = first_tensor(out)
            shapes[OUTPUT] = tuple(output_rows(t, len(x)).shape[1:])
            is_output = bool(last_out) and _same_values(last_out[0], t)
            note = returned(out)
            if note is not None:
                notes[OUTPUT] = note
    finally:
        for h in handles:
            h.remove()
        passed.remove()
    last = frozenset(n for n, m in layers.items() if passed(m))
    return _Traced(shapes, calls, notes, is_output, last, rows)


def layers(model: object, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
    """Every layer a target can name, with its output shape and how often it runs (one
    forward pass of a zero input). TorchScript layers cannot be hooked, so are left out.

    A module called ``out`` directly under the model that returns the model output (its last
    layer, e.g. a scikit-learn model's) is listed as the output ``out``; any other is listed
    as :data:`OUTPUT_MODULE`, beside the output.

    ``model``: a torch module or a fitted scikit-learn MLP (or Pipeline ending in one);
    ``input_shape`` excludes the batch axis; it defaults to what the loader recorded.
    """
    from inverset.loaders import as_module  # loaders import this module

    model = as_module(model)
    check_one_input(model)
    shape = tuple(input_shape) if input_shape is not None else input_shape_of(model)
    found = hookable_layers(model)
    traced = _Traced({}, {}, {}, False, frozenset(), {})
    if shape is not None:
        x = torch.zeros((1, *shape), device=model_device(model), dtype=model_dtype(model))
        with torch.no_grad(), restore_mode(model, train=False):
            try:
                traced = _trace(model, x, found)
            except (RuntimeError, ValueError, IndexError) as exc:
                raise shape_error(x, exc) from exc
    shapes, calls = traced.shapes, traced.calls
    infos = []
    for n, m in found.items():
        k = calls.get(n)
        if n == OUTPUT_MODULE and traced.module_is_output:
            infos.append(LayerInfo(OUTPUT, type(m).__name__, shapes.get(OUTPUT), k))
            continue
        infos.append(
            LayerInfo(
                n,
                type(m).__name__,
                shapes.get(n) if k == 1 and n not in traced.rows else None,
                k,
                n in traced.last if traced.shapes else units_last(m),
                traced.rows.get(n),
            )
        )
    if not traced.module_is_output:
        act = output_activation(model)
        kind = f"output: probabilities ({act}; prob:k reads them)" if act else "output"
        if OUTPUT in traced.returned:
            kind += f": {traced.returned[OUTPUT]} that the model returns"
        infos.append(LayerInfo(OUTPUT, kind, shapes.get(OUTPUT), 1 if shapes else None))
    return infos


@contextlib.contextmanager
def restore_mode(model: nn.Module, train: bool = False, freeze: bool = True) -> Iterator[nn.Module]:
    """Put the model in eval (or train) mode and freeze its parameters for the duration;
    restore every module's mode and every parameter's ``requires_grad`` afterwards.

    A frozen TorchScript module (``torch.jit.freeze``, ``optimize_for_inference``) has no
    ``training`` attribute (its graph is fixed in eval mode): it is left without one."""
    modes = {m: getattr(m, "training", None) for m in model.modules()}
    grads = {p: p.requires_grad for p in model.parameters()}
    try:
        model.train(train)
        if freeze:
            for p in model.parameters():
                p.requires_grad_(False)
        yield model
    finally:
        for m, t in modes.items():
            if t is not None:
                m.training = t
            elif hasattr(m, "training"):
                delattr(m, "training")
        for p, g in grads.items():
            p.requires_grad_(g)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (unchanged when None), restored afterwards."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


#: flat starts (the gradient solver's, featvis's images) follow a network whose ReLUs pass
#: this times their negative inputs for their first WARM_STEPS steps (at most a third of
#: ``steps``; fewer when the other starts have converged first): on a small CNN whose target
#: channel is off on 99.6% of the box, 64 starts reached 0.0021 / 0 / 0 at seeds 0-2 without,
#: 0.0184 / 0.0288 / 0.0154 with it, against a certified 0.0304; a slope of 0.01 stayed at
#: 0.0119
LEAKY_SLOPE = 0.1
WARM_STEPS = 100
#: the gradient solver's flat starts take these slopes in turn: where random inputs hold a
#: layer far below zero (MNIST-FC 256x2's first layer at about -100), a slope of 0.1 makes a
#: stand-in network unlike the model (outputs -26 for -0.02)
LEAKY_SLOPES = (LEAKY_SLOPE, 1e-2, 1e-3)


def leaky_slopes(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One slope per start, LEAKY_SLOPES in turn."""
    return torch.tensor(LEAKY_SLOPES, dtype=dtype).repeat(n // len(LEAKY_SLOPES) + 1)[:n]


class LeakyReLUs(TorchFunctionMode):
    """While open, every ReLU the model calls (``nn.ReLU`` modules, ``F.relu``,
    ``torch.relu``, ``Tensor.relu``, in place or not) passes ``slope`` times its negative
    inputs on the batch rows ``rows`` (bool [B]): a stand-in network whose gradient is not zero
    where every unit a target reads is off; ``slope`` is one for all rows or one per row ([B]).
    ``rows=None`` changes nothing and only counts the
    ReLU calls (``calls``): whether a warm-up can reach this model at all (TorchScript
    modules are opaque to it)."""

    FUNCS = frozenset(
        {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
    )
    IN_PLACE = frozenset({F.relu_, torch.relu_, torch.Tensor.relu_})

    def __init__(self, rows: torch.Tensor | None, slope: float | torch.Tensor = LEAKY_SLOPE):
        super().__init__()
        self.rows, self.slope, self.calls = rows, slope, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self.FUNCS:
            return func(*args, **kwargs)
        self.calls += 1
        x = args[0] if args else kwargs["input"]
        if self.rows is None or x.dim() == 0 or x.shape[0] != self.rows.shape[0]:
            return func(*args, **kwargs)
        in_place = func in self.IN_PLACE or bool(kwargs.get("inplace", len(args) > 1 and args[1]))
        r = self.rows.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
        slope = self.slope
        if isinstance(slope, torch.Tensor):
            slope = slope.to(device=x.device, dtype=x.dtype).reshape(r.shape)
        out = torch.where(r & (x < 0), slope * x, torch.relu(x))
        return x.copy_(out) if in_place else out
