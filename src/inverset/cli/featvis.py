"""Feature visualization commands: ``inverset visualize`` and ``inverset dream``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from inverset.cli.app import (
    DeviceOpt,
    FactoryOpt,
    JsonOpt,
    ModelArg,
    OutOpt,
    ProgressOpt,
    SeedOpt,
    ShapeOpt,
    TrustOpt,
    app,
    exit_as_ended,
    load_cli_model,
    out,
    parse_floats,
    parse_ints,
    write_out,
)
from inverset.errors import InversetError
from inverset.result import SaveError

LayerOpt = Annotated[str, typer.Option("--layer", "-l", help="layer name (see `inverset layers`)")]
RangeOpt = Annotated[str, typer.Option("--range", help="LO,HI: the model's valid input range")]
MeanOpt = Annotated[
    str | None,
    typer.Option("--mean", help="input normalization mean per channel, e.g. .485,.456,.406"),
]
StdOpt = Annotated[str | None, typer.Option("--std", help="input normalization std per channel")]


def _range(text: str) -> tuple[float, float]:
    v = parse_floats(text, "--range")
    if len(v) != 2:
        raise InversetError(f"--range takes LO,HI, got {text!r}")
    return v[0], v[1]


def _weight(value: float, option: str) -> None:
    """A penalty or bonus weight is a finite number >= 0 (NaN would make every value NaN)."""
    if not (math.isfinite(value) and value >= 0):
        raise InversetError(f"{option} must be a finite number >= 0 (0 turns it off), got {value}")


def _report(result, out_dir: Path | None, as_json: bool, gif: bool) -> None:
    """Print the images' result, then save it: a save that fails is a one-line error after
    the printed values (exit 2), an interrupted run or a Ctrl-C while saving exits 130
    (``--json`` prints its summary after the save)."""
    from inverset.featvis.render import save

    if not as_json:
        out.print(result.message, markup=False)
        for label, v in zip(result.info.get("labels", []), result.values, strict=False):
            out.print(f"  {label:<24} {float(v):.4g}", markup=False)
        out.print(f"time {result.timings.get('total', 0):.1f} s")
    files, failed, cut = [], None, False
    try:
        files = save(result, out_dir, gif=gif) if out_dir is not None else []
    except SaveError as exc:
        failed = exc
    except KeyboardInterrupt:  # a Ctrl-C or SIGTERM while writing: what is on disk stands
        cut = True
    if as_json:
        summary = result.summary()
        summary["targets"] = result.info.get("labels")
        summary["values"] = [float(v) for v in result.values]
        if files:
            summary["out"] = str(out_dir)
        write_out(json.dumps(summary) + "\n")
    elif files:
        out.print("saved " + ", ".join(str(f) for f in files))
    exit_as_ended(result, failed, cut)


@app.command()
def visualize(
    model: ModelArg,
    layer: LayerOpt = "out",
    channels: Annotated[
        str, typer.Option("--channels", "-c", help="'all', 'A-B' or 'a,b,c' (units of the layer)")
    ] = "all",
    objective: Annotated[
        str | None,
        typer.Option(
            "--objective",
            help="channel, neuron, logit, prob or dream (default: channel; logit for out); "
            "logit and prob render output classes, so they take no --layer",
        ),
    ] = None,
    size: Annotated[
        str | None, typer.Option("--size", help="render size: N or H,W (default: the model's)")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="optimization steps")] = 256,
    param: Annotated[str, typer.Option("--param", help="fourier or pixels")] = "fourier",
    transforms: Annotated[
        str, typer.Option("--transforms", help="standard (Lucid's, scaled to size) or none")
    ] = "standard",
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per batch")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (> 0)")] = 0.05,
    tv: Annotated[float, typer.Option("--tv", help="total-variation penalty weight (>= 0)")] = 0.0,
    diversity: Annotated[float, typer.Option("--diversity", help="diversity weight (>= 0)")] = 0.0,
    alpha: Annotated[bool, typer.Option("--alpha", help="semi-transparent images (RGBA)")] = False,
    gif: Annotated[bool, typer.Option("--gif", help="also write optimization.gif")] = False,
    value_range: RangeOpt = "0,1",
    mean: MeanOpt = None,
    std: StdOpt = None,
    input_shape: ShapeOpt = None,
    trust: TrustOpt = False,
    factory: FactoryOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
    out_dir: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Render one image per unit of a layer that maximizes it (labelled grid in --out)."""
    from inverset import featvis as fv

    _weight(tv, "--tv")
    _weight(diversity, "--diversity")
    m = load_cli_model(model, trust, factory, device, input_shape)
    extra = None
    if tv:
        extra = -tv * fv.total_variation()
    if diversity:
        d = diversity * fv.diversity(layer)
        extra = d if extra is None else extra + d
    sz = None
    if size is not None:
        v = parse_ints(size, "--size")
        if not v:
            raise InversetError(f"--size takes N or H,W (whole numbers), got {size!r}")
        sz = v[0] if len(v) == 1 else v
    result = fv.visualize(
        m,
        layer=layer,
        channels=channels,
        objective=objective,
        size=sz,
        steps=steps,
        param=param,
        transforms=transforms,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        value_range=_range(value_range),
        mean=parse_floats(mean, "--mean") if mean else None,
        std=parse_floats(std, "--std") if std else None,
        extra=extra,
        alpha=alpha,
        frames=16 if gif else 0,
        progress=progress and not as_json,
    )
    _report(result, out_dir, as_json, gif)


@app.command()
def dream(
    model: ModelArg,
    image: Annotated[
        Path,
        typer.Option(
            "--image",
            help="photo to dream on (PNG/JPEG), a .npy array of pixel values, or a result's"
            " directory (--out of visualize or dream: its image)",
        ),
    ],
    layer: LayerOpt,
    octaves: Annotated[int, typer.Option("--octaves", help="number of octaves")] = 4,
    octave_scale: Annotated[float, typer.Option("--octave-scale", help="size ratio")] = 1.4,
    steps: Annotated[int, typer.Option("--steps", help="steps per octave")] = 20,
    lr: Annotated[float, typer.Option("--lr", help="step size (normalized gradient, > 0)")] = 0.02,
    gif: Annotated[bool, typer.Option("--gif", help="also write optimization.gif")] = False,
    value_range: RangeOpt = "0,1",
    mean: MeanOpt = None,
    std: StdOpt = None,
    input_shape: ShapeOpt = None,
    trust: TrustOpt = False,
    factory: FactoryOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
    out_dir: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deep Dream: amplify what a layer sees in a photo, octave by octave."""
    from inverset import featvis as fv

    m = load_cli_model(model, trust, factory, device, input_shape)
    result = fv.dream(
        m,
        image,
        layer,
        octaves=octaves,
        octave_scale=octave_scale,
        steps=steps,
        lr=lr,
        seed=seed,
        value_range=_range(value_range),
        mean=parse_floats(mean, "--mean") if mean else None,
        std=parse_floats(std, "--std") if std else None,
        frames=gif,
        progress=progress and not as_json,
    )
    _report(result, out_dir, as_json, gif)
