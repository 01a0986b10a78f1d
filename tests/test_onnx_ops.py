"""ONNX converter, operator by operator: small graphs built with ``onnx.helper`` (or exported
from torch) must give what onnxruntime gives, or fail with a one-line error."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset.errors import InversetError
from inverset.loaders import load_model
from tests.conftest import need

onnx = need("onnx")
ort = need("onnxruntime")
from onnx import TensorProto, numpy_helper  # noqa: E402
from onnx import helper as oh  # noqa: E402

torch.set_num_threads(1)
RNG = np.random.default_rng(0)


def _save(
    tmp_path: Path,
    nodes: list[Any],
    in_shape: list[int | None],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    name: str = "m",
) -> Path:
    """A one-input, one-output float model from ``nodes`` (input ``x``, output ``y``)."""
    graph = oh.make_graph(
        nodes,
        name,
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _diff(path: Path, x: np.ndarray) -> float:
    """Max abs difference between inverset's model and onnxruntime on ``x``."""
    x = x.astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = load_model(path)(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max())


def _one_line_error(path: Path, *words: str) -> str:
    with pytest.raises(InversetError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg
    return msg


def _f32(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------- pooling
@pytest.mark.parametrize(
    "op, attrs",
    [
        ("MaxPool", {"kernel_shape": [2, 2]}),  # no strides: stride 1, not the kernel
        ("AveragePool", {"kernel_shape": [3, 3]}),
        ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
        ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}),
        ("MaxPool", {"kernel_shape": [3, 2], "strides": [1, 2], "dilations": [1, 2]}),
        ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "VALID"}),
        ("MaxPool", {"kernel_shape": [2, 2], "storage_order": 1}),
    ],
)
def test_pool_matches_onnxruntime(tmp_path, op, attrs):
    path = _save(tmp_path, [oh.make_node(op, ["x"], ["y"], **attrs)], [None, 2, 7, 6])
    assert _diff(path, _f32(3, 2, 7, 6)) <= 1e-5


@pytest.mark.parametrize(
    "op, attrs, words",
    [
        ("AveragePool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, ["dilations=[2, 2]"]),
        (
            "MaxPool",
            {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1], "ceil_mode": 1},
            ["ceil_mode=1", "pads [0, 0, 1, 1]", "ceil_mode=0"],
        ),
        ("MaxPool", {"kernel_shape": [2, 2], "pads": [2, 0, 0, 0]}, ["as large as the kernel"]),
        (
            "MaxPool",
            {"kernel_shape": [2, 3], "dilations": [2, 1], "auto_pad": "SAME_LOWER"},
            ["SAME_LOWER with dilations", "explicit pads"],
        ),
    ],
)
def test_pool_unsupported_attributes(tmp_path, op, attrs, words):
    path = _save(tmp_path, [oh.make_node(op, ["x"], ["y"], **attrs)], [None, 1, 6, 6], opset=19)
    _one_line_error(path, op, *words)


