"""Inverse-set sampling on hard cases: integer features, linear constraints, float32 bounds,
bad options, failed runs, empty intersections, time limits, resume, damaged stores."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

from inverset.domain import Box
from inverset.errors import InversetError
from inverset.result import Result
from inverset.sampling import default_layer, sample
from tests.conftest import need

torch.set_num_threads(1)


def linear(w: list[float], bias: float = 0.0) -> nn.Module:
    """``w . x + bias`` with a recorded input shape."""
    m = nn.Sequential(nn.Linear(len(w), 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([w]))
        m[0].bias.fill_(bias)
    m.input_shape = (len(w),)
    return m


def logistic() -> nn.Module:
    m = nn.Sequential(nn.Linear(8, 1), nn.Sigmoid())
    w = torch.randn(1, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        m[0].weight.copy_(w)
        m[0].bias.fill_(-float(w.sum()) / 2)
    m.input_shape = (8,)
    return m


def min_rms_gap(xs: np.ndarray) -> float:
    """Smallest root-mean-square coordinate difference between two rows (the copy measure)."""
    X = np.asarray(xs, dtype=np.float64).reshape(len(xs), -1)
    d = ((X[:, None] - X[None]) ** 2).mean(-1)
    np.fill_diagonal(d, np.inf)
    return float(np.sqrt(d.min()))


def stored(out) -> np.ndarray:
    """Every sample the store lists, read back from its chunks."""
    state = json.loads((out / "state.json").read_text())
    parts = [np.load(out / c["file"])["x"][: c["count"]] for c in state["chunks"]]
    return np.concatenate(parts) if parts else np.zeros((0,))


def test_integer_feature_never_in_range_is_not_found_not_a_crash():
    """x0 is 0 or 1, the range (0.3, 0.7) lies between: without the exact check, walkers
    restart with no sample yet."""
    m = linear([1.0, 0.0])
    dom = Box(0, 1, shape=(2,), integer=[0])
    r = sample(m, "out:0", (0.3, 0.7), n=20, domain=dom, max_steps=30, restart=5, exact_check=False)
    assert r.status == "not_found", r.message
    assert r.xs.shape == (0, 2) and r.info["restarts"] > 0


@pytest.mark.parametrize(
    ("w", "dom", "rng", "why"),
    [
        # x0 + x1 on whole numbers is 2 or 3, never in [2.2, 2.8]
        ([1.0, 1.0], Box(0, 3, shape=(2,), integer=[0, 1]), (2.2, 2.8), "none inside it"),
        # 1 <= 2 x2 <= 1 holds only at x2 = 0.5, no whole number
        (
            [1.0, 0.0, 0.0],
            Box(0, 3, shape=(3,), integer=[2], A=[[0, 0, 2.0], [0, 0, -2.0]], b=[1.0, -1.0]),
            (0.0, 3.0),
            "admits no input",
        ),
    ],
)
def test_a_range_met_only_between_whole_numbers_is_proven_unreachable(w, dom, rng, why):
    """Seeds in range with fractional integer features do not show the range reachable: the
    exact check runs and proves it empty (it had walked its whole budget: not_found)."""
    r = sample(linear(w), "out:0", rng, n=20, domain=dom, seed=0, time_limit=60)
    assert r.status == "unreachable", r.message
    assert why in r.message and r.xs.shape[0] == 0


def test_integer_features_with_linear_constraint_store_only_valid_samples(tmp_path):
    m = linear([1.0, 1.0, -1.0])
    A, b = np.array([[1.0, 1.0, 0.0]]), np.array([2.5])
    dom = Box(0, 3, shape=(3,), integer=[0, 1], A=A, b=b)
    out = tmp_path / "run"
    r = sample(m, "out:0", (-10.0, 10.0), n=60, domain=dom, encoder="identity", out=out)
    assert r.status == "found", r.message
    xs = stored(out)
    assert len(xs) == 60 and json.loads((out / "state.json").read_text())["accepted"] == 60
    assert (xs[:, :2].sum(1) <= 2.5 + 1e-6).all()
    np.testing.assert_array_equal(xs[:, :2], np.round(xs[:, :2]))
    assert (r.xs[:, :2].sum(1) <= 2.5 + 1e-6).all()
    assert r.info["generated"] == r.info["accepted"] + r.info["rejected"]


def test_float32_values_are_checked_against_the_exact_bounds():
    """100000.03 is 100000.03125 in float32: a value there is outside the range."""
    m = linear([0.05, 0.0], 100000.0)
    z1, z2 = 100000.0, 100000.03
    r = sample(m, "out:0", (z1, z2), n=40, domain=Box(0, 1), encoder="identity", exact_check=False)
    assert r.status == "found", r.message
    assert ((r.values >= z1) & (r.values <= z2)).all(), r.values.max()
    with torch.no_grad():
        v = m(torch.as_tensor(r.xs)).double().numpy()[:, 0]
    assert ((v >= z1) & (v <= z2)).all()
    assert "[100000, 100000.03]" in r.message


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(max_steps="abc"), "max_steps"),
        (dict(max_steps=-1), "max_steps"),
        (dict(inner_steps=-1), "inner_steps"),
        (dict(max_outer=-1), "max_outer"),
        (dict(restart=-5), "restart"),
        (dict(walk_margin="abc"), "walk_margin"),
        (dict(walk_margin=2.0), "walk_margin"),
        (dict(weight=float("nan")), "weight"),
        (dict(exact_time=-1.0), "exact_time"),
        (dict(mu0="abc"), "mu0"),
        (dict(exact_check="yes"), "exact_check"),
        (dict(seed=2**64), "seed must be an integer"),
        (dict(seed=-1), "seed must be an integer"),
    ],
)
def test_bad_options_fail_at_once(kw, match, monkeypatch):
    """A bad value is a one-line error before any evaluation of the model."""
    import inverset.sampling.inverse_set as S

    def no_run(*a, **k):
        raise AssertionError("the run started")

    monkeypatch.setattr(S._Sampler, "run", no_run)
    with pytest.raises(InversetError, match=match):
        sample(logistic(), "out:0", (0.3, 0.7), n=5, domain=Box(0, 1), **kw)


def test_failed_start_leaves_no_run_behind(tmp_path):
    """A layer the encoder cannot read fails before the store is made: a rerun just works."""
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    ts = torch.jit.script(net)
    out = tmp_path / "run"
    kw = dict(domain=Box(0, 1, shape=(4,)), n=5, out=out, input_shape=(4,))
    with pytest.raises(InversetError, match="TorchScript"):
        sample(ts, "out:0", (-100.0, 100.0), encoder="0", **kw)
    assert not (out / "state.json").exists()
    with pytest.raises(InversetError, match=r"encoder \(module Linear\) fails"):
        sample(ts, "out:0", (-100.0, 100.0), encoder=nn.Linear(3, 2), **kw)
    assert not (out / "state.json").exists()
    r = sample(ts, "out:0", (-100.0, 100.0), encoder="identity", **kw)
    assert r.status == "found", r.message


def test_empty_intersection_is_unreachable():
    """The exact solver finds no input meeting both ranges, while the domain has inputs: the
    inverse set is empty (proven), not 'not found'."""
    need("highspy")
    m = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
        m[0].bias.zero_()
    m.input_shape = (3,)
    r = sample(
        m,
        "out:0",
        (0.0, 0.1),
        n=20,
        domain=Box(0, 1),
        intersect=[("out:1", 100.0, 101.0)],
        max_outer=1,
    )
    assert r.status == "unreachable", r.message
    assert "cannot all hold at once" in r.message and "out:1 in [100, 101]" in r.message
    assert r.xs.shape == (0, 3) and len(r.values) == 0
    # the same unit in two ranges: the exact solver calls the target's range unreachable
    # (among inputs meeting the other); that range alone is reachable (it said "no input
    # goes down to ...", which is false)
    r = sample(m, "out:0", (0.0, 0.1), n=20, domain=Box(0, 1), intersect=[("out:0", 0.5, 0.6)])
    assert r.status == "unreachable", r.message
    assert "cannot all hold at once" in r.message and "no input" not in r.message.split(":")[0]


def test_in_range_points_met_while_seeding_are_kept(digits_cnn):
    """A range too narrow for the walkers to sit in: the points seeding passed through count."""
    r = sample(
        digits_cnn.model,
        "logit:3",
        (10.0, 10.0005),
        n=50,
        domain=Box(0, 1),
        max_outer=3,
        max_steps=0,
        exact_check=False,
    )
    assert len(r.xs) > 0, r.message
    with torch.no_grad():
        v = digits_cnn.model(torch.as_tensor(r.xs))[:, 3].double().numpy()
    assert ((v >= 10.0) & (v <= 10.0005)).all()
    assert len(np.unique(r.xs.reshape(len(r.xs), -1).round(6), axis=0)) == len(r.xs)


def test_time_limit_covers_verification_and_saving(tmp_path, digits_cnn):
    """Many samples of a CNN: the final checks and the save fit in the limit, and the
    timings report the whole call."""
    sample(logistic(), "out:0", (0.3, 0.7), n=5, domain=Box(0, 1))  # one-time imports
    t = time.perf_counter()
    r = sample(
        digits_cnn.model,
        "logit:3",
        (-5.0, 5.0),
        n=10**6,
        domain=Box(0, 1),
        K=200,
        time_limit=2.0,
        out=tmp_path,
    )
    wall = time.perf_counter() - t
    assert r.status == "time_limit" and len(r.xs) > 1000
    assert wall < 2.5, (wall, r.timings)
    assert wall - r.timings["total"] < 0.4, (wall, r.timings)


def test_default_encoder_skips_layers_forward_never_runs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(4, 3)
            self.act0 = nn.ReLU()
            self.fc1 = nn.Linear(4, 16)
            self.relu1 = nn.ReLU()
            self.fc2 = nn.Linear(16, 2)

        def forward(self, x):
            return self.fc2(self.relu1(self.fc1(x)))

    torch.manual_seed(0)
    m = Net()
    m.input_shape = (4,)
    assert default_layer(m) == "relu1"
    r = sample(m, "out:0", (-100.0, 100.0), n=10, domain=Box(0, 1, shape=(4,)))
    assert r.status == "found" and r.info["encoder"] == "layer relu1"


def test_damaged_store_is_a_one_line_error(tmp_path):
    m = logistic()
    kw = dict(domain=Box(0, 1), encoder="identity", out=tmp_path)
    sample(m, "out:0", (0.3, 0.7), n=20, **kw)
    (tmp_path / "samples_000.npz").unlink()
    with pytest.raises(InversetError, match=r"samples_000\.npz is missing"):
        sample(m, "out:0", (0.3, 0.7), n=30, resume=True, **kw)
    (tmp_path / "state.json").write_text('{"phase": "sa')
    with pytest.raises(InversetError, match=r"state\.json cannot be read.*delete"):
        sample(m, "out:0", (0.3, 0.7), n=30, resume=True, **kw)


def test_resume_gets_a_fresh_walk_budget(tmp_path):
    m = logistic()
    kw = dict(domain=Box(0, 1), encoder="identity", out=tmp_path, max_steps=5, n=200)
    r1 = sample(m, "out:0", (0.3, 0.7), **kw)
    assert r1.status == "not_found" and r1.info["sample_steps"] == 5
    r2 = sample(m, "out:0", (0.3, 0.7), resume=True, **kw)
    assert r2.info["sample_steps"] == 10 and len(r2.xs) > len(r1.xs)


def test_a_run_saved_before_queries_named_the_features_resumes(tmp_path):
    """A query now records the model's feature names; a run saved without them is the same
    query (it was refused: 'domain.names differ'); other names are not."""

    m = logistic()
    m.feature_names = list("abcdefgh")
    kw = dict(domain=Box(0, 1, shape=(8,)), encoder="identity", out=tmp_path, max_steps=5)
    r1 = sample(m, "out:0", (0.3, 0.7), n=20, **kw)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["query"]["domain"]["names"] == list("abcdefgh")
    state["query"]["domain"]["names"] = None
    (tmp_path / "state.json").write_text(json.dumps(state))
    r2 = sample(m, "out:0", (0.3, 0.7), n=40, resume=True, **kw)
    assert len(r2.xs) > len(r1.xs)
    m.feature_names = list("hgfedcba")
    with pytest.raises(InversetError, match=r"different query \(domain.names differ\)"):
        sample(m, "out:0", (0.3, 0.7), n=60, resume=True, **kw)


class StopSeeding:
    """A Ctrl-C at the ``at``-th seeding step."""

    def __init__(self, at: int):
        self.at = at

    def __call__(self, state):
        if state["phase"] == "seeding" and state["seed_steps"] == self.at:
            raise KeyboardInterrupt


def test_resume_continues_an_interrupted_seeding(tmp_path, digits_cnn):
    kw = dict(domain=Box(0, 1), out=tmp_path, n=20, exact_check=False)
    rng = (10.0, 10.01)
    r1 = sample(digits_cnn.model, "logit:3", rng, callback=StopSeeding(150), **kw)
    assert r1.status == "interrupted" and r1.info["seed_steps"] == 150
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["phase"] == "seeding" and state["seed_steps"] == 150
    with np.load(tmp_path / "walkers.npz") as w:
        assert int(w["outer"]) == 1  # in the second outer iteration
    r2 = sample(digits_cnn.model, "logit:3", rng, resume=True, **kw)
    assert r2.info["seed_steps"] > 150 and r2.info["outer_iterations"] >= 2
    assert r2.info.get("resumed")


def test_counts_and_shapes_are_consistent(tmp_path):
    m = logistic()
    r = sample(m, "out:0", (-np.inf, np.inf), n=5, domain=Box(0, 1), encoder="identity")
    assert r.info["generated"] == r.info["accepted"] == 5 and r.info["rejected"] == 0
    kw = dict(domain=Box(0, 1), encoder="identity", out=tmp_path)
    assert len(sample(m, "out:0", (0.3, 0.7), n=50, **kw).xs) == 50
    r = sample(m, "out:0", (0.3, 0.7), n=20, resume=True, **kw)
    assert r.status == "found" and len(r.xs) == 20 and len(r.values) == 20


def test_an_encoder_module_gets_inputs_on_its_own_device_and_dtype():
    """An encoder module kept apart from the model (here float64 beside a float32 model, as
    a CPU encoder beside a CUDA model) is fed in its own dtype and device; its features come
    back beside the model's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 1)).eval()
    enc = nn.Linear(3, 2).double()
    with torch.no_grad():
        model[0].bias.zero_()
    r = sample(model, "out:0", (-0.1, 0.1), n=5, domain=Box(-1, 1, shape=(3,)), encoder=enc)
    assert r.status == "found" and len(r.xs) == 5


