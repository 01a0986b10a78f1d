"""The exact solver on layers beyond Linear/ReLU: clamping (ReLU6, hardtanh, clamp) in every
form torch writes it, against a dense grid and the same network exported to ONNX; and the
refusals that name what works instead (a final Softmax/Sigmoid, half precision)."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import inverset as iv
from inverset.errors import InversetError

torch.set_num_threads(1)
BOX = iv.Box(-1, 1, shape=(2,))
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))


class _Clamped(nn.Module):
    """2 -> 8 -> clamp -> 6 -> clamp -> 1, weights scaled so that both ends are active."""

    def __init__(self, act: Callable[[torch.Tensor], torch.Tensor], seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.fc2, self.out = nn.Linear(2, 8), nn.Linear(8, 6), nn.Linear(6, 1)
        with torch.no_grad():
            self.fc1.weight.mul_(6.0)
            self.fc2.weight.mul_(3.0)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc2(self.act(self.fc1(x)))))


class _Methods(_Clamped):
    """Tensor methods, and clamp to per-unit tensor bounds (buffers: traced as get_attr)."""

    def __init__(self, seed: int) -> None:
        super().__init__(nn.Identity(), seed)
        self.register_buffer("lo", torch.linspace(-1.0, 0.5, 8))
        self.register_buffer("hi", torch.linspace(0.5, 2.0, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x).clamp(min=-0.3).clip(max=1.5)
        h = torch.clamp(h, self.lo)
        h = torch.clamp(self.fc2(h), max=self.hi).clamp_min(-2.0)
        return self.out(h.clamp_max(1.8))


#: every form of clamping torch has: modules, functions, keyword and positional ends, one end
FORMS: dict[str, Callable[[int], nn.Module]] = {
    "ReLU6": lambda s: _Clamped(nn.ReLU6(), s),
    "Hardtanh": lambda s: _Clamped(nn.Hardtanh(-0.5, 0.8), s),
    "F.relu6": lambda s: _Clamped(F.relu6, s),
    "F.hardtanh": lambda s: _Clamped(lambda t: F.hardtanh(t, min_val=-2.0, max_val=0.7), s),
    "torch.clamp": lambda s: _Clamped(lambda t: torch.clamp(t, 0, 6), s),
    "torch.clip": lambda s: _Clamped(lambda t: torch.clip(t, -1.0, 1.0), s),
    "clamp_min": lambda s: _Clamped(lambda t: torch.clamp_min(t, 0.25), s),
    "clamp_max": lambda s: _Clamped(lambda t: torch.clamp(t, max=0.5), s),
    "methods": _Methods,
}


def _grid(model: nn.Module, n: int = 801) -> tuple[float, float, float]:
    """(max, min, step) of ``out:0`` on an n x n grid of BOX; ``step``: the largest change
    between neighbouring grid points, which bounds how far the true max/min can lie."""
    g = torch.linspace(-1, 1, n)
    with torch.no_grad():
        v = model(torch.cartesian_prod(g, g))[:, 0].double().reshape(n, n)
    step = max(float(v.diff(dim=0).abs().max()), float(v.diff(dim=1).abs().max()))
    return float(v.max()), float(v.min()), step


def _certified(model: nn.Module) -> tuple[float, float]:
    """The exact solver's certified (max, min) of ``out:0`` over BOX (to 1e-7), checked at
    its points."""
    ends = []
    for solve in (iv.maximize, iv.minimize):
        r = solve(model, "out:0", BOX, solver="exact", time_limit=30, tol=1e-7)
        assert r.status == "optimal", r.message
        with torch.no_grad():
            assert float(model(torch.as_tensor(r.x)[None].float())[0, 0]) == pytest.approx(
                r.value, abs=1e-5
            )
        ends.append(r.value)
    return ends[0], ends[1]


def _onnx(model: nn.Module, path: Path) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 2),),
            str(path),
            input_names=["x"],
            dynamic_axes={"x": {0: "b"}},
            opset_version=13,
            dynamo=False,
        )
    return iv.load_model(path)


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("seed", [0, 1])
def test_clamping_is_certified_like_the_grid_and_the_onnx_export(form, seed, tmp_path):
    """These were 'cannot handle layer act of type ReLU6' (the operation relu6, hardtanh,
    clamp, ...) while the same network exported to ONNX (Clip) was certified."""
    model = FORMS[form](seed).eval()
    hi, lo = _certified(model)
    g_hi, g_lo, step = _grid(model)
    assert g_hi - 1e-5 <= hi <= g_hi + step
    assert g_lo - step <= lo <= g_lo + 1e-5
    if HAS_ONNX:
        o_hi, o_lo = _certified(_onnx(model, tmp_path / "m.onnx"))
        assert (o_hi, o_lo) == pytest.approx((hi, lo), abs=1e-5)


class _Fn(nn.Module):
    """A functional form of :data:`FORMS` as a module, for TorchScript."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "F.relu6":
            return F.relu6(x)
        if self.kind == "clamp_min":
            return torch.clamp_min(x, 0.25)
        return torch.clamp(x, max=0.5)


