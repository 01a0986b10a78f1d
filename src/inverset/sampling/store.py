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
from pathlib import Path
from typing import Any

import numpy as np

from inverset.errors import InversetError, first_line
from inverset.files import replacing
from inverset.result import _jsonable, output_directory

STATE = "state.json"
WALKERS = "walkers.npz"


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with replacing(path) as tmp:
        np.savez(tmp, **arrays)


def _differing(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ, one level into a dict both hold (``space.generator``)."""
    keys = []
    for k in sorted({*old, *new}):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys += [f"{k}.{j}" for j in sorted({*a, *b}) if a.get(j) != b.get(j)]
        else:
            keys.append(k)
    return keys


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
            self.state = self._read_state(state_file)
            old = self.state.get("query") or {}
            new = self.query
            dom = new.get("domain")
            if isinstance(dom, dict) and (old.get("domain") or {}).get("names") is None:
                # runs saved before queries recorded the model's feature names
                new = {**new, "domain": {**dom, "names": None}}
            if old != new:
                raise InversetError(
                    f"the run in {self.dir} answered a different query "
                    f"({', '.join(_differing(old, new))} differ); resume it with the same "
                    "model and weights, target, ranges, space (generator and its weights) and "
                    "encoder, or choose another directory"
                )
            self.chunks = list(self.state.get("chunks", []))

    def damaged(self, path: Path, why: str) -> InversetError:
        """The one-line error for a file of the run that cannot be read."""
        return InversetError(
            f"the sampling run in {self.dir} is damaged: {path.name} {why}; delete {self.dir} "
            "(or choose another output directory) and start the run again"
        )

    def _read_state(self, path: Path) -> dict[str, Any]:
        try:
            state = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise self.damaged(path, f"cannot be read ({first_line(exc)})") from exc
        chunks = state.get("chunks", []) if isinstance(state, dict) else None
        if not isinstance(chunks, list) or not all(
            isinstance(c, dict)
            and isinstance(c.get("file"), str)
            and isinstance(c.get("count"), int)
            for c in chunks
        ):
            raise self.damaged(path, "is not the state of a sampling run")
        return state

    # ------------------------------------------------------------------ reading
    def load(self) -> dict[str, np.ndarray]:
        """Every sample listed in the state, concatenated in acceptance order."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.FIELDS}
        for c in self.chunks:
            path = self.dir / c["file"]
            try:
                with np.load(path, allow_pickle=False) as z:
                    for k in self.FIELDS:
                        if k in z.files:
                            parts[k].append(z[k][: c["count"]])
            except FileNotFoundError as exc:
                raise self.damaged(path, "is missing") from exc
            except (OSError, ValueError, EOFError, KeyError) as exc:
                raise self.damaged(path, f"cannot be read ({first_line(exc)})") from exc
            if "x" not in parts or len(parts["x"][-1]) != c["count"]:
                raise self.damaged(path, f"does not hold the {c['count']} samples listed")
        try:
            return {k: np.concatenate(v) for k, v in parts.items() if v}
        except ValueError as exc:
            raise self.damaged(self.dir / STATE, f"lists chunks that do not fit ({exc})") from exc

    def walkers(self) -> dict[str, np.ndarray] | None:
        path = self.dir / WALKERS
        if not self.state or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise self.damaged(path, f"cannot be read ({first_line(exc)})") from exc

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
        """Write queued samples as a new chunk, then the walkers, then the state (the
        directory is made on the first write: a run that fails before it leaves nothing)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.pending:
            name = f"samples_{len(self.chunks):03d}.npz"
            data = {k: np.concatenate(v) for k, v in self.buffer.items() if v}
            _save_npz(self.dir / name, data)
            self.chunks.append({"file": name, "count": len(data["x"])})
            self.buffer = {k: [] for k in self.FIELDS}
        if walkers is not None:
            _save_npz(self.dir / WALKERS, walkers)
        self.state = {**state, "query": self.query, "chunks": self.chunks}
        with replacing(self.dir / STATE) as tmp:
            tmp.write_text(json.dumps(_jsonable(self.state), indent=1))
