"""Atlas jobs: one query per target (every channel of a layer, every class, an explicit list),
times every activation range, run through a runner and written to ``DIR/<target>/`` as each
finishes.

Resumable: a target's directory appears in one ``rename`` of a finished temporary directory,
so a target is either complete or absent; a restarted job skips complete targets and redoes
the rest. ``DIR/job.json`` records the whole query and refuses to mix two different jobs in one
directory. Each unit of work gets a seed derived from the job seed and its targets' names, and
runs with a fixed number of torch threads, so results do not depend on order or runner.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inverset.domain import Box
from inverset.errors import InversetError
from inverset.model import (
    check_layer_names,
    fingerprint,
    forward_checked,
    input_shape_of,
    layers,
    model_device,
    model_dtype,
    restore_mode,
)
from inverset.result import Result, _jsonable, output_directory
from inverset.target import parse_target

MODES = ("maximize", "minimize", "visualize", "sample")
#: Fields of job.json that define the job: a directory never holds results of two queries.
IDENTITY = ("mode", "model", "targets", "query")
#: Targets one visualize call renders together (fixed per job, so results never depend on
#: which targets were already finished when a job was resumed).
DEFAULT_BATCH = {"visualize": 8}


# ---------------------------------------------------------------- targets
def parse_indices(spec: str | Sequence[int] | range, count: int | None, what: str) -> list[int]:
    """``'all'``, ``'0-15'``, ``'0,3,5-7'`` or a list of ints -> sorted unique indices."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            if count is None:
                raise InversetError(f"the number of {what} is unknown; give --input-shape")
            return list(range(count))
        out: list[int] = []
        for part in text.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
            if not m:
                raise InversetError(
                    f"{what} must be 'all', a range like 0-15 or a list like 0,3,5-7; got {spec!r}"
                )
            a, b = int(m.group(1)), int(m.group(2) or m.group(1))
            if b < a:
                raise InversetError(f"{what} range {part!r} ends before it starts; write {b}-{a}")
            out.extend(range(a, b + 1))
    else:
        out = [int(i) for i in spec]
    out = sorted(set(out))
    if not out:
        raise InversetError(f"no {what} selected ({spec!r})")
    if count is not None and (out[0] < 0 or out[-1] >= count):
        raise InversetError(f"{what} {out[-1]} is out of range; there are {count} (0..{count - 1})")
    return out


def target_key(target: str, rng: Sequence[float] | None = None) -> str:
    """A directory (and URL) safe name for a target, and its range if any."""
    key = re.sub(r"[^A-Za-z0-9.-]+", "_", target.replace(" ", "")).strip("_.") or "target"
    if rng is not None:
        key += "__" + re.sub(r"[^A-Za-z0-9.-]+", "_", f"{rng[0]:g}_{rng[1]:g}")
    return key