def peaked() -> nn.Module:
    """A ReLU net on [0, 1]^10 with maximum 0.1285 (exact): one Adam step from random points
    stays far below it, so seeding meets no point near it and the exact check runs."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    m.input_shape = (10,)
    return m


@pytest.mark.parametrize("how", ["answer", "raise"])
def test_interrupted_exact_check_is_an_interruption_and_resume_runs_it(tmp_path, monkeypatch, how):
    """A Ctrl-C or SIGTERM in the exact reachability check (answered by the solver, or raised
    before it started) interrupts the run; the resumed run does the check, as a fresh run."""
    need("highspy")
    import inverset.exact.solver as exact

    def stopped(*_a, **_k) -> Result:
        if how == "raise":
            raise KeyboardInterrupt
        return Result(x=None, value=None, status="interrupted", message="interrupted: no answer")

    kw = dict(domain=Box(0, 1), n=20, inner_steps=1, max_outer=1)
    rng = (0.1, 1.2)
    fresh = sample(peaked(), "out:0", rng, **kw)
    assert fresh.status == "found" and "witness found" in fresh.info["exact_check"]
    monkeypatch.setattr(exact, "solve", stopped)
    r1 = sample(peaked(), "out:0", rng, out=tmp_path, **kw)
    assert r1.status == "interrupted" and len(r1.xs) == 0, r1.message
    monkeypatch.undo()
    r2 = sample(peaked(), "out:0", rng, out=tmp_path, resume=True, **kw)
    assert r2.status == "found" and len(r2.xs) == 20, r2.message
    assert "witness found" in r2.info["exact_check"]
    np.testing.assert_array_equal(r2.xs, fresh.xs)
    assert ((r2.values >= 0.1) & (r2.values <= 1.2)).all()


def test_resume_keeps_the_in_range_points_seeding_met(tmp_path):
    """The range (0.1255, 0.1265) is met only at the exact check's witness, which the next
    outer iteration walks out of; seeding puts it back at its end. Interrupted in that
    iteration, the saved run keeps the point met, so the resumed run finds what a fresh one
    does (it lost it, and ended not_found with no sample)."""
    need("highspy")
    # a sliver of a range: 20 points in it lie closer than the default spacing
    kw = dict(domain=Box(0, 1), n=20, inner_steps=5, max_outer=3, spacing=0.0)
    rng = (0.1255, 0.1265)
    short = sample(peaked(), "out:0", rng, **{**kw, "spacing": 0.5})
    assert short.status == "not_found" and "spacing=0.1 / --option spacing=0.1" in short.message
    fresh = sample(peaked(), "out:0", rng, **kw)
    assert fresh.status == "found" and len(fresh.xs) == 20, fresh.message
    r1 = sample(peaked(), "out:0", rng, out=tmp_path, callback=StopSeeding(6), **kw)
    assert r1.status == "interrupted" and len(r1.xs) == 0
    r2 = sample(peaked(), "out:0", rng, out=tmp_path, resume=True, **kw)
    assert r2.status == "found" and len(r2.xs) == 20, r2.message
    assert ((r2.values >= 0.1255) & (r2.values <= 0.1265)).all()


class SharedAct(nn.Module):
    """One ReLU module used twice per forward pass (after fc1 and after fc2)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 6)
        self.fc3 = nn.Linear(6, 2)
        self.input_shape = (4,)

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def test_encoder_layer_run_twice_is_refused_and_skipped_by_default():
    m = SharedAct()
    with pytest.raises(InversetError, match=r"layer 'act' runs 2 times in one forward pass"):
        sample(m, "out:0", (-100.0, 100.0), n=5, domain=Box(0, 1), encoder="act")
    assert default_layer(m) == "fc1"
    r = sample(m, "out:0", (-100.0, 100.0), n=10, domain=Box(0, 1))
    assert r.status == "found" and r.info["encoder"] == "layer fc1"
    with torch.no_grad():
        e = m.fc1(torch.as_tensor(r.xs)).double()
    mean = float(torch.cdist(e, e).sum()) / (len(e) * (len(e) - 1))
    assert r.info["diversity"] == pytest.approx(mean, rel=1e-9)


