"""``inverset certify``: prove a bound on a target over a box, or find a counterexample."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from inverset.cli.app import (
    BoxFileOpt,
    BoxOpt,
    ConstraintsOpt,
    DeviceOpt,
    FactoryOpt,
    IntegerOpt,
    JsonOpt,
    LabelsOpt,
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
    load_cli_model,
    out,
)
from inverset.errors import InversetError

PROVEN, COUNTEREXAMPLE, NO_INPUT, UNDECIDED = 0, 1, 2, 3


@app.command()
def certify(
    model: ModelArg,
    target: TargetOpt,
    below: Annotated[
        float | None, typer.Option("--below", help="prove target < C everywhere in the box")
    ] = None,
    above: Annotated[
        float | None, typer.Option("--above", help="prove target > C everywhere in the box")
    ] = None,
    box: BoxOpt = None,
    box_file: BoxFileOpt = None,
    integer: IntegerOpt = None,
    constraints: ConstraintsOpt = None,
    input_shape: ShapeOpt = None,
    labels: LabelsOpt = None,
    method: Annotated[
        str, typer.Option("--method", help="auto, bab (input splits), relu (ReLU splits), milp")
    ] = "auto",
    milp_solver: Annotated[str, typer.Option("--milp-solver", help="highs or scip")] = "highs",
    time_limit: TimeOpt = None,
    seed: SeedOpt = 0,
    trust: TrustOpt = False,
    factory: FactoryOpt = None,
    device: DeviceOpt = "auto",
    out_dir: OutOpt = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = True,
) -> int:
    """Prove the target stays below (or above) C on the box, or find a counterexample.

    Uses the exact solver (ReLU networks).

    Exit code 0: proven (the result's bound is a certified max/min on the wrong side of C);
    1: counterexample found (its input and value are in the result);
    3: undecided within the time limit; 2: bad input, or a domain no input satisfies (the
    box, integer features and constraints together: the claim would hold vacuously);
    4: an internal error (a bug, with its traceback).
    """
    from inverset.api import in_range
    from inverset.exact.solver import (
        shown,
        shown_apart,
        without_point_note,
        without_solver_hint,
    )
    from inverset.problem import feature_names
    from inverset.target import read_labels

    if (below is None) == (above is None):
        raise InversetError("give exactly one of --below C or --above C")
    c = below if below is not None else above
    if not math.isfinite(c):
        raise InversetError(f"--below/--above takes a finite number C, got {c}")
    m = load_cli_model(model, trust, factory, device, input_shape)
    domain = build_domain(box, box_file, integer, constraints, input_shape, model=m)
    # the claim fails exactly when the complementary range is reachable
    bad = (below, math.inf) if below is not None else (-math.inf, above)
    try:
        result = in_range(
            m,
            target,
            bad,
            domain,
            solver="exact",
            labels=read_labels(str(labels)) if labels else None,
            seed=seed,
            time_limit=time_limit,
            progress=progress and not as_json,
            method=method,
            milp_solver=milp_solver,
        )
    except InversetError as exc:  # a fix naming an option of the queries, not of certify
        why = without_solver_hint(str(exc))
        if why == str(exc):  # not about the exact solver (e.g. infeasible constraints)
            raise
        raise type(exc)(
            f"{why}; certify needs the exact solver (for a search without a proof: inverset "
            "maximize/minimize --solver gradient)"
        ) from None
    side = f"< {shown(below)}" if below is not None else f"> {shown(above)}"
    if result.status == "unreachable":
        code = PROVEN
        # the proof is the answer; the point beside it is no nearest one
        result.message = without_point_note(result.message)
        verdict = f"PROVEN: {target} {side} on the whole domain ({result.message})"
    elif result.status == "found":
        code = COUNTEREXAMPLE
        v = shown_apart(result.value, c)
        verdict = f"COUNTEREXAMPLE: {target} = {v} at the input below, not {side}"
    elif result.status == "infeasible":
        code = NO_INPUT
        verdict = (
            f"NO INPUT: {result.message}; nothing to certify (check the box, --integer and "
            "--constraints)"
        )
    else:
        code = UNDECIDED
        verdict = f"UNDECIDED ({result.status}): {result.message}"
    result.info["certify"] = {"claim": f"{target} {side}", "verdict": verdict.split(":")[0]}
    if not as_json:
        out.print(verdict, markup=False)
    finish(result, out_dir, as_json, domain.names or feature_names(m))
    return code