def derive_seed(seed: int, name: str) -> int:
    """A seed for one unit from the job seed and the unit's name (stable across runs)."""
    digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Class name, source and a SHA-256 of the weights: a resumed job must use the same class
    and weights (the source path is recorded, not compared)."""
    return {
        "class": type(model).__name__,
        "source": str(getattr(model, "source", "")),
        "sha256": fingerprint(model),
    }


def _layer_units(model: nn.Module, layer: str, input_shape: Sequence[int] | None) -> int | None:
    check_layer_names(model, [layer])
    for info in layers(model, input_shape):
        if info.name == layer:
            return info.units
    return None


def expand_targets(
    model: nn.Module,
    *,
    layer: str | None = None,
    channels: str | Sequence[int] | None = None,
    classes: str | Sequence[int] | None = None,
    targets: Sequence[str] | None = None,
    ranges: Sequence[Sequence[float]] | None = None,
    input_shape: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """The job's targets: channels/units of ``layer``, output ``classes``, explicit ``targets``;
    each paired with every range of ``ranges``. Each is ``{key, target, layer, channel, range}``."""
    base: list[tuple[str, str | None, int | None]] = []
    if layer is not None and channels is None and classes is None and not targets:
        channels = "all"
    if channels is not None:
        if layer is None:
            raise InversetError("--channels needs --layer (the layer whose channels to take)")
        n = _layer_units(model, layer, input_shape)
        base += [
            (f"{layer}:{c}", layer, c) for c in parse_indices(channels, n, f"{layer} channels")
        ]
    if classes is not None:
        n = _layer_units(model, "out", input_shape)
        base += [(f"out:{k}", "out", k) for k in parse_indices(classes, n, "classes")]
    for t in targets or []:
        base.append((str(t), None, None))
    if not base:
        raise InversetError("no targets: give --layer (with --channels), --classes or --target")
    rngs: list[tuple[float, float] | None] = [None]
    if ranges:
        rngs = []
        for r in ranges:
            if len(r) != 2 or not r[0] <= r[1]:
                raise InversetError(f"a range is two numbers z1 <= z2, got {list(r)!r}")
            rngs.append((float(r[0]), float(r[1])))
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for t, lay, ch in base:
        for r in rngs:
            key = target_key(t, r)
            if key in seen:
                raise InversetError(
                    f"targets {seen[key]!r} and {t!r} share the directory name {key!r}; "
                    "list each target once"
                )
            seen[key] = t
            out.append({"key": key, "target": t, "layer": lay, "channel": ch, "range": r})
    return out


def _check_targets(model: nn.Module, items: list[dict[str, Any]], domain: Box | None, shape):
    """Parse every target and check its layer and index with one forward pass of the model."""
    exprs = [parse_target(it["target"], getattr(model, "labels", None)) for it in items]
    names = list(dict.fromkeys(n for e in exprs for n in e.layers()))
    check_layer_names(model, names)
    shape = tuple(shape) if shape is not None else (domain.shape if domain else None)
    shape = shape or input_shape_of(model)
    if shape is None:
        raise InversetError("the input shape is unknown; give input_shape / --input-shape")
    x = torch.zeros((1, *shape), device=model_device(model), dtype=model_dtype(model))
    with torch.no_grad(), restore_mode(model):
        acts = forward_checked(model, x, names)
    for e in exprs:
        e.check(acts)


def plan_units(items: list[dict[str, Any]], mode: str, batch: int, seed: int) -> list[dict]:
    """Group targets into units (``batch`` channels of one layer per visualize call, else one
    target per unit), each with its seed."""
    units: list[dict[str, Any]] = []
    group: list[dict[str, Any]] = []

    def flush() -> None:
        if group:
            keys = [g["key"] for g in group]
            units.append(
                {
                    "keys": keys,
                    "targets": [g["target"] for g in group],
                    "layer": group[0]["layer"],
                    "channels": [g["channel"] for g in group],
                    "ranges": [g["range"] for g in group],
                    "seed": derive_seed(seed, "+".join(keys)),
                }
            )
            group.clear()

    for it in items:
        if mode == "visualize" and it["layer"] is None:
            raise InversetError(
                f"visualize renders channels of a layer; {it['target']!r} is not one "
                "(use --layer with --channels, or --classes)"
            )
        batchable = mode == "visualize" and batch > 1
        if group and (not batchable or len(group) >= batch or group[0]["layer"] != it["layer"]):
            flush()
        group.append(it)
        if not batchable:
            flush()
    flush()
    return units


# ---------------------------------------------------------------- one unit
def solve_unit(
    model: nn.Module, spec: dict[str, Any], unit: dict[str, Any], progress: bool = False
) -> list[tuple[str, Result]]:
    """Answer one unit through the public API of its mode; one Result per target."""
    mode = spec["mode"]
    domain = Box.from_dict(spec["domain"]) if spec.get("domain") else None
    common: dict[str, Any] = {
        "seed": unit["seed"],
        "time_limit": spec.get("time_limit"),
        "progress": progress,
        **spec.get("options", {}),
    }
    if spec.get("input_shape") is not None:
        common["input_shape"] = tuple(spec["input_shape"])
    if mode in ("maximize", "minimize"):
        import inverset.api as api

        fn = api.maximize if mode == "maximize" else api.minimize
        (key,), (target,) = unit["keys"], unit["targets"]
        return [(key, fn(model, target, domain, solver=spec["solver"], **common))]
    if mode == "sample":
        from inverset.sampling import sample

        (key,), (target,), (rng,) = unit["keys"], unit["targets"], unit["ranges"]
        if rng is None:
            raise InversetError("--mode sample needs --ranges (z1,z2 per range)")
        return [(key, sample(model, target=target, range=tuple(rng), domain=domain, **common))]
    if mode == "visualize":
        from inverset.featvis import visualize

        accepted = inspect.signature(visualize).parameters
        if "time_limit" not in accepted:
            common.pop("time_limit")
        if domain is not None and "value_range" not in common:
            common["value_range"] = _value_range(domain)
        res = visualize(
            model,
            layer=unit["layer"],
            channels=unit["channels"],
            batch_size=len(unit["channels"]),
            **common,
        )
        return split_result(res, unit)
    raise InversetError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def mode_function(mode: str, solver: str) -> Callable:
    """The function whose keyword options a job's ``options`` must be."""
    if mode in ("maximize", "minimize"):
        from inverset.solvers import get_solver

        return get_solver(solver)
    if mode == "sample":
        from inverset.sampling import sample

        return sample
    from inverset.featvis import visualize

    return visualize


