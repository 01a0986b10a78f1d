"""A query resolved against a model: what every solver takes."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inverset.checks import is_whole
from inverset.domain import Box, as_shape
from inverset.errors import InversetError
from inverset.goal import Goal
from inverset.loaders import as_module
from inverset.model import (
    OUTPUT,
    NotRepeatableError,
    check_layer_names,
    check_repeatable,
    forward,
    forward_checked,
    hookable_layers,
    input_shape_of,
    model_device,
    model_dtype,
    on_zero_input,
    output_activation,
    output_axes,
    restore_mode,
    value_range,
)
from inverset.space import Direct, Latent, Space
from inverset.target import Expr, Ref, n_classes, parse_target

#: an answer keeps the target constraints when its summed violation, on the model's own
#: evaluation, is at most this
CONSTRAINT_TOL = 1e-9


def feature_names(model: nn.Module) -> list[str] | None:
    """The names of the model's input features, when its source recorded them (a DataFrame
    the sklearn model was fitted on), in the order the model takes them."""
    names = getattr(model, "feature_names", None)
    return [str(n) for n in names] if names is not None else None


def _check_label_count(labels: list[str] | None, out: Any) -> None:
    """Class names as many as the classes of the model's output ``out``, else the error."""
    if labels is None or not isinstance(out, torch.Tensor) or not out.dim():
        return
    n = n_classes(int(out.reshape(out.shape[0], -1).shape[1]))
    if len(labels) != n:
        raise InversetError(
            f"{len(labels)} class names for a model with {n} classes; give one name per "
            "class (line i names class i)"
        )


def check_box_size(domain: Box, model_shape: Sequence[int] | None, where: str = "box") -> None:
    """A box with per-feature bounds must have one per input the model records it takes
    (else the model fails later on inputs of the box's size, a message that hides why)."""
    if model_shape is None or domain.shape is None:
        return
    n = math.prod(model_shape)
    if domain.size != n:
        raise InversetError(
            f"the {where} bounds {domain.size} features but the model takes {n} inputs (shape "
            f"{tuple(model_shape)}); give one bound per input, or one LO, HI for all of them"
        )


