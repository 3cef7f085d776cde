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


@pytest.mark.parametrize(("length", "parts"), [(10, 3), (3, 10), (1, 1), (100, 7)])
def test_split_range_covers_the_range_once(length, parts):
    pieces = _plan.split_range(length, parts)
    covered = [i for a, b in pieces for i in range(a, b)]
    assert covered == list(range(length))
    assert len(pieces) == min(length, parts)


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
