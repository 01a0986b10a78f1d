"""``inverset sample``: many diverse inputs whose target lies in a range (inverse-set sampling)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inverset.cli.app import (
    BoxFileOpt,
    BoxOpt,
    ConstraintsOpt,
    DeviceOpt,
    FactoryOpt,
    GeneratorOpt,
    GeneratorWeightsOpt,
    IntegerOpt,
    JsonOpt,
    LabelsOpt,
    LatentBoundOpt,
    LatentDimOpt,
    ModelArg,
    ProgressOpt,
    SeedOpt,
    ShapeOpt,
    TargetOpt,
    TimeOpt,
    TrustOpt,
    app,
    build_domain,
    finish,
    latent_space,
    load_cli_model,
    out_option,
    parse_floats,
    parse_options,
)
from inverset.errors import InversetError
from inverset.result import SaveError

#: parameters of the sampler that this command sets itself: not options (--option n=5 would
#: collide with -n)
CLI_PARAMETERS = (
    "model",
    "target",
    "range",
    "n",
    "domain",
    "space",
    "encoder",
    "intersect",
    "K",
    "seed",
    "out",
    "resume",
    "time_limit",
    "progress",
    "input_shape",
    "labels",
    "callback",
)


def parse_range(text: str, what: str = "--range") -> tuple[float, float]:
    v = parse_floats(text, what)
    if len(v) != 2:
        raise InversetError(f"{what} takes z1,z2 (two numbers), got {text!r}")
    return v[0], v[1]


def parse_intersect(text: str) -> tuple[str, float, float]:
    """``'fc1:3:0.5,1.0'`` -> ``('fc1:3', 0.5, 1.0)`` (the range follows the last colon)."""
    target, sep, rng = text.rpartition(":")
    if not sep or not target or "," not in rng:
        raise InversetError(f"--intersect takes TARGET:z1,z2 (e.g. 'fc1:3:0.5,1.0'), got {text!r}")
    z1, z2 = parse_range(rng, "--intersect")
    return target, z1, z2


@app.command()
def sample(
    model: ModelArg,
    target: TargetOpt,
    range_: Annotated[str, typer.Option("--range", help="z1,z2: the target's range")],
    n: Annotated[int, typer.Option("-n", "--n", help="number of samples")] = 500,
    intersect: Annotated[
        list[str] | None,
        typer.Option("--intersect", help="TARGET:z1,z2 every sample must also meet (repeatable)"),
    ] = None,
    generator: GeneratorOpt = None,
    generator_weights: GeneratorWeightsOpt = None,
    latent_dim: LatentDimOpt = None,
    latent_bound: LatentBoundOpt = 3.0,
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder", help="E for diversity: a layer name or 'identity' (default: first block)"
        ),
    ] = None,
    walkers: Annotated[int, typer.Option("-K", "--walkers", help="seeds / walkers per step")] = 10,
    box: BoxOpt = None,
    box_file: BoxFileOpt = None,
    integer: IntegerOpt = None,
    constraints: ConstraintsOpt = None,
    input_shape: ShapeOpt = None,
    labels: LabelsOpt = None,
    time_limit: TimeOpt = None,
    seed: SeedOpt = 0,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", help="sampler option key=value, e.g. step=0.05 (repeatable)"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue the run saved in --out up to -n")
    ] = False,
    trust: TrustOpt = False,
    factory: FactoryOpt = None,
    device: DeviceOpt = "auto",
    out_dir: Annotated[
        Path | None,
        out_option("directory: samples are written there as accepted"),
    ] = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Sample the inverse set: -n diverse inputs with z1 <= TARGET <= z2 (Hada et al.)."""
    from inverset.sampling import sample as run_sample
    from inverset.solvers import check_options
    from inverset.target import read_labels
    from inverset.zoo import MAX_SEARCH_SEED, check_seed

    z1, z2 = parse_range(range_)
    opts = parse_options(option)
    check_options("the sampler", run_sample, opts, exclude=CLI_PARAMETERS)
    check_seed(seed, MAX_SEARCH_SEED)
    m = load_cli_model(model, trust, factory, device, input_shape)
    domain = build_domain(box, box_file, integer, constraints, input_shape, model=m)
    space = latent_space(
        generator,
        generator_weights,
        latent_dim,
        latent_bound,
        model=m,
        trust=trust,
        device=device,
    )
    failed = None
    try:
        result = run_sample(
            m,
            target,
            (z1, z2),
            n,
            domain,
            space=space,
            encoder=encoder,
            intersect=[parse_intersect(t) for t in intersect or []],
            K=walkers,
            seed=seed,
            out=out_dir,
            resume=resume,
            time_limit=time_limit,
            progress=progress and not as_json,
            labels=read_labels(str(labels)) if labels else None,
            **opts,
        )
    except SaveError as exc:  # the samples are shown all the same, then the error (the
        result, failed = exc.result, exc  # final save's, or the store's as they came)
    i = result.info
    div = i.get("diversity")
    why = [
        f"{i[k]} {what}"
        for k, what in (
            ("too_close", "near-copies of recent samples"),
            ("duplicates", "copies of accepted samples"),
        )
        if i.get(k)
    ]
    of = f", on {i['diversity_of']}" if "diversity_of" in i else ""
    note = (
        f"generated {i.get('generated', 0)}, accepted {i.get('stored', i.get('accepted', 0))}"
        + (f" ({i['accepted']} returned)" if "stored" in i else "")
        + f", rejected {i.get('rejected', 0)}"
        + (f" ({', '.join(why)})" if why else "")
        + f"; steps: {i.get('seed_steps', 0)} seeding "
        f"({i.get('outer_iterations', 0)} outer) + {i.get('sample_steps', 0)} sampling; "
        f"diversity (mean pairwise E-distance, {i.get('encoder')}{of}) "
        + (f"{div:.4g}" if div is not None else "-")
    )
    finish(result, out_dir, as_json, failed=failed, note=note)
