"""Every target form evaluates to the value computed by hand; bad targets give clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset.model import forward


class Tiny(nn.Module):
    """fc1 (linear 2->3) -> relu -> conv (as 1x3x1x1 image) -> out 3 logits."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 3)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(1, 2, kernel_size=1)
        self.head = nn.Linear(6, 3)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
            self.fc1.bias.copy_(torch.tensor([0.0, 0.5, -0.25]))
            self.conv.weight.copy_(torch.tensor([[[[2.0]]], [[[-1.0]]]]))
            self.conv.bias.copy_(torch.tensor([0.0, 1.0]))
            self.head.weight.copy_(torch.arange(18.0).reshape(3, 6) / 10)
            self.head.bias.zero_()

    def forward(self, x):
        h = self.relu(self.fc1(x))
        c = self.conv(h.reshape(-1, 1, 3, 1))
        return self.head(c.reshape(-1, 6))


@pytest.fixture
def net_and_acts():
    net = Tiny()
    x = torch.tensor([[0.3, -0.2], [1.0, 2.0]])
    acts = forward(net, x, ["fc1", "conv"])
    return net, x, acts


def ev(text, acts, labels=None):
    return iv.parse_target(text, labels).evaluate(acts)


def test_output_refs(net_and_acts):
    _, _, acts = net_and_acts
    out = acts["out"]
    assert torch.allclose(ev("out:2", acts), out[:, 2])
    assert torch.allclose(ev("logit:1", acts), out[:, 1])
    p = torch.softmax(out, 1)
    assert torch.allclose(ev("prob:0", acts), p[:, 0])
    others = torch.stack([out[:, 0], out[:, 2]], 1).amax(1)
    assert torch.allclose(ev("margin:1", acts), out[:, 1] - others)


def test_hidden_unit_channel_and_neuron(net_and_acts):
    _, x, acts = net_and_acts
    h = torch.relu(
        x @ torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]) + torch.tensor([0, 0.5, -0.25])
    )
    fc = x @ torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]) + torch.tensor([0, 0.5, -0.25])
    assert torch.allclose(ev("fc1:2", acts), fc[:, 2])
    # conv channel 1 = -h + 1 at every position; its spatial mean and one neuron
    assert torch.allclose(ev("conv:1", acts), (1 - h).mean(1))
    assert torch.allclose(ev("conv:0,2,0", acts), 2 * h[:, 2])


def test_arithmetic_min_max(net_and_acts):
    _, _, acts = net_and_acts
    o = acts["out"]
    assert torch.allclose(ev("out:0 - 0.5*out:2", acts), o[:, 0] - 0.5 * o[:, 2])
    assert torch.allclose(ev("-(out:0 + 2) / 4", acts), -(o[:, 0] + 2) / 4)
    assert torch.allclose(
        ev("min(out:0, out:1, 3)", acts),
        torch.minimum(torch.minimum(o[:, 0], o[:, 1]), torch.tensor(3.0)),
    )
    assert torch.allclose(
        ev("max(out:0, fc1:1) * 2", acts), 2 * torch.maximum(o[:, 0], acts["fc1"][:, 1])
    )


def test_labels_and_sigmoid_prob(net_and_acts):
    _, _, acts = net_and_acts
    assert torch.allclose(
        ev("prob:cat", acts, ["dog", "cat", "cow"]), torch.softmax(acts["out"], 1)[:, 1]
    )
    one = {"out": torch.tensor([[0.0], [2.0]])}
    assert torch.allclose(ev("prob:1", one), torch.sigmoid(one["out"][:, 0]))
    assert torch.allclose(ev("prob:0", one), 1 - torch.sigmoid(one["out"][:, 0]))