@pytest.mark.parametrize(
    "op, attrs, in_shape",
    [
        ("MaxPool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"}, [None, 2, 7, 6]),
        (
            "MaxPool",
            {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
            [None, 2, 6, 8],
        ),
        (
            "AveragePool",
            {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
            [None, 2, 7, 7],
        ),
        # uneven SAME padding (TensorFlow's 2x2 pools on odd sizes): padded by hand
        ("MaxPool", {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"}, [None, 1, 6, 6]),
        (
            "MaxPool",
            {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
            [None, 2, 7, 5],
        ),
        ("AveragePool", {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"}, [None, 1, 6, 6]),
        (
            "AveragePool",
            {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
            [None, 3, 7, 7],
        ),
        (
            "AveragePool",
            {
                "kernel_shape": [2, 2],
                "strides": [2, 2],
                "auto_pad": "SAME_UPPER",
                "count_include_pad": 1,
            },
            [None, 3, 7, 7],
        ),
        # explicit uneven pads, and pads over half the kernel
        ("MaxPool", {"kernel_shape": [3, 3], "pads": [0, 2, 1, 0]}, [None, 2, 7, 6]),
        ("MaxPool", {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]}, [None, 2, 5, 5]),
        (
            "MaxPool",
            {"kernel_shape": [2, 3], "dilations": [2, 1], "pads": [1, 0, 0, 2]},
            [None, 2, 7, 6],
        ),
        (
            "AveragePool",
            {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [2, 0, 1, 1]},
            [None, 2, 7, 6],
        ),
    ],
)
def test_pool_auto_pad_same_matches_onnxruntime(tmp_path, op, attrs, in_shape):
    path = _save(tmp_path, [oh.make_node(op, ["x"], ["y"], **attrs)], in_shape)
    assert _diff(path, _f32(3, *in_shape[1:])) <= 1e-5


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
def test_uneven_same_pool_exact_solver(tmp_path, pool):
    """A conv net with TensorFlow's uneven SAME pooling (2x2/2 on 3x3) is certified, and the
    certified optimum is what onnxruntime computes at its x and no sample beats it."""
    inits = {"W": _f32(2, 1, 3, 3), "c": _f32(2), "V": _f32(1, 8), "d": _f32(1)}
    nodes = [
        oh.make_node("Conv", ["x", "W", "c"], ["h"]),
        oh.make_node("Relu", ["h"], ["r"]),
        oh.make_node(
            pool, ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"
        ),
        oh.make_node("Flatten", ["p"], ["f"]),
        oh.make_node("Gemm", ["f", "V", "d"], ["y"], transB=1),
    ]
    path = _save(tmp_path, nodes, [None, 1, 5, 5], inits)
    x = RNG.uniform(0, 1, (4000, 1, 5, 5)).astype(np.float32)
    assert _diff(path, x) <= 1e-5
    res = iv.maximize(load_model(path), "out:0", iv.Box(0, 1, shape=(1, 5, 5)), solver="exact")
    assert res.status == "optimal"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": x})[0].max() <= res.bound + 1e-5
    at_x = sess.run(None, {"x": np.asarray(res.x, dtype=np.float32)[None]})[0][0, 0]
    assert abs(at_x - res.value) <= 1e-4


@pytest.mark.parametrize(
    "attrs",
    [
        {"auto_pad": "SAME_UPPER"},
        {"auto_pad": "SAME_LOWER"},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "SAME_LOWER", "strides": [2, 1]},
    ],
    ids=str,
)
@pytest.mark.parametrize("kernel", [(3, 3), (4, 2)])
def test_conv_auto_pad_same_matches_onnxruntime(tmp_path, attrs, kernel):
    w, b = _f32(4, 2, *kernel), _f32(4)
    node = oh.make_node("Conv", ["x", "W", "b"], ["y"], **attrs)
    path = _save(tmp_path, [node], [None, 2, 9, 8], {"W": w, "b": b})
    assert _diff(path, _f32(3, 2, 9, 8)) <= 1e-5


def test_auto_pad_same_needs_a_fixed_input_size_and_no_dilation(tmp_path):
    node = oh.make_node("Conv", ["x", "W"], ["y"], auto_pad="SAME_UPPER")
    path = _save(tmp_path, [node], [None, 2, None, None], {"W": _f32(4, 2, 3, 3)})
    _one_line_error(path, "Conv auto_pad=SAME_UPPER needs the input's size")
    node = oh.make_node("Conv", ["x", "W"], ["y"], auto_pad="SAME_LOWER", dilations=[2, 1])
    path = _save(tmp_path, [node], [None, 2, 9, 8], {"W": _f32(4, 2, 3, 3)}, name="d")
    _one_line_error(path, "Conv auto_pad=SAME_LOWER with dilations is not supported")


def test_conv_auto_pad_valid(tmp_path):
    w = {"W": _f32(3, 2, 3, 3), "b": _f32(3)}
    node = oh.make_node("Conv", ["x", "W", "b"], ["y"], auto_pad="VALID", strides=[2, 1])
    path = _save(tmp_path, [node], [None, 2, 7, 6], w)
    assert _diff(path, _f32(2, 2, 7, 6)) <= 1e-5


# ----------------------------------------------------------------------------- softmax
@pytest.mark.parametrize(
    "opset, attrs, shape",
    [
        (11, {}, (4, 2, 3)),  # axis 1 over the flattened (2*3) tail, not over axis 1 alone
        (11, {}, (4, 2, 3, 2)),
        (11, {"axis": 2}, (4, 2, 3, 2)),
        (12, {"axis": -2}, (4, 2, 3, 2)),
        (13, {}, (4, 2, 3)),  # opset 13: over the last axis
        (13, {"axis": 1}, (4, 2, 3)),
    ],
)
def test_softmax_by_opset(tmp_path, opset, attrs, shape):
    node = oh.make_node("Softmax", ["x"], ["y"], **attrs)
    path = _save(tmp_path, [node], [None, *shape[1:]], opset=opset)
    assert _diff(path, _f32(*shape) * 3) <= 1e-5


# ----------------------------------------------------------------------------- gemm
@pytest.mark.parametrize(
    "c_shape, attrs",
    [((1, 3), {}), ((1, 3), {"transB": 1, "alpha": 0.5, "beta": 2.0}), ((1, 1), {}), ((1,), {})],
)
def test_gemm_bias_shapes(tmp_path, c_shape, attrs):
    w = _f32(3, 4) if attrs.get("transB") else _f32(4, 3)
    node = oh.make_node("Gemm", ["x", "W", "C"], ["y"], **attrs)
    path = _save(tmp_path, [node], [None, 4], {"W": w, "C": _f32(*c_shape)})
    assert _diff(path, _f32(5, 4)) <= 1e-5


def test_gemm_bias_per_row_is_an_error(tmp_path):
    node = oh.make_node("Gemm", ["x", "W", "C"], ["y"])
    path = _save(tmp_path, [node], [2, 4], {"W": _f32(4, 3), "C": _f32(2, 3)})
    _one_line_error(path, "(2, 3)", "(3,)")


def test_matmul_add_bias_2d(tmp_path):
    nodes = [oh.make_node("MatMul", ["x", "W"], ["h"]), oh.make_node("Add", ["h", "C"], ["y"])]
    path = _save(tmp_path, nodes, [None, 4], {"W": _f32(4, 3), "C": _f32(1, 3)})
    assert _diff(path, _f32(5, 4)) <= 1e-5
    assert [n for n, _ in load_model(path).named_children()] == ["linear1"]


# ----------------------------------------------------------------------------- constants
def test_constant_value_attributes(tmp_path):
    nodes = [
        oh.make_node("Constant", [], ["f"], value_float=2.5),
        oh.make_node("Constant", [], ["fs"], value_floats=[1.0, -2.0, 0.5, 3.0, 4.0, 5.0]),
        oh.make_node("Constant", [], ["i"], value_int=3),
        oh.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
        oh.make_node("Constant", [], ["shape"], value_ints=[0, -1]),
        oh.make_node("Reshape", ["x", "shape"], ["r"]),
        oh.make_node("Mul", ["r", "f"], ["a"]),
        oh.make_node("Add", ["a", "fs"], ["b"]),
        oh.make_node("Sub", ["fi", "b"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [None, 2, 3])
    assert _diff(path, _f32(4, 2, 3)) <= 1e-5


@pytest.mark.parametrize(
    "attrs",
    [
        {"value_string": "a"},
        {"value_strings": ["a", "b"]},
        {
            "sparse_value": oh.make_sparse_tensor(
                numpy_helper.from_array(np.float32([1.0]), "v"),
                numpy_helper.from_array(np.int64([0]), "i"),
                [4],
            )
        },
    ],
)
def test_constant_unsupported_values(tmp_path, attrs):
    nodes = [oh.make_node("Constant", [], ["c"], **attrs), oh.make_node("Relu", ["x"], ["y"])]
    graph = oh.make_graph(
        nodes,
        "m",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "m.onnx"
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), str(path))
    _one_line_error(path, "Constant", next(iter(attrs)))


# ----------------------------------------------------------------------------- batch norm
def _bn_inits(c: int, prefix: str = "") -> dict[str, np.ndarray]:
    vals = [RNG.random(c) + 0.5, RNG.normal(size=c), RNG.normal(size=c), RNG.random(c) + 0.5]
    return {prefix + k: v.astype(np.float32) for k, v in zip("sbmv", vals, strict=True)}


@pytest.mark.parametrize("shape", [(5, 4), (5, 4, 7), (5, 4, 3, 2)])
def test_batchnorm_any_rank(tmp_path, shape):
    nodes = [
        oh.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"], epsilon=1e-3),
        oh.make_node("Relu", ["n"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [None, *shape[1:]], _bn_inits(shape[1]))
    assert _diff(path, _f32(*shape)) <= 1e-5


def test_batchnorm_after_linear_exact_solver(tmp_path):
    inits = {"W1": _f32(6, 3), "b1": _f32(6), "W2": _f32(2, 6), "b2": _f32(2), **_bn_inits(6)}
    nodes = [
        oh.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
        oh.make_node("BatchNormalization", ["h", "s", "b", "m", "v"], ["n"]),
        oh.make_node("Relu", ["n"], ["r"]),
        oh.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
    ]
    path = _save(tmp_path, nodes, [None, 3], inits)
    x = RNG.uniform(-1, 1, (20000, 3)).astype(np.float32)
    assert _diff(path, x) <= 1e-5
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    best_sampled = sess.run(None, {"x": x})[0][:, 0].max()
    res = iv.maximize(load_model(path), "out:0", iv.Box(-1, 1), solver="exact")
    assert res.value >= best_sampled - 1e-5
    at_x = sess.run(None, {"x": np.asarray(res.x, dtype=np.float32).reshape(1, 3)})[0][0, 0]
    assert abs(at_x - res.value) <= 1e-4


# ----------------------------------------------------------------------------- x.view(B, -1)
class _ViewNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool = nn.Conv2d(1, 3, 3, padding=1), nn.MaxPool2d(2)
        self.fc = nn.Linear(48, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("opset", [11, 13])
def test_view_batch_flatten_with_dynamic_axes(tmp_path, opset):
    torch.manual_seed(0)
    path = tmp_path / "view.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ViewNet().eval(),
            torch.randn(1, 1, 8, 8),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
            opset_version=opset,
            dynamo=False,
        )
    assert "Shape" in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert _diff(path, _f32(3, 1, 8, 8)) <= 1e-5


@pytest.mark.parametrize("opset", [13, 18])
def test_tensorflow_flatten_reduceprod_is_folded(tmp_path, opset):
    """TensorFlow's flatten: Reshape(x, Concat(Shape(x)[:1], ReduceProd(Shape(x)[1:])))."""
    axes = {"axes": [0]} if opset < 18 else {}
    inputs = ["tail"] if opset < 18 else ["tail", "axis0"]
    nodes = [
        oh.make_node("Shape", ["x"], ["s"]),
        oh.make_node("Constant", [], ["one"], value_ints=[1]),
        oh.make_node("Constant", [], ["end"], value_ints=[4]),
        oh.make_node("Constant", [], ["zero"], value_ints=[0]),
        oh.make_node("Constant", [], ["axis0"], value_ints=[0]),
        oh.make_node("Slice", ["s", "zero", "one"], ["b"]),
        oh.make_node("Slice", ["s", "one", "end"], ["tail"]),
        oh.make_node("ReduceProd", inputs, ["n"], keepdims=1, **axes),
        oh.make_node("Concat", ["b", "n"], ["shape"], axis=0),
        oh.make_node("Reshape", ["x", "shape"], ["f"]),
        oh.make_node("Gemm", ["f", "W"], ["y"], transB=1),
    ]
    path = _save(tmp_path, nodes, [None, 2, 3, 4], {"W": _f32(5, 24)}, opset=opset)
    assert _diff(path, _f32(3, 2, 3, 4)) <= 1e-5


def test_reduceprod_of_activations_is_plainly_unsupported(tmp_path):
    nodes = [oh.make_node("ReduceProd", ["x"], ["y"], axes=[1], keepdims=0)]
    msg = _one_line_error(_save(tmp_path, nodes, [None, 4], opset=13), "operator ReduceProd")
    assert "view" not in msg and "TorchScript" not in msg and "nn.Module" in msg


def test_batch_size_arithmetic_names_the_fix(tmp_path):
    nodes = [
        oh.make_node("Shape", ["x"], ["s"]),
        oh.make_node("Constant", [], ["zero"], value_ints=[0]),
        oh.make_node("Gather", ["s", "zero"], ["b"]),
        oh.make_node("Mul", ["b", "b"], ["bb"]),
        oh.make_node("Constant", [], ["minus1"], value_ints=[-1]),
        oh.make_node("Concat", ["bb", "minus1"], ["shape"], axis=0),
        oh.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [None, 4])
    _one_line_error(path, "torch.flatten(x, 1)", "dynamic_axes")


# ----------------------------------------------------------------------------- helpers
def _export(module: nn.Module, x: torch.Tensor, path: Path, opset: int = 13, **dynamic) -> Path:
    """``torch.onnx.export`` of ``module`` at ``x`` (input ``x``, output ``y``); ``dynamic``:
    dynamic_axes of the input beyond the batch axis (default: the batch axis only)."""
    axes = dynamic.get("axes", {0: "b"})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (x,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": axes, "y": {0: "b"}} if axes else None,
            opset_version=opset,
            dynamo=False,
        )
    return path


def _diff_each(path: Path, x: np.ndarray, model: nn.Module | None = None) -> float:
    """Max abs difference to onnxruntime run on one sample at a time (fixed batch 1, or no
    batch axis), comparing the flattened outputs; ``model``: the loaded model to compare."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float64 if "double" in inp.type else np.float32
    batched = len(inp.shape) != 1
    ref = np.stack(
        [sess.run(None, {inp.name: (s[None] if batched else s).astype(dtype)})[0] for s in x]
    ).reshape(len(x), -1)
    with torch.no_grad():
        got = (model or load_model(path))(torch.from_numpy(x.astype(np.float32)))
    got = got.reshape(len(x), -1).numpy()
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max())


def _sampled_max(model: nn.Module, target: str, shape: tuple[int, ...], n: int = 20000) -> float:
    from inverset.model import forward

    expr = iv.parse_target(target)
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        return float(expr.evaluate(forward(model, x, expr.layers())).max())


def _check_exact(model: nn.Module, target: str, shape: tuple[int, ...]) -> float:
    """The exact maximum on [-1, 1]^n: optimal, at least every sampled value and the gradient
    solver's best, and the model's value at its point. Returns it."""
    box = iv.Box(-1, 1, shape=shape)
    res = iv.maximize(model, target, box, solver="exact", time_limit=60)
    assert res.status == "optimal", res.message
    assert res.value >= _sampled_max(model, target, shape) - 1e-5
    assert res.bound >= iv.maximize(model, target, box, starts=16, seed=0).value - 1e-5
    return res.value


# ----------------------------------------------------------------------------- flatten axis
@pytest.mark.parametrize(
    "axis, in_shape",
    [(1, [None, 2, 3]), (-2, [None, 2, 3]), (0, [1, 2, 3]), (2, [None, 1, 3, 2])],
    ids=str,
)
def test_flatten_keeping_each_sample_matches_onnxruntime(tmp_path, axis, in_shape):
    """Flatten runs per sample when its output's first axis is the batch: axis 1, axis 0
    of a batch declared 1, or axes before ``axis`` of size 1."""
    n = int(np.prod(in_shape[1:]))
    nodes = [
        oh.make_node("Flatten", ["x"], ["f"], axis=axis),
        oh.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    path = _save(tmp_path, nodes, in_shape, {"W": _f32(n, 2)})
    model = load_model(path)
    assert _diff_each(path, _f32(5, *in_shape[1:]), model) <= 1e-5
    res = iv.maximize(model, "out:0", iv.Box(-1, 1, shape=tuple(in_shape[1:])), starts=4)
    assert res.status == "converged"


@pytest.mark.parametrize(
    "axis, in_shape, merged",
    [
        (2, [1, 2, 3, 2], "the batch axis with axis 1"),
        (-1, [1, 2, 3, 2], "the batch axis with axes 1 to 2"),
        (0, [None, 2, 3], "the whole batch into one row"),
    ],
    ids=str,
)
def test_flatten_merging_the_batch_axis_is_refused_at_load_time(tmp_path, axis, in_shape, merged):
    """It loaded, then the gradient solver crashed (RuntimeError, exit 4) and cmaes blamed
    its options."""
    node = oh.make_node("Flatten", ["x"], ["y"], axis=axis)
    path = _save(tmp_path, [node], in_shape)
    _one_line_error(path, f"Flatten with axis={axis} merges {merged}", "torch.flatten(x, 1)")


def test_reshape_moving_values_across_the_batch_axis_is_refused(tmp_path):
    nodes = [oh.make_node("Reshape", ["x", "s"], ["y"])]
    inits = {"s": np.array([-1, 6], dtype=np.int64)}
    path = _save(tmp_path, nodes, [1, 12], inits)
    _one_line_error(path, "Reshape to [-1, 6] moves values across the batch axis", "flatten")


# ----------------------------------------------------------------------------- free input size
class _FCN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1)
        return self.fc(torch.flatten(pooled, 1))


def test_dynamic_height_and_width_need_the_input_shape(tmp_path, run_main):
    """Free H and W were set to 1: the search ran on a 2x1x1 image. Now the shape is unknown
    until the user gives it."""
    path = _export(_FCN(), torch.randn(1, 2, 8, 8), tmp_path / "fcn.onnx", axes={0: "b", 2: "h"})
    model = load_model(path)
    assert model.input_shape is None
    with pytest.raises(InversetError, match=r"input shape is unknown.*input_shape=") as e:
        iv.maximize(model, "out:0", iv.Box(-1, 1))
    assert "\n" not in str(e.value)
    code, _, err = run_main("maximize", path, "-t", "out:0", "--box=-1,1", "--no-progress")
    assert code == 2 and "--input-shape" in err and len(err.strip().splitlines()) == 1
    model = load_model(path, input_shape=(2, 6, 8))
    res = iv.maximize(model, "out:0", iv.Box(-1, 1), starts=4, seed=0)
    assert res.x.shape == (2, 6, 8)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    at_x = sess.run(None, {"x": np.asarray(res.x, dtype=np.float32)[None]})[0][0, 0]
    assert abs(at_x - res.value) <= 1e-5


# ----------------------------------------------------------------------------- shape ops
class _Unsqueeze(nn.Module):  # a (B, 6, 6) grayscale image without its channel axis
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x.unsqueeze(1))).flatten(1))


class _Squeeze(nn.Module):  # a regression head's squeeze(-1)
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))).squeeze(-1)


class _Slice(nn.Module):  # the first 3 of 5 features, and every other one of the rest
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x[:, :3]))
        return self.b(torch.cat([h, x[:, 3::2]], 1))


class _Cast(nn.Module):  # float64 and float16 round trips
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x.double().float())).half().float())


class _Cast64(_Cast):  # float64 round trips only: exact (a float16 one rounds, refused)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x.double().float())).double().float())


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("dynamic", [True, False])
@pytest.mark.parametrize(
    "make, shape", [(_Unsqueeze, (6, 6)), (_Squeeze, (3,)), (_Slice, (5,)), (_Cast, (3,))]
)
def test_squeeze_unsqueeze_slice_cast_match_onnxruntime(tmp_path, make, shape, opset, dynamic):
    """They were refused with advice about x.view(...)/dynamic_axes that did not apply."""
    axes = {0: "b"} if dynamic else {}
    path = _export(make(), torch.randn(1, *shape), tmp_path / "m.onnx", opset, axes=axes)
    model = load_model(path)
    assert model.input_shape == shape
    assert _diff_each(path, RNG.uniform(-1, 1, (6, *shape)), model) <= 1e-5


@pytest.mark.parametrize(
    "make, shape, target",
    [
        (_Unsqueeze, (6, 6), "out:1"),
        (_Unsqueeze, (6, 6), "unsqueeze1:0,1,1"),
        (_Squeeze, (3,), "out:0"),
        (_Slice, (5,), "out:0"),
        (_Slice, (5,), "slice1:2"),
        (_Cast64, (3,), "out:1"),
    ],
)
def test_shape_op_layers_in_the_exact_solver(tmp_path, make, shape, target):
    path = _export(make(), torch.randn(1, *shape), tmp_path / "m.onnx")
    _check_exact(load_model(path), target, shape)


def test_cast_from_a_float64_input_matches_onnxruntime(tmp_path):
    graph = oh.make_graph(
        [
            oh.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
            oh.make_node("Relu", ["f"], ["y"]),
        ],
        "m",
        [oh.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 3])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert _diff_each(tmp_path / "m.onnx", _f32(5, 3)) <= 1e-6


class _MLP64(nn.Module):  # a float64 MLP: Gemm, Relu, Mul and Add by constants
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 16), nn.Linear(16, 8), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)) * 0.5 + 1.0)))


class _Conv64(nn.Module):  # a float64 conv net: Conv, BatchNormalization, MaxPool, Gemm
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.fc = nn.Linear(27, 1)
        self.bn.running_mean.uniform_(-1, 1)
        self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(h, 1))


@pytest.mark.parametrize("make, shape", [(_MLP64, (3,)), (_Conv64, (1, 6, 6))])
def test_float64_graph_runs_in_float64(tmp_path, make, shape):
    """A graph whose input is DOUBLE keeps its float64 weights (they were rounded to float32:
    an MLP's maximum on +-1000 was 505.03936767578125 where onnxruntime gave
    505.03940967557674). The reference is onnxruntime, or for the conv net, which it has no
    float64 Conv kernel for, the exported float64 torch module."""
    torch.manual_seed(0)
    net = make().double().eval()
    path = _export(net, torch.zeros(1, *shape, dtype=torch.float64), tmp_path / "m.onnx")
    model = load_model(path)
    dtypes = {t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()}
    assert dtypes == {torch.float64}

    def reference(x: np.ndarray) -> np.ndarray:
        if make is _Conv64:
            with torch.no_grad():
                return net(torch.from_numpy(x)).numpy()
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]

    x = RNG.uniform(-1000, 1000, (64, *shape))
    with torch.no_grad():
        got = model(torch.from_numpy(x))
    assert got.dtype == torch.float64
    ref = reference(x)
    assert np.abs(got.numpy() - ref).max() <= 1e-12 * np.abs(ref).max()
    res = iv.maximize(model, "out:0", iv.Box(-1000, 1000, shape=shape), seed=0)
    x_best = np.asarray(res.x)
    assert x_best.dtype == np.float64
    at_x = float(reference(x_best[None])[0, 0])
    assert abs(res.value - at_x) <= 1e-12 * abs(at_x)


@pytest.mark.parametrize(
    "nodes, inits, words",
    [
        (
            [oh.make_node("Squeeze", ["x", "a"], ["y"])],
            {"a": [0]},
            "Squeeze over axis 0, the batch",
        ),
        ([oh.make_node("Unsqueeze", ["x", "a"], ["y"])], {"a": [0]}, "Unsqueeze over axis 0"),
        (
            [oh.make_node("Slice", ["x", "s", "e", "a"], ["y"])],
            {"s": [1], "e": [2], "a": [0]},
            "Slice of axis 0, the batch axis",
        ),
        (
            [oh.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])],
            {"s": [3], "e": [0], "a": [1], "st": [-1]},
            "Slice with step -1",
        ),
        (
            [oh.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)],
            {},
            "Cast of a computed tensor to INT64",
        ),
        (
            [oh.make_node("Gather", ["x", "i"], ["y"], axis=1)],
            {"i": [0, 2]},
            "Gather of a computed tensor (not of a shape)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_shape_ops_still_refused_name_the_real_cause(tmp_path, nodes, inits, words):
    arrays = {k: np.array(v, dtype=np.int64) for k, v in inits.items()}
    msg = _one_line_error(_save(tmp_path, nodes, [1, 4], arrays, opset=13), words)
    assert "x.view" not in msg and "TorchScript" not in msg


# ----------------------------------------------------------------------------- probabilities
class _Probs(nn.Module):
    def __init__(self, log: bool = False) -> None:
        super().__init__()
        self.a, self.b, self.log = nn.Linear(3, 6), nn.Linear(6, 2), log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.b(torch.relu(self.a(x)))
        return torch.log_softmax(z, 1) if self.log else torch.softmax(z, 1)


@pytest.mark.parametrize("opset", [11, 13])
def test_prob_of_a_graph_ending_in_softmax_is_its_output(tmp_path, opset):
    """prob:0 was softmax(probabilities): 0.5255 for a probability of 0.5511."""
    path = _export(_Probs(), torch.randn(1, 3), tmp_path / "p.onnx", opset)
    model = load_model(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for k in (0, 1):
        res = iv.maximize(model, f"prob:{k}", iv.Box(-1, 1, shape=(3,)), starts=8, seed=0)
        probs = sess.run(None, {"x": np.asarray(res.x, dtype=np.float32)[None]})[0][0]
        assert abs(res.value - probs[k]) <= 1e-5
    with pytest.raises(InversetError, match=r"logit:1: the model outputs probabilities.*prob:1"):
        iv.maximize(model, "logit:1", iv.Box(-1, 1, shape=(3,)))
    assert "probabilities (Softmax" in iv.layers(model)[-1].kind


def test_log_softmax_output_keeps_prob_as_softmax(tmp_path):
    """Log-probabilities are logits up to a constant: prob:k = exp(output k)."""
    path = _export(_Probs(log=True), torch.randn(1, 3), tmp_path / "p.onnx")
    model = load_model(path)
    res = iv.maximize(model, "prob:1", iv.Box(-1, 1, shape=(3,)), starts=8, seed=0)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logp = sess.run(None, {"x": np.asarray(res.x, dtype=np.float32)[None]})[0][0]
    assert abs(res.value - np.exp(logp[1])) <= 1e-5


# ----------------------------------------------------------------------------- exact targets
class _NHWC(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x.permute(0, 3, 1, 2)))
        return self.fc(h.permute(0, 2, 3, 1).flatten(1))


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)) + x * 2.0)


@pytest.mark.parametrize(
    "make, shape, target",
    [
        (_NHWC, (4, 4, 3), "transpose2:1"),
        (_NHWC, (4, 4, 3), "transpose2:1,0,2"),
        (_Residual, (3,), "add1:1"),
        (_Residual, (3,), "mul1:2"),
        (_Residual, (3,), "add1:0 - linear2:1"),
    ],
)
def test_exact_targets_on_transpose_and_binary_layers(tmp_path, make, shape, target):
    """Targets on these affine layers were 'not found in the traced graph'."""
    path = _export(make(), torch.randn(1, *shape), tmp_path / "m.onnx")
    model = load_model(path)
    assert {i.name for i in iv.layers(model)} >= set(iv.parse_target(target).layers())
    _check_exact(model, target, shape)


def test_exact_names_the_layer_below_a_final_softmax(tmp_path):
    """A target on (or through) the final Softmax names the layer the exact solver can take:
    it was 'cannot handle layer softmax1 of type Softmax; use --solver gradient'."""
    path = _export(_Probs(), torch.randn(1, 3), tmp_path / "p.onnx")
    model, box = load_model(path), iv.Box(-1, 1, shape=(3,))
    for target in ("softmax1:1", "out:1", "prob:1", "margin:1"):
        with pytest.raises(InversetError) as info:
            iv.maximize(model, target, box, solver="exact")
        assert "ends in Softmax (layer 'softmax1')" in str(info.value)
        named = (
            "'linear2:1 - linear2:0' (the margin in logits"
            if "margin" in target
            else ("linear2:1 (the logit of output 1")
        )
        assert f"use -t {named}" in str(info.value)
    assert iv.maximize(model, "linear2:1", box, solver="exact").status == "optimal"
    assert iv.maximize(model, "linear2:1 - linear2:0", box, solver="exact").status == "optimal"


# ----------------------------------------------------------------------------- no batch axis
class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.b(torch.relu(self.a(x))), -1)


def test_input_without_batch_axis_runs_in_batches(tmp_path):
    """An input declared [3] was recorded as shape (1,) and every query failed."""
    path = _export(_MLP(), torch.randn(3), tmp_path / "m.onnx", axes={})
    assert [
        d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    ] == [3]
    model = load_model(path)
    assert model.input_shape == (3,)
    assert _diff_each(path, _f32(6, 3), model) <= 1e-6
    res = iv.maximize(model, "prob:1", iv.Box(-1, 1, shape=(3,)), starts=8, seed=0)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert abs(sess.run(None, {"x": np.asarray(res.x, np.float32)})[0][1] - res.value) <= 1e-5
    assert (
        abs(_check_exact(model, "linear2:0", (3,)) - _sampled_max(model, "linear2:0", (3,))) < 0.05
    )


def test_input_without_batch_axis_refuses_axis_dependent_operators(tmp_path):
    nodes = [oh.make_node("Concat", ["x", "x"], ["y"], axis=0)]
    _one_line_error(_save(tmp_path, nodes, [3]), "declared [3], without a batch axis", "Concat")


# ----------------------------------------------------------------------------- weight first
def test_weight_first_gemm_and_matmul_are_linear_layers(tmp_path):
    """Gemm(W, x, transB=1) and MatMul(W, Transpose(x)) were 'operator not supported'."""
    w, c = _f32(4, 3), _f32(4, 1)
    gemm = oh.make_node("Gemm", ["W", "x", "C"], ["y"], transB=1, alpha=0.5)
    path = _save(tmp_path, [gemm], [1, 3], {"W": w, "C": c}, name="gemm")
    assert _diff_each(path, _f32(5, 3)) <= 1e-5
    nodes = [
        oh.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
        oh.make_node("MatMul", ["W", "t"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [None, 3], {"W": w}, name="matmul")
    model = load_model(path)
    assert _diff_each(path, _f32(5, 3), model) <= 1e-5
    _check_exact(model, "out:2", (3,))


def test_weight_first_product_inside_the_graph_names_the_operand_order(tmp_path):
    nodes = [oh.make_node("Gemm", ["W", "x"], ["h"], transB=1), oh.make_node("Relu", ["h"], ["y"])]
    path = _save(tmp_path, nodes, [1, 3], {"W": _f32(4, 3)})
    _one_line_error(path, "Gemm with the weight as first operand", "only this operand order")


# ----------------------------------------------------------------------------- more operators
@pytest.mark.parametrize(
    "op, attrs, inputs, opset",
    [
        ("LogSoftmax", {}, {}, 13),
        ("LogSoftmax", {}, {}, 11),
        ("LogSoftmax", {"axis": 2}, {}, 11),
        ("Erf", {}, {}, 17),
        ("Clip", {}, {"lo": 0.0, "hi": 6.0}, 13),
        ("Clip", {}, {"lo": -0.5}, 13),
        ("Clip", {"min": -1.0, "max": 0.5}, {}, 6),
        ("ReduceMean", {"axes": [2, 3], "keepdims": 0}, {}, 13),
        ("ReduceMean", {"axes": [-1], "keepdims": 1}, {}, 13),
        ("ReduceMean", {"keepdims": 0}, {"axes": [2, 3]}, 18),
        ("ReduceSum", {"keepdims": 1}, {"axes": [1, 3]}, 13),
        ("GlobalMaxPool", {}, {}, 13),
        ("Elu", {"alpha": 0.5}, {}, 13),
        ("Softplus", {}, {}, 13),
        ("Gelu", {"approximate": "tanh"}, {}, 20),
        ("Max", {}, {"lo": [-0.5, 0.0, 0.3, 1.0, -1.0]}, 13),
        ("Min", {}, {"hi": [[0.5], [0.0], [-0.3], [1.0]]}, 13),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(map(str, v.values())),
)
def test_more_operators_match_onnxruntime(tmp_path, op, attrs, inputs, opset):
    names, inits = ["x"], {}
    for k, v in inputs.items():
        names.append(k)
        dtype = np.int64 if k == "axes" else np.float32
        inits[k] = np.array(v, dtype=dtype)
    node = oh.make_node(op, names, ["y"], **attrs)
    path = _save(tmp_path, [node], [None, 3, 4, 5], inits, opset=opset)
    assert _diff(path, _f32(4, 3, 4, 5) * 3) <= 1e-5


def test_exact_gelu_export_and_relu6_and_global_max_pool(tmp_path):
    """nn.GELU at opset 17 exports Erf inside a pattern; ReLU6 exports Clip; a global max
    pool is one max window (the exact solver takes Clip and the pool)."""
    torch.manual_seed(0)
    gelu = nn.Sequential(nn.Linear(3, 5), nn.GELU(), nn.Linear(5, 2))
    path = _export(gelu, torch.randn(1, 3), tmp_path / "gelu.onnx", 17)
    assert "Erf" in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert _diff(path, _f32(8, 3)) <= 1e-5
    relu6 = nn.Sequential(nn.Linear(3, 5), nn.ReLU6(), nn.Linear(5, 2))
    path = _export(relu6, torch.randn(1, 3), tmp_path / "relu6.onnx", 17)
    assert _diff(path, _f32(8, 3) * 4) <= 1e-5
    _check_exact(load_model(path), "out:0", (3,))
    _check_exact(load_model(path), "clip1:2", (3,))
    nodes = [
        oh.make_node("Conv", ["x", "W", "c"], ["h"]),
        oh.make_node("Relu", ["h"], ["r"]),
        oh.make_node("GlobalMaxPool", ["r"], ["p"]),
        oh.make_node("Flatten", ["p"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [None, 1, 4, 4], {"W": _f32(2, 1, 3, 3), "c": _f32(2)})
    assert _diff(path, _f32(8, 1, 4, 4)) <= 1e-5
    _check_exact(load_model(path), "out:1", (1, 4, 4))


def test_unsupported_operator_suggests_supported_ops_or_the_module(tmp_path):
    msg = _one_line_error(_save(tmp_path, [oh.make_node("Sin", ["x"], ["y"])], [None, 3]), "Sin")
    assert "TorchScript" not in msg and "nn.Module" in msg


class _LSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.fc = nn.LSTM(3, 5, batch_first=True), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("axes", [{0: "b"}, {}], ids=["dynamic", "static"])
def test_an_unsupported_operator_is_named_before_shape_advice(tmp_path, axes):
    """An LSTM export got advice for the shapes and transposes around it ('instead of
    x.view(x.size(0), -1)', 'e.g. x.permute(0, 2, 3, 1)'), not that LSTM is not read."""
    path = _export(_LSTM(), torch.randn(1, 4, 3), tmp_path / "lstm.onnx", axes=axes)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"LSTM", "Transpose"} <= ops
    msg = _one_line_error(path, "the ONNX graph uses LSTM,", "does not read", "Gemm", "nn.Module")
    assert "view" not in msg and "permute" not in msg


def test_a_graph_of_several_outputs_names_the_fix(tmp_path):
    """'reads ONNX graphs with one input and one output (found 1 inputs, 2 outputs)' gave no
    fix."""
    graph = oh.make_graph(
        [oh.make_node("Relu", ["x"], ["y"]), oh.make_node("Relu", ["y"], ["z"])],
        "two",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [oh.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z")],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two.onnx"))
    _one_line_error(tmp_path / "two.onnx", "found 1 inputs, 2 outputs", "returns model(x)[0]")


def test_max_of_two_computed_tensors_is_a_one_line_error(tmp_path):
    nodes = [oh.make_node("Relu", ["x"], ["r"]), oh.make_node("Max", ["x", "r"], ["y"])]
    _one_line_error(_save(tmp_path, nodes, [None, 3]), "Max of 2 computed tensors", "constant")


def test_clip_with_a_computed_bound_is_a_one_line_error(tmp_path):
    """A Clip whose min is computed from the input (not a constant) raised KeyError."""
    nodes = [
        oh.make_node("ReduceMean", ["x"], ["m"], keepdims=0, axes=[1]),
        oh.make_node("Clip", ["x", "m"], ["y"]),
    ]
    _one_line_error(_save(tmp_path, nodes, [1, 3], opset=13), "min", "'m'", "constant")


def test_exact_refuses_a_cast_to_half_precision():
    """A Cast to float16 was taken as the identity: certificates off by its rounding (about
    1e-4 here); casts between float32 and float64 stay exact."""
    from inverset.loaders.onnx import Cast

    torch.manual_seed(0)
    box = iv.Box(-1, 1, shape=(3,))
    for dtype, ok in ((torch.float16, False), (torch.bfloat16, False), (torch.float64, True)):
        m = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), Cast(dtype), nn.Linear(8, 1)).eval()
        if ok:
            assert iv.maximize(m, "out:0", box, solver="exact").status == "optimal"
        else:
            with pytest.raises(InversetError, match="Cast to torch"):
                iv.maximize(m, "out:0", box, solver="exact")
