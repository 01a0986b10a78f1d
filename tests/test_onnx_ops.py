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
    assert "view" not in msg and "TorchScript" in msg


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
