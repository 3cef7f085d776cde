"""The shared runner: progress, cancel, one run at a time, errors, layer removal, memory."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_voxelwise import _runner
from napari_voxelwise._plan import Plan
from napari_voxelwise._runner import Job, Runner
from napari_voxelwise.statistics import statistic_plan


def slow_plan(total=200, delay=0.01, result=None):
    """A plan whose steps take `delay` seconds each; records how many ran."""
    ran = []

    def run():
        for index in range(total):
            time.sleep(delay)
            ran.append(index)
            yield
        return np.zeros((2, 2)) if result is None else result

    plan = Plan(total, run, "slow")
    plan.ran = ran
    return plan


def image_job(layer, plan, title="test"):
    return Job(
        title=title,
        plan=plan,
        to_layers=lambda result: [(result, {"name": f"{title} result"}, "image")],
        sources=[layer],
        operation="test",
        parameters={"x": 1},
    )


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def test_result_layer_added_with_provenance(viewer, qtbot):
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    layer = viewer.add_image(data, name="cells")
    runner = Runner(viewer)
    assert runner.submit(lambda: image_job(layer, statistic_plan(data, "var", axis=0), "var"))
    runner.wait()
    result = viewer.layers["var result"]
    np.testing.assert_allclose(result.data, data.var(axis=0), rtol=1e-5)
    record = result.metadata[_runner.METADATA_KEY]
    assert record["operation"] == "test" and record["sources"] == ["cells"]


def test_cancel_stops_quickly_and_adds_nothing(viewer, qtbot):
    layer = viewer.add_image(np.zeros((4, 4)))
    runner = Runner(viewer)
    plan = slow_plan(total=1000)
    runner.submit(lambda: image_job(layer, plan))
    qtbot.waitUntil(lambda: len(plan.ran) > 3, timeout=5000)
    started = time.perf_counter()
    runner.cancel()
    runner.wait()
    assert time.perf_counter() - started < 0.5
    assert len(plan.ran) < 1000
    assert len(viewer.layers) == 1


def test_one_run_at_a_time(viewer, qtbot):
    layer = viewer.add_image(np.zeros((4, 4)))
    runner = Runner(viewer)
    assert runner.submit(lambda: image_job(layer, slow_plan(total=30)))
    for _ in range(5):
        assert not runner.submit(lambda: image_job(layer, slow_plan(total=30)))
    runner.wait()
    assert [layer.name for layer in viewer.layers] == ["Image", "test result"]


def test_replace_runs_only_the_newest(viewer, qtbot):
    layer = viewer.add_image(np.zeros((4, 4)))
    runner = Runner(viewer)
    plans = [slow_plan(total=50, result=np.full((2, 2), i, float)) for i in range(4)]
    for plan in plans:
        runner.submit(lambda plan=plan: image_job(layer, plan), replace=True)
    runner.wait()
    assert len(viewer.layers) == 2
    assert (viewer.layers["test result"].data == 3).all()


def test_same_name_updates_that_layer_and_a_live_slot_follows_new_names(viewer, qtbot):
    layer = viewer.add_image(np.zeros((4, 4)), name="src")
    runner = Runner(viewer)

    def run(name, value, slot=None):
        plan = slow_plan(total=1, delay=0, result=np.full((2, 2), float(value)))
        job = Job(
            title="t",
            plan=plan,
            to_layers=lambda result: [(result, {"name": name}, "image")],
            sources=[layer],
            live_slot=slot,
        )
        assert runner.submit(lambda: job)
        runner.wait()
        return viewer.layers[name]

    first = run("a", 1)
    assert run("a", 2) is first and (first.data == 2).all()  # same parameters: replaced
    run("b", 3)  # other parameters: a layer of its own
    live = run("c", 4, slot="live")
    assert run("d", 5, slot="live") is live and (live.data == 5).all()  # renamed in place
    assert [layer.name for layer in viewer.layers] == ["src", "a", "b", "d"]
    assert run("c", 6) is not live  # the live layer's old name is free again
    assert run("d", 7) is live and (live.data == 7).all()  # its new name is its own
    assert [layer.name for layer in viewer.layers] == ["src", "a", "b", "d", "c"]


def test_a_layer_of_the_same_name_and_operation_is_updated_by_any_runner(viewer, qtbot):
    layer = viewer.add_image(np.zeros((4, 4)), name="src")

    def run(runner, value, operation):
        job = image_job(layer, slow_plan(total=1, delay=0, result=np.full((2, 2), value)))
        job.operation = operation
        assert runner.submit(lambda: job)
        runner.wait()
        return viewer.layers[-1]

    first = run(Runner(viewer), 1.0, "test")
    assert run(Runner(viewer), 2.0, "test") is first  # a panel opened again
    assert (first.data == 2).all() and len(viewer.layers) == 2
    other = run(Runner(viewer), 3.0, "another operation")
    assert other is not first and other.name == "test result [1]"
    assert (first.data == 2).all()


def test_bad_input_becomes_a_notification(viewer, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr(Runner, "notify_error", staticmethod(lambda e: shown.append(str(e))))
    layer = viewer.add_image(np.zeros((4, 4)))
    runner = Runner(viewer)
    assert not runner.submit(
        lambda: image_job(layer, statistic_plan(np.zeros((3, 3)), "mode", axis=0))
    )
    assert "statistic" in shown[0]


def test_error_during_run_adds_no_layer(viewer, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr(Runner, "notify_error", staticmethod(lambda e: shown.append(str(e))))
    layer = viewer.add_image(np.zeros((4, 4)))

    def run():
        yield
        raise RuntimeError("disk on fire")

    runner = Runner(viewer)
    runner.submit(lambda: image_job(layer, Plan(2, run)))
    runner.wait()
    assert shown == ["disk on fire"]
    assert len(viewer.layers) == 1


def test_removing_the_source_layer_cancels(viewer, qtbot):
    layer = viewer.add_image(np.zeros((4, 4)))
    runner = Runner(viewer)
    plan = slow_plan(total=1000)
    runner.submit(lambda: image_job(layer, plan))
    qtbot.waitUntil(lambda: len(plan.ran) > 2, timeout=5000)
    viewer.layers.remove(layer)
    runner.wait()
    assert len(plan.ran) < 1000
    assert len(viewer.layers) == 0


def test_memory_estimate_refused_before_start(viewer, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr(Runner, "notify_error", staticmethod(lambda e: shown.append(str(e))))
    monkeypatch.setattr(_runner, "available_memory", lambda: 2**30)
    layer = viewer.add_image(np.zeros((4, 4)))
    runner = Runner(viewer)
    plan = slow_plan(total=3)
    job = image_job(layer, plan)
    job.memory_bytes = 5 * 2**30
    assert not runner.submit(lambda: job)
    assert not runner.running and plan.ran == []
    assert "5.0 GiB" in shown[0] and "1.0 GiB" in shown[0] and "Dask" in shown[0]


def test_format_bytes():
    assert _runner.format_bytes(512) == "512 B"
    assert _runner.format_bytes(1536) == "1.5 KiB"
    assert _runner.format_bytes(3 * 2**30) == "3.0 GiB"


def test_closing_the_viewer_stops_the_run(make_napari_viewer, qtbot):
    from magicgui.widgets import Label

    from napari_voxelwise._widgets._base import Panel

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((4, 4)))
    plan = slow_plan(total=2000)

    class SlowPanel(Panel):
        def make_job(self):
            return image_job(layer, plan)

    panel = SlowPanel(viewer, [Label(value="slow")])
    viewer.window.add_dock_widget(panel)
    panel.run()
    qtbot.waitUntil(lambda: len(plan.ran) > 2, timeout=5000)
    worker = panel.runner.worker
    with qtbot.waitSignal(worker.finished, timeout=5000):
        viewer.close()
    assert len(plan.ran) < 2000


def test_on_done_gets_the_result_only_after_a_normal_run(viewer, qtbot):
    layer = viewer.add_image(np.zeros((4, 4)))
    runner = Runner(viewer)
    received = []
    job = image_job(layer, slow_plan(total=3, result=np.full((2, 2), 7.0)))
    job.to_layers = lambda result: []
    job.on_done = received.append
    runner.submit(lambda: job)
    runner.wait()
    assert len(received) == 1 and (received[0] == 7).all()
    assert len(viewer.layers) == 1  # no layer for a result shown elsewhere

    cancelled = image_job(layer, slow_plan(total=1000))
    cancelled.on_done = received.append
    runner.submit(lambda: cancelled)
    qtbot.waitUntil(lambda: len(cancelled.plan.ran) > 2, timeout=5000)
    runner.cancel()
    runner.wait()
    assert len(received) == 1  # a cancelled run does not call it
