"""The typer app and what every command shares: model loading, domain options, output.

The CLI holds no logic the API lacks: commands parse, call the API, and write the Result.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from inverset.errors import InversetError, missing_package
from inverset.progress import sigterm_as_interrupt
from inverset.result import EMPTY_DIRECTORY, Result, SaveError, output_directory

if TYPE_CHECKING:
    import torch

    from inverset.domain import Box
    from inverset.space import Latent


def plain_flags(command: Any, ctx: Any) -> None:
    """Show on/off options (``--trust``, ``--json``, ``--help``) as plain flags in help: typer
    >= 0.29 labels every flag ``<bool>``, which reads as if it took a value (``--trust true``
    is an error)."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class Group(TyperGroup):
    """The app's command group: every command's help, and its own, shows flags plainly."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            plain_flags(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        plain_flags(self, ctx)
        super().format_help(ctx, formatter)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, EOFError) as exc:
            raise Escaped(exc) from exc


class Escaped(Exception):
    """A KeyboardInterrupt or EOFError out of a command, carried past typer to :func:`main`:
    typer turns the first into a silent exit 130 and the second into its own Abort."""

    def __init__(self, inner: BaseException):
        super().__init__(repr(inner))
        self.inner = inner


app = typer.Typer(
    name="inverset",
    help="Which inputs drive this output, or this hidden neuron, where I want it?",
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _drop_output(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null: its reader went away (``inverset ...
    | head``), and whatever is printed next, or flushed at exit, would fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


class _Console(Console):
    """A console that, when the reader of its output goes away, drops the rest of it and lets
    the command finish with its own exit code: rich exits with 1, which reads as certify's
    'counterexample' or an atlas with a failed target."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _drop_output(self.file)


err = _Console(stderr=True)
out = _Console()


