"""Run a computation as independent tasks on a thread pool, one step at a time.

Every public computation is first turned into a :class:`Plan`: its arguments
are checked, its output allocated lazily, and its work split into tasks that
each take a few milliseconds. ``Plan.compute()`` runs it to the end (what the
public functions do); ``Plan.steps()`` is a generator that yields once per
finished task and returns the result, which is what napari's thread workers
need for progress and cancel. Closing that generator cancels the tasks that
have not started and waits for the running ones, so nothing keeps computing
after a cancel.

The numeric kernels release the GIL, so the tasks of one plan run on all cores.
Tasks started from inside one of our own pool threads (or with ``workers=1``)
run inline, which keeps nested or Dask-driven calls from oversubscribing.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

from ._validation import check_int

T = TypeVar("T")

#: Input bytes a task should read: big enough to amortise the pool's overhead,
#: small enough that temporaries stay in cache and cancel is quick.
TASK_BYTES = 4 * 2**20

_thread_state = threading.local()


def default_workers() -> int:
    """Number of threads a computation uses when ``workers`` is None.

    The machine's usable cores, or 1 inside one of this package's worker threads.
    """
    if getattr(_thread_state, "in_pool", False):
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers) -> int:
    """Check a ``workers`` argument (None or a positive int) and return the count."""
    if workers is None:
        return default_workers()
    return check_int(workers, "workers", minimum=1)


def _mark_pool_thread() -> None:
    _thread_state.in_pool = True


def split_range(length: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(length)`` into at most `parts` contiguous, near-equal pieces."""
    parts = max(1, min(int(parts), length))
    bounds = [round(i * length / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def task_count(work_bytes: float, length: int, workers: int) -> int:
    """How many tasks to cut `length` units of work (`work_bytes` in all) into.

    About TASK_BYTES per task, but at least two per worker when there is room,
    so that every core stays busy and progress moves; a single task (run
    inline, no thread) for work too small to be worth sharing.
    """
    if work_bytes < TASK_BYTES / 4:
        return 1
    count = math.ceil(work_bytes / TASK_BYTES)
    if workers > 1:
        count = max(count, 2 * workers)
    return max(1, min(count, length))


def run_tasks(tasks: Sequence[Callable[[], object]], workers: int) -> Generator[None, None, None]:
    """Run `tasks` (callables without arguments), yielding once as each finishes.

    With more than one worker the tasks run on a thread pool; the generator
    still yields on the calling thread. An exception in a task is raised at
    the next yield after the remaining tasks are cancelled.
    """
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
            yield
        return
    pool = _pool(workers)
    # Keep at most a few tasks queued per worker: cancel then drops the rest at once.
    pending = list(reversed(tasks))
    running: set = set()
    try:
        while pending or running:
            while pending and len(running) < 2 * workers:
                running.add(pool.submit(pending.pop()))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
                yield
    finally:
        for future in running:
            future.cancel()
        wait(running)  # the tasks already started finish before we return


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool of `workers` threads, created once and shared by all computations.

    Starting threads for every call would cost more than a small computation.
    """
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(
                max_workers=workers,
                thread_name_prefix=f"napari-voxelwise-{workers}",
                initializer=_mark_pool_thread,
            )
        return pool


class Plan(Generic[T]):
    """A checked computation, ready to run step by step or to the end.

    Parameters
    ----------
    total : int
        Number of steps the generator yields.
    run : callable
        Generator function yielding ``total`` times and returning the result.
    description : str
        Short text for progress bars.
    """

    def __init__(
        self, total: int, run: Callable[[], Generator[None, None, T]], description: str = ""
    ):
        self.total = int(total)
        self._run = run
        self.description = description

    def steps(self) -> Generator[None, None, T]:
        """Generator yielding once per finished step; its return value is the result."""
        return self._run()

    def compute(self) -> T:
        """Run every step and return the result."""
        generator = self._run()
        while True:
            try:
                next(generator)
            except StopIteration as stop:
                return stop.value

    @classmethod
    def over_frames(
        cls, make_plan: Callable[[int], Plan], count: int, description: str = ""
    ) -> Plan:
        """Run ``make_plan(i)`` for every frame ``i < count``; stack the results.

        Frame 0's plan is made at once, so bad arguments fail here, before any
        work; the others are made one at a time, so only one frame's
        temporaries exist at once. Every frame must give a result of the same
        shape and dtype (true when the frames have the same shape).
        """
        first = make_plan(0)

        def run():
            stacked = None
            for index in range(count):
                plan = first if index == 0 else make_plan(index)
                result = yield from plan.steps()
                if stacked is None:
                    import numpy as np

                    stacked = np.empty((count, *np.shape(result)), np.asarray(result).dtype)
                stacked[index] = result
            return stacked

        return cls(first.total * count, run, description or first.description)

    @classmethod
    def from_tasks(
        cls,
        tasks: Sequence[Callable[[], object]],
        finish: Callable[[], T],
        workers: int,
        description: str = "",
    ) -> Plan[T]:
        """A one-phase plan: run `tasks` in parallel, then return ``finish()``."""

        def run():
            yield from run_tasks(tasks, workers)
            return finish()

        return cls(len(tasks), run, description)
