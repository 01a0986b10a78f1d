"""Progress bars (rich) that cost nothing when turned off."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class _Bar:
    def __init__(self, progress: Any, task: Any):
        self._p, self._t = progress, task

    def extend(self, more: float) -> None:
        """Add ``more`` to the bar's total (work found to do on the way)."""
        if self._p is not None:
            task = next(t for t in self._p.tasks if t.id == self._t)
            if task.total is not None:
                self._p.update(self._t, total=task.total + more)

    def update(self, advance: float = 1, **fields: Any) -> None:
        """Advance the bar; ``fields`` show as text after it (e.g. best=1.23)."""
        if self._p is not None:
            text = "  ".join(
                f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()
            )
            self._p.update(self._t, advance=advance, info=text)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: float | None, description: str) -> Iterator[_Bar]:
    """A rich progress bar on stderr when ``enabled``; a no-op object otherwise."""
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    cols = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    # in Jupyter a plain stream showing the last state once, not rich's live widget (which
    # needs ipywidgets: without it a warning and an empty output) nor terminal redraws
    jupyter = Console().is_jupyter
    console = Console(stderr=True, force_jupyter=False, force_terminal=False if jupyter else None)
    with Progress(*cols, console=console, transient=False) as p:
        task = p.add_task(description, total=total, info="")
        yield _Bar(p, task)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt for the duration (main thread only), so a terminated
    run keeps what it found exactly as a Ctrl-C does (long jobs: sampling, atlases)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum, _frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[bool]:
    """Hold a SIGTERM that arrives inside the block until it ends, then answer it with the
    handler in force on entering, put back then (main thread only): a library that installs
    its own handler inside (``ray.init`` does: exit at once, or abort from C++) would skip the
    clean stop of :func:`sigterm_as_interrupt`, or stop mid-way through its own start-up.
    Only a handler this process chose (a Python function, or ignore) is kept; with the
    default action the library's stays. Yields whether it keeps one."""
    old = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or old in (None, signal.SIG_DFL):
        yield False
        return
    held: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: held.append(signum))
    try:
        yield True
    finally:
        signal.signal(signal.SIGTERM, old)
        if held:
            signal.raise_signal(signal.SIGTERM)
