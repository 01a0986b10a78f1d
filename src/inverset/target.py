"""Target expressions: what number of the network a query is about.

Grammar (spaces are free between tokens, not inside a reference)::

    expr    := term (('+' | '-') term)*
    term    := factor (('*' | '/') factor)*
    factor  := ('-' | '+') factor | NUMBER | REF | '(' expr ')'
             | ('min' | 'max') '(' expr (',' expr)* ')'
    REF     := KIND ':' INDEX            # out:3  logit:7  prob:cat  margin:3
             | KIND ':' QUOTED            # prob:"T-shirt/top"  prob:"1" (a class's name)
             | LAYER ':' C [',' H ',' W] # fc2:3 unit, conv2:5 channel mean, conv2:5,1,2 neuron

A comma inside ``min``/``max`` separates arguments, and one right after a layer's index with
digits behind it (``max(fc:2,0)``) is read by the layer's output (``axes``, the model given):
when the digits make up a full element of it (as many numbers as its output has axes after
the batch, the rest further arguments) they are its multi-index, ``conv:2,0,7``; else the
first number is the unit and the comma separates arguments, ``max(fc:2, 0)``. A comma and a
space always separate arguments; a number after the comma that goes on (``0.5``, ``1e-3``,
``0.1:4``) is never an index.

A class's name is its label (``--labels``, scikit-learn's ``classes_``); a number is a class
index unless quoted, and a number that is another class's name is refused as ambiguous.

``out``/``logit`` read the flattened model output (the first tensor of a tuple/list/dict the
model returns), ``prob`` its softmax (sigmoid for a single output; refused for an output with
more than one axis of size over 1; a model whose last layer is a Softmax or Sigmoid outputs
probabilities already: ``prob:k`` reads output k and ``logit:k`` is an error), ``margin:k`` is
``out_k - max_{j != k} out_j``. ``LAYER:c`` is unit c on axis 1 of the layer's output (a
conv layer's channel, averaged over positions), or on its last axis for a layer whose units
are last (a Linear applied to a sequence (B, L, F): averaged over the L positions; see
:func:`inverset.model.units_last`, and after one a layer whose type does not fix its
layout, e.g. its GELU: :class:`inverset.model.LastAxis`); ``LAYER:i,j,..`` is one element. A
module called ``out``, ``logit``, ``prob`` or ``margin`` directly under the model is the layer
``.out``... (those names read the model output). Every node evaluates on a batch of
activations to one value per batch element; solvers that need structure (the exact solver)
walk the same nodes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from inverset.errors import InversetError, no_file
from inverset.model import (
    OUTPUT,
    OUTPUT_KINDS,
    check_output_rows,
    check_rows,
    layer_text,
    reads_last,
    run_twice,
    units_first,
)

#: the range of values a reference takes whatever the input, when its layer's type says it
#: (a ReLU's: [0, inf]), else None (:meth:`Expr.span`)
Known = Callable[["Ref"], tuple[float, float] | None]


class Expr:
    """A node of a target expression."""

    def evaluate(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def refs(self) -> list[Ref]:
        return []

    def layers(self) -> list[str]:
        """Names of the activations this expression reads ('out' for the model output)."""
        return list(dict.fromkeys(r.layer for r in self.refs()))

    def check(self, acts: dict[str, torch.Tensor]) -> None:
        """Raise a clear error if an index is out of range for the activations' shapes."""
        for r in self.refs():
            r.check(acts)

    @property
    def piecewise_linear(self) -> bool:
        """True when the expression is a piecewise-linear function of activations."""
        return False

    def span(self, known: Known | None = None) -> tuple[float, float]:
        """Bounds on the expression's value whatever the network computes: a probability lies
        in [0, 1], a value ``known`` gives in its range, any other anywhere (what a range no
        input can reach is checked against before a search)."""
        return -math.inf, math.inf

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.evaluate(acts)


@dataclass(frozen=True)
class Const(Expr):
    value: float

    def evaluate(self, acts):
        ref = next(iter(acts.values()))
        return torch.full((ref.shape[0],), self.value, dtype=ref.dtype, device=ref.device)

    @property
    def piecewise_linear(self) -> bool:
        return True

    def span(self, known: Known | None = None) -> tuple[float, float]:
        return self.value, self.value

    def __str__(self) -> str:
        # the shortest text that reads back as the same number (``%g`` kept 6 digits)
        text = repr(float(self.value))
        return text.removesuffix(".0")


