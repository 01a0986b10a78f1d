"""Models users bring that inverset cannot search as they are: one that is not repeatable
(dropout or batch statistics active in eval mode), one whose forward takes several inputs,
one that indexes an embedding with its input. Each is a one-line error naming the fix."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import inverset as iv
from inverset.errors import InversetError

torch.set_num_threads(1)

NOT_REPEATABLE = "different outputs for the same input"


class FDropout(nn.Module):
    """F.dropout without training=self.training: active in eval mode too."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 32)
        self.out = nn.Linear(32, 1)

    def forward(self, x):
        return self.out(F.dropout(torch.relu(self.fc1(x)), 0.5))


class BNNet(nn.Module):
    """No dropout: only BatchNorm, whose batch statistics a trace in train mode bakes in."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 8)
        self.bn = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.fc1(x))))


def traced_in_train_mode() -> torch.jit.ScriptModule:
    torch.manual_seed(0)
    m = BNNet().train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(m, torch.rand(4, 2), check_trace=False)


def test_dropout_in_forward_is_refused():
    torch.manual_seed(0)
    with pytest.raises(InversetError, match=NOT_REPEATABLE) as e:
        iv.maximize(FDropout().eval(), "out:0", domain=iv.Box(-2, 2, shape=(2,)), seed=0)
    assert "training=self.training" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InversetError, match=NOT_REPEATABLE):
        iv.sample(FDropout(), "out:0", range=(0.5, 0.6), n=4, domain=iv.Box(-2, 2, shape=(2,)))


class OutputDropout(nn.Module):
    """Dropout of rate 0.1 on a one-unit output: five passes of a row agree 59% of the time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        return F.dropout(self.fc(x), 0.1)


def test_dropout_on_a_narrow_output_is_caught_nearly_always():
    # the check compared five rows: basinhopping and gradient took this model in 14 of 20
    # runs and cmaes' message named the noise in 6; 35 draws miss it about 3%
    torch.manual_seed(0)
    m, box = OutputDropout(), iv.Box(-1, 1, shape=(4,))
    refused = noted = 0
    for i in range(20):
        torch.manual_seed(i)
        try:
            iv.maximize(m, "out:0", box, solver="basinhopping", seed=0, max_evals=20)
        except InversetError as e:
            refused += NOT_REPEATABLE in str(e)
        torch.manual_seed(i)
        r = iv.maximize(m, "out:0", box, solver="cmaes", seed=0, max_evals=20)
        noted += "noisy evaluation" in r.message
    assert refused >= 17 and noted >= 17, (refused, noted)


def test_trace_in_train_mode_is_refused_though_each_batch_repeats():
    m = traced_in_train_mode()
    m.eval()  # cannot undo the traced batch statistics
    x = torch.rand(2, 2)
    assert torch.equal(m(x), m(x))  # the same batch twice agrees: only another batch differs
    with pytest.raises(InversetError, match=NOT_REPEATABLE):
        iv.maximize(m, "out:0", domain=iv.Box(0, 1, shape=(2,)), seed=0, starts=2)


def test_trace_in_train_mode_cli_exits_2(tmp_path, run_main):
    path = tmp_path / "bn_trace_train.pt"
    traced_in_train_mode().save(str(path))
    ran = run_main("maximize", path, "--input-shape", "2", "--box", "0,1", "-t", "out:0")
    assert ran.returncode == 2
    assert NOT_REPEATABLE in ran.stderr and "Traceback" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


