"""Core commands: layers, maximize, minimize, reach, range, demo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

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
    OutOpt,
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
    out,
    out_option,
    parse_floats,
    parse_options,
    write_out,
)
from inverset.errors import InversetError

if TYPE_CHECKING:
    from inverset.goal import Goal

SolverOpt = Annotated[
    str,
    typer.Option(
        "--solver",
        help="gradient, exact, basinhopping, annealing, evolution, swarm, cmaes, bayes, auto",
    ),
]
StartsOpt = Annotated[int | None, typer.Option("--starts", help="gradient: parallel starts")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="gradient: Adam steps")]
MaxEvalsOpt = Annotated[int | None, typer.Option("--max-evals", help="model evaluation budget")]
OptionOpt = Annotated[
    list[str] | None, typer.Option("--option", help="solver option key=value (repeatable)")
]


@app.command()
def layers(
    model: ModelArg,
    input_shape: ShapeOpt = None,
    trust: TrustOpt = False,
    factory: FactoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List every layer a target can name, with its output shape."""
    import torch

    from inverset.model import layers as list_layers

    m = load_cli_model(model, trust, factory, "auto", input_shape)
    infos = list_layers(m)
    if as_json:
        write_out(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "kind": i.kind,
                        "shape": list(i.shape) if i.shape else None,
                        "calls": i.calls,
                    }
                    for i in infos
                ]
            )
            + "\n"
        )
        return
    shape = getattr(m, "input_shape", None)
    t = Table(title=f"{model}  (input shape {tuple(shape) if shape else 'unknown'})")
    # names are what a target must spell: folded onto more lines, never cut
    t.add_column("layer", overflow="fold")
    t.add_column("type", overflow="fold")
    t.add_column("output shape", overflow="fold")
    t.add_column("target example", overflow="fold")
    for i in infos:
        example = i.example
        t.add_row(
            escape(i.name),
            i.kind,
            str(tuple(i.shape)) if i.shape is not None else "?",
            escape(example),
        )
    out.print(t)
    if any(isinstance(mod, torch.jit.ScriptModule) for mod in m.modules()):
        out.print(
            "TorchScript layers cannot be hooked, so they are not listed and cannot be targets; "
            "load the model as an nn.Module (--factory with a state dict) or ONNX to target them",
            markup=False,
        )


#: how to set each parameter of ``inverset.api.solve`` that is not a solver option
QUERY_OPTIONS = {
    "model": "give the model as the MODEL argument",
    "target": "use --target",
    "goal": "use the command (maximize, minimize, reach --value, range --range)",
    "domain": "use --box, --box-file, --integer and --constraints",
    "solver": "use --solver",
    "space": "use --generator (with --latent-dim, --latent-bound)",
    "input_shape": "use --input-shape",
    "labels": "use --labels",
    "constraints": "ranges of other targets are set in Python (iv.solve(..., constraints=)); "
    "linear constraints A x <= b go in --constraints",
    "seed": "use --seed",
    "time_limit": "use --time-limit",
    "max_evals": "use --max-evals",
    "progress": "use --progress/--no-progress",
}


def refuse_own_parameters(
    opts: dict, fn: Callable, what: str, how: dict[str, str], other: Callable[[str], str]
) -> None:
    """``--option`` passes options through ``fn`` (the query, the atlas job) to what it runs:
    a parameter of ``fn`` itself is a one-line error saying it is not ``what`` and how to set
    it (``how[key]``, else ``other(key)``)."""
    import inspect

    params = inspect.signature(fn).parameters
    for key in opts:
        p = params.get(key)
        if p is not None and p.kind is not p.VAR_KEYWORD:
            raise InversetError(f"--option {key}=... is not {what}; {how.get(key) or other(key)}")


def check_solver_options(opts: dict) -> None:
    """``--option`` takes solver options only: a parameter of the query itself (seed, time
    limit, ...) is a one-line error naming the option that sets it."""
    from inverset.api import solve

    refuse_own_parameters(
        opts, solve, "a solver option", QUERY_OPTIONS, lambda _: "the command's own options set it"
    )


def add_options(opts: dict[str, Any], **given: Any) -> dict[str, Any]:
    """Add the first-class options given (``starts=`` of ``--starts``; None: not given) to the
    ``--option`` pairs ``opts``; one set both ways is a one-line error naming both."""
    for key, value in given.items():
        if value is None:
            continue
        if key in opts:
            flag = "--" + key.replace("_", "-")
            raise InversetError(
                f"{flag} {value} and --option {key}={opts[key]} both set {key}; give one of them"
            )
        opts[key] = value
    return opts


def _run(
    goal: Goal,
    model,
    target,
    box,
    box_file,
    integer,
    constraints,
    input_shape,
    labels,
    latent,
    solver,
    starts,
    steps,
    time_limit,
    max_evals,
    seed,
    option,
    trust,
    factory,
    device,
    out_dir,
    as_json,
    progress,
) -> None:
    from inverset.api import solve
    from inverset.problem import feature_names
    from inverset.target import read_labels

    opts = add_options(parse_options(option), starts=starts, steps=steps)
    check_solver_options(opts)
    m = load_cli_model(model, trust, factory, device, input_shape)
    domain = build_domain(box, box_file, integer, constraints, input_shape, model=m)
    space = latent_space(*latent, model=m, trust=trust, device=device)
    result = solve(
        m,
        target,
        goal,
        domain,
        solver=solver,
        space=space,
        labels=read_labels(str(labels)) if labels else None,
        seed=seed,
        time_limit=time_limit,
        max_evals=max_evals,
        progress=progress and not as_json,
        **opts,
    )
    names = domain.names or feature_names(m)
    finish(result, out_dir, as_json, names)


