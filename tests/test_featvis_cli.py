"""`inverset visualize` and `inverset dream` end to end, in subprocesses, as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import inverset as iv


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory, digits_cnn):
    d = tmp_path_factory.mktemp("fvcli")
    torch.save(digits_cnn.model.state_dict(), d / "cnn.pt")
    return d / "cnn.pt"


MODEL = ["--factory", "inverset.zoo:DigitsCNN", "--input-shape", "1,8,8"]


def test_visualize_channels_writes_grid_and_result(run_main, cnn_file, tmp_path, digits_cnn):
    p = run_main(
        "visualize",
        cnn_file,
        *MODEL,
        "--layer",
        "conv2",
        "--channels",
        "0-5",
        "--steps",
        40,
        "--param",
        "pixels",
        "--gif",
        "--no-progress",
        "--json",
        "--out",
        tmp_path,
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "step_limit"
    assert summary["targets"] == [f"conv2:{c}" for c in range(6)]
    for f in ("grid.png", "optimization.gif", "result.json", "result.npz"):
        assert (tmp_path / f).is_file(), f
    r = iv.Result.load(tmp_path)
    assert r.arrays["images"].shape == (6, 1, 8, 8)
    from inverset.model import forward

    with torch.no_grad():
        a = forward(digits_cnn.model, torch.tensor(r.xs), ["conv2"])["conv2"].mean((-2, -1))
    np.testing.assert_allclose(summary["values"], np.diag(a[:, :6].numpy()), rtol=1e-4, atol=1e-5)


def test_dream_command(run_main, cnn_file, tmp_path, digits_cnn):
    from PIL import Image

    img = (digits_cnn.X[3].reshape(8, 8) * 255).astype(np.uint8)
    Image.fromarray(img).resize((16, 16)).save(tmp_path / "digit.png")
    p = run_main(
        "dream",
        cnn_file,
        *MODEL,
        "--image",
        tmp_path / "digit.png",
        "--layer",
        "relu2",
        "--octaves",
        2,
        "--steps",
        5,
        "--no-progress",
        "--out",
        tmp_path / "d",
    )
    assert p.returncode == 0, p.stderr
    assert "resized to the model's fixed input size 8x8" in p.stdout
    assert (tmp_path / "d" / "grid.png").is_file()
    r = iv.Result.load(tmp_path / "d")
    assert r.arrays["images"].shape == (1, 1, 16, 16)


def test_dream_starts_from_a_result_directory_or_a_npy_array(run_main, cnn_file, tmp_path):
    """--image took pictures only: no way to dream on from a visualize run, or on a
    1-D signal model, from the command line."""
    common = [*MODEL, "--layer", "relu2", "--octaves", 1, "--steps", 2, "--no-progress"]
    p = run_main("visualize", cnn_file, *MODEL, "--channels", "3", "--layer", "conv2",
                 "--steps", 5, "--no-progress", "--out", tmp_path / "v")  # fmt: skip
    assert p.returncode == 0, p.stderr
    p = run_main("dream", cnn_file, *common, "--image", tmp_path / "v", "--out", tmp_path / "d")
    assert p.returncode == 0, p.stderr
    vis, dream = iv.Result.load(tmp_path / "v"), iv.Result.load(tmp_path / "d")
    np.testing.assert_allclose(dream.arrays["original"], vis.arrays["images"][:1], atol=1e-6)
    start = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    np.save(tmp_path / "start.npy", start)
    p = run_main("dream", cnn_file, *common, "--image", tmp_path / "start.npy", "--out",
                 tmp_path / "n")  # fmt: skip
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose(iv.Result.load(tmp_path / "n").arrays["original"][0], start)
    (tmp_path / "empty").mkdir()
    p = run_main("dream", cnn_file, *common, "--image", tmp_path / "empty")
    assert p.returncode == 2
    assert "is a directory with no result.json; give an image file (PNG or JPEG), a .npy" in (
        p.stderr
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "conv9"], "unknown layer 'conv9'; valid layers: conv1"),
        (["--layer", "conv2", "--channels", "0-99"], "channel 32 out of range"),
        (["--layer", "conv2", "--param", "wavelet"], "unknown param 'wavelet'"),
        (["--layer", "conv2", "--range", "1"], "--range takes LO,HI"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_main, cnn_file, args, message):
    p = run_main("visualize", cnn_file, *MODEL, "--steps", 2, "--no-progress", *args)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr


#: what torch's CPU allocator raises when a batch does not fit (an --size 1024 run, 4 GB)
ALLOC = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 447068544 bytes. Error code 12 (Cannot allocate memory)"
)


@pytest.fixture
def oom_over_3(monkeypatch):
    """DigitsCNN runs out of memory on a batch of more than 3 inputs."""
    from inverset.zoo import DigitsCNN

    forward = DigitsCNN.forward

    def tight(self, x):
        if x.shape[0] > 3:
            raise RuntimeError(ALLOC)
        return forward(self, x)

    monkeypatch.setattr(DigitsCNN, "forward", tight)


def test_a_batch_out_of_memory_is_one_line_exit_2(run_main, cnn_file, tmp_path, oom_over_3):
    """It was a traceback and 'internal error (bug in inverset)', exit 4."""
    args = ("visualize", cnn_file, *MODEL, "--layer", "conv2", "--channels", "0-7", "--steps", 2)
    p = run_main(*args, "--no-progress", "--out", tmp_path / "v")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: out of memory rendering 8 image(s) at 8x8 in one batch ({ALLOC}); render "
        "fewer at a time: --batch-size 2 (batch_size=2)"
    ]
    assert not (tmp_path / "v").exists()
    p = run_main(*args, "--batch-size", 3, "--no-progress", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["targets"] == [f"conv2:{c}" for c in range(8)]


def test_a_dream_out_of_memory_is_one_line_exit_2(run_main, cnn_file, tmp_path, monkeypatch):
    """Out of memory in a dream's octave was a traceback and 'internal error', exit 4."""
    from PIL import Image

    from inverset.zoo import DigitsCNN

    forward = DigitsCNN.forward

    def tight(self, x):  # the 6th call: a step of the first octave, 9x9 (24 / 1.4**3)
        tight.calls += 1
        if tight.calls > 5:
            raise RuntimeError(ALLOC)
        return forward(self, x)

    tight.calls = 0
    monkeypatch.setattr(DigitsCNN, "forward", tight)
    Image.fromarray(np.full((24, 24), 128, dtype=np.uint8)).save(tmp_path / "grey.png")
    args = ("dream", cnn_file, *MODEL, "--image", tmp_path / "grey.png", "--layer", "conv2")
    p = run_main(*args, "--no-progress", "--out", tmp_path / "d")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: out of memory dreaming at 9x9 ({ALLOC}); give a smaller image (e.g. half the "
        "size) or a layer nearer the input"
    ]
