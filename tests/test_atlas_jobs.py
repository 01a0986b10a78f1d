"""Atlas jobs: target expansion, interruption and resume, atomic writes, the process pool,
job identity and the job time limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inverset import Box, InversetError, Result
from inverset.jobs import atlas, load_atlas
from inverset.jobs.atlas import derive_seed, expand_targets, parse_indices, target_key

FAST = {"steps": 15, "starts": 4, "polish": False, "domain": Box(0, 1), "seed": 7, "report": False}
KEYS16 = [f"conv1_{c}" for c in range(16)]


def assert_same(a: Result, b: Result) -> None:
    """Bit-for-bit the same answer (timings aside)."""
    assert a.status == b.status and a.value == b.value and a.solver == b.solver
    for name in ("x", "xs", "values"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("best", "step", "nfev"):
        np.testing.assert_array_equal(a.history.get(name), b.history.get(name), err_msg=name)
    assert sorted(a.arrays) == sorted(b.arrays)
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)
    assert a.query["target"] == b.query["target"]


def target_dirs(out) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def baseline(digits_cnn, tmp_path_factory):
    """All 16 channels of conv1, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("atlas") / "full"
    s = atlas(digits_cnn.model, out, layer="conv1", **FAST)
    assert s.status == "complete" and s.finished == 16 and s.remaining == []
    return load_atlas(out)


@pytest.mark.parametrize("seed", [None, -1, 1.5, 2**64])
def test_an_atlas_seed_is_a_whole_number_of_64_bits(tmp_path, seed, digits_cnn):
    """None was a TypeError from the seed derivation, -1 ran and was recorded, 1.5 was cut."""
    with pytest.raises(InversetError, match="seed must be an integer from 0 to 1844"):
        atlas(digits_cnn.model, tmp_path / "a", targets=["logit:0"], seed=seed)
    assert not (tmp_path / "a").exists()


def test_loading_an_atlas_that_is_not_there_is_an_error(tmp_path):
    with pytest.raises(InversetError, match=r"atlas directory .* does not exist; give the --out"):
        load_atlas(tmp_path / "nope")  # it returned {}, as an atlas with nothing done


def test_parse_indices_and_keys():
    assert parse_indices("all", 4, "channels") == [0, 1, 2, 3]
    assert parse_indices("0-2,5,7-8", 10, "channels") == [0, 1, 2, 5, 7, 8]
    assert parse_indices([3, 1, 3], 5, "classes") == [1, 3]
    with pytest.raises(InversetError, match="out of range; there are 16"):
        parse_indices("0-16", 16, "conv1 channels")
    with pytest.raises(InversetError, match="ends before it starts"):
        parse_indices("5-2", 16, "channels")
    with pytest.raises(InversetError, match="must be 'all'"):
        parse_indices("a-b", 16, "channels")
    # one index, as classes=3 (a TypeError before); anything else a one-line error
    assert parse_indices(3, 5, "classes") == [3]
    with pytest.raises(InversetError, match=r"or one index; got 2\.5"):
        parse_indices(2.5, 5, "classes")
    assert target_key("conv1:3") == "conv1_3"
    assert target_key("out:0 - 0.5*out:3", (0.5, 1)) == "out_0-0.5_out_3__0.5_1"
    assert derive_seed(7, "conv1_3") == derive_seed(7, "conv1_3") != derive_seed(8, "conv1_3")


def test_expand_targets_layers_classes_ranges(digits_cnn):
    m = digits_cnn.model
    items = expand_targets(m, layer="conv1")
    assert [it["target"] for it in items] == [f"conv1:{c}" for c in range(16)]
    items = expand_targets(m, layer="fc1", channels="60-63")
    assert [it["key"] for it in items] == ["fc1_60", "fc1_61", "fc1_62", "fc1_63"]
    items = expand_targets(m, classes="0-9", ranges=[(0, 1), (2, 3)])
    assert len(items) == 20 and items[1]["key"] == "out_0__2_3" and items[1]["range"] == (2, 3)
    items = expand_targets(m, targets=["out:1 - out:7", "relu2:3"])
    assert [it["key"] for it in items] == ["out_1-out_7", "relu2_3"]
    with pytest.raises(InversetError, match="unknown layer 'conv9'"):
        expand_targets(m, layer="conv9")
    with pytest.raises(InversetError, match="out of range; there are 10"):
        expand_targets(m, classes="0-10")
    with pytest.raises(InversetError, match="share the directory name"):
        expand_targets(m, targets=["out:1", "out:1"])