def test_samples_of_a_thin_polytope_keep_its_constraints():
    """Alternating projections left walkers up to 0.012 outside a sliver of [0, 1]^12; the
    samples accepted (2 of 20) broke A x <= b by up to 9e-6, the tolerance then 1e-5."""
    from tests.test_core_domain import thin_polytope

    box = thin_polytope()
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 1))
    r = sample(net, "out:0", (-10.0, 10.0), n=20, domain=box, seed=0, time_limit=20)
    xs = np.asarray(r.xs, dtype=np.float64)
    # 4 distinct points (10 before copies within 3e-6 of one another were refused)
    assert len(xs) >= 3, r.message
    assert min_rms_gap(xs) > 1e-5
    assert (xs @ box.A.T - box.b).max() <= 1e-6
    assert box.contains(torch.as_tensor(xs)).all()


def test_walkers_merged_into_one_point_give_no_copies(shared):
    """MNIST-FC 256x2, linear1:1 in [-1, 0]: four seeds merged into one point (within 3e-7)
    and all four were returned; the rounding to 7 decimals let them through."""
    import inverset as iv

    m = iv.load_model(shared / "external" / "mnistfc" / "mnist-net_256x2.onnx")
    box = Box(0, 1, shape=(784, 1))
    r = sample(m, "linear1:1", (-1, 0), n=60, domain=box, seed=0, time_limit=20)
    assert r.status == "found" and len(r.xs) == 60, r.message
    assert min_rms_gap(r.xs) > 1e-5
    assert r.info["restarts"] > 0


