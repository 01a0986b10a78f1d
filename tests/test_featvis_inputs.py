"""Feature visualization on inputs off the beaten path (audit 115): bands that are no colour,
dream starts given as values, 1-D signals, seeds of 64 bits, rotation of non-square images,
the transforms' padding on any value range, channels given as numpy or torch numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inverset import featvis as fv
from inverset.errors import InversetError
from inverset.featvis import transforms as T
from inverset.featvis.render import parse_channels
from inverset.report.images import to_hwc


def _conv(channels: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)
    ).eval()


def test_channels_that_are_no_colour_are_drawn_side_by_side():
    """Five bands crashed the grid (exit 4); two without alpha were grey plus transparency:
    a picture whose second band was 0 was a blank tile."""
    img = np.zeros((2, 6, 5))
    img[0, :, 2] = 1.0  # a vertical line in band 0, band 1 empty
    drawn = to_hwc(img, (0, 1), alpha=False)
    assert drawn.shape == (6, 11)  # 5 + a white column + 5
    np.testing.assert_array_equal(drawn[:, :5], img[0])
    assert (drawn[:, 5] == 1).all() and (drawn[:, 6:] == 0).all()
    assert to_hwc(img, (0, 1), alpha=True).shape == (6, 5, 4)  # grey and alpha
    assert to_hwc(np.random.rand(5, 6, 5), (0, 1)).shape == (6, 29)


def test_visualize_with_five_bands_saves_its_grid_and_gif(tmp_path):
    r = fv.visualize(_conv(5), "0", channels=[0, 1], steps=8, frames=4, input_shape=(5, 16, 16))
    files = fv.save(r, tmp_path, gif=True)
    assert [p.name for p in files[1:]] == ["grid.png", "optimization.gif"]
    with Image.open(tmp_path / "grid.png") as im:
        assert np.asarray(im.convert("L")).std() > 10  # tiles drawn, not blank
    with Image.open(tmp_path / "optimization.gif") as im:
        assert im.n_frames == 5 and im.width > 5 * im.height / 2  # five bands side by side


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)])
def test_dream_starts_from_a_float_array_as_the_values_it_holds(value_range):
    """A numpy array was read as [0, 1] and stretched onto the value range (0..255: the
    start's values were off by up to 233); tensors were not. Both hold pixel values."""
    lo, hi = value_range
    x = np.random.default_rng(0).uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), (3, 16, 16))
    model = _conv(3)
    for start in (x.astype(np.float32), torch.as_tensor(x)):
        r = fv.dream(model, start, "0", octaves=1, steps=2, value_range=value_range)
        np.testing.assert_allclose(r.arrays["original"][0], x, rtol=1e-6, atol=1e-4)


def test_dream_from_a_result_starts_from_its_image_not_its_normalized_input():
    model = _conv(3)
    norm = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    vis = fv.visualize(model, "0", channels=[1], size=16, steps=4, **norm)
    r = fv.dream(model, vis, "0", octaves=1, steps=1, **norm)
    np.testing.assert_allclose(r.arrays["original"], vis.arrays["images"][:1], atol=1e-6)
    assert np.abs(vis.xs[0] - vis.arrays["images"][0]).max() > 0.5  # xs is normalized


def test_a_uint8_picture_is_mapped_onto_the_value_range_and_rgba_over_white():
    pic = np.zeros((16, 16, 4), dtype=np.uint8)
    pic[..., 0] = 255  # red, half of it transparent
    pic[:, :8, 3] = 255
    r = fv.dream(_conv(3), pic, "0", octaves=1, steps=1, value_range=(0.0, 255.0))
    orig = r.arrays["original"][0]
    np.testing.assert_allclose(orig[:, :, :8], [[[255.0]], [[0.0]], [[0.0]]] * np.ones((3, 16, 8)))
    np.testing.assert_allclose(orig[:, :, 8:], 255.0)  # transparent: white


