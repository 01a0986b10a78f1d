"""ONNX -> torch: an ``nn.Module`` that runs standard torch layers in the graph's order.

Our own converter (onnx2torch imports torchvision, which is not always importable beside a
CPU torch build). MatMul/Gemm (+ a bias Add) become ``nn.Linear``, Conv ``nn.Conv2d``,
Relu ``nn.ReLU`` ...; arithmetic with a constant becomes :class:`ConstOp`. Submodules are
named by kind and position (``linear1``, ``relu1``, ...) so targets read like ``linear3:0``.
"""

from __future__ import annotations

from collections import Counter
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
    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, self.axis)


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
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise InversetError(
            f"{path}: inverset reads ONNX graphs with one input and one output "
            f"(found {len(inputs)} inputs, {len(g.output)} outputs)"
        )
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in inputs[0].type.tensor_type.shape.dim]
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

    skip: set[int] = set()
    for k, node in enumerate(nodes):
        if k in skip:
            continue
        op, ins, out, at = node.op_type, list(node.input), node.output[0], _attrs(node)
        dyn = [i for i in ins if i and i not in consts]
        if op == "Constant":
            consts[out] = numpy_helper.to_array(at["value"])
            continue
        if dyn == [] and op in ("Reshape", "Shape", "Cast", "Unsqueeze", "Squeeze", "Concat"):
            raise InversetError(f"{path}: constant-folding of {op} is not supported")
        if op in ("MatMul", "Gemm") and len(dyn) == 1 and ins[0] == dyn[0]:
            w = consts[ins[1]].astype(np.float32)
            bias = consts[ins[2]].astype(np.float32) if op == "Gemm" and len(ins) > 2 else None
            if op == "Gemm":
                if at.get("transA", 0):
                    raise InversetError(f"{path}: Gemm with transA=1 is not supported")
                w = w if at.get("transB", 0) else w.T
                w = w * at.get("alpha", 1.0)
                if bias is not None:
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
                    if other and other[0] in consts:
                        bias = consts[other[0]].astype(np.float32).reshape(-1)
                        skip.add(nxt)
                        out = nodes[nxt].output[0]
            lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
            with torch.no_grad():
                lin.weight.copy_(t(w))
                if bias is not None:
                    lin.bias.copy_(t(np.broadcast_to(bias, (w.shape[0],))))
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
            add("softmax", Softmax(at.get("axis", -1)), dyn, out)
        elif op == "Flatten":
            axis = at.get("axis", 1)
            add("flatten", nn.Flatten(1) if axis == 1 else Flatten2D(axis), dyn, out)
        elif op == "Reshape":
            add("reshape", Reshape(tuple(int(s) for s in consts[ins[1]])), dyn, out)
        elif op in ("Identity", "Dropout"):
            add("identity", nn.Identity(), dyn[:1], out)
        elif op == "Transpose":
            add("transpose", Transpose(tuple(at["perm"])), dyn, out)
        elif op == "Concat":
            if len(dyn) != len(ins):
                raise InversetError(f"{path}: Concat with constant inputs is not supported")
            add("concat", Concat(at.get("axis", 1)), dyn, out)
        elif op == "Conv":
            w = consts[ins[1]]
            if w.ndim != 4:
                raise InversetError(f"{path}: only 2-D Conv is supported (weight {w.shape})")
            pads = list(at.get("pads", [0, 0, 0, 0]))
            if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise InversetError(f"{path}: Conv auto_pad is not supported; export with pads")
            sym = pads[0] == pads[2] and pads[1] == pads[3]
            conv = nn.Conv2d(
                w.shape[1] * at.get("group", 1),
                w.shape[0],
                tuple(w.shape[2:]),
                stride=tuple(at.get("strides", [1, 1])),
                padding=(pads[0], pads[1]) if sym else 0,
                dilation=tuple(at.get("dilations", [1, 1])),
                groups=at.get("group", 1),
                bias=len(ins) > 2,
            )
            with torch.no_grad():
                conv.weight.copy_(t(w))
                if len(ins) > 2:
                    conv.bias.copy_(t(consts[ins[2]]))
            if not sym:
                add("pad", _Pad((pads[1], pads[3], pads[0], pads[2])), dyn, out + "__pad")
                dyn = [out + "__pad"]
            add("conv", conv, dyn, out)
        elif op == "BatchNormalization":
            scale, bias, mean, var = (t(consts[i]) for i in ins[1:5])
            bn = nn.BatchNorm2d(scale.shape[0], eps=at.get("epsilon", 1e-5))
            with torch.no_grad():
                bn.weight.copy_(scale)
                bn.bias.copy_(bias)
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
            bn.eval()
            add("batchnorm", bn, dyn, out)
        elif op in ("MaxPool", "AveragePool"):
            pads = list(at.get("pads", [0, 0, 0, 0]))
            if pads[0] != pads[2] or pads[1] != pads[3]:
                raise InversetError(f"{path}: asymmetric {op} padding is not supported")
            kw = dict(
                kernel_size=tuple(at["kernel_shape"]),
                stride=tuple(at.get("strides", at["kernel_shape"])),
                padding=(pads[0], pads[1]),
                ceil_mode=bool(at.get("ceil_mode", 0)),
            )
            if op == "MaxPool":
                add("maxpool", nn.MaxPool2d(**kw), dyn, out)
            else:
                add(
                    "avgpool",
                    nn.AvgPool2d(count_include_pad=bool(at.get("count_include_pad", 0)), **kw),
                    dyn,
                    out,
                )
        elif op == "GlobalAveragePool":
            add("avgpool", nn.AdaptiveAvgPool2d(1), dyn, out)
        else:
            raise InversetError(
                f"{path}: ONNX operator {op} is not supported by inverset's converter; "
                "export the model as TorchScript instead"
            )
    steps = [(n, m, ins, out) for n, m, ins, out in steps]
    model = OnnxModel(steps, inputs[0].name, g.output[0].name, input_shape, str(path))
    model.eval()
    return model


class _Pad(nn.Module):
    def __init__(self, pad: tuple[int, int, int, int]):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad)