@pytest.mark.parametrize("form", ["ReLU6", "Hardtanh", "F.relu6", "clamp_min", "clamp_max"])
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_clamping_is_certified_like_the_module(form, how):
    """TorchScript graphs hold aten::hardtanh / relu6 / clamp / clamp_min: they were 'cannot
    handle the operation aten::hardtanh in a TorchScript model's (frozen) graph'."""
    model = FORMS[form](0).eval()
    act = model.act if isinstance(model.act, nn.Module) else _Fn(form)
    seq = nn.Sequential(model.fc1, act, model.fc2, act, model.out).eval()
    ts = torch.jit.script(seq) if how == "script" else torch.jit.trace(seq, torch.zeros(2, 2))
    assert _certified(ts) == pytest.approx(_certified(model), abs=1e-6)


def test_clamping_keeps_refusing_what_is_not_piecewise_linear():
    """Bounds computed from the input, or partly infinite, stay one-line refusals."""

    class ByInput(_Clamped):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc1(x)
            return self.out(self.fc2(torch.clamp(h, min=-h)))

    class PartInf(_Clamped):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            lo = torch.tensor([0.0, float("-inf")] * 4)
            return self.out(self.fc2(torch.clamp(self.fc1(x), min=lo)))

    for cls, words in ((ByInput, "computed from the input"), (PartInf, "some are infinite")):
        with pytest.raises(InversetError, match=words) as info:
            iv.maximize(cls(nn.Identity(), 0).eval(), "out:0", BOX, solver="exact")
        assert "\n" not in str(info.value) and "--solver gradient" in str(info.value)
    gelu = _Clamped(nn.GELU(), 0).eval()
    with pytest.raises(InversetError, match="of type GELU"):
        iv.maximize(gelu, "out:0", BOX, solver="exact")


# ----------------------------------------------------------------------------- final softmax
def _probs(last: nn.Module, n_out: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, n_out), last).eval()


@pytest.mark.parametrize("target", ["out:2", "prob:2", "margin:2", "out:2 - out:0"])
def test_a_final_softmax_names_the_layer_below_it(target):
    """out:2 / margin:2 said 'cannot handle layer 3 of type Softmax', prob:2 'use logit:k or
    margin:k' (which fail too): none named what works, the layer below the Softmax."""
    model = _probs(nn.Softmax(dim=1))
    with pytest.raises(InversetError) as info:
        iv.maximize(model, target, BOX, solver="exact")
    msg = str(info.value)
    assert "\n" not in msg
    assert "ends in Softmax (layer '3')" in msg
    # a margin is named as the margin in logits (it had been one logit alone)
    named = "2:2 - max(2:0, 2:1, 2:3)" if target.startswith("margin") else "2:2"
    assert f"use -t {named!r}" in msg if target.startswith("margin") else f"use -t {named} " in msg
    r = iv.maximize(model, named, BOX, solver="exact")  # what it names works
    assert r.status == "optimal"


def test_a_final_sigmoid_or_functional_softmax_names_the_layer_below_it(tmp_path):
    """A binary classifier ending in Sigmoid: prob:1 reads unit 0 of the layer below; a
    custom forward ending in torch.softmax names the module it is applied to."""
    with pytest.raises(InversetError, match=r"ends in Sigmoid \(layer '3'\).* -t 2:0, "):
        iv.maximize(_probs(nn.Sigmoid(), 1), "prob:1", BOX, solver="exact")

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = nn.Sequential(nn.Linear(2, 5), nn.ReLU()), nn.Linear(5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.head(self.body(x)), dim=-1)

    with pytest.raises(InversetError, match=r"ends in Softmax, .* use -t head:1 "):
        iv.maximize(Functional().eval(), "out:1", BOX, solver="exact")
    ts = torch.jit.script(_probs(nn.Softmax(dim=1)))
    with pytest.raises(InversetError, match=r"ends in Softmax.*TorchScript model's hidden layers"):
        iv.maximize(ts, "out:2", BOX, solver="exact")


