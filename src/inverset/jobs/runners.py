"""Where the units of a job run: this process, a local process pool, or a Ray cluster.

Every runner calls the same pure function, :func:`run_unit`, with the same plain-data spec and
the same per-unit seed, under the same number of torch threads, so the results are identical bit
for bit whichever runner computes them. A runner only moves work and answers:
``submit(unit) -> handle`` and ``wait(handles) -> [(handle, outcome)]`` with at least one handle
finished, where an outcome is ``[(key, Result), ...]`` or the exception the unit raised (an
:class:`InversetError` too: the job decides whether it is about the target or the query).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from torch import nn

from inverset.errors import InversetError
from inverset.model import model_device, torch_threads
from inverset.result import Result

Outcome = list[tuple[str, Result]] | BaseException


def run_unit(
    model: nn.Module, spec: dict[str, Any], unit: dict[str, Any], progress: bool = False
) -> list[tuple[str, Result]]:
    """Answer one unit of a job (one target, or a batch of targets one solver call serves)."""
    from inverset.jobs.atlas import solve_unit

    with torch_threads(spec.get("threads")):
        return solve_unit(model, spec, unit, progress=progress)


class Runner:
    """Base class: ``slots`` units in flight at once; ``live`` when units show solver progress."""

    name = "runner"
    slots = 1
    live = False

    def start(self, model: nn.Module, spec: dict[str, Any]) -> None:
        raise NotImplementedError

    def submit(self, unit: dict[str, Any]) -> Any:
        raise NotImplementedError

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, Outcome]]:
        raise NotImplementedError

    def close(self, abandoned: Sequence[Any] = ()) -> None:
        """Release workers; ``abandoned`` units (still in flight) are cancelled where the
        runner can; their targets stay unfinished."""

    def describe(self) -> str:
        return self.name


class InlineRunner(Runner):
    """Units run one after another in this process (solver progress bars shown)."""

    name = "inline"
    live = True

    def __init__(self, progress: bool = False) -> None:
        self._progress = progress
        self._queue: dict[int, dict[str, Any]] = {}
        self._next = 0

    def start(self, model: nn.Module, spec: dict[str, Any]) -> None:
        self._model, self._spec = model, spec

    def submit(self, unit: dict[str, Any]) -> int:
        self._next += 1
        self._queue[self._next] = unit
        return self._next

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, Outcome]]:
        h = handles[0]
        unit = self._queue.pop(h)
        try:
            return [(h, run_unit(self._model, self._spec, unit, self._progress))]
        except Exception as exc:
            return [(h, exc)]


# ---------------------------------------------------------------- local process pool
_WORKER: dict[str, Any] = {}
#: written by a worker that cannot load the job (beside the job file), read by the parent
INIT_ERROR = "init-error.txt"
#: why a worker may die without a word, when no worker wrote INIT_ERROR
WORKER_DIED = (
    "a worker process died (out of memory or killed, or the model's class cannot be imported "
    "by a fresh Python process: define it in an importable module, not in the script that "
    "runs the job)"
)


class WorkerDied(RuntimeError):
    """A unit's failure when the pool broke under it twice (the first time it is retried)."""


class RunnerFailed(Exception):
    """The runner cannot run units any more (its workers keep dying); the message says why."""


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when its parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _pool_init(path: str) -> None:
    """Load the job into a new worker. Ctrl-C goes to the whole process group: the parent
    handles it and ends the workers, so they ignore SIGINT (no traceback from each)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    # The file was written moments ago by this job's own process (ProcessRunner.start), in a
    # private temporary directory: it is not a user file.
    try:
        with open(path, "rb") as f:
            _WORKER["model"], _WORKER["spec"] = pickle.load(f)
    except Exception as exc:
        # the parent reads why (e.g. a class defined in __main__ of the parent's script)
        with (
            contextlib.suppress(OSError),
            open(os.path.join(os.path.dirname(path), INIT_ERROR), "w") as f,
        ):
            f.write(f"{type(exc).__name__}: {exc}".splitlines()[0])
        os._exit(1)


def _pool_run(unit: dict[str, Any]) -> list[tuple[str, Result]]:
    return run_unit(_WORKER["model"], _WORKER["spec"], unit)


@dataclass
class _Task:
    """A unit of the runner: its future in the pool (None while it waits to be sent) and how
    many pool breaks it was in flight for."""

    unit: dict[str, Any]
    future: Future | None = None
    breaks: int = 0


def _broken(f: Future) -> bool:
    """The future's pool broke before it finished (so it has no answer)."""
    if f.cancelled() or not f.done():
        return True
    return isinstance(f.exception(), BrokenProcessPool)


