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


class Flatten2D(nn.Module):
    """ONNX Flatten(axis): (prod(dims[:axis]), prod(dims[axis:])), batch kept first."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(int(np.prod(x.shape[: self.axis])), -1)


class Transpose(nn.Module):
    def __init__(self, perm: tuple[int, ...]):
        super().__init__()
        self.perm = tuple(perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.perm)


class Softmax(nn.Module):
    """ONNX Softmax. Before opset 13 (``coerce_2d``) the input is seen as 2-D: the softmax
    runs over all axes from ``axis`` on together, not over ``axis`` alone."""

    def __init__(self, axis: int, coerce_2d: bool = False):
        super().__init__()
        self.axis, self.coerce_2d = axis, coerce_2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.coerce_2d:
            return torch.softmax(x, self.axis)
        flat = x.flatten(self.axis % x.dim())
        return torch.softmax(flat, -1).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"axis={self.axis}" + (", coerce_2d=True" if self.coerce_2d else "")


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
        input_shape: tuple[int, ...],
        source: str,
    ):
        super().__init__()
        self.steps = [(name, ins, out) for name, _, ins, out in steps]
        for name, module, _, _ in steps:
            self.add_module(name, module)
        self.input_name, self.output_name = input_name, output_name
        self.input_shape = input_shape
        self.source = source

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
_MOVES = ("Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Reshape", "Identity")
#: ops evaluated at load time when all their inputs are constants (shape arithmetic; a
#: ReduceProd there is TensorFlow's flatten size)
_FOLD_OPS = (*_MOVES, "ReduceProd")
#: ops that only handle shapes: on a computed tensor, the export advice of _SHAPE_FIX applies
_SHAPE_OPS = (*_MOVES, "Shape", "Expand", "ConstantOfShape", "Range", "Size")


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


def _bias(c: np.ndarray, n: int) -> np.ndarray | None:
    """A constant bias as one value per output (shape (n,)), or None when it varies along
    another axis than the last (e.g. per batch row) and so cannot be a Linear's bias."""
    c = np.asarray(c, dtype=np.float32)
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
    """Convert an ONNX file to an :class:`OnnxModel` (float32, batch axis free)."""
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
    opset = _opset(proto)
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    # folded shape values: True where an entry is the batch size (free at run time)
    masks: dict[str, np.ndarray] = {}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise InversetError(
            f"{path}: inverset reads ONNX graphs with one input and one output "
            f"(found {len(inputs)} inputs, {len(g.output)} outputs)"
        )
    in_dims = list(inputs[0].type.tensor_type.shape.dim)
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in in_dims]
    input_shape = tuple(dims[1:]) if len(dims) > 1 else (1,)
    uses = Counter(i for n in g.node for i in n.input)
    counts: Counter = Counter()
    steps: list[tuple[str, nn.Module, list[str], str]] = []
    nodes = list(g.node)

    def add(kind: str, module: nn.Module, ins: list[str], out: str) -> None:
        counts[kind] += 1
        steps.append((f"{kind}{counts[kind]}", module, ins, out))

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(a, dtype=np.float32))

    def folded(name: str) -> tuple[np.ndarray, np.ndarray]:
        value = np.asarray(consts[name])
        return value, masks.get(name, np.zeros(value.shape, dtype=bool))

    def shape_of(name: str, where: str, need: str | None = None) -> tuple[int, ...]:
        """Shape of a computed tensor, from a run of the nodes converted so far on a batch
        of 2 (the Shape node then reads the batch size at run time, the rest is fixed).
        ``need``: what asks for it, when not a Shape node (SAME padding)."""
        if any(d.dim_value <= 0 for d in in_dims[1:]):
            if need is not None:
                raise InversetError(
                    f"{where}: {need} needs the input's size, which the ONNX file leaves free; "
                    "export with a fixed input size or explicit pads"
                )
            raise InversetError(
                f"{where}: Shape of a tensor when the input has dynamic non-batch axes is "
                f"not supported; {_SHAPE_FIX}"
            )
        env = {inputs[0].name: torch.zeros(2, *input_shape)}
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
        if op in ("MatMul", "Gemm") and len(dyn) == 1 and ins[0] == dyn[0]:
            w = consts[ins[1]].astype(np.float32)
            if w.ndim != 2:
                raise InversetError(f"{where}: only a 2-D weight is supported (got {w.shape})")
            n_out = w.shape[0] if op == "Gemm" and at.get("transB", 0) else w.shape[1]
            bias = None
            if op == "Gemm":
                if at.get("transA", 0):
                    raise InversetError(f"{where}: Gemm with transA=1 is not supported")
                w = w if at.get("transB", 0) else w.T
                w = w * at.get("alpha", 1.0)
                if len(ins) > 2 and ins[2]:
                    c = consts[ins[2]]
                    bias = _bias(c, n_out)
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
                        bias = _bias(consts[other[0]], n_out)
                        if bias is not None:
                            skip.add(nxt)
                            out = nodes[nxt].output[0]
            lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
            with torch.no_grad():
                lin.weight.copy_(t(w))
                if bias is not None:
                    lin.bias.copy_(t(bias))
            add("linear", lin, dyn, out)
        elif op in ("Add", "Sub", "Mul", "Div") and len(dyn) == 1:
            cname = next(i for i in ins if i != dyn[0])
            add(
                op.lower(),
                ConstOp(op.lower(), t(consts[cname]), const_first=ins[0] == cname),
                dyn,
                out,
            )
        elif op in ("Add", "Sub", "Mul", "Div", "MatMul") and len(dyn) == 2:
            add(op.lower(), BinaryOp(op.lower()), dyn, out)
        elif op == "Relu":
            add("relu", nn.ReLU(), dyn, out)
        elif op == "Sigmoid":
            add("sigmoid", nn.Sigmoid(), dyn, out)
        elif op == "Tanh":
            add("tanh", nn.Tanh(), dyn, out)
        elif op == "LeakyRelu":
            add("leakyrelu", nn.LeakyReLU(at.get("alpha", 0.01)), dyn, out)
        elif op == "Softmax":
            # before opset 13: axis 1 by default, over the input flattened to 2-D from axis
            coerce = opset < 13
            add("softmax", Softmax(at.get("axis", 1 if coerce else -1), coerce), dyn, out)
        elif op == "Flatten":
            axis = at.get("axis", 1)
            add("flatten", nn.Flatten(1) if axis == 1 else Flatten2D(axis), dyn, out)
        elif op == "Reshape":
            shape, batch = folded(ins[1])
            if batch[1:].any():
                raise InversetError(
                    f"{where}: a Reshape that moves the batch size off the first axis is not "
                    f"supported; {_SHAPE_FIX}"
                )
            add("reshape", Reshape(tuple(int(s) for s in shape)), dyn, out)
        elif op in ("Identity", "Dropout"):
            add("identity", nn.Identity(), dyn[:1], out)
        elif op == "Transpose":
            add("transpose", Transpose(tuple(at["perm"])), dyn, out)
        elif op == "Concat":
            if len(dyn) != len(ins):
                raise InversetError(f"{where}: Concat with constant inputs is not supported")
            add("concat", Concat(at.get("axis", 1)), dyn, out)
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
            bn = BatchNorm(scale.shape[0], eps=at.get("epsilon", 1e-5))
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
        elif op == "GlobalAveragePool":
            add("avgpool", nn.AdaptiveAvgPool2d(1), dyn, out)
        elif op in _SHAPE_OPS:
            raise InversetError(
                f"{where}: ONNX operator {op} on a computed tensor is not supported; {_SHAPE_FIX}"
            )
        else:
            raise InversetError(
                f"{path}: ONNX operator {op} is not supported by inverset's converter; "
                "export the model as TorchScript instead"
            )
    steps = [(n, m, ins, out) for n, m, ins, out in steps]
    model = OnnxModel(steps, inputs[0].name, g.output[0].name, input_shape, str(path))
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
