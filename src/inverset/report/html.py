"""A static HTML atlas of a job directory: ``DIR/index.html`` and one page per target.

Only files beside each other (PNG pictures in each target's directory, pages that link to them
by relative paths): it opens from disk in any browser, offline, with no server and no script.
Pictures are rebuilt only when their Result is newer than them.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from inverset.files import GENERATOR, is_ours, remove_pictures, replacing
from inverset.report.images import save_bars, save_curve, save_grid, save_histogram, to_hwc
from inverset.report.pictures import (
    constraint_panels,
    constraints_text,
    domain_names,
    drawn_as,
    goal_span,
    image_range,
    picture_shape,
    rendered,
)
from inverset.result import Result, _jsonable, stored_floats

THUMB = "thumb.png"
CURVE = "convergence.png"
HIST = "histogram.png"
SAMPLES = "samples.png"
#: every picture a target's page may show
TARGET_PICTURES = (THUMB, SAMPLES, CURVE, HIST)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.3em;margin:.2em 0} .meta{color:#555;font-size:.9em;margin-bottom:1em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px;background:#fafafa;text-align:center}
.card img{width:100%;height:auto;image-rendering:pixelated;background:#fff;
 outline:1px solid #ccc}
.card.wide img{image-rendering:auto}
.card a{color:#1a4f8a;text-decoration:none;font-weight:600;word-break:break-all}
.card .v{font-size:.85em;color:#333} .card .s{font-size:.75em;color:#777}
.pending{color:#999;height:120px;display:flex;align-items:center;justify-content:center}
.failed{color:#b00}
table.kv td{padding:2px 10px 2px 0;vertical-align:top} table.kv td:first-child{color:#666}
.pics img{max-width:100%;margin:4px 8px 4px 0;vertical-align:top;outline:1px solid #ccc}
.pics img.px{image-rendering:pixelated;width:256px}
pre{background:#f4f4f4;padding:8px;overflow:auto;font-size:.8em}
nav a{margin-right:1em}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:.5g}"
    return str(v)


def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>{GENERATOR}"
        f"<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _write(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file; a failed write leaves none behind and
    is a one-line error naming the file."""
    from inverset.errors import InversetError

    try:
        with replacing(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InversetError(
            f"cannot write the atlas page {path} ({exc.strerror or type(exc).__name__}); make "
            f"{path.parent} writable, or copy the atlas to a directory you can write to and "
            "report it there"
        ) from None


def _check_writable(out: Path) -> None:
    """A one-line error before any work when the atlas directory takes no new files."""
    import tempfile

    from inverset.errors import InversetError

    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise InversetError(
            f"cannot write the atlas pages into {out} ({exc.strerror or type(exc).__name__}); "
            "make it writable, or copy the atlas to a directory you can write to and report it "
            "there"
        ) from None


#: how every PNG file starts, and how a whole one ends (its IEND chunk)
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
PNG_TAIL = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _whole_png(pic: Path) -> bool:
    """``pic`` starts and ends as a PNG file does: not empty, not cut short (a write that an
    earlier version was interrupted in). Two small reads, not a decoding: cheap on an atlas
    of hundreds of targets."""
    try:
        with pic.open("rb") as f:
            head = f.read(len(PNG_HEAD))
            f.seek(0, 2)
            if f.tell() < len(PNG_HEAD) + len(PNG_TAIL):
                return False
            f.seek(-len(PNG_TAIL), 2)
            return head == PNG_HEAD and f.read() == PNG_TAIL
    except OSError:
        return False


def _stale(pic: Path, src: Path) -> bool:
    """``pic`` is to be drawn (again): missing, older than its result ``src``, or not a whole
    PNG file."""
    if not pic.is_file() or pic.stat().st_mtime < src.stat().st_mtime:
        return True
    return not _whole_png(pic)


def goal_range(result: Result) -> tuple[float, float] | None:
    """The (z1, z2) a Result was asked to land in, if its query was a range."""
    goal = result.query.get("goal") or {}
    if isinstance(goal, dict) and goal.get("kind") == "reach":
        return None
    lo, hi = goal_span(result.query)
    return None if lo is None or hi is None else (lo, hi)


def in_range_count(result: Result) -> tuple[int, int] | None:
    """(points whose value lies in the query's range, points returned), for range queries."""
    rng = goal_range(result)
    if rng is None or result.values is None:
        return None
    v = np.asarray(result.values, dtype=float).reshape(-1)
    return int(((v >= rng[0]) & (v <= rng[1])).sum()), int(v.size)


def metric_line(result: Result) -> str:
    """The one line a card shows: value, bound and gap, or the in-range count."""
    parts = []
    counts = in_range_count(result)
    if counts is not None:
        parts.append(f"in range {counts[0]}/{counts[1]}")
    if result.value is not None:
        parts.append(f"value {_fmt(result.value)}")
    if result.bound is not None:
        parts.append(f"bound {_fmt(result.bound)}")
    if result.gap is not None:
        parts.append(f"gap {_fmt(result.gap)}")
    return " · ".join(parts) or "no value"


def _thumbnail(
    x: np.ndarray, path: Path, value_range: tuple[float, float] | None, size: int = 160
) -> None:
    """``x`` as a PNG about ``size`` pixels wide, on the scale ``value_range`` (see
    :func:`~inverset.report.images.to_hwc`; a model's input: no channel is transparency)."""
    from PIL import Image

    a = (to_hwc(x, value_range, alpha=False) * 255).round().astype(np.uint8)
    im = Image.fromarray(a)
    scale = size / max(im.size)
    if scale >= 2:
        im = im.resize((im.width * int(scale), im.height * int(scale)), Image.Resampling.NEAREST)
    elif scale < 1:
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
    with replacing(path) as tmp:
        im.save(tmp, format="PNG")


def write_target_pictures(result: Result, d: Path, names: list[str] | None = None) -> list[str]:
    """The pictures of one target in ``d`` (rebuilt when stale; those this result no longer
    has are removed, so none outlives its result); returns their file names."""
    src = d / "result.json"
    pics: list[str] = []
    target = result.query.get("target", d.name)
    if result.x is not None:
        x, xs = np.asarray(result.x), result.xs
        pixels = rendered(result)
        if pixels is not None:
            x, xs = pixels
        shape = picture_shape(x.shape, names or domain_names(result))
        if _stale(d / THUMB, src):
            if shape is not None:
                _thumbnail(x.reshape(shape), d / THUMB, image_range(result.query))
            else:
                dom = result.query.get("domain") or {}
                lo = np.broadcast_to(stored_floats(dom.get("lo")), x.shape)
                hi = np.broadcast_to(stored_floats(dom.get("hi")), x.shape)
                save_bars(
                    x,
                    d / THUMB,
                    names or dom.get("names"),
                    lo.reshape(-1),
                    hi.reshape(-1),
                    title=f"{target}: {result.x_label}",
                )
        pics.append(THUMB)
        many = xs is not None and len(xs) > 1
        shape = picture_shape(np.shape(xs)[1:], names or domain_names(result)) if many else None
        if shape is not None:
            if _stale(d / SAMPLES, src):
                vals = result.values if result.values is not None else [None] * len(xs)
                flat = shape != np.shape(xs)[1:]
                save_grid(
                    np.asarray(xs)[:32].reshape(-1, *shape),
                    d / SAMPLES,
                    [_fmt(None if v is None else float(v)) for v in vals[:32]],
                    title=f"{target}: returned points"
                    + constraints_text(result.query)
                    + (f" ({drawn_as(int(np.prod(shape)), shape)})" if flat else ""),
                    value_range=image_range(result.query),
                    alpha=False,
                )
            pics.append(SAMPLES)
    ykey = next((k for k in ("best", "objective") if result.history.get(k)), None)
    if ykey is not None:
        if _stale(d / CURVE, src):
            # a visualize atlas's target shares its render batch's curve (the batch's mean)
            batch = result.info.get("history") == "mean over the batch"
            what = "its render batch's mean objective" if batch else ykey
            save_curve(result.history, d / CURVE, y=ykey, title=f"{target}: {what}")
        pics.append(CURVE)
    if result.values is not None and np.asarray(result.values).size > 1:
        if _stale(d / HIST, src):
            more = constraint_panels(result)
            save_histogram(
                result.values,
                d / HIST,
                *goal_span(result.query),
                title="values of returned points"
                if more
                else f"{target}: values of returned points",
                more=more,
                name=target,
            )
        pics.append(HIST)
    remove_pictures(d, TARGET_PICTURES, keep=pics)
    return pics


#: features up to which a page lists the input's numbers (beside its bar chart)
TABLE_FEATURES = 64


def _input_table(result: Result) -> str:
    """A tabular ``x`` as numbers, one row per feature with its box (a recipe is read off a
    table, not off bars); '' for none, or over :data:`TABLE_FEATURES` features."""
    if result.x is None or np.size(result.x) > TABLE_FEATURES:
        return ""
    x = np.asarray(result.x, dtype=np.float64).reshape(-1)
    dom = result.query.get("domain") or {}
    dom = dom if isinstance(dom, dict) else {}
    try:
        lo, hi = (stored_floats(dom.get(k, np.nan)).reshape(-1) for k in ("lo", "hi"))
        lo, hi = np.broadcast_to(lo, x.shape), np.broadcast_to(hi, x.shape)
    except ValueError:  # a box of another shape: no bounds shown
        lo = hi = np.full(x.shape, np.nan)
    names = domain_names(result) or [str(i) for i in range(x.size)]
    rows = "".join(
        f"<tr><td>{html.escape(str(n))}</td><td>{_fmt(v)}</td>"
        f"<td>{f'[{_fmt(a)}, {_fmt(b)}]' if not (np.isnan(a) and np.isnan(b)) else '-'}</td></tr>"
        for n, v, a, b in zip(names, x, lo, hi, strict=False)
    )
    head = "<tr><th>feature</th><th>value</th><th>box</th></tr>"
    return f"<h2>{html.escape(result.x_label)}</h2><table class=kv>{head}{rows}</table>"


def _target_page(
    key: str,
    result: Result,
    pics: list[str],
    prev: str | None,
    nxt: str | None,
    named: bool,
    alone: bool = False,
) -> str:
    """One target's page; ``named``: its directory name is shown (results saved side by side,
    not a job's targets); ``alone``: one query's page, in no atlas."""
    target = result.query.get("target", key)
    nav = [] if alone else ["<a href='../index.html'>&larr; atlas</a>"]
    if prev:
        nav.append(f"<a href='../{quote(prev)}/index.html'>previous</a>")
    if nxt:
        nav.append(f"<a href='../{quote(nxt)}/index.html'>next</a>")
    rows = [
        ("status", result.status),
        ("value" if result.x_label == "best input" else "value (first sample)", _fmt(result.value)),
        ("bound", _fmt(result.bound)),
        ("gap", _fmt(result.gap)),
    ]
    counts = in_range_count(result)
    if counts is not None:
        rng = goal_range(result)
        rows.append(("in range", f"{counts[0]} of {counts[1]} points in [{rng[0]:g}, {rng[1]:g}]"))
    rows += [
        ("evaluations", _fmt(result.nfev)),
        ("solver", result.solver or "-"),
        ("time", f"{result.timings.get('total', 0.0):.2f} s"),
        ("message", result.message or "-"),
    ]
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    captions = {
        **QUERY_PICTURES,
        THUMB: result.x_label,
        "best_input.png": result.x_label,
        SAMPLES: "returned points",
        CURVE: "convergence",
        HIST: "histogram of target values",
    }
    pixel = result.x is not None
    pixel = pixel and picture_shape(np.shape(result.x), domain_names(result)) is not None
    imgs = "".join(
        f"<figure style='display:inline-block;margin:0;vertical-align:top'>"
        f"<img src='{p}' alt='{captions[p]}'{' class=px' if p == THUMB and pixel else ''}>"
        f"<figcaption>{captions[p]}</figcaption></figure>"
        for p in pics
    )
    query = html.escape(json.dumps(_jsonable(result.query), indent=2))
    info = html.escape(json.dumps(_jsonable({"timings": result.timings, **result.info}), indent=2))
    body = (
        f"<nav>{''.join(nav)}</nav>"
        + (f"<div class=meta>{html.escape(key)}</div>" if named else "")
        + f"<h1>{html.escape(str(target))}</h1>"
        f"<table class=kv>{table}</table><div class=pics>{imgs}</div>"
        + ("" if pixel else _input_table(result))
        + f"<h2>query</h2><pre>{query}</pre><h2>details</h2><pre>{info}</pre>"
    )
    return _page(f"{target} — inverset{'' if alone else ' atlas'}", body)


#: what the pictures beside one query's result show (report.pictures.write_pictures,
#: featvis.save), in the order its page shows them
QUERY_PICTURES = {
    "grid.png": "images",
    "inputs.png": "returned points",
    "best_input.png": "best input",
    "convergence.png": "convergence",
    "values.png": "values of returned points",
    "optimization.gif": "optimization",
}


def _query_report(out: Path) -> Path:
    """``out/index.html`` for one query's ``--out`` directory: its result as an atlas
    target's page shows it, with the pictures written beside it (drawn when it was saved;
    none is redrawn here, so a visualize grid stays as rendered)."""

    result = Result.load(out)  # an unreadable result: a one-line error naming the file
    pics = [p for p in QUERY_PICTURES if (out / p).is_file()]
    index = out / "index.html"
    refuse_foreign([index])
    _write(index, _target_page(out.name, result, pics, None, None, False, alone=True))
    return index


def refuse_foreign(pages: list[Path]) -> None:
    """A one-line error, before anything is written, when a page the report would write is
    already there and not inverset's (a user's own ``index.html``): it is never overwritten.
    An atlas asks before its job runs, so that no finished job ends in this error."""
    from inverset.errors import InversetError

    foreign = [p for p in pages if p.exists() and not is_ours(p)]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise InversetError(
            f"{foreign[0]}{more} is not a page inverset wrote; move it away to build the report"
        )


def _note_card(key: str, target: str, cls: str, text: str) -> str:
    """A card without a result: pending, failed, foreign or broken, with why."""
    return (
        f"<div class='card {cls}' data-key='{html.escape(key)}'>"
        f"<div class='pending {cls}'>{html.escape(text)}</div>"
        f"<div>{html.escape(target)}</div></div>"
    )


def build_report(
    directory: str | Path,
    names: list[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """(Re)build ``directory/index.html`` and each finished target's page and pictures from
    the saved Results (and ``job.json`` when present). Returns the index path.

    A target whose result.json cannot be read or shown gets a card saying why, and one that
    is not this job's (another query's result copied in) is shown as foreign, not done: the
    rest of the report is still built, and ``warn`` (e.g. a print to stderr) hears of each."""
    from inverset.errors import InversetError, first_line
    from inverset.jobs.atlas import (
        is_own_result,
        job_ident,
        read_job,
        target_state,
        unit_seeds,
    )

    out = Path(directory)
    if not out.is_dir():
        raise InversetError(
            f"{out} is not a directory; give the --out of an atlas job or of one query"
        )
    _check_writable(out)
    job = read_job(out) or {}
    if job:
        entries = [(t["key"], t["target"]) for t in job["targets"]]
    else:
        entries = [(p.parent.name, p.parent.name) for p in sorted(out.glob("*/result.json"))]
    if not entries and (out / "result.json").is_file():
        return _query_report(out)
    if not entries:
        raise InversetError(
            f"{out} holds no results (no result.json, no */result.json); give the --out of "
            "an atlas job or of one query"
        )
    refuse_foreign([out / "index.html", *(out / key / "index.html" for key, _ in entries)])
    seeds, ident = unit_seeds(job), job_ident(job) if job else None
    last_run = (job.get("runs") or [{}])[-1]
    failed = last_run.get("failed")
    failed = failed if isinstance(failed, dict) else {}
    cards: dict[str, str] = {}
    shown: dict[str, tuple[Result, list[str]]] = {}
    problems = {"foreign": 0, "broken": 0}

    def problem(key: str, target: str, kind: str, why: str, fix: str) -> None:
        problems[kind] += 1
        cards[key] = _note_card(key, target, "failed", f"{kind}: {why}")
        if (out / key).is_dir():  # an earlier result's page and pictures must not stay
            remove_pictures(out / key, [*TARGET_PICTURES, "index.html"])
        if warn is not None:
            warn(f"{why}; its card shows it as {kind} ({fix})")

    for key, target in entries:
        d = out / key
        state = target_state(out, key)
        # a result.json without its arrays: loading it says so, on a broken card; the atlas
        # replaces it, but recomputes no complete result it cannot read (it may not be its own)
        fix = f"remove {d} and rerun the atlas to recompute it"
        if state == "partial" and (d / "result.json").is_file():
            state, fix = "done", "rerun the atlas to recompute it"
        if state in ("absent", "partial"):
            why = failed.get(key)
            cls, text = ("failed", f"failed: {why}") if why else ("", "pending")
            cards[key] = _note_card(key, target, cls, text)
            continue
        if state == "foreign":  # a file where the target's directory belongs
            why = f"{d} is a file, not a target's directory"
            problem(key, target, "foreign", why, "move it away, rerun the atlas")
            continue
        try:
            result = Result.load(d)
            if not isinstance(result.query, dict) or not isinstance(result.info, dict):
                raise ValueError("its query or info is not a JSON object")
        except Exception as exc:  # any unreadable file: this card only, never the report
            why = first_line(exc)  # an InversetError names the file
            if not isinstance(exc, InversetError):
                why = f"{d / 'result.json'} is not a saved result ({type(exc).__name__}: {why})"
            problem(key, target, "broken", why, fix)
            continue
        if job and key in seeds and not is_own_result(result.info, key, seeds[key], ident):
            why = f"{d} holds another query's result, not this job's"
            problem(key, target, "foreign", why, "move it away, rerun the atlas to compute it")
            continue
        try:
            shown[key] = (result, write_target_pictures(result, d, names))
        except Exception as exc:  # pictures are extras: the result is on disk all the same
            shown[key] = (result, [])
            if warn is not None:
                warn(f"{d}: pictures not written ({first_line(exc)})")
    done, names_of = list(shown), dict(entries)
    for j, key in enumerate(done):
        result, pics = shown[key]
        target = names_of[key]
        prev = done[j - 1] if j > 0 else None
        nxt = done[j + 1] if j + 1 < len(done) else None
        shown_target = str(result.query.get("target", target))
        # results saved side by side (not a job's targets): their directories tell them apart
        named = not job and key != shown_target
        _write(out / key / "index.html", _target_page(key, result, pics, prev, nxt, named))
        link = f"{quote(key)}/index.html"
        img = ""
        wide = ""
        if THUMB in pics:
            img = (
                f"<a href='{link}'><img src='{quote(key)}/{THUMB}' alt='{html.escape(target)}'></a>"
            )
            wide = "" if picture_shape(np.shape(result.x), domain_names(result)) else " wide"
        caption = f"<div class=s>{html.escape(key)}</div>" if named else ""
        cards[key] = (
            f"<div class='card{wide}' data-key='{html.escape(key)}'>{img}{caption}"
            f"<div><a href='{link}'>{html.escape(shown_target)}</a>"
            f"{_range_label(result)}</div>"
            f"<div class=v>{html.escape(metric_line(result))}</div>"
            f"<div class=s>{html.escape(how_line(result))}</div></div>"
        )
    model = job.get("model", {})
    meta = [
        f"{len(done)}/{len(entries)} targets done",
        *(f"{n} {kind}" for kind, n in problems.items() if n),
        f"mode {job.get('mode', '?')}" if job else "",
        f"model {model.get('class', '')} {model.get('source', '')}".strip() if model else "",
        f"last run: {last_run.get('status')} on {last_run.get('runner')}" if last_run else "",
    ]
    title = f"inverset atlas: {out.resolve().name}"
    query = job.get("query")
    body = (
        f"<h1>{html.escape(title)}</h1>"
        f"<div class=meta>{html.escape(' · '.join(m for m in meta if m))}</div>"
        f"<div class=grid>{''.join(cards[k] for k, _ in entries)}</div>"
        + (f"<h2>query</h2><pre>{html.escape(json.dumps(query, indent=2))}</pre>" if query else "")
    )
    index = out / "index.html"
    _write(index, _page(title, body))
    return index


def _range_label(result: Result) -> str:
    rng = goal_range(result)
    if rng is None:
        return ""
    both = f"[{rng[0]:g}, {rng[1]:g}]{constraints_text(result.query)}"
    return f" <span class=s>{html.escape(both)}</span>"


def how_line(result: Result) -> str:
    """A card's last line: status, goal and solver (results of several solvers and goals
    side by side must be told apart)."""
    goal = result.query.get("goal") or {}
    kind = goal.get("kind") if isinstance(goal, dict) else None
    if kind == "reach" and goal.get("value") is not None:
        kind = f"reach {float(goal['value']):g}"
    elif kind == "range":
        kind = None  # the range is shown beside the target
    return " · ".join(p for p in (result.status, kind, result.solver) if p)
