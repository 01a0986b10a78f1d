"""The Python API: latent generators left as they were, argument checks, seeds, budgets."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset.errors import InversetError

torch.set_num_threads(1)


def _net16() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def _net4() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize(
    ("solver", "kw"), [("gradient", {"starts": 4, "steps": 10}), ("cmaes", {"max_evals": 200})]
)
def test_latent_generator_in_eval_mode_and_frozen(solver, kw):
    """A generator straight out of training (BatchNorm, Dropout, trainable weights) is
    searched in eval mode with frozen weights and handed back as it was."""
    model = _net16()
    torch.manual_seed(1)
    G = nn.Sequential(
        nn.Linear(4, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 16)
    )
    G.train()
    rm0 = G[1].running_mean.clone()
    box = iv.Box(0, 1, shape=(16,))
    r = iv.maximize(model, "out:0", box, space=iv.Latent(G, 4), solver=solver, seed=0, **kw)
    assert torch.equal(G[1].running_mean, rm0)  # BatchNorm statistics untouched
    assert all(p.grad is None and p.requires_grad for p in G.parameters())
    assert G.training
    G.eval()
    with torch.no_grad():
        z = torch.as_tensor(r.arrays["z"][:1], dtype=torch.float32)
        x = G(z).clamp(0, 1)
        v = float(model(x)[0, 0])
    np.testing.assert_allclose(r.x, x[0].numpy(), atol=1e-6)  # no Dropout noise in the answer
    assert r.value == pytest.approx(v, abs=1e-5)


def test_latent_domain_intersects_query_box():
    """The query's box always applies; a Latent's own domain (shaped or not) narrows it."""
    model = _net16()
    torch.manual_seed(2)
    G = nn.Sequential(nn.Linear(4, 16)).eval()  # unbounded outputs
    box = iv.Box(0, 1, shape=(16,))
    kw = {"starts": 4, "steps": 20, "seed": 0}
    for own in (iv.Box(0, 1), iv.Box(-5, 5, shape=(16,)), None):
        r = iv.maximize(model, "out:0", box, space=iv.Latent(G, 4, domain=own), **kw)
        assert r.x.min() >= 0 and r.x.max() <= 1
    r = iv.maximize(model, "out:0", box, space=iv.Latent(G, 4, domain=iv.Box(0.2, 0.5)), **kw)
    assert r.x.min() >= 0.2 - 1e-7 and r.x.max() <= 0.5 + 1e-7
    with pytest.raises(iv.InversetError, match="no point in common"):
        iv.maximize(model, "out:0", box, space=iv.Latent(G, 4, domain=iv.Box(2, 3)), **kw)


class _InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 16)

    def forward(self, z):
        return self.fc(z.mul_(0.5))


@pytest.mark.parametrize("solver", ["gradient", "evolution", "annealing", "cmaes"])
def test_a_generator_that_changes_its_codes_in_place_is_refused(solver):
    """Audit 110: annealing crashed (a RuntimeError, CLI exit 4), evolution blamed its
    options, gradient called the generator random, cmaes ran on with a note on noise."""
    box = iv.Box(0, 1, shape=(16,))
    with pytest.raises(iv.InversetError, match=r"changes its codes in place .*\(z = z \* 0\.5\)"):
        iv.maximize(_net16(), "out:0", box, space=iv.Latent(_InPlace(), 4), solver=solver)


def test_a_generator_of_another_layout_is_refused_and_a_flat_one_reshaped():
    """Audit 110: a channels-last generator (N, 4, 4, 1) for a (1, 4, 4) model is a reshape;
    (N, 2, 2, 4) for (4, 2, 2) was one too, scrambling the pictures without a word."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 16)
    model = _net16()
    box = iv.Box(0, 1, shape=(4, 2, 2))
    kw = {"starts": 2, "steps": 5}
    with pytest.raises(iv.InversetError, match=r"\(2, 2, 4\) per code .* \(4, 2, 2\).*permute"):
        iv.maximize(
            model, "out:0", box, space=iv.Latent(lambda z: lin(z).reshape(-1, 2, 2, 4), 4), **kw
        )
    for shape, given in (
        ((1, 4, 4), (-1, 4, 4, 1)),
        ((1, 4, 4), (-1, 16)),
        ((16,), (-1, 4, 4)),
        ((16, 1), (-1, 1, 4, 4)),  # a picture generator for MNIST-FC's (784, 1) (audit 113)
    ):
        g = iv.Latent(lambda z, given=given: torch.sigmoid(lin(z)).reshape(given), 4)
        r = iv.maximize(model, "out:0", iv.Box(0, 1, shape=shape), space=g, **kw)
        with torch.no_grad():
            x = torch.sigmoid(lin(torch.as_tensor(r.arrays["z"][:1], dtype=torch.float32)))
        np.testing.assert_allclose(np.ravel(r.x), x[0].numpy(), atol=1e-6)


