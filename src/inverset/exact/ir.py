"""A torch model and a piecewise-linear target -> one chain of affine maps and ReLUs.

Every supported network, together with the query's target (and constraint) expressions,
becomes ``z_1 = W_1 x + b_1, h_1 = relu(z_1), ..., out = W_L h_{L-1} + b_L`` on the
flattened input ``x``. Max-pooling, ``min``/``max`` in targets and ``margin:k`` are
rewritten with ``max(a, b) = b + relu(a - b)``; values needed later (residual branches,
hidden units a target reads) are carried through ReLU layers as ``relu(v) - relu(-v)``
(one unit when ``v`` is known to be nonnegative); clamping (ReLU6, hardtanh, ``clamp``, ONNX
Clip) is ``low + relu(x - low)`` then ``high - relu(high - v)``. Bounds, the MILP and branch
and bound then only ever see Affine/ReLU chains. The model is traced with ``torch.fx``;
anything that is not affine, ReLU, clamping or max-pooling raises
:class:`UnsupportedModelError`.
"""

from __future__ import annotations

import contextlib
import copy
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from inverset.errors import InversetError, UnsupportedModelError
from inverset.model import last_axis_layers, layer_name, module_path
from inverset.target import BinOp, Const, Expr, Func, Neg, Ref, constant_value

DT = torch.float64


@dataclass
class Network:
    """Affine/ReLU chain on the flattened input; ``out`` rows are the compiled expressions
    (row 0 the target, then one row per extra constraint expression)."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    input_shape: tuple[int, ...]
    out_names: list[str] = field(default_factory=list)
    #: the largest difference seen between the model's own (float) evaluation and the chain's
    #: on sample inputs: the scale of the model's rounding (set by the solver's check)
    disagreement: float = 0.0

    @property
    def n_inputs(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def n_relu(self) -> int:
        return len(self.weights) - 1

    def widths(self) -> list[int]:
        return [int(w.shape[0]) for w in self.weights[:-1]]

    def forward(self, x: torch.Tensor, pre: bool = False):
        """Outputs [B, m] for flat inputs [B, n0] (and the pre-activations if ``pre``)."""
        h = x.to(self.weights[0].dtype)
        zs = []
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            z = h @ w.T + b
            zs.append(z)
            h = z.clamp_min(0)
        out = h @ self.weights[-1].T + self.biases[-1]
        return (out, zs) if pre else out

    def select(self, rows: Sequence[int], scale: float = 1.0) -> Network:
        """The same chain keeping output ``rows`` (times ``scale``)."""
        idx = list(rows)
        return Network(
            [*self.weights[:-1], scale * self.weights[-1][idx]],
            [*self.biases[:-1], scale * self.biases[-1][idx]],
            self.input_shape,
            [self.out_names[i] for i in idx] if self.out_names else [],
        )

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Network:
        """The same chain on ``device`` and/or in ``dtype``."""
        return Network(
            [w.to(device, dtype) for w in self.weights],
            [b.to(device, dtype) for b in self.biases],
            self.input_shape,
            self.out_names,
        )


class _BatchSize(int):
    """An activation's batch size as the model's code reads it (``x.size(0)``, ``x.shape[0]``):
    each value is probed with a batch of its own size, so a reshape to ``(x.size(0), -1)``
    takes the batch of the tensor it reshapes (:func:`_rebatch`)."""


def _rebatch(a, n: int):
    """``a`` (an argument, or nested tuples/lists/dicts of them) with every
    :class:`_BatchSize` as ``n``, the batch of the probe it is applied to."""
    if isinstance(a, _BatchSize):
        return n
    if isinstance(a, list | tuple):  # a torch.Size too (it keeps the marker)
        return type(a)(_rebatch(v, n) for v in a)
    if isinstance(a, dict):
        return {k: _rebatch(v, n) for k, v in a.items()}
    return a


class _Sym:
    """A value of shape ``shape`` (flattened to n) as ``M h + c`` of the current ReLU layer."""

    __slots__ = ("M", "c", "nonneg", "shape")

    def __init__(self, M, c, shape, nonneg):
        self.M, self.c, self.shape, self.nonneg = M, c, tuple(shape), nonneg

    @property
    def n(self) -> int:
        return int(self.c.shape[0])


class _Builder:
    """Accumulates ReLU layers; every live symbolic value is rebased when one is added."""

    def __init__(self, n0: int, device):
        self.W: list[torch.Tensor] = []
        self.b: list[torch.Tensor] = []
        self.H = n0
        self.device = device
        self.live: dict[int, _Sym] = {}

    def keep(self, s: _Sym) -> None:
        self.live[id(s)] = s

    def drop(self, s: _Sym) -> None:
        self.live.pop(id(s), None)

    def const(self, value: torch.Tensor, shape) -> _Sym:
        v = value.to(DT).reshape(-1)
        return _Sym(torch.zeros(v.numel(), self.H, dtype=DT), v.clone(), shape, v >= 0)

    def affine(self, s: _Sym, A: torch.Tensor, d: torch.Tensor, shape, nonneg=None) -> _Sym:
        n = A.shape[0]
        nn_ = nonneg if nonneg is not None else torch.zeros(n, dtype=torch.bool)
        return _Sym(A @ s.M, A @ s.c + d, shape, nn_)

    def add(self, a: _Sym, b: _Sym, sb: float = 1.0) -> _Sym:
        nonneg = a.nonneg & b.nonneg if sb > 0 else torch.zeros_like(a.nonneg)
        return _Sym(a.M + sb * b.M, a.c + sb * b.c, a.shape, nonneg)

    def scale(self, a: _Sym, k: float) -> _Sym:
        nonneg = a.nonneg if k >= 0 else (a.c == 0) & (a.M == 0).all(1)
        return _Sym(k * a.M, k * a.c, a.shape, nonneg)

    def relu(self, s: _Sym) -> _Sym:
        """relu(s), adding a layer (and carrying every other live value through it)."""
        if bool(s.nonneg.all()):
            return _Sym(s.M, s.c, s.shape, s.nonneg)
        rows, cs = [s.M], [s.c]
        plan = []
        k = s.n
        for key, t in self.live.items():
            neg = (~t.nonneg).nonzero().reshape(-1)
            rows += [t.M, -t.M[neg]]
            cs += [t.c, -t.c[neg]]
            plan.append((key, k, neg))
            k += t.n + neg.numel()
        self.W.append(torch.cat(rows))
        self.b.append(torch.cat(cs))
        H = k
        self.H = H
        for key, start, neg in plan:
            t = self.live[key]
            M = torch.zeros(t.n, H, dtype=DT)
            M[torch.arange(t.n), start + torch.arange(t.n)] = 1.0
            M[neg, start + t.n + torch.arange(neg.numel())] = -1.0
            t.M, t.c = M, torch.zeros(t.n, dtype=DT)
        M = torch.zeros(s.n, H, dtype=DT)
        M[torch.arange(s.n), torch.arange(s.n)] = 1.0
        return _Sym(M, torch.zeros(s.n, dtype=DT), s.shape, torch.ones(s.n, dtype=torch.bool))

    def cat(self, syms: Sequence[_Sym]) -> _Sym:
        return _Sym(
            torch.cat([s.M for s in syms]),
            torch.cat([s.c for s in syms]),
            (sum(s.n for s in syms),),
            torch.cat([s.nonneg for s in syms]),
        )

    def rows(self, s: _Sym, idx: torch.Tensor, shape=None) -> _Sym:
        return _Sym(s.M[idx], s.c[idx], shape or (len(idx),), s.nonneg[idx])

    def max_many(self, syms: list[_Sym]) -> _Sym:
        """Elementwise max of equally sized values: a tournament, one ReLU layer per round."""
        syms = list(syms)
        while len(syms) > 1:
            pairs = len(syms) // 2
            a = syms[:pairs]
            b = syms[pairs : 2 * pairs]
            rest = syms[2 * pairs :]
            bs = self.cat(b)
            d = self.add(self.cat(a), bs, -1.0)
            self.keep(bs)
            for r in rest:
                self.keep(r)
            r_ = self.relu(d)
            self.drop(bs)
            for r in rest:
                self.drop(r)
            m = self.add(bs, r_)
            m.nonneg = bs.nonneg | self.cat(a).nonneg
            n = syms[0].n
            syms = [
                self.rows(m, torch.arange(i * n, (i + 1) * n), syms[0].shape) for i in range(pairs)
            ]
            syms += rest
        return syms[0]

    def min_many(self, syms: list[_Sym]) -> _Sym:
        return self.scale(self.max_many([self.scale(s, -1.0) for s in syms]), -1.0)


# ----------------------------------------------------------------------------- tracing
_AFFINE_MODULES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.ZeroPad2d,
)


#: the ONNX converter's affine layers (solved by probing them with unit vectors); those that
#: only move values keep known signs
_LOADER_AFFINE = ("ConstOp", "Reshape", "_Pad", "PaddedPool", "Reduce", "Cast")
_LOADER_MOVES = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Cast")
#: the converter's other layers, kept whole when traced so that an error names the layer
_LOADER_OTHER = ("BinaryOp", "Concat", "Clip", "Softmax", "LogSoftmax", "Erf")


def _loader_types(names: Sequence[str] | None = None) -> tuple[type, ...]:
    """The ONNX converter's layer classes called ``names`` (default: all of the above)."""
    try:
        from inverset.loaders import onnx as lo
    except Exception:  # pragma: no cover - loader missing
        return ()
    every = (*_LOADER_AFFINE, *_LOADER_MOVES, *_LOADER_OTHER)
    return tuple(getattr(lo, n) for n in dict.fromkeys(names or every) if hasattr(lo, n))