def _offer(tmp_path, monkeypatch, resume: bool) -> list[bool]:
    """Which walkers the sampler takes when offered two near-copies (6e-7 apart in one
    coordinate, rounding differently at 7 decimals) of a sample of the run it resumes
    (``resume``), or of each other."""
    from inverset.sampling import inverse_set as S

    m = linear([1.0, 1.0, 1.0, 1.0])
    box = Box(0, 1, shape=(4,))
    kw = dict(n=6, domain=box, seed=0, out=tmp_path / "run", exact_check=False)
    first = sample(m, "out:0", (1.0, 3.0), **kw)
    base = np.asarray(first.xs[0], dtype=np.float32).copy()
    base[0] = np.float32(0.25 + 4e-8)  # 0.2500000 when rounded
    if resume:
        base = np.asarray(first.xs[0], dtype=np.float32)
    taken: list[bool] = []

    def walk(self, u, lam, mu, bar, fresh):
        cand = torch.as_tensor(np.stack([base, base]), dtype=self.dt)
        cand[1, 0] += 6e-7  # 0.2500006: another key at 7 decimals
        if resume:
            cand[0, 1] += 3e-7
        V, E, x = self.evaluate(self.u(cand))
        taken.extend(self.accept(self.u(cand), V, E, x).tolist())
        raise KeyboardInterrupt

    monkeypatch.setattr(S._Sampler, "walk", walk)
    sample(m, "out:0", (1.0, 3.0), **{**kw, "n": 12, "resume": True})
    return taken


