"""Files written whole or not at all: the pictures, pages and job records inverset writes."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary file's path beside ``path`` (same directory, same suffix) to write into;
    when the block ends it replaces ``path`` in one rename. Any exception in the block or the
    rename (a full disk, Ctrl-C, SIGTERM raised as KeyboardInterrupt) removes the temporary
    file and goes on: ``path`` is never left half written, and keeps what it held."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


#: every picture inverset writes beside a result (write_pictures; featvis.save: grid.png,
#: optimization.gif; `inverset report`: a target's page and its pictures): a result saved
#: over an earlier one removes them all (Result.save), so none of the earlier run is left
PICTURES = (
    "inputs.png",
    "best_input.png",
    "convergence.png",
    "values.png",
    "grid.png",
    "optimization.gif",
    "index.html",
    "thumb.png",
    "samples.png",
    "histogram.png",
)


#: what marks an HTML page as inverset's own (only those are removed as stale)
GENERATOR = "<meta name=generator content=inverset>"


def is_ours(page: Path) -> bool:
    """Whether the page at ``page`` is one inverset wrote (:data:`GENERATOR` in its head)."""
    try:
        with page.open("rb") as f:
            return GENERATOR.encode() in f.read(400)
    except OSError:
        return False


def remove_pictures(directory: str | Path, names: Sequence[str], keep: Sequence[str] = ()) -> None:
    """Remove the pictures ``names`` (inverset's own file names) from ``directory`` but those
    in ``keep``: a picture of an earlier result must not pass for one of the new result. A
    page (.html) goes only when inverset wrote it (:data:`GENERATOR`)."""
    for name in set(names) - set(keep):
        path = Path(directory) / name
        if name.endswith(".html") and path.is_file() and not is_ours(path):
            continue
        path.unlink(missing_ok=True)
