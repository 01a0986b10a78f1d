"""Which axis of a layer's output ``LAYER:c`` reads, the module named ``out``, and models that
return a tuple, list or dict (tiny models built inline)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import inverset as iv
from inverset.model import Activations, forward
from inverset.target import parse_target

torch.set_num_threads(1)


class SeqNet(nn.Module):
    """A Linear and a LayerNorm applied to a sequence (B, 5, 3), then pooled over positions."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.act(self.norm(self.fc1(x))).mean(1))


def _seq() -> SeqNet:
    torch.manual_seed(0)
    return SeqNet().eval()


def _read(model: nn.Module, target: str, x: torch.Tensor) -> torch.Tensor:
    """The target's values at ``x`` after its check, as every query reads them."""
    expr = parse_target(target)
    with torch.no_grad():
        acts = forward(model, x, expr.layers())
        expr.check(acts)
        return expr.evaluate(acts)


def test_linear_on_a_sequence_reads_a_unit_averaged_over_positions():
    """``fc1:2`` of a Linear with output (B, 5, 4) read position 2 (averaged over the 4
    units), and ``fc1:4`` was in range (5 positions): it is unit 2 averaged over the 5
    positions, and unit 4 is out of range of the 4 units."""
    m, x = _seq(), torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = m.fc1(x)
        n = m.norm(h)
    assert torch.allclose(_read(m, "fc1:2", x), h[:, :, 2].mean(1))
    assert torch.allclose(_read(m, "norm:3", x), n[:, :, 3].mean(1))
    assert torch.allclose(_read(m, "fc1:1,2", x), h[:, 1, 2])  # full index: position, unit
    with pytest.raises(iv.InversetError, match=r"fc1:4: unit 4 is out of range; layer 'fc1' "):
        _read(m, "fc1:4", x)
    with pytest.raises(iv.InversetError, match=r"has 4 units \(0..3, its last axis of \(5, 4\)\)"):
        _read(m, "fc1:4", x)


def test_a_query_on_a_sequence_linear_maximizes_the_unit():
    m = _seq()
    r = iv.maximize(m, "fc1:3", iv.Box(-1, 1, shape=(5, 3)), seed=0, starts=2, steps=100)
    with torch.no_grad():
        h = m.fc1(torch.as_tensor(r.x, dtype=torch.float32)[None])[0]
    # a unit of a Linear is linear in the input: its maximum over the box is at a corner
    w, b = m.fc1.weight[3].detach(), float(m.fc1.bias[3].detach())
    assert r.value == pytest.approx(float(h[:, 3].mean()), abs=1e-6)
    assert r.value == pytest.approx(float(w.abs().sum()) + b, abs=1e-4)


def test_conv_layers_keep_channels_on_axis_1():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(3, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6, 2)).eval()
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        c = m[0](x)
    assert torch.allclose(_read(m, "0:5", x), c[:, 5].mean(1))
    with pytest.raises(iv.InversetError, match=r"channel 6 is out of range; layer '0' has 6 "):
        _read(m, "0:6", x)
    info = {i.name: i for i in iv.layers(m, (3, 8))}
    assert info["0"].units == 6 and info["0"].example == "0:0 (channel mean)"


def test_layers_lists_the_units_of_a_sequence_linear():
    info = {i.name: i for i in iv.layers(_seq(), (5, 3))}
    assert info["fc1"].shape == (5, 4) and info["fc1"].units == 4
    assert info["fc1"].example == "fc1:0 (unit mean over positions)"
    assert info["norm"].units == 4 and "unit mean over positions" in info["norm"].example
    # an activation keeps its input's layout: the LayerNorm's units
    assert info["act"].units == 4 and info["act"].example == "act:0 (unit mean over positions)"
    assert info["out"].example == "out:0"