@pytest.mark.parametrize("resume", [False, True])
def test_near_copies_are_refused_across_walkers_and_resume(tmp_path, monkeypatch, resume):
    """Two walkers 6e-7 apart (root mean square 3e-7 of the box width) are one sample; so is a
    walker 3e-7 from a sample of the run it resumes."""
    taken = _offer(tmp_path, monkeypatch, resume)
    assert taken == ([False, False] if resume else [True, False])


def test_skipped_exact_check_does_no_work_and_is_not_retried(monkeypatch):
    """The exact check's imports and model check (2 s on the digits CNN) ran before the time
    was checked, at every outer iteration of seeding."""
    import inverset.exact as ex
    from inverset.sampling import inverse_set as S

    calls = {"unsupported": 0}
    real = ex.unsupported

    def counted(problem):
        calls["unsupported"] += 1
        return real(problem)

    monkeypatch.setattr(ex, "unsupported", counted)
    monkeypatch.setattr(S, "EXACT_MIN_SECONDS", 1e6)
    m = linear([1.0, 1.0])
    kw = dict(n=5, domain=Box(0, 1, shape=(2,)), max_outer=4, inner_steps=5, time_limit=60)
    r = sample(m, "out:0", (5.0, 6.0), **kw)
    assert r.status == "not_found" and r.info["outer_iterations"] == 4, r.message
    assert calls["unsupported"] == 0
    assert "skipped: less than" in r.info["exact_check"]


def test_exact_check_out_of_its_own_budget_says_exact_time(monkeypatch):
    """Without a time limit, an exact check stopped by its own budget (exact_time) was
    reported as 'stopped at the time limit'."""
    import inverset.exact.solver as es

    def slow(problem, seed=0, time_limit=None, **kw):
        return Result(
            x=None,
            value=None,
            status="time_limit",
            message="stopped at the time limit before reachability was decided",
        )

    monkeypatch.setattr(es, "solve", slow)
    m = nn.Sequential(nn.Linear(2, 1), nn.ReLU())
    m.input_shape = (2,)
    kw = dict(n=5, domain=Box(0, 1, shape=(2,)), max_outer=1, inner_steps=5, exact_time=3)
    r = sample(m, "out:0", (50.0, 60.0), **kw)
    assert "own budget (exact_time=3 s)" in r.message, r.message
    assert "exact_time=12" in r.message and "the time limit" not in r.message