@dataclass(frozen=True)
class Ref(Expr):
    """One number read from an activation: ``kind`` is out/logit/prob/margin or 'layer'."""

    kind: str
    layer: str
    index: tuple[int, ...]
    label: str | None = None  # the class name the user wrote, if any

    def refs(self):
        return [self]

    @property
    def piecewise_linear(self) -> bool:
        return self.kind != "prob"

    def span(self, known: Known | None = None) -> tuple[float, float]:
        if self.kind == "prob":
            return 0.0, 1.0
        return (known(self) if known else None) or (-math.inf, math.inf)

    def _act(self, acts):
        a = acts[self.layer]
        return a.reshape(a.shape[0], -1) if self.kind != "layer" else a

    def _returned(self, acts) -> str | None:
        """What the layer (the model, for an output ref) returned when no tensor, and the
        part that is read (:func:`inverset.model.returned`); None for a tensor."""
        return getattr(acts, "returned", {}).get(self.layer)

    def check(self, acts):
        calls = getattr(acts, "calls", {}).get(self.layer, 1)
        if self.kind == "layer" and calls > 1:
            raise run_twice(self.layer, calls)
        out = acts.get(OUTPUT)
        batch = getattr(acts, "batch", None)
        if self.kind != "layer" and isinstance(out, torch.Tensor):
            check_output_rows(out, batch)
        a = self._act(acts)
        if self.kind == "layer" and out is not None and out.dim():
            try:
                check_rows(self.layer, a, batch or len(out))
            except InversetError as exc:
                raise InversetError(f"{self}: {exc}") from None
        if self.kind == "layer":
            shape = tuple(a.shape[1:])
            if len(self.index) == 1:
                last = reads_last(acts, self.layer)
                n = units_first(acts, self.layer).shape[1] if shape else 1
                if not 0 <= self.index[0] < n:
                    what = "channel" if len(shape) > 1 and not last else "unit"
                    where = f", its last axis of {shape}" if last else ""
                    raise InversetError(
                        f"{self}: {what} {self.index[0]} is out of range; layer {self.layer!r} "
                        f"has {n} {what}s (0..{n - 1}{where}){_it_returns(self._returned(acts))}"
                    )
            elif len(self.index) != len(shape) or any(
                not 0 <= i < s for i, s in zip(self.index, shape, strict=False)
            ):
                rest = ", ".join(map(str, self.index[1:]))
                args = (
                    f" (in min/max, a comma and a space separate arguments: "
                    f"{layer_text(self.layer)}:{self.index[0]}, {rest})"
                    if len(self.index) != len(shape)
                    else ""
                )
                raise InversetError(
                    f"{self}: index {','.join(map(str, self.index))} does not fit layer "
                    f"{self.layer!r} of shape {tuple(shape)}{_it_returns(self._returned(acts))}; "
                    + (
                        "give a unit, or position,unit within it"
                        if reads_last(acts, self.layer)
                        else "give C or C,H,W within it"
                    )
                    + args
                )
        else:
            n = a.shape[1]
            probs = getattr(acts, "probs", None)
            raw = tuple(acts[self.layer].shape[1:])
            if self.kind == "prob" and not probs and sum(s > 1 for s in raw) > 1:
                raise InversetError(
                    f"{self}: prob takes a softmax over one axis of classes, and the model "
                    f"output has shape {raw}; target a logit (out:k reads the flattened output) "
                    "or wrap the model to return the logits of one prediction"
                )
            if self.kind == "logit" and probs:
                raise InversetError(
                    f"{self}: the model outputs probabilities (its last layer is {probs}), not "
                    f"logits; use prob:{self.index[0] if n > 1 else 1} (which reads them) or "
                    f"out:{self.index[0]}; for the logits, target the layer below the {probs} "
                    "(`inverset layers` lists it; the exact solver takes only that), or load or "
                    f"export the model without the final {probs}"
                )
            if self.kind == "margin" and n == 1:
                fix = (
                    f"the model outputs one probability (its last layer is {probs}): use "
                    "prob:1 or prob:0"
                    if probs
                    else "for a single-logit binary classifier use out:0 (margin of class 1) "
                    "or -out:0"
                )
                raise InversetError(
                    f"{self}: a margin needs at least 2 outputs and the model has 1; {fix}"
                )
            m = n_classes(n) if self.kind == "prob" else n
            if not 0 <= self.index[0] < m:
                note = self._returned(acts)
                parts = (
                    f"; inverset reads {note} that the model returns, which has {m} outputs "
                    f"(0..{m - 1}); target another part by the name of the layer that computes "
                    "it, LAYER:k (see `inverset layers`)"
                    if note
                    else f"; the model has {m} {'classes' if self.kind == 'prob' else 'outputs'}"
                    f" (0..{m - 1})"
                )
                raise InversetError(f"{self}: index {self.index[0]} is out of range{parts}")

    def evaluate(self, acts):
        a = self._act(acts)
        k = self.index[0]
        if self.kind in ("out", "logit"):
            return a[:, k]
        if self.kind == "prob":
            # a model ending in a Softmax/Sigmoid outputs probabilities: read, not squashed
            probs = getattr(acts, "probs", None)
            if a.shape[1] == 1:
                p = a[:, 0] if probs else torch.sigmoid(a[:, 0])
                return p if k == 1 else 1 - p
            return a[:, k] if probs else torch.softmax(a, dim=1)[:, k]
        if self.kind == "margin":
            others = torch.cat([a[:, :k], a[:, k + 1 :]], dim=1)
            return a[:, k] - others.amax(1)
        if len(self.index) == 1:
            v = units_first(acts, self.layer)[:, k]
            return v.reshape(v.shape[0], -1).mean(1) if v.dim() > 1 else v
        return a[(slice(None), *self.index)]

    def __str__(self) -> str:
        """The reference as the parser reads it back (names other than plain words quoted)."""
        idx = ",".join(map(str, self.index))
        if self.label is not None:
            plain = re.fullmatch(r"\w+", self.label) and not self.label.isdigit()
            quote = "'" if '"' in self.label else '"'
            idx = self.label if plain else f"{quote}{self.label}{quote}"
        return f"{layer_text(self.layer) if self.kind == 'layer' else self.kind}:{idx}"