def test_quoted_and_numeric_class_names(net_and_acts):
    """Names with spaces or slashes are quoted; a number that names another class is refused
    as ambiguous; a comma right after an output reference separates arguments."""
    _, _, acts = net_and_acts
    sm = torch.softmax(acts["out"], 1)
    names = ["a", "T-shirt/top", "b c"]
    assert torch.allclose(ev('prob:"T-shirt/top"', acts, names), sm[:, 1])
    assert torch.allclose(ev("prob:'b c' - prob:a", acts, names), sm[:, 2] - sm[:, 0])
    e = iv.parse_target('prob:"T-shirt/top" - prob:a', names)
    assert str(iv.parse_target(str(e), names)) == str(e)  # read back as written
    quoted = ['say "hi"', "b"]
    e = iv.parse_target("prob:'say \"hi\"'", quoted)
    assert str(iv.parse_target(str(e), quoted)) == str(e)
    digits = ["1", "2", "3"]  # scikit-learn classes_ [1, 2, 3]
    with pytest.raises(iv.InversetError, match="ambiguous: class index 1 is named '2'"):
        iv.parse_target("prob:1", digits)
    assert torch.allclose(ev('prob:"1"', acts, digits), sm[:, 0])
    assert torch.allclose(ev("prob:0", acts, digits), sm[:, 0])  # no class is named 0
    assert torch.allclose(ev("logit:1", acts, ["0", "1", "2"]), acts["out"][:, 1])
    both = torch.maximum(acts["out"][:, 0], torch.ones_like(acts["out"][:, 0]))
    assert torch.allclose(ev("max(out:0,1)", acts), both)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("out:", "malformed target"),
        ("out:0 +", "malformed target"),
        ("foo(out:0)", "unknown function"),
        ("out:0 $ 1", "unexpected character"),
        ("prob:zebra", "unknown class name"),
        ("", "empty"),
    ],
)
def test_malformed(text, fragment):
    with pytest.raises(iv.InversetError, match=fragment):
        iv.parse_target(text, ["dog", "cat"])


def test_unknown_layer_lists_names_and_index_range():
    net = Tiny()
    with pytest.raises(iv.InversetError, match=r"unknown layer 'fc9'.*fc1, relu, conv, head"):
        iv.maximize(net, "fc9:0", iv.Box(0, 1, shape=(2,)))
    with pytest.raises(iv.InversetError, match=r"unit 3 is out of range.*3 units \(0..2\)"):
        iv.maximize(net, "fc1:3", iv.Box(0, 1, shape=(2,)))
    with pytest.raises(iv.InversetError, match=r"3 outputs \(0..2\)"):
        iv.maximize(net, "out:5", iv.Box(0, 1, shape=(2,)))
    with pytest.raises(iv.InversetError, match=r"does not fit layer 'conv'"):
        iv.maximize(net, "conv:0,9,0", iv.Box(0, 1, shape=(2,)))
    assert all(not m._forward_hooks for m in net.modules())


def test_margin_of_a_single_output_says_what_to_use_instead():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(iv.InversetError, match=r"needs at least 2 outputs.*use out:0"):
        iv.maximize(net, "margin:0", iv.Box(0, 1, shape=(2,)), steps=2, starts=1)


def test_piecewise_linear_flag():
    assert iv.parse_target("out:0 - 0.5*max(fc1:1, margin:2)").piecewise_linear
    assert not iv.parse_target("prob:1").piecewise_linear
    assert not iv.parse_target("out:0 * out:1").piecewise_linear


class Unused(nn.Module):
    """fc1 -> act -> head, and ``spare``, which forward never calls."""

    def __init__(self):
        super().__init__()
        self.fc1, self.spare, self.act, self.head = (
            nn.Linear(2, 4),
            nn.Linear(4, 4),
            nn.ReLU(),
            nn.Linear(4, 1),
        )

    def forward(self, x):
        return self.head(self.act(self.fc1(x)))


