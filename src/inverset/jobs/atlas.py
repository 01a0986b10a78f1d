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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inverset.checks import is_number
from inverset.domain import Box
from inverset.errors import InversetError
from inverset.files import PICTURES, is_ours, replacing
from inverset.loaders import as_module
from inverset.model import (
    OUTPUT,
    OUTPUT_MODULE,
    check_layer_names,
    fingerprint,
    forward_checked,
    hookable_layers,
    input_shape_of,
    layer_text,
    layers,
    model_device,
    model_dtype,
    never_run,
    not_hookable,
    output_axes,
    restore_mode,
    run_twice,
)
from inverset.problem import label_names
from inverset.progress import sigterm_as_interrupt
from inverset.result import Result, _jsonable, output_directory, write_fix
from inverset.target import parse_target
from inverset.zoo import MAX_SEARCH_SEED, check_seed

MODES = ("maximize", "minimize", "visualize", "sample")
#: Fields of job.json that define the job: a directory never holds results of two queries.
IDENTITY = ("mode", "model", "targets", "query")
#: Targets one visualize call renders together (fixed per job, so results never depend on
#: which targets were already finished when a job was resumed).
DEFAULT_BATCH = {"visualize": 8}
#: longest target directory name (file names stop at 255 bytes; temporaries add about 20)
MAX_KEY = 120


