"""Bad options and unfit models are one-line errors naming the problem and the fix, in the
API and the CLI; images of every PIL mode are read at their true brightness. Untrained
small models only, so every test takes well under a second."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inverset as iv
from inverset import featvis as fv
from inverset.featvis.render import _load_image
from inverset.zoo import DigitsCNN

torch.set_num_threads(1)


def small_cnn() -> nn.Module:
    """An untrained 1x8x8 conv net: layers '0' (conv) .. '4' (the 10 logits)."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10), nn.Identity()
    )
    m.input_shape = (1, 8, 8)
    return m


def grey(h: int = 8, w: int = 8) -> np.ndarray:
    return np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)


@pytest.fixture(scope="module")
def cnn_args(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("fvchecks")
    torch.manual_seed(0)
    torch.save(DigitsCNN().state_dict(), d / "cnn.pt")
    return [str(d / "cnn.pt"), "--factory", "inverset.zoo:DigitsCNN", "--input-shape", "1,8,8"]


# 1. options


@pytest.mark.parametrize(
    ("size", "match"),
    [
        (-3, r"at least 1 pixel per axis, got \(-3, -3\)"),
        (0, "at least 1 pixel"),
        ((8, -1), "at least 1 pixel"),
        (100000, r"100000x100000 is too large: at most 4194304 pixels"),
        (2.5, "whole numbers"),
        ((8, 8, 8), r"3 dims but the model takes 2-D inputs"),
    ],
)
def test_render_sizes_are_checked(size, match):
    with pytest.raises(iv.InversetError, match=match):
        fv.visualize(small_cnn(), layer="0", size=size, steps=1)


@pytest.mark.parametrize("lr", [-1.0, 0.0, float("nan"), float("inf")])
def test_step_sizes_must_be_finite_and_positive(lr):
    with pytest.raises(iv.InversetError, match=r"lr \(--lr\) must be a finite number > 0"):
        fv.visualize(small_cnn(), layer="0", steps=1, lr=lr)
    with pytest.raises(iv.InversetError, match=r"lr \(--lr\) must be a finite number > 0"):
        fv.dream(small_cnn(), grey(), "0", steps=1, octaves=1, lr=lr)


def test_dream_jitter_and_visualize_frames_are_checked():
    with pytest.raises(iv.InversetError, match="jitter must be a whole number of pixels >= 0"):
        fv.dream(small_cnn(), grey(), "0", steps=1, octaves=1, jitter=-2)
    with pytest.raises(iv.InversetError, match="frames must be >= 0"):
        fv.visualize(small_cnn(), layer="0", steps=1, frames=-1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size=-3"], "size (--size) must be at least 1 pixel per axis"),
        (["--size", "100000"], "is too large: at most 4194304 pixels per image"),
        (["--size", "nan"], "--size must be integers separated by commas"),
        (["--size", ","], "--size takes N or H,W"),
        (["--lr=-1"], "lr (--lr) must be a finite number > 0"),
        (["--lr", "nan"], "lr (--lr) must be a finite number > 0"),
        (["--tv", "nan"], "--tv must be a finite number >= 0"),
        (["--diversity=-1"], "--diversity must be a finite number >= 0"),
        (["--layer", "conv1", "--objective", "logit"], "drop --layer (layer=) to render"),
    ],
)
def test_bad_visualize_options_are_one_line_exit_2(run_main, cnn_args, args, message):
    code, out, err = run_main("visualize", *cnn_args, "--steps", 1, "--no-progress", *args)
    assert code == 2, out + err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_dream_lr_is_one_line_exit_2(run_main, cnn_args, tmp_path):
    from PIL import Image

    Image.fromarray((grey() * 255).astype(np.uint8)).save(tmp_path / "g.png")
    code, _, err = run_main(
        "dream", *cnn_args, "--image", tmp_path / "g.png", "--layer", "conv1", "--lr", "nan"
    )
    assert code == 2 and "lr (--lr) must be a finite number > 0" in err