def _runs_own_forward(m: nn.Module, types: tuple[type, ...]) -> bool:
    """Whether ``m`` is one of ``types`` and runs that type's own ``forward`` (a subclass with
    a forward of its own may compute anything)."""
    forward = getattr(type(m), "forward", None)
    return any(isinstance(m, t) and forward is t.forward for t in types)


def _in_place_name(name: str) -> bool:
    """torch's naming of an operation that changes its first argument: ``relu_``, not
    ``__add__``."""
    return name.endswith("_") and not name.endswith("__")


@contextlib.contextmanager
def _attributes_kept(model: nn.Module) -> Iterator[None]:
    """Tracing runs ``forward`` on proxies: a forward that updates an attribute of its own
    (``self.calls += len(x)``) left a torch.fx Proxy there on the user's model. Every
    submodule's attributes are put back as they were, and new ones holding a Proxy removed
    (the tracer's own, its tensor constants, stay: the graph reads them)."""
    kept = [(m, dict(vars(m))) for m in model.modules()]
    try:
        yield
    finally:
        for m, before in kept:
            now = vars(m)
            for k in [k for k, v in now.items() if k not in before and isinstance(v, fx.Proxy)]:
                del now[k]
            now.update(before)


class _Tracer(fx.Tracer):
    """torch.fx's tracer keeping the layers the extractor reads whole, and noting the node
    each module traced through (a residual block, a Sequential) returned: a target may name
    it, and fx leaves no call of it in the graph."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.returned: dict[fx.Node, list[str]] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        known = (*_AFFINE_MODULES, *_loader_types(), nn.ReLU, nn.MaxPool2d, nn.MaxPool1d)
        # a subclass with a forward of its own computes something else: traced through
        if _runs_own_forward(m, known):
            return True
        return super().is_leaf_module(m, qualname) and not isinstance(m, known)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        path = self.path_of_module(m)
        first = _first(out)
        if isinstance(first, fx.Proxy) and not self.is_leaf_module(m, path):
            self.returned.setdefault(first.node, []).append(path)
        return out


_AFFINE_FUNCS = {
    torch.add,
    operator.add,
    torch.sub,
    operator.sub,
    torch.mul,
    operator.mul,
    torch.div,
    operator.truediv,
    operator.neg,
    torch.neg,
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    F.linear,
    F.conv2d,
    F.conv1d,
    F.avg_pool2d,
    F.pad,
    F.dropout,
    torch.nn.functional.batch_norm,
}
#: tensor methods that only move or cast values (so they keep non-negativity)
_LAYOUT_METHODS = {
    "reshape",
    "view",
    "flatten",
    "squeeze",
    "unsqueeze",
    "contiguous",
    "permute",
    "transpose",
    "double",
    "float",
    "to",
}
_AFFINE_METHODS = _LAYOUT_METHODS | {"add", "sub", "mul", "div", "neg"}
_RELU_FUNCS = {F.relu, torch.relu}
#: in-place functions (their first argument is the tensor they write; any other whose name
#: ends in ``_`` is one too) as the functions computing their result (:func:`_functionalize`
#: has rewired the later readers of the tensor they change)
_OUT_OF_PLACE = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
    torch.relu_: torch.relu,
    F.relu_: F.relu,
    torch.clamp_: torch.clamp,
    torch.clamp_min_: torch.clamp_min,
    torch.clamp_max_: torch.clamp_max,
    F.hardtanh_: F.hardtanh,
}
#: torch's clamping operations, by the name a function, a tensor method and a TorchScript
#: ``aten::`` op share: the names of their arguments after the input, in order, and the
#: defaults of the ends (``low``, ``high``); an end None is open
_CLAMPS: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    "clamp": (("low", "high"), {}),
    "clip": (("low", "high"), {}),
    "clamp_min": (("low",), {}),
    "clamp_max": (("high",), {}),
    "hardtanh": (("low", "high"), {"low": -1.0, "high": 1.0}),
    "relu6": ((), {"low": 0.0, "high": 6.0}),
}
#: keyword arguments naming an end
_CLAMP_KEYS = {"min": "low", "max": "high", "min_val": "low", "max_val": "high"}
_CLAMP_FUNCS = {
    torch.clamp: "clamp",
    torch.clip: "clip",
    torch.clamp_min: "clamp_min",
    torch.clamp_max: "clamp_max",
    F.hardtanh: "hardtanh",
    F.relu6: "relu6",
}
#: layers whose output is a probability (or its log): not piecewise linear, and a model's
#: last layer the exact solver then works below
_SQUASH_MODULES = {nn.Softmax: "Softmax", nn.LogSoftmax: "LogSoftmax", nn.Sigmoid: "Sigmoid"}
_SQUASH_FUNCS = {
    torch.softmax: "Softmax",
    F.softmax: "Softmax",
    torch.log_softmax: "LogSoftmax",
    F.log_softmax: "LogSoftmax",
    torch.sigmoid: "Sigmoid",
    F.sigmoid: "Sigmoid",
}
_SQUASH_METHODS = {"softmax": "Softmax", "log_softmax": "LogSoftmax", "sigmoid": "Sigmoid"}


def _clamp_ends(name: str, rest: Sequence, kwargs: dict) -> tuple[object, object]:
    """(low, high) of the clamping operation ``name`` called with ``rest`` (the arguments
    after the input) and ``kwargs``."""
    order, defaults = _CLAMPS[name]
    ends: dict[str, object] = {**defaults, **dict(zip(order, rest, strict=False))}
    ends.update({_CLAMP_KEYS[k]: v for k, v in kwargs.items() if k in _CLAMP_KEYS})
    return ends.get("low"), ends.get("high")


def _chain_graph(model: nn.Module, tracer: _Tracer) -> fx.Graph | None:
    """The graph of an :class:`~torch.nn.Sequential` of layers ``tracer`` keeps whole (nested
    Sequentials flattened, the node each returns noted in ``tracer.returned`` as tracing notes
    it, for a target on one of them), written down directly; None for any other model.
    Tracing patches ``torch.nn.Module``'s methods and costs about 1 ms whatever the model's
    size: as much as the rest of a small MLP's extraction. A layer used twice is named as
    tracing names it, by its first name (the one ``named_modules`` lists). A scikit-learn
    MLP's converted module gives its chain itself
    (:meth:`~inverset.loaders.sklearn.SklearnMLP.chain`)."""
    from inverset.loaders.sklearn import SklearnMLP

    flat = isinstance(model, SklearnMLP)
    if flat:
        names = model.chain()
        chain = None if names is None else [(q, []) for q in names]
    else:
        chain = _sequential_names(model, tracer)
    if chain is None:
        return None
    graph = fx.Graph()
    x = graph.placeholder("x")
    if flat:
        x = graph.call_function(torch.flatten, (x, 1))
    for q, ends in chain:
        if q is not None:
            x = graph.call_module(q, (x,))
        if ends:
            tracer.returned.setdefault(x, []).extend(ends)
    graph.output(x)
    return graph


#: a plain Sequential read as a chain: each layer applied in turn, with the nested Sequentials
#: that return its output (a first layer None: empty ones returning the input itself)
_Chain = list[tuple[str | None, list[str]]]


def _sequential_names(model: nn.Module, tracer: fx.Tracer) -> _Chain | None:
    """The layers a plain Sequential applies in turn, each with the nested Sequentials that
    return its output (:data:`_Chain`), or None for another model."""
    first = {id(m): name for name, m in model.named_modules()}
    chain: _Chain = []

    def walk(m: nn.Module, prefix: str) -> bool:
        if not isinstance(m, nn.Sequential) or type(m).forward is not nn.Sequential.forward:
            return False
        for name, child in m._modules.items():
            q = prefix + name
            if child is not None and tracer.is_leaf_module(child, q):
                chain.append((first[id(child)], []))
            elif child is None or not walk(child, q + "."):
                return False
            else:
                if not chain:
                    chain.append((None, []))
                chain[-1][1].append(first[id(child)])
        return True

    return chain if walk(model, "") else None


#: operations known to return a new tensor (never their input, nor a view of it); any other
#: may share its input's memory (a view, ``.float()`` of a float tensor, Dropout in eval mode,
#: an in-place operation itself)
_FRESH_FUNCS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg}
_FRESH_FUNCS |= {torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.relu, F.relu}
_FRESH_FUNCS |= {torch.clamp, torch.clip, torch.clamp_min, torch.clamp_max, F.relu6}
_FRESH_FUNCS |= {F.hardtanh, torch.cat, F.linear, F.conv1d, F.conv2d, F.max_pool1d}
_FRESH_FUNCS |= {F.max_pool2d, F.avg_pool1d, F.avg_pool2d, torch.matmul, operator.matmul}
_FRESH_METHODS = {"add", "sub", "mul", "div", "neg", "relu", "clamp", "clip", "clone"}
_FRESH_METHODS |= {"clamp_min", "clamp_max", "matmul", "sum", "mean", "size", "dim", "numel"}
_FRESH_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)
_FRESH_MODULES += (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
_FRESH_MODULES += (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d)
_FRESH_MODULES += (nn.AdaptiveMaxPool2d, nn.ReLU, nn.ReLU6, nn.Hardtanh)


def _writes(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The node whose tensor ``node`` changes in place (``nn.ReLU(inplace=True)``,
    ``F.relu(h, inplace=True)``, ``h.relu_()``, ``h += 1``, ``out=h``), or None."""
    first = node.args[0] if node.args else None
    out = node.kwargs.get("out")
    if isinstance(out, fx.Node):
        return out
    if not isinstance(first, fx.Node):
        return None
    if node.op == "call_module":
        return first if getattr(modules.get(str(node.target)), "inplace", False) else None
    if node.op == "call_method":
        return first if _in_place_name(str(node.target)) else None
    if node.op == "call_function":
        fn = node.target
        inplace = node.kwargs.get("inplace") is True or (
            fn in (F.relu, F.relu6, F.hardtanh, F.dropout) and True in node.args[1:]
        )
        if fn in _OUT_OF_PLACE or inplace or _in_place_name(getattr(fn, "__name__", "")):
            return first
    return None


