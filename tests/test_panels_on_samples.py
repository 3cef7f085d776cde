"""Each panel, opened through the manifest in a real viewer, run on the plugin's sample data.

The result layer equals the numeric core's output on the same data and has the
documented name, geometry, colormap and provenance.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_voxelwise as vw
from conftest import run_panel
from napari_voxelwise._runner import METADATA_KEY

PLUGIN = "napari-voxelwise"


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    for key in ("noisy_stack", "binary_density", "tubes_and_blobs"):
        viewer.open_sample(PLUGIN, key)
    return viewer


def open_panel(viewer, name: str, **values):
    _dock, panel = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    for widget, value in values.items():
        getattr(panel, widget).value = value
    return panel


def assert_provenance(layer, operation: str, sources: list[str], **parameters):
    record = layer.metadata[METADATA_KEY]
    assert record["operation"] == operation
    assert record["sources"] == sources
    assert record["version"] == vw.__version__
    for key, value in parameters.items():
        assert record["parameters"][key] == value


def test_voxel_statistics(viewer, errors):
    stack = viewer.layers["noisy stack"]
    before = np.array(stack.data)
    panel = open_panel(viewer, "Voxel statistics", layer_combo=stack, statistic_combo="std")
    panel.ddof_spin.value = 1
    run_panel(panel)
    assert not errors
    result = viewer.layers[-1]
    assert result.name == "noisy stack std(axis=0, ddof=1)"
    expected = np.std(stack.data.astype(np.float64), axis=0, ddof=1)
    np.testing.assert_allclose(result.data, expected, rtol=1e-5)
    np.testing.assert_array_equal(result.scale, stack.scale[1:])
    np.testing.assert_array_equal(result.translate, stack.translate[1:])
    assert result.axis_labels == stack.axis_labels[1:]
    assert_provenance(result, "axis_statistic", ["noisy stack"], statistic="std", axis=0, ddof=1)
    np.testing.assert_array_equal(stack.data, before)


def test_density_heatmap(viewer, errors):
    binary = viewer.layers["binary density"]
    panel = open_panel(viewer, "Density heatmap", layer_combo=binary, window_edit="4, 8")
    run_panel(panel)
    assert not errors
    result = viewer.layers[-1]
    assert result.name == "binary density density(window=4x8, mode=block)"
    hand_made = (binary.data != 0).reshape(32, 4, 32, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(result.data, hand_made, rtol=1e-6)
    np.testing.assert_allclose(result.scale, np.asarray(binary.scale) * (4, 8))
    # block centres: (window - 1) / 2 source pixels in
    np.testing.assert_allclose(result.translate, np.asarray(binary.scale) * (1.5, 3.5))
    assert result.colormap.name == "inferno" and tuple(result.contrast_limits) == (0, 1)
    assert result.blending == "additive"
    assert_provenance(result, "density_map", ["binary density"], window=[4, 8], mode="block")


def test_mask_filter(viewer, errors):
    volume = viewer.layers["tubes and blobs"]
    bright = viewer.add_labels((volume.data > 0.5).astype(np.uint8), name="bright")
    bright.scale = volume.scale
    panel = open_panel(viewer, "Mask filter", target=volume, mask=bright)
    panel.fill_value.value = "NaN"
    run_panel(panel)
    assert not errors
    result = viewer.layers[-1]
    assert result.name == "tubes and blobs masked(mask=bright, fill=NaN)"
    expected = np.where(volume.data > 0.5, volume.data, np.nan)
    np.testing.assert_array_equal(result.data, expected)
    np.testing.assert_array_equal(result.scale, volume.scale)
    assert result.colormap.name == volume.colormap.name
    assert_provenance(
        result, "apply_mask", ["tubes and blobs", "bright"], fill_value="NaN", crop=False
    )


def test_hessian_eigenvalues(viewer, errors):
    volume = viewer.layers["tubes and blobs"]
    panel = open_panel(viewer, "Hessian eigenvalues", image=volume, sigma=2.0)
    run_panel(panel)
    assert not errors
    expected = vw.hessian_eigenvalues(volume.data, 2.0, spacing=tuple(volume.scale))
    for k in range(3):
        result = viewer.layers[f"tubes and blobs λ{k + 1}(sigma=2)"]
        np.testing.assert_array_equal(result.data, expected[..., k])
        np.testing.assert_array_equal(result.scale, volume.scale)
        assert result.colormap.name == "PiYG"
        low, high = result.contrast_limits
        assert low == -high
        assert_provenance(result, "hessian_eigenvalues", ["tubes and blobs"], sigma=2.0)


def test_gradient(viewer, errors):
    volume = viewer.layers["tubes and blobs"]
    panel = open_panel(viewer, "Gradient", image=volume, sigma=0.0, components=True)
    run_panel(panel)
    assert not errors
    reference = np.gradient(volume.data.astype(np.float64), *volume.scale)
    magnitude = viewer.layers["tubes and blobs |∇|(sigma=0)"]
    np.testing.assert_allclose(
        magnitude.data, np.sqrt(sum(c**2 for c in reference)), rtol=1e-5, atol=1e-6
    )
    assert magnitude.colormap.name == "magma"
    for label, component in zip(volume.axis_labels, reference, strict=True):
        layer = viewer.layers[f"tubes and blobs ∂/∂{label}(sigma=0)"]
        np.testing.assert_allclose(layer.data, component, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(layer.translate, volume.translate)
    assert_provenance(magnitude, "gradient", ["tubes and blobs"], sigma=0.0, components=True)
