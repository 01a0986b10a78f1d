"""Inverse-set sampling: analytic inverse set, intersections, resume, digits, unreachable."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from inverset.domain import Box
from inverset.errors import InversetError
from inverset.model import fingerprint, forward
from inverset.sampling import default_layer, sample
from inverset.space import Latent
from tests.conftest import need


def logistic_model(d: int = 8) -> tuple[nn.Module, np.ndarray, float]:
    """The paper's §3.1 example: sigma(w.x + c) on the [0, 1] cube (w, c returned)."""
    m = nn.Sequential(nn.Linear(d, 1), nn.Sigmoid())
    w = torch.randn(1, d, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        m[0].weight.copy_(w)
        m[0].bias.fill_(-float(w.sum()) / 2)
    m.input_shape = (d,)
    return m, w.numpy()[0].astype(np.float64), float(m[0].bias.detach())


def logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize("z1,z2", [(0.6, 1.0), (0.3, 0.7)])
def test_logistic_inverse_set_is_halfspace_slab_in_box(z1, z2):
    m, w, c = logistic_model()
    r = sample(m, "out:0", (z1, z2), n=200, domain=Box(0, 1), encoder="identity", seed=0)
    assert r.status == "found", r.message
    xs = r.xs.astype(np.float64)
    assert xs.shape == (200, 8)
    # the analytic inverse set: logit(z1) <= w.x + c (<= logit(z2)) and 0 <= x <= 1
    a = xs @ w + c
    assert (a >= logit(z1) - 1e-4).all()
    if z2 < 1:
        assert (a <= logit(z2) + 1e-4).all()
    assert xs.min() >= 0 and xs.max() <= 1
    np.testing.assert_allclose(r.values, 1 / (1 + np.exp(-a)), atol=1e-5)
    # no duplicates, and the samples spread over the set: every coordinate spans the cube
    assert len(np.unique(xs.round(6), axis=0)) == 200
    assert (xs.min(0) <= 0.1).all() and (xs.max(0) >= 0.9).sum() >= 7
    if z2 < 1:  # both ends of the range are reached (lowest and highest eighth)
        width = z2 - z1
        assert r.values.min() < z1 + width / 8 and r.values.max() > z2 - width / 8
    info = r.info
    assert info["accepted"] == 200 and info["verified"] == 200
    assert info["generated"] == info["accepted"] + info["rejected"]
    assert info["diversity"] > 0.5
    assert info["seed_steps"] <= 800 and info["sample_steps"] <= 200


def test_intersection_satisfies_every_range(digits_cnn, tmp_path, saved_figures):
    model = digits_cnn.model
    x0 = torch.from_numpy(digits_cnn.X[3:4])
    with torch.no_grad():
        acts = forward(model, x0, ["fc1"])
    a, b = float(acts["fc1"][0, 3]), float(acts["out"][0, 3])
    r = sample(
        model,
        "fc1:3",
        (a - 1, a + 1),
        n=100,
        domain=Box(0, 1),
        intersect=[("logit:3", b - 1, b + 1)],
    )
    assert r.status == "found", r.message
    with torch.no_grad():
        acts = forward(model, torch.as_tensor(r.xs), ["fc1"])
    f1, f2 = acts["fc1"][:, 3].numpy(), acts["out"][:, 3].numpy()
    assert ((f1 >= a - 1) & (f1 <= a + 1)).all()
    assert ((f2 >= b - 1) & (f2 <= b + 1)).all()
    np.testing.assert_allclose(r.arrays["constraints"][:, 0], f2, atol=1e-4)
    assert r.xs.min() >= 0 and r.xs.max() <= 1
    # the pictures' title names every range, not the first target's alone (audit 116)
    from inverset.report.pictures import write_pictures

    write_pictures(r, tmp_path)
    title = " ".join(t.get_text() for t in saved_figures[0].texts).replace("\n", " ")
    assert f"logit:3 in [{b - 1:g}, {b + 1:g}]" in title and "fc1:3" in title


def test_digits_hidden_channel_range(digits_cnn):
    model = digits_cnn.model
    r = sample(model, "conv2:5", (0.6, 0.8), n=150, domain=Box(0, 1), seed=1)
    assert r.status == "found", r.message
    assert default_layer(model) == "relu1" and r.info["encoder"] == "layer relu1"
    with torch.no_grad():
        acts = forward(model, torch.as_tensor(r.xs), ["conv2"])
    v = acts["conv2"][:, 5].mean((1, 2)).numpy()
    assert ((v >= 0.6) & (v <= 0.8)).all()
    np.testing.assert_allclose(r.values, v, atol=1e-5)
    # the 140 samples after the 10 seeds came within 100 walk steps, at most K = 10 a step:
    # the walk (with its diversity term) made them, not the seeding trajectories
    assert 14 <= r.info["sample_steps"] <= 100
    assert r.info["diversity"] > 1.0


def test_a_relu_neuron_off_at_random_inputs_gets_diverse_seeds(digits_cnn, tmp_path):
    """relu3:14 of the digits CNN is 0 at random inputs: the seeding's gradient was zero, no
    walker moved and the run ended not_found after the exact check's 30 s (audit 116). The
    walkers with no gradient now climb through leaky ReLUs; relu3:14 = relu(fc1:14) here,
    and its samples must be in range on the model itself."""
    model = digits_cnn.model
    x0 = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(forward(model, x0, ["relu3"])["relu3"][:, 14].max()) == 0.0
    args = (model, "relu3:14", (0.27, 0.64))
    r = sample(*args, n=60, domain=Box(0, 1), seed=0, out=tmp_path / "s")
    assert r.status == "found", r.message
    assert r.info["warmed_walkers"] >= 5
    more = sample(*args, n=64, domain=Box(0, 1), seed=0, out=tmp_path / "s", resume=True)
    assert more.status == "found" and more.info["warmed_walkers"] >= r.info["warmed_walkers"]
    with torch.no_grad():
        v = forward(model, torch.as_tensor(r.xs), ["relu3"])["relu3"][:, 14].numpy()
    assert ((v >= 0.27) & (v <= 0.64)).all() and len(np.unique(r.xs, axis=0)) == 60
    assert r.info["seed_steps"] < 800  # the exact check never ran: seeding found them


def test_a_walk_on_whole_numbers_restarts_at_least_one_unit_away():
    """4 whole numbers in 0..5 summing to [3, 5]: 111 inputs qualify; restarts within 0.025
    of the box width rounded back to their sample, and 60 of 100 points were copies."""
    net = nn.Sequential(nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
    dom = Box(0, 5, shape=(4,), integer=[0, 1, 2, 3])
    r = sample(net, "out:0", (3, 5), n=80, domain=dom, seed=0, encoder="identity")
    assert r.status == "found", r.message
    x = r.xs.astype(np.float64)
    np.testing.assert_array_equal(x, np.round(x))
    assert len(np.unique(x, axis=0)) == 80 and ((x.sum(1) >= 3) & (x.sum(1) <= 5)).all()


class Interrupt:
    """A callback raising KeyboardInterrupt once ``at`` samples are accepted (a Ctrl-C)."""

    def __init__(self, at: int):
        self.at, self.fired = at, False

    def __call__(self, state):
        if not self.fired and state["phase"] == "sampling" and state["accepted"] >= self.at:
            self.fired = True
            raise KeyboardInterrupt


def test_a_walker_circling_a_point_returns_no_near_copies():
    """A walker held between the range and the diversity push steps back and forth; the
    paper's rule (spacing 0) took each return as a new sample (86% of 200 samples within a
    quarter step of another); a point is now a sample only half a step from its walker's
    last ones."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)).eval()
    with torch.no_grad():
        v = m(torch.rand(20000, 16))[:, 0]
    rng = tuple(float(q) for q in torch.quantile(v, torch.tensor([0.5, 0.55])))
    quarter = 0.25 * 0.025 * math.sqrt(16)  # a quarter of a walk step (unit box)
    near = {}
    for spacing in (0.0, 0.5):
        r = sample(m, "out:0", rng, n=200, domain=Box(0, 1, shape=(16,)), spacing=spacing)
        assert r.status == "found" and len(r.xs) == 200
        assert ((r.values >= rng[0]) & (r.values <= rng[1])).all()
        d = torch.cdist(torch.as_tensor(r.xs), torch.as_tensor(r.xs))
        d.fill_diagonal_(math.inf)
        near[spacing] = float((d.amin(1) < quarter).double().mean())
    assert near[0.0] > 0.5 and near[0.5] <= 0.02, near
    assert r.info["too_close"] > 0


def test_interrupt_keeps_samples_and_resume_reaches_n_without_duplicates(tmp_path):
    m, w, c = logistic_model()
    out = tmp_path / "run"
    kw = dict(domain=Box(0, 1), encoder="identity", out=out, K=10)
    r1 = sample(m, "out:0", (0.3, 0.7), n=150, callback=Interrupt(60), **kw)
    assert r1.status == "interrupted"
    assert "resume" in r1.message
    k = len(r1.xs)
    assert 60 <= k < 150
    state = json.loads((out / "state.json").read_text())
    assert state["accepted"] == k and sum(ch["count"] for ch in state["chunks"]) == k
    assert (out / "samples_000.npz").is_file()
    with pytest.raises(InversetError, match="resume"):
        sample(m, "out:0", (0.3, 0.7), n=150, **kw)
    with pytest.raises(InversetError, match="different query"):
        sample(m, "out:0", (0.2, 0.7), n=150, resume=True, **kw)
    r2 = sample(m, "out:0", (0.3, 0.7), n=150, resume=True, **kw)
    assert r2.status == "found", r2.message
    assert len(r2.xs) == 150 and r2.info.get("resumed")
    assert r2.nfev > r1.nfev > 0  # evaluations count over the runs resumed
    np.testing.assert_array_equal(r2.xs[:k], r1.xs)  # what was kept is kept, in order
    assert len(np.unique(r2.xs.round(7), axis=0)) == 150
    a = r2.xs.astype(np.float64) @ w + c
    assert ((a >= logit(0.3) - 1e-4) & (a <= logit(0.7) + 1e-4)).all()
    # and a finished run resumed with a larger n continues to it
    r3 = sample(m, "out:0", (0.3, 0.7), n=180, resume=True, **kw)
    assert r3.status == "found" and len(r3.xs) == 180 and r3.nfev > r2.nfev
    np.testing.assert_array_equal(r3.xs[:150], r2.xs)


def test_time_limit_returns_partial_and_saved(tmp_path):
    m, _, _ = logistic_model()
    r = sample(m, "out:0", (0.3, 0.7), n=100000, domain=Box(0, 1), time_limit=1.0, out=tmp_path)
    assert r.status == "time_limit"
    assert 0 < len(r.xs) < 100000
    assert json.loads((tmp_path / "state.json").read_text())["accepted"] == len(r.xs)


def test_time_limit_holds_with_many_samples_and_resume_gets_the_limit_again(tmp_path, monkeypatch):
    """Thousands of samples: the diversity of all pairs would take longer than the run, so it
    is estimated on a random subset (of 500 here, not 2000: the test does not hang on how many
    samples 2 s make); a resumed run gets its own time limit, not what is left of the first."""
    import time

    import torch._dynamo  # torch.optim's one-off import, before the clock (README)

    from inverset.sampling import inverse_set

    monkeypatch.setattr(inverse_set, "DIVERSITY_PAIRS_OF", 500)
    m, _, _ = logistic_model()
    kw = dict(domain=Box(0, 1), out=tmp_path, encoder="identity")
    t = time.perf_counter()
    r = sample(m, "out:0", (0.3, 0.7), n=10**6, time_limit=2.0, **kw)
    assert time.perf_counter() - t < 3.0
    k = len(r.xs)
    assert r.status == "time_limit" and k > 500, k
    assert r.info["diversity_of"].startswith("500 random samples")
    e = torch.as_tensor(r.xs.reshape(k, -1), dtype=torch.float64)
    every_pair = sum(float(torch.cdist(e[i : i + 1024], e).sum()) for i in range(0, k, 1024))
    assert r.info["diversity_input"] == pytest.approx(every_pair / (k * (k - 1)), rel=0.03)
    r2 = sample(m, "out:0", (0.3, 0.7), n=10**6, time_limit=1.0, resume=True, **kw)
    assert r2.status == "time_limit" and len(r2.xs) > k + 100, (k, len(r2.xs))


def test_integer_features_are_sampled_as_whole_numbers():
    m, w, c = logistic_model()
    dom = Box(0, 3, shape=(8,), integer=[0, 1, 2])
    r = sample(m, "out:0", (0.3, 0.7), n=60, domain=dom, encoder="identity")
    assert r.status == "found", r.message
    x = r.xs.astype(np.float64)
    np.testing.assert_array_equal(x[:, :3], np.round(x[:, :3]))
    assert len(np.unique(x[:, :3], axis=0)) > 5
    a = x @ w + c
    assert ((a >= logit(0.3) - 1e-4) & (a <= logit(0.7) + 1e-4)).all()


def test_one_walker_does_not_stall_on_its_sample():
    m, _, _ = logistic_model()
    for seed in range(4):
        r = sample(m, "out:0", (0.3, 0.7), n=7, K=1, domain=Box(0, 1), seed=seed, max_steps=200)
        assert r.status == "found", (seed, r.message)


def test_latent_space_keeps_the_query_domain(digits_cnn):
    """The query's box applies to G(z) even when the Latent space was built without it."""
    torch.manual_seed(0)
    dec = nn.Sequential(nn.Linear(4, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8)))
    r = sample(
        digits_cnn.model,
        "logit:0",
        (-100.0, 100.0),
        n=20,
        domain=Box(0, 0.3),
        space=Latent(dec, 4),
    )
    assert r.status == "found", r.message
    assert r.xs.max() <= 0.3 + 1e-6 and r.info["failed_verification"] == 0


def test_resuming_with_other_weights_is_refused(tmp_path):
    m, _, _ = logistic_model()
    kw = dict(domain=Box(0, 1), out=tmp_path, encoder="identity", n=20)
    assert sample(m, "out:0", (0.3, 0.7), **kw).status == "found"
    with torch.no_grad():
        m[0].bias += 0.1
    with pytest.raises(InversetError, match="weights differ"):
        sample(m, "out:0", (0.3, 0.7), resume=True, **kw)


def relu_net() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    m.input_shape = (3,)
    return m


def test_unreachable_range_is_proven_when_exact_solver_exists():
    need("highspy")
    r = sample(relu_net(), "out:0", (100.0, 101.0), n=50, domain=Box(0, 1), max_outer=3)
    assert r.status == "unreachable", r.message
    assert r.bound is not None and r.bound < 100.0
    assert r.info["outer_iterations"] == 1


def test_unreachable_without_exact_check_stops_after_budget():
    r = sample(
        relu_net(), "out:0", (100.0, 101.0), n=50, domain=Box(0, 1), max_outer=2, exact_check=False
    )
    assert r.status == "not_found"
    assert "seeding found no point with out:0 in [100, 101] after 2 outer iterations" in r.message
    assert len(r.xs) == 0


def test_latent_space_with_any_decoder(digits_cnn):
    """Any decoder module is a generator: here a fixed random one (4-d code -> 8x8 image)."""
    torch.manual_seed(0)
    dec = nn.Sequential(nn.Linear(4, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8)))
    space = Latent(dec, 4, domain=Box(0, 1, shape=(1, 8, 8)))
    with torch.no_grad():
        z = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
        v = digits_cnn.model(dec(z))[:, 0].numpy()
    lo, hi = (float(q) for q in np.quantile(v, [0.6, 0.9]))
    r = sample(digits_cnn.model, "logit:0", (lo, hi), n=60, domain=Box(0, 1), space=space)
    assert r.status == "found", r.message
    assert r.arrays["z"].shape == (60, 4) and np.abs(r.arrays["z"]).max() <= 3.0 + 1e-6
    with torch.no_grad():
        x = dec(torch.as_tensor(r.arrays["z"], dtype=torch.float32))
        vv = digits_cnn.model(x)[:, 0].numpy()
    np.testing.assert_allclose(x.numpy(), r.xs, atol=1e-5)
    assert ((vv >= lo) & (vv <= hi)).all()
    assert r.query["space"]["kind"] == "Latent"


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(range=(1.0, 1.0)), "z1 < z2"),
        (dict(range=(0.2, 0.5), intersect=[("out:0", 0.5, 0.1)]), "z1 < z2"),
        (dict(range=(0.2, 0.5), encoder="nope"), "unknown layer"),
        (dict(range=(0.2, 0.5), resume=True), "output directory"),
        (dict(range=(0.2, 0.5), diversity="x"), "diversity"),
        (dict(range=(0.2, 0.5), K=2.5), "whole number"),
        (dict(range=(0.2, 0.5), neighbours=0), "neighbours"),
        (dict(range=(0.2, 0.5), mu0=0.0), "mu0"),
        (dict(range=(0.2, 0.5), time_limit=-1.0), "time limit"),
        (dict(range=(0.2, 0.5), time_limit=math.nan), "time limit"),
    ],
)
def test_bad_input_is_one_line_error(kw, match):
    m, _, _ = logistic_model()
    with pytest.raises(InversetError, match=match):
        sample(m, "out:0", n=5, domain=Box(0, 1), **kw)