class ProcessRunner(Runner):
    """A pool of ``workers`` spawned processes; each loads the model once.

    The model and spec reach the workers through a private temporary file rather than the
    spawn pipe, so a worker that dies on start-up breaks the pool instead of hanging it. When
    the pool breaks (a worker died), the units in flight are suspects: a fresh pool runs them
    one at a time (new units wait), so the one that kills its worker again is caught alone and
    fails, and the others finish. A worker that cannot load the model, or three breaks
    without a unit finishing in between, stop the runner (:class:`RunnerFailed`).
    """

    name = "process"
    #: pools broken in a row, with no unit finishing in between, before the runner gives up
    MAX_BREAKS = 3

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise InversetError(f"workers must be at least 1, got {workers}")
        self.slots = int(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._dir: str | None = None
        self._tasks: dict[int, _Task] = {}
        self._ready: list[tuple[int, Outcome]] = []
        self._solo: list[int] = []  # suspects of a break, to run alone, in order
        self._held: list[int] = []  # units submitted while suspects run
        self._suspect: int | None = None  # the suspect sent last
        self._next = 0
        self._breaks = 0

    def start(self, model: nn.Module, spec: dict[str, Any]) -> None:
        import tempfile

        try:
            payload = pickle.dumps((model, spec))
        except Exception as exc:
            raise InversetError(
                f"the model cannot be sent to worker processes ({exc}); define its class in an "
                "importable module, or run without --workers (in this process) or with --ray"
            ) from None
        self._dir = tempfile.mkdtemp(prefix="inverset-pool-")
        self._path = os.path.join(self._dir, "work.pkl")
        with open(self._path, "wb") as f:
            f.write(payload)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing

        return ProcessPoolExecutor(
            max_workers=self.slots,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_pool_init,
            initargs=(self._path,),
        )

    def submit(self, unit: dict[str, Any]) -> int:
        self._next += 1
        self._tasks[self._next] = _Task(unit)
        self._held.append(self._next)
        self._pump()
        return self._next

    def _pump(self) -> None:
        """Send what may run now: the next suspect once the pool is empty; every held unit
        once no suspect is left to run or running."""
        if self._solo:
            if not any(t.future is not None for t in self._tasks.values()):
                self._suspect = self._solo.pop(0)
                self._send(self._suspect)
            return
        last = self._tasks.get(self._suspect) if self._suspect is not None else None
        if last is not None and last.future is not None:
            return  # the last suspect runs alone too
        self._suspect = None
        held, self._held = self._held, []
        for h in held:
            self._send(h)

    def _send(self, h: int) -> None:
        assert self._pool is not None
        try:
            self._tasks[h].future = self._pool.submit(_pool_run, self._tasks[h].unit)
        except BrokenProcessPool:  # a worker died while idle: nothing of this unit ran
            self._recover()
            self._tasks[h].future = self._pool.submit(_pool_run, self._tasks[h].unit)

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, Outcome]]:
        wanted = set(handles)
        while True:
            out = [(h, o) for h, o in self._ready if h in wanted]
            if out:
                self._ready = [(h, o) for h, o in self._ready if h not in wanted]
                return out
            self._pump()
            by_future = {
                t.future: h
                for h in handles
                if (t := self._tasks.get(h)) is not None and t.future is not None
            }
            if not by_future:  # every wanted unit waits behind others' suspects
                by_future = {t.future: h for h, t in self._tasks.items() if t.future is not None}
            if not by_future:
                raise RuntimeError("process runner: units wait but none is running")
            done, _ = futures_wait(by_future, return_when=FIRST_COMPLETED)
            broke = False
            for f in done:
                if _broken(f):
                    broke = True
                    continue
                h = by_future[f]
                del self._tasks[h]
                self._breaks = 0
                exc = f.exception()
                outcome = exc if exc is not None else f.result()
                if h in wanted:
                    out.append((h, outcome))
                else:
                    self._ready.append((h, outcome))
            if broke:
                self._recover()
            self._pump()
            if out:
                return out

    def _recover(self) -> None:
        """The pool broke: start a fresh one. The units it lost become suspects, run alone
        next; one that was alone in flight for its second break is the cause and fails (its
        failure waits in ``_ready``)."""
        assert self._dir is not None
        self._kill_pool()
        sent = [t.future for t in self._tasks.values() if t.future is not None]
        futures_wait(sent, timeout=10)
        lost = {h: t for h, t in self._tasks.items() if t.future is not None and _broken(t.future)}
        self._breaks += 1
        note = os.path.join(self._dir, INIT_ERROR)
        if os.path.exists(note):
            with open(note) as f:
                why = f.read().strip()
            raise RunnerFailed(
                f"the worker processes cannot load the model ({why}); define its class in an "
                "importable module (not in the script that runs the job), or run without "
                "--workers"
            )
        if self._breaks >= self.MAX_BREAKS:
            raise RunnerFailed(
                f"the worker pool broke {self._breaks} times in a row without finishing a "
                f"target: {WORKER_DIED}; or run without --workers"
            )
        self._pool = self._new_pool()
        for h, t in lost.items():
            t.future, t.breaks = None, t.breaks + 1
            if len(lost) == 1 and t.breaks >= 2:
                del self._tasks[h]
                self._ready.append((h, WorkerDied(f"{WORKER_DIED}, twice")))
            else:
                self._solo.append(h)

    def _kill_pool(self) -> None:
        """End the pool now: running units are abandoned, their workers terminated (a stuck
        one killed), so neither this process's exit nor the next pool waits for them."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(2)
                if p.is_alive():
                    p.kill()
                    p.join(2)

    def close(self, abandoned: Sequence[Any] = ()) -> None:
        """Stop the pool; its directory (a copy of the model) is removed whatever stops the
        shutdown (a Ctrl-C in it left one in /tmp per run)."""
        try:
            if self._pool is not None:
                if abandoned:
                    self._kill_pool()
                else:
                    self._pool.shutdown(wait=True)
                    self._pool = None
        finally:
            self._tasks.clear()
            self._ready.clear()
            self._solo.clear()
            self._held.clear()
            self._suspect = None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def describe(self) -> str:
        return f"process pool ({self.slots} workers)"


# ---------------------------------------------------------------- Ray
def _retryable() -> list[type[BaseException]]:
    """Exceptions worth another try on another worker (resources, I/O); bad input is not."""
    return [OSError, MemoryError, RuntimeError]


#: the Ray addresses Ray resolves itself: a running cluster found, or a new one started
_RAY_NAMES = ("auto", "local")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an address that is not HOST:PORT, ray://HOST:PORT, auto or local, and fail fast
    on a HOST:PORT nobody listens at (ray.init would retry for minutes)."""
    import socket

    if address.strip() in _RAY_NAMES:
        return
    m = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if not m or not 0 < int(m.group(2)) < 65536:
        raise InversetError(
            f"bad Ray address {address!r}; give HOST:PORT (as `ray status` prints it, e.g. "
            "10.0.0.5:6379), ray://HOST:PORT for a Ray client server, or auto"
        )
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout).close()
    except OSError as exc:
        raise InversetError(
            f"nothing answers at the Ray address {address} ({exc.strerror or exc}); start the "
            "cluster (ray start --head) or give its address as ray status prints it"
        ) from None


