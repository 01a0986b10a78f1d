"""Loading: ONNX (vs onnxruntime), sklearn (vs predict/predict_proba), TorchScript, factory +
state dict, and pickles only with trust."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset.loaders import load_model
from tests.conftest import need


@pytest.mark.parametrize(
    "rel, lo, hi",
    [
        ("acasxu/ACASXU_run2a_1_1_batch_2000.onnx", -0.5, 0.5),
        ("acasxu/ACASXU_run2a_4_7_batch_2000.onnx", -0.5, 0.5),
        ("mnistfc/mnist-net_256x2.onnx", 0.0, 1.0),
        ("mnistfc/mnist-net_256x6.onnx", 0.0, 1.0),
    ],
)
def test_onnx_matches_onnxruntime(shared, rel, lo, hi):
    ort = need("onnxruntime")
    path = shared / "external" / rel
    model = load_model(path)
    sess = ort.InferenceSession(str(path))
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(lo, hi, (1000, *model.input_shape)).astype(np.float32)
    ref = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5


def test_onnx_layers_named(shared):
    model = load_model(shared / "external/acasxu/ACASXU_run2a_1_1_batch_2000.onnx")
    infos = {i.name: i for i in iv.layers(model)}
    assert model.input_shape == (1, 1, 5)
    assert infos["linear1"].shape == (50,) and infos["out"].shape == (5,)
    assert sum(i.kind == "ReLU" for i in infos.values()) == 6


def _fit(est, X, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "logistic"])
def test_sklearn_regressor_exact(activation):
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor

    X, y = load_diabetes(return_X_y=True)
    reg = _fit(
        MLPRegressor(
            hidden_layer_sizes=(12, 7), activation=activation, max_iter=200, random_state=0
        ),
        X,
        y,
    )
    model = load_model(reg)
    with torch.no_grad():
        got = model(torch.from_numpy(X)).numpy()[:, 0]
    assert np.abs(got - reg.predict(X)).max() <= 1e-6
    assert [i.name for i in iv.layers(model)] == ["fc1", "act1", "fc2", "act2", "out"]


@pytest.mark.parametrize("binary", [False, True])
def test_sklearn_classifier_logits_and_probs(binary, tmp_path):
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.neural_network import MLPClassifier

    X, y = load_breast_cancer(return_X_y=True) if binary else load_digits(return_X_y=True)
    X = X / X.max(0).clip(1e-9)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0), X, y)
    model = load_model(clf)
    with torch.no_grad():
        logits = model(torch.from_numpy(X))
        probs = torch.softmax(logits, 1).numpy()
    assert np.abs(probs - clf.predict_proba(X)).max() <= 1e-6
    assert model.labels == [str(c) for c in clf.classes_]
    # the prob target reads the same numbers
    res = iv.maximize(model, "prob:1", iv.Box(0, 1), starts=4, steps=5, polish=False)
    with torch.no_grad():
        p = clf.predict_proba(res.x[None])[0, 1]
    assert abs(res.value - p) <= 1e-6
    if binary:  # logits (0, z): logit 0 alone is no target (it was "optimal" at 0)
        for t in ("logit:0", "out:0"):
            with pytest.raises(iv.InversetError, match=r"is 0 for every input.*-logit:1 or prob:0"):
                iv.maximize(model, t, iv.Box(0, 1), starts=2, steps=2)
        res = iv.maximize(model, "logit:0 - logit:1", iv.Box(0, 1), starts=4, steps=5)
        z = clf.predict_proba(res.x[None])[0]
        assert res.value == pytest.approx(np.log(z[0] / z[1]), abs=1e-6)
        # an atlas of the classes ranks class 0 by -logit:1 (it failed on out:0, for good)
        s = iv.atlas(
            model, tmp_path, classes="all", domain=iv.Box(0, 1), starts=4, steps=5, report=False
        )
        assert s.status == "complete" and not s.failed, s.failed
        got = s.results()
        assert got["out_0"].query["target"] == "-(out:1)"
        z = clf.predict_proba(got["out_0"].x[None])[0]
        assert got["out_0"].value == pytest.approx(np.log(z[0] / z[1]), abs=1e-6)


def test_sklearn_errors():
    from sklearn.linear_model import LinearRegression
    from sklearn.neural_network import MLPRegressor

    with pytest.raises(iv.InversetError, match="cannot convert a LinearRegression"):
        load_model(LinearRegression())
    with pytest.raises(iv.InversetError, match="not fitted"):
        load_model(MLPRegressor())


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))


def test_torchscript_and_factory_and_pickles(tmp_path):
    net = _net()
    x = torch.randn(4, 3)
    torch.jit.script(net).save(tmp_path / "s.pt")
    scripted = load_model(tmp_path / "s.pt")
    assert torch.allclose(scripted(x), net(x))
    with pytest.raises(iv.InversetError, match="TorchScript model, which cannot be hooked"):
        iv.maximize(scripted, "0:1", iv.Box(0, 1, shape=(3,)))
    res = iv.maximize(scripted, "out:1", iv.Box(0, 1, shape=(3,)), starts=4, steps=20)
    assert res.status == "converged"

    torch.save(net.state_dict(), tmp_path / "w.pt")
    with pytest.raises(iv.InversetError, match=r"holds a state dict.*--factory"):
        load_model(tmp_path / "w.pt")
    m = load_model("tests.test_core_loaders:_net", weights=tmp_path / "w.pt")
    assert torch.allclose(m(x), net(x))
    torch.save({"0.weight": torch.zeros(5, 3), "9.bias": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(iv.InversetError, match=r'Missing key.*"0.bias".*Unexpected key.*"9.bias"'):
        load_model("tests.test_core_loaders:_net", weights=tmp_path / "bad.pt")

    torch.save(net, tmp_path / "full.pt")
    with pytest.raises(iv.InversetError, match=r"pickled module.*--trust"):
        load_model(tmp_path / "full.pt")
    assert torch.allclose(load_model(tmp_path / "full.pt", trust=True)(x), net(x))


def test_file_errors(tmp_path):
    with pytest.raises(iv.InversetError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file at all")
    with pytest.raises(iv.InversetError, match="not a readable ONNX file"):
        load_model(tmp_path / "bad.onnx")
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(iv.InversetError, match=r"unsupported model file type '\.h5'"):
        load_model(tmp_path / "m.h5")
    (tmp_path / "m.joblib").write_bytes(b"x")
    with pytest.raises(iv.InversetError, match=r"pickle.*--trust"):
        load_model(tmp_path / "m.joblib")


def test_a_factory_in_the_current_directory_is_found(tmp_path, monkeypatch):
    """The `inverset` console script does not put the current directory on sys.path (as
    `python -m` does): a factory in ./mynet.py is still found."""
    import sys

    (tmp_path / "mynet_here.py").write_text(
        "from torch import nn\ndef build():\n    return nn.Sequential(nn.Linear(3, 2))\n"
    )
    net = nn.Sequential(nn.Linear(3, 2))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    model = load_model("mynet_here:build", weights=tmp_path / "w.pt")
    x = torch.randn(4, 3)
    torch.testing.assert_close(model(x), net(x))


def test_unsupported_files_name_the_real_factory_option(tmp_path):
    (tmp_path / "net.py").write_text("def make(): ...\n")
    with pytest.raises(iv.InversetError, match=r"net.py is Python source.*net:FUNCTION") as e:
        load_model(tmp_path / "net.py")
    assert "--factory" in str(e.value) and "weights=" in str(e.value)
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(iv.InversetError, match=r"--factory package\.module:function") as e:
        load_model(tmp_path / "m.h5")
    assert "--weights" not in str(e.value)


def test_layers_of_torchscript_are_only_its_output(tmp_path):
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    torch.jit.script(net).save(str(tmp_path / "ts.pt"))
    model = load_model(tmp_path / "ts.pt", input_shape=(2,))
    infos = iv.layers(model)
    assert [(i.name, i.shape) for i in infos] == [("out", (3,))]


# ------------------------------------------------- frozen TorchScript (torch.jit.freeze)
def _frozen(net: nn.Module, how: str) -> torch.jit.ScriptModule:
    scripted = torch.jit.script(net.eval())
    if how == "freeze":
        return torch.jit.freeze(scripted)
    return torch.jit.optimize_for_inference(scripted)


@pytest.mark.parametrize("how", ["freeze", "optimize_for_inference"])
def test_frozen_torchscript_works_like_a_scripted_file(tmp_path, run_main, how):
    """A frozen module has no ``training`` attribute and no submodules (its weights are
    graph constants): every command ran into an AttributeError. It now loads, lists its
    output, and gradient, exact (from its graph) and cmaes find the scripted file's maximum."""
    net = _net()
    _frozen(net, how).save(str(tmp_path / "f.pt"))
    torch.jit.script(net).save(str(tmp_path / "s.pt"))
    model = load_model(tmp_path / "f.pt", input_shape=(3,))
    assert [(i.name, i.shape) for i in iv.layers(model)] == [("out", (2,))]
    assert not hasattr(model, "training")  # left as it was, after eval mode for the pass
    box = iv.Box(-1, 1, shape=(3,))
    ref = iv.maximize(load_model(tmp_path / "s.pt"), "out:0", box, solver="exact")
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 41)] * 3, indexing="ij"), -1)
    with torch.no_grad():
        sampled = net(grid.reshape(-1, 3))[:, 0].max().item()
    assert ref.status == "optimal" and ref.value >= sampled - 1e-6
    exact = iv.maximize(model, "out:0", box, solver="exact")
    assert exact.status == "optimal" and abs(exact.value - ref.value) <= 1e-5
    grad = iv.maximize(model, "out:0", box, starts=8, seed=0)
    assert abs(grad.value - ref.value) <= 1e-4
    cma = iv.maximize(model, "out:0", box, solver="cmaes", max_evals=3000, seed=0)
    assert cma.value >= ref.value - 1e-3
    code, out, err = run_main("layers", tmp_path / "f.pt", "--input-shape", "3")
    assert code == 0 and "(2,)" in out, err
    code, out, err = run_main(
        "maximize", tmp_path / "f.pt", "--input-shape", "3", "-t", "out:0", "--box=-1,1",
        "--starts", "4", "--json", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert abs(json.loads(out)["value"] - ref.value) <= 1e-4


def test_frozen_torchscript_fingerprint_tells_weights_apart(tmp_path):
    from inverset.model import fingerprint

    a, b = _net(), _net()
    with torch.no_grad():
        b[0].bias.add_(1.0)
    fa, fb = (fingerprint(torch.jit.freeze(torch.jit.script(n.eval()))) for n in (a, b))
    assert fa != fb and fa == fingerprint(torch.jit.freeze(torch.jit.script(a)))


def test_frozen_torchscript_conv_net_exact(tmp_path):
    """A frozen (and a traced) conv net reads as conv2d/relu/pooling/flatten/linear:
    exact certifies what the plain module's exact solve certifies."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.MaxPool2d(2, 1),
        nn.Flatten(),
        nn.Linear(2, 2),
    ).eval()
    box = iv.Box(0, 1, shape=(1, 4, 4))
    ref = iv.maximize(net, "out:1", box, solver="exact", time_limit=30)
    for ts in (
        torch.jit.freeze(torch.jit.script(net)),
        torch.jit.trace(net, torch.rand(1, 1, 4, 4)),
    ):
        ts.save(str(tmp_path / "c.pt"))
        res = iv.maximize(
            load_model(tmp_path / "c.pt"), "out:1", box, solver="exact", time_limit=30
        )
        assert res.status == ref.status == "optimal"
        assert abs(res.value - ref.value) <= 1e-5


class _OwnParameters(nn.Module):
    """Parameters of its own and no child modules: its scripted graph reads them by GetAttr."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.randn(3, 5))
        self.b = nn.Parameter(torch.randn(5))
        self.V = nn.Parameter(torch.randn(5, 2))

    def forward(self, x):
        return torch.relu(x @ self.W + self.b) @ self.V


def test_torchscript_with_its_own_parameters_is_exact(tmp_path):
    """A scripted module holding parameters but no child modules was refused by the exact
    solver ('prim::GetAttr ... not one chain of layers'): it was frozen only when it had
    children. It now matches the plain module's certified optimum."""
    torch.manual_seed(0)
    net = _OwnParameters().eval()
    same = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2, bias=False))
    with torch.no_grad():
        same[0].weight.copy_(net.W.T)
        same[0].bias.copy_(net.b)
        same[2].weight.copy_(net.V.T)
    box = iv.Box(-1, 1, shape=(3,))
    ref = iv.maximize(same, "out:0", box, solver="exact", time_limit=30)
    torch.jit.script(net).save(str(tmp_path / "own.pt"))
    res = iv.maximize(load_model(tmp_path / "own.pt"), "out:0", box, solver="exact", time_limit=30)
    assert res.status == ref.status == "optimal"
    assert abs(res.value - ref.value) <= 1e-5