def _fresh(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` surely returns a new tensor: anything else may share its first
    argument's memory, which an in-place change of either then changes in both."""
    if _writes(node, modules) is not None:
        return False
    if node.op == "call_module":
        return _runs_own_forward(modules.get(str(node.target)), _FRESH_MODULES)
    if node.op == "call_method":
        return str(node.target) in _FRESH_METHODS
    if node.op == "call_function":  # getattr: a shape or dtype, no tensor
        return node.target in _FRESH_FUNCS or node.target is getattr
    return True  # the input, constants, attributes: the roots of what may alias


def _functionalize(graph: fx.Graph, modules: dict[str, nn.Module]) -> None:
    """Rewire the readers of a tensor an operation changes in place that come after it to
    that operation's result: the graph then computes what the model does (a skip connection
    reading ``h`` after ``nn.ReLU(inplace=True)(h)`` reads the rectified ``h``). When another
    tensor that may share its memory (a view of it, the tensor it is a view of, ``h.float()``,
    Dropout's output) is read after the change, the model is refused: in doubt, no answer
    rather than a wrong one."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        written = _writes(node, modules)
        if written is None:
            continue
        if written.op == "placeholder":
            raise _unsupported(f"a model changing its input in place ({node.name})")
        # the tensors that may share its memory: from the root it may be a view of, every
        # result derived from it by operations that may return their input, made before
        root = written
        while not _fresh(root, modules) and root.args and isinstance(root.args[0], fx.Node):
            root = root.args[0]
        shared, todo = {root}, [root]
        while todo:
            for u in todo.pop().users:
                first = u.args[0] if u.args else None
                derived = first in shared or u.kwargs.get("out") in shared
                if (
                    derived
                    and u not in shared
                    and order[u] < order[node]
                    and not _fresh(u, modules)
                ):
                    shared.add(u)
                    todo.append(u)
        shared.discard(node)
        others = [u for m in shared - {written} for u in m.users if order[u] > order[node]]
        if others:
            raise _unsupported(
                f"a tensor read after another that shares its memory was changed in place "
                f"({node.name}, read by {others[0].name})"
            )
        for u in [u for u in written.users if u is not node and order[u] > order[node]]:
            u.replace_input_with(written, node)


def _unsupported(what: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"the exact solver cannot handle {what} (it needs Linear/Conv/ReLU/clamp/pooling/"
        "BatchNorm/affine layers only); use --solver gradient"
    )


class SquashedOutputError(UnsupportedModelError):
    """The model ends in a Softmax, LogSoftmax or Sigmoid, which the exact solver cannot
    take; the message names the layer below it to target instead."""


def squashed(
    kind: str,
    layer: str | None,
    below: str | None,
    ref: Ref | None,
    n: int = 1,
    script: bool = False,
) -> SquashedOutputError:
    """The error for a model ending in ``kind`` (layer ``layer``, None when no named layer);
    ``below``: the layer (its target name) whose output of ``n`` units it takes (None: no
    layer's output alone); ``ref``: the output the query reads (None: none); ``script``: a
    TorchScript model, whose layers are not targets."""
    where = f" (layer {layer!r})" if layer else ""
    head = (
        f"the model ends in {kind}{where}, which is not piecewise linear; the exact solver "
        "works on its input"
    )
    if script:
        fix = (
            ", but a TorchScript model's hidden layers are not targets: load the model as an "
            f"nn.Module or ONNX file and target the layer before the {kind}, or save it "
            f"without the {kind};"
        )
    elif below is None:
        fix = f", but no layer outputs it alone: save the model without the final {kind},"
    elif n == 1:  # one logit z: a sigmoid's class 1 is z, its class 0 (prob:0) is -z
        t = Ref("layer", below, (0,))
        zero = ref is not None and ref.kind == "prob" and ref.index[0] == 0
        fix = f": use -t -{t} (prob:0 is 1 - sigmoid({t}))," if zero else f": use -t {t},"
    else:
        unit = ref.index[0] if ref is not None and ref.index[0] < n else 0
        t = Ref("layer", below, (unit,))
        other = Ref("layer", below, (1 if unit == 0 else 0,))
        if ref is not None and ref.kind == "margin" and n <= 9:
            rest = ", ".join(str(Ref("layer", below, (j,))) for j in range(n) if j != unit)
            rest = rest if n == 2 else f"max({rest})"
            fix = f": use -t '{t} - {rest}' (the margin in logits),"
        elif ref is not None and ref.kind == "margin":
            fix = f": use the logits, -t '{t} - max({other}, ...)' (the margin in logits),"
        else:
            fix = (
                f": use -t {t} (the logit of output {unit}; differences such as {t} - {other} "
                "work too),"
            )
    return SquashedOutputError(f"{head}{fix} or use --solver gradient")


def _first(res):
    """The first of a model's outputs (of a tuple, list or dict of them)."""
    while isinstance(res, tuple | list) and res:
        res = res[0]
    return next(iter(res.values())) if isinstance(res, dict) and res else res


def _squash(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """'Softmax', 'LogSoftmax' or 'Sigmoid' when ``node`` computes one, else None."""
    if node.op == "call_module":
        m = modules.get(node.target)
        return next((k for t, k in _SQUASH_MODULES.items() if isinstance(m, t)), None)
    if node.op == "call_function":
        return _SQUASH_FUNCS.get(node.target)
    if node.op == "call_method":
        return _SQUASH_METHODS.get(node.target)
    return None


class _Extractor:
    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        needed: set[str],
        need_out: bool = True,
        ref: Ref | None = None,
        reduce: Callable[[str, _Sym], _Sym] | None = None,
    ):
        self.model = model
        self.reduce = reduce  # a needed layer's value -> the rows the target reads of it
        self.shape = tuple(input_shape)
        self.needed, self.need_out = needed, need_out
        self.paths = {module_path(n): n for n in needed}  # module path -> the target's name
        self.ref = ref  # the output the query reads (named in an error)
        self.b = _Builder(int(np.prod(self.shape)), "cpu")
        self.pos: dict[str, _Sym] = {}

    def _probe(self, s: _Sym) -> torch.Tensor:
        """Batch [n+1, *shape]: row 0 is zero, row i+1 the i-th unit vector."""
        eye = torch.cat([torch.zeros(1, s.n, dtype=DT), torch.eye(s.n, dtype=DT)])
        return eye.reshape(s.n + 1, *s.shape)

    def _apply_affine(self, s: _Sym, fn, nonneg_keep: bool = False) -> _Sym:
        out = fn(self._probe(s))
        if not isinstance(out, torch.Tensor) or out.shape[0] != s.n + 1:
            raise _unsupported("an operation that changes the batch axis")
        out = out.to(DT)
        d = out[0].reshape(-1)
        A = (out[1:].reshape(s.n, -1) - d).T
        nonneg = None
        if nonneg_keep and A.shape[0] == s.n and bool((d == 0).all()):
            # a pure rearrangement keeps known signs when every row picks one input
            pick = A.abs().argmax(1)
            nonneg = s.nonneg[pick] & (A.gather(1, pick[:, None]).reshape(-1) >= 0)
            nonneg &= (A != 0).sum(1) == 1
        return self.b.affine(s, A, d, tuple(out.shape[1:]), nonneg)

    def _maxpool(
        self, s: _Sym, kernel, stride, padding, dilation, ceil_mode, dims: int, sides=None
    ) -> _Sym:
        """Max pooling as a max over the rows each window reads; ``sides`` (left, right, top,
        bottom) pads each side on its own, else ``padding`` pads both sides alike."""
        if ceil_mode:
            raise _unsupported("MaxPool with ceil_mode=True")
        idx = torch.arange(s.n, dtype=DT).reshape(1, *s.shape)
        bare = len(s.shape) == dims  # (L,) or (H, W): torch pools it as one channel
        if bare:
            idx = idx.unsqueeze(1)
        elif len(s.shape) != dims + 1:
            raise _unsupported(f"MaxPool{dims}d on an activation of shape {tuple(s.shape)}")
        if dims == 1:
            idx = idx.unsqueeze(-2)
            kernel, stride = (1, _pair(kernel)[0]), (1, _pair(stride or kernel)[0])
            padding, dilation = (0, _pair(padding)[0]), (1, _pair(dilation)[0])
        kernel, stride = _pair(kernel), _pair(stride or kernel)
        padding, dilation = _pair(padding), _pair(dilation)
        C = idx.shape[1]
        if sides is None:
            sides = (padding[1], padding[1], padding[0], padding[0])
        padded = F.pad(idx, tuple(sides), value=-1.0)
        cols = F.unfold(padded, kernel, dilation=dilation, stride=stride)  # [1, C*k, L]
        k = kernel[0] * kernel[1]
        cols = cols.reshape(C, k, -1)
        fill = cols.amax(1, keepdim=True).expand_as(cols)
        cols = torch.where(cols < 0, fill, cols).long()
        hout = (padded.shape[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        wout = cols.shape[2] // hout
        shape = ((C, hout, wout) if dims == 2 else (C, wout))[1 if bare else 0 :]
        parts = [self.b.rows(s, cols[:, j, :].reshape(-1), shape) for j in range(k)]
        return self.b.max_many(parts)

    def run(self) -> dict[str, _Sym]:
        if isinstance(self.model, torch.jit.ScriptModule):
            self.model = _unscript(self.model)
        tracer = _Tracer(autowrap_modules=())
        graph = _chain_graph(self.model, tracer)
        try:  # the graph alone: a GraphModule would also generate and compile Python code
            with _attributes_kept(self.model):
                graph = graph or tracer.trace(self.model)
        except Exception as exc:
            why = f"this model (torch.fx cannot trace it: {type(exc).__name__})"
            raise _unsupported(why) from None
        modules = dict(self.model.named_modules())
        _functionalize(graph, modules)
        nodes = list(graph.nodes)
        last = _first(nodes[-1].args[0]) if nodes and nodes[-1].op == "output" else None
        squash = _squash(last, modules) if isinstance(last, fx.Node) else None
        users = {n: len(n.users) for n in nodes}
        env: dict[fx.Node, object] = {}
        b = self.b

        def val(a):
            return fx.node.map_arg(a, lambda n: env[n])

        out_node = None
        for node in nodes:
            for inp in node.all_input_nodes:
                users[inp] -= 1
                if users[inp] == 0 and isinstance(env.get(inp), _Sym):
                    s = env[inp]
                    if not any(s is p for p in self.pos.values()):
                        b.drop(s)
            if squash and node is last:
                below = node.args[0] if node.args else None
                ok = isinstance(below, fx.Node)
                n = env[below].n if ok and isinstance(env.get(below), _Sym) else 1
                name = layer_name(below.target) if ok and below.op == "call_module" else None
                layer = layer_name(node.target) if node.op == "call_module" else None
                raise squashed(squash, layer, name, self.ref, n)
            if node.op == "placeholder":
                if node is not nodes[0]:
                    raise _unsupported("models with more than one input")
                s = _Sym(
                    torch.eye(b.H, dtype=DT),
                    torch.zeros(b.H, dtype=DT),
                    self.shape,
                    torch.zeros(b.H, dtype=torch.bool),
                )
                env[node] = s
            elif node.op == "get_attr":
                obj = self.model
                for part in node.target.split("."):
                    obj = getattr(obj, part)
                env[node] = obj.detach().to("cpu", DT) if isinstance(obj, torch.Tensor) else obj
            elif node.op == "call_module":
                env[node] = self._module(
                    modules[node.target], node, val(node.args), val(node.kwargs)
                )
            elif node.op == "call_function":
                env[node] = self._function(node.target, val(node.args), val(node.kwargs))
            elif node.op == "call_method":
                env[node] = self._method(node.target, val(node.args), val(node.kwargs))
            elif node.op == "output":
                out_node = node
                res = _first(val(node.args[0]))
                if not isinstance(res, _Sym):
                    raise _unsupported("a model whose output does not depend on its input")
                self.pos["out"] = res
                b.keep(res)
            if isinstance(env.get(node), _Sym) and node.op != "output":
                if users[node] > 0:
                    b.keep(env[node])
                ends = [node.target] if node.op == "call_module" else []
                for path in ends + tracer.returned.get(node, []):
                    if path in self.paths:
                        name = self.paths[path]
                        kept = self.reduce(name, env[node]) if self.reduce else env[node]
                        self.pos[name] = kept
                        b.keep(kept)
            if not self.need_out and self.needed and self.needed <= self.pos.keys():
                # hidden targets only: the layers after them would only carry their values
                # through more ReLUs (looser bounds) and may not even be supported
                return self.pos
        assert out_node is not None
        missing = [n for n in self.needed if n not in self.pos]
        if missing:
            raise UnsupportedModelError(
                f"the exact solver cannot find layer {missing[0]!r} in the model's traced graph "
                "(torch.fx records no call of it, e.g. it runs inside a layer kept whole); "
                "target a layer around it (see `inverset layers`), or use --solver gradient"
            )
        return self.pos

    # ----------------------------------------------------------------- node handlers
    def _module(self, m: nn.Module, node, args, kwargs):
        x = args[0]
        if not isinstance(x, _Sym):
            raise _unsupported(f"layer {node.target!r} applied to a constant")
        name = type(m).__name__
        if isinstance(m, nn.ReLU):
            return self.b.relu(x)
        if isinstance(m, nn.MaxPool2d | nn.MaxPool1d):
            if m.return_indices:
                raise _unsupported(f"layer {node.target!r} (MaxPool returning indices)")
            dims = 2 if isinstance(m, nn.MaxPool2d) else 1
            return self._maxpool(
                x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, dims
            )
        if name == "PaddedPool" and m.kind == "maxpool":
            pool = (m.kernel, m.stride, 0, m.dilation, False, 2)
            return self._maxpool(x, *pool, sides=m.pad)
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.training:
            raise _unsupported(f"layer {node.target!r} (BatchNorm in training mode)")
        if type(m) is nn.Linear and len(x.shape) == 1:  # the common case, without a probe
            W = m.weight.detach().to("cpu", DT)
            d = torch.zeros(W.shape[0], dtype=DT) if m.bias is None else m.bias.detach()
            return self.b.affine(x, W, d.to("cpu", DT), (W.shape[0],))
        if name == "BinaryOp" and m.op in ("add", "sub"):
            a, c = args[0], args[1]
            if not isinstance(c, _Sym) or a.shape != c.shape:
                raise _unsupported(f"layer {node.target!r} (adding activations of two shapes)")
            return self.b.add(a, c, 1.0 if m.op == "add" else -1.0)
        if name == "Concat":
            return self._function(torch.cat, (list(args), m.axis), {})
        if name == "Clip":
            return self._clip(x, m.low, m.high)
        if isinstance(m, nn.Hardtanh):  # ReLU6 too
            return self._clip(x, m.min_val, m.max_val)
        global_max = isinstance(m, nn.AdaptiveMaxPool2d | nn.AdaptiveMaxPool1d)
        if global_max and m.output_size in (1, (1, 1)):  # one window of the whole input
            dims = 2 if isinstance(m, nn.AdaptiveMaxPool2d) else 1
            size = tuple(x.shape[-dims:])
            return self._maxpool(x, size, size, 0, 1, False, dims)
        lt = _loader_types((*_LOADER_AFFINE, *_LOADER_MOVES))
        if isinstance(m, _AFFINE_MODULES) or (lt and isinstance(m, lt)):
            if name == "ConstOp" and m.op == "div" and m.const_first:
                raise _unsupported(f"layer {node.target!r} (constant divided by the input)")
            if name == "Transpose" and m.perm[0] != 0:
                raise _unsupported(f"layer {node.target!r} (a Transpose moving the batch axis)")
            if name == "Cast" and m.dtype in (torch.float16, torch.bfloat16):
                # its rounding (1e-4 relative) is no affine map: certificates would be off
                raise _unsupported(f"layer {node.target!r} (a Cast to {m.dtype}, which rounds)")
            mod = copy.deepcopy(m).to(device="cpu", dtype=DT).eval()
            keep = (
                isinstance(m, nn.Flatten | nn.Unflatten | nn.Identity | nn.Dropout)
                or name in _LOADER_MOVES
            )
            with torch.no_grad():
                return self._apply_affine(x, mod, nonneg_keep=keep)
        raise _unsupported(f"layer {node.target!r} of type {name}")

    def _clip(self, x: _Sym, low, high) -> _Sym:
        """``min(max(x, low), high)`` as ``low + relu(x - low)``, then ``high - relu(high - v)``
        (one ReLU layer per end given; an end a number, or a tensor broadcast against ``x``;
        None or infinite: open)."""
        b = self.b
        for end in (low, high):
            if isinstance(end, _Sym):
                raise _unsupported("clamping to bounds computed from the input")
        lo, hi = self._clip_end(low, x), self._clip_end(high, x)
        if lo is not None:
            r = b.relu(_Sym(x.M, x.c - lo, x.shape, x.nonneg & (lo <= 0)))
            x = _Sym(r.M, r.c + lo, x.shape, x.nonneg | (lo >= 0))
        if hi is not None:
            r = b.relu(_Sym(-x.M, hi - x.c, x.shape, torch.zeros(x.n, dtype=torch.bool)))
            x = _Sym(-r.M, hi - r.c, x.shape, x.nonneg & (hi >= 0))
        return x

    @staticmethod
    def _clip_end(end, x: _Sym) -> torch.Tensor | None:
        """A clamp end as one value per unit of ``x`` (None: open)."""
        if end is None:
            return None
        v = torch.as_tensor(end).detach().to("cpu", DT)
        full = (1, *x.shape)
        try:
            fits = torch.broadcast_shapes(v.shape, full) == full
        except RuntimeError:
            fits = False
        if not fits:
            raise _unsupported(
                f"clamping an activation of shape {x.shape} to bounds of shape {tuple(v.shape)}"
            )
        v = v.broadcast_to(full).reshape(-1)
        if bool(torch.isinf(v).all()):
            return None
        if not bool(torch.isfinite(v).all()):
            raise _unsupported("clamping to bounds of which some are infinite")
        return v.clone()

    def _function(self, fn, args, kwargs):
        fn = _OUT_OF_PLACE.get(fn, fn)
        # the tensor written through out= reads this result (_functionalize)
        kwargs = {k: v for k, v in kwargs.items() if k != "out"}
        # activations may sit inside a list argument (torch.cat, torch.stack)
        flat = [
            b
            for a in (*args, *kwargs.values())
            for b in (a if isinstance(a, list | tuple) else [a])
        ]
        syms = [a for a in flat if isinstance(a, _Sym)]
        if fn is getattr:
            obj, attr = args
            if isinstance(obj, _Sym):
                if attr == "shape":
                    return torch.Size((_BatchSize(obj.n + 1), *obj.shape))
                raise _unsupported(f"reading .{attr} of an activation")
            return getattr(obj, attr)
        if fn is operator.getitem and not syms:
            return args[0][args[1]]
        if not syms:
            return fn(*args, **kwargs)
        if fn in _RELU_FUNCS:
            return self.b.relu(args[0])
        if fn in _CLAMP_FUNCS and isinstance(args[0], _Sym):
            return self._clip(args[0], *_clamp_ends(_CLAMP_FUNCS[fn], args[1:], kwargs))
        if fn is F.max_pool2d or fn is F.max_pool1d:
            x = args[0]
            kw = dict(
                zip(
                    ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
                    args[1:],
                    strict=False,
                )
            )
            kw.update(kwargs)
            dims = 2 if fn is F.max_pool2d else 1
            return self._maxpool(
                x,
                kw["kernel_size"],
                kw.get("stride"),
                kw.get("padding", 0),
                kw.get("dilation", 1),
                kw.get("ceil_mode", False),
                dims,
            )
        if fn is torch.cat:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            parts = args[0]
            if not all(isinstance(a, _Sym) for a in parts):
                raise _unsupported("torch.cat of activations with constant tensors")
            if dim in (1, -1) and all(len(p.shape) == 1 for p in parts):
                return self.b.cat(parts)
            raise _unsupported("torch.cat of activations other than flat vectors on dim 1")
        if len(syms) == 2 and fn in (torch.add, operator.add, torch.sub, operator.sub):
            a, c = args[0], args[1]
            if a.shape != c.shape:
                raise _unsupported("adding activations of different shapes")
            alpha = float(kwargs.get("alpha", 1.0))
            return self.b.add(a, c, alpha if fn in (torch.add, operator.add) else -alpha)
        if len(syms) == 1 and fn in _AFFINE_FUNCS:
            s = syms[0]
            if fn in (torch.div, operator.truediv) and args[0] is not s:
                raise _unsupported("dividing by an activation")

            def f(p):
                a2 = [p if a is s else _rebatch(a, p.shape[0]) for a in args]
                k2 = {k: (p if v is s else _rebatch(v, p.shape[0])) for k, v in kwargs.items()}
                return fn(*a2, **k2)

            with torch.no_grad():
                return self._apply_affine(s, f, nonneg_keep=fn in (torch.flatten, torch.reshape))
        name = getattr(fn, "__name__", str(fn))
        raise _unsupported(f"the operation {name}")

    def _method(self, name, args, kwargs):
        obj = args[0]
        if not isinstance(obj, _Sym):
            return getattr(obj, name)(*args[1:], **kwargs)
        if name == "size":
            full = torch.Size((_BatchSize(obj.n + 1), *obj.shape))
            return full if not args[1:] else full[args[1]]
        if _in_place_name(name):
            name = name[:-1]  # in place: its later readers read this result (_functionalize)
        if name in ("add", "sub", "mul", "div") and any(isinstance(a, _Sym) for a in args[1:]):
            return self._function(getattr(torch, name), args, kwargs)
        if name == "relu":
            return self.b.relu(obj)
        if name in _CLAMPS:
            return self._clip(obj, *_clamp_ends(name, args[1:], kwargs))
        if name == "dim":
            return len(obj.shape) + 1
        if name in _AFFINE_METHODS:
            if name in ("permute", "transpose"):
                dims = args[1:]
                if (name == "permute" and dims and dims[0] != 0) or (
                    name == "transpose" and 0 in dims
                ):
                    raise _unsupported("a permute that moves the batch axis")

            def f(p):
                n = p.shape[0]
                return getattr(p, name)(*_rebatch(args[1:], n), **_rebatch(kwargs, n))

            with torch.no_grad():
                return self._apply_affine(obj, f, nonneg_keep=name in _LAYOUT_METHODS)
        raise _unsupported(f"the tensor method .{name}()")


def _unscript(m: torch.jit.ScriptModule) -> nn.Module:
    """A TorchScript model as a plain ``nn.Sequential`` (TorchScript cannot be traced by
    torch.fx): a scripted ``nn.Sequential`` of Linear/ReLU/Flatten/Identity/Dropout layer by
    layer, any other one from the graph of a frozen copy (:func:`_unfreeze`)."""
    if list(m.named_children()) and getattr(m, "original_name", "") == "Sequential":
        try:
            return _unscript_sequential(m)
        except UnsupportedModelError:
            pass  # another layer type: its frozen graph may still be a chain
    frozen = hasattr(m, "graph") and not m.graph.findAllNodes("prim::GetAttr")
    if not frozen:
        try:  # weights become graph constants (of a copy)
            m = torch.jit.freeze(m)
        except Exception:
            raise _unsupported("this TorchScript model (torch.jit.freeze fails on it)") from None
    return _unfreeze(m)


def _linear(W: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """``nn.Linear`` computing ``x @ W.T + bias`` in ``W``'s dtype (``bias`` None: none)."""
    lin = nn.Linear(W.shape[1], W.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(W)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin.to(W.dtype)


def _unscript_sequential(m: torch.jit.ScriptModule) -> nn.Module:
    """A scripted ``nn.Sequential`` of Linear/ReLU/Flatten/Identity/Dropout as a plain one."""
    layers: list[nn.Module] = []
    for name, c in m.named_children():
        kind = getattr(c, "original_name", type(c).__name__)
        if kind == "Linear":
            layers.append(_linear(c.weight, getattr(c, "bias", None)))
        elif kind in ("ReLU", "Identity", "Dropout"):
            layers.append(nn.ReLU() if kind == "ReLU" else nn.Identity())
        elif kind == "Flatten":
            layers.append(nn.Flatten())
        else:
            raise _unsupported(f"layer {name!r} of type {kind} inside a TorchScript model")
    return nn.Sequential(*layers)


#: ops of a frozen TorchScript graph that only carry their input on
_FROZEN_IDENTITY = ("aten::dropout", "aten::contiguous", "aten::detach")
#: a frozen TorchScript graph's probability ops -> the layer they are
_FROZEN_SQUASH = {
    "aten::softmax": "Softmax",
    "aten::log_softmax": "LogSoftmax",
    "aten::sigmoid": "Sigmoid",
}


def _unfreeze(m: torch.jit.ScriptModule) -> nn.Module:
    """A frozen TorchScript module (``torch.jit.freeze`` / ``optimize_for_inference``, whose
    weights are graph constants) as an ``nn.Sequential``, when its graph is one chain of
    ``linear`` (or ``matmul`` and a bias ``add``), ``conv2d``, pooling, ``relu``, clamping
    (``relu6``, ``hardtanh``, ``clamp``) and ``flatten``."""
    from inverset.loaders.onnx import Clip

    g = m.graph
    returned = [o.debugName() for o in g.outputs()]
    cur = list(g.inputs())[1].debugName()
    consts: dict[str, object] = {}
    layers: list[nn.Module] = []

    def refuse(what: str) -> UnsupportedModelError:
        return _unsupported(f"{what} in a TorchScript model's (frozen) graph")

    for node in g.nodes():
        kind = node.kind()
        if kind == "prim::Constant":
            consts[node.output().debugName()] = node.output().toIValue()
            continue
        args = [i.debugName() for i in node.inputs()]
        if kind == "prim::ListConstruct" and all(a in consts for a in args):
            consts[node.output().debugName()] = [consts[a] for a in args]
            continue
        if not args or args[0] != cur or node.outputsSize() != 1:
            raise refuse(f"the operation {kind} (its graph is not one chain of layers)")
        rest = [consts.get(a) for a in args[1:]]
        if any(a not in consts for a in args[1:]):
            raise refuse(f"the operation {kind} of two computed values")
        if kind == "aten::_convolution" and not rest[5] and rest[0].dim() == 4:
            rest = [*rest[:5], rest[7]]  # a traced conv2d: drop transposed, output_padding
            kind = "aten::conv2d"
        if kind == "aten::linear":
            layers.append(_linear(*rest))
        elif kind == "aten::matmul" and rest[0].dim() == 2:
            layers.append(_linear(rest[0].T, None))
        elif kind == "aten::add" and layers and type(layers[-1]) is nn.Linear:
            lin, (c, alpha) = layers[-1], rest
            bias = torch.as_tensor(c).to(lin.weight.dtype) * alpha
            if bias.dim() > 1 or bias.numel() not in (1, lin.out_features):
                raise refuse(f"a bias of shape {tuple(bias.shape)}")
            bias = bias.expand(lin.out_features)
            with torch.no_grad():
                layers[-1] = _linear(lin.weight, bias if lin.bias is None else bias + lin.bias)
        elif kind == "aten::conv2d":
            W, bias, stride, padding, dilation, groups = rest
            conv = nn.Conv2d(
                W.shape[1] * groups,
                W.shape[0],
                tuple(W.shape[2:]),
                stride,
                padding,
                dilation,
                groups,
                bias=bias is not None,
            )
            with torch.no_grad():
                conv.weight.copy_(W)
                if bias is not None:
                    conv.bias.copy_(bias)
            layers.append(conv.to(W.dtype))
        elif kind == "aten::max_pool2d":
            kernel, stride, padding, dilation, ceil_mode = rest
            layers.append(nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode))
        elif kind == "aten::avg_pool2d":
            layers.append(nn.AvgPool2d(*rest))
        elif kind in ("aten::relu", "aten::relu_"):
            layers.append(nn.ReLU())
        elif kind.removeprefix("aten::").removesuffix("_") in _CLAMPS:
            op = kind.removeprefix("aten::").removesuffix("_")
            layers.append(Clip(*_clamp_ends(op, rest, {})))
        elif kind == "aten::flatten":
            layers.append(nn.Flatten(*rest))
        elif kind in _FROZEN_IDENTITY:
            layers.append(nn.Identity())
        elif kind in _FROZEN_SQUASH and node.output().debugName() in returned:
            raise squashed(_FROZEN_SQUASH[kind], None, None, None, script=True)
        else:
            raise refuse(f"the operation {kind}")
        cur = node.output().debugName()
    if returned != [cur]:
        raise refuse("an output that is not the last layer's")
    return nn.Sequential(*layers)


def _pair(v):
    if v is None:
        return None
    return tuple(v) if isinstance(v, tuple | list) else (int(v), int(v))


# ----------------------------------------------------------------------------- targets
def _compile(
    b: _Builder,
    e: Expr,
    pos: dict[str, _Sym],
    last: frozenset[str] = frozenset(),
    rows: dict[Ref, int] | None = None,
) -> _Sym:
    """``e`` as rows of the network; ``last``: the layers whose units are the last axis of
    their output (:func:`inverset.model.units_last`); ``rows``: where a ref reads a layer
    kept only as the rows its refs read (``pos`` holds those rows, in this order)."""
    if not e.refs():
        val = e.evaluate({"out": torch.zeros(1, 1, dtype=DT)})
        return b.const(val.reshape(1), (1,))
    if isinstance(e, Const):
        return b.const(torch.tensor([e.value]), (1,))
    if isinstance(e, Ref):
        return _ref(b, e, pos, last, rows)
    if isinstance(e, Neg):
        return b.scale(_compile(b, e.arg, pos, last, rows), -1.0)
    if isinstance(e, BinOp):
        if e.op in "+-":
            left = _compile(b, e.left, pos, last, rows)
            b.keep(left)
            right = _compile(b, e.right, pos, last, rows)
            b.drop(left)
            return b.add(left, right, 1.0 if e.op == "+" else -1.0)
        const_r, const_l = not e.right.refs(), not e.left.refs()
        ctx = {"out": torch.zeros(1, 1, dtype=DT)}
        if e.op == "*" and (const_r or const_l):
            k = float((e.right if const_r else e.left).evaluate(ctx)[0])
            return b.scale(_compile(b, e.left if const_r else e.right, pos, last, rows), k)
        if e.op == "/" and const_r:
            k = float(e.right.evaluate(ctx)[0])
            if k == 0:
                raise InversetError(f"target {e} divides by zero; fix the constant")
            return b.scale(_compile(b, e.left, pos, last, rows), 1.0 / k)
        raise InversetError(
            f"target {e} multiplies or divides two network values, which is not piecewise "
            "linear; the exact solver needs constant factors (use --solver gradient)"
        )
    if isinstance(e, Func):
        parts = []
        for a in e.args:
            s = _compile(b, a, pos, last, rows)
            b.keep(s)
            parts.append(s)
        for s in parts:
            b.drop(s)
        return b.max_many(parts) if e.name == "max" else b.min_many(parts)
    raise InversetError(f"target {e} is not supported by the exact solver; use --solver gradient")


def _ref(
    b: _Builder,
    r: Ref,
    pos: dict[str, _Sym],
    last: frozenset[str],
    rows: dict[Ref, int] | None = None,
) -> _Sym:
    s = pos[r.layer]
    if rows and r in rows:
        return b.rows(s, torch.tensor([rows[r]]))
    if r.kind == "prob":
        raise InversetError(
            f"target {r} (a softmax/sigmoid probability) is not piecewise linear; use logit:k "
            "or margin:k with the exact solver, or --solver gradient"
        )
    if r.kind in ("out", "logit"):
        return b.rows(s, torch.tensor([r.index[0]]))
    if r.kind == "margin":
        k = r.index[0]
        others = [b.rows(s, torch.tensor([j])) for j in range(s.n) if j != k]
        mine = b.rows(s, torch.tensor([k]))
        if not others:
            return b.const(torch.zeros(1), (1,))
        b.keep(mine)
        m = b.max_many(others)
        b.drop(mine)
        return b.add(mine, m, -1.0)
    shape = s.shape
    if len(r.index) == 1 and len(shape) > 1:
        if r.layer in last:  # unit c of every position: every shape[-1]-th row from c
            idx = torch.arange(r.index[0], s.n, shape[-1])
        else:  # channel c: a contiguous block of positions
            per = int(np.prod(shape[1:]))
            idx = torch.arange(r.index[0] * per, (r.index[0] + 1) * per)
        A = torch.zeros(1, s.n, dtype=DT)
        A[0, idx] = 1.0 / len(idx)
        return b.affine(s, A, torch.zeros(1, dtype=DT), (1,))
    if len(r.index) == 1:
        return b.rows(s, torch.tensor([r.index[0]]))
    flat = int(np.ravel_multi_index(r.index, shape))
    return b.rows(s, torch.tensor([flat]))


def extract(
    model: nn.Module,
    input_shape: Sequence[int],
    exprs: Sequence[Expr],
    names: Sequence[str] | None = None,
) -> Network:
    """The Affine/ReLU chain computing ``exprs`` (one output row each) from the flat input."""
    layers = {layer for e in exprs for layer in e.layers()}
    refs = [r for e in exprs for r in e.refs()]
    # the output the query reads (named in an error): an out/prob/... ref, else a layer's
    ref = next((r for r in refs if r.kind != "layer"), refs[0] if refs else None)
    last = last_axis_layers(model, input_shape, sorted(layers - {"out"}))
    # a hidden layer read only by layer refs keeps just the rows they read: carrying all of
    # its units through the layers after it would widen every one of them (a conv channel of
    # 4096 activations took 3.4 s to compile, for one row)
    read: dict[str, list[Ref]] = {}
    for r in refs:
        if r.layer != "out" and r not in read.setdefault(r.layer, []):
            read[r.layer].append(r)
    reducible = {k for k, rs in read.items() if all(r.kind == "layer" for r in rs)}
    rows: dict[Ref, int] = {}

    def reduce(name: str, s: _Sym) -> _Sym:
        if name not in reducible:
            return s
        parts = [_ref(ex.b, r, {name: s}, last) for r in read[name]]
        rows.update({r: i for i, r in enumerate(read[name])})
        return ex.b.cat(parts)

    ex = _Extractor(
        model,
        tuple(input_shape),
        layers - {"out"},
        need_out="out" in layers,
        ref=ref,
        reduce=reduce,
    )
    pos = ex.run()
    b = ex.b
    outs = []
    for e in exprs:
        s = _compile(b, e, pos, last, rows)
        b.keep(s)
        outs.append(s)
    final = b.cat(outs)
    weights = [w.contiguous() for w in b.W] + [final.M.contiguous()]
    biases = [v.contiguous() for v in b.b] + [final.c.contiguous()]
    return Network(weights, biases, tuple(input_shape), list(names or [str(e) for e in exprs]))


# ----------------------------------------------------------------------------- heads
@dataclass
class Head:
    """A min/max tree over output rows: ``('leaf', i)``, ``('max', [...])``, ``('min', [...])``.

    Bounding the rows one by one and combining their bounds through the tree is much tighter
    than bounding a ReLU encoding of the same min/max (e.g. ``margin:k`` or VNN-LIB
    conjunctions)."""

    kind: str
    index: int = 0
    children: tuple[Head, ...] = ()

    def apply(self, rows: torch.Tensor) -> torch.Tensor:
        """The tree on per-row values [..., m] (values or per-row bounds) -> [...]."""
        if self.kind == "leaf":
            return rows[..., self.index]
        vals = torch.stack([c.apply(rows) for c in self.children], -1)
        return vals.amax(-1) if self.kind == "max" else vals.amin(-1)


def split_head(e: Expr, n_out: int) -> tuple[Head, list[Expr]]:
    """Top-level min/max structure of ``e`` (through negation, constant factors and offsets,
    and ``margin:k`` of a model with ``n_out`` outputs) as a :class:`Head` over leaf
    expressions without it."""
    leaves: list[Expr] = []

    def leaf(x: Expr) -> Head:
        leaves.append(x)
        return Head("leaf", len(leaves) - 1)

    def go(x: Expr, k: float, c: float) -> Head:
        # represents k * x + c
        if isinstance(x, Func) and len(x.args) > 1:
            kind = x.name if k >= 0 else ("min" if x.name == "max" else "max")
            return Head(kind, children=tuple(go(a, k, c) for a in x.args))
        if isinstance(x, Neg):
            return go(x.arg, -k, c)
        if isinstance(x, BinOp) and x.op == "*" and not x.left.refs():
            return go(x.right, k * constant_value(x.left), c)
        if isinstance(x, BinOp) and x.op in "*/" and not x.right.refs():
            v = constant_value(x.right)
            return go(x.left, k * (v if x.op == "*" else 1.0 / v), c)
        if isinstance(x, BinOp) and x.op in "+-" and not x.right.refs():
            s = 1.0 if x.op == "+" else -1.0
            return go(x.left, k, c + k * s * constant_value(x.right))
        if isinstance(x, BinOp) and x.op in "+-" and not x.left.refs():
            s = 1.0 if x.op == "+" else -1.0
            return go(x.right, s * k, c + k * constant_value(x.left))
        if isinstance(x, Ref) and x.kind == "margin":
            others = [j for j in range(n_out) if j != x.index[0]]
            if others:
                mine = Ref("out", "out", (x.index[0],))
                parts = tuple(BinOp("-", mine, Ref("out", "out", (j,))) for j in others)
                return go(Func("min", parts) if len(parts) > 1 else parts[0], k, c)
        return leaf(_affine(x, k, c))

    h = go(e, 1.0, 0.0)
    return h, leaves


def _affine(x: Expr, k: float, c: float) -> Expr:
    e = x if k == 1.0 else BinOp("*", Const(k), x)
    return e if c == 0.0 else BinOp("+", e, Const(c))
