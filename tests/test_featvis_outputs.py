"""Class objectives of feature visualization agree with the core targets: ``prob`` is core's
``prob:k`` (single outputs, Softmax/Sigmoid outputs), ``logit`` is refused on probability
outputs, saturated classes still rise; and an ONNX file's declared input size is kept.
Small untrained or hand-set models only."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset import featvis as fv
from inverset.featvis.objectives import Context
from inverset.model import forward
from inverset.target import parse_target
from tests.conftest import need

torch.set_num_threads(1)

LOGIT_REFUSED = (
    r"the model outputs probabilities \(its last layer is {}\), not logits; use the "
    r"objective prob \(--objective prob"
)


def conv_head(n_out: int, head: nn.Module, c: int = 1, size: int = 8) -> nn.Module:
    """An untrained conv net on c x size x size pictures with ``n_out`` outputs, then ``head``."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(c, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, n_out),
        head,
    ).eval()
    m.input_shape = (c, size, size)
    return m


def core(model: nn.Module, target: str, xs: np.ndarray) -> np.ndarray:
    """The core target's value on ``xs`` (inverset.target, as maximize reads it)."""
    with torch.no_grad():
        acts = forward(model, torch.from_numpy(xs), ["out"])
        return parse_target(target).evaluate(acts).double().numpy()


# 1. logit on a model whose outputs are probabilities


@pytest.mark.parametrize(("head", "name"), [(nn.Softmax(1), "Softmax"), (nn.Sigmoid(), "Sigmoid")])
def test_logit_is_refused_on_probability_outputs_and_prob_is_the_default(head, name):
    m = conv_head(3, head)
    with pytest.raises(iv.InversetError, match=LOGIT_REFUSED.format(name)):
        fv.visualize(m, objective="logit", steps=2)
    with pytest.raises(iv.InversetError, match=LOGIT_REFUSED.format(name)):
        fv.visualize(m, objective=fv.class_logit(0), batch_size=1, steps=2)
    r = fv.visualize(m, steps=5)
    assert r.query["objective"] == "prob"
    assert r.info["labels"] == ["prob:0", "prob:1", "prob:2"]
    for k in range(3):  # the output itself, not a softmax of it
        assert r.values[k] == pytest.approx(core(m, f"prob:{k}", r.xs[k : k + 1])[0], abs=1e-6)
    # a model with logits keeps logit as its default
    assert fv.visualize(conv_head(3, nn.Identity()), steps=2).query["objective"] == "logit"


# 2. prob of a single output is core's prob:k (prob:1 = sigmoid, prob:0 = 1 - it)


@pytest.mark.parametrize("head", [nn.Identity(), nn.Sigmoid()])
def test_prob_of_a_single_output_is_the_core_targets_prob(head):
    m = conv_head(1, head)
    r = fv.visualize(m, objective="prob", steps=30, lr=0.1)
    assert r.info["labels"] == ["prob:0", "prob:1"]
    for k in (0, 1):
        want = core(m, f"prob:{k}", r.xs[k : k + 1])[0]
        assert r.values[k] == pytest.approx(want, abs=1e-6)
    with torch.no_grad():
        start = core(m, "prob:1", np.full((1, 1, 8, 8), 0.5, dtype=np.float32))[0]
    # each class rose from a grey picture's (a softmax of one output had no gradient)
    assert r.values[1] > start and r.values[0] > 1 - start


def test_class_prob_equals_core_prob_on_any_output():
    out = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    one = torch.tensor([[0.3], [-2.0]])
    imgs = torch.zeros(2, 1, 2, 2)
    for acts in ({"out": out}, {"out": one}):
        ctx = Context(acts, imgs)
        for k in range(max(2, acts["out"].shape[1])):
            want = parse_target(f"prob:{k}").evaluate(acts)
            np.testing.assert_allclose(fv.class_prob(k)(ctx), want, rtol=1e-6)
    # a map-shaped output (C, H, W): one classifier per position along axis 1, averaged
    seg = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    ctx = Context({"out": seg}, imgs)
    np.testing.assert_allclose(
        fv.class_prob([0, 2])(ctx), torch.softmax(seg, 1)[[0, 1], [0, 2]].mean((1, 2)), rtol=1e-6
    )


# 3. a saturated class (p ~ 1e-11) still rises; the value is the probability