@dataclass(frozen=True)
class Neg(Expr):
    arg: Expr

    def evaluate(self, acts):
        return -self.arg.evaluate(acts)

    def refs(self):
        return self.arg.refs()

    @property
    def piecewise_linear(self) -> bool:
        return self.arg.piecewise_linear

    def span(self, known: Known | None = None) -> tuple[float, float]:
        lo, hi = self.arg.span(known)
        return -hi, -lo

    def __str__(self) -> str:
        return f"-({self.arg})"


@dataclass(frozen=True)
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr

    def evaluate(self, acts):
        a, b = self.left.evaluate(acts), self.right.evaluate(acts)
        if self.op == "+":
            return a + b
        if self.op == "-":
            return a - b
        if self.op == "*":
            return a * b
        return a / b

    def refs(self):
        return self.left.refs() + self.right.refs()

    @property
    def piecewise_linear(self) -> bool:
        if not (self.left.piecewise_linear and self.right.piecewise_linear):
            return False
        if self.op in "+-":
            return True
        # a factor without network values is a constant, e.g. (1 + 1) * out:0, out:0 / (2 * 2)
        if self.op == "*":
            return not self.left.refs() or not self.right.refs()
        return not self.right.refs()

    def span(self, known: Known | None = None) -> tuple[float, float]:
        (a, b), (c, d) = self.left.span(known), self.right.span(known)
        if self.op == "+":
            return a + c, b + d
        if self.op == "-":
            return a - d, b - c
        if self.op == "/":
            if c <= 0 <= d:
                return -math.inf, math.inf
            c, d = 1 / d, 1 / c
        # an infinite end times 0 is 0 here (0 * inf is NaN): the product's end is 0 there
        ends = [0.0 if 0 in (p, q) else p * q for p in (a, b) for q in (c, d)]
        return min(ends), max(ends)

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Func(Expr):
    name: str  # "min" | "max"
    args: tuple[Expr, ...]

    def evaluate(self, acts):
        vals = torch.stack([a.evaluate(acts) for a in self.args], dim=1)
        return vals.amin(1) if self.name == "min" else vals.amax(1)

    def refs(self):
        return [r for a in self.args for r in a.refs()]

    @property
    def piecewise_linear(self) -> bool:
        return all(a.piecewise_linear for a in self.args)

    def span(self, known: Known | None = None) -> tuple[float, float]:
        los, his = zip(*(a.span(known) for a in self.args), strict=True)
        pick = min if self.name == "min" else max
        return pick(los), pick(his)

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.args))})"


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ref>(?:out|logit|prob|margin):(?:"[^"]*"|'[^']*'|\w+)
             |[\w.]+:(?:\d+(?:,\d+(?![\w.:]))*|\w+)
             |(?:"[^"]+"|'[^']+'):\d+(?:,\d+(?![\w.:]))*)
    | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
    | (?P<name>[A-Za-z_]\w*)
    | (?P<op>[-+*/(),])
    )""",
    re.VERBOSE,
)


#: the deepest expression tree a target may have (nested parentheses, functions and signs, and
#: chains of operators: ``a + b + c`` is three levels): Python's recursion limit (1000) holds
#: its parsing, evaluation and printing with room to spare
MAX_DEPTH = 200


class _Part(NamedTuple):
    """A parsed piece of a target: its node, the levels of its tree, and whether it is a
    number only (reads no activation)."""

    expr: Expr
    depth: int
    numeric: bool


def constant_value(e: Expr) -> float:
    """The value of an expression that reads no activation (numbers only)."""
    return float(e.evaluate({"": torch.zeros(1, dtype=torch.float64)})[0])


class _Parser:
    def __init__(
        self, text: str, labels: Sequence[str] | None, axes: Callable[[str], int | None] | None
    ):
        self.text, self.labels = text, list(labels) if labels is not None else None
        self.axes = axes
        self.level = 0  # nesting of factor() calls: parentheses, functions, signs
        self.in_args: list[bool] = []  # per open bracket: whether a function's arguments
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                neg = _NEGATIVE.search(text)
                if neg:  # the tokenizer stops before it, on the layer name
                    self.fail("negative index", neg.start(1))
                self.fail(f"unexpected character {text[pos:].strip()[0]!r}", pos)
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def fail(self, why: str, pos: int | None = None, fix: str = ""):
        """The one-line error: what is wrong and where, and ``fix`` when known, else examples."""
        where = f" at position {pos}" if pos is not None else ""
        fix = (
            fix
            or _fix(self.text)
            or (
                "write e.g. 'out:0 - 0.5*out:3', 'fc2:3', 'conv2:5,1,2', 'prob:cat', 'margin:3', "
                "'min(out:0, out:1)'"
            )
        )
        raise InversetError(f"malformed target {self.text!r}: {why}{where}; {fix}")

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text))

    def take(self, value: str | None = None):
        tok = self.peek()
        if value is not None and tok[1] != value:
            self.fail(f"expected {value!r}, found {tok[1] or 'the end'!r}", tok[2])
        self.i += 1
        return tok

    def too_deep(self) -> InversetError:
        return InversetError(
            f"target {_short(self.text)} is too deeply nested or too long (more than "
            f"{MAX_DEPTH} levels of parentheses, functions or chained operators); write a "
            "shorter expression"
        )

    def parse(self) -> Expr:
        if not self.tokens:
            self.fail("it is empty")
        e = self.expr()
        if self.i != len(self.tokens):
            tok = self.peek()
            self.fail(f"unexpected {tok[1]!r}", tok[2])
        return e.expr

    def node(self, e: Expr, parts: Sequence[_Part]) -> _Part:
        """The part of node ``e`` over ``parts``: one level deeper than the deepest of them
        (at most :data:`MAX_DEPTH`), a number when they all are, and then a finite one."""
        part = _Part(e, 1 + max(p.depth for p in parts), all(p.numeric for p in parts))
        if part.depth > MAX_DEPTH:
            raise self.too_deep()
        if part.numeric and not math.isfinite(constant_value(e)):
            raise InversetError(
                f"target {_short(self.text)} holds {e}, which is not a finite number "
                f"({constant_value(e)}); give numbers whose result fits a float"
            )
        return part

    def binop(self, op: str, left: _Part, right: _Part) -> _Part:
        if op == "/" and right.numeric and constant_value(right.expr) == 0:
            what = "" if isinstance(right.expr, Const) else f" ({right.expr} is 0)"
            raise InversetError(
                f"target {_short(self.text)} divides by zero{what}; divide by a nonzero number"
            )
        return self.node(BinOp(op, left.expr, right.expr), (left, right))

    def expr(self) -> _Part:
        e = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            e = self.binop(op, e, self.term())
        return e

    def term(self) -> _Part:
        e = self.factor()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            e = self.binop(op, e, self.factor())
        return e

    def factor(self) -> _Part:
        if self.level >= MAX_DEPTH:  # the parser itself recurses on these
            raise self.too_deep()
        self.level += 1
        try:
            return self._factor()
        finally:
            self.level -= 1

    def _factor(self) -> _Part:
        kind, val, pos = self.peek()
        if val in ("-", "+"):
            self.take()
            f = self.factor()
            if val == "+":
                return f
            if isinstance(f.expr, Const):
                return _Part(Const(-f.expr.value), 1, True)
            return self.node(Neg(f.expr), (f,))
        if kind == "num":
            self.take()
            if not math.isfinite(float(val)):
                raise InversetError(
                    f"target {_short(self.text)} holds the number {val}, too large for a float "
                    "(it would be inf); give a finite number"
                )
            return _Part(Const(float(val)), 1, True)
        if kind == "ref":
            self.take()
            return _Part(self.ref(self.index_or_args(val, pos), pos), 1, False)
        if kind == "name":
            if val not in ("min", "max"):
                self.fail(f"{val!r} needs ':INDEX' (e.g. {val}:0) or is an unknown function", pos)
            self.take()
            self.take("(")
            self.in_args.append(True)
            args = [self.expr()]
            while self.peek()[1] == ",":
                self.take()
                args.append(self.expr())
            self.take(")")
            self.in_args.pop()
            return self.node(Func(val, tuple(a.expr for a in args)), args)
        if val == "(":
            self.take()
            self.in_args.append(False)
            e = self.expr()
            self.take(")")
            self.in_args.pop()
            return e
        self.fail(f"unexpected {val or 'end'!r}", pos)
        raise AssertionError

    def index_or_args(self, text: str, pos: int) -> str:
        """A layer reference with a multi-index among a function's arguments, ``fc:2,0``, cut
        to the index the layer's output takes (the module docstring's rule; the numbers after
        it go back as further arguments): ``text`` as it is elsewhere, or when the layer's
        output is unknown."""
        layer, idx = _split_ref(text)
        head = text[: len(text) - len(idx)]  # the layer as written, and the colon
        nums = idx.split(",")
        if not (self.in_args and self.in_args[-1]) or len(nums) < 2 or self.axes is None:
            return text
        axes = None if layer in OUTPUT_KINDS else self.axes(layer)
        if axes is None:
            return text
        keep = axes if len(nums) >= axes > 1 else 1
        at = pos + len(head) + len(",".join(nums[:keep]))
        rest = []
        for n in nums[keep:]:
            rest += [("op", ",", at), ("num", n, at + 1)]
            at += 1 + len(n)
        self.tokens[self.i : self.i] = rest
        return head + ",".join(nums[:keep])

    def ref(self, text: str, pos: int) -> Ref:
        layer, idx = _split_ref(text)
        label = None
        quoted = idx[:1] in ("'", '"')
        if quoted:
            idx = idx[1:-1]
        if re.fullmatch(r"\d+(,\d+)*", idx) and not quoted:
            index = tuple(int(v) for v in idx.split(","))
            named = self.labels.index(idx) if self.labels and idx in self.labels else None
            if layer in OUTPUT_KINDS and named is not None and named != index[0]:
                at = int(idx)
                other = f" is named {self.labels[at]!r}" if at < len(self.labels) else " is none"
                raise InversetError(
                    f"{text!r} is ambiguous: class index {at}{other}, and the class named "
                    f'{idx!r} is index {named}; write {layer}:"{idx}" for the class named '
                    f"{idx}, or {layer}:INDEX for a class index that is no class's name"
                )
        else:
            if layer not in ("prob", "logit", "out", "margin"):
                self.fail(f"index {idx!r} of {layer!r} must be numbers C or C,H,W", pos)
            if self.labels is None or idx not in self.labels:
                known = ", ".join(self.labels[:20]) if self.labels else "none given"
                raise InversetError(
                    f"unknown class name {idx!r} in {text!r}; known names: {known} "
                    "(pass a labels file with --labels, or use the class index)"
                )
            same = [i for i, name in enumerate(self.labels) if name == idx]
            if len(same) > 1:
                these = ", ".join(f"{layer}:{i}" for i in same)
                raise InversetError(
                    f"class name {idx!r} in {text!r} names {len(same)} classes "
                    f"({', '.join(map(str, same))}); give the index of the one you mean: {these}"
                )
            index, label = (same[0],), idx
        if layer in OUTPUT_KINDS:
            if len(index) != 1:
                self.fail(f"{layer}: takes one index", pos)
            return Ref(layer, "out", index, label)
        return Ref("layer", layer, index)


def _split_ref(text: str) -> tuple[str, str]:
    """A reference's layer (its quotes taken off) and the index text after the colon."""
    if text[:1] in ("'", '"'):
        close = text.index(text[0], 1)
        return text[1:close], text[close + 2 :]
    layer, idx = text.split(":", 1)
    return layer, idx


