"""Where inputs may live: box bounds, integer features, linear constraints ``A x <= b``."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inverset.checks import is_whole
from inverset.errors import InversetError, no_file

ArrayLike = float | Sequence[float] | np.ndarray


def as_shape(shape: Any, what: str = "shape") -> tuple[int, ...] | None:
    """``shape`` as a tuple of sizes >= 1 (an int ``n`` is ``(n,)``; None stays None), else a
    one-line error naming ``what`` (the argument it came from)."""
    if shape is None:
        return None
    if is_whole(shape):
        shape = (shape,)
    if isinstance(shape, str | bytes) or not isinstance(shape, Sequence | np.ndarray):
        raise InversetError(
            f"{what} must be a whole number or a tuple of them (e.g. 8 or (1, 8, 8)), got {shape!r}"
        )
    if not all(is_whole(s) and s >= 1 for s in shape):
        raise InversetError(
            f"{what} must hold whole numbers >= 1 (e.g. 8 or (1, 8, 8)), got {tuple(shape)!r}"
        )
    return tuple(int(s) for s in shape)


def _bound_array(v: Any, which: str) -> np.ndarray:
    """A box bound as a float64 array; a one-line error when it holds no numbers."""
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise InversetError(
            f"box bound {which} must be a number or an array of numbers (+-inf allowed), got {v!r}"
        ) from None


def _fit(bound: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A bound broadcast to ``shape``; one value per feature in another layout (a flat row of
    a box file for a (1, 8, 8) image) is reshaped to it."""
    try:
        return np.broadcast_to(bound, shape).astype(np.float64).copy()
    except MemoryError:
        raise InversetError(
            f"the input shape {shape} has {math.prod(shape):,} features, too many to hold in "
            "memory; check the input shape (--input-shape / input_shape=)"
        ) from None
    except ValueError:
        if bound.ndim and bound.size == math.prod(shape):
            return bound.reshape(shape).astype(np.float64)
        raise


def _integer_indices(integer: Any, size: int | None) -> tuple[int, ...]:
    """Sorted distinct flat indices of integer features from a list of indices, a single
    index, or a boolean mask with one entry per feature (scipy's ``integrality``)."""
    if integer is None:
        return ()
    if is_whole(integer):
        integer = [integer]
    if isinstance(integer, set | frozenset):
        integer = sorted(integer)
    arr = np.asarray(integer, dtype=object) if not isinstance(integer, np.ndarray) else integer
    if arr.dtype != bool and arr.ndim == 1:  # whole numbers given as floats (numpy arrays)
        arr = np.array(
            [
                int(v) if isinstance(v, float | np.floating) and float(v).is_integer() else v
                for v in arr
            ],
            dtype=object,
        )
    if arr.dtype == object and arr.size and all(isinstance(v, bool | np.bool_) for v in arr.flat):
        arr = arr.astype(bool)
    if arr.dtype == bool:
        if size is not None and arr.size != size:
            raise InversetError(
                f"integer mask has {arr.size} entries but the input has {size} features; give "
                "one True/False per feature, or the indices of the integer features"
            )
        return tuple(int(i) for i in np.flatnonzero(arr.reshape(-1)))
    if isinstance(integer, str | bytes) or arr.ndim != 1 or not all(is_whole(v) for v in arr):
        raise InversetError(
            "integer must list the flat indices of integer features as whole numbers (e.g. "
            f"integer=[0, 2]) or be a True/False mask per feature, got {integer!r}"
        )
    return tuple(sorted({int(i) for i in arr}))


#: :meth:`Box.hold` tries every float neighbour of a point with at most this many features
HOLD_GRID = 6


