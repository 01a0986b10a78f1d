"""How the search variable ``z`` becomes a model input ``x``.

``Direct`` searches the inputs themselves inside the domain. ``Latent`` searches the code of a
generator (a VAE/GAN decoder) so that ``x = G(z)`` looks like real data. Image
parameterizations (Fourier, decorrelated colour) live in :mod:`inverset.featvis.param`.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from inverset.checks import is_number
from inverset.domain import Box, as_shape
from inverset.errors import InversetError, reworded
from inverset.model import OUTPUT, check_repeatable, fingerprint, inputs_for

#: each generator module's fingerprint, with the state (tensor addresses and versions) it hashed
_GENERATOR_IDS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = (
    weakref.WeakKeyDictionary()
)


class Space:
    """Search space protocol: a box for ``z`` and a differentiable map ``z -> x``."""

    #: the box the search variable lives in (what solvers project onto)
    box: Box

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def first_input(self, z: torch.Tensor) -> torch.Tensor:
        """:meth:`to_input` for a query's first codes, which check the space: a failure is
        a one-line error naming the fix."""
        return self.to_input(z)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": type(self).__name__}


def same_layout(given: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    """Whether a generator's output of shape ``given`` (per code) is read as the model's input
    of shape ``wanted`` by a reshape: equal but for axes of size 1, or one of them flat but for
    those (a flat generator for an image model, a (1, 28, 28) generator for MNIST-FC's (784, 1)
    input). Other shapes of as many values are another layout (channels last for channels
    first), which a reshape would scramble."""

    def squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(d for d in shape if d != 1)

    a, b = squeezed(given), squeezed(wanted)
    return len(a) <= 1 or len(b) <= 1 or a == b


class Direct(Space):
    """Search the model inputs directly: ``x = z``, ``z`` in the query's domain."""

    def __init__(self, box: Box):
        self.box = box

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        return z


def _module_id(g: nn.Module) -> str:
    """A module's weights' SHA-256, kept per module (shared by every Latent of it: each
    query's is a copy, :meth:`Latent.with_domain`) until a tensor of its state dict is
    replaced or changed in place: a 50 MB generator takes 70 ms to hash, and every query and
    atlas target records it."""
    state = tuple(
        (name, t.data_ptr(), t._version, t.shape, t.dtype) for name, t in g.state_dict().items()
    )
    kept = _GENERATOR_IDS.get(g)
    if kept is None or kept[0] != state:
        kept = _GENERATOR_IDS[g] = (state, fingerprint(g))
    return kept[1]


def _code_key(code: Any) -> str:
    """A function's code as text that is the same in every process: its bytecode, names and
    constants, nested code (a comprehension, an inner lambda) by its own key, not its
    repr, which holds a memory address, and sets sorted."""

    def key(c: Any) -> str:
        if hasattr(c, "co_code"):
            return _code_key(c)
        if isinstance(c, frozenset):  # `x in {"a", "b"}`: its order varies with the hash seed
            return repr(sorted(map(key, c)))
        return repr(c)

    consts = [key(c) for c in code.co_consts]
    return repr([code.co_code.hex(), code.co_names, consts])