SIGTERM_SCRIPT = """
import sys, torch
from torch import nn
from inverset.domain import Box
from inverset.sampling import sample
torch.set_num_threads(1)
m = nn.Sequential(nn.Linear(8, 1), nn.Sigmoid())
w = torch.randn(1, 8, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    m[0].weight.copy_(w)
    m[0].bias.fill_(-float(w.sum()) / 2)
m.input_shape = (8,)
r = sample(m, "out:0", (0.3, 0.7), n=10**7, domain=Box(0, 1), encoder="identity", out=sys.argv[1])
print(r.status, len(r.xs))
"""


def test_sigterm_keeps_samples(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from inverset.result import Result

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            f = out / "state.json"
            if f.is_file() and json.loads(f.read_text()).get("accepted", 0) > 0:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and stdout.startswith("interrupted"), stdout
    k = int(stdout.split()[1])
    state = json.loads((out / "state.json").read_text())
    assert state["accepted"] == k > 0
    r = Result.load(out)
    assert r.status == "interrupted" and len(r.xs) == k


def test_a_fitted_sklearn_pipeline_is_sampled_as_is():
    """``iv.sample`` takes an estimator as the other queries do (it crashed in the encoder);
    every sample's prediction, by scikit-learn itself, lies in the range."""
    import warnings

    from sklearn.datasets import load_diabetes
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    torch.set_num_threads(1)
    X, y = load_diabetes(return_X_y=True)
    est = make_pipeline(
        StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    r = sample(est, "out:0", (150.0, 200.0), n=40, domain=Box.from_data(X), seed=0)
    assert r.status == "found" and len(r.xs) == 40
    pred = est.predict(r.xs.reshape(40, -1))
    assert ((pred >= 150.0 - 1e-6) & (pred <= 200.0 + 1e-6)).all(), pred


def decoder(seed: int) -> nn.Module:
    """A fixed random generator of 3 inputs in (0, 1) from 2-d codes."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 3), nn.Sigmoid())


def test_resume_with_other_generator_weights_is_refused(tmp_path):
    """A run in a generator's latent space resumed with other weights of the same architecture
    would mix the samples of two generators: refused, naming the generator; the same weights
    (another copy of them) resume."""
    m = nn.Sequential(nn.Linear(3, 1))
    with torch.no_grad():
        m[0].weight.fill_(1.0)
        m[0].bias.zero_()
    kw = dict(domain=Box(0, 1, shape=(3,)), out=tmp_path / "run", seed=0, exact_check=False)
    first = sample(m, "out:0", (1.0, 2.0), n=20, space=Latent(decoder(0), 2), **kw)
    assert first.status == "found", first.message
    assert first.query["space"]["generator"] == fingerprint(decoder(0))
    with pytest.raises(InversetError, match=r"different query \(space.generator differ\)"):
        sample(m, "out:0", (1.0, 2.0), n=30, space=Latent(decoder(1), 2), resume=True, **kw)
    r = sample(m, "out:0", (1.0, 2.0), n=30, space=Latent(decoder(0), 2), resume=True, **kw)
    assert r.status == "found" and len(r.xs) == 30 and r.info.get("resumed")
    with torch.no_grad():
        x = decoder(0)(torch.as_tensor(r.arrays["z"], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(x, r.xs, atol=1e-6)  # every sample is G(z) of the one generator


def test_latent_space_with_an_unbounded_code_names_the_latent_bound():
    with pytest.raises(InversetError) as exc:
        sample(
            relu_net(),
            "out:0",
            (0.0, 1.0),
            n=5,
            domain=Box(0, 1),
            space=Latent(decoder(0), 2, bound=math.inf),
        )
    msg = str(exc.value)
    assert "the latent space is unbounded (Latent bound=inf" in msg
    assert "give Latent a finite bound" in msg and "search a generator's latent space" not in msg


@pytest.mark.parametrize("latent", [False, True])
def test_unreachable_range_message_claims_no_point(latent):
    """The exact solver's proof is passed on without its note on a returned point: an empty
    inverse set returns none."""
    need("highspy")
    space = Latent(decoder(0), 2) if latent else None
    r = sample(relu_net(), "out:0", (100.0, 101.0), n=5, domain=Box(0, 1), space=space)
    assert r.status == "unreachable" and r.x is None and len(r.xs) == 0, r.message
    assert r.message.startswith("inverse set is empty: unreachable: the target is at most")
    assert "(proven)" in r.message and "point returned" not in r.message


def test_range_reachable_by_inputs_but_not_through_the_generator_says_so():
    """The exact check proves the range reachable by an input of the model, but no G(z) lies
    there (its x0 stays below 0.01): not found, saying plainly which is which."""
    need("highspy")
    m = nn.Sequential(nn.Linear(3, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        m[0].bias.zero_()
    g = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Flatten())
    with torch.no_grad():
        g[0].bias.fill_(-10.0)  # x0 = sigmoid(w.z - 10) < 0.01 for every code in [-3, 3]^2
        g[0].weight.fill_(0.5)
    space = Latent(g, 2)
    r = sample(m, "out:0", (0.5, 0.9), n=5, domain=Box(0, 1, shape=(3,)), space=space, max_outer=2)
    assert r.status == "not_found" and len(r.xs) == 0, r.message
    assert r.message == (
        "seeding found no code z whose G(z) has out:0 in [0.5, 0.9] after 2 outer iterations "
        f"({r.info['seed_steps']} steps); exact check: witness found: some input of the model "
        "has out:0 in [0.5, 0.9] (the check searches inputs, not G(z)): 0 of 5 samples after "
        f"{r.info['seed_steps']} seeding + 0 sampling steps"
    )