@contextlib.contextmanager
def _ray_leaves_sigterm(ray: Any, leave: bool) -> Iterator[None]:
    """When ``leave``, Ray's Python SIGTERM handlers (exit at once; stop the local cluster and
    exit) are not installed inside the block. Its C++ one still is, by the core worker."""
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    if not leave or not hasattr(utils, "set_sigterm_handler"):
        yield
        return
    install = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda _handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = install


class RayRunner(Runner):
    """Units as Ray tasks: Ray schedules them on the cluster's CPUs (a GPU each when the model
    is on CUDA). A worker that dies or hits a resource error is retried up to ``retries`` times.

    ``address=None`` starts a local cluster (``num_cpus=workers``), otherwise joins the cluster
    at ``address`` ('auto' finds a running one). An already initialised Ray is reused and left
    running; a cluster this runner started is shut down by :meth:`close`.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, workers: int | None = None, retries: int = 3
    ) -> None:
        self.address, self.workers, self.retries = address, workers, retries
        self._started = False

    def start(self, model: nn.Module, spec: dict[str, Any]) -> None:
        if self.address:
            _check_reachable(self.address)
        try:
            import ray
        except ModuleNotFoundError:
            raise InversetError(
                "--ray needs the 'ray' package; install it with: pip install 'inverset[ray]'"
            ) from None
        self._ray = ray
        if not ray.is_initialized():
            self._started = True  # close() stops what an interrupted start left
            self._init(ray)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = max(1, 2 * cpus)
        cuda = model_device(model).type == "cuda"
        self._remote = ray.remote(
            num_cpus=1,
            num_gpus=1 if cuda else 0,
            max_retries=self.retries,
            retry_exceptions=_retryable(),
        )(run_unit)
        self._model_ref = ray.put(model)
        self._spec = spec
        self._cpus = cpus

    def _init(self, ray: Any) -> None:
        """Start or join the cluster, keeping this process's SIGTERM handler (ray.init installs
        its own: the job's clean stop, its summary and its run record, would be skipped)."""
        from inverset.progress import keep_sigterm_handler

        if self.address:
            kwargs: dict[str, Any] = {"address": self.address}
        else:  # a new cluster, never one another user left running
            kwargs = {"address": "local", "num_cpus": self.workers, "include_dashboard": False}
        with keep_sigterm_handler() as kept, _ray_leaves_sigterm(ray, kept):
            try:
                ray.init(log_to_driver=False, **kwargs)
            except ConnectionError as exc:
                if not self.address:
                    raise
                raise InversetError(
                    f"cannot reach the Ray cluster at {self.address} ({exc}); check the "
                    "address with `ray status` on the head node, and set RAY_AUTH_MODE as "
                    "the cluster was started with"
                ) from None

    def submit(self, unit: dict[str, Any]) -> Any:
        return self._remote.remote(self._model_ref, self._spec, unit)

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, Outcome]]:
        ray = self._ray
        ready, _ = ray.wait(list(handles), num_returns=1)
        out: list[tuple[Any, Outcome]] = []
        for ref in ready:
            try:
                out.append((ref, ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause  # an InversetError as raised, others with Ray's traceback
                bad = isinstance(cause, InversetError)
                out.append((ref, cause if bad else exc.as_instanceof_cause()))
            except ray.exceptions.RayError as exc:
                out.append((ref, exc))
        return out

    def close(self, abandoned: Sequence[Any] = ()) -> None:
        """Stop a cluster this runner started (its workers with it), or leave one it joined
        (the cluster ends the tasks of a driver that leaves); in a Ray session it did not
        start, cancel the ``abandoned`` tasks. (Cancelling right before a shutdown can crash
        Ray's core worker: a task cancelled while its reply arrives.)"""
        if self._started:
            self._ray.shutdown()
            self._started = False
            return
        for ref in abandoned:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref)

    def describe(self) -> str:
        where = self.address or "local cluster"
        return f"ray ({where}, {getattr(self, '_cpus', '?')} CPUs)"


def make_runner(
    runner: str | Runner | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = False,
) -> Runner:
    """``'inline'``, ``'process'`` or ``'ray'`` (or a Runner); by default a pool when
    ``workers > 1`` and this process otherwise."""
    if isinstance(runner, Runner):
        return runner
    if runner is None:
        runner = "process" if workers and workers > 1 else "inline"
    if runner == "inline":
        return InlineRunner(progress=progress)
    if runner == "process":
        return ProcessRunner(workers or 2)
    if runner == "ray":
        return RayRunner(ray_address, workers)
    raise InversetError(f"unknown runner {runner!r}; choose inline, process or ray")