def write_out(text: str) -> None:
    """Write ``text`` (e.g. a --json summary) to stdout; when its reader went away, drop the
    output as :class:`_Console` does, and the command keeps its exit code (click would exit
    with 1)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_output(sys.stdout)


# ---------------------------------------------------------------- shared options
ModelArg = Annotated[
    str,
    typer.Argument(
        help="model file (.onnx, .pt TorchScript/state dict, .joblib) or package.module:factory"
    ),
]
TargetOpt = Annotated[
    str,
    typer.Option(
        "--target", "-t", help="e.g. 'out:0 - out:1', 'fc2:3', 'conv2:5', 'prob:3', 'margin:3'"
    ),
]
BoxOpt = Annotated[str | None, typer.Option("--box", help="LO,HI for every feature (e.g. 0,1)")]
BoxFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--box-file", help="CSV of data (min/max per column) or rows 'lo,...' and 'hi,...'"
    ),
]
IntegerOpt = Annotated[
    str | None,
    typer.Option(
        "--integer", help="integer features: flat indices or feature names, e.g. 2,5 or n_add"
    ),
]
ConstraintsOpt = Annotated[
    Path | None,
    typer.Option(
        "--constraints",
        help="CSV rows a_1..a_n,b meaning a.x <= b (a header row may name the features)",
    ),
]
ShapeOpt = Annotated[
    str | None, typer.Option("--input-shape", help="input shape without batch, e.g. 1,8,8")
]
LabelsOpt = Annotated[Path | None, typer.Option("--labels", help="class names, one per line")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust", help="allow unpickling the model file (runs code: only for files you trust)"
    ),
]
FactoryOpt = Annotated[
    str | None,
    typer.Option(
        "--factory",
        help="package.module:function that builds the model; MODEL is then its state dict",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda:0")]
SeedOpt = Annotated[int, typer.Option("--seed", help="random seed")]
TimeOpt = Annotated[float | None, typer.Option("--time-limit", help="seconds")]
GeneratorOpt = Annotated[
    str | None,
    typer.Option(
        "--generator", help="decoder G (file or package.module:factory): search codes z, x = G(z)"
    ),
]
GeneratorWeightsOpt = Annotated[
    Path | None,
    typer.Option("--generator-weights", help="state dict for a --generator factory"),
]
LatentDimOpt = Annotated[
    str | None,
    typer.Option(
        "--latent-dim",
        help="code size of G, or its shape (8,1,1 for a DCGAN's codes; default: recorded on G)",
    ),
]


def given_only(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """An option's value when given (command line or environment), None when left at its
    default: a default must not pass for a request (``--latent-bound`` without a generator)."""
    source = ctx.get_parameter_source(param.name or "")
    return None if source is not None and source.name.startswith("DEFAULT") else value


LatentBoundOpt = Annotated[
    float | None,
    typer.Option(
        "--latent-bound",
        help="codes of --generator lie in [-B, B]^dim (default 3)",
        callback=given_only,
        show_default=False,
    ),
]


def out_path(text: Any) -> Path:
    """``--out`` as typed: an empty one is refused (as a Path it is the current directory)."""
    if not str(text).strip():
        raise typer.BadParameter(EMPTY_DIRECTORY)
    return Path(text)


def checked_out(path: Path | None) -> Path | None:
    """``--out`` checked before any work: an existing file there, or a directory that cannot be
    made or written, is an error now, not after a search whose result could then not be saved."""
    if path is not None:
        output_directory(path, create=False)
    return path


def out_option(help: str) -> Any:
    """The ``--out DIR`` option (``help`` says what goes there): refused when empty, checked
    before any work."""
    return typer.Option(
        "--out", "-o", help=help, parser=out_path, metavar="<path>", callback=checked_out
    )


OutOpt = Annotated[Path | None, out_option("directory for result.json, result.npz and pictures")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print a machine-readable summary on stdout")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar")]


def parse_floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InversetError(f"{what} must be numbers separated by commas, got {text!r}") from None


def parse_ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InversetError(f"{what} must be integers separated by commas, got {text!r}") from None


def parse_shape(
    text: str | None,
    option: str = "--input-shape",
    what: str = "one input's",
    example: str = "1,28,28",
) -> tuple[int, ...] | None:
    """``--input-shape`` (or ``option``): one input's shape, whole numbers >= 1 (None when
    not given)."""
    if text is None:
        return None
    shape = parse_ints(text, option)
    if not shape or min(shape) < 1 or any(not part.strip() for part in text.split(",")):
        raise InversetError(
            f"{option} takes {what} shape without the batch axis, whole numbers >= 1 "
            f"(e.g. {option} {example}), got {text!r}"
        )
    return tuple(shape)


def not_empty(text: str | None, option: str, example: str) -> str | None:
    """An option's text, refused when given empty (``--box "$BOX"`` with BOX unset): taken as
    not given, it would search another domain than the one meant."""
    if text is not None and not text.strip():
        raise InversetError(f"{option} is empty; give e.g. {option} {example}, or leave it out")
    return text


def load_cli_model(
    model: str,
    trust: bool = False,
    factory: str | None = None,
    device: str = "auto",
    input_shape: str | None = None,
) -> torch.nn.Module:
    """Load MODEL as the commands do (factory + state dict, pickles only with --trust)."""
    from inverset.loaders import load_model, resolve_device

    shape = parse_shape(input_shape)
    dev = resolve_device(device)
    if factory:
        return load_model(factory, weights=model, input_shape=shape, device=dev)
    return load_model(model, trust=trust, input_shape=shape, device=dev)


def build_domain(
    box: str | None,
    box_file: Path | None,
    integer: str | None,
    constraints: Path | None,
    input_shape: str | None = None,
    model: torch.nn.Module | None = None,
) -> Box:
    """The Box the options describe (bounds, integers, linear constraints, shape). With
    ``model``, per-feature bounds must be as many as the inputs it records it takes, and when
    it knows its feature names, a box file's header, a constraints file's header and
    ``--integer NAME`` are matched to them; indices and headerless columns follow the model's
    order."""
    from inverset.domain import Box, read_constraints
    from inverset.problem import check_box_size, feature_names

    model_names = feature_names(model) if model is not None else None
    box = not_empty(box, "--box", "0,1")
    integer = not_empty(integer, "--integer", "0,3")
    if box and box_file:
        raise InversetError("give either --box or --box-file, not both")
    if box_file:
        base = Box.from_csv(box_file).aligned(model_names, f"box file {box_file}")
    elif box:
        v = parse_floats(box, "--box")
        if len(v) != 2:
            raise InversetError(
                f"--box takes LO,HI (two numbers), got {box!r}; per-feature bounds go in --box-file"
            )
        base = Box(v[0], v[1])
    else:
        base = Box()
    names = model_names or base.names
    given = parse_shape(input_shape)
    shape = given or (getattr(model, "input_shape", None) if model is not None else None)
    # (a box of another size is an error, which the warning would only precede)
    fits = shape is None or math.prod(shape) == len(base.names or ())
    if box_file and model is not None and model_names is None and base.names and fits:
        err.print(
            f"warning: the model records no feature names, so the columns of {box_file} are "
            f"taken as its inputs in file order ({', '.join(base.names[:3])}"
            f"{', ...' if len(base.names) > 3 else ''}); check that the model takes this order",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    kw: dict[str, Any] = {}
    if integer:
        kw["integer"] = parse_features(integer, names)
    if constraints:
        kw["A"], kw["b"] = read_constraints(constraints, names)
    if given:
        kw["shape"] = given
    lo, hi = (base.lower, base.upper) if base.shape is not None else (base.lo, base.hi)
    domain = Box(lo, hi, names=base.names, **kw)
    if model is not None and not given:
        where = f"box file {box_file}" if box_file else "box"
        check_box_size(domain, getattr(model, "input_shape", None), where)
    return domain


def parse_features(text: str, names: list[str] | None) -> list[int]:
    """``--integer``: flat indices of features, or their names (the model's, else the box
    file's header)."""
    out = []
    for v in (v.strip() for v in text.split(",")):
        if not v:
            continue
        try:
            out.append(int(v))
            continue
        except ValueError:
            pass
        if names is None or v not in names:
            known = (
                f"the features are {', '.join(names)}" if names else "the features have no names"
            )
            raise InversetError(
                f"--integer takes feature indices or names separated by commas, got {v!r}; {known}"
            )
        out.append(names.index(v))
    return out


#: MODEL's loading options as a loading error names them, and the generator's own
_GENERATOR_OPTIONS = (
    ("as MODEL without --factory", "as --generator without --generator-weights"),
    (
        "--factory package.module:function",
        "--generator package.module:function --generator-weights FILE",
    ),
    ("--factory", "--generator"),
    ("as MODEL", "as --generator"),
)


def _for_generator(message: str) -> str:
    """A model-loading error about the generator, its fix in the generator's options (a
    state dict goes with --generator-weights, not MODEL's --factory)."""
    for model_option, generator_option in _GENERATOR_OPTIONS:
        message = message.replace(model_option, generator_option)
    return f"the generator: {message}"


def latent_space(
    generator: str | None,
    weights: Path | None,
    dim: str | None,
    bound: float | None,
    *,
    model: torch.nn.Module,
    trust: bool = False,
    device: str = "auto",
) -> Latent | None:
    """The ``Latent`` space the generator options describe (None without ``--generator``):
    G loaded as MODEL is (a file, or a factory with ``--generator-weights``), on ``model``'s
    device, its code size from ``--latent-dim`` or recorded on G, its bound ``--latent-bound``
    when given (else Latent's own); a generator option without ``--generator`` is refused."""
    from inverset.model import model_device
    from inverset.space import Latent

    shape = parse_shape(dim, "--latent-dim", "a code's size or", "8, or 8,1,1")
    if bound is not None and not 0 < bound < math.inf:
        raise InversetError(
            f"--latent-bound must be a positive number (codes lie in [-B, B]), got {bound}"
        )
    if generator is None:
        given = [
            name
            for name, value in (
                ("--generator-weights", weights),
                ("--latent-dim", shape),
                ("--latent-bound", bound),
            )
            if value is not None
        ]
        if given:
            raise InversetError(f"{given[0]} applies to a generator; give --generator too")
        return None
    from inverset.loaders import load_model

    try:
        if weights is not None:
            g = load_model(generator, weights=weights)
        else:
            g = load_cli_model(generator, trust, None, device)
    except InversetError as exc:
        raise InversetError(_for_generator(str(exc))) from None
    g = g.to(model_device(model))
    if shape is None:
        shape = getattr(g, "latent_dim", None)
        recorded = getattr(g, "input_shape", None)
        if shape is None and recorded is not None and len(recorded) == 1:
            shape = int(recorded[0])
    if shape is None:
        raise InversetError(
            "the generator's code size is unknown; give --latent-dim (e.g. --latent-dim 8)"
        )
    return Latent(g, shape) if bound is None else Latent(g, shape, bound=bound)


def parse_options(options: list[str] | None) -> dict[str, Any]:
    """``key=value`` solver options; values parsed as int, float, bool, ``None`` (also
    ``null``; not ``none``, which feature visualization's ``transforms=none`` means), a tuple
    of numbers (``mutation=0.5,1.0``) or kept as text."""
    result: dict[str, Any] = {}
    for item in options or []:
        if "=" not in item:
            raise InversetError(f"--option takes key=value, got {item!r}")
        k, v = item.split("=", 1)
        if k in result:
            raise InversetError(
                f"--option {k} is given twice ({k}={result[k]!r} and {item}); give it once"
            )
        if v in ("None", "null"):
            result[k] = None
            continue
        low = v.lower()
        if low in ("true", "false"):
            result[k] = low == "true"
            continue
        result[k] = _number(v)
        if isinstance(result[k], str) and "," in v:
            parts = [_number(p) for p in v.split(",")]
            if not any(isinstance(p, str) for p in parts):
                result[k] = tuple(parts)
    return result


def _number(v: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            continue
    return v


def finish(
    result: Result,
    out_dir: Path | None,
    as_json: bool,
    names: list[str] | None = None,
    *,
    failed: SaveError | None = None,
    note: str | None = None,
) -> None:
    """Print the Result, save it (then pictures) and exit as it ended: a save that failed
    (here, or ``failed`` in the command's own call) is a one-line error after the printed
    result (exit 2), an interrupted search, or a Ctrl-C while saving, exits 130. The table
    comes first, so that a save that fails or is stopped never takes the answer with it
    (``--json`` prints its summary after the save, which it names). ``note`` is a line
    printed after the table."""
    if not as_json:
        print_result(result, names)
        if note:
            out.print(note, markup=False, highlight=False)
    saved, files, cut = None, ["result.json", "result.npz"], False
    try:
        if out_dir is not None and failed is None:
            try:
                saved = result.save(out_dir)
            except SaveError as exc:  # the answer is printed all the same, then the error
                failed = exc
        if saved is not None:
            from inverset.report.pictures import write_pictures

            try:
                files += [p.name for p in write_pictures(result, out_dir, names)]
            except Exception as exc:  # pictures are extras; the result is already on disk
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                err.print(f"[yellow]warning:[/] pictures not written ({escape(why)})")
    except KeyboardInterrupt:  # a Ctrl-C or SIGTERM while writing: what is on disk stands
        cut = True
    if as_json:
        summary = result.summary()
        if saved is not None:
            summary["out"] = str(saved)
        write_out(json.dumps(summary) + "\n")
    elif saved is not None:
        done = "" if not cut else " (stopped while writing the pictures)"
        out.print(
            f"saved to {saved}/ ({', '.join(files)}){done}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    where = "" if saved is not None else f"; {out_dir}/ holds no new result"
    exit_as_ended(result, failed, cut, where)


def exit_as_ended(
    result: Result, failed: SaveError | None = None, cut: bool = False, where: str = ""
) -> None:
    """The end of a command that printed its result, then saved it: a Ctrl-C while saving
    (``cut``; ``where`` says what is on disk) and an interrupted search exit 130, a failed
    save is its one-line error (exit 2)."""
    if cut:
        err.print(f"interrupted while saving{escape(where)}")
        raise typer.Exit(INTERRUPTED)
    if failed is not None:
        raise failed
    if result.status == "interrupted":
        raise typer.Exit(INTERRUPTED)


def print_result(result: Result, names: list[str] | None = None) -> None:
    """The result's table, then its best input's features when as few as a summary holds
    (SUMMARY_X), else where to find them."""
    import numpy as np

    from inverset.result import SUMMARY_X

    t = Table(show_header=False, box=None)
    t.add_row("status", f"[bold]{result.status}[/]")
    t.add_row("value", f"{result.value:.6g}" if result.value is not None else "-")
    if result.bound is not None:
        t.add_row("bound", _bound_text(result))
        t.add_row("gap", f"{result.gap:.3g}" if result.gap is not None else "-")
    t.add_row("evaluations", str(result.nfev))
    t.add_row("time", f"{result.timings.get('total', 0):.2f} s")
    if result.message:
        t.add_row("message", escape(result.message))
    out.print(t)
    if result.x is not None:
        from inverset.report.pictures import picture_shape

        x = np.asarray(result.x).reshape(-1)
        names = names or result.query.get("domain", {}).get("names")
        picture = picture_shape(np.shape(result.x), names) is not None
        if x.size > SUMMARY_X or picture:
            shape = "x".join(map(str, np.shape(result.x)))
            out.print(
                f"{result.x_label}: {x.size} values (shape {shape}), "
                + ("a picture" if picture else "too many to list here")
                + f"; --out DIR saves them (result.npz, "
                f"{'inputs.png' if picture else 'best_input.png'}), --json prints "
                + (f"the first {SUMMARY_X}" if x.size > SUMMARY_X else "them"),
                highlight=False,
            )
        else:
            names = names or [f"x[{i}]" for i in range(x.size)]
            xt = Table(title=result.x_label, box=None)
            xt.add_column("feature")
            xt.add_column("value", justify="right")
            for n, v in zip(names, x, strict=False):
                xt.add_row(escape(str(n)), f"{v:.6g}")
            out.print(xt)


def _bound_text(result: Result) -> str:
    """A bound to 6 digits, or as many more as tell it apart from a range's or reach value's
    ends (a bound 19.99998 below [20, 25] is no "20", which reads as reachable)."""
    goal = result.query.get("goal") or {}
    ends = [goal.get(k) for k in ("low", "high", "value")]
    ends = [float(e) for e in ends if isinstance(e, int | float) and math.isfinite(e)]
    b = float(result.bound)
    near = min(ends, key=lambda e: abs(e - b), default=None)
    if near is None or b == near or not math.isfinite(b):
        return f"{b:.6g}"
    from inverset.exact.solver import shown_apart

    return shown_apart(b, near)


def _click_errors() -> tuple[type[Exception], ...]:
    """Usage errors of click and of the copy of click that typer >= 0.29 carries instead of
    depending on it (missing or unknown options, bad values, unknown commands)."""
    kinds: list[type[Exception]] = []
    with contextlib.suppress(ImportError):
        import click

        kinds.append(click.ClickException)
    with contextlib.suppress(ImportError):
        from typer._click.exceptions import ClickException

        kinds.append(ClickException)
    return tuple(kinds)


#: exit code of an unexpected exception (answers use 0, 1 and 3; bad input 2)
INTERNAL_ERROR = 4
#: exit code of a command stopped by Ctrl-C or SIGTERM (the shell's 128 + SIGINT)
INTERRUPTED = 130


def internal_error(exc: BaseException) -> NoReturn:
    """A bug: its traceback, and a code no command gives an answer (certify: 0-3)."""
    import traceback

    traceback.print_exception(exc)
    err.print("[red]internal error[/] (the traceback above is a bug in inverset; please report it)")
    sys.exit(INTERNAL_ERROR)


def _given_once(args: list[str]) -> None:
    """Refuse an option of one value given twice (click keeps the last without a word:
    ``-t logit:3 -t logit:4`` searched logit:4 alone). Tokens are read as click reads them:
    an option's value is skipped, whatever it looks like (``--value -t``)."""
    import typer.main

    group = typer.main.get_command(app)
    name = next((a for a in args if not a.startswith("-")), None)
    command = getattr(group, "commands", {}).get(name)
    if command is None:
        return
    options = {}  # option string -> its parameter
    for param in command.params:
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if opt.startswith("-"):
                options[opt] = param
    counts: dict[str, int] = {}
    rest, i = args[args.index(name) + 1 :], 0
    while i < len(rest) and rest[i] != "--":
        a = rest[i]
        param, attached = options.get(a), False
        if param is None and a.startswith("--") and "=" in a:
            param, attached = options.get(a.split("=", 1)[0]), True
        elif param is None and a[:1] == "-" and a[1:2] != "-" and len(a) > 2:
            param, attached = options.get(a[:2]), True  # -tout:0
        i += 1
        if param is None:
            continue
        flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
        if not flag and not attached:
            i += 1  # its value, even one that starts with '-'
        if not flag and not getattr(param, "multiple", False):
            counts[param.name] = counts.get(param.name, 0) + 1
            if counts[param.name] == 2:
                opts = "/".join(o for o in param.opts if o.startswith("-"))
                hint = (
                    "; several targets go in one expression (-t 'out:0 + out:1'), or use "
                    "`inverset atlas` for one search each"
                    if param.name == "target"
                    else ""
                )
                raise InversetError(f"{opts} is given twice; give it once{hint}")


def main() -> None:
    """Entry point: one-line errors with exit code 2, never a traceback for bad input."""
    from inverset.cli import register

    try:
        register()
        _given_once(sys.argv[1:])
        with sigterm_as_interrupt():  # a terminated command keeps its answer, as on Ctrl-C
            rv = app(standalone_mode=False, prog_name="inverset")
    except InversetError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except _click_errors() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # plain `inverset`: a request for help
            text = exc.format_message()  # empty when rich has printed the help already
            if text.strip():
                out.print(text, markup=False, highlight=False)
            sys.exit(0)
        err.print(f"[red]error:[/] {escape(exc.format_message())}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Escaped as exc:
        if not isinstance(exc.inner, KeyboardInterrupt):
            internal_error(exc.inner)
        err.print("interrupted")
        sys.exit(INTERRUPTED)
    except KeyboardInterrupt:  # while the commands are imported
        err.print("interrupted")
        sys.exit(INTERRUPTED)
    except ModuleNotFoundError as exc:  # an optional package a command needs: one line
        missing = missing_package(exc, "this command")
        if missing is None:
            internal_error(exc)
        err.print(f"[red]error:[/] {escape(str(missing))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        internal_error(exc)
    sys.exit(rv if isinstance(rv, int) else 0)
