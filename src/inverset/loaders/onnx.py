"""ONNX -> torch: an ``nn.Module`` that runs standard torch layers in the graph's order.

Our own converter (onnx2torch imports torchvision, which is not always importable beside a
CPU torch build). MatMul/Gemm (+ a bias Add) become ``nn.Linear``, Conv ``nn.Conv2d``,
Relu ``nn.ReLU`` ...; arithmetic with a constant becomes :class:`ConstOp`. Submodules are
named by kind and position (``linear1``, ``relu1``, ...) so targets read like ``linear3:0``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inverset.errors import InversetError


class ConstOp(nn.Module):
    """``x op c`` (or ``c op x`` when ``const_first``) for op in add/sub/mul/div."""

    def __init__(self, op: str, const: torch.Tensor, const_first: bool = False):
        super().__init__()
        self.op, self.const_first = op, const_first
        self.register_buffer("const", const)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = (self.const, x) if self.const_first else (x, self.const)
        return {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[self.op](
            a, b
        )

    def extra_repr(self) -> str:
        side = "c {} x" if self.const_first else "x {} c"
        return side.format(self.op) + f", const shape {tuple(self.const.shape)}"


class BinaryOp(nn.Module):
    """Elementwise op of two computed tensors (residual adds and the like)."""

    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return {
            "add": torch.add,
            "sub": torch.sub,
            "mul": torch.mul,
            "div": torch.div,
            "matmul": torch.matmul,
        }[self.op](a, b)


class Reshape(nn.Module):
    """Reshape keeping the batch axis (ONNX shapes name batch 1; we run any batch size)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rest = [x.shape[i + 1] if s == 0 else s for i, s in enumerate(self.shape[1:])]
        return x.reshape(x.shape[0], *rest)

    def extra_repr(self) -> str:
        return f"shape=(B, {', '.join(map(str, self.shape[1:]))})"


class Transpose(nn.Module):
    """ONNX Transpose; ``perm[0]`` is 0 (the batch axis stays first)."""

    def __init__(self, perm: tuple[int, ...]):
        super().__init__()
        self.perm = tuple(perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.perm)

    def extra_repr(self) -> str:
        return f"perm={list(self.perm)}"


class _OnnxAxes:
    """The axes of ONNX Softmax / LogSoftmax. Before opset 13 (``coerce_2d``) the input is
    seen as 2-D: the function runs over all axes from ``axis`` on together, not over ``axis``
    alone. ``fn`` is the torch function."""

    fn: Any

    def __init__(self, axis: int, coerce_2d: bool = False):
        super().__init__(axis)  # type: ignore[call-arg]  # nn.Softmax / nn.LogSoftmax (dim)
        self.axis, self.coerce_2d = axis, coerce_2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = type(self).fn
        if not self.coerce_2d:
            return fn(x, self.axis)
        return fn(x.flatten(self.axis % x.dim()), -1).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"axis={self.axis}" + (", coerce_2d=True" if self.coerce_2d else "")


class Softmax(_OnnxAxes, nn.Softmax):
    """ONNX Softmax (axes: :class:`_OnnxAxes`). An ``nn.Softmax`` subclass, so a model ending
    in one is known to output probabilities."""

    fn = torch.softmax
    computes_as = nn.Softmax  # its own forward only handles ONNX's axes


class LogSoftmax(_OnnxAxes, nn.LogSoftmax):
    """ONNX LogSoftmax (axes: :class:`_OnnxAxes`)."""

    fn = torch.log_softmax