def test_latent_takes_callables_and_numpy_sizes():
    model = _net4()
    w = torch.linspace(-1, 1, 8).reshape(2, 4)
    box = iv.Box(-1, 1, shape=(4,))
    r = iv.maximize(model, "out:0", box, space=iv.Latent(lambda z: torch.sigmoid(z @ w), 2))
    assert r.x.shape == (4,) and r.x.min() >= 0
    assert iv.Latent(nn.Linear(2, 4), np.int64(2)).shape == (2,)
    with pytest.raises(iv.InversetError, match="latent dim must be a whole number"):
        iv.Latent(nn.Linear(2, 4), 2.0)
    with pytest.raises(iv.InversetError, match="generator must be a torch module or a callable"):
        iv.Latent("G.pt", 2)


def test_generator_output_size_is_named():
    with pytest.raises(iv.InversetError, match="generator's output has 15 values per code but"):
        iv.maximize(
            _net16(), "out:0", iv.Box(0, 1, shape=(16,)), space=iv.Latent(nn.Linear(4, 15), 4)
        )


def test_infinite_latent_bound_in_a_box_is_not_called_unbounded():
    G = nn.Sequential(nn.Linear(4, 16), nn.Sigmoid())
    r = iv.maximize(
        _net16(),
        "out:0",
        iv.Box(0, 1, shape=(16,)),
        space=iv.Latent(G, 4, bound=math.inf),
        starts=4,
        steps=5,
    )
    assert "unbounded" not in r.message
    G = nn.Linear(4, 16)
    r = iv.maximize(
        _net16(), "out:0", input_shape=16, space=iv.Latent(G, 4, bound=math.inf), starts=4, steps=5
    )
    assert "unbounded" in r.message and "Latent(G, dim, bound=" in r.message


def test_string_goal_and_int_input_shape():
    model = _net4()
    box = iv.Box(-1, 1, shape=(4,))
    a = iv.solve(model, "out:0", "maximize", box, starts=4, seed=0)
    b = iv.maximize(model, "out:0", box, starts=4, seed=0)
    assert a.value == b.value
    assert iv.solve(model, "out:0", "minimize", box, starts=4, seed=0).value < a.value
    r = iv.maximize(model, "out:0", iv.Box(-1, 1), input_shape=4, starts=4, seed=0)
    assert r.x.shape == (4,)


BOX4 = iv.Box(-1, 1, shape=(4,))
BAD = [
    ("domain", lambda m: iv.maximize(m, "out:0", (0, 1)), "domain must be an inverset.Box"),
    ("domain str", lambda m: iv.maximize(m, "out:0", "0,1"), "domain must be an inverset.Box"),
    ("goal", lambda m: iv.solve(m, "out:0", "reach", BOX4), "goal must be an inverset.Goal"),
    ("space", lambda m: iv.maximize(m, "out:0", BOX4, space=BOX4), "space must be"),
    ("max_evals", lambda m: iv.maximize(m, "out:0", BOX4, max_evals="100"), "max_evals must"),
    ("time_limit", lambda m: iv.maximize(m, "out:0", BOX4, time_limit="5"), "time limit must"),
    ("input_shape", lambda m: iv.maximize(m, "out:0", input_shape="4"), "input_shape must"),
    (
        "constraint",
        lambda m: iv.maximize(m, "out:0", BOX4, constraints=[("out:1", 0)]),
        r"each constraint is \(target, z1, z2\)",
    ),
    (
        "constraint NaN",
        lambda m: iv.maximize(m, "out:0", BOX4, constraints=[("out:1", math.nan, 1.0)]),
        "constraint out:1 has a NaN end",
    ),
    ("in_range", lambda m: iv.in_range(m, "out:0", 5, BOX4), "range must be two numbers"),
    ("reach None", lambda m: iv.reach(m, "out:0", None, BOX4), "reach needs a finite value"),
    ("goal value", lambda m: iv.Goal("reach", value="3"), "goal's value must be a number"),
]