def _command(goal_kind: str, doc: str):
    def command(
        model: ModelArg,
        target: TargetOpt,
        box: BoxOpt = None,
        box_file: BoxFileOpt = None,
        integer: IntegerOpt = None,
        constraints: ConstraintsOpt = None,
        input_shape: ShapeOpt = None,
        labels: LabelsOpt = None,
        generator: GeneratorOpt = None,
        generator_weights: GeneratorWeightsOpt = None,
        latent_dim: LatentDimOpt = None,
        latent_bound: LatentBoundOpt = 3.0,
        solver: SolverOpt = "gradient",
        starts: StartsOpt = None,
        steps: StepsOpt = None,
        time_limit: TimeOpt = None,
        max_evals: MaxEvalsOpt = None,
        seed: SeedOpt = 0,
        option: OptionOpt = None,
        trust: TrustOpt = False,
        factory: FactoryOpt = None,
        device: DeviceOpt = "auto",
        out_dir: OutOpt = None,
        as_json: JsonOpt = False,
        progress: ProgressOpt = True,
    ) -> None:
        from inverset.goal import Goal

        _run(
            Goal(goal_kind),
            model,
            target,
            box,
            box_file,
            integer,
            constraints,
            input_shape,
            labels,
            (generator, generator_weights, latent_dim, latent_bound),
            solver,
            starts,
            steps,
            time_limit,
            max_evals,
            seed,
            option,
            trust,
            factory,
            device,
            out_dir,
            as_json,
            progress,
        )

    command.__doc__ = doc
    return command


app.command("maximize")(
    _command("maximize", "Find inputs that make the target as large as possible.")
)
app.command("minimize")(
    _command("minimize", "Find inputs that make the target as small as possible.")
)


@app.command()
def reach(
    model: ModelArg,
    target: TargetOpt,
    value: Annotated[float, typer.Option("--value", help="the target value to reach")],
    box: BoxOpt = None,
    box_file: BoxFileOpt = None,
    integer: IntegerOpt = None,
    constraints: ConstraintsOpt = None,
    input_shape: ShapeOpt = None,
    labels: LabelsOpt = None,
    generator: GeneratorOpt = None,
    generator_weights: GeneratorWeightsOpt = None,
    latent_dim: LatentDimOpt = None,
    latent_bound: LatentBoundOpt = 3.0,
    solver: SolverOpt = "gradient",
    starts: StartsOpt = None,
    steps: StepsOpt = None,
    time_limit: TimeOpt = None,
    max_evals: MaxEvalsOpt = None,
    seed: SeedOpt = 0,
    option: OptionOpt = None,
    trust: TrustOpt = False,
    factory: FactoryOpt = None,
    device: DeviceOpt = "auto",
    out_dir: OutOpt = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Find inputs whose target is as close as possible to --value."""
    from inverset.goal import Goal

    _run(
        Goal.reach(value),
        model,
        target,
        box,
        box_file,
        integer,
        constraints,
        input_shape,
        labels,
        (generator, generator_weights, latent_dim, latent_bound),
        solver,
        starts,
        steps,
        time_limit,
        max_evals,
        seed,
        option,
        trust,
        factory,
        device,
        out_dir,
        as_json,
        progress,
    )


@app.command("range")
def range_(
    model: ModelArg,
    target: TargetOpt,
    range_: Annotated[str, typer.Option("--range", help="z1,z2: the target must lie inside")],
    box: BoxOpt = None,
    box_file: BoxFileOpt = None,
    integer: IntegerOpt = None,
    constraints: ConstraintsOpt = None,
    input_shape: ShapeOpt = None,
    labels: LabelsOpt = None,
    generator: GeneratorOpt = None,
    generator_weights: GeneratorWeightsOpt = None,
    latent_dim: LatentDimOpt = None,
    latent_bound: LatentBoundOpt = 3.0,
    solver: SolverOpt = "gradient",
    starts: StartsOpt = None,
    steps: StepsOpt = None,
    time_limit: TimeOpt = None,
    max_evals: MaxEvalsOpt = None,
    seed: SeedOpt = 0,
    option: OptionOpt = None,
    trust: TrustOpt = False,
    factory: FactoryOpt = None,
    device: DeviceOpt = "auto",
    out_dir: OutOpt = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Find inputs whose target lies between z1 and z2 (--range z1,z2)."""
    z = parse_floats(range_, "--range")
    if len(z) != 2:
        raise InversetError(f"--range takes z1,z2 (two numbers), got {range_!r}")
    from inverset.goal import Goal

    _run(
        Goal.range(*z),
        model,
        target,
        box,
        box_file,
        integer,
        constraints,
        input_shape,
        labels,
        (generator, generator_weights, latent_dim, latent_bound),
        solver,
        starts,
        steps,
        time_limit,
        max_evals,
        seed,
        option,
        trust,
        factory,
        device,
        out_dir,
        as_json,
        progress,
    )


@app.command()
def demo(
    out_dir: Annotated[Path, out_option("where pictures go")] = Path("demo_out"),
    seed: SeedOpt = 0,
) -> None:
    """Train two small models on bundled data and ask them questions (no downloads)."""
    from inverset.demo import run_demo

    run_demo(out_dir, seed=seed, console=out)