def test_repeatable_models_pass_the_check():
    """nn.Dropout and BatchNorm in a module put in eval mode by inverset, and dropout after the
    layer a target reads, are no error; the optimum is the certified one."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 1)
    )
    m.train()  # the user's mode: inverset runs it in eval mode and gives it back as it was
    r = iv.maximize(m, "out:0", domain=iv.Box(-1, 1, shape=(2,)), seed=0, solver="exact")
    assert m.training
    m.eval()
    with torch.no_grad():
        again = m(torch.as_tensor(r.x, dtype=torch.float32)[None])[0, 0].item()
    assert r.value == pytest.approx(again, rel=1e-5, abs=1e-6)

    hidden = FDropout()
    r = iv.maximize(hidden, "fc1:3", domain=iv.Box(-2, 2, shape=(2,)), seed=0, solver="exact")
    w, b = hidden.fc1.weight[3].detach(), hidden.fc1.bias[3].item()
    assert r.value == pytest.approx(2 * w.abs().sum().item() + b, rel=1e-5)


class TwoIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fa = nn.Linear(2, 4)
        self.fb = nn.Linear(3, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, a, b):
        return self.out(torch.relu(self.fa(a) + self.fb(b)))


def test_forward_with_two_inputs_is_refused(tmp_path, run_main):
    from inverset.model import input_names

    torch.manual_seed(0)
    with pytest.raises(InversetError, match=r"takes 2 inputs \(a, b\).*one tensor"):
        iv.maximize(TwoIn(), "out:0", domain=iv.Box(-1, 1, shape=(5,)))
    traced = torch.jit.trace(TwoIn(), (torch.rand(1, 2), torch.rand(1, 3)))
    assert input_names(traced) == ["a", "b"]
    path = tmp_path / "two_in.pt"
    traced.save(str(path))
    ran = run_main("maximize", path, "--input-shape", "5", "--box", "0,1", "-t", "out:0")
    assert ran.returncode == 2 and "takes 2 inputs (a, b)" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_one_required_input_passes():
    from inverset.model import check_one_input, input_names

    class Masked(nn.Module):
        def forward(self, x, mask=None, *rest, scale=1.0):
            return x * scale

    assert input_names(Masked()) == ["x"]
    assert input_names(nn.Linear(2, 1)) == ["input"]
    check_one_input(Masked())
    check_one_input(torch.jit.script(nn.Linear(2, 1)))


def test_type_error_inside_forward_names_it():
    class Buggy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x):
            return self.fc(x) + None

    with pytest.raises(InversetError, match="TypeError: unsupported operand") as e:
        iv.maximize(Buggy(), "out:0", domain=iv.Box(0, 1, shape=(2,)))
    assert "\n" not in str(e.value)


class EmbNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.fc = nn.Linear(4, 1)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(1))


class Lookup(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.rand(10, 1))

    def forward(self, ids):
        return self.table[ids].sum(1)


@pytest.mark.parametrize("net", [EmbNet, Lookup])
def test_integer_ids_model_is_told_about_dtype_not_shape(net):
    torch.manual_seed(0)
    box = iv.Box(0, 9, shape=(3,), integer=[0, 1, 2])
    with pytest.raises(InversetError, match="integer ids") as e:
        iv.maximize(net(), "out:0", domain=box)
    msg = str(e.value)
    assert "embedding's output" in msg and "pass the shape" not in msg and "\n" not in msg


def test_shape_errors_still_name_the_shape():
    with pytest.raises(InversetError, match=r"fails on inputs of shape \(3,\).*pass the shape"):
        iv.maximize(nn.Linear(2, 1), "out:0", domain=iv.Box(0, 1, shape=(3,)))


class ConvDropout(nn.Module):
    """A picture model with F.dropout active in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return F.dropout(torch.relu(self.conv(x)), 0.5).mean((2, 3))


class ConvTwoIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x, y):
        return self.conv(x).mean((2, 3)) + y


def test_visualize_and_layers_refuse_the_same_models_in_one_line():
    """Feature visualization checks the model as queries do (it rendered dropout noise, and
    a two-input model was a traceback); ``iv.layers`` takes a scikit-learn model as queries
    do and refuses a file name in one line (AttributeError tracebacks)."""
    from sklearn.neural_network import MLPRegressor

    from inverset import featvis as fv

    torch.manual_seed(0)
    with pytest.raises(InversetError, match=NOT_REPEATABLE):
        fv.visualize(ConvDropout(), "out", steps=2, input_shape=(1, 8, 8))
    with pytest.raises(InversetError, match=r"takes 2 inputs \(x, y\)"):
        fv.visualize(ConvTwoIn(), "conv", steps=2, input_shape=(1, 8, 8))
    with pytest.raises(InversetError, match=r"takes 2 inputs \(a, b\)"):
        iv.layers(TwoIn(), (5,))
    reg = MLPRegressor(hidden_layer_sizes=(3,), max_iter=20).fit(torch.rand(20, 2), torch.rand(20))
    assert [i.name for i in iv.layers(reg)] == ["fc1", "act1", "out"]
    with pytest.raises(InversetError, match=r"load files with inverset\.load_model"):
        iv.layers("model.onnx")