def test_the_advice_below_a_final_squash_is_a_target_that_works():
    """A single logit z under a Sigmoid: prob:0 is 1 - sigmoid(z), so its target is -z (the
    advice said z, the other class); a Softmax over a module named out names it .out (the
    advice said out:1, the target that failed); and the advised targets certify."""
    with pytest.raises(InversetError, match=r"use -t -2:0 \(prob:0 is 1 - sigmoid") as info:
        iv.maximize(_probs(nn.Sigmoid(), 1), "prob:0", BOX, solver="exact")
    assert "2:1" not in str(info.value)
    low = iv.minimize(_probs(nn.Sigmoid(), 1)[:3], "out:0", BOX, solver="exact")
    best = iv.maximize(_probs(nn.Sigmoid(), 1), "-2:0", BOX, solver="exact")
    assert best.value == pytest.approx(-low.value, abs=1e-6)

    class OutSoftmax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc, self.out = nn.Linear(2, 5), nn.Linear(5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.out(torch.relu(self.fc(x))), 1)

    with pytest.raises(InversetError, match=r"use -t \.out:1 "):
        iv.maximize(OutSoftmax().eval(), "out:1", BOX, solver="exact")
    assert iv.maximize(OutSoftmax().eval(), ".out:1", BOX, solver="exact").status == "optimal"