class _OddLayers(nn.Module):
    """``spare`` never runs; ``act`` runs twice per pass; ``ts`` is a TorchScript layer."""

    def __init__(self):
        super().__init__()
        self.fc1, self.spare, self.act = nn.Linear(2, 4), nn.Linear(4, 4), nn.ReLU()
        self.ts = torch.jit.script(nn.Linear(4, 4))
        self.input_shape = (2,)

    def forward(self, x):
        return self.ts(self.act(self.act(self.fc1(x))))


@pytest.mark.parametrize(
    "layer, words",
    [("spare", "never run"), ("act", "runs 2 times"), ("ts", "TorchScript")],
)
def test_all_channels_of_a_layer_that_is_no_target_is_a_clear_error(layer, words):
    with pytest.raises(InversetError, match=words):
        expand_targets(_OddLayers(), layer=layer)


def test_interrupted_then_resumed_equals_uninterrupted(digits_cnn, baseline, tmp_path):
    out = tmp_path / "job"
    seen: list[str] = []

    def stop_after_five(key: str, result: Result) -> None:
        seen.append(key)
        if len(seen) == 5:
            raise KeyboardInterrupt

    s = atlas(digits_cnn.model, out, layer="conv1", on_result=stop_after_five, **FAST)
    assert s.status == "interrupted"
    assert target_dirs(out) == sorted(KEYS16[:5])
    assert s.remaining == KEYS16[5:] and s.finished == 5
    # a target whose writing was cut short: only its temporary directory exists
    half = out / ".tmp-conv1_9-deadbeef"
    half.mkdir()
    (half / "result.json.tmp").write_text("{")
    s = atlas(digits_cnn.model, out, layer="conv1", **FAST)
    assert s.status == "complete" and s.skipped == 5 and s.finished == 11 and s.remaining == []
    assert target_dirs(out) == sorted(KEYS16), "every target exactly once, no temporaries"
    assert not (out / ".lock").exists()
    got = load_atlas(out)
    assert list(got) == KEYS16
    for k in KEYS16:
        assert_same(got[k], baseline[k])
    job = json.loads((out / "job.json").read_text())
    assert [r["status"] for r in job["runs"]] == ["interrupted", "complete"]
    assert job["query"]["seed"] == 7 and job["query"]["options"]["steps"] == 15
    assert [t["key"] for t in job["targets"]] == KEYS16
    # the per-target seed depends on the job seed and the target, not on the order of runs
    assert got["conv1_3"].query["seed"] == derive_seed(7, "conv1_3")


def test_ctrl_c_inside_a_solver_writes_nothing_half_done(digits_cnn, baseline, tmp_path):
    """Ctrl-C while a target is being solved: the solver returns what it has, flagged
    'interrupted'; the job keeps it off disk, stops, and a rerun redoes that target."""
    calls = {"n": 0, "at": 0}
    after: list[int] = []  # forward passes done when each target was written

    def count(_module, _inp):
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            raise KeyboardInterrupt

    handle = digits_cnn.model.conv1.register_forward_pre_hook(count)
    try:
        atlas(
            digits_cnn.model,
            tmp_path / "count",
            layer="conv1",
            channels="0-5",
            on_result=lambda k, r: after.append(calls["n"]),
            **FAST,
        )
        calls["n"], calls["at"] = 0, (after[1] + after[2]) // 2  # in the middle of target 3
        out = tmp_path / "job"
        s = atlas(digits_cnn.model, out, layer="conv1", channels="0-5", **FAST)
    finally:
        handle.remove()
    assert calls["at"] <= calls["n"] < after[2], "Ctrl-C came inside the third target's solve"
    assert s.status == "interrupted" and s.finished == 2
    written = target_dirs(out)
    assert written == KEYS16[:2]
    for k in written:
        assert Result.load(out / k).status != "interrupted"
    s = atlas(digits_cnn.model, out, layer="conv1", channels="0-5", **FAST)
    assert s.status == "complete" and target_dirs(out) == sorted(KEYS16[:6])
    for k, r in load_atlas(out).items():
        assert_same(r, baseline[k])