def check_options(mode: str, solver: str, options: dict[str, Any]) -> None:
    """Unknown options are one clear error now, not a failure in every target later."""
    fn = mode_function(mode, solver)
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    reserved = {
        "model",
        "problem",
        "target",
        "range",
        "domain",
        "layer",
        "channels",
        "seed",
        "progress",
        "time_limit",
        "input_shape",
        "batch_size",
        "out",
        "resume",
    }
    valid = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY or p.default is not p.empty]
    valid = [n for n in valid if n not in reserved]
    for name in options:
        if name not in valid:
            what = f"solver {solver!r}" if mode in ("maximize", "minimize") else mode
            raise InversetError(
                f"{name!r} is not an option of {what}; valid options: {', '.join(valid)}"
            )


def _value_range(domain: Box) -> tuple[float, float]:
    lo, hi = np.unique(domain.lower), np.unique(domain.upper)
    if lo.size != 1 or hi.size != 1 or not np.isfinite([lo[0], hi[0]]).all():
        raise InversetError(
            "visualize takes one finite pixel range for every input (e.g. --box 0,1), "
            "not per-feature bounds"
        )
    return float(lo[0]), float(hi[0])


def split_result(res: Result, unit: dict[str, Any]) -> list[tuple[str, Result]]:
    """Per-target Results from one visualize Result that rendered a batch of channels:
    ``xs``/``values`` and the arrays ``images``/``targets`` (axis 0) and ``frames`` (axis 1)
    are split; history (the batch's mean objective), timings and nfev are shared."""
    keys = unit["keys"]
    k = len(keys)
    values = np.asarray(res.values) if res.values is not None else None
    if res.xs is None or values is None or len(res.xs) != k or len(values) != k:
        raise InversetError(
            f"visualize returned {0 if res.xs is None else len(res.xs)} images for {k} "
            "channels; cannot split them per target"
        )
    out = []
    for i, (key, target) in enumerate(zip(keys, unit["targets"], strict=True)):
        arrays = {}
        for name, a in res.arrays.items():
            a = np.asarray(a)
            if name in ("images", "targets") and a.ndim and a.shape[0] == k:
                arrays[name] = a[i]
            elif name == "frames" and a.ndim > 1 and a.shape[1] == k:
                arrays[name] = a[:, i]
        query = {**res.query, "target": target, "targets": [target]}
        out.append(
            (
                key,
                Result(
                    x=res.xs[i],
                    value=float(values[i]),
                    status=res.status,
                    message=res.message,
                    xs=res.xs[i : i + 1],
                    values=values[i : i + 1],
                    nfev=res.nfev // k,
                    solver=res.solver,
                    history={n: list(h) for n, h in res.history.items()},
                    timings=dict(res.timings),
                    query=query,
                    info={**res.info, "batch": list(keys), "history": "mean over the batch"},
                    arrays=arrays,
                ),
            )
        )
    return out


# ---------------------------------------------------------------- the directory
def is_done(out: Path, key: str) -> bool:
    return (out / key / "result.json").is_file()