def test_a_softmax_inside_the_model_keeps_the_plain_refusal():
    """Only a final Softmax gets the advice: one inside is just not supported."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Softmax(dim=1), nn.Linear(4, 1)).eval()
    with pytest.raises(InversetError, match="layer '1' of type Softmax") as info:
        iv.maximize(model, "out:0", BOX, solver="exact")
    assert "ends in" not in str(info.value)


# ----------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_refusal_names_the_command_line_fix(dtype):
    """The message said 'pass model.float()', which a command-line user cannot do."""
    model = _probs(nn.Identity(), 1).to(dtype)
    with pytest.raises(InversetError) as info:
        iv.maximize(model, "out:0", BOX, solver="exact")
    msg = str(info.value)
    assert "model.float()" in msg and "command line" in msg and "no option" in msg


# ----------------------------------------------------------------------------- what forward does
class _InPlace(nn.Module):
    """``relu(x0 + 0.9) - 0.99 x0`` through an in-place ReLU that a skip reads after it (the
    graph had read h before the ReLU: bound 0.91, where x0 = -1 gives 0.99); ``form``
    "subclass": the ReLU inside a subclass of nn.Linear with a forward of its own."""

    def __init__(self, form: str):
        super().__init__()
        first = _LinearFloor(2, 1) if form == "subclass" else nn.Linear(2, 1)
        self.fc1, self.skip, self.form = first, nn.Linear(2, 1), form
        self.act = nn.ReLU(inplace=True)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0]]))
            self.fc1.bias.fill_(0.9)
            self.skip.weight.copy_(torch.tensor([[-0.99, 0.0]]))
            self.skip.bias.zero_()

    def forward(self, x):
        h = self.fc1(x)
        if self.form == "module":
            self.act(h)
        elif self.form == "function":
            F.relu(h, inplace=True)
        elif self.form == "method":
            h.relu_()
        return h + self.skip(x)


class _LinearFloor(nn.Linear):
    """A Linear whose forward clamps at 0: no affine layer, though an nn.Linear."""

    def forward(self, x):
        return super().forward(x).clamp(min=0.0)


@pytest.mark.parametrize(
    "model",
    [_InPlace("module"), _InPlace("function"), _InPlace("method"), _InPlace("subclass")],
    ids=["inplace-module", "inplace-function", "inplace-method", "subclass-forward"],
)
def test_what_forward_really_computes_is_certified(model):
    """Two false certificates (optimal 0.91 with 0.99 reachable): the 16-point agreement
    check missed the region where the extracted network and the model differ."""
    top, low, step = _grid(model.eval())
    hi, lo = _certified(model)
    assert top == pytest.approx(0.99, abs=1e-6) and hi == pytest.approx(top, abs=1e-6)
    assert low - step <= lo <= low + 1e-6


def test_an_in_place_change_through_a_view_that_is_read_again_is_refused():
    class ViaView(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(2, 4), nn.Linear(4, 1)

        def forward(self, x):
            h = self.a(x)
            h.view(-1, 2, 2).relu_()
            return self.o(h)

    with pytest.raises(InversetError, match="shares its memory was changed in place"):
        iv.maximize(ViaView(), "out:0", BOX, solver="exact")


def test_a_reshape_to_another_tensors_batch_size_is_read():
    """``h.view(x.size(0), -1)`` was a RuntimeError traceback (exit 4): each value is probed
    with a batch of its own size."""

    class ViewBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(8, 1)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return self.fc(h.view(x.size(0), -1)) + self.fc(h.reshape(x.shape[0], 8))

    torch.manual_seed(0)
    model = ViewBatch().eval()
    box = iv.Box(0, 1, shape=(1, 4, 4))
    r = iv.maximize(model, "out:0", box, solver="exact", time_limit=30)
    g = iv.maximize(model, "out:0", box, solver="gradient", seed=0, starts=64)
    assert r.status == "optimal" and r.value >= g.value - 1e-5 and r.bound >= g.value - 1e-6


def test_a_view_taken_after_an_in_place_change_is_read():
    """``h.relu_()`` then ``h.view(h.size(0), -1)``: a view made after the change reads it, and
    was refused as a change through a view; ``shape[1:].numel()`` still gives the size."""

    class After(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(2, 6), nn.Linear(6, 1)

        def forward(self, x):
            h = self.a(x)
            h.relu_()
            return self.o(h.view(h.size(0), -1)) + self.o(h.reshape(-1, h.shape[1:].numel()))

    torch.manual_seed(0)
    model = After().eval()
    top, _, step = _grid(model)
    r = iv.maximize(model, "out:0", BOX, solver="exact")
    assert r.status == "optimal" and top - 1e-6 <= r.value <= top + step


class _Alias(nn.Module):
    """``g`` shares ``h``'s memory (``h.float()``, dropout in eval mode, a view of a view),
    then ``h.relu_()`` rectifies both; the model reaches 2.0 at x = -1. The graph had read g
    before the ReLU: 'PROVEN: out:0 < 1.998' (certify, exit 0)."""

    def __init__(self, alias: str):
        super().__init__()
        self.alias, self.fc1, self.fc2 = alias, nn.Linear(4, 1), nn.Linear(4, 1)
        with torch.no_grad():
            self.fc1.weight.fill_(0.01)
            self.fc1.bias.fill_(0.035)
            self.fc2.weight.fill_(-1.0)
            self.fc2.bias.fill_(-3.0)

    def forward(self, x):
        h = self.fc1(x)
        if self.alias == "float":
            g = h.float()
        elif self.alias == "dropout":
            g = F.dropout(h, 0.5, self.training)
        else:
            g = h.unsqueeze(1).squeeze(1)
        h.relu_()
        return g + 2 * F.relu(self.fc2(x))


@pytest.mark.parametrize("alias", ["float", "dropout", "view-of-view"])
def test_a_tensor_sharing_memory_with_one_changed_in_place_is_refused(alias):
    model = _Alias(alias).eval()
    box = iv.Box(-1, 1, shape=(4,))
    with torch.no_grad():
        assert float(model(-torch.ones(1, 4))[0, 0]) == pytest.approx(2.0)
    with pytest.raises(InversetError, match="shares its memory was changed in place"):
        iv.in_range(model, "out:0", (1.998, 3.0), box, solver="exact")


def test_activations_added_by_tensor_methods_and_out_are_read():
    """``g.add_(h)`` / ``g.add(h, alpha=2)`` with two activations were a TypeError traceback;
    ``torch.add(h, 1.0, out=h)`` an AttributeError."""

    class Methods(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.o = nn.Linear(2, 4), nn.Linear(2, 4), nn.Linear(4, 1)

        def forward(self, x):
            g, h = self.a(x), torch.relu(self.b(x))
            g.add_(h)
            g = g.add(h, alpha=2.0)
            torch.add(g, 1.0, out=g)
            return self.o(torch.relu(g))

    torch.manual_seed(0)
    model = Methods().eval()
    top, low, step = _grid(model)
    hi, lo = _certified(model)
    assert top - 1e-6 <= hi <= top + step and low - step <= lo <= low + 1e-6