class Shared(nn.Module):
    """One ReLU module ``act`` used after fc1 (6 units) and after fc2 (4 units)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act, self.head = (
            nn.Linear(3, 6),
            nn.Linear(6, 4),
            nn.ReLU(),
            nn.Linear(4, 1),
        )

    def forward(self, x):
        return self.head(self.act(self.fc2(self.act(self.fc1(x)))))


def test_a_layer_forward_never_runs_is_a_clear_error():
    net = Unused()
    with pytest.raises(iv.InversetError, match=r"layer 'spare' is never run by the model's"):
        iv.maximize(net, "spare:0", iv.Box(-1, 1, shape=(2,)), steps=2, starts=1)
    info = {i.name: i for i in iv.layers(net, (2,))}
    assert info["spare"].calls == 0 and info["spare"].note == "never run by forward"
    assert info["fc1"].calls == 1 and info["fc1"].note == ""
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_a_layer_run_twice_is_no_target_but_its_model_still_works():
    torch.manual_seed(0)
    net = Shared()
    box = iv.Box(-1, 1, shape=(3,))
    with pytest.raises(iv.InversetError, match=r"layer 'act' runs 2 times in one forward pass"):
        iv.maximize(net, "act:1", box, steps=2, starts=1)
    with pytest.raises(iv.InversetError, match=r"'act' runs 2 times"):
        iv.maximize(net, "out:0", box, steps=2, starts=1, constraints=[("act:0", 0, 1)])
    assert iv.maximize(net, "fc2:1", box, steps=5, starts=2).status == "converged"
    info = {i.name: i for i in iv.layers(net, (3,))}
    assert info["act"].calls == 2 and info["act"].shape is None and "2x" in info["act"].note
    assert info["fc2"].shape == (4,)
    from inverset.model import probe

    with pytest.raises(iv.InversetError, match="runs 2 times"), probe(net, ["act"]):
        net(torch.zeros(1, 3))
    with probe(net, ["fc1"]) as acts:  # every pass refills the dict
        net(torch.zeros(2, 3))
        net(torch.zeros(5, 3))
        assert acts["fc1"].shape == (5, 6) and acts.calls == {"fc1": 1}


def test_a_labels_file_that_is_not_text_is_a_clear_error(tmp_path):
    from inverset.target import read_labels

    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(iv.InversetError, match=r"labels file .*photo.png is not UTF-8 text"):
        read_labels(str(png))
    (tmp_path / "bom.txt").write_bytes("\ufeffcat\ndog\n".encode())
    assert read_labels(str(tmp_path / "bom.txt")) == ["cat", "dog"]


@pytest.mark.parametrize(
    "text",
    ["+".join(["out:0"] * 1000), "(" * 500 + "out:1" + ")" * 500, "-" * 1000 + "out:0"],
    ids=["1000 terms", "500 parentheses", "1000 signs"],
)
def test_too_deep_a_target_is_a_clear_error_not_a_recursion_error(text):
    with pytest.raises(iv.InversetError, match="too deeply nested or too long") as e:
        iv.parse_target(text)
    assert len(str(e.value)) < 300  # the expression is quoted cut short


def test_a_target_at_the_depth_limit_still_evaluates(net_and_acts):
    from inverset.target import MAX_DEPTH

    _, _, acts = net_and_acts
    t = iv.parse_target("+".join(["out:0"] * MAX_DEPTH))
    assert torch.allclose(t.evaluate(acts), MAX_DEPTH * acts["out"][:, 0])
    assert str(t).count("out:0") == MAX_DEPTH


@pytest.mark.parametrize(
    "text, message",
    [
        ("1e400*out:3", "holds the number 1e400, too large for a float"),
        ("out:3 - 1e999", "holds the number 1e999, too large for a float"),
        ("margin:3 / 0", "divides by zero; divide by a nonzero number"),
        ("out:1 / (2 - 2)", "divides by zero ((2 - 2) is 0)"),
        ("1e300 * 1e300 * out:0", "holds (1e+300 * 1e+300), which is not a finite number (inf)"),
    ],
)
def test_a_constant_that_is_not_finite_is_named_in_the_target(text, message):
    with pytest.raises(iv.InversetError, match="target") as e:
        iv.parse_target(text)
    assert message in str(e.value)


def test_constants_that_are_finite_still_parse(net_and_acts):
    _, _, acts = net_and_acts
    out = acts["out"]
    assert torch.allclose(ev("out:0 / (1 + 1)", acts), out[:, 0] / 2)
    assert torch.allclose(ev("0 * out:0 + 0 / 2", acts), torch.zeros(2))
    assert torch.allclose(ev("out:0 - -2", acts), out[:, 0] + 2)


class Reserved(nn.Module):
    """Submodules named as the output kinds: logit, prob, margin (and min, which is no kind)."""

    def __init__(self):
        super().__init__()
        self.logit = nn.Linear(3, 4)
        self.prob = nn.ReLU()
        self.margin = nn.Linear(4, 3)
        self.min = nn.Tanh()

    def forward(self, x):
        return self.min(self.margin(self.prob(self.logit(x))))


def test_modules_named_as_output_kinds_are_dotted_layers():
    """``logit:1`` reads the model output (a module named logit had been listed with the
    example target logit:0, which read the output instead); the module is ``.logit``."""
    torch.manual_seed(0)
    net = Reserved().eval()
    x = torch.randn(5, 3)
    acts = forward(net, x, [".logit", ".prob", ".margin", "min"])
    out = net(x)
    assert torch.equal(ev("logit:1", acts), out[:, 1])
    assert torch.allclose(ev(".logit:1", acts), net.logit(x)[:, 1])
    assert torch.allclose(ev(".prob:2", acts), net.logit(x).relu()[:, 2])
    assert torch.allclose(ev(".margin:0", acts), net.margin(net.logit(x).relu())[:, 0])
    infos = {i.name: i for i in iv.layers(net, (3,))}
    assert {".logit", ".prob", ".margin", "min"} <= set(infos)
    assert infos[".logit"].example.startswith(".logit:0 (the module named logit")
    box = iv.Box(-1, 1, shape=(3,))
    r = iv.maximize(net, ".logit:1", box, seed=0, starts=4, steps=20)
    with torch.no_grad():
        unit = float(net.logit(torch.as_tensor(r.x)[None])[0, 1])
    assert r.value == pytest.approx(unit, abs=1e-6)


@pytest.mark.parametrize("text", ["3", "2*3 - 1", "min(1, 2)"])
def test_a_target_that_reads_nothing_is_a_clear_error(text):
    """A constant target crashed the gradient solver (no grad_fn traceback)."""
    with pytest.raises(iv.InversetError, match="reads no output or layer: it is a constant"):
        iv.maximize(Tiny(), text, iv.Box(0, 1, shape=(2,)))


@pytest.mark.parametrize(
    "labels",
    [[10, 20, 30], np.array([10, 20, 30]), torch.tensor([10, 20, 30]), {0: 10, 2: 30, 1: 20}],
)
def test_class_labels_that_are_not_strings_name_the_classes(labels):
    """Numbers as labels (a model's own ``labels`` buffer, or ``labels=``) were a TypeError
    traceback; they name the classes as their text."""
    torch.manual_seed(0)
    net = nn.Linear(2, 3)
    box = iv.Box(0, 1, shape=(2,))
    r = iv.maximize(net, 'prob:"20"', box, labels=labels, starts=2, steps=3, seed=0)
    with torch.no_grad():
        p = float(torch.softmax(net(torch.as_tensor(r.x)[None]), 1)[0, 1])
    assert r.value == pytest.approx(p, abs=1e-6)
    net.labels = labels
    assert iv.maximize(net, 'prob:"30"', box, starts=2, steps=3, seed=0).value > 0
    with pytest.raises(iv.InversetError, match="labels must be a list of class names"):
        iv.maximize(net, "out:0", box, labels=3, starts=2, steps=3)


def test_the_recorded_target_keeps_its_constants_exactly():
    """``%g`` had recorded 1234567.25 as 1.23457e+06 and 100000001 as 1e+08."""
    t = iv.parse_target("1234567.25*out:1 + 100000001 - 1e-7")
    assert str(t) == "(((1234567.25 * out:1) + 100000001) - 1e-07)"
    assert str(iv.parse_target(str(t))) == str(t)


def test_index_and_margin_messages_say_what_the_output_is():
    one = nn.Sequential(nn.Linear(2, 1))
    box = iv.Box(0, 1, shape=(2,))
    with pytest.raises(iv.InversetError, match=r"the model has 2 classes \(0..1\)"):
        iv.maximize(one, "prob:2", box, starts=1, steps=1)
    squashed = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())
    with pytest.raises(iv.InversetError, match=r"outputs one probability.*use prob:1 or prob:0"):
        iv.maximize(squashed, "margin:0", box, starts=1, steps=1)


def test_an_unknown_layer_of_a_torchscript_model_lists_no_unreadable_layers(tmp_path):
    """The error listed the scripted submodules ('valid layers: 0, 1, 2'), none a target."""
    net = torch.jit.script(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
    with pytest.raises(iv.InversetError, match="TorchScript model's layers cannot be read") as e:
        iv.maximize(net, "conv9:0", iv.Box(0, 1, shape=(2,)), starts=1, steps=1)
    assert "valid layers" not in str(e.value)


def test_a_layer_a_later_in_place_op_changes_is_read_as_it_returned():
    """``Sequential(Linear, ReLU(inplace=True), Linear)``, target ``0:0``: the hook kept the
    Linear's output tensor, which the ReLU then rectified: its minimum read 0, not -0.399."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(inplace=True), nn.Linear(3, 1)).eval()
    box = iv.Box(-1, 1, shape=(2,))
    r = iv.minimize(net, "0:0", box, seed=0, starts=16)
    w, b = net[0].weight[0].detach(), float(net[0].bias[0].detach())
    assert r.value == pytest.approx(b - float(w.abs().sum()), abs=1e-5) and r.value < 0
    e = iv.minimize(net, "0:0", box, solver="exact")
    assert e.status == "optimal" and e.value == pytest.approx(r.value, abs=1e-5)


def test_a_model_without_a_gradient_is_one_line_for_the_gradient_search():
    """A target detached from the input (a model optimized for inference) was a RuntimeError
    traceback ('does not require grad'); black-box solvers still answer."""

    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x):
            return self.fc(x.detach())

    box = iv.Box(-1, 1, shape=(2,))
    with pytest.raises(iv.InversetError, match=r"needs the model's gradient.*cmaes"):
        iv.maximize(Detached(), "out:0", box, solver="gradient")
    assert iv.maximize(Detached(), "out:0", box, solver="cmaes", max_evals=200).value is not None