def test_process_pool_equals_in_process(digits_cnn, baseline, tmp_path):
    s = atlas(digits_cnn.model, tmp_path / "pool", layer="conv1", channels="0-3", workers=2, **FAST)
    assert s.status == "complete" and s.runner == "process pool (2 workers)"
    got = load_atlas(tmp_path / "pool")
    assert list(got) == KEYS16[:4]
    for k, r in got.items():
        assert_same(r, baseline[k])


def test_visualize_batches_channels_and_splits_results(digits_cnn, tmp_path):
    kw = {"mode": "visualize", "steps": 8, "domain": Box(0, 1), "seed": 1, "report": False}
    s = atlas(digits_cnn.model, tmp_path / "a", layer="conv1", channels="0-5", batch=4, **kw)
    assert s.status == "complete" and s.finished == 6
    job = json.loads((tmp_path / "a" / "job.json").read_text())
    assert [u["keys"] for u in job["units"]] == [KEYS16[:4], KEYS16[4:6]]
    got = load_atlas(tmp_path / "a")
    for c, (k, r) in enumerate(got.items()):
        assert r.query["target"] == f"conv1:{c}" and r.solver == "featvis"
        assert r.arrays["images"].shape == (1, 8, 8) and r.x.shape == (1, 8, 8)
        assert int(r.arrays["targets"]) == c
        # the stored value is the channel's mean activation at the stored input
        with torch.no_grad():
            acts = digits_cnn.model.conv1(torch.as_tensor(r.x[None], dtype=torch.float32))
        assert abs(float(acts[0, c].mean()) - r.value) < 1e-5, k
    # the same job resumed from a partial directory gives the same images
    s2 = atlas(
        digits_cnn.model,
        tmp_path / "b",
        layer="conv1",
        channels="0-5",
        batch=4,
        on_result=lambda k, r: (_ for _ in ()).throw(KeyboardInterrupt),
        **kw,
    )
    assert s2.status == "interrupted" and s2.finished == 1
    atlas(digits_cnn.model, tmp_path / "b", layer="conv1", channels="0-5", batch=4, **kw)
    for k, r in load_atlas(tmp_path / "b").items():
        np.testing.assert_array_equal(r.arrays["images"], got[k].arrays["images"])


def test_visualize_with_a_latent_param_keeps_each_targets_codes(digits_cnn, tmp_path):
    """Each target's result holds its own latent code in arrays['z'], as fv.visualize's does
    (the split kept only images/targets/frames and dropped them)."""
    from inverset import Latent

    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(4, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8)))
    kw = {"mode": "visualize", "steps": 6, "domain": Box(0, 1), "seed": 0, "report": False}
    s = atlas(digits_cnn.model, tmp_path / "z", classes="2-3", param=Latent(gen, 4), **kw)
    assert s.status == "complete" and s.finished == 2
    for key, r in load_atlas(tmp_path / "z").items():
        z = r.arrays["z"]
        assert z.shape == (1, 4) and np.abs(z).max() <= 3.0, key
        with torch.no_grad():
            again = gen(torch.from_numpy(z)).numpy()
        np.testing.assert_allclose(again, r.xs, atol=1e-6)


ALLOC = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 447068544 bytes."


def test_a_batch_out_of_memory_names_the_atlas_batch_option(digits_cnn, tmp_path, monkeypatch):
    """A unit whose batch does not fit refuses a fresh job (no job.json; it was a RuntimeError
    failing every target, and an 'internal error' from the CLI); a resumed job keeps what it
    has and fails only that unit's targets."""
    model = digits_cnn.model
    forward = type(model).forward
    kw = {"mode": "visualize", "steps": 2, "domain": Box(0, 1), "seed": 1, "report": False}
    kw.update(layer="conv1", channels="0-7", batch=4)
    out = tmp_path / "m"
    s = atlas(model, out, job_time_limit=0, **kw)  # the first unit, channels 0-3
    assert s.status == "job_time_limit" and s.finished == 4

    def tight(self, x):
        if x.shape[0] > 3:
            raise RuntimeError(ALLOC)
        return forward(self, x)

    monkeypatch.setattr(type(model), "forward", tight)
    words = (
        f"out of memory rendering 4 image(s) at 8x8 in one batch ({ALLOC}); render fewer at a "
        "time: --batch-size 1 (batch=1)"
    )
    with pytest.raises(InversetError) as err:
        atlas(model, tmp_path / "fresh", **kw)
    assert str(err.value) == words and not (tmp_path / "fresh" / "job.json").exists()
    s = atlas(model, out, **kw)
    assert s.status == "failed" and s.skipped == 4 and s.finished == 0
    assert s.failed == {k: f"InversetError: {words}" for k in KEYS16[4:8]}
    assert target_dirs(out) == KEYS16[:4]