@pytest.mark.parametrize(("name", "call", "match"), BAD, ids=[b[0] for b in BAD])
def test_misuse_is_a_one_line_error(name, call, match):
    with pytest.raises(iv.InversetError, match=match) as info:
        call(_net4())
    assert "\n" not in str(info.value)


def test_max_evals_checked():
    model = _net4()
    r = iv.maximize(model, "out:0", BOX4, max_evals=50.0, seed=0)
    assert r.nfev <= 50 and r.query["max_evals"] == 50
    assert isinstance(r.query["max_evals"], int)
    for bad in (True, 2.5, 0, math.inf):
        with pytest.raises(iv.InversetError, match="max_evals must be a whole number >= 1"):
            iv.maximize(model, "out:0", BOX4, max_evals=bad)


@pytest.mark.parametrize("solver", ["gradient", "basinhopping"])
def test_seed_none_is_recorded_and_repeats(solver):
    model = _net4()
    kw = {"solver": solver, "max_evals": 60}
    r = iv.maximize(model, "out:0", BOX4, seed=None, **kw)
    seed = r.query["seed"]
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    again = iv.maximize(model, "out:0", BOX4, seed=seed, **kw)
    np.testing.assert_array_equal(r.x, again.x)


def test_in_range_takes_any_pair_of_numbers():
    for ends in ((-0.25, 0.25), np.array([-0.25, 0.25]), torch.tensor([-0.25, 0.25])):
        r = iv.in_range(_net4(), "out:0", ends, BOX4, seed=0, starts=4)
        assert r.query["goal"]["low"] == -0.25 and r.query["goal"]["high"] == 0.25


@pytest.mark.parametrize("seed", [-1, 1.7, "x", True, 2**64])
def test_bad_seed_is_named(seed):
    with pytest.raises(iv.InversetError, match="seed must be an integer from 0 to"):
        iv.maximize(_net4(), "out:0", BOX4, seed=seed, solver="cmaes", max_evals=20)


@pytest.mark.parametrize("solver", ["gradient", "cmaes", "annealing"])
def test_any_64_bit_seed_is_taken(solver):
    """Searches take torch's 64-bit seeds (e.g. a millisecond timestamp), repeatably."""
    for seed in (2**40, 2**64 - 1):
        a = iv.maximize(_net4(), "out:0", BOX4, seed=seed, solver=solver, max_evals=40)
        b = iv.maximize(_net4(), "out:0", BOX4, seed=seed, solver=solver, max_evals=40)
        assert a.query["seed"] == seed and a.value == b.value