# ------------------------------------------------- models whose output is probabilities
@pytest.mark.parametrize("last", [nn.Softmax(dim=1), nn.Softmax(dim=-1), nn.Sigmoid()])
def test_prob_of_a_model_ending_in_softmax_reads_its_output(last):
    """prob:k of a model that ends in a Softmax is its output k, not softmax(probabilities)
    (0.5255 for a probability of 0.5511 before); logit:k is a one-line error naming it."""
    torch.manual_seed(0)
    n_out = 1 if isinstance(last, nn.Sigmoid) else 3
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, n_out), last)
    box = iv.Box(-1, 1, shape=(2,))
    for k in range(max(n_out, 2)):
        res = iv.maximize(net, f"prob:{k}", box, starts=4, steps=10, polish=False, seed=0)
        with torch.no_grad():
            y = net(torch.as_tensor(res.x, dtype=torch.float32)[None])[0]
        p = y[k] if n_out > 1 else (y[0] if k == 1 else 1 - y[0])
        assert abs(res.value - float(p)) <= 1e-6
    name = type(last).__name__
    hint = f"prob:{1 if n_out == 1 else 0}"  # a single sigmoid output is prob:1
    with pytest.raises(iv.InversetError, match=f"outputs probabilities.*{name}.*{hint}") as e:
        iv.maximize(net, "logit:0", box)
    assert "\n" not in str(e.value)
    assert iv.layers(net, (2,))[-1].kind == f"output: probabilities ({name}; prob:k reads them)"