class MLPBlock(nn.Module):
    """A transformer's MLP block (GPT-style): Linear, GELU, dropout, Linear, added to the
    residual stream after a LayerNorm; then a Conv1d over the positions as channels."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(3)
        self.c_fc, self.gelu, self.drop = nn.Linear(3, 8), nn.GELU(), nn.Dropout(0.1)
        self.c_proj = nn.Linear(8, 3)
        self.conv, self.crelu = nn.Conv1d(5, 5, 1), nn.ReLU()

    def mlp(self, x):
        return self.c_proj(self.drop(self.gelu(self.c_fc(self.ln(x)))))

    def forward(self, x):
        h = x + self.mlp(x)
        return self.crelu(self.conv(h)).mean((1, 2)) + h.mean((1, 2))


def test_a_weightless_layer_after_a_sequence_linear_reads_its_units():
    """``gelu:7`` of a GELU after a Linear on a sequence (B, 5, 8) read position 7 (or was
    out of range: 5 positions): it is unit 7 averaged over positions, as ``c_fc:7`` is, and
    so is the dropout after it; a ReLU after a Conv1d keeps the conv's channels on axis 1."""
    torch.manual_seed(0)
    m = MLPBlock().eval()
    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        g = m.gelu(m.c_fc(m.ln(x)))
        c = m.crelu(m.conv(x + m.mlp(x)))
    assert torch.allclose(_read(m, "gelu:7", x), g[:, :, 7].mean(1))
    assert torch.allclose(_read(m, "drop:6", x), g[:, :, 6].mean(1))
    assert torch.allclose(_read(m, "gelu:1 - crelu:4", x), g[:, :, 1].mean(1) - c[:, 4].mean(1))
    info = {i.name: i for i in iv.layers(m, (5, 3))}
    assert (info["gelu"].units, info["drop"].units, info["crelu"].units) == (8, 8, 5)
    assert info["gelu"].example == "gelu:0 (unit mean over positions)"
    # a query raises the unit it names: the GELU's unit 7 ends far above where it started
    r = iv.maximize(m, "gelu:7", iv.Box(-1, 1, shape=(5, 3)), seed=0, starts=2, steps=150)
    with torch.no_grad():
        got = m.gelu(m.c_fc(m.ln(torch.as_tensor(r.x, dtype=torch.float32)[None])))[0]
    assert r.value == pytest.approx(float(got[:, 7].mean()), abs=1e-5)
    assert r.value > float(g[:, :, 7].mean(1).max()) + 0.1


def test_an_rnn_layer_reads_hidden_units_and_names_the_tuple_it_returns():
    torch.manual_seed(0)

    class RNNReg(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 6, batch_first=True)
            self.head = nn.Linear(6, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    m, x = RNNReg().eval(), torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = m.rnn(x)[0]
    assert torch.allclose(_read(m, "rnn:5", x), y[:, :, 5].mean(1))
    with pytest.raises(
        iv.InversetError,
        match=r"has 6 units \(0..5, its last axis of \(5, 6\)\); inverset reads \[0\] of the "
        r"tuple of 2 that the layer returns",
    ):
        _read(m, "rnn:6", x)


class TimeFirst(nn.Module):
    """PyTorch's default recurrent and transformer layers take sequences time-first (L, B, F):
    the model turns its (B, L, F) input around, runs an LSTM, a Linear on every step and a
    transformer layer, and reads the last step."""

    def __init__(self):
        super().__init__()
        self.lstm, self.fc = nn.LSTM(3, 6), nn.Linear(6, 4)
        self.enc = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.0)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        h = self.enc(self.fc(self.lstm(x.transpose(0, 1))[0]))
        return self.head(h[-1])


def test_a_time_first_sequence_layer_is_read_per_input():
    """An LSTM or transformer layer without batch_first=True returns (L, B, H): ``lstm:2`` read
    its first axis as the batch (listed as shape (1, 6); a query crashed with a size mismatch
    traceback): it is unit 2 of each input averaged over its 5 steps. A Linear applied to that
    time-first output cannot be read per input: one line says why, and the listing says so."""
    torch.manual_seed(0)
    m = TimeFirst().eval()
    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        o = m.lstm(x.transpose(0, 1))[0].transpose(0, 1)  # (B, L, H)
        e = m.enc(m.fc(m.lstm(x.transpose(0, 1))[0])).transpose(0, 1)
    assert torch.allclose(_read(m, "lstm:2", x), o[:, :, 2].mean(1))
    assert torch.allclose(_read(m, "enc:3", x), e[:, :, 3].mean(1), atol=1e-6)
    assert torch.allclose(_read(m, "lstm:1,4", x), o[:, 1, 4])
    with pytest.raises(iv.InversetError, match=r"^fc:1: layer 'fc' gives 5 rows \(shape \(5, 3, 4"):
        _read(m, "fc:1", x)
    info = {i.name: i for i in iv.layers(m, (5, 3))}
    assert (info["lstm"].shape, info["enc"].shape) == ((5, 6), (5, 4))
    assert info["fc"].example == "5 rows per input (not batch first): no target"
    r = iv.maximize(m, "lstm:2", iv.Box(-1, 1, shape=(5, 3)), seed=0, starts=4, steps=60)
    with torch.no_grad():
        got = m.lstm(torch.as_tensor(r.x, dtype=torch.float32)[:, None])[0][:, 0, 2].mean()
    assert r.value == pytest.approx(float(got), abs=1e-5)
    assert r.value > float(o[:, :, 2].mean(1).max()) + 0.05