def test_a_box_of_the_wrong_size_names_both_sizes():
    """3 bounds for a model that records 10 inputs said 'the model fails on inputs of shape
    (3,)' (a matrix-size error): it now names the box's and the model's sizes."""
    from sklearn.neural_network import MLPRegressor

    X = np.random.default_rng(0).normal(size=(40, 10))
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, X[:, 0])
    model = iv.load_model(reg)
    with pytest.raises(InversetError, match="bounds 3 features but the model takes 10 inputs"):
        iv.maximize(model, "out:0", iv.Box(np.zeros(3), np.ones(3)), starts=2, steps=2)
    assert iv.maximize(
        model, "out:0", iv.Box(np.zeros(10), np.ones(10)), starts=2, steps=2
    ).x.shape == (10,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_searched_sampled_and_visualized(dtype):
    """A float16 or bfloat16 model (as on GPUs): gradient search, sampling and feature
    visualization answer with values the model reproduces on their arrays (numpy has no
    bfloat16, torch's FFT no half on the CPU); the exact solver refuses, naming the fix."""
    from inverset import featvis as fv
    from inverset.zoo import DigitsCNN

    torch.manual_seed(0)
    m = DigitsCNN(width=4).eval().to(dtype)
    box = iv.Box(0, 1, shape=(1, 8, 8))

    def logit3(x) -> float:
        with torch.no_grad():
            return float(m(torch.as_tensor(np.asarray(x)[None]).to(dtype))[0, 3])

    r = iv.maximize(m, "logit:3", box, starts=4, steps=20, seed=0)
    assert r.value == pytest.approx(logit3(r.x), abs=1e-6)
    s = iv.sample(m, "logit:3", (0.0, 0.05), n=3, domain=box, seed=0, time_limit=30)
    assert s.status == "found" and all(0.0 <= logit3(x) <= 0.05 for x in s.xs)
    v = fv.visualize(m, layer="conv2", channels=[0], steps=20, input_shape=(1, 8, 8))
    # the input the model ran on, in its dtype (bfloat16 as float32: numpy has none)
    assert v.xs.dtype == (np.float16 if dtype == torch.float16 else np.float32)
    assert torch.equal(torch.as_tensor(v.xs).to(dtype).to(torch.float32), torch.as_tensor(v.xs))
    assert np.isfinite(v.value)
    with pytest.raises(InversetError, match=r"certifies float32 and float64 .* model.float\(\)"):
        iv.maximize(m, "logit:3", box, solver="exact")


def _recipe_regressor():
    """A small sklearn MLP fitted on a DataFrame: it knows its feature names (a, b, c)."""
    import warnings

    pd = pytest.importorskip("pandas")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.uniform(0, 1, size=(60, 3)) * [1, 10, 100], columns=["a", "b", "c"])
    y = df.a - 0.3 * df.b + 0.02 * df.c
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(6,), max_iter=200, random_state=0).fit(df, y)
    return reg, df


def test_a_fitted_sklearn_model_is_taken_as_is():
    """iv.maximize takes a fitted sklearn MLP; values equal its predict / predict_proba."""
    from sklearn.neural_network import MLPClassifier

    reg, df = _recipe_regressor()
    res = iv.maximize(reg, "out:0", iv.Box.from_data(df), steps=20, starts=2)
    x = df.iloc[:1].copy()
    x.iloc[0] = res.x
    assert res.value == pytest.approx(reg.predict(x)[0], abs=1e-9)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        clf.fit(df.to_numpy(), df.a > 0.5)
    res = iv.minimize(clf, "prob:1", iv.Box(0, 100, shape=3), steps=20, starts=2)
    assert res.value == pytest.approx(clf.predict_proba(res.x[None])[0, 1], abs=1e-9)
    with pytest.raises(
        iv.InversetError, match=r"torch\.nn\.Module or a fitted sklearn MLP, not str"
    ):
        iv.maximize("model.onnx", "out:0", iv.Box(0, 1, shape=3))


def test_a_box_whose_columns_are_reordered_is_matched_by_name(tmp_path):
    """The box's names (a CSV header, a DataFrame's columns) are matched to the model's."""
    reg, df = _recipe_regressor()
    f = tmp_path / "reordered.csv"
    df[["c", "a", "b"]].to_csv(f, index=False)
    res = iv.maximize(reg, "out:0", iv.Box.from_csv(f), solver="exact", time_limit=20)
    assert res.status == "optimal" and res.query["domain"]["names"] == ["a", "b", "c"]
    lo, hi = df.min().to_numpy(), df.max().to_numpy()  # the model's order: a, b, c
    assert ((lo - 1e-9 <= res.x) & (res.x <= hi + 1e-9)).all(), (res.x, lo, hi)
    assert res.value >= reg.predict(df).max() - 1e-9  # the data lie in the box: a maximum
    x = df.iloc[:1].copy()
    x.iloc[0] = res.x
    assert res.value == pytest.approx(reg.predict(x)[0], abs=1e-9)
    df.rename(columns={"c": "cc"}).to_csv(f, index=False)
    with pytest.raises(iv.InversetError, match=r"box names 'cc', which the model does not have"):
        iv.maximize(reg, "out:0", iv.Box.from_csv(f))