@dataclass
class Problem:
    """Model + target + goal + domain + space, checked once so solvers need not.

    ``constraints`` holds further ``(target, low, high)`` ranges every answer must satisfy
    (intersections of inverse sets). ``nfev`` counts model evaluations (points, not batches).
    """

    model: nn.Module
    target: Expr
    goal: Goal
    domain: Box
    space: Space
    constraints: list[tuple[Expr, float, float]] = field(default_factory=list)
    labels: list[str] | None = None
    nfev: int = 0
    #: why the model's outputs are not repeatable, when a solver that takes noise accepted it
    #: (``Problem.build(noisy_ok=True)``); None: they repeat
    noisy: str | None = None

    @classmethod
    def build(
        cls,
        model: nn.Module,
        target: str | Expr,
        goal: Goal,
        domain: Box | None = None,
        *,
        space: Space | None = None,
        input_shape: Sequence[int] | None = None,
        labels: Sequence[str] | None = None,
        constraints: Sequence[tuple[str | Expr, float, float]] = (),
        noisy_ok: bool = False,
    ) -> Problem:
        """Resolve and validate a query: shapes, layer names, indices, finite outputs, outputs
        that repeat (:func:`~inverset.model.check_repeatable`; ``noisy_ok``: a model whose
        outputs do not is kept, the reason in ``noisy``, for solvers that take noise)."""
        model = as_module(model)
        goal = Goal.of(goal)
        if domain is not None and not isinstance(domain, Box):
            raise InversetError(
                f"domain must be an inverset.Box, e.g. iv.Box(0, 1) or iv.Box(lo, hi, "
                f"shape=(4,)), got {_described(domain)}"
            )
        if space is not None and not isinstance(space, Space):
            raise InversetError(
                f"space must be an inverset space such as iv.Latent(G, dim) (or None to search "
                f"the inputs; a box goes in domain=), got {type(space).__name__}"
            )
        domain = (domain if domain is not None else Box()).aligned(feature_names(model))
        input_shape = as_shape(input_shape, "input_shape")
        model_shape = input_shape_of(model)
        if input_shape is None:
            check_box_size(domain, model_shape)
        shape = input_shape if input_shape is not None else domain.shape or model_shape
        if (
            input_shape is None
            and model_shape is not None
            and shape is not None
            and math.prod(shape) == math.prod(model_shape)
        ):
            shape = model_shape  # a flat box of the right size takes the model's own layout
        if shape is None:
            raise InversetError(
                "the input shape is unknown; give it (input_shape=(1, 8, 8) / --input-shape "
                "1,8,8) or a box with one bound per feature"
            )
        domain = domain.with_shape(shape)
        labels = (
            label_names(labels, "labels")
            if labels is not None
            else label_names(getattr(model, "labels", None))
        )
        axes = output_axes(model, shape)
        try:
            expr = parse_target(target, labels, axes)
        except InversetError:  # a labels file of another model makes its names unknown too
            if labels is not None:
                _check_label_count(labels, on_zero_input(model, shape, OUTPUT))
            raise
        cons = [
            (parse_target(t, labels, axes), lo, hi) for t, lo, hi in _check_constraints(constraints)
        ]
        names = [*expr.layers(), *(n for c in cons for n in c[0].layers())]
        check_layer_names(model, names)
        if isinstance(space, Latent):
            if domain.integer or domain.A is not None:
                raise InversetError(
                    "a generator's latent space keeps G(z) inside box bounds only; integer "
                    "features and linear constraints need a search of the inputs themselves "
                    "(drop space= / --generator)"
                )
            space = space.with_domain(domain)
        problem = cls(model, expr, goal, domain, space or Direct(domain), cons, labels)
        problem._validate(noisy_ok)
        return problem

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        return model_dtype(self.model)

    @property
    def read(self) -> list[str]:
        """The layers the target and the constraints read (the output alone when none)."""
        names = [*self.target.layers(), *(n for c in self.constraints for n in c[0].layers())]
        return list(dict.fromkeys(names)) or [OUTPUT]

    @property
    def layer_names(self) -> list[str]:
        return list(dict.fromkeys([OUTPUT, *self.read]))

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Eval mode with frozen weights for the duration of a solve, for the model and a
        latent space's generator alike (no BatchNorm statistics updated, no Dropout noise, no
        gradients written into their weights); restored afterwards."""
        with contextlib.ExitStack() as stack:
            for m in (self.model, getattr(self.space, "generator", None)):
                if isinstance(m, nn.Module):
                    stack.enter_context(restore_mode(m, train=False, freeze=True))
            yield

    # ------------------------------------------------------------------ evaluation
    def activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One forward pass of model inputs ``x``: every activation the query reads."""
        self.nfev += int(x.shape[0])
        return forward(self.model, x, self.layer_names)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """Target values of model inputs ``x`` (a batch), differentiable."""
        return self.target.evaluate(self.activations(x))

    def evaluate_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(target values [B], constraint values [B, m]) for model inputs ``x``."""
        acts = self.activations(x)
        v = self.target.evaluate(acts)
        c = [t.evaluate(acts) for t, _, _ in self.constraints]
        cv = torch.stack(c, 1) if c else v.new_zeros((v.shape[0], 0))
        return v, cv

    def evaluate_each(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`evaluate_all` one point at a time, as a user re-evaluates an answer: a float32
        model's sums round differently in a batch (values 1e-4 apart on inputs near 1e4)."""
        v, cv, _ = self.evaluate_each_until(x)
        return v, cv

    def evaluate_each_until(
        self, x: torch.Tensor, deadline: float = math.inf, order: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`evaluate_each` in ``order`` (indices, most promising first) until ``deadline``
        (a ``time.perf_counter()`` value), the first point always, so that thousands of starts
        keep a time limit. Returns (values, constraint values, a mask of the points evaluated);
        the others' values are NaN."""
        n = x.shape[0]
        order = torch.arange(n, device=x.device) if order is None else order.to(x.device)
        alone = torch.zeros(n, dtype=torch.bool, device=x.device)
        if not n:
            v, cv = self.evaluate_all(x)
            return v, cv, alone
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        for k, i in enumerate(order.tolist()):
            if k and time.perf_counter() > deadline:
                break
            parts.append(self.evaluate_all(x[i : i + 1]))
        done = order[: len(parts)]
        alone[done] = True
        v, cv = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        values = v.new_full((n, *v.shape[1:]), math.nan)
        cvs = cv.new_full((n, *cv.shape[1:]), math.nan)
        values[done], cvs[done] = v, cv
        return values, cvs, alone

    def constraint_violation(self, cv: torch.Tensor) -> torch.Tensor:
        """Per point, the summed distance of each constraint value outside its range."""
        if not self.constraints:
            return cv.new_zeros(cv.shape[0])
        lo = cv.new_tensor([c[1] for c in self.constraints])
        hi = cv.new_tensor([c[2] for c in self.constraints])
        return ((lo - cv).clamp_min(0) + (cv - hi).clamp_min(0)).sum(1)

    def keeps_constraints(self, cv: torch.Tensor) -> torch.Tensor:
        """Per point, whether its constraint values ``cv`` (the model's own) keep every range:
        what each solver requires of an answer."""
        return self.constraint_violation(cv) <= CONSTRAINT_TOL

    def loss(self, z: torch.Tensor, penalty: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss [B] to minimize, target values [B]) at search variables ``z``."""
        v, cv = self.evaluate_all(self.space.to_input(z))
        return self.goal.loss(v) + penalty * self.constraint_violation(cv), v

    @torch.no_grad()
    def values(self, x: torch.Tensor, chunk: int = 4096) -> np.ndarray:
        """Target values of model inputs ``x`` as float64 numpy, in chunks, no gradient."""
        out = []
        for i in range(0, x.shape[0], chunk):
            xi = x[i : i + chunk].to(self.device, self.dtype)
            out.append(self.evaluate(xi).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def impossible(self) -> tuple[str, str, float | None] | None:
        """Why no input can meet the goal or a constraint's range whatever the network
        computes (a probability asked to lie above 1, in percent perhaps), answered before any
        search: (status, reason, bound). The status is 'unreachable' for the goal (the bound
        is the target's end that proves it) and 'infeasible' for a constraint, as the exact
        solver says; None when the target's values allow every range."""
        g = self.goal
        own = {"reach": [(self.target, g.value, g.value)], "range": [(self.target, g.low, g.high)]}
        goal = own.get(g.kind, [])
        if not goal and not self.constraints:
            return None
        bounded = self._bounded_refs()
        for i, (e, lo, hi) in enumerate([*goal, *self.constraints]):
            a, b = e.span(lambda r: bounded.get(r, (None, ""))[0])
            if lo <= b + _span_tol(lo) and hi >= a - _span_tol(hi):
                continue
            near = b if lo > b else a
            # 12 digits: a reach of 1.000002 is not printed as the 1 a probability reaches
            want = f"{lo:.12g}" if lo == hi else f"in [{lo:.12g}, {hi:.12g}]"
            hint = ""
            if isinstance(e, Ref) and e.kind == "prob" and lo >= 2 and hi <= 100:  # percent?
                pct = f"{lo:g}%" if lo == hi else f"{lo:g}-{hi:g}%"
                frac = f"{lo / 100:g}" if lo == hi else f"{lo / 100:g} to {hi / 100:g}"
                hint = f"; for {pct} give {frac}"
            why = (
                f"{'the target' if i < len(goal) else 'constraint'} {e} is "
                f"{'at most' if lo > b else 'at least'} {near:.12g} for every input "
                f"({_span_why(e, bounded)}), so it cannot be {want}{hint}"
            )
            return ("unreachable", why, near) if i < len(goal) else ("infeasible", why, None)
        return None

    def _bounded_refs(self) -> dict[Ref, tuple[tuple[float, float], str]]:
        """The references of the target and constraints whose values the model's layers
        bound whatever the input, with the range and why: a unit of a ReLU layer is at least
        0 (of a Sigmoid, Tanh, ... as :func:`value_range` says), an output of a model ending
        in a Softmax or Sigmoid is a probability."""
        layers = hookable_layers(self.model)
        probs = output_activation(self.model)
        bounded: dict[Ref, tuple[tuple[float, float], str]] = {}
        for r in (r for e in (self.target, *(c[0] for c in self.constraints)) for r in e.refs()):
            if r.kind == "prob":
                bounded[r] = (0.0, 1.0), "a probability"
            elif r.kind == "layer" and (rng := value_range(layers.get(r.layer))) is not None:
                bounded[r] = rng, f"a value of {type(layers[r.layer]).__name__} layer {r.layer}"
            elif r.kind == "out" and probs:
                bounded[r] = (0.0, 1.0), f"a probability (the model ends in a {probs})"
            elif r.kind == "margin" and probs:
                bounded[r] = (-1.0, 1.0), f"a difference of probabilities ({probs} output)"
        return bounded

    def _check_zero_logit(self) -> None:
        """A binary scikit-learn classifier keeps one logit z, loaded as logits (0, z): a
        target that is logit 0 alone is 0 for every input (it was "optimal" at 0)."""
        k = getattr(self.model, "zero_logit", None)
        t = self.target
        if k is None or not isinstance(t, Ref) or t.kind not in ("out", "logit"):
            return
        if t.layer == OUTPUT and t.index == (k,):
            name = self.labels[k] if self.labels else str(k)
            raise InversetError(
                f"target {t} is 0 for every input: a binary classifier has one logit, for "
                f"class {self.labels[1] if self.labels else 1} (logit:1); for class {name} "
                f"use -logit:1 or prob:{k}"
            )

    def _validate(self, noisy_ok: bool = False) -> None:
        box = self.space.box
        top = torch.finfo(self.dtype).max if self.dtype.is_floating_point else math.inf
        ends = np.abs(np.concatenate([np.ravel(box.lower), np.ravel(box.upper)]))
        big = ends[np.isfinite(ends) & (ends > top)]
        if big.size:
            raise InversetError(
                f"a bound of the box, {float(big.max()):g}, is beyond the largest "
                f"{str(self.dtype).removeprefix('torch.')} the model computes in ({top:.3g}); "
                "rescale the inputs (e.g. a scaler in front of the model), or give a smaller box"
            )
        gen = torch.Generator().manual_seed(0)
        z = self.space.box.sample(2, gen, device=self.device, dtype=self.dtype)
        with torch.no_grad(), self.session():
            with _unchanged(
                z, "the generator", "codes", "z.mul_(0.5) or z.clamp_()", "z = z * 0.5"
            ):
                x = self.space.first_input(z)
            if isinstance(self.space, Latent) and not torch.isfinite(x).all():
                raise InversetError(
                    "the generator's output is not finite (NaN or inf) at codes drawn from "
                    "their box; check the generator, or narrow the codes' box (Latent(G, dim, "
                    "bound) / --latent-bound)"
                )
            with _unchanged(x, "the model", "input", "x.sub_(0.5) or x /= 255", "x = x - 0.5"):
                acts = forward_checked(self.model, x, self.layer_names)
            self.target.check(acts)
            self._check_zero_logit()
            _check_label_count(self.labels, acts.get(OUTPUT))
            for t, _, _ in self.constraints:
                t.check(acts)
            try:
                if isinstance(self.space, Latent):
                    self.space.check_repeatable(z, x)
                check_repeatable(lambda x: forward(self.model, x, self.read), x, acts, self.read)
            except NotRepeatableError as exc:
                if not noisy_ok:
                    raise
                self.noisy = str(exc)
            v = self.target.evaluate(acts)
        if not torch.isfinite(v).all():
            raise InversetError(
                f"the model's target {self.target} is not finite ({v.tolist()}) at points of the "
                "domain; check the model and its input scaling, or narrow the box"
            )

    def to_dict(self) -> dict[str, Any]:
        """The query as plain data (what a Result records)."""
        domain = self.domain.to_dict()
        names = feature_names(self.model)
        if domain["names"] is None and names and len(names) == self.domain.size:
            domain["names"] = names  # pictures and tables name the features by them
        return {
            "target": str(self.target),
            "goal": self.goal.to_dict(),
            "domain": domain,
            "space": self.space.to_dict(),
            "constraints": [[str(t), lo, hi] for t, lo, hi in self.constraints],
            "model": getattr(self.model, "source", type(self.model).__name__),
        }


@contextlib.contextmanager
def _unchanged(t: torch.Tensor, who: str, what: str, ops: str, fix: str) -> Iterator[None]:
    """Refuse, in one line, a network (``who``) whose forward in the block changes its
    ``what`` ``t`` in place (``ops``; written out of place: ``fix``): inverset reuses them."""
    given = t.clone()
    yield
    if t.shape != given.shape or not ((t == given) | (t.isnan() & given.isnan())).all():
        reuses = what if what.endswith("s") else f"{what}s"
        raise InversetError(
            f"{who} changes its {what} in place (e.g. {ops} in forward); write it out of place "
            f"({fix}), as inverset reuses {reuses}"
        )


def _span_tol(v: float) -> float:
    """How far outside a target's possible values a reach value or range end may lie and
    still be met (the exact solver's reach tolerance)."""
    return 1e-6 * max(1.0, abs(v)) if math.isfinite(v) else 0.0


def _span_why(e: Expr, bounded: dict[Ref, tuple[tuple[float, float], str]]) -> str:
    """Why an expression's values are bounded, for the message: each bounded reference it
    reads, what it is and its range."""
    parts = []
    for r in dict.fromkeys(e.refs()):
        if r not in bounded:
            continue
        (lo, hi), what = bounded[r]
        rng = f"at least {lo:g}" if hi == math.inf else f"between {lo:g} and {hi:g}"
        parts.append(f"{r} is {what}, {rng}")
    return "; ".join(parts) or "it reads no network value"


def label_names(labels: Any, given: str | None = None) -> list[str] | None:
    """Class names as strings, line i naming class i: a sequence, array or tensor of names or
    numbers, or a dict from class index to name. A model's own ``labels`` attribute
    (``given`` None) that is none of these is not taken for names."""
    if labels is None:
        return None
    if isinstance(labels, torch.Tensor):
        labels = labels.tolist()
    if isinstance(labels, dict) and all(is_whole(k) for k in labels):
        labels = [labels[k] for k in sorted(labels)]
    elif isinstance(labels, dict):
        labels = list(labels.values())
    names = None
    if not isinstance(labels, str | bytes):
        with contextlib.suppress(TypeError, ValueError):
            arr = np.asarray(labels, dtype=object)
            names = [str(v) for v in arr] if arr.ndim == 1 else None
    if names is None and given is not None:
        raise InversetError(
            f"{given} must be a list of class names (line i names class i), got "
            f"{type(labels).__name__}"
        )
    return names


def _check_constraints(constraints: Any) -> list[tuple[Any, float, float]]:
    """Constraints as ``(target, low, high)`` triples of numbers with ``low <= high`` (NaN
    refused; +-inf allowed), else a one-line error naming the constraint."""
    if isinstance(constraints, str | bytes) or not isinstance(constraints, Sequence):
        raise InversetError(
            f"constraints must be a list of (target, z1, z2), e.g. [('out:1', 0, 1)], "
            f"got {constraints!r}"
        )
    out = []
    for c in constraints:
        if isinstance(c, str | bytes) or not isinstance(c, Sequence) or len(c) != 3:
            raise InversetError(
                f"each constraint is (target, z1, z2), e.g. ('out:1', 0, 1), got {c!r}"
            )
        t, lo, hi = c
        try:
            if isinstance(lo, bool | str | bytes) or isinstance(hi, bool | str | bytes):
                raise TypeError
            lo, hi = float(lo), float(hi)
        except (TypeError, ValueError):
            raise InversetError(
                f"range of constraint {t} must be two numbers z1, z2, got ({lo!r}, {hi!r})"
            ) from None
        if math.isnan(lo) or math.isnan(hi):
            raise InversetError(
                f"range of constraint {t} has a NaN end ({lo}, {hi}); give numbers (inf allowed)"
            )
        if lo > hi:
            raise InversetError(f"range of {t} has z1 > z2 ({lo:g} > {hi:g}); swap them")
        out.append((t, lo, hi))
    return out


@contextlib.contextmanager
def timer(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the block to ``timings[key]``."""
    import time

    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0


def _described(v: object) -> str:
    """A value named in a one-line error: an array by its type and shape (its repr spans
    lines), anything else by its short repr."""
    shape = getattr(v, "shape", None)
    if shape is not None:
        return f"{type(v).__name__} of shape {tuple(shape)}"
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
