"""Files written whole or not at all: the pictures, pages and job records inverset writes."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
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