def test_a_comma_without_a_space_in_min_max_reads_by_the_layers_axes(net_and_acts):
    """Inside min/max, ``fc1:2,0`` right after a layer's index is a multi-index only when the
    numbers make up an element of the layer's output (conv: 3 axes); else the comma separates
    arguments (fc1: 1 axis). ``max(fc1:2,0)`` was the element fc1[2,0] and refused ('index 2,0
    does not fit'), ``max(fc1:2,0.1:4)`` malformed ('found .1:4'); a number that goes on after
    the comma (0.5, 1e-1, 0.1:4) is never an index."""
    net, x, acts = net_and_acts
    fc, conv = acts["fc1"], acts["conv"]
    zero = torch.zeros_like(fc[:, 2])

    def built(text):
        box = iv.Box(-2, 2, shape=(2,))
        return iv.Problem.build(net, text, iv.Goal.maximize(), box).target

    def value(text):
        return built(text).evaluate(forward(net, x, ["fc1", "conv"]))

    assert str(built("max(fc1:2,0)")) == "max(fc1:2, 0)"
    assert torch.allclose(value("max(fc1:2,0)"), torch.maximum(fc[:, 2], zero))
    assert torch.allclose(value("min(fc1:2,0*3, 1)"), torch.minimum(fc[:, 2], zero))
    assert torch.allclose(value("max(fc1:2,0.5)"), torch.maximum(fc[:, 2], zero + 0.5))
    assert torch.allclose(value("max(fc1:2,1e-1)"), torch.maximum(fc[:, 2], zero + 0.1))
    # conv's output (2, 3, 1): three numbers are its element, two or four leave arguments
    assert str(built("max(conv:0,2,0)")) == "max(conv:0,2,0)"
    assert torch.allclose(value("max(conv:0,2,0)"), conv[:, 0, 2, 0])
    assert torch.allclose(value("max(conv:0,2,0,7)"), torch.maximum(conv[:, 0, 2, 0], zero + 7))
    mean = conv[:, 1].reshape(len(x), -1).mean(1)
    assert torch.allclose(value("max(conv:1,3)"), torch.maximum(mean, zero + 3))
    # outside a function's arguments a multi-index stays one (and a wrong one says so)
    assert torch.allclose(value("conv:0,2,0 + max((conv:0,2,0))"), 2 * conv[:, 0, 2, 0])
    with pytest.raises(
        iv.InversetError, match=r"in min/max, a comma and a space separate arguments: fc1:2, 0\)$"
    ):
        built("fc1:2,0")
    from inverset.jobs.atlas import _check_targets

    _check_targets(net, [{"target": "max(fc1:2,0)"}], None, (2,))  # an atlas reads it so too
    # a layer name after the comma is the next argument, even without the model
    e = iv.parse_target("max(fc1:2,0.1:4, -out:1)")
    assert str(e) == "max(fc1:2, 0.1:4, -(out:1))"
    assert str(iv.parse_target("max(fc1:2,0)")) == "max(fc1:2,0)"  # no model: a multi-index


