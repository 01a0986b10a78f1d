"""Atlas jobs under trouble: signals to a pool job, dying workers, directories holding other
things, queries the units refuse, long target names, close ranges, short job time limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import inverset as iv
from inverset import Box, InversetError, Result
from inverset.jobs import atlas, load_atlas
from inverset.jobs.atlas import expand_targets

torch.set_num_threads(1)

#: models the spawned workers import (written beside each test's scripts)
MODELS = '''
import os, time, torch
from torch import nn


class Slow(nn.Module):
    """4 inputs -> 3 outputs. Each solver forward leaves a mark named by its process id; in
    the first process to solve, each also sleeps (the others run fast, then wait idle)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        marks = os.environ.get("MARKS")
        if marks and x.requires_grad:
            open(os.path.join(marks, str(os.getpid())), "w").close()
            if not hasattr(self, "slow"):
                try:
                    os.close(os.open(os.path.join(marks, "slow"), os.O_CREAT | os.O_EXCL))
                    self.slow = True
                except FileExistsError:
                    self.slow = False
            if self.slow:
                time.sleep(0.2)
        return self.fc(x)


class Die(nn.Module):
    """Exits its process at the first gradient forward while $DIE_MARKER does not exist."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        mark = os.environ.get("DIE_MARKER")
        if mark and x.requires_grad and not os.path.exists(mark):
            open(mark, "w").close()
            os._exit(1)
        return self.fc(x)


class Poisoned(nn.Module):
    """The first unit solved anywhere is poisoned: its process exits 0.5 s into the solve,
    and so does any process that solves it again, even after solving another unit (known by
    its first input, which the unit's seed fixes). Others wait 0.5 s at a process's first
    solve, so a neighbour is in flight."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        where = os.environ.get("POISON_DIR")
        if where and x.requires_grad:
            mark, me = os.path.join(where, "poison"), repr(float(x.detach().double().sum()))
            if not hasattr(self, "seen"):
                self.seen = True
                try:
                    fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    os.write(fd, me.encode())
                    os.close(fd)
                except FileExistsError:
                    pass
                time.sleep(0.5)
            if me == open(mark).read():
                open(os.path.join(where, f"died-{os.getpid()}"), "w").close()
                os._exit(1)
        return self.fc(x)
'''

FAST = {"steps": 5, "starts": 2, "polish": False, "report": False}


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))


def value_at(model: nn.Module, r: Result, column: int) -> float:
    with torch.no_grad():
        return float(model(torch.as_tensor(r.x[None], dtype=torch.float32))[0, column])


def write_models(where: Path) -> Path:
    (where / "robustmods.py").write_text(MODELS)
    return where


def env_for(where: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(where), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------- signals (1, 2, 3)
@pytest.mark.parametrize(
    "sig, group", [("SIGTERM", False), ("SIGINT", False), ("SIGINT", True)], ids=str
)
def test_a_signal_ends_a_pool_job_cleanly_and_promptly(tmp_path, sig, group):
    """SIGTERM or SIGINT to the parent (kill PID), or SIGINT to the group (Ctrl-C), while one
    worker solves a target and the other waits for work: the workers end with the job within
    seconds, no worker traceback, the run is recorded, the lock and the pool's temporary files
    are gone."""
    write_models(tmp_path)
    marks, tmp = tmp_path / "marks", tmp_path / "tmp"
    marks.mkdir()
    tmp.mkdir()
    out = tmp_path / "job"
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, torch
            import inverset as iv
            from robustmods import Slow
            if __name__ == "__main__":
                torch.set_num_threads(1)
                s = iv.atlas(Slow(), sys.argv[1], classes="0-2", input_shape=(4,),
                             domain=iv.Box(0, 1), workers=2, steps=300, starts=1, polish=False,
                             patience=999, report=False)
                print(s.status, s.remaining, flush=True)
            """
        )
    )
    logs = {name: tmp_path / f"{name}.txt" for name in ("stdout", "stderr")}
    with open(logs["stdout"], "w") as fo, open(logs["stderr"], "w") as fe:
        # files, not pipes: workers left running would hold a pipe open
        p = subprocess.Popen(
            [sys.executable, str(script), str(out)],
            stdout=fo,
            stderr=fe,
            env=env_for(tmp_path, MARKS=str(marks), TMPDIR=str(tmp)),
            start_new_session=True,
        )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        done: list[Path] = []
        while len(done) < 2 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
            workers = [int(m.name) for m in marks.iterdir() if m.name.isdigit()]
            done = list(out.glob("out_*/result.json"))
        assert len(workers) == 2 and len(done) == 2, "one worker is busy, the other idle"
        t0 = time.monotonic()
        (os.killpg if group else os.kill)(p.pid, getattr(signal, sig))
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        took = time.monotonic() - t0
        time.sleep(0.5)
        left = [w for w in workers if alive(w)]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for w in workers:  # the old code left them running
            if alive(w):
                os.kill(w, signal.SIGKILL)
    stdout, stderr = logs["stdout"].read_text(), logs["stderr"].read_text()
    assert left == [], f"workers {left} outlived the job"
    assert took < 8, f"the job took {took:.1f} s to end after {sig}"
    assert stdout.split()[:1] == ["interrupted"], (stdout, stderr)
    assert "Traceback" not in stderr, stderr
    runs = json.loads((out / "job.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["interrupted"] and runs[0]["remaining"] == 1
    assert runs[0]["finished"] == 2 and runs[0]["failed"] == {}
    assert not (out / ".lock").exists()
    assert not list(tmp.glob("inverset-pool-*")), "the pool's temporary files are removed"


# ---------------------------------------------------------------- dying workers (10)
def test_a_worker_that_dies_is_retried_in_a_fresh_pool(tmp_path, monkeypatch):
    write_models(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DIE_MARKER", str(tmp_path / "died"))
    from robustmods import Die

    kw = {"classes": "0-2", "input_shape": (4,), "domain": Box(0, 1), **FAST}
    s = atlas(Die(), tmp_path / "pool", runner="process", workers=1, **kw)
    assert (tmp_path / "died").exists(), "a worker process died"
    assert s.status == "complete" and s.finished == 3 and s.failed == {}
    inline = atlas(Die(), tmp_path / "inline", **kw)  # the marker exists: nobody dies now
    assert inline.status == "complete"
    got, ref = load_atlas(tmp_path / "pool"), load_atlas(tmp_path / "inline")
    assert list(got) == ["out_0", "out_1", "out_2"]
    for k in got:
        assert got[k].value == ref[k].value
        assert abs(value_at(Die(), got[k], int(k[-1])) - got[k].value) < 1e-6


def test_a_unit_in_flight_beside_a_dying_one_is_not_blamed(tmp_path, monkeypatch):
    """Two units in flight, one worker dies: both are suspects and rerun alone; the unit
    whose worker dies again fails, the other finishes (it used to fail as well)."""
    write_models(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("POISON_DIR", str(tmp_path))
    from robustmods import Poisoned

    kw = {"classes": "0-1", "input_shape": (4,), "domain": Box(0, 1), **FAST}
    s = atlas(Poisoned(), tmp_path / "pool", runner="process", workers=2, **kw)
    assert len(list(tmp_path.glob("died-*"))) == 2, "the poisoned unit killed two workers"
    assert s.finished == 1 and len(s.failed) == 1, s.describe()
    (why,) = s.failed.values()
    assert why.startswith("WorkerDied") and "twice" in why
    (key,) = load_atlas(tmp_path / "pool")
    got = load_atlas(tmp_path / "pool")[key]
    assert got.value == pytest.approx(value_at(Poisoned(), got, int(key[-1])), abs=1e-6)


def test_a_model_class_the_workers_cannot_import_fails_the_run_with_the_cause(tmp_path):
    """A class defined under the script's __main__ guard pickles, but spawned workers cannot
    load it: the run is recorded as failed with the real cause, and the page is built."""
    script = tmp_path / "local.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys, torch
            import inverset as iv
            if __name__ == "__main__":
                torch.set_num_threads(1)
                class Local(torch.nn.Module):
                    def __init__(self):
                        super().__init__()
                        torch.manual_seed(0)
                        self.fc = torch.nn.Linear(3, 2)
                    def forward(self, x):
                        return self.fc(x)
                s = iv.atlas(Local(), sys.argv[1], classes="0-1", input_shape=(3,), workers=2,
                             steps=5)
                print(json.dumps({"status": s.status, "failed": s.failed, "index": str(s.index)}))
            """
        )
    )
    out = tmp_path / "job"
    p = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "failed" and sorted(s["failed"]) == ["out_0", "out_1"]
    why = s["failed"]["out_0"]
    assert "Can't get attribute 'Local'" in why and "importable module" in why
    assert "__name__" not in why, "no guess at a missing __main__ guard"
    runs = json.loads((out / "job.json").read_text())["runs"]
    assert runs[-1]["status"] == "failed" and runs[-1]["failed"]["out_1"] == why
    assert Path(s["index"]).is_file() and "Traceback" not in p.stderr


# ---------------------------------------------------------------- the directory (4, 5, 6)
def test_a_target_directory_without_a_result_is_replaced(tmp_path):
    m = small()
    kw = {"classes": "0-1", "input_shape": (3,), "domain": Box(-1, 1), **FAST}
    stale = tmp_path / "job" / "out_0"
    stale.mkdir(parents=True)
    (stale / "thumb.png").write_bytes(b"old picture of a deleted result")
    s = atlas(m, tmp_path / "job", **kw)
    assert s.status == "complete" and s.finished == 2 and s.remaining == []
    r = Result.load(stale)
    assert abs(value_at(m, r, 0) - r.value) < 1e-6
    assert not (stale / "thumb.png").exists()
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["job.json", "out_0", "out_1"]
    (stale / "result.json").unlink()  # a result deleted to have it redone
    s = atlas(m, tmp_path / "job", **kw)
    assert s.status == "complete" and s.skipped == 1 and s.finished == 1
    assert Result.load(stale).value == r.value


def test_a_result_that_lost_its_arrays_is_reported_broken_and_recomputed(tmp_path):
    """A result.json without its result.npz (save() writes the npz first: it was deleted)
    counted as done, loaded without x, and the report said nothing; now the report's card
    says broken, with a warning, and a rerun recomputes it."""
    from inverset.report.html import build_report

    m = small()
    kw = {"classes": "0-1", "input_shape": (3,), "domain": Box(-1, 1), **FAST}
    atlas(m, tmp_path / "job", **kw)
    lost = tmp_path / "job" / "out_1"
    (lost / "result.npz").unlink()
    with pytest.raises(InversetError, match=r"result\.npz is missing"):
        Result.load(lost)
    warnings: list[str] = []
    build_report(tmp_path / "job", warn=warnings.append)
    assert len(warnings) == 1 and "out_1" in warnings[0] and "broken" in warnings[0]
    assert warnings[0].endswith("(rerun the atlas to recompute it)")
    s = atlas(m, tmp_path / "job", **kw)
    assert s.status == "complete" and s.skipped == 1 and s.finished == 1
    r = Result.load(lost)
    assert r.x is not None and abs(value_at(m, r, 1) - r.value) < 1e-6


@pytest.mark.parametrize("mode", ["maximize", "sample", "visualize"])
def test_an_atlas_over_a_latent_space_resumes(tmp_path, mode):
    """A Latent space (maximize, sample) or parameterization (visualize) is recorded in
    job.json by its generator's weights: a second identical call resumes (job.json held the
    object's repr with its memory address: 'holds a different job'), and maximize mode takes
    space= (it was 'not an option of solver gradient'). Every x is the generator's output."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    gen = nn.Sequential(nn.Linear(2, 16), nn.Sigmoid(), nn.Unflatten(1, (1, 4, 4))).eval()
    space = iv.Latent(gen, dim=2, bound=2)
    kw: dict = {"classes": "0-1", "domain": Box(0, 1, shape=(1, 4, 4)), "mode": mode}
    if mode == "visualize":
        kw.update(param=space, steps=5)
    elif mode == "sample":
        kw.update(space=space, ranges=[(-5.0, 5.0)], n=2)
    else:
        kw.update(space=space, starts=2, steps=5)
    first = atlas(model, tmp_path / "job", **kw)
    assert first.status == "complete" and first.finished == 2
    again = atlas(model, tmp_path / "job", **kw)
    assert again.status == "complete" and again.skipped == 2 and again.finished == 0
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    recorded = job["query"]["options"]["param" if mode == "visualize" else "space"]
    assert recorded["kind"] == "Latent" and len(recorded["generator"]) == 64
    if mode != "visualize":  # G(z) for the recorded z in the latent box
        for r in load_atlas(tmp_path / "job").values():
            z = torch.as_tensor(r.arrays["z"]).reshape(-1, 2)
            xs = torch.as_tensor(r.xs)  # z holds one code per point of xs
            assert z.abs().max() <= 2 + 1e-6
            with torch.no_grad():
                assert torch.allclose(gen(z.float()).clamp(0, 1), xs.float(), atol=1e-6)


def test_long_target_expressions_get_short_distinct_directories(tmp_path):
    m = small()
    long = " + ".join(f"{i % 7}*out:{i % 3}" for i in range(60))
    targets = [long + " + out:0", long + " + out:1"]
    s = atlas(m, tmp_path / "job", targets=targets, input_shape=(3,), domain=Box(-1, 1), **FAST)
    assert s.status == "complete" and s.finished == 2
    got = load_atlas(tmp_path / "job")
    assert len(got) == 2 and all(len(k) <= 120 for k in got)
    assert len({k[-10:] for k in got}) == 2
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert [t["target"] for t in job["targets"]] == targets
    for r, t in zip(got.values(), targets, strict=True):
        weights = [i % 7 for i in range(60)]
        cols = [i % 3 for i in range(60)]
        with torch.no_grad():
            y = m(torch.as_tensor(r.x[None], dtype=torch.float32))[0]
        v = sum(w * float(y[c]) for w, c in zip(weights, cols, strict=True)) + float(y[int(t[-1])])
        assert abs(v - r.value) < 1e-4


def test_a_result_of_another_query_is_not_taken_as_done(tmp_path):
    m = small()
    pre = tmp_path / "pre"
    other = iv.minimize(m, "out:0", Box(-1, 1), input_shape=(3,), steps=5, starts=2)
    other.save(pre / "out_0")
    kw = {"classes": "0-1", "input_shape": (3,), "domain": Box(-1, 1), **FAST}
    with pytest.raises(InversetError, match=r"pre/out_0 holds a result that is not this job's"):
        atlas(m, pre, **kw)
    assert Result.load(pre / "out_0").value == other.value, "the other result is untouched"
    assert sorted(p.name for p in pre.iterdir()) == ["out_0"], "no job was started"
    # this job's own results are done on a rerun; another seed's are not
    s = atlas(m, tmp_path / "job", **kw)
    assert atlas(m, tmp_path / "job", **kw).skipped == 2
    (tmp_path / "job" / "job.json").unlink()
    with pytest.raises(InversetError, match=r"out_0 \(and 1 more\) holds a result that is not"):
        atlas(m, tmp_path / "job", **{**kw, "seed": 5})
    assert s.status == "complete"


# ---------------------------------------------------------------- refused queries (7, 8)
def test_bad_option_values_leave_no_job_behind(tmp_path):
    m = small()
    kw = {"classes": "0-1", "input_shape": (3,), "domain": Box(-1, 1), "report": False}
    with pytest.raises(InversetError, match="starts must be at least 1, got 0"):
        atlas(m, tmp_path / "a", starts=0, steps=5, **kw)
    assert not (tmp_path / "a" / "job.json").exists()
    with pytest.raises(InversetError, match="time limit must be >= 0 seconds, got -1"):
        atlas(m, tmp_path / "a", starts=2, steps=5, time_limit=-1, **kw)
    assert not (tmp_path / "a" / "job.json").exists()
    s = atlas(m, tmp_path / "a", starts=2, steps=5, **kw)
    assert s.status == "complete" and s.finished == 2
    # a job stopped before any target finished does not hold the directory either

    def stop_in_the_solver(_module: nn.Module, inp: tuple[torch.Tensor]) -> None:
        if inp[0].requires_grad:
            raise KeyboardInterrupt

    hook = m[0].register_forward_pre_hook(stop_in_the_solver)
    try:
        s = atlas(m, tmp_path / "b", starts=2, steps=5, **kw)
    finally:
        hook.remove()
    assert s.status == "interrupted" and s.finished == 0
    s = atlas(m, tmp_path / "b", starts=3, steps=5, **kw)
    assert s.status == "complete" and s.finished == 2
    assert json.loads((tmp_path / "b" / "job.json").read_text())["query"]["options"]["starts"] == 3


def test_bad_option_from_the_command_line_then_the_corrected_one(tmp_path, monkeypatch, capsys):
    from inverset.cli import main
    from inverset.zoo import DigitsCNN

    weights = tmp_path / "cnn.pt"
    torch.save(DigitsCNN().state_dict(), weights)
    base = ["inverset", "atlas", str(weights), "--factory", "inverset.zoo:DigitsCNN"]
    base += ["--input-shape", "1,8,8", "--box", "0,1", "--classes", "0-1", "--steps", "3"]
    base += ["--no-progress", "--out", str(tmp_path / "job")]
    monkeypatch.setattr(sys, "argv", [*base, "--starts", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "starts must be at least 1, got 0" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    monkeypatch.setattr(sys, "argv", [*base, "--starts", "2"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0, capsys.readouterr().err
    assert sorted(load_atlas(tmp_path / "job")) == ["out_0", "out_1"]


@pytest.mark.parametrize("workers", [None, 2])
def test_a_target_the_solver_rejects_fails_alone(tmp_path, workers):
    m = small()
    kw = {"input_shape": (3,), "domain": Box(-1, 1), "solver": "exact", "report": False}
    s = atlas(m, tmp_path / "job", targets=["prob:1", "out:0"], workers=workers, **kw)
    assert s.status == "failed" and list(s.failed) == ["prob_1"] and s.remaining == ["prob_1"]
    assert s.failed["prob_1"].startswith("InversetError: target prob:1 is not piecewise linear")
    exact = iv.maximize(m, "out:0", Box(-1, 1), solver="exact", input_shape=(3,))
    assert load_atlas(tmp_path / "job")["out_0"].value == pytest.approx(exact.value, abs=1e-6)
    if workers is None:
        s = atlas(m, tmp_path / "job", targets=["prob:1", "out:0"], **kw)
        assert s.skipped == 1 and list(s.failed) == ["prob_1"]
        with pytest.raises(InversetError, match="target prob:1 is not piecewise linear"):
            atlas(m, tmp_path / "alone", targets=["prob:1"], **kw)
        assert not (tmp_path / "alone" / "job.json").exists()


# ---------------------------------------------------------------- keys (11)
def test_close_ranges_get_distinct_directories_and_clear_messages():
    m = small()
    items = expand_targets(m, classes="2", ranges=[(8.0000001, 12), (8.0000002, 12), (0.5, 1)])
    assert [it["key"] for it in items] == [
        "out_2__8.0000001_12",
        "out_2__8.0000002_12",
        "out_2__0.5_1",
    ]
    with pytest.raises(InversetError, match=r"'out:2 in \[1, 2\]' and 'out:2 in \[1, 2\]'"):
        expand_targets(m, classes="2", ranges=[(1, 2), (1.0, 2.0)])


def test_failed_targets_exit_1_even_when_the_job_time_limit_stops_the_run(
    tmp_path, monkeypatch, capsys
):
    from inverset.cli import main
    from inverset.zoo import DigitsCNN

    weights = tmp_path / "cnn.pt"
    torch.save(DigitsCNN().state_dict(), weights)
    argv = ["inverset", "atlas", str(weights), "--factory", "inverset.zoo:DigitsCNN"]
    argv += ["--input-shape", "1,8,8", "--box", "0,1", "--solver", "exact", "--no-progress"]
    argv += ["--target", "prob:1", "--target", "logit:0", "--job-time-limit", "0"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path / "job")])
    with pytest.raises(SystemExit) as exit_:
        main()
    text = capsys.readouterr().out
    assert exit_.value.code == 1, text
    assert "job_time_limit" in text or "job time limit" in text, text
    assert "prob_1" in text and "not piecewise linear" in text, text


def test_a_job_written_under_the_old_key_rule_still_resumes(tmp_path, monkeypatch):
    import importlib

    atlas_module = importlib.import_module("inverset.jobs.atlas")
    m = small()
    kw = {"input_shape": (3,), "domain": Box(-1, 1), "report": False}
    fast = {"steps": 5, "starts": 2}
    long_target = "out:0 + " * 22 + "out:1"
    # what the previous version wrote: ranges to 6 digits, no length cap, no job id
    with monkeypatch.context() as patch:
        patch.setattr(atlas_module, "_num", lambda v: f"{float(v):g}")
        patch.setattr(atlas_module, "MAX_KEY", 10_000)
        first = atlas(
            m, tmp_path / "r", classes="0", mode="sample", ranges=[[0.1234567, 1.0]], n=3, **kw
        )
        atlas(m, tmp_path / "l", targets=[long_target, "out:2"], **kw, **fast)
    for d in ("r", "l"):
        job = json.loads((tmp_path / d / "job.json").read_text())
        job.pop("id")
        (tmp_path / d / "job.json").write_text(json.dumps(job))
    assert first.finished == 1 and (tmp_path / "r" / "out_0__0.123457_1" / "result.json").is_file()
    again = atlas(
        m, tmp_path / "r", classes="0", mode="sample", ranges=[[0.1234567, 1.0]], n=3, **kw
    )
    assert again.skipped == 1 and again.finished == 0
    again = atlas(m, tmp_path / "l", targets=[long_target, "out:2"], **kw, **fast)
    assert again.skipped == 2 and again.finished == 0
    assert len(load_atlas(tmp_path / "l")) == 2


def test_a_target_error_naming_the_target_as_parsed_fails_that_target_alone(tmp_path):
    m = small()
    kw = {"input_shape": (3,), "domain": Box(-1, 1), "solver": "exact", "report": False}
    s = atlas(m, tmp_path / "job", targets=["prob:1 - 0.5*prob:2", "out:0"], **kw)
    assert list(s.failed) == ["prob_1-0.5_prob_2"] and s.finished == 1
    assert "(prob:1 - (0.5 * prob:2)) is not piecewise linear" in s.failed["prob_1-0.5_prob_2"]


def test_a_runner_that_fails_to_start_leaves_the_job_as_it_was(tmp_path):
    """A Ray start failure (`--ray 127.0.0.1:6399` with nothing there) left DIR/job.json with
    runs: [] behind: a fresh job leaves none, a resumed one its earlier record unchanged, and
    the runner's own error comes out as raised (an internal one with its cause)."""
    from inverset.jobs.runners import InlineRunner

    class NoStart(InlineRunner):
        closed = 0

        def __init__(self, error: Exception):
            super().__init__()
            self.error = error

        def start(self, model, spec):
            raise self.error

        def close(self, handles):
            NoStart.closed += 1

    m = small()
    kw = {"classes": "0-2", "input_shape": (3,), "domain": Box(-1, 1), **FAST}
    refused = InversetError("nothing answers at the Ray address 127.0.0.1:6399")
    with pytest.raises(InversetError, match="nothing answers"):
        atlas(m, tmp_path / "fresh", runner=NoStart(refused), **kw)
    assert not (tmp_path / "fresh" / "job.json").exists() and NoStart.closed == 1
    out = tmp_path / "job"
    s = atlas(m, out, job_time_limit=0, **kw)
    assert s.finished == 1
    before = json.loads((out / "job.json").read_text())
    assert len(before["runs"]) == 1
    cause = OSError("gcs down")
    broken = RuntimeError("ray internals")
    broken.__cause__ = cause
    for error in (refused, broken):
        with pytest.raises(type(error)) as got:
            atlas(m, out, runner=NoStart(error), **kw)
        assert got.value is error and got.value.__cause__ is (cause if error is broken else None)
        assert json.loads((out / "job.json").read_text()) == before
    assert sorted(p.name for p in out.iterdir()) == ["job.json", "out_0"]
    s = atlas(m, out, **kw)
    assert s.status == "complete" and s.skipped == 1 and s.finished == 2


# ---------------------------------------------------------------- a full disk (audit 111)
def _full_disk(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    ("call", "words"),
    [
        # os.write of the lock's pid on a full disk was an internal error (exit 4, the lock
        # file left behind)
        ("write", "cannot write the job's lock file into {} (No space left on device); free "),
        # a directory out of inodes (or read-only) at the lock's creation was an internal
        # error: only an existing lock was caught there
        ("open", "cannot make the job's lock file in {} (No space left on device); free "),
    ],
)
def test_a_lock_that_cannot_be_written_is_one_line_and_leaves_no_lock(
    tmp_path, monkeypatch, call, words
):
    """One line naming the directory and the fix, no lock file, and the directory free."""
    from inverset.jobs.atlas import job_lock

    with monkeypatch.context() as m, pytest.raises(InversetError) as info:
        m.setattr(os, call, _full_disk)
        with job_lock(tmp_path):
            pass
    assert str(info.value) == words.format(tmp_path) + "some space, or use another --out"
    assert list(tmp_path.iterdir()) == []
    with job_lock(tmp_path):  # the directory is not held by the failed attempt
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_at_the_job_record_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """job.json begun on a full disk: one line naming it (was an internal error that left
    job.json.tmp), no temporary file, no lock; the job then runs once there is room."""
    real = Path.write_text

    def full(self, *args, **kwargs):
        if "job.json" in self.name:  # its temporary file
            real(self, "{")  # begun, then the disk is full
            _full_disk()
        return real(self, *args, **kwargs)

    out = tmp_path / "job"
    kw = {"classes": "0-1", "input_shape": (3,), "domain": Box(-1, 1), **FAST}
    with monkeypatch.context() as m, pytest.raises(InversetError) as info:
        m.setattr(Path, "write_text", full)
        atlas(small(), out, **kw)
    assert str(info.value) == (
        f"cannot write the job record {out / 'job.json'} (No space left on device); free "
        "space on its disk, or use another --out"
    )
    assert not out.exists()  # the directory it made, left empty, is gone too
    assert atlas(small(), out, **kw).finished == 2
