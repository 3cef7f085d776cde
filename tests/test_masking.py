"""mask_filter against the seed's per-frame loop; apply_mask against np.where."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DTYPES, checksum, random_data
from napari_voxelwise import apply_mask, mask_filter


def loop_reference(points, mask, fill_value):
    """The seed's way: select per frame in a Python loop, then pad to the longest."""
    selected = [frame[keep] for frame, keep in zip(points, mask, strict=True)]
    longest = max(len(s) for s in selected)
    dtype = np.result_type(points.dtype, np.min_scalar_type(fill_value))
    if np.isnan(fill_value):
        dtype = np.result_type(dtype, np.float32)
    packed = np.full((len(points), longest, *points.shape[2:]), fill_value, dtype=dtype)
    for f, s in enumerate(selected):
        packed[f, : len(s)] = s
    return packed, np.array([len(s) for s in selected])


def test_seed_frames_points_features():
    """The user's question: (frames, points, 128) + mask (frames, points), keep 3D, no loop."""
    rng = np.random.default_rng(0)
    points = rng.random((20, 30, 128), dtype=np.float32)
    mask = rng.random((20, 30)) < 0.4
    before = checksum(points), checksum(mask)
    packed, counts = mask_filter(points, mask)
    expected, expected_counts = loop_reference(points, mask, np.nan)
    assert packed.ndim == 3 and packed.shape == expected.shape
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_array_equal(packed, expected)  # NaN == NaN here
    assert (checksum(points), checksum(mask)) == before


@pytest.mark.parametrize("feature_shape", [(), (1,), (3,), (2, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill_value", [np.nan, 0, -1])
def test_mask_filter_matches_loop(feature_shape, dtype, fill_value, workers):
    rng = np.random.default_rng(1)
    points = random_data((9, 11, *feature_shape), dtype)
    mask = rng.random((9, 11)) < 0.5
    packed, counts = mask_filter(points, mask, fill_value, workers=workers)
    expected, expected_counts = loop_reference(points, mask, fill_value)
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_array_equal(packed, expected.astype(packed.dtype))
    if np.dtype(dtype).kind == "f":
        assert packed.dtype == dtype
    elif np.isnan(fill_value) or (fill_value < 0 and np.dtype(dtype).kind == "u"):
        assert packed.dtype.kind == "f"
        # float32 holds every 8/16-bit integer exactly
        assert packed.dtype == np.float32
    else:
        assert packed.dtype == dtype


def test_wide_integers_with_nan_become_float64():
    points = np.array([[[2**40 + 1], [3]]], dtype=np.int64)
    packed, _ = mask_filter(points, [[True, False]])
    assert packed.dtype == np.float64
    assert packed[0, 0, 0] == 2**40 + 1


def test_all_false_mask_gives_empty_second_axis():
    points = np.ones((4, 5, 3))
    packed, counts = mask_filter(points, np.zeros((4, 5), bool))
    assert packed.shape == (4, 0, 3)
    np.testing.assert_array_equal(counts, 0)


def test_all_true_mask_keeps_everything():
    points = np.arange(60.0).reshape(4, 5, 3)
    packed, counts = mask_filter(points, np.ones((4, 5), bool))
    np.testing.assert_array_equal(packed, points)
    np.testing.assert_array_equal(counts, 5)


def test_zero_one_mask_is_accepted():
    points = np.arange(6).reshape(2, 3)
    packed, counts = mask_filter(points, np.array([[0, 1, 1], [1, 0, 0]]), fill_value=-9)
    np.testing.assert_array_equal(packed, [[1, 2], [3, -9]])
    np.testing.assert_array_equal(counts, [2, 1])


def test_non_contiguous_points():
    rng = np.random.default_rng(2)
    points = rng.random((6, 10, 8))[:, ::2, 1::2]
    mask = rng.random((6, 5)) < 0.5
    packed, _ = mask_filter(points, mask)
    np.testing.assert_array_equal(packed, loop_reference(points, mask, np.nan)[0])


# ----------------------------------------------------------------------- apply_mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_ndim", [1, 2, 3, 4])
def test_apply_mask_matches_where_and_broadcasts(dtype, mask_ndim, workers):
    rng = np.random.default_rng(3)
    image = random_data((3, 4, 5, 6), dtype)
    mask = rng.random(image.shape[4 - mask_ndim :]) < 0.5
    before = checksum(image)
    result = apply_mask(image, mask, workers=workers)
    assert result.dtype == dtype and result.shape == image.shape
    np.testing.assert_array_equal(result, np.where(mask, image, 0))
    assert checksum(image) == before


def test_apply_mask_nan_fill_makes_integers_float32():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    result = apply_mask(image, np.array([1, 0, 1, 0]), fill_value=np.nan)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, np.where([1, 0, 1, 0], image, np.nan))


def test_apply_mask_result_is_a_new_array():
    image = np.ones((4, 4))
    result = apply_mask(image, np.eye(4, dtype=bool))
    result[...] = 7
    assert (image == 1).all()


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda: mask_filter(np.ones((3, 4)), np.ones((3, 5), bool)), ValueError, "mask"),
        (lambda: mask_filter(np.ones((3, 4, 2)), np.ones((3, 4, 2), bool)), ValueError, "mask"),
        (lambda: mask_filter(np.ones(4), np.ones(4, bool)), ValueError, "points"),
        (lambda: mask_filter(np.ones((0, 4)), np.ones((0, 4), bool)), ValueError, "points"),
        (lambda: mask_filter(np.ones((2, 2)), [[np.nan, 1], [0, 1]]), ValueError, "mask"),
        (lambda: mask_filter(np.ones((2, 2)), np.ones((2, 2)), "x"), TypeError, "fill_value"),
        (lambda: apply_mask(np.ones((3, 4)), np.ones((4, 3), bool)), ValueError, "mask"),
        (lambda: apply_mask(np.ones((3, 4)), np.ones((2, 3, 4), bool)), ValueError, "mask"),
        (lambda: apply_mask(np.ones((3, 4)), np.ones((3, 4)), None), TypeError, "fill_value"),
        (lambda: apply_mask(np.array([["a"]]), np.ones((1, 1))), TypeError, "image"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(call, error, names):
    with pytest.raises(error, match=names):
        call()
