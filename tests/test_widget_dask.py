"""Panels on Dask and zarr layers: chunk by chunk in the background, into memory or zarr."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest

import napari_voxelwise as vw
from conftest import run_panel
from napari_voxelwise import _lazy
from napari_voxelwise._runner import METADATA_KEY
from napari_voxelwise._widgets.density import DensityPanel
from napari_voxelwise._widgets.differential import GradientPanel, HessianPanel
from napari_voxelwise._widgets.masking import MaskPanel
from napari_voxelwise._widgets.statistics import StatisticsPanel


@pytest.fixture
def to_disk(monkeypatch):
    """Every lazy result goes to a temporary zarr store (as if memory were short)."""
    monkeypatch.setattr(_lazy, "IN_MEMORY_FRACTION", 0.0)


class Reads:
    """A Dask array over NumPy data that counts the chunks read."""

    def __init__(self, data, chunks):
        self.count = 0
        self.array = da.from_array(data, chunks=chunks).map_blocks(self._read, dtype=data.dtype)

    def _read(self, block):
        self.count += 1
        return block


def test_statistic_of_a_dask_layer_reads_nothing_on_the_gui_thread(viewer, errors):
    data = np.random.default_rng(0).random((6, 8, 20, 24), dtype=np.float32)
    source = Reads(data, chunks=(2, 4, 10, 24))
    viewer.add_image(source.array, name="stack", scale=(1, 2, 0.5, 0.5))
    panel = StatisticsPanel(viewer)
    panel.axis_combo.value = 0
    panel.statistic_combo.value = "var"
    source.count = 0  # napari itself reads a slice to show the layer
    panel.make_job()  # what the Run button does on the GUI thread: builds, computes nothing
    assert source.count == 0
    run_panel(panel)
    assert not errors
    result = viewer.layers[-1]
    assert isinstance(result.data, np.ndarray)  # small: computed into memory
    np.testing.assert_allclose(result.data, data.var(axis=0), rtol=1e-5)
    np.testing.assert_allclose(result.scale, (2, 0.5, 0.5))
    assert "this machine" in panel.where.value and not panel.where.native.isHidden()


def test_large_result_goes_to_a_temporary_store_removed_with_its_layer(viewer, to_disk, errors):
    data = np.random.default_rng(1).random((4, 16, 30), dtype=np.float32)
    viewer.add_image(da.from_array(data, chunks=(2, 8, 15)), name="stack")
    panel = StatisticsPanel(viewer)
    panel.axis_combo.value = 0
    panel.statistic_combo.value = "mean"
    run_panel(panel)
    assert not errors
    result = viewer.layers[-1]
    store = result.metadata[METADATA_KEY]["store"]
    assert isinstance(result.data, da.Array) and os.path.isdir(store)
    np.testing.assert_allclose(result.data.compute(), data.mean(axis=0), rtol=1e-6)
    assert "zarr" in panel.where.value
    run_panel(panel)  # the same parameters again: the layer reads a new store, the old one goes
    assert viewer.layers[-1] is result and len(viewer.layers) == 2
    new_store = result.metadata[METADATA_KEY]["store"]
    assert new_store != store and os.path.isdir(new_store)
    assert not os.path.exists(os.path.dirname(store))
    np.testing.assert_allclose(result.data.compute(), data.mean(axis=0), rtol=1e-6)
    viewer.layers.remove(result)
    assert not os.path.exists(os.path.dirname(new_store))


def test_cancelled_run_leaves_no_store(viewer, to_disk, qtbot):
    data = np.zeros((40, 8, 8), np.float32)
    slow = da.from_array(data, chunks=(1, 8, 8)).map_blocks(
        lambda block: __import__("time").sleep(0.05) or block, dtype=np.float32
    )
    viewer.add_image(slow, name="slow")
    panel = GradientPanel(viewer)
    panel.image.value = viewer.layers["slow"]
    made = []
    original = _lazy.temporary_store
    panel_store = lambda: made.append(original()) or made[-1]  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_lazy, "temporary_store", panel_store)
        panel.run()
        qtbot.waitUntil(lambda: panel.runner.running, timeout=5000)
        panel.run()  # Cancel
        panel.runner.wait()
    assert len(viewer.layers) == 1 and made
    assert not os.path.exists(os.path.dirname(made[0]))


def test_density_of_a_zarr_layer(viewer, tmp_path, errors):
    zarr = pytest.importorskip("zarr")
    binary = np.random.default_rng(2).random((64, 48)) < 0.3
    stored = zarr.open_array(
        str(tmp_path / "b.zarr"), mode="w", shape=binary.shape, chunks=(16, 48), dtype=bool
    )
    stored[:] = binary
    viewer.add_image(stored, name="binary")
    panel = DensityPanel(viewer)
    panel.window_edit.value = "4, 4"
    run_panel(panel)
    assert not errors
    np.testing.assert_allclose(
        np.asarray(viewer.layers[-1].data), vw.density_map(binary, 4), rtol=1e-6
    )


def test_mask_of_a_dask_image(viewer, errors):
    image = np.random.default_rng(3).random((3, 10, 12), dtype=np.float32)
    mask = np.zeros((10, 12), np.uint8)
    mask[2:7, 3:9] = 1
    viewer.add_image(da.from_array(image, chunks=(1, 5, 12)), name="image")
    viewer.add_labels(mask, name="mask")
    panel = MaskPanel(viewer)
    panel.target.value = viewer.layers["image"]
    panel.mask.value = viewer.layers["mask"]
    run_panel(panel)
    assert not errors
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data), np.where(mask, image, 0))


def test_hessian_and_vesselness_of_a_dask_time_lapse_into_stores(viewer, to_disk, errors):
    stack = np.random.default_rng(4).standard_normal((2, 10, 12, 14)).astype(np.float32)
    viewer.add_image(da.from_array(stack, chunks=(1, 5, 12, 7)), name="t", scale=(1, 2, 1, 1))
    panel = HessianPanel(viewer)
    panel.image.value = viewer.layers["t"]
    panel.sigma.value = 1.5
    panel.vesselness.value = True
    run_panel(panel)
    assert not errors
    names = [layer.name for layer in viewer.layers]
    eigenvalues = [f"t λ{k}(sigma=1.5)" for k in (1, 2, 3)]
    assert names == ["t", *eigenvalues, "t vesselness(sigma=1.5, ridges=bright)"]
    for frame in range(2):
        expected = vw.hessian_eigenvalues(stack[frame], 1.5, (2, 1, 1))
        for k in range(3):
            got = np.asarray(viewer.layers[k + 1].data[frame])
            np.testing.assert_allclose(got, expected[..., k], rtol=1e-4, atol=1e-4)
    eigenvalues = np.stack([vw.hessian_eigenvalues(f, 1.5, (2, 1, 1)) for f in stack])
    np.testing.assert_allclose(
        np.asarray(viewer.layers[-1].data),
        vw.frangi_vesselness(eigenvalues),
        rtol=1e-4,
        atol=1e-6,
    )
    stores = {layer.metadata[METADATA_KEY].get("store") for layer in viewer.layers[1:]}
    (store,) = stores
    folder = os.path.dirname(store)
    assert os.path.isdir(folder)
    viewer.layers.remove(viewer.layers[1])
    assert os.path.isdir(folder)  # still read by the other layers
    while len(viewer.layers) > 1:
        viewer.layers.remove(viewer.layers[-1])
    assert not os.path.exists(folder)


def test_gradient_with_components_of_a_dask_volume(viewer, errors):
    volume = np.random.default_rng(5).random((12, 14, 16), dtype=np.float32)
    viewer.add_image(da.from_array(volume, chunks=(6, 7, 16)), name="v")
    panel = GradientPanel(viewer)
    panel.image.value = viewer.layers["v"]
    panel.components.value = True
    run_panel(panel)
    assert not errors
    expected = np.gradient(volume.astype(np.float64))
    np.testing.assert_allclose(
        np.asarray(viewer.layers[1].data), np.sqrt(sum(g**2 for g in expected)), rtol=1e-5
    )
    for k in range(3):
        np.testing.assert_allclose(
            np.asarray(viewer.layers[2 + k].data), expected[k], rtol=1e-5, atol=1e-6
        )


def test_frame_norms_of_a_dask_layer(viewer, errors):
    data = np.random.default_rng(6).random((5, 6, 7), dtype=np.float32)
    viewer.add_image(da.from_array(data, chunks=(2, 6, 7)), name="s")
    panel = StatisticsPanel(viewer)
    panel.axis_combo.value = 0
    panel.run_norms()
    panel.runner.wait()
    assert not errors
    np.testing.assert_allclose(
        panel.norms, np.linalg.norm(data.reshape(5, -1).astype(np.float64), axis=1), rtol=1e-6
    )


def test_dask_mask_over_points_and_images(viewer, errors):
    mask = np.zeros((10, 12), np.uint8)
    mask[2:7, 3:9] = 2
    image = np.random.default_rng(7).random((10, 12), dtype=np.float32)
    points = np.array([[3, 4], [0, 0], [6, 8], [9, 11]], float)
    viewer.add_image(image, name="image")
    viewer.add_points(points, name="points")
    viewer.add_labels(da.from_array(mask, chunks=5), name="mask")
    panel = MaskPanel(viewer)
    panel.mask.value = viewer.layers["mask"]
    panel.label_value.value = 2
    panel.target.value = viewer.layers["image"]
    run_panel(panel)
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data), np.where(mask, image, 0))
    panel.target.value = viewer.layers["points"]
    run_panel(panel)
    np.testing.assert_array_equal(viewer.layers[-1].data, points[[0, 2]])
    assert not errors
    panel.target.value = viewer.layers["image"]
    panel.crop.value = True
    run_panel(panel)
    assert errors and errors[0].startswith("crop:")
