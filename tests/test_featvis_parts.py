"""Parameterizations, transforms and objectives of feature visualization, one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset import featvis as fv
from inverset.featvis import transforms as T
from inverset.featvis.param import IMAGENET_COLOR_SQRT


@pytest.mark.parametrize("shape", [(3, 17, 30), (1, 8, 8), (2, 40), (4, 5, 6)])
def test_params_give_valid_images_of_any_shape(shape):
    for cls in (fv.FourierImage, fv.Pixels):
        p = cls(shape, batch=3, alpha=True, seed=1)
        img = p()
        assert img.shape == (3, shape[0] + 1, *shape[1:])
        assert img.min() >= 0 and img.max() <= 1
        img.sum().backward()
        assert all(q.grad is not None for q in p.parameters())


def test_fourier_spectrum_is_one_over_f_and_seeded():
    p = fv.FourierImage((1, 32, 32), seed=0)
    # the scale halves when the frequency doubles (decay 1), floored at the lowest frequency
    assert p.scale[0, 4] / p.scale[0, 8] == pytest.approx(2.0)
    assert p.scale[0, 0] == pytest.approx(p.scale[0, 1])
    a, b = fv.FourierImage((3, 16, 16), seed=4)(), fv.FourierImage((3, 16, 16), seed=4)()
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, fv.FourierImage((3, 16, 16), seed=5)())


@pytest.mark.parametrize("cls", [fv.FourierImage, fv.Pixels])
def test_a_seeded_image_does_not_depend_on_the_default_dtype(cls):
    """The same seed draws the same start under ``torch.set_default_dtype(torch.float64)``
    (it drew float64 numbers there: another image, another visualization)."""
    first = cls((3, 16, 16), seed=2)()
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        second = cls((3, 16, 16), seed=2)()
    finally:
        torch.set_default_dtype(before)
    assert torch.equal(first, second.to(first.dtype))


def test_colour_decorrelation_matrix_is_used_and_configurable():
    p = fv.FourierImage((3, 8, 8), decorrelate=True)
    m = IMAGENET_COLOR_SQRT / np.linalg.norm(IMAGENET_COLOR_SQRT, axis=0).max()
    np.testing.assert_allclose(p.color.numpy(), m, rtol=1e-6)
    assert fv.FourierImage((3, 8, 8), decorrelate=False).color is None
    custom = fv.Pixels((2, 4, 4), color_matrix=[[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(custom.color.numpy(), [[1.0, 0.0], [0.0, 0.5]])
    with pytest.raises(iv.InversetError, match="3x3"):
        fv.Pixels((3, 4, 4), color_matrix=np.eye(2))
    # the mixing is applied: raw values along one axis become correlated colours
    q = fv.Pixels((3, 4, 4), sd=0.0)
    with torch.no_grad():
        q.raw[:, 0] = 1.0
    img = torch.logit(q().detach())
    np.testing.assert_allclose(img[0, :, 0, 0].numpy(), q.color[:, 0].numpy(), atol=1e-5)


def test_pixels_init_reproduces_an_image():
    x = torch.rand(1, 3, 6, 6) * 0.8 + 0.1
    p = fv.Pixels((3, 6, 6), init=x)
    torch.testing.assert_close(p(), x, atol=1e-5, rtol=1e-5)


def test_transforms_are_seeded_batched_and_keep_device():
    x = torch.rand(4, 3, 32, 32)
    t = T.standard(32)
    a = t(x, torch.Generator().manual_seed(0))
    b = t(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert a.shape[0] == 4 and a.device == x.device
    assert T.Pad(3)(x, None).shape[-1] == 38
    assert T.Jitter(5)(x, torch.Generator()).shape[-1] == 27
    assert T.Compose([T.Pad(1), T.Jitter(2)])(x, torch.Generator()).shape == x.shape
    rot = T.RandomRotate([90])(x, torch.Generator())
    torch.testing.assert_close(rot, torch.rot90(x, 1, (2, 3)), atol=1e-4, rtol=1e-4)
    same = T.RandomScale([1.0])(x, torch.Generator())
    torch.testing.assert_close(same, x, atol=1e-5, rtol=1e-5)
    # per-image random scales: different images get different zooms
    z = T.RandomScale([0.5, 1.0, 2.0])(
        x[:1].expand(16, -1, -1, -1), torch.Generator().manual_seed(1)
    )
    assert len({round(float(v), 4) for v in z.mean((1, 2, 3))}) > 1
    blurred = T.Blur(1.0)(x, None)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    sig = torch.rand(2, 2, 50)
    assert T.standard(50)(sig, torch.Generator()).shape[:2] == (2, 2)
    assert T.Blur(1.0)(sig, None).shape == sig.shape


def _ctx(acts, images, alpha=None):
    return fv.Context(acts, images, alpha)


def test_objectives_one_value_per_image_and_algebra():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    out = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    imgs = torch.full((2, 1, 2, 2), 0.25)
    ctx = _ctx({"L": a, "out": out}, imgs)
    np.testing.assert_allclose(fv.channel("L", [0, 2])(ctx), [a[0, 0].mean(), a[1, 2].mean()])
    np.testing.assert_allclose(fv.channel("L", 1)(ctx), a[:, 1].mean((1, 2)))
    np.testing.assert_allclose(fv.neuron("L", 1, (0, 1))(ctx), a[:, 1, 0, 1])
    np.testing.assert_allclose(fv.class_logit([2, 2])(ctx), [3.0, 5.0])
    np.testing.assert_allclose(fv.class_prob(2)(ctx), torch.softmax(out, 1)[:, 2], rtol=1e-6)
    np.testing.assert_allclose(fv.direction("L", [0, 0, 2.0])(ctx), a[:, 2].mean((1, 2)))
    np.testing.assert_allclose(fv.deep_dream("L")(ctx), a.pow(2).mean((1, 2, 3)))
    np.testing.assert_allclose(fv.l1(0.5)(ctx), [0.25, 0.25])
    np.testing.assert_allclose(fv.l2(0.0)(ctx), [0.0625, 0.0625])
    assert fv.total_variation()(ctx).abs().max() == 0
    combo = 2 * fv.channel("L", 0) - fv.l1(0.5) / 0.5 + 1
    np.testing.assert_allclose(combo(ctx), 2 * a[:, 0].mean((1, 2)) - 0.5 + 1)
    np.testing.assert_allclose(
        (fv.channel("L", 0) * fv.channel("L", 1))(ctx), a[:, 0].mean((1, 2)) * a[:, 1].mean((1, 2))
    )
    assert combo.layers == ("L",)
    with pytest.raises(iv.InversetError, match="one per image"):
        fv.channel("L", [0, 1, 2])(ctx)
    with pytest.raises(iv.InversetError, match="out of range"):
        fv.channel("L", 7)(ctx)


def test_diversity_prefers_different_images():
    same = torch.ones(3, 4, 5, 5)
    diff = torch.zeros(3, 4, 5, 5)
    for i in range(3):
        diff[i, i] = 1.0
    imgs = torch.zeros(3, 1, 2, 2)
    d_same = fv.diversity("L")(_ctx({"L": same}, imgs))
    d_diff = fv.diversity("L")(_ctx({"L": diff}, imgs))
    np.testing.assert_allclose(d_same, [-1.0] * 3, atol=1e-6)
    np.testing.assert_allclose(d_diff, [0.0] * 3, atol=1e-6)


def test_blur_and_alpha_penalties():
    noisy = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    smooth = torch.full((2, 3, 16, 16), 0.5)
    assert (fv.blur()(_ctx({}, noisy)) > 1e-3).all()
    assert fv.blur()(_ctx({}, smooth)).abs().max() < 1e-10
    alpha = torch.full((2, 1, 16, 16), 0.25)
    np.testing.assert_allclose(fv.alpha_mean()(_ctx({}, smooth, alpha)), [0.25, 0.25])
    with pytest.raises(iv.InversetError, match="alpha=True"):
        fv.alpha_mean()(_ctx({}, smooth))


def test_channel_parsing():
    from inverset.featvis.render import parse_channels

    assert parse_channels("all", 4) == [0, 1, 2, 3]
    assert parse_channels("0-2,7", 8) == [0, 1, 2, 7]
    assert parse_channels(range(2, 4), 8) == [2, 3]
    assert parse_channels(5, 8) == [5]
    with pytest.raises(iv.InversetError, match="out of range"):
        parse_channels("0-9", 8)
    with pytest.raises(iv.InversetError, match="'all'"):
        parse_channels("a-b", 8)


def test_a_vector_input_is_not_rendered_as_a_one_pixel_image():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.raises(iv.InversetError, match=r"\(784, 1\) has no picture axes.*1,28,28"):
        fv.visualize(model, layer="out", channels=[0], input_shape=(784, 1), steps=2)


def test_prob_of_a_model_ending_in_softmax_is_its_output():
    """visualize's 'prob' objective took a softmax of a final Softmax's probabilities: it
    reported 0.316 for an image the model gives 0.281."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
        nn.Softmax(1),
    ).eval()
    r = fv.visualize(
        m,
        "out",
        channels=[0],
        objective="prob",
        size=16,
        steps=20,
        batch_size=1,
        input_shape=(3, 16, 16),
    )
    with torch.no_grad():
        p = float(m(torch.as_tensor(r.x, dtype=torch.float32).reshape(1, 3, 16, 16))[0, 0])
    assert r.value == pytest.approx(p, abs=1e-6)


def test_a_latent_image_gives_a_callable_generator_codes_on_the_given_device():
    """A generator that is a plain function (not a module) gets its codes on the model's
    device (here 'meta', standing in for CUDA), not on the CPU."""
    seen = []

    def gen(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.device)
        return torch.zeros(z.shape[0], 1, 8, 8, device=z.device)

    p = fv.LatentImage(iv.Latent(gen, dim=4), device="meta")
    assert seen == [torch.device("meta")] and p.shape == (1, 8, 8)