def write_target(out: Path, key: str, result: Result) -> Path:
    """Save ``result`` as ``out/key`` atomically: into a temporary directory, then one rename."""
    final = out / key
    tmp = out / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    try:
        result.save(tmp)
        os.rename(tmp, final)
    except OSError:
        if not is_done(out, key):
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def job_lock(out: Path) -> Iterator[None]:
    """One job at a time per directory (a lock file naming the owner's pid)."""
    lock = out / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            alive = pid > 0 and pid != os.getpid() and Path(f"/proc/{pid}").exists()
            if alive:
                raise InversetError(
                    f"another job (pid {pid}) is writing {out}; wait for it or use another --out"
                ) from None
            lock.unlink(missing_ok=True)
    else:
        raise InversetError(f"cannot lock {out}; remove {lock} if no job is running")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        for stale in out.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        lock.unlink(missing_ok=True)


def read_job(out: str | Path) -> dict[str, Any] | None:
    p = Path(out) / "job.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, default=str))
    tmp.replace(path)


def _check_same_job(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    fresh = json.loads(json.dumps(_jsonable(new), default=str))

    def same(k: str) -> bool:
        a, b = old.get(k), fresh.get(k)
        if k == "model" and isinstance(a, dict) and isinstance(b, dict):
            # the weights decide, not the path they were read from (moved, copied, relative)
            return all(a.get(q) == b.get(q) for q in ("class", "sha256"))
        return a == b

    for k in IDENTITY:
        if not same(k):
            detail = ""
            if k == "query":
                diff = [q for q in fresh[k] if old[k].get(q) != fresh[k].get(q)]
                detail = f" ({', '.join(diff)})"
            raise InversetError(
                f"{out} holds a different job: its {k}{detail} differs; resume with the same "
                "query, or write to another --out"
            )


def load_atlas(out: str | Path) -> dict[str, Result]:
    """Every finished target's Result in ``out``, in job order."""
    out = Path(out)
    job = read_job(out)
    keys = (
        [t["key"] for t in job["targets"]]
        if job
        else sorted(p.parent.name for p in out.glob("*/result.json"))
    )
    return {k: Result.load(out / k) for k in keys if is_done(out, k)}


# ---------------------------------------------------------------- the job
@dataclass
class AtlasSummary:
    """What a job run did: ``status`` is complete, interrupted, job_time_limit or failed."""

    out: Path
    status: str
    total: int
    skipped: int
    finished: int
    failed: dict[str, str] = field(default_factory=dict)
    remaining: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    runner: str = ""
    index: Path | None = None

    @property
    def done(self) -> int:
        return self.total - len(self.remaining)

    def results(self) -> dict[str, Result]:
        return load_atlas(self.out)

    def describe(self) -> str:
        msg = (
            f"{self.done}/{self.total} targets done ({self.finished} this run, {self.skipped} "
            f"already there) in {self.elapsed:.1f} s on {self.runner}"
        )
        if self.failed:
            msg += f"; {len(self.failed)} failed: " + ", ".join(
                f"{k} ({v})" for k, v in list(self.failed.items())[:5]
            )
        if self.remaining and self.status != "complete":
            shown = ", ".join(self.remaining[:8]) + (" ..." if len(self.remaining) > 8 else "")
            msg += f"; {self.status}: {len(self.remaining)} remaining ({shown}); rerun to resume"
        return msg


class _JobProgress:
    """A total bar (targets done/total) and, for runners without their own bars, one row per
    unit in flight with its elapsed time."""

    def __init__(self, enabled: bool, total: int, done: int, title: str, rows: bool):
        self.enabled, self.rows = enabled, rows
        self._p: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._p = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
            )
            self._total = self._p.add_task(title, total=total, completed=done, info="")
        self._tasks: dict[Any, Any] = {}

    def __enter__(self) -> _JobProgress:
        return self

    def show(self) -> None:
        """Start drawing (once the workers are up, so start-up errors print cleanly)."""
        if self._p is not None:
            self._p.start()

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()

    def started(self, handle: Any, unit: dict[str, Any]) -> None:
        if self._p is not None and self.rows:
            name = ", ".join(unit["targets"][:3]) + ("..." if len(unit["targets"]) > 3 else "")
            self._tasks[handle] = self._p.add_task(f"  {name}", total=None, info="running")

    def finished(self, handle: Any, n: int, info: str) -> None:
        if self._p is None:
            return
        if handle in self._tasks:
            self._p.remove_task(self._tasks.pop(handle))
        self._p.update(self._total, advance=n, info=info)


