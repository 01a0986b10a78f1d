"""Atlas jobs on a local Ray cluster (2 CPUs, started and shut down here): the same results as
in this process, bit for bit, and a worker that dies has its target retried."""

from __future__ import annotations

import os

import numpy as np
import pytest

from inverset import Box
from inverset.jobs import atlas, load_atlas
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
