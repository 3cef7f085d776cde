"""The "Vesselness" panel: results equal the API's, aligned with the source, bad input."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from conftest import checksum, run_panel
from napari_voxelwise import vesselness
from napari_voxelwise._runner import METADATA_KEY
from napari_voxelwise._widgets.vesselness import VesselnessPanel


def tubes(shape=(16, 30, 34), seed=0):
    noise = np.random.default_rng(seed).standard_normal(shape)
    return ndimage.gaussian_filter(noise, 1.5).astype(np.float32) * 10


@pytest.mark.parametrize("lazy", [False, True])
def test_layers_equal_the_api_and_overlay_the_source(viewer, lazy):
    data = tubes()
    scale, translate = (2.0, 0.5, 0.5), (1.0, -3.0, 4.0)
    source = da.from_array(data, chunks=(8, 15, 34)) if lazy else data
    layer = viewer.add_image(source, name="vessels", scale=scale, translate=translate)
    before = checksum(data)
    panel = VesselnessPanel(viewer)
    panel.image.value = layer
    panel.smallest.value, panel.largest.value, panel.count.value = 1.0, 8.0, 4
    panel.spacing.value = "log"
    run_panel(panel)
    assert checksum(data) == before
    expected, expected_scale = vesselness(data, [1, 2, 4, 8], spacing=scale, return_scale=True)
    response = viewer.layers["vessels vesselness(frangi, sigma=1-8 x4)"]
    best = viewer.layers["vessels best scale(frangi, sigma=1-8 x4)"]
    np.testing.assert_allclose(np.asarray(response.data), expected, atol=1e-5)
    assert np.mean(np.asarray(best.data) == expected_scale) > 0.999
    for result in (response, best):
        np.testing.assert_array_equal(result.scale, scale)
        np.testing.assert_array_equal(result.translate, translate)
    assert best.colorbar.visible and not response.colorbar.visible
    assert best.contrast_limits == [0.0, 8.0]
    record = best.metadata[METADATA_KEY]
    assert record["operation"] == "vesselness" and record["sources"] == ["vessels"]
    assert record["parameters"]["sigmas"] == [1.0, 2.0, 4.0, 8.0]
    assert record["parameters"]["spacing"] == scale


@pytest.mark.parametrize("lazy", [False, True])
def test_min_response_clears_the_scale_of_weak_voxels(viewer, lazy):
    data = tubes()
    viewer.add_image(da.from_array(data, chunks=8) if lazy else data, name="vessels")
    panel = VesselnessPanel(viewer)
    panel.floor.value = 0.25
    run_panel(panel)
    response, scale = vesselness(data, [1.0, 2.0, 3.0, 4.0], return_scale=True)
    weak = response < 0.25 * response.max()
    expected = np.where(weak, 0, scale)
    best = np.asarray(viewer.layers["vessels best scale(frangi, sigma=1-4 x4)"].data)
    assert weak.any() and (~weak).any()
    assert np.mean(best == expected) > 0.999


def test_sato_without_best_scale_on_a_time_lapse(viewer):
    movie = np.stack([tubes(seed=s) for s in (1, 2)])
    viewer.add_image(movie, name="movie")
    panel = VesselnessPanel(viewer)
    panel.method.value = "sato"
    panel.best_scale.value = False
    assert not panel.alpha.enabled and not panel.gamma.enabled and not panel.floor.enabled
    panel.smallest.value, panel.largest.value, panel.count.value = 1.0, 3.0, 3
    run_panel(panel)
    assert len(viewer.layers) == 2
    result = viewer.layers["movie vesselness(sato, sigma=1-3 x3)"]
    np.testing.assert_allclose(result.data, vesselness(movie, [1, 2, 3], method="sato"), atol=1e-5)


@pytest.mark.parametrize(
    ("setting", "word"),
    [
        ({"smallest": 0.0}, "sigma range"),
        ({"smallest": 5.0, "largest": 2.0}, "sigma range"),
        ({"alpha": 0.0}, "alpha"),
        ({"image": None}, "image"),
    ],
)
def test_bad_input_is_a_notification_and_adds_no_layer(viewer, errors, setting, word):
    if setting.get("image", True) is not None:
        viewer.add_image(tubes((6, 20, 20)), name="img")
    panel = VesselnessPanel(viewer)
    for name, value in setting.items():
        if name != "image":
            getattr(panel, name).value = value
    run_panel(panel)
    assert len(errors) == 1 and errors[0].startswith(word), errors
    assert len(viewer.layers) == (0 if "image" in setting else 1)


def test_cancel_adds_no_layer(viewer):
    viewer.add_image(np.zeros((6, 40, 40, 40), np.float32), name="movie")
    panel = VesselnessPanel(viewer)
    panel.run()
    assert panel.runner.running
    panel.run()
    panel.runner.wait()
    assert len(viewer.layers) == 1