def test_a_latent_generator_id_follows_its_weights():
    """The generator's fingerprint (what a resumed run checks) is kept between calls but
    follows every change of the weights: in place, a replaced parameter, a loaded state."""
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3))
    lat = iv.Latent(g, 2)
    seen = [lat.generator_id()]
    assert lat.generator_id() == seen[0]
    with torch.no_grad():
        g[0].weight[0, 0] += 1
    seen.append(lat.generator_id())
    g[2].bias = nn.Parameter(g[2].bias.detach() + 1)
    seen.append(lat.generator_id())
    g.load_state_dict({k: v * 2 for k, v in g.state_dict().items()})
    seen.append(lat.generator_id())
    assert len(set(seen)) == 4
    assert seen[-1] == iv.Latent(g, 2).generator_id()  # a fresh Latent agrees


def test_queries_in_a_latent_space_hash_the_generator_once(monkeypatch):
    """Every query records its generator's fingerprint through its own copy of the Latent
    (``with_domain``): the hash is shared by the copies, not redone for each query."""
    from inverset import space

    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3))
    clf = nn.Sequential(nn.Linear(3, 2))
    lat, hashed = iv.Latent(g, 2), []
    real = space.fingerprint
    monkeypatch.setattr(space, "fingerprint", lambda m: hashed.append(m) or real(m))
    ids = {
        iv.maximize(clf, "out:0", iv.Box(-1, 1, shape=(3,)), space=lat, max_evals=20).query[
            "space"
        ]["generator"]
        for _ in range(3)
    }
    assert ids == {lat.generator_id()} and len(hashed) == 1


