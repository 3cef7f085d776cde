"""The Voxel statistics panel: layer and axis choices, results, geometry, norms plot."""

from __future__ import annotations

import numpy as np
import pytest

from napari_voxelwise._runner import METADATA_KEY, Runner
from napari_voxelwise._widgets.statistics import StatisticsPanel


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def stack():
    return np.random.default_rng(3).random((6, 5, 7, 8)).astype(np.float32) * 100


def test_layer_choices_list_only_fitting_layers(viewer):
    image = viewer.add_image(np.zeros((4, 5)), name="plane")
    viewer.add_image(np.zeros((4, 5, 3), np.uint8), rgb=True, name="photo")
    viewer.add_points(np.zeros((3, 2)), name="spots")
    viewer.add_labels(np.zeros((4, 5), int), name="labels")
    panel = StatisticsPanel(viewer)
    assert panel.layer_combo.choices == (image,)
    added = viewer.add_image(np.zeros((2, 4, 5)), name="late")
    assert panel.layer_combo.choices == (image, added)  # refreshed on insert
    image.name = "renamed"  # the list shows the new name, the choice stays
    assert panel.layer_combo.current_choice == "renamed" and panel.layer_combo.value is image
    viewer.layers.remove(image)
    assert panel.layer_combo.choices == (added,)


def test_axis_choices_follow_the_layer_and_show_labels(viewer):
    viewer.add_image(np.zeros((3, 4, 5)), axis_labels=("t", "y", "x"), name="movie")
    plane = viewer.add_image(np.zeros((4, 5)), name="plane")
    panel = StatisticsPanel(viewer)
    panel.layer_combo.value = viewer.layers["movie"]
    assert panel.axis_combo.choices == (0, 1, 2)
    assert panel.axis_combo.current_choice == "0 (t)"  # axis 0 by default
    panel.axis_combo.value = 2
    assert panel.axis_combo.current_choice == "2 (x)"
    panel.layer_combo.value = plane
    assert panel.axis_combo.choices == (0, 1)
    assert panel.axis_combo.current_choice == "0 (y)"


def test_tooltips_and_ddof_only_enabled_where_it_is_used(viewer):
    panel = StatisticsPanel(viewer)
    for widget in panel:
        assert widget.tooltip, widget.label
    assert panel.canvas.toolTip()
    for statistic in ("var", "std", "cv"):
        panel.statistic_combo.value = statistic
        assert panel.ddof_spin.enabled
    for statistic in ("mean", "median", "max"):
        panel.statistic_combo.value = statistic
        assert not panel.ddof_spin.enabled


def _float(a):
    return a.astype(np.float64)


#: (statistic, axis, numpy reference with ddof=1 where it applies)
CASES = [
    ("var", 0, lambda a, axis: np.var(_float(a), axis=axis, ddof=1)),
    ("std", 3, lambda a, axis: np.std(_float(a), axis=axis, ddof=1)),
    ("mean", 1, lambda a, axis: np.mean(_float(a), axis=axis)),
    ("median", 2, lambda a, axis: np.median(a, axis=axis)),
    ("max", 0, lambda a, axis: np.max(a, axis=axis)),
    ("sum", 3, lambda a, axis: np.sum(_float(a), axis=axis)),
    (
        "cv",
        1,
        lambda a, axis: np.std(_float(a), axis=axis, ddof=1) / np.mean(_float(a), axis=axis),
    ),
]


def test_result_layer_values_geometry_and_provenance(viewer, stack):
    layer = viewer.add_image(
        stack,
        name="cells",
        scale=(2.0, 0.5, 0.25, 0.125),
        translate=(10.0, -3.0, 1.5, 7.0),
        axis_labels=("t", "z", "y", "x"),
        units=("s", "um", "um", "um"),
    )
    panel = StatisticsPanel(viewer)
    panel.ddof_spin.value = 1
    for statistic, axis, reference in CASES:
        panel.axis_combo.value = axis
        panel.statistic_combo.value = statistic
        panel.run()
        panel.runner.wait()
        ddof = ", ddof=1" if statistic in ("var", "std", "cv") else ""
        result = viewer.layers[f"cells {statistic}(axis={axis}{ddof})"]
        np.testing.assert_allclose(result.data, reference(stack, axis), rtol=2e-6)
        keep = [a for a in range(4) if a != axis]
        np.testing.assert_array_equal(result.scale, np.asarray(layer.scale)[keep])
        np.testing.assert_array_equal(result.translate, np.asarray(layer.translate)[keep])
        assert result.axis_labels == tuple(np.asarray(layer.axis_labels)[keep])
        assert result.units == tuple(np.asarray(layer.units)[keep])
        record = result.metadata[METADATA_KEY]
        assert record["operation"] == "axis_statistic" and record["sources"] == ["cells"]
        assert record["parameters"]["statistic"] == statistic
        assert record["parameters"]["axis"] == axis
        assert ("ddof" in record["parameters"]) == (statistic in ("var", "std", "cv"))
    assert len(viewer.layers) == 1 + len(CASES)