def test_dream_on_a_signal_model():
    """dream on a (C, L) model failed for every start ('a single row or column')."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.Conv1d(4, 2, 5)).eval()
    x = np.random.default_rng(1).uniform(0.2, 0.8, (2, 200)).astype(np.float32)
    r = fv.dream(model, x, "1", octaves=2, steps=10, input_shape=(2, 200))
    assert r.arrays["images"].shape == (1, 2, 200)
    np.testing.assert_allclose(r.arrays["original"][0], x, atol=1e-6)
    assert (
        r.value
        > 1.5 * fv.dream(model, x, "1", octaves=1, steps=1, lr=1e-9, input_shape=(2, 200)).value
    )
    with pytest.raises(InversetError, match=r"1-D signals .* \(2, L\), not a picture"):
        fv.dream(model, Image.new("L", (20, 20)), "1", input_shape=(2, 200))


def test_seeds_take_64_bits_and_negative_ones_are_refused():
    model = _conv(1)
    a = fv.visualize(model, "0", channels=[0], steps=3, seed=2**64 - 1, input_shape=(1, 8, 8))
    b = fv.visualize(model, "0", channels=[0], steps=3, seed=2**64 - 1, input_shape=(1, 8, 8))
    np.testing.assert_array_equal(a.xs, b.xs)
    for call in (
        lambda s: fv.visualize(model, "0", channels=[0], steps=1, seed=s, input_shape=(1, 8, 8)),
        lambda s: fv.dream(model, np.zeros((8, 8)), "0", steps=1, seed=s),
    ):
        for bad in (-1, 2**64):
            with pytest.raises(InversetError, match="seed must be an integer from 0 to 1844"):
                call(bad)


def test_rotation_turns_a_non_square_image_by_its_angle():
    """The rotation ran in coordinates -1..1 on each side: 10 degrees turned a line 3.3
    degrees on a 20x60 image."""
    x = torch.zeros(1, 1, 20, 60)
    x[0, 0, 10, 10:50] = 1
    y = T.RandomRotate([10])(x, torch.Generator().manual_seed(0))[0, 0]
    w = y.sum(0)
    centre = (y * torch.arange(20.0)[:, None]).sum(0) / w.clamp_min(1e-9)
    keep = w > 0.3
    slope = np.polyfit(torch.arange(60.0)[keep].numpy(), centre[keep].numpy(), 1)[0]
    assert math.degrees(math.atan(abs(slope))) == pytest.approx(10, abs=0.3)


def test_a_constant_pad_is_mid_grey_on_any_value_range():
    """Transforms ran on the value range's numbers: the pad of 0.5 was near black on 0..255."""
    seen: list[torch.Tensor] = []

    class Spy(nn.Module):
        def forward(self, x):
            if x.shape[-1] == 24:  # through the transforms (16 + 2 x 4)
                seen.append(x.detach()[:, :, 0, 0])
            return x.mean((2, 3))

    pad = [T.Pad(4, mode="constant")]
    shape = (3, 16, 16)
    fv.visualize(Spy(), "out", channels=[0], steps=3, value_range=(0, 255), transforms=pad,
                 input_shape=shape)  # fmt: skip
    assert len(seen) == 3 and all(torch.equal(c, torch.full((1, 3), 127.5)) for c in seen)


def test_channels_given_as_numpy_or_torch_numbers():
    n = 6
    assert parse_channels(np.int64(3), n) == [3]
    assert parse_channels(torch.tensor(4), n) == [4]
    assert parse_channels(np.array([1, 2]), n) == [1, 2]
    assert parse_channels({5}, n) == [5]
    with pytest.raises(InversetError, match=r"whole numbers .* got 7.5"):
        parse_channels([7.5], n)


def test_a_single_callable_is_a_transform():
    calls = []

    def shift(x, gen):
        calls.append(float(x.min()) >= 0 and float(x.max()) <= 1)
        return torch.roll(x, 1, -1)

    fv.visualize(_conv(1), "0", channels=[0], steps=2, transforms=shift, input_shape=(1, 8, 8))
    assert calls and all(calls)


def test_latent_image_takes_a_latent_space_not_a_generator():
    """LatentImage(G) was an AttributeError (the README named it so)."""
    with pytest.raises(InversetError, match=r"takes an inverset.Latent, not Sequential; .* param="):
        fv.LatentImage(nn.Sequential(nn.Linear(4, 16)))