def saturated(single: bool) -> nn.Module:
    """Class 1 has p = sigmoid(60 * (mean pixel - 0.9)): ~4e-11 on grey, ~0.998 on white."""
    lin = nn.Linear(64, 1 if single else 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[-1] = 60.0 / 64
        lin.bias[-1] = -54.0
    m = nn.Sequential(nn.Flatten(), lin).eval()
    m.input_shape = (1, 8, 8)
    return m


@pytest.mark.parametrize("single", [False, True])
def test_a_saturated_class_probability_rises(single):
    m = saturated(single)
    grey = np.full((1, 1, 8, 8), 0.5, dtype=np.float32)
    assert core(m, "prob:1", grey)[0] < 1e-10
    r = fv.visualize(
        m, channels=[1], objective="prob", param="pixels", transforms="none", steps=60, lr=0.2
    )
    assert r.values[0] > 0.9
    assert r.values[0] == pytest.approx(core(m, "prob:1", r.xs)[0], abs=1e-6)
    # the history records the probability too, not the surrogate climbed
    assert min(r.history["objective"]) >= 0 and max(r.history["objective"]) <= 1


def test_prob_scaled_by_numbers_climbs_the_surrogate_combined_climbs_the_sum():
    """A number added or multiplied keeps prob's log-odds surrogate (the maximizers stay);
    another objective added drops it: the sum asked for is what is climbed and reported."""
    m = saturated(False)
    scaled = 2 * fv.class_prob(1) + 1
    r = fv.visualize(
        m, objective=scaled, param="pixels", transforms="none", batch_size=1, steps=60, lr=0.2
    )
    assert scaled.surrogate is not None
    assert r.values[0] == pytest.approx(2 * core(m, "prob:1", r.xs)[0] + 1, abs=1e-5)
    assert r.values[0] > 2.8  # the saturated class lifted to p > 0.9
    summed = fv.class_prob(1) - 0.01 * fv.total_variation()
    assert summed.surrogate is None
    r = fv.visualize(
        m, objective=summed, param="pixels", transforms="none", batch_size=1, steps=5, lr=0.2
    )
    tv = np.abs(np.diff(r.xs, axis=2)).mean() + np.abs(np.diff(r.xs, axis=3)).mean()
    assert r.values[0] == pytest.approx(core(m, "prob:1", r.xs)[0] - 0.01 * tv, abs=1e-5)


# 5. an ONNX file that declares its input size gets inputs of that size


@pytest.fixture(scope="module")
def softmax_onnx(tmp_path_factory) -> Path:
    """An ONNX file declaring a fixed 1x3x12x16 input: conv, global max pool, Softmax."""
    need("onnx")
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
        nn.Softmax(1),
    ).eval()
    path = tmp_path_factory.mktemp("fvonnx") / "softmax_rgb.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m, (torch.rand(1, 3, 12, 16),), str(path), input_names=["x"], dynamo=False
        )
    return path


def test_an_onnx_file_of_fixed_size_gets_resized_inputs(softmax_onnx):
    ort = need("onnxruntime")
    m = iv.load_model(softmax_onnx)
    r = fv.visualize(m, size=(20, 30), steps=5)
    assert r.arrays["images"].shape == (3, 3, 20, 30)
    assert r.xs.shape == (3, 3, 12, 16) and r.query["resized_to"] == [12, 16]
    assert "resized to the model's fixed input size 12x16" in r.message
    sess = ort.InferenceSession(str(softmax_onnx), providers=["CPUExecutionProvider"])
    got = [sess.run(None, {"x": r.xs[k : k + 1]})[0][0, k] for k in range(3)]
    np.testing.assert_allclose(r.values, got, atol=1e-5)
    # its own size is not resized
    assert fv.visualize(m, steps=2).query["resized_to"] is None


def test_models_of_any_size_are_not_resized():
    conv = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    conv.input_shape = (1, 8, 8)  # recorded, but the model takes any size
    r = fv.visualize(conv, size=16, steps=2)
    assert r.xs.shape[2:] == (16, 16) and r.query["resized_to"] is None


def test_the_cli_refuses_logit_and_renders_prob_on_a_softmax_onnx(run_main, softmax_onnx, tmp_path):
    code, out, err = run_main(
        "visualize", softmax_onnx, "--steps", "3", "--no-progress", "--out", tmp_path / "v"
    )
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert code == 0 and rows == ["prob:0", "prob:1", "prob:2"]
    code, _, err = run_main(
        "visualize", softmax_onnx, "--objective", "logit", "--steps", "3", "--no-progress"
    )
    assert code == 2 and "Traceback" not in err
    assert "not logits; use the objective prob (--objective prob" in err
    assert len(err.strip().splitlines()) == 1


def test_a_half_precision_models_pictures_return_the_input_it_ran_on(digits_cnn):
    """A float16 model renders in float32 and casts on the way in: ``x`` is that cast input
    (it was the float32 image, which the model never saw), and ``value`` is the model's there."""
    import copy

    half = copy.deepcopy(digits_cnn.model).half()
    vis = fv.visualize(half, layer="out", channels=[3], steps=5, seed=0)
    image = np.random.default_rng(0).random((8, 8, 1))
    dream = fv.dream(half, image, layer="out", octaves=1, steps=3, seed=0)
    for r in (vis, dream):
        assert r.x.dtype == np.float16 and r.xs.dtype == np.float16
    with torch.no_grad():
        out = half(torch.as_tensor(vis.x[None]))
    assert vis.value == float(out[0, 3])
