"""The "Mask filter" panel: image voxels and points inside a mask, geometry, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import checksum, run_panel
from napari_voxelwise._widgets.masking import MaskPanel


def labels_mask(shape=(6, 7)):
    mask = np.zeros(shape, np.int32)
    mask[1:4, 2:5] = 2
    mask[4, 6] = 1
    return mask


def test_pickers_list_only_fitting_layers_and_follow_the_viewer(viewer):
    image = viewer.add_image(np.zeros((4, 5)), name="image")
    viewer.add_image(np.zeros((4, 5, 3), np.uint8), name="rgb", rgb=True)
    labels = viewer.add_labels(np.zeros((4, 5), np.int32), name="labels")
    points = viewer.add_points(np.zeros((2, 2)), name="points")
    viewer.add_shapes([np.array([[0, 0], [1, 1], [1, 0]])], shape_type="polygon", name="shapes")
    panel = MaskPanel(viewer)
    assert list(panel.target.choices) == [image, points]
    assert list(panel.mask.choices) == [image, labels]
    panel.target.value, panel.mask.value = points, image
    assert not panel.label_value.enabled and not panel.crop.enabled
    panel.target.value, panel.mask.value = image, labels
    assert panel.label_value.enabled and panel.crop.enabled and panel.fill_value.enabled
    later = viewer.add_labels(np.zeros((4, 5), np.int32), name="later")
    assert later in panel.mask.choices and later not in panel.target.choices
    viewer.layers.remove(image)
    assert image not in panel.target.choices and image not in panel.mask.choices


def test_every_child_widget_has_a_tooltip(viewer):
    panel = MaskPanel(viewer)
    for widget in panel:
        assert widget.tooltip, widget.name


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_image_masked_by_any_label_keeps_dtype_and_geometry(viewer, dtype):
    data = (np.arange(6 * 7).reshape(6, 7) % 200 + 1).astype(dtype)
    mask = labels_mask()
    image = viewer.add_image(
        data, name="img", scale=(0.5, 2.0), translate=(3.0, -1.0), colormap="viridis"
    )
    labels = viewer.add_labels(mask, name="cells", scale=(0.5, 2.0), translate=(3.0, -1.0))
    before = checksum(data)
    panel = MaskPanel(viewer)
    panel.target.value, panel.mask.value = image, labels
    run_panel(panel)
    result = viewer.layers["img masked(mask=cells)"]
    np.testing.assert_array_equal(result.data, np.where(mask != 0, data, 0))
    assert result.data.dtype == dtype
    assert result.colormap.name == "viridis"
    np.testing.assert_array_equal(result.scale, image.scale)
    np.testing.assert_array_equal(result.translate, image.translate)
    assert checksum(data) == before  # the input is untouched


def test_one_label_with_nan_fill_gives_float(viewer):
    data = np.arange(6 * 7, dtype=np.uint16).reshape(6, 7)
    mask = labels_mask()
    image = viewer.add_image(data, name="img")
    labels = viewer.add_labels(mask, name="cells")
    panel = MaskPanel(viewer)
    panel.target.value, panel.mask.value = image, labels
    panel.label_value.value = 2
    panel.fill_value.value = "NaN"
    run_panel(panel)
    result = viewer.layers["img masked(mask=cells, label=2, fill=NaN)"].data
    assert result.dtype.kind == "f"
    np.testing.assert_array_equal(result, np.where(mask == 2, data, np.nan))


def test_image_mask_counts_nonzero_not_nan_as_inside(viewer):
    data = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    mask_values = np.array(
        [[0.0, 0.5, np.nan, -1.0], [2.0, 0.0, 0.0, np.nan], [1.0, 1.0, 0.0, 3.0]], np.float32
    )
    image = viewer.add_image(data, name="img")
    mask = viewer.add_image(mask_values, name="weights")
    panel = MaskPanel(viewer)
    panel.target.value, panel.mask.value = image, mask
    run_panel(panel)
    inside = np.array(
        [[False, True, False, True], [True, False, False, False], [True, True, False, True]]
    )
    np.testing.assert_array_equal(
        viewer.layers["img masked(mask=weights)"].data, np.where(inside, data, 0)
    )


def test_mask_broadcasts_over_leading_axes(viewer):
    data = np.random.default_rng(0).random((3, 6, 7)).astype(np.float32)
    mask = labels_mask()
    image = viewer.add_image(data, name="stack", scale=(10.0, 0.5, 2.0))
    labels = viewer.add_labels(mask, name="cells", scale=(0.5, 2.0))
    panel = MaskPanel(viewer)
    panel.target.value, panel.mask.value = image, labels
    run_panel(panel)
    result = viewer.layers["stack masked(mask=cells)"]
    np.testing.assert_array_equal(result.data, np.where(mask[None] != 0, data, 0))
    np.testing.assert_array_equal(result.scale, (10.0, 0.5, 2.0))


def test_crop_to_bounding_box_shifts_translate(viewer):
    data = np.random.default_rng(1).random((3, 6, 7)).astype(np.float32)
    mask = np.zeros((6, 7), np.int32)
    mask[2:4, 1:3] = 5
    mask[4, 5] = 5
    scale, translate = (10.0, 0.5, 2.0), (-4.0, 3.0, 1.5)
    image = viewer.add_image(data, name="stack", scale=scale, translate=translate)
    labels = viewer.add_labels(mask, name="cells", scale=scale[1:], translate=translate[1:])
    panel = MaskPanel(viewer)
    panel.target.value, panel.mask.value = image, labels
    panel.crop.value = True
    panel.fill_value.value = "NaN"
    run_panel(panel)
    result = viewer.layers["stack masked(mask=cells, fill=NaN, crop)"]
    # bounding box: rows 2..4, columns 1..5; the leading (time) axis is kept whole
    expected = np.where(mask[None] != 0, data, np.nan)[:, 2:5, 1:6]
    np.testing.assert_array_equal(result.data, expected)
    np.testing.assert_array_equal(result.scale, scale)
    np.testing.assert_array_equal(result.translate, (-4.0, 3.0 + 2 * 0.5, 1.5 + 1 * 2.0))
    # the kept voxels lie where they were: world position of a voxel is unchanged
    np.testing.assert_array_equal(result.data_to_world((1, 0, 0)), image.data_to_world((1, 2, 1)))


def test_points_inside_mask_go_through_world_coordinates(viewer):
    mask = np.zeros((4, 5), np.int32)
    mask[1, 1] = 1
    mask[2, 3] = 7
    mask[3, 4] = 7
    labels = viewer.add_labels(mask, name="cells", scale=(2.0, 3.0), translate=(1.0, 1.0))
    # points layer with its own geometry: world = data * (0.5, 1.5) + (1, 0)
    world = np.array(
        [
            [3.0, 4.0],  # mask index (1, 1): inside
            [5.4, 10.0],  # (2.2, 3) -> (2, 3): inside
            [7.0, 13.0],  # (3, 4): inside
            [1.0, 1.0],  # (0, 0): outside (label 0)
            [9.2, 13.0],  # row 4.1 -> 4: beyond the mask
            [-0.2, 1.0],  # row -0.6 -> -1: beyond the mask
            [3.0, 6.8],  # (1, 1.93) -> (1, 2): outside
        ]
    )
    data = (world - (1.0, 0.0)) / (0.5, 1.5)
    features = pd.DataFrame({"id": np.arange(7), "kind": list("abcdefg")})
    colors = np.eye(7, 4)[:, [0, 1, 2, 3]]
    colors[:, 3] = 1
    points = viewer.add_points(
        data,
        name="spots",
        scale=(0.5, 1.5),
        translate=(1.0, 0.0),
        features=features,
        size=np.arange(1, 8),
        face_color=colors,
        border_color=colors[::-1],
        symbol=["o", "x", "square", "diamond", "star", "cross", "ring"],
        shown=[True, False, True, True, True, True, True],
    )
    panel = MaskPanel(viewer)
    panel.target.value, panel.mask.value = points, labels
    run_panel(panel)
    result = viewer.layers["spots inside(mask=cells)"]
    keep = [0, 1, 2]
    np.testing.assert_allclose(result.data, data[keep])
    assert result.features["id"].tolist() == keep
    assert result.features["kind"].tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(result.size, [1, 2, 3])
    np.testing.assert_allclose(result.face_color, colors[keep])
    np.testing.assert_allclose(result.border_color, colors[::-1][keep])
    assert [symbol.value for symbol in result.symbol] == ["disc", "x", "square"]
    assert result.shown.tolist() == [True, False, True]
    np.testing.assert_array_equal(result.scale, points.scale)
    np.testing.assert_array_equal(result.translate, points.translate)

    panel.label_value.value = 7  # one label only
    run_panel(panel)
    result = viewer.layers["spots inside(mask=cells, label=7)"]
    np.testing.assert_allclose(result.data, data[[1, 2]])
    assert result.features["id"].tolist() == [1, 2]
    np.testing.assert_array_equal(result.size, [2, 3])

    panel.label_value.value = 3  # a label no point lies in: an empty layer
    run_panel(panel)
    result = viewer.layers["spots inside(mask=cells, label=3)"]
    assert result.data.shape == (0, 2) and len(result.features) == 0


def test_points_with_more_dims_use_their_trailing_coordinates(viewer):
    rng = np.random.default_rng(3)
    mask = rng.random((5, 6, 7)) < 0.4
    labels = viewer.add_labels(mask.astype(np.uint8), name="cells")
    index = np.stack([rng.integers(0, n, 200) for n in mask.shape], axis=1)
    frames = rng.integers(0, 50, (200, 1))
    data = np.hstack([frames, index]).astype(float)
    points = viewer.add_points(data, name="tracks")
    panel = MaskPanel(viewer)
    panel.target.value, panel.mask.value = points, labels
    run_panel(panel)
    expected = data[mask[tuple(index.T)]]
    np.testing.assert_array_equal(viewer.layers["tracks inside(mask=cells)"].data, expected)


@pytest.mark.parametrize(
    ("setup", "word"),
    [
        ("shape", "mask"),
        ("geometry", "mask"),
        ("no_target", "target"),
        ("empty_crop", "mask"),
        ("points_too_few_dims", "mask"),
    ],
)
def test_bad_input_is_a_notification_and_adds_no_layer(viewer, errors, setup, word):
    panel = MaskPanel(viewer)
    image = None if setup == "no_target" else viewer.add_image(np.ones((6, 7)), name="img")
    mask = labels_mask()
    if setup == "shape":
        mask = mask[:, :6]
    elif setup == "empty_crop":
        mask[:] = 0
        panel.crop.value = True
    labels = viewer.add_labels(mask, name="cells")
    if setup == "geometry":
        labels.scale = (1.0, 2.0)
    if image is not None:
        panel.target.value = image
    panel.mask.value = labels
    if setup == "points_too_few_dims":
        labels.data = np.ones((2, 6, 7), np.int32)
        panel.target.value = viewer.add_points(np.zeros((3, 2)), name="flat")
    count = len(viewer.layers)
    run_panel(panel)
    assert len(errors) == 1 and errors[0].startswith(word), errors
    assert len(viewer.layers) == count


def test_cancel_adds_no_layer(viewer):
    data = np.random.default_rng(0).random((64, 128, 128)).astype(np.float32)
    image = viewer.add_image(data, name="img")
    labels = viewer.add_labels(np.ones((128, 128), np.int32), name="cells")
    panel = MaskPanel(viewer)
    panel.target.value, panel.mask.value = image, labels
    panel.run()
    assert panel.runner.running
    panel.run()  # the button now reads Cancel
    panel.runner.wait()
    assert len(viewer.layers) == 2
    assert panel.run_button.text == "Run"


def test_panel_opens_from_the_plugin_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.arange(12.0).reshape(3, 4), name="img")
    labels = viewer.add_labels(np.eye(3, 4, dtype=np.int32), name="cells")
    _dock, panel = viewer.window.add_plugin_dock_widget("napari-voxelwise", "Mask filter")
    assert isinstance(panel, MaskPanel)
    panel.target.value, panel.mask.value = image, labels
    run_panel(panel)
    np.testing.assert_array_equal(
        viewer.layers["img masked(mask=cells)"].data, np.where(np.eye(3, 4), image.data, 0)
    )