class Latent(Space):
    """Search the code of ``generator``: ``x = G(z)`` with ``z`` in ``[-bound, bound]^dim``.

    ``generator`` is a torch module or any callable taking a batch of codes to a batch of
    inputs. ``G(z)`` is always clamped into the query's box, so every point handed to the model
    is a valid input. ``domain`` (bounds only) narrows that further, e.g. to the generator's
    valid output range: it is broadcast to the input shape and intersected with the query's box
    (an empty intersection is an error). While a query is solved a module generator is in eval
    mode with frozen weights, as the model is.
    """

    def __init__(
        self,
        generator: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        dim: int | tuple[int, ...],
        bound: float = 3.0,
        domain: Box | None = None,
    ):
        if not callable(generator):
            raise InversetError(
                f"the generator must be a torch module or a callable z -> x, got "
                f"{type(generator).__name__}"
            )
        if domain is not None and not isinstance(domain, Box):
            raise InversetError(
                f"a Latent's domain must be an inverset.Box (e.g. iv.Box(0, 1)), got "
                f"{type(domain).__name__}"
            )
        if not is_number(bound) or not bound > 0:
            raise InversetError(f"the latent bound must be a number > 0 (e.g. 3.0), got {bound!r}")
        self.generator = generator
        shape = as_shape(dim, "the latent dim")
        assert shape is not None
        self.shape = shape
        self.bound = float(bound)
        self.box = Box(-self.bound, self.bound, shape=self.shape)
        self.domain = domain
        #: the user's own clamp box, recorded in the query (the query's box is recorded there)
        self.own_domain = domain

    def with_domain(self, domain: Box) -> Latent:
        """This space clamping into the query's ``domain`` (shaped) intersected with its own."""
        assert domain.shape is not None
        if self.domain is not None:
            own = self.domain.with_shape(domain.shape)
            if own.integer or own.A is not None:
                raise InversetError(
                    "a Latent's domain takes bounds only; give integer features and linear "
                    "constraints in the query's box (and search the inputs themselves)"
                )
            lo, hi = np.maximum(domain.lower, own.lower), np.minimum(domain.upper, own.upper)
            if (lo > hi).any():
                i = int(np.flatnonzero((lo > hi).reshape(-1))[0])
                raise InversetError(
                    f"the Latent's domain and the query's box have no point in common (feature "
                    f"{i}: [{own.lower.reshape(-1)[i]:g}, {own.upper.reshape(-1)[i]:g}] vs "
                    f"[{domain.lower.reshape(-1)[i]:g}, {domain.upper.reshape(-1)[i]:g}]); "
                    "make them overlap"
                )
            domain = Box(lo, hi, shape=domain.shape, names=domain.names)
        space = Latent(self.generator, self.shape, self.bound, domain)
        space.own_domain = self.own_domain
        return space

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z)`` on the device and in the dtype of ``z`` (the model's), whatever the
        generator's, clamped into the domain."""
        g = self.generator
        x = g(inputs_for(g, z) if isinstance(g, nn.Module) else z)
        if not isinstance(x, torch.Tensor):
            raise InversetError(
                f"the generator returned {type(x).__name__}, not a tensor; give one that maps a "
                "batch of codes to a batch of inputs"
            )
        if x.ndim >= 1 and x.shape[0] != z.shape[0]:
            # a (values, batch) output would be reshaped across codes: its pictures mixed
            # codes, were read as noise, and the saved codes did not give the saved inputs
            raise InversetError(
                f"the generator returned shape {tuple(x.shape)} for {z.shape[0]} codes; give "
                "one whose output keeps the batch axis first, one row per code (a .squeeze() "
                "drops it for a single code)"
            )
        x = x.to(z.device, z.dtype)
        if self.domain is None:
            return x
        lo, hi = self.domain.tensors(x.device, x.dtype)
        if self.domain.shape is not None:
            n = self.domain.size
            if x.ndim == 0 or x.numel() != z.shape[0] * n:
                per = x.numel() // max(int(z.shape[0]), 1)
                raise InversetError(
                    f"the generator's output has {per} values per code but the model input has "
                    f"{n} (shape {self.domain.shape}); give a generator whose output is the "
                    "model's input"
                )
            if not same_layout(tuple(x.shape[1:]), tuple(self.domain.shape)):
                raise InversetError(
                    f"the generator's output has shape {tuple(x.shape[1:])} per code and the "
                    f"model input {tuple(self.domain.shape)}: the same number of values in "
                    "another layout (channels last?); give a generator whose output is laid out "
                    "as the model's input (e.g. end it with x.permute(0, 3, 1, 2))"
                )
            x = x.reshape(z.shape[0], *self.domain.shape)
        return torch.maximum(torch.minimum(x, hi), lo)

    def first_input(self, z: torch.Tensor) -> torch.Tensor:
        """:meth:`to_input`; a generator that fails on the codes (a code size it does not
        take) is a one-line error naming the fix."""
        with reworded(
            lambda why: (
                f"the generator fails on codes of shape {tuple(z.shape[1:])} ({why}); "
                "give the latent size it takes (Latent(G, dim) / --latent-dim)"
            )
        ):
            return self.to_input(z)

    def check_repeatable(self, z: torch.Tensor, x: torch.Tensor | None = None) -> None:
        """Refuse, as a model is refused (:func:`~inverset.model.check_repeatable`), a
        generator whose pictures ``x`` (computed here when not given) of the codes ``z``
        change from pass to pass: ``G(z)`` is what the model sees."""

        def run(codes: torch.Tensor) -> dict[str, torch.Tensor]:
            return {OUTPUT: self.first_input(codes)}

        first = {OUTPUT: self.first_input(z) if x is None else x}
        check_repeatable(run, z, first, [OUTPUT], what="generator")

    def generator_id(self) -> str:
        """What tells the generator apart in a saved query: a module by its weights (SHA-256
        of its state dict, :func:`_module_id`), any other callable by its qualified name (else
        its type's) and, for a Python function, a hash of its code, of the module it is a
        method of and of the modules and numbers its defaults and closure hold (every lambda
        is ``<lambda>``: a resume with ``lambda z: G(-z)`` after ``lambda z: G(z)`` was
        taken, and half the codes did not give their pictures)."""
        g = self.generator
        if isinstance(g, nn.Module):
            return _module_id(g)
        name = getattr(g, "__qualname__", "") or type(g).__name__
        code = getattr(g, "__code__", None)
        if code is None:
            return name

        def key(v: Any) -> str:
            if isinstance(v, nn.Module):
                return _module_id(v)
            return (
                repr(v)
                if isinstance(v, int | float | str | bool | type(None))
                else type(v).__name__
            )

        parts = [_code_key(code), key(getattr(g, "__self__", None))]  # a bound method's owner
        parts += [key(v) for v in getattr(g, "__defaults__", None) or ()]
        for cell in getattr(g, "__closure__", None) or ():
            try:
                parts.append(key(cell.cell_contents))
            except ValueError:  # an empty cell
                continue
        return f"{name} {hashlib.sha256(repr(parts).encode()).hexdigest()[:16]}"

    def to_dict(self) -> dict[str, Any]:
        """The space as plain data, its generator by :meth:`generator_id` (a saved run resumed
        with other generator weights answers a different query)."""
        out = {
            "kind": "Latent",
            "dim": list(self.shape),
            "bound": self.bound,
            "generator": self.generator_id(),
        }
        if self.own_domain is not None:  # which pictures exist: a resume with another differs
            out["domain"] = {k: self.own_domain.to_dict()[k] for k in ("lo", "hi", "shape")}
        return out