# 2. TorchScript, and forward failures named for what they are


def test_hidden_layers_of_torchscript_name_the_real_problem():
    scripted = torch.jit.script(small_cnn())
    fix = r"TorchScript model, whose hidden layers cannot be hooked.*--factory"
    with pytest.raises(iv.InversetError, match=fix):
        fv.visualize(scripted, layer="0", steps=1, input_shape=(1, 8, 8))
    with pytest.raises(iv.InversetError, match=fix):
        fv.dream(scripted, grey(), "0", steps=1, octaves=1, input_shape=(1, 8, 8))


def test_a_frozen_torchscript_model_says_it_keeps_no_layers_and_how_to_visualize(
    run_main, tmp_path
):
    frozen = torch.jit.freeze(torch.jit.script(small_cnn().eval()))
    fix = (
        r"layer '0' cannot be read: the model is a frozen TorchScript module, which keeps no "
        r"layers; visualize its output \(--layer out / layer='out'\).*--factory"
    )
    with pytest.raises(iv.InversetError, match=fix):
        fv.visualize(frozen, layer="0", steps=1, input_shape=(1, 8, 8))
    with pytest.raises(iv.InversetError, match=fix):
        fv.dream(frozen, grey(), "0", steps=1, octaves=1, input_shape=(1, 8, 8))
    frozen.save(str(tmp_path / "frozen.pt"))
    code, _, err = run_main(
        "visualize", tmp_path / "frozen.pt", "--layer", "conv1", "--input-shape", "1,8,8"
    )
    assert code == 2 and "frozen TorchScript module, which keeps no layers; visualize" in err
    # a name that is no layer of a scripted model: unknown, and its layers (none readable)
    # are not offered
    with pytest.raises(iv.InversetError, match=r"unknown layer 'nope', and a TorchScript"):
        fv.visualize(torch.jit.script(small_cnn()), layer="nope", input_shape=(1, 8, 8))
    with pytest.raises(iv.InversetError, match=r"unknown layer 'nope'; valid layers: 0, 1"):
        fv.visualize(small_cnn(), layer="nope")


class Words(nn.Module):
    def forward(self, x):
        return "not a tensor"


def test_forward_failures_are_not_reported_as_shape_problems():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), Words())
    m.input_shape = (1, 8, 8)
    with pytest.raises(iv.InversetError, match="returned str, not a tensor"):
        fv.visualize(m, layer="0", steps=1)
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(10, 2))
    wrong.input_shape = (1, 8, 8)
    with pytest.raises(iv.InversetError, match=r"fails on a 1x1x8x8 input \(mat1 and mat2.*"):
        fv.visualize(wrong, layer="1", steps=1)


# 3. logit/prob objectives and --layer


def test_a_layer_with_a_class_objective_is_an_error_not_ignored(run_main):
    for obj in ("logit", "prob"):
        with pytest.raises(iv.InversetError, match=f"objective '{obj}' raises the model's output"):
            fv.visualize(small_cnn(), layer="0", objective=obj, steps=1)
    code, out, _ = run_main("visualize", "--help")
    assert code == 0 and "take no --layer" in " ".join(out.split())


# 4. images of any PIL mode


def test_a_16_bit_png_is_read_at_its_true_brightness(tmp_path):
    from PIL import Image

    ramp = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    with Image.open(tmp_path / "ramp16.png") as im:
        assert im.mode.startswith("I")  # really stored as 16-bit
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    r = fv.dream(m, tmp_path / "ramp16.png", "0", steps=1, octaves=1, input_shape=(1, 16, 16))
    orig = r.arrays["original"][0, 0]
    np.testing.assert_allclose(orig, ramp / 65535.0, atol=1e-6)  # was ~1.0 (clipped to white)
    rgb = _load_image(tmp_path / "ramp16.png", 3, 0.0, 1.0)
    assert rgb.shape == (1, 3, 16, 16) and float(rgb.mean()) == pytest.approx(0.5, abs=1e-3)
    np.testing.assert_allclose(_load_image(ramp, 1, 0, 1)[0, 0].numpy(), ramp / 65535.0, atol=1e-6)


