"""The task runner behind every computation: steps, cancel, errors, workers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_voxelwise import _plan
from napari_voxelwise.statistics import statistic_plan


def test_steps_yield_total_times_and_return_the_result():
    stack = np.random.default_rng(0).random((4, 64, 64, 64)).astype(np.float32)
    plan = statistic_plan(stack, "var", axis=0, workers=2)
    steps = plan.steps()
    count = 0
    while True:
        try:
            next(steps)
            count += 1
        except StopIteration as stop:
            result = stop.value
            break
    assert count == plan.total > 1
    np.testing.assert_array_equal(result, plan.compute())


@pytest.mark.parametrize("workers", [1, 2])
def test_closing_the_generator_stops_remaining_tasks(workers):
    started = []
    lock = threading.Lock()

    def task(i):
        with lock:
            started.append(i)
        time.sleep(0.02)

    tasks = [lambda i=i: task(i) for i in range(50)]
    plan = _plan.Plan.from_tasks(tasks, lambda: "done", workers)
    steps = plan.steps()
    for _ in range(3):
        next(steps)
    steps.close()  # what napari's worker.quit() leads to
    count = len(started)
    time.sleep(0.1)
    assert len(started) == count  # nothing started after close
    assert count < 3 + 2 * workers + 1  # only the few queued ones had started


def test_a_failing_task_raises_its_own_error():
    def boom():
        raise ValueError("stack is broken")

    tasks = [lambda: None, boom, lambda: None]
    with pytest.raises(ValueError, match="stack is broken"):
        _plan.Plan.from_tasks(tasks, lambda: None, 2).compute()


def test_tasks_run_with_one_worker_inside_the_pool():
    seen = []
    tasks = [lambda: seen.append(_plan.default_workers()) for _ in range(4)]
    _plan.Plan.from_tasks(tasks, lambda: None, 2).compute()
    assert seen == [1, 1, 1, 1]
    assert _plan.default_workers() >= 1


def test_the_caller_and_the_pool_share_the_tasks_each_once():
    caller = threading.current_thread()
    ran = []
    lock = threading.Lock()

    def task(i):
        time.sleep(0.01)  # the caller alone would need 0.2 s: the pool thread starts before
        with lock:
            ran.append((i, threading.current_thread() is caller))

    tasks = [lambda i=i: task(i) for i in range(20)]
    steps = _plan.run_tasks(tasks, 2)
    count = 0
    for _ in steps:
        count += 1
        assert count <= len(ran)  # a yield for a task that finished, never ahead
    assert count == 20
    assert sorted(i for i, _ in ran) == list(range(20))
    assert {in_caller for _, in_caller in ran} == {True, False}  # both threads took some


def test_a_task_failing_in_the_pool_thread_stops_the_others():
    caller = threading.current_thread()
    events = []

    def task(i):
        events.append("start")
        time.sleep(0.01)
        if threading.current_thread() is not caller:
            events.append("failed")
            raise ValueError(f"task {i} failed in the pool")

    tasks = [lambda i=i: task(i) for i in range(40)]
    with pytest.raises(ValueError, match="failed in the pool"):
        _plan.Plan.from_tasks(tasks, lambda: None, 2).compute()
    time.sleep(0.05)
    assert events.count("failed") == 1
    # at most the one task the caller may take while the failure is being recorded
    assert events[events.index("failed") :].count("start") <= 1
    assert events.count("start") < 40


def test_computations_started_from_two_threads_at_once():
    """Two plans share the pool: one's helper may wait behind the other's, whose
    caller then runs its tasks alone; both results stay right."""
    stacks = [np.random.default_rng(i).random((4, 40, 50, 60)).astype(np.float32) for i in (2, 3)]
    results = [None, None]

    def compute(i):
        results[i] = statistic_plan(stacks[i], "var", axis=0, workers=2).compute()

    threads = [threading.Thread(target=compute, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for stack, result in zip(stacks, results, strict=True):
        np.testing.assert_allclose(result, stack.var(axis=0, dtype=np.float64), rtol=1e-6)


@pytest.mark.parametrize(("length", "parts"), [(10, 3), (3, 10), (1, 1), (100, 7)])
def test_split_range_covers_the_range_once(length, parts):
    pieces = _plan.split_range(length, parts)
    covered = [i for a, b in pieces for i in range(a, b)]
    assert covered == list(range(length))
    assert len(pieces) == min(length, parts)


@pytest.mark.parametrize(("count", "ways"), [(1, 2), (2, 2), (7, 2), (7, 3), (10, 4), (3, 8)])
def test_interleaved_order_takes_each_task_once_from_distant_runs(count, ways):
    order = _plan.interleaved(count, ways)
    assert sorted(order) == list(range(count))
    runs = _plan.split_range(count, ways)  # the contiguous runs, by hand
    assert order[: len(runs)] == [a for a, _ in runs]  # first the start of each run
    for a, b in runs:  # each run in its own order
        assert [i for i in order if a <= i < b] == list(range(a, b))


def test_two_threads_start_on_tasks_far_apart():
    started = []
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=5)

    def task(i):
        with lock:
            started.append(i)
        if len(started) <= 2:
            both.wait()  # the first two tasks run at the same time, one per thread

    tasks = [lambda i=i: task(i) for i in range(64)]
    _plan.Plan.from_tasks(tasks, lambda: None, 2).compute()
    assert sorted(started[:2]) == [0, 32]
    assert sorted(started) == list(range(64))


@pytest.mark.parametrize(
    ("workers", "error"), [(0, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_workers_are_refused(workers, error):
    with pytest.raises(error, match="workers"):
        _plan.resolve_workers(workers)


def test_over_frames_stacks_per_frame_results_and_counts_every_step():
    from napari_voxelwise.differential import hessian_eigenvalues_plan

    movie = np.random.default_rng(1).random((3, 12, 13, 14)).astype(np.float32)
    plan = _plan.Plan.over_frames(
        lambda t: hessian_eigenvalues_plan(movie[t], sigma=1.0, workers=2), len(movie)
    )
    steps = plan.steps()
    count = 0
    while True:
        try:
            next(steps)
            count += 1
        except StopIteration as stop:
            result = stop.value
            break
    assert count == plan.total
    for t in range(3):
        np.testing.assert_array_equal(
            result[t], hessian_eigenvalues_plan(movie[t], sigma=1.0).compute()
        )


def test_over_frames_checks_the_first_frame_at_once():
    from napari_voxelwise.differential import hessian_eigenvalues_plan

    with pytest.raises(ValueError, match="order"):
        _plan.Plan.over_frames(
            lambda t: hessian_eigenvalues_plan(np.ones((4, 5, 6)), order="bad"), 2
        )