@pytest.mark.parametrize("how", ["script", "trace", "freeze", "function"])
def test_prob_of_a_torchscript_model_ending_in_softmax_reads_its_output(how):
    """The same for TorchScript, read off the graph's last operation or module: prob:k was
    the softmax of the probabilities (0.2583 for an output of 0.4675) and logit:k passed."""
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3), nn.Softmax(dim=1)).eval()
    x0 = torch.zeros(1, 2)
    if how == "script":
        ts = torch.jit.script(seq)
    elif how == "trace":
        ts = torch.jit.trace(seq, x0)
    elif how == "freeze":
        ts = torch.jit.freeze(torch.jit.script(seq))
    else:  # torch.softmax called in forward, traced to an aten::softmax operation
        ts = torch.jit.trace(_SoftmaxCall(seq[:3]).eval(), x0)
    box = iv.Box(-1, 1, shape=(2,))
    res = iv.maximize(ts, "prob:2", box, starts=4, steps=10, polish=False, seed=0)
    with torch.no_grad():
        assert abs(res.value - float(ts(torch.as_tensor(res.x)[None])[0, 2])) <= 1e-6
    with pytest.raises(iv.InversetError, match=r"outputs probabilities.*Softmax.*prob:0"):
        iv.maximize(ts, "logit:0", box)
    if how == "freeze":  # no layers left to name ("valid layers: (none)" before)
        with pytest.raises(iv.InversetError, match="frozen TorchScript module, which keeps no"):
            iv.maximize(ts, "fc1:0", box)