# ---------------------------------------------------------------- targets
def parse_indices(spec: str | Sequence[int] | range, count: int | None, what: str) -> list[int]:
    """``'all'``, ``'0-15'``, ``'0,3,5-7'`` or a list of ints -> sorted unique indices."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            if count is None:
                raise InversetError(
                    f"the number of {what} is unknown; give the model's input shape "
                    "(input_shape=(1, 8, 8) / --input-shape 1,8,8)"
                )
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
    elif isinstance(spec, int | np.integer):  # one index
        out = [int(spec)]
    else:
        try:
            out = [int(i) for i in spec]
        except (TypeError, ValueError):
            raise InversetError(
                f"{what} must be 'all', a range like 0-15, a list like [0, 3] or one index; "
                f"got {spec!r}"
            ) from None
    out = sorted(set(out))
    if not out:
        raise InversetError(f"no {what} selected ({spec!r})")
    if count is not None and (out[0] < 0 or out[-1] >= count):
        raise InversetError(f"{what} {out[-1]} is out of range; there are {count} (0..{count - 1})")
    return out


def _num(v: float) -> str:
    """A range end as short as ``:g`` writes it, or exactly (repr) when ``:g`` would round it:
    8.0000001 and 8.0000002 stay two numbers."""
    text = f"{float(v):g}"
    return text if float(text) == float(v) else repr(float(v))


def _label(target: str, rng: Sequence[float] | None) -> str:
    """A target with its range, as messages name it."""
    return target if rng is None else f"{target} in [{_num(rng[0])}, {_num(rng[1])}]"


def _canonical(target: str) -> str:
    """A target's text without the spaces between its tokens (those inside quotes stay):
    two spellings of one target are one."""
    return "".join(
        part if part[:1] in "'\"" else re.sub(r"\s+", "", part)
        for part in re.split(r"(\"[^\"]*\"|'[^']*')", target)
    )


def target_key(target: str, rng: Sequence[float] | None = None, hashed: bool = False) -> str:
    """A directory (and URL) safe name for a target, and its range if any: its ASCII letters,
    digits, dots and dashes. A target with other characters (a class name in another script,
    ``prob:"猫"``), or with ``hashed`` (for names that would otherwise be equal), ends in a hash
    of its whole text, so that distinct targets get distinct names; plain ASCII targets keep
    their names. A name longer than ``MAX_KEY`` is cut and ends in a hash of the whole name,
    so it stays distinct and fits a file name (with the temporary directory's prefix and
    suffix)."""
    key = re.sub(r"[^A-Za-z0-9.-]+", "_", target.replace(" ", "")).strip("_.") or "target"
    if target.startswith("."):  # the layer .out is not the output out: _out_3
        key = "_" + key
    if rng is not None:
        key += "__" + re.sub(r"[^A-Za-z0-9.-]+", "_", f"{_num(rng[0])}_{_num(rng[1])}")
    if hashed or not target.isascii():
        digest = hashlib.sha256(_label(_canonical(target), rng).encode()).hexdigest()[:8]
        key = key[: MAX_KEY - len(digest) - 1].rstrip("_.") + "_" + digest
    if len(key) > MAX_KEY:
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        key = key[: MAX_KEY - len(digest) - 1].rstrip("_.") + "_" + digest
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
    """The number of units/channels of ``layer`` (None when no input shape is known); a layer
    that cannot be a target (never run, run twice, inside TorchScript) is a one-line error."""
    check_layer_names(model, [layer])
    if layer != OUTPUT and layer not in hookable_layers(model):
        raise not_hookable(layer)
    infos = {info.name: info for info in layers(model, input_shape)}
    # a module named out that computes the model output is listed as the output
    info = infos.get(layer) or (infos.get(OUTPUT) if layer == OUTPUT_MODULE else None)
    if info is None:
        return None
    if info.calls == 0:
        raise never_run(layer)
    if info.calls is not None and info.calls > 1:
        raise run_twice(layer, info.calls)
    return info.units


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
    if layer is not None and channels is None:
        channels = "all"
    if channels is not None:
        if layer is None:
            raise InversetError("--channels needs --layer (the layer whose channels to take)")
        n = _layer_units(model, layer, input_shape)
        base += [
            (f"{layer_text(layer)}:{c}", layer, c)
            for c in parse_indices(channels, n, f"{layer} channels")
        ]
    if classes is not None:
        n = _layer_units(model, "out", input_shape)
        base += [(f"out:{k}", "out", k) for k in parse_indices(classes, n, "classes")]
    for t in [targets] if isinstance(targets, str) else targets or []:  # one target's text
        base.append((str(t), None, None))
    if not base:
        raise InversetError("no targets: give --layer (with --channels), --classes or --target")
    rngs: list[tuple[float, float] | None] = [None]
    if ranges is not None and len(ranges) == 2 and all(is_number(v) for v in ranges):
        ranges = [ranges]  # one range, [10, 12], as --ranges 10,12 reads
    if ranges:
        rngs = []
        for r in ranges:
            if isinstance(r, str) or not hasattr(r, "__len__"):
                raise InversetError(f"ranges is a list of [z1, z2] pairs, got {ranges!r}")
            if len(r) != 2 or not r[0] <= r[1]:
                raise InversetError(f"a range is two numbers z1 <= z2, got {list(r)!r}")
            rngs.append((float(r[0]), float(r[1])))
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}  # a target's canonical label -> the label it was given as
    for t, lay, ch in base:
        for r in rngs:
            same = _label(_canonical(t), r)
            if same in seen:
                raise InversetError(
                    f"targets {seen[same]!r} and {_label(t, r)!r} are one target and share the "
                    f"directory name {target_key(t, r)!r}; list each target"
                    f"{' and range' if r is not None else ''} once"
                )
            seen[same] = _label(t, r)
            out.append(
                {"key": target_key(t, r), "target": t, "layer": lay, "channel": ch, "range": r}
            )
    zero = getattr(model, "zero_logit", None)  # a binary sklearn classifier's logit 0 is 0
    for it in out:
        if zero is not None and it["layer"] == "out" and it["channel"] == zero:
            it["target"] = f"-out:{1 - zero}"  # class 0 against class 1, as prob:0 ranks it
    keys = Counter(it["key"] for it in out)
    for it in out:  # distinct targets whose names are equal: each name ends in its hash
        if keys[it["key"]] > 1:
            it["key"] = target_key(it["target"], it["range"], hashed=True)
    if len({it["key"] for it in out}) < len(out):  # a hash met another target's name
        raise InversetError(
            "two targets share a directory name even with their hashes; rename or drop one"
        )
    return out


def _check_targets(model: nn.Module, items: list[dict[str, Any]], domain: Box | None, shape):
    """Parse every target and check its layer and index with one forward pass of the model."""
    labels = label_names(getattr(model, "labels", None))
    shape = tuple(shape) if shape is not None else (domain.shape if domain else None)
    shape = shape or input_shape_of(model)
    axes = output_axes(model, shape) if shape is not None else None
    exprs = [parse_target(it["target"], labels, axes) for it in items]
    names = list(dict.fromkeys(n for e in exprs for n in e.layers()))
    check_layer_names(model, names)
    if shape is None:
        raise InversetError("the input shape is unknown; give input_shape / --input-shape")
    x = torch.zeros((1, *shape), device=model_device(model), dtype=model_dtype(model))
    with torch.no_grad(), restore_mode(model):
        acts = forward_checked(model, x, names)
    for e in exprs:
        e.check(acts)


def _keep_keys(items: list[dict[str, Any]], out: str | Path) -> None:
    """Targets already in ``out/job.json`` keep the directory names it gives them, so a job
    written under an earlier key rule (ranges to 6 digits, no length cap) still resumes: keys
    name the directories and seed the units. Unchanged when that would make two keys equal."""
    old = read_job(out) if Path(out).is_dir() else None
    if not old:
        return

    def ident(target: str, rng: Sequence[float] | None) -> tuple:
        return target, None if rng is None else tuple(float(v) for v in rng)

    known = {ident(t["target"], t.get("range")): t["key"] for t in old.get("targets", [])}
    keys = [known.get(ident(it["target"], it["range"]), it["key"]) for it in items]
    if len(set(keys)) == len(keys):
        for it, key in zip(items, keys, strict=True):
            it["key"] = key


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
        from inverset.featvis.render import RenderOutOfMemory, out_of_memory_message

        accepted = inspect.signature(visualize).parameters
        if "time_limit" not in accepted:
            common.pop("time_limit")
        if domain is not None and "value_range" not in common:
            common["value_range"] = _value_range(domain)
        if domain is not None and domain.shape and not {"input_shape", "size"} & set(common):
            common["input_shape"] = tuple(domain.shape)  # the render size, as the check used
        try:
            res = visualize(
                model,
                layer=unit["layer"],
                channels=unit["channels"],
                batch_size=len(unit["channels"]),
                **common,
            )
        except RenderOutOfMemory as exc:  # the atlas's batch option, not visualize's
            raise InversetError(
                out_of_memory_message(
                    exc.images, exc.size, exc.why, "--batch-size", "batch", "--option size=N"
                )
            ) from None
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
    if mode in ("maximize", "minimize"):
        valid.append("space")  # the query's, not the solver's: inverset.maximize takes it
    for name in options:
        if name not in valid:
            what = f"solver {solver!r}" if mode in ("maximize", "minimize") else mode
            raise InversetError(
                f"{name!r} is not an option of {what}; valid options: {', '.join(valid)}"
            )


def _value_range(domain: Box) -> tuple[float, float]:
    """The one pixel range visualize renders in, from a box that gives every input the same
    finite bounds."""
    lo, hi = np.unique(domain.lower), np.unique(domain.upper)
    if not (np.isfinite(domain.lower).all() and np.isfinite(domain.upper).all()):
        raise InversetError(
            "visualize needs a finite pixel range and the input has no finite bounds; "
            "give one with --box LO,HI (e.g. --box 0,1)"
        )
    if lo.size != 1 or hi.size != 1:
        raise InversetError(
            "visualize takes one pixel range for every input, but the box bounds differ "
            "between features; give one range with --box LO,HI (e.g. --box 0,1)"
        )
    return float(lo[0]), float(hi[0])


def split_result(res: Result, unit: dict[str, Any]) -> list[tuple[str, Result]]:
    """Per-target Results from one visualize Result that rendered a batch of channels:
    ``xs``/``values`` and the arrays ``images``/``targets`` (axis 0), ``z`` (a latent param's
    codes, one row per target as ``xs``) and ``frames`` (axis 1) are split; history (the
    batch's mean objective), timings and nfev are shared."""
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
            elif name == "z" and a.ndim and a.shape[0] == k:
                arrays[name] = a[i : i + 1]
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
def job_id(job: dict[str, Any]) -> str:
    """A short hash of what decides a target's answer: the mode, the model's class and
    weights, and the query (numbers compared by value, as job.json is: 5 and 5.0 are one).
    Each result records it, so a result.json of another query is never taken for this job's."""

    def canon(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): canon(x) for k, x in v.items()}
        if isinstance(v, list):
            return [canon(x) for x in v]
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    model = job.get("model") or {}
    data = {"mode": job.get("mode"), "query": job.get("query"), "model": model}
    data = json.loads(json.dumps(_jsonable(data), default=_described))
    data["model"] = [model.get("class"), model.get("sha256")]
    text = json.dumps(canon(data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def unit_seeds(job: dict[str, Any]) -> dict[str, int]:
    """Each target key's unit seed, from a job record."""
    return {k: int(u["seed"]) for u in job.get("units", []) for k in u["keys"]}


def job_ident(job: dict[str, Any]) -> str:
    """The id a job record's results carry: the recorded one, else (older records) computed."""
    return job.get("id") or job_id(job)


def is_own_result(info: Any, key: str, seed: int, ident: str | None) -> bool:
    """The rule that makes a saved result a job's answer for target ``key``: its ``info['job']``
    records that key, the unit's ``seed`` and the job's ``ident`` (:func:`job_id`); results
    written before atlases recorded the id match on key and seed. Anything else (another
    query's result copied in, a foreign file) is not the job's, so never counted as done."""
    mark = info.get("job") if isinstance(info, dict) else None
    return (
        isinstance(mark, dict)
        and mark.get("key") == key
        and mark.get("seed") == seed
        and mark.get("id") in (None, ident)
    )


def complete(d: Path) -> bool:
    """``d`` holds a whole saved result: result.json and the result.npz written before it
    (a result.json alone has lost its arrays)."""
    return (d / "result.json").is_file() and (d / "result.npz").is_file()


def target_state(out: Path, key: str, seed: int | None = None, ident: str | None = None) -> str:
    """``'done'``, ``'absent'``, ``'partial'`` (a directory without a complete result: an unfinished
    or emptied target, replaced when it is written) or ``'foreign'``: a result.json that is not
    this job's (another query's result, or a file). With ``seed`` (the unit's) and ``ident``
    (:func:`job_id`) a result is this job's when it records them; results written before
    atlases recorded ``ident`` match on key and seed."""
    d = out / key
    if not d.exists():
        return "absent"
    if not d.is_dir():
        return "foreign"
    p = d / "result.json"
    if not complete(d):
        return "partial"
    if seed is None:
        return "done"
    try:
        meta = json.loads(p.read_text())
        ours = isinstance(meta, dict) and is_own_result(meta.get("info"), key, seed, ident)
    except (OSError, ValueError):  # unreadable: not a result this job wrote
        ours = False
    return "done" if ours else "foreign"


def _refuse_foreign_files(out: Path, keys: list[str], report: bool) -> None:
    """A one-line error before any work when the job would overwrite what a user put in
    ``out``: a page of theirs where the report goes (with ``report``), or files of theirs in
    an unfinished target's directory, which is replaced when the target is computed."""
    if report:
        from inverset.report.html import refuse_foreign

        refuse_foreign([out / "index.html", *(out / k / "index.html" for k in keys)])
    ours = {"result.json", "result.npz", *PICTURES}
    for key in keys:
        d = out / key
        if not d.is_dir() or complete(d):
            continue
        theirs = sorted(
            p.name
            for p in d.iterdir()
            if (p.name not in ours and not p.name.startswith(".tmp-"))
            or (p.suffix == ".html" and not is_ours(p))
        )
        if theirs:
            raise InversetError(
                f"{d} holds files inverset did not write ({', '.join(theirs[:3])}"
                f"{', ...' if len(theirs) > 3 else ''}); the target's directory is replaced "
                "when it is computed: move them away, or give another --out"
            )


def is_done(out: Path, key: str, seed: int | None = None, ident: str | None = None) -> bool:
    """``out/key`` holds a finished result (this job's, given ``seed`` and ``ident``)."""
    return target_state(out, key, seed, ident) == "done"


def write_target(out: Path, key: str, result: Result) -> Path:
    """Save ``result`` as ``out/key`` atomically: into a temporary directory, then one rename.
    A directory already there without a complete result (unfinished, or its result deleted) is
    moved aside first and removed."""
    final = out / key
    tmp = out / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    old = out / f".tmp-old-{key}-{uuid.uuid4().hex[:8]}"
    try:
        result.save(tmp)
        if final.is_dir() and not complete(final):
            os.rename(final, old)
        os.rename(tmp, final)
    except OSError:
        if not complete(final):
            raise
    finally:
        for d in (tmp, old):
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
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
        except OSError as exc:  # read-only, no inodes left, no permission
            raise InversetError(
                f"cannot make the job's lock file in {out} ({exc.strerror or type(exc).__name__}"
                f"); {write_fix(exc)}, or use another --out"
            ) from None
    else:
        raise InversetError(f"cannot lock {out}; remove {lock} if no job is running")
    try:
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    except OSError as exc:  # a full disk: the lock file is there, its pid could not be written
        lock.unlink(missing_ok=True)
        raise InversetError(
            f"cannot write the job's lock file into {out} ({exc.strerror or type(exc).__name__})"
            f"; {write_fix(exc)}, or use another --out"
        ) from None
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    try:
        for stale in out.glob(".tmp-*"):  # a target's directory, or a page or job.json
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    stale.unlink()
        yield
    finally:
        lock.unlink(missing_ok=True)


def read_job(out: str | Path) -> dict[str, Any] | None:
    """``out/job.json``, or None when there is none. A file that is not a job record (corrupt,
    foreign, edited by hand) is one clear error naming it, before anything reads its fields."""
    p = Path(out) / "job.json"
    if not p.is_file():
        return None
    try:
        job = json.loads(p.read_text(encoding="utf-8"))
        problem = _job_problem(job)
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if problem:
        raise InversetError(
            f"{p} is not an atlas job record ({problem}); move it away, or use another directory"
        )
    return job


def _job_problem(job: Any) -> str | None:
    """What makes ``job`` (a parsed job.json) unusable as a job record, or None: the fields
    atlas and report index into must have their shapes, and keys must be plain names (they
    name directories the report writes into)."""
    if not isinstance(job, dict):
        return f"a JSON {type(job).__name__}, not an object"
    targets = job.get("targets")
    if not isinstance(targets, list) or not all(
        isinstance(t, dict) and isinstance(t.get("key"), str) and isinstance(t.get("target"), str)
        for t in targets
    ):
        return "'targets' is not a list of {key, target}"
    for t in targets:
        if t["key"] in ("", ".", "..") or any(c in t["key"] for c in "/\\\0"):
            return f"target key {t['key']!r} is not a plain directory name"
        rng = t.get("range")
        if rng is not None and not (
            isinstance(rng, list)
            and len(rng) == 2
            and all(isinstance(v, int | float) or v in ("inf", "-inf") for v in rng)
        ):
            return f"target {t['key']!r} has range {rng!r}, not two numbers"
    units = job.get("units", [])
    if not isinstance(units, list) or not all(
        isinstance(u, dict)
        and isinstance(u.get("keys"), list)
        and all(isinstance(k, str) for k in u["keys"])
        and isinstance(u.get("seed"), int)
        for u in units
    ):
        return "'units' is not a list of {keys, seed}"
    for name, kind in (("runs", list), ("query", dict), ("model", dict), ("id", str)):
        if name in job and not isinstance(job[name], kind):
            return f"{name!r} is not a JSON {'array' if kind is list else kind.__name__}"
    if not all(isinstance(r, dict) for r in job.get("runs", [])):
        return "'runs' is not a list of objects"
    return None


def _described(obj: Any) -> Any:
    """What job.json records of an option that is not JSON, the same in every process: an
    object with ``describe()`` or ``to_dict()`` by that (a Latent: its generator's weights),
    anything else by its text without a memory address (``<... at 0x7f...>`` made every
    resumed job look new)."""
    for name in ("describe", "to_dict"):
        if callable(getattr(obj, name, None)):
            return getattr(obj, name)()
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(obj))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` into ``path`` whole or not at all; a failed write (a full disk) is a one-line
    error naming the file."""
    text = json.dumps(_jsonable(data), indent=2, default=_described)
    try:
        with replacing(path) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise InversetError(
            f"cannot write the job record {path} ({exc.strerror or type(exc).__name__}); free "
            "space on its disk, or use another --out"
        ) from None


def _check_same_job(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    fresh = json.loads(json.dumps(_jsonable(new), default=_described))

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
    """Every finished target's Result in ``out``, in job order (with job.json, only the
    results of that job)."""
    out = Path(out)
    if not out.is_dir():
        what = "is a file" if out.exists() else "does not exist"
        raise InversetError(f"atlas directory {out} {what}; give the --out of an atlas job")
    job = read_job(out)
    if not job:
        keys = sorted(p.parent.name for p in out.glob("*/result.json"))
        return {k: Result.load(out / k) for k in keys}
    seeds, ident = unit_seeds(job), job_ident(job)
    keys = [t["key"] for t in job["targets"]]
    return {k: Result.load(out / k) for k in keys if is_done(out, k, seeds.get(k), ident)}


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
            why: dict[str, list[str]] = {}
            for k, v in self.failed.items():
                why.setdefault(v, []).append(k)
            msg += f"; {len(self.failed)} failed: " + ", ".join(
                ", ".join(ks[:5]) + (" ..." if len(ks) > 5 else "") + f" ({v})"
                for v, ks in list(why.items())[:5]
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


class _BadQuery(Exception):
    """An InversetError from the units that is about the query, not about a target (the job
    has nothing done): the job is refused as bad input, as an up-front check would."""


class _NotStarted(Exception):
    """The runner failed to start (``error``: why, e.g. an unreachable Ray address): no
    target has started, so the job is left as it was before this run."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _names_target(message: str, unit: dict[str, Any]) -> bool:
    """The message names one of the unit's targets (so it is about that target), as the
    user wrote it or as errors print it (``-out:2`` prints ``-(out:2)``)."""
    flat = message.replace(" ", "")
    forms = {t.replace(" ", "") for t in unit["targets"]}
    for t in unit["targets"]:
        with contextlib.suppress(InversetError):  # e.g. prob:cat needs labels the unit has
            forms.add(str(parse_target(t)).replace(" ", ""))
    return any(f in flat for f in forms) or any(k in message for k in unit["keys"])


def _drive(
    run: Any,
    model: nn.Module,
    spec: dict[str, Any],
    todo: list[dict[str, Any]],
    out: Path,
    bar: _JobProgress,
    job_time_limit: float | None,
    on_result: Callable[[str, Result], None] | None,
    ident: str,
    done: set[str],
) -> tuple[str, int, dict[str, str]]:
    """Keep ``run.slots`` units in flight, write each answer as it comes; returns (status,
    targets written, failures). Ctrl-C (or an 'interrupted' answer) stops it cleanly.

    ``job_time_limit`` counts from the first unit's start, and at least that unit starts, so
    every run makes progress. A unit's error is its targets' failure; but while the job has
    nothing ``done``, an InversetError naming none of the unit's targets, or one from every
    unit, is about the query: :class:`_BadQuery`; a runner that fails to start is
    :class:`_NotStarted`. Workers that can run no more
    (:class:`RunnerFailed`) fail the units in flight and stop the run."""
    from inverset.errors import first_line
    from inverset.jobs.runners import RunnerFailed

    failed: dict[str, str] = {}
    finished = 0
    status = "complete"
    pending = list(todo)
    inflight: dict[Any, dict[str, Any]] = {}
    starting: dict[str, Any] | None = None
    query_errors: list[str] = []
    clock: float | None = None
    fresh = not done
    try:
        try:
            run.start(model, spec)
        except Exception as exc:
            raise _NotStarted(exc) from exc
        bar.show()
        while pending or inflight:
            while pending and len(inflight) < run.slots:
                if (
                    job_time_limit is not None
                    and clock is not None
                    and time.monotonic() - clock >= job_time_limit
                ):
                    status = "job_time_limit"
                    break
                starting = pending.pop(0)
                handle = run.submit(starting)
                clock = time.monotonic() if clock is None else clock
                inflight[handle], starting = starting, None
                bar.started(handle, inflight[handle])
            if not inflight:
                break
            for handle, outcome in run.wait(list(inflight)):
                unit = inflight.pop(handle)
                if isinstance(outcome, BaseException):
                    why = first_line(outcome)
                    if isinstance(outcome, InversetError) and fresh and not finished:
                        if not _names_target(why, unit):
                            raise _BadQuery(why)
                        query_errors.append(why)
                    for k in unit["keys"]:
                        failed[k] = f"{type(outcome).__name__}: {why}"
                    bar.finished(handle, 0, f"failed {unit['keys'][0]}")
                    continue
                if any(r.status == "interrupted" for _, r in outcome):
                    raise KeyboardInterrupt
                for key, res in outcome:
                    if key in done:  # a batch redone for its other targets
                        continue
                    res.info = {**res.info, "job": {"key": key, "seed": unit["seed"], "id": ident}}
                    write_target(out, key, res)
                    finished += 1
                    if on_result is not None:
                        on_result(key, res)
                last = outcome[-1][1]
                value = "" if last.value is None else f"{outcome[-1][0]}={last.value:.4g}"
                bar.finished(handle, len(outcome), value)
        if fresh and not finished and status == "complete" and len(query_errors) == len(todo):
            more = len(failed) - 1
            raise _BadQuery(
                query_errors[0] + (f" (and {more} more targets failed)" if more else "")
            )
    except KeyboardInterrupt:
        status = "interrupted"
    except RunnerFailed as exc:
        status = "failed"
        lost = [*inflight.values(), *([starting] if starting else [])]
        for unit in lost:
            for k in unit["keys"]:
                failed[k] = str(exc)
    finally:
        try:
            run.close(list(inflight))
        except KeyboardInterrupt:  # a Ctrl-C while the workers stop: they are stopped anyway
            status = "interrupted"
            with contextlib.suppress(Exception, KeyboardInterrupt):
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
    end unless ``report=False``. Ctrl-C or SIGTERM stops the job cleanly (workers end with
    it); rerun to resume. A unit's error fails its targets and the rest go on; an error about
    the query itself (every target failing alike, nothing done yet) raises InversetError and
    leaves no job behind, so the corrected call starts afresh.
    """
    from inverset.solvers import check_time_limit

    if mode not in MODES:
        raise InversetError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    seed = check_seed(seed, MAX_SEARCH_SEED)  # recorded in job.json: a whole number, always
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
    check_time_limit(time_limit)  # the same check every unit's call makes
    model = as_module(model)
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
    if mode in ("maximize", "minimize"):
        from inverset.api import _check_max_evals
        from inverset.solvers import check_options as check_solver_options
        from inverset.solvers import get_solver

        # the kinds of the options' values, checked as inverset.maximize checks them; space
        # and max_evals are the query's own, as inverset.maximize takes them
        solver_options = {k: v for k, v in options.items() if k not in ("space", "max_evals")}
        check_solver_options(f"solver {solver!r}", get_solver(solver), solver_options)
        if "max_evals" in options:
            _check_max_evals(options["max_evals"])
    batch = batch or DEFAULT_BATCH.get(mode, 1)
    _keep_keys(items, out)
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
    job["id"] = job_id(job)
    made = not Path(out).exists()
    out = output_directory(out)
    try:
        with sigterm_as_interrupt(), job_lock(out):
            _refuse_foreign_files(out, [t["key"] for t in job["targets"]], report)
            summary = _run_job(
                model,
                out,
                job,
                spec,
                units,
                make_runner_args=(runner, workers, ray_address, progress),
                title=f"atlas {mode} {layer or ''}".strip(),
                job_time_limit=job_time_limit,
                on_result=on_result,
                progress=progress,
                t0=t0,
            )
            if report:
                from inverset.report.html import build_report

                summary.index = build_report(out)
    except InversetError:  # bad input: a directory this call made is not left behind empty
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return summary


def _adopt(out: Path, old: dict[str, Any] | None, job: dict[str, Any]) -> set[str]:
    """Take over ``out/job.json``'s history when it is the same job. A different job is
    refused when the old one has a finished target (nothing computed is lost); one with
    none is replaced. A result.json there that is not this job's is refused too: recomputing
    into its directory would destroy it. Returns the keys of this job's finished targets."""
    if old is not None:
        try:
            _check_same_job(old, job, out)
            job["created"], job["runs"] = old.get("created"), old.get("runs", [])
            job["id"] = old.get("id", job["id"])  # what its results record
        except InversetError:
            seeds, old_id = unit_seeds(old), job_ident(old)
            if any(is_done(out, k, sd, old_id) for k, sd in seeds.items()):
                raise
            old = None
    ident = job["id"]
    if old is None:
        job["created"], job["runs"] = datetime.now(UTC).isoformat(), []
    states = {k: target_state(out, k, sd, ident) for k, sd in unit_seeds(job).items()}
    foreign = [k for k, state in states.items() if state == "foreign"]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise InversetError(
            f"{out / foreign[0]}{more} holds a result that is not this job's (another query's "
            "result.json, or a file); move it away, or write the atlas to another --out"
        )
    return {k for k, state in states.items() if state == "done"}


def _run_job(
    model: nn.Module,
    out: Path,
    job: dict[str, Any],
    spec: dict[str, Any],
    units: list[dict[str, Any]],
    *,
    make_runner_args: tuple[Any, ...],
    title: str,
    job_time_limit: float | None,
    on_result: Callable[[str, Result], None] | None,
    progress: bool,
    t0: float,
) -> AtlasSummary:
    """Run a job whose directory is locked: record it, drive its unfinished units, record the
    run. A query the units refuse (:class:`_BadQuery`) or a runner that fails to start
    (:class:`_NotStarted`) restores job.json as it was: none when this run created it."""
    import inverset
    from inverset.jobs.runners import make_runner

    old = read_job(out)
    done = _adopt(out, old, job)
    job["inverset"] = inverset.__version__
    seeds = unit_seeds(job)
    keys = [t["key"] for t in job["targets"]]
    run = make_runner(*make_runner_args)
    _write_json(out / "job.json", job)
    todo = [u for u in units if not all(k in done for k in u["keys"])]
    started = datetime.now(UTC).isoformat()

    def restore() -> None:
        if old is None:
            (out / "job.json").unlink(missing_ok=True)
        else:
            _write_json(out / "job.json", old)

    unstarted: Exception | None = None
    try:
        with _JobProgress(progress, len(keys), len(done), title, not run.live) as bar:
            status, finished, failed = _drive(
                run, model, spec, todo, out, bar, job_time_limit, on_result, job["id"], done
            )
    except _BadQuery as exc:
        restore()
        raise InversetError(str(exc)) from None
    except _NotStarted as exc:
        unstarted = exc.error
    if unstarted is not None:  # raised here, outside the handler, as the runner raised it
        restore()
        raise unstarted
    remaining = [k for k in keys if not is_done(out, k, seeds[k], job["id"])]
    if status == "complete" and failed:
        status = "failed"
    summary = AtlasSummary(
        out=out,
        status=status,
        total=len(keys),
        skipped=len(done),
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
    return summary