class _Squeezed(nn.Module):
    """A regression net ending in ``y.squeeze()`` (a scalar for a batch of one), in
    ``y.flatten()`` (the batch merged with the outputs) or in ``y.sum(0)`` (summed over it)."""

    def __init__(self, end: str, n_out: int = 1):
        super().__init__()
        self.fc, self.o, self.end = nn.Linear(4, 5), nn.Linear(5, n_out), end

    def forward(self, x):
        y = self.o(torch.relu(self.fc(x)))
        return {"squeeze": y.squeeze, "flatten": y.flatten, "sum0": lambda: y.sum(0)}[self.end]()


def test_a_squeezed_output_is_read_and_a_flattened_one_refused_in_one_line():
    """``.squeeze()`` gives a scalar for a batch of one: out:0 crashed with an IndexError
    (a traceback from the CLI); ``.flatten()`` over the batch crashed on out:0 and blamed a
    hidden layer that was fine for fc:1."""
    torch.manual_seed(0)
    box = iv.Box(-1, 1, shape=(4,))
    m = _Squeezed("squeeze").eval()
    for solver, kw in (("gradient", {"starts": 4, "steps": 40}), ("exact", {})):
        r = iv.maximize(m, "out:0", box, solver=solver, seed=0, **kw)
        with torch.no_grad():
            assert r.value == pytest.approx(float(m(torch.as_tensor(r.x)[None])), abs=1e-6)
    assert r.status == "optimal"
    three = _Squeezed("squeeze", 3).eval()  # (3,) for one input: read as one row
    assert iv.layers(three, input_shape=(4,))[-1].shape == (3,)
    for solver, kw in (("gradient", {"starts": 1, "steps": 40}), ("exact", {})):
        r = iv.maximize(three, "out:1", box, solver=solver, seed=0, **kw)
        with torch.no_grad():
            assert r.value == pytest.approx(float(three(torch.as_tensor(r.x)[None])[1]), abs=1e-6)
    flat = _Squeezed("flatten", 3).eval()
    with pytest.raises(iv.InversetError, match=r"output has shape \(6,\) for a batch of 2 inputs"):
        iv.maximize(flat, "out:2", box, starts=4, steps=20)
    r = iv.maximize(flat, "fc:1", box, starts=4, steps=20)  # its hidden layers are fine
    with torch.no_grad():
        assert r.value == pytest.approx(float(flat.fc(torch.as_tensor(r.x))[1]), abs=1e-6)


