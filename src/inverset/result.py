"""The one answer shape every solver returns (modelled on scipy's ``OptimizeResult``)."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inverset.errors import InversetError
from inverset.files import PICTURES, remove_pictures, replacing

#: What a status means. Every solver uses these words and no others.
STATUSES = {
    "optimal": "global optimum proven: gap within tolerance",
    "converged": "local search finished; best point found, no global proof",
    "time_limit": "time limit reached; best point so far (and bound, if any) returned",
    "max_evals": "evaluation budget reached; best point so far returned",
    "step_limit": "the solver's iteration cap came before its own convergence test passed; "
    "best point so far returned",
    "found": "points satisfying the goal (reach/range) were found",
    "not_found": "no point satisfying the goal was found within the budget (no proof)",
    "unreachable": "proven: no input in the domain satisfies the goal; see bound",
    "infeasible": "the domain itself is empty",
    "interrupted": "stopped by the user; what was found so far is returned",
}


#: how many features of the best input a summary holds (``x``, or ``x_summary`` when longer)
SUMMARY_X = 64

#: the error for an empty directory name (as a Path it would silently be the current directory)
EMPTY_DIRECTORY = (
    "the output directory is empty; give a directory path (e.g. --out runs/a, or --out . for "
    "the current directory)"
)


def _copy_of(arrays: dict[str, np.ndarray], name: str) -> str | None:
    """The key of another array equal to ``arrays[name]`` (same shape, dtype and values), or
    None: a visualization's ``xs`` is often its ``arrays/images``, hundreds of MB at 512 px."""
    a = arrays.get(name)
    if a is None:
        return None
    for key, b in arrays.items():
        if key != name and b.shape == a.shape and b.dtype == a.dtype and np.array_equal(a, b):
            return key
    return None


def output_directory(path: str | Path, create: bool = True) -> Path:
    """``path`` as a directory to write into (made when ``create``, else only checked by making
    and removing what is missing); a one-line error when it or one of its parents is an
    existing file, or it cannot be made or written, so no search runs only to fail at saving."""
    if not str(path).strip():
        raise InversetError(EMPTY_DIRECTORY)
    d = Path(path)
    try:  # a name too long for the file system fails already in exists()
        for p in (d, *d.parents):
            if p.exists() and not p.is_dir():
                where = "is" if p == d else f"is inside {p}, which is"
                raise InversetError(
                    f"output directory {d} {where} a file; give a directory path (e.g. --out "
                    "runs/a)"
                )
        if create:
            d.mkdir(parents=True, exist_ok=True)
        else:
            _check_writable(d)
    except OSError as exc:
        raise InversetError(
            f"cannot write to output directory {d} ({exc.strerror or type(exc).__name__}); "
            "give a directory you can write to (e.g. --out runs/a)"
        ) from None
    return d


def _check_writable(d: Path) -> None:
    """Raise OSError unless ``d`` can be made (the missing part is made, then removed again)
    and a file written in it: the only sure test (root ignores permissions, /proc refuses)."""
    import tempfile

    missing = [p for p in (d, *d.parents) if not p.exists()]
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=d):
            pass
    finally:
        for p in missing:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()


#: how result.json writes a float JSON has no number for: ``{"__float__": "inf"}``,
#: ``{"__float__": "-inf"}`` or ``{"__float__": "nan"}`` (strict JSON, never a string that
#: could also be a label)
FLOAT_TAG = "__float__"