class GPTish(nn.Module):
    """A hand-written GPT-style stack: a Linear input projection plus a position parameter (a
    functional ``+``: the residual stream enters the first block unmarked by any layer), two
    blocks of LayerNorm, nn.MultiheadAttention (its output a tuple) with dropout, LayerNorm,
    Linear, F.gelu and dropout (after a functional activation), Linear, residual adds."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(8), nn.LayerNorm(8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.drop1, self.drop = nn.Dropout(0.1), nn.Dropout(0.1)
            self.fc, self.proj = nn.Linear(8, 16), nn.Linear(16, 8)

        def mlp_in(self, x):
            return nn.functional.gelu(self.fc(self.ln2(x)))

        def forward(self, x):
            h = self.ln1(x)
            x = x + self.drop1(self.attn(h, h, h, need_weights=False)[0])
            return x + self.proj(self.drop(self.mlp_in(x)))

    def __init__(self):
        super().__init__()
        self.wte, self.pos = nn.Linear(3, 8), nn.Parameter(torch.randn(6, 8) * 0.1)
        self.h = nn.ModuleList([GPTish.Block(), GPTish.Block()])
        self.head = nn.Linear(8, 1)

    def stream(self, x, upto: int):
        x = self.wte(x) + self.pos
        for blk in self.h[:upto]:
            x = blk(x)
        return x

    def forward(self, x):
        return self.head(self.stream(x, 2).mean(1))


def test_the_residual_stream_and_layers_after_a_tuple_or_a_function_read_units():
    """``h.1:3``, a block of the residual stream, read position 3 (the stream entering the
    first block comes from a functional +, no layer's output); a dropout after attention (a
    tuple) or after F.gelu read positions too: they are unit c averaged over positions, as the
    LayerNorm and Linear layers that take those tensors in read them. A module swapped in
    after a query is read the same (the layout kept for the model is looked at again)."""
    torch.manual_seed(0)
    m = GPTish().eval()
    x = torch.randn(3, 6, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        s1, s2 = m.stream(x, 1), m.stream(x, 2)
        b = m.h[1]
        a = b.attn(b.ln1(s1), b.ln1(s1), b.ln1(s1), need_weights=False)[0]
        g = b.mlp_in(s1 + a)
    assert torch.allclose(_read(m, "h.1:3", x), s2[:, :, 3].mean(1), atol=1e-6)
    assert torch.allclose(_read(m, "h.0:7", x), s1[:, :, 7].mean(1), atol=1e-6)
    assert torch.allclose(_read(m, "h.1.drop1:5", x), a[:, :, 5].mean(1), atol=1e-6)
    assert torch.allclose(_read(m, "h.1.drop:12", x), g[:, :, 12].mean(1), atol=1e-6)
    info = {i.name: i for i in iv.layers(m, (6, 3))}
    assert [info[n].units for n in ("h.0", "h.1", "h.1.drop1", "h.1.drop")] == [8, 8, 8, 16]
    r = iv.maximize(m, "h.1:3", iv.Box(-1, 1, shape=(6, 3)), seed=0, starts=2, steps=30)
    with torch.no_grad():
        here = m.stream(torch.as_tensor(r.x, dtype=torch.float32)[None], 2)[0, :, 3].mean()
    assert r.value == pytest.approx(float(here), abs=1e-5)
    m.h[1].drop = nn.Dropout(0.0)  # a new module: not in what was kept for this model
    assert torch.allclose(_read(m, "h.1.drop:12", x), g[:, :, 12].mean(1), atol=1e-6)
    with pytest.raises(iv.InversetError, match=r"give a unit, or position,unit within it"):
        _read(m, "h.1:7,0", x)


def test_a_conv_read_by_a_linear_keeps_its_channels_whatever_else_is_read():
    """A Linear applied over a Conv1d's positions (after an in-place ReLU) made the conv and
    its ReLU read their last axis, and only when a weightless layer was in the target too:
    ``0:3`` read two different things alone and beside ``1:0``. A layer with weights keeps its
    own layout; the ReLU keeps the conv's."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Linear(10, 1))
    m = m.eval()
    x = torch.randn(2, 4, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        c = m[0](x)  # what the conv returned, before the in-place ReLU changed it
    assert torch.allclose(_read(m, "0:3", x), c[:, 3].mean(1))
    assert torch.allclose(_read(m, "0:3 + 0*1:0", x), c[:, 3].mean(1))
    assert torch.allclose(_read(m, "1:6", x), c.relu()[:, 6].mean(1))
    info = {i.name: i for i in iv.layers(m, (4, 10))}
    assert (info["0"].units, info["1"].units) == (8, 8)


class TokensPic(nn.Module):
    """Pictures read as tokens: the 8-value rows of a (1, H, W) picture when ``rows`` (it
    takes only multiples of 8 pixels), else the (C,) pixels of a (C, H, W) one (any size);
    then a Linear, F.gelu, dropout and a Linear."""

    def __init__(self, rows: bool):
        super().__init__()
        self.rows, width = rows, 8 if rows else 4
        self.fc, self.drop, self.proj = nn.Linear(width, 12), nn.Dropout(0.1), nn.Linear(12, 3)

    def tokens(self, x):
        return x.reshape(x.shape[0], -1, 8) if self.rows else x.flatten(2).transpose(1, 2)

    def hidden(self, x):
        return nn.functional.gelu(self.fc(self.tokens(x)))

    def forward(self, x):
        return self.proj(self.drop(self.hidden(x))).mean(1)


def test_visualize_with_its_transforms_reads_a_weightless_layer_by_the_whole_pass():
    """The dropout after F.gelu has the Linear's 12 units because the Linear after it reads
    them; feature visualization stops its passes at the layer it reads, so at the sizes its
    padding and scaling make it never saw the rest of the pass and raised positions: its
    images raised units 3 and 9 by 0.007 and 0.014 (from a gray picture), now by 0.09."""
    from inverset import featvis as fv

    torch.manual_seed(0)
    m = TokensPic(rows=False).eval()
    r = fv.visualize(m, "drop", channels=[3, 9], steps=30, input_shape=(4, 32, 32), seed=0)
    with torch.no_grad():
        got = m.hidden(torch.as_tensor(r.xs))[torch.arange(2), :, torch.tensor([3, 9])].mean(1)
        start = m.hidden(torch.full((1, 4, 32, 32), 0.5))[0, :, [3, 9]].mean(0)
    assert torch.allclose(got.double(), torch.as_tensor(r.values), atol=1e-4)
    assert (got > start + 0.05).all(), (got, start)
    # what was kept for the model is intact: a stopped pass wrote its partial answer into it
    y = torch.rand(2, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(_read(m, "drop:9", y), m.hidden(y)[:, :, 9].mean(1))


def test_visualize_resizes_transformed_images_the_model_does_not_take():
    """A model taking only multiples of 8 pixels: the standard transforms' padded 34x34
    images failed in it with a traceback; they go in resized to the 32x32 it took, and the
    message says so."""
    from inverset import featvis as fv

    torch.manual_seed(0)
    m = TokensPic(rows=True).eval()
    r = fv.visualize(m, "drop", channels=[3], steps=10, input_shape=(1, 32, 32), seed=0)
    assert "the model fails on the transforms' 34x34 inputs" in r.message
    assert "every transformed image is resized to 32x32" in r.message
    with torch.no_grad():
        got = m.hidden(torch.as_tensor(r.xs))[0, :, 3].mean()
    assert float(got) == pytest.approx(float(r.values[0]), abs=1e-4)


def test_a_layer_called_with_a_keyword_input_and_a_scalar_output_model_read_units():
    """``act(input=h)``: hooks see no positional input, and the GELU after a Linear on a
    sequence read its positions; a model returning one number (no batch axis) made the row
    check fail with a TypeError."""

    class KwAct(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(3, 4), nn.GELU()

        def forward(self, x):
            return self.act(input=self.fc(x)).sum()

    torch.manual_seed(0)
    m = KwAct().eval()
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = m.act(m.fc(x))
    assert torch.allclose(_read(m, "act:3", x), h[:, :, 3].mean(1))
    assert torch.allclose(_read(m, "fc:1", x), m.fc(x)[:, :, 1].mean(1).detach())


class TimeFirstPic(nn.Module):
    """A picture (1, 4, 4) read as 4 tokens of 4 values by a time-first transformer layer."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.0)
        self.act = nn.GELU()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = self.enc(x.reshape(-1, 4, 4).transpose(0, 1))  # (L, B, E)
        return self.head(self.act(h).mean(0))


def test_layers_with_no_row_per_input_are_refused_by_pictures_and_sampling():
    """Inside a time-first transformer layer, the Linear gives rows of positions: feature
    visualization rendered it with wrong values (or blamed the channel list), and inverse-set
    sampling crashed in its diversity term (its default encoder picked that Linear): one line
    now, and the default encoder picks the transformer layer itself."""
    from inverset import featvis as fv

    torch.manual_seed(0)
    m = TimeFirstPic().eval()
    with pytest.raises(iv.InversetError, match=r"^layer 'enc.linear1' gives 4 rows \(shape \(4, 2"):
        fv.visualize(m, "enc.linear1", channels="all", steps=2, input_shape=(1, 4, 4))
    r = fv.visualize(m, "enc", channels=[1], steps=20, input_shape=(1, 4, 4), param="pixels")
    with torch.no_grad():
        own = m.enc(torch.as_tensor(r.xs).reshape(-1, 4, 4).transpose(0, 1))[:, 0, 1].mean()
    assert r.values[0] == pytest.approx(float(own), abs=1e-5)
    box = iv.Box(0, 1, shape=(1, 4, 4))
    with pytest.raises(iv.InversetError, match=r"layer 'enc.linear1' gives 4 rows"):
        iv.sample(m, "out:0", (-10, 10), n=4, domain=box, encoder="enc.linear1", max_outer=1)
    with torch.no_grad():
        mid = float(m(torch.full((1, 1, 4, 4), 0.5))[0, 0])
    s = iv.sample(m, "out:0", (mid - 0.1, mid + 0.1), n=10, domain=box, seed=0)
    assert s.info["encoder"] == "layer enc" and len(s.xs) == 10
    with torch.no_grad():
        vals = m(torch.as_tensor(s.xs, dtype=torch.float32))[:, 0]
    assert ((vals >= mid - 0.1 - 1e-5) & (vals <= mid + 0.1 + 1e-5)).all()


# ------------------------------------------------------------ a module named 'out'
class OutMid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 4)
        self.out = nn.Linear(4, 3)
        self.head = nn.Linear(3, 1)

    def forward(self, x):
        return self.head(torch.relu(self.out(torch.relu(self.fc1(x)))))


def test_a_module_named_out_that_is_not_the_output_is_the_layer_dot_out():
    """``layers`` listed ('out', 'Linear', (1,)): the module's type with the model output's
    shape, and no target could read the module. It is the layer ``.out``; ``out`` stays the
    model output."""
    torch.manual_seed(0)
    m = OutMid().eval()
    rows = [(i.name, i.kind, i.shape) for i in iv.layers(m, (2,))]
    assert rows == [
        ("fc1", "Linear", (4,)),
        (".out", "Linear", (3,)),
        ("head", "Linear", (1,)),
        ("out", "output", (1,)),
    ]
    assert "out:k reads the model output" in iv.layers(m, (2,))[1].example
    box = iv.Box(-1, 1, shape=(2,))
    r = iv.maximize(m, ".out:2", box, seed=0, starts=4, steps=100)
    x = torch.as_tensor(r.x, dtype=torch.float32)[None]
    with torch.no_grad():
        assert r.value == pytest.approx(float(m.out(torch.relu(m.fc1(x)))[0, 2]), abs=1e-6)
    r = iv.maximize(m, "out:0", box, seed=0, starts=4, steps=100)
    with torch.no_grad():
        assert r.value == pytest.approx(float(m(torch.as_tensor(r.x)[None].float())), abs=1e-6)
    with pytest.raises(iv.InversetError, match=r"unit 3 is out of range; layer '.out' has 3"):
        iv.maximize(m, ".out:3", box, steps=2, starts=1)


def test_a_last_layer_named_out_is_listed_as_the_output_once():
    torch.manual_seed(0)
    m = nn.Module()
    m.fc1, m.out = nn.Linear(2, 4), nn.Linear(4, 3)
    m.forward = lambda x: m.out(torch.relu(m.fc1(x)))
    assert [(i.name, i.kind, i.shape) for i in iv.layers(m, (2,))] == [
        ("fc1", "Linear", (4,)),
        ("out", "Linear", (3,)),
    ]
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(_read(m, ".out:1", x), _read(m, "out:1", x))


# ------------------------------------------------------------ tuple / dict outputs
class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 8)
        self.a = nn.Linear(8, 2)
        self.b = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.a(h), self.b(h)


class DictOut(TupleOut):
    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return {"cls": self.a(h), "reg": self.b(h)}


@pytest.mark.parametrize(
    "cls, read",
    [
        (TupleOut, r"\[0\] of the tuple of 2"),
        (DictOut, r"\['cls'\] of the dict with keys 'cls', 'reg'"),
    ],
)
def test_an_output_index_past_the_first_tensor_names_what_the_model_returns(cls, read):
    """'index 2 is out of range; the model has 2 outputs (0..1)' for a model returning
    (a [2], b [1]) hid that only its first tensor is read, and how to reach the rest."""
    torch.manual_seed(0)
    m = cls().eval()
    box = iv.Box(-1, 1, shape=(3,))
    with pytest.raises(
        iv.InversetError,
        match=rf"out:2: index 2 is out of range; inverset reads {read} that the model returns, "
        r"which has 2 outputs \(0..1\); target another part by the name of the layer that "
        r"computes it",
    ):
        iv.maximize(m, "out:2", box, steps=2, starts=1)
    out_row = iv.layers(m, (3,))[-1]
    assert out_row.name == "out" and out_row.shape == (2,)
    assert out_row.kind == f"output: {read.replace(chr(92), '')} that the model returns"
    r = iv.maximize(m, "b:0", box, seed=0, starts=2, steps=50)
    with torch.no_grad():
        y = m(torch.as_tensor(r.x, dtype=torch.float32)[None])
    other = y[1] if cls is TupleOut else y["reg"]
    assert r.value == pytest.approx(float(other[0, 0]), abs=1e-6)


def test_prob_of_an_output_with_two_axes_is_refused():
    """``prob:1`` of a (B, 2, 3) output took a softmax over all 6 values."""
    torch.manual_seed(0)

    class TwoAxes(nn.Module):
        def __init__(self, rows: int):
            super().__init__()
            self.rows, self.fc = rows, nn.Linear(3, 3 * rows)

        def forward(self, x):
            return self.fc(x).view(-1, self.rows, 3)

    box = iv.Box(-1, 1, shape=(3,))
    with pytest.raises(
        iv.InversetError,
        match=r"prob:1: prob takes a softmax over one axis of classes, and the model output has "
        r"shape \(2, 3\); target a logit \(out:k",
    ):
        iv.maximize(TwoAxes(2).eval(), "prob:1", box, steps=2, starts=1)
    one = TwoAxes(1).eval()  # (B, 1, 3): one axis of classes
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = torch.softmax(one(x)[:, 0], 1)[:, 1]
    assert torch.allclose(_read(one, "prob:1", x), want)
    with pytest.raises(iv.InversetError, match=r"prob:1: prob takes a softmax"):
        _read(TwoAxes(2).eval(), "prob:1", x)


def test_a_copy_of_activations_keeps_their_facts():
    acts = Activations()
    lin, conv = nn.Linear(3, 4), nn.Conv1d(3, 4, 1)
    acts.record("fc", lin, lin(torch.zeros(2, 5, 3)))
    acts.record("conv", conv, (conv(torch.zeros(2, 3, 5)), None))
    acts.probs = "Softmax"
    copy = Activations(acts)
    assert copy.last == {"fc"} and copy.calls == {"fc": 1, "conv": 1}
    assert copy.returned == {"conv": "[0] of the tuple of 2"} and copy.probs == "Softmax"
    assert copy["conv"].shape == (2, 4, 5)


def test_the_exact_solver_reads_units_last_and_the_dot_out_layer():
    """The exact solver compiles ``LAYER:c`` of a Linear applied to a sequence as unit c
    averaged over positions (as the target evaluates it), and finds the module ``.out``."""

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(2, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x))).flatten(1)

    torch.manual_seed(0)
    m = Seq().eval()
    lo = torch.tensor([[-1.0, -1.0], [0.0, 0.5], [-0.5, 0.0]])
    box = iv.Box(lo.numpy(), (lo + 0.5).numpy())
    r = iv.maximize(m, "fc1:2", box, solver="exact")
    # the mean over positions of unit 2 is maximized position by position: a grid per position
    g = torch.linspace(0, 1, 201)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2) * 0.5
    with torch.no_grad():
        best = sum(float(m.fc1(lo[p] + grid)[:, 2].max()) for p in range(3)) / 3
    assert r.status == "optimal" and r.value == pytest.approx(best, abs=1e-3)
    assert r.value >= best - 1e-9

    class SeqAct(Seq):
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x))).flatten(1)

    torch.manual_seed(0)
    m = SeqAct().eval()
    r = iv.maximize(m, "act:1 - act:3", box, solver="exact")
    with torch.no_grad():  # the ReLU's units, as the Linear's: per position, then averaged
        h = torch.relu(m.fc1(lo[:, None] + grid))
        best = float((h[..., 1] - h[..., 3]).max(1).values.mean())
    assert r.status == "optimal" and r.value == pytest.approx(best, abs=1e-3)
    assert r.value >= best - 1e-9

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.ReLU()

        def forward(self, x):
            return x + self.act(self.fc(x))

    class WithRes(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.res, self.fc2 = nn.Linear(2, 4), Res(), nn.Linear(4, 1)

        def forward(self, x):
            return torch.sigmoid(self.fc2(self.res(torch.relu(self.fc1(x)))))

    torch.manual_seed(0)
    m = WithRes().eval()  # a residual block (traced through by torch.fx) is a target too
    r = iv.maximize(m, "res:1", iv.Box(-1, 1, shape=(2,)), solver="exact")
    grid2 = torch.stack(torch.meshgrid(g * 2 - 1, g * 2 - 1, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        best = float(m.res(torch.relu(m.fc1(grid2)))[:, 1].max())
    assert r.status == "optimal" and best - 1e-9 <= r.value <= best + 1e-2

    m = OutMid().eval()
    r = iv.maximize(m, ".out:2", iv.Box(-1, 1, shape=(2,)), solver="exact")
    grid = torch.stack(torch.meshgrid(g * 2 - 1, g * 2 - 1, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        best = float(m.out(torch.relu(m.fc1(grid)))[:, 2].max())
    assert r.status == "optimal" and best - 1e-9 <= r.value <= best + 1e-2


def test_visualize_renders_the_units_of_a_linear_on_patches():
    """A ViT-like model: a Linear on a sequence of patches, and the GELU after it, have 6
    units, not 4 positions; each image raises its unit's mean over the patches (re-evaluated
    on the model)."""
    from inverset import featvis as fv

    class Patches(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.head = nn.Linear(16, 6), nn.GELU(), nn.Linear(6, 3)

        def forward(self, x):
            p = x.reshape(x.shape[0], 1, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).flatten(3)
            h = self.fc(p.reshape(x.shape[0], 4, 16))
            return self.head(self.act(h).mean(1))

    torch.manual_seed(0)
    m = Patches().eval()
    r = fv.visualize(
        m, "fc", channels="all", steps=60, input_shape=(1, 8, 8), param="pixels", transforms="none"
    )
    assert list(r.arrays["targets"]) == list(range(6))
    x = torch.as_tensor(r.xs)
    with torch.no_grad():
        units = m.fc(x.reshape(6, 1, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).flatten(3).flatten(1, 2))
        start = m.fc(torch.full((1, 4, 16), 0.5)).mean(1)[0]
    got = units.mean(1)[torch.arange(6), torch.arange(6)]
    assert torch.allclose(got.double(), torch.as_tensor(r.values), atol=1e-4)
    assert (got > start + 0.1).all()
    # the GELU after it has the same 6 units (it had 4 channels: the patches)
    r = fv.visualize(
        m, "act", channels="all", steps=60, input_shape=(1, 8, 8), param="pixels", transforms="none"
    )
    assert list(r.arrays["targets"]) == list(range(6))
    x = torch.as_tensor(r.xs)
    with torch.no_grad():
        p = x.reshape(6, 1, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).flatten(3).flatten(1, 2)
        got = m.act(m.fc(p)).mean(1)[torch.arange(6), torch.arange(6)]
        start = m.act(m.fc(torch.full((1, 4, 16), 0.5))).mean(1)[0]
    assert torch.allclose(got.double(), torch.as_tensor(r.values), atol=1e-4)
    assert (got > start + 0.1).all()


def test_an_atlas_of_the_dot_out_layer_counts_its_units():
    """``--layer .out`` on a scikit-learn model (whose module out is its output, listed as
    out): the units are counted (it said 'unknown; give the input shape')."""
    from sklearn.neural_network import MLPClassifier

    from inverset.jobs.atlas import expand_targets

    X = torch.rand(40, 4).numpy()
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=20).fit(X, (X[:, 0] * 3).astype(int))
    model = iv.load_model(clf)
    got = expand_targets(model, layer=".out", input_shape=(4,))
    assert [t["target"] for t in got] == [".out:0", ".out:1", ".out:2"]
    # its results' directories do not read as the output's (.out:3 was out_3, as out:3)
    assert [t["key"] for t in got] == ["_out_0", "_out_1", "_out_2"]


def test_the_default_diversity_encoder_of_a_sequence_model_is_its_first_block():
    """The sampler measures diversity at the model's first hidden block: for a transformer
    (its activations functional, inside the layers) that was the ReLU of the output head."""
    from inverset.sampling.encoders import default_layer

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))

        def forward(self, x):
            return self.head(self.encoder(x).mean(1))

    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = nn.LSTM(3, 6, batch_first=True), nn.Linear(6, 1)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    assert default_layer(Enc().eval(), (5, 4)) == "encoder.layers.0"
    assert default_layer(Rec().eval(), (5, 3)) == "lstm"


def test_a_hand_written_norm_keeps_the_units_where_its_input_had_them():
    """A custom RMSNorm (a weight of its own, no known type) after a Linear on a sequence, then
    a GELU: both were read on axis 1 (5 positions; ``act:7`` out of range), as a layer with
    weights was taken to fix its own layout; an unknown module keeps its input's."""

    class RMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc0, self.norm, self.act, self.head = (
                nn.Linear(3, 8),
                RMSNorm(8),
                nn.GELU(),
                nn.Linear(8, 2),
            )

        def forward(self, x):
            return self.head(self.act(self.norm(self.fc0(x))).mean(1))

    torch.manual_seed(0)
    m = Net().eval()
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = m.act(m.norm(m.fc0(x)))
    assert torch.allclose(_read(m, "act:7", x), h[:, :, 7].mean(1))
    info = {i.name: i for i in iv.layers(m, (5, 3))}
    assert (info["norm"].units, info["act"].units) == (8, 8)


def test_the_default_encoder_skips_an_input_projection_before_the_first_block():
    """With the usual input projection (a Linear) before the transformer or LSTM, the default
    diversity encoder was still the output head's ReLU."""
    from inverset.sampling.encoders import default_layer

    class Proj(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(3, 4)
            self.lstm = nn.LSTM(4, 6, batch_first=True)
            self.head = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1))

        def forward(self, x):
            return self.head(self.lstm(self.embed(x))[0][:, -1])

    assert default_layer(Proj().eval(), (5, 3)) == "lstm"