def _drive(
    run: Any,
    model: nn.Module,
    spec: dict[str, Any],
    todo: list[dict[str, Any]],
    out: Path,
    bar: _JobProgress,
    t0: float,
    job_time_limit: float | None,
    on_result: Callable[[str, Result], None] | None,
) -> tuple[str, int, dict[str, str]]:
    """Keep ``run.slots`` units in flight, write each answer as it comes; returns (status,
    targets written, failures). Ctrl-C (or an 'interrupted' answer) stops it cleanly."""
    failed: dict[str, str] = {}
    finished = 0
    status = "complete"
    pending = list(todo)
    inflight: dict[Any, dict[str, Any]] = {}
    try:
        run.start(model, spec)
        bar.show()
        while pending or inflight:
            while pending and len(inflight) < run.slots:
                if job_time_limit is not None and time.monotonic() - t0 >= job_time_limit:
                    status = "job_time_limit"
                    break
                unit = pending.pop(0)
                handle = run.submit(unit)
                inflight[handle] = unit
                bar.started(handle, unit)
            if not inflight:
                break
            for handle, outcome in run.wait(list(inflight)):
                unit = inflight.pop(handle)
                if isinstance(outcome, BaseException):
                    for k in unit["keys"]:
                        failed[k] = f"{type(outcome).__name__}: {outcome}".splitlines()[0]
                    bar.finished(handle, 0, f"failed {unit['keys'][0]}")
                    continue
                if any(r.status == "interrupted" for _, r in outcome):
                    raise KeyboardInterrupt
                for key, res in outcome:
                    if is_done(out, key):
                        continue
                    res.info = {**res.info, "job": {"key": key, "seed": unit["seed"]}}
                    write_target(out, key, res)
                    finished += 1
                    if on_result is not None:
                        on_result(key, res)
                last = outcome[-1][1]
                value = "" if last.value is None else f"{outcome[-1][0]}={last.value:.4g}"
                bar.finished(handle, len(outcome), value)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        run.close(list(inflight))
    return status, finished, failed