#: a negative index after a reference's colon (its sign's position is group 1)
_NEGATIVE = re.compile(r":\s*(-)\s*\d")
#: a layer name with spaces in it, unquoted, before its index (``blocks.act 1:0``)
_SPACED = re.compile(r"(?<![\w.:'\"])([A-Za-z_][\w.]*(?: +\w[\w.]*)+):(\d+)")


def _fix(text: str) -> str:
    """What a malformed target most likely needs ('' when unknown): indices from 0, or quotes
    around a layer name that holds other characters than letters, digits, ``_`` and ``.``."""
    if _NEGATIVE.search(text):
        return "indices count from 0 (a negative index such as -1 is not taken)"
    spaced = _SPACED.search(text)
    # 'max out:0' is a function without its '(' (which the parser's error names), not a layer
    if spaced and spaced.group(1).split()[0] not in ("min", "max"):
        name, idx = spaced.groups()
        return f"a layer name with a space goes in quotes, e.g. {layer_text(name)}:{idx}"
    if re.search(r"[^\s\w.:()*/+,'\"][\w.]*:\d", text):
        return (
            "a layer name with other characters than letters, digits, _ and . goes in quotes, "
            'e.g. "blocks.dense-1":0'
        )
    return ""


def _it_returns(note: str | None) -> str:
    """What an error about a layer that returned no tensor adds (:meth:`Ref._returned`)."""
    return f"; inverset reads {note} that the layer returns" if note else ""


