"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class InversetError(ValueError):
    """Bad input from the user (wrong layer name, bad box, unreadable file, ...).

    The CLI prints the message on one line and exits with code 2; the API raises it.
    Messages name the problem and, where there is one, the fix.
    """


class UnsupportedModelError(InversetError):
    """The model holds a layer that the requested solver cannot handle."""


class NoGradient(InversetError):
    """The target does not depend differentiably on the input (a gradient-based step needs it)."""


def no_gradient(what: str, solvers: bool = True) -> NoGradient:
    """The error of a gradient-based search (``what``) on a target with no input gradient;
    ``solvers``: name the solvers that need none (sampling has no such alternative)."""
    others = "; use --solver cmaes, evolution or swarm" if solvers else ""
    return NoGradient(
        f"{what} needs the model's gradient, but the target does not depend differentiably on "
        "the input (a model optimized for inference, or one detaching its input; in a latent "
        f"space, a generator doing so){others}"
    )


@contextlib.contextmanager
def model_backward(solvers: bool = True, what: str = "this search") -> Iterator[None]:
    """Around a backward pass through the user's model: autograd's failure on a forward that
    changes in place a tensor its backward needs (``g.relu_()`` on a value a later product
    reads) becomes a one-line :class:`NoGradient`, naming the solvers that need no gradient
    (``solvers``; feature visualization and sampling have none); so does a target with no
    gradient at all (a model or generator detaching its input, or rounding it to integers:
    :func:`no_gradient`, ``what`` naming the search)."""
    try:
        yield
    except RuntimeError as exc:
        if "does not require grad" in str(exc):
            raise no_gradient(what, solvers) from None
        if "modified by an inplace operation" not in str(exc):
            raise
        others = "; or use --solver cmaes, evolution or swarm, which need none" if solvers else ""
        raise NoGradient(
            "the model's backward pass fails: its forward changes in place a tensor the "
            f"gradient needs; write it out of place (g = g.relu() for g.relu_()){others}"
        ) from None


#: optional packages by the import name their absence raises, and the extra that installs them
EXTRAS = {
    "sklearn": "sklearn",
    "joblib": "sklearn",
    "pyscipopt": "exact",
    "cma": "blackbox",
    "nevergrad": "blackbox",
    "botorch": "bayes",
    "gpytorch": "bayes",
    "ray": "ray",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "skimage": "examples",
    "efficientnet_lite_pytorch": "examples",
}


def missing_package(exc: ModuleNotFoundError, what: str = "this") -> InversetError | None:
    """The one-line error for an optional package that is not installed (``exc`` from its
    import), naming the extra that installs it; None for any other missing module (a bug)."""
    import importlib.util

    top = (exc.name or "").split(".")[0]
    # a submodule missing from an installed package is a version mismatch or a bug: not this
    if top not in EXTRAS or (exc.name != top and importlib.util.find_spec(top) is not None):
        return None
    return InversetError(
        f"{what} needs the missing package {top!r}; install it with: "
        f"pip install 'inverset[{EXTRAS[top]}]' (or 'inverset[all]')"
    )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): what a
    one-line error quotes from a library's longer message. TorchScript's begins with a
    banner and a traceback and ends with the error itself: its last line."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = text.splitlines()
    if lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1]
    return lines[0]


def no_file(path: object, kind: str, fix: str = "") -> InversetError:
    """The error for a ``kind`` of file (``"labels file"``) that is not at ``path``: a
    directory there is "a directory, not a file", else it "does not exist"; then ``fix``."""
    import os

    what = "is a directory, not a file" if os.path.isdir(str(path)) else "does not exist"
    return InversetError(f"{kind} {path} {what}" + (f"; {fix}" if fix else ""))


#: what a library raises when it cannot take what it was given (shapes, sizes, types)
LIBRARY_FAILURES = (RuntimeError, ValueError, IndexError, TypeError)


@contextlib.contextmanager
def reworded(message: Callable[[str], str]) -> Iterator[None]:
    """A library's failure inside the block (:data:`LIBRARY_FAILURES`) becomes the one-line
    error ``message(first line of the failure)``; an InversetError (a ValueError too) is
    already one line and passes as it is."""
    try:
        yield
    except InversetError:
        raise
    except LIBRARY_FAILURES as exc:
        raise InversetError(message(first_line(exc))) from exc