class Noisy(nn.Module):
    """A surrogate whose forward adds measurement noise on purpose."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(2, 1)

    def forward(self, x):
        return self.fc(x) + 0.01 * torch.randn(x.shape[0], 1)


def test_a_model_noisy_on_purpose_goes_to_the_solvers_that_take_noise():
    """The README sends noisy models to cmaes: the black-box solvers take them and say the
    values are noisy; the others refuse, naming those solvers."""
    box = iv.Box(-1, 1, shape=(2,))
    r = iv.maximize(Noisy(), "out:0", box, solver="cmaes", max_evals=300, seed=0)
    assert "each value is one noisy evaluation" in r.message
    m = Noisy()
    top = float(m.fc.weight.abs().sum() + m.fc.bias)  # the noiseless maximum, at a corner
    assert r.value > top - 0.1
    with pytest.raises(InversetError, match=r"noisy on purpose.*--solver cmaes"):
        iv.maximize(Noisy(), "out:0", box)
    r = iv.maximize(BNNet().eval(), "out:0", box, solver="cmaes", max_evals=50, seed=0)
    assert "noisy" not in r.message


def test_a_model_changing_its_input_in_place_is_refused():
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x):
            x /= 255
            return self.fc(x)

    with pytest.raises(InversetError, match=r"changes its input in place.*x = x - 0\.5"):
        iv.maximize(InPlace(), "out:0", iv.Box(-1, 1, shape=(2,)), solver="cmaes")


def test_visualize_takes_a_model_that_runs_one_picture_at_a_time():
    """The repeatability check runs batches of 2 and 3 pictures: a model that takes a batch
    of one is not checked, and renders as before (it was a traceback)."""
    from inverset import featvis as fv

    class One(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2 * 64, 3)

        def forward(self, x):
            return self.fc(self.conv(x).reshape(1, -1))

    torch.manual_seed(0)
    r = fv.visualize(One().eval(), "out", channels=[0], steps=20, input_shape=(1, 8, 8))
    assert r.status == "step_limit" and r.values[0] > 0


def test_a_generator_whose_outputs_change_is_refused_as_the_model_is():
    """A Latent space's G(z) is what the model sees: a decoder with dropout left on gave
    non-repeatable targets silently; a black-box solver takes it and says so."""

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 4)

        def forward(self, z):
            return F.dropout(torch.sigmoid(self.fc(z)), 0.5)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1)).eval()
    space = iv.Latent(Decoder().eval(), 2, bound=2.0)
    box = iv.Box(0, 2, shape=(4,))
    with pytest.raises(InversetError, match="the generator gives different outputs"):
        iv.maximize(model, "out:0", box, space=space)
    r = iv.maximize(model, "out:0", box, space=space, solver="cmaes", max_evals=60, seed=0)
    assert "one noisy evaluation" in r.message
    # feature visualization through that generator is refused the same way
    from inverset import featvis as fv

    pic = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    space = iv.Latent(nn.Sequential(Decoder(), nn.Unflatten(1, (1, 2, 2))).eval(), 2, bound=2.0)
    with pytest.raises(InversetError, match="the generator gives different outputs"):
        fv.visualize(pic, "out", channels=[0], steps=2, param=space)
    # a repeatable generator is taken and its pictures raise the target
    g = nn.Sequential(nn.Linear(2, 4), nn.Sigmoid(), nn.Unflatten(1, (1, 2, 2))).eval()
    r = fv.visualize(pic, "out", channels=[0], steps=30, param=iv.Latent(g, 2, bound=2.0))
    assert r.status == "step_limit" and r.values[0] > r.history["objective"][0] + 0.05


def test_a_model_whose_own_backward_fails_is_one_line_everywhere():
    """``g.relu_()`` on a tensor a later product needs: PyTorch's backward fails, and every
    gradient-based command was a RuntimeError traceback (exit 4)."""

    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(2, 3), nn.Linear(3, 1)

        def forward(self, x):
            g = torch.sigmoid(self.a(x))
            g.relu_()
            return self.o(g * g)

    box = iv.Box(0, 1, shape=(2,))
    for solver in ("gradient", "basinhopping"):
        with pytest.raises(iv.InversetError, match=r"backward pass fails.*--solver cmaes"):
            iv.maximize(Bad(), "out:0", box, solver=solver, max_evals=200)
    assert iv.maximize(Bad(), "out:0", box, solver="cmaes", max_evals=200).value is not None
    with pytest.raises(iv.InversetError, match="backward pass fails") as e:
        iv.sample(Bad(), "out:0", (-10.0, 10.0), n=4, domain=box, time_limit=10)
    assert "--solver" not in str(e.value)


class Decoder4(nn.Module):
    """z (2 codes) -> 4 pixels in [0, 1], with a way to break it (``how``)."""

    def __init__(self, how: str = "") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.how = nn.Linear(2, 4), how

    def forward(self, z):
        x = torch.sigmoid(self.fc(z))
        if self.how == "batch last":
            return x.T
        if self.how == "nan":
            return x * float("nan")
        if self.how == "uint8":
            return (x * 255).to(torch.uint8).float() / 255
        return x


@pytest.mark.parametrize("solver", ["gradient", "cmaes"])
def test_a_generator_with_its_batch_axis_last_is_refused_not_called_noisy(solver):
    # (values, batch) was reshaped across codes: called noise, and cmaes' saved codes gave
    # other inputs than its saved xs (0.88 apart)
    model = nn.Sequential(nn.Linear(4, 1))
    with pytest.raises(InversetError, match=r"shape \(4, 2\) for 2 codes.*batch axis first"):
        iv.maximize(
            model,
            "out:0",
            iv.Box(0, 1, shape=(4,)),
            space=iv.Latent(Decoder4("batch last"), 2),
            solver=solver,
            max_evals=50,
        )


def test_a_generator_giving_nan_is_named_not_the_model():
    # NaN != NaN read as the model changing its input in place
    model = nn.Sequential(nn.Linear(4, 1))
    space = iv.Latent(Decoder4("nan"), 2)
    with pytest.raises(InversetError, match="the generator's output is not finite") as e:
        iv.maximize(model, "out:0", iv.Box(0, 1, shape=(4,)), space=space)
    assert "in place" not in str(e.value)
    with pytest.raises(InversetError, match="the generator's output is not finite"):
        iv.sample(model, "out:0", range=(0, 1), n=4, domain=iv.Box(0, 1, shape=(4,)), space=space)


def test_sampling_through_a_generator_without_gradient_is_one_line():
    # an 8-bit generator: a RuntimeError of autograd, exit 4 from the CLI
    model = nn.Sequential(nn.Linear(4, 1))
    with pytest.raises(InversetError, match="inverse-set sampling needs the model's gradient") as e:
        iv.sample(
            model,
            "out:0",
            range=(0.2, 0.3),
            n=4,
            domain=iv.Box(0, 1, shape=(4,)),
            space=iv.Latent(Decoder4("uint8"), 2),
            seed=0,
        )
    assert "--solver" not in str(e.value)


def test_a_torchscript_generators_failure_is_quoted_by_its_reason_not_its_banner():
    gen = torch.jit.script(nn.Sequential(nn.Linear(8, 4), nn.Sigmoid()))
    model = nn.Sequential(nn.Linear(4, 1))
    with pytest.raises(InversetError, match=r"fails on codes of shape \(5,\) \(.*mat1 and mat2"):
        iv.maximize(model, "out:0", iv.Box(0, 1, shape=(4,)), space=iv.Latent(gen, 5))


def test_a_model_resizing_its_input_in_place_is_one_line():
    class Resize(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 1)

        def forward(self, x):
            y = self.fc(x)
            x.resize_(1)
            return y

    with pytest.raises(InversetError, match="changes its input in place"):
        iv.maximize(Resize(), "out:0", iv.Box(0, 1, shape=(4,)))
