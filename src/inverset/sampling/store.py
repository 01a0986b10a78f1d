"""Nothing lost: accepted samples go to disk as they are accepted, and a run can resume.

Layout of the output directory::

    samples_000.npz, samples_001.npz, ...   append-only chunks (x, values, constraints, z)
    walkers.npz                             the walkers and the frozen multipliers (lambda, mu)
    state.json                              the query, the chunk list, counters, phase

Every file is written to a temporary name and renamed (atomic on POSIX), chunks first, then
the walkers, then ``state.json``, which alone says which chunks count: a chunk written just
before a crash but not yet listed is ignored (and overwritten) on resume, so resuming never
duplicates a sample.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from inverset.errors import InversetError
from inverset.result import _jsonable, output_directory

STATE = "state.json"
WALKERS = "walkers.npz"


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class SampleStore:
    """Append-only sample chunks plus a small JSON state in ``directory``."""

    FIELDS = ("x", "values", "constraints", "z")

    def __init__(self, directory: str | Path, query: dict[str, Any], resume: bool):
        self.dir = output_directory(directory, create=False)
        self.query = _jsonable(query)
        self.chunks: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}
        self.buffer: dict[str, list[np.ndarray]] = {k: [] for k in self.FIELDS}
        state_file = self.dir / STATE
        if state_file.is_file():
            if not resume:
                raise InversetError(
                    f"{self.dir} already holds a sampling run; pass resume=True (--resume) to "
                    "continue it, or choose another output directory"
                )
            self.state = json.loads(state_file.read_text())
            old = self.state.get("query") or {}
            if old != self.query:
                keys = sorted(k for k in {*old, *self.query} if old.get(k) != self.query.get(k))
                raise InversetError(
                    f"the run in {self.dir} answered a different query ({', '.join(keys)} "
                    "differ); resume it with the same model and weights, target, ranges, space "
                    "and encoder, or choose another directory"
                )
            self.chunks = list(self.state.get("chunks", []))
        self.dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ reading
    def load(self) -> dict[str, np.ndarray]:
        """Every sample listed in the state, concatenated in acceptance order."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.FIELDS}
        for c in self.chunks:
            with np.load(self.dir / c["file"], allow_pickle=False) as z:
                for k in self.FIELDS:
                    if k in z.files:
                        parts[k].append(z[k][: c["count"]])
        return {k: np.concatenate(v) for k, v in parts.items() if v}

    def walkers(self) -> dict[str, np.ndarray] | None:
        path = self.dir / WALKERS
        if not self.state or not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    # ------------------------------------------------------------------ writing
    @property
    def pending(self) -> int:
        return sum(len(a) for a in self.buffer["x"])

    def add(self, **arrays: np.ndarray | None) -> None:
        """Queue accepted samples (same number of rows in every array given)."""
        for k in self.FIELDS:
            if arrays.get(k) is not None:
                self.buffer[k].append(np.asarray(arrays[k]))

    def flush(self, state: dict[str, Any], walkers: dict[str, np.ndarray] | None = None) -> None:
        """Write queued samples as a new chunk, then the walkers, then the state."""
        if self.pending:
            name = f"samples_{len(self.chunks):03d}.npz"
            data = {k: np.concatenate(v) for k, v in self.buffer.items() if v}
            _save_npz(self.dir / name, data)
            self.chunks.append({"file": name, "count": len(data["x"])})
            self.buffer = {k: [] for k in self.FIELDS}
        if walkers is not None:
            _save_npz(self.dir / WALKERS, walkers)
        self.state = {**state, "query": self.query, "chunks": self.chunks}
        tmp = self.dir / (STATE + ".tmp")
        tmp.write_text(json.dumps(_jsonable(self.state), indent=1))
        os.replace(tmp, self.dir / STATE)