def test_every_pil_mode_is_scaled_to_the_unit_range():
    from PIL import Image

    i32 = Image.fromarray(np.full((8, 8), 32768, dtype=np.int32), mode="I")
    assert float(_load_image(i32, 1, 0, 1).mean()) == pytest.approx(32768 / 65535)
    f = Image.fromarray(np.full((8, 8), 0.25, dtype=np.float32), mode="F")
    assert float(_load_image(f, 1, 0, 1).mean()) == pytest.approx(0.25)
    f255 = Image.fromarray(np.full((8, 8), 51.0, dtype=np.float32), mode="F")
    assert float(_load_image(f255, 1, 0, 1).mean()) == pytest.approx(0.2)
    with pytest.raises(iv.InversetError, match=r"outside 0\.\.65535"):
        _load_image(Image.fromarray(np.full((8, 8), -5.0, dtype=np.float32), mode="F"), 1, 0, 1)
    # transparent pixels are composited over white; opaque ones keep their colour
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:4, :, 0], rgba[:4, :, 3] = 255, 255  # top: opaque red; bottom: transparent black
    t = _load_image(Image.fromarray(rgba, mode="RGBA"), 3, 0, 1)[0].numpy()
    np.testing.assert_allclose(
        t[:, :4], np.array([1, 0, 0])[:, None, None].repeat(4, 1).repeat(8, 2)
    )
    np.testing.assert_allclose(t[:, 4:], 1.0)
    la = Image.fromarray(np.stack([np.zeros((8, 8)), np.full((8, 8), 255)], -1).astype(np.uint8))
    assert la.mode == "LA" and float(_load_image(la, 1, 0, 1).max()) == 0.0
    pal = Image.fromarray(np.full((8, 8, 3), [0, 0, 255], dtype=np.uint8)).convert("P")
    blue = _load_image(pal, 3, 0, 1)[0, :, 0, 0].numpy()
    np.testing.assert_allclose(blue, [0, 0, 1])
    # a value range scales the unit range
    assert float(_load_image(f, 1, -1.0, 1.0).mean()) == pytest.approx(-0.5)


# 5. models whose input is no picture


def test_dream_on_a_vector_model_names_the_missing_picture_axes_first():
    tiny = nn.Sequential(nn.Linear(2, 3))
    tiny.input_shape = (2,)
    # the model is the problem: it is refused before the (missing) image is read
    with pytest.raises(iv.InversetError, match=r"\(2,\) has no picture axes.*--input-shape"):
        fv.dream(tiny, "no/such/photo.png", "out", steps=1)
    with pytest.raises(iv.InversetError, match=r"\(2,\) has no picture axes"):
        fv.visualize(tiny, steps=1)


def test_a_few_features_shaped_1x1x5_are_not_rendered_as_a_picture():
    acas_like = nn.Sequential(nn.Flatten(), nn.Linear(5, 5))
    acas_like.input_shape = (1, 1, 5)
    msg = r"\(1, 1, 5\) is a single row or column of values.*inverset maximize"
    with pytest.raises(iv.InversetError, match=msg):
        fv.visualize(acas_like, steps=1)
    with pytest.raises(iv.InversetError, match=msg):
        fv.dream(acas_like, grey(), "out", steps=1)


def test_small_pictures_and_signals_render_and_the_render_size_is_what_is_checked():
    # a 7x7 picture and a length-7 signal are pictures; a fully convolutional model recorded
    # at 7x7 renders at any size asked; a 1x1 render is no picture, whatever the model's shape
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
    conv.input_shape = (1, 7, 7)
    assert fv.visualize(conv, layer="0", steps=1).arrays["images"].shape[-2:] == (7, 7)
    assert fv.visualize(conv, layer="0", size=12, steps=1).arrays["images"].shape[-2:] == (12, 12)
    signal = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    signal.input_shape = (1, 7)
    assert fv.visualize(signal, layer="0", steps=1).arrays["images"].shape[-1] == 7
    with pytest.raises(iv.InversetError, match=r"render shape \(1, 1, 1\) has no picture axes"):
        fv.visualize(conv, layer="0", size=1, steps=1)