@pytest.mark.parametrize("solver", ["gradient", "evolution", "exact"])
def test_an_output_summed_over_the_batch_is_refused_when_its_size_matches_the_batch(solver):
    """``y.sum(0)`` of two outputs gives 2 values for the validation's 2 inputs, which read as
    one row each: the gradient solver then crashed on its batch of starts (a RuntimeError),
    evolution blamed its own options, the exact solver named .sum() as unsupported."""
    torch.manual_seed(0)
    m = _Squeezed("sum0", 2).eval()
    with pytest.raises(iv.InversetError, match=r"output has shape \(2,\) for a batch of 3 inputs"):
        iv.maximize(m, "out:0", iv.Box(-1, 1, shape=(4,)), solver=solver, time_limit=2)


def test_a_layer_name_with_a_dash_is_written_in_quotes(tmp_path):
    """ModuleDict keys such as 'dense-1': `inverset layers` suggested the target
    blocks.dense-1:0, which no target could write."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleDict(
                {"dense-1": nn.Linear(4, 6), "act 1": nn.ReLU(), "head": nn.Linear(6, 3)}
            )

        def forward(self, x):
            b = self.blocks
            return b["head"](b["act 1"](b["dense-1"](x)))

    torch.manual_seed(0)
    m = M().eval()
    examples = {info.name: info.example for info in iv.layers(m, input_shape=(4,))}
    assert examples["blocks.dense-1"] == '"blocks.dense-1":0'
    assert examples["blocks.act 1"] == '"blocks.act 1":0'
    box = iv.Box(-1, 1, shape=(4,))
    text = "'blocks.act 1':1 - 2*\"blocks.dense-1\":0"
    e = iv.parse_target(text)
    assert str(e) == '("blocks.act 1":1 - (2 * "blocks.dense-1":0))'
    assert iv.parse_target(str(e)) == e
    r = iv.maximize(m, text, box, starts=4, steps=40)
    with torch.no_grad():
        h = m.blocks["dense-1"](torch.as_tensor(r.x))
        assert r.value == pytest.approx(float(torch.relu(h)[1] - 2 * h[0]), abs=1e-6)
    with pytest.raises(iv.InversetError, match=r'goes in quotes, e\.g\. "blocks\.dense-1":0'):
        iv.parse_target("blocks.dense-1:0")
    quote = r'space goes in quotes, e\.g\. "blocks\.act 1":0'  # were the generic examples
    for text in ("blocks.act 1:0", "max(out:0, 2*blocks.act 1:0)"):
        with pytest.raises(iv.InversetError, match=quote):
            iv.parse_target(text)
    with pytest.raises(iv.InversetError) as err:  # a function without its '(' (audit 113)
        iv.parse_target("max out:0")
    assert "expected '('" in str(err.value) and "quotes" not in str(err.value)
    with pytest.raises(iv.InversetError, match=r'separate arguments: "blocks\.dense-1":0, 1\)'):
        iv.maximize(m, '"blocks.dense-1":0,1', box)
    job = iv.atlas(m, tmp_path, layer="blocks.dense-1", channels="2", domain=box, starts=4)
    assert job.status == "complete" and job.finished == 1
    assert iv.load_atlas(tmp_path)["blocks.dense-1_2"].query["target"] == '"blocks.dense-1":2'


@pytest.mark.parametrize(
    "text, at", [("fc1:-1", 4), ("out:-1", 4), ("head.2:-1", 7), ("max(out:0, fc.1: -2)", 17)]
)
def test_a_negative_index_says_indices_count_from_0(text, at):
    """The position was the tokenizer's stop, on the layer name ('.' at 4 in head.2:-1)."""
    with pytest.raises(
        iv.InversetError, match=rf"negative index at position {at}; indices count from 0 \("
    ):
        iv.parse_target(text)


def test_a_class_name_two_classes_share_is_refused_naming_both():
    """ImageNet's labels name two classes 'crane' (134, a bird; 517, a machine):
    prob:crane took the first without a word."""
    labels = ["crane", "dog", "crane", "fish"]
    with pytest.raises(iv.InversetError, match=r"names 2 classes \(0, 2\); .*: prob:0, prob:2"):
        iv.parse_target("prob:crane", labels=labels)
    assert iv.parse_target("prob:fish", labels=labels).index == (3,)