def test_sample_mode_pairs_targets_with_ranges(digits_cnn, tmp_path):
    s = atlas(
        digits_cnn.model,
        tmp_path / "s",
        classes="2",
        mode="sample",
        ranges=[(1, 3), (5, 7)],
        n=6,
        domain=Box(0, 1),
        seed=0,
        exact_check=False,
        report=False,
    )
    assert s.status == "complete"
    got = load_atlas(tmp_path / "s")
    assert list(got) == ["out_2__1_3", "out_2__5_7"]
    for (lo, hi), r in zip([(1, 3), (5, 7)], got.values(), strict=True):
        assert r.query["goal"] == {"kind": "range", "low": lo, "high": hi}
        with torch.no_grad():
            v = digits_cnn.model(torch.as_tensor(r.xs, dtype=torch.float32))[:, 2].numpy()
        assert len(v) >= 1 and ((v >= lo - 1e-4) & (v <= hi + 1e-4)).all()
    # a sampler's x is its first sample, not a best one: the page says so
    from inverset.report.html import _target_page

    page = _target_page("out_2__1_3", got["out_2__1_3"], ["thumb.png"], None, None, False)
    assert "first sample" in page and "best input" not in page


def test_job_time_limit_and_identity(digits_cnn, tmp_path):
    out = tmp_path / "j"
    # the limit counts from the first target's start and each run starts one: runs progress
    s = atlas(digits_cnn.model, out, layer="conv1", job_time_limit=0, **FAST)
    assert s.status == "job_time_limit" and s.finished == 1 and s.remaining == KEYS16[1:]
    assert "job_time_limit: 15 remaining" in s.describe()
    s = atlas(digits_cnn.model, out, layer="conv1", job_time_limit=0, **FAST)
    assert s.finished == 1 and s.skipped == 1 and s.remaining == KEYS16[2:]
    with pytest.raises(InversetError, match=r"different job: its query \(seed\) differs"):
        atlas(digits_cnn.model, out, layer="conv1", **{**FAST, "seed": 8})
    with pytest.raises(InversetError, match="different job: its targets differ"):
        atlas(digits_cnn.model, out, layer="conv1", channels="0-3", **FAST)
    other = type(digits_cnn.model)()
    with pytest.raises(InversetError, match="different job: its model differs"):
        atlas(other, out, layer="conv1", input_shape=(1, 8, 8), **FAST)
    # the same weights read from another path (moved, copied, relative) resume the job
    digits_cnn.model.source = str(tmp_path / "elsewhere" / "cnn.pt")
    try:
        s = atlas(digits_cnn.model, out, layer="conv1", job_time_limit=0, **FAST)
    finally:
        del digits_cnn.model.source
    assert s.status == "job_time_limit" and s.skipped == 2 and s.remaining == KEYS16[3:]


def test_bad_input_is_one_clear_error(digits_cnn, tmp_path):
    m = digits_cnn.model
    with pytest.raises(InversetError, match="--mode sample needs --ranges"):
        atlas(m, tmp_path / "x", classes="0-1", mode="sample")
    with pytest.raises(InversetError, match="ranges apply to --mode sample"):
        atlas(m, tmp_path / "x", classes="0-1", ranges=[(0, 1)])
    with pytest.raises(InversetError, match="unknown mode 'dream'"):
        atlas(m, tmp_path / "x", classes="0-1", mode="dream")
    with pytest.raises(InversetError, match="visualize renders channels of a layer"):
        atlas(m, tmp_path / "x", targets=["out:1 - out:2"], mode="visualize")
    with pytest.raises(InversetError, match="'steps' is not an option of sample"):
        atlas(m, tmp_path / "x", classes="0-1", mode="sample", ranges=[(0, 1)], steps=3)
    with pytest.raises(InversetError, match="'stpes' is not an option of solver 'gradient'"):
        atlas(m, tmp_path / "x", classes="0-1", stpes=3)
    with pytest.raises(InversetError, match="no targets"):
        atlas(m, tmp_path / "x")
    for name in ("workers", "threads", "batch"):
        with pytest.raises(InversetError, match=f"{name} must be at least 1, got 0"):
            atlas(m, tmp_path / "x", classes="0-1", **{name: 0})
    for bad in (-1.0, float("nan")):
        with pytest.raises(InversetError, match="job time limit must be >= 0 seconds"):
            atlas(m, tmp_path / "x", classes="0-1", job_time_limit=bad)
    local = nn.Sequential(nn.Linear(3, 2))
    local.forward = lambda x: x  # an instance attribute pickle cannot send to a worker
    with pytest.raises(InversetError, match="cannot be sent to worker processes"):
        atlas(local, tmp_path / "y", classes="all", input_shape=(3,), workers=2, report=False)