def test_every_sample_is_in_range_evaluated_alone():
    """Inputs near 1e4, a range 0.0026 wide (about 20 float32 ulps of the value): 6 of 300
    samples, verified in batches, were outside the range on the model evaluated alone."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    m.eval()
    dom = Box(1e4, 1e4 + 1, shape=(16,))
    with torch.no_grad():
        v = m(dom.sample(2000, torch.Generator().manual_seed(0)).float()).flatten().numpy()
    z1, z2 = (float(a) for a in np.percentile(v, [40, 45]))
    r = sample(m, "out:0", (z1, z2), n=300, domain=dom, seed=0, time_limit=30)
    assert len(r.xs) == 300, r.message
    with torch.no_grad():
        alone = np.array([m(torch.as_tensor(x)[None]).item() for x in r.xs])
    assert ((alone >= z1) & (alone <= z2)).all(), int(((alone < z1) | (alone > z2)).sum())
    assert (alone == r.values).all()


def test_log_diversity_memory_grows_by_doubling(monkeypatch):
    """diversity='log' copied every accepted feature at every accept (torch.cat): 7.4 GB peak
    at n=12800 on MNIST-FC. The buffer is reallocated only when full."""
    import math

    from inverset.sampling import inverse_set as S

    seen: set[int] = set()
    ref_gap = [0.0]
    real_remember, real_div = S._Sampler.remember, S._Sampler.diversity

    def remember(self, e):
        real_remember(self, e)
        seen.add(self.acc_e.rows.data_ptr())

    def diversity(self, e, memory):
        out = real_div(self, e, memory)
        if memory and len(self.acc_e):
            e = e.detach()
            acc = (self.acc_e.rows + self.e0).double()
            d2 = torch.cdist(e.double(), e.double()).pow(2)
            d2 = d2 + torch.diag(torch.full_like(d2[:, 0], math.inf))
            d2 = torch.cat([d2, torch.cdist(e.double(), acc).pow(2)], 1)
            k = min(self.o["neighbours"], d2.shape[1])
            ref = torch.log(torch.topk(d2, k, dim=1, largest=False).values + 1e-2).mean(1)
            ref_gap[0] = max(ref_gap[0], float((out.detach().double() - ref).abs().max()))
        return out

    monkeypatch.setattr(S._Sampler, "remember", remember)
    monkeypatch.setattr(S._Sampler, "diversity", diversity)
    r = sample(
        logistic(), "out:0", (0.3, 0.7), n=400, domain=Box(0, 1, shape=(8,)), diversity="log"
    )
    assert len(r.xs) == 400, r.message
    assert len(seen) <= 2 + math.log2(400)
    assert ref_gap[0] < 1e-3


def test_whole_number_values_on_the_range_ends_are_samples():
    """x0 + x1 in [5, 6] on whole x in [0, 3]^2: the three points, whose values lie on the
    ends, were all refused (acceptance kept 1e-6 of the width off the ends): none found."""
    m = linear([1.0, 1.0])
    r = sample(m, "out:0", (5.0, 6.0), n=3, domain=Box(0, 3, shape=(2,), integer=[0, 1]), seed=0)
    assert r.status == "found", r.message
    assert sorted(map(tuple, np.asarray(r.xs).tolist())) == [(2, 3), (3, 2), (3, 3)]
    assert sorted(np.asarray(r.values).tolist()) == [5.0, 5.0, 6.0]
    more = sample(m, "out:0", (5.0, 6.0), n=5, domain=Box(0, 3, shape=(2,), integer=[0, 1]))
    assert more.status == "not_found" and len(more.xs) == 3
    assert "copies of accepted samples: the range may hold fewer distinct inputs" in more.message


def test_values_near_zero_from_large_inner_sums_are_in_range_alone():
    """Inputs near 1e4 through a net whose output is shifted to near 0: a chunk's values stray
    from the model's on each point alone by up to 0.01, far more than any ulps of a value near
    0; the gap measured on the first samples must widen the check of that same chunk (2-4 of
    1000 samples were outside [-0.1, 0.1] alone)."""
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / 4)
        m[2].bias[0] += 3669.5
    r = sample(m, "out:0", (-0.1, 0.1), n=1000, domain=Box(1e4, 1e4 + 1, shape=(64,)), seed=0)
    assert r.status == "found", r.message
    with torch.no_grad():
        alone = np.array([m(torch.as_tensor(x)[None])[0, 0].item() for x in r.xs])
    assert ((alone >= -0.1) & (alone <= 0.1)).all(), int(((alone < -0.1) | (alone > 0.1)).sum())


def test_a_half_precision_model_with_a_fixed_feature_is_sampled(digits_cnn):
    """A float16 digits CNN, pixel 0 fixed at 0 (lo == hi): the fixed feature's width was
    1e-12, 0 in float16, and every walker NaN ('seeding found no point'). A box wider than
    float16 holds is refused in one line."""
    import copy

    half = copy.deepcopy(digits_cnn.model).half()
    hi = np.ones((1, 8, 8))
    hi[0, 0, 0] = 0.0
    r = sample(half, "logit:3", (8.0, 12.0), n=20, domain=Box(np.zeros((1, 8, 8)), hi), seed=0)
    assert r.status == "found", r.message
    xs = np.asarray(r.xs, dtype=np.float32)
    assert (xs[:, 0, 0, 0] == 0).all() and len(xs) == 20
    with torch.no_grad():
        alone = [half(torch.as_tensor(x)[None])[0, 3].item() for x in r.xs]
    assert all(8.0 <= v <= 12.0 for v in alone)
    wide = nn.Sequential(nn.Linear(2, 1)).half()
    with pytest.raises(InversetError, match=r"wider than the model's dtype torch\.float16"):
        sample(wide, "out:0", (0.0, 0.1), n=5, domain=Box(-6e4, 6e4, shape=(2,)))


def test_an_empty_intersection_is_not_called_an_empty_domain():
    """out:0 = x0 + x1 in [1.5, 2] with 3 (x0 + x1) in [-1, -0.5] on [0, 1]^2: the box has
    inputs, only the ranges together have none. The exact check's note said 'the domain
    admits no input'; a proof that the first range is out of reach under the second says no
    word of a point, which the sampler does not return."""
    m = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 1.0], [3.0, 3.0]]))
        m[0].bias.zero_()
    m.input_shape = (2,)
    dom = Box(0, 1, shape=(2,))
    r = sample(m, "out:0", (1.5, 2.0), n=10, domain=dom, intersect=[("out:1", -1, -0.5)], seed=0)
    assert r.status == "unreachable" and r.xs.shape[0] == 0, r.message
    assert r.info["exact_check"] == (
        "infeasible: no input of the domain meets the target constraints (proven by the MILP "
        "solver)"
    )
    assert "the ranges cannot all hold at once on this domain" in r.message
    r = sample(m, "out:0", (1.5, 2.0), n=10, domain=dom, intersect=[("out:1", 0, 1)], seed=0)
    assert r.status == "unreachable" and r.xs.shape[0] == 0, r.message
    assert r.info["exact_check"] == (
        "unreachable: no input reaches 1.5; the MILP requiring it is infeasible (highs)"
    )


def test_a_probability_range_is_said_to_be_no_exact_check_target():
    """prob:k is not piecewise linear: the exact check was 'model or domain not supported by
    the exact solver; skipped', blaming a model it supports (audit 102)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 2))
    m.input_shape = (2,)
    r = sample(m, "prob:1", (0.9999, 1.0), n=5, domain=Box(0, 1, shape=(2,)), seed=0)
    assert r.status == "not_found" and r.xs.shape[0] == 0, r.message
    assert r.info["exact_check"] == (
        "prob:1 is a probability, not piecewise linear (a range of its logit, logit:k, can be "
        "checked); skipped"
    )