class _SoftmaxCall(nn.Module):
    """``body`` then ``torch.softmax`` called in ``forward`` (no Softmax module)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.body(x), 1)


def _onnx_bytes() -> bytes:
    """A small ONNX model (y = x W^T + b) as the bytes of its file."""
    need("onnx")
    from onnx import TensorProto, numpy_helper
    from onnx import helper as oh

    w, b = np.ones((2, 3), np.float32), np.zeros(2, np.float32)
    graph = oh.make_graph(
        [oh.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "g",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_file_holding_another_kind_of_model_says_what_it_holds(tmp_path):
    (tmp_path / "net.pt").write_bytes(_onnx_bytes())
    for trust in (False, True):
        with pytest.raises(iv.InversetError) as e:
            load_model(tmp_path / "net.pt", trust=trust)
        assert str(e.value) == (
            f"{tmp_path / 'net.pt'} is not a readable torch file: it holds an ONNX model; "
            "rename it net.onnx"
        )
    (tmp_path / "net.onnx").write_bytes(_onnx_bytes())
    assert load_model(tmp_path / "net.onnx")(torch.ones(1, 3)).tolist() == [[3.0, 3.0]]
    (tmp_path / "notes.pt").write_text("x\n")
    with pytest.raises(iv.InversetError, match=r"notes.pt is not a readable torch file: it holds "
                       r"text; give the torch file itself"):  # fmt: skip
        load_model(tmp_path / "notes.pt")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(iv.InversetError, match=r"empty.onnx is not a readable ONNX file: it is "
                       r"empty \(0 bytes\)"):  # fmt: skip
        load_model(tmp_path / "empty.onnx")


def test_torchscript_given_as_a_state_dict_is_named_without_a_warning(tmp_path):
    torch.jit.script(_net()).save(str(tmp_path / "s.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(iv.InversetError) as e:
            load_model("tests.test_core_loaders:_net", weights=tmp_path / "s.pt")
    assert str(e.value) == (
        f"{tmp_path / 's.pt'} is not a readable state dict: it holds a TorchScript module; give "
        "it as MODEL without --factory (named s.pt)"
    )


@pytest.mark.parametrize("content", [b"", b"junk\n", b"\x80\x04\x95\x10garbage"])
def test_a_broken_joblib_file_is_one_line_even_trusted(tmp_path, content):
    (tmp_path / "m.joblib").write_bytes(content)
    with pytest.raises(iv.InversetError, match=r"m.joblib is not a readable joblib file"):
        load_model(tmp_path / "m.joblib", trust=True)


def test_an_empty_model_name_or_weights_without_a_factory_say_so(tmp_path):
    with pytest.raises(iv.InversetError, match="the model is an empty name; give a model file"):
        load_model("")
    torch.save(_net().state_dict(), tmp_path / "w.pt")
    with pytest.raises(iv.InversetError, match=r"is given as package.module:function .*got 'tiny'"):
        load_model("tiny", weights=tmp_path / "w.pt")
    with pytest.raises(iv.InversetError, match=r"package.module:function .*got '.*w.pt'"):
        load_model(tmp_path / "w.pt", weights=tmp_path / "w.pt")


def _pipeline_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    return X, X[:, 0] + 0.1 * X[:, 1] - 0.01 * X[:, 2]


def test_a_pipeline_of_scalers_and_an_mlp_is_folded_exactly():
    """StandardScaler/MinMaxScaler steps become the first layer's affine map: the module equals
    pipeline.predict, and the box stays in the raw feature space (the exact solver too)."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    X, y = _pipeline_data()
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=100, random_state=0)
    pipe = _fit(make_pipeline(StandardScaler(), MinMaxScaler(), reg), X, y)
    model = load_model(pipe)
    with torch.no_grad():
        got = model(torch.from_numpy(X)).numpy()[:, 0]
    assert np.abs(got - pipe.predict(X)).max() <= 1e-9
    assert model.source == "sklearn Pipeline(StandardScaler, MinMaxScaler, MLPRegressor)"
    res = iv.maximize(pipe, "out:0", iv.Box(X.min(0), X.max(0)), solver="exact", time_limit=30)
    assert res.status == "optimal" and X.min(0)[2] <= res.x[2] <= X.max(0)[2]
    assert res.value == pytest.approx(pipe.predict(res.x[None])[0], abs=1e-9)
    scaled = StandardScaler(with_mean=False)
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=100, random_state=0)
    pipe = _fit(make_pipeline(scaled, clf), X, y > 0)
    with torch.no_grad():
        probs = torch.softmax(load_model(pipe)(torch.from_numpy(X)), 1).numpy()
    assert np.abs(probs - pipe.predict_proba(X)).max() <= 1e-9