def _jsonable(v: Any, tagged: bool = False) -> Any:
    """``v`` as JSON-ready data (arrays and numpy scalars as lists and numbers). A non-finite
    float becomes ``{FLOAT_TAG: "inf" | "-inf" | "nan"}`` when ``tagged`` (result.json, read
    back exactly by :func:`_unjson`); else ``"inf"``/``"-inf"`` and None for NaN, the form of
    job.json and a sampling run's state.json, which are compared with earlier runs' copies."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x, tagged) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x, tagged) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist(), tagged)
    if isinstance(v, np.generic):
        return _jsonable(v.item(), tagged)
    if isinstance(v, float) and not math.isfinite(v):
        text = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if tagged:
            return {FLOAT_TAG: text}
        return None if text == "nan" else text
    return v


def _unjson(v: Any) -> Any:
    """Inverse of :func:`_jsonable` with ``tagged``, through nested dicts and lists: every
    ``{FLOAT_TAG: ...}`` back to its float; strings are left as they are."""
    if isinstance(v, dict):
        if len(v) == 1 and v.get(FLOAT_TAG) in ("inf", "-inf", "nan"):
            return float(v[FLOAT_TAG])
        return {k: _unjson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unjson(x) for x in v]
    return v


def stored_floats(v: Any) -> np.ndarray:
    """Numbers as a query in a result.json may hold them (nested lists of numbers, the
    ``"inf"``/``"-inf"`` strings of older files, None for NaN) as a float array."""

    def one(a: Any) -> float:
        try:
            return float(a)
        except (TypeError, ValueError):
            return math.nan

    cells = np.asarray(math.nan if v is None else v, dtype=object)
    return np.vectorize(one, otypes=[float])(cells)


def _number(v: Any) -> Any:
    """A number field of result.json (value, bound, gap): :func:`_unjson`, and the
    ``"inf"``/``"-inf"`` strings older files wrote there."""
    return float(v) if v in ("inf", "-inf") else _unjson(v)


def clamped_bound(sense: float, bound: float, value: float) -> tuple[float, float]:
    """(bound, gap) in the target's sense from a bound on ``sense * target``: the bound
    certifies the network in exact arithmetic, the value is the model's own (float32)
    evaluation, which may exceed it by rounding, so the bound is kept at or beyond it."""
    bound = sense * max(bound, sense * value) + 0.0  # never -0.0 (a dead unit's bound)
    return bound, max(sense * (bound - value), 0.0) + 0.0


#: errors of a write into --out that the user can fix (full disk or quota, read-only)
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def write_fix(exc: OSError) -> str:
    """What fixes a failed write into a directory: room on a full disk, else permission."""
    return "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"


class SaveError(InversetError):
    """A Result could not be written (full disk, unwritable directory): the message says why
    and how to fix it; ``result`` is the Result itself, so that it can still be shown."""

    def __init__(self, result: Result, message: str):
        super().__init__(message)
        self.result = result


@dataclass
class Result:
    """Best input(s) found for a query, how good they are, and how they were found.

    ``x``/``value``: the best input (shape of the model input) and its target value.
    ``xs``/``values``: every returned point (distinct local optima, samples, ...), best first.
    ``bound``/``gap``: a proven bound on the optimum and the gap to it, or None.
    ``status``: one of :data:`STATUSES`. ``arrays``: any further named arrays (images, ...).
    """

    x: np.ndarray | None
    value: float | None
    status: str
    message: str = ""
    xs: np.ndarray | None = None
    values: np.ndarray | None = None
    bound: float | None = None
    gap: float | None = None
    nfev: int = 0
    solver: str = ""
    history: dict[str, list] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; one of {sorted(STATUSES)}")

    @property
    def x_label(self) -> str:
        """What ``x`` is, for captions: a sampler's first sample (its samples have no best:
        each lies in the range), else the best input found."""
        return "first sample" if self.solver == "inverse_set" else "best input"

    @property
    def success(self) -> bool:
        return self.status in {"optimal", "converged", "found"}

    def summary(self) -> dict[str, Any]:
        """Scalars only: what `--json` prints and `result.json` starts with (infinities and
        NaN as ``{"__float__": "inf" | "-inf" | "nan"}``, see :data:`FLOAT_TAG`). The best
        input is ``x`` when it has at most :data:`SUMMARY_X` features, else its first ones are
        ``x_summary`` (the whole of it is in ``result.npz``); ``x_size`` counts them all."""
        flat = None if self.x is None else np.asarray(self.x).reshape(-1)
        if flat is None or flat.size <= SUMMARY_X:
            x = {"x": None if flat is None else flat.tolist()}
        else:
            x = {"x_summary": flat[:SUMMARY_X].tolist()}
        return _jsonable(
            {
                "status": self.status,
                "message": self.message,
                "value": self.value,
                "bound": self.bound,
                "gap": self.gap,
                "nfev": self.nfev,
                "solver": self.solver,
                **x,
                "x_size": 0 if flat is None else int(flat.size),
                "n_points": 0 if self.xs is None else len(self.xs),
                "timings": self.timings,
                "info": self.info,
            },
            tagged=True,
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``result.json`` (everything but arrays; strict JSON, a non-finite float as
        ``{"__float__": "inf" | "-inf" | "nan"}``) and ``result.npz`` (arrays).

        Over an earlier result, its pictures and page (inverset's own file names,
        :data:`~inverset.files.PICTURES`) are removed: they would pass for this result's. In
        a directory that held no result nothing is removed (those names may be a user's).
        A failed write (a full disk, a directory that cannot be made) leaves no temporary file
        and raises :class:`SaveError`, which holds this Result.
        """
        meta = self.summary()
        if "x" in meta:  # the whole x is in result.npz
            meta["x_summary"] = meta.pop("x")
        meta.update(history=self.history, query=self.query)
        arrays = {f"arrays/{k}": np.asarray(v) for k, v in self.arrays.items()}
        for name in ("x", "xs", "values"):
            v = getattr(self, name)
            if v is not None:
                arrays[name] = np.asarray(v)
        copy = _copy_of(arrays, "xs")
        if copy is not None:  # e.g. un-normalized images: written once, read back as both
            meta["xs_in"] = copy
            del arrays["xs"]
        text = json.dumps(_jsonable(meta, tagged=True), indent=2, allow_nan=False)
        try:
            d = output_directory(directory)
        except InversetError as exc:
            raise SaveError(self, str(exc)) from None
        earlier = (d / "result.json").is_file()  # a result's directory: its pictures are ours
        try:
            # both written before either is renamed; result.npz first: load() reads the pair
            with replacing(d / "result.json") as tmp_json, replacing(d / "result.npz") as tmp_npz:
                tmp_json.write_text(text)
                np.savez_compressed(tmp_npz, **arrays)
        except OSError as exc:
            raise SaveError(
                self,
                f"the result was not saved in {d} ({exc.strerror or type(exc).__name__}); "
                f"{write_fix(exc)} or give another directory (e.g. --out runs/a)",
            ) from None
        if earlier:
            remove_pictures(d, PICTURES)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Result:
        """Read a result written by :meth:`save` (no pickles are loaded)."""

        d = Path(directory)
        if not (d / "result.json").is_file():
            raise InversetError(f"{d} holds no result.json; give a directory written by save()")
        try:
            meta = json.loads((d / "result.json").read_text())
            if not isinstance(meta, dict) or "status" not in meta or "value" not in meta:
                raise ValueError("not a result (no status or value)")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InversetError(f"{d / 'result.json'} is not a saved result ({exc})") from exc
        arrays: dict[str, np.ndarray] = {}
        npz = d / "result.npz"
        if not npz.is_file():  # save() writes it first, even with no arrays
            raise InversetError(f"{npz} is missing (its arrays are lost); save the result again")
        try:
            with npz.open("rb") as f:
                # every .npz is a zip archive (one of no arrays: only its end record)
                if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
                    raise zipfile.BadZipFile("not a zip archive")
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # any damage: the zip, its compression, an array header
            if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
                why = "holds object arrays (pickles), which are never loaded"
            else:
                text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
                why = f"is not a valid npz file ({text or type(exc).__name__}: damaged)"
            raise InversetError(f"{npz} {why}; save the result again") from exc
        if meta.get("xs_in") in arrays and "xs" not in arrays:
            arrays["xs"] = arrays[meta["xs_in"]].copy()
        extra = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("arrays/")}
        return cls(
            x=arrays.get("x"),
            value=_number(meta["value"]),
            status=meta["status"],
            message=meta.get("message", ""),
            xs=arrays.get("xs"),
            values=arrays.get("values"),
            bound=_number(meta.get("bound")),
            gap=_number(meta.get("gap")),
            nfev=meta.get("nfev", 0),
            solver=meta.get("solver", ""),
            history=_unjson(meta.get("history", {})),
            timings=_unjson(meta.get("timings", {})),
            query=_unjson(meta.get("query", {})),
            info=_unjson(meta.get("info", {})),
            arrays=extra,
        )

    def __repr__(self) -> str:
        parts = [f"status={self.status!r}", f"value={self.value!r}"]
        if self.bound is not None:
            parts += [f"bound={self.bound!r}", f"gap={self.gap!r}"]
        parts += [f"nfev={self.nfev}", f"solver={self.solver!r}"]
        if self.message:
            parts.append(f"message={self.message!r}")
        return f"Result({', '.join(parts)})"
