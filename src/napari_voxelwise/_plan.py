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
from concurrent.futures import ThreadPoolExecutor, wait
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
    """Run `tasks` (callables without arguments), yielding once for each finished task.

    With more than one worker, the calling thread and ``workers - 1`` pool
    threads take the tasks from a shared counter, in the order of `interleaved`
    (tasks that run at the same time lie apart in memory); the generator yields
    after each task the calling thread finishes, once for every task finished by
    then (so the yields come in small bursts). Submitting every task to the pool
    and waking the caller as each finished had cost ~30 µs a task (128 tasks
    reading 512 MiB with np.max on two cores: 28 ms, against 21 ms this way).
    An exception in a task is raised once the calling thread's task is done, the
    remaining tasks dropped; closing the generator drops them too, after the
    running ones finish.
    """
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
            yield
        return
    queue = _TaskQueue(tasks, interleaved(len(tasks), workers))
    helpers = [_pool(workers - 1).submit(queue.drain) for _ in range(min(workers, len(tasks)) - 1)]
    yielded = 0
    try:
        while (task := queue.take()) is not None:
            queue.run(task, inline=True)
            for _ in range(queue.finished - yielded):
                yield
            yielded = queue.finished
        wait(helpers)
        if queue.error is not None:
            raise queue.error
        for _ in range(len(tasks) - yielded):
            yield
    finally:
        queue.stop()
        for helper in helpers:
            helper.cancel()  # one still queued behind another computation's never runs
        wait(helpers)  # the tasks already started finish before we return


def interleaved(count: int, ways: int) -> list[int]:
    """The order in which `run_tasks` hands out `count` tasks to `ways` threads: the first
    task of each of `ways` contiguous runs of tasks, then the second of each, and so on.

    Tasks cut a computation into contiguous pieces, so neighbours write neighbouring
    parts of a new result; taken in order, the threads first wrote into the same huge
    pages (2 MiB, which the kernel zeroes on a first write), and one waited for the
    other: a new 800 MiB result of `mask_filter` on two threads took 150 ms in order,
    122 ms interleaved (80 ms already written).
    """
    runs = [range(a, b) for a, b in split_range(count, ways)]
    longest = max(len(run) for run in runs)
    return [run[i] for i in range(longest) for run in runs if i < len(run)]


class _TaskQueue:
    """Tasks taken in a given order by several threads; counts what finished, keeps the
    first error."""

    def __init__(self, tasks: Sequence[Callable[[], object]], order: Sequence[int]):
        self._tasks = [tasks[i] for i in order]
        self._next = 0
        self._lock = threading.Lock()
        self.finished = 0
        self.error: BaseException | None = None

    def take(self) -> Callable[[], object] | None:
        """The next task, or None when all are taken, one failed, or `stop` was called."""
        with self._lock:
            if self.error is not None or self._next >= len(self._tasks):
                return None
            self._next += 1
            return self._tasks[self._next - 1]

    def stop(self) -> None:
        with self._lock:
            self._next = len(self._tasks)

    def run(self, task: Callable[[], object], inline: bool = False) -> None:
        """Run one task; `inline` (the calling thread) marks it as a pool thread meanwhile,
        so that computations nested in the task run on one worker, as in the pool."""
        was_in_pool = getattr(_thread_state, "in_pool", False)
        if inline:
            _thread_state.in_pool = True
        try:
            task()
        except BaseException as error:
            with self._lock:
                if self.error is None:
                    self.error = error
            raise
        finally:
            _thread_state.in_pool = was_in_pool
        with self._lock:
            self.finished += 1

    def drain(self) -> None:
        """Run tasks until none is left (a pool thread's loop); errors stay in `error`."""
        while (task := self.take()) is not None:
            try:
                self.run(task)
            except BaseException:
                return


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