def test_a_failing_target_is_reported_and_the_rest_finish(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 3))
    failed = []

    def fail_once_in_a_solve(_mod, inp):  # the 4 starts of out:0's first gradient step
        if inp[0].shape[0] == 4 and not failed:
            failed.append(1)
            raise RuntimeError("boom")

    job = {
        "classes": "0-1",
        "input_shape": (3,),
        "domain": Box(-1, 1),
        "steps": 5,
        "starts": 4,
        "report": False,
    }
    handle = m[0].register_forward_pre_hook(fail_once_in_a_solve)
    try:
        s = atlas(m, tmp_path / "f", **job)
    finally:
        handle.remove()
    assert s.status == "failed" and list(s.failed) == ["out_0"] and "boom" in s.failed["out_0"]
    assert s.remaining == ["out_0"] and target_dirs(tmp_path / "f") == ["out_1"]
    assert "1 failed: out_0 (RuntimeError: boom)" in s.describe()
    s = atlas(m, tmp_path / "f", **job)
    assert s.status == "complete" and s.skipped == 1 and s.finished == 1


def test_an_unreachable_ray_address_fails_fast():
    import socket

    from inverset.jobs.runners import _check_reachable

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(InversetError, match=f"nothing answers at the Ray address 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    _check_reachable("auto")  # resolved by Ray itself


def test_targets_differing_only_in_other_scripts_get_distinct_stable_directories(tmp_path):
    """prob:"猫" and prob:"狗" both became 'prob' and were refused as one target listed twice."""
    import re

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 3))
    m.labels = ["猫", "狗", "cat"]
    targets = ['prob:"猫"', 'prob:"狗"', "prob:cat", "out:1 - out:2"]
    keys = [it["key"] for it in expand_targets(m, targets=targets)]
    assert keys == [it["key"] for it in expand_targets(m, targets=targets[::-1])][::-1]
    assert len(set(keys)) == 4 and all(re.fullmatch(r"[A-Za-z0-9._-]+", k) for k in keys)
    assert keys[0].startswith("prob_") and keys[1].startswith("prob_")
    assert keys[2:] == ["prob_cat", "out_1-out_2"]  # plain ASCII targets keep their names
    s = atlas(m, tmp_path / "job", targets=targets[:2], domain=Box(-1, 1, shape=(3,)), steps=3)
    assert s.status == "complete" and target_dirs(tmp_path / "job") == sorted(keys[:2])
    done = load_atlas(tmp_path / "job")
    assert [r.query["target"] for r in done.values()] == ["prob:猫", "prob:狗"]
    # ASCII targets whose names would be equal each get a hash; the same target twice is refused
    pair = [it["key"] for it in expand_targets(m, targets=["out:0+out:1", "out:0*out:1"])]
    assert len(set(pair)) == 2 and all(k.startswith("out_0_out_1_") for k in pair)
    with pytest.raises(InversetError, match="list each target once"):
        expand_targets(m, targets=["out:0+out:1", "out:0 + out:1"])


def test_a_layer_with_classes_or_targets_adds_its_channels(digits_cnn):
    """--layer is not dropped when --classes or --target is given too; a wrong name is named."""
    m = digits_cnn.model
    items = expand_targets(m, layer="conv1", classes="0-1")
    assert [it["target"] for it in items] == [*(f"conv1:{c}" for c in range(16)), "out:0", "out:1"]
    items = expand_targets(m, layer="fc1", channels="3,5", targets=["out:2"])
    assert [it["target"] for it in items] == ["fc1:3", "fc1:5", "out:2"]
    with pytest.raises(InversetError, match=r"unknown layer 'conv9'; valid layers: conv1"):
        expand_targets(m, layer="conv9", classes="0-1")
    with pytest.raises(InversetError, match="unknown layer 'conv9'"):
        expand_targets(m, layer="conv9", targets=["out:0"])


