"""VNN-LIB properties (the SMT-LIB subset of the VNN competition) as inverset queries.

A property asserts input boxes on ``X_i`` (several boxes when an ``or`` of input-only
conjunctions is given) and an *unsafe* output region on ``Y_j``: a disjunction of
conjunctions of linear comparisons. With ``c . Y <= d`` for each comparison, the unsafe set
is reached exactly when ``g = max_i min_j (d_ij - c_ij . Y) >= 0`` somewhere in the box, so
every property is the query "is ``g`` in ``[0, inf)`` reachable?" (``sat`` iff yes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inverset.errors import InversetError, no_file
from inverset.target import BinOp, Const, Expr, Func, Ref

Comparison = tuple[np.ndarray, float]  # c . Y <= d


@dataclass
class Property:
    """Input boxes (disjunction) and the unsafe output region (DNF of ``c . Y <= d``)."""

    boxes: list[tuple[np.ndarray, np.ndarray]]
    unsafe: list[list[Comparison]]
    n_inputs: int
    n_outputs: int

    def target(self) -> Expr:
        """``g(Y) = max_i min_j (d_ij - c_ij . Y)``: the property is violated iff g >= 0."""
        terms = []
        for conj in self.unsafe:
            parts = []
            for c, d in conj:
                e: Expr = Const(float(d))
                for j in np.nonzero(c)[0]:
                    ref = Ref("out", "out", (int(j),))
                    e = BinOp("-", e, BinOp("*", Const(float(c[j])), ref))
                parts.append(e)
            terms.append(parts[0] if len(parts) == 1 else Func("min", tuple(parts)))
        return terms[0] if len(terms) == 1 else Func("max", tuple(terms))


def _tokens(text: str) -> list[str]:
    text = re.sub(r";[^\n]*", "", text)
    return re.findall(r"\(|\)|[^\s()]+", text)


def _parse(tokens: list[str]):
    stack: list[list] = [[]]
    for t in tokens:
        if t == "(":
            stack.append([])
        elif t == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(t)
    return stack[0]


def _var(tok: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"([XY])_(\d+)", tok)
    return (m.group(1), int(m.group(2))) if m else None


def _num(tok) -> float | None:
    if isinstance(tok, str):
        try:
            return float(tok)
        except ValueError:
            return None
    if isinstance(tok, list) and len(tok) == 2 and tok[0] == "-":
        v = _num(tok[1])
        return -v if v is not None else None
    return None


def _atoms(expr) -> list:
    """A conjunction (``and`` or a single comparison) as a list of comparisons."""
    if expr[0] == "and":
        out = []
        for e in expr[1:]:
            out += _atoms(e)
        return out
    if expr[0] in ("<=", ">=", "<", ">") and len(expr) == 3:
        return [expr]
    raise InversetError(f"VNN-LIB: unsupported expression {expr!r}; expected comparisons")


def read_vnnlib(path: str | Path) -> Property:
    """Parse a VNN-LIB file into input boxes and the unsafe output region."""
    path = Path(path)
    if not path.is_file():
        raise no_file(path, "VNN-LIB file")
    tree = _parse(_tokens(path.read_text()))
    n_x = n_y = 0
    for item in tree:
        if isinstance(item, list) and item and item[0] == "declare-const":
            v = _var(item[1])
            if v and v[0] == "X":
                n_x = max(n_x, v[1] + 1)
            elif v:
                n_y = max(n_y, v[1] + 1)
    lo, hi = np.full(n_x, -np.inf), np.full(n_x, np.inf)
    input_alternatives: list[list] | None = None
    unsafe: list[list[Comparison]] = [[]]

    def kinds(conj) -> set[str]:
        ks = set()
        for a in conj:
            for t in a[1:]:
                v = _var(t) if isinstance(t, str) else None
                if v:
                    ks.add(v[0])
        return ks

    def output_cmp(a) -> Comparison:
        op, left, right = a
        c = np.zeros(n_y)
        d = 0.0
        for side, sign in ((left, 1.0), (right, -1.0)):
            v = _var(side) if isinstance(side, str) else None
            if v and v[0] == "Y":
                c[v[1]] += sign
            elif _num(side) is not None:
                d -= sign * _num(side)
            else:
                raise InversetError(f"VNN-LIB: unsupported output term {side!r}")
        # l - r (<=|>=) 0  ->  c.Y + (-d) <= 0 form
        if op in (">=", ">"):
            c, d = -c, -d
        return c, d

    def input_cmp(a, lo, hi) -> None:
        op, left, right = a
        vl = _var(left) if isinstance(left, str) else None
        if vl is None:
            op = {"<=": ">=", ">=": "<=", "<": ">", ">": "<"}[op]
            left, right = right, left
            vl = _var(left) if isinstance(left, str) else None
        val = _num(right)
        if vl is None or vl[0] != "X" or val is None:
            raise InversetError(f"VNN-LIB: unsupported input constraint {a!r}")
        if op in ("<=", "<"):
            hi[vl[1]] = min(hi[vl[1]], val)
        else:
            lo[vl[1]] = max(lo[vl[1]], val)

    for item in tree:
        if not (isinstance(item, list) and item and item[0] == "assert"):
            continue
        body = item[1]
        if body[0] == "or":
            conjs = [_atoms(e) for e in body[1:]]
            ks = set().union(*(kinds(c) for c in conjs))
            if ks == {"X"}:
                input_alternatives = conjs
            elif ks == {"Y"}:
                unsafe = [base + [output_cmp(a) for a in c] for base in unsafe for c in conjs]
            else:
                raise InversetError("VNN-LIB: disjunctions mixing X and Y are not supported")
            continue
        for a in _atoms(body):
            if kinds([a]) == {"X"}:
                input_cmp(a, lo, hi)
            elif kinds([a]) == {"Y"}:
                unsafe = [[*conj, output_cmp(a)] for conj in unsafe]
            else:
                raise InversetError(f"VNN-LIB: unsupported assertion {a!r}")
    boxes = []
    for conj in input_alternatives or [[]]:
        blo, bhi = lo.copy(), hi.copy()
        for a in conj:
            input_cmp(a, blo, bhi)
        boxes.append((blo, bhi))
    if not all(c for c in unsafe):
        raise InversetError(f"VNN-LIB file {path} states no output condition")
    return Property(boxes, unsafe, n_x, n_y)