def test_a_latent_sample_with_no_sample_still_has_its_codes_array():
    """Audit 110: a latent sampling run that accepted nothing had xs of shape (0, ...) but no
    arrays['z'] at all: a loop reading it raised a KeyError."""
    from inverset.space import Latent

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 1)).eval()
    g = nn.Sequential(nn.Linear(2, 3), nn.Tanh()).eval()
    r = sample(model, "out:0", (50.0, 60.0), n=5, space=Latent(g, 2), domain=Box(-1, 1, shape=(3,)),
               time_limit=1.0, seed=0)  # fmt: skip
    assert r.status in ("not_found", "time_limit") and r.xs.shape == (0, 3)
    assert r.arrays["z"].shape == (0, 2)


def test_a_ctrl_c_while_pending_samples_are_verified_keeps_them(tmp_path, monkeypatch):
    # the pending samples were dropped before their verification ran: a Ctrl-C in its model
    # passes lost them, neither returned, stored nor counted (66 of 130 on the digits CNN)
    from inverset.sampling.inverse_set import _Sampler

    real, calls = _Sampler.verify, []

    def verify(self, xs, *a, **k):
        if not k.get("features", True) and len(xs) > 1:
            calls.append(len(xs))
            if len(calls) == 2:
                raise KeyboardInterrupt
        return real(self, xs, *a, **k)

    monkeypatch.setattr(_Sampler, "verify", verify)
    m, kw = logistic(), dict(domain=Box(0, 1), encoder="identity", out=tmp_path, seed=0)
    r1 = sample(m, "out:0", (0.3, 0.7), n=400, **kw)
    assert r1.status == "interrupted" and len(calls) >= 2
    state = json.loads((tmp_path / "state.json").read_text())
    assert len(r1.xs) == state["accepted"] == len(stored(tmp_path)) == r1.info["accepted"]
    assert r1.info["accepted"] > calls[0]  # the interrupted verification's samples are in
    monkeypatch.setattr(_Sampler, "verify", real)
    r2 = sample(m, "out:0", (0.3, 0.7), n=400, resume=True, **kw)
    assert r2.status == "found" and len(r2.xs) == 400
    assert r2.info["generated"] - r2.info["rejected"] - r2.info["failed_verification"] == 400


