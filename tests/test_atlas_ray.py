"""Atlas jobs on a local Ray cluster (2 CPUs, started and shut down here): the same results as
in this process, bit for bit, and a worker that dies has its target retried."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inverset import Box
from inverset.jobs import atlas, load_atlas
from inverset.jobs.runners import RayRunner, _check_reachable
from inverset.progress import sigterm_as_interrupt
from tests.conftest import need

ray = need("ray")

FAST = {"steps": 15, "starts": 4, "polish": False, "domain": Box(0, 1), "seed": 11, "report": False}


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def same(a, b) -> None:
    assert a.status == b.status and a.value == b.value
    for name in ("x", "xs", "values"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.history["best"], b.history["best"])


def test_ray_equals_in_process_and_retries_a_dead_worker(cluster, digits_cnn, tmp_path):
    model = digits_cnn.model
    ref = atlas(model, tmp_path / "inline", layer="conv1", channels="0-5", **FAST)
    assert ref.status == "complete"
    expected = load_atlas(tmp_path / "inline")

    s = atlas(model, tmp_path / "ray", layer="conv1", channels="0-5", runner="ray", **FAST)
    assert s.status == "complete" and s.finished == 6 and s.runner.startswith("ray")
    assert ray.is_initialized(), "a cluster the job did not start is left running"
    got = load_atlas(tmp_path / "ray")
    assert list(got) == list(expected)
    for k in expected:
        same(got[k], expected[k])

    # The first worker to run a forward pass dies (os._exit); Ray retries its target. The hook
    # travels with the model (cloudpickle); the driver's own passes are spared.
    marker = str(tmp_path / "died-once")
    driver = os.getpid()

    def die_once(_module, _inp):
        if os.getpid() != driver:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os._exit(1)

    handle = model.conv1.register_forward_pre_hook(die_once)
    try:
        s = atlas(model, tmp_path / "crash", layer="conv1", channels="0-5", runner="ray", **FAST)
    finally:
        handle.remove()
    assert os.path.exists(marker), "a worker died"
    assert s.status == "complete" and s.failed == {} and s.finished == 6
    got = load_atlas(tmp_path / "crash")
    for k in expected:
        same(got[k], expected[k])


# ---------------------------------------------------------------- signals and addresses
def family(pid: int) -> dict[int, str]:
    """The live descendants of ``pid`` (Ray's servers, agents and workers): pid -> start time."""
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(d.name)] = (d / "stat").read_text().rsplit(")", 1)[1].split()
    kids: dict[int, list[int]] = {}
    for p, st in stats.items():
        if st[0] != "Z":
            kids.setdefault(int(st[1]), []).append(p)
    out, todo = {}, list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out[p] = stats[p][19]
        todo += kids.get(p, [])
    return out


def still_alive(procs: dict[int, str]) -> list[int]:
    """Those of ``procs`` (pid -> start time) that still run (not a zombie, pid not reused)."""
    left = []
    for p, start in procs.items():
        with contextlib.suppress(OSError):
            st = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            if st[0] != "Z" and st[19] == start:
                left.append(p)
    return left


def working(procs: dict[int, str]) -> bool:
    """One of ``procs`` is a Ray worker running a unit."""
    for p in procs:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"ray::run_unit"):
                return True
    return False


@pytest.fixture
def weights(tmp_path, digits_cnn) -> Path:
    p = tmp_path / "cnn.pt"
    torch.save(digits_cnn.model.state_dict(), p)
    return p


CLI_JOB = ["--factory", "inverset.zoo:DigitsCNN", "--input-shape", "1,8,8", "--box", "0,1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_a_ray_job_like_ctrl_c(weights, tmp_path):
    """SIGTERM once a worker of the job's local cluster runs a unit: exit 130, the summary,
    the run recorded, the lock gone, and no process of the cluster left (Ray's own handler
    used to abort the job, and leave its agents running)."""
    out = tmp_path / "job"
    cmd = [sys.executable, "-m", "inverset", "atlas", weights, *CLI_JOB, "--layer", "conv2"]
    cmd += ["--channels", "0-29", "--steps", "300", "--starts", "16", "--out", out]
    cmd += ["--ray", "--workers", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    logs = [tmp_path / "stdout.txt", tmp_path / "stderr.txt"]
    with open(logs[0], "w") as fo, open(logs[1], "w") as fe:  # files: nothing left holds a pipe
        p = subprocess.Popen(list(map(str, cmd)), stdout=fo, stderr=fe, env=env)
    procs: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while not working(procs := family(p.pid)) and p.poll() is None:
            assert time.monotonic() < deadline, "no Ray worker ran a unit in 120 s"
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=60)
        time.sleep(1)
        left = still_alive(procs)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for q in still_alive(procs):
            os.kill(q, signal.SIGKILL)
    stdout, stderr = (f.read_text() for f in logs)
    assert rc == 130, stderr
    assert "interrupted: 30 remaining" in " ".join(stdout.split()), stdout
    assert "Traceback" not in stderr and "SIGTERM received" not in stderr, stderr
    runs = json.loads((out / "job.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["interrupted"]
    assert runs[0]["runner"] == "ray (local cluster, 1 CPUs)" and runs[0]["remaining"] == 30
    assert not (out / ".lock").exists() and (out / "index.html").exists()
    assert len(procs) >= 3, f"the cluster's processes were seen: {procs}"
    assert left == [], f"processes of the job's Ray cluster outlived it: {left}"


def test_a_sigterm_while_ray_starts_waits_for_the_start(monkeypatch):
    """A SIGTERM that comes while ray.init runs (whose handler exits at once, half started)
    is held until the cluster is up, then stops the job as Ctrl-C does."""
    events: list[str] = []
    fake = types.ModuleType("ray")
    fake._private = types.SimpleNamespace(
        utils=types.SimpleNamespace(set_sigterm_handler=lambda h: signal.signal(signal.SIGTERM, h))
    )

    def init(**_kwargs):
        fake._private.utils.set_sigterm_handler(lambda signum, _frame: sys.exit(signum))
        os.kill(os.getpid(), signal.SIGTERM)
        events.append("started")

    fake.init, fake.is_initialized = init, lambda: False
    fake.shutdown = lambda: events.append("shutdown")
    monkeypatch.setitem(sys.modules, "ray", fake)
    run = RayRunner()
    with sigterm_as_interrupt():
        ours = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            run.start(nn.Linear(2, 1), {})
        assert signal.getsignal(signal.SIGTERM) is ours
        run.close()
    assert events == ["started", "shutdown"]


@pytest.mark.parametrize("address", ["bogus", "10.0.0.5", "10.0.0.5:99999", "ray://", ":6379"])
def test_a_malformed_ray_address_is_a_one_line_error(run_main, weights, tmp_path, address):
    r = run_main(
        "atlas",
        weights,
        *CLI_JOB,
        "--layer",
        "conv2",
        "--channels",
        "0-1",
        "--out",
        tmp_path / "job",
        "--ray",
        address,
        "--no-progress",
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        f"error: bad Ray address {address!r}; give HOST:PORT (as `ray status` prints it, e.g. "
        "10.0.0.5:6379), ray://HOST:PORT for a Ray client server, or auto"
    )


def test_ray_resolves_the_named_addresses_itself():
    for fine in ("auto", "local"):
        _check_reachable(fine)  # no error: Ray finds (or starts) the cluster
