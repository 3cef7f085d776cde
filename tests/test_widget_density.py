"""The Density heatmap panel: results, overlay alignment, live mode, errors."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from conftest import checksum
from napari_voxelwise import density_map
from napari_voxelwise._runner import METADATA_KEY, Runner
from napari_voxelwise._widgets import density as density_widget
from napari_voxelwise._widgets.density import DensityPanel, parse_window


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def binary():
    return np.random.default_rng(5).random((40, 34)) < 0.3


def run_panel(panel):
    panel.run()
    panel.runner.wait()


def settle(panel, qtbot):
    """Wait until a live update has been scheduled, run and added."""
    qtbot.waitUntil(lambda: not panel.live_timer.isActive(), timeout=5000)
    panel.runner.wait()


def test_layer_choices_list_only_fitting_layers(viewer):
    image = viewer.add_image(np.zeros((4, 5)), name="plane")
    viewer.add_image(np.zeros((4, 5, 3), np.uint8), rgb=True, name="photo")
    viewer.add_points(np.zeros((3, 2)), name="spots")
    labels = viewer.add_labels(np.zeros((4, 5), int), name="labels")
    panel = DensityPanel(viewer)
    assert panel.layer_combo.choices == (image, labels)
    image.name = "renamed"  # the list shows the new name, the choice stays
    assert panel.layer_combo.current_choice == "renamed" and panel.layer_combo.value is image
    viewer.layers.remove(image)
    assert panel.layer_combo.choices == (labels,)


def test_every_widget_has_a_tooltip(viewer):
    panel = DensityPanel(viewer)
    for widget in panel:
        assert widget.tooltip, widget.label


def test_parse_window():
    assert parse_window("3, 3") == (3, 3)
    assert parse_window(" 2 3  4") == (2, 3, 4)
    assert parse_window("5") == (5, 5)
    for bad in ("", "a, 3", "3.5", "0, 2", "-1"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)


#: (mode, edge, window, the result layer's name)
CASES = [
    ("block", "trim", "3, 3", "mask density(window=3x3, mode=block)"),
    ("block", "pad", "4, 3", "mask density(window=4x3, mode=block, edge=pad)"),
    ("sliding", "trim", "5, 2", "mask density(window=5x2, mode=sliding)"),
]
#: the name of a density map of layer 'mask' with the panel's defaults
DEFAULT_NAME = "mask density(window=3x3, mode=block)"


def test_result_equals_density_map_with_style_and_provenance(viewer, binary):
    viewer.add_image(binary, name="mask")
    panel = DensityPanel(viewer)
    for mode, edge, window, name in CASES:
        panel.window_edit.value = window
        panel.mode_combo.value = mode
        panel.edge_combo.value = edge
        run_panel(panel)
        result = viewer.layers[name]
        viewer.layers.remove(result)
        sizes = parse_window(window)
        np.testing.assert_array_equal(result.data, density_map(binary, sizes, mode, 0, edge))
        assert result.colormap.name == "inferno"
        assert tuple(result.contrast_limits) == (0.0, 1.0)
        assert result.blending == "additive" and result.opacity == pytest.approx(0.6)
        record = result.metadata[METADATA_KEY]
        assert record["operation"] == "density_map" and record["sources"] == ["mask"]
        assert record["parameters"]["window"] == list(sizes)
        assert record["parameters"]["mode"] == mode


def test_rerun_with_the_same_parameters_replaces_and_new_ones_add_a_layer(viewer, binary):
    source = viewer.add_image(binary, name="mask")
    panel = DensityPanel(viewer)
    run_panel(panel)
    first = viewer.layers[DEFAULT_NAME]
    source.data = ~binary
    run_panel(panel)
    assert [layer.name for layer in viewer.layers] == ["mask", DEFAULT_NAME]
    assert viewer.layers[DEFAULT_NAME] is first
    np.testing.assert_array_equal(first.data, density_map(~binary, 3))
    panel.window_edit.value = "4, 4"
    run_panel(panel)
    names = ["mask", DEFAULT_NAME, "mask density(window=4x4, mode=block)"]
    assert [layer.name for layer in viewer.layers] == names
    np.testing.assert_array_equal(viewer.layers[-1].data, density_map(~binary, 4))


def test_labels_with_threshold(viewer):
    labels = np.random.default_rng(6).integers(0, 5, (12, 12))
    viewer.add_labels(labels, name="cells")
    panel = DensityPanel(viewer)
    panel.threshold_spin.value = 2.5
    run_panel(panel)
    reference = (labels > 2.5).reshape(4, 3, 4, 3).mean(axis=(1, 3))  # hand-made blocks
    np.testing.assert_allclose(
        viewer.layers["cells density(window=3x3, mode=block, threshold=2.5)"].data,
        reference,
        rtol=1e-6,
    )


def _window_pixels(index, window, mode):
    """Source pixel indices (per axis) summarised by output element `index`."""
    starts = [i * w if mode == "block" else i for i, w in zip(index, window, strict=True)]
    return itertools.product(*[range(s, s + w) for s, w in zip(starts, window, strict=True)])


def test_overlay_is_centred_on_the_pixels_it_summarises(viewer):
    data = np.random.default_rng(7).random((3, 20, 25)) > 0.5  # (t, y, x)
    source = viewer.add_image(
        data, name="mask", scale=(5.0, 0.4, 1.5), translate=(2.0, -7.0, 3.25)
    )
    before = checksum(data)
    panel = DensityPanel(viewer)
    panel.window_edit.value = "3, 4"
    window = (1, 3, 4)  # the leading axis is kept
    for mode in ("block", "sliding"):
        panel.mode_combo.value = mode
        run_panel(panel)
        result = viewer.layers[f"mask density(window=3x4, mode={mode})"]
        viewer.layers.remove(result)
        np.testing.assert_array_equal(result.data, density_map(data, (3, 4), mode))
        assert result.scale[0] == source.scale[0]
        assert result.translate[0] == source.translate[0]
        last = tuple(n - 1 for n in result.data.shape)
        for index in [(0, 0, 0), (1, 2, 3), last]:
            centre = np.asarray(result.data_to_world(index))
            pixels = [source.data_to_world(p) for p in _window_pixels(index, window, mode)]
            np.testing.assert_allclose(centre, np.mean(pixels, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(source.scale, (5.0, 0.4, 1.5))  # the source did not move
    np.testing.assert_array_equal(source.translate, (2.0, -7.0, 3.25))
    assert checksum(source.data) == before  # nor did its data change


def test_bad_parameters_notify_and_add_no_layer(viewer, monkeypatch):
    shown = []
    monkeypatch.setattr(Runner, "notify_error", staticmethod(lambda e: shown.append(str(e))))
    viewer.add_image(np.zeros((5, 6)), name="small")
    panel = DensityPanel(viewer)
    panel.window_edit.value = "7, 3"  # taller than the image
    run_panel(panel)
    panel.window_edit.value = "three"
    run_panel(panel)
    panel.window_edit.value = "2, 2, 2"  # more axes than the image
    run_panel(panel)
    assert len(shown) == 3 and all("window" in message for message in shown)
    assert [layer.name for layer in viewer.layers] == ["small"]


def test_cancel_adds_no_layer(viewer):
    viewer.add_image(np.random.default_rng(11).random((8, 512, 512)) > 0.5, name="mask")
    panel = DensityPanel(viewer)
    panel.run()
    assert panel.runner.running and panel.run_button.text == "Cancel"
    panel.run()  # the button now cancels (before the result can reach the GUI thread)
    panel.runner.wait()
    assert [layer.name for layer in viewer.layers] == ["mask"]
    assert panel.run_button.text == "Run"


def test_result_comes_from_the_data_as_it_was_when_the_run_began(viewer):
    original = np.random.default_rng(12).random((8, 512, 512)) > 0.5
    layer = viewer.add_image(original, name="mask")
    panel = DensityPanel(viewer)
    panel.run()
    layer.data = np.zeros_like(original)  # replaced while the run reads the old data
    panel.runner.wait()
    result = viewer.layers[DEFAULT_NAME]
    np.testing.assert_array_equal(result.data, density_map(original, (3, 3)))


def test_live_updates_the_same_layer(viewer, binary, qtbot):
    source = viewer.add_image(binary, name="mask")
    panel = DensityPanel(viewer)
    panel.live_check.value = True  # computes at once
    panel.runner.wait()
    result = viewer.layers[DEFAULT_NAME]
    np.testing.assert_array_equal(result.data, density_map(binary, (3, 3)))

    panel.window_edit.value = "2, 5"
    settle(panel, qtbot)
    assert viewer.layers[-1] is result and result.name == "mask density(window=2x5, mode=block)"
    np.testing.assert_array_equal(result.data, density_map(binary, (2, 5)))
    np.testing.assert_allclose(result.scale, np.asarray(source.scale) * (2, 5))

    changed = ~binary
    source.data = changed  # the source's own edits are followed too
    settle(panel, qtbot)
    np.testing.assert_array_equal(result.data, density_map(changed, (2, 5)))
    assert len(viewer.layers) == 2


def test_live_burst_of_changes_gives_one_layer_with_the_final_parameters(viewer, binary, qtbot):
    viewer.add_image(binary, name="mask")
    panel = DensityPanel(viewer)
    panel.live_check.value = True
    runs = []
    submit = panel.runner.submit
    panel.runner.submit = lambda *args, **kwargs: runs.append(1) or submit(*args, **kwargs)
    for size in range(2, 9):
        panel.window_edit.value = f"{size}, {size}"
        panel.threshold_spin.value = size / 10
    panel.mode_combo.value = "sliding"
    settle(panel, qtbot)
    assert len(runs) == 1  # the burst was collected into one run
    (result,) = [layer for layer in viewer.layers if layer.name.startswith("mask density(")]
    expected = density_map(binary, (8, 8), "sliding", threshold=0.8)
    np.testing.assert_array_equal(result.data, expected)


def test_live_follows_a_megapixel_image_quickly(viewer, qtbot):
    image = np.random.default_rng(8).random((1024, 1024)) > 0.5
    viewer.add_image(image, name="mask")
    panel = DensityPanel(viewer)
    panel.live_check.value = True
    panel.runner.wait()  # first run (compiles the kernels)
    result = viewer.layers[DEFAULT_NAME]
    started = time.perf_counter()
    panel.window_edit.value = "8, 8"
    qtbot.waitUntil(lambda: result.data.shape == (128, 128), timeout=5000)
    assert time.perf_counter() - started < 0.5  # the debounce delay plus a few milliseconds
    np.testing.assert_array_equal(result.data, density_map(image, 8))


def test_live_turns_itself_off_above_the_size_limit(viewer, monkeypatch):
    shown = []
    monkeypatch.setattr(Runner, "notify_info", staticmethod(shown.append))
    rows = density_widget.LIVE_MAX_ELEMENTS // 4096 + 1
    viewer.add_image(np.zeros((rows, 4096), np.uint8), name="huge")
    panel = DensityPanel(viewer)
    panel.live_check.value = True
    panel.runner.wait()
    assert panel.live_check.value is False
    assert "Live density turned off" in shown[0] and "'huge'" in shown[0]
    assert [layer.name for layer in viewer.layers] == ["huge"]


def test_opens_and_works_through_napari(viewer, binary, qtbot):
    """npe2 builds the panel with the viewer (through napari's plugin proxy) and it runs live."""
    source = viewer.add_image(binary, name="mask")
    dock, panel = viewer.window.add_plugin_dock_widget("napari-voxelwise", "Density heatmap")
    assert isinstance(panel, DensityPanel)
    assert dock.widget() is panel.native
    assert panel.viewer == viewer
    panel.live_check.value = True
    panel.runner.wait()
    result = viewer.layers[DEFAULT_NAME]
    np.testing.assert_array_equal(result.data, density_map(binary, 3))
    source.data = ~binary  # edits of the source reach the panel through the proxy
    settle(panel, qtbot)
    np.testing.assert_array_equal(result.data, density_map(~binary, 3))