def test_a_pipeline_inverset_cannot_fold_names_the_fix():
    from sklearn.decomposition import PCA
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    X, y = _pipeline_data()
    mlp = MLPRegressor(hidden_layer_sizes=(4,), max_iter=20, random_state=0)
    pipe = _fit(make_pipeline(PCA(2), mlp), X, y)
    with pytest.raises(iv.InversetError, match=r"cannot convert a Pipeline\(PCA, MLPRegressor\)"):
        load_model(pipe)
    pipe = _fit(make_pipeline(MinMaxScaler(clip=True), mlp), X, y)
    with pytest.raises(iv.InversetError, match="clip=True is not a linear map; refit"):
        load_model(pipe)


def test_sklearn_poisson_regressor_keeps_its_exp_output():
    """An MLPRegressor fitted with the Poisson loss predicts exp(z): the converted model
    reproduces ``predict``, and the exact solver refuses it in one line."""
    from sklearn.neural_network import MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.random((60, 3))
    reg = _fit(
        MLPRegressor(hidden_layer_sizes=(5,), loss="poisson", max_iter=300, random_state=0),
        X,
        X.sum(1),
    )
    model = load_model(reg)
    with torch.no_grad():
        got = model(torch.from_numpy(X)).numpy()[:, 0]
    assert np.abs(got - reg.predict(X)).max() <= 1e-9
    with pytest.raises(iv.InversetError, match="cannot handle the operation exp"):
        iv.maximize(model, "out:0", iv.Box(0, 1, shape=(3,)), solver="exact")