def test_an_encoder_returning_mean_and_log_variance_is_read_by_its_mean():
    # a VAE encoder's (mean, logvar) was a raw AttributeError
    from inverset.sampling.encoders import Encoder
    from inverset.sampling.vae import Encoder as VAEEncoder

    torch.manual_seed(0)
    vae = VAEEncoder(4).eval()
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    m.input_shape = (1, 8, 8)
    r = sample(m, "out:0", (-0.1, 0.1), n=6, domain=Box(0, 1, shape=(1, 8, 8)), encoder=vae, seed=0)
    assert r.status == "found" and len(r.xs) == 6
    with torch.no_grad():
        mean = vae(torch.as_tensor(r.xs))[0].double().numpy()
    gaps = np.sqrt(((mean[:, None] - mean[None]) ** 2).sum(-1))[np.triu_indices(6, 1)]
    assert r.info["diversity"] == pytest.approx(gaps.mean(), rel=1e-4)

    class Words(nn.Module):
        def forward(self, x):
            return "features"

    with pytest.raises(InversetError, match="encoder module returned str, not a tensor"):
        Encoder("module", module=Words())(torch.zeros(2, 3), {})


def test_a_resume_with_another_function_or_clamp_box_as_generator_is_refused(tmp_path):
    # every lambda was "<lambda>", and a Latent's own box was recorded nowhere: a resume with
    # lambda z: G(-z) or without the box was taken, and half the samples broke the first run
    from inverset.space import Latent

    torch.manual_seed(0)
    dec = nn.Sequential(nn.Linear(2, 4), nn.Sigmoid())
    m = linear([1.0, 1.0, 1.0, 1.0])
    kw = dict(domain=Box(0, 1, shape=(4,)), out=tmp_path, seed=0, encoder="identity")
    first = sample(m, "out:0", (1.5, 2.5), n=10, space=Latent(lambda z: dec(z), 2), **kw)
    assert first.status == "found"
    with pytest.raises(InversetError, match=r"space.generator differ"):
        sample(m, "out:0", (1.5, 2.5), n=20, space=Latent(lambda z: dec(-z), 2), resume=True, **kw)
    more = sample(
        m, "out:0", (1.5, 2.5), n=20, space=Latent(lambda z: dec(z), 2), resume=True, **kw
    )
    assert more.status == "found" and len(more.xs) == 20
    own = Latent(dec, 2, domain=Box(0.2, 0.8))
    out = tmp_path / "own"
    r = sample(m, "out:0", (1.5, 2.5), n=10, space=own, **{**kw, "out": out})
    assert r.query["space"]["domain"] == {"lo": 0.2, "hi": 0.8, "shape": None}
    with pytest.raises(InversetError, match=r"space.domain differ"):
        sample(
            m, "out:0", (1.5, 2.5), n=20, space=Latent(dec, 2), resume=True, **{**kw, "out": out}
        )


def test_a_resume_asking_fewer_samples_than_stored_says_so(tmp_path):
    m, kw = logistic(), dict(domain=Box(0, 1), encoder="identity", out=tmp_path, seed=0)
    sample(m, "out:0", (0.3, 0.7), n=30, **kw)
    r = sample(m, "out:0", (0.3, 0.7), n=10, resume=True, **kw)
    assert len(r.xs) == r.info["accepted"] == 10 and r.info["stored"] == 30
    assert r.info["generated"] - r.info["rejected"] - r.info["failed_verification"] == 30
    assert "the first 10 of the 30 the run holds" in r.message


def test_a_method_or_closure_as_generator_is_told_apart_by_what_it_holds():
    from inverset.space import Latent

    class VAE(nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.fc = nn.Linear(2, 4)

        def decode(self, z):
            return self.fc(z)

    def scaled(k):
        return lambda z: z * k

    ids = [Latent(g, 2).generator_id() for g in (VAE(0).decode, VAE(1).decode, VAE(0).decode)]
    assert ids[0] != ids[1] and ids[0] == ids[2]
    assert Latent(scaled(2.0), 2).generator_id() != Latent(scaled(3.0), 2).generator_id()