class Squeeze(nn.Module):
    """ONNX Squeeze of non-batch ``axes`` (each of size 1, as ONNX requires)."""

    def __init__(self, axes: tuple[int, ...]):
        super().__init__()
        self.axes = tuple(axes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = sorted({a % x.dim() for a in self.axes})
        if 0 in axes or any(x.shape[a] != 1 for a in axes):
            raise RuntimeError(f"Squeeze of axes {list(self.axes)} of a tensor {tuple(x.shape)}")
        return x.squeeze(tuple(axes))

    def extra_repr(self) -> str:
        return f"axes={list(self.axes)}"


class Unsqueeze(nn.Module):
    """ONNX Unsqueeze: new axes of size 1 at ``axes`` of the output (never before the batch)."""

    def __init__(self, axes: tuple[int, ...]):
        super().__init__()
        self.axes = tuple(axes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = x.dim() + len(self.axes)
        for a in sorted(a % rank for a in self.axes):
            if a == 0:
                raise RuntimeError(f"Unsqueeze of axes {list(self.axes)} before the batch axis")
            x = x.unsqueeze(a)
        return x

    def extra_repr(self) -> str:
        return f"axes={list(self.axes)}"


class Slice(nn.Module):
    """ONNX Slice with constant starts, ends and positive steps, on non-batch axes."""

    def __init__(self, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int], steps):
        super().__init__()
        self.spec = [tuple(int(v) for v in t) for t in zip(axes, starts, ends, steps, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sl = [slice(None)] * x.dim()
        for a, start, end, step in self.spec:
            if a % x.dim() == 0:
                raise RuntimeError("Slice of the batch axis")
            sl[a % x.dim()] = slice(*slice(start, end, step).indices(x.shape[a]))
        return x[tuple(sl)]

    def extra_repr(self) -> str:
        return ", ".join(f"axis {a}: {s}:{e}:{st}" for a, s, e, st in self.spec)


class Cast(nn.Module):
    """ONNX Cast between float types: values are rounded to ``dtype`` (float16 and bfloat16
    lose digits, as in onnxruntime) and kept in the model's own float type."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype).to(x.dtype)

    def extra_repr(self) -> str:
        return str(self.dtype)


class Clip(nn.Module):
    """ONNX Clip (ReLU6, hardtanh), Max/Min with a constant (``torch.clamp`` to tensor
    bounds), and a TorchScript graph's clamping for the exact solver:
    ``min(max(x, low), high)``, an end None when not given (a number, or a tensor that
    broadcasts against ``x``)."""

    def __init__(self, low: float | torch.Tensor | None, high: float | torch.Tensor | None):
        super().__init__()
        for name, end in (("low", low), ("high", high)):
            if isinstance(end, torch.Tensor):  # a buffer: it moves with the model
                self.register_buffer(name, end)
            else:
                setattr(self, name, end)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.low, self.high)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class Erf(nn.Module):
    """ONNX Erf (inside the exact GELU of an opset-17 export)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


class Reduce(nn.Module):
    """ONNX ReduceMean / ReduceSum over non-batch ``axes`` (keeping them with ``keepdims``)."""

    def __init__(self, op: str, axes: tuple[int, ...], keepdims: bool):
        super().__init__()
        self.op, self.axes, self.keepdims = op, tuple(axes), keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = torch.mean if self.op == "mean" else torch.sum
        return fn(x, dim=self.axes, keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"{self.op}, axes={list(self.axes)}, keepdims={self.keepdims}"


class BatchNorm(nn.BatchNorm2d):
    """Inference BatchNormalization over dim 1 of an input of any rank >= 2.

    ONNX applies it to (B, C), (B, C, L) and (B, C, H, W) alike; ``F.batch_norm`` in eval
    mode does too, only ``BatchNorm2d`` insists on 4-D. A ``BatchNorm2d`` subclass so the
    exact solver still folds it as an affine layer."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input with 2 or more dimensions (got {input.dim()}D)")


class Concat(nn.Module):
    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, self.axis)


class OnnxModel(nn.Module):
    """Runs converted ONNX nodes in order; each node is a named submodule."""

    def __init__(
        self,
        steps: list[tuple[str, nn.Module, list[str], str]],
        input_name: str,
        output_name: str,
        input_shape: tuple[int, ...] | None,
        source: str,
    ):
        super().__init__()
        self.steps = [(name, ins, out) for name, _, ins, out in steps]
        for name, module, _, _ in steps:
            self.add_module(name, module)
        self.input_name, self.output_name = input_name, output_name
        self.input_shape = input_shape
        self.source = source

    @property
    def output_layer(self) -> nn.Module | None:
        """The layer computing the model's output (None when the output is the input)."""
        for name, _, out in reversed(self.steps):
            if out == self.output_name:
                return getattr(self, name)
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input_name: x}
        for name, ins, out in self.steps:
            env[out] = getattr(self, name)(*[env[i] for i in ins])
        return env[self.output_name]


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


#: how to avoid the Shape/Gather/Concat subgraph that ``x.view(x.size(0), -1)`` exports
_SHAPE_FIX = (
    "export with torch.flatten(x, 1) or nn.Flatten() instead of x.view(x.size(0), -1), "
    "or without dynamic_axes"
)
#: the fix for an operator the converter does not have
_EXPORT_FIX = (
    "export the model with supported operators (the README lists them), or load it as an "
    "nn.Module (--factory with a state dict)"
)
_MOVES = ("Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Reshape", "Identity")
#: ops evaluated at load time when all their inputs are constants (shape arithmetic; a
#: ReduceProd there is TensorFlow's flatten size)
_FOLD_OPS = (*_MOVES, "ReduceProd")
#: ops that only handle shapes (on a computed tensor: not supported)
_SHAPE_OPS = ("Gather", "Expand", "ConstantOfShape", "Range", "Size")
#: elementwise activations: ONNX op -> (layer kind, module factory from the attributes)
_ACTIVATIONS: dict[str, tuple[str, Any]] = {
    "Relu": ("relu", lambda at: nn.ReLU()),
    "Sigmoid": ("sigmoid", lambda at: nn.Sigmoid()),
    "Tanh": ("tanh", lambda at: nn.Tanh()),
    "LeakyRelu": ("leakyrelu", lambda at: nn.LeakyReLU(at.get("alpha", 0.01))),
    "Elu": ("elu", lambda at: nn.ELU(at.get("alpha", 1.0))),
    "Softplus": ("softplus", lambda at: nn.Softplus()),
    "Erf": ("erf", lambda at: Erf()),
    "Gelu": ("gelu", lambda at: nn.GELU(_text(at.get("approximate", "none")))),
}
#: the layer operators the converter reads (besides the shape arithmetic it folds)
_LAYER_OPS = (
    *("Gemm", "MatMul", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool"),
    *("GlobalMaxPool", "BatchNormalization", *_ACTIVATIONS, "Clip", "Max", "Min", "Softmax"),
    "LogSoftmax",
    *("ReduceMean", "ReduceSum", "Add", "Sub", "Mul", "Div", "Concat", "Flatten", "Reshape"),
    *("Transpose", "Squeeze", "Unsqueeze", "Slice", "Cast", "Identity", "Dropout"),
)
#: every operator the converter has a rule for (shape ops: on shapes only)
_READ_OPS = {*_LAYER_OPS, *_FOLD_OPS, *_SHAPE_OPS, "Constant", "Shape"}
#: ops a graph whose input has no batch axis may hold: they act on the last axis or on each
#: value, so the converter runs them on a batch as the graph runs one input
_UNBATCHED_OPS = {
    *_ACTIVATIONS,
    *("MatMul", "Add", "Sub", "Mul", "Div", "Clip", "Softmax", "LogSoftmax"),
    *("Identity", "Dropout", "Cast", "Constant"),
}
#: ONNX float types by TensorProto code -> torch dtype (a Cast between them is kept)
_FLOATS = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def _opset(proto: Any) -> int:
    """The default-domain opset of a model (it fixes defaults such as Softmax's axis)."""
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 13


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _constant(at: dict[str, Any], where: str) -> np.ndarray:
    """The tensor of a Constant node, whichever of its value attributes holds it."""
    from onnx import numpy_helper

    if "value" in at:
        return numpy_helper.to_array(at["value"])
    for key, dtype in (
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
    ):
        if key in at:
            return np.array(at[key], dtype=dtype)
    kind = next(iter(at), "no value")
    raise InversetError(
        f"{where}: Constant given by {kind} is not supported; store it as a numeric tensor "
        "(Constant value=... or an initializer)"
    )


def _bias(c: np.ndarray, n: int, real: type) -> np.ndarray | None:
    """A constant bias as one value per output (shape (n,)) of float type ``real``, or None
    when it varies along another axis than the last (e.g. per batch row) and so cannot be a
    Linear's bias."""
    c = np.asarray(c, dtype=real)
    if c.ndim == 0 or (all(d == 1 for d in c.shape[:-1]) and c.shape[-1] in (1, n)):
        return np.broadcast_to(c.reshape(-1), (n,)).copy()
    return None


def _fold(
    op: str, args: list[tuple[np.ndarray, np.ndarray] | None], at: dict[str, Any], opset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate a shape op on constants. Each value comes with a mask that marks the
    entries holding the batch size (taken from a Shape node), which follow the values."""
    from onnx import helper

    x, xm = args[0]

    def arg(i: int) -> np.ndarray | None:
        return args[i][0] if len(args) > i and args[i] is not None else None

    if op == "Identity":
        return x, xm
    if op == "Cast":
        return x.astype(helper.tensor_dtype_to_np_dtype(at["to"])), xm
    if op == "Gather":
        idx, axis = arg(1).astype(np.int64), at.get("axis", 0)
        return np.take(x, idx, axis=axis), np.take(xm, idx, axis=axis)
    if op == "Unsqueeze":
        axes = tuple(int(a) for a in (at["axes"] if opset < 13 else arg(1)))
        return np.expand_dims(x, axes), np.expand_dims(xm, axes)
    if op == "Squeeze":
        axes = at.get("axes") if opset < 13 else arg(1)
        if axes is None:
            axes = [i for i, d in enumerate(x.shape) if d == 1]
        axes = tuple(int(a) for a in axes)
        return np.squeeze(x, axes), np.squeeze(xm, axes)
    if op == "Concat":
        parts = [a for a in args if a is not None]
        axis = at.get("axis", 0)
        return (
            np.concatenate([p[0] for p in parts], axis),
            np.concatenate([p[1] for p in parts], axis),
        )
    if op == "Slice":
        if opset < 10:
            starts, ends, axes, steps = at["starts"], at["ends"], at.get("axes"), None
        else:
            starts, ends, axes, steps = arg(1), arg(2), arg(3), arg(4)
        axes = range(len(starts)) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        sl = [slice(None)] * x.ndim
        for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
            sl[int(a)] = slice(int(s), int(e), int(st))
        return x[tuple(sl)], xm[tuple(sl)]
    if op == "Reshape":
        shape = [int(s) for s in arg(1)]
        if not at.get("allowzero", 0):
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return x.reshape(shape), xm.reshape(shape)
    if op == "ReduceProd":  # TensorFlow exports flatten to prod(shape[1:])
        axes = at.get("axes") if opset < 18 else arg(1)
        if axes is None or len(axes) == 0:
            if at.get("noop_with_empty_axes", 0):
                return x, xm
            axes = range(x.ndim)
        axes, keep = tuple(int(a) for a in axes), bool(at.get("keepdims", 1))
        return np.prod(x, axis=axes, keepdims=keep), np.any(xm, axis=axes, keepdims=keep)
    raise AssertionError(op)


def load_onnx(path: str | Path) -> OnnxModel:
    """Convert an ONNX file to an :class:`OnnxModel` (batch axis free): float64 when the
    graph's input is declared DOUBLE, else float32."""
    try:
        import onnx
        from onnx import numpy_helper
    except ModuleNotFoundError:
        raise InversetError(
            "reading ONNX files needs the 'onnx' package; pip install 'inverset[onnx]'"
        ) from None
    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise InversetError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    g = proto.graph
    unread = list(dict.fromkeys(n.op_type for n in g.node if n.op_type not in _READ_OPS))
    if unread:  # named before any advice on the shapes or transposes around them
        raise InversetError(
            f"{path}: the ONNX graph uses {', '.join(unread)}, which inverset's converter does "
            f"not read (it reads {', '.join(_LAYER_OPS)} and shape arithmetic); {_EXPORT_FIX}"
        )
    opset = _opset(proto)
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    # folded shape values: True where an entry is the batch size (free at run time)
    masks: dict[str, np.ndarray] = {}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        fix = (
            "export a model whose forward takes one tensor (e.g. a wrapper module fixing the "
            "other inputs as constants)"
            if len(inputs) != 1
            else "export a model whose forward returns the one output to study (e.g. a "
            "wrapper module whose forward(x) returns model(x)[0])"
        )
        raise InversetError(
            f"{path}: inverset reads ONNX graphs with one input and one output "
            f"(found {len(inputs)} inputs, {len(g.output)} outputs); {fix}"
        )
    x_in, y_out = inputs[0], g.output[0].name
    in_type = x_in.type.tensor_type
    # the model's float type, for every weight, constant and buffer: a DOUBLE input keeps
    # the graph in float64 (rounding it to float32 changed its optimum in the 7th digit)
    double = in_type.elem_type == onnx.TensorProto.DOUBLE
    dtype, real = (torch.float64, np.float64) if double else (torch.float32, np.float32)
    in_dims = [d.dim_value if d.dim_value > 0 else None for d in in_type.shape.dim]
    declared = "[" + ", ".join(str(d.dim_value or d.dim_param or "?") for d in in_type.shape.dim)
    declared += "]"
    # an input [n] without a batch axis: run as (B, n) when every op acts on the last axis
    unbatched = in_type.HasField("shape") and len(in_dims) <= 1
    if unbatched and (not in_dims or in_dims[0] is None):
        raise InversetError(
            f"{path}: input {x_in.name!r} is declared {declared}, with no feature axis of "
            "fixed size; export it with a batch axis first and fixed feature sizes, e.g. "
            "from an input of shape (1, n) with dynamic_axes on axis 0"
        )
    input_shape: tuple[int, ...] | None
    if unbatched:
        input_shape = (int(in_dims[0]),)
    elif not in_type.HasField("shape") or None in in_dims[1:]:
        input_shape = None  # the file leaves it free: the user gives it (--input-shape)
    else:
        input_shape = tuple(int(d) for d in in_dims[1:])
    batch_one = not unbatched and bool(in_dims) and in_dims[0] == 1
    try:  # ranks and sizes of intermediate tensors, where ONNX's shape inference knows them
        inferred = onnx.shape_inference.infer_shapes(proto).graph
        infos = [*inferred.value_info, *inferred.input, *inferred.output]
    except Exception:
        infos = []
    known = {
        v.name: [d.dim_value if d.dim_value > 0 else None for d in v.type.tensor_type.shape.dim]
        for v in infos
        if v.type.tensor_type.HasField("shape")
    }
    uses = Counter(i for n in g.node for i in n.input)
    counts: Counter = Counter()
    steps: list[tuple[str, nn.Module, list[str], str]] = []
    nodes = list(g.node)
    # x transposed to (features, batch) for a weight-first MatMul/Gemm: name -> x
    batch_last: dict[str, str] = {}

    def add(kind: str, module: nn.Module, ins: list[str], out: str) -> None:
        counts[kind] += 1
        steps.append((f"{kind}{counts[kind]}", module, ins, out))

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(a, dtype=real))

    def folded(name: str) -> tuple[np.ndarray, np.ndarray]:
        value = np.asarray(consts[name])
        return value, masks.get(name, np.zeros(value.shape, dtype=bool))

    def shape_of(
        name: str, where: str, need: str | None = None, fix: str = "explicit pads"
    ) -> tuple[int, ...]:
        """Shape of a computed tensor, from a run of the nodes converted so far on a batch
        of 2 (the Shape node then reads the batch size at run time, the rest is fixed).
        ``need``: what asks for it, when not a Shape node (SAME padding); ``fix``: how to
        do without it."""
        if input_shape is None:
            if need is not None:
                raise InversetError(
                    f"{where}: {need} needs the input's size, which the ONNX file leaves free; "
                    f"export with a fixed input size or {fix}"
                )
            raise InversetError(
                f"{where}: Shape of a tensor when the input has dynamic non-batch axes is "
                f"not supported; {_SHAPE_FIX}"
            )
        env = {x_in.name: torch.zeros(2, *input_shape, dtype=dtype)}
        with torch.no_grad():
            for _, module, step_ins, step_out in steps:
                env[step_out] = module(*[env[i] for i in step_ins])
        shape = tuple(env[name].shape)
        if not shape or shape[0] != 2:
            raise InversetError(
                f"{where}: Shape of a tensor whose first axis is not the batch is not "
                f"supported; {_SHAPE_FIX}"
            )
        return shape

    def rank(name: str) -> int | None:
        if name in known:
            return len(known[name])
        try:
            return len(shape_of(name, str(path))) if input_shape is not None else None
        except InversetError:
            return None

    def sizes(name: str, where: str, need: str, fix: str) -> list[int | None]:
        """The non-batch sizes of a computed tensor (None where unknown)."""
        if input_shape is not None:
            return list(shape_of(name, where, need, fix)[1:])
        if name in known:
            return known[name][1:]
        return list(shape_of(name, where, need, fix)[1:])

    def axes_of(
        op: str, raw: Any, r: int | None, where: str, fix: str, batch_ok: bool = False
    ) -> tuple[int, ...]:
        """``raw`` axes, non-negative when the rank ``r`` is known; an axis 0 (the batch) is
        a one-line error unless ``batch_ok``."""
        axes = tuple(int(a) for a in np.ravel(raw))
        if r is not None:
            axes = tuple(a % r for a in axes)
        if not batch_ok and 0 in axes:
            raise InversetError(
                f"{where}: {op} over axis 0, the batch axis, mixes the samples of a batch, which "
                f"inverset cannot run per sample; {fix}"
            )
        return axes

    def operand(i: int, ins: list[str], at: dict[str, Any], key: str) -> Any:
        """A constant operand given as input ``i`` (newer opsets) or attribute ``key``."""
        if len(ins) > i and ins[i]:
            if ins[i] not in consts:
                raise InversetError(
                    f"{path}: an operator's {key} is computed from the input ({ins[i]!r}), "
                    f"which inverset's converter does not support; export it as a constant"
                )
            return consts[ins[i]]
        return at.get(key)

    def linear(w: np.ndarray, bias: np.ndarray | None) -> nn.Linear:
        """``nn.Linear`` with weight ``w`` (out, in) and ``bias`` (out,) or None."""
        lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(t(w))
            if bias is not None:
                lin.bias.copy_(t(bias))
        return lin

    skip: set[int] = set()
    for k, node in enumerate(nodes):
        if k in skip:
            continue
        op, ins, out, at = node.op_type, list(node.input), node.output[0], _attrs(node)
        where = f"{path}: node {node.name or out!r} ({op})"
        dyn = [i for i in ins if i and i not in consts]
        if op == "Constant":
            consts[out] = _constant(at, where)
            continue
        if op == "Shape":
            if dyn:
                vals = np.array(shape_of(dyn[0], where), dtype=np.int64)
            else:
                vals = np.array(np.shape(consts[ins[0]]), dtype=np.int64)
            mask = (np.arange(len(vals)) == 0) if dyn else np.zeros(len(vals), dtype=bool)
            sl = slice(at.get("start", 0), at.get("end"))
            consts[out], masks[out] = vals[sl], mask[sl]
            continue
        if dyn == [] and op in _FOLD_OPS:
            args = [folded(i) if i else None for i in ins]
            try:
                consts[out], masks[out] = _fold(op, args, at, opset)
            except (ValueError, IndexError, KeyError, TypeError) as exc:
                raise InversetError(
                    f"{where}: cannot evaluate this shape computation ({type(exc).__name__}); "
                    f"{_SHAPE_FIX}"
                ) from None
            continue
        if op != "Reshape" and any(masks[i].any() for i in ins if i in masks):
            raise InversetError(
                f"{where}: {op} of a value computed from the batch size is not supported; "
                f"{_SHAPE_FIX}"
            )
        if unbatched and op not in _UNBATCHED_OPS:
            raise InversetError(
                f"{where}: input {x_in.name!r} is declared {declared}, without a batch axis, "
                f"and inverset runs such a graph on batches only when its operators act on "
                f"the last axis or on each value ({op} is not one); export the model from an "
                "input with a batch axis, e.g. of shape (1, n) with dynamic_axes on axis 0"
            )
        if op in ("MatMul", "Gemm") and len(dyn) == 1 and ins[0] == dyn[0]:
            w = consts[ins[1]].astype(real)
            if w.ndim != 2:
                raise InversetError(f"{where}: only a 2-D weight is supported (got {w.shape})")
            n_out = w.shape[0] if op == "Gemm" and at.get("transB", 0) else w.shape[1]
            bias = None
            if op == "Gemm":
                if at.get("transA", 0):
                    raise InversetError(
                        f"{where}: Gemm with transA=1 (the input transposed, its batch axis "
                        "last) is not supported; export as x @ W.T (nn.Linear)"
                    )
                w = w if at.get("transB", 0) else w.T
                w = w * at.get("alpha", 1.0)
                if len(ins) > 2 and ins[2]:
                    c = consts[ins[2]]
                    bias = _bias(c, n_out, real)
                    if bias is None:
                        raise InversetError(
                            f"{where}: bias C of shape {tuple(np.shape(c))} does not broadcast "
                            f"to ({n_out},); export the bias with one value per output"
                        )
                    bias = bias * at.get("beta", 1.0)
            else:
                w = w.T  # MatMul(x, W): W is (in, out)
                nxt = k + 1
                if (
                    nxt < len(nodes)
                    and nodes[nxt].op_type == "Add"
                    and uses[out] == 1
                    and out in nodes[nxt].input
                ):
                    other = [i for i in nodes[nxt].input if i != out]
                    if other and other[0] in consts and other[0] not in masks:
                        c = consts[other[0]]
                        bias = _bias(c, n_out, real) if not unbatched or c.ndim <= 1 else None
                        if bias is not None:
                            skip.add(nxt)
                            out = nodes[nxt].output[0]
            add("linear", linear(w, bias), dyn, out)
        elif op in ("MatMul", "Gemm") and len(dyn) == 1 and ins[1] == dyn[0]:
            # the weight first: W x of an input without batch axis, else W xT (batch last)
            w = consts[ins[0]].astype(real)
            trans_x = bool(at.get("transB", 0)) != (dyn[0] in batch_last)
            src = batch_last.get(dyn[0], dyn[0])
            head = f"{where}: {op} with the weight as first operand"
            if w.ndim != 2:
                raise InversetError(f"{head} is supported for a 2-D weight only (got {w.shape})")
            if not unbatched and not (trans_x and out == y_out and uses[out] == 0):
                why = (
                    "a product of the weight with the batch axis"
                    if not trans_x
                    else (
                        "its output has the batch axis last, which inverset runs only as the "
                        "graph's output"
                    )
                )
                raise InversetError(
                    f"{head} (W x^T) is not supported here ({why}); only this operand order "
                    "is the problem: export as x @ W.T (nn.Linear)"
                )
            bias = None
            if op == "Gemm":
                w = (w.T if at.get("transA", 0) else w) * at.get("alpha", 1.0)
                if len(ins) > 2 and ins[2]:
                    c = np.asarray(consts[ins[2]], dtype=real)
                    if c.size != 1 and c.shape != (w.shape[0], 1):
                        raise InversetError(
                            f"{head}: bias C of shape {c.shape} is not one value per output "
                            f"row ({w.shape[0]}, 1); export as x @ W.T + b (nn.Linear)"
                        )
                    bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * at.get("beta", 1.0)
            add("linear", linear(w, bias), [src], out)
        elif op in ("Add", "Sub", "Mul", "Div") and len(dyn) == 1:
            cname = next(i for i in ins if i != dyn[0])
            if unbatched and np.ndim(consts[cname]) > 1:
                raise InversetError(
                    f"{where}: a constant of shape {np.shape(consts[cname])} on an input "
                    f"declared {declared}, without a batch axis, is not supported; export the "
                    "model from an input with a batch axis, e.g. of shape (1, n)"
                )
            add(
                op.lower(),
                ConstOp(op.lower(), t(consts[cname]), const_first=ins[0] == cname),
                dyn,
                out,
            )
        elif op in ("Add", "Sub", "Mul", "Div", "MatMul") and len(dyn) == 2:
            if unbatched and op == "MatMul":
                raise InversetError(
                    f"{where}: MatMul of two computed tensors on an input declared {declared}, "
                    "without a batch axis, is not supported; export the model from an input "
                    "with a batch axis, e.g. of shape (1, n)"
                )
            add(op.lower(), BinaryOp(op.lower()), dyn, out)
        elif op in _ACTIVATIONS:
            kind, make = _ACTIVATIONS[op]
            add(kind, make(at), dyn, out)
        elif op == "Clip":
            low, high = operand(1, ins, at, "min"), operand(2, ins, at, "max")
            ends = [None if v is None or abs(float(v)) >= 3.4e38 else float(v) for v in (low, high)]
            add("clip", Clip(*ends), dyn[:1], out)
        elif op in ("Max", "Min"):  # torch.clamp to tensor bounds: a Clip of each value
            if len(ins) != 2 or len(dyn) != 1:
                raise InversetError(
                    f"{where}: {op} of {len(dyn)} computed tensors and {len(ins) - len(dyn)} "
                    "constants is not supported, only of a tensor and a constant (torch.clamp)"
                )
            c = t(consts[next(i for i in ins if i != dyn[0])])
            add("clip", Clip(c, None) if op == "Max" else Clip(None, c), dyn, out)
        elif op in ("Softmax", "LogSoftmax"):
            # before opset 13: axis 1 by default, over the input flattened to 2-D from axis
            coerce = opset < 13
            axis = int(at.get("axis", 1 if coerce else -1))
            if unbatched:  # a 1-D tensor has the one axis, the last one run on a batch
                axis, coerce = -1, False
            else:
                axis = axes_of(op, axis, rank(dyn[0]), where, "export it over axis 1 or -1")[0]
            cls = Softmax if op == "Softmax" else LogSoftmax
            add(op.lower(), cls(axis, coerce), dyn, out)
        elif op == "Flatten":
            axis = int(at.get("axis", 1))
            r = rank(dyn[0])
            if axis < 0 and r is None:
                raise InversetError(
                    f"{where}: Flatten with axis={axis} of a tensor of unknown rank is not "
                    "supported; export with torch.flatten(x, 1) or nn.Flatten()"
                )
            a = axis % r if r is not None and axis < 0 else axis
            per_sample = a == 1 or (a == 0 and batch_one)
            if a >= 2:
                need = f"Flatten with axis={axis}"
                per_sample = sizes(dyn[0], where, need, "axis=1")[: a - 1] == [1] * (a - 1)
            if not per_sample:
                merged = {0: "the whole batch into one row", 2: "the batch axis with axis 1"}
                raise InversetError(
                    f"{where}: Flatten with axis={axis} merges "
                    f"{merged.get(a, f'the batch axis with axes 1 to {a - 1}')}, which "
                    "inverset cannot run per sample; export with torch.flatten(x, 1) or "
                    "nn.Flatten() (Flatten axis=1)"
                )
            add("flatten", nn.Flatten(1), dyn, out)
        elif op == "Reshape":
            shape, batch = folded(ins[1])
            if batch[1:].any():
                raise InversetError(
                    f"{where}: a Reshape that moves the batch size off the first axis is not "
                    f"supported; {_SHAPE_FIX}"
                )
            shape = tuple(int(s) for s in shape)
            if input_shape is not None:  # each sample must keep its own values
                before = shape_of(dyn[0], where)[1:]
                rest = [
                    before[i] if s == 0 and i < len(before) else s for i, s in enumerate(shape[1:])
                ]
                n, fixed = math.prod(before), math.prod(s for s in rest if s != -1)
                if (n != fixed) if -1 not in rest else (fixed == 0 or n % fixed):
                    raise InversetError(
                        f"{where}: Reshape to {list(shape)} moves values across the batch "
                        f"axis (a sample holds {n} values here), which inverset cannot run "
                        "per sample; export with torch.flatten(x, 1) or "
                        "x.reshape(x.size(0), ...)"
                    )
            add("reshape", Reshape(shape), dyn[:1], out)
        elif op in ("Identity", "Dropout"):
            add("identity", nn.Identity(), dyn[:1], out)
        elif op == "Cast":
            to = int(at["to"])
            if to not in _FLOATS:
                from onnx import TensorProto

                raise InversetError(
                    f"{where}: Cast of a computed tensor to {TensorProto.DataType.Name(to)} is "
                    "not supported (inverset searches float inputs, and a cast to an integer or "
                    "boolean type has no gradient); export the model without it"
                )
            add("cast", Cast(_FLOATS[to]), dyn, out)
        elif op in ("Squeeze", "Unsqueeze"):
            raw = operand(1, ins, at, "axes") if opset >= 13 else at.get("axes")
            r = rank(dyn[0])
            fix = f"export with x.{op.lower()}(dim) for a dim other than 0"
            if op == "Unsqueeze":
                r_out = None if r is None else r + len(np.ravel(raw))
                add("unsqueeze", Unsqueeze(axes_of(op, raw, r_out, where, fix)), dyn[:1], out)
                continue
            if raw is None:  # every axis of size 1
                need = "Squeeze without axes"
                found = sizes(dyn[0], where, need, "x.squeeze(dim)")
                if None in found:
                    raise InversetError(
                        f"{where}: {need} of a tensor whose sizes the ONNX file leaves free is "
                        "not supported; export with x.squeeze(dim)"
                    )
                if batch_one and (out != y_out or uses[out]):
                    raise InversetError(
                        f"{where}: {need} also drops the batch axis (declared of size 1), which "
                        "inverset cannot run per sample; export with x.squeeze(dim)"
                    )
                raw = [i + 1 for i, d in enumerate(found) if d == 1]
            add("squeeze", Squeeze(axes_of(op, raw, r, where, fix)), dyn[:1], out)
        elif op == "Slice":
            if any(i not in consts for i in ins[1:] if i):
                raise InversetError(
                    f"{where}: Slice with computed starts or ends is not supported; export "
                    "with constant bounds (x[:, a:b])"
                )
            if opset < 10:
                starts, ends, axes, steps_ = at["starts"], at["ends"], at.get("axes"), None
            else:
                starts, ends = consts[ins[1]], consts[ins[2]]
                axes, steps_ = operand(3, ins, at, "-"), operand(4, ins, at, "-")
            starts, ends = np.ravel(starts), np.ravel(ends)
            axes = range(len(starts)) if axes is None else axes
            steps_ = [1] * len(starts) if steps_ is None else np.ravel(steps_)
            fix = "slice the features only (x[:, a:b])"
            axes = axes_of(op, axes, rank(dyn[0]), where, fix, batch_ok=True)
            spec = []
            for a, s0, e0, st in zip(axes, starts, ends, steps_, strict=True):
                if st <= 0:
                    raise InversetError(
                        f"{where}: Slice with step {int(st)} is not supported (torch slices "
                        "forward only); export with torch.flip and a positive step"
                    )
                if a == 0 and not (s0 == 0 and st == 1 and e0 >= 2**31 - 1):
                    raise InversetError(
                        f"{where}: Slice of axis 0, the batch axis, picks samples of a batch, "
                        f"which inverset cannot run per sample; {fix}"
                    )
                if a != 0:
                    spec.append((a, int(s0), int(e0), int(st)))
            if not spec:
                add("identity", nn.Identity(), dyn[:1], out)
                continue
            a_, s_, e_, st_ = zip(*spec, strict=True)
            add("slice", Slice(s_, e_, a_, st_), dyn[:1], out)
        elif op in ("ReduceMean", "ReduceSum"):
            new_api = opset >= (18 if op == "ReduceMean" else 13)
            raw = operand(1, ins, at, "-") if new_api else at.get("axes")
            keep = bool(at.get("keepdims", 1))
            if raw is None or np.size(raw) == 0:
                if at.get("noop_with_empty_axes", 0):
                    add("identity", nn.Identity(), dyn[:1], out)
                    continue
                raw = [0]  # every axis, the batch's too
            fix = "reduce over the non-batch axes only, e.g. x.mean((2, 3))"
            axes = axes_of(op, raw, rank(dyn[0]), where, fix)
            kind = "mean" if op == "ReduceMean" else "sum"
            add(f"reduce{kind}", Reduce(kind, axes, keep), dyn[:1], out)
        elif op == "Transpose":
            r = rank(dyn[0])
            perm = list(at["perm"]) if "perm" in at else None
            if perm is None and r is not None:
                perm = list(reversed(range(r)))
            users = [n for n in nodes if out in n.input]
            if perm == [1, 0] and out != y_out and len(users) == 1:
                nxt = list(users[0].input)
                if users[0].op_type in ("MatMul", "Gemm") and nxt[1] == out and nxt[0] in consts:
                    batch_last[out] = dyn[0]  # a weight-first product below takes x itself
                    continue
            if perm is None or perm[0] != 0:
                raise InversetError(
                    f"{where}: Transpose with perm={perm} moves the batch axis (axis 0), which "
                    "inverset cannot run per sample; keep the batch axis first, e.g. "
                    "x.permute(0, 2, 3, 1)"
                )
            add("transpose", Transpose(tuple(perm)), dyn, out)
        elif op == "Concat":
            if len(dyn) != len(ins):
                raise InversetError(f"{where}: Concat with constant inputs is not supported")
            fix = "concatenate along a feature axis (dim=1)"
            axis = axes_of(op, at.get("axis", 1), rank(dyn[0]), where, fix)[0]
            add("concat", Concat(axis), dyn, out)
        elif op == "Conv":
            w = consts[ins[1]]
            if w.ndim != 4:
                raise InversetError(f"{where}: only 2-D Conv is supported (weight {w.shape})")
            mode = _text(at.get("auto_pad", "NOTSET"))
            if mode not in ("NOTSET", "VALID", *SAME):
                raise InversetError(f"{where}: Conv auto_pad={mode} is not supported")
            pads = [0, 0, 0, 0] if mode == "VALID" else list(at.get("pads", [0, 0, 0, 0]))
            if mode in SAME:
                if any(int(d) != 1 for d in at.get("dilations", [1, 1])):
                    raise InversetError(
                        f"{where}: Conv auto_pad={mode} with dilations is not supported (nor "
                        "by onnxruntime); export with explicit pads"
                    )
                pads = same_pads(
                    mode,
                    shape_of(dyn[0], where, f"Conv auto_pad={mode}")[2:],
                    w.shape[2:],
                    at.get("strides", [1, 1]),
                    at.get("dilations", [1, 1]),
                )
            sym = pads[0] == pads[2] and pads[1] == pads[3]
            has_bias = len(ins) > 2 and bool(ins[2])
            conv = nn.Conv2d(
                w.shape[1] * at.get("group", 1),
                w.shape[0],
                tuple(w.shape[2:]),
                stride=tuple(at.get("strides", [1, 1])),
                padding=(pads[0], pads[1]) if sym else 0,
                dilation=tuple(at.get("dilations", [1, 1])),
                groups=at.get("group", 1),
                bias=has_bias,
                dtype=dtype,
            )
            with torch.no_grad():
                conv.weight.copy_(t(w))
                if has_bias:
                    conv.bias.copy_(t(consts[ins[2]]))
            if not sym:
                add("pad", _Pad((pads[1], pads[3], pads[0], pads[2])), dyn, out + "__pad")
                dyn = [out + "__pad"]
            add("conv", conv, dyn, out)
        elif op == "BatchNormalization":
            if at.get("training_mode", 0) or not at.get("spatial", 1):
                bad = "training_mode=1" if at.get("training_mode", 0) else "spatial=0"
                raise InversetError(
                    f"{where}: BatchNormalization with {bad} is not supported; export the "
                    "model in eval mode"
                )
            scale, bias, mean, var = (t(consts[i]) for i in ins[1:5])
            bn = BatchNorm(scale.shape[0], eps=at.get("epsilon", 1e-5), dtype=dtype)
            with torch.no_grad():
                bn.weight.copy_(scale)
                bn.bias.copy_(bias)
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
            bn.eval()
            add("batchnorm", bn, dyn, out)
        elif op in ("MaxPool", "AveragePool"):
            mode = _text(at.get("auto_pad", "NOTSET"))
            size = shape_of(dyn[0], where, f"{op} auto_pad={mode}")[2:] if mode in SAME else None
            add(*_pool(op, at, node, where, size), dyn, out)
        elif op in ("GlobalAveragePool", "GlobalMaxPool"):
            r = rank(dyn[0])
            if r not in (3, 4, None):
                raise InversetError(f"{where}: {op} of a {r}-D tensor is not supported")
            kind = "avgpool" if op == "GlobalAveragePool" else "maxpool"
            pool = {
                ("avgpool", 3): nn.AdaptiveAvgPool1d,
                ("maxpool", 3): nn.AdaptiveMaxPool1d,
                ("avgpool", 4): nn.AdaptiveAvgPool2d,
                ("maxpool", 4): nn.AdaptiveMaxPool2d,
            }[kind, r or 4]
            add(kind, pool(1), dyn, out)
        elif op in _SHAPE_OPS:
            raise InversetError(
                f"{where}: ONNX operator {op} of a computed tensor (not of a shape) is not "
                f"supported; {_EXPORT_FIX}"
            )
        else:
            raise InversetError(
                f"{path}: ONNX operator {op} is not supported by inverset's converter; "
                f"{_EXPORT_FIX}"
            )
    model = OnnxModel(steps, x_in.name, y_out, input_shape, str(path))
    model.eval()
    return model


#: ONNX auto_pad modes that pad to an output of ceil(size / stride)
SAME = ("SAME_UPPER", "SAME_LOWER")


def same_pads(
    mode: str,
    size: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[int]:
    """ONNX ``auto_pad=SAME_UPPER/SAME_LOWER`` as explicit pads ``[top, left, bottom, right]``
    for an input of spatial ``size``: an output of ``ceil(size / stride)``, the odd extra
    row or column at the end (UPPER) or at the start (LOWER)."""
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        total = max((-(-int(n) // int(s)) - 1) * int(s) + (int(k) - 1) * int(d) + 1 - int(n), 0)
        small, big = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else big)
        end.append(big if mode == "SAME_UPPER" else small)
    return begin + end


def _pool(
    op: str, at: dict[str, Any], node: Any, where: str, size: Sequence[int] | None = None
) -> tuple[str, nn.Module]:
    """MaxPool/AveragePool as ``nn.MaxPool2d``/``nn.AvgPool2d`` with the ONNX defaults
    (stride 1, no padding, no dilation); ``size`` (the input's height and width) resolves
    SAME padding. What torch cannot match is an error."""
    kernel = tuple(int(k) for k in at["kernel_shape"])
    if len(kernel) != 2:
        raise InversetError(f"{where}: only 2-D pooling is supported (kernel {kernel})")
    mode = _text(at.get("auto_pad", "NOTSET"))
    if mode not in ("NOTSET", "VALID", *SAME):
        raise InversetError(f"{where}: {op} auto_pad={mode} is not supported")
    pads = [0, 0, 0, 0] if mode == "VALID" else [int(p) for p in at.get("pads", [0, 0, 0, 0])]
    dilation = tuple(int(d) for d in at.get("dilations", [1, 1]))
    if mode in SAME:
        assert size is not None
        if dilation != (1, 1):  # onnxruntime pads as if undilated, against the spec
            raise InversetError(
                f"{where}: {op} auto_pad={mode} with dilations is not supported (runtimes "
                "disagree on its padding); export with explicit pads"
            )
        pads = same_pads(mode, size, kernel, at.get("strides", [1, 1]), dilation)
    if op == "AveragePool" and dilation != (1, 1):
        raise InversetError(
            f"{where}: AveragePool with dilations={list(dilation)} is not supported; "
            "export it without dilation"
        )
    reach = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    if any(p >= r for p, r in zip(pads, reach + reach, strict=True)):
        raise InversetError(
            f"{where}: {op} pads {pads} as large as the kernel are not supported (a window "
            "could hold only padding)"
        )
    if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        raise InversetError(f"{where}: MaxPool's Indices output is not supported")
    stride = tuple(int(s) for s in at.get("strides", [1, 1]))
    ceil_mode = bool(at.get("ceil_mode", 0))
    include_pad = bool(at.get("count_include_pad", 0))
    even = pads[0] == pads[2] and pads[1] == pads[3]
    if not even or any(2 * p > r for p, r in zip(pads[:2], reach, strict=True)):
        # torch pools pad the same on both sides, at most half the kernel: pad explicitly
        if ceil_mode:
            raise InversetError(
                f"{where}: {op} with ceil_mode=1 and pads {pads} is not supported; export it "
                "with ceil_mode=0"
            )
        kind = "maxpool" if op == "MaxPool" else "avgpool"
        side = (pads[1], pads[3], pads[0], pads[2])
        return kind, PaddedPool(kind, side, kernel, stride, dilation, include_pad)
    kw: dict[str, Any] = dict(
        kernel_size=kernel, stride=stride, padding=(pads[0], pads[1]), ceil_mode=ceil_mode
    )
    if op == "MaxPool":
        return "maxpool", nn.MaxPool2d(dilation=dilation, **kw)
    return "avgpool", nn.AvgPool2d(count_include_pad=include_pad, **kw)


class PaddedPool(nn.Module):
    """2-D max or average pooling with its own padding on each side (``pad`` = left, right,
    top, bottom), as ONNX allows and torch's pools do not (uneven SAME padding from
    TensorFlow exports). Padding never wins a max; an average counts it only with
    ``count_include_pad``."""

    def __init__(
        self,
        kind: str,
        pad: tuple[int, int, int, int],
        kernel: tuple[int, int],
        stride: tuple[int, int],
        dilation: tuple[int, int] = (1, 1),
        count_include_pad: bool = False,
    ):
        super().__init__()
        self.kind, self.pad, self.kernel, self.stride = kind, tuple(pad), kernel, stride
        self.dilation, self.count_include_pad = dilation, count_include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "maxpool":
            padded = F.pad(x, self.pad, value=-math.inf)
            return F.max_pool2d(padded, self.kernel, self.stride, dilation=self.dilation)
        total = F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride)
        if self.count_include_pad:
            return total
        ones = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        return total / F.avg_pool2d(F.pad(ones, self.pad), self.kernel, self.stride)

    def extra_repr(self) -> str:
        return (
            f"{self.kind}, pad={self.pad}, kernel={self.kernel}, stride={self.stride}"
            + (f", dilation={self.dilation}" if self.dilation != (1, 1) else "")
            + (", count_include_pad=True" if self.count_include_pad else "")
        )


class _Pad(nn.Module):
    def __init__(self, pad: tuple[int, int, int, int]):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad)