def sparse_points(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Unit-coordinate points (float64, ``shape[0]`` of them) with 0.5-5% of the features at
    1 and the rest at 0: strokes on a dark background, like the digits image classifiers are
    trained on. Uniform random or grey images can switch such nets (MNIST-FC) off entirely;
    the gradient solver and feature visualization start from these then."""
    k, ones = shape[0], (1,) * (len(shape) - 1)
    density = 0.005 + 0.045 * torch.rand((k, *ones), generator=gen, dtype=torch.float64)
    return (torch.rand(shape, generator=gen, dtype=torch.float64) < density).double()


def unit_widths(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``hi - lo`` as the scale of unit coordinates: a fixed feature (lo == hi) gets its
    dtype's least width (1e-12 is 0 in float16, and 0/0 made the searches' walkers NaN)."""
    return (hi - lo).clamp_min(max(1e-12, torch.finfo(lo.dtype).tiny))


@dataclass
class Box:
    """A box ``lo <= x <= hi`` on inputs of shape ``shape`` (without the batch axis).

    ``lo``/``hi`` are scalars or arrays broadcastable to ``shape``; ``integer`` lists the flat
    indices of features that must be whole numbers (or is a True/False mask with one entry per
    feature, as scipy's ``integrality``); ``A``/``b`` add linear constraints
    ``A @ x.flatten() <= b``. ``names`` optionally labels the flat features.
    """

    lo: ArrayLike = -np.inf
    hi: ArrayLike = np.inf
    shape: tuple[int, ...] | None = None
    integer: Sequence[int] = ()
    A: np.ndarray | None = None
    b: np.ndarray | None = None
    names: list[str] | None = None
    _lo: np.ndarray = field(init=False, repr=False)
    _hi: np.ndarray = field(init=False, repr=False)
    _inner: np.ndarray | None = field(init=False, repr=False, compare=False, default=None)
    _ab64: tuple[torch.Tensor, torch.Tensor] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        self.shape = as_shape(self.shape, "box shape")
        lo = _bound_array(self.lo, "lo")
        hi = _bound_array(self.hi, "hi")
        if self.shape is None:
            if lo.ndim == 0 and hi.ndim == 0:
                self._lo, self._hi = lo, hi
                self._check()
                return
            try:
                self.shape = np.broadcast_shapes(lo.shape, hi.shape)
            except ValueError:
                raise InversetError(
                    f"box bounds lo and hi have shapes {lo.shape} and {hi.shape}, which do not "
                    "fit together; give both one bound per input feature (or a single number)"
                ) from None
        try:
            self._lo, self._hi = _fit(lo, self.shape), _fit(hi, self.shape)
        except InversetError:
            raise
        except ValueError:
            raise InversetError(
                f"box bounds of shape {lo.shape}/{hi.shape} do not fit the input shape "
                f"{self.shape}; give one bound per input feature or a single number"
            ) from None
        self._check()

    def _check(self) -> None:
        if np.isnan(self._lo).any() or np.isnan(self._hi).any():
            raise InversetError("box bounds contain NaN; give finite numbers or +-inf")
        bad = np.argwhere(np.asarray(self._lo > self._hi).reshape(-1))
        if bad.size:
            i = int(bad[0, 0])
            lo_i = float(np.ravel(self._lo)[i]) if self._lo.ndim else float(self._lo)
            hi_i = float(np.ravel(self._hi)[i]) if self._hi.ndim else float(self._hi)
            raise InversetError(
                f"box has lo > hi ({lo_i:g} > {hi_i:g}) at feature {i}; swap the bounds"
            )
        if (self.A is None) != (self.b is None):
            given, missing = ("A", "b") if self.b is None else ("b", "A")
            raise InversetError(
                f"linear constraints A x <= b need both A and b; {given} was given without "
                f"{missing}"
            )
        if self.A is not None:
            try:
                self.A = np.atleast_2d(np.asarray(self.A, dtype=np.float64))
                self.b = np.atleast_1d(np.asarray(self.b, dtype=np.float64))
            except (TypeError, ValueError) as e:
                raise InversetError(
                    f"linear constraints A and b must be numbers ({e}); give a matrix A with "
                    "one column per feature and a vector b with one entry per row"
                ) from None
            if self.A.shape[0] != self.b.shape[0]:
                raise InversetError(
                    f"linear constraints: A has {self.A.shape[0]} rows but b has "
                    f"{self.b.shape[0]} entries; give one b per row of A"
                )
            if not (np.isfinite(self.A).all() and np.isfinite(self.b).all()):
                row = int(np.flatnonzero(~np.isfinite(np.c_[self.A, self.b]).all(1))[0])
                raise InversetError(
                    f"linear constraints: row {row} holds nan or inf; every a_i and b must be "
                    "a finite number"
                )
            if self.shape is not None:
                self._check_constraints()
        self.integer = _integer_indices(self.integer, self.size if self.shape else None)
        if any(i < 0 for i in self.integer):
            raise InversetError(
                f"integer feature {self.integer[0]} is negative; give flat indices from 0"
            )
        if self.integer and self.shape is not None:
            lo, hi = self._lo.reshape(-1), self._hi.reshape(-1)
            for i in self.integer:
                if not i < lo.size:
                    raise InversetError(
                        f"integer feature {i} is out of range; the input has {lo.size} "
                        f"features (0..{lo.size - 1})"
                    )
                if np.ceil(lo[i]) > np.floor(hi[i]):
                    name = f"{i} ({self.names[i]!r})" if self.names else str(i)
                    raise InversetError(
                        f"integer feature {name} has bounds [{lo[i]:g}, {hi[i]:g}] holding no "
                        "whole number; widen the box or drop it from --integer"
                    )

    def _check_constraints(self) -> None:
        """``A`` must have one column per feature and ``A x <= b`` a point inside the box (a
        linear program, HiGHS through scipy)."""
        from scipy.optimize import linprog

        assert self.A is not None and self.b is not None
        n = int(np.prod(self.shape))
        if self.A.shape[1] != n:
            raise InversetError(
                f"linear constraints have {self.A.shape[1]} columns but the input has {n} "
                f"features; give rows a_1..a_{n},b"
            )
        res = linprog(
            np.zeros(n), A_ub=self.A, b_ub=self.b, bounds=self._linprog_bounds(), method="highs"
        )
        if res.status == 2:
            raise InversetError(
                "the linear constraints A x <= b have no point inside the box; check their "
                "signs and right-hand sides against the bounds"
            )

    # ----------------------------------------------------------------- construction
    def with_shape(self, shape: Sequence[int]) -> Box:
        """This box with its bounds broadcast to ``shape``; error if they do not fit."""
        shape = as_shape(shape, "input shape")
        assert shape is not None
        if self.shape == shape:
            return self
        if self.shape is not None and int(np.prod(self.shape)) == int(np.prod(shape)):
            lo, hi = self._lo.reshape(shape), self._hi.reshape(shape)
        elif self.shape is not None and self._lo.ndim and self._lo.size > 1:
            raise InversetError(
                f"box has {self._lo.size} bounds but the model input has shape {shape} "
                f"({int(np.prod(shape))} features); give one bound per feature or a single number"
            )
        else:
            lo, hi = self._lo, self._hi
        return Box(lo, hi, shape=shape, integer=self.integer, A=self.A, b=self.b, names=self.names)

    @classmethod
    def from_csv(cls, path: str | Path, **kw: Any) -> Box:
        """Box from a CSV file: either data rows (min/max per column are taken) or two rows
        named ``lo``/``hi`` (first column holds the row name). A header row gives feature names."""
        path = Path(path)
        rows = _csv_rows(path, "box file", "give a CSV of data or lo/hi rows")
        if not rows:
            raise InversetError(f"box file {path} is empty; give a CSV of data or lo/hi rows")
        names = None

        def cell(s: str) -> float:  # an empty cell is a missing value
            return float(s) if s.strip() else np.nan

        def is_num(s: str) -> bool:
            return not s.strip() or _is_number(s)

        first = rows[0][0].strip().lower() if rows[0] else ""
        if not all(is_num(c) for c in rows[0]) and first not in ("lo", "hi"):
            names, rows = [c.strip() for c in rows[0]], rows[1:]
        labels = [r[0].strip().lower() for r in rows if not is_num(r[0])]
        bounds = "lo" in labels and "hi" in labels
        if not bounds and ("lo" in labels or "hi" in labels):
            given, missing = ("lo", "hi") if "lo" in labels else ("hi", "lo")
            raise InversetError(
                f"box file {path} has a {given} row but no {missing} row; give both, or rows of "
                "data"
            )
        if bounds:
            if sorted(labels) != ["hi", "lo"] or len(rows) != 2:
                raise InversetError(
                    f"box file {path} has lo/hi rows and {len(rows) - 2} other rows (rows: "
                    f"{', '.join(_row_names(rows))}); give either two rows lo and hi, or rows of "
                    "data"
                )
            table = [next(r[1:] for r in rows if r[0].strip().lower() == k) for k in ("lo", "hi")]
            if len(table[0]) != len(table[1]):
                raise InversetError(
                    f"box file {path}: the lo row has {len(table[0])} values and the hi row "
                    f"{len(table[1])}; give one value per feature in both"
                )
            if names is not None:
                names = names[1:]
        else:
            table = rows
            bad = next((i for i, r in enumerate(rows) if len(r) != len(rows[0])), None)
            if bad is not None:
                raise InversetError(
                    f"box file {path}: data row {bad + 1} has {len(rows[bad])} cells but row 1 "
                    f"has {len(rows[0])}; give every row one cell per feature (an empty cell is "
                    "a missing value)"
                )
        width = len(table[0]) if table else 0
        if names is not None and len(names) != width:
            raise InversetError(
                f"box file {path}: the header names {len(names)} columns but the rows hold "
                f"{width} values; give one name per column"
            )
        number = float if bounds else cell
        try:
            data = np.array([[number(v) for v in r] for r in table], dtype=np.float64)
        except ValueError as exc:
            raise InversetError(f"box file {path}: {exc}; every cell must be a number") from None
        lo, hi = (data[0], data[1]) if bounds else _data_range(data, names, path)
        return cls(lo, hi, names=names, **kw)

    @classmethod
    def from_data(cls, data: Any, **kw: Any) -> Box:
        """The smallest box holding every row of ``data`` (features in columns); a DataFrame's
        column names become the box's ``names`` (matched to a model's feature names)."""
        columns = getattr(data, "columns", None)
        if columns is not None and kw.get("names") is None:
            kw["names"] = [str(c) for c in columns]
        try:
            data = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise InversetError(
                "box data must hold numbers only (one row per sample, one column per feature)"
            ) from None
        return cls(*_data_range(data, kw.get("names")), **kw)

    def aligned(self, names: Sequence[str] | None, where: str = "box") -> Box:
        """This box with its features in the order of ``names`` (a model's feature names),
        matched to the box's own ``names``: bounds, integer features and the columns of ``A``
        move along. Unchanged when either side has no names; a name the model lacks, or a
        feature of the model the box does not name, is a one-line error."""
        if names is None or self.names is None or self.shape is None:
            return self
        names, own = [str(n) for n in names], [str(n) for n in self.names]
        if own == names:
            return self
        listed = ", ".join(names)
        if len(own) != self.size:
            raise InversetError(
                f"the {where} names {len(own)} features but bounds {self.size}; give one name "
                "per feature"
            )
        twice = next((n for n in own if own.count(n) > 1), None)
        if twice is not None:
            raise InversetError(f"the {where} names feature {twice!r} twice; name each once")
        unknown = [n for n in own if n not in names]
        if unknown:
            if not where.startswith("box file"):
                fix = "use the model's names, or names=None to take the features in order"
            elif len(own) > len(names):  # a column the model does not take (the data's target)
                fix = f"drop the column{'s' if len(unknown) > 1 else ''} the model does not take"
            else:
                fix = "rename the column, or drop the header to take the columns in order"
            raise InversetError(
                f"the {where} names {', '.join(map(repr, unknown))}, which the model does not "
                f"have; its features are {listed} ({fix})"
            )
        missing = [n for n in names if n not in own]
        if missing:
            raise InversetError(
                f"the {where} has no column for the model's feature(s) "
                f"{', '.join(map(repr, missing))}; its features are {listed}"
            )
        order = [own.index(n) for n in names]
        lo, hi = (np.broadcast_to(v, self.shape).reshape(-1)[order] for v in (self._lo, self._hi))
        where_now = {old: new for new, old in enumerate(order)}
        return Box(
            lo.reshape(self.shape),
            hi.reshape(self.shape),
            shape=self.shape,
            integer=[where_now[i] for i in self.integer],
            A=None if self.A is None else self.A[:, order],
            b=self.b,
            names=names,
        )

    # ----------------------------------------------------------------- queries
    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def lower(self) -> np.ndarray:
        return self._lo

    @property
    def upper(self) -> np.ndarray:
        return self._hi

    @property
    def bounded(self) -> bool:
        return bool(np.isfinite(self._lo).all() and np.isfinite(self._hi).all())

    #: what a search's message says of a domain that is a single point
    SINGLE_POINT = "the domain is a single point: lo == hi for every feature"

    @property
    def single_point(self) -> bool:
        """lo == hi for every feature: the one point is every search's answer."""
        return bool(np.all(self._lo == self._hi))

    def tensors(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi) as tensors of ``shape`` on ``device``, rounded inwards where ``dtype``
        cannot hold a bound exactly (a float32 model's input clamped to the box stays in it),
        unless no number of ``dtype`` lies between them."""
        lo = torch.as_tensor(self._lo, dtype=dtype, device=device)
        hi = torch.as_tensor(self._hi, dtype=dtype, device=device)
        if dtype == torch.float32:
            up = torch.nextafter(lo, torch.full_like(lo, math.inf))
            down = torch.nextafter(hi, torch.full_like(hi, -math.inf))
            lo_in = torch.where(lo.double() < torch.as_tensor(self._lo, device=lo.device), up, lo)
            hi_in = torch.where(hi.double() > torch.as_tensor(self._hi, device=hi.device), down, hi)
            keep = lo_in <= hi_in
            lo, hi = torch.where(keep, lo_in, lo), torch.where(keep, hi_in, hi)
        return lo, hi

    def sample(
        self,
        n: int,
        generator: torch.Generator,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``n`` points drawn uniformly in the box (a standard normal where unbounded)."""
        assert self.shape is not None, "box needs a shape before sampling"
        u = torch.rand((n, *self.shape), generator=generator, dtype=torch.float64)
        g = torch.randn((n, *self.shape), generator=generator, dtype=torch.float64)
        lo = torch.as_tensor(np.broadcast_to(self._lo, self.shape).copy())
        hi = torch.as_tensor(np.broadcast_to(self._hi, self.shape).copy())
        fin = torch.isfinite(lo) & torch.isfinite(hi)
        x = torch.where(fin, lo + (hi - lo) * u, g)
        x = torch.where(torch.isfinite(lo) & ~fin, lo + g.abs(), x)
        x = torch.where(torch.isfinite(hi) & ~fin, hi - g.abs(), x)
        return self.project(x.to(device=device, dtype=dtype), round_integers=False)

    def project(
        self, x: torch.Tensor, *, round_integers: bool = False, iters: int = 50
    ) -> torch.Tensor:
        """Nearest point of the domain (exact for the box; Dykstra's alternating projections
        when linear constraints are present). Integer features are rounded on request.

        Rounding can leave ``A x <= b``: then integer features are rounded the other way, one
        at a time, while that lowers the violation. A point with no such repair (no mixed-integer
        point near it) is returned with a violation: check ``contains`` where it matters."""
        lo, hi = self.tensors(x.device, x.dtype)
        x = torch.maximum(torch.minimum(x, hi), lo)
        if self.A is not None:
            x = self._project_polytope(x, lo, hi, iters)
        if round_integers and self.integer:
            flat = x.reshape(x.shape[0], -1).clone()
            idx = torch.as_tensor(self.integer, device=x.device)
            flo, fhi = lo.reshape(-1)[idx].ceil(), hi.reshape(-1)[idx].floor()
            frac = flat[:, idx]
            v = torch.maximum(torch.minimum(frac.round(), fhi), flo)
            flat[:, idx] = v
            if self.A is not None:
                alt = torch.where(v > frac, frac.floor(), frac.ceil())
                flat = self._repair_rounding(
                    flat, idx, v, torch.maximum(torch.minimum(alt, fhi), flo)
                )
            x = flat.reshape(x.shape)
        return x

    def _repair_rounding(
        self, flat: torch.Tensor, idx: torch.Tensor, v: torch.Tensor, alt: torch.Tensor
    ) -> torch.Tensor:
        """Greedy repair of rounded points ``flat`` that break ``A x <= b``: switch the integer
        feature (to its other rounding ``alt``) that lowers the summed violation most, until
        none does; each feature switches at most once."""
        A = torch.as_tensor(self.A, dtype=flat.dtype, device=flat.device)
        b = torch.as_tensor(self.b, dtype=flat.dtype, device=flat.device)
        cols = A[:, idx].T  # [d, m]: how each integer feature moves A x
        step = alt - v  # [n, d]: the switch of each feature (0 when it has no other rounding)
        free = step != 0
        res = flat @ A.T - b  # [n, m]
        for _ in range(len(idx)):
            viol = res.clamp_min(0).sum(1)
            bad = (viol > 1e-9) & free.any(1)
            if not bool(bad.any()):
                break
            rows = torch.nonzero(bad).flatten()
            new = res[rows, None, :] + step[rows, :, None] * cols[None]  # [k, d, m]
            cand = new.clamp_min(0).sum(-1).masked_fill(~free[rows], math.inf)
            best, j = cand.min(1)
            ok = best < viol[rows] - 1e-12
            rows, j = rows[ok], j[ok]
            if not len(rows):
                break
            flat[rows, idx[j]] = alt[rows, j]
            res[rows] = new[ok][torch.arange(len(rows), device=flat.device), j]
            free[rows, j] = False
        return flat

    def _project_polytope(self, x, lo, hi, iters):
        A = torch.as_tensor(self.A, dtype=x.dtype, device=x.device)
        b = torch.as_tensor(self.b, dtype=x.dtype, device=x.device)
        shape = x.shape
        y = x.reshape(shape[0], -1)
        lo_f, hi_f = lo.reshape(-1), hi.reshape(-1)
        norms = (A * A).sum(1).clamp_min(1e-30)
        sets = A.shape[0] + 1
        corr = [torch.zeros_like(y) for _ in range(sets)]
        for _ in range(iters):
            for k in range(sets):
                z = y + corr[k]
                if k < A.shape[0]:
                    viol = (z @ A[k] - b[k]).clamp_min(0)
                    p = z - viol[:, None] * A[k][None] / norms[k]
                else:
                    p = torch.maximum(torch.minimum(z, hi_f), lo_f)
                corr[k] = z - p
                y = p
            if float((y @ A.T - b).max()) <= 1e-9:
                break
        # beyond the rounding of the points' dtype (float32 sums of A x miss b by ~1e-7)
        slack = max(1e-9, 8 * torch.finfo(y.dtype).eps) * (1 + b.abs())
        bad = ((y @ A.T - b) > slack).any(1)
        if bool(bad.any()):
            y = y.clone()
            y[bad] = self._retract(y[bad].double(), slack.double()).to(y.dtype)
            y = torch.maximum(torch.minimum(y, hi_f), lo_f)
        return self.hold(y.reshape(shape))

    def hold(self, x: torch.Tensor) -> torch.Tensor:
        """Points ``x`` (a batch) as their dtype holds them inside ``A x <= b``: a point whose
        values, read exactly, break a row beyond 1e-9 of ``1 + |b|`` but only by the dtype's
        rounding is moved, continuous features only, until its copy in ``x``'s dtype keeps
        every row (a float32 answer near 3000 broke one by 2.5e-4, float32's spacing there):
        the least move first, a few units in the last place against the broken rows (all
        features, or one), else toward an inner point of the domain. A point no such move fits
        (an equality row float32 cannot meet) or outside by more is left as it was."""
        if self.A is None or x.dtype == torch.float64 or not x.dtype.is_floating_point:
            return x
        if not x.shape[0]:
            return x
        if self._ab64 is None:
            self._ab64 = tuple(torch.as_tensor(v, dtype=torch.float64) for v in (self.A, self.b))
        A, b = (t.to(x.device) for t in self._ab64)
        slack = 1e-9 * (1 + b.abs())
        flat = x.reshape(x.shape[0], -1)
        y = flat.double()
        res = y @ A.T - b
        bad = (res > slack).any(1)
        if not bool(bad.any()):
            return x
        rounding = 4 * torch.finfo(x.dtype).eps * (y.abs() @ A.abs().T + b.abs())
        rows = torch.nonzero(bad & (res <= rounding).all(1)).flatten()
        y = y[rows]
        lo, hi = (t.reshape(-1) for t in self.tensors(x.device, x.dtype))
        out = flat.clone()

        def settle(cand: torch.Tensor) -> torch.Tensor:
            """Which of the points ``cand`` ([m, k, D] in x's dtype) keep every row, and keep
            them in ``out`` (the first of each row's k that does); returns the rows left."""
            nonlocal rows, y
            cand = torch.maximum(torch.minimum(cand, hi), lo)
            ok = ((cand.double() @ A.T - b) <= slack).all(-1)  # [m, k]
            done = ok.any(1)
            first = ok.double().argmax(1)
            out[rows[done]] = cand[done, first[done]]
            rows, y = rows[~done], y[~done]
            return ~done

        d = flat.shape[1]
        free = torch.ones(d, dtype=torch.bool, device=x.device)
        free[list(self.integer)] = False
        ulp = torch.nextafter(flat[rows], torch.full_like(flat[rows], math.inf)) - flat[rows]
        ulp = ulp.double() * free
        if d <= HOLD_GRID:  # every sign pattern, fewest features moved first
            signs = torch.cartesian_prod(*[torch.tensor([0.0, 1.0, -1.0])] * d).reshape(-1, d)
            signs = signs[signs.abs().sum(1).argsort(stable=True)][1:].to(x.device)
            steps = signs[None] * ulp[:, None]  # [m, 3^d - 1, d]
        else:  # against the broken rows, all features at once and (up to 64) one at a time
            step = -torch.sign((res[rows] > slack).double() @ A) * ulp
            steps = step[:, None]
            if d <= 64:
                steps = torch.cat([steps, torch.diag_embed(step)], 1)
        for k in (1, 2, 4, 8, 16, 32):
            if not len(rows):
                break
            left = settle((y[:, None] + k * steps).to(x.dtype))
            steps = steps[left]
        if len(rows):
            if self._inner is None:
                self._inner = self._inner_point()
            toward = torch.as_tensor(self._inner, dtype=torch.float64, device=x.device) - y
            toward = toward * free
            for k in range(40, -1, -1):  # t = 2^-40 .. 1: the least move that holds
                if not len(rows):
                    break
                left = settle((y + 2.0**-k * toward).to(x.dtype)[:, None])
                toward = toward[left]
        return out.reshape(x.shape)

    def _retract(self, y: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
        """Points of the box that alternating projections left outside ``A x <= b`` (a thin
        polytope, where they converge slowly), moved along the segment to an inner point of the
        domain until just inside the rows they break by more than ``tol`` (the rows they keep
        hold on the whole segment: an equality's two rows, which the inner point meets with no
        room, do not pull every point onto it): every point the searches use is feasible."""
        if self._inner is None:
            self._inner = self._inner_point()
        A = torch.as_tensor(self.A, dtype=y.dtype, device=y.device)
        b = torch.as_tensor(self.b, dtype=y.dtype, device=y.device)
        c = torch.as_tensor(self._inner, dtype=y.dtype, device=y.device)
        room = (b - A @ c).clamp_min(0) * (1 - 1e-3)
        rise = (y - c) @ A.T
        broken = y @ A.T - b > tol
        t = torch.where(broken, room / rise.clamp_min(1e-300), torch.ones_like(rise))
        return c + t.amin(1, keepdim=True).clamp(0, 1) * (y - c)

    def _inner_point(self) -> np.ndarray:
        """A point of the box deepest inside ``A x <= b`` (the centre of the largest ball
        within the constraints' half-spaces, capped at radius 1; a linear program)."""
        from scipy.optimize import linprog

        assert self.A is not None and self.b is not None and self.shape is not None
        bounds = self._linprog_bounds()
        res = linprog(
            np.r_[np.zeros(len(bounds)), -1.0],
            A_ub=np.c_[self.A, np.linalg.norm(self.A, axis=1)],
            b_ub=self.b,
            bounds=[*bounds, (0.0, 1.0)],
            method="highs",
        )
        if res.x is None:
            lo, hi = (np.broadcast_to(v, self.shape).reshape(-1) for v in (self._lo, self._hi))
            return np.clip(np.zeros(len(lo)), lo, hi)
        return res.x[:-1]

    def _linprog_bounds(self) -> list[tuple[float | None, float | None]]:
        """The box per flat feature as scipy's ``linprog`` takes it (None: unbounded)."""
        assert self.shape is not None
        lo, hi = (np.broadcast_to(v, self.shape).reshape(-1) for v in (self._lo, self._hi))
        return [
            (None if a == -np.inf else a, None if c == np.inf else c)
            for a, c in zip(lo, hi, strict=True)
        ]

    def violation(self, x: torch.Tensor) -> torch.Tensor:
        """Largest constraint violation per point (0 inside the domain)."""
        lo, hi = self.tensors(x.device, x.dtype)
        flat = x.reshape(x.shape[0], -1)
        v = torch.maximum((lo - x).clamp_min(0), (x - hi).clamp_min(0)).reshape(x.shape[0], -1)
        out = v.amax(1) if v.shape[1] else torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if self.A is not None:
            A = torch.as_tensor(self.A, dtype=x.dtype, device=x.device)
            b = torch.as_tensor(self.b, dtype=x.dtype, device=x.device)
            out = torch.maximum(out, (flat @ A.T - b).clamp_min(0).amax(1))
        if self.integer:
            idx = torch.as_tensor(self.integer, device=x.device)
            out = torch.maximum(out, (flat[:, idx] - flat[:, idx].round()).abs().amax(1))
        return out

    def contains(self, x: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
        """Boolean mask: which points lie in the domain (within ``tol``)."""
        return self.violation(x) <= tol

    def to_dict(self) -> dict[str, Any]:
        def enc(a):
            a = np.asarray(a, dtype=np.float64)
            if a.ndim and np.all(a == a.reshape(-1)[0]):
                a = a.reshape(-1)[0]
            return a.tolist()

        return {
            "lo": enc(self._lo),
            "hi": enc(self._hi),
            "shape": list(self.shape) if self.shape else None,
            "integer": list(self.integer),
            "A": None if self.A is None else self.A.tolist(),
            "b": None if self.b is None else self.b.tolist(),
            "names": self.names,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Box:
        lo = np.asarray([np.inf if v is None else v for v in np.ravel(d["lo"])], dtype=float)
        hi = np.asarray([np.inf if v is None else v for v in np.ravel(d["hi"])], dtype=float)
        lo = lo.reshape(np.shape(d["lo"])) if np.ndim(d["lo"]) else lo[0]
        hi = hi.reshape(np.shape(d["hi"])) if np.ndim(d["hi"]) else hi[0]
        return cls(
            lo,
            hi,
            shape=d.get("shape"),
            integer=d.get("integer") or (),
            A=None if d.get("A") is None else np.asarray(d["A"]),
            b=None if d.get("b") is None else np.asarray(d["b"]),
            names=d.get("names"),
        )


def _row_names(rows: list[list[str]]) -> list[str]:
    """How a box file's rows are labelled: their first cell, or 'data' for a row of numbers."""
    out = []
    for r in rows:
        try:
            float(r[0] or "nan")
            out.append("data")
        except ValueError:
            out.append(r[0].strip())
    return out


def _data_range(
    data: np.ndarray, names: Sequence[str] | None = None, path: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max of data rows, missing values (NaN) left out; a column with no
    value at all is a one-line error naming it."""
    empty = np.isnan(data).all(axis=0)
    if empty.any():
        j = int(np.flatnonzero(empty)[0])
        name = f" ({names[j]})" if names is not None and j < len(names) else ""
        where = f"box file {path}: " if path is not None else ""
        raise InversetError(
            f"{where}column {j}{name} has no value (only missing ones); fill it in or give "
            "lo/hi rows"
        )
    return np.nanmin(data, axis=0), np.nanmax(data, axis=0)


def read_constraints(
    path: str | Path, names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Linear constraints ``A x <= b`` from a CSV whose rows are ``a_1, ..., a_n, b`` (``#``
    starts a comment). A header row names the columns: each but the last (``b``) is matched
    to ``names`` (the model's features), and a feature it does not name has coefficient 0."""
    path = Path(path)
    fix = "rows are a_1,...,a_n,b"
    rows = [[c.strip() for c in r] for r in _csv_rows(path, "constraints file", fix, True)]
    if not rows:
        raise InversetError(f"constraints file {path} holds no rows; {fix}")
    joined = next((c for c in rows[0] if _other_separator(c)), None)
    if joined is not None:
        raise InversetError(
            f"constraints file {path}: row 1 holds {joined!r}; separate the values by commas"
        )
    header = None
    if not any(_is_number(c) for c in rows[0]):
        header, rows = rows[0], rows[1:]
        if not rows:
            raise InversetError(f"constraints file {path} holds a header but no rows; {fix}")
    width = len(header) if header is not None else len(rows[0])
    first = 1 if header is None else 2
    for k, r in enumerate(rows):
        if len(r) != width:
            what = "the header" if header is not None else "row 1"
            names_b = (
                f" (a header names every column, the bound's too: {','.join(header)},b)"
                if header is not None and len(r) == width + 1
                else ""
            )
            raise InversetError(
                f"constraints file {path}: row {k + first} has {len(r)} values but {what} "
                f"has {width}{names_b}; {fix} with one value per column"
            )
        bad = next((j for j, c in enumerate(r) if not _is_number(c)), None)
        if bad is not None:
            raise InversetError(
                f"constraints file {path}: row {k + first}, column {bad + 1} holds {r[bad]!r}, "
                f"not a number; {fix}, separated by commas"
            )
    data = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    if width < 2:
        raise InversetError(f"constraints file {path} has rows of one value; {fix} (a.x <= b)")
    A, b = data[:, :-1], data[:, -1]
    if header is None:
        return A, b
    if names is None:
        raise InversetError(
            f"constraints file {path} has a header, but the features have no names to match it "
            "to; drop the header row (columns are then taken in order), or give a box file "
            "whose header names the features"
        )
    names = [str(n) for n in names]
    cols = header[:-1]
    unknown = [c for c in cols if c not in names]
    if unknown:
        raise InversetError(
            f"constraints file {path} names {', '.join(map(repr, unknown))}, not among the "
            f"features {', '.join(names)} (the last column is b)"
        )
    twice = next((c for c in cols if cols.count(c) > 1), None)
    if twice is not None:
        raise InversetError(f"constraints file {path} names feature {twice!r} twice")
    full = np.zeros((A.shape[0], len(names)))
    full[:, [names.index(c) for c in cols]] = A
    return full, b


def _csv_rows(path: Path, kind: str, fix: str, comments: bool = False) -> list[list[str]]:
    """The non-blank rows of a text CSV (utf-8-sig: Excel's BOM; ``#`` starts a comment when
    ``comments``), or a one-line error naming the ``kind`` of file and the ``fix``."""
    if not path.is_file():
        raise no_file(path, kind, fix)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            lines = [ln.split("#", 1)[0] for ln in fh] if comments else fh
            return [r for r in csv.reader(lines) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InversetError(f"{kind} {path} is not a text CSV ({exc}); {fix}") from None


def _other_separator(text: str) -> bool:
    """Does a cell hold several numbers joined by ';', tabs or spaces (not commas)?"""
    parts = [p for p in text.replace(";", " ").split() if p]
    return len(parts) > 1 and all(_is_number(p) for p in parts)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
