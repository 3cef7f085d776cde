"""Compiled kernels or the portable path, chosen task by task; compiling in another process.

Every computation of the numeric core exists twice: once written over the array namespace
(:mod:`napari_voxelwise._portable`, NumPy and SciPy), and once as numba kernels
(:mod:`napari_voxelwise._kernels`, one module per family), several times faster but compiled
for each dtype and layout they meet (seconds each, once per install: numba caches them on
disk), and loaded into each new process (numba's own start takes ~0.45 s, then a cached
kernel a few milliseconds). This module decides which one runs, so that no call waits for
the compiler and nothing compiles on the thread that calls:

- A plan's tasks (see :mod:`napari_voxelwise._plan`) come in pairs, kernels and portable.
  Once numba is started in this process, a task runs its kernels. A kernel that is
  compiled (in memory, or in numba's disk cache: then it is loaded) runs; one that would
  have to be compiled is not compiled here: a listener on numba's compile event raises
  :class:`KernelsNotReady` instead, and that task and the plan's later tasks take the
  portable path.
- The missing kernel is compiled by a separate process (``python -m
  napari_voxelwise._compiler``, at low priority) into numba's disk cache, so no compiling
  holds this process's GIL and the viewer does not freeze; this process then loads it in a
  background thread, and later calls use it.
- numba itself is started in a background thread on first need; until it is, calls take
  the portable path.

The mode (environment variable ``NAPARI_VOXELWISE_COMPILE``, or :func:`set_compile_mode`):

``"background"`` (default)
    As above.
``"wait"``
    A missing kernel is compiled (by the compiler process) while the call waits, then
    used: every call runs on kernels. For benchmarks, tests and long batch jobs.
``"off"``
    Nothing is compiled and nothing runs in the background: kernels already in the disk
    cache are used (numba starts on the first call that needs it), others take the
    portable path.

Without numba (not installed, or failing to import) every call takes the portable path.
What happens is logged on the ``napari_voxelwise`` logger (INFO), and told to the
functions registered with :func:`add_listener` (the panels show it in napari's activity
dock).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import pkgutil
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial

__all__ = [
    "MODES",
    "MODE_VARIABLE",
    "KernelsNotReady",
    "add_listener",
    "background_idle",
    "compile_mode",
    "compiled",
    "numba_ready",
    "portable_path",
    "set_compile_mode",
    "task_counts",
    "tasks",
    "warmup",
]

logger = logging.getLogger("napari_voxelwise")

MODE_VARIABLE = "NAPARI_VOXELWISE_COMPILE"
MODES = ("background", "wait", "off")
#: Seconds the compiler process may stay idle before it exits (it holds ~150 MB).
COMPILER_IDLE_SECONDS = 60.0

_lock = threading.RLock()
_mode: str | None = None
#: True in the compiler process: there numba compiles as usual.
_compiling_here = False


class KernelsNotReady(RuntimeError):
    """A kernel a task needs is not compiled for its argument types in this process.

    Attributes
    ----------
    kernel : str
        ``module:qualname`` of the kernel.
    request : dict
        What the compiler process needs to compile it (JSON-able).
    """

    def __init__(self, kernel: str, request: dict):
        super().__init__(f"{kernel} is not compiled for {request['arguments']}")
        self.kernel = kernel
        self.request = request


class CompileError(RuntimeError):
    """The compiler process failed to compile a kernel."""


# --------------------------------------------------------------------------- the mode


def compile_mode() -> str:
    """How kernels missing from the cache are compiled now.

    Returns
    -------
    str
        ``"background"``, ``"wait"`` or ``"off"`` (see :func:`set_compile_mode`); the
        environment variable ``NAPARI_VOXELWISE_COMPILE`` sets it at start.
    """
    global _mode
    with _lock:
        if _mode is None:
            value = os.environ.get(MODE_VARIABLE, "").strip().lower() or "background"
            if value not in MODES:
                logger.warning(
                    "%s=%r is not one of %s; using 'background'", MODE_VARIABLE, value, MODES
                )
                value = "background"
            _mode = value
        return _mode


def set_compile_mode(mode: str) -> str:
    """Set how missing kernels are compiled; returns the previous mode.

    Parameters
    ----------
    mode : {"background", "wait", "off"}
        ``"background"`` (the default): a call whose kernels are not compiled yet runs
        on the portable path while a separate low-priority process compiles them; later
        calls use them. ``"wait"``: the call waits for that process and runs on the
        kernels (for benchmarks and long batch jobs). ``"off"``: nothing is compiled and
        nothing runs in the background; kernels already in the cache are used.

    Returns
    -------
    str
        The previous mode.

    Examples
    --------
    >>> import napari_voxelwise as vw
    >>> previous = vw.set_compile_mode("wait")
    >>> vw.compile_mode()
    'wait'
    >>> _ = vw.set_compile_mode(previous)
    """
    global _mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    with _lock:
        previous = compile_mode()
        _mode = mode
        return previous


# --------------------------------------------------------------------------- listeners

_listeners: list[Callable[[str, str], None]] = []


def add_listener(listener: Callable[[str, str], None]) -> None:
    """Call ``listener(event, description)`` on ``"compiling"``, ``"ready"`` and
    ``"failed"`` of background compiling (from a background thread)."""
    with _lock:
        _listeners.append(listener)


def _tell(event: str, description: str) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event, description)
        except Exception:  # a listener's failure must not stop compiling
            logger.exception("listener of the kernel compiler failed")


# --------------------------------------------------------------------------- numba's start

_numba_state = "unknown"  # -> "starting" -> "ready" | "missing"
_numba_started = threading.Event()


def _start_numba() -> None:
    """Import numba and our kernel families, start numba's compiler context, and (but in
    the compiler process) register the listener that stops compiling here."""
    global _numba_state
    began = time.perf_counter()
    try:
        from ._portable import IMPORT_LOCK

        with IMPORT_LOCK:  # numba's registries import it, as computations may import SciPy
            import scipy.linalg  # noqa: F401
        from numba.core import event
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()  # numba's registries: most of its start
        from . import _kernels

        for family in pkgutil.iter_modules(_kernels.__path__):  # every kernel family
            if not family.name.startswith("_"):
                importlib.import_module(f"napari_voxelwise._kernels.{family.name}")
        if not _compiling_here:
            event.register("numba:compile", _compile_guard(event.Listener)())
        state = "ready"
        logger.info("numba started in %.2f s", time.perf_counter() - began)
    except Exception as error:  # not installed, or not importable with this NumPy
        state = "missing"
        logger.info("numba is not available (%s): computations take the portable path", error)
    with _lock:
        _numba_state = state
    _numba_started.set()


_guarded = threading.local()


#: Seconds without a running task before numba starts in the background (its start holds
#: the GIL in bursts for ~0.5 s: not while the call that asked for it runs), and the most
#: it waits for them (calls back to back would otherwise keep it from starting).
IDLE_BEFORE_START = 0.05
LONGEST_START_DELAY = 1.0
#: The quiet a background thread (a panel's preparation) waits for: also past the end of a
#: run, while its result layers are added.
IDLE_IN_BACKGROUND = 0.5


def _wait_until_idle(longest: float | None, quiet: float = IDLE_IN_BACKGROUND) -> None:
    """Return once no task has run for `quiet` seconds, or after `longest` (None: no limit)."""
    began = quiet_since = time.monotonic()
    while longest is None or time.monotonic() - began < longest:
        if _counts["running"]:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return
        time.sleep(0.01)


def _start_numba_when_idle(longest: float | None = LONGEST_START_DELAY) -> None:
    _wait_until_idle(longest, IDLE_BEFORE_START if longest is not None else IDLE_IN_BACKGROUND)
    _start_numba()


def _compile_guard(listener_class):
    class CompileGuard(listener_class):
        """Raises KernelsNotReady when numba is about to compile one of our kernels.

        Only a compile that starts from a call: one nested in another compile (of a
        function of the user's, or of a test's, that uses our helpers) goes on.
        """

        def on_start(self, event):
            compiles = _guarded.__dict__.setdefault("compiles", [])
            function = event.data["dispatcher"].py_func
            if function.__module__.startswith("napari_voxelwise.") and not compiles:
                compiles.append(event)  # numba ends the event it started, raised or not
                request = {
                    "module": function.__module__,
                    "name": function.__qualname__,
                    "arguments": [describe_type(t) for t in event.data["args"]],
                }
                raise KernelsNotReady(f"{function.__module__}:{function.__qualname__}", request)
            compiles.append(event)

        def on_end(self, event):
            _guarded.compiles.pop()

    return CompileGuard


def numba_ready(wait: bool | None = None, background: bool = False) -> bool:
    """Whether numba is started in this process; starts it if need be.

    `wait` None: wait in the modes "wait" and "off" (and in the compiler process), start
    it in a background thread in mode "background". `background`: called from a
    background thread, which starts numba itself once no computation runs (loading
    llvmlite holds the GIL for 0.1-0.3 s at once on a busy machine).
    """
    global _numba_state
    if getattr(_portable_only, "on", False):
        return False
    if wait is None:
        wait = _compiling_here or compile_mode() != "background"
    with _lock:
        state = _numba_state
        if state == "unknown":
            _numba_state = "starting"
            if not wait:
                threading.Thread(
                    target=_start_numba_when_idle, name="napari-voxelwise-numba", daemon=True
                ).start()
                return False
    if state == "unknown":
        _start_numba_when_idle(None) if background else _start_numba()
    elif state == "starting":
        if not wait:
            return False
        _numba_started.wait()
    return _numba_state == "ready"


_portable_only = threading.local()


@contextlib.contextmanager
def portable_path():
    """Within this context, computations started by this thread take the portable path
    (for tests and benchmarks that compare the two paths)."""
    before = getattr(_portable_only, "on", False)
    _portable_only.on = True
    try:
        yield
    finally:
        _portable_only.on = before


# --------------------------------------------------------------------------- tasks


_counts = {"kernels": 0, "portable": 0, "running": 0}


def task_counts() -> dict[str, int]:
    """How many tasks ran on kernels and on the portable path in this process so far."""
    with _lock:
        return {"kernels": _counts["kernels"], "portable": _counts["portable"]}


def _count(path: str, change: int = 1) -> None:
    with _lock:
        _counts[path] += change


class _Choice:
    """Which path the tasks of one plan take: kernels until one is missing."""

    __slots__ = ("kernels",)

    def __init__(self):
        self.kernels = True


def tasks(
    kernel_tasks: Sequence[Callable[[], object]] | None,
    portable_tasks: Sequence[Callable[[], object]],
) -> list[Callable[[], object]]:
    """The tasks of a plan: each runs its kernel task, or its portable twin.

    `kernel_tasks` None (no kernels in this process): the portable tasks. Otherwise a
    task whose kernels are not compiled raises :class:`KernelsNotReady`; then (mode
    "wait") the kernel is compiled and the task tried again, or it and the remaining
    tasks take the portable path (the kernel is compiled in the background in mode
    "background"). A kernel task must leave nothing half done that its portable twin
    would not redo (it writes its own part of the result, or adds to shared state only
    once its kernels returned).
    """
    if kernel_tasks is None:
        return [partial(_run_portable, task) for task in portable_tasks]
    if len(kernel_tasks) != len(portable_tasks):
        raise ValueError("every kernel task needs a portable twin")
    choice = _Choice()
    return [
        partial(_run_task, choice, kernel_task, portable_task)
        for kernel_task, portable_task in zip(kernel_tasks, portable_tasks, strict=True)
    ]


def _run_portable(portable_task):
    _count("running")
    try:
        result = portable_task()
    finally:
        _count("running", -1)
    _count("portable")
    return result


def _run_task(choice: _Choice, kernel_task, portable_task):
    _count("running")
    try:
        return _run_kernels_or_portable(choice, kernel_task, portable_task)
    finally:
        _count("running", -1)


def _run_kernels_or_portable(choice: _Choice, kernel_task, portable_task):
    while choice.kernels:
        try:
            result = kernel_task()
            _count("kernels")
            return result
        except KernelsNotReady as missing:
            mode = compile_mode()
            if mode == "wait":
                _compiler.compile([missing.request])
                continue
            choice.kernels = False
            if mode == "background":
                _background.request(missing.request, missing.kernel)
    return _run_portable(portable_task)


def compiled(kernel_task: Callable[[], object]):
    """``kernel_task()``, a call of kernels, once its kernels are compiled: each missing one
    is compiled by the compiler process first, whatever the mode (for tests and tools that
    call kernels directly)."""
    if not numba_ready(wait=True):
        raise RuntimeError("numba is not available")
    while True:
        try:
            return kernel_task()
        except KernelsNotReady as missing:
            _compiler.compile([missing.request])


# --------------------------------------------------------------------------- numba types


def describe_type(numba_type) -> list:
    """A JSON-able description of a numba argument type (see :func:`rebuild_type`)."""
    from numba.core import types

    if isinstance(numba_type, types.Array):
        return [
            "array",
            str(numba_type.dtype),
            numba_type.ndim,
            numba_type.layout,
            not numba_type.mutable,
        ]
    if isinstance(numba_type, types.UniTuple):
        return ["unituple", describe_type(numba_type.dtype), numba_type.count]
    if isinstance(numba_type, types.Tuple):
        return ["tuple", [describe_type(t) for t in numba_type.types]]
    if isinstance(numba_type, types.Omitted):
        if numba_type.value is not None:
            raise TypeError(f"cannot describe {numba_type}")
        return ["omitted"]
    if isinstance(numba_type, types.NoneType):
        return ["none"]
    if isinstance(numba_type, types.Boolean | types.Integer | types.Float):
        return ["scalar", str(numba_type)]
    raise TypeError(f"cannot describe numba type {numba_type!r}")


def rebuild_type(description: list):
    """The numba type that :func:`describe_type` described."""
    import numpy as np
    from numba import from_dtype
    from numba.core import types

    kind = description[0]
    if kind == "array":
        _, dtype, ndim, layout, readonly = description
        return types.Array(from_dtype(np.dtype(dtype)), ndim, layout, readonly=readonly)
    if kind == "unituple":
        return types.UniTuple(rebuild_type(description[1]), description[2])
    if kind == "tuple":
        return types.Tuple([rebuild_type(d) for d in description[1]])
    if kind == "omitted":
        return types.Omitted(None)
    if kind == "none":
        return types.none
    if kind == "scalar":
        name = description[1]
        return types.boolean if name == "bool" else getattr(types, name)
    raise ValueError(f"unknown type description {description!r}")


def load(request: dict) -> None:
    """Load the kernel of `request` from numba's disk cache into this process (or raise
    :class:`KernelsNotReady` if it is not there)."""
    module = importlib.import_module(request["module"])
    dispatcher = getattr(module, request["name"])
    dispatcher.compile(tuple(rebuild_type(d) for d in request["arguments"]))


# --------------------------------------------------------------------------- the compiler


class _CompilerProcess:
    """The client side of ``python -m napari_voxelwise._compiler``: one process, started
    on first need, fed one JSON line per job (on its stdin), answering one line per job."""

    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._last_used = time.monotonic()

    def _started(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            environment = dict(os.environ)
            # the same package and dependencies as this process, wherever they came from
            environment["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            self._process = subprocess.Popen(
                [sys.executable, "-m", "napari_voxelwise._compiler"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environment,
                text=True,
                bufsize=1,
            )
        return self._process

    def run(self, job: dict) -> dict:
        """Send one job, wait for its answer."""
        with self._lock:
            process = self._started()
            try:
                process.stdin.write(json.dumps(job) + "\n")
                process.stdin.flush()
                answer = process.stdout.readline()
            except (BrokenPipeError, OSError) as error:
                self._process = None
                raise CompileError(f"the compiler process ended ({error})") from error
            finally:
                self._last_used = time.monotonic()
            if not answer:
                self._process = None
                raise CompileError(f"the compiler process ended (exit code {process.wait()})")
            return json.loads(answer)

    def compile(self, requests: list[dict]) -> None:
        """Compile the kernels of `requests` into the disk cache, and load them here."""
        answer = self.run({"kernels": requests})
        if answer.get("error"):
            raise CompileError(answer["error"])
        for request in requests:
            load(request)

    def warm(self, operations: Sequence[str], dtypes: Sequence[str]) -> dict:
        """Run the warm-up calls of `operations` for `dtypes` in the compiler process."""
        answer = self.run({"warmup": {"operations": list(operations), "dtypes": list(dtypes)}})
        if answer.get("error"):
            raise CompileError(answer["error"])
        return answer

    def close_if_idle(self, seconds: float) -> None:
        with self._lock:
            idle = time.monotonic() - self._last_used >= seconds
            if self._process is not None and idle:
                self._close()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.stdin.close()  # the compiler exits at the end of its input
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None:
            process.stdout.close()


_compiler = _CompilerProcess()


class _Background:
    """One thread that has the compiler process compile what calls missed, then loads it."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._seen: set[str] = set()
        self._thread: threading.Thread | None = None

    def idle(self) -> bool:
        """Nothing asked for is still being compiled or loaded."""
        return self._queue.unfinished_tasks == 0

    def request(self, request: dict, kernel: str) -> None:
        key = json.dumps(request, sort_keys=True)
        with _lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self._queue.put(("kernel", request, kernel))
            self._ensure_thread()

    def warm(self, operations: Sequence[str], dtypes: Sequence[str]) -> None:
        key = json.dumps(["warmup", sorted(operations), sorted(dtypes)])
        with _lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self._queue.put(("warmup", list(operations), list(dtypes)))
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._work, name="napari-voxelwise-compiling", daemon=True
            )
            self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=COMPILER_IDLE_SECONDS)
            except queue.Empty:
                with _lock:
                    if self._queue.empty():
                        _compiler.close_if_idle(COMPILER_IDLE_SECONDS)
                        self._thread = None
                        return
                continue
            batch = [item]
            while not self._queue.empty():  # everything asked for meanwhile, in one job
                batch.append(self._queue.get())
            try:
                self._compile(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _compile(self, batch) -> None:
        kernels_ = [item for item in batch if item[0] == "kernel"]
        warmups = [item for item in batch if item[0] == "warmup"]
        began = time.perf_counter()
        if kernels_:
            description = "kernels " + ", ".join(sorted({k for _, _, k in kernels_}))
            _tell("compiling", description)
            logger.info("compiling %s in the background", description)
            try:
                numba_ready(wait=True, background=True)
                _compiler.compile([request for _, request, _ in kernels_])
            except Exception as error:
                logger.warning("compiling %s failed: %s", description, error)
                _tell("failed", description)
            else:
                logger.info("%s ready (%.1f s)", description, time.perf_counter() - began)
                _tell("ready", description)
        for _, operations, dtypes in warmups:
            _warm_now(operations, dtypes, raise_errors=False, background=True)


_background = _Background()


# --------------------------------------------------------------------------- warm-up


def background_idle() -> bool:
    """Whether background compiling has nothing left to do (for tests and benchmarks)."""
    return _background.idle()


def warmup(
    operations: Sequence[str] | None = None, dtypes: Sequence | None = None, *, wait: bool = True
) -> None:
    """Compile the kernels of `operations` for `dtypes` ahead of time, and load them.

    Without this, a computation whose kernels are not compiled yet runs on the
    portable path (NumPy/SciPy) while a separate process compiles them, and later
    calls use them; compiled kernels stay in numba's disk cache for every later
    process. Call it (or run ``napari-voxelwise warmup``) to have the kernels ready
    before the first call: on cluster images, shared installs, or before timing.

    Parameters
    ----------
    operations : sequence of str, optional
        Among ``"statistics"``, ``"norms"``, ``"density"``, ``"masking"``,
        ``"gradient"``, ``"hessian"``, ``"vesselness"``; default all.
    dtypes : sequence of dtype, optional
        The input dtypes to prepare; default uint8, uint16, float32 and float64.
    wait : bool, optional
        True (default): return when the kernels are compiled and loaded. False:
        compile in the background and return at once.

    Raises
    ------
    ValueError, TypeError
        On an unknown operation or a dtype that is not a real number type.

    Examples
    --------
    >>> import napari_voxelwise as vw
    >>> vw.warmup(["density"], ["bool"])  # doctest: +SKIP
    """
    from . import _warmup

    operations = _warmup.check_operations(operations)
    dtypes = _warmup.check_dtypes(dtypes)
    if wait:
        _warm_now(operations, dtypes, raise_errors=True)
    else:
        _background.warm(operations, dtypes)


def _warm_now(
    operations: list[str], dtypes: list[str], raise_errors: bool, background: bool = False
) -> None:
    from . import _warmup

    description = f"{', '.join(operations)} for {', '.join(dtypes)}"
    if not numba_ready(wait=True, background=background):
        return
    began = time.perf_counter()
    _tell("compiling", description)
    logger.info("compiling %s", description)
    try:
        if compile_mode() != "off" or _compiling_here:
            _compiler.warm(operations, dtypes)
        if background:  # loading holds the GIL in bursts: not during a computation
            _wait_until_idle(None)
        _warmup.run(operations, dtypes)  # loads what the compiler process wrote
    except Exception as error:
        logger.warning("compiling %s failed: %s", description, error)
        _tell("failed", description)
        if raise_errors:
            raise
        return
    logger.info("%s ready (%.1f s)", description, time.perf_counter() - began)
    _tell("ready", description)