def atlas(
    model: nn.Module,
    out: str | Path,
    *,
    layer: str | None = None,
    channels: str | Sequence[int] | None = None,
    classes: str | Sequence[int] | None = None,
    targets: Sequence[str] | None = None,
    mode: str = "maximize",
    ranges: Sequence[Sequence[float]] | None = None,
    domain: Box | None = None,
    input_shape: Sequence[int] | None = None,
    solver: str = "gradient",
    seed: int = 0,
    batch: int | None = None,
    time_limit: float | None = None,
    job_time_limit: float | None = None,
    runner: Any = None,
    workers: int | None = None,
    ray_address: str | None = None,
    threads: int | None = 1,
    progress: bool = False,
    report: bool = True,
    on_result: Callable[[str, Result], None] | None = None,
    **options: Any,
) -> AtlasSummary:
    """Run one query per target and write each Result to ``out/<target>/`` as it finishes.

    Targets: the channels (or units) of ``layer`` (``channels='all'``, ``'0-15'``, a list),
    output ``classes``, or explicit ``targets`` expressions; in ``mode='sample'`` each is paired
    with every ``(z1, z2)`` of ``ranges``. Modes call the public API: ``maximize``/``minimize``
    (``inverset.maximize`` with ``solver``), ``visualize`` (``inverset.featvis.visualize``,
    ``batch`` channels per call) and ``sample`` (``inverset.sampling.sample``). ``options`` go
    to that call (e.g. ``steps``, ``starts``, ``n``).

    Runs in this process, in a pool of ``workers`` processes, or on Ray
    (``runner='ray'``, ``ray_address``); ``threads`` torch threads per target in each, so
    results match bit for bit. A rerun skips finished targets. ``time_limit`` bounds each
    target, ``job_time_limit`` the job (no new target starts after it). ``on_result(key,
    result)`` is called after each target is written. ``out/index.html`` is (re)built at the
    end unless ``report=False``. Ctrl-C stops the job cleanly; rerun to resume.
    """
    from inverset.jobs.runners import make_runner

    if mode not in MODES:
        raise InversetError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if ranges and mode != "sample":
        raise InversetError(f"ranges apply to --mode sample, not {mode}; drop --ranges")
    if mode == "sample" and not ranges:
        raise InversetError("--mode sample needs --ranges, e.g. --ranges 0.5,1 --ranges 1,2")
    if mode == "visualize" and time_limit is not None:
        from inverset.featvis import visualize

        if "time_limit" not in inspect.signature(visualize).parameters:
            raise InversetError(
                "visualize takes no per-target time limit; bound it with steps=... "
                "(--steps) or the whole job with --job-time-limit"
            )
    for name, v in (("batch", batch), ("workers", workers), ("threads", threads)):
        if v is not None and v < 1:
            raise InversetError(f"{name} must be at least 1, got {v}")
    if job_time_limit is not None and not job_time_limit >= 0:
        raise InversetError(f"job time limit must be >= 0 seconds, got {job_time_limit}")
    if not isinstance(model, nn.Module):
        raise InversetError("model must be a torch.nn.Module (use inverset.load_model)")
    t0 = time.monotonic()
    items = expand_targets(
        model,
        layer=layer,
        channels=channels,
        classes=classes,
        targets=targets,
        ranges=ranges,
        input_shape=input_shape or (domain.shape if domain is not None else None),
    )
    _check_targets(model, items, domain, input_shape)
    check_options(mode, solver, options)
    batch = batch or DEFAULT_BATCH.get(mode, 1)
    units = plan_units(items, mode, batch, seed)
    unit_of = {k: i for i, u in enumerate(units) for k in u["keys"]}
    spec = {
        "mode": mode,
        "solver": solver,
        "domain": None if domain is None else domain.to_dict(),
        "input_shape": None if input_shape is None else list(input_shape),
        "options": dict(options),
        "time_limit": time_limit,
        "threads": threads,
    }
    job = {
        "mode": mode,
        "model": model_fingerprint(model),
        "targets": [
            {
                "key": it["key"],
                "target": it["target"],
                "range": it["range"],
                "unit": unit_of[it["key"]],
            }
            for it in items
        ],
        "query": {
            "solver": solver if mode in ("maximize", "minimize") else None,
            "domain": spec["domain"],
            "input_shape": spec["input_shape"],
            "options": dict(options),
            "seed": seed,
            "batch": batch,
            "time_limit": time_limit,
            "threads": threads,
        },
        "units": [{"keys": u["keys"], "seed": u["seed"]} for u in units],
    }
    out = output_directory(out)
    with job_lock(out):
        old = read_job(out)
        if old is not None:
            _check_same_job(old, job, out)
            job["created"], job["runs"] = old.get("created"), old.get("runs", [])
        else:
            job["created"], job["runs"] = datetime.now(UTC).isoformat(), []
        import inverset

        job["inverset"] = inverset.__version__
        _write_json(out / "job.json", job)
        todo = [u for u in units if not all(is_done(out, k) for k in u["keys"])]
        skipped = sum(is_done(out, it["key"]) for it in items)
        run = make_runner(runner, workers, ray_address, progress)
        started = datetime.now(UTC).isoformat()
        title = f"atlas {mode} {layer or ''}".strip()
        with _JobProgress(progress, len(items), skipped, title, not run.live) as bar:
            status, finished, failed = _drive(
                run, model, spec, todo, out, bar, t0, job_time_limit, on_result
            )
        remaining = [it["key"] for it in items if not is_done(out, it["key"])]
        if status == "complete" and failed:
            status = "failed"
        summary = AtlasSummary(
            out=out,
            status=status,
            total=len(items),
            skipped=skipped,
            finished=finished,
            failed=failed,
            remaining=remaining,
            elapsed=time.monotonic() - t0,
            runner=run.describe(),
        )
        job["runs"].append(
            {
                "started": started,
                "runner": summary.runner,
                "status": status,
                "finished": finished,
                "failed": failed,
                "remaining": len(remaining),
                "elapsed": summary.elapsed,
                "job_time_limit": job_time_limit,
            }
        )
        _write_json(out / "job.json", job)
    if report:
        from inverset.report.html import build_report

        summary.index = build_report(out)
    return summary