def _short(text: str, limit: int = 80) -> str:
    """A target's text as an error quotes it: cut in the middle when long."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[: limit // 2] + " ... " + text[-limit // 2 :])


def n_classes(n_outputs: int) -> int:
    """Classes of a classifier with ``n_outputs`` logits: one logit is a binary classifier
    (``prob:1`` its sigmoid, ``prob:0`` one minus it)."""
    return 2 if n_outputs == 1 else n_outputs


def parse_target(
    text: str | Expr,
    labels: Sequence[str] | None = None,
    axes: Callable[[str], int | None] | None = None,
) -> Expr:
    """Parse a target expression (an :class:`Expr` passes through unchanged). ``axes``: a
    layer's number of output axes after the batch (None: unknown), which tells ``max(fc:2,0)``
    a multi-index from two arguments (:func:`inverset.model.output_axes`; without it, a
    multi-index)."""
    if isinstance(text, Expr):
        return text
    if not isinstance(text, str):
        raise InversetError(f"target must be a string like 'out:0', not {type(text).__name__}")
    expr = _Parser(text, labels, axes).parse()
    if not expr.refs():
        raise InversetError(
            f"target {text!r} reads no output or layer: it is a constant; name what to drive, "
            "e.g. out:0 or fc1:3 (see `inverset layers`)"
        )
    return expr


def read_labels(path: str) -> list[str]:
    """Class names, one per line (line i names class i)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise no_file(p, "labels file", "give a text file, one name per line")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InversetError(
            f"labels file {p} is not UTF-8 text ({exc.reason} at byte {exc.start}); give a text "
            "file, one class name per line"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]