# 6. messages for both API and CLI users


@pytest.mark.parametrize(("size", "shape"), [(1, r"\(1, 1, 1\)"), ((1, 8), r"\(1, 1, 8\)")])
def test_a_render_size_that_is_no_picture_names_size_not_input_shape(size, shape):
    with pytest.raises(iv.InversetError, match=shape) as err:
        fv.visualize(small_cnn(), layer="0", size=size, steps=1)
    text = str(err.value)
    assert "give a size of at least 2 pixels per axis: --size N or H,W (size=)" in text
    assert "--input-shape" not in text and "inverset maximize" not in text


def test_messages_name_the_cli_option_and_the_python_argument():
    anysize = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(iv.InversetError, match=r"give --size \(size=.*--input-shape"):
        fv.visualize(anysize, layer="0", steps=1)
    with pytest.raises(
        iv.InversetError, match=r"need 1 value \(the model takes 1 channel\), got 3"
    ):
        fv.visualize(small_cnn(), layer="0", steps=1, mean=[0.1, 0.2, 0.3], std=1.0)
    with pytest.raises(iv.InversetError, match=r"need 1 or 3 values \(one per channel\), got 2"):
        fv.visualize(anysize, size=8, steps=1, mean=[0.1, 0.2], std=1.0, layer="0")


def test_dream_starts_from_a_results_picture_in_its_own_layout():
    """A Result's ``x`` is (C, H, W): numpy arrays were read as (H, W, C) ('image has 8
    channels; the model takes 1'), a batch of one named --size. Both start the dream as is."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)).eval()
    m.input_shape = (1, 8, 8)  # as a loader records it
    x = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1)).numpy()
    for image in (x, x[None], torch.as_tensor(x)[None]):
        r = fv.dream(m, image, layer="1", octaves=1, steps=2)
        assert np.allclose(np.asarray(r.arrays["original"]).reshape(1, 8, 8), x, atol=1e-6)


def test_a_single_output_model_ending_in_squeeze_is_visualized():
    """forward returning y.squeeze() gives a scalar for one picture: 'layer out has no
    channel axis to visualize' (audit 107), where the same net without it rendered."""

    class Squeezed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(72, 1)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1)).squeeze()

    torch.manual_seed(0)
    m = Squeezed().eval()
    r = fv.visualize(m, steps=20, input_shape=(1, 8, 8))
    assert r.query["targets"] == ["logit:0"]
    with torch.no_grad():
        img = torch.as_tensor(r.xs[:1]).float()
        assert float(m(img)) == pytest.approx(float(r.values[0]), abs=1e-4)
        assert float(m(img)) > float(m(torch.full((1, 1, 8, 8), 0.5)))


def test_a_dream_interrupted_in_its_first_octave_still_has_a_frame(monkeypatch, tmp_path):
    """Audit 111: `dream --gif` stopped in its first octave kept no frame, so no GIF was
    written and nothing said why; the GIF now ends on the image it was stopped at."""
    import inverset.featvis.render as render
    from tests.conftest import ctrl_c_on_call

    torch.manual_seed(0)
    ctrl_c_on_call(monkeypatch, render, "_score", 3)
    r = fv.dream(small_cnn(), grey(16, 16), "0", steps=5, octaves=2, frames=True)
    assert r.status == "interrupted"
    assert r.arrays["frames"].shape[0] == 1
    np.testing.assert_array_equal(r.arrays["frames"][0], r.arrays["images"])
    files = fv.save(r, tmp_path, gif=True)
    assert tmp_path / "optimization.gif" in files