PICKLED_CODE = """
from torch import nn


class PickledNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, x):
        return self.fc(x)
"""


def test_trusted_pickle_whose_class_module_is_missing_names_it(tmp_path, monkeypatch):
    """A trusted pickle's class lives in a module beside its author's code: run from that
    folder it loads (as a factory's module does); elsewhere the error names the module and
    the fix, not just 'ModuleNotFoundError'."""
    import importlib
    import os
    import sys

    code = tmp_path / "code"
    code.mkdir()
    (code / "pickled_net_mod.py").write_text(PICKLED_CODE)
    here = {"", os.getcwd()}
    monkeypatch.setattr(sys, "path", [str(code), *(p for p in sys.path if p not in here)])
    torch.save(importlib.import_module("pickled_net_mod").PickledNet(), tmp_path / "net.pt")
    monkeypatch.delitem(sys.modules, "pickled_net_mod")
    sys.path.remove(str(code))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(iv.InversetError) as exc:
        load_model(tmp_path / "net.pt", trust=True)
    assert str(exc.value) == (
        f"{tmp_path / 'net.pt'} holds a pickled model whose class's module 'pickled_net_mod' "
        "cannot be imported; run from the folder of that module's code or add the folder to "
        "PYTHONPATH (install it if it is a package), or save the model as TorchScript"
    )
    monkeypatch.chdir(code)
    model = load_model(tmp_path / "net.pt", trust=True)
    assert type(model).__name__ == "PickledNet" and model.source == str(tmp_path / "net.pt")


