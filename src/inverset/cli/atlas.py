"""Atlas commands: ``inverset atlas`` (a resumable job of many targets, optionally on Ray)
and ``inverset report`` (rebuild its HTML pages from the saved results)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from inverset.cli.app import (
    INTERRUPTED,
    BoxFileOpt,
    BoxOpt,
    ConstraintsOpt,
    DeviceOpt,
    FactoryOpt,
    IntegerOpt,
    JsonOpt,
    ModelArg,
    ProgressOpt,
    SeedOpt,
    ShapeOpt,
    TrustOpt,
    app,
    build_domain,
    err,
    load_cli_model,
    out,
    out_option,
    parse_floats,
    parse_options,
    write_out,
)
from inverset.cli.core import add_options, refuse_own_parameters
from inverset.errors import InversetError

#: how to set each parameter of ``inverset.jobs.atlas`` whose flag is not ``--`` its name
ATLAS_FLAGS = {
    "model": "give the model as the MODEL argument",
    "out": "use --out",
    "targets": "use --target",
    "domain": "use --box, --box-file, --integer and --constraints",
    "runner": "use --ray or --workers",
    "ray_address": "use --ray ADDRESS",
    "progress": "use --progress/--no-progress",
    "report": "the command always writes the report (in Python: iv.atlas(..., report=False))",
    "on_result": "it is set in Python only (iv.atlas(..., on_result=))",
}


def check_atlas_options(opts: dict[str, Any]) -> None:
    """``--option`` takes options of the mode's call only: a parameter of the job itself
    (seed, batch, ...; passed twice, it was a TypeError) is a one-line error naming its flag."""
    from inverset.jobs import atlas as run_atlas

    refuse_own_parameters(
        opts,
        run_atlas,
        "an option of the mode's call",
        ATLAS_FLAGS,
        lambda key: "use --" + key.replace("_", "-"),
    )


def parse_ranges(texts: list[str] | None) -> list[tuple[float, float]] | None:
    """``['0.5,1', '1,2']`` or ``['0.5,1;1,2']`` -> ``[(0.5, 1.0), (1.0, 2.0)]``."""
    if not texts:
        return None
    out_: list[tuple[float, float]] = []
    for text in texts:
        for part in text.split(";"):
            if not part.strip():
                continue
            v = parse_floats(part, "--ranges")
            if len(v) != 2:
                raise InversetError(f"--ranges takes z1,z2 per range (e.g. 0.5,1), got {part!r}")
            out_.append((v[0], v[1]))
    return out_


def parse_ray(model: str, extra: list[str]) -> tuple[str, bool, str | None]:
    """(model, use_ray, address) from MODEL and the arguments typer left over, which may only
    be ``--ray``, ``--ray ADDRESS`` or ``--ray=ADDRESS`` (typer has no optional-value option)."""
    extra = list(extra)
    if model == "--ray" or model.startswith("--ray="):
        # --ray came before MODEL: typer took it for MODEL and left the positionals over
        address = model.split("=", 1)[1] if "=" in model else None
        if any(a.startswith("-") for a in extra) or not 1 <= len(extra) <= (1 if address else 2):
            raise InversetError(
                f"cannot tell MODEL from {' '.join([model, *extra])}; write MODEL first"
            )
        if len(extra) == 2:
            address = extra.pop(0)
        return extra[0], True, address or None
    if not extra:
        return model, False, None
    head = extra[0]
    if head == "--ray" and len(extra) <= 2 and not any(a.startswith("-") for a in extra[1:]):
        return model, True, extra[1] if len(extra) == 2 else None
    if head.startswith("--ray=") and len(extra) == 1:
        return model, True, head.split("=", 1)[1] or None
    raise InversetError(f"unknown option or argument {' '.join(extra)}; see inverset atlas --help")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def atlas(
    ctx: typer.Context,
    model: ModelArg,
    out_dir: Annotated[
        Path,
        out_option("job directory: DIR/<target>/, DIR/index.html"),
    ],
    layer: Annotated[
        str | None, typer.Option("--layer", "-l", help="layer whose channels/units to take")
    ] = None,
    channels: Annotated[
        str | None,
        typer.Option("--channels", "-c", help="'all' (default with --layer), 0-15 or 0,3,5-7"),
    ] = None,
    classes: Annotated[
        str | None, typer.Option("--classes", help="output classes, e.g. 0-9 or 0-999")
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", help="an explicit target (repeatable)")
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="maximize, minimize, visualize or sample")
    ] = "maximize",
    ranges: Annotated[
        list[str] | None,
        typer.Option("--ranges", help="sample mode: z1,z2 (repeatable, or z1,z2;z3,z4)"),
    ] = None,
    box: BoxOpt = None,
    box_file: BoxFileOpt = None,
    integer: IntegerOpt = None,
    constraints: ConstraintsOpt = None,
    input_shape: ShapeOpt = None,
    solver: Annotated[str, typer.Option("--solver", help="maximize/minimize solver")] = "gradient",
    steps: Annotated[int | None, typer.Option("--steps", help="optimizer steps")] = None,
    starts: Annotated[int | None, typer.Option("--starts", help="gradient: starts")] = None,
    n: Annotated[
        int | None, typer.Option("-n", "--n", help="sample mode: samples per target")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="key=value for the mode's call")
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch-size", "--batch", help="visualize: channels rendered per call (8)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="parallel worker processes (with --ray: local CPUs)"),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch threads per target")] = 1,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="seconds per target")
    ] = None,
    job_time_limit: Annotated[
        float | None,
        typer.Option(
            "--job-time-limit",
            help="seconds for the job from its first target's start: no target starts after "
            "(each run starts at least one)",
        ),
    ] = None,
    seed: SeedOpt = 0,
    trust: TrustOpt = False,
    factory: FactoryOpt = None,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Run one query per target and save each result in DIR/<target>/; rerun to resume.

    Targets: the channels of a layer, classes, or targets x ranges. DIR/index.html shows them.

    --ray [ADDRESS] runs the targets as Ray tasks.

    Alone, --ray starts a local Ray cluster with --workers CPUs.

    With an ADDRESS (auto, HOST:6379, ray://HOST:10001), it joins that cluster.

    Ctrl-C or SIGTERM stops the job cleanly; rerun to resume.

    Exit status: 0 done (or --job-time-limit), 1 a target failed, 2 bad input, 130 interrupted.
    """
    from inverset.jobs import atlas as run_atlas

    model, use_ray, address = parse_ray(model, ctx.args)
    opts = parse_options(option)
    check_atlas_options(opts)
    add_options(opts, steps=steps, starts=starts, n=n)
    m = load_cli_model(model, trust, factory, device, input_shape)
    domain = build_domain(box, box_file, integer, constraints, input_shape, model=m)
    summary = run_atlas(
        m,
        out_dir,
        layer=layer,
        channels=channels,
        classes=classes,
        targets=target,
        mode=mode,
        ranges=parse_ranges(ranges),
        domain=domain,
        solver=solver,
        seed=seed,
        batch=batch,
        time_limit=time_limit,
        job_time_limit=job_time_limit,
        runner="ray" if use_ray else None,
        workers=workers,
        ray_address=address,
        threads=threads,
        progress=progress and not as_json,
        **opts,
    )
    if as_json:
        write_out(
            json.dumps(
                {
                    "status": summary.status,
                    "total": summary.total,
                    "done": summary.done,
                    "finished": summary.finished,
                    "skipped": summary.skipped,
                    "failed": summary.failed,
                    "remaining": summary.remaining,
                    "elapsed": summary.elapsed,
                    "runner": summary.runner,
                    "out": str(summary.out),
                    "index": str(summary.index) if summary.index else None,
                }
            )
            + "\n"
        )
    else:
        out.print(summary.describe(), highlight=False)
        if summary.index is not None:
            out.print(f"atlas: {summary.index}", highlight=False)
    if summary.status == "interrupted":
        raise typer.Exit(INTERRUPTED)
    if summary.failed:  # under --job-time-limit too: a script checking $? must see them
        raise typer.Exit(1)


@app.command()
def report(
    directory: Annotated[
        Path, typer.Argument(help="the --out directory of an atlas job, or of one query")
    ],
) -> None:
    """(Re)build DIR/index.html: an atlas's pages and pictures, or one query's page.

    For an atlas job, every target's page and pictures from the saved results (a target whose
    result is unreadable or not the job's is shown as such, with a warning); for one query's
    --out, its page with the pictures saved beside it.
    """
    from inverset.report.html import build_report

    def warn(message: str) -> None:
        err.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    with err.status("building the pages"):
        index = build_report(directory, warn=warn)
    what = "report" if (index.parent / "result.json").is_file() else "atlas"
    out.print(f"{what}: {index}", highlight=False)