def test_a_models_labels_that_are_numbers_name_the_atlas_classes(tmp_path):
    """A model's ``labels`` tensor of numbers was a TypeError traceback in the atlas (the
    single query took it as names already)."""
    torch.manual_seed(0)
    net = nn.Linear(2, 3)
    net.labels = torch.tensor([10, 20, 30])
    box = Box(0, 1, shape=(2,))
    s = atlas(net, tmp_path / "a", targets=['prob:"20"'], domain=box, steps=3, starts=2)
    assert s.status == "complete" and s.finished == 1


def test_visualize_renders_at_the_domains_shape(digits_cnn, tmp_path):
    """A model that records no input shape, the domain giving it: the targets were checked at
    the domain's shape, then visualize asked for --size (which atlas does not take)."""
    m = type(digits_cnn.model)()
    m.load_state_dict(digits_cnn.model.state_dict())
    s = atlas(
        m,
        tmp_path / "v",
        layer="conv2",
        channels="0-1",
        mode="visualize",
        steps=8,
        domain=Box(0, 1, shape=(1, 8, 8)),
        report=False,
    )
    assert s.status == "complete" and s.finished == 2
    r = load_atlas(tmp_path / "v")["conv2_0"]
    assert np.asarray(r.x).shape[-2:] == (8, 8)


def test_an_atlas_takes_max_evals_as_every_query_does(tmp_path):
    # refused as "unknown option 'max_evals'" after the first check listed it as valid
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2))
    job = {"classes": "0-1", "input_shape": (3,), "domain": Box(-1, 1), "report": False}
    s = atlas(m, tmp_path / "a", solver="cmaes", max_evals=40, **job)
    assert s.status == "complete"
    for r in load_atlas(tmp_path / "a").values():
        assert r.status == "max_evals" and r.nfev <= 40
    with pytest.raises(InversetError, match="max_evals"):
        atlas(m, tmp_path / "b", solver="cmaes", max_evals=0, **job)


def test_a_ctrl_c_while_the_pool_stops_ends_as_interrupted_and_removes_its_files(
    tmp_path, monkeypatch
):
    # the Ctrl-C escaped atlas() from the pool's shutdown: no summary, no run recorded, no
    # index.html, and the pool's copy of the model left in /tmp
    from inverset.jobs import runners

    made = []
    real_start, real_close = runners.ProcessRunner.start, runners.ProcessRunner.close
    calls = []

    def start(self, model, spec):
        real_start(self, model, spec)
        made.append(self._dir)

    def close(self, abandoned=()):
        calls.append(1)
        if len(calls) == 1:
            self._pool.shutdown(wait=True)
            raise KeyboardInterrupt
        real_close(self, abandoned)

    monkeypatch.setattr(runners.ProcessRunner, "start", start)
    monkeypatch.setattr(runners.ProcessRunner, "close", close)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2))
    job = {"classes": "0-1", "input_shape": (3,), "domain": Box(-1, 1), "steps": 5, "starts": 4}
    s = atlas(m, tmp_path / "a", workers=2, **job)
    assert s.status == "interrupted" and s.finished == 2
    assert json.loads((tmp_path / "a" / "job.json").read_text())["runs"]
    assert (tmp_path / "a" / "index.html").is_file()
    assert made and made[0] is not None and not Path(made[0]).exists()


def test_one_target_or_one_range_given_bare_is_read_as_one(digits_cnn):
    # targets="out:0" was read letter by letter ("malformed target 'o'"), ranges=[10, 12]
    # was a TypeError
    got = expand_targets(digits_cnn.model, targets="logit:3", ranges=[10, 12])
    assert [(t["target"], t["range"]) for t in got] == [("logit:3", (10.0, 12.0))]
    with pytest.raises(InversetError, match="list of \\[z1, z2\\] pairs"):
        expand_targets(digits_cnn.model, targets="logit:3", ranges=[10, 12, 14])