@pytest.mark.parametrize("suffix", [".pt", ".joblib"])
def test_trusted_pickle_of_a_class_from_the_training_script_says_so(tmp_path, monkeypatch, suffix):
    """torch.save(model) in a training script pickles the class as __main__.Name, which the
    loading process lacks: the error says where the class was and what to do, not 'not a
    readable torch file (AttributeError)'."""
    import sys

    import joblib

    class Surrogate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, x):
            return self.fc(x)

    Surrogate.__module__, Surrogate.__qualname__ = "__main__", "Surrogate"
    monkeypatch.setattr(sys.modules["__main__"], "Surrogate", Surrogate, raising=False)
    path = tmp_path / f"surrogate{suffix}"
    (torch.save if suffix == ".pt" else joblib.dump)(Surrogate(), path)
    monkeypatch.delattr(sys.modules["__main__"], "Surrogate")
    with pytest.raises(iv.InversetError) as exc:
        load_model(path, trust=True)
    assert str(exc.value) == (
        f"{path} holds a pickled model whose class Surrogate was defined in the script that "
        "saved it (__main__), so it cannot be found here; move the class into a module "
        "importable from here (e.g. surrogate.py) and save again, or save the model as "
        "TorchScript (torch.jit.script(model).save(...)) or as a state dict for --factory"
    )


def test_a_frozen_float64_torchscript_file_runs_in_float64(tmp_path):
    """A frozen module keeps its weights as graph constants: it was run in float32, which
    failed ('expected m1 and m2 to have the same dtype'); so did a float64 module whose
    weights are buffers only."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    torch.jit.freeze(torch.jit.script(net)).save(str(tmp_path / "f.pt"))
    box = iv.Box(-1, 1, shape=(4,))
    r = iv.maximize(load_model(tmp_path / "f.pt"), "out:1", box, input_shape=4, starts=4)
    assert r.x.dtype == np.float64
    with torch.no_grad():
        assert r.value == float(net(torch.as_tensor(r.x)[None])[0, 1])

    class Buffers(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.randn(3, 4, dtype=torch.float64))

        def forward(self, x):
            return x @ self.w.T

    m = Buffers()
    r = iv.maximize(m, "out:1", box, input_shape=4, starts=4)
    assert r.value == pytest.approx(float(m.w[1].abs().sum()), rel=1e-12)


def test_training_checkpoints_and_data_parallel_weights_load(tmp_path):
    """The PyTorch tutorials' checkpoint ({'epoch', 'model_state_dict', ...}), {'model': sd}
    and an nn.DataParallel's 'module.' keys failed as weights that do not fit."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    sd = net.state_dict()
    (tmp_path / "netdef.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))\n"
    )
    files = {
        "tutorial.pt": {"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {}},
        "model.pt": {"model": sd},
        "dp.pt": {f"module.{k}": v for k, v in sd.items()},
    }
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        x = torch.rand(5, 3)
        for name, content in files.items():
            torch.save(content, tmp_path / name)
            m = load_model("netdef:build", weights=tmp_path / name)
            with torch.no_grad():
                assert torch.equal(m(x), net(x)), name
        torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "none.pt")
        with pytest.raises(iv.InversetError, match=r"holds a dict without tensors \(epoch, optim"):
            load_model("netdef:build", weights=tmp_path / "none.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("netdef", None)