def test_progress_in_a_notebook_is_one_plain_line(monkeypatch, capsys):
    """In Jupyter without ipywidgets rich's live bar was a warning and an empty output: the
    bar is drawn once, at its end, as plain text on stderr (no terminal control codes)."""
    import rich.console

    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    iv.maximize(m, "out:0", iv.Box(-1, 1, shape=(2,)), starts=4, steps=20, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("gradient search") == 1, repr(err)
    assert "21/21" in err


def test_api_mistakes_are_one_line_errors():
    """From a notebook: a device this machine lacks or torch does not know, a sampling range
    given as one number, a numpy array as the domain (its repr spanned 9 lines)."""
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(iv.InversetError, match=r"^unknown device 'gpu'; use auto, cpu, cuda"):
        iv.load_model(m, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(iv.InversetError, match=r"^device 'cuda' is not available"):
            iv.load_model(m, device="cuda")
    with pytest.raises(iv.InversetError, match=r"^range must be two numbers \(z1, z2\), got 8$"):
        iv.sample(m, "out:0", 8, n=3, domain=iv.Box(-1, 1, shape=(2,)))
    with pytest.raises(iv.InversetError, match=r"got ndarray of shape \(1, 8, 8\)$"):
        iv.maximize(m, "out:0", np.zeros((1, 8, 8)))


def test_reprs_stay_short_and_say_why_a_layer_is_no_target():
    """A MILP model of a digits-sized net printed every row (13 MB in a notebook); a layer
    that runs twice or never showed only ``shape=None``."""
    from inverset.exact import build_milp, compile_problem, crown

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.unused = nn.Linear(2, 3), nn.ReLU(), nn.ReLU()

        def forward(self, x):
            return self.act(self.act(self.fc(x)))

    info = {i.name: repr(i) for i in iv.layers(Twice(), (2,))}
    assert info["act"].endswith("shape=None, note='runs 2x per forward: no target')")
    assert info["unused"].endswith("note='never run by forward')")
    assert info["fc"] == "LayerInfo(name='fc', kind='Linear', shape=(3,))"
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
    box = iv.Box(0, 1, shape=(1, 8, 8))
    net = compile_problem(iv.Problem.build(cnn, "out:0", "maximize", box))
    lo, hi = box.lower, box.upper  # the README's call, on a picture-shaped box
    m = build_milp(net, lo, hi, crown(net, lo, hi))
    assert len(m.rows) > 100 and repr(m).startswith("MILPModel(inputs=64, columns=")
    assert len(repr(m)) < 200


def test_a_model_file_loads_on_the_device_auto_names(tmp_path):
    """``device="auto"`` reached torch.jit.load unresolved: a good TorchScript file was 'not a
    loadable TorchScript file'. A sampling range may be a tensor."""
    m = torch.jit.script(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    path = tmp_path / "m.pt"
    m.save(str(path))
    loaded = iv.load_model(path, device="auto", input_shape=(2,))
    x = torch.rand(3, 2)
    assert torch.equal(loaded.cpu()(x), m(x))
    with pytest.raises(iv.InversetError, match=r"^unknown device 'bogus'"):
        iv.load_model(path, device="bogus")
    r = iv.sample(
        loaded, "out:0", torch.tensor([-10.0, 10.0]), n=4, domain=iv.Box(-1, 1, shape=(2,))
    )
    assert r.status == "found" and len(r.xs) == 4


@pytest.mark.parametrize("solver", ["gradient", "auto", "exact", "evolution", "sample"])
def test_a_probability_range_above_1_is_unreachable_at_once(solver):
    """A probability asked to lie in [80, 90] (a percentage): auto and evolution searched
    their whole time limit (19 s) and answered not_found, the exact solver refused prob:k,
    and the sampler spent its seeding budget. Now every solver answers unreachable before
    evaluating the model, with the bound 1 and how to write the percentage."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    box = iv.Box(-1, 1, shape=(4,))
    if solver == "sample":
        r = iv.sample(m, "prob:1", (80, 90), n=4, domain=box)
    else:
        r = iv.in_range(m, "prob:1", (80, 90), box, solver=solver, time_limit=30)
    assert r.status == "unreachable" and r.x is None and r.bound == 1.0, r.message
    assert r.nfev == 0
    assert r.message.endswith(
        "the target prob:1 is at most 1 for every input (prob:1 is a probability, between 0 "
        "and 1), so it cannot be in [80, 90]; for 80-90% give 0.8 to 0.9"
    )


def test_a_range_a_target_can_take_is_searched_and_one_it_cannot_is_proven_empty():
    """Only ranges no value of the target's probabilities can take are answered without a
    search: a difference of two reaches -1 at most, a constraint on a sum fails the domain."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    box = iv.Box(-1, 1, shape=(4,))
    r = iv.reach(m, "prob:1 - prob:2", -1.5, box)
    assert (r.status, r.bound, r.nfev) == ("unreachable", -1.0, 0), r.message
    assert "-1 for every input (prob:1 is a probability, between 0 and 1; prob:2" in r.message
    r = iv.maximize(m, "logit:0", box, constraints=[("prob:1 + prob:2", 2.5, 3)])
    assert (r.status, r.nfev) == ("infeasible", 0), r.message
    assert r.message.startswith("constraint (prob:1 + prob:2) is at most 2 for every input")
    r = iv.reach(m, "prob:1", 1.000002, box)  # not printed as the 1 it can reach
    assert r.status == "unreachable" and r.message.endswith("so it cannot be 1.000002")
    r = iv.reach(m, "prob:1 - prob:2", 1.0, box, time_limit=5)
    assert r.status != "unreachable" and r.nfev > 0, r.message  # a bound, not a proof
    r = iv.in_range(m, "prob:1", (0.3, 0.5), box)
    assert r.status == "found" and 0.3 <= r.value <= 0.5, r.message


def test_the_span_of_a_target_is_what_its_probabilities_allow():
    """Interval arithmetic over [0, 1] per probability; any other network value is free."""
    span = lambda t: iv.parse_target(t).span()  # noqa: E731
    assert span("prob:1") == (0.0, 1.0)
    assert span("logit:1") == (-math.inf, math.inf)
    assert span("2*prob:1 - 3") == (-3.0, -1.0)
    assert span("prob:1 / 4 + prob:2") == (0.0, 1.25)
    assert span("-prob:0 * 0.5") == (-0.5, 0.0)
    assert span("min(prob:1, 0.25)") == (0.0, 0.25)
    assert span("max(prob:1, prob:2 + 1)") == (1.0, 2.0)
    assert span("prob:1 * logit:0") == (-math.inf, math.inf)
    assert span("logit:0 / prob:1") == (-math.inf, math.inf)
    assert span("1 / (prob:1 + 1)") == (0.5, 1.0)


def test_a_range_a_layer_type_rules_out_is_unreachable_at_once():
    """A ReLU unit is at least 0, a Tanh unit within [-1, 1], the outputs of a model ending
    in a Softmax are probabilities: ranges outside them are answered before any search,
    with the layer that proves it; ranges inside them are searched."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3), nn.Softmax(dim=1)
    )
    box = iv.Box(-1, 1, shape=(4,))
    for target, rng, bound, why in (
        ("1:3", (-2, -1), 0, "1:3 is a value of ReLU layer 1, at least 0"),
        ("3:2", (1.5, 2), 1, "3:2 is a value of Tanh layer 3, between -1 and 1"),
        ("out:1", (2, 3), 1, "out:1 is a probability (the model ends in a Softmax)"),
        ("1:3 - 3:2", (-5, -2.5), -1, "1:3 is a value of ReLU layer 1, at least 0; 3:2 is"),
    ):
        r = iv.in_range(m, target, rng, box)
        assert (r.status, r.bound, r.nfev) == ("unreachable", bound, 0), r.message
        assert why in r.message
    r = iv.sample(m, "1:3", (-2, -1), n=4, domain=box)
    assert r.status == "unreachable" and "ReLU layer 1, at least 0" in r.message
    r = iv.in_range(m, "1:3", (0.1, 0.5), box)
    assert r.status == "found" and 0.1 <= r.value <= 0.5
    with torch.no_grad():
        assert r.value == pytest.approx(float(m[:2](torch.as_tensor(r.x))[3]), abs=1e-6)


def test_a_subclass_with_a_forward_of_its_own_is_not_bounded_by_its_base_class():
    """A ReLU subclass returning relu(x) - 1, a Sequential subclass scaling its Softmax's
    output by 10: ranges their values reach were refused as 'at least 0' and 'a
    probability' (audit 109)."""

    class Shifted(nn.ReLU):
        def forward(self, x):
            return torch.relu(x) - 1

    class Scaled(nn.Sequential):
        def forward(self, x):
            return super().forward(x) * 10

    torch.manual_seed(0)
    box = iv.Box(-1, 1, shape=(3,))
    m = nn.Sequential(nn.Linear(3, 4), Shifted(), nn.Linear(4, 2))
    r = iv.in_range(m, "1:0", (-1.0, -0.5), box)
    assert r.status == "found" and -1.0 <= r.value <= -0.5, r.message
    s = Scaled(nn.Linear(3, 2), nn.Softmax(dim=1))
    r = iv.reach(s, "out:0", 5.0, box)
    assert r.status == "found" and r.value == pytest.approx(5.0, abs=1e-3), r.message
    with torch.no_grad():
        assert float(s(torch.as_tensor(r.x)[None])[0, 0]) == pytest.approx(r.value, abs=1e-6)


def test_a_ctrl_c_while_a_solvers_library_is_imported_returns_interrupted(monkeypatch):
    # a process's first import of cma takes 1-2 s: a Ctrl-C there raised, breaking a loop of
    # calls that the README says goes on
    import inverset.api

    def importing(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(inverset.api, "get_solver", importing)
    net = torch.nn.Linear(2, 1)
    r = iv.maximize(net, "out:0", iv.Box(0, 1, shape=(2,)), solver="cmaes")
    assert r.status == "interrupted" and r.x is None
    assert "before the search began" in r.message and r.query["solver"] == "cmaes"
