"""Read any named activation of a model through forward hooks, and list what can be read.

Hooks are registered for one forward pass at a time and always removed (``finally``),
so a model handed to inverset comes back exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from inverset.errors import InversetError, first_line

OUTPUT = "out"  # the model output; `logit`, `prob` and `margin` refs read it too


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer, or of a frozen TorchScript
    module's first tensor constant (CPU for a model without any)."""
    for t in itertools.chain(model.parameters(), model.buffers(), _constants(model).values()):
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
    for t in model.parameters():
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
    dtype = next((t.dtype for t in module.parameters() if t.is_floating_point()), x.dtype)
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


def first_tensor(out: object) -> torch.Tensor:
    """The tensor a model returned (first one of a tuple/list/dict)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, list | tuple) and out:
        return first_tensor(out[0])
    if isinstance(out, dict) and out:
        return first_tensor(next(iter(out.values())))
    raise InversetError(
        f"the model returned {type(out).__name__}, not a tensor; wrap it to return one"
    )


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every addressable submodule by its dotted name (the root itself is left out)."""
    return {name: m for name, m in model.named_modules() if name}


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
            shown = ", ".join(list(valid)[:40]) + (" ..." if len(valid) > 40 else "")
            raise InversetError(
                f"unknown layer {n!r}; valid layers: {shown or '(none)'} (or 'out' for the output)"
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
        if isinstance(last, nn.Sequential) and len(last):
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
    if isinstance(last, nn.Softmax):
        return "Softmax"
    if isinstance(last, nn.Sigmoid):
        return "Sigmoid"
    return None


class Activations(dict[str, torch.Tensor]):
    """Layer outputs of forward passes by name; ``calls[name]``: how often the layer ran in the
    last pass (more than once: a reused module, whose units are ambiguous as a target);
    ``probs``: the model's last layer when its outputs are probabilities
    (:func:`output_activation`)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)
        self.calls: dict[str, int] = {}
        self.probs: str | None = None


@contextlib.contextmanager
def probe(model: nn.Module, names: Sequence[str], once: bool = True) -> Iterator[Activations]:
    """Context manager: inside it, each forward pass fills the yielded dict with the outputs
    of the named layers (``'out'`` is filled by :func:`forward`). Hooks go when it ends.

    At the end of each pass of the whole model, a named layer that did not run is a one-line
    error, not a missing key later; so is one that ran more than once (a reused module, e.g. a
    shared activation) when ``once``, else its last output is kept and ``calls`` counts them."""
    check_layer_names(model, names)
    layers = hookable_layers(model)
    acts = Activations()
    handles = []
    try:
        for n in dict.fromkeys(names):
            if n == OUTPUT:
                continue
            if n not in layers:
                raise not_hookable(n)

            def hook(_m, _inp, out, _n=n):
                acts.calls[_n] = acts.calls.get(_n, 0) + 1
                acts[_n] = first_tensor(out)

            handles.append(layers[n].register_forward_hook(hook))
        if handles:

            def start(_m, _inp):
                acts.calls.clear()

            def check(_m, _inp, _out):
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


def forward(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> Activations:
    """One forward pass of ``x`` returning ``{name: activation}`` for ``names`` (and 'out').

    A layer that ran more than once keeps its last output, counted in ``calls``: its readers
    (targets, :meth:`inverset.target.Ref.check`; a sampler's encoder) refuse it."""
    with probe(model, names, once=False) as acts:
        acts[OUTPUT] = first_tensor(model(x))
        result = Activations(acts)
        result.calls = dict(acts.calls)
        result.probs = output_activation(model)
        return result


def shape_error(x: torch.Tensor, exc: Exception) -> InversetError:
    """The one-line error for a model that fails on inputs shaped like ``x``."""
    return InversetError(
        f"the model fails on inputs of shape {tuple(x.shape[1:])} ({first_line(exc)}); pass "
        "the shape it takes (input_shape= / --input-shape)"
    )


def forward_checked(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> Activations:
    """:func:`forward` for a first pass on a shape the user gave: a model that fails on it is
    a one-line error naming the shape, not a traceback from deep inside the model."""
    try:
        return forward(model, x, names)
    except InversetError:
        raise
    except (RuntimeError, ValueError, IndexError) as exc:
        raise shape_error(x, exc) from exc


@dataclass
class LayerInfo:
    name: str
    kind: str
    shape: tuple[int, ...] | None  # output shape without batch, when an input shape is known
    #: times the layer runs in one forward pass (None: not traced); only 1 makes it a target
    calls: int | None = field(default=None, repr=False)

    @property
    def units(self) -> int | None:
        if self.shape is None:
            return None
        return self.shape[0] if len(self.shape) >= 1 else 1

    @property
    def note(self) -> str:
        """Why the layer cannot be a target ('' when it can, or when that is unknown)."""
        if self.calls == 0:
            return "never run by forward"
        if self.calls is not None and self.calls > 1:
            return f"runs {self.calls}x per forward: no target"
        return ""


def hookable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers forward hooks can read: all but TorchScript ones, which cannot be hooked."""
    return {
        n: m for n, m in named_layers(model).items() if not isinstance(m, torch.jit.ScriptModule)
    }


def _trace(
    model: nn.Module, x: torch.Tensor, layers: dict[str, nn.Module]
) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """One forward pass of ``x``: each layer's output shape (last call) and how often it ran,
    with the output's shape under 'out'. Layers returning no tensor get no shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    calls = dict.fromkeys(layers, 0)
    handles = []

    def hook(_m, _inp, out, _n):
        calls[_n] += 1
        with contextlib.suppress(InversetError):
            shapes[_n] = tuple(first_tensor(out).shape[1:])

    try:
        for n, m in layers.items():
            handles.append(m.register_forward_hook(lambda m_, i, o, _n=n: hook(m_, i, o, _n)))
        with contextlib.suppress(InversetError):
            shapes[OUTPUT] = tuple(first_tensor(model(x)).shape[1:])
    finally:
        for h in handles:
            h.remove()
    return shapes, calls


def layers(model: nn.Module, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
    """Every layer a target can name, with its output shape and how often it runs (one
    forward pass of a zero input). TorchScript layers cannot be hooked, so are left out.

    ``input_shape`` excludes the batch axis; it defaults to what the loader recorded.
    """
    shape = tuple(input_shape) if input_shape is not None else input_shape_of(model)
    found = hookable_layers(model)
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    if shape is not None:
        x = torch.zeros((1, *shape), device=model_device(model), dtype=model_dtype(model))
        with torch.no_grad(), restore_mode(model, train=False):
            try:
                shapes, calls = _trace(model, x, found)
            except (RuntimeError, ValueError, IndexError) as exc:
                raise shape_error(x, exc) from exc
    infos = []
    for n, m in found.items():
        k = calls.get(n)
        infos.append(LayerInfo(n, type(m).__name__, shapes.get(n) if k == 1 else None, k))
    if OUTPUT not in found:  # a last layer named 'out' (scikit-learn models) is the output
        act = output_activation(model)
        kind = f"output: probabilities ({act}; prob:k reads them)" if act else "output"
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


class LeakyReLUs(TorchFunctionMode):
    """While open, every ReLU the model calls (``nn.ReLU`` modules, ``F.relu``,
    ``torch.relu``, ``Tensor.relu``, in place or not) passes ``slope`` times its negative
    inputs on the batch rows ``rows`` (bool [B]): a stand-in network whose gradient is not zero
    where every unit a target reads is off. ``rows=None`` changes nothing and only counts the
    ReLU calls (``calls``): whether a warm-up can reach this model at all (TorchScript
    modules are opaque to it)."""

    FUNCS = frozenset(
        {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
    )
    IN_PLACE = frozenset({F.relu_, torch.relu_, torch.Tensor.relu_})

    def __init__(self, rows: torch.Tensor | None, slope: float = LEAKY_SLOPE):
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
        out = torch.where(r & (x < 0), self.slope * x, torch.relu(x))
        return x.copy_(out) if in_place else out