def test_2d_layer_gives_a_profile_stretched_over_the_image(viewer):
    """napari shows no 1D images: the profile keeps the reduced axis, one pixel thick."""
    plane = np.random.default_rng(10).random((30, 40))
    source = viewer.add_image(plane, name="plane", scale=(2.0, 3.0), translate=(5.0, -1.0))
    panel = StatisticsPanel(viewer)
    for axis in (0, 1):
        panel.axis_combo.value = axis
        panel.run()
        panel.runner.wait()
        result = viewer.layers[f"plane var(axis={axis})"]
        np.testing.assert_allclose(result.data, plane.var(axis=axis, keepdims=True), rtol=1e-12)
        for index in [(0, 0), (result.data.shape[0] - 1, result.data.shape[1] - 1)]:
            # the one pixel's centre is the mean of the centres of the line it summarises
            line = [list(index) for _ in range(plane.shape[axis])]
            for position, pixel in enumerate(line):
                pixel[axis] = position
            centre = np.mean([source.data_to_world(pixel) for pixel in line], axis=0)
            np.testing.assert_allclose(result.data_to_world(index), centre, atol=1e-12)
        extent = np.asarray(result.scale) * result.data.shape
        np.testing.assert_allclose(extent, np.asarray(source.scale) * plane.shape)
    # the source did not move (its own scale array is not the result's)
    np.testing.assert_array_equal(source.scale, (2.0, 3.0))
    np.testing.assert_array_equal(source.translate, (5.0, -1.0))


def test_var_default_answers_the_users_question(viewer):
    """A (x, y, z, k) stack, variance along k, as in the users' question 1."""
    stack = np.random.default_rng(0).random((10, 10, 10, 5))
    viewer.add_image(stack, name="runs")
    panel = StatisticsPanel(viewer)
    assert panel.statistic_combo.value == "var" and panel.axis_combo.value == 0
    panel.axis_combo.value = 3
    panel.run()
    panel.runner.wait()
    result = viewer.layers["runs var(axis=3)"]
    assert result.data.shape == (10, 10, 10)
    np.testing.assert_allclose(result.data, stack.var(axis=3), rtol=1e-12)


def test_cancel_adds_no_layer(viewer, qtbot):
    big = np.random.default_rng(1).random((16, 256, 256)).astype(np.float32)
    viewer.add_image(big, name="big")
    panel = StatisticsPanel(viewer)
    panel.run()
    assert panel.runner.running and panel.run_button.text == "Cancel"
    panel.run()  # the button now cancels (before the result can reach the GUI thread)
    panel.runner.wait()
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert panel.run_button.text == "Compute statistic"


def test_result_comes_from_the_data_as_it_was_when_the_run_began(viewer):
    original = np.random.default_rng(2).random((16, 256, 256)).astype(np.float32)
    layer = viewer.add_image(original, name="cells")
    panel = StatisticsPanel(viewer)
    panel.statistic_combo.value = "median"
    panel.run()
    assert panel.runner.running
    layer.data = np.zeros_like(original)  # replaced while the run reads the old data
    panel.runner.wait()
    result = viewer.layers["cells median(axis=0)"]
    np.testing.assert_allclose(result.data, np.median(original, axis=0), rtol=1e-6)


def test_bad_parameters_notify_and_add_nothing(viewer, monkeypatch):
    shown = []
    monkeypatch.setattr(Runner, "notify_error", staticmethod(lambda e: shown.append(str(e))))
    viewer.add_image(np.zeros((3, 4, 5)), name="short")
    panel = StatisticsPanel(viewer)
    panel.ddof_spin.value = 3  # not smaller than the 3 frames
    panel.run()
    panel.runner.wait()
    assert "ddof" in shown[0]
    viewer.layers.clear()
    panel.run()  # no layer to work on
    assert "image" in shown[1]
    assert len(viewer.layers) == 0


def test_frame_norms_plot_and_copy(viewer, qtbot):
    from qtpy.QtWidgets import QApplication

    data = np.random.default_rng(4).standard_normal((3, 4, 5, 6))
    viewer.add_image(data, axis_labels=("a", "b", "c", "d"), name="mat")
    panel = StatisticsPanel(viewer)
    panel.axis_combo.value = 3
    panel.norms_button.changed.emit(True)  # what a click does
    panel.runner.wait()
    expected = [np.linalg.norm(m) for m in np.moveaxis(data, -1, 0)]
    np.testing.assert_allclose(panel.norms, expected, rtol=1e-12)
    assert [layer.name for layer in viewer.layers] == ["mat"]  # no layer for norms
    (line,) = panel.plot_axes.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), np.arange(6))
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)
    assert panel.plot_axes.get_xlabel() == "index along axis 3 (d)"

    panel.copy_button.changed.emit(True)
    rows = [line.split("\t") for line in QApplication.clipboard().text().splitlines()]
    assert [int(index) for index, _ in rows] == list(range(6))
    np.testing.assert_array_equal([float(value) for _, value in rows], panel.norms)


def test_opens_and_works_through_napari(viewer, monkeypatch):
    """npe2 builds the panel with the viewer (through napari's plugin proxy) and it runs."""
    shown = []
    monkeypatch.setattr(Runner, "notify_info", staticmethod(shown.append))
    stack = np.random.default_rng(9).random((40, 64, 64)).astype(np.float32)
    layer = viewer.add_image(stack, name="cells", scale=(3.0, 0.5, 0.5))
    dock, panel = viewer.window.add_plugin_dock_widget("napari-voxelwise", "Voxel statistics")
    assert isinstance(panel, StatisticsPanel)
    assert dock.widget() is panel.native
    assert panel.viewer == viewer
    panel.run()
    panel.runner.wait()
    result = viewer.layers["cells var(axis=0)"]
    np.testing.assert_allclose(result.data, stack.var(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(result.scale, (0.5, 0.5))

    panel.statistic_combo.value = "median"
    panel.run()
    assert panel.runner.running
    viewer.layers.remove(layer)
    assert "'cells' was removed" in shown[0]  # the run was cancelled
    panel.runner.wait()
    assert [layer.name for layer in viewer.layers] == ["cells var(axis=0)"]
